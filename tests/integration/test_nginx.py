"""A real client: Debian's nginx with contrib/nginx/tokend.conf in front of a
small upstream, tokend answering its auth_request subrequests."""

import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import unittest

import harness

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


AUTH_HEADERS = ("X-Auth-User", "X-Auth-User-Id", "X-Auth-Client",
                "X-Auth-Scope", "X-Auth-Token-Id", "X-Auth-Token-Kind",
                "X-Auth-Expires", "X-Auth-Error")


class Upstream(http.server.BaseHTTPRequestHandler):
    """Answers with the identity nginx passed on, and what it must not; under
    /api/headers, with every header it received (name: [values]) as JSON."""

    def do_GET(self):
        if self.path.startswith("/api/headers"):
            got = {}
            for k, v in self.headers.items():
                got.setdefault(k.lower(), []).append(v)
            body = json.dumps(got).encode()
        else:
            body = ("user=%s id=%s auth=%s" % (
                self.headers.get("X-Auth-User"),
                self.headers.get("X-Auth-User-Id"),
                self.headers.get("Authorization") or "")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@unittest.skipUnless(os.path.exists(NGINX), "nginx is not installed")
class NginxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        # nginx reaches tokend from 127.0.0.1: its forwarded address counts.
        cls.t = harness.Tokend(workers=1, config={
            "trusted_proxies": "127.0.0.1", "usage_flush_interval": 0.2})
        cls.app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=cls.app.serve_forever, daemon=True).start()
        cls.port = harness.free_port()
        cls.dir = harness.tmpdir("nginx-")
        site = open(os.path.join(harness.ROOT, "contrib/nginx/tokend.conf"))
        site = site.read() \
            .replace("127.0.0.1:8080", "127.0.0.1:%d" % cls.t.port) \
            .replace("127.0.0.1:9000", "127.0.0.1:%d" % cls.app.server_port) \
            .replace("127.0.0.1:8000", "127.0.0.1:%d" % cls.port)
        # The same server, its auth location requiring a scope, as the
        # file's comment says to do it: for the 403.
        cls.admin_port = harness.free_port()
        site += site[site.index("\nserver {"):] \
            .replace("proxy_pass http://tokend/auth;",
                     "proxy_pass http://tokend/auth?scope=admin;") \
            .replace("127.0.0.1:%d" % cls.port,
                     "127.0.0.1:%d" % cls.admin_port)
        d = cls.dir
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
daemon off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
%(user)s
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
%(site)s
}
""" % {"d": d, "site": site,
       "user": "user root;" if os.getuid() == 0 else ""})
        cls.nginx = subprocess.Popen([NGINX, "-c", conf, "-p", d],
                                     stderr=subprocess.PIPE)
        harness.wait_until(lambda: cls.get("/api/x").status in (200, 401),
                           timeout=10, msg="nginx did not start")

    @classmethod
    def tearDownClass(cls):
        cls.nginx.send_signal(signal.SIGQUIT)
        try:
            cls.nginx.wait(10)
        except subprocess.TimeoutExpired:
            cls.nginx.kill()
        cls.app.shutdown()
        cls.t.stop()

    @classmethod
    def get(cls, path, token=None, extra=(), port=None):
        headers = [("Authorization", "Bearer " + token)] if token else []
        headers += list(extra)
        try:
            return harness.http(port or cls.port, "GET", path,
                                headers=headers)
        except OSError:
            return harness.Response("HTTP/1.1", 0, "", [], b"")

    def pat(self):
        return harness.tokenctl("pat", "create", "--user", "alice",
                                "--name", "nginx").stdout.strip()

    def test_valid_pat_reaches_upstream_with_its_user(self):
        tok = self.pat()
        r = self.get("/api/hello", tok)
        self.assertEqual(r.status, 200)
        uid = harness.pg().sql("SELECT id FROM users WHERE name='alice'")[0][0]
        self.assertEqual(r.text, "user=alice id=%s auth=" % uid)

    def test_missing_token_is_401_from_nginx(self):
        r = self.get("/api/hello")
        self.assertEqual(r.status, 401)
        # Once: auth_request copies it, and nothing adds it again.
        self.assertEqual(r.headers.get("www-authenticate"),
                         'Bearer realm="tokend"')

    def test_bad_token_is_401(self):
        r = self.get("/api/hello", "tkp_notatoken")
        self.assertEqual(r.status, 401)
        self.assertIsInstance(r.headers.get("www-authenticate"), str, r)
        self.assertIn('error="invalid_token"', r.header("www-authenticate"))

    def test_missing_scope_is_403_with_one_challenge(self):
        r = self.get("/api/hello", self.pat(), port=self.admin_port)
        self.assertEqual(r.status, 403, r)
        self.assertIsInstance(r.headers.get("www-authenticate"), str, r)
        self.assertIn('error="insufficient_scope"',
                      r.header("www-authenticate"))

    def test_application_sees_only_what_tokend_said(self):
        """Issue 9 item 11: forged X-Auth-* headers never reach the
        application; each one it gets is tokend's, once."""
        tok = self.pat()
        t = self.t.http("GET", "/auth", headers={
            "Authorization": "Bearer " + tok})
        self.assertEqual(t.status, 200)
        forged = [(h, "forged") for h in AUTH_HEADERS] + \
            [(h.lower(), "forged2") for h in AUTH_HEADERS]
        r = self.get("/api/headers", tok, forged)
        self.assertEqual(r.status, 200, r)
        got = r.json()
        for h in AUTH_HEADERS:
            said = t.header(h)
            if said:
                self.assertEqual(got.get(h.lower()), [said], h)
            else:   # tokend sent none, or an empty one: the app gets none
                self.assertNotIn(h.lower(), got, h)
        self.assertEqual(got["x-auth-token-kind"], ["pat"])
        self.assertEqual(got["x-auth-expires"], ["0"])
        self.assertEqual(got["x-auth-user"], ["alice"])
        self.assertNotIn("authorization", got)

    def test_application_sees_when_the_token_expires(self):
        """Issue 13: X-Auth-Expires reaches the application (unix seconds),
        so it can warn the user before a PAT lapses."""
        tok = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "expiring", "--expires-in", "3600"
                               ).stdout.strip()
        r = self.get("/api/headers", tok)
        self.assertEqual(r.status, 200, r)
        self.assertAlmostEqual(int(r.json()["x-auth-expires"][0]),
                               time.time() + 3600, delta=30)

    def test_postgresql_down_is_503_with_retry_after(self):
        """Issue 10: tokend's 503 reaches the client as a 503 with
        Retry-After and a JSON body, not as nginx's bare 500."""
        tok = self.pat()    # never used: not in the cache
        harness.pg().stop()
        try:
            r = self.get("/api/hello", tok)
        finally:
            harness.pg().start()
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.header("retry-after"), "1")
        self.assertTrue(r.header("content-type").startswith(
            "application/json"))
        self.assertEqual(r.json()["error"], "temporarily_unavailable")
        # PostgreSQL back: the same token passes.
        harness.wait_until(lambda: self.get("/api/hello", tok).status == 200,
                           timeout=10)

    def test_revoked_token_is_401(self):
        tok = self.pat()
        self.assertEqual(self.get("/api/hello", tok).status, 200)
        harness.pg().sql("UPDATE tokens SET revoked_at = now() WHERE " +
                         harness.BY_TOKEN, tok)
        harness.wait_until(lambda: self.get("/api/hello", tok).status == 401,
                           timeout=1.5)


    def test_request_id_follows_the_request(self):
        # The client's id reaches the application and comes back.
        tok = self.pat()
        r = self.get("/api/headers", tok, extra=[("X-Request-Id", "t-1")])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["x-request-id"], ["t-1"])
        self.assertEqual(r.header("x-request-id"), "t-1")
        # None, or one tokend would not pass on: nginx's own, everywhere.
        for extra in ([], [("X-Request-Id", "x" * 129)]):
            r = self.get("/api/headers", tok, extra=extra)
            rid = r.header("x-request-id")
            self.assertRegex(rid, r"^[0-9a-f]{32}$")
            self.assertEqual(r.json()["x-request-id"], [rid])
        # tokend's 401, passed on by nginx, carries it too.
        r = self.get("/api/hello", extra=[("X-Request-Id", "t-2")])
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("x-request-id"), "t-2")

    # ---- issue 14: rate limits as 429, the client's address -------------

    def get_from(self, source, token, extra=()):
        with harness.conn_from(self.port, source) as c:
            return c.request("GET", "/api/hello", headers=[
                ("Authorization", "Bearer " + token)] + list(extra))

    def test_rate_limited_is_429_with_retry_after(self):
        tok = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "limited", "--rate", "2/60").stdout.strip()
        for _ in range(2):
            self.assertEqual(self.get("/api/hello", tok).status, 200)
        r = self.get("/api/hello", tok)
        self.assertEqual(r.status, 429, r)
        self.assertTrue(1 <= int(r.header("retry-after")) <= 60, r)
        self.assertEqual(r.json()["error"], "rate_limited")
        self.assertIsNone(r.header("www-authenticate"))
        # A missing scope is still 403 with its challenge, once.
        r = self.get("/api/hello", self.pat(), port=self.admin_port)
        self.assertEqual(r.status, 403, r)
        self.assertIsInstance(r.headers.get("www-authenticate"), str, r)

    def test_client_address_reaches_tokend_through_nginx(self):
        tok = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "pinned", "--allow-ip",
                               "127.0.0.2").stdout.strip()
        # Forged by a client, X-Forwarded-For moves nothing: nginx appends
        # the address it saw, and tokend takes the rightmost not a proxy.
        forged = [("X-Forwarded-For", "127.0.0.2"),
                  ("X-Real-IP", "127.0.0.2")]
        self.assertEqual(self.get_from("127.0.0.3", tok, forged).status, 401)
        self.assertEqual(self.get_from("127.0.0.2", tok).status, 200)
        harness.wait_until(lambda: harness.pg().sql(
            "SELECT host(last_used_ip) FROM tokens WHERE " +
            harness.BY_TOKEN, tok) == [("127.0.0.2",)], timeout=5)
        self.assertIn("address=127.0.0.3", [
            line for line in self.t.log().splitlines()
            if "event=token_ip_refused" in line][-1])


if __name__ == "__main__":
    unittest.main()

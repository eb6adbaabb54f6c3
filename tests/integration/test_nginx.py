"""A real client: Debian's nginx with contrib/nginx/tokend.conf in front of a
small upstream, tokend answering its auth_request subrequests."""

import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
import unittest

import harness

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Upstream(http.server.BaseHTTPRequestHandler):
    """Answers with the identity nginx passed on, and what it must not."""

    def do_GET(self):
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
        harness.tokenctl("user", "add", "alice")
        cls.t = harness.Tokend(workers=1)
        cls.app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=cls.app.serve_forever, daemon=True).start()
        cls.port = harness.free_port()
        cls.dir = harness.tmpdir("nginx-")
        site = open(os.path.join(harness.ROOT, "contrib/nginx/tokend.conf"))
        site = site.read() \
            .replace("127.0.0.1:8080", "127.0.0.1:%d" % cls.t.port) \
            .replace("127.0.0.1:9000", "127.0.0.1:%d" % cls.app.server_port) \
            .replace("127.0.0.1:8000", "127.0.0.1:%d" % cls.port)
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
    def get(cls, path, token=None):
        headers = {"Authorization": "Bearer " + token} if token else {}
        try:
            return harness.http(cls.port, "GET", path, headers=headers)
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
        self.assertEqual(r.header("www-authenticate"), 'Bearer realm="tokend"')

    def test_bad_token_is_401(self):
        r = self.get("/api/hello", "tkp_notatoken")
        self.assertEqual(r.status, 401)
        self.assertIn('error="invalid_token"', r.header("www-authenticate"))

    def test_revoked_token_is_401(self):
        tok = self.pat()
        self.assertEqual(self.get("/api/hello", tok).status, 200)
        harness.pg().sql("UPDATE tokens SET revoked_at = now() WHERE " +
                         harness.BY_TOKEN, tok)
        harness.wait_until(lambda: self.get("/api/hello", tok).status == 401,
                           timeout=1.5)


if __name__ == "__main__":
    unittest.main()

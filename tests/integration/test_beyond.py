"""SPEC 13 (issue 14): client addresses and trusted proxies, last_used_ip,
per-PAT allowlists, token_new_network, per-PAT rate limits, canary PATs.

Loopback gives the tests several client addresses: 127.0.0.1 is the
default, harness.conn_from binds another one (127.0.0.2 is a trusted proxy
here, 127.0.1.1 a client in another /24)."""

import base64
import json
import re
import time
import unittest

import harness

WEB = {"Authorization": "Basic " +
       base64.b64encode(b"web:web-secret").decode()}
RS = {"Authorization": "Basic " +
      base64.b64encode(b"rs:rs-secret").decode()}
PROXY = "127.0.0.2"


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def metric(t, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name),
                  t.http("GET", "/metrics").text, re.M)
    return int(m.group(1)) if m else None


def events(t, name):
    """The log lines of event name, as dicts of their key=value fields."""
    out = []
    for line in t.log().splitlines():
        if "event=%s " % name not in line + " ":
            continue
        fields = {}
        for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
            fields[k] = json.loads(v) if v.startswith('"') else v
        out.append(fields)
    return out


def auth_from(t, source, token, headers=()):
    """GET /auth on a connection from the loopback address source."""
    with harness.conn_from(t.port, source) as c:
        return c.request("GET", "/auth", headers=[
            ("Authorization", "Bearer " + token)] + list(headers))


def pat(*opts, user="alice"):
    return harness.tokenctl("pat", "create", "--user", user, "--name", "k",
                            *opts).stdout.strip()


def token_row(tok):
    return harness.pg().sql(
        "SELECT id, host(last_used_ip), use_count, last_used_at "
        "FROM tokens WHERE " + harness.BY_TOKEN, tok)[0]


def made_up_pat():
    """A well-formed PAT (its checksum holds) that PostgreSQL does not
    know: created, then deleted behind tokend's back before any use."""
    tok = pat()
    harness.pg().sql("DELETE FROM tokens WHERE " + harness.BY_TOKEN, tok)
    return tok


def comparable(r):
    """What a client can compare between two answers: all but Date and
    X-Request-Id (fresh random bytes on every answer, whatever the token;
    their shape is the same)."""
    for k, v in r.raw_headers:
        if k.lower() == "x-request-id":
            assert re.fullmatch(r"[0-9a-f]{32}", v), v
    return (r.status, [(k.lower(), v) for k, v in r.raw_headers
                       if k.lower() not in ("date", "x-request-id")], r.body)


class BeyondTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("client", "add", "web", "--secret-stdin", "--scope",
                         "read write", "--first-party", input="web-secret\n")
        harness.tokenctl("client", "add", "rs", "--secret-stdin",
                         "--introspect", input="rs-secret\n")
        harness.tokenctl("user", "add", "alice", "--password-stdin",
                         input="alice-pw\n")
        cls.t = harness.Tokend(workers=2, config={
            "usage_flush_interval": 0.2, "trusted_proxies": PROXY})

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def access_token(self):
        r = self.t.http("POST", "/token", headers=WEB, form={
            "grant_type": "password", "username": "alice",
            "password": "alice-pw", "scope": "read write"})
        self.assertEqual(r.status, 200, r)
        return r.json()["access_token"]

    def flushed(self, tok, count):
        return harness.wait_until(
            lambda: token_row(tok)[2] == str(count) and token_row(tok),
            timeout=5, msg="use_count %d not flushed" % count)

    # ---- client address and trusted proxies --------------------------------

    def test_forwarded_address_only_from_a_trusted_proxy(self):
        tok = pat("--allow-ip", "203.0.113.0/24")
        spoof = [("X-Forwarded-For", "203.0.113.9"),
                 ("X-Real-IP", "203.0.113.9")]
        # 127.0.0.1 is not a proxy: its X-Forwarded-For is ignored.
        self.assertEqual(auth_from(self.t, "127.0.0.1", tok, spoof).status,
                         401)
        # The trusted proxy: the rightmost address that is not a proxy.
        r = auth_from(self.t, PROXY, tok, [
            ("X-Forwarded-For", "198.51.100.1, 203.0.113.9, " + PROXY)])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.flushed(tok, 1)[1], "203.0.113.9")
        # X-Real-IP when the proxy sends no X-Forwarded-For.
        r = auth_from(self.t, PROXY, tok, [("X-Real-IP", "203.0.113.10")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.flushed(tok, 2)[1], "203.0.113.10")
        # A client-supplied left part does not move the address either.
        r = auth_from(self.t, PROXY, tok, [
            ("X-Forwarded-For", "203.0.113.11, 192.0.2.1")])
        self.assertEqual(r.status, 401, r)

    def test_bad_trusted_proxies_refused_by_tokend_t(self):
        d = harness.tmpdir()
        for bad in ("10.0.0.1/8", "10.0.0.0/33", "proxy.example"):
            path = d + "/t.conf"
            with open(path, "w") as f:
                f.write("database_url = %s\ncache_dir = %s/c\n"
                        "trusted_proxies = %s\n" % (harness.pg().url, d, bad))
            r = harness.tokend_cmd("-t", "-c", path)
            self.assertNotEqual(r.returncode, 0, bad)
            self.assertIn("trusted_proxies", r.stdout + r.stderr)
            self.assertIn(bad, r.stdout + r.stderr)

    # ---- last_used_ip --------------------------------------------------------

    def test_last_used_ip_in_token_list_and_get_pats(self):
        access = self.access_token()
        r = self.t.http("POST", "/pats", headers=bearer(access),
                        json={"name": "ci", "scope": "read"})
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(auth_from(self.t, "127.0.1.1", p["token"]).status,
                         200)
        self.flushed(p["token"], 1)
        rows = json.loads(harness.tokenctl("--json", "token", "list",
                                           "--user", "alice").stdout)
        row = [x for x in rows if x["id"] == p["id"]][0]
        self.assertEqual(row["last_used_ip"], "127.0.1.1")
        listed = self.t.http("GET", "/pats", headers=bearer(access)).json()
        mine = [x for x in listed if x["id"] == p["id"]][0]
        self.assertEqual(mine["last_used_ip"], "127.0.1.1")
        self.assertEqual(mine["allowed_ips"], [])
        self.assertIsNone(mine["rate"])

    # ---- allowlists --------------------------------------------------------

    def test_allowlist_accepts_inside_refuses_outside_as_unknown(self):
        tok = pat("--allow-ip", "127.0.1.0/24", "--allow-ip", "::1")
        tid = token_row(tok)[0]
        self.assertEqual(auth_from(self.t, "127.0.1.1", tok).status, 200)
        # From elsewhere: the very answer of a token nobody knows.
        unknown = made_up_pat()
        for _ in range(2):      # miss, then cached
            refused = auth_from(self.t, "127.0.0.1", tok)
            other = auth_from(self.t, "127.0.0.1", unknown)
            self.assertEqual(refused.status, 401)
            self.assertEqual(comparable(refused), comparable(other))
        ev = harness.wait_until(lambda: [
            e for e in events(self.t, "token_ip_refused")
            if e.get("token_id") == tid])
        self.assertEqual(ev[0]["token"], tok[:8])
        self.assertEqual(ev[0]["address"], "127.0.0.1")
        self.assertNotIn(tok, self.t.log())
        # Refusals are no uses.
        self.assertEqual(self.flushed(tok, 1)[2], "1")

    def test_allowed_ips_through_post_pats(self):
        access = self.access_token()
        for bad in (["10.0.0.1/8"], ["nonsense"], "10.0.0.0/8", [],
                    ["10.%d.0.0/16" % i for i in range(17)], [8]):
            r = self.t.http("POST", "/pats", headers=bearer(access),
                            json={"name": "x", "allowed_ips": bad})
            self.assertEqual(r.status, 400, (bad, r))
            self.assertEqual(r.json()["error"], "invalid_request")
        for bad in ("10", "0/60", "5/0", "5/86401", 5):
            r = self.t.http("POST", "/pats", headers=bearer(access),
                            json={"name": "x", "rate": bad})
            self.assertEqual(r.status, 400, (bad, r))
        r = self.t.http("POST", "/pats", headers=bearer(access), json={
            "name": "ci", "allowed_ips": ["127.0.1.0/24", "2001:db8::/32"],
            "rate": "100/60"})
        self.assertEqual(r.status, 201, r)
        p = r.json()
        self.assertEqual(auth_from(self.t, "127.0.1.7", p["token"]).status,
                         200)
        self.assertEqual(auth_from(self.t, "127.0.0.1", p["token"]).status,
                         401)
        listed = self.t.http("GET", "/pats", headers=bearer(access)).json()
        mine = [x for x in listed if x["id"] == p["id"]][0]
        self.assertEqual(mine["allowed_ips"],
                         ["127.0.1.0/24", "2001:db8::/32"])
        self.assertEqual(mine["rate"], "100/60")

    def test_tokenctl_refuses_bad_options(self):
        for opts in (("--allow-ip", "10.0.0.1/8"), ("--allow-ip", "x"),
                     ("--rate", "0/60"), ("--rate", "10"),
                     ("--rate", "2000000/1")):
            r = harness.tokenctl("pat", "create", "--user", "alice",
                                 "--name", "bad", *opts, check=False)
            self.assertNotEqual(r.returncode, 0, opts)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens WHERE name = 'bad'"), [("0",)])

    # ---- rate limits -----------------------------------------------------------

    def test_rate_limit_403_retry_after_and_metric(self):
        tok = pat("--rate", "3/60")
        before = metric(self.t, "tokend_rate_limited_total")
        for _ in range(3):
            self.assertEqual(self.t.http("GET", "/auth",
                                         headers=bearer(tok)).status, 200)
        r = self.t.http("GET", "/auth", headers=bearer(tok))
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.header("x-auth-error"), "rate_limited")
        self.assertTrue(1 <= int(r.header("retry-after")) <= 60, r)
        self.assertEqual(r.json()["error"], "rate_limited")
        self.assertEqual(metric(self.t, "tokend_rate_limited_total"),
                         before + 1)
        # Only the 200s count as uses.
        time.sleep(0.5)
        self.assertEqual(token_row(tok)[2], "3")
        # Another token is not limited.
        self.assertEqual(self.t.http("GET", "/auth", headers=bearer(
            pat())).status, 200)

    # ---- canaries --------------------------------------------------------------

    def test_canary_answers_as_unknown_and_is_logged(self):
        canary = pat("--canary")
        cid = token_row(canary)[0]
        unknown = made_up_pat()
        hits = metric(self.t, "tokend_canary_hits_total")
        ua = 'curl/8.0 "x\\y" <b>'
        for _ in range(2):      # miss, then negative hit
            a = self.t.http("GET", "/auth", headers={
                "Authorization": "Bearer " + canary, "User-Agent": ua})
            b = self.t.http("GET", "/auth", headers={
                "Authorization": "Bearer " + unknown, "User-Agent": ua})
            self.assertEqual(a.status, 401)
            self.assertEqual(comparable(a), comparable(b))
        t0 = time.monotonic()
        ev = harness.wait_until(lambda: [
            e for e in events(self.t, "canary_token_used")
            if e.get("token_id") == cid], timeout=1.0)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(ev[0]["address"], "127.0.0.1")
        self.assertEqual(ev[0]["path"], "/auth")
        self.assertEqual(ev[0]["user_agent"], ua)
        # Anywhere: introspection and as the bearer of /pats.
        ia = self.t.http("POST", "/introspect", headers=RS,
                         form={"token": canary})
        ib = self.t.http("POST", "/introspect", headers=RS,
                         form={"token": unknown})
        self.assertEqual(comparable(ia), comparable(ib))
        pa = self.t.http("GET", "/pats", headers=bearer(canary))
        pb = self.t.http("GET", "/pats", headers=bearer(unknown))
        self.assertEqual(comparable(pa), comparable(pb))
        harness.wait_until(lambda: {e.get("path") for e in events(
            self.t, "canary_token_used") if e.get("token_id") == cid} >=
            {"/auth", "/introspect", "/pats"}, timeout=1.0)
        self.assertEqual(metric(self.t, "tokend_canary_hits_total"),
                         hits + 4)
        # Never a use.
        time.sleep(0.5)
        self.assertEqual(token_row(canary)[2:], ("0", None))
        self.assertNotIn(canary, self.t.log())


class NewNetworkTest(unittest.TestCase):
    """token_new_network: once per (token, network), whichever box saw
    the use, and across a restart."""

    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        conf = {"usage_flush_interval": 0.2}
        self.a = harness.Tokend(workers=1, config=conf)
        self.b = harness.Tokend(workers=1, config=conf)

    def tearDown(self):
        self.a.stop()
        self.b.stop()

    def alerts(self, tid):
        return [e for t in (self.a, self.b)
                for e in events(t, "token_new_network")
                if e.get("token_id") == tid]

    def networks(self, tid):
        return harness.pg().sql("SELECT network::text FROM token_networks "
                                "WHERE token_id = %s ORDER BY 1", int(tid))

    def test_new_network_logged_once_across_boxes_and_restarts(self):
        tok = pat()
        tid = harness.pg().sql("SELECT id FROM tokens WHERE " +
                               harness.BY_TOKEN, tok)[0][0]
        for t in (self.a, self.b, self.a):
            self.assertEqual(auth_from(t, "127.0.0.1", tok).status, 200)
        harness.wait_until(lambda: self.networks(tid) == [("127.0.0.0/24",)],
                           timeout=5)
        harness.wait_until(lambda: self.alerts(tid), timeout=2)
        self.assertEqual(auth_from(self.b, "127.0.1.1", tok).status, 200)
        self.assertEqual(auth_from(self.a, "127.0.1.200", tok).status, 200)
        harness.wait_until(lambda: len(self.networks(tid)) == 2, timeout=5)
        harness.wait_until(lambda: len(self.alerts(tid)) == 2, timeout=2)
        # A restart forgets the writer's memory, not the table.
        self.a.stop()
        self.a.start()
        self.assertEqual(auth_from(self.a, "127.0.1.9", tok).status, 200)
        self.assertEqual(auth_from(self.a, "127.0.0.1", tok).status, 200)
        harness.wait_until(lambda: token_row(tok)[2] == "7", timeout=5)
        time.sleep(0.5)
        got = self.alerts(tid)
        self.assertEqual(sorted(e["network"] for e in got),
                         ["127.0.0.0/24", "127.0.1.0/24"], got)
        self.assertEqual({e["token"] for e in got}, {tok[:8]})


if __name__ == "__main__":
    unittest.main()

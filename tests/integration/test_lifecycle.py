"""Token lifecycle (SPEC 12, issue 13): PAT rotation with an overlap, expiry
warnings, a user's sessions, and the tokenctl commands behind them."""

import base64
import json
import re
import time
import unittest

import harness

WEB = {"Authorization": "Basic " +
       base64.b64encode(b"web:web-secret").decode()}
DAY = 86400


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def token_id(tok):
    return int(harness.pg().sql("SELECT id FROM tokens WHERE " +
                                harness.BY_TOKEN, tok)[0][0])


class Base(unittest.TestCase):
    workers = 3

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("client", "add", "web", "--secret-stdin", "--scope",
                         "read write", "--first-party",
                         input="web-secret\n")
        for u in ("alice", "bob"):
            harness.tokenctl("user", "add", u, "--password-stdin",
                             input=u + "-pw\n")
        cls.t = harness.Tokend(workers=cls.workers, config={
            "usage_flush_interval": 0.2})

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    @classmethod
    def login(cls, user="alice", scope="read write"):
        r = cls.t.http("POST", "/token", headers=WEB, form={
            "grant_type": "password", "username": user,
            "password": user + "-pw", "scope": scope})
        assert r.status == 200, r
        return r.json()

    def auth(self, tok):
        return self.t.http("GET", "/auth", headers=bearer(tok)).status

    def auth_all(self, tok, n=12):
        """n requests, each on a new connection (so on whichever worker
        accepts it): their statuses."""
        return {self.auth(tok) for _ in range(n)}

    def assert_error(self, r, status, error):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["error"], error, r)


class RotateTest(Base):
    def setUp(self):
        self.at = self.login()["access_token"]

    def create(self, **body):
        r = self.t.http("POST", "/pats", headers=bearer(self.at), json=body)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def rotate(self, pid, body=None, at=None):
        return self.t.http("POST", "/pats/%s/rotate" % pid,
                           headers=bearer(at or self.at),
                           json=body if body is not None else {})

    def test_overlap_ends_on_time_on_every_worker(self):
        old = self.create(name="deploy", scope="read", expires_in=3600)
        self.assertEqual(self.auth_all(old["token"]), {200})   # cached
        t0 = time.monotonic()       # before PostgreSQL's now()
        r = self.rotate(old["id"], {"overlap": 2})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("cache-control"), "no-store")
        new = r.json()
        self.assertEqual(set(new), {"id", "token", "name", "scope",
                                    "created_at", "expires_at"})
        self.assertEqual((new["name"], new["scope"]), ("deploy", "read"))
        self.assertNotEqual(new["id"], old["id"])
        self.assertRegex(new["token"], r"^tkp_[0-9A-Za-z]{49}$")
        # Both work during the overlap, on every worker: each answer
        # received within 1.9 s of the rotation is a 200.
        during = []
        while len(during) < 12 and time.monotonic() - t0 < 1.5:
            status = self.auth(old["token"])
            if time.monotonic() - t0 < 1.9:
                during.append(status)
        self.assertTrue(during)
        self.assertEqual(set(during), {200})
        # The new one lives as long as the old one was made to.
        self.assertAlmostEqual(int(self.t.http(
            "GET", "/auth", headers=bearer(new["token"])).header(
            "x-auth-expires")), time.time() + 3600, delta=10)
        # After it, the old one is refused everywhere, not before.
        harness.wait_until(lambda: self.auth_all(old["token"], 6) == {401},
                           timeout=6, interval=0.1)
        self.assertGreaterEqual(time.monotonic() - t0, 1.95)
        self.assertEqual(self.auth_all(old["token"]), {401})
        self.assertEqual(self.auth_all(new["token"]), {200})
        self.assertIn("event=token_rotated", self.t.log())
        self.assertNotIn(new["token"], self.t.log())

    def test_default_overlap_is_a_day(self):
        old = self.create(name="ci", expires_in=30 * DAY)
        r = self.t.http("POST", "/pats/%d/rotate" % old["id"], headers=dict(
            bearer(self.at), **{"Content-Length": "0"}))    # no body
        self.assertEqual(r.status, 201, r)
        exp = self.t.http("GET", "/auth", headers=bearer(old["token"]))
        self.assertEqual(exp.status, 200)
        self.assertAlmostEqual(int(exp.header("x-auth-expires")),
                               time.time() + DAY, delta=10)
        # A shorter expiry is never lengthened.
        short = self.create(name="short", expires_in=600)
        self.assertEqual(self.rotate(short["id"], {"overlap": 604800})
                         .status, 201)
        self.assertAlmostEqual(int(self.t.http(
            "GET", "/auth", headers=bearer(short["token"])).header(
            "x-auth-expires")), time.time() + 600, delta=10)

    def test_new_lifetime_is_capped_by_pat_max_lifetime(self):
        tok = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "long", "--expires-in", str(3650 * DAY)
                               ).stdout.strip()
        r = self.rotate(token_id(tok), {"overlap": 0})
        self.assertEqual(r.status, 201, r)
        self.assertAlmostEqual(int(self.t.http(
            "GET", "/auth", headers=bearer(r.json()["token"])).header(
            "x-auth-expires")), time.time() + 7776000, delta=10)
        harness.wait_until(lambda: self.auth(tok) == 401, timeout=3)

    def test_refusals(self):
        p = self.create(name="x", scope="read", expires_in=3600)
        for body in ({"overlap": 604801}, {"overlap": -1},
                     {"overlap": "60"}, {"overlap": 1.5}, [1]):
            self.assert_error(self.rotate(p["id"], body), 400,
                              "invalid_request")
        r = self.t.http("POST", "/pats/%d/rotate" % p["id"],
                        headers=bearer(self.at), body="overlap=1",
                        form=None)
        self.assertIn(r.status, (400, 415), r)
        bob = self.login("bob")["access_token"]
        for pid, at in ((p["id"], bob), (10 ** 12, None), ("abc", None),
                        ("0", None)):
            self.assert_error(self.rotate(pid, at=at), 404, "not_found")
        # Revoked or expired: nothing left to rotate.
        self.assertEqual(self.t.http("DELETE", "/pats/%d" % p["id"],
                                     headers=bearer(self.at)).status, 204)
        self.assert_error(self.rotate(p["id"]), 404, "not_found")
        q = self.create(name="y", expires_in=3600)
        harness.pg().sql("UPDATE tokens SET expires_at = now() - "
                         "interval '1 second' WHERE id = %s", q["id"])
        self.assert_error(self.rotate(q["id"]), 404, "not_found")
        # A PAT cannot rotate PATs; nor can anyone without a token.
        q = self.create(name="z", expires_in=3600)
        self.assertEqual(self.rotate(q["id"], at=q["token"]).status, 401)
        self.assertEqual(self.t.http("POST", "/pats/%d/rotate" % q["id"],
                                     json={}).status, 401)
        self.assertEqual(self.t.http("GET", "/pats/%d/rotate" % q["id"],
                                     headers=bearer(self.at)).status, 405)
        # Nothing was issued by any refusal.
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens WHERE kind = 'pat' AND "
            "name IN ('x', 'y', 'z')"), [("3",)])

    def test_needs_a_fresh_sign_in(self):
        p = self.create(name="fresh", expires_in=3600)
        harness.pg().sql("UPDATE tokens SET created_at = now() - interval "
                         "'601 seconds' WHERE " + harness.BY_TOKEN, self.at)
        self.assert_error(self.rotate(p["id"]), 403,
                          "reauthentication_required")
        self.assertEqual(self.auth(p["token"]), 200)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens WHERE name = 'fresh'"), [("1",)])

    def test_tokenctl_pat_rotate(self):
        old = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "cli", "--scope", "read", "--expires-in",
                               "7200").stdout.strip()
        self.assertEqual(self.auth_all(old, 6), {200})
        r = harness.tokenctl("pat", "rotate", token_id(old), "--overlap", "0")
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 1, r.stdout)
        self.assertRegex(lines[0], r"^tkp_[0-9A-Za-z]{49}$")
        new = lines[0]
        # Within a second on every worker (tokenctl goes through NOTIFY).
        harness.wait_until(lambda: self.auth_all(old, 6) == {401},
                           timeout=1.5, interval=0.05)
        a = self.t.http("GET", "/auth", headers=bearer(new))
        self.assertEqual((a.status, a.header("x-auth-scope")), (200, "read"))
        self.assertAlmostEqual(int(a.header("x-auth-expires")),
                               time.time() + 7200, delta=10)
        self.assertEqual(harness.pg().sql(
            "SELECT name FROM tokens WHERE " + harness.BY_TOKEN, new),
            [("cli",)])
        # Default overlap: a day, which never lengthens a shorter life.
        third = harness.tokenctl("pat", "rotate", token_id(new)
                                 ).stdout.strip()
        for tok in (new, third):
            self.assertAlmostEqual(int(self.t.http(
                "GET", "/auth", headers=bearer(tok)).header(
                "x-auth-expires")), time.time() + 7200, delta=10)

    def test_rotation_keeps_allowlist_rate_and_canary(self):
        # A confined token stays confined, a limited one limited, and a
        # canary stays a canary across rotation.
        old = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "fenced", "--allow-ip", "192.0.2.0/24",
                               "--rate", "5/60").stdout.strip()
        new = harness.tokenctl("pat", "rotate", token_id(old), "--overlap",
                               "0").stdout.strip()
        self.assertEqual(harness.pg().sql(
            "SELECT array_to_string(allowed_ips, ' '), rate_limit, "
            "rate_window, canary FROM tokens WHERE " + harness.BY_TOKEN, new),
            [("192.0.2.0/24", "5", "60", "f")])
        self.assertEqual(self.t.http("GET", "/auth",
                                     headers=bearer(new)).status, 401)
        bait = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                                "bait", "--canary").stdout.strip()
        bait2 = harness.tokenctl("pat", "rotate", token_id(bait)
                                 ).stdout.strip()
        self.assertEqual(harness.pg().sql(
            "SELECT canary FROM tokens WHERE " + harness.BY_TOKEN, bait2),
            [("t",)])

    def test_tokenctl_pat_rotate_errors(self):
        r = harness.tokenctl("pat", "rotate", check=False)
        self.assertEqual(r.returncode, 2, r)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn("pat rotate ID", r.stderr)
        for args in (("abc",), ("1", "--overlap", "604801"),
                     ("1", "--overlap", "-1"), ("999999",)):
            r = harness.tokenctl("pat", "rotate", *args, check=False)
            self.assertEqual(r.returncode, 1, (args, r))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertEqual(r.stdout, "")


class SessionsTest(Base):
    def sessions(self, at):
        r = self.t.http("GET", "/sessions", headers=bearer(at))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("cache-control"), "no-store")
        return r.json()

    def delete(self, sid, at):
        return self.t.http("DELETE", "/sessions/%s" % sid,
                           headers=bearer(at))

    def family(self, pair):
        return int(harness.pg().sql(
            "SELECT family FROM tokens WHERE " + harness.BY_TOKEN,
            pair["refresh_token"])[0][0])

    def test_list_and_end(self):
        a1, a2 = self.login(), self.login()
        b = self.login("bob")
        f1, f2 = self.family(a1), self.family(a2)
        got = [s for s in self.sessions(a2["access_token"])
               if s["id"] in (f1, f2)]
        self.assertEqual([s["id"] for s in got], [f1, f2])
        self.assertEqual(set(got[0]), {"id", "client_id", "created_at",
                                       "last_used_at", "current"})
        self.assertEqual([s["current"] for s in got], [False, True])
        self.assertEqual({s["client_id"] for s in got}, {"web"})
        self.assertRegex(got[0]["created_at"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertIsNotNone(got[0]["last_used_at"])
        self.assertEqual([s["id"] for s in self.sessions(
            b["access_token"])], [self.family(b)])
        # Another user's or an unknown one: 404, and nothing ends.
        self.assert_error(self.delete(f1, b["access_token"]), 404,
                          "not_found")
        for sid in (10 ** 12, "x", 0):
            self.assert_error(self.delete(sid, a2["access_token"]), 404,
                              "not_found")
        self.assertEqual(self.auth_all(a1["access_token"]), {200})
        # Ending f1: its access token fails on every worker at once, its
        # refresh token too; f2 goes on.
        r = self.delete(f1, a2["access_token"])
        self.assertEqual((r.status, r.body), (204, b""))
        self.assertEqual(self.auth_all(a1["access_token"]), {401})
        r = self.t.http("POST", "/token", headers=WEB, form={
            "grant_type": "refresh_token",
            "refresh_token": a1["refresh_token"]})
        self.assert_error(r, 400, "invalid_grant")
        self.assertNotIn(f1, [s["id"] for s in self.sessions(
            a2["access_token"])])
        self.assert_error(self.delete(f1, a2["access_token"]), 404,
                          "not_found")
        self.assertIn("event=session_revoked", self.t.log())
        # A refreshed family is the same session, still current.
        r = self.t.http("POST", "/token", headers=WEB, form={
            "grant_type": "refresh_token",
            "refresh_token": a2["refresh_token"]})
        self.assertEqual(r.status, 200, r)
        got = self.sessions(r.json()["access_token"])
        self.assertEqual([s["id"] for s in got if s["current"]], [f2])

    def test_ending_a_session_ends_its_sign_in_and_consent(self):
        pair, other = self.login(), self.login()
        fam = self.family(pair)
        uid = harness.pg().sql("SELECT id FROM users WHERE name = 'alice'")
        uid = int(uid[0][0])
        ws = []
        for i in range(2):
            ws.append(int(harness.pg().sql(
                "INSERT INTO web_sessions (hash, prefix, user_id, "
                "expires_at) VALUES (sha256(%s::bytea), 'tks_test', %s, "
                "now() + interval '1 hour') RETURNING id",
                "ws%d-%f" % (i, time.time()), uid)[0][0]))
        harness.pg().sql("UPDATE tokens SET web_session = %s WHERE "
                         "family = %s", ws[0], fam)
        harness.pg().sql("INSERT INTO consents (user_id, client_id, scope) "
                         "SELECT %s, id, 'read' FROM clients "
                         "WHERE client_id = 'web'", uid)
        self.assertEqual(self.delete(fam, other["access_token"]).status,
                         204)
        self.assertEqual(harness.pg().sql(
            "SELECT id FROM web_sessions WHERE id IN (%s, %s)",
            ws[0], ws[1]), [(str(ws[1]),)])
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM consents WHERE user_id = %s", uid),
            [("0",)])

    def test_authenticated_like_the_pat_api(self):
        at = self.login()["access_token"]
        pat = self.t.http("POST", "/pats", headers=bearer(at),
                          json={"name": "s"}).json()["token"]
        for h in ({}, bearer(pat), bearer("tka_" + "A" * 49)):
            r = self.t.http("GET", "/sessions", headers=h)
            self.assertEqual(r.status, 401, r)
            self.assertEqual(self.t.http("DELETE", "/sessions/1",
                                         headers=h).status, 401)
        self.assertEqual(self.t.http("POST", "/sessions", json={},
                                     headers=bearer(at)).status, 405)
        harness.tokenctl("client", "add", "third", "--secret-stdin",
                         "--scope", "read", input="third-secret\n")
        r = self.t.http("POST", "/token", headers={
            "Authorization": "Basic " + base64.b64encode(
                b"third:third-secret").decode()}, form={
            "grant_type": "password", "username": "alice",
            "password": "alice-pw", "scope": "read"})
        self.assertEqual(r.status, 200, r)
        r = self.t.http("GET", "/sessions", headers=bearer(
            r.json()["access_token"]))
        self.assert_error(r, 403, "insufficient_scope")

    def test_tokenctl_user_sessions_and_session_revoke(self):
        pair = self.login("bob")
        fam = self.family(pair)
        r = harness.tokenctl("user", "sessions", "bob", "--json")
        got = json.loads(r.stdout)
        self.assertIn(fam, [s["id"] for s in got])
        self.assertEqual({s["client_id"] for s in got}, {"web"})
        self.assertTrue({"id", "client_id", "created_at",
                         "last_used_at"} <= set(got[0]))
        r = harness.tokenctl("user", "sessions", "bob")
        self.assertRegex(r.stdout.splitlines()[0],
                         r"^id +client_id +created_at +last_used_at")
        self.assertEqual(self.auth_all(pair["access_token"], 6), {200})
        r = harness.tokenctl("session", "revoke", fam)
        self.assertEqual(len(r.stdout.splitlines()), 1)
        self.assertIn("session %d" % fam, r.stdout)
        # Within a second on every worker (NOTIFY).
        harness.wait_until(lambda: self.auth_all(
            pair["access_token"], 6) == {401}, timeout=1.5, interval=0.05)
        self.assertNotIn(fam, [s["id"] for s in json.loads(harness.tokenctl(
            "user", "sessions", "bob", "--json").stdout)])
        r = harness.tokenctl("session", "revoke", fam, check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("no live session", r.stderr)
        for args in (("session", "revoke"), ("user", "sessions"),
                     ("session",), ("session", "revoke", "1", "2")):
            r = harness.tokenctl(*args, check=False)
            self.assertEqual(r.returncode, 2, (args, r))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1,
                             r.stderr)
        r = harness.tokenctl("user", "sessions", "nobody", check=False)
        self.assertEqual((r.returncode, r.stderr.strip()),
                         (1, "tokenctl: unknown user nobody"))

    def test_revoke_tokens_keeps_the_user_enabled(self):
        pair = self.login("bob")
        self.assertEqual(self.auth_all(pair["access_token"], 6), {200})
        harness.tokenctl("user", "revoke-tokens", "bob")
        harness.wait_until(lambda: self.auth_all(
            pair["access_token"], 6) == {401}, timeout=1.5, interval=0.05)
        self.assertEqual(harness.pg().sql(
            "SELECT disabled FROM users WHERE name = 'bob'"), [("f",)])
        again = self.login("bob")
        self.assertEqual(self.auth(again["access_token"]), 200)


class ExpiryTest(unittest.TestCase):
    """token_expiring: once per window across two tokend instances on one
    database and a restart; tokenctl token list --expiring.

    A database of its own: a tokend that another test left running on the
    shared one would claim the warnings too, in a log this test does not
    read."""

    def setUp(self):
        self.db = harness.database("tokend_expiry")
        harness.tokenctl("migrate", url=self.db.url)
        self.ctl("user", "add", "carol", "--no-password")
        self.ids = {}
        for name, secs in (("week", 5 * DAY), ("day", DAY // 2),
                           ("month", 30 * DAY), ("gone", 2 * DAY)):
            tok = self.ctl("pat", "create", "--user", "carol", "--name",
                           name, "--expires-in", str(secs)).stdout.strip()
            self.ids[name] = int(self.db.sql(
                "SELECT id FROM tokens WHERE " + harness.BY_TOKEN,
                tok)[0][0])
        self.ctl("token", "revoke", self.ids["gone"])

    def ctl(self, *args, check=True):
        return harness.tokenctl(*args, check=check, url=self.db.url)

    def events(self, *servers):
        out = []
        for t in servers:
            out += [line for line in t.log().splitlines()
                    if "event=token_expiring" in line]
        return out

    def count(self, servers, pid, window):
        return sum(1 for line in self.events(*servers)
                   if " id=%d " % pid in line and "in=%s" % window in line)

    def test_once_across_instances_and_restarts(self):
        conf = {"database_url": self.db.url}
        a = harness.Tokend(workers=1, config=conf)
        b = harness.Tokend(workers=1, config=conf)
        try:
            both = (a, b)
            harness.wait_until(lambda: self.count(both, self.ids["week"],
                                                  "7d") and
                               self.count(both, self.ids["day"], "1d"),
                               timeout=30, msg="no token_expiring")
            line = [x for x in self.events(a, b)
                    if " id=%d " % self.ids["day"] in x][0]
            self.assertIn("user=carol", line)
            self.assertIn("name=day", line)
            self.assertRegex(line, r"token=tkp_\S{4} ")
            self.assertRegex(line, r"expires_at=\d{4}-\d\d-\d\dT")
            # The week one enters its last day: one more, 1d.
            self.db.sql("UPDATE tokens SET expires_at = now() + "
                        "interval '20 hours' WHERE id = %s",
                        self.ids["week"])
            harness.wait_until(lambda: self.count(both, self.ids["week"],
                                                  "1d"), timeout=30)
            a.stop()
            a.start()
            time.sleep(6)       # a sweep of each writer, after the restart
            self.assertEqual(self.count(both, self.ids["week"], "7d"), 1)
            self.assertEqual(self.count(both, self.ids["week"], "1d"), 1)
            self.assertEqual(self.count(both, self.ids["day"], "1d"), 1)
            self.assertEqual(self.count(both, self.ids["day"], "7d"), 0)
            for name in ("month", "gone"):
                self.assertFalse([x for x in self.events(a, b) if
                                  " id=%d " % self.ids[name] in x], name)
        finally:
            a.stop()
            b.stop()

    def test_token_list_expiring(self):
        def listed(secs):
            r = self.ctl("token", "list", "--expiring", secs, "--json")
            return sorted(t["id"] for t in json.loads(r.stdout))
        self.assertEqual(listed(DAY), [self.ids["day"]])
        self.assertEqual(listed(7 * DAY), sorted([self.ids["day"],
                                                  self.ids["week"]]))
        self.assertEqual(listed(60 * DAY), sorted([
            self.ids["day"], self.ids["week"], self.ids["month"]]))
        self.assertEqual(listed(60), [])
        r = self.ctl("token", "list", "--expiring", DAY)
        self.assertTrue(re.search(r"\bday\b", r.stdout), r.stdout)
        for bad in ("0", "x", "-5"):
            r = self.ctl("token", "list", "--expiring", bad, check=False)
            self.assertEqual(r.returncode, 1, (bad, r))
        r = self.ctl("token", "list", "--expiring", check=False)
        self.assertEqual(r.returncode, 2, r)


if __name__ == "__main__":
    unittest.main()

"""Unauthenticated pressure and bad input on the OAuth side (issue 9, items
5, 6, 9 and 10): argon2id time an anonymous client can buy, the login limit
shared by every box on one database, bytes PostgreSQL would refuse, and
identities that must never be cut short."""

import base64
import re
import statistics
import time
import unittest
import urllib.parse

import harness

WINDOW = 60
LOGIN_BODY = {"error": "invalid_grant",
              "error_description": "the username or password is wrong"}


def basic(cid, secret):
    raw = "%s:%s" % (urllib.parse.quote(cid, safe=""),
                     urllib.parse.quote(secret, safe=""))
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def add_client(cid, secret):
    harness.tokenctl("client", "add", cid, "--secret-stdin", "--scope",
                     "read write", input=secret + "\n")


def add_user(name, pw):
    harness.tokenctl("user", "add", name, "--password-stdin", input=pw + "\n")


def metric(t, name):
    text = t.http("GET", "/metrics").text
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def password(user, pw):
    return {"grant_type": "password", "username": user, "password": pw}


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


class OneServer(unittest.TestCase):
    """A fresh database with clients (id: secret) and users (name: password),
    and one tokend with config."""
    clients = {}
    users = {}
    workers = 1
    config = {}

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        for cid, secret in cls.clients.items():
            add_client(cid, secret)
        for name, pw in cls.users.items():
            add_user(name, pw)
        cls.t = harness.Tokend(workers=cls.workers, config=cls.config)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()


class ClientPressureTest(OneServer):
    """Item 5: wrong client secrets cannot fill the hash queue or enumerate
    client ids."""
    clients = {"web": "web-secret", "victim": "victim-secret",
               "locked": "locked-secret"}
    users = {"alice": "alice-pw"}
    workers = 2
    config = {"login_max_failures": 5, "login_window": WINDOW}

    def login(self):
        return self.t.http("POST", "/token", headers=basic("web", "web-secret"),
                           form=password("alice", "alice-pw"), timeout=30)

    def test_a_burst_of_wrong_secrets_does_not_delay_a_real_login(self):
        # What one login costs here when nothing else is going on.
        alone = min(timed(self.login)[1] for _ in range(3))
        # 150 wrong secrets from 127.0.0.2, all sent before the login.
        burst = [harness.conn_from(self.t.port, "127.0.0.2", timeout=30)
                 for _ in range(150)]
        try:
            for i, c in enumerate(burst):
                c.send_request("POST", "/introspect",
                               headers=basic("victim", "guess-%d" % i),
                               form={"token": "x"})
            r, took = timed(self.login)
            statuses = [c.read_response(timeout=60) for c in burst]
        finally:
            for c in burst:
                c.close()
        self.assertEqual(r.status, 200, r)
        # The old code queued every guess ahead of it: 75 hashes a worker.
        # Now at most HASHPOOL_MAX_PER_PEER (8) of that address's wait
        # ahead of it on a worker; the bound leaves room for a loaded box
        # (and ASan) and is still half of what the old code took.
        self.assertLess(took, max(3.0, 40 * alone),
                        "a login waited %.2fs behind the burst (alone "
                        "%.3fs)" % (took, alone))
        codes = {s.status for s in statuses}
        self.assertLessEqual(codes, {401, 429}, codes)
        self.assertIn(429, codes)
        for s in statuses:
            if s.status == 429:
                self.assertGreaterEqual(int(s.header("retry-after")), 1)
                self.assertEqual(s.json()["error"],
                                 "temporarily_unavailable")

    def test_a_client_past_its_failure_limit_gets_429_at_once(self):
        before = metric(self.t, "tokend_login_lockouts_total") or 0
        for i in range(5):
            r = self.t.http("POST", "/token",
                            headers=basic("locked", "wrong-%d" % i),
                            form={"grant_type": "client_credentials"})
            self.assertEqual(r.status, 401, r)
        # Refused before argon2id, even with the right secret.
        r, took = timed(lambda: self.t.http(
            "POST", "/token", headers=basic("locked", "locked-secret"),
            form={"grant_type": "client_credentials"}))
        self.assertEqual(r.status, 429, r)
        self.assertGreater(int(r.header("retry-after")), WINDOW - 15)
        self.assertLessEqual(int(r.header("retry-after")), WINDOW)
        self.assertEqual(r.header("cache-control"), "no-store")
        self.assertEqual(r.json()["error"], "temporarily_unavailable")
        self.assertIn("error_description", r.json())
        self.assertLess(took, 1.0)
        self.assertGreater(metric(self.t, "tokend_login_lockouts_total"),
                           before)
        self.assertIn("event=client_rate_limited", self.t.log())
        # Another client is not affected.
        r = self.t.http("POST", "/token", headers=basic("web", "web-secret"),
                        form={"grant_type": "client_credentials"})
        self.assertEqual(r.status, 200, r)


class ClientTimingTest(OneServer):
    """Item 5: an unknown client id costs what a wrong secret costs."""
    clients = {"known": "known-secret"}
    config = {"login_max_failures": 1000, "login_window": WINDOW}

    def attempt(self, cid):
        return timed(lambda: self.t.http(
            "POST", "/token", headers=basic(cid, "not-the-secret"),
            form={"grant_type": "client_credentials"}))

    def test_unknown_and_known_client_ids_cost_the_same(self):
        known, unknown = [], []
        bodies = set()
        for i in range(7):
            for cid, out in (("known", known), ("nobody-%d" % i, unknown)):
                r, took = self.attempt(cid)
                self.assertEqual(r.status, 401, r)
                self.assertEqual(r.header("www-authenticate"),
                                 'Basic realm="tokend"')
                bodies.add(r.body)
                out.append(took)
        self.assertEqual(len(bodies), 1, bodies)
        k, u = statistics.median(known), statistics.median(unknown)
        # Loose on purpose: argon2id against no hash at all was ~30x
        # cheaper; a factor of 3 is noise on a loaded box.
        self.assertLess(k / u, 3, "known %.4fs, unknown %.4fs" % (k, u))
        self.assertLess(u / k, 3, "known %.4fs, unknown %.4fs" % (k, u))


class SharedLoginLimitTest(unittest.TestCase):
    """Item 6: two boxes on one database share one login limit."""

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        add_client("web", "web-secret")
        config = {"login_max_failures": 5, "login_window": WINDOW}
        cls.t1 = harness.Tokend(workers=1, config=config)
        cls.t2 = harness.Tokend(workers=1, config=config)

    @classmethod
    def tearDownClass(cls):
        cls.t1.stop()
        cls.t2.stop()

    def attempt(self, t, user, pw):
        return t.http("POST", "/token", headers=basic("web", "web-secret"),
                      form=password(user, pw))

    def test_failures_on_two_boxes_add_up(self):
        add_user("carol", "carol-pw")
        before = metric(self.t2, "tokend_login_lockouts_total")
        for t in (self.t1, self.t2, self.t1, self.t2, self.t1):
            r = self.attempt(t, "carol", "wrong")
            self.assertEqual(r.status, 400, r)
            self.assertEqual(r.json(), LOGIN_BODY)
        for t in (self.t2, self.t1):
            r = self.attempt(t, "carol", "carol-pw")
            self.assertEqual(r.status, 429, r)
            self.assertGreater(int(r.header("retry-after")), WINDOW - 15)
            self.assertEqual(r.header("cache-control"), "no-store")
            self.assertEqual(r.json()["error"], "temporarily_unavailable")
        self.assertEqual(metric(self.t2, "tokend_login_lockouts_total"),
                         (before or 0) + 1)
        self.assertIn("event=login_rate_limited", self.t2.log())

        out = harness.tokenctl("user", "unlock", "carol")
        self.assertIn("carol", out.stdout)
        for t in (self.t2, self.t1):
            r = self.attempt(t, "carol", "carol-pw")
            self.assertEqual(r.status, 200, r)

    def test_unknown_users_get_the_same_answers(self):
        add_user("dave", "dave-pw")
        known, unknown = [], []
        for i, t in enumerate((self.t1, self.t2) * 3):
            known.append(self.attempt(t, "dave", "wrong"))
            unknown.append(self.attempt(t, "nobody", "wrong"))
        for a, b in zip(known, unknown):
            self.assertEqual(a.status, b.status)
            self.assertEqual(a.json(), b.json())
        self.assertEqual([r.status for r in unknown], [400] * 5 + [429])

    def test_unlock_of_an_unknown_user_fails(self):
        r = harness.tokenctl("user", "unlock", "nobody-at-all", check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn("unknown user", r.stderr)

    def test_old_windows_are_deleted(self):
        harness.pg().sql(
            "INSERT INTO login_failures (name, window_start, failures) "
            "VALUES ('stale', now() - interval '1 day', 3)")
        self.assertEqual(self.attempt(self.t1, "erin", "x").status, 400)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM login_failures WHERE name = 'stale'"),
            [("0",)])
        self.assertEqual(harness.pg().sql(
            "SELECT failures FROM login_failures WHERE name = 'erin'"),
            [("1",)])


class BadBytesTest(OneServer):
    """Item 9: text PostgreSQL would refuse never reaches it."""
    clients = {"web": "web-secret"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        harness.tokenctl("client", "add", "spa", "--public", "--redirect-uri",
                         "https://spa.example/cb", "--scope", "read")

    def test_non_utf8_values_are_refused_before_any_query(self):
        before = metric(self.t, "tokend_pg_errors_total")
        r = self.t.http("POST", "/token", form={
            "grant_type": "client_credentials", "client_id": b"\xff\xfe",
            "client_secret": "x"})
        self.assertEqual((r.status, r.json()["error"]),
                         (401, "invalid_client"), r)
        bad_basic = base64.b64encode(b"%C3%28:secret").decode()
        r = self.t.http("POST", "/introspect",
                        headers={"Authorization": "Basic " + bad_basic},
                        form={"token": "x"})
        self.assertEqual((r.status, r.json()["error"]),
                         (401, "invalid_client"), r)
        self.assertEqual(r.header("www-authenticate"), 'Basic realm="tokend"')
        r = self.t.http("POST", "/token", headers=basic("web", "web-secret"),
                        form={"grant_type": "password",
                              "username": b"al\xe9x", "password": "pw"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json(), LOGIN_BODY)
        r = self.t.http("POST", "/token", form={
            "grant_type": "authorization_code", "client_id": "spa",
            "code": "tkc_x", "redirect_uri": b"https://spa.example/\xc0\xaf",
            "code_verifier": "v" * 43})
        self.assertEqual((r.status, r.json()["error"]),
                         (400, "invalid_request"), r)
        self.assertEqual(metric(self.t, "tokend_pg_errors_total"), before)
        self.assertNotIn("level=error", self.t.log())


LONG = "u" * 127


class TruncationTest(OneServer):
    """Item 10: an identity is refused where it would not fit, never cut."""
    clients = {"web": "web-secret"}

    def test_tokenctl_refuses_a_128_character_name(self):
        r = harness.tokenctl("user", "add", LONG + "a", "--password-stdin",
                             input="pw\n", check=False)
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM users WHERE name = %s", LONG + "a"),
            [("0",)])
        add_user(LONG, "pw")

    def test_the_schema_refuses_long_names_and_client_ids(self):
        with self.assertRaises(harness.SQLError):
            harness.pg().sql("INSERT INTO users (name) VALUES (%s)",
                             LONG + "b")
        with self.assertRaises(harness.SQLError):
            harness.pg().sql("INSERT INTO clients (client_id, public) "
                             "VALUES (%s, true)", "c" * 128)

    def test_rows_from_before_the_check_are_refused_not_truncated(self):
        # Two users from before migration 006, sharing 127 characters.
        db = harness.pg()
        had = db.sql("SELECT count(*) FROM pg_constraint "
                     "WHERE conname = 'users_name_length'") == [("1",)]
        if had:
            db.sql("ALTER TABLE users DROP CONSTRAINT users_name_length")
        try:
            for last in "xy":
                db.sql("INSERT INTO users (name) VALUES (%s)", LONG + last)
        finally:
            if had:
                db.sql("ALTER TABLE users ADD CONSTRAINT users_name_length "
                       "CHECK (octet_length(name) BETWEEN 1 AND 127) "
                       "NOT VALID")
        for last in "xy":
            out = harness.tokenctl("pat", "create", "--user", LONG + last,
                                   "--name", "old").stdout
            tok = re.search(r"tkp_\w+", out).group(0)
            r = self.t.http("GET", "/auth",
                            headers={"Authorization": "Bearer " + tok})
            self.assertNotEqual(r.status, 200, r)
            self.assertIsNone(r.header("x-auth-user"))
        self.assertIn("event=token_refused", self.t.log())
        self.assertNotIn("level=error", self.t.log())


if __name__ == "__main__":
    unittest.main()

"""The PAT API (SPEC section 4): POST /pats, GET /pats, DELETE /pats/ID,
authenticated with a user's access token only, isolated per user."""

import base64
import time
import unittest

import harness

WEB = {"Authorization": "Basic " +
       base64.b64encode(b"web:web-secret").decode()}


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


class PatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("client", "add", "web", "--secret-stdin", "--scope",
                         "read write admin", "--first-party",
                         input="web-secret\n")
        for u in ("alice", "bob"):
            harness.tokenctl("user", "add", u, "--password-stdin",
                             input=u + "-pw\n")
        cls.t = harness.Tokend(workers=2, config={
            "usage_flush_interval": 0.2})
        cls.alice = cls.login("alice", "read write")
        cls.bob = cls.login("bob", "read write")

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    @classmethod
    def login(cls, user, scope):
        r = cls.t.http("POST", "/token", headers=WEB, form={
            "grant_type": "password", "username": user,
            "password": user + "-pw", "scope": scope})
        assert r.status == 200, r
        return r.json()["access_token"]

    def create(self, tok=None, **body):
        return self.t.http("POST", "/pats", headers=bearer(tok or self.alice),
                           json=body)

    def listing(self, tok=None):
        r = self.t.http("GET", "/pats", headers=bearer(tok or self.alice))
        self.assertEqual(r.status, 200, r)
        return r.json()

    def delete(self, pid, tok=None):
        return self.t.http("DELETE", "/pats/%s" % pid,
                           headers=bearer(tok or self.alice))

    def auth(self, tok):
        return self.t.http("GET", "/auth", headers=bearer(tok))

    def assert_error(self, r, status, error):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["error"], error, r)

    def test_create_use_list_delete(self):
        r = self.create(name="deploy key", scope="read", expires_in=3600)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("cache-control"), "no-store")
        p = r.json()
        self.assertEqual(set(p), {"id", "token", "name", "scope",
                                  "created_at", "expires_at"})
        self.assertRegex(p["token"], r"^tkp_[0-9A-Za-z]{49}$")
        self.assertEqual((p["name"], p["scope"]), ("deploy key", "read"))
        self.assertRegex(p["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        a = self.auth(p["token"])
        self.assertEqual(a.status, 200)
        self.assertEqual(a.header("x-auth-token-kind"), "pat")
        self.assertEqual(a.header("x-auth-user"), "alice")
        self.assertEqual(a.header("x-auth-scope"), "read")
        self.assertAlmostEqual(int(a.header("x-auth-expires")),
                               time.time() + 3600, delta=10)
        harness.wait_until(lambda: [x for x in self.listing()
                                    if x["id"] == p["id"]][0]["use_count"]
                           == 1, timeout=5)
        mine = [x for x in self.listing() if x["id"] == p["id"]][0]
        self.assertEqual(set(mine), {"id", "name", "prefix", "scope",
                                     "created_at", "expires_at",
                                     "last_used_at", "use_count",
                                     # SPEC 13 (issue 14)
                                     "last_used_ip", "allowed_ips", "rate"})
        self.assertEqual(mine["prefix"], p["token"][:8])
        self.assertIsNotNone(mine["last_used_at"])
        self.assertNotIn(p["token"], self.t.http(
            "GET", "/pats", headers=bearer(self.alice)).text)
        r = self.delete(p["id"])
        self.assertEqual(r.status, 204)
        self.assertEqual(r.body, b"")
        for _ in range(3):      # gone from every worker's cache at once
            self.assertEqual(self.auth(p["token"]).status, 401)
        self.assertNotIn(p["id"], [x["id"] for x in self.listing()])
        self.assert_error(self.delete(p["id"]), 404, "not_found")
        self.assertIn("event=token_revoked", self.t.log())
        self.assertNotIn(p["token"], self.t.log())

    def test_defaults(self):
        # Omitted (or null) expires_in is pat_max_lifetime, 90 days by
        # default; never only when that limit is 0 (test_security_oauth).
        p = self.create(name="ci").json()
        self.assertEqual(p["scope"], "read write")   # the access token's
        self.assertIsNotNone(p["expires_at"])
        self.assertAlmostEqual(int(self.auth(p["token"]).header(
            "x-auth-expires")), time.time() + 7776000, delta=10)
        p = self.create(name="n", scope=None, expires_in=None).json()
        self.assertIsNotNone(p["expires_at"])

    def test_isolation_between_users(self):
        a = self.create(name="alice's").json()
        b = self.create(self.bob, name="bob's").json()
        self.assertEqual([x["name"] for x in self.listing(self.bob)
                          if x["id"] == b["id"]], ["bob's"])
        self.assertNotIn(a["id"], [x["id"] for x in self.listing(self.bob)])
        self.assertNotIn(b["id"], [x["id"] for x in self.listing()])
        # Another user's id answers exactly like an unknown one.
        other = self.delete(a["id"], self.bob)
        unknown = self.delete(999999, self.bob)
        self.assert_error(other, 404, "not_found")
        self.assertEqual(other.body, unknown.body)
        self.assertEqual(self.auth(a["token"]).status, 200)
        for bad in ("0", "-1", "abc", "1x", "99999999999999999999", ""):
            self.assertEqual(self.delete(bad).status, 404, bad)

    def test_access_token_only(self):
        pat = self.create(name="p").json()["token"]
        r = self.t.http("POST", "/token", headers=WEB,
                        form={"grant_type": "client_credentials"})
        cc = r.json()["access_token"]
        refresh = self.t.http("POST", "/token", headers=WEB, form={
            "grant_type": "password", "username": "alice",
            "password": "alice-pw"}).json()["refresh_token"]
        for tok in (pat, cc, refresh, "tka_bogus"):
            for r in (self.create(tok, name="x"),
                      self.t.http("GET", "/pats", headers=bearer(tok)),
                      self.delete(1, tok)):
                self.assertEqual(r.status, 401, (tok[:4], r))
                self.assertIn('error="invalid_token"',
                              r.header("www-authenticate"))
        r = self.t.http("GET", "/pats")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("www-authenticate"), 'Bearer realm="tokend"')
        revoked = self.login("bob", "read")
        self.t.http("POST", "/revoke", headers=WEB, form={"token": revoked})
        self.assertEqual(self.t.http("GET", "/pats",
                                     headers=bearer(revoked)).status, 401)

    def test_scope_cannot_grow(self):
        narrow = self.login("alice", "read")
        self.assert_error(self.create(narrow, name="x", scope="read write"),
                          400, "invalid_scope")
        self.assert_error(self.create(name="x", scope="bad\\scope"), 400,
                          "invalid_scope")
        p = self.create(narrow, name="x", scope="read  read").json()
        self.assertEqual(p["scope"], "read")

    def test_bad_bodies(self):
        h = dict(bearer(self.alice), **{"Content-Type": "application/json"})
        for raw in ("", "[]", '"name"', "{", '{"name": 1}', '{"name": ""}',
                    '{"name": "a\\u0001b"}', '{"name": "%s"}' % ("x" * 129),
                    '{"name": "n", "expires_in": 59}',
                    '{"name": "n", "expires_in": "3600"}',
                    '{"name": "n", "expires_in": 1.5}',
                    '{"name": "n", "expires_in": 315360001}',
                    '{"name": "n", "scope": 7}',
                    '{"name": "a", "name": "b"}'):
            r = self.t.http("POST", "/pats", headers=h, body=raw)
            self.assertEqual(r.status, 400, raw)
            self.assertIn(r.json()["error"], ("invalid_request",
                                              "invalid_scope"))
        r = self.t.http("POST", "/pats", headers=bearer(self.alice),
                        form={"name": "x"})
        self.assertEqual(r.status, 415)
        self.assertEqual(r.json()["error"], "invalid_request")
        r = self.create(name="fine", comment="unknown keys are ignored")
        self.assertEqual(r.status, 201)
        r = self.t.http("PUT", "/pats", headers=bearer(self.alice), body="")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD, POST")
        r = self.t.http("GET", "/pats/1", headers=bearer(self.alice))
        self.assertEqual(r.status, 405)

    def test_disabled_user(self):
        harness.tokenctl("user", "add", "carol", "--password-stdin",
                         input="carol-pw\n")
        tok = self.login("carol", "read")
        p = self.create(tok, name="c").json()
        harness.tokenctl("user", "disable", "carol")
        harness.wait_until(lambda: self.auth(p["token"]).status == 401,
                           timeout=2)
        harness.wait_until(lambda: self.create(tok, name="d").status == 401,
                           timeout=2)


if __name__ == "__main__":
    unittest.main()

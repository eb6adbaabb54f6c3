"""Issue 9, items 1, 2, 7 and 8: what a token or a client may do through
the OAuth endpoints (SPEC sections 4 and 12).

- /authorize and the PAT API take only access tokens of first-party
  clients, and a code's scope stays within the bearer token's;
- POST /pats keeps within pat_max_lifetime and needs a fresh access token;
- /introspect is for clients registered with --introspect, and a refresh
  token is active only to its own client;
- a refresh follows the client's current scope, a narrower scope narrows
  that access token only, and a family ends refresh_family_max_age after
  its sign-in.

Each test fails on the code before this change (which had none of these
rules, nor migration 005's columns or the tokenctl flags)."""

import time
import unittest

import harness
from test_oauth import BAD_GRANT, basic, bearer, pkce

PAT_MAX = 86400
FAMILY_MAX = 3600
FLUSH = 0.2
WEB_REDIRECT = "https://app.example/cb"
WIDE_REDIRECT = "https://wide.example/cb"


WEB = basic("web", "web-secret")          # first-party, may introspect
THIRD = basic("third", "third-secret")    # neither
PEER = basic("peer", "peer-secret")       # may introspect
SHRINK = basic("shrink", "shrink-secret")


def add_client(cid, *flags, scope="read write", secret=True):
    args = ["client", "add", cid, "--scope", scope] + list(flags)
    if secret:
        harness.tokenctl(*args, "--secret-stdin", input=cid + "-secret\n")
    else:
        harness.tokenctl(*args, "--public")


class Base(unittest.TestCase):
    config = {}

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        add_client("web", "--first-party", "--introspect",
                   "--redirect-uri", WEB_REDIRECT)
        add_client("third", scope="read write admin")
        add_client("peer", "--introspect")
        add_client("shrink", "--first-party")
        add_client("fp", "--first-party")
        add_client("wide", "--redirect-uri", WIDE_REDIRECT,
                   scope="read write admin", secret=False)
        add_client("narrow", "--redirect-uri", WIDE_REDIRECT,
                   scope="admin read", secret=False)
        harness.tokenctl("user", "add", "alice", "--password-stdin",
                         input="alice-pw\n")
        config = {"usage_flush_interval": FLUSH, "login_max_failures": 100,
                  "pat_max_lifetime": PAT_MAX,
                  "refresh_family_max_age": FAMILY_MAX}
        config.update(cls.config)
        cls.t = harness.Tokend(workers=2, config=config)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def login(self, client=WEB, scope=None):
        form = {"grant_type": "password", "username": "alice",
                "password": "alice-pw"}
        if scope is not None:
            form["scope"] = scope
        r = self.t.http("POST", "/token", headers=client, form=form)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def authorize(self, at, client="wide", uri=WIDE_REDIRECT, **extra):
        body = dict(client_id=client, redirect_uri=uri, state="s",
                    code_challenge=pkce()[1],
                    code_challenge_method="S256", **extra)
        return self.t.http("POST", "/authorize", headers=bearer(at),
                           json=body)

    def create_pat(self, at, **body):
        body.setdefault("name", "p")
        return self.t.http("POST", "/pats", headers=bearer(at), json=body)

    def refresh(self, rt, client=WEB, **extra):
        return self.t.http("POST", "/token", headers=client, form=dict(
            grant_type="refresh_token", refresh_token=rt, **extra))

    def row(self, tok, cols):
        return harness.pg().sql("SELECT %s FROM tokens WHERE " % cols +
                                harness.BY_TOKEN, tok)[0]

    def assert_error(self, r, status, error):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["error"], error, r)
        self.assertIn("error_description", r.json())

    def assert_not_first_party(self, r):
        self.assert_error(r, 403, "insufficient_scope")
        self.assertEqual(r.header("www-authenticate"),
                         'Bearer realm="tokend", error="insufficient_scope"')


class FirstPartyTest(Base):
    def test_another_clients_token_cannot_authorize(self):
        at = self.login(THIRD, "read")["access_token"]
        codes = harness.pg().sql("SELECT count(*) FROM tokens "
                                 "WHERE kind = 'code'")
        r = self.authorize(at)
        self.assert_not_first_party(r)
        self.assertEqual(harness.pg().sql("SELECT count(*) FROM tokens "
                                          "WHERE kind = 'code'"), codes)
        # Even for a client it was issued to, or with no scope asked.
        self.assert_not_first_party(self.authorize(at, scope="read"))

    def test_another_clients_token_cannot_use_the_pat_api(self):
        at = self.login(THIRD)["access_token"]
        pat = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "ops").stdout.strip()
        pid = self.row(pat, "id")[0]
        self.assert_not_first_party(self.create_pat(at))
        self.assert_not_first_party(self.t.http("GET", "/pats",
                                                headers=bearer(at)))
        self.assert_not_first_party(self.t.http(
            "DELETE", "/pats/%s" % pid, headers=bearer(at)))
        self.assertEqual(self.row(pat, "revoked_at IS NULL")[0], "t")
        self.assertEqual(self.t.http("GET", "/auth",
                                     headers=bearer(pat)).status, 200)

    def test_code_scope_stays_within_the_bearer_tokens(self):
        at = self.login(scope="read")["access_token"]
        r = self.authorize(at)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.row(r.json()["code"], "scope")[0], "read")
        for wide in ("read write admin", "admin", "read write"):
            self.assert_error(self.authorize(at, scope=wide), 400,
                              "invalid_scope")
        r = self.authorize(at, scope="read")
        self.assertEqual(self.row(r.json()["code"], "scope")[0], "read")

    def test_default_scope_is_the_intersection(self):
        at = self.login(scope="read write")["access_token"]
        r = self.authorize(at, client="narrow")     # narrow: "admin read"
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.row(r.json()["code"], "scope")[0], "read")

    def test_the_flag_counts_at_once(self):
        """The flag is read from PostgreSQL at each call, not from the
        cache that holds the bearer token."""
        at = self.login(basic("fp", "fp-secret"))["access_token"]
        self.assertEqual(self.t.http("GET", "/auth",
                                     headers=bearer(at)).status, 200)
        self.assertEqual(self.authorize(at).status, 200)
        harness.pg().sql("UPDATE clients SET first_party = false "
                         "WHERE client_id = 'fp'")
        try:
            self.assert_not_first_party(self.authorize(at))
            self.assert_not_first_party(self.t.http("GET", "/pats",
                                                    headers=bearer(at)))
        finally:
            harness.pg().sql("UPDATE clients SET first_party = true "
                             "WHERE client_id = 'fp'")
        self.assertEqual(self.authorize(at).status, 200)
        self.assertEqual(self.t.http("GET", "/pats",
                                     headers=bearer(at)).status, 200)

    def test_sql_functions_refuse_by_themselves(self):
        """A slip in C, or a caller other than the worker, still cannot
        pass the rules: tokend_authorize and tokend_pat_create read the
        bearer token's row and client themselves."""
        uid = harness.pg().sql("SELECT id FROM users "
                               "WHERE name = 'alice'")[0][0]
        third = self.row(self.login(THIRD)["access_token"], "id")[0]
        mine = self.login(scope="read")["access_token"]
        web = self.row(mine, "id")[0]

        def authorize(tid, scope):
            return harness.pg().sql(
                "SELECT o_status FROM tokend_authorize('wide', %s, %s, "
                "%s, sha256(random()::text::bytea), 'tkc_test', 'c', 60, "
                "%s)", WIDE_REDIRECT, scope, int(uid), int(tid))[0][0]

        def pat(tid, expires, maxlife=PAT_MAX):
            return harness.pg().sql(
                "SELECT o_status FROM tokend_pat_create(%s, 'n', 'read', "
                "%s, sha256(random()::text::bytea), 'tkp_test', %s, 600, "
                "%s)", int(uid), expires, int(tid), maxlife)[0][0]

        self.assertEqual(authorize(third, None), "not_first_party")
        self.assertEqual(authorize(web, "admin"), "invalid_scope")
        self.assertEqual(authorize(web, None), "ok")
        self.assertEqual(pat(third, 60), "not_first_party")
        self.assertEqual(pat(web, PAT_MAX + 1), "invalid_lifetime")
        self.assertEqual(pat(web, None), "invalid_lifetime")
        self.assertEqual(pat(web, None, 0), "ok")
        harness.pg().sql("UPDATE tokens SET created_at = now() - "
                         "interval '11 minutes' WHERE id = %s", int(web))
        self.assertEqual(pat(web, 60), "reauthentication_required")

    def test_clients_have_no_rights_unless_given(self):
        add_client("plain")
        self.assertEqual(harness.pg().sql(
            "SELECT first_party, introspect FROM clients "
            "WHERE client_id = 'plain'"), [("f", "f")])
        r = harness.tokenctl("client", "add", "pub", "--public",
                             "--introspect", check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("cannot introspect", r.stderr)


class PatLimitsTest(Base):
    def test_lifetime_is_capped(self):
        at = self.login()["access_token"]
        self.assert_error(self.create_pat(at, expires_in=PAT_MAX + 1), 400,
                          "invalid_request")
        for body in ({}, {"expires_in": None}, {"expires_in": PAT_MAX}):
            r = self.create_pat(at, **body)
            self.assertEqual(r.status, 201, (body, r))
            exp = self.t.http("GET", "/auth", headers=bearer(
                r.json()["token"])).header("x-auth-expires")
            self.assertAlmostEqual(int(exp), time.time() + PAT_MAX, delta=10)

    def test_operator_may_still_create_what_it_asks_for(self):
        pat = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "long", "--expires-in",
                               str(PAT_MAX * 10)).stdout.strip()
        self.assertEqual(self.t.http("GET", "/auth", headers=bearer(
            pat)).status, 200)
        pat = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "never").stdout.strip()
        self.assertEqual(self.row(pat, "expires_at IS NULL")[0], "t")

    def test_needs_an_access_token_issued_less_than_10_minutes_ago(self):
        at = self.login()["access_token"]
        self.assertEqual(self.create_pat(at).status, 201)
        # Aged in PostgreSQL; the expiry change drops it from the cache, so
        # the worker sees the old iat too once the notification is in.
        harness.pg().sql("UPDATE tokens SET created_at = now() - interval "
                         "'601 seconds', expires_at = expires_at + "
                         "interval '1 second' WHERE " + harness.BY_TOKEN, at)
        n = harness.pg().sql("SELECT count(*) FROM tokens WHERE kind = 'pat'")
        for _ in range(3):
            self.assert_error(self.create_pat(at), 403,
                              "reauthentication_required")
        self.assertEqual(harness.pg().sql("SELECT count(*) FROM tokens "
                                          "WHERE kind = 'pat'"), n)
        # Listing and deleting need no fresh sign-in.
        self.assertEqual(self.t.http("GET", "/pats", headers=bearer(
            at)).status, 200)
        self.assertEqual(self.create_pat(self.login()["access_token"]).status,
                         201)

    def test_no_limit_means_never(self):
        t = harness.Tokend(workers=1, config={"pat_max_lifetime": 0})
        try:
            r = t.http("POST", "/token", headers=WEB, form={
                "grant_type": "password", "username": "alice",
                "password": "alice-pw"})
            at = r.json()["access_token"]
            r = t.http("POST", "/pats", headers=bearer(at),
                       json={"name": "forever"})
            self.assertEqual(r.status, 201, r)
            self.assertIsNone(r.json()["expires_at"])
            r = t.http("POST", "/pats", headers=bearer(at),
                       json={"name": "long", "expires_in": 315360000})
            self.assertEqual(r.status, 201, r)
        finally:
            t.stop()


class IntrospectRightsTest(Base):
    def introspect(self, tok, client):
        return self.t.http("POST", "/introspect", headers=client,
                           form={"token": tok})

    def test_only_clients_registered_to_introspect(self):
        tok = self.login()["access_token"]
        r = self.introspect(tok, THIRD)
        self.assert_error(r, 403, "unauthorized_client")
        self.assertEqual(r.header("cache-control"), "no-store")
        self.assertNotIn("active", r.json())
        # Authentication comes first: a wrong secret is still 401.
        self.assert_error(self.introspect(tok, basic("third", "nope")), 401,
                          "invalid_client")
        self.assertEqual(self.introspect(tok, PEER).json()["active"], True)
        # Only the allowed answer counted a use.
        harness.wait_until(lambda: self.row(tok, "use_count")[0] == "1",
                           timeout=5)
        time.sleep(3 * FLUSH)
        for _ in range(3):
            self.assertEqual(self.introspect(tok, THIRD).status, 403)
        time.sleep(3 * FLUSH)
        self.assertEqual(self.row(tok, "use_count")[0], "1")

    def test_refresh_token_only_to_its_own_client(self):
        rt = self.login()["refresh_token"]
        self.assertEqual(self.introspect(rt, PEER).json(), {"active": False})
        i = self.introspect(rt, WEB).json()
        self.assertEqual((i["active"], i["client_id"], i["username"]),
                         (True, "web", "alice"))


class RefreshLimitsTest(Base):
    def test_follows_the_clients_current_scope(self):
        j = self.login(SHRINK, "read write")
        harness.pg().sql("UPDATE clients SET scope = 'read' "
                         "WHERE client_id = 'shrink'")
        r = self.refresh(j["refresh_token"], SHRINK)
        self.assertEqual(r.status, 200, r)
        k = r.json()
        self.assertEqual(k["scope"], "read")
        self.assertEqual(self.row(k["refresh_token"], "scope")[0], "read")
        a = self.t.http("GET", "/auth", headers=bearer(k["access_token"]))
        self.assertEqual(a.header("x-auth-scope"), "read")
        self.assertEqual(self.refresh(k["refresh_token"], SHRINK).json()[
            "scope"], "read")

    def test_narrower_scope_narrows_the_access_token_only(self):
        j = self.login(scope="read write")
        k = self.refresh(j["refresh_token"], scope="read").json()
        self.assertEqual(k["scope"], "read")
        self.assertEqual(self.row(k["access_token"], "scope")[0], "read")
        self.assertEqual(self.row(k["refresh_token"], "scope")[0],
                         "read write")
        r = self.refresh(k["refresh_token"])
        self.assertEqual(r.json()["scope"], "read write")

    def test_family_ends_max_age_after_its_sign_in(self):
        j = self.login()
        root, fam, signed_in = self.row(
            j["refresh_token"], "id, family, "
            "extract(epoch FROM created_at)")
        self.assertEqual(root, fam)
        rt = j["refresh_token"]
        for _ in range(3):
            k = self.refresh(rt).json()
            rt = k["refresh_token"]
            exp = float(self.row(rt, "extract(epoch FROM expires_at)")[0])
            self.assertLessEqual(exp, float(signed_in) + FAMILY_MAX + 1)
        # The sign-in, an hour and a second ago: the family is over.
        harness.pg().sql("UPDATE tokens SET created_at = created_at - "
                         "interval '3601 seconds', auth_time = auth_time - "
                         "interval '3601 seconds' WHERE family = %s",
                         int(fam))
        self.assertEqual(self.refresh(rt).json(), BAD_GRANT)
        # Ended, not revoked: the last access token lives out its time.
        self.assertEqual(self.t.http("GET", "/auth", headers=bearer(
            k["access_token"])).status, 200)
        self.assertEqual(self.row(rt, "revoked_at IS NULL")[0], "t")


if __name__ == "__main__":
    unittest.main()

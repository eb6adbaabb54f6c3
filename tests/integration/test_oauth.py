"""OAuth 2.0 (SPEC section 4): /token's four grants, /authorize, /introspect,
/revoke and the RFC 8414 metadata, through HTTP against the real server."""

import base64
import hashlib
import os
import json
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest
import urllib.parse

import harness

GRACE = 2
FLUSH = 0.2
REDIRECT = "https://app.example/cb"
SPA_REDIRECT = "http://127.0.0.1:9/cb?x=1"

BAD_GRANT = {"error": "invalid_grant", "error_description":
             "the grant is invalid, expired, revoked or was already used"}


def basic(cid, secret):
    raw = "%s:%s" % (urllib.parse.quote(cid, safe=""),
                     urllib.parse.quote(secret, safe=""))
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


WEB = basic("web", "web-secret")
SVC = basic("svc", "svc-secret")


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def pkce():
    verifier = base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("=")
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def add_clients():
    # web's users may call /authorize (first-party); web and svc introspect.
    harness.tokenctl("client", "add", "web", "--secret-stdin",
                     "--redirect-uri", REDIRECT, "--redirect-uri",
                     "https://app.example/other", "--scope", "read write",
                     "--first-party", "--introspect", input="web-secret\n")
    harness.tokenctl("client", "add", "svc", "--secret-stdin", "--scope",
                     "api read", "--introspect", input="svc-secret\n")
    harness.tokenctl("client", "add", "odd:id%", "--secret-stdin", "--scope",
                     "read", input="p@ss:w0rd+\n")
    harness.tokenctl("client", "add", "spa", "--public", "--redirect-uri",
                     SPA_REDIRECT, "--scope", "read write")


def add_user(name, pw):
    harness.tokenctl("user", "add", name, "--password-stdin", input=pw + "\n")


def proc_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rpartition(")")[2].split()[0]


def conn_on_each_worker(t):
    """One keep-alive connection accepted by each worker, in worker order.

    The listeners are shared with EPOLLEXCLUSIVE, which hands a new
    connection to the first worker that is waiting in epoll_wait; a worker
    stopped with SIGSTOP is not waiting, so stopping all but one decides
    who accepts."""
    kids = t.children()
    workers = sorted(k for k in kids if k.startswith("worker"))
    conns = []
    for w in workers:
        others = [kids[o] for o in workers if o != w]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
            harness.wait_until(lambda: proc_state(pid) == "T", timeout=5)
        try:
            c = t.conn()
            # Answered, so accepted, before the others wake up.
            assert c.request("GET", "/healthz").status == 200
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)
        conns.append(c)
    return conns


class OAuthBase(unittest.TestCase):
    config = {}

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        add_clients()
        add_user("alice", "alice-pw")
        add_user("bob", "bob-pw")
        config = {"refresh_grace": GRACE, "usage_flush_interval": FLUSH,
                  "login_max_failures": 100,
                  "scopes_supported": "read write api"}
        config.update(cls.config)
        cls.t = harness.Tokend(workers=2, config=config)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def token(self, form, headers=WEB):
        r = self.t.http("POST", "/token", headers=headers, form=form)
        self.assertEqual(r.header("cache-control"), "no-store", r)
        self.assertEqual(r.header("pragma"), "no-cache", r)
        return r

    def login(self, user="alice", pw=None, scope=None, headers=WEB):
        form = {"grant_type": "password", "username": user,
                "password": pw or user + "-pw"}
        if scope is not None:
            form["scope"] = scope
        r = self.token(form, headers)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def refresh(self, rt, headers=WEB, **extra):
        return self.token(dict(grant_type="refresh_token", refresh_token=rt,
                               **extra), headers)

    def auth(self, tok):
        return self.t.http("GET", "/auth", headers=bearer(tok)).status

    def assert_error(self, r, status, error):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["error"], error, r)
        self.assertIn("error_description", r.json())

    def row(self, tok, cols="revoked_at IS NOT NULL"):
        return harness.pg().sql("SELECT %s FROM tokens WHERE " % cols +
                                harness.BY_TOKEN, tok)


class ClientCredentialsTest(OAuthBase):
    def test_access_token_only_and_default_scope(self):
        r = self.token({"grant_type": "client_credentials"}, SVC)
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertRegex(j["access_token"], r"^tka_[0-9A-Za-z]{49}$")
        self.assertEqual(j["token_type"], "Bearer")
        self.assertEqual(j["expires_in"], 900)
        self.assertEqual(j["scope"], "api read")
        self.assertNotIn("refresh_token", j)
        a = self.t.http("GET", "/auth", headers=bearer(j["access_token"]))
        self.assertEqual(a.status, 200)
        self.assertEqual(a.header("x-auth-user"), "")
        self.assertEqual(a.header("x-auth-user-id"), "")
        self.assertEqual(a.header("x-auth-client"), "svc")

    def test_scope_must_be_within_the_clients(self):
        r = self.token({"grant_type": "client_credentials", "scope": "read"},
                       SVC)
        self.assertEqual(r.json()["scope"], "read")
        r = self.token({"grant_type": "client_credentials",
                        "scope": "read admin"}, SVC)
        self.assert_error(r, 400, "invalid_scope")
        r = self.token({"grant_type": "client_credentials",
                        "scope": "bad\"scope"}, SVC)
        self.assert_error(r, 400, "invalid_scope")

    def test_public_client_is_unauthorized(self):
        r = self.token({"grant_type": "client_credentials",
                        "client_id": "spa"}, {})
        self.assert_error(r, 400, "unauthorized_client")


class ClientAuthTest(OAuthBase):
    def test_basic_and_body_both_work(self):
        self.login()
        r = self.token({"grant_type": "client_credentials",
                        "client_id": "svc", "client_secret": "svc-secret"},
                       {})
        self.assertEqual(r.status, 200, r)

    def test_basic_credentials_are_form_urlencoded(self):
        r = self.token({"grant_type": "client_credentials"},
                       basic("odd:id%", "p@ss:w0rd+"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["scope"], "read")

    def test_two_methods_at_once_is_invalid_request(self):
        r = self.token({"grant_type": "client_credentials",
                        "client_secret": "svc-secret"}, SVC)
        self.assert_error(r, 400, "invalid_request")
        r = self.token({"grant_type": "client_credentials",
                        "client_id": "web"}, SVC)
        self.assert_error(r, 400, "invalid_request")

    def test_wrong_secret_and_unknown_client_are_401(self):
        bodies = []
        for h, form in [
                (basic("svc", "nope"), {}),
                (basic("ghost", "svc-secret"), {}),
                ({}, {"client_id": "svc", "client_secret": "nope"}),
                ({}, {"client_id": "ghost", "client_secret": "x"}),
                ({}, {"client_id": "svc"}),
                ({}, {}),
                ({"Authorization": "Basic !!!"}, {})]:
            r = self.token(dict(grant_type="client_credentials", **form), h)
            self.assert_error(r, 401, "invalid_client")
            bodies.append(r.body)
            if "Authorization" in h:
                self.assertEqual(r.header("www-authenticate"),
                                 'Basic realm="tokend"')
            else:
                self.assertIsNone(r.header("www-authenticate"))
        self.assertEqual(len(set(bodies)), 1)

    def test_changed_secret_takes_effect_at_once(self):
        harness.tokenctl("client", "add", "rot", "--secret-stdin",
                         input="old-secret\n")
        old = basic("rot", "old-secret")
        for _ in range(3):      # cached on whichever workers answered
            self.assertEqual(self.token({"grant_type": "client_credentials"},
                                        old).status, 200)
        harness.pg().sql("UPDATE clients SET secret_hash = "
                         "(SELECT secret_hash FROM clients "
                         "WHERE client_id = 'svc') WHERE client_id = 'rot'")
        harness.wait_until(lambda: self.token(
            {"grant_type": "client_credentials"}, old).status == 401,
            timeout=2)
        for _ in range(4):
            self.assertEqual(self.token({"grant_type": "client_credentials"},
                                        old).status, 401)
        self.assertEqual(self.token({"grant_type": "client_credentials"},
                                    basic("rot", "svc-secret")).status, 200)


class TokenErrorsTest(OAuthBase):
    def test_rfc6749_errors(self):
        self.assert_error(self.token({}), 400, "invalid_request")
        self.assert_error(self.token({"grant_type": "implicit"}), 400,
                          "unsupported_grant_type")
        self.assert_error(self.token({"grant_type": "password"}), 400,
                          "invalid_request")
        self.assert_error(self.token({"grant_type": "refresh_token"}), 400,
                          "invalid_request")
        self.assert_error(self.token({"grant_type": "authorization_code"}),
                          400, "invalid_request")
        self.assert_error(self.token({"grant_type": "password",
                                      "username": "alice",
                                      "password": "alice-pw",
                                      "scope": "read admin"}),
                          400, "invalid_scope")
        r = self.t.http("POST", "/token", headers=dict(WEB, **{
            "Content-Type": "application/json"}), body='{"grant_type": 1}')
        self.assert_error(r, 400, "invalid_request")
        self.assertEqual(r.header("cache-control"), "no-store")
        r = self.t.http("POST", "/token", headers=WEB,
                        body="grant_type=password&grant_type=password",
                        form=None)
        self.assertEqual(r.status, 400)
        r = self.t.http("GET", "/token")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "POST")


class PasswordTest(OAuthBase):
    def test_password_grant(self):
        j = self.login()
        self.assertEqual(set(j), {"access_token", "token_type", "expires_in",
                                  "refresh_token", "scope"})
        self.assertEqual(j["scope"], "read write")
        self.assertRegex(j["refresh_token"], r"^tkr_[0-9A-Za-z]{49}$")
        a = self.t.http("GET", "/auth", headers=bearer(j["access_token"]))
        self.assertEqual(a.status, 200)
        self.assertEqual(a.header("x-auth-user"), "alice")
        self.assertEqual(a.header("x-auth-client"), "web")
        self.assertEqual(self.login(scope="read")["scope"], "read")
        # A public client logs in with its client_id alone.
        r = self.token({"grant_type": "password", "username": "bob",
                        "password": "bob-pw", "client_id": "spa"}, {})
        self.assertEqual(r.status, 200, r)

    def test_wrong_password_unknown_user_disabled_user_look_alike(self):
        add_user("carol", "carol-pw")
        j = self.login("carol")
        harness.tokenctl("user", "disable", "carol")
        bodies = set()
        for user, pw in [("alice", "wrong"), ("nobody", "x"),
                         ("carol", "carol-pw")]:
            r = self.token({"grant_type": "password", "username": user,
                            "password": pw})
            self.assert_error(r, 400, "invalid_grant")
            bodies.add(r.body)
        self.assertEqual(len(bodies), 1)
        self.assert_error(self.refresh(j["refresh_token"]), 400,
                          "invalid_grant")
        log = self.t.log()
        self.assertIn("event=login_failed", log)
        self.assertNotIn("alice-pw", log)
        self.assertNotIn("carol-pw", log)

    def test_unknown_user_costs_what_a_wrong_password_costs(self):
        def timed(user):
            with self.t.conn() as c:
                start = time.monotonic()
                r = c.request("POST", "/token", headers=WEB, form={
                    "grant_type": "password", "username": user,
                    "password": "not-it"})
                took = time.monotonic() - start
            self.assertEqual(r.status, 400)
            return took
        timed("alice")      # the client's secret is cached from here on
        wrong, unknown = [], []
        for i in range(11):
            wrong.append(timed("alice"))
            unknown.append(timed("ghost%d" % i))
        # Other load on the machine only ever adds time, so the fastest
        # of the interleaved samples is each path's own cost.
        w, u = min(wrong), min(unknown)
        self.assertLess(max(w, u) / min(w, u), 1.5, (wrong, unknown))
        self.assertGreater(min(w, u), 0.005)  # argon2id really ran


class RefreshTest(OAuthBase):
    def test_rotation(self):
        j = self.login()
        r = self.refresh(j["refresh_token"])
        self.assertEqual(r.status, 200, r)
        k = r.json()
        self.assertNotEqual(k["access_token"], j["access_token"])
        self.assertNotEqual(k["refresh_token"], j["refresh_token"])
        self.assertEqual(k["scope"], "read write")
        self.assertEqual(self.auth(k["access_token"]), 200)
        r = self.refresh(k["refresh_token"], scope="read")
        self.assertEqual(r.json()["scope"], "read")
        self.assert_error(self.refresh(r.json()["refresh_token"],
                                       scope="read write api"),
                          400, "invalid_scope")
        # RFC 6749 6: "read" narrowed that access token, not the family.
        r = self.refresh(r.json()["refresh_token"], scope="read write")
        self.assertEqual(r.json()["scope"], "read write")
        # Only the client the token was issued to may use it.
        self.assertEqual(self.refresh(r.json()["refresh_token"], SVC).json(),
                         BAD_GRANT)
        self.assertEqual(self.refresh(r.json()["refresh_token"]).status, 200)
        old_id, fam = self.row(j["refresh_token"], "id, family")[0]
        self.assertEqual(old_id, fam)
        n = harness.pg().sql("SELECT count(*) FROM tokens WHERE family = %s",
                             int(fam))[0][0]
        self.assertEqual(int(n), 10)   # 5 pairs, one family

    def test_grace_replay_returns_the_same_pair(self):
        j = self.login()
        first = self.refresh(j["refresh_token"])
        again = self.refresh(j["refresh_token"])
        self.assertEqual(first.status, 200)
        self.assertEqual(again.status, 200)
        a, b = first.json(), again.json()
        self.assertEqual(a["access_token"], b["access_token"])
        self.assertEqual(a["refresh_token"], b["refresh_token"])
        self.assertEqual(a["scope"], b["scope"])
        self.assertLessEqual(b["expires_in"], a["expires_in"])
        old = self.row(j["refresh_token"], "id")[0][0]
        kids = harness.pg().sql("SELECT kind FROM tokens WHERE parent = %s "
                                "ORDER BY kind", int(old))
        self.assertEqual(kids, [("access",), ("refresh",)])
        # The box is encrypted: no token string is in the database.
        box = harness.pg().sql("SELECT encode(successor_box, 'hex') FROM "
                               "tokens WHERE id = %s", int(old))[0][0]
        self.assertIsNotNone(box)
        self.assertNotIn(a["refresh_token"].encode().hex(), box)
        self.assertIn("event=refresh_grace_replay", self.t.log())

    def test_reuse_after_grace_revokes_the_family(self):
        j = self.login()
        k = self.refresh(j["refresh_token"]).json()
        m = self.refresh(k["refresh_token"]).json()
        for tok in (j["access_token"], k["access_token"], m["access_token"]):
            self.assertEqual(self.auth(tok), 200)
        time.sleep(GRACE + 0.3)
        r = self.refresh(j["refresh_token"])
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json(), BAD_GRANT)
        # Failing at once, on every worker: the cache entries are gone.
        for tok in (j["access_token"], k["access_token"], m["access_token"]):
            for _ in range(3):
                self.assertEqual(self.auth(tok), 401)
        self.assertEqual(self.refresh(m["refresh_token"]).json(), BAD_GRANT)
        fam = self.row(j["refresh_token"], "family")[0][0]
        left = harness.pg().sql(
            "SELECT count(*) FILTER (WHERE revoked_at IS NULL), "
            "count(*) FILTER (WHERE successor_box IS NOT NULL) "
            "FROM tokens WHERE family = %s", int(fam))
        self.assertEqual(left, [("0", "0")])
        log = self.t.log()
        self.assertRegex(log, r"event=refresh_reuse_detected .*family=%s "
                         r"family_size=6 " % fam)
        self.assertNotIn(j["refresh_token"], log)

    def test_replay_past_the_grace_is_reuse_even_if_the_box_is_left(self):
        # The writer's sweep wipes boxes; with it stopped, the box outlives
        # the grace, and must still never be handed out.
        writer = self.t.children()["writer"]
        os.kill(writer, signal.SIGSTOP)
        try:
            j = self.login()
            k = self.refresh(j["refresh_token"]).json()
            time.sleep(GRACE + 0.3)
            self.assertEqual(self.row(j["refresh_token"],
                                      "successor_box IS NULL"), [("f",)])
            r = self.refresh(j["refresh_token"])
            self.assertEqual(r.json(), BAD_GRANT)
            self.assertEqual(self.auth(k["access_token"]), 401)
            self.assertEqual(self.refresh(k["refresh_token"]).json(),
                             BAD_GRANT)
        finally:
            os.kill(writer, signal.SIGCONT)

    def test_box_is_wiped_after_the_grace(self):
        j = self.login()
        self.refresh(j["refresh_token"])
        harness.wait_until(lambda: self.row(
            j["refresh_token"], "successor_box IS NULL")[0][0] == "t",
            timeout=GRACE + 3)

    def test_expired_refresh_leaves_the_family_alone(self):
        j = self.login()
        k = self.refresh(j["refresh_token"]).json()
        harness.pg().sql("UPDATE tokens SET expires_at = now() - "
                         "interval '1 second' WHERE " + harness.BY_TOKEN,
                         k["refresh_token"])
        self.assertEqual(self.refresh(k["refresh_token"]).json(), BAD_GRANT)
        self.assertEqual(self.auth(k["access_token"]), 200)
        fam = self.row(j["refresh_token"], "family")[0][0]
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens WHERE family = %s AND "
            "revoked_at IS NOT NULL", int(fam)), [("0",)])

    def test_one_body_for_unknown_revoked_and_malformed(self):
        j = self.login()
        harness.pg().sql("UPDATE tokens SET revoked_at = now() WHERE " +
                         harness.BY_TOKEN, j["refresh_token"])
        unknown = self.login()["refresh_token"]
        harness.pg().sql("DELETE FROM tokens WHERE " + harness.BY_TOKEN,
                         unknown)
        for rt in (j["refresh_token"], unknown, "tkr_garbage",
                   j["access_token"]):
            self.assertEqual(self.refresh(rt).json(), BAD_GRANT, rt)

    def race(self, rt, conns):
        """Two connections send the same refresh at the same moment."""
        results = [None, None]
        barrier = threading.Barrier(2)

        def go(i):
            barrier.wait()
            results[i] = conns[i].request(
                "POST", "/token", headers=WEB,
                form={"grant_type": "refresh_token", "refresh_token": rt})
        threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return results

    def assert_one_successor(self, rt, results):
        self.assertEqual([r.status for r in results], [200, 200], results)
        a, b = results[0].json(), results[1].json()
        for k in ("access_token", "refresh_token", "scope"):
            self.assertEqual(a[k], b[k])
        old = self.row(rt, "id")[0][0]
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens WHERE parent = %s AND "
            "kind = 'refresh'", int(old)), [("1",)])
        self.assertEqual(self.auth(results[0].json()["access_token"]), 200)
        return results[0].json()["refresh_token"]

    def test_two_workers_refresh_one_token_at_once(self):
        # One connection on each worker: two PostgreSQL sessions race.
        # 25 rounds: enough that a version without the row lock fails
        # here every time.
        conns = conn_on_each_worker(self.t)
        rt = self.login()["refresh_token"]
        try:
            for _ in range(25):
                rt = self.assert_one_successor(rt, self.race(rt, conns))
        finally:
            for c in conns:
                c.close()
        log = self.t.log()
        for w in ("worker 1", "worker 2"):
            self.assertRegex(log, r'event=(token_refreshed|'
                             r'refresh_grace_replay) proc="%s"' % w)

    def test_no_grace_makes_every_replay_reuse(self):
        with harness.Tokend(workers=1, config={"refresh_grace": 0}) as t0:
            def refresh(rt):
                return t0.http("POST", "/token", headers=WEB, form={
                    "grant_type": "refresh_token", "refresh_token": rt})
            j = self.login()
            k = refresh(j["refresh_token"])
            self.assertEqual(k.status, 200)
            self.assertIsNone(self.row(j["refresh_token"],
                                       "successor_box")[0][0])
            self.assertEqual(refresh(j["refresh_token"]).json(), BAD_GRANT)
            self.assertEqual(self.auth(k.json()["access_token"]), 401)

    def test_two_servers_on_one_database(self):
        with harness.Tokend(workers=1, config={
                "refresh_grace": GRACE, "login_max_failures": 100}) as t2:
            conns = [self.t.conn(), t2.conn()]
            rt = self.login()["refresh_token"]
            try:
                for _ in range(10):
                    rt = self.assert_one_successor(rt, self.race(rt, conns))
            finally:
                for c in conns:
                    c.close()


class CodeTest(OAuthBase):
    def authorize(self, at, **body):
        return self.t.http("POST", "/authorize", headers=bearer(at),
                           json=body)

    def code(self, client="spa", uri=SPA_REDIRECT, state="xyz", at=None,
             challenge=None, **extra):
        at = at or self.login()["access_token"]
        body = dict(client_id=client, redirect_uri=uri, state=state, **extra)
        if challenge:
            body.update(code_challenge=challenge,
                        code_challenge_method="S256")
        r = self.authorize(at, **body)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def exchange(self, code, verifier=None, uri=SPA_REDIRECT, client="spa",
                 headers=None):
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": uri}
        if client:
            form["client_id"] = client
        if verifier:
            form["code_verifier"] = verifier
        return self.token(form, headers or {})

    def test_public_client_with_pkce(self):
        v, ch = pkce()
        j = self.code(challenge=ch, state="a b&c")
        self.assertRegex(j["code"], r"^tkc_[0-9A-Za-z]{49}$")
        u = urllib.parse.urlsplit(j["redirect_to"])
        self.assertEqual(u._replace(query="").geturl(),
                         "http://127.0.0.1:9/cb")
        q = urllib.parse.parse_qs(u.query)
        # RFC 9207: the issuer in every authorization response.
        self.assertEqual(q, {"x": ["1"], "code": [j["code"]],
                             "state": ["a b&c"],
                             "iss": ["http://127.0.0.1:%d" % self.t.port]})
        r = self.exchange(j["code"], v)
        self.assertEqual(r.status, 200, r)
        t = r.json()
        self.assertEqual(t["scope"], "read write")
        self.assertIn("refresh_token", t)
        a = self.t.http("GET", "/auth", headers=bearer(t["access_token"]))
        self.assertEqual(a.header("x-auth-user"), "alice")
        self.assertEqual(a.header("x-auth-client"), "spa")
        self.assertEqual(self.refresh(t["refresh_token"], {},
                                      client_id="spa").status, 200)

    def test_confidential_client_without_pkce_and_narrow_scope(self):
        j = self.code("web", REDIRECT, scope="read")
        self.assertEqual(j["redirect_to"], REDIRECT + "?code=" + j["code"] +
                         "&state=xyz&iss=" + urllib.parse.quote(
                             "http://127.0.0.1:%d" % self.t.port, safe=""))
        r = self.exchange(j["code"], uri=REDIRECT, client=None, headers=WEB)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["scope"], "read")

    def test_replayed_code_revokes_what_it_issued(self):
        v, ch = pkce()
        j = self.code(challenge=ch)
        t = self.exchange(j["code"], v).json()
        k = self.refresh(t["refresh_token"], {}, client_id="spa").json()
        self.assertEqual(self.auth(k["access_token"]), 200)
        r = self.exchange(j["code"], v)
        self.assertEqual(r.json(), BAD_GRANT)
        for tok in (t["access_token"], k["access_token"]):
            self.assertEqual(self.auth(tok), 401)
        self.assertEqual(self.refresh(k["refresh_token"], {},
                                      client_id="spa").json(), BAD_GRANT)
        self.assertIn("event=code_replay_detected", self.t.log())

    def test_pkce(self):
        v, ch = pkce()
        j = self.code(challenge=ch)
        other, _ = pkce()
        self.assertEqual(self.exchange(j["code"], other).json(), BAD_GRANT)
        self.assert_error(self.exchange(j["code"]), 400, "invalid_request")
        self.assert_error(self.exchange(j["code"], "short"), 400,
                          "invalid_request")
        self.assertEqual(self.exchange(j["code"], v).status, 200)
        at = self.login()["access_token"]
        for body in [dict(code_challenge=v[:43], code_challenge_method="plain"),
                     dict(code_challenge=ch),
                     dict(code_challenge_method="S256"),
                     dict(code_challenge="x", code_challenge_method="S256"),
                     {}]:
            r = self.authorize(at, client_id="spa", redirect_uri=SPA_REDIRECT,
                               **body)
            self.assert_error(r, 400, "invalid_request")

    def test_code_binding(self):
        j = self.code("web", REDIRECT)
        self.assertEqual(self.exchange(j["code"], uri=REDIRECT + "/x",
                                       client=None, headers=WEB).json(),
                         BAD_GRANT)
        self.assertEqual(self.exchange(j["code"], uri=REDIRECT, client=None,
                                       headers=SVC).json(), BAD_GRANT)
        self.assertEqual(self.exchange(j["code"], uri=REDIRECT, client=None,
                                       headers=WEB).status, 200)
        r = self.authorize(self.login()["access_token"], client_id="web",
                           redirect_uri=REDIRECT + "/")
        self.assert_error(r, 400, "invalid_request")

    def test_expired_code(self):
        j = self.code("web", REDIRECT)
        harness.pg().sql("UPDATE tokens SET expires_at = now() - "
                         "interval '1 second' WHERE " + harness.BY_TOKEN,
                         j["code"])
        self.assertEqual(self.exchange(j["code"], uri=REDIRECT, client=None,
                                       headers=WEB).json(), BAD_GRANT)

    def test_authorize_needs_a_users_access_token_and_json(self):
        body = {"client_id": "web", "redirect_uri": REDIRECT}
        r = self.t.http("POST", "/authorize", json=body)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("www-authenticate"), 'Bearer realm="tokend"')
        pat = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "p").stdout.strip()
        cc = self.token({"grant_type": "client_credentials"},
                        SVC).json()["access_token"]
        j = self.login()
        for tok in (pat, cc, j["refresh_token"], "tka_nonsense"):
            r = self.authorize(tok, **body)
            self.assert_error(r, 401, "invalid_token")
        at = j["access_token"]
        r = self.t.http("POST", "/authorize", headers=bearer(at),
                        form=body)
        self.assertEqual(r.status, 415)
        for raw in ("[1]", "{", '"x"', '{"client_id": 1}'):
            r = self.t.http("POST", "/authorize", headers=dict(
                bearer(at), **{"Content-Type": "application/json"}), body=raw)
            self.assert_error(r, 400, "invalid_request")
        self.assert_error(self.authorize(at, client_id="ghost",
                                         redirect_uri=REDIRECT),
                          400, "invalid_request")
        self.assert_error(self.authorize(at, scope="admin", **body), 400,
                          "invalid_scope")
        self.assert_error(self.authorize(at, response_type="token", **body),
                          400, "unsupported_response_type")


class IntrospectTest(OAuthBase):
    def introspect(self, tok, headers=WEB, **form):
        r = self.t.http("POST", "/introspect", headers=headers,
                        form=dict(token=tok, **form))
        self.assertEqual(r.header("cache-control"), "no-store")
        return r

    def test_needs_a_confidential_client(self):
        tok = self.login()["access_token"]
        self.assert_error(self.introspect(tok, {}), 401, "invalid_client")
        self.assert_error(self.introspect(tok, {}, client_id="spa"), 401,
                          "invalid_client")
        r = self.introspect(tok, basic("web", "nope"))
        self.assert_error(r, 401, "invalid_client")
        self.assertEqual(r.header("www-authenticate"), 'Basic realm="tokend"')
        self.assert_error(self.t.http("POST", "/introspect", headers=WEB,
                                      form={}), 400, "invalid_request")

    def test_active_access_token(self):
        j = self.login(scope="read")
        uid = harness.pg().sql("SELECT id FROM users WHERE name = 'alice'")
        for _ in range(2):      # a miss, then a cache hit: the same answer
            r = self.introspect(j["access_token"], SVC,
                                token_type_hint="access_token")
            self.assertEqual(r.status, 200)
            i = r.json()
            self.assertEqual(i["active"], True)
            self.assertEqual(i["scope"], "read")
            self.assertEqual(i["client_id"], "web")
            self.assertEqual(i["username"], "alice")
            self.assertEqual(i["sub"], uid[0][0])
            self.assertEqual(i["token_type"], "Bearer")
            self.assertAlmostEqual(i["exp"] - i["iat"], 900, delta=1)
            self.assertAlmostEqual(i["iat"], time.time(), delta=5)

    def test_other_kinds(self):
        cc = self.token({"grant_type": "client_credentials"}, SVC).json()
        i = self.introspect(cc["access_token"]).json()
        self.assertEqual((i["active"], i["sub"], i["client_id"]),
                         (True, "svc", "svc"))
        self.assertNotIn("username", i)
        pat = harness.tokenctl("pat", "create", "--user", "bob", "--name",
                               "p", "--scope", "read").stdout.strip()
        i = self.introspect(pat).json()
        self.assertEqual((i["active"], i["username"]), (True, "bob"))
        self.assertNotIn("exp", i)
        self.assertNotIn("client_id", i)
        j = self.login()
        i = self.introspect(j["refresh_token"]).json()
        self.assertEqual((i["active"], i["username"]), (True, "alice"))
        self.refresh(j["refresh_token"])
        self.assertEqual(self.introspect(j["refresh_token"]).json(),
                         {"active": False})
        bad_sum = pat[:-1] + ("x" if pat[-1] != "x" else "y")
        for tok in ("tka_nonsense", "", "tka_" + "0" * 49, bad_sum):
            self.assertEqual(self.introspect(tok).json(), {"active": False})

    def test_any_stored_name_comes_back_exactly(self):
        """tokenctl only makes plain user names, but a row written with SQL
        may hold any text: the answer, written by hand on a cache hit,
        must still be JSON that gives it back unchanged."""
        name = 'Zo\u00eb "q" \\ \t\u2603 end'
        uid = harness.pg().sql("INSERT INTO users (name) VALUES (%s) "
                               "RETURNING id", name)[0][0]
        pat = harness.tokenctl("pat", "create", "--user", "bob", "--name",
                               "p").stdout.strip()
        harness.pg().sql("UPDATE tokens SET user_id = %s WHERE " +
                         harness.BY_TOKEN, int(uid), pat)
        for _ in range(2):      # a miss, then a cache hit
            r = self.introspect(pat)
            self.assertEqual(r.header("content-type"), "application/json")
            i = r.json()
            self.assertEqual((i["active"], i["username"], i["sub"]),
                             (True, name, uid))

    def test_each_active_introspection_counts_a_use(self):
        tok = self.login()["access_token"]
        for _ in range(3):
            self.assertTrue(self.introspect(tok).json()["active"])
        harness.wait_until(lambda: self.row(tok, "use_count")[0][0] == "3",
                           timeout=5)
        self.introspect("tka_" + "1" * 49)
        time.sleep(3 * FLUSH)
        self.assertEqual(self.row(tok, "use_count")[0][0], "3")


class RevokeTest(OAuthBase):
    def revoke(self, tok, headers=WEB, **form):
        r = self.t.http("POST", "/revoke", headers=headers,
                        form=dict(token=tok, **form))
        return r

    def test_access_token(self):
        j = self.login()
        self.assertEqual(self.auth(j["access_token"]), 200)
        r = self.revoke(j["access_token"], token_type_hint="access_token")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("cache-control"), "no-store")
        for _ in range(4):
            self.assertEqual(self.auth(j["access_token"]), 401)
        self.assertEqual(self.refresh(j["refresh_token"]).status, 200)
        self.assertIn("event=token_revoked", self.t.log())

    def test_refresh_token_takes_the_family(self):
        j = self.login()
        k = self.refresh(j["refresh_token"]).json()
        for tok in (j["access_token"], k["access_token"]):
            self.assertEqual(self.auth(tok), 200)
        self.assertEqual(self.revoke(k["refresh_token"]).status, 200)
        for tok in (j["access_token"], k["access_token"]):
            self.assertEqual(self.auth(tok), 401)
        self.assertEqual(self.refresh(k["refresh_token"]).json(), BAD_GRANT)

    def test_public_client_revokes_its_own(self):
        r = self.token({"grant_type": "password", "username": "bob",
                        "password": "bob-pw", "client_id": "spa"}, {})
        j = r.json()
        self.assertEqual(self.revoke(j["refresh_token"], {},
                                     client_id="spa").status, 200)
        self.assertEqual(self.auth(j["access_token"]), 401)

    def test_always_200_but_only_for_the_owner(self):
        j = self.login()
        pat = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "p").stdout.strip()
        for tok in (j["access_token"], pat):     # not svc's to revoke
            self.assertEqual(self.revoke(tok, SVC).status, 200)
            self.assertEqual(self.auth(tok), 200)
        for tok in ("tka_nonsense", "tka_" + "1" * 49, ""):
            self.assertEqual(self.revoke(tok).status, 200)
        self.assert_error(self.t.http("POST", "/revoke", headers=WEB,
                                      form={}), 400, "invalid_request")
        self.assert_error(self.revoke(j["access_token"], {}), 401,
                          "invalid_client")
        self.assertEqual(self.auth(j["access_token"]), 200)


class DatabaseLossTest(OAuthBase):
    def test_oauth_connection_killed_comes_back(self):
        conns = conn_on_each_worker(self.t)
        form = {"grant_type": "client_credentials"}
        try:
            for c in conns:     # each worker's connection is up
                self.assertEqual(c.request("POST", "/token", headers=SVC,
                                           form=form).status, 200)
            self.assertGreaterEqual(
                harness.pg().terminate_backends("tokend oauth"), 2)
            for c in conns:
                statuses = []

                def ok():
                    r = c.request("POST", "/token", headers=SVC, form=form)
                    statuses.append(r.status)
                    if r.status == 503:
                        self.assertIsNotNone(r.header("retry-after"))
                        self.assertEqual(r.json()["error"],
                                         "temporarily_unavailable")
                    return r.status == 200
                harness.wait_until(ok, timeout=10, interval=0.05)
                self.assertTrue(set(statuses) <= {200, 503}, statuses)
        finally:
            for c in conns:
                c.close()


class MetadataTest(OAuthBase):
    def test_rfc8414(self):
        r = self.t.http("GET", "/.well-known/oauth-authorization-server")
        self.assertEqual(r.status, 200)
        m = r.json()
        base = "http://127.0.0.1:%d" % self.t.port
        self.assertEqual(m["issuer"], base)
        for k, path in [("token_endpoint", "/token"),
                        ("authorization_endpoint", "/authorize"),
                        ("introspection_endpoint", "/introspect"),
                        ("revocation_endpoint", "/revoke")]:
            self.assertEqual(m[k], base + path)
        self.assertEqual(m["response_types_supported"], ["code"])
        self.assertEqual(m["code_challenge_methods_supported"], ["S256"])
        self.assertEqual(set(m["grant_types_supported"]), {
            "authorization_code", "refresh_token", "password",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code"})
        self.assertEqual(set(m["token_endpoint_auth_methods_supported"]),
                         {"client_secret_basic", "client_secret_post",
                          "none"})
        self.assertEqual(m["scopes_supported"], ["read", "write", "api"])
        self.assertEqual(self.t.http(
            "HEAD", "/.well-known/oauth-authorization-server").status, 200)


class LoginRateLimitTest(unittest.TestCase):
    """Failures of one username count across all workers (shared memory)."""

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        add_clients()
        add_user("alice", "alice-pw")
        cls.t = harness.Tokend(workers=2, config={
            "login_max_failures": 3, "login_window": 60})

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def attempt(self, user, pw, conn=None):
        form = {"grant_type": "password", "username": user, "password": pw}
        if conn is not None:
            return conn.request("POST", "/token", headers=WEB, form=form)
        return self.t.http("POST", "/token", headers=WEB, form=form)

    def test_failures_are_shared_by_the_workers(self):
        add_user("victim", "right-pw")
        w1, w2 = conn_on_each_worker(self.t)
        try:
            for c in (w1, w2, w1):
                self.assertEqual(self.attempt("victim", "wrong", c).status,
                                 400)
            # Limited on every worker, even with the right password.
            for c in (w2, w1):
                r = self.attempt("victim", "right-pw", c)
                self.assertEqual(r.status, 429, r)
                self.assertGreater(int(r.header("retry-after")), 50)
                self.assertLessEqual(int(r.header("retry-after")), 60)
                self.assertEqual(r.header("cache-control"), "no-store")
                self.assertIn("error", r.json())
            self.assertEqual(self.attempt("alice", "alice-pw", w2).status,
                             200)
        finally:
            w1.close()
            w2.close()
        log = self.t.log()
        self.assertEqual(set(re.findall(
            r'event=login_failed proc="(worker \d)" pid=\d+ user=victim ',
            log)), {"worker 1", "worker 2"})
        self.assertIn("event=login_rate_limited", log)
        self.assertNotIn("right-pw", log)

    def test_parallel_guesses_are_limited_too(self):
        add_user("para", "para-pw")
        conns = [self.t.conn() for _ in range(6)]
        results = []
        barrier = threading.Barrier(len(conns))

        def guess(c):
            barrier.wait()
            results.append(self.attempt("para", "guess", c).status)
        threads = [threading.Thread(target=guess, args=(c,)) for c in conns]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for c in conns:
            c.close()
        # An attempt counts from the moment it begins, not once argon2id
        # is done: at most the limit (and a straggler racing it) get
        # through, although all six were in flight together.
        self.assertLessEqual(results.count(400), 4, results)
        self.assertEqual(results.count(400) + results.count(429), 6, results)
        self.assertEqual(self.attempt("para", "para-pw").status, 429)

    def test_success_clears_the_count(self):
        for _ in range(2):
            self.assertEqual(self.attempt("alice", "wrong").status, 400)
        self.assertEqual(self.attempt("alice", "alice-pw").status, 200)
        for _ in range(2):
            self.assertEqual(self.attempt("alice", "wrong").status, 400)
        self.assertEqual(self.attempt("alice", "alice-pw").status, 200)

    def test_unknown_users_are_limited_too(self):
        for _ in range(3):
            self.assertEqual(self.attempt("nobody", "x").status, 400)
        self.assertEqual(self.attempt("nobody", "x").status, 429)


NODE_DIR = os.path.join(harness.ROOT, "tests", "node")


@unittest.skipIf(shutil.which("node") is None, "node is not installed")
@unittest.skipUnless(os.path.isdir(os.path.join(
    NODE_DIR, "node_modules", "oauth4webapi")),
    "tests/node/node_modules missing: run npm ci in tests/node")
class NodeClientTest(OAuthBase):
    """A standard client library, configured only from the RFC 8414
    metadata: tests/node/check.mjs (oauth4webapi)."""

    def test_oauth4webapi_client(self):
        env = dict(os.environ, ISSUER="http://127.0.0.1:%d" % self.t.port,
                   WEB_CLIENT_ID="web", WEB_CLIENT_SECRET="web-secret",
                   SPA_CLIENT_ID="spa", SPA_REDIRECT_URI=SPA_REDIRECT,
                   USERNAME="alice", PASSWORD="alice-pw")
        r = subprocess.run(["node", os.path.join(NODE_DIR, "check.mjs")],
                           capture_output=True, text=True, timeout=60,
                           env=env, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(out["issuer"], "http://127.0.0.1:%d" % self.t.port)
        self.assertTrue(out["introspected"])
        self.assertTrue(out["revoked"])
        # The two concurrent refreshes got one successor, not two.
        fam = harness.pg().sql(
            "SELECT family FROM tokens WHERE " + harness.BY_TOKEN,
            out["refreshed_together"])[0][0]
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens WHERE family = %s AND "
            "kind = 'refresh'", int(fam)), [("3",)])


if __name__ == "__main__":
    unittest.main()

"""The RFC 8628 device grant and grant types per client (SPEC 11), through
HTTP against the real server.

Codes are approved or denied here with the SQL UPDATE the /device pages
run (the contract in the round's brief), so these tests need no browser.
"""

import base64
import json
import os
import re
import threading
import unittest

import harness

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE = re.compile(r"^[%s]{4}-[%s]{4}$" % (ALPHABET, ALPHABET))
DEFAULT_PUBLIC = ["authorization_code", "refresh_token", DEVICE]
DEFAULT_CONF = ["authorization_code", "refresh_token", "client_credentials",
                DEVICE]
BAD_GRANT = {"error": "invalid_grant", "error_description":
             "the grant is invalid, expired, revoked or was already used"}


def basic(cid, secret):
    raw = "%s:%s" % (cid, secret)
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def add_client(cid, *flags, secret=None):
    """A client with exactly the grant types tokenctl gives for flags."""
    args = ["client", "add", cid, "--scope", "read write"] + list(flags)
    if secret is not None:
        args.append("--secret-stdin")
    else:
        args.append("--public")
    return harness.tokenctl(*args, legacy_grants=False,
                            input=None if secret is None else secret + "\n")


def grant_types(cid):
    shown = json.loads(harness.tokenctl("client", "show", cid,
                                        "--json").stdout)
    return shown["grant_types"]


class DeviceBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        add_client("tv")
        add_client("tv2")
        add_client("box", secret="box-secret")
        add_client("nodev", "--grant", "authorization_code")
        harness.tokenctl("user", "add", "alice", "--password-stdin",
                         input="alice-pw\n")
        cls.alice = int(harness.pg().sql(
            "SELECT id FROM users WHERE name = 'alice'")[0][0])
        cls.t = harness.Tokend(workers=2)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def start(self, form=None, headers=None, status=200):
        r = self.t.http("POST", "/device_authorization", headers=headers,
                        form=form if form is not None else {"client_id": "tv"})
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("cache-control"), "no-store", r)
        return r

    def poll(self, code, client="tv", headers=None):
        form = {"grant_type": DEVICE, "device_code": code}
        if client is not None:
            form["client_id"] = client
        r = self.t.http("POST", "/token", form=form, headers=headers)
        self.assertEqual(r.header("cache-control"), "no-store", r)
        return r

    def assert_error(self, r, status, error):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["error"], error, r)

    def row(self, code, cols="status, poll_interval"):
        return harness.pg().sql("SELECT %s FROM device_codes WHERE %s" % (
            cols, harness.BY_TOKEN), code)

    def approve(self, code, session=None):
        """What the /device page runs on allow (signin's contract)."""
        rid = self.row(code, "id")[0][0]
        harness.pg().sql(
            "UPDATE device_codes SET status='approved', user_id=%s, "
            "web_session=%s WHERE id=%s AND status='pending'",
            self.alice, session, int(rid))

    def poll_later(self, code):
        """As if the device waited its interval since its last poll."""
        harness.pg().sql("UPDATE device_codes SET last_poll_at = now() - "
                         "make_interval(secs => poll_interval + 1) WHERE "
                         + harness.BY_TOKEN, code)


class DeviceAuthorizationTest(DeviceBase):
    def test_answer_and_what_is_stored(self):
        r = self.start({"client_id": "tv", "scope": "read"})
        d = r.json()
        base = "http://127.0.0.1:%d" % self.t.port
        self.assertTrue(d["device_code"].startswith("tkd_"), d)
        self.assertRegex(d["user_code"], USER_CODE)
        self.assertEqual(d["verification_uri"], base + "/device")
        self.assertEqual(d["verification_uri_complete"],
                         base + "/device?user_code=" + d["user_code"])
        self.assertEqual((d["expires_in"], d["interval"]), (600, 5))
        self.assertEqual(r.header("pragma"), "no-cache")
        # Only the hash of the device code; the user code without its dash.
        rows = harness.pg().sql(
            "SELECT user_code, d.scope, status, prefix, "
            "round(extract(epoch FROM expires_at - now())) FROM "
            "device_codes d JOIN clients c ON c.id = d.client_id "
            "WHERE c.client_id = 'tv' AND d." + harness.BY_TOKEN,
            d["device_code"])
        self.assertEqual(len(rows), 1)
        uc, scope, status, prefix, left = rows[0]
        self.assertEqual((uc, scope, status, prefix),
                         (d["user_code"].replace("-", ""), "read", "pending",
                          d["device_code"][:8]))
        self.assertTrue(590 <= int(left) <= 600, left)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM device_codes WHERE prefix = %s OR "
            "user_code = %s", d["device_code"], d["user_code"]), [("0",)])
        self.assertNotIn(d["device_code"], self.t.log())

    def test_user_codes_use_the_whole_alphabet(self):
        seen = set()
        for _ in range(10):
            seen.update(self.start().json()["user_code"].replace("-", ""))
        # 80 letters drawn: all but a few of the 20 show up, none other.
        self.assertLessEqual(seen, set(ALPHABET))
        self.assertGreater(len(seen), 12)

    def test_scope_within_the_clients(self):
        self.assertEqual(self.row(self.start().json()["device_code"],
                                  "scope"), [("read write",)])
        r = self.start({"client_id": "tv", "scope": "read admin"}, status=400)
        self.assertEqual(r.json()["error"], "invalid_scope")
        r = self.start({"client_id": "tv", "scope": "bad\"scope"}, status=400)
        self.assertEqual(r.json()["error"], "invalid_scope")

    def test_client_authentication(self):
        self.assertEqual(self.start({}, status=401).json()["error"],
                         "invalid_client")
        self.assertEqual(self.start({"client_id": "nobody"},
                                    status=401).json()["error"],
                         "invalid_client")
        # A confidential client must authenticate, as at /token.
        self.start({"client_id": "box"}, status=401)
        self.start({"client_id": "box", "client_secret": "wrong"},
                   status=401)
        d = self.start({}, headers=basic("box", "box-secret")).json()
        self.assertRegex(d["user_code"], USER_CODE)

    def test_client_not_allowed_the_device_grant(self):
        r = self.start({"client_id": "nodev"}, status=400)
        self.assertEqual(r.json()["error"], "unauthorized_client")
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM device_codes d JOIN clients c ON "
            "c.id = d.client_id WHERE c.client_id = 'nodev'"), [("0",)])

    def test_wrong_method_and_body(self):
        r = self.t.http("GET", "/device_authorization")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("allow"), "POST")
        r = self.t.http("POST", "/device_authorization",
                        json={"client_id": "tv"})
        self.assert_error(r, 400, "invalid_request")


class DeviceRateLimitTest(DeviceBase):
    def test_issuance_is_limited_per_address(self):
        for _ in range(30):
            self.start()
        r = self.start(status=429)
        self.assertEqual(r.json()["error"], "temporarily_unavailable")
        self.assertGreaterEqual(int(r.header("retry-after")), 1)
        self.assertIn("device_rate_limited", self.t.log())


class DevicePollingTest(DeviceBase):
    def test_pending_then_slow_down_grows_the_interval(self):
        code = self.start().json()["device_code"]
        self.assert_error(self.poll(code), 400, "authorization_pending")
        r = self.poll(code)
        self.assert_error(r, 400, "slow_down")
        self.assertIn("wait 10 seconds", r.json()["error_description"])
        self.assertEqual(self.row(code), [("pending", "10")])
        self.assert_error(self.poll(code), 400, "slow_down")
        self.assertEqual(self.row(code), [("pending", "15")])
        # Polling at the grown interval is pending again, not slower.
        self.poll_later(code)
        self.assert_error(self.poll(code), 400, "authorization_pending")
        self.assertEqual(self.row(code), [("pending", "15")])

    def test_denied(self):
        code = self.start().json()["device_code"]
        harness.pg().sql("UPDATE device_codes SET status='denied' WHERE "
                         "status='pending' AND " + harness.BY_TOKEN, code)
        self.assert_error(self.poll(code), 400, "access_denied")
        self.assert_error(self.poll(code), 400, "access_denied")

    def test_expired(self):
        code = self.start().json()["device_code"]
        self.assert_error(self.poll(code), 400, "authorization_pending")
        harness.pg().sql("UPDATE device_codes SET expires_at = now() - "
                         "interval '1 second' WHERE " + harness.BY_TOKEN,
                         code)
        self.assert_error(self.poll(code), 400, "expired_token")
        # Approved after all (a page open since): still expired, no pair.
        harness.pg().sql("UPDATE device_codes SET status = 'approved', "
                         "user_id = %s WHERE " + harness.BY_TOKEN,
                         self.alice, code)
        self.poll_later(code)
        self.assert_error(self.poll(code), 400, "expired_token")
        self.assertEqual(self.row(code, "status"), [("approved",)])

    def test_approved_gives_the_pair_once(self):
        code = self.start({"client_id": "tv", "scope": "read"}).json()[
            "device_code"]
        self.assert_error(self.poll(code), 400, "authorization_pending")
        self.approve(code)
        r = self.poll(code)
        self.assertEqual(r.status, 200, r)
        tok = r.json()
        self.assertEqual((tok["token_type"], tok["scope"]),
                         ("Bearer", "read"))
        self.assertIn("device_code", self.t.log())
        a = self.t.http("GET", "/auth", headers={
            "Authorization": "Bearer " + tok["access_token"]})
        self.assertEqual(a.status, 200, a)
        self.assertEqual((a.header("x-auth-user"), a.header("x-auth-client"),
                          a.header("x-auth-scope")), ("alice", "tv", "read"))
        self.assertEqual(self.row(code, "status"), [("used",)])
        # Once: the same code again, even at the right pace, is refused.
        self.poll_later(code)
        r = self.poll(code)
        self.assertEqual((r.status, r.json()), (400, BAD_GRANT))
        # The pair starts a family like any other grant's: it rotates.
        r = self.t.http("POST", "/token", form={
            "grant_type": "refresh_token", "client_id": "tv",
            "refresh_token": tok["refresh_token"]})
        self.assertEqual(r.status, 200, r)
        fam = harness.pg().sql(
            "SELECT t.family = r.id, t.parent = r.id FROM tokens t, tokens r "
            "WHERE r." + harness.BY_TOKEN + " AND t.hash = "
            "sha256(convert_to(%s, 'UTF8'))", tok["refresh_token"],
            r.json()["refresh_token"])
        self.assertEqual(fam, [("t", "t")])

    def test_tokens_carry_the_browser_session(self):
        sid = harness.pg().sql(
            "INSERT INTO web_sessions (hash, prefix, user_id, expires_at) "
            "VALUES (%s, 'tks_abcd', %s, now() + interval '1 hour') "
            "RETURNING id", os.urandom(32), self.alice)[0][0]
        code = self.start().json()["device_code"]
        self.approve(code, session=int(sid))
        tok = self.poll(code).json()
        rows = harness.pg().sql(
            "SELECT kind, web_session FROM tokens WHERE hash IN "
            "(sha256(convert_to(%s, 'UTF8')), sha256(convert_to(%s, "
            "'UTF8'))) ORDER BY kind", tok["access_token"],
            tok["refresh_token"])
        self.assertEqual(rows, [("access", sid), ("refresh", sid)])

    def test_concurrent_polls_of_an_approved_code_get_one_pair(self):
        code = self.start().json()["device_code"]
        self.approve(code)
        count = ("SELECT count(*) FROM tokens t JOIN clients c ON "
                 "c.id = t.client_id WHERE c.client_id = 'tv'")
        before = int(harness.pg().sql(count)[0][0])
        results = []

        def one():
            results.append(self.poll(code).status)

        threads = [threading.Thread(target=one) for _ in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(sorted(results), [200] + [400] * 5)
        # One access and one refresh token.
        self.assertEqual(int(harness.pg().sql(count)[0][0]), before + 2)

    def test_another_clients_code(self):
        code = self.start().json()["device_code"]
        self.approve(code)
        r = self.poll(code, client="tv2")
        self.assertEqual((r.status, r.json()), (400, BAD_GRANT))
        self.assertEqual(self.row(code, "status"), [("approved",)])
        self.assertEqual(self.poll(code).status, 200)

    def test_unknown_malformed_and_missing_codes(self):
        # Well formed, but nobody issued it (its row is gone).
        code = self.start().json()["device_code"]
        harness.pg().sql("DELETE FROM device_codes WHERE " +
                         harness.BY_TOKEN, code)
        r = self.poll(code)
        self.assertEqual((r.status, r.json()), (400, BAD_GRANT))
        r = self.poll("not-a-code")
        self.assertEqual((r.status, r.json()), (400, BAD_GRANT))
        # A token of another kind is not a device code.
        r = self.poll("tka_" + code[4:])
        self.assertEqual((r.status, r.json()), (400, BAD_GRANT))
        r = self.t.http("POST", "/token", form={"grant_type": DEVICE,
                                                "client_id": "tv"})
        self.assert_error(r, 400, "invalid_request")

    def test_confidential_client_polls_with_its_secret(self):
        code = self.start({}, headers=basic("box", "box-secret")).json()[
            "device_code"]
        self.approve(code)
        r = self.poll(code, client=None, headers=basic("box", "wrong"))
        self.assert_error(r, 401, "invalid_client")
        r = self.poll(code, client=None, headers=basic("box", "box-secret"))
        self.assertEqual(r.status, 200, r)


class GrantTypesTest(DeviceBase):
    """Each client uses only its grant types (SPEC 11)."""

    def token(self, form, headers=None):
        return self.t.http("POST", "/token", form=form, headers=headers)

    def test_defaults_of_new_clients(self):
        self.assertEqual(grant_types("tv"), DEFAULT_PUBLIC)
        self.assertEqual(grant_types("box"), DEFAULT_CONF)
        table = harness.tokenctl("client", "show", "tv").stdout
        self.assertRegex(table, r"(?m)^grant_types\s+authorization_code "
                         r"refresh_token " + re.escape(DEVICE) + "$")
        listed = json.loads(harness.tokenctl("client", "list",
                                             "--json").stdout)
        self.assertEqual({c["id"]: c["grant_types"] for c in listed}["nodev"],
                         ["authorization_code"])

    def test_password_only_when_asked(self):
        # New clients have no password grant (RFC 9700 2.4) ...
        r = self.token({"grant_type": "password", "username": "alice",
                        "password": "alice-pw", "client_id": "tv"})
        self.assert_error(r, 400, "unauthorized_client")
        # ... unless it is asked for.
        add_client("cli", "--grant", "password", "--grant", "refresh_token")
        self.assertEqual(grant_types("cli"), ["refresh_token", "password"])
        r = self.token({"grant_type": "password", "username": "alice",
                        "password": "alice-pw", "client_id": "cli"})
        self.assertEqual(r.status, 200, r)
        r = self.token({"grant_type": "refresh_token", "client_id": "cli",
                        "refresh_token": r.json()["refresh_token"]})
        self.assertEqual(r.status, 200, r)
        self.assert_error(self.token({"grant_type": "authorization_code",
                                      "client_id": "cli", "code": "x",
                                      "redirect_uri": "https://a/cb",
                                      "code_verifier": "v" * 43}),
                          400, "unauthorized_client")
        self.assert_error(self.poll("tkd_" + "A" * 40, client="cli"),
                          400, "unauthorized_client")

    def test_every_grant_is_checked(self):
        # only may use the code flow alone: everything else is refused
        # after authentication, before the grant looks at its parameters.
        add_client("only", "--grant", "authorization_code", secret="only-s")
        auth = basic("only", "only-s")
        for form in ({"grant_type": "password", "username": "alice",
                      "password": "alice-pw"},
                     {"grant_type": "refresh_token", "refresh_token": "x"},
                     {"grant_type": "client_credentials"},
                     {"grant_type": DEVICE, "device_code": "x"}):
            self.assert_error(self.token(form, auth), 400,
                              "unauthorized_client")
        # Its own grant gets to the code check.
        r = self.token({"grant_type": "authorization_code", "code": "x",
                        "redirect_uri": "https://a/cb"}, auth)
        self.assertEqual((r.status, r.json()), (400, BAD_GRANT))
        # Authentication still comes first.
        self.assert_error(self.token({"grant_type": "client_credentials"},
                                     basic("only", "wrong")),
                          401, "invalid_client")

    def test_a_change_reaches_the_workers(self):
        add_client("svc", secret="svc-s")
        auth = basic("svc", "svc-s")
        form = {"grant_type": "client_credentials"}
        self.assertEqual(self.token(form, auth).status, 200)
        # The client is remembered by the worker now; the UPDATE's
        # notice must make it read the row again.
        harness.pg().sql("UPDATE clients SET grant_types = "
                         "'{authorization_code}' WHERE client_id = 'svc'")
        harness.wait_until(lambda: self.token(form, auth).status == 400,
                           timeout=10, msg="grant types change not seen")
        self.assert_error(self.token(form, auth), 400, "unauthorized_client")

    def test_tokenctl_grant_option(self):
        add_client("dev", "--grant", "device_code", "--grant",
                   DEVICE, "--grant", "refresh_token")
        self.assertEqual(grant_types("dev"), ["refresh_token", DEVICE])
        r = harness.tokenctl("client", "add", "x", "--public", "--grant",
                             "client_credentials", check=False,
                             legacy_grants=False)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("client_credentials", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = harness.tokenctl("client", "add", "x", "--public", "--grant",
                             "implicit", check=False, legacy_grants=False)
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("unknown --grant implicit", r.stderr)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM clients WHERE client_id = 'x'"), [("0",)])
        add_client("conf", "--grant", "client_credentials", secret="s")
        self.assertEqual(grant_types("conf"), ["client_credentials"])

    def test_metadata(self):
        m = self.t.http("GET", "/.well-known/oauth-authorization-server").json()
        base = "http://127.0.0.1:%d" % self.t.port
        self.assertEqual(m["device_authorization_endpoint"],
                         base + "/device_authorization")
        self.assertIs(m["authorization_response_iss_parameter_supported"],
                      True)
        self.assertEqual(sorted(m["grant_types_supported"]),
                         sorted(["authorization_code", "refresh_token",
                                 "password", "client_credentials", DEVICE]))


class UpgradeTest(unittest.TestCase):
    """Clients from before grant types keep what they could do."""

    DB = "tokend_upgrade"

    def test_existing_clients_keep_their_grants(self):
        # The schema as the previous release left it: migrations to 010.
        db = harness.legacy_database(self.DB)
        self.addCleanup(harness.pg().sql, "DROP DATABASE IF EXISTS %s WITH "
                        "(FORCE)" % self.DB)
        url = db.url
        db.sql("INSERT INTO clients (client_id, public) VALUES "
               "('old-spa', true); INSERT INTO clients (client_id, public, "
               "secret_hash) VALUES ('old-svc', false, 'x')")
        harness.tokenctl("migrate", url=url)
        rows = {c["id"]: c["grant_types"] for c in json.loads(
            harness.tokenctl("client", "list", "--json", url=url).stdout)}
        self.assertEqual(rows["old-spa"], ["authorization_code",
                                            "refresh_token", "password"])
        self.assertEqual(rows["old-svc"], ["authorization_code",
                                            "refresh_token", "password",
                                            "client_credentials"])
        # A row inserted by hand now gets SPEC 11's defaults.
        db.sql("INSERT INTO tokend.clients (client_id, public) "
               "VALUES ('new-spa', true)")
        shown = json.loads(harness.tokenctl("client", "show", "new-spa",
                                            "--json", url=url).stdout)
        self.assertEqual(shown["grant_types"], DEFAULT_PUBLIC)


if __name__ == "__main__":
    unittest.main()

"""The audit trail (SPEC 12, issue 13, migration 015): one row per token
issue, rotation, reuse, code replay, revocation, sign-in failure, lockout,
user and client change, with who acted (`by`), written in the transaction
of the change whatever made it (tokend, tokenctl, plain SQL); `tokenctl
audit` and its filters; retention; and no row, nor trigger call, for the
writer's usage flushes."""

import hashlib
import json
import time
import unittest

import harness
from test_oauth import basic, bearer, pkce

REDIRECT = "https://app.example/cb"
SPA_REDIRECT = "http://127.0.0.1:9/cb"
FLUSH = 0.2
MAX_FAILURES = 3
ALL_GRANTS = "{authorization_code,refresh_token,password,client_credentials}"
WEB = basic("web", "web-secret")


def sql(q, *params):
    return harness.pg().sql(q, *params)


def token_id(tok):
    return int(sql("SELECT id FROM tokens WHERE " + harness.BY_TOKEN,
                   tok)[0][0])


def audit_rows(where="true"):
    """Every audit row (oldest first) as a dict; detail parsed."""
    rows = sql("SELECT event, by, user_id, user_name, client_id, token_id, "
               "token_prefix, family, detail::text FROM audit WHERE " +
               where + " ORDER BY id")
    keys = ("event", "by", "user_id", "user", "client", "token", "prefix",
            "family", "detail")
    out = []
    for r in rows:
        d = dict(zip(keys, r))
        for k in ("user_id", "token", "family"):
            d[k] = int(d[k]) if d[k] is not None else None
        d["detail"] = json.loads(d["detail"])
        out.append(d)
    return out


def events(where="true"):
    return [(r["event"], r["by"]) for r in audit_rows(where)]


def ctl_audit(*args):
    r = harness.tokenctl("--json", "audit", *args)
    return json.loads(r.stdout)


class AuditBase(unittest.TestCase):
    config = {}

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("client", "add", "web", "--secret-stdin",
                         "--redirect-uri", REDIRECT, "--scope", "read write",
                         "--first-party", input="web-secret\n")
        harness.tokenctl("client", "add", "spa", "--public", "--redirect-uri",
                         SPA_REDIRECT, "--scope", "read write")
        # The password grant, whatever a new client gets by default.
        sql("UPDATE clients SET grant_types = %s::text[]", ALL_GRANTS)
        for u in ("alice", "bob"):
            harness.tokenctl("user", "add", u, "--password-stdin",
                             input=u + "-pw\n")
        config = {"refresh_grace": 0, "usage_flush_interval": FLUSH,
                  "login_max_failures": MAX_FAILURES, "login_window": 300}
        config.update(cls.config)
        cls.t = harness.Tokend(workers=2, config=config)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def setUp(self):
        sql("DELETE FROM audit")

    def token(self, form, headers=WEB):
        return self.t.http("POST", "/token", headers=headers, form=form)

    def login(self, user="alice", pw=None):
        r = self.token({"grant_type": "password", "username": user,
                        "password": pw or user + "-pw"})
        self.assertEqual(r.status, 200, r)
        return r.json()

    def refresh(self, rt):
        return self.token({"grant_type": "refresh_token",
                           "refresh_token": rt})

    def code(self, at, challenge):
        r = self.t.http("POST", "/authorize", headers=bearer(at), json={
            "client_id": "spa", "redirect_uri": SPA_REDIRECT,
            "code_challenge": challenge, "code_challenge_method": "S256"})
        self.assertEqual(r.status, 200, r)
        return r.json()["code"]

    def exchange(self, code, verifier):
        return self.token({"grant_type": "authorization_code", "code": code,
                           "redirect_uri": SPA_REDIRECT, "client_id": "spa",
                           "code_verifier": verifier}, {})

    def assert_no_secrets(self, *secrets):
        """No token, hash or password in any audit row."""
        text = "\n".join(str(r) for r in sql("SELECT audit::text FROM audit"))
        for s in secrets:
            self.assertNotIn(s, text)
            self.assertNotIn(hashlib.sha256(s.encode()).hexdigest(), text)
        for (h,) in sql("SELECT password_hash FROM users "
                        "WHERE password_hash IS NOT NULL UNION ALL "
                        "SELECT secret_hash FROM clients "
                        "WHERE secret_hash IS NOT NULL"):
            self.assertNotIn(h, text)
        self.assertNotIn("$argon2", text)


class TokenEventsTest(AuditBase):
    def test_issue_of_each_kind_by_api(self):
        j = self.login()
        v, ch = pkce()
        code = self.code(j["access_token"], ch)
        r = self.t.http("POST", "/pats", headers=bearer(j["access_token"]),
                        json={"name": "deploy", "scope": "read",
                              "expires_in": 3600})
        self.assertEqual(r.status, 201, r)
        pat = r.json()["token"]
        rows = audit_rows("event = 'token_issued'")
        by_kind = {r["detail"]["kind"]: r for r in rows}
        self.assertEqual(sorted(by_kind), ["access", "code", "pat",
                                           "refresh"])
        self.assertEqual(len(rows), 4)
        for kind, tok in (("access", j["access_token"]),
                          ("refresh", j["refresh_token"]), ("code", code),
                          ("pat", pat)):
            row = by_kind[kind]
            self.assertEqual(row["by"], "api")
            self.assertEqual(row["user"], "alice")
            self.assertEqual(row["token"], token_id(tok))
            self.assertEqual(row["prefix"], tok[:8])
        self.assertEqual(by_kind["access"]["client"], "web")
        self.assertEqual(by_kind["code"]["client"], "spa")
        self.assertIsNone(by_kind["pat"]["client"])
        self.assertEqual(by_kind["pat"]["detail"]["name"], "deploy")
        self.assertEqual(by_kind["access"]["family"],
                         token_id(j["refresh_token"]))
        self.assert_no_secrets(j["access_token"], j["refresh_token"], code,
                               pat, v)

    def test_rotation_then_reuse_is_one_reuse_row(self):
        j = self.login()
        fam = token_id(j["refresh_token"])
        k = self.refresh(j["refresh_token"])
        self.assertEqual(k.status, 200, k)
        k = k.json()
        rot = audit_rows("event = 'token_rotated'")
        self.assertEqual(len(rot), 1)
        self.assertEqual((rot[0]["by"], rot[0]["token"], rot[0]["family"],
                          rot[0]["prefix"], rot[0]["user"], rot[0]["client"]),
                         ("api", fam, fam, j["refresh_token"][:8], "alice",
                          "web"))
        issued = audit_rows("event = 'token_issued' AND "
                            "(detail->>'parent')::bigint = %d" % fam)
        self.assertEqual(sorted(r["detail"]["kind"] for r in issued),
                         ["access", "refresh"])
        # refresh_grace is 0: presenting the old token again is reuse.
        self.assertEqual(self.refresh(j["refresh_token"]).status, 400)
        self.assertEqual(self.t.http("GET", "/auth", headers=bearer(
            k["access_token"])).status, 401)
        reuse = audit_rows("event = 'refresh_reuse'")
        self.assertEqual(len(reuse), 1, audit_rows())
        self.assertEqual((reuse[0]["by"], reuse[0]["token"],
                          reuse[0]["family"], reuse[0]["prefix"],
                          reuse[0]["user"], reuse[0]["client"]),
                         ("api", fam, fam, j["refresh_token"][:8], "alice",
                          "web"))
        self.assertEqual(reuse[0]["detail"], {"tokens": 4})
        self.assertEqual(events("event = 'token_revoked'"), [])
        self.assert_no_secrets(j["refresh_token"], k["refresh_token"])

    def test_code_replay(self):
        at = self.login()["access_token"]
        v, ch = pkce()
        code = self.code(at, ch)
        t = self.exchange(code, v)
        self.assertEqual(t.status, 200, t)
        t = t.json()
        self.assertEqual(self.exchange(code, v).status, 400)
        rows = audit_rows("event = 'code_replay'")
        self.assertEqual([(r["by"], r["token"], r["prefix"]) for r in rows],
                         [("api", token_id(t["refresh_token"]),
                           t["refresh_token"][:8]),
                          ("api", token_id(code), code[:8])])
        self.assertEqual(rows[0]["detail"], {"tokens": 2})
        self.assertEqual(rows[1]["detail"], {"kind": "code", "tokens": 1})
        self.assertEqual({r["client"] for r in rows}, {"spa"})
        self.assertEqual(events("event = 'token_revoked'"), [])

    def test_revocations_by_api(self):
        j = self.login()
        r = self.t.http("POST", "/revoke", headers=WEB,
                        form={"token": j["access_token"]})
        self.assertEqual(r.status, 200)
        rows = audit_rows("event = 'token_revoked'")
        self.assertEqual(len(rows), 1)
        self.assertEqual((rows[0]["by"], rows[0]["token"], rows[0]["prefix"],
                          rows[0]["detail"]),
                         ("api", token_id(j["access_token"]),
                          j["access_token"][:8], {"kind": "access",
                                                  "tokens": 1}))
        # A refresh token takes its family: one row for the family.
        k = self.refresh(j["refresh_token"]).json()
        sql("DELETE FROM audit")
        r = self.t.http("POST", "/revoke", headers=WEB,
                        form={"token": k["refresh_token"]})
        self.assertEqual(r.status, 200)
        fam = token_id(j["refresh_token"])
        rows = audit_rows()
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual((rows[0]["event"], rows[0]["by"], rows[0]["token"],
                          rows[0]["family"], rows[0]["detail"]),
                         ("token_revoked", "api", fam, fam, {"tokens": 3}))

    def test_revocation_by_plain_sql(self):
        pat = harness.tokenctl("pat", "create", "--user", "bob", "--name",
                               "ci").stdout.strip()
        pid = token_id(pat)
        sql("UPDATE tokens SET revoked_at = now() WHERE id = %s", pid)
        rows = audit_rows("event = 'token_revoked'")
        self.assertEqual([(r["by"], r["token"], r["prefix"], r["user"])
                          for r in rows], [("sql", pid, pat[:8], "bob")])
        # What the session says it is: application_name, tokend.by.
        sql("DELETE FROM audit")
        sql("UPDATE tokens SET revoked_at = NULL WHERE id = %s", pid)
        sql("SET application_name = 'tokenctl'; UPDATE tokens SET "
            "revoked_at = now() WHERE id = %s", pid)
        sql("UPDATE tokens SET revoked_at = NULL WHERE id = %s", pid)
        sql("BEGIN; SELECT set_config('tokend.by', 'leak_report', true); "
            "UPDATE tokens SET revoked_at = now() WHERE id = %s; COMMIT",
            pid)
        self.assertEqual(events(), [("token_unrevoked", "sql"),
                                    ("token_revoked", "tokenctl"),
                                    ("token_unrevoked", "sql"),
                                    ("token_revoked", "leak_report")])
        # A plain DELETE of a live token ends it too.
        pat2 = harness.tokenctl("pat", "create", "--user", "bob", "--name",
                                "ci2").stdout.strip()
        sql("DELETE FROM tokens WHERE id = %s", token_id(pat2))
        self.assertEqual(events("event = 'token_deleted'"),
                         [("token_deleted", "sql")])

    def test_revocation_by_tokenctl(self):
        pat = harness.tokenctl("pat", "create", "--user", "bob", "--name",
                               "ci").stdout.strip()
        harness.tokenctl("token", "revoke", str(token_id(pat)))
        self.assertEqual(events(), [("token_issued", "tokenctl"),
                                    ("token_revoked", "tokenctl")])
        self.assert_no_secrets(pat)

    def test_truncate_is_one_row(self):
        harness.tokenctl("pat", "create", "--user", "bob", "--name", "x")
        sql("DELETE FROM audit")
        sql("TRUNCATE tokens CASCADE")
        rows = audit_rows()
        self.assertEqual([(r["event"], r["by"], r["detail"]) for r in rows],
                         [("table_truncated", "sql", {"table": "tokens"})])


class SignInTest(AuditBase):
    def fail(self, user, pw="wrong"):
        return self.token({"grant_type": "password", "username": user,
                           "password": pw})

    def test_failures_and_one_lockout_row(self):
        harness.tokenctl("user", "add", "carol", "--password-stdin",
                         input="carol-pw\n")
        sql("DELETE FROM audit")
        for _ in range(MAX_FAILURES):
            self.assertEqual(self.fail("carol").status, 400)
        for _ in range(2):          # refused: the limit is reached
            r = self.fail("carol", "carol-pw")
            self.assertEqual(r.status, 429, r)
        harness.wait_until(lambda: len(audit_rows()) >= MAX_FAILURES + 1,
                           msg="the sign-in rows")
        time.sleep(0.3)             # nothing more comes
        # Each worker writes its rows on its own connection, without
        # waiting: two workers' rows may commit in either order.
        rows = audit_rows()
        self.assertEqual(sorted(r["event"] for r in rows),
                         ["login_failed"] * MAX_FAILURES + ["login_locked"])
        uid = int(sql("SELECT id FROM users WHERE name = 'carol'")[0][0])
        for r in rows:
            self.assertEqual((r["by"], r["user"], r["user_id"], r["client"]),
                             ("api", "carol", uid, "web"))
            self.assertEqual(r["detail"]["peer"], "127.0.0.1")
            if r["event"] == "login_failed":
                self.assertEqual(r["detail"]["reason"], "wrong password")
            else:
                self.assertEqual(r["detail"]["failures"], MAX_FAILURES)
        self.assert_no_secrets("carol-pw", "wrong")
        # The operator's unlock is a user change.
        harness.tokenctl("user", "unlock", "carol")
        self.assertEqual(events("event = 'user_unlocked'"),
                         [("user_unlocked", "tokenctl")])
        self.assertEqual(self.login("carol")["token_type"], "Bearer")

    def test_unknown_user_and_success(self):
        self.assertEqual(self.fail("nobody").status, 400)
        harness.wait_until(lambda: audit_rows("event = 'login_failed'"),
                           msg="the login_failed row")
        row = audit_rows("event = 'login_failed'")[0]
        self.assertEqual((row["user"], row["user_id"], row["detail"]["reason"]),
                         ("nobody", None, "unknown user"))
        # A sign-in that succeeds is no failure, and its clearing of the
        # count is no unlock.
        sql("DELETE FROM audit")
        self.login("bob")
        time.sleep(0.5)
        self.assertEqual(sorted(set(events())), [("token_issued", "api")])


class ChangesTest(AuditBase):
    def test_user_changes_by_tokenctl(self):
        ctl = harness.tokenctl
        ctl("user", "add", "dave", "--password-stdin", input="pw-1\n")
        ctl("pat", "create", "--user", "dave", "--name", "p")
        ctl("user", "disable", "dave")
        ctl("user", "enable", "dave")
        ctl("user", "passwd", "dave", "--password-stdin", input="pw-2\n")
        sql("INSERT INTO login_failures (name, window_start, failures) "
            "VALUES ('dave', now(), 2)")
        ctl("user", "unlock", "dave")
        self.assert_no_secrets("pw-1", "pw-2")
        ctl("user", "delete", "dave")
        rows = audit_rows()
        self.assertEqual([(r["event"], r["by"]) for r in rows], [
            ("user_added", "tokenctl"), ("token_issued", "tokenctl"),
            ("user_disabled", "tokenctl"), ("token_revoked", "tokenctl"),
            ("user_enabled", "tokenctl"),
            ("user_password_changed", "tokenctl"),
            ("user_unlocked", "tokenctl"), ("user_deleted", "tokenctl")])
        self.assertEqual({r["user"] for r in rows}, {"dave"})
        self.assertEqual(rows[0]["detail"], {"password": True,
                                             "disabled": False})
        self.assertEqual(rows[6]["detail"], {"failures": 2})

    def test_deleting_a_user_records_its_live_tokens(self):
        harness.tokenctl("user", "add", "erin", "--no-password")
        pat = harness.tokenctl("pat", "create", "--user", "erin", "--name",
                               "p").stdout.strip()
        pid = token_id(pat)
        sql("DELETE FROM audit")
        sql("DELETE FROM users WHERE name = 'erin'")
        rows = audit_rows()
        self.assertEqual([(r["event"], r["by"], r["user"], r["token"])
                          for r in rows],
                         [("user_deleted", "sql", "erin", None),
                          ("token_deleted", "sql", "erin", pid)])

    def test_client_changes(self):
        ctl = harness.tokenctl
        ctl("client", "add", "c2", "--secret-stdin", "--scope", "read",
            input="first-secret\n")
        ctl("client", "rotate-secret", "c2", "--secret-stdin",
            input="second-secret\n")
        sql("UPDATE clients SET first_party = true, updated_at = now() "
            "WHERE client_id = 'c2'")
        sql("UPDATE clients SET updated_at = now() WHERE client_id = 'c2'")
        self.assert_no_secrets("first-secret", "second-secret")
        ctl("client", "remove", "c2")
        rows = audit_rows()
        self.assertEqual([(r["event"], r["by"], r["client"]) for r in rows], [
            ("client_added", "tokenctl", "c2"),
            ("client_secret_rotated", "tokenctl", "c2"),
            ("client_changed", "sql", "c2"),
            ("client_removed", "tokenctl", "c2")])
        self.assertEqual(rows[0]["detail"]["scope"], "read")
        self.assertIs(rows[0]["detail"]["secret"], True)
        self.assertEqual(rows[2]["detail"], {"first_party": True})


class TokenctlAuditTest(AuditBase):
    def test_filters_json_and_order(self):
        harness.tokenctl("user", "add", "frank", "--no-password")
        harness.tokenctl("pat", "create", "--user", "frank", "--name", "p")
        harness.tokenctl("pat", "create", "--user", "bob", "--name", "q")
        # frank's first row is an hour old.
        sql("UPDATE audit SET at = now() - interval '1 hour' WHERE id = "
            "(SELECT min(id) FROM audit WHERE user_name = 'frank')")
        rows = ctl_audit("--user", "frank")
        self.assertEqual([(r["event"], r["by"], r["user"]) for r in rows],
                         [("user_added", "tokenctl", "frank"),
                          ("token_issued", "tokenctl", "frank")])
        self.assertEqual(set(rows[1]), {"at", "event", "by", "user",
                                        "client", "token", "prefix",
                                        "detail"})
        self.assertEqual(rows[1]["detail"]["kind"], "pat")
        self.assertRegex(rows[1]["prefix"], r"^tkp_.{4}$")
        self.assertIsInstance(rows[1]["token"], int)
        self.assertRegex(rows[0]["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual([r["event"] for r in ctl_audit("--user", "frank",
                                                        "--since", "600")],
                         ["token_issued"])
        self.assertEqual([r["user"] for r in ctl_audit("--since", "600")],
                         ["frank", "bob"])      # newest last
        # Rows outlive the user.
        harness.tokenctl("user", "delete", "frank")
        self.assertEqual([r["event"] for r in ctl_audit("--user", "frank")],
                         ["user_added", "token_issued", "user_deleted",
                          "token_deleted"])
        self.assertEqual(ctl_audit("--user", "nobody"), [])
        # The table: a header and a line per row.
        out = harness.tokenctl("audit", "--user", "bob").stdout.splitlines()
        self.assertEqual(out[0].split(), ["at", "event", "by", "user",
                                          "client", "token", "prefix",
                                          "detail"])
        self.assertEqual(len(out), 2)
        self.assertIn("token_issued  tokenctl  bob", out[1])

    def test_usage_errors_exit_2(self):
        for args in (["--since", "0"], ["--since", "soon"],
                     ["--since", "-5"], ["--since", "12345678901"],
                     ["--user", ""], ["extra"], ["--name", "x"]):
            r = harness.tokenctl("audit", *args, check=False)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertEqual(r.stdout, "")

    def test_retention_cleanup_deletes_old_rows(self):
        harness.tokenctl("user", "add", "gina", "--no-password")
        harness.tokenctl("user", "disable", "gina")
        sql("UPDATE audit SET at = now() - interval '8 days' WHERE "
            "event = 'user_added'")
        r = harness.tokenctl("cleanup", env={"TOKEND_RETENTION": "604800"})
        self.assertEqual(events(), [("user_disabled", "tokenctl")])
        sql("UPDATE audit SET at = now() - interval '2 hours'")
        harness.tokenctl("cleanup", env={"TOKEND_RETENTION": "3600"})
        self.assertEqual(events(), [], r.stdout)


class UsageTest(AuditBase):
    """The writer's batched usage UPDATE fires no audit trigger at all (the
    WHEN clause), so it writes no row and calls no function."""

    @classmethod
    def setUpClass(cls):
        db = harness.pg().sql("SELECT current_database()")[0][0]
        harness.pg().sql("ALTER DATABASE %s SET track_functions = 'pl'" % db)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        db = harness.pg().sql("SELECT current_database()")[0][0]
        harness.pg().sql("ALTER DATABASE %s RESET track_functions" % db)

    def calls(self, fn):
        rows = sql("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                   "WHERE funcname = %s", fn)
        return int(rows[0][0])

    def test_usage_flushes_write_no_audit_rows(self):
        pat = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "busy").stdout.strip()
        sql("DELETE FROM audit")
        sql("SELECT pg_stat_reset()")
        n = 0
        for _ in range(3):
            for _ in range(5):
                self.assertEqual(self.t.http("GET", "/auth",
                                             headers=bearer(pat)).status, 200)
                n += 1
            want = str(n)
            harness.wait_until(lambda: sql(
                "SELECT use_count FROM tokens WHERE " + harness.BY_TOKEN,
                pat)[0][0] == want, timeout=5)
        # The writer's session reports its function calls (it runs
        # tokend_wipe_boxes every second): none of them is the trigger's.
        harness.wait_until(lambda: self.calls("tokend_wipe_boxes") >= 2,
                           timeout=10, msg="the writer's function counts")
        self.assertEqual(self.calls("tokend_audit_tokens"), 0)
        self.assertEqual(audit_rows(), [])
        # The control: the trigger's calls are counted when it runs.
        sql("UPDATE tokens SET revoked_at = now() WHERE " + harness.BY_TOKEN,
            pat)
        harness.wait_until(lambda: self.calls("tokend_audit_tokens") == 1,
                           timeout=5, msg="a counted trigger call")
        self.assertEqual(events(), [("token_revoked", "sql")])


if __name__ == "__main__":
    unittest.main()

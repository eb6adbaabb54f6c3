"""tokenctl, the operator's tool (SPEC sections 2 and 12): its conventions
(one-line errors, exit 2 for usage errors, --json on every listing), the
user and client commands, and revocations that reach a running tokend
within a second."""

import base64
import json
import time
import unittest

import harness

SECRET = "svc-secret"


def ctl(*args, **kw):
    return harness.tokenctl(*args, check=False, **kw)


def basic(cid, secret):
    raw = "%s:%s" % (cid, secret)
    return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


def pat(user):
    return harness.tokenctl("pat", "create", "--user", user, "--name",
                            "t").stdout.strip()


class CtlTest(unittest.TestCase):
    """Commands run against PostgreSQL alone."""

    def setUp(self):
        harness.pg().reset()

    def assert_usage(self, r, *words):
        self.assertEqual(r.returncode, 2, r)
        self.assertEqual(r.stdout, "")
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertTrue(r.stderr.startswith("tokenctl: "), r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)

    def assert_error(self, r, *words):
        self.assertEqual(r.returncode, 1, r)
        self.assertEqual(r.stdout, "")
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)

    def users(self):
        return {row["name"]: row for row in
                json.loads(harness.tokenctl("user", "list", "--json").stdout)}

    def test_missing_subcommand_names_the_subcommands(self):
        for word, subs in (("user", ("add", "enable", "passwd", "delete",
                                     "revoke-tokens", "unlock", "list")),
                           ("client", ("add", "list", "show", "remove",
                                       "rotate-secret")),
                           ("token", ("list", "revoke")),
                           ("pat", ("create",))):
            self.assert_usage(ctl(word), "missing subcommand", *subs)

    def test_usage_errors_are_one_line_exit_2(self):
        self.assert_usage(ctl("user", "frobnicate"), "unknown subcommand")
        self.assert_usage(ctl("nonsense"), "unknown command")
        self.assert_usage(ctl("user", "enable"), "missing arguments",
                          "user enable NAME")
        self.assert_usage(ctl("client", "show", "a", "b"), "too many")
        self.assert_usage(ctl("user", "list", "--bogus"), "--bogus")
        self.assert_usage(ctl("user", "delete", "x", "--public"),
                          "--public")

    def test_user_add_refuses_a_silent_passwordless_user(self):
        r = ctl("user", "add", "bob", input="pw\n")
        self.assert_usage(r, "--password-stdin", "--no-password")
        self.assertNotIn("bob", self.users())
        self.assert_usage(ctl("user", "add", "bob", "--no-password",
                              "--password-stdin", input="pw\n"))
        harness.tokenctl("user", "add", "bob", "--no-password")
        self.assertIsNone(harness.pg().sql(
            "SELECT password_hash FROM users WHERE name = 'bob'")[0][0])
        harness.tokenctl("user", "add", "eve", "--password-stdin",
                         input="pw\n")
        self.assertTrue(harness.pg().sql(
            "SELECT password_hash FROM users WHERE name = 'eve'")[0][0]
            .startswith("$argon2id$"))

    def test_unknown_user_is_one_line_exit_1(self):
        for cmd in ("enable", "delete", "revoke-tokens", "unlock",
                    "disable"):
            self.assert_error(ctl("user", cmd, "nobody"),
                              "unknown user nobody")
        self.assert_error(ctl("user", "passwd", "nobody",
                              "--password-stdin", input="pw\n"),
                          "unknown user nobody")

    def test_unknown_client_is_one_line_exit_1(self):
        for cmd in ("show", "remove", "rotate-secret"):
            self.assert_error(ctl("client", cmd, "nope"),
                              "unknown client nope")

    def test_user_enable_after_disable(self):
        harness.tokenctl("user", "add", "al", "--no-password")
        harness.tokenctl("user", "disable", "al")
        self.assertTrue(self.users()["al"]["disabled"])
        harness.tokenctl("user", "enable", "al")
        self.assertFalse(self.users()["al"]["disabled"])

    def test_user_passwd_needs_password_stdin(self):
        harness.tokenctl("user", "add", "al", "--no-password")
        self.assert_usage(ctl("user", "passwd", "al", input="pw\n"),
                          "--password-stdin")
        self.assert_error(ctl("user", "passwd", "al", "--password-stdin",
                              input="\n"), "password")
        harness.tokenctl("user", "passwd", "al", "--password-stdin",
                         input="new-pw\n")
        h = harness.pg().sql("SELECT password_hash FROM users "
                             "WHERE name = 'al'")[0][0]
        self.assertTrue(h.startswith("$argon2id$"), h)
        self.assertNotIn("new-pw", h)

    def test_user_delete_takes_its_tokens(self):
        harness.tokenctl("user", "add", "al", "--no-password")
        harness.tokenctl("user", "add", "bo", "--no-password")
        pat("al")
        pat("al")
        pat("bo")
        r = harness.tokenctl("user", "delete", "al")
        self.assertIn("2 tokens", r.stdout)
        self.assertEqual(sorted(self.users()), ["bo"])
        rows = json.loads(harness.tokenctl("token", "list", "--json").stdout)
        self.assertEqual([t["user"] for t in rows], ["bo"])

    def test_token_list_says_whose_token(self):
        harness.tokenctl("user", "add", "al", "--no-password")
        harness.tokenctl("user", "add", "bo", "--no-password")
        pat("al")
        pat("bo")
        rows = json.loads(harness.tokenctl("token", "list", "--json").stdout)
        self.assertEqual([t["user"] for t in rows], ["al", "bo"])
        table = harness.tokenctl("token", "list").stdout.splitlines()
        self.assertEqual(table[0].split()[:3], ["id", "user", "kind"])
        self.assertEqual(table[1].split()[1], "al")
        self.assertEqual(table[2].split()[1], "bo")

    def test_client_list_and_show(self):
        harness.tokenctl("client", "add", "web", "--secret-stdin",
                         "--redirect-uri", "https://a.example/cb",
                         "--redirect-uri", "https://a.example/2",
                         "--scope", "read write", "--first-party",
                         "--introspect", input="s3cret\n")
        harness.tokenctl("client", "add", "spa", "--public")
        rows = json.loads(harness.tokenctl("client", "list", "--json").stdout)
        self.assertEqual([r["id"] for r in rows], ["web", "spa"])
        web, spa = rows
        self.assertEqual(web["redirect_uris"],
                         ["https://a.example/cb", "https://a.example/2"])
        self.assertEqual((web["public"], web["first_party"],
                          web["introspect"], web["scope"]),
                         (False, True, True, "read write"))
        self.assertEqual((spa["public"], spa["redirect_uris"]), (True, []))
        table = harness.tokenctl("client", "list").stdout
        self.assertIn("https://a.example/cb https://a.example/2", table)
        self.assertNotIn("s3cret", table)
        shown = json.loads(harness.tokenctl("client", "show", "web",
                                            "--json").stdout)
        self.assertEqual(shown, web)
        text = harness.tokenctl("client", "show", "spa").stdout
        self.assertRegex(text, r"(?m)^public\s+yes$")

    def test_rotate_secret_of_public_client_fails(self):
        harness.tokenctl("client", "add", "spa", "--public")
        self.assert_error(ctl("client", "rotate-secret", "spa"), "public")
        self.assertIsNone(harness.pg().sql(
            "SELECT secret_hash FROM clients WHERE client_id = 'spa'")[0][0])


class LiveTest(unittest.TestCase):
    """Commands whose effect a running tokend must see within a second."""

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("client", "add", "svc", "--secret-stdin",
                         "--scope", "read", input=SECRET + "\n")
        cls.t = harness.Tokend(workers=2)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def auth(self, tok):
        return self.t.http("GET", "/auth", headers={
            "Authorization": "Bearer " + tok}).status

    def refused_within_a_second(self, status, what):
        """status() polled until 401 (SPEC 5: within 1 s); it answers
        200 until then."""
        start = time.monotonic()
        while time.monotonic() - start < 1.0:
            got = status()
            if got == 401:
                return
            self.assertEqual(got, 200)
            time.sleep(0.02)
        self.fail("%s still works a second later" % what)

    def fails_within_a_second(self, tok):
        self.refused_within_a_second(lambda: self.auth(tok), "the token")

    def grant(self, form, client="svc", secret=SECRET):
        return self.t.http("POST", "/token", headers=basic(client, secret),
                           form=form)

    def secret_fails_within_a_second(self, client, secret):
        """A secret a worker has cached stops working once the clients
        trigger's notification reaches the writer."""
        self.refused_within_a_second(lambda: self.grant(
            {"grant_type": "client_credentials"}, client, secret).status,
            "the old secret")

    def cached_pat(self, user):
        harness.tokenctl("user", "add", user, "--no-password")
        tok = pat(user)
        self.assertEqual(self.auth(tok), 200)
        return tok

    def test_user_delete_stops_its_tokens(self):
        tok = self.cached_pat("del1")
        harness.tokenctl("user", "delete", "del1")
        self.fails_within_a_second(tok)

    def test_user_revoke_tokens_keeps_the_user_enabled(self):
        tok = self.cached_pat("rev1")
        other = self.cached_pat("rev2")
        r = harness.tokenctl("user", "revoke-tokens", "rev1")
        self.assertIn("1 tokens revoked", r.stdout)
        self.fails_within_a_second(tok)
        self.assertEqual(self.auth(other), 200)
        self.assertEqual(harness.pg().sql(
            "SELECT disabled FROM users WHERE name = 'rev1'")[0][0], "f")
        self.assertEqual(self.auth(pat("rev1")), 200)

    def test_user_enable_lets_the_user_sign_in_again(self):
        harness.tokenctl("user", "add", "en1", "--password-stdin",
                         input="pw1\n")
        form = {"grant_type": "password", "username": "en1",
                "password": "pw1"}
        harness.tokenctl("user", "disable", "en1")
        self.assertEqual(self.grant(form).status, 400)
        harness.tokenctl("user", "enable", "en1")
        self.assertEqual(self.grant(form).status, 200)

    def test_user_passwd_changes_the_sign_in(self):
        harness.tokenctl("user", "add", "pw1", "--password-stdin",
                         input="old-pw\n")
        harness.tokenctl("user", "passwd", "pw1", "--password-stdin",
                         input="new-pw\n")
        form = {"grant_type": "password", "username": "pw1"}
        self.assertEqual(self.grant(dict(form, password="old-pw")).status,
                         400)
        self.assertEqual(self.grant(dict(form, password="new-pw")).status,
                         200)

    def test_client_remove_stops_its_tokens(self):
        harness.tokenctl("client", "add", "gone", "--secret-stdin",
                         input="gone-secret\n")
        r = self.grant({"grant_type": "client_credentials"}, "gone",
                       "gone-secret")
        self.assertEqual(r.status, 200, r)
        tok = r.json()["access_token"]
        self.assertEqual(self.auth(tok), 200)
        rows = json.loads(harness.tokenctl("token", "list", "--json").stdout)
        self.assertEqual([t["user"] for t in rows
                          if t["prefix"] == tok[:8]], [""])
        harness.tokenctl("client", "remove", "gone")
        self.fails_within_a_second(tok)
        self.assertEqual(self.grant({"grant_type": "client_credentials"},
                                    "gone", "gone-secret").status, 401)

    def test_rotate_secret_generated_and_from_stdin(self):
        harness.tokenctl("client", "add", "rot", "--secret-stdin",
                         input="first\n")
        cc = {"grant_type": "client_credentials"}
        r = harness.tokenctl("client", "rotate-secret", "rot")
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 1, r.stdout)
        new = lines[0]
        self.assertRegex(new, r"^[0-9a-f]{64}$")
        self.assertNotIn(new, harness.pg().sql(
            "SELECT secret_hash FROM clients WHERE client_id = 'rot'")[0][0])
        self.assertEqual(self.grant(cc, "rot", "first").status, 401)
        self.assertEqual(self.grant(cc, "rot", new).status, 200)
        r = harness.tokenctl("client", "rotate-secret", "rot",
                             "--secret-stdin", input="third\n")
        self.assertNotIn("third", r.stdout + r.stderr)
        self.secret_fails_within_a_second("rot", new)
        self.assertEqual(self.grant(cc, "rot", "third").status, 200)


if __name__ == "__main__":
    unittest.main()

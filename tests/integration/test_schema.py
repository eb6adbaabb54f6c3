"""The schema tokend (issue 13): tokend shares a database with an
application without clashing, and a database migrated before the schema
existed is moved into it whole."""

import unittest

import harness
from harness import Tokend, pg, tokenctl, wait_until

TABLES = {"users", "clients", "tokens", "usage_batches", "login_failures",
          "web_sessions", "consents", "device_codes", "web_tickets",
          "audit", "token_networks", "schema_migrations"}


def sql(url, q):
    """psql against another database of the cluster, search_path unset."""
    r = harness.subprocess.run(
        [pg().psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-d", url, "-c", q], capture_output=True, text=True, timeout=60,
        env=dict(harness._clean_env(),
                 PGOPTIONS="-c client_min_messages=warning"))
    if r.returncode != 0:
        raise harness.SQLError(r.stderr.strip())
    return [line.split("|") for line in r.stdout.splitlines() if line]


def auth(t, tok):
    return t.http("GET", "/auth",
                  headers={"Authorization": "Bearer " + tok}).status


class SchemaTest(unittest.TestCase):

    def check_layout(self, url):
        """Every tokend table and function is in tokend, none in public,
        and each function is pinned to its own search_path."""
        ours = {r[0] for r in sql(url, "SELECT tablename FROM pg_tables "
                                  "WHERE schemaname = 'tokend'")}
        self.assertTrue(TABLES <= ours, TABLES - ours)
        self.assertEqual(sql(url, "SELECT proname FROM pg_proc WHERE "
                             "pronamespace = 'public'::regnamespace AND "
                             "proname LIKE 'tokend%'"), [])
        unpinned = sql(url, "SELECT proname FROM pg_proc WHERE "
                       "pronamespace = 'tokend'::regnamespace AND NOT "
                       "coalesce(proconfig::text LIKE '%search_path%', "
                       "false)")
        self.assertEqual(unpinned, [])

    def serve(self, url):
        """A PAT made by tokenctl works through tokend on this database,
        and a plain SQL revocation in the schema reaches it."""
        tokenctl("user", "add", "sam", "--no-password", url=url)
        tok = tokenctl("pat", "create", "--user", "sam", "--name", "s",
                       url=url).stdout.strip()
        t = Tokend(config={"database_url": url}, workers=2)
        try:
            self.assertEqual(auth(t, tok), 200)
            sql(url, "UPDATE tokend.tokens SET revoked_at = now() "
                "WHERE kind = 'pat'")
            wait_until(lambda: auth(t, tok) == 401, timeout=3)
        finally:
            t.stop()

    def test_shares_a_database_with_an_application(self):
        url = harness.database("app_shared").url
        # An application's own tables, named like tokend's (Rails keeps a
        # schema_migrations of its own).
        sql(url, "CREATE TABLE users (id int, email text); "
            "INSERT INTO users VALUES (1, 'a@example.com'); "
            "CREATE TABLE tokens (v text); "
            "CREATE TABLE schema_migrations (version varchar PRIMARY KEY); "
            "INSERT INTO schema_migrations VALUES ('20240101000000')")
        tokenctl("migrate", url=url)
        self.check_layout(url)
        self.assertEqual(sql(url, "SELECT id, email FROM public.users"),
                         [["1", "a@example.com"]])
        self.assertEqual(sql(url, "SELECT version FROM "
                             "public.schema_migrations"),
                         [["20240101000000"]])
        self.assertEqual(tokenctl("migrate", url=url).returncode, 0)
        self.serve(url)

    def test_legacy_database_moves_into_the_schema(self):
        # What migrate did before the schema existed: each file up to
        # 010 in public, recorded in public.schema_migrations.
        url = harness.legacy_database("app_legacy").url
        sql(url, "INSERT INTO users (name) VALUES ('old')")
        tokenctl("migrate", url=url)
        self.check_layout(url)
        self.assertEqual(sql(url, "SELECT name FROM tokend.users"),
                         [["old"]])
        self.assertEqual(sql(url, "SELECT count(*) FROM pg_tables WHERE "
                             "schemaname = 'public'"), [["0"]])
        self.serve(url)


if __name__ == "__main__":
    unittest.main()

"""Retention (README "tokenctl", SPEC section 7 `retention`): tokens expired
or revoked longer ago than `retention`, and usage watermarks that old, are
deleted alike by `tokenctl cleanup` and by the writer's periodic sweep."""

import unittest

import harness

DAY = 86400


def count(query, *params):
    return int(harness.pg().sql(query, *params)[0][0])


class RetentionTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        self.kept = harness.tokenctl("pat", "create", "--user", "alice",
                                     "--name", "kept").stdout.strip()
        self.old = harness.tokenctl("pat", "create", "--user", "alice",
                                    "--name", "old").stdout.strip()
        harness.pg().sql("UPDATE tokens SET expires_at = now() - "
                         "interval '3 days' WHERE " + harness.BY_TOKEN,
                         self.old)
        harness.pg().sql("INSERT INTO usage_batches (instance, seq, at) "
                         "VALUES ('gone', 7, now() - interval '3 days'), "
                         "('recent', 8, now())")

    def assert_pruned(self):
        self.assertEqual(count("SELECT count(*) FROM tokens WHERE " +
                               harness.BY_TOKEN, self.old), 0)
        self.assertEqual(count("SELECT count(*) FROM tokens WHERE " +
                               harness.BY_TOKEN, self.kept), 1)
        self.assertEqual(harness.pg().sql(
            "SELECT instance FROM usage_batches WHERE instance IN "
            "('gone', 'recent')"), [("recent",)])

    def test_tokenctl_cleanup(self):
        r = harness.tokenctl("cleanup", env={"TOKEND_RETENTION": str(DAY)})
        self.assertEqual(r.stdout, "deleted 1 tokens\n")
        self.assert_pruned()

    def test_writer_prunes_as_tokenctl(self):
        with harness.Tokend(config={"retention": DAY}) as t:
            harness.wait_until(lambda: count(
                "SELECT count(*) FROM usage_batches WHERE "
                "instance = 'gone'") == 0, timeout=15)
            harness.wait_until(lambda: "tokens_cleaned" in t.log())
        self.assert_pruned()


if __name__ == "__main__":
    unittest.main()

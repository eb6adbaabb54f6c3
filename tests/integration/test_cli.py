"""tokend's command line: -t, --version, and what a bad configuration does
(SPEC sections 2 and 7)."""

import os
import re
import unittest

from harness import free_port, pg, tmpdir, tokend_cmd


def write(dirname, name, text):
    path = os.path.join(dirname, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class ConfigCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tmpdir("tokend-cli-")
        cls.good = write(cls.dir, "good.conf", (
            "# a comment, then settings\n"
            "listen = 127.0.0.1:%d\n"
            "workers = 2\n"
            "database_url = %s\n"
            "cache_dir = %s/cache\n"
            "cache_ttl = 300\n") % (free_port(), pg().url, cls.dir))

    def assert_config_error(self, r, path, line, key):
        """One line on stderr, exactly "FILE:LINE: key: reason"."""
        err = r.stderr.strip()
        self.assertRegex(err, r"\A%s:%d: %s: \S.*\Z" % (
            re.escape(path), line, re.escape(key)))
        self.assertNotIn("\n", err)

    def test_good_file_passes(self):
        r = tokend_cmd("-t", "-c", self.good)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_good_file_with_good_environment_passes(self):
        r = tokend_cmd("-t", "-c", self.good, env={"TOKEND_CACHE_TTL": "60"})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_bad_workers_value(self):
        path = write(self.dir, "workers.conf",
                     "# comment\nlisten = 127.0.0.1:8080\nworkers = banana\n")
        r = tokend_cmd("-t", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assert_config_error(r, path, 3, "workers")

    def test_workers_out_of_range(self):
        path = write(self.dir, "workers0.conf", "\n\nworkers = 0\n")
        r = tokend_cmd("-t", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assert_config_error(r, path, 3, "workers")

    def test_unknown_key(self):
        path = write(self.dir, "unknown.conf",
                     "workers = 2\nfrobnicate = yes\n")
        r = tokend_cmd("-t", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assert_config_error(r, path, 2, "frobnicate")

    def test_bad_listen(self):
        path = write(self.dir, "listen.conf", "listen = 127.0.0.1:99999\n")
        r = tokend_cmd("-t", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assert_config_error(r, path, 1, "listen")

    def test_missing_file(self):
        path = os.path.join(self.dir, "no-such.conf")
        r = tokend_cmd("-t", "-c", path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(path, r.stderr)

    def test_bad_environment_is_named(self):
        r = tokend_cmd("-t", "-c", self.good, env={"TOKEND_WORKERS": "0"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("TOKEND_WORKERS", r.stderr)

    def test_start_with_bad_file_exits_78_with_the_same_message(self):
        path = write(self.dir, "start.conf",
                     "# comment\nlisten = 127.0.0.1:%d\nworkers = banana\n"
                     % free_port())
        checked = tokend_cmd("-t", "-c", path)
        started = tokend_cmd("-c", path)
        self.assertEqual(started.returncode, 78)
        self.assert_config_error(started, path, 3, "workers")
        self.assertEqual(started.stderr.strip(), checked.stderr.strip())

    def test_start_with_bad_environment_exits_78(self):
        r = tokend_cmd("-c", self.good, env={"TOKEND_WORKERS": "0"})
        self.assertEqual(r.returncode, 78)
        self.assertIn("TOKEND_WORKERS", r.stderr)


class Version(unittest.TestCase):
    def test_version(self):
        r = tokend_cmd("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout + r.stderr, r"\d+\.\d+(\.\d+)?")


if __name__ == "__main__":
    unittest.main()

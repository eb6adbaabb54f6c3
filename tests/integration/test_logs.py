"""Logs (SPEC section 9): one event per line, logfmt or JSON, the access
log, and never a secret."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness


class CacheDirPlaceTest(unittest.TestCase):
    """At start the master says when cache_dir is on a disk: the workers
    write its two shared mappings on the request path, and after each
    writeback those writes fault into the filesystem (README "Where the
    cache lives").  On tmpfs it says nothing."""

    def setUp(self):
        harness.pg().reset()

    def fs_type(self, path):
        return subprocess.run(["stat", "-f", "-c", "%T", path],
                              capture_output=True, text=True,
                              check=True).stdout.strip()

    def test_said_for_a_disk_not_for_tmpfs(self):
        parents = ["/tmp", os.path.join(harness.ROOT, "build")]
        if os.path.isdir("/dev/shm"):
            parents.append("/dev/shm")
        for parent in parents:
            os.makedirs(parent, exist_ok=True)
            d = tempfile.mkdtemp(prefix="tokend-cache-", dir=parent)
            self.addCleanup(shutil.rmtree, d, True)
            in_memory = self.fs_type(d) in ("tmpfs", "ramfs")
            cache = os.path.join(d, "cache")
            with harness.Tokend(workers=1, config={"cache_dir": cache}) as t:
                said = [line for line in t.log().splitlines()
                        if "event=cache_dir_on_disk" in line]
                if in_memory:
                    self.assertEqual(said, [], parent)
                else:
                    self.assertEqual(len(said), 1, t.log())
                    self.assertIn("level=info", said[0])
                    self.assertIn("dir=" + cache, said[0])


class LogTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        self.tok = harness.tokenctl("pat", "create", "--user", "alice",
                                    "--name", "log").stdout.strip()

    def test_json_lines(self):
        with harness.Tokend(workers=1, config={"log_format": "json"}) as t:
            self.assertEqual(t.http("GET", "/auth", headers={
                "Authorization": "Bearer " + self.tok}).status, 200)
            harness.wait_until(lambda: "usage_flushed" in t.log())
            lines = [json.loads(l) for l in t.log().splitlines() if l]
        events = {l["event"] for l in lines}
        self.assertTrue({"started", "worker_started", "writer_started",
                         "db_connected", "usage_flushed"} <= events, events)
        for l in lines:
            self.assertTrue({"ts", "level", "event", "proc", "pid"} <= set(l))
            self.assertRegex(l["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_access_log_has_one_line_per_response_and_no_token(self):
        with harness.Tokend(workers=1) as t:
            path = os.path.join(t.dir, "access.log")
            t.reload_config({"access_log": path}, hup=True)
            harness.wait_until(lambda: "event=reloaded" in t.log())
            harness.wait_until(lambda: t.children().get("worker 1"))
            import time
            time.sleep(1.2)  # the old worker lingers, then the new serves
            for _ in range(3):
                t.http("GET", "/auth?scope=read", headers={
                    "Authorization": "Bearer " + self.tok})
            harness.wait_until(lambda: os.path.exists(path) and
                               open(path).read().count("event=request") >= 3)
            text = open(path).read()
        self.assertRegex(text, r"event=request .*path=/auth .*status=(200|403)")
        self.assertNotIn(self.tok[8:], text)
        self.assertNotIn("scope=read", text, "query strings are not logged")

    def test_no_token_or_password_in_the_log(self):
        harness.tokenctl("user", "add", "bob", "--password-stdin",
                         input="hunter2-secret\n")
        with harness.Tokend(workers=1, config={"log_level": "debug"}) as t:
            bad_sum = self.tok[:-1] + ("x" if self.tok[-1] != "x" else "y")
            for tok in (self.tok, bad_sum):
                t.http("GET", "/auth", headers={"Authorization":
                                                "Bearer " + tok})
            harness.tokenctl("token", "revoke", "1")
            harness.wait_until(lambda: "usage_flushed" in t.log())
            text = t.log() + t.stderr()
        self.assertNotIn(self.tok[8:], text)
        self.assertNotIn("hunter2", text)
        self.assertIsNone(re.search(r"tk[aprc]_[0-9A-Za-z]{20,}", text))


NOTICE_TRIGGER = """
CREATE FUNCTION tokend_test_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'tokend test notice on % of tokens', TG_OP;
    RETURN NULL;
END $$;
CREATE TRIGGER tokend_test_notice AFTER INSERT OR UPDATE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION tokend_test_notice();
"""


class NoticeAndStatusTest(unittest.TestCase):
    """Issue 10: libpq notices go through the logger, in its format; every
    status tokend sends has its own label in tokend_requests_total."""

    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        harness.tokenctl("client", "add", "svc", "--secret-stdin", "--scope",
                         "read", input="svc-secret\n")
        self.tok = harness.tokenctl("pat", "create", "--user", "alice",
                                    "--name", "log").stdout.strip()

    def tearDown(self):
        harness.pg().sql("DROP TRIGGER IF EXISTS tokend_test_notice ON tokens;"
                         "DROP FUNCTION IF EXISTS tokend_test_notice()")

    def notices(self, t):
        return [l for l in (json.loads(x) for x in t.log().splitlines() if x)
                if l["event"] == "pg_notice"]

    def test_notices_are_json_log_lines_not_raw_stderr(self):
        harness.pg().sql(NOTICE_TRIGGER)
        with harness.Tokend(workers=1, config={
                "log_format": "json", "usage_flush_interval": 0.2}) as t:
            # A use: the writer's usage UPDATE raises the notice.
            self.assertEqual(t.http("GET", "/auth", headers={
                "Authorization": "Bearer " + self.tok}).status, 200)
            # A grant: the worker's OAuth INSERT raises it too.
            self.assertEqual(t.http("POST", "/token", form={
                "grant_type": "client_credentials", "client_id": "svc",
                "client_secret": "svc-secret"}).status, 200)
            harness.wait_until(lambda: {"writer", "oauth"} <= {
                n["conn"] for n in self.notices(t)}, timeout=10,
                msg="no pg_notice from the writer and the OAuth connection")
            stderr = t.stderr()
            notes = self.notices(t)
        for n in notes:
            self.assertEqual(n["severity"], "NOTICE")
            self.assertEqual(n["level"], "info")
            self.assertRegex(n["message"],
                             r"^tokend test notice on (UPDATE|INSERT) of tokens$")
        self.assertNotIn("NOTICE", stderr)
        self.assertNotIn("tokend test notice", stderr)
        # tokenctl's notices go through the same logger (logfmt on stderr).
        r = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                             "n2")
        self.assertNotIn("NOTICE:", r.stderr)
        self.assertIn("event=pg_notice", r.stderr)

    def test_each_status_has_its_own_label(self):
        with harness.Tokend(workers=1) as t:
            sent = [
                ("/authorize", 415, t.http("POST", "/authorize", body=b"a=b",
                 headers={"Content-Type":
                          "application/x-www-form-urlencoded"})),
                ("/token", 405, t.http("GET", "/token")),
                ("other", 404, t.http("GET", "/nowhere")),
                ("/auth", 401, t.http("GET", "/auth")),
                ("/auth", 200, t.http("GET", "/auth", headers={
                    "Authorization": "Bearer " + self.tok})),
            ]
            metrics = t.http("GET", "/metrics").text
        for endpoint, status, r in sent:
            self.assertEqual(r.status, status, r)
            self.assertIn('tokend_requests_total{endpoint="%s",status="%d"} 1'
                          % (endpoint, status), metrics)
        self.assertNotIn('status="other"', metrics)


if __name__ == "__main__":
    unittest.main()

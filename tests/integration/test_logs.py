"""Logs (SPEC section 9): one event per line, logfmt or JSON, the access
log, and never a secret."""

import json
import os
import re
import unittest

import harness


class LogTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice")
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


if __name__ == "__main__":
    unittest.main()

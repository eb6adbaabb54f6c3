"""The process model (SPEC sections 1 and 8): titles, crashes, signals."""

import os
import re
import signal
import time
import unittest

import harness
from load import Load


def metric(t, name):
    """The value of an unlabelled metric in /metrics, as an int."""
    body = t.http("GET", "/metrics").text
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


class ProcessTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()

    def test_titles_and_children(self):
        with harness.Tokend(workers=2) as t:
            kids = t.children()
            self.assertEqual(sorted(kids), ["worker 1", "worker 2", "writer"])
            with open("/proc/%d/cmdline" % t.pid, "rb") as f:
                self.assertTrue(f.read().startswith(b"tokend: master"))

    def test_killed_worker_is_replaced_while_serving(self):
        with harness.Tokend(workers=2) as t:
            old = t.children()["worker 1"]
            load = Load(t.port, "/healthz", threads=2).start()
            load.wait_for(200)
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)
            kids = t.wait_children(
                lambda k: k.get("worker 1") not in (None, old), timeout=5)
            replaced = time.monotonic() - killed
            before = load.total()
            load.wait_for(before + 300)
            load.stop()
            self.assertNotEqual(kids["worker 1"], old)
            # SPEC: replaced within 100 ms; /proc polling adds its own lag.
            self.assertLess(replaced, 1.0)
            # Only requests in flight on the killed worker may fail.
            self.assertLessEqual(len(load.failures), 2, load.failures)
            self.assertEqual(load.total(), load.count(200))
            harness.wait_until(
                lambda: re.search(r"event=worker_exited .*signal=Killed",
                                  t.log()), timeout=5)
            self.assertEqual(metric(t, "tokend_worker_restarts_total"), 1)

    def test_killed_writer_is_replaced_and_ready_again(self):
        with harness.Tokend(workers=1) as t:
            old = t.children()["writer"]
            os.kill(old, signal.SIGKILL)
            kids = t.wait_children(
                lambda k: k.get("writer") not in (None, old), timeout=5)
            self.assertNotEqual(kids["writer"], old)
            harness.wait_until(
                lambda: t.http("GET", "/readyz").status == 200, timeout=10)
            self.assertIn("event=writer_exited", t.log())

    def test_crash_loop_backs_off(self):
        with harness.Tokend(workers=1) as t:
            pid = t.children()["worker 1"]
            for _ in range(4):
                os.kill(pid, signal.SIGKILL)
                kids = t.wait_children(
                    lambda k: k.get("worker 1") not in (None, pid),
                    timeout=10)
                pid = kids["worker 1"]
            delays = [int(d) for d in re.findall(
                r"event=respawn_delayed .*delay_ms=(\d+)", t.log())]
            self.assertGreaterEqual(len(delays), 2, t.log())
            self.assertEqual(delays, sorted(delays))
            self.assertLessEqual(max(delays), 5000)
            self.assertEqual(t.http("GET", "/healthz").status, 200)

    def test_sighup_under_load_fails_nothing(self):
        with harness.Tokend(workers=2) as t:
            kids = t.children()
            writer = kids.pop("writer")
            old = set(kids.values())
            load = Load(t.port, "/healthz", threads=4).start()
            load.wait_for(300)
            t.signal(signal.SIGHUP)
            # New workers; the writer stays (it keeps the cache's LISTEN).
            t.wait_children(
                lambda k: len(k) == 3 and k.get("writer") == writer and
                not (set(k.values()) & old), timeout=20)
            before = load.total()
            load.wait_for(before + 300)
            t.signal(signal.SIGHUP)
            time.sleep(1.5)
            load.wait_for(load.total() + 300)
            load.stop()
            self.assertEqual(load.failures, [])
            self.assertEqual(load.total(), load.count(200))
            self.assertIn("event=reloaded", t.log())

    def test_sighup_applies_new_config(self):
        with harness.Tokend(workers=1) as t:
            t.reload_config({"workers": 2}, hup=True)
            t.wait_children(lambda k: "worker 2" in k, timeout=10)
            self.assertEqual(t.http("GET", "/healthz").status, 200)

    def test_bad_config_on_sighup_keeps_serving(self):
        with harness.Tokend(workers=1) as t:
            t.reload_config({"workers": "many"}, hup=True)
            harness.wait_until(lambda: "event=reload_failed" in t.log())
            self.assertEqual(t.http("GET", "/healthz").status, 200)

    def test_sigterm_finishes_requests_in_flight(self):
        with harness.Tokend(workers=1) as t:
            c = harness.Conn(t.port)
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.2)
            t.signal(signal.SIGTERM)
            time.sleep(0.3)
            c.send(b"\r\n")
            r = c.read_response(timeout=5, method="GET")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("connection"), "close")
            self.assertEqual(t.proc.wait(15), 0)
            self.assertIn("event=stopped", t.log())

    def test_sigusr1_reopens_the_log(self):
        with harness.Tokend(workers=1) as t:
            path = os.path.join(t.dir, "tokend.log")
            os.rename(path, path + ".1")
            t.signal(signal.SIGUSR1)
            harness.wait_until(lambda: os.path.exists(path), timeout=5)
            os.kill(t.children()["worker 1"], signal.SIGKILL)
            harness.wait_until(lambda: "worker_exited" in open(path).read())
            self.assertNotIn("worker_exited", open(path + ".1").read())

    def test_children_exit_when_master_dies(self):
        t = harness.Tokend(workers=2)
        kids = list(t.children().values())
        os.kill(t.pid, signal.SIGKILL)
        t.proc.wait(5)

        def gone():
            return not any(os.path.exists("/proc/%d" % p) and
                           "tokend" in open("/proc/%d/cmdline" % p).read()
                           for p in kids)
        harness.wait_until(gone, timeout=15)

    def test_metrics_sum_over_workers(self):
        def healthz_200(body):
            m = re.search(r'tokend_requests_total\{endpoint="/healthz",'
                          r'status="200"\} (\d+)', body)
            return int(m.group(1)) if m else 0

        with harness.Tokend(workers=2) as t:
            before = healthz_200(t.http("GET", "/metrics").text)
            for _ in range(20):
                self.assertEqual(t.http("GET", "/healthz").status, 200)
            body = t.http("GET", "/metrics").text
            # Spread over both workers by the kernel, summed by /metrics.
            self.assertEqual(healthz_200(body) - before, 20)
            self.assertIn("tokend_request_duration_seconds_bucket", body)
            self.assertIsNotNone(metric(t, "tokend_connections_open"))


if __name__ == "__main__":
    unittest.main()

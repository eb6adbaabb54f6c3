"""The master's phases (master/README.md): each change is logged at debug
level as master_state, in the order the table says."""

import re
import signal
import unittest

import harness


def phases(log):
    """The (from, to) pairs of the master's master_state lines, in order."""
    return re.findall(r"event=master_state .*?from=(\w+) to=(\w+)",
                      log)


class MasterPhasesTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()

    def test_start_reload_stop(self):
        t = harness.Tokend(workers=1, config={"log_level": "debug"})
        try:
            self.assertEqual(phases(t.log()), [("starting", "run")])
            t.signal(signal.SIGHUP)
            harness.wait_until(lambda: "event=reloaded" in t.log(),
                               timeout=10)
            self.assertEqual(phases(t.log())[1:],
                             [("run", "reload"), ("reload", "run")])
            self.assertEqual(t.stop(), 0)
            self.assertEqual(phases(t.log())[3:], [
                ("run", "stop_workers"), ("stop_workers", "stop_writer"),
                ("stop_writer", "exit")])
        finally:
            t.stop()

    def test_refused_reload_returns_to_run(self):
        with harness.Tokend(workers=1, config={"log_level": "debug"}) as t:
            t.reload_config({"workers": "zero"}, hup=True)
            harness.wait_until(
                lambda: ("reload", "run") in phases(t.log()), timeout=10)
            self.assertIn("event=reload_failed", t.log())
            self.assertIn("reason=\"reload refused\"", t.log())


if __name__ == "__main__":
    unittest.main()

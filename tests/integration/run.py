"""Run the integration tests: python3 tests/integration/run.py [PATTERN]

Discovers tests/integration/test_*.py (unittest) and runs them with
verbosity 2.  PATTERN, like unittest's -k, keeps the tests whose full name
(module.Class.method) contains it, or matches it when it has a *:
"test_http", "Keepalive", "test_cli.*version*".  TOKEND_BIN names the
directory of tokend and tokenctl (default ./bin).

Before it, the ten slowest modules and the ten slowest tests with their
seconds (setUpClass included), to see where CI's time goes.  The last line is "N passed, M
failed" (", K skipped" when any were); the exit status is 1 when a test
failed or errored, or when none ran.
"""

import collections
import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class TimedResult(unittest.TextTestResult):
    """Charges the time since the previous test ended to each test
    (module.Class.method), so a class's setUp and tearDown count with its
    tests."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = collections.Counter()
        self._last = time.monotonic()

    def stopTest(self, test):
        super().stopTest(test)
        now = time.monotonic()
        self.seconds[test.id()] += now - self._last
        self._last = now


def main():
    sys.path.insert(0, HERE)
    # SIGTERM (a CI timeout) still runs the harness's atexit cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("TOKEND_BIN", os.path.join(os.getcwd(), "bin"))

    loader = unittest.TestLoader()
    if len(sys.argv) > 1 and sys.argv[1]:
        loader.testNamePatterns = [sys.argv[1] if "*" in sys.argv[1]
                                   else "*%s*" % sys.argv[1]]
    suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stderr,
                                     resultclass=TimedResult)
    result = runner.run(suite)
    modules = collections.Counter()
    for name, secs in result.seconds.items():
        modules[name.split(".")[0]] += secs
    tests = collections.Counter({name.split(".", 1)[-1]: secs
                                 for name, secs in result.seconds.items()})
    for what, seconds in (("modules", modules), ("tests", tests)):
        slowest = seconds.most_common(10)
        if slowest:
            print("slowest %s: %s" % (what, ", ".join(
                "%s %.0fs" % (m, s) for m, s in slowest)), file=sys.stderr)

    # An error in setUpClass or a module import is reported against a
    # holder, not a test that ran: it counts as failed, not as run.
    bad = [t for t, _ in result.failures + result.errors] + \
        list(result.unexpectedSuccesses)
    ran_bad = sum(1 for t in bad if isinstance(t, unittest.TestCase))
    failed = len(bad)
    skipped = len(result.skipped)
    passed = max(0, result.testsRun - ran_bad - skipped)
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    sys.stderr.flush()
    print(line, flush=True)
    return 1 if failed or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

"""No use lost and reload keeps the cache (issue 10, SPEC sections 6 and 8):
SIGTERM to every process at once, SIGKILL of every process then a restart
(the usage file in cache_dir), the master killed alone, SIGHUP under load.

Uses are counted the way a client sees them: the 200s the load received.
use_count may exceed that by the requests in flight when a process died
(at most one per client connection), never fall short of it."""

import os
import re
import signal
import time
import unittest

import harness
from load import Load
import test_usage
from test_usage import use_count

INTERVAL = 0.3
THREADS = 2             # per token: the most uses a kill leaves in flight


def metric(t, name):
    body = t.http("GET", "/metrics").text
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


def proc_state(pid):
    """The state letter in /proc/PID/stat (R, S, T, Z...), None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return None


def batch_seq():
    rows = harness.pg().sql("SELECT coalesce(max(seq), 0) FROM usage_batches")
    return int(rows[0][0])


class CommitHold:
    """Every commit that wrote something waits for a synchronous standby
    that does not exist, until release(): the writer's batch is held
    between its COMMIT and the answer, the window a kill must survive.
    Nothing else writes meanwhile (lookups and LISTEN do not)."""

    def __init__(self):
        # contrib/pg.sh turns synchronous_commit off for speed.
        harness.pg().sql("ALTER SYSTEM SET synchronous_commit = on")
        harness.pg().sql("ALTER SYSTEM SET synchronous_standby_names = "
                         "'nobody'")
        harness.pg().sql("SELECT pg_reload_conf()")

    def release(self):
        harness.pg().sql("ALTER SYSTEM RESET synchronous_standby_names")
        harness.pg().sql("ALTER SYSTEM RESET synchronous_commit")
        harness.pg().sql("SELECT pg_reload_conf()")


def writer_commit_waiting():
    rows = harness.pg().sql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
        "'tokend writer%%' AND wait_event = 'SyncRep'")
    return int(rows[0][0]) > 0


class DurabilityTest(unittest.TestCase):
    # A clean database, alice, three PATs in self.tokens.
    setUp = test_usage.UsageTest.setUp

    def start(self, **config):
        config.setdefault("usage_flush_interval", INTERVAL)
        return harness.Tokend(workers=2, config=config)

    def loads(self, t, tokens=None, threads=THREADS):
        return [Load(t.port, "/auth", {"Authorization": "Bearer " + tok},
                     threads=threads).start()
                for tok in (tokens or self.tokens)]

    def under_load(self, seconds=1.5):
        """A tokend serving /auth for every token for that long."""
        t = self.start()
        loads = self.loads(t)
        time.sleep(seconds)
        return t, loads

    def stop_loads(self, loads):
        for load in loads:
            load.stop()

    def assert_exact(self, loads, in_flight=THREADS, timeout=15):
        """use_count reaches the 200s, and stays within the in-flight
        allowance above them once the flushes are done."""
        for tok, load in zip(self.tokens, loads):
            ok = load.count(200)
            deadline = time.monotonic() + timeout
            while use_count(tok) < ok and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertGreaterEqual(use_count(tok), ok, "uses lost")
        time.sleep(4 * INTERVAL)
        for tok, load in zip(self.tokens, loads):
            self.assertGreater(load.count(200), 50)
            self.assertLessEqual(use_count(tok), load.count(200) + in_flight,
                                 "uses counted twice")

    def kill_all(self, t, sig, loads):
        """What systemd does without KillMode=mixed: every process of the
        service gets the signal at once.  Returns the master's status once
        it is gone, with the load stopped."""
        os.killpg(t.pid, sig)
        status = t.proc.wait(30)
        self.stop_loads(loads)
        return status

    # ---- SIGTERM -------------------------------------------------------

    def test_sigterm_to_every_process_under_load(self):
        t, loads = self.under_load(1.5)
        self.assertEqual(self.kill_all(t, signal.SIGTERM, loads), 0)
        self.assertIn("event=stopped", t.log())
        self.assertNotIn("usage_unflushed", t.log())
        # Every process stopped gracefully: nothing is left for a restart.
        self.assertNotIn("event=usage_recovered", t.log())
        self.assert_exact(loads)

    def test_writer_dies_while_the_workers_drain(self):
        """The writer dies after the stop began, so it is not respawned;
        a worker still finishes a request, whose use only a writer started
        for the last flush alone can write."""
        t, loads = self.under_load()
        self.stop_loads(loads)
        writer = t.children()["writer"]
        c = t.conn()
        c.send(("GET /auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                "%s\r\n" % self.tokens[0]).encode())
        time.sleep(0.2)
        t.signal(signal.SIGTERM)
        harness.wait_until(lambda: "event=stopping" in t.log())
        os.kill(writer, signal.SIGKILL)
        harness.wait_until(lambda: "event=writer_exited" in t.log())
        c.send(b"\r\n")
        self.assertEqual(c.read_response(method="GET").status, 200)
        self.assertEqual(t.proc.wait(30), 0)
        self.assertEqual(t.log().count("event=writer_started"), 2)
        self.assertEqual(use_count(self.tokens[0]), loads[0].count(200) + 1)
        for tok, load in zip(self.tokens[1:], loads[1:]):
            self.assertEqual(use_count(tok), load.count(200))

    def test_master_killed_children_flush_before_exit(self):
        t, loads = self.under_load(1.5)
        kids = list(t.children().values())
        os.kill(t.pid, signal.SIGKILL)
        t.proc.wait(5)
        harness.wait_until(lambda: all(proc_state(p) in ("Z", None)
                                       for p in kids), timeout=20)
        self.stop_loads(loads)
        self.assertIn("event=master_gone", t.log())
        self.assert_exact(loads)

    # ---- SIGKILL of every process, then a restart ------------------------

    def test_sigkill_every_process_then_restart(self):
        t, loads = self.under_load(1.5)
        self.kill_all(t, signal.SIGKILL, loads)
        t.start()
        self.assertRegex(t.log(), r"event=usage_recovered .*uses=\d+")
        self.assert_exact(loads)
        # The file's instance carried on: one watermark row, not two.
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM usage_batches"), [("1",)])

    def test_sigkill_right_after_a_batch_committed(self):
        """The writer is stopped between its batch's commit and emptying
        the tables: the restart must find the batch committed and not
        apply it again."""
        t, loads = self.under_load(1.0)
        hold = CommitHold()
        try:
            harness.wait_until(writer_commit_waiting, timeout=10)
            before = batch_seq()
            os.kill(t.children()["writer"], signal.SIGSTOP)
        finally:
            hold.release()
        harness.wait_until(lambda: batch_seq() > before, timeout=10)
        self.kill_all(t, signal.SIGKILL, loads)
        t.start()
        self.assert_exact(loads)

    def test_sigkill_while_a_batch_commits(self):
        """The killed writer's batch is still committing in PostgreSQL
        when tokend starts again, and becomes visible after: the new writer
        must wait for it and not send the same uses a second time."""
        t, loads = self.under_load(1.0)
        hold = CommitHold()
        try:
            harness.wait_until(writer_commit_waiting, timeout=10)
            self.kill_all(t, signal.SIGKILL, loads)
            t.start()
            harness.wait_until(lambda: "event=usage_waiting" in t.log(),
                               timeout=10)
        finally:
            hold.release()
        self.assert_exact(loads)

    def test_usage_file_of_another_layout_is_ignored(self):
        t = harness.Tokend(workers=1, start=False)
        cache = t.config["cache_dir"]
        os.makedirs(cache)
        with open(os.path.join(cache, "usage.shm"), "wb") as f:
            f.write(b"not a usage file" * 1000)
        t.start()
        self.assertIn("event=usage_file_ignored", t.log())
        tok = self.tokens[0]
        r = t.http("GET", "/auth", headers={"Authorization": "Bearer " + tok})
        self.assertEqual(r.status, 200)
        st = os.stat(os.path.join(cache, "usage.shm"))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(t.stop(), 0)
        self.assertEqual(use_count(tok), 1)

    # ---- SIGHUP ----------------------------------------------------------

    def test_sighup_under_load_keeps_the_cache(self):
        extra = [harness.tokenctl("pat", "create", "--user", "alice",
                                  "--name", "x%d" % i).stdout.strip()
                 for i in range(9)]
        with self.start() as t:
            loads = self.loads(t, threads=1)
            more = self.loads(t, extra, threads=1)
            distinct = len(self.tokens) + len(extra)
            harness.wait_until(
                lambda: metric(t, "tokend_cache_entries") >= distinct)
            kids = t.children()
            old = {kids[k] for k in kids if k != "writer"}
            misses = metric(t, "tokend_cache_misses_total")
            clears = t.log().count("event=cache_cleared")
            t.signal(signal.SIGHUP)
            least = distinct
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                least = min(least, metric(t, "tokend_cache_entries"))
                k = t.children()
                if len(k) == 3 and not (set(k.values()) & old):
                    break
                time.sleep(0.05)
            time.sleep(0.5)
            self.stop_loads(loads + more)
            self.assertIn("event=reloaded", t.log())
            self.assertEqual(least, distinct, "cache entries dropped")
            self.assertLess(metric(t, "tokend_cache_misses_total") - misses,
                            distinct, "a burst of misses after the reload")
            self.assertEqual(t.log().count("event=cache_cleared"), clears)
            for load in loads + more:
                self.assertEqual(load.failures, [])
                self.assertEqual(load.total(), load.count(200))
            self.assert_exact(loads, in_flight=0)

    def test_sighup_with_a_new_database_url_clears_the_cache(self):
        with self.start() as t:
            tok = self.tokens[0]
            auth = {"Authorization": "Bearer " + tok}
            self.assertEqual(t.http("GET", "/auth", headers=auth).status, 200)
            self.assertGreaterEqual(metric(t, "tokend_cache_entries"), 1)
            clears = t.log().count("event=cache_cleared")
            # The same database over TCP: a new database_url all the same.
            t.reload_config({"database_url": harness.pg().tcp_url}, hup=True)
            harness.wait_until(
                lambda: t.log().count("event=cache_cleared") > clears,
                timeout=15)
            self.assertIn("event=writer_reloaded", t.log())
            self.assertRegex(t.log(), r"event=writer_reloaded .*"
                             r"database_changed=1")
            harness.wait_until(
                lambda: t.http("GET", "/auth", headers=auth).status == 200,
                timeout=10)
            self.assertEqual(t.stop(), 0)
            self.assertEqual(use_count(tok), 2)


if __name__ == "__main__":
    unittest.main()

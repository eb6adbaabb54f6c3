"""Faults (issue 10, SPEC 5): bounded staleness when a part stalls.

Each test breaks one part the way it breaks in production (a stopped
writer, a pooler that drops notifications, a row lock, TRUNCATE, a
replica-role session, PostgreSQL down) and asserts what a user or an
operator sees: /auth answers, /readyz, log events, use_count.
"""

import base64
import os
import re
import signal
import subprocess
import time
import unittest

import harness
from load import Load


def pat(name, user="alice"):
    return harness.tokenctl("pat", "create", "--user", user, "--name",
                            name).stdout.strip()


def token_id(tok):
    return int(harness.pg().sql("SELECT id FROM tokens WHERE " +
                                harness.BY_TOKEN, tok)[0][0])


def use_count(tok):
    return int(harness.pg().sql("SELECT use_count FROM tokens WHERE " +
                                harness.BY_TOKEN, tok)[0][0])


def auth(t, tok, timeout=5):
    return t.http("GET", "/auth", headers={"Authorization": "Bearer " + tok},
                  timeout=timeout)


def revoke_sql(tok):
    harness.pg().sql("UPDATE tokens SET revoked_at = now() WHERE " +
                     harness.BY_TOKEN, tok)


def refused_within(t, tok, seconds):
    """Seconds until /auth refuses tok with 401, polled; fails the test when
    that takes longer than seconds (or anything but 200/401 comes)."""
    start = time.monotonic()
    while True:
        r = auth(t, tok)
        took = time.monotonic() - start
        if r.status == 401:
            return took
        if r.status != 200:
            raise AssertionError("unexpected %r" % r)
        if took > seconds:
            raise AssertionError("still 200 after %.2fs" % took)
        time.sleep(0.02)


def metric(t, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name),
                  t.http("GET", "/metrics").text, re.M)
    return float(m.group(1)) if m else None


def readyz(t):
    r = t.http("GET", "/readyz")
    return r, r.json()


class PgBouncer:
    """A PgBouncer of the test's own on a free loopback port, in front of
    the harness's cluster, with a config in a temp dir."""

    def __init__(self, mode):
        self.dir = harness.tmpdir("tokend-pgbouncer-")
        os.chmod(self.dir, 0o777)   # it runs as postgres when we are root
        self.port = harness.free_port()
        self.url = "postgresql://postgres@127.0.0.1:%d/tokend" % self.port
        conf = os.path.join(self.dir, "pgbouncer.ini")
        with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
            f.write('"postgres" ""\n')
        with open(conf, "w") as f:
            f.write(
                "[databases]\n"
                "tokend = host=127.0.0.1 port=%d dbname=tokend "
                "user=postgres\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\nlisten_port = %d\n"
                "unix_socket_dir =\n"
                "auth_type = trust\nauth_file = %s/userlist.txt\n"
                "pool_mode = %s\ndefault_pool_size = 4\n"
                "logfile = %s/pgbouncer.log\npidfile = %s/pgbouncer.pid\n"
                % (harness.pg().port, self.port, self.dir, mode, self.dir,
                   self.dir))
        cmd = ["/usr/sbin/pgbouncer", conf]
        if os.getuid() == 0:    # pgbouncer refuses to run as root
            cmd[1:1] = ["-u", "postgres"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        harness.wait_until(self._answers, timeout=10,
                           msg="pgbouncer did not start")

    def _answers(self):
        r = subprocess.run([harness.pg().psql, "-X", "-At", "-d", self.url,
                            "-c", "SELECT 1"], capture_output=True, text=True,
                           env=harness._clean_env())
        return r.returncode == 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Base(unittest.TestCase):
    def setUp(self):
        harness.pg().start()    # a test before may have left it stopped
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")


@unittest.skipUnless(os.path.exists("/usr/sbin/pgbouncer"),
                     "pgbouncer is not installed")
class PoolerTest(Base):
    def test_session_mode_works_and_is_confirmed(self):
        bouncer = PgBouncer("session")
        self.addCleanup(bouncer.stop)
        tok = pat("s")
        with harness.Tokend(workers=1, config={
                "database_url": bouncer.url}) as t:
            self.assertEqual(auth(t, tok).status, 200)
            _, body = harness.wait_until(
                lambda: (lambda rb: rb if rb[1]["feed"] == "fresh"
                         else None)(readyz(t)), timeout=10)
            self.assertEqual(body["status"], "ready")
            self.assertIn("event=feed_confirmed", t.log())
            revoke_sql(tok)
            self.assertLess(refused_within(t, tok, 1.0), 1.0)
            self.assertNotIn("feed_unconfirmed", t.log())

    def test_transaction_mode_is_detected_and_hits_verified(self):
        bouncer = PgBouncer("transaction")
        self.addCleanup(bouncer.stop)
        tok, busy = pat("x"), pat("busy")
        lag = 2
        with harness.Tokend(workers=2, config={
                "database_url": bouncer.url,
                "max_revocation_lag": lag}) as t:
            self.assertEqual(auth(t, tok).status, 200)
            harness.wait_until(
                lambda: re.search(r"level=error event=feed_unconfirmed",
                                  t.log()), timeout=lag + 5,
                msg="a pooler dropping notifications went unnoticed")
            r, body = readyz(t)
            self.assertEqual(body["feed"], "unconfirmed", body)
            self.assertEqual(r.status, 200, body)   # it can verify
            self.assertEqual(auth(t, tok).status, 200)
            harness.tokenctl("token", "revoke", token_id(tok))
            self.assertLess(refused_within(t, tok, lag + 1.0), lag + 1.0)
            # Logged once, not once per ping.
            self.assertEqual(t.log().count("event=feed_unconfirmed"), 1)
            # Verified hits through the pooler, from every worker at once
            # (prepared statements do not survive there: lookup.c).
            load = Load(t.port, "/auth", {"Authorization": "Bearer " + busy},
                        threads=4).start()
            try:
                load.wait_for(200)
            finally:
                load.stop()
            self.assertEqual(load.failures, [])
            self.assertEqual(load.total(), load.count(200), load.status)


class WriterStallTest(Base):
    def test_stopped_writer_revocation_still_refused_and_writer_replaced(self):
        lag = 2
        victim, busy = pat("victim"), pat("busy")
        with harness.Tokend(workers=2, config={
                "max_revocation_lag": lag}) as t:
            self.assertEqual(auth(t, victim).status, 200)
            load = Load(t.port, "/auth", {"Authorization": "Bearer " + busy},
                        threads=3).start()
            old = t.children()["writer"]
            try:
                load.wait_for(50)
                os.kill(old, signal.SIGSTOP)
                stopped = time.monotonic()
                revoke_sql(victim)
                took = refused_within(t, victim, lag + 1.0)
                self.assertLess(time.monotonic() - stopped, lag + 1.0)
                kids = t.wait_children(
                    lambda k: k.get("writer") not in (None, old), timeout=20)
                self.assertNotEqual(kids["writer"], old)
                self.assertRegex(t.log(), r"level=error event=writer_stalled"
                                 r" .*child_pid=%d" % old)
                t.wait_listening()
                before = load.total()
                load.wait_for(before + 50)
            finally:
                load.stop()
                try:
                    os.kill(old, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.assertLess(took, lag + 1.0)
            self.assertEqual(load.failures, [])
            self.assertEqual(load.total(), load.count(200), load.status)
            self.assertEqual(auth(t, victim).status, 401)


class ClientCacheStaleFeedTest(Base):
    """A worker remembers a client's verified secret until the feed says
    the client changed.  With the feed stopped (a writer stopped, before
    the master replaces it), nothing would say so: a rotated secret must
    still fail at once, as a revoked token does (SPEC 5)."""

    def grant(self, t, client, secret):
        raw = ("%s:%s" % (client, secret)).encode()
        return t.http("POST", "/token", form={
            "grant_type": "client_credentials"}, headers={
            "Authorization": "Basic " + base64.b64encode(raw).decode()})

    def test_rotated_secret_fails_while_the_feed_is_stopped(self):
        lag = 1
        for cid, secret in (("rot", "rot-old"), ("other", "rot-new"),
                            ("steady", "steady-secret")):
            harness.tokenctl("client", "add", cid, "--secret-stdin",
                             input=secret + "\n")
        with harness.Tokend(workers=1, config={
                "max_revocation_lag": lag, "login_max_failures": 3}) as t:
            # Both verified once: cached in the worker.
            self.assertEqual(self.grant(t, "rot", "rot-old").status, 200)
            self.assertEqual(self.grant(t, "steady",
                                        "steady-secret").status, 200)
            old = t.children()["writer"]
            try:
                os.kill(old, signal.SIGSTOP)
                harness.wait_until(lambda: metric(
                    t, "tokend_revocation_feed_age_seconds") > lag,
                    timeout=5, interval=0.05)
                # rot's secret becomes other's, behind tokend's back.
                harness.pg().sql(
                    "UPDATE clients SET secret_hash = (SELECT secret_hash "
                    "FROM clients WHERE client_id = 'other') "
                    "WHERE client_id = 'rot'")
                self.assertEqual(self.grant(t, "rot", "rot-old").status,
                                 401)
                self.assertEqual(self.grant(t, "rot", "rot-new").status,
                                 200)
                # Whoever keeps the old secret is guessing now: the
                # failure limit applies as to anyone (3 failures since
                # the last success here, then 429 without a hash).
                self.assertEqual([self.grant(t, "rot", "rot-old").status
                                  for _ in range(4)], [401, 401, 401, 429])
                # An unchanged client still gets in while the feed is
                # stale: its row is read again, its secret still holds.
                self.assertEqual(self.grant(t, "steady",
                                            "steady-secret").status, 200)
                # The stopped writer was still the one: no new writer's
                # LISTEN had told the workers to forget their clients.
                self.assertEqual(t.children()["writer"], old)
            finally:
                try:
                    os.kill(old, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class RowLockTest(Base):
    def test_revocation_arrives_while_a_flush_waits_on_a_lock(self):
        locked, other = pat("locked"), pat("other")
        with harness.Tokend(workers=1, config={
                "usage_flush_interval": 0.2}) as t:
            self.assertEqual(auth(t, other).status, 200)
            self.assertEqual(auth(t, locked).status, 200)
            # Both rows' first uses flushed: the next flush touches only
            # the locked row, so nothing of tokend's holds the other one.
            harness.wait_until(lambda: use_count(other) == 1 and
                               use_count(locked) == 1, timeout=10)
            psql = subprocess.Popen(
                [harness.pg().psql, "-X", "-q", "-d", harness.pg().url],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, text=True,
                env=harness._clean_env({"PGAPPNAME": "locker"}))
            try:
                psql.stdin.write("BEGIN;\nSELECT 1 FROM tokend.tokens WHERE id = "
                                 "%d FOR UPDATE;\n" % token_id(locked))
                psql.stdin.flush()
                harness.wait_until(lambda: harness.pg().sql(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name "
                    "= 'locker' AND state = 'idle in transaction'"),
                    timeout=10)
                ok = 1 + sum(auth(t, locked).status == 200
                             for _ in range(20))
                # A flush now waits on the row lock.
                harness.wait_until(lambda: harness.pg().sql(
                    "SELECT 1 FROM pg_stat_activity WHERE application_name "
                    "= 'tokend writer' AND wait_event_type = 'Lock'"),
                    timeout=10)
                revoke_sql(other)
                self.assertLess(refused_within(t, other, 1.0), 1.0)
            finally:
                psql.stdin.write("ROLLBACK;\n")
                psql.stdin.close()
                psql.wait(10)
            self.assertEqual(ok, 21)
            harness.wait_until(lambda: use_count(locked) == ok, timeout=20,
                               msg="use_count %d, want %d" % (
                                   use_count(locked), ok))
            time.sleep(1)   # nothing counted twice after
            self.assertEqual(use_count(locked), ok)


class EveryPathTest(Base):
    def test_truncate_reaches_the_cache(self):
        tok = pat("t")
        with harness.Tokend(workers=2) as t:
            for _ in range(4):
                self.assertEqual(auth(t, tok).status, 200)
            harness.pg().sql("TRUNCATE tokens CASCADE")
            self.assertLess(refused_within(t, tok, 1.0), 1.0)
            self.assertIn('reason=truncate', t.log())

    def test_replica_role_update_reaches_the_cache(self):
        tok = pat("r")
        with harness.Tokend(workers=2) as t:
            for _ in range(4):
                self.assertEqual(auth(t, tok).status, 200)
            harness.pg().sql(
                "SET session_replication_role = replica;\n"
                "UPDATE tokens SET revoked_at = now() WHERE " +
                harness.BY_TOKEN, tok)
            self.assertLess(refused_within(t, tok, 1.0), 1.0)


class ReadyzTest(Base):
    def test_stopping_is_not_ready(self):
        with harness.Tokend(workers=1) as t:
            harness.wait_until(lambda: readyz(t)[1]["feed"] == "fresh",
                               timeout=10)
            r, body = readyz(t)
            self.assertEqual(r.status, 200, body)
            with t.conn() as c:
                # A request in flight when SIGTERM comes is still answered.
                c.send(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
                time.sleep(0.2)
                t.signal(signal.SIGTERM)
                harness.wait_until(lambda: "event=worker_stopping" in
                                   t.log(), timeout=5)
                c.send(b"\r\n")
                r = c.read_response()
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["reason"], "stopping")
            self.assertIsNotNone(r.header("retry-after"))


class StaleCacheTest(Base):
    def tearDown(self):
        harness.pg().start()

    def test_postgres_down_cache_stands_until_stale_cache_ttl(self):
        lag, ttl = 1, 4
        cached, uncached = pat("c"), pat("u")
        with harness.Tokend(workers=1, config={
                "max_revocation_lag": lag, "stale_cache_ttl": ttl}) as t:
            self.assertEqual(auth(t, cached).status, 200)
            harness.wait_until(lambda: readyz(t)[1]["feed"] == "fresh",
                               timeout=10)
            harness.pg().stop()
            down = time.monotonic()
            seen = {}
            first_503 = None
            while time.monotonic() - down < ttl + 4:
                # /readyz first: ready then means the cache still stood.
                rr, body = readyz(t)
                r = auth(t, cached)
                seen[r.status] = seen.get(r.status, 0) + 1
                if r.status == 503:
                    self.assertIsNotNone(r.header("retry-after"))
                    first_503 = time.monotonic() - down
                    break
                self.assertEqual(rr.status, 200, body)
                u = auth(t, uncached)
                self.assertEqual(u.status, 503, u)  # never 401
                self.assertIsNotNone(u.header("retry-after"))
                time.sleep(0.1)
            self.assertIsNotNone(first_503, "cached 200 forever: %r" % seen)
            self.assertEqual(set(seen), {200, 503}, seen)
            # Past lag the hits were verified; the cache stood on its own
            # until stale_cache_ttl after the last confirmed round trip.
            self.assertGreater(first_503, ttl - 2)
            self.assertLess(first_503, ttl + 2)
            self.assertGreater(metric(t, "tokend_cache_hits_verified_total"),
                               0)
            rr, body = readyz(t)
            self.assertEqual(rr.status, 503, body)
            self.assertIn("stale_cache_ttl", body["reason"])
            self.assertNotEqual(body["feed"], "fresh")
            self.assertEqual(auth(t, uncached).status, 503)
            harness.pg().start()
            harness.wait_until(lambda: auth(t, cached).status == 200,
                               timeout=20)
            harness.wait_until(lambda: readyz(t)[0].status == 200,
                               timeout=10)


if __name__ == "__main__":
    unittest.main()

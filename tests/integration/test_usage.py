"""Usage accounting (SPEC section 6): exact use_count, batched writes, and
nothing lost whatever dies."""

import base64
import concurrent.futures
import json
import math
import os
import re
import signal
import subprocess
import time
import unittest

import harness
from load import Load

INTERVAL = 0.2


def use_count(token):
    return int(harness.pg().sql("SELECT use_count FROM tokens WHERE " +
                                harness.BY_TOKEN, token)[0][0])


def update_statements():
    rows = harness.pg().sql(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
        "WHERE query LIKE '%%UPDATE tokend.tokens t SET use_count%%'")
    return int(rows[0][0])


class UsageTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        self.tokens = [harness.tokenctl("pat", "create", "--user", "alice",
                                        "--name", "n%d" % i).stdout.strip()
                       for i in range(3)]

    def tearDown(self):
        harness.pg().start()

    def start(self, workers=2):
        return harness.Tokend(workers=workers, config={
            "usage_flush_interval": INTERVAL})

    def loads(self, t, threads=2):
        return [Load(t.port, "/auth", {"Authorization": "Bearer " + tok},
                     threads=threads).start() for tok in self.tokens]

    def settle(self, loads, extra=0):
        """Wait until every token's use_count equals its 200s (+ extra)."""
        for tok, load in zip(self.tokens, loads):
            harness.wait_until(
                lambda: use_count(tok) >= load.count(200), timeout=15)
        time.sleep(3 * INTERVAL)
        for tok, load in zip(self.tokens, loads):
            self.assertGreaterEqual(use_count(tok), load.count(200))
            self.assertLessEqual(use_count(tok), load.count(200) + extra)

    def test_exact_count_in_few_statements(self):
        with self.start() as t:
            harness.pg().sql("SELECT pg_stat_statements_reset()")
            began = time.monotonic()
            loads = self.loads(t)
            time.sleep(2.0)
            for load in loads:
                load.stop()
            self.settle(loads)
            duration = time.monotonic() - began
            total = sum(l.count(200) for l in loads)
            self.assertGreater(total, 100)
            self.assertTrue(all(l.failures == [] for l in loads))
            limit = math.ceil(duration / INTERVAL) + 1
            self.assertGreater(update_statements(), 0)
            self.assertLessEqual(update_statements(), limit)
            last = harness.pg().sql("SELECT count(*) FROM tokens WHERE "
                                    "last_used_at > now() - interval '1 min'")
            self.assertEqual(int(last[0][0]), 3)

    def test_worker_sigkill_mid_load(self):
        with self.start() as t:
            loads = self.loads(t)
            time.sleep(1.0)
            os.kill(t.children()["worker 1"], signal.SIGKILL)
            time.sleep(1.0)
            for load in loads:
                load.stop()
            # At most the requests in flight on the dead worker: one per
            # client connection.
            self.settle(loads, extra=2)

    def test_writer_sigkill_mid_load(self):
        with self.start() as t:
            loads = self.loads(t)
            for _ in range(3):
                time.sleep(0.7)
                old = t.children()["writer"]
                os.kill(old, signal.SIGKILL)
                # Until the kill lands the old writer is still listed, and
                # a quick second death is respawned after a backoff: wait
                # for a writer that is not the one just killed.
                t.wait_children(lambda k: k.get("writer", old) != old,
                                timeout=10)
            time.sleep(0.5)
            for load in loads:
                load.stop()
            self.settle(loads)

    def test_postgres_down_20s_mid_load(self):
        with self.start() as t:
            loads = self.loads(t, threads=1)
            time.sleep(1.0)
            harness.pg().stop()
            during = sum(l.total() for l in loads)
            time.sleep(20)
            during = sum(l.total() for l in loads) - during
            harness.pg().start()
            time.sleep(1.0)
            for load in loads:
                load.stop()
            # Hits kept answering 200 throughout the outage.
            self.assertGreater(during, 100)
            for load in loads:
                self.assertEqual(load.total(), load.count(200), load.status)
                self.assertEqual(load.failures, [])
            self.settle(loads)

    def test_sigterm_flushes_everything(self):
        t = self.start()
        loads = self.loads(t)
        time.sleep(1.0)
        for load in loads:
            load.stop()
        self.assertEqual(t.stop(), 0)
        for tok, load in zip(self.tokens, loads):
            self.assertEqual(use_count(tok), load.count(200))

    def test_sighup_mid_load(self):
        with self.start() as t:
            loads = self.loads(t)
            time.sleep(0.5)
            t.signal(signal.SIGHUP)
            time.sleep(1.5)
            for load in loads:
                load.stop()
            for load in loads:
                self.assertEqual(load.failures, [])
            self.settle(loads)


def many_pats(user, n):
    """n PATs of user, inserted in one statement (tokenctl would take
    minutes): well-formed tokens, stored as tokend stores them, without
    the audit trail's row per token (replica role: no per-row trigger)."""
    toks = [harness.well_formed_token() for _ in range(n)]
    # Tokens are [0-9A-Za-z_]: one array literal, quoted as it is.
    harness.pg().sql(
        "SET session_replication_role = replica; "
        "INSERT INTO tokens (kind, hash, prefix, user_id, name) "
        "SELECT 'pat', sha256(convert_to(t, 'UTF8')), left(t, 8), "
        "(SELECT id FROM users WHERE name = %s), 'bulk' "
        "FROM unnest('{" + ",".join(toks) + "}'::text[]) AS t", user)
    return toks


def use_all(port, toks, threads=4):
    """Each token once, over keep-alive connections; every answer a 200."""
    def part(chunk):
        with harness.Conn(port, timeout=10) as c:
            return [c.request("GET", "/auth", headers={
                "Authorization": "Bearer " + tok}).status for tok in chunk]
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        got = sum(ex.map(part, [toks[i::threads] for i in range(threads)]),
                  [])
    assert got == [200] * len(toks), set(got)


# The rows of tokens t whose token is one of a list (%s, a text[]).
BY_TOKENS = ("t.hash = ANY(ARRAY(SELECT sha256(convert_to(x, 'UTF8')) "
             "FROM unnest(%s::text[]) AS x))")


def table_sum(toks):
    """use_count summed over toks as tokens holds it, and as users see it
    (token_usage: tokens plus what waits in usage_deltas)."""
    r = harness.pg().sql(
        "SELECT sum(t.use_count), sum(u.use_count) FROM tokens t "
        "JOIN token_usage u ON u.token_id = t.id WHERE " + BY_TOKENS,
        toks)[0]
    return int(r[0]), int(r[1])


def metric(t, name):
    body = t.http("GET", "/metrics").text
    m = re.search(r"^%s (\d+)$" % re.escape(name), body, re.M)
    return int(m.group(1)) if m else None


def deltas():
    """Uses waiting in usage_deltas: one array element each."""
    return int(harness.pg().sql("SELECT coalesce(sum(cardinality("
                                "token_ids)), 0) FROM usage_deltas")[0][0])


class UsageDeltasTest(unittest.TestCase):
    """Migration 021: in a flush of more than 100 tokens, the uses of
    tokens written lately wait in usage_deltas and are folded later; users
    always read exact counts, and no use is lost or late that matters."""

    N = 1500
    FLUSH = 2            # a round of N requests: a flush or two, all busy

    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "bulk", "--no-password")
        self.toks = many_pats("bulk", self.N)

    def start(self, fold=30):
        t = harness.Tokend(workers=1, config={
            "usage_flush_interval": self.FLUSH,
            "usage_fold_interval": fold, "log_format": "json"})
        return t

    @staticmethod
    def folds(t):
        """Each fold's fold_from, in order: "sums" when it wrote the sums
        the writer kept, "rows" when PostgreSQL aggregated the rows."""
        return [e.get("fold_from") for e in map(json.loads, filter(
            None, t.log().splitlines())) if e.get("event") ==
            "usage_flushed" and e.get("folded") == 1]

    def usage_rows(self):
        """Per token of self.toks: (use_count, last_used_at, last_used_ip)
        as users see them (token_usage) and as tokens holds them."""
        return harness.pg().sql(
            "SELECT u.use_count, u.last_used_at, u.last_used_ip, "
            "t.use_count, t.last_used_at, t.last_used_ip FROM tokens t "
            "JOIN token_usage u ON u.token_id = t.id WHERE " + BY_TOKENS +
            " ORDER BY t.id", self.toks)

    def busy_round(self, t, toks):
        """toks once each within one flush interval, which is then busy:
        wait for the flush after it."""
        use_all(t.port, toks)
        flushes = metric(t, "tokend_usage_flushes_total")
        harness.wait_until(lambda: metric(
            t, "tokend_usage_flushes_total") > flushes and metric(
            t, "tokend_usage_pending") == 0, timeout=3 * self.FLUSH + 5)

    def test_hot_tokens_wait_and_readers_see_exact_counts(self):
        with self.start() as t:
            harness.wait_until(lambda: metric(
                t, "tokend_usage_flushes_total") >= 1, timeout=10)
            self.busy_round(t, self.toks)       # first uses: all direct
            self.assertEqual(table_sum(self.toks), (self.N, self.N))
            self.assertEqual(deltas(), 0)
            # A token never used before, in a busy flush: written at once.
            quiet = many_pats("bulk", 1)
            self.busy_round(t, self.toks + quiet)
            self.assertGreater(deltas(), 1000)
            stored, seen = table_sum(self.toks)
            self.assertEqual(seen, 2 * self.N)
            self.assertLess(stored, 2 * self.N)
            self.assertEqual(table_sum(quiet), (1, 1))
            # tokenctl reads token_usage: a waiting use is counted.
            hot = harness.pg().sql(
                "SELECT token_ids[1] FROM usage_deltas LIMIT 1")[0][0]
            listed = {r["id"]: r for r in json.loads(harness.tokenctl(
                "--json", "token", "list", "--user", "bulk").stdout)}
            self.assertEqual(listed[int(hot)]["use_count"], 2)
            # The load stops: the next flush folds what waits.
            harness.wait_until(lambda: deltas() == 0,
                               timeout=2 * self.FLUSH + 5)
            self.assertEqual(table_sum(self.toks), (2 * self.N, 2 * self.N))

    def test_writer_sigkill_leaves_no_delta_behind(self):
        with self.start() as t:
            self.busy_round(t, self.toks)
            self.busy_round(t, self.toks)
            self.assertGreater(deltas(), 1000)
            old = t.children()["writer"]
            os.kill(old, signal.SIGKILL)
            t.wait_children(lambda k: k.get("writer", old) != old,
                            timeout=10)
            # The new writer folds what the dead one left, before a busy
            # flush could add to it.
            harness.wait_until(lambda: deltas() == 0, timeout=15)
            self.assertEqual(table_sum(self.toks), (2 * self.N, 2 * self.N))

    def test_sigterm_folds_everything(self):
        t = self.start()
        self.busy_round(t, self.toks)
        self.busy_round(t, self.toks)
        self.assertGreater(deltas(), 1000)
        self.assertEqual(t.stop(), 0)
        self.assertEqual(deltas(), 0)
        self.assertEqual(table_sum(self.toks), (2 * self.N, 2 * self.N))

    def test_a_fold_writes_the_sums_the_writer_kept(self):
        """The writer keeps, per token, the sums of what it put into
        usage_deltas, and the fold writes those instead of PostgreSQL
        aggregating every element: every token ends exactly as users read
        it before the fold, count, newest use and address."""
        with self.start() as t:
            for _ in range(3):
                self.busy_round(t, self.toks)
            self.assertGreater(deltas(), 1000)
            seen = [r[:3] for r in self.usage_rows()]
            harness.wait_until(lambda: deltas() == 0,
                               timeout=2 * self.FLUSH + 5)
            after = self.usage_rows()
            self.assertEqual([r[3:] for r in after], seen)
            self.assertEqual([r[:3] for r in after], seen)
            self.assertEqual(table_sum(self.toks), (3 * self.N, 3 * self.N))
            self.assertEqual(self.folds(t)[-1], "sums")

    def test_rows_another_writer_folded_are_not_counted_twice(self):
        """Another writer's fold (a new writer at its start, or another
        box's, taking rows it believes stopped) may delete this writer's
        rows.  This writer's sums then stand for rows that are gone: its
        fold must see that and count only the rows it deleted."""
        with self.start() as t:
            self.busy_round(t, self.toks)       # first uses: direct
            self.busy_round(t, self.toks)       # into usage_deltas
            self.assertGreater(deltas(), 1000)
            folds = len(self.folds(t))
            harness.pg().sql(
                "WITH d AS (DELETE FROM usage_deltas RETURNING token_ids, "
                "uses), x AS (SELECT id, sum(n) AS n FROM d, unnest("
                "d.token_ids, d.uses) AS x(id, n) GROUP BY id) "
                "UPDATE tokens t SET use_count = t.use_count + x.n FROM x "
                "WHERE t.id = x.id")
            harness.wait_until(lambda: len(self.folds(t)) > folds,
                               timeout=2 * self.FLUSH + 5)
            self.assertEqual(self.folds(t)[-1], "rows")
            self.assertEqual(table_sum(self.toks), (2 * self.N, 2 * self.N))

    def test_a_lost_connection_loses_and_doubles_nothing(self):
        """The writer's connection dies with rows of its own in
        usage_deltas (a commit it sent may be in doubt): its next fold
        takes every row, and every use is counted once."""
        with self.start() as t:
            self.busy_round(t, self.toks)
            self.busy_round(t, self.toks)
            self.assertGreater(deltas(), 1000)
            # Its work, listen and ask connections (and any other
            # tokend's of this PostgreSQL: none is in a test right now).
            self.assertGreaterEqual(
                harness.pg().terminate_backends("tokend writer"), 3)
            harness.wait_until(lambda: deltas() == 0,
                               timeout=3 * self.FLUSH + 10)
            self.assertEqual(table_sum(self.toks), (2 * self.N, 2 * self.N))

    def test_a_stopped_boxs_rows_are_folded_a_live_ones_are_left(self):
        """Rows of another box: one older than twice usage_fold_interval
        plus a minute (its writer stopped) is folded by this writer's next
        fold; a recent one is that box's to fold, and users read it all
        the while."""
        with self.start() as t:
            harness.wait_until(lambda: len(self.folds(t)) >= 1, timeout=10)
            ids = [int(r[0]) for r in harness.pg().sql(
                "SELECT id FROM tokens WHERE kind = 'pat' ORDER BY id "
                "LIMIT 2")]
            harness.pg().sql(
                "INSERT INTO usage_deltas (at, token_ids, uses, last_ms, "
                "last_ips) VALUES (now() - interval '1 hour', %s, '{5}', "
                "'{1000}', '{NULL}'), (now(), %s, '{7}', '{1000}', "
                "'{NULL}')", [ids[0]], [ids[1]])
            self.busy_round(t, self.toks)       # first uses: direct
            self.busy_round(t, self.toks)       # into usage_deltas
            harness.wait_until(lambda: deltas() == 1,
                               timeout=2 * self.FLUSH + 5)

            def counts(tid):
                return tuple(int(x) for x in harness.pg().sql(
                    "SELECT t.use_count, u.use_count FROM tokens t JOIN "
                    "token_usage u ON u.token_id = t.id WHERE t.id = %s",
                    tid)[0])
            self.assertEqual(counts(ids[0]), (2 + 5, 2 + 5))
            self.assertEqual(counts(ids[1]), (2, 2 + 7))
            self.assertEqual(harness.pg().sql(
                "SELECT token_ids FROM usage_deltas")[0][0],
                "{%d}" % ids[1])

    def test_fold_interval_zero_writes_every_use_directly(self):
        with self.start(fold=0) as t:
            self.busy_round(t, self.toks)
            self.busy_round(t, self.toks)
            self.assertEqual(deltas(), 0)
            self.assertEqual(table_sum(self.toks), (2 * self.N, 2 * self.N))


if __name__ == "__main__":
    unittest.main()


def pipelined(port, requests, chunk=2000):
    """Send raw requests over one keep-alive connection, chunk at a time;
    return each answer's (status, Retry-After, body), in order."""
    out = []
    with harness.Conn(port, timeout=30) as c:
        for i in range(0, len(requests), chunk):
            part = requests[i:i + chunk]
            c.send(b"".join(part))
            for _ in part:
                r = c.read_response(timeout=30)
                out.append((r.status, r.header("retry-after"), r.body))
    return out


class UsageFullTest(unittest.TestCase):
    """A worker counts each use in shared memory before its 200 (SPEC 6).
    When the writer cannot commit (here: tokens locked in PostgreSQL) and
    both of the worker's usage tables fill up, a use that needs a new entry
    must get 503 + Retry-After, not a 200 whose use is lost."""

    PROXY = "127.0.0.1/32"

    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        self.tok = harness.tokenctl("pat", "create", "--user", "alice",
                                    "--name", "full").stdout.strip()
        harness.tokenctl("client", "add", "rs", "--secret-stdin", "--scope",
                         "read", "--introspect", input="rs-secret\n")

    def introspect(self, t):
        return t.http("POST", "/introspect", form={"token": self.tok},
                      headers={"Authorization": "Basic " + base64.b64encode(
                          b"rs:rs-secret").decode()})

    def request(self, i):
        # One entry per (token, /24 network): network i.
        return ("GET /auth HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s"
                "\r\nX-Forwarded-For: %d.%d.%d.9\r\n\r\n" % (
                    self.tok, 11 + (i >> 16), (i >> 8) & 255, i & 255)
                ).encode()

    def test_full_tables_answer_503_and_lose_no_use(self):
        t = harness.Tokend(workers=1, config={
            "usage_flush_interval": INTERVAL, "trusted_proxies": self.PROXY})
        with t:
            self.assertEqual(pipelined(t.port, [self.request(0)])[0][0], 200)
            harness.wait_until(lambda: use_count(self.tok) == 1, timeout=10)
            pg = harness.pg()
            lock = subprocess.Popen(
                [pg.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.url],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                text=True, env=dict(os.environ, PGOPTIONS="-c "
                                    "search_path=tokend,public"))
            try:
                lock.stdin.write("BEGIN; LOCK TABLE tokens IN EXCLUSIVE "
                                 "MODE; SELECT pg_sleep(0);\n")
                lock.stdin.flush()
                harness.wait_until(lambda: harness.pg().sql(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON "
                    "c.oid = l.relation WHERE c.relname = 'tokens' AND "
                    "l.mode = 'ExclusiveLock' AND l.granted")[0][0] == "1",
                    timeout=10)
                # Two tables of 70% of 2^18 entries each: 367,002 networks
                # fill both; a few thousand more must all be refused.
                n = 2 * ((1 << 18) // 10 * 7) + 3000
                got = pipelined(t.port, [self.request(i)
                                         for i in range(1, n + 1)])
                ok = sum(1 for g in got if g[0] == 200)
                full = [g for g in got if g[0] == 503]
                self.assertEqual(ok + len(full), len(got),
                                 set(g[0] for g in got))
                self.assertGreaterEqual(len(full), 2900)
                self.assertEqual({g[1] for g in full}, {"1"})
                body = json.loads(full[0][2])
                self.assertIn("error", body)
                # A network already in the active table still gets its 200.
                last = max(i for i, g in enumerate(got) if g[0] == 200)
                again = pipelined(t.port, [self.request(last + 1)])[0]
                self.assertEqual(again[0], 200)
                ok += 1
                # /introspect counts a use too (its entry has no network):
                # the same 503, not an answer whose use is lost.
                r = self.introspect(t)
                self.assertEqual(r.status, 503, r.text)
                self.assertEqual(r.header("retry-after"), "1")
                self.assertEqual(r.json()["error"], "temporarily_unavailable")
                self.assertIn("usage_full", t.log())
                self.assertGreaterEqual(
                    metric(t, "tokend_usage_dropped_total"), len(full))
            finally:
                lock.stdin.write("COMMIT;\n")
                lock.stdin.close()
                lock.wait(timeout=30)
            # Every 200 is counted once PostgreSQL takes writes again, and
            # new networks are answered again.
            harness.wait_until(lambda: use_count(self.tok) == 1 + ok,
                               timeout=120, msg="use_count %d, want %d" % (
                                   use_count(self.tok), 1 + ok))
            self.assertEqual(pipelined(t.port, [self.request(n + 1)])[0][0],
                             200)
            r = self.introspect(t)
            self.assertEqual(r.status, 200, r.text)
            self.assertTrue(r.json()["active"])

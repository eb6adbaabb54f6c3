"""GET /auth: bearer validation through the cache (SPEC sections 3-5)."""

import hashlib
import re
import threading
import time
import unittest

import harness
from test_leak import made_up, sha


def pat(user="alice", scope="read write", expires=None, name="t"):
    args = ["pat", "create", "--user", user, "--name", name]
    if scope is not None:
        args += ["--scope", scope]
    if expires is not None:
        args += ["--expires-in", str(expires)]
    return harness.tokenctl(*args).stdout.strip()


def auth(t, token, query=""):
    headers = {"Authorization": "Bearer " + token} if token else {}
    return t.http("GET", "/auth" + query, headers=headers)


def metric(t, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name),
                  t.http("GET", "/metrics").text, re.M)
    return int(m.group(1)) if m else None


def worker_backends(since):
    """[(pid, state_change)] of the workers' lookup connections opened
    after since (other tokends' are older)."""
    return harness.pg().sql(
        "SELECT pid, state_change FROM pg_stat_activity "
        "WHERE application_name = 'tokend worker' AND backend_start > %s "
        "ORDER BY pid", since)


def concurrent_auth(t, toks, clients=32):
    """GET /auth for each token from 32 keep-alive connections at once;
    {status: count}."""
    statuses, lock = {}, threading.Lock()

    def client(part):
        with t.conn() as c:
            for tok in part:
                r = c.request("GET", "/auth", headers={
                    "Authorization": "Bearer " + tok})
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
    threads = [threading.Thread(target=client, args=(toks[k::clients],))
               for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    return statuses


def fails_within(t, token, seconds=1.0):
    """Seconds until /auth stops answering 200 for token, or None."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if auth(t, token).status == 401:
            return time.monotonic() - start
        time.sleep(0.02)
    return None


class AuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        harness.tokenctl("user", "add", "bob", "--no-password")
        cls.t = harness.Tokend(workers=2)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def test_pat_gets_200_with_user_headers(self):
        tok = pat(scope="read write", expires=3600)
        self.assertRegex(tok, r"^tkp_[0-9A-Za-z]{49}$")
        r = auth(self.t, tok)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")
        uid = harness.pg().sql("SELECT id FROM users WHERE name = 'alice'")
        tid = harness.pg().sql("SELECT id, floor(extract(epoch FROM "
                               "expires_at))::bigint FROM tokens WHERE " +
                               harness.BY_TOKEN, tok)
        self.assertEqual(r.header("x-auth-user"), "alice")
        self.assertEqual(r.header("x-auth-user-id"), uid[0][0])
        self.assertEqual(r.header("x-auth-client"), "")
        self.assertEqual(r.header("x-auth-scope"), "read write")
        self.assertEqual(r.header("x-auth-token-id"), tid[0][0])
        self.assertEqual(r.header("x-auth-token-kind"), "pat")
        self.assertEqual(r.header("x-auth-expires"), tid[0][1])
        # The second answer comes from the cache and says the same.
        r2 = auth(self.t, tok)
        self.assertEqual(r2.header("x-auth-token-id"), tid[0][0])

    def test_pat_without_expiry_says_zero(self):
        r = auth(self.t, pat())
        self.assertEqual(r.header("x-auth-expires"), "0")

    def test_scopes(self):
        tok = pat(scope="read write")
        self.assertEqual(auth(self.t, tok, "?scope=read").status, 200)
        self.assertEqual(auth(self.t, tok, "?scope=read%20write").status, 200)
        self.assertEqual(auth(self.t, tok, "?scope=write+read").status, 200)
        r = auth(self.t, tok, "?scope=read%20admin")
        self.assertEqual(r.status, 403)
        self.assertIn('error="insufficient_scope"',
                      r.header("www-authenticate"))
        self.assertEqual(r.json()["error"], "insufficient_scope")
        self.assertEqual(auth(self.t, tok, "?scope=%zz").status, 400)

    def test_missing_header_is_401_without_error(self):
        r = auth(self.t, None)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("www-authenticate"), 'Bearer realm="tokend"')
        self.assertIn("error", r.json())
        r = self.t.http("GET", "/auth", headers={"Authorization": "Basic eDp5"})
        self.assertEqual(r.status, 401)

    def assert_invalid(self, token):
        r = auth(self.t, token)
        self.assertEqual(r.status, 401, token)
        self.assertEqual(r.header("www-authenticate"),
                         'Bearer realm="tokend", error="invalid_token"')
        self.assertEqual(r.json()["error"], "invalid_token")

    def test_malformed_tokens_are_refused_without_lookup(self):
        tok = pat()
        misses = metric(self.t, "tokend_cache_misses_total")
        bad_sum = tok[:-1] + ("A" if tok[-1] != "A" else "B")
        for bad in ["x", tok[:-1], tok + "0", "tkx_" + tok[4:], bad_sum,
                    tok[:10] + "-" + tok[11:]]:
            self.assert_invalid(bad)
        # None of them touched the cache or PostgreSQL.
        self.assertEqual(metric(self.t, "tokend_cache_misses_total"), misses)

    def test_unknown_token_is_401_and_cached_negative(self):
        tok = pat()
        harness.pg().sql("DELETE FROM tokens WHERE " + harness.BY_TOKEN, tok)
        time.sleep(0.2)
        self.assert_invalid(tok)
        neg = metric(self.t, "tokend_cache_negative_hits_total")
        for _ in range(4):
            self.assert_invalid(tok)
        self.assertGreaterEqual(
            metric(self.t, "tokend_cache_negative_hits_total"), neg + 3)

    def test_refresh_token_kind_is_refused(self):
        tok = pat()
        # A well-formed refresh token: /auth refuses the kind itself.
        import zlib
        body = tok[4:47]
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        c = zlib.crc32(body.encode())
        s = ""
        for _ in range(6):
            s = alphabet[c % 62] + s
            c //= 62
        self.assert_invalid("tkr_" + body + s)

    def test_expired_token(self):
        tok = pat(expires=60)
        self.assertEqual(auth(self.t, tok).status, 200)
        harness.pg().sql("UPDATE tokens SET expires_at = now() - "
                         "interval '1 second' WHERE " + harness.BY_TOKEN, tok)
        self.assertIsNotNone(fails_within(self.t, tok))

    def test_revoked_by_tokenctl_fails_within_a_second(self):
        tok = pat()
        self.assertEqual(auth(self.t, tok).status, 200)
        tid = harness.pg().sql("SELECT id FROM tokens WHERE " +
                               harness.BY_TOKEN, tok)[0][0]
        harness.tokenctl("token", "revoke", tid)
        self.assertIsNotNone(fails_within(self.t, tok))

    def test_revoked_by_sql_update_fails_within_a_second(self):
        tok = pat()
        self.assertEqual(auth(self.t, tok).status, 200)
        harness.pg().sql("UPDATE tokens SET revoked_at = now() WHERE " +
                         harness.BY_TOKEN, tok)
        self.assertIsNotNone(fails_within(self.t, tok))

    def test_deleted_by_sql_fails_within_a_second(self):
        tok = pat()
        self.assertEqual(auth(self.t, tok).status, 200)
        harness.pg().sql("DELETE FROM tokens WHERE " + harness.BY_TOKEN, tok)
        self.assertIsNotNone(fails_within(self.t, tok))

    def test_user_disable_fails_within_a_second(self):
        harness.tokenctl("user", "add", "carol", "--no-password")
        tok = pat(user="carol")
        self.assertEqual(auth(self.t, tok).status, 200)
        harness.tokenctl("user", "disable", "carol")
        self.assertIsNotNone(fails_within(self.t, tok))

    def test_user_disabled_by_plain_sql(self):
        harness.tokenctl("user", "add", "dave", "--no-password")
        tok = pat(user="dave")
        self.assertEqual(auth(self.t, tok).status, 200)
        harness.pg().sql("UPDATE users SET disabled = true "
                         "WHERE name = 'dave'")
        self.assertIsNotNone(fails_within(self.t, tok))

    def test_listen_connection_killed_clears_cache(self):
        tok = pat()
        self.assertEqual(auth(self.t, tok).status, 200)
        clears = metric(self.t, "tokend_cache_clears_total")
        self.assertGreaterEqual(metric(self.t, "tokend_cache_entries"), 1)
        n = harness.pg().terminate_backends("tokend writer")
        self.assertGreaterEqual(n, 1)
        harness.wait_until(
            lambda: metric(self.t, "tokend_cache_clears_total") > clears,
            timeout=10)
        self.assertEqual(metric(self.t, "tokend_cache_entries"), 0)
        self.assertEqual(auth(self.t, tok).status, 200)

    def test_concurrent_misses_each_get_their_own_answer(self):
        # One worker, 16 connections, every request a miss: the worker has
        # several lookup queries on the wire at once (worker/lookup.h), and
        # each answer must reach the requests of its own query.
        users = ("alice", "bob")
        toks = [pat(user=users[i % 2], name="m%d" % i) for i in range(96)]
        gone = [pat(name="g%d" % i) for i in range(16)]
        for tok in gone:
            harness.pg().sql("DELETE FROM tokens WHERE " + harness.BY_TOKEN,
                             tok)
        ids = dict(harness.pg().sql(
            "SELECT encode(hash, 'hex'), id FROM tokens"))
        want = {}
        for i, tok in enumerate(toks):
            h = hashlib.sha256(tok.encode()).hexdigest()
            want[tok] = (200, ids[h], users[i % 2])
        for tok in gone:
            want[tok] = (401, None, None)
        order = sorted(want, key=lambda tok: hashlib.sha256(
            tok[::-1].encode()).digest())    # users and unknowns mixed
        got, errors = {}, []

        def client(part):
            try:
                with t.conn() as c:
                    for tok in part:
                        r = c.request("GET", "/auth", headers={
                            "Authorization": "Bearer " + tok})
                        got[tok] = (r.status, r.header("x-auth-token-id"),
                                    r.header("x-auth-user"))
            except Exception as e:  # reported below, with the others
                errors.append(repr(e))
        with harness.Tokend(workers=1) as t:
            threads = [threading.Thread(target=client, args=(order[k::16],))
                       for k in range(16)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(got, want)

    def test_misses_are_shared_by_two_lookup_connections(self):
        # One worker keeps two lookup connections (worker/lookup.h): under
        # concurrent misses both backends run lookups, and one going away
        # costs no request while the other is up; it comes back by itself.
        uid = int(harness.pg().sql(
            "SELECT id FROM users WHERE name = 'alice'")[0][0])
        toks = [made_up() for _ in range(401)]
        harness.pg().sql(
            "INSERT INTO tokens (kind, hash, prefix, user_id) "
            "SELECT 'pat', h, 'tkp_xxxx', %s FROM unnest(%s::bytea[]) h",
            uid, [sha(tok) for tok in toks])
        start = harness.pg().sql("SELECT clock_timestamp()")[0][0]
        with harness.Tokend(workers=1) as t:
            self.assertEqual(auth(t, toks[0]).status, 200)
            lanes = harness.wait_until(
                lambda: (lambda r: r if len(r) == 2 else None)(
                    worker_backends(start)), timeout=10,
                msg="want 2 lookup backends")
            t0 = harness.pg().sql("SELECT clock_timestamp()")[0][0]
            self.assertEqual(concurrent_auth(t, toks[1:201]), {200: 200})
            ran = [pid for pid, changed in worker_backends(start)
                   if harness.pg().sql("SELECT %s::timestamptz > %s",
                                       changed, t0)[0][0] == "t"]
            self.assertEqual(sorted(ran), sorted(p for p, _ in lanes))
            errors = metric(t, "tokend_pg_errors_total")
            harness.pg().sql("SELECT pg_terminate_backend(%s)",
                             int(lanes[1][0]))
            # Noticed once its socket closes: from then on misses go to
            # the other lane.
            harness.wait_until(
                lambda: metric(t, "tokend_pg_errors_total") > errors,
                timeout=10)
            self.assertEqual(concurrent_auth(t, toks[201:]), {200: 200})
            harness.wait_until(
                lambda: auth(t, made_up()).status == 401 and
                len(worker_backends(start)) == 2, timeout=10)
            self.assertNotIn(lanes[1][0],
                             [p for p, _ in worker_backends(start)])


class OutageTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")

    def tearDown(self):
        harness.pg().start()

    def test_postgres_down_cached_200_uncached_503(self):
        cached, uncached = pat(), pat()
        with harness.Tokend(workers=1) as t:
            self.assertEqual(auth(t, cached).status, 200)
            harness.pg().stop()
            self.assertEqual(auth(t, cached).status, 200)
            r = auth(t, uncached)
            self.assertEqual(r.status, 503)
            self.assertIsNotNone(r.header("retry-after"))
            self.assertEqual(r.json()["error"], "temporarily_unavailable")
            # SPEC 4: PostgreSQL down alone does not make an instance
            # unready while its cache may serve (stale_cache_ttl, 600 s).
            ready = harness.wait_until(
                lambda: (lambda r: r if not r.json()["postgresql"] else None)(
                    t.http("GET", "/readyz")), timeout=10)
            self.assertEqual(ready.status, 200, ready.text)
            harness.pg().start()
            harness.wait_until(lambda: auth(t, uncached).status == 200,
                               timeout=15)
            harness.wait_until(
                lambda: t.http("GET", "/readyz").status == 200, timeout=10)


if __name__ == "__main__":
    unittest.main()

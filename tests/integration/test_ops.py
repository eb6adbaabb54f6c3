"""Operations (issue 13): the access log's fields, X-Request-Id, and the
metrics /metrics serves, checked against the README's metrics table both
ways and each seen to move when its event happens."""

import json
import os
import re
import subprocess
import unittest

import harness
from test_oauth import SPA_REDIRECT, WEB, add_clients, add_user, basic, \
    bearer, pkce

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def readme_metrics():
    """The metric names of the README's metrics table: the rows of the
    table whose header is "| metric | type | what it says |"."""
    with open(os.path.join(ROOT, "README.md")) as f:
        lines = f.read().splitlines()
    start = lines.index("| metric | type | what it says |")
    names = set()
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cell = ln.split("|")[1].strip()
        m = re.fullmatch(r"`([a-z_:]+)(\{[^}]*\})?`", cell)
        if m is None:
            raise AssertionError("not a metric cell: %r" % cell)
        names.add(m.group(1))
    return names


def served(text):
    """{name: type} from the # TYPE lines of a scrape."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def samples(text):
    """{'name{labels}': float} of a scrape."""
    out = {}
    for ln in text.splitlines():
        if ln and not ln.startswith("#"):
            k, _, v = ln.rpartition(" ")
            out[k] = float(v)
    return out


class MetricsTest(unittest.TestCase):
    """One tokend; each test reads /metrics before and after its events."""

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        add_clients()
        add_user("alice", "alice-pw")
        add_user("mallory", "mallory-pw")
        cls.t = harness.Tokend(workers=2, config={
            "refresh_grace": 0, "login_max_failures": 2,
            "cache_map_size": "64m"})

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def metrics(self):
        r = self.t.http("GET", "/metrics")
        self.assertEqual(r.status, 200)
        return r.text

    def value(self, name):
        return samples(self.metrics()).get(name, 0.0)

    def token(self, form, headers=WEB):
        return self.t.http("POST", "/token", headers=headers, form=form)

    def login(self, user="alice", pw="alice-pw"):
        r = self.token({"grant_type": "password", "username": user,
                        "password": pw, "scope": "read write"})
        self.assertEqual(r.status, 200, r)
        return r.json()

    def moves(self, name, fn, by=1):
        """fn() makes name grow by exactly `by` (summed over workers)."""
        before = self.value(name)
        fn()
        harness.wait_until(lambda: self.value(name) >= before + by,
                           timeout=5, msg=name)
        self.assertEqual(self.value(name), before + by, name)

    def test_readme_table_lists_exactly_the_served_metrics(self):
        # Some traffic first, so that every labelled family has a sample.
        self.login()
        self.t.http("GET", "/auth")
        names = set(served(self.metrics()))
        table = readme_metrics()
        self.assertEqual(names - table, set(), "served, not in the README")
        self.assertEqual(table - names, set(), "in the README, not served")

    def test_histogram_by_endpoint_with_buckets_to_10s(self):
        self.t.http("GET", "/auth")
        text = self.metrics()
        les = re.findall(r'^tokend_request_duration_seconds_bucket\{'
                         r'endpoint="/auth",le="([^"]+)"\} ', text, re.M)
        self.assertEqual(les[-1], "+Inf")
        bounds = [float(x) for x in les[:-1]]
        self.assertEqual(bounds, sorted(bounds))
        self.assertEqual(bounds[-1], 10.0)
        self.assertIn(2.5, bounds)
        s = samples(text)
        for ep in ("/auth", "/token", "/metrics"):
            self.assertIn('tokend_request_duration_seconds_count{endpoint='
                          '"%s"}' % ep, s)
        # The count is the +Inf bucket, and a request moves its endpoint's.
        self.assertEqual(
            s['tokend_request_duration_seconds_count{endpoint="/auth"}'],
            s['tokend_request_duration_seconds_bucket{endpoint="/auth",'
              'le="+Inf"}'])
        self.moves('tokend_request_duration_seconds_count{endpoint='
                   '"/healthz"}', lambda: self.t.http("GET", "/healthz"))

    def test_signin_failures_and_lockouts(self):
        def fail():
            r = self.token({"grant_type": "password", "username": "mallory",
                            "password": "wrong"})
            self.assertEqual(r.status, 400, r)
        self.moves("tokend_signin_failures_total", fail)
        self.moves("tokend_signin_failures_total", fail)
        # login_max_failures = 2: the third attempt is locked out.
        def locked():
            r = self.token({"grant_type": "password", "username": "mallory",
                            "password": "wrong"})
            self.assertEqual(r.status, 429, r)
        before = self.value("tokend_signin_failures_total")
        self.moves("tokend_login_lockouts_total", locked)
        self.assertEqual(self.value("tokend_signin_failures_total"), before)

    def test_tokens_issued_by_grant_and_refresh_reuse(self):
        issued = 'tokend_tokens_issued_total{grant="%s"}'
        j = {}
        self.moves(issued % "password", lambda: j.update(self.login()))
        rt = j["refresh_token"]

        def refresh():
            r = self.token({"grant_type": "refresh_token",
                            "refresh_token": rt})
            self.assertEqual(r.status, 200, r)
        self.moves(issued % "refresh_token", refresh)

        def reuse():
            r = self.token({"grant_type": "refresh_token",
                            "refresh_token": rt})
            self.assertEqual(r.status, 400, r)
        self.moves("tokend_refresh_reuse_total", reuse)

        def cc():
            r = self.token({"grant_type": "client_credentials"},
                           headers=basic("svc", "svc-secret"))
            self.assertEqual(r.status, 200, r)
        self.moves(issued % "client_credentials", cc)

        at = self.login()["access_token"]

        def pat():
            r = self.t.http("POST", "/pats", headers=bearer(at),
                            json={"name": "m", "expires_in": 3600})
            self.assertEqual(r.status, 201, r)
        self.moves(issued % "pat", pat)
        self.assertIn(issued % "device_code", samples(self.metrics()))

    def test_code_exchange_and_replay(self):
        at = self.login()["access_token"]
        v, ch = pkce()
        r = self.t.http("POST", "/authorize", headers=bearer(at), json={
            "client_id": "spa", "redirect_uri": SPA_REDIRECT, "state": "s",
            "code_challenge": ch, "code_challenge_method": "S256"})
        self.assertEqual(r.status, 200, r)
        form = {"grant_type": "authorization_code", "code": r.json()["code"],
                "redirect_uri": SPA_REDIRECT, "client_id": "spa",
                "code_verifier": v}

        def exchange(status):
            r = self.t.http("POST", "/token", form=form)
            self.assertEqual(r.status, status, r)
        self.moves('tokend_tokens_issued_total{grant="authorization_code"}',
                   lambda: exchange(200))
        self.moves("tokend_code_replays_total", lambda: exchange(400))

    def test_process_metrics_are_the_whole_servers(self):
        s = samples(self.metrics())
        kids = self.t.children()
        pids = [self.t.pid] + list(kids.values())
        fds = sum(len(os.listdir("/proc/%d/fd" % p)) for p in pids)
        # Each process holds a few descriptors; the sum is the server's.
        self.assertGreaterEqual(s["process_open_fds"], 3 * len(pids))
        self.assertLess(abs(s["process_open_fds"] - fds), 20)
        page = os.sysconf("SC_PAGE_SIZE")
        rss = 0
        for p in pids:
            with open("/proc/%d/statm" % p) as f:
                rss += int(f.read().split()[1]) * page
        self.assertGreater(s["process_resident_memory_bytes"], rss / 2)
        self.assertLess(s["process_resident_memory_bytes"], rss * 2)
        with open("/proc/%d/stat" % self.t.pid) as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/stat") as f:
            btime = int(re.search(r"^btime (\d+)$", f.read(), re.M).group(1))
        started = btime + ticks / os.sysconf("SC_CLK_TCK")
        self.assertLess(abs(s["process_start_time_seconds"] - started), 2)

    def test_build_info_and_cache_map(self):
        s = samples(self.metrics())
        self.assertEqual([v for k, v in s.items()
                          if k.startswith("tokend_build_info{version=")], [1])
        size = s["tokend_cache_map_size_bytes"]
        self.assertEqual(size, 64 << 20)            # cache_map_size = 64m
        self.assertGreater(s["tokend_cache_map_used_bytes"], 0)
        self.assertLessEqual(s["tokend_cache_map_used_bytes"], size)
        # Caching a token uses pages of the map.
        before = s["tokend_cache_map_used_bytes"]
        for _ in range(50):
            self.t.http("GET", "/auth", headers=bearer(
                self.login()["access_token"]))
        self.assertGreaterEqual(self.value("tokend_cache_map_used_bytes"),
                                before)
        self.assertGreater(self.value("tokend_cache_entries"), 0)


class PgUpTest(unittest.TestCase):
    def test_pg_up_follows_postgresql(self):
        harness.pg().reset()
        with harness.Tokend(workers=1) as t:
            def up():
                return samples(t.http("GET", "/metrics").text).get(
                    "tokend_pg_up")
            harness.wait_until(lambda: up() == 1, msg="pg_up 1")
            harness.pg().stop()
            try:
                harness.wait_until(lambda: up() == 0, timeout=15,
                                   msg="pg_up 0 with PostgreSQL stopped")
            finally:
                harness.pg().start()

            def back():
                t.http("GET", "/auth", headers=bearer("tka_" + "A" * 49))
                return up() == 1
            harness.wait_until(back, timeout=20, interval=0.5,
                               msg="pg_up 1 again")


class AccessLogTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        self.tok = harness.tokenctl("pat", "create", "--user", "alice",
                                    "--name", "ops").stdout.strip()
        self.uid = harness.pg().sql(
            "SELECT id FROM users WHERE name = 'alice'")[0][0]
        self.tid = harness.pg().sql(
            "SELECT id FROM tokens WHERE kind = 'pat'")[0][0]

    def run_requests(self, fmt):
        t = harness.Tokend(workers=1, config={"log_format": fmt},
                           start=False)
        path = os.path.join(t.dir, "access.log")
        t.reload_config({"access_log": path})
        t.start()
        try:
            r = t.http("GET", "/auth", headers={
                "Authorization": "Bearer " + self.tok,
                "User-Agent": 'probe/1.0 "quoted"\tx',
                "X-Request-Id": "req-abc.123"})
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("x-request-id"), "req-abc.123")
            r = t.http("GET", "/nowhere", headers={"User-Agent": "u" * 600})
            self.assertEqual(r.status, 404)
            self.assertRegex(r.header("x-request-id"), HEX32)
            harness.wait_until(lambda: os.path.exists(path) and
                               open(path).read().count("request") >= 2)
            with open(path) as f:
                return f.read().splitlines(), r.header("x-request-id")
        finally:
            t.stop()

    def test_logfmt_fields(self):
        lines, rid = self.run_requests("logfmt")
        auth = [l for l in lines if "path=/auth" in l][0]
        for want in ("event=request", "method=GET", "status=200",
                     "request_id=req-abc.123", "user_id=%s" % self.uid,
                     "token_id=%s" % self.tid, "token=%s " % self.tok[:8],
                     'client=""', r'user_agent="probe/1.0 \"quoted\"\tx"'):
            self.assertIn(want, auth)
        self.assertRegex(auth, r" duration=\d+\.\d{6} ")
        self.assertNotIn(self.tok[8:], "\n".join(lines))
        other = [l for l in lines if "status=404" in l][0]
        self.assertIn("request_id=%s " % rid, other)
        self.assertIn('user_id="" token_id="" token=""', other)
        ua = re.search(r"user_agent=(\S+)", other).group(1)
        self.assertEqual(ua, "u" * 256, "the user agent is bounded")

    def test_json_fields(self):
        lines, rid = self.run_requests("json")
        recs = [json.loads(l) for l in lines]
        auth = [r for r in recs if r["path"] == "/auth"][0]
        self.assertEqual(auth["event"], "request")
        self.assertEqual(auth["status"], 200)
        self.assertEqual(auth["request_id"], "req-abc.123")
        self.assertEqual(auth["user_id"], int(self.uid))
        self.assertEqual(auth["token_id"], int(self.tid))
        self.assertEqual(auth["token"], self.tok[:8])
        self.assertIsNone(auth["client"])
        self.assertEqual(auth["user_agent"], 'probe/1.0 "quoted"\tx')
        self.assertIsInstance(auth["duration"], float)
        other = [r for r in recs if r["status"] == 404][0]
        self.assertEqual(other["request_id"], rid)
        self.assertIsNone(other["user_id"])
        self.assertEqual(len(other["user_agent"]), 256)


class RequestIdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        cls.t = harness.Tokend(workers=1)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def rid(self, value=None, path="/healthz"):
        h = {} if value is None else {"X-Request-Id": value}
        return self.t.http("GET", path, headers=h).header("x-request-id")

    def test_sane_ids_pass_through(self):
        for v in ("abc", "a" * 128, "0f3c-11ee/x y:z", "~!"):
            self.assertEqual(self.rid(v), v)

    def test_others_are_replaced_by_a_fresh_random_id(self):
        seen = set()
        for v in (None, "a" * 129, "caf\u00e9".encode().decode("latin-1"),
                  "tab\there"):
            got = self.rid(v)
            self.assertRegex(got, HEX32, repr(v))
            seen.add(got)
        self.assertEqual(len(seen), 4, "one id per request")

    def test_every_response_has_one(self):
        self.assertRegex(self.rid(path="/auth"), HEX32)          # 401
        self.assertEqual(self.rid("x1", path="/nowhere"), "x1")  # 404
        r = self.t.http("POST", "/healthz")                      # 405
        self.assertRegex(r.header("x-request-id"), HEX32)
        # A malformed request, and pipelined ones: each its own id.
        with self.t.conn() as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                   b"X-Request-Id: one\r\n\r\n"
                   b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"BAD\r\n\r\n")
            a = c.read_response()
            b = c.read_response()
            bad = c.read_response()
        self.assertEqual(a.header("x-request-id"), "one")
        self.assertRegex(b.header("x-request-id"), HEX32)
        self.assertEqual(bad.status, 400)
        self.assertRegex(bad.header("x-request-id"), HEX32)
        self.assertNotEqual(b.header("x-request-id"),
                            bad.header("x-request-id"))


def readme_block(mark):
    """The indented block after the line <!-- mark --> in README.md."""
    with open(os.path.join(ROOT, "README.md")) as f:
        lines = f.read().splitlines()
    i = lines.index("<!-- %s -->" % mark) + 1
    block = []
    while i < len(lines) and lines[i].startswith("    "):
        block.append(lines[i][4:])
        i += 1
    return "\n".join(block) + "\n"


def schema_moved():
    """Whether this build's migrations put tokend's objects in schema
    tokend (the lead's final migration of this round)."""
    d = os.path.join(ROOT, "store", "migrations")
    return any("SCHEMA tokend" in open(os.path.join(d, f)).read()
               for f in os.listdir(d) if f.endswith(".sql"))


class LeastPrivilegeTest(unittest.TestCase):
    """The README's roles: tokend_migrate migrates a fresh database,
    tokend_server serves and runs tokenctl, and may not change a table."""

    DB = "tokend_roles"

    def psql(self, url, sql):
        return subprocess.run([harness.pg().psql, "-X", "-v",
                               "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                              capture_output=True, text=True, timeout=30)

    def url(self, user):
        return harness.pg().url.replace("/tokend?", "/%s?" % self.DB) \
            .replace("user=postgres", "user=" + user)

    def setUp(self):
        harness.database(self.DB)
        for role in ("tokend_server", "tokend_migrate"):
            harness.pg().sql("DROP ROLE IF EXISTS %s" % role)

    def tearDown(self):
        pg = harness.pg()
        pg.sql("DROP DATABASE IF EXISTS %s" % self.DB)
        for role in ("tokend_server", "tokend_migrate"):
            pg.sql("DROP ROLE IF EXISTS %s" % role)

    def test_roles_as_the_readme_sets_them_up(self):
        sql = readme_block("least-privilege").replace(
            "DATABASE tokend ", "DATABASE %s " % self.DB)
        r = self.psql(self.url("postgres"), sql)
        self.assertEqual(r.returncode, 0, r.stderr)
        if not schema_moved():
            self.skipTest("the SQL runs; tokend's objects are not in schema "
                          "tokend yet (the lead's migration moves them)")
        mig, srv = self.url("tokend_migrate"), self.url("tokend_server")
        harness.tokenctl("migrate", url=mig)
        harness.tokenctl("user", "add", "alice", "--no-password", url=srv)
        tok = harness.tokenctl("pat", "create", "--user", "alice", "--name",
                               "lp", url=srv).stdout.strip()
        with harness.Tokend(workers=1, config={"database_url": srv}) as t:
            self.assertEqual(t.http("GET", "/auth",
                                    headers=bearer(tok)).status, 200)
            harness.tokenctl("token", "revoke", "1", url=srv)
            harness.wait_until(lambda: t.http(
                "GET", "/auth", headers=bearer(tok)).status == 401)
            harness.tokenctl("cleanup", url=srv)
            self.assertNotIn("permission denied", t.log())
        for ddl in ("CREATE TABLE tokend.x (a int)",
                    "DROP TABLE tokend.tokens",
                    "ALTER TABLE tokend.users ADD COLUMN x int"):
            r = self.psql(srv, ddl)
            self.assertNotEqual(r.returncode, 0, ddl)
            self.assertRegex(r.stderr, "permission denied|must be owner")


if __name__ == "__main__":
    unittest.main()

"""Leaked tokens (SPEC 13): POST /credentials/revoke for secret scanners,
tokenctl scan [--revoke], and the contrib/git/pre-commit hook."""

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import time
import unittest

import harness
from test_oauth import WEB, add_clients, add_user, bearer, conn_on_each_worker

PREFIX = {"access": "tka_", "refresh": "tkr_", "pat": "tkp_", "code": "tkc_",
          "device": "tkd_", "session": "tks_"}
PATH = "/credentials/revoke"
HOOK = os.path.join(harness.ROOT, "contrib", "git", "pre-commit")


def made_up(kind="pat"):
    """A well-formed token (right checksum) that no database holds."""
    return harness.well_formed_token(PREFIX[kind])


def sha(tok):
    return hashlib.sha256(tok.encode()).digest()


def pat(name="leak"):
    return harness.tokenctl("pat", "create", "--user", "alice", "--name",
                            name).stdout.strip()


def report(t, creds=None, source="127.0.0.1", body=None, ctype=None):
    """POST /credentials/revoke from a loopback source address; the
    answer and its time in seconds."""
    if body is None:
        body = json.dumps({"credentials": creds})
    headers = {"Content-Type": ctype or "application/json",
               "Connection": "close"}
    c = harness.conn_from(t.port, source)
    try:
        t0 = time.monotonic()
        r = c.request("POST", PATH, headers=headers, body=body)
        return r, time.monotonic() - t0
    finally:
        c.close()


def shape(r):
    """What a scanner sees, but the Date header and X-Request-Id (fresh
    random bytes on every answer)."""
    return (r.status, [(k.lower(), v) for k, v in r.raw_headers
                       if k.lower() not in ("date", "x-request-id")], r.body)


def metric(t, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name),
                  t.http("GET", "/metrics").text, re.M)
    return int(m.group(1)) if m else None


class LeakBase(unittest.TestCase):
    workers = 2

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        add_clients()
        add_user("alice", "alice-pw")
        cls.t = harness.Tokend(workers=cls.workers, config={
            "login_max_failures": 100, "usage_flush_interval": 0.2})

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def login(self):
        r = self.t.http("POST", "/token", headers=WEB, form={
            "grant_type": "password", "username": "alice",
            "password": "alice-pw"})
        self.assertEqual(r.status, 200, r)
        return r.json()

    def refresh(self, rt):
        return self.t.http("POST", "/token", headers=WEB, form={
            "grant_type": "refresh_token", "refresh_token": rt})

    def auth(self, tok, conn=None):
        if conn is not None:
            return conn.request("GET", "/auth", headers=bearer(tok)).status
        return self.t.http("GET", "/auth", headers=bearer(tok)).status

    def revoked(self, tok):
        rows = harness.pg().sql("SELECT revoked_at IS NOT NULL FROM tokens "
                                "WHERE hash = %s", sha(tok))
        return rows[0][0] == "t"


class EndpointTest(LeakBase):
    def test_real_and_made_up_tokens_get_the_same_answer(self):
        real = [pat("a"), self.login()["access_token"]]
        fake = [made_up("pat"), made_up("access")]
        r1, _ = report(self.t, real + ["junk"], source="127.0.0.11")
        r2, _ = report(self.t, fake + ["junk"], source="127.0.0.11")
        self.assertEqual(r1.status, 202, r1)
        self.assertEqual(r1.json(), {"received": 3})
        self.assertEqual(shape(r1), shape(r2))
        self.assertEqual(r1.header("cache-control"), "no-store")
        # Reported again (now revoked): still the same answer.
        r3, _ = report(self.t, real + ["junk"], source="127.0.0.11")
        self.assertEqual(shape(r3), shape(r1))
        self.assertTrue(all(self.revoked(tok) for tok in real))

    def test_revoked_on_every_worker_within_a_second(self):
        p = pat("b")
        j = self.login()
        k = self.refresh(j["refresh_token"]).json()
        live = [p, j["access_token"], k["access_token"]]
        conns = conn_on_each_worker(self.t)
        other = harness.Tokend(workers=1)   # a second box, same database
        try:
            for c in conns:
                for tok in live:
                    self.assertEqual(self.auth(tok, c), 200)
            for tok in live:
                self.assertEqual(other.http("GET", "/auth",
                                            headers=bearer(tok)).status, 200)
            # The PAT, and the family through its first refresh token.
            r, _ = report(self.t, [p, j["refresh_token"]],
                          source="127.0.0.12")
            self.assertEqual(r.status, 202, r)
            t0 = time.monotonic()
            for c in conns:
                for tok in live:
                    self.assertEqual(self.auth(tok, c), 401)
            harness.wait_until(lambda: all(
                other.http("GET", "/auth", headers=bearer(tok)).status ==
                401 for tok in live), timeout=1.0,
                msg="still valid on another tokend after 1 s")
            self.assertLess(time.monotonic() - t0, 1.0)
            self.assertEqual(self.refresh(k["refresh_token"]).status, 400)
        finally:
            for c in conns:
                c.close()
            other.stop()
        log = self.t.log()
        self.assertRegex(log, r"event=leak_report_received .*"
                         r"peer=127\.0\.0\.12 received=2 wellformed=2 "
                         r"found=2 revoked=5 by=leak_report")
        for tok in live + [j["refresh_token"], k["refresh_token"]]:
            self.assertNotIn(tok, log)
            self.assertNotIn(tok[8:], log)

    def test_code_session_and_device_code(self):
        uid = harness.pg().sql("SELECT id FROM users WHERE name = 'alice'")
        uid = int(uid[0][0])
        code = made_up("code")
        harness.pg().sql(
            "INSERT INTO tokens (kind, hash, prefix, user_id, client_id, "
            "expires_at) SELECT 'code', %s, %s, %s, id, now() + interval "
            "'1 minute' FROM clients WHERE client_id = 'web'", sha(code),
            code[:8], uid)
        sess = made_up("session")
        harness.pg().sql(
            "INSERT INTO web_sessions (hash, prefix, user_id, expires_at) "
            "VALUES (%s, %s, %s, now() + interval '1 hour')", sha(sess),
            sess[:8], uid)
        dev = made_up("device")
        harness.pg().sql(
            "INSERT INTO device_codes (hash, prefix, user_code, client_id, "
            "expires_at) SELECT %s, %s, 'BCDFGHJK', id, now() + interval "
            "'10 minutes' FROM clients WHERE client_id = 'web'", sha(dev),
            dev[:8])
        r, _ = report(self.t, [code, sess, dev], source="127.0.0.13")
        self.assertEqual(r.status, 202, r)
        self.assertTrue(self.revoked(code))
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM web_sessions WHERE hash = %s", sha(sess)),
            [("0",)])
        self.assertEqual(harness.pg().sql(
            "SELECT status FROM device_codes WHERE hash = %s", sha(dev)),
            [("denied",)])

    def test_bad_reports(self):
        src = "127.0.0.14"
        bad = [b"not json", b"[]", b'{"credentials": "tkp_x"}',
               b'{"credentials": []}', b'{"credentials": ["a", 1]}',
               b'{"credentials": [null]}', b'{"other": ["a"]}',
               json.dumps({"credentials": ["x"] * 1001}).encode()]
        for body in bad:
            r, _ = report(self.t, body=body, source=src)
            self.assertEqual(r.status, 400, (body[:40], r))
            self.assertEqual(r.json()["error"], "invalid_request")
            self.assertIn("error_description", r.json())
        r, _ = report(self.t, ["x"] * 1000, source="127.0.0.15")
        self.assertEqual((r.status, r.json()), (202, {"received": 1000}))
        r, _ = report(self.t, body=b'{"credentials": ["x"]}', ctype="text/plain",
                      source="127.0.0.15")
        self.assertEqual(r.status, 415, r)
        self.assertEqual(r.json()["error"], "invalid_request")
        big = json.dumps({"credentials": ["x" * 70000]})
        r, _ = report(self.t, body=big, source="127.0.0.15")
        self.assertEqual(r.status, 413, r)
        r = self.t.http("GET", PATH)
        self.assertEqual((r.status, r.header("allow")), (405, "POST"))

    def test_limit_per_address_and_metric(self):
        before = metric(self.t, "tokend_leak_reports_total")
        for i in range(10):
            r, _ = report(self.t, [made_up()], source="127.0.0.16")
            self.assertEqual(r.status, 202, (i, r))
        r, _ = report(self.t, [made_up()], source="127.0.0.16")
        self.assertEqual(r.status, 429, r)
        self.assertTrue(1 <= int(r.header("retry-after")) <= 60, r)
        self.assertEqual(r.json()["error"], "temporarily_unavailable")
        # Bad requests count too: a flood of junk is limited as well.
        r, _ = report(self.t, body=b"junk", source="127.0.0.16")
        self.assertEqual(r.status, 429, r)
        # Another address is not.
        r, _ = report(self.t, [made_up()], source="127.0.0.17")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(metric(self.t, "tokend_leak_reports_total"),
                         before + 11)
        self.assertIn("event=leak_report_limited", self.t.log())
        self.assertRegex(self.t.log(), r"event=leak_report_limited .*"
                         r"peer=127\.0\.0\.16 retry_after=\d+")

    def test_timing_of_real_and_made_up_reports(self):
        # Fresh real PATs each time (inserted directly: tokenctl would be
        # slow), 20 per report, against 20 made-up ones; medians within a
        # loose bound on a busy machine.
        uid = int(harness.pg().sql(
            "SELECT id FROM users WHERE name = 'alice'")[0][0])
        real_t, fake_t = [], []
        for i in range(8):
            toks = [made_up() for _ in range(20)]
            harness.pg().sql(
                "INSERT INTO tokens (kind, hash, prefix, user_id) "
                "SELECT 'pat', h, 'tkp_xxxx', %s FROM unnest(%s::bytea[]) h",
                uid, [sha(x) for x in toks])
            src = "127.0.1.%d" % (i + 1)
            r, dt = report(self.t, toks, source=src)
            self.assertEqual(r.status, 202)
            real_t.append(dt)
            r, dt = report(self.t, [made_up() for _ in range(20)],
                           source=src)
            self.assertEqual(r.status, 202)
            fake_t.append(dt)
        real, fake = statistics.median(real_t), statistics.median(fake_t)
        self.assertLess(real, 3 * fake + 0.02, (real_t, fake_t))
        self.assertLess(fake, 3 * real + 0.02, (real_t, fake_t))

    def test_audited_as_leak_report(self):
        if harness.pg().sql("SELECT to_regclass('audit') IS NOT NULL")[0][0] \
                != "t":
            self.skipTest("no audit table in this branch")
        count = "SELECT count(*) FROM audit WHERE by = 'leak_report'"
        before = int(harness.pg().sql(count)[0][0])
        r, _ = report(self.t, [pat("audited")], source="127.0.0.18")
        self.assertEqual(r.status, 202)
        self.assertGreater(int(harness.pg().sql(count)[0][0]), before)


def bad_checksum(tok):
    return tok[:-1] + ("0" if tok[-1] != "0" else "1")


class ScanTest(unittest.TestCase):
    """tokenctl scan: no tokend needed; a database only with --revoke."""

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        add_user("alice", "alice-pw")

    def setUp(self):
        self.dir = harness.tmpdir("tokend-scan-")

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return path

    def scan(self, *args, input=None, url="postgresql:///nowhere?host=/nonexistent"):
        # A URL that cannot connect: scan without --revoke needs none.
        return subprocess.run([harness.bin_path("tokenctl"), "--database-url",
                               url, "scan"] + list(args), input=input,
                              capture_output=True, timeout=60)

    def test_finds_tokens_with_a_valid_checksum_only(self):
        p, a, r = made_up("pat"), made_up("access"), made_up("refresh")
        text = self.write("config.env", "A=1\nTOKEN=%s\n\n%s%s x\n%s\n" % (
            p, a, r, bad_checksum(made_up("pat"))))
        # Binary data around a token, past the first 64 KiB chunk, and a
        # token split across two chunks.
        blob = os.urandom(65536 - 20).replace(b"\n", b" ") + p.encode() + \
            b"\0\n\xff" + os.urandom(1000).replace(b"\n", b" ") + a.encode()
        binf = self.write("blob.bin", blob)
        clean = self.write("clean.txt", "nothing here tkp_short\n")
        res = self.scan(text, binf, clean)
        self.assertEqual(res.returncode, 1, res)
        self.assertEqual(res.stdout.decode().splitlines(), [
            "%s:2 %s" % (text, p[:8]), "%s:4 %s" % (text, a[:8]),
            "%s:4 %s" % (text, r[:8]), "%s:1 %s" % (binf, p[:8]),
            "%s:2 %s" % (binf, a[:8])])
        for tok in (p, a, r):
            self.assertNotIn(tok[8:].encode(), res.stdout + res.stderr)
        res = self.scan(clean)
        self.assertEqual((res.returncode, res.stdout), (0, b""))

    def test_stdin_usage_and_unreadable_files(self):
        p = made_up("code")
        res = self.scan("-", input=("x " + p + "\n").encode())
        self.assertEqual((res.returncode, res.stdout.decode()),
                         (1, "-:1 %s\n" % p[:8]))
        res = self.scan()
        self.assertEqual(res.returncode, 2)
        self.assertIn(b"usage: tokenctl scan FILE...", res.stderr)
        res = self.scan("--json", "-", input=b"")
        self.assertEqual(res.returncode, 2)
        clean = self.write("clean", "x\n")
        res = self.scan(os.path.join(self.dir, "missing"), clean)
        self.assertEqual(res.returncode, 2, res)
        self.assertEqual(len(res.stderr.decode().splitlines()), 1)
        self.assertIn("missing: No such file or directory",
                      res.stderr.decode())

    def test_revoke(self):
        real = pat("scanned")
        fake = made_up("pat")
        f = self.write("leak.txt", "%s\n%s\n%s\n" % (real, fake, real))
        res = self.scan("--revoke", f, url=harness.pg().url)
        self.assertEqual(res.returncode, 1, res)
        out = res.stdout.decode().splitlines()
        self.assertEqual(out[:3], ["%s:1 %s" % (f, real[:8]),
                                   "%s:2 %s" % (f, fake[:8]),
                                   "%s:3 %s" % (f, real[:8])])
        self.assertEqual(out[3], "revoked 1 (1 of the 2 distinct tokens "
                         "found are known)")
        self.assertEqual(harness.pg().sql(
            "SELECT revoked_at IS NOT NULL FROM tokens WHERE hash = %s",
            sha(real)), [("t",)])
        # Nothing found: no database is asked.
        clean = self.write("clean", "x\n")
        res = self.scan("--revoke", clean)
        self.assertEqual((res.returncode, res.stdout), (0, b""))


class HookTest(unittest.TestCase):
    """contrib/git/pre-commit in a throwaway repository."""

    def setUp(self):
        self.repo = harness.tmpdir("tokend-hook-")
        self.git("init", "-q")
        shutil.copy(HOOK, os.path.join(self.repo, ".git", "hooks",
                                       "pre-commit"))

    def git(self, *args, path=None):
        env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x",
                   GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x",
                   PATH=path or os.environ["PATH"])
        env.pop("TOKENCTL", None)
        return subprocess.run(["git"] + list(args), cwd=self.repo, env=env,
                              capture_output=True, text=True, timeout=60)

    def add(self, name, text):
        path = os.path.join(self.repo, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        self.git("add", name)

    def test_refuses_a_staged_token_and_accepts_clean_commits(self):
        with_ctl = harness.BIN + os.pathsep + os.environ["PATH"]
        self.add("README", "hello\n")
        r = self.git("commit", "-qm", "clean", path=with_ctl)
        self.assertEqual(r.returncode, 0, r.stderr)
        p = made_up("pat")
        self.add("deploy/my conf.yml", "a: 1\ntoken: %s\n" % p)
        self.add("notes", "tkp_ but %s\n" % bad_checksum(made_up("pat")))
        r = self.git("commit", "-qm", "leak", path=with_ctl)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("deploy/my conf.yml:2 %s" % p[:8], r.stderr)
        self.assertNotIn("notes", r.stderr)     # checksum verified
        self.assertNotIn(p[8:], r.stderr + r.stdout)
        self.assertIn("git commit --no-verify", r.stderr)
        self.assertNotIn("could not verify", r.stderr)
        # Only the staged content counts: fixed in the index, the
        # working tree's copy does not matter.
        self.add("deploy/my conf.yml", "a: 1\n")
        with open(os.path.join(self.repo, "deploy", "my conf.yml"),
                  "a") as f:
            f.write(p + "\n")
        r = self.git("commit", "-qm", "fixed", path=with_ctl)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_without_tokenctl_a_pattern_stands_in(self):
        p = made_up("refresh")
        self.add("x.txt", "\n\n%s\n" % p)
        path = "/usr/bin:/bin"
        self.assertIsNone(shutil.which("tokenctl", path=path))
        r = self.git("commit", "-qm", "leak", path=path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("x.txt:3 %s" % p[:8], r.stderr)
        self.assertIn("could not verify checksums", r.stderr)
        self.assertNotIn(p[8:], r.stderr)
        r = self.git("commit", "-qm", "knowingly", "--no-verify", path=path)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()

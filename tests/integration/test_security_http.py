"""Issue 9, items 3, 4, 12 and 13: the HTTP, connection and process-level
holes.  Header injection through /auth's scope and the response writer,
CPU burnt by a client that never reads or by running out of descriptors,
the modes of the files tokend creates or trusts, and HTTP/1.1 conformance
(absolute-form targets, Host values)."""

import grp
import os
import resource
import socket
import stat
import subprocess
import time
import unittest

import harness
from harness import Conn, Tokend


def pat(user, scope="read write"):
    return harness.tokenctl("pat", "create", "--user", user, "--name", "t",
                            "--scope", scope).stdout.strip()


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14, 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(t):
    return t.wait_children(lambda ch: "worker 1" in ch)["worker 1"]


def raw(port, data, timeout=5):
    with Conn(port) as c:
        c.send(data)
        return c.read_response(timeout)


class WithAlice(unittest.TestCase):
    """One worker, and a PAT of alice's in cls.tok."""

    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        cls.tok = pat("alice")
        cls.t = Tokend(workers=1)

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()


class HeaderInjection(WithAlice):
    """Item 3: nothing a client sends reaches a response header raw."""

    def auth(self, query):
        return self.t.http("GET", "/auth" + query,
                           headers={"Authorization": "Bearer " + self.tok})

    def test_crlf_in_required_scope_is_400(self):
        r = self.auth("?scope=admin%0d%0aSet-Cookie:%20evil=1")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"], "invalid_request")
        self.assertIsNone(r.header("set-cookie"))
        self.assertIsNone(r.header("www-authenticate"))

    def test_scope_outside_rfc6749_is_400(self):
        # '"' and '\' are not scope-token bytes (RFC 6749 3.3), nor are
        # controls or bytes over 0x7e.
        for q in ("a%22b", "a%5Cb", "a%09b", "a%7Fb", "caf%C3%A9"):
            r = self.auth("?scope=" + q)
            self.assertEqual(r.status, 400, (q, r))
            self.assertEqual(r.json()["error"], "invalid_request")

    def test_valid_scopes_still_work(self):
        self.assertEqual(self.auth("?scope=read").status, 200)
        self.assertEqual(self.auth("?scope=read+write").status, 200)
        self.assertEqual(self.auth("?scope=").status, 200)
        r = self.auth("?scope=admin")
        self.assertEqual(r.status, 403)
        self.assertIn('scope="admin"', r.header("www-authenticate"))

    def test_identity_with_crlf_is_500_never_a_split_header(self):
        """Defence in depth: a value with CR LF from the database (here a
        user name set by SQL) makes the answer a 500, not a 200 with an
        extra header or without its X-Auth-User."""
        harness.tokenctl("user", "add", "mallory", "--no-password")
        tok = pat("mallory")
        try:
            harness.pg().sql("UPDATE users SET name = %s WHERE name = "
                             "'mallory'", "mallory\r\nSet-Cookie: evil=1")
        except harness.SQLError as e:
            self.skipTest("the schema refuses such a name: %s" % e)
        with Conn(self.t.port) as c:
            r = c.request("GET", "/auth",
                          headers={"Authorization": "Bearer " + tok})
            self.assertEqual(r.status, 500, r)
            self.assertEqual(r.json()["error"], "server_error")
            self.assertIsNone(r.header("set-cookie"))
            self.assertIsNone(r.header("x-auth-user"))
            # The stream is intact: the next answer parses.
            self.assertEqual(c.request("GET", "/healthz").status, 200)
        harness.wait_until(lambda: "event=header_refused" in self.t.log())
        line = [l for l in self.t.log().splitlines()
                if "event=header_refused" in l][0]
        self.assertIn("header=X-Auth-User", line)
        self.assertNotIn("evil", line)


class Conformance(WithAlice):
    """Item 13: RFC 9112 3.2 (Host) and 3.2.2 (absolute-form)."""

    def test_absolute_form_is_routed_by_its_path(self):
        r = raw(self.t.port, "GET http://127.0.0.1:%d/healthz HTTP/1.1\r\n"
                "Host: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" %
                (self.t.port, self.t.port))
        self.assertEqual(r.status, 200, r)
        r = raw(self.t.port, "GET HTTP://localhost/auth?scope=read "
                "HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
                "Connection: close\r\n\r\n" % self.tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("x-auth-user"), "alice")
        r = raw(self.t.port, "GET http://localhost/nope HTTP/1.1\r\n"
                "Host: localhost\r\nConnection: close\r\n\r\n")
        self.assertEqual(r.status, 404, r)

    def test_bad_absolute_form_is_400(self):
        for target in ("ftp://h/healthz", "http://u@h/healthz",
                       "http:///healthz", "http://h:x/healthz"):
            r = raw(self.t.port, "GET %s HTTP/1.1\r\nHost: h\r\n"
                    "Connection: close\r\n\r\n" % target)
            self.assertEqual(r.status, 400, (target, r))
            self.assertEqual(r.json()["error"], "invalid_request")

    def test_invalid_host_is_400(self):
        for host in ("a b", "a/b", "u@h", "h:80x", "[::1", "%zz"):
            r = raw(self.t.port, "GET /healthz HTTP/1.1\r\nHost: %s\r\n"
                    "Connection: close\r\n\r\n" % host)
            self.assertEqual(r.status, 400, (host, r))
            self.assertEqual(r.json()["error"], "invalid_request")

    def test_missing_or_repeated_host_is_400(self):
        r = raw(self.t.port, "GET /healthz HTTP/1.1\r\n"
                "Connection: close\r\n\r\n")
        self.assertEqual(r.status, 400)
        r = raw(self.t.port, "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: a\r\n"
                "Connection: close\r\n\r\n")
        self.assertEqual(r.status, 400)

    def test_valid_hosts_are_served(self):
        for host in ("127.0.0.1:%d" % self.t.port, "[::1]:8080",
                     "auth.example", ""):
            r = raw(self.t.port, "GET /healthz HTTP/1.1\r\nHost: %s\r\n"
                    "Connection: close\r\n\r\n" % host)
            self.assertEqual(r.status, 200, (host, r))


class UnreadPipeline(unittest.TestCase):
    """Item 4: a client that pipelines and never reads costs no CPU."""

    def test_unread_pipeline_does_not_spin_the_worker(self):
        with Tokend(workers=1, config={"header_timeout": 60}) as t:
            pid = worker_pid(t)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(s.close)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", t.port))
            s.setblocking(False)
            chunk = b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n" * 1000
            # Send until the server has stopped reading for a second.
            last, deadline = time.monotonic(), time.monotonic() + 20
            while time.monotonic() - last < 1.0:
                self.assertLess(time.monotonic(), deadline,
                                "the server never stopped reading")
                try:
                    if s.send(chunk) > 0:
                        last = time.monotonic()
                except BlockingIOError:
                    time.sleep(0.02)
            before = cpu_seconds(pid)
            start = time.monotonic()
            # Another client is served at once meanwhile.
            for _ in range(10):
                t0 = time.monotonic()
                self.assertEqual(t.http("GET", "/healthz").status, 200)
                self.assertLess(time.monotonic() - t0, 1.0)
            time.sleep(max(0.0, 2.5 - (time.monotonic() - start)))
            used = cpu_seconds(pid) - before
            self.assertLess(used, 0.5, "the worker burnt %.2f s of CPU in "
                            "%.1f s" % (used, time.monotonic() - start))


class OutOfDescriptors(unittest.TestCase):
    """Item 4: RLIMIT_NOFILE and max_connections; no accept spin."""

    NOFILE = 128

    def start_limited(self, config):
        """A Tokend whose processes start with RLIMIT_NOFILE soft = hard =
        NOFILE (preexec_fn in the Popen that harness.Tokend.start makes)."""
        real, n = subprocess.Popen, self.NOFILE

        def popen(*a, **kw):
            kw["preexec_fn"] = lambda: resource.setrlimit(
                resource.RLIMIT_NOFILE, (n, n))
            return real(*a, **kw)

        t = Tokend(workers=1, config=config, start=False)
        self.addCleanup(t._cleanup)
        subprocess.Popen = popen
        try:
            t.start()
        finally:
            subprocess.Popen = real
        return t

    def test_exhausted_descriptors_neither_spin_nor_flood_the_log(self):
        t = self.start_limited({"header_timeout": 60,
                                "keepalive_timeout": 60})
        pid = worker_pid(t)
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(2 * self.NOFILE):
            socks.append(socket.create_connection(("127.0.0.1", t.port)))
        time.sleep(0.5)
        cpu0, log0 = cpu_seconds(pid), os.path.getsize(t.log_path)
        time.sleep(2)
        used = cpu_seconds(pid) - cpu0
        grown = os.path.getsize(t.log_path) - log0
        self.assertLess(used, 0.5, "worker CPU %.2f s in 2 s" % used)
        self.assertLess(grown, 10000, "the log grew %d bytes in 2 s" % grown)
        # max_connections fits in what the limit leaves, and the log says so.
        self.assertRegex(t.log(), r"event=max_connections_clamped .*"
                         r"max_connections=10000 clamped_to=64 "
                         r"nofile_limit=128")
        for s in socks:
            s.close()
        socks.clear()
        harness.wait_until(lambda: t.http("GET", "/healthz",
                                          timeout=2).status == 200,
                           timeout=10)


class Files(unittest.TestCase):
    """Item 12: unix: socket modes, cache_dir ownership, the pid file."""

    def setUp(self):
        self.dir = harness.tmpdir()
        os.chmod(self.dir, 0o755)

    def unix_tokend(self, **config):
        port = harness.free_port()
        path = os.path.join(self.dir, "tokend.sock")
        config["listen"] = ["127.0.0.1:%d" % port, "unix:" + path]
        t = Tokend(workers=1, config=config)
        self.addCleanup(t._cleanup)
        return t, path

    def test_unix_socket_is_0660_by_default(self):
        t, path = self.unix_tokend()
        st = os.stat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)

    def test_unix_socket_mode_and_group(self):
        group = "daemon" if os.geteuid() == 0 else \
            grp.getgrgid(os.getegid()).gr_name
        t, path = self.unix_tokend(listen_mode="0600", listen_group=group)
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(st.st_gid, grp.getgrnam(group).gr_gid)
        s = socket.socket(socket.AF_UNIX)
        self.addCleanup(s.close)
        s.connect(path)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: h\r\n"
                  b"Connection: close\r\n\r\n")
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200 "))

    def test_unknown_listen_group_is_a_config_error(self):
        conf = os.path.join(self.dir, "tokend.conf")
        with open(conf, "w") as f:
            f.write("database_url = %s\nlisten_mode = 0660\n"
                    "listen_group = no-such-group-here\n" % harness.pg().url)
        r = harness.tokend_cmd("-c", conf, "-t")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertEqual(r.stderr.strip(), "%s:3: listen_group: no such "
                         "group: no-such-group-here" % conf)

    def refused(self, cache_dir, reason):
        t = Tokend(workers=1, config={"cache_dir": cache_dir}, start=False)
        self.addCleanup(t._cleanup)
        r = harness.tokend_cmd("-c", t.config_path, "-t")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("cache_dir %s: %s" % (cache_dir, reason), r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        t.start(wait=False)
        self.assertEqual(t.proc.wait(timeout=10), 78, t.stderr())
        self.assertIn("cache_dir %s: %s" % (cache_dir, reason), t.stderr())

    def test_world_or_group_writable_cache_dir_is_refused(self):
        for mode in (0o777, 0o770, 0o702):
            d = os.path.join(self.dir, "cache-%o" % mode)
            os.mkdir(d)
            os.chmod(d, mode)
            self.refused(d, "mode %04o is group- or world-writable" % mode)

    @unittest.skipUnless(os.geteuid() == 0, "chown needs root")
    def test_cache_dir_of_another_user_is_refused(self):
        d = os.path.join(self.dir, "cache-nobody")
        os.mkdir(d, 0o700)
        os.chown(d, 65534, -1)
        self.refused(d, "owned by uid 65534")

    def test_missing_cache_dir_is_created_0700(self):
        d = os.path.join(self.dir, "a", "cache")
        t = Tokend(workers=1, config={"cache_dir": d})
        self.addCleanup(t._cleanup)
        self.assertEqual(stat.S_IMODE(os.stat(d).st_mode), 0o700)
        self.assertEqual(t.http("GET", "/healthz").status, 200)

    def test_symlinked_pid_file_is_refused(self):
        target = os.path.join(self.dir, "precious")
        with open(target, "w") as f:
            f.write("precious\n")
        link = os.path.join(self.dir, "tokend.pid")
        os.symlink(target, link)
        t = Tokend(workers=1, config={"pid_file": link}, start=False)
        self.addCleanup(t._cleanup)
        t.start(wait=False)
        self.assertNotEqual(t.proc.wait(timeout=10), 0)
        self.assertIn("pid_file %s: is a symbolic link" % link, t.stderr())
        with open(target) as f:
            self.assertEqual(f.read(), "precious\n")

    def test_pid_file_is_written(self):
        path = os.path.join(self.dir, "tokend.pid")
        t = Tokend(workers=1, config={"pid_file": path})
        self.addCleanup(t._cleanup)
        with open(path) as f:
            self.assertEqual(f.read(), "%d\n" % t.pid)


if __name__ == "__main__":
    unittest.main()

"""Shipping tokend as a daemon (issue 15): what an operator runs.

-t lists every configuration error, -T prints the effective configuration
with each value's source, an unknown TOKEND_* variable is a warning,
SIGUSR1 logs log_reopened; the version everywhere; the sd_notify protocol
(a Python datagram socket as NOTIFY_SOCKET); the systemd unit under
systemd-analyze; make install; the alert rules and the dashboard against
a live /metrics.
"""

import os
import re
import signal
import time
import unittest

import harness
from harness import Tokend, free_port, pg, tmpdir, tokend_cmd, tokenctl
from test_cli import write

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class Version(unittest.TestCase):
    def test_both_programs_and_metrics_say_the_same_version(self):
        r = tokend_cmd("--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.fullmatch(r"tokend (\S+)\n", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        version = m.group(1)
        self.assertNotEqual(version, "0.1.0")
        r = tokenctl("--version", check=False)
        self.assertEqual((r.returncode, r.stdout),
                         (0, "tokenctl %s\n" % version), r.stderr)
        with Tokend(workers=1) as t:
            body = t.http("GET", "/metrics").text
        self.assertIn('\ntokend_build_info{version="%s"} 1\n' % version,
                      body)


class ConfigCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tmpdir("tokend-ship-")

    def test_t_reports_every_error_one_line_each(self):
        path = write(self.dir, "bad.conf", (
            "workers = banana\n"
            "cache_ttl = 300\n"
            "frobnicate = yes\n"
            "listen = 127.0.0.1:99999\n"
            "code_ttl = 601\n"))
        r = tokend_cmd("-t", "-c", path, env={"TOKEND_NEGATIVE_TTL": "x"})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.splitlines(), [
            "%s:1: workers: must be an integer from 1 to 256" % path,
            "%s:3: frobnicate: unknown key" % path,
            "%s:4: listen: 127.0.0.1:99999: port must be an integer "
            "from 1 to 65535" % path,
            "%s:5: code_ttl: must be an integer from 1 to 600" % path,
            "TOKEND_NEGATIVE_TTL: negative_ttl: must be an integer from "
            "0 to 3600"])

    def test_start_with_errors_exits_78_listing_them_all(self):
        path = write(self.dir, "bad2.conf",
                     "workers = 0\nlisten = 127.0.0.1:%d\ncode_ttl = 0\n"
                     % free_port())
        checked, started = (tokend_cmd(*a) for a in (("-t", "-c", path),
                                                     ("-c", path)))
        self.assertEqual((checked.returncode, started.returncode), (1, 78))
        self.assertEqual(len(started.stderr.splitlines()), 2, started.stderr)
        self.assertEqual(started.stderr, checked.stderr)

    def test_T_prints_values_and_their_sources(self):
        path = write(self.dir, "good.conf", (
            "# comment\n"
            "listen = 127.0.0.1:%d\n"
            "database_url = postgresql://tokend:hunter2@db.example/tokend\n"
            "cache_ttl = 300\n") % free_port())
        r = tokend_cmd("-T", "-c", path, env={"TOKEND_WORKERS": "3"})
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertIn("cache_ttl = 300\t# %s:4" % path, lines)
        self.assertIn("workers = 3\t# environment TOKEND_WORKERS", lines)
        self.assertIn("negative_ttl = 10\t# default", lines)
        self.assertIn("database_url = postgresql://tokend:REDACTED@"
                      "db.example/tokend\t# %s:3" % path, lines)
        self.assertNotIn("hunter2", r.stdout)
        keys = [ln.split(" = ")[0] for ln in lines]
        for key in ("issuer", "log_format", "max_revocation_lag",
                    "refresh_family_max_age", "tls_listen"):
            self.assertIn(key, keys)

    def test_T_with_errors_exits_1(self):
        path = write(self.dir, "bad3.conf", "workers = 0\n")
        r = tokend_cmd("-T", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn("%s:1: workers:" % path, r.stderr)

    def test_unknown_variable_is_a_warning_naming_the_key_meant(self):
        path = write(self.dir, "ok.conf", "workers = 2\n"
                     "database_url = %s\ncache_dir = %s/cache\n"
                     % (pg().url, self.dir))
        r = tokend_cmd("-t", "-c", path, env={"TOKEND_WROKERS": "4"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "tokend: warning: TOKEND_WROKERS: no such "
                         "configuration key, ignored; did you mean "
                         "TOKEND_WORKERS?\n")
        # TOKEND_BIN (set by this harness) is no typo: nothing said.
        self.assertIn("TOKEND_BIN", os.environ)
        r = tokend_cmd("-t", "-c", path)
        self.assertEqual((r.returncode, r.stderr), (0, ""))


class LogReopen(unittest.TestCase):
    def test_sigusr1_logs_log_reopened_in_the_new_file(self):
        with Tokend(workers=1) as t:
            logf = os.path.join(t.dir, "tokend.log")
            os.rename(logf, logf + ".1")
            t.signal(signal.SIGUSR1)
            harness.wait_until(
                lambda: os.path.exists(logf) and
                "event=log_reopened" in open(logf).read(),
                msg="no log_reopened line in the new file")
            text = open(logf).read()
        self.assertRegex(text, r"event=log_reopened proc=master pid=\d+ "
                         r"file=%s\n" % re.escape(logf))


class Notify(unittest.TestCase):
    """sd_notify: a datagram socket of our own stands in for systemd."""

    def socket(self, abstract):
        import socket as so
        s = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
        self.addCleanup(s.close)
        if abstract:
            name = "@tokend-test-%d" % os.getpid()
            s.bind("\0" + name[1:])
        else:
            name = os.path.join(tmpdir("tokend-notify-"), "notify")
            s.bind(name)
        return s, name

    def recv(self, s, timeout=10):
        s.settimeout(timeout)
        msg = s.recv(4096).decode()
        return dict(ln.split("=", 1) for ln in msg.splitlines())

    def run_protocol(self, abstract):
        s, name = self.socket(abstract)
        t = Tokend(workers=1, start=False, env={"NOTIFY_SOCKET": name})
        self.addCleanup(t._cleanup)
        t.start(wait=False)
        ready = self.recv(s)
        # READY means serving: a request made now is answered.
        self.assertEqual(ready["READY"], "1")
        self.assertEqual(t.http("GET", "/healthz").status, 200)
        self.assertIn("serving on 127.0.0.1:%d" % t.port, ready["STATUS"])
        self.assertEqual(ready["MAINPID"], str(t.proc.pid))
        before = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        t.signal(signal.SIGHUP)
        reloading = self.recv(s)
        self.assertEqual(reloading["RELOADING"], "1")
        usec = int(reloading["MONOTONIC_USEC"])
        self.assertTrue(before <= usec <= before + 10e6, (before, usec))
        self.assertEqual(self.recv(s)["READY"], "1")
        t.signal(signal.SIGTERM)
        self.assertEqual(self.recv(s)["STOPPING"], "1")
        self.assertEqual(t.proc.wait(timeout=15), 0)

    def test_ready_reloading_stopping_on_a_path_socket(self):
        self.run_protocol(abstract=False)

    def test_ready_on_an_abstract_socket(self):
        self.run_protocol(abstract=True)


def which(prog):
    import shutil
    return shutil.which(prog)


class Install(unittest.TestCase):
    """make install DESTDIR=...: every file where it belongs, in good shape."""

    @classmethod
    def setUpClass(cls):
        import subprocess
        cls.dest = tmpdir("tokend-install-")
        r = subprocess.run(["make", "-s", "-C", ROOT, "install",
                            "DESTDIR=" + cls.dest], capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            raise AssertionError("make install: " + r.stdout + r.stderr)

    def path(self, p):
        return os.path.join(self.dest, p.lstrip("/"))

    def test_files_and_modes(self):
        want = {
            "/usr/local/bin/tokend": 0o755,
            "/usr/local/bin/tokenctl": 0o755,
            "/usr/local/share/man/man8/tokend.8": 0o644,
            "/usr/local/share/man/man8/tokenctl.8": 0o644,
            "/usr/local/share/man/man5/tokend.conf.5": 0o644,
            "/usr/local/lib/systemd/system/tokend.service": 0o644,
            "/usr/local/share/doc/tokend/tokend.conf.example": 0o644,
            "/usr/local/share/doc/tokend/LICENSE": 0o644,
            "/etc/tokend/tokend.conf": 0o644,
            "/etc/logrotate.d/tokend": 0o644,
        }
        for p, mode in want.items():
            st = os.stat(self.path(p))
            self.assertEqual(st.st_mode & 0o7777, mode, p)
        import subprocess
        r = subprocess.run([self.path("/usr/local/bin/tokend"), "--version"],
                           capture_output=True, text=True)
        self.assertRegex(r.stdout, r"^tokend \S+\n$")

    def test_example_configuration_is_every_key_and_valid(self):
        """Uncommented, the example is exactly the defaults."""
        ex = open(self.path("/usr/local/share/doc/tokend/tokend.conf.example")
                  ).read()
        keys = set(re.findall(r"^#([a-z_]+) =", ex, re.M))
        r = tokend_cmd("-T")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(keys, {ln.split(" = ")[0]
                                for ln in r.stdout.splitlines()})
        d = tmpdir("tokend-example-")
        lines = [ln[1:] for ln in ex.splitlines() if re.match(r"#[a-z_]+ =",
                                                               ln)]
        path = write(d, "t.conf", "\n".join(
            ln for ln in lines if not ln.startswith("workers")) + "\n")
        r = tokend_cmd("-T", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(re.sub(r"\t# .*", "", r.stdout),
                         re.sub(r"\t# .*", "", tokend_cmd("-T").stdout))

    def test_unit_names_the_installed_paths(self):
        unit = open(self.path("/usr/local/lib/systemd/system/tokend.service")
                    ).read()
        self.assertIn("ExecStart=/usr/local/bin/tokend -c "
                      "/etc/tokend/tokend.conf\n", unit)
        self.assertIn("ExecReload=/usr/local/bin/tokend -t -c "
                      "/etc/tokend/tokend.conf\n", unit)

    def test_man_pages_are_clean_under_mandoc_lint(self):
        if not which("mandoc"):
            self.skipTest("no mandoc (contrib/deps.sh installs it)")
        import subprocess
        for page in ("man8/tokend.8", "man8/tokenctl.8",
                     "man5/tokend.conf.5"):
            p = self.path("/usr/local/share/man/" + page)
            r = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", p],
                               capture_output=True, text=True)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""),
                             page)


class SystemdUnit(unittest.TestCase):
    UNIT = os.path.join(ROOT, "contrib", "systemd", "tokend.service")

    def setUp(self):
        if not which("systemd-analyze"):
            self.skipTest("no systemd-analyze (package systemd)")

    def unit_for(self, bindir):
        """The unit with its programs at bindir (verify runs them)."""
        d = tmpdir("tokend-unit-")
        path = os.path.join(d, "tokend.service")
        with open(self.UNIT) as f:
            text = f.read().replace("/usr/local/bin/", bindir + "/")
        write(d, "tokend.service", text)
        return path

    def test_verify(self):
        import subprocess
        path = self.unit_for(harness.BIN)
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", path],
                           capture_output=True, text=True, cwd="/")
        self.assertEqual((r.returncode, r.stderr), (0, ""))

    def test_security_exposure_at_most_2(self):
        import subprocess
        path = self.unit_for(harness.BIN)
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                            path], capture_output=True, text=True, cwd="/")
        m = re.search(r"Overall exposure level for tokend.service: "
                      r"(\d+\.\d+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)

    def test_what_the_issue_asks_of_the_unit(self):
        with open(self.UNIT) as f:
            text = f.read()
        for line in ("Type=notify", "KillMode=mixed",
                     "RestartPreventExitStatus=78", "StateDirectory=tokend",
                     "LogsDirectory=tokend", "RuntimeDirectory=tokend",
                     "EnvironmentFile=-/etc/tokend/tokend.env",
                     "ExecReload=/usr/local/bin/tokend -t -c "
                     "/etc/tokend/tokend.conf"):
            self.assertIn("\n" + line + "\n", text)
        # cache_dir in memory, kept when the unit stops (README "Where
        # the cache lives").
        self.assertIn("\nEnvironment=TOKEND_CACHE_DIR=/run/tokend/cache\n",
                      text)
        self.assertIn("\nRuntimeDirectoryPreserve=yes\n", text)
        # The check comes before the signal.
        self.assertLess(text.index("ExecReload=/usr/local/bin/tokend -t"),
                        text.index("ExecReload=/bin/kill -HUP $MAINPID"))


class DebianPackage(unittest.TestCase):
    """make deb, then install, check, run and purge it on this machine."""

    def setUp(self):
        import subprocess
        if os.environ.get("SKIP_DEB_TEST"):
            self.skipTest("make asan: the package (a plain build) is "
                          "checked by make test")
        if os.geteuid() != 0 or not which("dpkg-buildpackage") or \
                not which("apt-get"):
            self.skipTest("needs root, dpkg-buildpackage and apt-get")
        if not which("dh") or not which("lintian"):
            self.skipTest("no debhelper or lintian (contrib/deps.sh)")
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "tokend"],
                           capture_output=True, text=True)
        if "installed" in r.stdout and "not-installed" not in r.stdout:
            self.skipTest("a tokend package is installed here already")

    def sh(self, *args, check=True, **kw):
        import subprocess
        r = subprocess.run(list(args), capture_output=True, text=True,
                           timeout=600, **kw)
        if check and r.returncode != 0:
            raise AssertionError("%s: %s%s" % (args, r.stdout[-3000:],
                                               r.stderr[-3000:]))
        return r

    def test_build_install_check_purge(self):
        import glob
        import grp
        import pwd
        import stat
        self.sh("make", "-s", "-C", ROOT, "deb")
        debs = [d for d in glob.glob(os.path.join(ROOT, "build-deb",
                                                  "tokend_*.deb"))]
        self.assertEqual(len(debs), 1, debs)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        self.addCleanup(self.sh, "apt-get", "purge", "-y", "-q", "tokend",
                        check=False, env=env)
        self.sh("apt-get", "install", "-y", "-q", "--no-install-recommends",
                debs[0], env=env)

        user = pwd.getpwnam("tokend")
        self.assertLess(user.pw_uid, 1000)
        self.assertIn(user.pw_shell, ("/usr/sbin/nologin", "/bin/false"))

        def owned(path, owner, group, mode):
            st = os.stat(path)
            self.assertEqual((pwd.getpwuid(st.st_uid).pw_name,
                              grp.getgrgid(st.st_gid).gr_name,
                              stat.S_IMODE(st.st_mode)),
                             (owner, group, mode), path)
        owned("/usr/bin/tokend", "root", "root", 0o755)
        owned("/usr/bin/tokenctl", "root", "root", 0o755)
        owned("/etc/tokend/tokend.conf", "root", "root", 0o644)
        owned("/etc/tokend/tokend.env", "root", "tokend", 0o640)
        owned("/var/lib/tokend", "tokend", "tokend", 0o700)
        owned("/var/log/tokend", "tokend", "adm", 0o2750)
        for f in ("/lib/systemd/system/tokend.service",
                  "/usr/share/man/man8/tokend.8.gz",
                  "/usr/share/man/man8/tokenctl.8.gz",
                  "/usr/share/man/man5/tokend.conf.5.gz",
                  "/etc/logrotate.d/tokend",
                  "/usr/share/doc/tokend/copyright"):
            self.assertTrue(os.path.exists(f), f)
        conffiles = self.sh("dpkg-query", "-W", "-f=${Conffiles}",
                            "tokend").stdout
        self.assertIn("/etc/tokend/tokend.conf ", conffiles)
        unit = open("/lib/systemd/system/tokend.service").read()
        self.assertIn("ExecStart=/usr/bin/tokend -c /etc/tokend/tokend.conf",
                      unit)
        # Enabled, not started.
        self.assertTrue(os.path.islink(
            "/etc/systemd/system/multi-user.target.wants/tokend.service"))
        self.assertEqual(self.sh("pgrep", "-x", "-u", "tokend", "tokend",
                                 check=False).stdout, "")

        # The installed tokend accepts the installed configuration, run as
        # the unit runs it.
        r = self.sh("runuser", "-u", "tokend", "--", "env",
                    "TOKEND_DATABASE_URL=" + pg().url,
                    "TOKEND_CACHE_DIR=/run/tokend/cache", "/usr/bin/tokend",
                    "-t", "-c", "/etc/tokend/tokend.conf", check=False,
                    cwd="/")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        self.sh("apt-get", "purge", "-y", "-q", "tokend", env=env)
        for p in ("/etc/tokend", "/var/lib/tokend", "/var/log/tokend",
                  "/usr/bin/tokend", "/lib/systemd/system/tokend.service",
                  "/etc/logrotate.d/tokend",
                  "/etc/systemd/system/multi-user.target.wants/"
                  "tokend.service"):
            self.assertFalse(os.path.lexists(p), p)
        self.assertRaises(KeyError, pwd.getpwnam, "tokend")
        self.assertRaises(KeyError, grp.getgrnam, "tokend")


PROMQL_WORDS = {
    "sum", "rate", "increase", "by", "without", "max", "min", "avg", "count",
    "histogram_quantile", "and", "or", "unless", "on", "ignoring",
    "group_left", "group_right", "offset", "bool",
}


def promql_metrics(expr):
    """The metric names an expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)       # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)               # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)              # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and
            not re.fullmatch(r"\d+e\d+", w)}


class Observability(unittest.TestCase):
    """The dashboard and the alert rules read only what tokend exports."""

    @classmethod
    def setUpClass(cls):
        with Tokend(workers=1) as t:
            text = t.http("GET", "/metrics").text
        cls.exported = set()
        for ln in text.splitlines():
            m = re.match(r"# TYPE (\S+) (\S+)", ln)
            if not m:
                continue
            cls.exported.add(m.group(1))
            if m.group(2) == "histogram":
                cls.exported |= {m.group(1) + s for s in
                                 ("_bucket", "_sum", "_count")}

    def test_every_dashboard_query_names_exported_metrics(self):
        import json
        with open(os.path.join(ROOT, "contrib", "grafana",
                               "tokend.json")) as f:
            dash = json.load(f)
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        self.assertGreater(len(exprs), 10)
        used = set()
        for e in exprs:
            names = promql_metrics(e)
            self.assertTrue(names, e)
            self.assertLessEqual(names, self.exported, e)
            used |= names
        # Every metric tokend exports has a panel.
        self.assertEqual(self.exported - used - {
            "tokend_request_duration_seconds"}, set())

    def test_alert_rules_name_exported_metrics(self):
        with open(os.path.join(ROOT, "contrib", "prometheus",
                               "tokend.rules.yml")) as f:
            text = f.read()
        names = set(re.findall(r"\btokend_[a-z_]+", text))
        self.assertGreaterEqual(len(names), 6)
        self.assertLessEqual(names, self.exported)

    def test_promtool_checks_and_tests_the_rules(self):
        if not which("promtool"):
            self.skipTest("no promtool (package prometheus)")
        import subprocess
        d = os.path.join(ROOT, "contrib", "prometheus")
        r = subprocess.run(["promtool", "check", "rules", "tokend.rules.yml"],
                           cwd=d, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run(["promtool", "test", "rules",
                            "tokend.rules.test.yml"], cwd=d,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

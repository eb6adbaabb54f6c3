"""What bench.py and oauth_bench.py share: processes and /proc, the wait
for a quiet machine and the re-run of disturbed rounds, HTTP, wrk and
pgbench runs, and the /tmp directory with its PostgreSQL and tokend.

Python 3 standard library only.
"""

import base64
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.abspath(os.environ.get("BENCH_BIN") or
                      os.path.join(ROOT, "bin"))

# The prefix of log lines; oauth_bench.py sets its own.
NAME = "bench"


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def log(*a):
    print(NAME + ":", *a, file=sys.stderr, flush=True)


class Settings:
    """The environment both scripts read (see their docstrings); rounds
    and duration are the defaults of a full run."""

    def __init__(self, rounds, duration):
        self.quick = os.environ.get("BENCH_QUICK") == "1"
        self.rounds = env_int("BENCH_ROUNDS", 1 if self.quick else rounds)
        self.duration = env_int("BENCH_DURATION",
                                3 if self.quick else duration)
        self.conns = env_int("BENCH_CONNS", 32)
        ncpu = os.cpu_count() or 1
        self.server_cpus = os.environ.get("BENCH_SERVER_CPUS",
                                          "0" if ncpu > 1 else "")
        rest = ",".join(str(i) for i in range(1, ncpu))
        self.client_cpus = os.environ.get("BENCH_CLIENT_CPUS",
                                          rest if ncpu > 1 else "")
        self.quiet_wait = env_int("BENCH_QUIET_WAIT", 60)
        self.max_foreign = float(os.environ.get("BENCH_MAX_FOREIGN", "0.2"))
        self.retries = env_int("BENCH_RETRIES", 2)
        self.keep = os.environ.get("BENCH_KEEP") == "1"
        # tokend's cache_dir on tmpfs, as the shipped unit has it
        # (/run/tokend/cache; README "Where the cache lives"), unless
        # BENCH_CACHE_ROOT names another parent ("" : the bench directory).
        self.cache_root = os.environ.get(
            "BENCH_CACHE_ROOT",
            "/dev/shm" if fs_type("/dev/shm") == "tmpfs" else "")
        self.cache_fs = fs_type(self.cache_root or "/tmp")

    def as_dict(self):
        return {k: (sorted(v) if isinstance(v, set) else v)
                for k, v in self.__dict__.items()}


def fs_type(path):
    """The filesystem path is on, as stat -f names it ("tmpfs", "ext2/ext3"
    for ext4); None when path does not exist."""
    r = subprocess.run(["stat", "-f", "-c", "%T", path],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def missing_tools(tools, hint):
    """The programs of tools not on PATH, and tokend or tokenctl where BIN
    lacks them (with hint: how to get them)."""
    missing = [t for t in tools if not shutil.which(t)]
    for f in ("tokend", "tokenctl"):
        if not os.access(os.path.join(BIN, f), os.X_OK):
            missing.append(os.path.join(BIN, f) + " (%s)" % hint)
    return missing


def machine(lscpu_keys, programs):
    """Cores, kernel, the lscpu fields named, and the first line of each
    program's version ((name, argv) pairs)."""
    m = {"cores": os.cpu_count(), "kernel": platform.release()}
    try:
        r = run(["lscpu"], check=False)
        for line in r.stdout.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in lscpu_keys:
                m[k.strip()] = v.strip()
    except OSError:
        pass
    vers = {}
    for name, argv in programs:
        try:
            r = run(argv, check=False)
            vers[name] = (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            vers[name] = "?"
    m["versions"] = vers
    return m


# ---- processes and /proc ----------------------------------------------------

def pinned(cpus, argv):
    return (["taskset", "-c", cpus] if cpus else []) + argv


def run(argv, **kw):
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(argv, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stat_fields(pid):
    """/proc/PID/stat after the comm field: comm ("tokend: worker 1")
    holds spaces, so split after the last ')'."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_s(pid, reaped=False):
    """utime + stime of pid (all its threads), plus its reaped children's
    when reaped; None when it is gone."""
    try:
        f = stat_fields(pid)
        n = 15 if reaped else 13
        return sum(int(x) for x in f[11:n]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def children(ppid):
    """[(title, pid)] of ppid's children (titles repeat: nginx workers,
    PostgreSQL backends)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if int(stat_fields(int(d))[1]) != ppid:
                continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
            if "valgrind" in title or "-linux" in title:
                # Under valgrind the title shows only in comm (prctl).
                with open("/proc/%s/comm" % d) as f:
                    title = f.read()
            out.append((title.strip(), int(d)))
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_busy():
    """{cpu: (busy, total)} jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                out[line.split()[0]] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def machine_busy(cpus):
    """(busy, total) jiffies of a cpu_busy() snapshot, all CPUs summed."""
    return (sum(b for b, _ in cpus.values()),
            sum(t for _, t in cpus.values()))


def wait_quiet(limit, settle=False):
    """Wait up to limit seconds for the CPUs to be under 10% busy over half
    a second: other sessions share the machine.  settle: when quiet, look
    again after a random pause, so that two benchmarks waiting alike do not
    start together.  Returns the seconds waited."""
    def quiet():
        a = machine_busy(cpu_busy())
        time.sleep(0.5)
        z = machine_busy(cpu_busy())
        return z[1] > a[1] and (z[0] - a[0]) / (z[1] - a[1]) < 0.10
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if quiet():
            if not settle:
                break
            time.sleep(random.uniform(0.3, 2.0))
            if quiet():
                break
    waited = time.monotonic() - t0 - 0.5
    if waited > 1:
        log("  waited %.0f s for a quiet machine" % waited)
    return round(max(0.0, waited), 1)


def foreign(run):
    """The share of a CPU that a run saw busy with work none of the
    measured processes account for."""
    v, w = run.get("other_cpu_s"), run.get("wall_s")
    return v / w if v is not None and w else 0.0


def retry_round(st, fn, worst):
    """Call fn() (one round) again, up to st.retries times, while
    worst(its result), the largest foreign() of its runs, is over
    st.max_foreign.  Returns the result and {attempts, dropped_foreign:
    the worst of each attempt thrown away, foreign: of the one kept}."""
    dropped = []
    for attempt in range(1 + st.retries):
        r = fn()
        w = worst(r)
        if w <= st.max_foreign or attempt == st.retries:
            break
        dropped.append(round(w, 3))
        log("  round disturbed (%.0f%% of a CPU foreign), again" % (100 * w))
    return r, {"attempts": attempt + 1, "dropped_foreign": dropped,
               "foreign": round(w, 3)}


class Proc:
    """A server this script started, in its own session, stopped by pid."""

    def __init__(self, argv, logpath, cwd=None):
        self.logf = open(logpath, "ab")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf,
                                  stdin=subprocess.DEVNULL, cwd=cwd,
                                  start_new_session=True)
        self.pid = self.p.pid

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.p.wait()
        self.logf.close()
        return self.p.returncode


def wait_rusage(p, timeout):
    """Wait for a Popen (wrk, pgbench); returns (stdout, its rusage)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return p.stdout.read(), ru
        if time.monotonic() > deadline:
            p.kill()
            raise RuntimeError("%s ran past its time" % p.args)
        time.sleep(0.05)


# ---- HTTP -------------------------------------------------------------------

def basic(cid, secret):
    q = urllib.parse.quote
    raw = "%s:%s" % (q(cid, safe=""), q(secret, safe=""))
    return "Basic " + base64.b64encode(raw.encode()).decode()


def call(port, method, path, authz=None, form=None, timeout=10):
    """One request on a new connection: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {}
        body = None
        if authz:
            h["Authorization"] = authz
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_http(port, path, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if call(port, "GET", path, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("nothing answers 200 on port %d %s" % (port, path))


# ---- wrk and pgbench --------------------------------------------------------

def wrk_argv(cpus, script, port, conns, duration, threads=1, timeout="5s"):
    return pinned(cpus, [
        "wrk", "-t", str(threads), "-c", str(conns), "-d", "%ds" % duration,
        "--timeout", timeout, "-s", script, "http://127.0.0.1:%d/" % port])


def parse_wrk(out):
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON "):])
            d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
            return d
    raise RuntimeError("wrk printed no BENCH_JSON line:\n" + out[-2000:])


def run_wrk(argv, env, duration, watch):
    """Run wrk with a BENCH_JSON script, watch() (a CPU watch with a
    done(run, rusage) method) started just before it; returns done()'s."""
    w = watch()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out, ru = wait_rusage(p, duration + 60)
    return w.done(parse_wrk(out), ru)


def percentile(xs, q):
    """The q quantile of the sorted list xs; None when it is empty."""
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def run_pgbench(d, argv, duration, watch):
    """Run pgbench (argv with -l: it logs transactions in its cwd) in a
    fresh directory d, watch() started just before it.  Returns the watch,
    pgbench's rusage and {rps, requests, p50_us, p99_us, sampled}."""
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    w = watch()
    p = subprocess.Popen(argv, cwd=d, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out, ru = wait_rusage(p, duration + 60)
    m = re.search(r"tps = ([0-9.]+) \(without", out)
    if p.returncode != 0 or not m:
        raise RuntimeError("pgbench failed:\n" + out[-2000:])
    nx = re.search(r"number of transactions actually processed: (\d+)", out)
    lat = []
    for name in os.listdir(d):
        with open(os.path.join(d, name)) as f:
            lat += [int(line.split()[2]) for line in f if line.strip()]
    lat.sort()
    return w, ru, {"rps": float(m.group(1)),
                   "requests": int(nx.group(1)) if nx else None,
                   "p50_us": percentile(lat, 0.5),
                   "p99_us": percentile(lat, 0.99), "sampled": len(lat)}


def write_conf(path, cfg):
    """A tokend configuration file holding cfg's settings."""
    with open(path, "w") as f:
        for k, v in cfg.items():
            f.write("%s = %s\n" % (k, v))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---- the bench directory: PostgreSQL, tokend --------------------------------

class Bench:
    """A fresh /tmp directory with a throwaway PostgreSQL (contrib/pg.sh)
    and the tokend under test in it; cleanup() stops both, removes it."""

    def __init__(self, st, prefix):
        self.st = st
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.bin = BIN
        self.pgdir = os.path.join(self.dir, "pg")
        self.url = None
        self.tokend = None
        # Where each tokend's cache_dir goes (Settings.cache_root).
        self.cache_root = (tempfile.mkdtemp(prefix=prefix + "cache-",
                                            dir=st.cache_root)
                           if st.cache_root else self.dir)

    def tokenctl(self, *args, stdin=None):
        return run([os.path.join(self.bin, "tokenctl"), "--database-url",
                    self.url] + list(args), input=stdin).stdout

    def start_pg(self, cpus="", shared_buffers=""):
        """PostgreSQL on a free port, pinned to cpus when set, with its
        shared_buffers set when given (ALTER SYSTEM, then a restart)."""
        pg_sh = ["sh", os.path.join(ROOT, "contrib/pg.sh")]
        port = str(free_port())
        r = run(pg_sh + ["start", self.pgdir, port], cwd=ROOT)
        self.url = r.stdout.strip().splitlines()[-1]
        if shared_buffers:
            run(["psql", "-X", "-q", "-d", self.url, "-c",
                 "ALTER SYSTEM SET shared_buffers = '%s'" % shared_buffers])
            run(pg_sh + ["stop", self.pgdir], cwd=ROOT)
            run(pg_sh + ["start", self.pgdir, port], cwd=ROOT)
        if cpus:
            # New backends inherit the postmaster's affinity.
            pm = self.postmaster()
            run(["taskset", "-pc", cpus, str(pm)])
            for _, pid in children(pm):
                # A child may be gone already (the startup process).
                run(["taskset", "-pc", cpus, str(pid)], check=False)

    def postmaster(self):
        with open(os.path.join(self.pgdir, "data", "postmaster.pid")) as f:
            return int(f.readline())

    def pg_cpu(self):
        """CPU seconds of the whole cluster so far: the postmaster, its
        live children, and the children it has reaped (cutime, cstime)."""
        try:
            pm = self.postmaster()
        except (OSError, ValueError):
            return None
        tot = cpu_s(pm, reaped=True)
        if tot is None:
            return None
        return tot + sum(cpu_s(p) or 0 for _, p in children(pm))

    def stop_pg(self):
        if self.url:
            run(["sh", os.path.join(ROOT, "contrib/pg.sh"), "stop",
                 self.pgdir], check=False, cwd=ROOT)

    def launch_tokend(self, d, port, workers, extra=None):
        """Write d/tokend.conf (extra settings last), start tokend pinned
        to the server CPUs and wait for /readyz.  Returns the settings."""
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "tokend.conf")
        cfg = {
            "listen": "127.0.0.1:%d" % port,
            "workers": str(workers),
            "database_url": self.url,
            "cache_dir": self.cache_dir_for(d),
            "log_file": os.path.join(d, "tokend.log"),
            "log_level": "warn",
        }
        cfg.update(extra or {})
        write_conf(conf, cfg)
        self.tokend = Proc(pinned(self.st.server_cpus,
                                  [os.path.join(self.bin, "tokend"),
                                   "-c", conf]),
                           os.path.join(d, "stderr"))
        wait_http(port, "/readyz")
        return cfg

    def cache_dir_for(self, d):
        """The cache_dir of the tokend in d: under cache_root, named after
        d's place in the bench directory."""
        parent = os.path.join(self.cache_root, os.path.relpath(
            d, self.dir).replace(os.sep, "-"))
        os.makedirs(parent, exist_ok=True)
        return os.path.join(parent, "cache")

    def tokend_forked(self, workers, timeout=10):
        """Wait for tokend's workers and writer (forked after the
        listeners open); False when not all came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.tokend_children("worker")) == workers and \
                    self.tokend_children("writer"):
                return True
            time.sleep(0.05)
        return False

    def tokend_children(self, kind):
        return [pid for t, pid in children(self.tokend.pid)
                if t.startswith("tokend: " + kind)]

    def stop_tokend(self):
        if self.tokend:
            rc = self.tokend.stop()
            self.tokend = None
            if rc != 0:
                log("tokend exited with status %s" % rc)

    def cleanup(self):
        self.stop_tokend()
        self.stop_pg()
        if self.st.keep:
            log("kept", self.dir, self.cache_root)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
            shutil.rmtree(self.cache_root, ignore_errors=True)

#!/usr/bin/env python3
"""tokend's OAuth 2.0 benchmarks (issue 5), beside bench.py's /auth suite.

Starts what it measures in a fresh /tmp directory removed at the end: a
throwaway PostgreSQL (contrib/pg.sh), tokend, wrk and pgbench as clients.
Each measurement runs several rounds; the report gives medians, and the
JSON keeps every round.

    I introspect   POST /introspect (confidential client, cached client
                   authentication, cached access token) vs GET /auth with
                   the same token: req/s ratio, target >= 0.8
    R refresh      refresh-token rotation, one chain per connection (each
                   token used once, never a replay) vs pgbench's default
                   TPC-B-like transaction at the same client count on the
                   same database: ratio, target >= 0.5
    P password     password grants per second, and per core of the worker
                   (utime + stime of the worker process, argon2 thread
                   included); reports the argon2id parameters
    X interference /auth p99 while a paced client sends 10 password grants
                   per second, vs /auth p99 alone: ratio, target <= 2;
                   with 1 worker, and again with 2; each under two /auth
                   loads: saturating (wrk's closed loop, no pause) and
                   paced (each connection pauses OAUTH_X_PACE_MS between
                   an answer and its next request: a busy server, not a
                   saturated one)

Environment:
    BENCH_QUICK=1       smoke run: 1 round of 3 s, report on stdout only
    BENCH_ROUNDS=N      rounds per measurement (default 3)
    BENCH_DURATION=S    seconds per measured run (default 8)
    BENCH_CONNS=C       wrk connections and pgbench clients (default 32)
    BENCH_BIN=DIR       where tokend and tokenctl are (default ./bin)
    BENCH_SERVER_CPUS   taskset list for tokend (default 0)
    BENCH_CLIENT_CPUS   taskset list for wrk, pgbench and this script's
                        paced client (default: the other CPUs)
    BENCH_PG_CPUS       taskset list for PostgreSQL (default: unpinned)
    OAUTH_BENCHES       e.g. "I,R": only these (default I,R,P,X)
    OAUTH_X_WORKERS     worker counts for X (default "1,2")
    OAUTH_GRANT_RATE    password grants per second during X (default 10)
    OAUTH_X_PACE_MS     the paced load's pause, milliseconds (default 1;
                        0: measure the saturating load only)
    OAUTH_RESULTS=DIR   where oauth.json and oauth.md go (default
                        contrib/bench/results, and then the report also
                        replaces BENCHMARKS.md's OAuth section; quick runs
                        write nothing unless it is set)
    BENCH_QUIET_WAIT=S  before each run, wait up to S seconds (default 60)
                        for the CPUs to be under 10% busy
    BENCH_MAX_FOREIGN=F a round in which some run saw more than F (default
                        0.2) of a CPU busy with work none of the measured
                        processes account for is run again ...
    BENCH_RETRIES=N     ... up to N times (default 2)
    BENCH_KEEP=1        keep the temporary directory
    BENCH_CACHE_ROOT=D  where tokend's cache_dir goes (default /dev/shm when
                        it is tmpfs, as the shipped unit's /run/tokend/cache)

Python 3 standard library only.
"""

import datetime
import http.client
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse

# benchlib.py lies beside this script, whatever the cwd.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import (  # noqa: E402
    BIN, HERE, ROOT, basic, call, cpu_busy, cpu_s, foreign, free_port, log,
    machine_busy, med, percentile, pinned, retry_round, run, run_pgbench,
    run_wrk, wait_quiet, wrk_argv)

benchlib.NAME = "oauth_bench"
REQ_LUA = os.path.join(HERE, "oauth_req.lua")
REFRESH_LUA = os.path.join(HERE, "oauth_refresh.lua")

TARGETS = {"introspect_ratio": 0.8, "refresh_ratio": 0.5,
           "interference_p99_ratio": 2.0}

CLIENT_ID = "web"
CLIENT_SECRET = "bench-client-secret"
USER = "alice"
PASSWORD = "bench-password-alice"


class Settings(benchlib.Settings):
    def __init__(self):
        super().__init__(rounds=3, duration=8)
        self.password_conns = 4
        self.benches = [s.strip().upper() for s in os.environ.get(
            "OAUTH_BENCHES", "I,R,P,X").split(",") if s.strip()]
        self.x_workers = [int(s) for s in os.environ.get(
            "OAUTH_X_WORKERS", "1,2").split(",") if s.strip()]
        self.grant_rate = float(os.environ.get("OAUTH_GRANT_RATE", "10"))
        self.x_pace_ms = int(os.environ.get("OAUTH_X_PACE_MS", "1"))
        self.pg_cpus = os.environ.get("BENCH_PG_CPUS", "")
        self.results = os.environ.get("OAUTH_RESULTS") or (
            "" if self.quick else os.path.join(HERE, "results"))


# ---- the bench directory: PostgreSQL, tokend ---------------------------------------

class Bench(benchlib.Bench):
    def __init__(self, st):
        super().__init__(st, "tkoauth-")
        self.port = None
        self.workers = None
        self.client_authz = basic(CLIENT_ID, CLIENT_SECRET)
        self.res = {"settings": st.as_dict(), "benches": {}}
        self.seed_errors = []

    def start_pg(self):
        super().start_pg(self.st.pg_cpus)
        self.tokenctl("migrate")
        self.tokenctl("user", "add", USER, "--password-stdin",
                      stdin=PASSWORD + "\n")
        # The password grant is given only when asked for (issue 12); the
        # benchmarks drive it, and the refresh rotation it starts.
        self.tokenctl("client", "add", CLIENT_ID, "--secret-stdin",
                      "--scope", "read write", "--introspect",
                      "--grant", "password", "--grant", "refresh_token",
                      "--grant", "client_credentials",
                      stdin=CLIENT_SECRET + "\n")

    def start_tokend(self, workers):
        self.stop_tokend()
        self.port = free_port()
        self.workers = workers
        self.launch_tokend(os.path.join(self.dir, "tokend-%d" % workers),
                           self.port, workers)
        if not self.tokend_forked(workers):
            raise RuntimeError("tokend: workers did not all start")

    # -- OAuth calls

    def password_grant(self, scope="read"):
        s, body = call(self.port, "POST", "/token", self.client_authz,
                       {"grant_type": "password", "username": USER,
                        "password": PASSWORD, "scope": scope})
        if s != 200:
            raise RuntimeError("password grant: %d %s" % (s, body[:200]))
        return json.loads(body)

    def access_token(self):
        """An access token, cached: /auth and /introspect answered once."""
        tok = self.password_grant()["access_token"]
        s, _ = call(self.port, "GET", "/auth", "Bearer " + tok)
        if s != 200:
            raise RuntimeError("/auth with a fresh access token: %d" % s)
        s, body = call(self.port, "POST", "/introspect", self.client_authz,
                       {"token": tok})
        if s != 200 or not json.loads(body).get("active"):
            raise RuntimeError("/introspect: %d %s" % (s, body[:200]))
        return tok


# ---- one measured run --------------------------------------------------------------

class Watch:
    """CPU time around one run: tokend's workers, its writer, PostgreSQL,
    the client, and the whole machine (what none of them accounts for is
    'other': other sessions on a shared machine)."""

    def __init__(self, b):
        self.b = b
        self.workers = b.tokend_children("worker") if b.tokend else []
        self.writer = b.tokend_children("writer") if b.tokend else []
        self.t0 = self.snap()

    def snap(self):
        return {"worker": sum(cpu_s(p) or 0 for p in self.workers),
                "writer": sum(cpu_s(p) or 0 for p in self.writer),
                "pg": self.b.pg_cpu() or 0,
                "busy": machine_busy(cpu_busy()),
                "self": os.times().user + os.times().system,
                "t": time.monotonic()}

    def done(self, d, ru=None):
        a, z = self.t0, self.snap()
        d["wall_s"] = z["t"] - a["t"]
        d["worker_cpu_s"] = z["worker"] - a["worker"]
        d["writer_cpu_s"] = z["writer"] - a["writer"]
        d["pg_cpu_s"] = z["pg"] - a["pg"]
        d["client_cpu_s"] = ((ru.ru_utime + ru.ru_stime) if ru else 0) + \
            z["self"] - a["self"]
        busy = (z["busy"][0] - a["busy"][0]) / os.sysconf("SC_CLK_TCK")
        d["other_cpu_s"] = busy - (d["worker_cpu_s"] + d["writer_cpu_s"] +
                                   d["pg_cpu_s"] + d["client_cpu_s"])
        d["foreign"] = foreign(d)
        return d


def one_round(b, fn):
    """Run fn (one round: a dict of runs) again, up to BENCH_RETRIES times,
    while one of its runs shared the machine with more than
    BENCH_MAX_FOREIGN of a CPU of work that is none of ours (other
    sessions on a shared machine).  Records the attempts."""
    r, how = retry_round(b.st, fn, lambda r: max(
        v["foreign"] for v in r.values()
        if isinstance(v, dict) and "foreign" in v))
    r.update(how)
    return r


def wrk(b, label, script, env, conns, duration=None, quiet=True):
    st = b.st
    duration = duration or st.duration
    waited = wait_quiet(st.quiet_wait, settle=True) if quiet else None
    argv = wrk_argv(st.client_cpus, script, b.port, conns, duration)
    d = run_wrk(argv, dict(os.environ, BENCH_THREADS="1", **env), duration,
                lambda: Watch(b))
    d.update(label=label, conns=conns, workers=b.workers,
             waited_quiet_s=waited)
    return d


def wrk_auth(b, tok, quiet=True, pace_ms=0):
    env = {"BENCH_METHOD": "GET", "BENCH_PATH": "/auth",
           "BENCH_AUTHZ": "Bearer " + tok}
    if pace_ms:
        env["BENCH_PACE_MS"] = str(pace_ms)
    return wrk(b, "/auth", REQ_LUA, env, b.st.conns, quiet=quiet)


def wrk_introspect(b, tok):
    return wrk(b, "/introspect", REQ_LUA,
               {"BENCH_METHOD": "POST", "BENCH_PATH": "/introspect",
                "BENCH_AUTHZ": b.client_authz,
                "BENCH_BODY": "token=" + tok}, b.st.conns)


def ok_rps(d):
    """Answers that were 200s, per second (wrk counts >= 400 as errors)."""
    ok = d["requests"] - d["err_status"]
    return ok / (d["duration_us"] / 1e6)


# ---- I: /introspect vs /auth -----------------------------------------------------

def bench_introspect(b):
    st = b.st
    log("I: /introspect vs /auth, -c%d, 1 worker" % st.conns)
    b.start_tokend(1)
    tok = b.access_token()
    rounds = []
    def one(i):
        # Alternate the order, so a slow drift favours neither.
        if i % 2 == 0:
            a = wrk_auth(b, tok)
            n = wrk_introspect(b, tok)
        else:
            n = wrk_introspect(b, tok)
            a = wrk_auth(b, tok)
        for d in (a, n):
            d["ok_rps"] = ok_rps(d)
        r = n["ok_rps"] / a["ok_rps"] if a["ok_rps"] else None
        return {"auth": a, "introspect": n, "ratio": r}
    for i in range(st.rounds):
        rounds.append(one_round(b, lambda: one(i)))
        a, n, r = rounds[-1]["auth"], rounds[-1]["introspect"], \
            rounds[-1]["ratio"]
        log("  round %d: /auth %.0f/s p99 %.2f ms, /introspect %.0f/s "
            "p99 %.2f ms, ratio %.3f" % (
                i + 1, a["ok_rps"], a["p99_us"] / 1e3, n["ok_rps"],
                n["p99_us"] / 1e3, r))
    b.res["benches"]["introspect"] = {
        "workers": 1, "conns": st.conns, "rounds": rounds,
        "median_ratio": med([r["ratio"] for r in rounds]),
        "median_auth_rps": med([r["auth"]["ok_rps"] for r in rounds]),
        "median_introspect_rps": med([r["introspect"]["ok_rps"]
                                      for r in rounds]),
        "median_auth_p99_us": med([r["auth"]["p99_us"] for r in rounds]),
        "median_introspect_p99_us": med([r["introspect"]["p99_us"]
                                         for r in rounds])}


# ---- R: refresh rotation vs pgbench --------------------------------------------------

def seed_refresh_tokens(b, n):
    """n refresh tokens, one password grant each (argon2id-bound, so a few
    threads at once)."""
    out, errs = [], []
    lock = threading.Lock()

    def worker(k):
        for _ in range(k):
            for _ in range(3):
                try:
                    t = b.password_grant("read write")["refresh_token"]
                    with lock:
                        out.append(t)
                    break
                except (OSError, RuntimeError, http.client.HTTPException) \
                        as e:  # counted in the results, tried again
                    with lock:
                        errs.append("%s: %s" % (type(e).__name__, e))
    per = [n // 4 + (1 if i < n % 4 else 0) for i in range(4)]
    ts = [threading.Thread(target=worker, args=(k,)) for k in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    b.seed_errors += errs
    if len(out) < n:
        raise RuntimeError("seeding refresh tokens: " + errs[-1])
    return out


def wrk_refresh(b, tokens_file):
    d = wrk(b, "refresh rotation", REFRESH_LUA,
            {"BENCH_TOKENS": tokens_file, "BENCH_AUTHZ": b.client_authz},
            b.st.conns)
    d["ok_rps"] = d["ok"] / (d["duration_us"] / 1e6)
    return d


def pgbench_tpcb(b):
    """pgbench's default (TPC-B-like) transaction, same clients, same
    database, 10% of transactions logged for the latency percentiles."""
    st = b.st
    waited = wait_quiet(st.quiet_wait, settle=True)
    argv = pinned(st.client_cpus, [
        "pgbench", "-n", "-c", str(st.conns), "-j", "1", "-T",
        str(st.duration), "-l", "--sampling-rate", "0.1", b.url])
    w, ru, d = run_pgbench(os.path.join(b.dir, "pgbench"), argv,
                           st.duration, lambda: Watch(b))
    return w.done({"label": "pgbench TPC-B-like", "rps": d["rps"],
                   "requests": d["requests"], "p50_us": d["p50_us"],
                   "p99_us": d["p99_us"], "conns": st.conns,
                   "waited_quiet_s": waited}, ru)


def bench_refresh(b):
    st = b.st
    log("R: refresh rotation vs pgbench TPC-B, -c%d, 1 worker" % st.conns)
    run(["pgbench", "-i", "-q", "-s", "10", b.url])
    b.start_tokend(1)
    rounds = []
    def one(i):
        seeds = seed_refresh_tokens(b, st.conns + 8)
        path = os.path.join(b.dir, "refresh.txt")
        with open(path, "w") as f:
            f.write("\n".join(seeds) + "\n")
        if i % 2 == 0:
            r = wrk_refresh(b, path)
            p = pgbench_tpcb(b)
        else:
            p = pgbench_tpcb(b)
            r = wrk_refresh(b, path)
        ratio = r["ok_rps"] / p["rps"] if p["rps"] else None
        return {"refresh": r, "pgbench": p, "ratio": ratio}
    for i in range(st.rounds):
        rounds.append(one_round(b, lambda: one(i)))
        r, p, ratio = rounds[-1]["refresh"], rounds[-1]["pgbench"], \
            rounds[-1]["ratio"]
        log("  round %d: refresh %.0f/s (%d not 200, %d dry), p99 %.2f ms; "
            "pgbench %.0f tps; ratio %.3f" % (
                i + 1, r["ok_rps"], r["bad"], r["dry"], r["p99_us"] / 1e3,
                p["rps"], ratio))
    b.res["benches"]["refresh"] = {
        "workers": 1, "conns": st.conns, "pgbench_scale": 10,
        "rounds": rounds,
        "median_ratio": med([r["ratio"] for r in rounds]),
        "median_refresh_rps": med([r["refresh"]["ok_rps"] for r in rounds]),
        "median_pgbench_tps": med([r["pgbench"]["rps"] for r in rounds]),
        "median_refresh_p99_us": med([r["refresh"]["p99_us"]
                                      for r in rounds]),
        "not_200": sum(r["refresh"]["bad"] for r in rounds),
        "seed_errors": b.seed_errors}


# ---- P: password grants ----------------------------------------------------------------

def argon2_params():
    p = {}
    with open(os.path.join(ROOT, "store/store.h")) as f:
        for line in f:
            m = re.match(r"#define\s+(PASSWD_\w+)\s+(\d+)", line)
            if m:
                p[m.group(1)] = int(m.group(2))
    return {"t_cost": p.get("PASSWD_T_COST"),
            "m_cost_kib": p.get("PASSWD_M_COST"),
            "parallelism": p.get("PASSWD_PARALLELISM"),
            "hash_len": p.get("PASSWD_HASH_LEN"),
            "salt_len": p.get("PASSWD_SALT_LEN")}


def bench_password(b):
    st = b.st
    c = st.password_conns
    log("P: password grants, -c%d, 1 worker" % c)
    b.start_tokend(1)
    b.password_grant()  # the client's authentication is now cached
    body = urllib.parse.urlencode({"grant_type": "password", "username": USER,
                                   "password": PASSWORD, "scope": "read"})
    rounds = []
    def one():
        return {"run": wrk(b, "password grant", REQ_LUA,
                           {"BENCH_METHOD": "POST", "BENCH_PATH": "/token",
                            "BENCH_AUTHZ": b.client_authz,
                            "BENCH_BODY": body}, c)}
    for i in range(st.rounds):
        o = one_round(b, one)
        d = o["run"]
        d.update(attempts=o["attempts"], dropped_foreign=o["dropped_foreign"])
        ok = d["requests"] - d["err_status"]
        d["ok_rps"] = ok_rps(d)
        d["grants_per_worker_cpu_s"] = (ok / d["worker_cpu_s"]
                                        if d["worker_cpu_s"] else None)
        d["worker_cores_busy"] = d["worker_cpu_s"] / d["wall_s"]
        rounds.append(d)
        log("  round %d: %.1f grants/s (%d not 200), worker %.2f cores, "
            "%.1f grants per worker CPU second, p50 %.1f ms" % (
                i + 1, d["ok_rps"], d["err_status"], d["worker_cores_busy"],
                d["grants_per_worker_cpu_s"] or 0, d["p50_us"] / 1e3))
    b.res["benches"]["password"] = {
        "workers": 1, "conns": c, "argon2id": argon2_params(),
        "rounds": rounds,
        "median_grants_per_s": med([r["ok_rps"] for r in rounds]),
        "median_grants_per_core_s": med([r["grants_per_worker_cpu_s"]
                                         for r in rounds]),
        "median_p50_us": med([r["p50_us"] for r in rounds]),
        "not_200": sum(r["err_status"] for r in rounds)}


# ---- X: /auth p99 under paced password grants --------------------------------------------

class Pacer:
    """rate password grants per second, each on a connection of its own,
    sent on schedule whether or not the previous one has answered."""

    def __init__(self, b, rate):
        self.b, self.rate = b, rate
        self.stop_ev = threading.Event()
        self.lat, self.status = [], {}
        self.lock = threading.Lock()
        self.threads = []
        self.sent = 0

    @staticmethod
    def background():
        """This thread at nice 19: the client's own work for a grant (a
        Python thread, a connection) then never delays wrk, which shares
        its CPU; what is measured is the server's interference."""
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)

    def one(self):
        self.background()
        t0 = time.monotonic()
        try:
            s, _ = call(self.b.port, "POST", "/token", self.b.client_authz,
                        {"grant_type": "password", "username": USER,
                         "password": PASSWORD, "scope": "read"})
        except OSError as e:
            s = type(e).__name__
        with self.lock:
            self.lat.append(time.monotonic() - t0)
            self.status[str(s)] = self.status.get(str(s), 0) + 1

    def loop(self):
        self.background()
        t0 = time.monotonic()
        i = 0
        while not self.stop_ev.is_set():
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0 and self.stop_ev.wait(delay):
                break
            t = threading.Thread(target=self.one, daemon=True)
            t.start()
            self.threads.append(t)
            i += 1
        self.sent = i
        self.elapsed = time.monotonic() - t0

    def __enter__(self):
        self.main = threading.Thread(target=self.loop, daemon=True)
        self.main.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.main.join()
        for t in self.threads:
            t.join(15)

    def summary(self):
        lat = sorted(self.lat)

        def pct(q):
            return round(percentile(lat, q) * 1e6) if lat else None
        return {"sent": self.sent, "rate": self.sent / self.elapsed,
                "status": self.status, "p50_us": pct(0.5),
                "p99_us": pct(0.99), "max_us": pct(1.0)}


def bench_interference(b, workers, pace_ms=0):
    st = b.st
    log("X: /auth p99 alone and with %g password grants/s, -c%d, "
        "%d worker(s), %s" % (st.grant_rate, st.conns, workers,
                              "paced %d ms" % pace_ms if pace_ms else
                              "saturating"))
    b.start_tokend(workers)
    tok = b.access_token()
    for _ in range(workers):  # every worker has the client authenticated
        b.password_grant()

    def loaded():
        # The pacer starts first and runs past wrk's end, so every wrk
        # second has grants running beside it.
        waited = wait_quiet(st.quiet_wait, settle=True)
        with Pacer(b, st.grant_rate) as p:
            time.sleep(0.3)
            d = wrk_auth(b, tok, quiet=False, pace_ms=pace_ms)
        d["grants"] = p.summary()
        d["waited_quiet_s"] = waited
        return d
    rounds = []
    def one(i):
        if i % 2 == 0:
            a = wrk_auth(b, tok, pace_ms=pace_ms)
            g = loaded()
        else:
            g = loaded()
            a = wrk_auth(b, tok, pace_ms=pace_ms)
        for d in (a, g):
            d["ok_rps"] = ok_rps(d)
        r = g["p99_us"] / a["p99_us"] if a["p99_us"] else None
        return {"alone": a, "with_grants": g, "p99_ratio": r}
    for i in range(st.rounds):
        rounds.append(one_round(b, lambda: one(i)))
        a, g, r = rounds[-1]["alone"], rounds[-1]["with_grants"], \
            rounds[-1]["p99_ratio"]
        log("  round %d: alone p99 %.2f ms %.0f/s; with grants p99 %.2f ms "
            "%.0f/s (grants %.1f/s %s); ratio %.2f" % (
                i + 1, a["p99_us"] / 1e3, a["ok_rps"], g["p99_us"] / 1e3,
                g["ok_rps"], g["grants"]["rate"], g["grants"]["status"], r))
    key = "interference_%sw%d" % ("paced_" if pace_ms else "", workers)
    b.res["benches"][key] = {
        "workers": workers, "conns": st.conns, "grant_rate": st.grant_rate,
        "pace_ms": pace_ms,
        "rounds": rounds,
        "median_p99_ratio": med([r["p99_ratio"] for r in rounds]),
        "median_alone_p99_us": med([r["alone"]["p99_us"] for r in rounds]),
        "median_with_p99_us": med([r["with_grants"]["p99_us"]
                                   for r in rounds]),
        "median_alone_rps": med([r["alone"]["ok_rps"] for r in rounds]),
        "median_with_rps": med([r["with_grants"]["ok_rps"]
                                for r in rounds]),
        "median_grant_p99_us": med([r["with_grants"]["grants"]["p99_us"]
                                    for r in rounds])}


# ---- machine, report ------------------------------------------------------------------

def machine():
    return benchlib.machine(
        ("Model name", "Thread(s) per core", "Hypervisor vendor"),
        (("tokend", [os.path.join(BIN, "tokend"), "--version"]),
         ("wrk", ["wrk", "-v"]),
         ("pgbench", ["pgbench", "--version"])))


def ms(us):
    return "%.2f ms" % (us / 1e3) if us is not None else "-"


def verdict(v, target, le=False):
    if v is None:
        return "-"
    return "PASS" if (v <= target if le else v >= target) else "FAIL"


def load_name(x):
    return "paced %d ms" % x["pace_ms"] if x.get("pace_ms") else \
        "saturating"


def render(res):
    st, bs, mc = res["settings"], res["benches"], res["machine"]
    out = ["## OAuth 2.0 (issue 5)", ""]
    out.append(
        "Measured %s on %s, %d cores (%s). tokend is pinned to CPU %s, wrk, "
        "pgbench and the paced client to CPU %s, PostgreSQL unpinned: wrk, "
        "tokend and PostgreSQL share %d cores, so every number here "
        "includes the client's and the database's share of them. %d "
        "round(s) of %d s per measurement, medians; `wrk -t1`; every round's "
        "numbers are in `contrib/bench/results/oauth.json`." % (
            res["started"], mc.get("Model name", "?"), mc["cores"],
            "virtual machine, %s" % mc["Hypervisor vendor"]
            if mc.get("Hypervisor vendor") else "bare metal",
            st["server_cpus"] or "any",
            st["client_cpus"] or "any", mc["cores"], st["rounds"],
            st["duration"]))
    att, kept = [], []
    for x in bs.values():
        for r in x["rounds"]:
            att.append(r.get("attempts", 1))
            kept += [v["foreign"] for v in r.values()
                     if isinstance(v, dict) and "foreign" in v]
            if "foreign" in r and not isinstance(r["foreign"], dict):
                kept.append(r["foreign"])
    out.append("")
    out.append(
        "This machine is shared with other work: before each run the script "
        "waits (up to %d s) for the CPUs to be under 10%% busy, and runs a "
        "round again (up to %d times) when one of its runs saw more than "
        "%.0f%% of a CPU busy with work none of the measured processes "
        "account for. %d of %d rounds needed a second attempt or more; the "
        "worst foreign share among the rounds kept is %.0f%% of a CPU." % (
            st["quiet_wait"], st["retries"], 100 * st["max_foreign"],
            sum(1 for n in att if n > 1), len(att),
            100 * max(kept or [0])))
    out += ["", "| measure | median | target | result |", "|---|---|---|---|"]
    if "introspect" in bs:
        v = bs["introspect"]["median_ratio"]
        out.append("| /introspect ÷ /auth req/s (cached client and token) "
                   "| %.3f | ≥ %.1f | %s |" % (
                       v, TARGETS["introspect_ratio"],
                       verdict(v, TARGETS["introspect_ratio"])))
    if "refresh" in bs:
        v = bs["refresh"]["median_ratio"]
        out.append("| refresh rotation ÷ pgbench TPC-B tps, -c%d | %.3f | "
                   "≥ %.1f | %s |" % (
                       bs["refresh"]["conns"], v, TARGETS["refresh_ratio"],
                       verdict(v, TARGETS["refresh_ratio"])))
    if "password" in bs:
        p = bs["password"]
        a = p["argon2id"]
        out.append("| password grants per second per core (argon2id t=%s, "
                   "m=%s KiB, p=%s) | %.1f | report | - |" % (
                       a["t_cost"], a["m_cost_kib"], a["parallelism"],
                       p["median_grants_per_core_s"] or 0))
    for k in sorted(bs):
        if k.startswith("interference_"):
            x = bs[k]
            v = x["median_p99_ratio"]
            if x.get("pace_ms"):
                target = "≤ %.0f" % TARGETS["interference_p99_ratio"]
                result = verdict(v, TARGETS["interference_p99_ratio"],
                                 le=True)
            else:  # overload: see the section's last paragraph
                target, result = "report (overload)", "-"
            out.append("| /auth p99 with %g grants/s ÷ without, %d "
                       "worker(s), %s load | %.2f | %s | %s |" % (
                           x["grant_rate"], x["workers"], load_name(x), v,
                           target, result))
    if "introspect" in bs:
        x = bs["introspect"]
        out += ["", "### /introspect vs /auth", "",
                "1 worker, `wrk -c%d`, the same cached access token (`tka_`) "
                "for both; /introspect as the confidential client `web` "
                "with HTTP Basic (its authentication cached by the worker "
                "after the first request), body `token=...`. Rounds "
                "alternate which goes first." % x["conns"], "",
                "| round | /auth req/s | /auth p99 | /introspect req/s | "
                "/introspect p99 | ratio |", "|---|---|---|---|---|---|"]
        for i, r in enumerate(x["rounds"]):
            out.append("| %d | %.0f | %s | %.0f | %s | %.3f |" % (
                i + 1, r["auth"]["ok_rps"], ms(r["auth"]["p99_us"]),
                r["introspect"]["ok_rps"], ms(r["introspect"]["p99_us"]),
                r["ratio"]))
        out.append("| median | %.0f | %s | %.0f | %s | **%.3f** |" % (
            x["median_auth_rps"], ms(x["median_auth_p99_us"]),
            x["median_introspect_rps"], ms(x["median_introspect_p99_us"]),
            x["median_ratio"]))
    if "refresh" in bs:
        x = bs["refresh"]
        out += ["", "### Refresh rotation vs pgbench", "",
                "1 worker, `wrk -c%d` with `oauth_refresh.lua`: each "
                "connection is a rotation chain seeded by one password "
                "grant and fed by the `refresh_token` of each answer, so no "
                "refresh token is sent twice (replays inside "
                "`refresh_grace` are not measured). Only 200s with a new "
                "refresh token count (%d other answers in all rounds). "
                "Against `pgbench -n -c%d -j1` (default TPC-B-like "
                "transaction, `-s %d`) on the same database and cluster, "
                "pinned like wrk. Seeding the chains (password grants, 4 "
                "at a time, a new connection each) failed %d time(s) and "
                "was tried again%s." % (
                    x["conns"], x["not_200"], x["conns"], x["pgbench_scale"],
                    len(x.get("seed_errors", [])),
                    (": " + "; ".join(sorted(set(x["seed_errors"]))))
                    if x.get("seed_errors") else ""), "",
                "| round | refreshes/s | refresh p99 | tokend CPU per "
                "refresh | PG CPU per refresh | pgbench tps | pgbench p99 "
                "| ratio |", "|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(x["rounds"]):
            f = r["refresh"]
            n = f["ok"] or 1
            out.append("| %d | %.0f | %s | %.0f µs | %.0f µs | %.0f | %s | "
                       "%.3f |" % (
                           i + 1, f["ok_rps"], ms(f["p99_us"]),
                           (f["worker_cpu_s"] + f["writer_cpu_s"]) * 1e6 / n,
                           f["pg_cpu_s"] * 1e6 / n, r["pgbench"]["rps"],
                           ms(r["pgbench"]["p99_us"]), r["ratio"]))
        out.append("| median | %.0f | %s | | | %.0f | | **%.3f** |" % (
            x["median_refresh_rps"], ms(x["median_refresh_p99_us"]),
            x["median_pgbench_tps"], x["median_ratio"]))
    if "password" in bs:
        x = bs["password"]
        a = x["argon2id"]
        out += ["", "### Password grants", "",
                "1 worker, `wrk -c%d`, the same valid username and password "
                "each time (successes, so the login rate limit stays out of "
                "it; %d answers were not 200), client authentication cached. "
                "argon2id t_cost=%s, m_cost=%s KiB, parallelism=%s, %s-byte "
                "hash, %s-byte salt (store/store.h). Per core: successful "
                "grants ÷ CPU seconds of the worker process (utime + stime, "
                "all its threads, the argon2 thread included)." % (
                    x["conns"], x["not_200"], a["t_cost"], a["m_cost_kib"],
                    a["parallelism"], a["hash_len"], a["salt_len"]), "",
                "| round | grants/s | worker cores busy | grants per worker "
                "CPU s | PG CPU per grant | p50 | p99 |",
                "|---|---|---|---|---|---|---|"]
        for i, r in enumerate(x["rounds"]):
            ok = r["requests"] - r["err_status"]
            out.append("| %d | %.1f | %.2f | %.1f | %.0f µs | %s | %s |" % (
                i + 1, r["ok_rps"], r["worker_cores_busy"],
                r["grants_per_worker_cpu_s"] or 0,
                r["pg_cpu_s"] * 1e6 / max(1, ok), ms(r["p50_us"]),
                ms(r["p99_us"])))
        out.append("| median | %.1f | | **%.1f** | | %s | |" % (
            x["median_grants_per_s"], x["median_grants_per_core_s"] or 0,
            ms(x["median_p50_us"])))
    xs = sorted((k for k in bs if k.startswith("interference_")),
                key=lambda k: (bs[k]["workers"], bs[k].get("pace_ms", 0)))
    if xs:
        out += ["", "### /auth p99 under password grants", "",
                "`wrk -c%d` on /auth with a cached access token, alone and "
                "while a paced client on wrk's CPU sends %g password grants "
                "per second (each on a new connection, sent on schedule "
                "whether or not the previous one answered). All tokend "
                "workers are on CPU %s, so with 2 workers the argon2 "
                "threads still share that one CPU with the event loops; "
                "what changes is that a grant's worker is not always the "
                "one serving the /auth connection. The paced client's "
                "threads run at nice 19, so that its own work for a grant "
                "does not delay wrk." % (
                    st["conns"], st["grant_rate"],
                    st["server_cpus"] or "any"), "",
                "Two /auth loads: *saturating* is wrk's closed loop (each "
                "connection sends its next request as soon as the answer "
                "arrives: the worker's CPU is always busy, so any other "
                "work on it shows up as queueing in every request's "
                "latency); *paced* has each connection pause %d ms between "
                "an answer and its next request (contrib/bench/"
                "oauth_req.lua's delay()), a busy server with CPU to spare, "
                "where the p99 shows whether a grant's work delays "
                "requests that arrive meanwhile." % st.get("x_pace_ms", 0),
                "",
                "| workers | load | round | alone p99 | alone req/s | with "
                "grants p99 | with grants req/s | grants/s sent | grant "
                "p50 | grant p99 | answers | ratio |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for k in xs:
            x = bs[k]
            for i, r in enumerate(x["rounds"]):
                a, g = r["alone"], r["with_grants"]
                gr = g["grants"]
                out.append("| %d | %s | %d | %s | %.0f | %s | %.0f | %.1f "
                           "| %s | %s | %s | %.2f |" % (
                               x["workers"], load_name(x), i + 1,
                               ms(a["p99_us"]),
                               a["ok_rps"], ms(g["p99_us"]), g["ok_rps"],
                               gr["rate"], ms(gr["p50_us"]),
                               ms(gr["p99_us"]),
                               ", ".join("%s×%d" % kv for kv in
                                         sorted(gr["status"].items())),
                               r["p99_ratio"]))
            out.append("| %d | %s | median | %s | %.0f | %s | %.0f | | | "
                       "%s | | **%.2f** |" % (
                           x["workers"], load_name(x),
                           ms(x["median_alone_p99_us"]),
                           x["median_alone_rps"], ms(x["median_with_p99_us"]),
                           x["median_with_rps"],
                           ms(x["median_grant_p99_us"]),
                           x["median_p99_ratio"]))
        out += ["", "The target (p99 at most 2x) is held against the paced "
                "load: a latency target is a statement about a server with "
                "capacity left. Under the saturating load the worker's CPU "
                "is all taken by /auth, so the fifth of a CPU that %g "
                "argon2id grants a second need (about 20 ms of CPU each) "
                "can only come out of /auth's share. tokend gives the event "
                "loop the CPU first (the argon2 thread runs at nice +10, "
                "the loop asks for the shortest scheduler slice: "
                "worker/hashpool.h), and the kernel then hands argon2 its "
                "share in pieces no shorter than a timer tick (4 ms at "
                "this kernel's HZ=250). The requests that arrive during "
                "such a piece wait for it: that is the ~3 ms p99 of the "
                "saturating rows, an overload figure, reported. The "
                "grants queue too (grant p50 in seconds): nice +10 leaves "
                "them about a tenth of a saturated CPU, by design, so "
                "that logins wait rather than /auth." % (
                    st["grant_rate"])]
    out.append("")
    return "\n".join(out)


# ---- main -----------------------------------------------------------------------------

def check_tools():
    missing = benchlib.missing_tools(("wrk", "pgbench", "psql", "taskset"),
                                     "make all, or BENCH_BIN")
    if missing:
        sys.exit("oauth_bench: missing: %s" % ", ".join(missing))


def main():
    check_tools()
    # SIGTERM (and SIGINT, which a background shell job ignores) end the
    # run through the cleanup below, not around it.
    def stop(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    st = Settings()
    if st.client_cpus:
        # The paced client of X runs in this process: on wrk's CPU.
        cpus = set()
        for part in st.client_cpus.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        os.sched_setaffinity(0, cpus)
    b = Bench(st)
    b.res["machine"] = machine()
    b.res["started"] = datetime.datetime.now().isoformat(timespec="seconds")
    t0 = time.monotonic()
    try:
        b.start_pg()
        if "I" in st.benches:
            bench_introspect(b)
        if "R" in st.benches:
            bench_refresh(b)
        if "P" in st.benches:
            bench_password(b)
        if "X" in st.benches:
            for w in st.x_workers:
                bench_interference(b, w)
                if st.x_pace_ms:
                    bench_interference(b, w, st.x_pace_ms)
    finally:
        b.res["elapsed_s"] = time.monotonic() - t0
        b.cleanup()
    md = render(b.res)
    if st.results:
        os.makedirs(st.results, exist_ok=True)
        with open(os.path.join(st.results, "oauth.json"), "w") as f:
            json.dump(b.res, f, indent=1, sort_keys=True)
        with open(os.path.join(st.results, "oauth.md"), "w") as f:
            f.write(md)
        log("wrote", os.path.join(st.results, "oauth.{json,md}"))
        if os.path.realpath(st.results) == os.path.realpath(
                os.path.join(HERE, "results")):
            splice_report(md)
    print(md)


BEGIN = "<!-- BEGIN OAUTH GENERATED by make bench (contrib/bench/oauth_bench.py) -->"
END = "<!-- END OAUTH GENERATED -->"


def splice_report(md):
    """Put md between BENCHMARKS.md's OAuth markers (appended, with them,
    when the file has none); everything else in the file stays."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else ""
    block = BEGIN + "\n\n" + md.strip() + "\n\n" + END
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
    log("wrote", path, "(OAuth section)")


if __name__ == "__main__":
    main()

"""Integration-test harness: real tokend processes against a real PostgreSQL.

Python 3 standard library only.  Tests import it as ``harness`` (run.py puts
this folder on sys.path) and use unittest.

PostgreSQL
    pg()                    the process-wide cluster, started on first use
                            by contrib/pg.sh in a fresh /tmp directory on a
                            free port (Unix socket and 127.0.0.1), stopped
                            and removed at exit.
    pg().url                libpq URL (Unix socket).
    pg().tcp_url            the same database over 127.0.0.1.
    pg().port, pg().dir
    pg().sql(q, *params)    run q with psql; returns the rows as a list of
                            tuples of str (None for NULL).  Parameters are
                            %s placeholders, quoted as SQL literals here
                            (str, int, float, bool, None, bytes -> bytea,
                            list/tuple -> ARRAY[...]).  With params, q must
                            hold no other "%s".  One statement per call
                            should return rows (values may hold newlines;
                            psql ends each result set with one).  Raises
                            SQLError on any error.
    pg().migrate()          tokenctl migrate (once per run; later calls are
                            no-ops unless force=True).
    pg().reset()            migrate if needed, then truncate users, clients,
                            tokens, usage_batches, usage_deltas (RESTART IDENTITY
                            CASCADE) and pg_stat_statements_reset().  Call it
                            in setUp to start clean.
    pg().stop(), pg().start()   the same cluster (same dir and port) down
                            and up again, for outage tests.
    pg().terminate_backends(application_name)  pg_terminate_backend() on
                            every matching session (a name with % is a LIKE
                            pattern); returns how many.

tokend
    t = Tokend(config={...}, workers=2, pg=None, start=True, env=None)
        writes DIR/tokend.conf (listen 127.0.0.1:<free port>, cache_dir
        DIR/cache, database_url pg().url, workers, log_file DIR/tokend.log,
        then config's items: a list value writes the key once per item, None
        drops the key), starts $TOKEND_BIN/tokend -c FILE in its own process
        group with stdout/stderr in DIR/stdout and DIR/stderr and waits for
        GET /healthz to answer 200 (10 s, else TokendError with the log
        tail).  The schema is migrated first (pg().migrate()).  TOKEND_*
        variables of the caller's environment are not passed on (env= adds
        some back).
    t.port, t.pid, t.proc, t.dir, t.config_path, t.config (dict)
    t.start(wait=True)      start (again) with the current config file; waits
                            for /healthz and for the writer's LISTEN (until
                            then nothing is cached).
    t.children()            {'worker 1': pid, ..., 'writer': pid} from
                            /proc (ppid == master, "tokend: ..." titles).
    t.wait_children(pred, timeout=10)  wait until pred(children()) is
                            true; returns the children.
    t.signal(sig)           os.kill(master, sig).
    t.stop(timeout=15)      SIGTERM, wait; SIGKILL the whole process group
                            after timeout.  Returns the exit status
                            (negative: killed by that signal).
    t.log(), t.stderr()     text of DIR/tokend.log and DIR/stderr.
    t.reload_config(changes, hup=False)  update the config dict (None drops
                            a key), rewrite the file, SIGHUP when hup.
    t.http(method, path, ...)  http() against this server.
    Every Tokend is stopped (SIGKILL to its group if it must) and its
    directory removed at exit, whatever the tests did.  TOKEND_KEEP=1 keeps
    the directories for a post-mortem.

HTTP over raw sockets (the tests control the bytes)
    http(port, method, path, headers=None, body=None, timeout=5, form=None,
         json=None) -> Response
        one request with "Connection: close" (unless headers set
        Connection); Host is added unless given.  headers: dict or list of
        (name, value).  body: bytes or str; form=dict sends
        application/x-www-form-urlencoded, json=obj application/json.
    Response: .status, .reason, .version, .headers (lower-case name ->
        value; a list when the header was repeated), .raw_headers (list of
        (name, value) as sent), .body (bytes), .text, .json(),
        .header(name) (first value or None).
    c = Conn(port, timeout=5)   one keep-alive connection:
        c.send(raw_bytes)
        c.send_request(method, path, headers=None, body=None, ...)  send
            only (for pipelining); Host added, no Connection header.
        c.request(...)          send_request then read_response.
        c.read_response(timeout=5, method=None)  parse one response: HEAD
            (from the queue of sent requests, or method=), 1xx, 204 and 304
            have no body; otherwise Content-Length, chunked, or read to EOF.
            Raises TimeoutError, or ConnectionError when the server closed
            first.
        c.closed(timeout=1.0)   True when the server closed the connection
            (EOF or reset) within timeout, False when it is still open.
        c.close()

Commands
    tokenctl(*args, input=None, check=True, url=None, env=None,
             legacy_grants=True)
        $TOKEND_BIN/tokenctl --database-url <pg().url> ARGS; returns
        subprocess.CompletedProcess with text stdout and stderr; check=True
        raises CommandError (with stderr) on a non-zero exit.  A "client
        add" without --grant gets --grant for authorization_code,
        refresh_token, device_code, password (and client_credentials
        unless --public): what tests need that use the password grant,
        which new clients get only when asked (SPEC 11).
        legacy_grants=False runs the command as written (the defaults).
    tokend_cmd(*args, env=None, timeout=15)  $TOKEND_BIN/tokend ARGS run to
        completion (tokend -t, --version, a start that must fail).
    bin_path(name)          $TOKEND_BIN/name (default ./bin).

Helpers
    free_port()             a port nothing listens on right now.
    wait_until(fn, timeout=10, interval=0.02, msg=None)  call fn until it
                            returns a true value, and return that value;
                            raises WaitTimeout (an AssertionError).
    tmpdir(prefix)          a /tmp directory removed at exit.
    database(name)          a fresh database in the cluster: a copy of
                            pg() whose url and sql() point at it.
    legacy_database(name, upto=10)  the same, with migrations up to upto
                            applied in public as tokenctl did before the
                            schema tokend.
"""

import atexit
import copy
import glob
import json as jsonlib
import re
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import zlib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.abspath(os.environ.get("TOKEND_BIN", os.path.join(ROOT, "bin")))
KEEP = os.environ.get("TOKEND_KEEP") == "1"


class TokendError(Exception):
    """tokend did not start, or misbehaved in a way the harness noticed."""


class SQLError(Exception):
    """psql failed; the message is psql's stderr."""


class CommandError(AssertionError):
    """A command the test expected to succeed failed."""


class WaitTimeout(AssertionError):
    """wait_until gave up."""


# ---- small helpers ---------------------------------------------------------

def bin_path(name):
    return os.path.join(BIN, name)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout=10, interval=0.02, msg=None):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise WaitTimeout(msg or "condition not met within %gs" % timeout)
        time.sleep(interval)


_tmpdirs = []


def tmpdir(prefix="tokend-"):
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    _tmpdirs.append(d)
    return d


def _clean_env(extra=None):
    """The caller's environment without TOKEND_* settings, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TOKEND_") or k in ("TOKEND_BIN",)}
    env.update(extra or {})
    return env


def _tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ---- PostgreSQL ------------------------------------------------------------

def _pg_bindir():
    try:
        b = subprocess.run(["pg_config", "--bindir"], capture_output=True,
                           text=True).stdout.strip()
        if b and os.path.exists(os.path.join(b, "psql")):
            return b
    except OSError:
        pass
    return "/usr/lib/postgresql/15/bin"


# The WHERE condition for one token's row, given the whole token string as
# its parameter: tokens.hash is the SHA-256 of the string.  Not the display
# prefix: its 4 random characters (62^4 values) repeat, among a few hundred
# tokens of one kind, often enough to fail a test now and then.
BY_TOKEN = "hash = sha256(convert_to(%s, 'UTF8'))"

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def b62(n, width):
    s = ""
    for _ in range(width):
        n, r = divmod(n, 62)
        s = B62[r] + s
    return s


def well_formed_token(prefix="tkp_"):
    """A token of tokend's format whose checksum holds (proto/token.c:
    43 base62 characters of random, then the CRC-32 of those in 6), that
    no database holds unless the caller puts it there."""
    body = b62(int.from_bytes(os.urandom(32), "big"), 43)
    return prefix + body + b62(zlib.crc32(body.encode()), 6)


def sql_literal(v):
    """v as an SQL literal (standard_conforming_strings is on)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return "'%r'::float8" % v
        return repr(v)
    if isinstance(v, (bytes, bytearray)):
        return "'\\x%s'::bytea" % bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return "ARRAY[%s]" % ", ".join(sql_literal(x) for x in v)
    s = str(v)
    if "\0" in s:
        raise ValueError("NUL in an SQL string")
    return "'" + s.replace("'", "''") + "'"


class PG:
    """One throwaway cluster; see the module docstring."""

    TABLES = ("users", "clients", "tokens", "usage_batches", "usage_deltas")

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tokend-pg-", dir="/tmp")
        os.chmod(self.dir, 0o755)  # postgres must traverse it when we're root
        self.port = free_port()
        self.url = "postgresql:///tokend?host=%s&port=%d&user=postgres" % (
            self.dir, self.port)
        self.tcp_url = "postgresql://postgres@127.0.0.1:%d/tokend" % self.port
        self.psql = os.path.join(_pg_bindir(), "psql")
        self.running = False
        self._migrated = False
        self.start()

    def _pgsh(self, *args):
        env = dict(os.environ, PG_TCP="1")
        r = subprocess.run(["sh", os.path.join(ROOT, "contrib", "pg.sh")]
                           + list(args), capture_output=True, text=True,
                           env=env, timeout=120)
        if r.returncode != 0:
            raise TokendError("contrib/pg.sh %s failed: %s\n%s" % (
                " ".join(args), r.stderr.strip(),
                _tail(os.path.join(self.dir, "log"))))
        return r.stdout.strip()

    def start(self):
        self._pgsh("start", self.dir, str(self.port))
        self.running = True

    def stop(self):
        if self.running:
            self._pgsh("stop", self.dir)
            self.running = False

    def sql(self, query, *params):
        if params:
            parts = query.split("%s")
            if len(parts) != len(params) + 1:
                raise ValueError("%d placeholders for %d parameters" % (
                    len(parts) - 1, len(params)))
            query = parts[0] + "".join(
                sql_literal(p) + rest for p, rest in zip(params, parts[1:]))
        r = subprocess.run(
            [self.psql, "-X", "-q", "-A", "-t", "-F", "\x1f", "-R", "\x1e",
             "-P", "null=\x1d", "-v", "ON_ERROR_STOP=1", "-d", self.url,
             "-f", "-"],
            input=query, capture_output=True, text=True, timeout=60,
            env=dict(_clean_env(), PGOPTIONS="-c client_min_messages=warning"
                     " -c search_path=tokend,public"))
        if r.returncode != 0:
            raise SQLError(r.stderr.strip())
        out = r.stdout
        if out == "":
            return []
        if out.endswith("\n"):
            out = out[:-1]
        rows = []
        for rec in out.split("\x1e"):
            rows.append(tuple(None if f == "\x1d" else f
                              for f in rec.split("\x1f")))
        return rows

    def migrate(self, force=False):
        if self._migrated and not force:
            return
        tokenctl("migrate", url=self.url)
        self._migrated = True

    def reset(self):
        self.migrate()
        present = [r[0] for r in self.sql(
            "SELECT t FROM unnest(%s::text[]) AS t "
            "WHERE to_regclass(t) IS NOT NULL", list(self.TABLES))]
        # A tokend still running (a class's, or one stopping) may be
        # writing: PostgreSQL can pick the TRUNCATE as a deadlock's
        # victim, and then it is simply run again.
        for attempt in range(5):
            try:
                if present:
                    self.sql("TRUNCATE %s RESTART IDENTITY CASCADE" %
                             ", ".join(present))
                break
            except SQLError as e:
                if "deadlock detected" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.1)
        self.sql("SELECT pg_stat_statements_reset()")

    def terminate_backends(self, application_name):
        op = "LIKE" if "%" in application_name else "="
        q = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE application_name " + op + " " +
             sql_literal(application_name) + " AND pid <> pg_backend_pid()")
        return int(self.sql(q)[0][0])

    def _cleanup(self):
        try:
            self.stop()
        except Exception:
            pass
        if not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)


_pg = None


def pg():
    global _pg
    if _pg is None:
        _pg = PG()
    return _pg


# ---- commands --------------------------------------------------------------

# What a client could do before grant types per client (SPEC 11): tests
# written then use the password grant, which new clients get only on
# request.  tokenctl() keeps giving it to them (see its docstring entry).
_LEGACY_GRANTS = ("authorization_code", "refresh_token", "device_code",
                  "password")
_grant_option = {}


def _legacy_grant_args(args):
    """The --grant options that give a "client add" without any of its
    own what clients had before SPEC 11's defaults, plus the device
    grant; none for a tokenctl that has no --grant (TOKEND_BIN=old-bin)."""
    if list(args[:2]) != ["client", "add"] or "--grant" in args or \
            any(a.startswith("--grant=") for a in args):
        return []
    path = bin_path("tokenctl")
    if path not in _grant_option:
        r = subprocess.run([path, "--help"], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        _grant_option[path] = "--grant" in r.stdout + r.stderr
    if not _grant_option[path]:
        return []
    grants = list(_LEGACY_GRANTS)
    if "--public" not in args:
        grants.append("client_credentials")
    return [x for g in grants for x in ("--grant", g)]


def tokenctl(*args, input=None, check=True, url=None, env=None,
             legacy_grants=True):
    if url is None:
        url = pg().url
    args = tuple(str(a) for a in args)
    if legacy_grants:
        args += tuple(_legacy_grant_args(args))
    cmd = [bin_path("tokenctl"), "--database-url", url] + list(args)
    # Never the test runner's stdin: a command waiting on it would hang.
    extra = {"stdin": subprocess.DEVNULL} if input is None else {}
    r = subprocess.run(cmd, input=input, capture_output=True, text=True,
                       timeout=120, env=_clean_env(env), **extra)
    if check and r.returncode != 0:
        raise CommandError("tokenctl %s: exit %d: %s" % (
            " ".join(str(a) for a in args), r.returncode, r.stderr.strip()))
    return r


def tokend_cmd(*args, env=None, timeout=15):
    return subprocess.run([bin_path("tokend")] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout,
                          env=_clean_env(env), stdin=subprocess.DEVNULL)


# ---- HTTP ------------------------------------------------------------------

class Response:
    def __init__(self, version, status, reason, raw_headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.raw_headers = raw_headers
        self.body = body
        self.headers = {}
        for name, value in raw_headers:
            k = name.lower()
            if k in self.headers:
                old = self.headers[k]
                self.headers[k] = (old if isinstance(old, list) else [old]) \
                    + [value]
            else:
                self.headers[k] = value

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return jsonlib.loads(self.body.decode("utf-8"))

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[0] if isinstance(v, list) else v

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers,
                                        self.body[:200])


def _header_list(headers):
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def build_request(method, path, headers=None, body=None, form=None,
                  json=None, port=None, close=False):
    """The bytes of one HTTP/1.1 request."""
    hl = _header_list(headers)
    names = {n.lower() for n, _ in hl}
    if form is not None:
        body = urllib.parse.urlencode(form)
        if "content-type" not in names:
            hl.append(("Content-Type", "application/x-www-form-urlencoded"))
    elif json is not None:
        body = jsonlib.dumps(json)
        if "content-type" not in names:
            hl.append(("Content-Type", "application/json"))
    if isinstance(body, str):
        body = body.encode()
    if "host" not in names:
        hl.insert(0, ("Host", "127.0.0.1:%d" % port if port else "localhost"))
    if close and "connection" not in names:
        hl.append(("Connection", "close"))
    if body is not None and "content-length" not in names and \
            "transfer-encoding" not in names:
        hl.append(("Content-Length", str(len(body))))
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    head += "".join("%s: %s\r\n" % (n, v) for n, v in hl) + "\r\n"
    return head.encode("latin-1") + (body or b"")


class Conn:
    """One client connection; see the module docstring."""

    def __init__(self, port, timeout=5, host="127.0.0.1"):
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.pending = []   # methods sent, oldest first
        self.eof = False

    def send(self, raw):
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        self.sock.sendall(raw)

    def send_request(self, method, path, headers=None, body=None, form=None,
                     json=None):
        self.send(build_request(method, path, headers, body, form, json,
                                port=self.port))
        self.pending.append(method)

    def request(self, method, path, headers=None, body=None, form=None,
                json=None, timeout=5):
        self.send_request(method, path, headers, body, form, json)
        return self.read_response(timeout)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete response in time")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no complete response in time")
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _read_until(self, sep, deadline):
        while sep not in self.buf:
            self._fill(deadline)
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_chunked(self, deadline):
        body = b""
        while True:
            size = int(self._read_until(b"\r\n", deadline).split(b";")[0], 16)
            if size == 0:
                while self._read_until(b"\r\n", deadline):
                    pass    # trailers
                return body
            body += self._read_exact(size, deadline)
            self._read_exact(2, deadline)

    def read_response(self, timeout=5, method=None):
        deadline = time.monotonic() + timeout
        if method is None:
            method = self.pending.pop(0) if self.pending else "GET"
        elif self.pending:
            self.pending.pop(0)
        head = self._read_until(b"\r\n\r\n", deadline).decode("latin-1")
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        raw = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            raw.append((name.strip(), value.strip()))
        r = Response(version, int(code), reason, raw, b"")
        status = r.status
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if te and "chunked" in te.lower():
            r.body = self._read_chunked(deadline)
        elif cl is not None:
            r.body = self._read_exact(int(cl), deadline)
        else:
            try:
                while True:
                    self._fill(deadline)
            except ConnectionError:
                pass
            r.body, self.buf = self.buf, b""
        return r

    def closed(self, timeout=1.0):
        if self.eof:
            return True
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.eof = True
            return True
        if data:
            return False
        self.eof = True
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http(port, method, path, headers=None, body=None, timeout=5, form=None,
         json=None):
    with Conn(port, timeout=timeout) as c:
        c.send(build_request(method, path, headers, body, form, json,
                             port=port, close=True))
        return c.read_response(timeout, method=method)


# ---- tokend ----------------------------------------------------------------

_servers = []


class Tokend:
    """One tokend master and its children; see the module docstring."""

    def __init__(self, config=None, workers=2, pg=None, start=True,
                 env=None):
        self.dir = tempfile.mkdtemp(prefix="tokend-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.config_path = os.path.join(self.dir, "tokend.conf")
        self.log_path = os.path.join(self.dir, "tokend.log")
        self.env = env or {}
        self.pg = pg if pg is not None else globals()["pg"]()
        self.port = free_port()
        self.config = {
            "listen": "127.0.0.1:%d" % self.port,
            "cache_dir": os.path.join(self.dir, "cache"),
            "database_url": self.pg.url,
            "workers": workers,
            "log_file": self.log_path,
        }
        self.proc = None
        self.pid = None
        _servers.append(self)
        self.reload_config(config or {})
        if start:
            self.start()

    # -- configuration

    def write_config(self):
        lines = []
        for k, v in self.config.items():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                lines.append("%s = %s\n" % (k, item))
        with open(self.config_path, "w") as f:
            f.writelines(lines)

    def reload_config(self, changes, hup=False):
        for k, v in changes.items():
            if v is None:
                self.config.pop(k, None)
            else:
                self.config[k] = v
        listen = self.config.get("listen")
        first = listen[0] if isinstance(listen, (list, tuple)) else listen
        if isinstance(first, str) and not first.startswith("unix:") and \
                ":" in first:
            self.port = int(first.rsplit(":", 1)[1])
        self.write_config()
        if hup:
            self.signal(signal.SIGHUP)

    # -- processes

    def start(self, wait=True):
        # tokend refuses a schema older than it needs.
        if self.config.get("database_url") == self.pg.url:
            self.pg.migrate()
        out = open(os.path.join(self.dir, "stdout"), "ab")
        err = open(os.path.join(self.dir, "stderr"), "ab")
        try:
            self.proc = subprocess.Popen(
                [bin_path("tokend"), "-c", self.config_path],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env=_clean_env(self.env), start_new_session=True,
                cwd=self.dir)
        finally:
            out.close()
            err.close()
        self.pid = self.proc.pid
        if wait:
            self.wait_healthy()
            self.wait_listening()
        return self

    def wait_listening(self, timeout=10):
        """Until the writer's LISTEN is up, workers answer from PostgreSQL
        but cache nothing (a revocation could be missed).  Tests that rely
        on the cache, such as "cached tokens survive an outage", start
        from there."""
        wait_until(lambda: 'reason="listen established"' in self.log() or
                   '"reason":"listen established"' in self.log(),
                   timeout=timeout, msg="the writer's LISTEN never came up")

    def wait_healthy(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TokendError("tokend exited with %d at start:\n%s\n%s" % (
                    self.proc.returncode, self.stderr()[-3000:],
                    _tail(self.log_path)))
            try:
                if http(self.port, "GET", "/healthz", timeout=1).status == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise TokendError("no 200 from /healthz in %gs:\n%s\n%s" % (
            timeout, self.stderr()[-3000:], _tail(self.log_path)))

    def children(self):
        """{'worker 1': pid, 'writer': pid, ...}: the master's children by
        their process titles."""
        kids = {}
        if self.pid is None:
            return kids
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name) as f:
                    stat = f.read()
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if len(fields) < 2 or int(fields[1]) != self.pid or \
                    fields[0] == "Z":
                continue
            title = cmd.replace(b"\0", b" ").decode("latin-1").strip()
            if title.startswith("tokend: "):
                kids[title[len("tokend: "):].strip()] = int(name)
        return kids

    def wait_children(self, pred, timeout=10):
        box = {}

        def check():
            box["k"] = self.children()
            return pred(box["k"])
        wait_until(check, timeout,
                   msg="children never matched; last: %r" % (box.get("k"),))
        return box["k"]

    def signal(self, sig):
        os.kill(self.pid, sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(5)
        # Children left behind by a master that died are ours to end.
        self._kill_group()
        self.check_sanitizers()
        return self.proc.returncode

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:", "WARNING: AddressSanitizer")

    def check_sanitizers(self):
        """Under make asan a report kills only the process that made it
        (a worker is respawned and the test may still pass), so any report
        on tokend's stderr fails the test that started it."""
        err = self.stderr()
        for mark in self.SANITIZER_MARKS:
            if mark in err:
                raise AssertionError("sanitizer report from tokend:\n" +
                                     err[max(0, err.index(mark) - 200):][:6000])

    def _kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # -- output

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "stderr"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def http(self, method, path, **kw):
        return http(self.port, method, path, **kw)

    def conn(self, timeout=5):
        return Conn(self.port, timeout=timeout)

    def _cleanup(self):
        try:
            self.stop(timeout=5)
        except Exception:
            self._kill_group()
        if not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            self._cleanup()


@atexit.register
def _cleanup_all():
    for t in list(_servers):
        t._cleanup()
    _servers.clear()
    if _pg is not None:
        _pg._cleanup()
    if not KEEP:
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


def conn_from(port, source, timeout=5):
    """A Conn to 127.0.0.1:port whose socket is bound to source (another
    loopback address, e.g. "127.0.0.2"), so that tokend sees a second
    client address without leaving the machine."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    c = Conn.__new__(Conn)
    c.port, c.sock, c.buf, c.pending, c.eof = port, sock, b"", [], False
    return c


def database(name):
    """A fresh database NAME in pg()'s cluster (an old one of that name is
    dropped, its sessions too), for a test that must not share tokend's:
    a copy of pg() whose url and sql() point at it.  tokend's schema is not
    created: tokenctl("migrate", url=db.url) does that."""
    main = pg()
    main.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    main.sql("CREATE DATABASE %s" % name)
    db = copy.copy(main)
    db.url = main.url.replace("///tokend?", "///%s?" % name)
    return db


def legacy_database(name, upto=10):
    """database(name) as a tokenctl from before the schema tokend left it:
    store/migrations/ up to version UPTO applied in public, one transaction
    for all, recorded in public.schema_migrations."""
    db = database(name)
    script = ["SET search_path = public;",
              "CREATE TABLE schema_migrations (version int PRIMARY KEY, "
              "name text, applied_at timestamptz DEFAULT now());"]
    for path in sorted(glob.glob(os.path.join(ROOT, "store", "migrations",
                                              "*.sql"))):
        m = re.match(r"(\d+)_(.*)\.sql$", os.path.basename(path))
        if int(m.group(1)) > upto:
            break
        with open(path) as f:
            script.append(f.read())
        script.append("INSERT INTO schema_migrations (version, name) "
                      "VALUES (%d, '%s');" % (int(m.group(1)), m.group(2)))
    r = subprocess.run([db.psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1",
                        "-d", db.url, "-f", "-"], input="\n".join(script),
                       capture_output=True, text=True, timeout=120,
                       env=dict(_clean_env(),
                                PGOPTIONS="-c client_min_messages=warning"))
    if r.returncode != 0:
        raise SQLError(r.stderr.strip())
    return db

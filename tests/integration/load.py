"""A small load generator for the integration tests.

Load(port, path, headers, threads) runs `threads` keep-alive connections,
each sending requests back to back until stop().  It counts what a client
would count: every status received, and every request that got no response
at all (a reset, a timeout, a close before the answer).  A connection the
server closes after a response that said `Connection: close` is simply
reopened: that is a correct server behaviour, not a failure.
"""

import threading
import time

import harness


class Load:
    def __init__(self, port, path="/healthz", headers=None, threads=4,
                 pace=0.0):
        self.port = port
        self.path = path
        self.headers = headers or {}
        self.nthreads = threads
        self.pace = pace
        self.status = {}
        self.failures = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    def _count(self, key):
        with self._lock:
            self.status[key] = self.status.get(key, 0) + 1

    def _run(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = harness.Conn(self.port, timeout=10)
                r = conn.request("GET", self.path, headers=self.headers)
            except Exception as e:  # no answer: a failure a client sees
                with self._lock:
                    self.failures.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
                continue
            self._count(r.status)
            if (r.header("connection") or "").lower() == "close":
                conn.close()
                conn = None
            if self.pace:
                time.sleep(self.pace)
        if conn is not None:
            conn.close()

    def start(self):
        for _ in range(self.nthreads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)
        return self

    def total(self):
        with self._lock:
            return sum(self.status.values())

    def count(self, status):
        with self._lock:
            return self.status.get(status, 0)

    def wait_for(self, n, timeout=20):
        harness.wait_until(lambda: self.total() >= n, timeout=timeout,
                           msg="load did not reach %d requests" % n)

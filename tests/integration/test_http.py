"""HTTP/1.1 as the workers speak it (SPEC section 4, general rules): status
codes for bad requests, keep-alive, pipelining, HTTP/1.0, timeouts and the
per-worker connection limit.  Raw sockets, so the bytes are exactly ours."""

import time
import unittest

from harness import Conn, Tokend, http


def assert_json_error(tc, r, status):
    tc.assertEqual(r.status, status, r)
    tc.assertTrue((r.header("content-type") or "").startswith(
        "application/json"), r)
    body = r.json()
    tc.assertIsInstance(body.get("error"), str, body)
    tc.assertTrue(body["error"], body)


class HTTPBasics(unittest.TestCase):
    """One server for everything quick: short timeouts and a small body
    limit, so the slow-client tests take a second, not ten."""

    @classmethod
    def setUpClass(cls):
        cls.t = Tokend({"header_timeout": 1, "keepalive_timeout": 1,
                        "max_body": 1024})

    @classmethod
    def tearDownClass(cls):
        cls.t._cleanup()

    def raw(self, data, timeout=5):
        """Send raw bytes on a fresh connection; the response and the
        connection (for checking whether it was closed)."""
        c = Conn(self.t.port)
        self.addCleanup(c.close)
        c.send(data)
        return c.read_response(timeout, method="GET"), c

    # ---- the operations endpoints answer

    def test_healthz(self):
        r = self.t.http("GET", "/healthz")
        self.assertEqual(r.status, 200)
        self.assertIsNotNone(r.header("content-type"))

    def test_head_healthz_has_no_body(self):
        with Conn(self.t.port) as c:
            r = c.request("HEAD", "/healthz")
            self.assertEqual(r.status, 200)
            # Were a body sent after the HEAD response, it would be read
            # as the next response's status line.
            r = c.request("GET", "/healthz")
            self.assertEqual(r.status, 200)

    # ---- errors have a status and a JSON body

    def test_unknown_path_is_404(self):
        assert_json_error(self, self.t.http("GET", "/no/such/path"), 404)

    def test_wrong_method_is_405_with_allow(self):
        r = self.t.http("POST", "/healthz", body=b"")
        assert_json_error(self, r, 405)
        allow = {m.strip() for m in (r.header("allow") or "").split(",")}
        self.assertEqual(allow, {"GET", "HEAD"})

    def test_headers_over_8k_are_431(self):
        r = self.t.http("GET", "/healthz", headers={"X-Big": "a" * 8300})
        assert_json_error(self, r, 431)

    def test_body_over_max_body_is_413(self):
        # Only the head: the Content-Length alone must be refused, and not
        # sending the body keeps the server's close from being a reset.
        r, _ = self.raw(b"POST /token HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/x-www-form-urlencoded\r\n"
                        b"Content-Length: 2000\r\n\r\n")
        assert_json_error(self, r, 413)

    def test_body_under_max_body_is_read(self):
        # Same endpoint, a body under the limit: whatever /token thinks of
        # it, it is not refused for its size and the answer is JSON.
        r = self.t.http("POST", "/token", form={"grant_type": "x" * 500})
        self.assertNotEqual(r.status, 413)
        self.assertNotEqual(r.status, 404, "POST /token is not served")
        r.json()

    def test_chunked_body_is_refused(self):
        r, _ = self.raw(b"POST /token HTTP/1.1\r\nHost: x\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n0\r\n\r\n")
        self.assertIn(r.status, (411, 501), r)
        r.json()

    # ---- malformed requests

    def test_bare_lf_is_400(self):
        r, _ = self.raw(b"GET /healthz HTTP/1.1\nHost: x\n\n")
        assert_json_error(self, r, 400)

    def test_garbage_request_line_is_400(self):
        r, _ = self.raw(b"HELLO THERE\r\n\r\n")
        assert_json_error(self, r, 400)

    def test_http_2_0_is_505(self):
        r, _ = self.raw(b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
        assert_json_error(self, r, 505)

    def test_http_1_1_without_host_is_400(self):
        r, _ = self.raw(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert_json_error(self, r, 400)

    # ---- connections

    def test_keepalive_serves_several_requests(self):
        with Conn(self.t.port) as c:
            for _ in range(5):
                self.assertEqual(c.request("GET", "/healthz").status, 200)
            self.assertFalse(c.closed(0.2))

    def test_pipelined_requests_answer_in_order(self):
        with Conn(self.t.port) as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = [c.read_response(method="GET").status for _ in range(3)]
            self.assertEqual(got, [200, 404, 200])

    def test_http_1_0_closes_after_the_response(self):
        r, c = self.raw(b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(r.status, 200)
        self.assertTrue(c.closed(2), "HTTP/1.0 connection left open")

    def test_http_1_0_keepalive_stays_open(self):
        req = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        r, c = self.raw(req)
        self.assertEqual(r.status, 200)
        self.assertFalse(c.closed(0.2))
        c.send(req)
        self.assertEqual(c.read_response(method="GET").status, 200)

    def test_connection_close_is_honoured(self):
        r, c = self.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n")
        self.assertEqual(r.status, 200)
        self.assertTrue(c.closed(2))

    def test_slow_headers_get_408_and_close(self):
        c = Conn(self.t.port)
        self.addCleanup(c.close)
        start = time.monotonic()
        c.send(b"GET /healthz HTTP/1.1\r\nHo")
        r = c.read_response(timeout=5, method="GET")
        waited = time.monotonic() - start
        assert_json_error(self, r, 408)
        self.assertGreater(waited, 0.7, "408 long before header_timeout")
        self.assertTrue(c.closed(2))

    def test_idle_keepalive_connection_is_closed(self):
        with Conn(self.t.port) as c:
            self.assertEqual(c.request("GET", "/healthz").status, 200)
            start = time.monotonic()
            self.assertFalse(c.closed(0.3), "closed long before the timeout")
            self.assertTrue(c.closed(4), "idle connection never closed")
            self.assertLess(time.monotonic() - start, 4)


class ConnectionLimit(unittest.TestCase):
    def test_connection_over_max_connections_waits(self):
        t = Tokend({"max_connections": 3}, workers=1)
        self.addCleanup(t._cleanup)
        held = [Conn(t.port) for _ in range(3)]
        for c in held:
            self.addCleanup(c.close)
            self.assertEqual(c.request("GET", "/healthz").status, 200)

        fourth = Conn(t.port)
        self.addCleanup(fourth.close)
        fourth.send_request("GET", "/healthz")
        try:
            r = fourth.read_response(timeout=1)
            self.fail("a 4th connection was served: %r" % (r,))
        except TimeoutError:
            served_later = True     # queued: it is answered once room frees
        except ConnectionError:
            served_later = False    # refused: a new connection must work

        held.pop().close()
        if served_later:
            r = fourth.read_response(timeout=5)
        else:
            with Conn(t.port) as c:
                r = c.request("GET", "/healthz")
        self.assertEqual(r.status, 200)


if __name__ == "__main__":
    unittest.main()

"""HTTPS on tls_listen (SPEC section 7): the same server, over OpenSSL."""

import os
import socket
import ssl
import subprocess
import unittest

import harness


def make_cert(d):
    key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=localhost"], check=True,
                   capture_output=True)
    return cert, key


class TLSTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--no-password")
        cls.dir = harness.tmpdir("tls-")
        cls.cert, key = make_cert(cls.dir)
        cls.tls_port = harness.free_port()
        cls.t = harness.Tokend(workers=1, config={
            "tls_listen": "127.0.0.1:%d" % cls.tls_port,
            "tls_cert": cls.cert, "tls_key": key})

    @classmethod
    def tearDownClass(cls):
        cls.t.stop()

    def connect(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = False
        raw = socket.create_connection(("127.0.0.1", self.tls_port), 5)
        return ctx.wrap_socket(raw, server_hostname="localhost")

    def read_all(self, s, want):
        data = b""
        while data.count(b"HTTP/1.1 ") < want or not data.endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def test_pipelined_requests_over_tls(self):
        with self.connect() as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
            data = self.read_all(s, 3)
        self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 3)

    def test_auth_over_tls(self):
        tok = harness.tokenctl("pat", "create", "--user", "alice",
                               "--name", "tls").stdout.strip()
        with self.connect() as s:
            s.sendall(b"GET /auth HTTP/1.1\r\nHost: x\r\nAuthorization: "
                      b"Bearer " + tok.encode() + b"\r\n\r\n")
            head = s.recv(65536)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK"), head)
        self.assertIn(b"X-Auth-User: alice", head)

    def test_plain_http_on_the_tls_port_gets_no_http_answer(self):
        with socket.create_connection(("127.0.0.1", self.tls_port), 5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
        self.assertFalse(data.startswith(b"HTTP/"))

    def test_key_that_is_not_a_key_fails_check(self):
        junk = os.path.join(self.dir, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a key\n")
        r = harness.tokend_cmd("-t", env={
            "TOKEND_TLS_LISTEN": "127.0.0.1:1",
            "TOKEND_TLS_CERT": self.cert, "TOKEND_TLS_KEY": junk,
            "TOKEND_DATABASE_URL": harness.pg().url})
        self.assertEqual(r.returncode, 1)
        self.assertIn("tls_key " + junk, r.stderr)

    def test_plain_listener_still_serves(self):
        self.assertEqual(self.t.http("GET", "/healthz").status, 200)

    def test_bad_key_fails_start_with_a_message(self):
        r = harness.tokend_cmd("-t", env={
            "TOKEND_TLS_LISTEN": "127.0.0.1:1",
            "TOKEND_TLS_CERT": self.cert,
            "TOKEND_TLS_KEY": os.path.join(self.dir, "missing.pem"),
            "TOKEND_DATABASE_URL": harness.pg().url})
        self.assertEqual(r.returncode, 1)
        self.assertIn("tls_key", r.stderr)


if __name__ == "__main__":
    unittest.main()

"""Sign-in for people in a real browser (SPEC 11): Debian's chromium,
headless, driven by selenium through chromedriver.  A person opens a
client's authorization URL, signs in, consents, and comes back to the
client with code, state and iss; the code exchanges; a second
authorization in the same session asks nothing; a device is approved in
the browser while its client polls /token (RFC 8628).

On failure, a screenshot of every page the test saw is saved under
$TOKEND_TEST_OUT (default build/test-output)/test_browser/TEST/.  With
TOKEND_SCREENSHOTS=DIR set, the pages' screenshots are also written there
(that is how contrib/screenshots/ was made)."""

import base64
import hashlib
import http.server
import json
import os
import threading
import time
import unittest
import urllib.parse

import harness

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:             # make deps installs python3-selenium
    webdriver = None

CHROMEDRIVER = "/usr/bin/chromedriver"
PW = "correct horse battery"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OUT = os.environ.get("TOKEND_TEST_OUT",
                     os.path.join(harness.ROOT, "build", "test-output"))


def pkce():
    verifier = base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("=")
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class _Client(http.server.BaseHTTPRequestHandler):
    """The client's redirect URI on loopback: it only says it got there."""

    def do_GET(self):
        body = b"<!DOCTYPE html><title>client</title><p>back at the client"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@unittest.skipIf(webdriver is None or not os.path.exists(CHROMEDRIVER),
                 "selenium and chromium-driver are installed by make deps")
class BrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = harness.Tokend()
        cls.base = "http://127.0.0.1:%d" % cls.t.port
        cls.client_srv = http.server.HTTPServer(("127.0.0.1", 0), _Client)
        threading.Thread(target=cls.client_srv.serve_forever,
                         daemon=True).start()
        cls.cb = "http://127.0.0.1:%d/cb" % cls.client_srv.server_port

    @classmethod
    def tearDownClass(cls):
        cls.client_srv.shutdown()
        cls.client_srv.server_close()
        cls.t.stop()

    def setUp(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "alice", "--password-stdin",
                         input=PW + "\n")
        harness.tokenctl("client", "add", "photos", "--public",
                         "--redirect-uri", self.cb, "--scope",
                         "read write")
        self.shots = []
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage", "--window-size=420,760",
                  "--no-first-run", "--disable-extensions"):
            opts.add_argument(a)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER),
                                       options=opts)
        self.driver.set_page_load_timeout(20)
        self.addCleanup(self.driver.quit)

    def run(self, result=None):
        """Keep the screenshots when the test failed."""
        before = len(result.failures) + len(result.errors) if result else 0
        super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            d = os.path.join(OUT, "test_browser", self._testMethodName)
            os.makedirs(d, exist_ok=True)
            for i, (name, png) in enumerate(self.shots):
                with open(os.path.join(d, "%02d-%s.png" % (i, name)),
                          "wb") as f:
                    f.write(png)
            print("\nscreenshots of %s in %s" % (self._testMethodName, d))

    # ---- helpers -------------------------------------------------------

    def shot(self, name):
        png = self.driver.get_screenshot_as_png()
        self.shots.append((name, png))
        keep = os.environ.get("TOKEND_SCREENSHOTS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            with open(os.path.join(keep, name + ".png"), "wb") as f:
                f.write(png)

    def wait(self, cond, timeout=15):
        return WebDriverWait(self.driver, timeout).until(
            lambda d: cond(d))

    def at_path(self, path):
        return self.wait(lambda d: urllib.parse.urlsplit(
            d.current_url).path == path and d.execute_script(
                "return document.readyState") == "complete")

    def click(self, css):
        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def sign_in(self, name):
        self.at_path("/authorize") if name == "signin" else None
        self.wait(lambda d: d.find_elements(By.ID, "password"))
        self.shot(name)
        self.driver.find_element(By.ID, "username").send_keys("alice")
        self.driver.find_element(By.ID, "password").send_keys(PW)
        self.click("form[action='/signin'] button[type=submit]")

    def allow(self, name):
        self.wait(lambda d: d.find_elements(
            By.CSS_SELECTOR, "button[name=decision][value=allow]"))
        self.shot(name)
        self.click("button[name=decision][value=allow]")

    def authorize_url(self, state, challenge):
        return self.base + "/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": "photos",
            "redirect_uri": self.cb, "scope": "read", "state": state,
            "code_challenge": challenge, "code_challenge_method": "S256"})

    def back_at_client(self):
        self.wait(lambda d: d.current_url.startswith(self.cb))
        q = dict(urllib.parse.parse_qsl(
            urllib.parse.urlsplit(self.driver.current_url).query))
        return q

    def approve(self, uri, user_code):
        """The person: the complete URI prefills the code; sign in,
        allow."""
        self.driver.get(uri)
        self.wait(lambda d: d.find_elements(By.NAME, "user_code"))
        self.shot("device")
        field = self.driver.find_element(By.NAME, "user_code")
        self.assertEqual(field.get_attribute("value").replace("-", ""),
                         user_code.replace("-", ""))
        self.click("form[action='/device'] button[type=submit]")
        self.wait(lambda d: d.find_elements(By.ID, "password"))
        self.sign_in("device_signin")
        self.wait(lambda d: d.find_elements(By.NAME, "user_code"))
        self.click("form[action='/device'] button[type=submit]")
        self.allow("device_consent")
        self.wait(lambda d: "Device connected" in d.page_source)
        self.shot("device_done")

    # ---- the tests -----------------------------------------------------

    def test_code_flow_in_a_browser(self):
        verifier, challenge = pkce()
        self.driver.get(self.authorize_url("s-1", challenge))
        self.sign_in("signin")
        self.allow("consent")
        q = self.back_at_client()
        self.assertEqual(q["state"], "s-1")
        self.assertEqual(q["iss"], self.base)
        r = self.t.http("POST", "/token", form={
            "grant_type": "authorization_code", "code": q["code"],
            "redirect_uri": self.cb, "client_id": "photos",
            "code_verifier": verifier})
        self.assertEqual(r.status, 200, r.text)
        self.assertEqual(r.json()["scope"], "read")
        cookie = self.driver.get_cookie("tokend_session")
        self.assertTrue(cookie["httpOnly"])
        self.assertEqual(cookie["sameSite"], "Lax")

        # Same session: no password, no consent, straight back.
        verifier, challenge = pkce()
        self.driver.get(self.authorize_url("s-2", challenge))
        q = self.back_at_client()
        self.assertEqual(q["state"], "s-2")
        r = self.t.http("POST", "/token", form={
            "grant_type": "authorization_code", "code": q["code"],
            "redirect_uri": self.cb, "client_id": "photos",
            "code_verifier": verifier})
        self.assertEqual(r.status, 200, r.text)

        # Sign out from the consent page of a wider scope.
        self.driver.get(self.authorize_url("s-3", challenge).replace(
            "scope=read", "scope=read+write"))
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR,
                                            "form[action='/logout']"))
        self.click("form[action='/logout'] button")
        self.at_path("/logout")
        self.shot("signed_out")
        self.assertIsNone(self.driver.get_cookie("tokend_session"))

    def test_error_page(self):
        self.driver.get(self.base + "/authorize?client_id=nobody&"
                        "redirect_uri=https%3A%2F%2Fevil.example%2F")
        self.at_path("/authorize")
        self.shot("error")
        self.assertIn("Unknown application", self.driver.page_source)
        self.assertNotIn("evil", self.driver.current_url.split("?")[0])

    def test_device_approval_in_a_browser(self):
        # The row POST /device_authorization stores (migration 011), so
        # that the pages are tested whatever issues it.
        harness.pg().sql(
            "INSERT INTO device_codes (hash, prefix, user_code, client_id, "
            "scope, expires_at) SELECT %s, 'tkd_test', 'WXZBCDFG', id, "
            "'read', now() + interval '10 minutes' FROM clients",
            os.urandom(32))
        self.approve(self.base + "/device?user_code=WXZB-CDFG", "WXZB-CDFG")
        self.assertEqual(harness.pg().sql(
            "SELECT d.status, u.name, d.web_session IS NOT NULL FROM "
            "device_codes d JOIN users u ON u.id = d.user_id"),
            [("approved", "alice", "t")])

    def test_device_flow_in_a_browser(self):
        # The device: RFC 8628 3.1, then polling /token (3.4, 3.5).
        r = self.t.http("POST", "/device_authorization",
                        form={"client_id": "photos", "scope": "read"})
        self.assertEqual(r.status, 200, r.text)
        da = r.json()
        self.assertRegex(da["user_code"], r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-"
                         r"[BCDFGHJKLMNPQRSTVWXZ]{4}$")
        got = {}

        def poll():
            interval = da.get("interval", 5)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(interval)
                p = self.t.http("POST", "/token", form={
                    "grant_type": DEVICE_GRANT, "client_id": "photos",
                    "device_code": da["device_code"]})
                j = p.json()
                if p.status == 200 or j.get("error") not in (
                        "authorization_pending", "slow_down"):
                    got["status"], got["body"] = p.status, j
                    return
                if j["error"] == "slow_down":
                    interval += 5
        th = threading.Thread(target=poll, daemon=True)
        th.start()

        self.approve(da["verification_uri_complete"], da["user_code"])
        th.join(70)
        self.assertEqual(got.get("status"), 200, got)
        self.assertEqual(got["body"]["scope"], "read")
        self.assertIn("refresh_token", got["body"])


if __name__ == "__main__":
    unittest.main()

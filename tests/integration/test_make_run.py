"""`make run` as a newcomer tries it (SPEC 10, issue 12): contrib/run.sh
starts tokend, and every line it prints to try runs as printed: the curl
against /auth with the demo PAT, the password grant, the browser URL that
signs demo in through the code flow (in headless chromium) with its
exchange, and the device flow approved in the browser while the printed
polling line is run.

The script runs in a scratch folder holding links to bin/ and contrib/,
against the harness's PostgreSQL (TOKEND_DATABASE_URL, so it starts none)
on a free port (TOKEND_LISTEN)."""

import json
import os
import re
import signal
import subprocess
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


def sh(line):
    """Run one printed line as a shell would; its stdout."""
    r = subprocess.run(["sh", "-c", line], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (line, r.stderr)
    return r.stdout


@unittest.skipIf(webdriver is None or not os.path.exists(CHROMEDRIVER),
                 "selenium and chromium-driver are installed by make deps")
class MakeRunTest(unittest.TestCase):
    def setUp(self):
        harness.pg().reset()
        self.port = harness.free_port()
        work = harness.tmpdir("tokend-run-")
        os.symlink(os.path.dirname(harness.bin_path("tokend")),
                   os.path.join(work, "bin"))
        os.symlink(os.path.join(harness.ROOT, "contrib"),
                   os.path.join(work, "contrib"))
        env = dict(harness._clean_env(),
                   TOKEND_DATABASE_URL=harness.pg().url,
                   TOKEND_LISTEN="127.0.0.1:%d" % self.port,
                   TOKEND_CACHE_DIR=os.path.join(work, "cache"),
                   TOKEND_WORKERS="1")
        self.out_path = os.path.join(work, "stdout")
        self.proc = subprocess.Popen(
            ["sh", "contrib/run.sh"], cwd=work, env=env,
            stdout=open(self.out_path, "w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(self.stop)
        harness.wait_until(self.ready, timeout=30,
                           msg="make run did not come up")
        with open(self.out_path) as f:
            self.lines = [x.strip() for x in f.read().splitlines()]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def ready(self):
        try:
            return harness.http(self.port, "GET", "/healthz").status == 200
        except OSError:
            return False

    def printed(self, pattern):
        found = [x for x in self.lines if re.search(pattern, x)]
        self.assertTrue(found, "make run printed no line like %r:\n%s" % (
            pattern, "\n".join(self.lines)))
        return found[0]

    def browser(self):
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage", "--no-first-run"):
            opts.add_argument(a)
        d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        d.set_page_load_timeout(20)
        self.addCleanup(d.quit)
        return d

    def sign_in(self, d):
        wait = WebDriverWait(d, 15)
        wait.until(lambda d: d.find_elements(By.ID, "password"))
        d.find_element(By.ID, "username").send_keys("demo")
        d.find_element(By.ID, "password").send_keys("demo")
        d.find_element(By.CSS_SELECTOR,
                       "form[action='/signin'] button[type=submit]").click()

    def test_every_printed_line_works(self):
        # The PAT against /auth, and the password grant.
        self.assertIn("HTTP/1.1 200", sh(self.printed(r"^curl -i .*/auth$")))
        tok = json.loads(sh(self.printed(r"grant_type=password")))
        self.assertIn("access_token", tok)

        # The browser URL: sign in as demo (a first-party client: no
        # consent), land on the loopback redirect with code, state, iss.
        d = self.browser()
        d.get(self.printed(r"^http://.*/authorize\?"))
        self.sign_in(d)
        WebDriverWait(d, 15).until(
            lambda d: d.current_url.startswith("http://127.0.0.1:8765/"))
        q = dict(urllib.parse.parse_qsl(
            urllib.parse.urlsplit(d.current_url).query))
        self.assertEqual(q["iss"], "http://127.0.0.1:%d" % self.port)
        line = self.printed(r"grant_type=authorization_code")
        pair = json.loads(sh(line.replace("CODE", q["code"])))
        self.assertIn("refresh_token", pair)

        # The device flow: ask, approve in the browser (signed in above),
        # poll with the printed line until the pair comes.
        da = json.loads(sh(self.printed(r"/device_authorization$")))
        d.get(da["verification_uri_complete"])
        WebDriverWait(d, 15).until(
            lambda d: d.find_elements(By.NAME, "user_code"))
        d.find_element(By.CSS_SELECTOR,
                       "form[action='/device'] button[type=submit]").click()
        WebDriverWait(d, 15).until(lambda d: d.find_elements(
            By.CSS_SELECTOR, "button[name=decision][value=allow]") or
            "Device connected" in d.page_source)
        allow = d.find_elements(By.CSS_SELECTOR,
                                "button[name=decision][value=allow]")
        if allow:
            allow[0].click()
        WebDriverWait(d, 15).until(
            lambda d: "Device connected" in d.page_source)
        poll = self.printed(r"device_code=DEVICE_CODE").replace(
            "DEVICE_CODE", da["device_code"])
        deadline = time.monotonic() + 30
        while True:
            got = json.loads(sh(poll))
            if "access_token" in got or time.monotonic() > deadline:
                break
            self.assertIn(got.get("error"), ("authorization_pending",
                                             "slow_down"), got)
            time.sleep(da["interval"])
        self.assertIn("access_token", got)


if __name__ == "__main__":
    unittest.main()

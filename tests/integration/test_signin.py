"""Sign-in for people (SPEC 11): GET /authorize, the sign-in, consent and
device pages, the session cookie, CSRF, prompt, deny, replay, logout, and
wrong user codes, through HTTP against the real server."""

import base64
import hashlib
import html.parser
import os
import re
import time
import unittest
import urllib.parse

import harness

CB = "http://127.0.0.1:9/cb"
SPA_CB = "http://127.0.0.1:9/spa?x=1"
PW = "correct horse"


def pkce():
    verifier = base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("=")
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class _Forms(html.parser.HTMLParser):
    """Every form of a page: action, its inputs' and buttons' values; the
    labels' for= and the ids of inputs; the style nonce."""

    def __init__(self):
        super().__init__()
        self.forms, self.labels, self.inputs, self.nonces = [], [], [], []
        self.lang = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "form":
            self.forms.append({"action": a.get("action"), "fields": {},
                               "buttons": [], "inputs": []})
        elif tag == "input" and self.forms:
            f = self.forms[-1]
            f["inputs"].append(a)
            self.inputs.append(a)
            if a.get("name"):
                f["fields"][a["name"]] = a.get("value") or ""
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append(a)
        elif tag == "label":
            self.labels.append(a.get("for"))
        elif tag == "style":
            self.nonces.append(a.get("nonce"))


def parse(text):
    p = _Forms()
    p.feed(text)
    return p


class Browser:
    """A cookie jar and the forms of the last page: a person's browser,
    without JavaScript (the pages need none)."""

    def __init__(self, t):
        self.t = t
        self.cookies = {}
        self.last = None

    def _store(self, r):
        sc = r.headers.get("set-cookie")
        for c in ([] if sc is None else sc if isinstance(sc, list) else [sc]):
            name, _, rest = c.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in c:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def _headers(self, extra=None):
        h = dict(extra or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in
                                    self.cookies.items())
        return h

    def get(self, path, headers=None):
        r = self.t.http("GET", path, headers=self._headers(headers))
        self._store(r)
        self.last = r
        return r

    def post(self, path, form, headers=None):
        r = self.t.http("POST", path, headers=self._headers(headers),
                        form=form)
        self._store(r)
        self.last = r
        return r

    def form(self, action, r=None):
        p = parse((r or self.last).text)
        for f in p.forms:
            if f["action"] == action:
                return f
        raise AssertionError("no form to %s in %r" % (action,
                                                      (r or self.last).text))

    def submit(self, action, r=None, **fields):
        data = dict(self.form(action, r)["fields"])
        data.update(fields)
        return self.post(action, data)


def location(r):
    u = urllib.parse.urlsplit(r.header("location"))
    return u, dict(urllib.parse.parse_qsl(u.query))


class Pages(unittest.TestCase):
    """The users, clients and helpers of both test classes."""

    def setUp(self):
        harness.pg().reset()
        harness.pg().sql("TRUNCATE web_sessions, consents, device_codes "
                         "CASCADE")
        harness.tokenctl("user", "add", "alice", "--password-stdin",
                         input=PW + "\n")
        harness.tokenctl("client", "add", "app", "--secret-stdin",
                         "--redirect-uri", CB, "--scope", "read write",
                         input="app-secret\n")
        harness.tokenctl("client", "add", "spa", "--public",
                         "--redirect-uri", SPA_CB, "--scope", "read")
        harness.tokenctl("client", "add", "mine", "--public",
                         "--redirect-uri", CB, "--scope", "read",
                         "--first-party")
        self.b = Browser(self.t)
        self.iss = "http://127.0.0.1:%d" % self.t.port

    # ---- helpers -----------------------------------------------------------

    def authz(self, client="app", uri=CB, state="st 1&<x>", **extra):
        q = {"response_type": "code", "client_id": client,
             "redirect_uri": uri, "state": state}
        q.update(extra)
        q = {k: v for k, v in q.items() if v is not None}
        return "/authorize?" + urllib.parse.urlencode(q)

    def sign_in(self, b=None, user="alice", pw=PW):
        b = b or self.b
        return b.submit("/signin", username=user, password=pw)

    def to_consent(self, path=None, b=None):
        b = b or self.b
        b.get(path or self.authz(scope="read"))
        r = self.sign_in(b)
        self.assertEqual(r.status, 303, r.text)
        r = b.get(r.header("location"))
        self.assertEqual(r.status, 200, r.text)
        return r

    def assert_page(self, r, status):
        self.assertEqual(r.status, status, r.text)
        self.assertEqual(r.header("content-type"),
                         "text/html; charset=utf-8")
        self.assertIsNone(r.header("location"))

    def assert_error_redirect(self, r, error, state="st 1&<x>", uri=CB):
        self.assertEqual(r.status, 303, r.text)
        u, q = location(r)
        base = urllib.parse.urlsplit(uri)
        self.assertEqual((u.scheme, u.netloc, u.path),
                         (base.scheme, base.netloc, base.path))
        self.assertEqual(q.get("error"), error, q)
        self.assertEqual(q.get("iss"), self.iss)
        self.assertEqual(q.get("state"), state)
        self.assertNotIn("code", q)



class SigninTest(Pages):
    @classmethod
    def setUpClass(cls):
        cls.t = harness.Tokend(config={"login_max_failures": 3})

    # ---- the client and its redirect URI: a page, never a redirect ---------

    def test_unknown_client_or_redirect_is_an_error_page(self):
        for path in ("/authorize", "/authorize?response_type=code",
                     self.authz(client=None), self.authz(uri=None),
                     self.authz(client="nope"),
                     self.authz(uri="http://evil.example/cb"),
                     self.authz(uri=CB + "/x"),
                     self.authz(client="spa", uri=CB),
                     "/authorize?client_id=app&client_id=app&redirect_uri="
                     + urllib.parse.quote(CB)):
            r = self.b.get(path)
            self.assert_page(r, 400)
            self.assertNotIn("evil", r.text)

    def test_request_errors_redirect_with_state_and_iss(self):
        v, ch = pkce()
        cases = [
            (dict(response_type="token"), "unsupported_response_type"),
            (dict(response_type=None), "invalid_request"),
            (dict(scope="admin"), "invalid_scope"),
            (dict(scope="bad\"scope"), "invalid_scope"),
            (dict(prompt="bogus"), "invalid_request"),
            (dict(code_challenge=ch), "invalid_request"),
            (dict(code_challenge=ch, code_challenge_method="plain"),
             "invalid_request"),
            (dict(code_challenge="short", code_challenge_method="S256"),
             "invalid_request"),
            (dict(code_challenge_method="S256"), "invalid_request"),
        ]
        for extra, error in cases:
            with self.subTest(extra=extra):
                self.assert_error_redirect(self.b.get(self.authz(**extra)),
                                           error)
        # A public client without PKCE; its URI's own query is kept.
        r = self.b.get(self.authz(client="spa", uri=SPA_CB))
        self.assert_error_redirect(r, "invalid_request", uri=SPA_CB)
        self.assertEqual(location(r)[1]["x"], "1")

    # ---- the whole flow -----------------------------------------------------

    def test_signin_consent_code_exchange(self):
        v, ch = pkce()
        r = self.b.get(self.authz(client="spa", uri=SPA_CB,
                                  code_challenge=ch,
                                  code_challenge_method="S256"))
        self.assert_page(r, 200)
        p = parse(r.text)
        f = self.b.form("/signin")
        auto = {i.get("autocomplete") for i in f["inputs"]}
        self.assertTrue({"username", "current-password"} <= auto)
        self.assertIn("spa", r.text)
        self.assertIn("tokend_csrf", self.b.cookies)
        r = self.sign_in()
        self.assertEqual(r.status, 303, r.text)
        self.assertTrue(r.header("location").startswith("/authorize?"))
        cookie = [c for c in r.headers["set-cookie"]
                  if c.startswith("tokend_session=")] if isinstance(
                      r.headers["set-cookie"], list) else \
            [r.headers["set-cookie"]]
        flags = [x.strip() for x in cookie[0].split(";")]
        self.assertRegex(flags[0], r"^tokend_session=tks_[0-9A-Za-z]{49}$")
        self.assertIn("HttpOnly", flags)
        self.assertIn("SameSite=Lax", flags)
        self.assertIn("Path=/", flags)
        self.assertIn("Max-Age=43200", flags)
        self.assertNotIn("Secure", flags)
        tok = self.b.cookies["tokend_session"]
        rows = harness.pg().sql(
            "SELECT encode(hash, 'hex'), prefix FROM web_sessions")
        self.assertEqual(rows, [(hashlib.sha256(tok.encode()).hexdigest(),
                                 tok[:8])])

        r = self.b.get(r.header("location"))
        self.assert_page(r, 200)
        self.assertIn("spa", r.text)
        self.assertIn("<li>read</li>", r.text)
        f = self.b.form("/consent")
        self.assertEqual({(b.get("name"), b.get("value"))
                          for b in f["buttons"]},
                         {("decision", "allow"), ("decision", "deny")})
        r = self.b.submit("/consent", decision="allow")
        self.assertEqual(r.status, 303, r.text)
        u, q = location(r)
        self.assertEqual(u.geturl().split("?")[0], SPA_CB.split("?")[0])
        self.assertEqual(q["state"], "st 1&<x>")
        self.assertEqual(q["iss"], self.iss)
        self.assertEqual(q["x"], "1")
        self.assertRegex(q["code"], r"^tkc_")

        r = self.t.http("POST", "/token", form={
            "grant_type": "authorization_code", "code": q["code"],
            "redirect_uri": SPA_CB, "client_id": "spa",
            "code_verifier": v})
        self.assertEqual(r.status, 200, r.text)
        j = r.json()
        self.assertEqual(j["scope"], "read")
        # The code and every token of its family carry the session,
        # the refresh token's successors too (migration 012's trigger).
        r = self.t.http("POST", "/token", form={
            "grant_type": "refresh_token", "client_id": "spa",
            "refresh_token": j["refresh_token"]})
        self.assertEqual(r.status, 200, r.text)
        rows = harness.pg().sql(
            "SELECT t.kind, t.web_session = s.id FROM tokens t, "
            "web_sessions s ORDER BY t.id")
        self.assertEqual([k for k, _ in rows],
                         ["code", "refresh", "access", "refresh", "access"])
        self.assertTrue(all(ok == "t" for _, ok in rows), rows)
        self.assertEqual(harness.pg().sql(
            "SELECT scope FROM consents"), [("read",)])

        log = self.t.log()
        for ev in ("signin_succeeded", "consent_given"):
            self.assertIn("event=" + ev, log)
        for secret in (tok, q["code"], PW, v):
            self.assertNotIn(secret, log)

    def test_second_authorization_asks_nothing(self):
        self.to_consent()
        r = self.b.submit("/consent", decision="allow")
        self.assertEqual(r.status, 303)
        # Same session, same scope: no password, no consent, a code.
        r = self.b.get(self.authz(scope="read", state="two"))
        self.assertEqual(r.status, 303, r.text)
        self.assertIn("code", location(r)[1])
        self.assertEqual(location(r)[1]["state"], "two")
        # A wider scope asks for consent again, not the password.
        r = self.b.get(self.authz(scope="read write"))
        self.assert_page(r, 200)
        self.b.form("/consent")
        r = self.b.submit("/consent", decision="allow")
        self.assertEqual(r.status, 303)
        self.assertEqual(harness.pg().sql("SELECT scope FROM consents"),
                         [("read write",)])

    def test_first_party_client_skips_consent(self):
        v, ch = pkce()
        self.b.get(self.authz(client="mine", code_challenge=ch,
                              code_challenge_method="S256"))
        r = self.sign_in()
        r = self.b.get(r.header("location"))
        self.assertEqual(r.status, 303, r.text)
        self.assertIn("code", location(r)[1])

    def test_deny(self):
        self.to_consent()
        r = self.b.submit("/consent", decision="deny")
        self.assert_error_redirect(r, "access_denied")
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens"), [("0",)])
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM consents"), [("0",)])

    def test_consent_form_replayed_gives_one_code(self):
        self.to_consent()
        f = dict(self.b.form("/consent")["fields"], decision="allow")
        r1 = self.b.post("/consent", f)
        self.assertEqual(r1.status, 303)
        r2 = self.b.post("/consent", f)
        self.assert_page(r2, 400)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens WHERE kind = 'code'"), [("1",)])
        # Nor after a deny.
        self.b.get(self.authz(scope="read write"))
        f = dict(self.b.form("/consent")["fields"])
        self.assertEqual(self.b.post("/consent", dict(
            f, decision="deny")).status, 303)
        self.assert_page(self.b.post("/consent", dict(
            f, decision="allow")), 400)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens WHERE kind = 'code'"), [("1",)])

    def test_consent_ticket_is_the_sessions_own_and_expires(self):
        self.to_consent()
        mine = self.b.form("/consent")["fields"]["ticket"]
        other = Browser(self.t)
        self.to_consent(b=other)
        f = dict(other.form("/consent")["fields"], ticket=mine,
                 decision="allow")
        self.assert_page(other.post("/consent", f), 400)
        harness.pg().sql("UPDATE web_tickets SET expires_at = now()")
        self.assert_page(self.b.submit("/consent", decision="allow"), 400)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens"), [("0",)])

    # ---- CSRF -----------------------------------------------------------------

    def test_post_without_the_right_csrf_is_403(self):
        r = self.to_consent()
        other = Browser(self.t)
        other.get(self.authz())
        theirs = other.form("/signin")["fields"]["csrf"]
        for action, extra in (("/consent", {"decision": "allow"}),
                              ("/logout", {}), ("/device",
                                                {"user_code": "BCDFGHJK"})):
            for csrf in (None, "", "0" * 64, theirs):
                with self.subTest(action=action, csrf=csrf):
                    f = dict(self.b.form("/consent", r)["fields"], **extra)
                    if csrf is None:
                        del f["csrf"]
                    else:
                        f["csrf"] = csrf
                    self.assert_page(self.b.post(action, f), 403)
        # Sign-in too, and a browser that has no cookie at all.
        f = dict(other.form("/signin")["fields"], username="alice",
                 password=PW)
        self.assert_page(self.t.http("POST", "/signin", form=f), 403)
        f["csrf"] = "x"
        self.assert_page(other.post("/signin", f), 403)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM tokens"), [("0",)])
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM web_sessions"), [("1",)])
        self.assertIn("event=csrf_refused", self.t.log())

    # ---- sign-in failures share the password grant's answers and limit -------

    def test_wrong_password_and_unknown_user_look_the_same(self):
        self.b.get(self.authz())
        r1 = self.sign_in(pw="wrong")
        self.b.get(self.authz())
        r2 = self.sign_in(user="nobody", pw="wrong")
        self.assert_page(r1, 400)
        self.assert_page(r2, 400)
        msg = "The user name or password is wrong."
        self.assertIn(msg, r1.text)
        self.assertIn(msg, r2.text)
        self.assertNotIn("tokend_session", self.b.cookies)
        # The form comes back, still naming the client, for another try.
        self.assertIn("app", r1.text)
        r = self.sign_in(self.b)
        self.assertEqual(r.status, 303)
        log = self.t.log()
        self.assertIn("event=signin_failed", log)
        self.assertNotIn("wrong", [l for l in log.splitlines()
                                   if "password=" in l])

    def test_too_many_failures_is_429_like_the_password_grant(self):
        self.b.get(self.authz())
        for _ in range(3):
            self.assert_page(self.sign_in(pw="wrong"), 400)
        r = self.sign_in()
        self.assert_page(r, 429)
        self.assertIsNotNone(r.header("retry-after"))
        # The password grant sees the same count.
        harness.tokenctl("client", "add", "pw", "--secret-stdin",
                         input="pw-secret\n")
        r = self.t.http("POST", "/token", form={
            "grant_type": "password", "username": "alice", "password": PW,
            "client_id": "pw", "client_secret": "pw-secret"})
        self.assertEqual(r.status, 429, r.text)

    # ---- prompt --------------------------------------------------------------

    def test_prompt_none(self):
        self.assert_error_redirect(self.b.get(self.authz(prompt="none")),
                                   "login_required")
        self.to_consent()
        self.assert_error_redirect(
            self.b.get(self.authz(prompt="none", scope="read")),
            "consent_required")
        self.b.get(self.authz(scope="read"))
        self.b.submit("/consent", decision="allow")
        r = self.b.get(self.authz(prompt="none", scope="read"))
        self.assertEqual(r.status, 303)
        self.assertIn("code", location(r)[1])

    def test_prompt_login_asks_the_password_again(self):
        self.to_consent()
        self.b.submit("/consent", decision="allow")
        old = self.b.cookies["tokend_session"]
        r = self.b.get(self.authz(prompt="login", scope="read"))
        self.assert_page(r, 200)
        self.b.form("/signin")
        r = self.sign_in()
        self.assertEqual(r.status, 303)
        self.assertNotIn("prompt", r.header("location"))
        self.assertNotEqual(self.b.cookies["tokend_session"], old)
        r = self.b.get(r.header("location"))
        self.assertEqual(r.status, 303)
        self.assertIn("code", location(r)[1])
        # The replaced session is gone.
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM web_sessions"), [("1",)])

    # ---- the session's end -----------------------------------------------------

    def test_logout(self):
        r = self.to_consent()
        r = self.b.submit("/logout", r)
        self.assert_page(r, 200)
        sc = r.headers["set-cookie"]
        sc = sc if isinstance(sc, list) else [sc]
        self.assertTrue(any(c.startswith("tokend_session=;") and
                            "Max-Age=0" in c for c in sc), sc)
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM web_sessions"), [("0",)])
        r = self.b.get(self.authz())
        self.b.form("/signin")

    def test_expired_session_asks_again(self):
        self.to_consent()
        harness.pg().sql("UPDATE web_sessions SET expires_at = now() - "
                         "interval '1 second'")
        r = self.b.get(self.authz(scope="read"))
        self.assert_page(r, 200)
        self.b.form("/signin")
        self.assert_error_redirect(
            self.b.get(self.authz(prompt="none")), "login_required")

    # ---- pages ----------------------------------------------------------------

    def test_every_page_has_the_security_headers(self):
        pages = [self.b.get("/authorize")]
        pages.append(self.b.get(self.authz()))
        pages.append(self.sign_in(pw="wrong"))
        pages.append(self.to_consent())
        pages.append(self.b.get("/device"))
        pages.append(self.b.submit("/logout", pages[3]))
        for r in pages:
            with self.subTest(status=r.status):
                csp = r.header("content-security-policy")
                d = dict((x.strip().split(" ", 1) + [""])[:2]
                         for x in csp.split(";"))
                self.assertEqual(d["default-src"], "'none'")
                self.assertEqual(d["frame-ancestors"], "'none'")
                self.assertTrue(d["form-action"].startswith("'self'"))
                p = parse(r.text)
                self.assertEqual(d["style-src"], "'nonce-%s'" % p.nonces[0])
                self.assertEqual(r.header("x-frame-options"), "DENY")
                self.assertEqual(r.header("referrer-policy"), "no-referrer")
                self.assertEqual(r.header("cache-control"), "no-store")
                self.assertEqual(p.lang, "en")
                self.assertIn('name="viewport"', r.text)
                self.assertNotIn("<script", r.text)
                ids = {i.get("id") for i in p.inputs
                       if i.get("type") != "hidden"}
                self.assertEqual(ids - set(p.labels), set())
        # The consent page may post where its answer redirects.
        self.assertIn("http://127.0.0.1:9",
                      pages[3].header("content-security-policy"))
        n1 = parse(pages[0].text).nonces[0]
        self.assertNotEqual(n1, parse(pages[1].text).nonces[0])

    def test_every_reflected_string_is_escaped(self):
        self.b.get(self.authz())
        evil = '"><script>alert(1)</script>\''
        r = self.sign_in(user=evil, pw="x")
        self.assertNotIn("<script>", r.text)
        self.assertEqual(self.b.form("/signin", r)["fields"]["username"],
                         evil)
        r = self.b.get("/device?user_code=" + urllib.parse.quote(evil))
        self.assertNotIn("<script>", r.text)
        self.assertEqual(self.b.form("/device", r)["fields"]["user_code"],
                         evil)

    def test_secure_cookie_when_issuer_is_https(self):
        t = harness.Tokend(config={"issuer": "https://login.example"})
        try:
            b = Browser(t)
            b.get(self.authz())
            r = self.sign_in(b)
            sc = r.headers["set-cookie"]
            sc = sc if isinstance(sc, list) else [sc]
            self.assertTrue(all("; Secure" in c for c in sc), sc)
            r = b.get(r.header("location"))
            b.submit("/consent", decision="deny")
            self.assertEqual(location(b.last)[1]["iss"],
                             "https://login.example")
        finally:
            t.stop()

    def test_template_dir_and_product_name(self):
        d = harness.tmpdir()
        with open(os.path.join(d, "error.html"), "w") as f:
            f.write("<h1>Custom: {{title}}</h1><p>{{message}} "
                    "{{product_name}}</p>")
        t = harness.Tokend(config={"template_dir": d,
                                   "product_name": "Acme <Login>"})
        try:
            r = t.http("GET", "/authorize")
            self.assertEqual(r.status, 400)
            self.assertIn("<h1>Custom: Unknown application</h1>", r.text)
            self.assertIn("Acme &lt;Login&gt;</p>", r.text)
            self.assertNotIn("Acme <Login>", r.text)
            # The other pages are still the built-in ones.
            r = t.http("GET", "/device")
            self.assertIn('name="user_code"', r.text)
            self.assertIn("<title>Connect a device · Acme &lt;Login&gt;",
                          r.text)
        finally:
            t.stop()

    def test_post_authorize_is_still_the_json_api(self):
        r = self.t.http("POST", "/authorize", json={
            "client_id": "app", "redirect_uri": CB})
        self.assertEqual(r.status, 401, r.text)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertIn("error", r.json())


class DeviceTest(Pages):
    """/device: a server of its own for each test, since wrong codes count
    per address for five minutes."""

    def setUp(self):
        self.t = harness.Tokend()
        self.addCleanup(self.t.stop)
        super().setUp()

    def device_code(self, code="BCDFGHJK", client="app", scope="read"):
        harness.pg().sql(
            "INSERT INTO device_codes (hash, prefix, user_code, client_id, "
            "scope, expires_at) SELECT %s, 'tkd_test', %s, id, %s, now() + "
            "interval '10 minutes' FROM clients WHERE client_id = %s",
            os.urandom(32), code, scope, client)

    def test_device_approval(self):
        self.device_code()
        r = self.b.get("/device?user_code=BCDF-GHJK")
        self.assert_page(r, 200)
        self.assertEqual(self.b.form("/device")["fields"]["user_code"],
                         "BCDF-GHJK")
        r = self.b.submit("/device", user_code="bcdf ghjk")
        self.assert_page(r, 200)
        self.assertIn("app", r.text)
        r = self.sign_in()
        self.assertEqual(r.status, 303)
        self.assertEqual(r.header("location"), "/device?user_code=BCDFGHJK")
        r = self.b.get(r.header("location"))
        r = self.b.submit("/device")
        self.assert_page(r, 200)
        self.assertIn("<li>read</li>", r.text)
        self.assertNotIn("127.0.0.1:9", r.header("content-security-policy"))
        r = self.b.submit("/consent", decision="allow")
        self.assert_page(r, 200)
        self.assertIn("Device connected", r.text)
        rows = harness.pg().sql(
            "SELECT d.status, u.name, d.web_session = s.id FROM "
            "device_codes d JOIN users u ON u.id = d.user_id, web_sessions s")
        self.assertEqual(rows, [("approved", "alice", "t")])
        self.assertIn("event=device_approved", self.t.log())
        # Once approved the code is no longer pending: not found again.
        r = self.b.submit("/device", self.b.get("/device"),
                          user_code="BCDF-GHJK")
        self.assert_page(r, 400)

    def test_device_deny(self):
        self.device_code()
        self.to_consent()
        self.b.get("/device")
        r = self.b.submit("/device", user_code="BCDF-GHJK")
        r = self.b.submit("/consent", decision="deny")
        self.assert_page(r, 200)
        self.assertEqual(harness.pg().sql(
            "SELECT status, user_id FROM device_codes"), [("denied", None)])

    def test_expired_device_code_is_not_found(self):
        self.device_code()
        harness.pg().sql("UPDATE device_codes SET expires_at = now()")
        self.b.get("/device")
        self.assert_page(self.b.submit("/device", user_code="BCDFGHJK"), 400)

    def test_wrong_user_codes_too_often_is_429(self):
        self.device_code()
        self.b.get("/device")
        for code in ("BCDFGHJX", "AEIOU123", "", "BCDFGHJ", "ZZZZZZZZ"):
            self.assert_page(self.b.submit("/device", user_code=code), 400)
        r = self.b.submit("/device", user_code="BCDF-GHJK")
        self.assert_page(r, 429)
        self.assertGreater(int(r.header("retry-after")), 0)
        self.assertEqual(harness.pg().sql(
            "SELECT status FROM device_codes"), [("pending",)])


class CleanupTest(unittest.TestCase):
    """tokenctl cleanup (and the writer's sweep) removes sign-in state that
    can no longer be used."""

    def test_expired_sessions_tickets_and_device_codes_go(self):
        harness.pg().reset()
        harness.tokenctl("user", "add", "old", "--no-password")
        harness.tokenctl("client", "add", "tv", "--public")
        harness.pg().sql(
            "INSERT INTO web_sessions (hash, prefix, user_id, expires_at) "
            "SELECT sha256(s::bytea), 'tks_abcd', u.id, now() + iv "
            "FROM users u, (VALUES ('a', interval '-1 minute'), "
            "('b', interval '1 hour')) v(s, iv) WHERE u.name = 'old'")
        harness.pg().sql(
            "INSERT INTO device_codes (hash, prefix, user_code, client_id, "
            "expires_at) SELECT sha256(s::bytea), 'tkd_abcd', uc, c.id, "
            "now() + iv FROM clients c, (VALUES ('a', 'BBBBBBBB', "
            "interval '-30 days'), ('b', 'CCCCCCCC', interval '1 minute')) "
            "v(s, uc, iv) WHERE c.client_id = 'tv'")
        harness.tokenctl("cleanup")
        self.assertEqual(harness.pg().sql(
            "SELECT count(*) FROM web_sessions"), [("1",)])
        self.assertEqual(harness.pg().sql(
            "SELECT user_code FROM device_codes"), [("CCCCCCCC",)])


if __name__ == "__main__":
    unittest.main()

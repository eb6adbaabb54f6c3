/*
 * What every sign-in page shares: the request state, the cookies, CSRF,
 * the templates and the headers of a page or a redirect.
 *
 * CSRF: every form carries SHA-256("tokend-csrf" NUL key) in hex, where
 * the key is the session cookie when the browser has one, else a random
 * tokend_csrf cookie (RAND_bytes) set with the first page that has a
 * form.  An attacker's page can make the browser post, but cannot read
 * either HttpOnly cookie, so it cannot know the field; the field does not
 * reveal the cookie either.  The comparison is constant-time.
 *
 * Every page has a strict Content-Security-Policy: nothing may load but
 * the one inline style, whose per-response nonce (RAND_bytes) the layout
 * carries; forms post only to tokend, and to the client's redirect URI
 * origin where the answer redirects there (browsers apply form-action to
 * a form's redirects); no framing, no referrer, no caching.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "worker/oauth/web.h"

#define WEB_PAGE_MAX	(64 * 1024)
#define WEB_TMPL_MAX	(32 * 1024)

/* The operator's templates (template_dir), by web_builtin's index; NULL:
 * the built-in one. */
static char *web_custom[16];

/* ---- templates ----------------------------------------------------------- */

/* Read dir/name.html into a new string, or NULL when there is none. */
static char *
web_load(const char *dir, const char *name)
{
	char	 path[1024], *buf = NULL;
	ssize_t	 n;
	int	 fd;

	snprintf(path, sizeof(path), "%s/%s.html", dir, name);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			LOG(LVL_WARN, "template_unreadable", KV_S("path", path),
			    KV_S("error", strerror(errno)));
		return NULL;
	}
	if ((buf = malloc(WEB_TMPL_MAX + 1)) == NULL ||
	    (n = read(fd, buf, WEB_TMPL_MAX + 1)) < 0 || n > WEB_TMPL_MAX) {
		LOG(LVL_WARN, "template_unreadable", KV_S("path", path),
		    KV_S("error", "unreadable or over 32 KiB"));
		free(buf);
		buf = NULL;
	} else
		buf[n] = '\0';
	close(fd);
	return buf;
}

int
web_init(void)
{
	const char	*dir = W.wk_cf->cf_template_dir;
	size_t		 i;

	if (dir[0] == '\0')
		return 0;
	for (i = 0; i < web_nbuiltin && i < sizeof(web_custom) /
	    sizeof(web_custom[0]); i++)
		web_custom[i] = web_load(dir, web_builtin[i].wt_name);
	return 0;
}

static const char *
web_template(const char *name)
{
	size_t	 i;

	for (i = 0; i < web_nbuiltin; i++)
		if (strcmp(web_builtin[i].wt_name, name) == 0)
			return i < sizeof(web_custom) / sizeof(web_custom[0]) &&
			    web_custom[i] != NULL ? web_custom[i] :
			    web_builtin[i].wt_text;
	return "";
}

/* ---- request state ------------------------------------------------------- */

/* hex SHA-256("tokend-csrf" NUL key): what the forms carry. */
static void
web_csrf_of(const char *key, size_t len, char out[WEB_HEX])
{
	char	 buf[16 + TOKEN_LEN + WEB_HEX];
	uint8_t	 h[TOKEN_HASH_LEN];

	memcpy(buf, "tokend-csrf", 12);
	memcpy(buf + 12, key, len);
	token_hash(buf, 12 + len, h);
	hex_encode(h, sizeof(h), out);
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* The session cookie's hash, and the CSRF key: that cookie, else the
 * tokend_csrf cookie, else a new one. */
static int
web_cookies(struct conn *c, struct web_req *wr)
{
	struct http_str	 hdr = { NULL, 0 }, v;
	const struct http_str *h = http_header_get(&c->c_req, "Cookie");
	uint8_t		 hash[TOKEN_HASH_LEN], rnd[TOKEN_HASH_LEN];

	if (h != NULL)
		hdr = *h;
	if (cookie_get(hdr, WEB_COOKIE_SESSION, &v) && token_check(v.s_ptr,
	    v.s_len) == TOKEN_SESSION) {
		token_hash(v.s_ptr, v.s_len, hash);
		hex_encode(hash, sizeof(hash), wr->wr_session);
		wr->wr_has_session = 1;
		web_csrf_of(v.s_ptr, v.s_len, wr->wr_csrf);
		return 0;
	}
	if (cookie_get(hdr, WEB_COOKIE_CSRF, &v) && v.s_len == WEB_HEX - 1 &&
	    hex_decode(v.s_ptr, v.s_len, rnd, sizeof(rnd)) == 0) {
		web_csrf_of(v.s_ptr, v.s_len, wr->wr_csrf);
		return 0;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -1;
	hex_encode(rnd, sizeof(rnd), wr->wr_csrf_cookie);
	web_csrf_of(wr->wr_csrf_cookie, WEB_HEX - 1, wr->wr_csrf);
	wr->wr_csrf_new = 1;
	return 0;
}

struct web_req *
web_req_new(struct conn *c, int body)
{
	const struct http_req *rq = &c->c_req;
	const char	*in = body ? c->c_in + c->c_inoff + rq->rq_header_bytes :
			    rq->rq_query.s_ptr;
	size_t		 len = body ? rq->rq_content_length : rq->rq_query.s_len;
	size_t		 arenalen = len + 2 * FORM_MAX_FIELDS + 1;
	struct web_req	*wr;

	if ((wr = calloc(1, sizeof(*wr) + arenalen)) == NULL) {
		oauth_unavailable(c);
		return NULL;
	}
	wr->wr_pd.pd_free = worker_pending_wipe;
	wr->wr_pd.pd_size = sizeof(*wr) + arenalen;
	wr->wr_arenalen = arenalen;
	c->c_pending_data = &wr->wr_pd;
	if (web_cookies(c, wr) == -1) {
		oauth_unavailable(c);
		worker_pending_free(c);
		return NULL;
	}
	if ((body && !oauth_ctype_is(rq->rq_content_type,
	    "application/x-www-form-urlencoded")) || (len > 0 &&
	    form_parse(in, len, &wr->wr_form, wr->wr_arena, arenalen) == -1)) {
		web_error(c, wr, 400, "Bad request", "The request is "
		    "malformed, or repeats a parameter.");
		worker_pending_free(c);
		return NULL;
	}
	return wr;
}

enum handler_result
web_done(struct conn *c, enum handler_result r)
{
	if (r == HANDLER_DONE)
		worker_pending_free(c);
	return r;
}

void
web_resume(struct conn *c, enum handler_result r)
{
	if (r == HANDLER_PENDING)
		return;
	worker_pending_free(c);
	worker_resume(c);
}

struct web_req *
web_row(struct conn *c, PGresult *res)
{
	struct web_req	*wr = (struct web_req *)c->c_pending_data;

	if (res == NULL || PQntuples(res) != 1) {
		web_error(c, wr, 503, "Try again", "The service is busy or "
		    "its database unreachable; try again in a moment.");
		web_resume(c, HANDLER_DONE);
		return NULL;
	}
	return wr;
}

int
web_csrf_ok(struct conn *c, struct web_req *wr)
{
	const char	*f = form_get(&wr->wr_form, "csrf");

	if (!wr->wr_csrf_new && f != NULL && strlen(f) == WEB_HEX - 1 &&
	    CRYPTO_memcmp(f, wr->wr_csrf, WEB_HEX - 1) == 0)
		return 1;
	LOG(LVL_INFO, "csrf_refused", KV_S("path", W.wk_ep_name[c->c_ep]),
	    KV_S("peer", peer_name(c)));
	web_error(c, wr, 403, "Form expired", "This form was not sent by "
	    "this page, or it has expired. Go back, reload, and try again.");
	return 0;
}

enum handler_result
web_query(struct conn *c, const char *sql, int n, const char *const *p,
    pgq_cb cb)
{
	struct web_req	*wr = (struct web_req *)c->c_pending_data;

	if (pgq_submit(W.wk_pgq, c, sql, n, p, cb, NULL) == -1) {
		web_error(c, wr, 503, "Try again", "The service is busy or "
		    "its database unreachable; try again in a moment.");
		return HANDLER_DONE;
	}
	return HANDLER_PENDING;
}

int
web_mint(struct web_req *wr, enum token_kind kind, char hash[WEB_HEX])
{
	if (token_generate(kind, wr->wr_tok) == -1)
		return -1;
	oauth_hash_hex(wr->wr_tok, hash);
	return 0;
}

/* ---- responses ----------------------------------------------------------- */

static int
web_secure(void)
{
	return strncasecmp(W.wk_cf->cf_issuer, "https:", 6) == 0;
}

/* The cookies wr asks for: a new session, its end, a new CSRF key. */
static void
web_set_cookies(struct conn *c, struct web_req *wr)
{
	const char	*sec = web_secure() ? "; Secure" : "";

	if (wr->wr_set_session[0] != '\0')
		resp_headerf(c, "Set-Cookie", "%s=%s; Path=/; Max-Age=%d; "
		    "HttpOnly; SameSite=Lax%s", WEB_COOKIE_SESSION,
		    wr->wr_set_session, W.wk_cf->cf_session_ttl, sec);
	else if (wr->wr_clear_session)
		resp_headerf(c, "Set-Cookie", "%s=; Path=/; Max-Age=0; "
		    "HttpOnly; SameSite=Lax%s", WEB_COOKIE_SESSION, sec);
	if (wr->wr_csrf_cookie[0] != '\0')
		resp_headerf(c, "Set-Cookie", "%s=%s; Path=/; HttpOnly; "
		    "SameSite=Lax%s", WEB_COOKIE_CSRF, wr->wr_csrf_cookie, sec);
}

static void
web_headers(struct conn *c, struct web_req *wr, int status,
    const char *nonce)
{
	resp_start(c, status);
	resp_headerf(c, "Content-Security-Policy", "default-src 'none'; "
	    "style-src 'nonce-%s'; img-src 'self'; form-action 'self'%s%s; "
	    "frame-ancestors 'none'; base-uri 'none'", nonce,
	    wr->wr_form_src[0] != '\0' ? " " : "", wr->wr_form_src);
	resp_header(c, "X-Frame-Options", "DENY");
	resp_header(c, "X-Content-Type-Options", "nosniff");
	resp_header(c, "Referrer-Policy", "no-referrer");
	resp_header(c, "Cache-Control", "no-store");
	resp_header(c, "Pragma", "no-cache");
	if (wr->wr_retry_after > 0)
		resp_header_i64(c, "Retry-After", wr->wr_retry_after);
	web_set_cookies(c, wr);
}

/* The body of template name, then the layout around it, into page. */
static long
web_compose(char *page, const char *name, const char *title,
    const char *nonce, const struct html_var *vars, size_t nvars)
{
	struct html_var	 v[24], lv[4];
	const char	*t;
	char		*body = page + WEB_PAGE_MAX;
	size_t		 n;

	if (nvars > sizeof(v) / sizeof(v[0]) - 2)
		return -1;
	if (nvars > 0)
		memcpy(v, vars, nvars * sizeof(*v));
	v[nvars++] = (struct html_var){ "product_name",
	    W.wk_cf->cf_product_name, HV_TEXT };
	v[nvars++] = (struct html_var){ "nonce", nonce, HV_TEXT };
	t = web_template(name);
	if (html_render(body, WEB_PAGE_MAX, t, strlen(t), v, nvars) < 0)
		return -1;
	lv[0] = (struct html_var){ "title", title, HV_TEXT };
	lv[1] = (struct html_var){ "product_name", W.wk_cf->cf_product_name,
	    HV_TEXT };
	lv[2] = (struct html_var){ "nonce", nonce, HV_TEXT };
	lv[3] = (struct html_var){ "body", body, HV_HTML };
	t = web_template("layout");
	n = sizeof(lv) / sizeof(lv[0]);
	return html_render(page, WEB_PAGE_MAX, t, strlen(t), lv, n);
}

void
web_page(struct conn *c, struct web_req *wr, int status, const char *name,
    const char *title, const struct html_var *vars, size_t nvars)
{
	uint8_t		 rnd[16];
	char		 nonce[2 * sizeof(rnd) + 1], *page;
	long		 n = -1;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1 ||
	    (page = malloc(2 * WEB_PAGE_MAX)) == NULL) {
		oauth_unavailable(c);
		return;
	}
	hex_encode(rnd, sizeof(rnd), nonce);
	if ((n = web_compose(page, name, title, nonce, vars, nvars)) < 0) {
		LOG(LVL_ERROR, "page_failed", KV_S("template", name),
		    KV_S("reason", "a page over 64 KiB"));
		status = 500;
		n = snprintf(page, WEB_PAGE_MAX, "<!DOCTYPE html><html lang="
		    "\"en\"><title>Error</title><p>The page could not be "
		    "shown.</p></html>");
	}
	web_headers(c, wr, status, nonce);
	resp_end(c, "text/html; charset=utf-8", page, (size_t)n);
	free(page);
}

void
web_error(struct conn *c, struct web_req *wr, int status, const char *title,
    const char *message)
{
	struct html_var	 v[] = {
		{ "title", title, HV_TEXT },
		{ "message", message, HV_TEXT },
	};

	web_page(c, wr, status, "error", title, v, 2);
}

void
web_signin_page(struct conn *c, struct web_req *wr, int status,
    const char *next, const char *client, const char *username,
    const char *error)
{
	struct html_var	 v[] = {
		{ "csrf", wr->wr_csrf, HV_TEXT },
		{ "next", next, HV_TEXT },
		{ "client", client != NULL ? client : W.wk_cf->cf_product_name,
		    HV_TEXT },
		{ "username", username, HV_TEXT },
		{ "error", error, HV_TEXT },
	};

	web_page(c, wr, status, "signin", "Sign in", v, 5);
}

void
web_consent_page(struct conn *c, struct web_req *wr, const char *client,
    const char *user, const char *scope)
{
	struct html_var	 v[] = {
		{ "csrf", wr->wr_csrf, HV_TEXT },
		{ "ticket", wr->wr_tok, HV_TEXT },
		{ "client", client, HV_TEXT },
		{ "user", user, HV_TEXT },
		{ "scopes", scope, HV_LIST },
		{ "scope", scope, HV_TEXT },
	};

	web_page(c, wr, 200, "consent", "Allow access", v, 6);
}

void
web_redirect(struct conn *c, struct web_req *wr, const char *location)
{
	resp_start(c, 303);
	resp_header(c, "Location", location);
	resp_header(c, "Cache-Control", "no-store");
	resp_header(c, "Referrer-Policy", "no-referrer");
	web_set_cookies(c, wr);
	resp_end(c, NULL, NULL, 0);
}

void
web_redirect_client(struct conn *c, struct web_req *wr,
    const char *redirect_uri, const char *const *kv, size_t npairs)
{
	const char	*all[12];
	char		*to;

	if (npairs > 5 || (to = malloc(WEB_NEXT_MAX)) == NULL) {
		oauth_unavailable(c);
		return;
	}
	memcpy(all, kv, 2 * npairs * sizeof(*kv));
	all[2 * npairs] = "iss";
	all[2 * npairs + 1] = W.wk_cf->cf_issuer;
	if (oauth_redirect_with(redirect_uri, all, npairs + 1, to,
	    WEB_NEXT_MAX) == -1)
		web_error(c, wr, 400, "Bad request", "The redirect URI and "
		    "state are too long.");
	else
		web_redirect(c, wr, to);
	free(to);
}

/*
 * POST /signin and POST /logout.
 *
 * Sign-in is the password grant's login for a browser: the same
 * tokend_login_attempt (migration 006), which counts the attempt as a
 * failure up front and refuses past login_max_failures in login_window
 * for every box sharing the database; the same argon2id check on the
 * hashpool, against the dummy hash for an unknown name, so that it costs
 * the same; the same answer for an unknown name, a wrong password and a
 * disabled user.  Success clears the count, stores the SHA-256 of a new
 * tks_ session cookie (tokend_web_signin, migration 012; the old cookie's
 * session ends), and sends the browser back to where it was going: the
 * authorization request or the device page (next, checked to be one of
 * those two paths).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/hashpool.h"
#include "worker/oauth/web.h"

static const char bad_login[] = "The user name or password is wrong.";


static const char signin_sql[] =
    "SELECT tokend.tokend_web_signin(decode($1, 'hex'), $2, $3::bigint, "
    "$4::integer, decode($5, 'hex'))";

static const char logout_sql[] =
    "DELETE FROM tokend.web_sessions WHERE hash = decode($1, 'hex') "
    "RETURNING prefix";

/* Where a sign-in may send the browser: only these pages of tokend. */
static int
signin_next_ok(const char *next)
{
	size_t	 n = strlen(next);

	if (n >= WEB_NEXT_MAX || !http_field_value_ok(next, n))
		return 0;
	return strncmp(next, "/authorize?", 11) == 0 ||
	    strcmp(next, "/device") == 0 || strncmp(next, "/device?", 8) == 0;
}

/* The sign-in page again, with the failure: naming the client of next's
 * authorization request, as the first page did. */
static void
signin_again(struct conn *c, struct web_req *wr, int status,
    const char *error)
{
	const char	*next = form_get(&wr->wr_form, "next");
	const char	*name = form_get(&wr->wr_form, "username");
	struct form	 fm;
	char		 arena[WEB_NEXT_MAX + 2 * FORM_MAX_FIELDS + 1];
	const char	*client = NULL;
	size_t		 n = strlen(next);

	if (strncmp(next, "/authorize?", 11) == 0 && form_parse(next + 11,
	    n - 11, &fm, arena, sizeof(arena)) == 0)
		client = form_get(&fm, "client_id");
	web_signin_page(c, wr, status, next, client, name, error);
}

static void
signin_failed(struct conn *c, struct web_req *wr, const char *why)
{
	LOG(LVL_INFO, "signin_failed", KV_S("user",
	    form_get(&wr->wr_form, "username")), KV_S("reason", why),
	    KV_S("peer", peer_name(c)));
	oauth_login_failed(wr->wr_user, NULL, peer_name(c), why);
	signin_again(c, wr, 400, bad_login);
}

static void
signin_done(struct conn *c, PGresult *res, void *arg)
{
	struct web_req	*wr;
	char		 pfx[TOKEN_DISPLAY_LEN + 1];

	(void)arg;
	if ((wr = web_row(c, res)) == NULL)
		return;
	memcpy(wr->wr_set_session, wr->wr_tok, sizeof(wr->wr_set_session));
	oauth_prefix(wr->wr_tok, pfx);
	LOG(LVL_INFO, "signin_succeeded", KV_S("user", wr->wr_user),
	    KV_S("session", pfx), KV_S("peer", peer_name(c)));
	web_redirect(c, wr, form_get(&wr->wr_form, "next"));
	web_resume(c, HANDLER_DONE);
}

/* The password is right: clear the count, open the session. */
static enum handler_result
signin_open(struct conn *c, struct web_req *wr)
{
	char		 hash[WEB_HEX], pfx[TOKEN_DISPLAY_LEN + 1], uid[24];
	char		 ttl[16];
	const char	*p[5];

	oauth_login_ok(wr->wr_user);
	if (web_mint(wr, TOKEN_SESSION, hash) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	oauth_prefix(wr->wr_tok, pfx);
	snprintf(uid, sizeof(uid), "%lld", (long long)wr->wr_user_id);
	snprintf(ttl, sizeof(ttl), "%d", W.wk_cf->cf_session_ttl);
	p[0] = hash;
	p[1] = pfx;
	p[2] = uid;
	p[3] = ttl;
	p[4] = wr->wr_has_session ? wr->wr_session : NULL;
	return web_query(c, signin_sql, 5, p, signin_done);
}

static void
signin_verified(struct conn *c, int ok, void *arg)
{
	struct web_req	*wr = (struct web_req *)c->c_pending_data;
	enum handler_result r = HANDLER_DONE;

	(void)arg;
	if (!ok || wr->wr_user_id == 0)
		signin_failed(c, wr, wr->wr_user_id == 0 ? "unknown user" :
		    "wrong password");
	else if (wr->wr_disabled)
		signin_failed(c, wr, "user disabled");
	else
		r = signin_open(c, wr);
	web_resume(c, r);
}

/* The user's row (or none): the limit, then argon2id off the loop. */
static void
signin_user(struct conn *c, PGresult *res, void *arg)
{
	struct web_req	*wr;
	const char	*pw, *hash = NULL;
	int		 wait, r;

	(void)arg;
	if ((wr = web_row(c, res)) == NULL)
		return;
	if ((wait = atoi(PQgetvalue(res, 0, 0))) > 0) {
		oauth_login_locked(wr->wr_user, NULL, peer_name(c));
		LOG(LVL_WARN, "login_rate_limited", KV_S("user", wr->wr_user),
		    KV_I("retry_after", wait), KV_S("peer", peer_name(c)));
		wr->wr_retry_after = wait;
		signin_again(c, wr, 429, "Too many failed sign-ins for this "
		    "user. Try again later.");
		web_resume(c, HANDLER_DONE);
		return;
	}
	if (!PQgetisnull(res, 0, 1)) {
		wr->wr_user_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		if (!PQgetisnull(res, 0, 2))
			hash = PQgetvalue(res, 0, 2);
		wr->wr_disabled = PQgetvalue(res, 0, 3)[0] == 't';
	}
	pw = form_get(&wr->wr_form, "password");
	r = hashpool_verify(W.wk_hashpool, c, hash, pw, strlen(pw),
	    signin_verified, NULL);
	if (r != 0) {
		wr->wr_retry_after = 1;
		web_error(c, wr, r == HASHPOOL_BUSY ? 429 : 503, "Try again",
		    "Too many sign-ins are in progress; try again in a "
		    "moment.");
	}
	web_resume(c, r == 0 ? HANDLER_PENDING : HANDLER_DONE);
}

enum handler_result
web_signin(struct conn *c)
{
	struct web_req	*wr;
	const char	*next, *name, *pw, *p[3];
	char		 max[16], window[16];

	if ((wr = web_req_new(c, 1)) == NULL)
		return HANDLER_DONE;
	if (!web_csrf_ok(c, wr))
		return web_done(c, HANDLER_DONE);
	next = form_get(&wr->wr_form, "next");
	name = form_get(&wr->wr_form, "username");
	pw = form_get(&wr->wr_form, "password");
	if (next == NULL || !signin_next_ok(next)) {
		web_error(c, wr, 400, "Bad request", "The sign-in form does "
		    "not say where to go next.");
		return web_done(c, HANDLER_DONE);
	}
	if (name == NULL || pw == NULL || name[0] == '\0') {
		signin_again(c, wr, 400, "Enter your user name and password.");
		return web_done(c, HANDLER_DONE);
	}
	/* A name no user can have: the same answer, no query (h_token.c). */
	if (!utf8_valid_str(name) || text_copy(wr->wr_user,
	    sizeof(wr->wr_user), name) == -1) {
		signin_failed(c, wr, "malformed user name");
		return web_done(c, HANDLER_DONE);
	}
	snprintf(max, sizeof(max), "%d", W.wk_cf->cf_login_max_failures);
	snprintf(window, sizeof(window), "%d", W.wk_cf->cf_login_window);
	p[0] = wr->wr_user;
	p[1] = max;
	p[2] = window;
	return web_done(c, web_query(c, oauth_login_sql, 3, p, signin_user));
}

/* ---- POST /logout ----------------------------------------------------------- */

static void
signed_out(struct conn *c, struct web_req *wr)
{
	wr->wr_clear_session = 1;
	web_page(c, wr, 200, "signed_out", "Signed out", NULL, 0);
}

static void
logout_done(struct conn *c, PGresult *res, void *arg)
{
	struct web_req	*wr = (struct web_req *)c->c_pending_data;

	(void)arg;
	if (res == NULL) {
		web_row(c, res);
		return;
	}
	if (PQntuples(res) == 1)
		LOG(LVL_INFO, "signed_out", KV_S("session",
		    PQgetvalue(res, 0, 0)), KV_S("peer", peer_name(c)));
	signed_out(c, wr);
	web_resume(c, HANDLER_DONE);
}

enum handler_result
web_logout(struct conn *c)
{
	struct web_req	*wr;
	const char	*p[1];

	if ((wr = web_req_new(c, 1)) == NULL)
		return HANDLER_DONE;
	if (!web_csrf_ok(c, wr))
		return web_done(c, HANDLER_DONE);
	if (!wr->wr_has_session) {
		signed_out(c, wr);
		return web_done(c, HANDLER_DONE);
	}
	p[0] = wr->wr_session;
	return web_done(c, web_query(c, logout_sql, 1, p, logout_done));
}

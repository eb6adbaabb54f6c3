/*
 * GET /authorize (RFC 6749 4.1, SPEC 11) and POST /consent.
 *
 * The client and its redirect URI are checked first (tokend_web_begin,
 * with the session of the cookie and the consent its user gave): when
 * either is unknown the answer is an error page, never a redirect, since
 * the URI cannot be trusted with the person's browser.  Every later error
 * goes back to the client as RFC 6749 4.1.2.1 says, with state and iss
 * (RFC 9207).  Then: no session (or prompt=login) is the sign-in page,
 * whose form brings the browser back here once signed in; consent not yet
 * given is the consent page, whose request waits in PostgreSQL under a
 * one-time ticket (web_tickets, migration 012), so a replayed form finds
 * nothing; otherwise the code, at once.  POST /authorize stays the
 * first-party JSON API (h_authorize.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/oauth/web.h"

static const char begin_sql[] =
    "SELECT o_status, o_client, o_public, o_first_party, o_code_ok, "
    "o_scope, o_session, o_user, coalesce(o_username, ''), "
    "coalesce(o_consent, '') FROM tokend.tokend_web_begin($1, $2, "
    "decode($3, 'hex'))";

static const char code_sql[] =
    "SELECT tokend.tokend_web_code($1::bigint, $2::bigint, $3::bigint, $4, $5, $6, "
    "decode($7, 'hex'), $8, $9::integer)";

static const char ticket_sql[] =
    "SELECT tokend.tokend_web_ticket(decode($1, 'hex'), $2::bigint, $3::bigint, "
    "NULL, $4, $5, $6, $7, $8::integer)";

static const char decide_sql[] =
    "SELECT o_status, coalesce(o_device, false), coalesce(o_redirect, ''), "
    "o_state, coalesce(o_client, ''), coalesce(o_user, ''), "
    "coalesce(o_scope, '') FROM tokend.tokend_web_decide(decode($1, 'hex'), "
    "decode($2, 'hex'), $3::boolean, decode($4, 'hex'), $5, $6::integer)";

/* The request's parameters that the sign-in page carries back here. */
static const char *const az_params[] = {
	"response_type", "client_id", "redirect_uri", "scope", "state",
	"code_challenge", "code_challenge_method",
};
#define AZ_NPARAMS	(sizeof(az_params) / sizeof(az_params[0]))

static const char *
az_get(const struct web_req *wr, const char *name)
{
	return form_get(&wr->wr_form, name);
}

/* The state to send back: absent, or not one a client could have sent. */
static const char *
az_state(const struct web_req *wr)
{
	const char	*st = az_get(wr, "state");

	if (st == NULL || strlen(st) > OA_STATE_MAX || !utf8_valid_str(st))
		return NULL;
	return st;
}

static void
az_fail(struct conn *c, struct web_req *wr, const char *error,
    const char *desc)
{
	const char	*kv[6] = { "error", error, "error_description", desc,
			    "state", az_state(wr) };

	web_redirect_client(c, wr, az_get(wr, "redirect_uri"), kv, 3);
}

/* The origin of the redirect URI (scheme://authority), which the pages'
 * form-action allows, since the answer to their forms redirects there. */
static void
az_form_src(struct web_req *wr, const char *uri)
{
	const char	*p = strstr(uri, "://"), *e;
	size_t		 n;

	wr->wr_form_src[0] = '\0';
	if (p == NULL)
		return;
	e = p + 3 + strcspn(p + 3, "/?#");
	n = (size_t)(e - uri);
	if (n >= sizeof(wr->wr_form_src) || !text_word_ok(uri, n, ":/.-[]+"))
		return;
	memcpy(wr->wr_form_src, uri, n);
	wr->wr_form_src[n] = '\0';
}

/* RFC 7636: S256 only; required of public clients. */
static const char *
az_pkce_error(const struct web_req *wr)
{
	const char	*ch = az_get(wr, "code_challenge");
	const char	*m = az_get(wr, "code_challenge_method");

	if (ch == NULL && m != NULL)
		return "code_challenge_method without code_challenge";
	if (ch == NULL)
		return wr->wr_public ? "a public client must use PKCE: "
		    "code_challenge with code_challenge_method S256" : NULL;
	if (m == NULL || strcmp(m, "S256") != 0)
		return "code_challenge_method must be S256 (plain is refused)";
	if (!oauth_pkce_challenge_ok(ch))
		return "code_challenge is not a base64url SHA-256";
	return NULL;
}

/* The request's own errors, once the client is known.  0, or -1 after
 * the redirect that says which. */
static int
az_check(struct conn *c, struct web_req *wr)
{
	const char	*rt = az_get(wr, "response_type");
	const char	*sc = az_get(wr, "scope"), *pr = az_get(wr, "prompt");
	const char	*why;

	if (rt == NULL || az_get(wr, "state") != az_state(wr))
		why = "response_type is missing, or state is too long";
	else if (strcmp(rt, "code") != 0) {
		az_fail(c, wr, "unsupported_response_type", "only "
		    "response_type=code is supported");
		return -1;
	} else if ((why = az_pkce_error(wr)) == NULL && pr != NULL &&
	    strcmp(pr, "login") != 0 && strcmp(pr, "none") != 0 &&
	    strcmp(pr, "consent") != 0)
		why = "prompt must be login, none or consent";
	if (why != NULL) {
		az_fail(c, wr, "invalid_request", why);
		return -1;
	}
	if (sc == NULL)
		snprintf(wr->wr_scope, sizeof(wr->wr_scope), "%s",
		    wr->wr_client_scope);
	if ((sc != NULL && scope_normalize(sc, wr->wr_scope,
	    sizeof(wr->wr_scope)) != 0) || !scope_subset(wr->wr_scope,
	    wr->wr_client_scope)) {
		az_fail(c, wr, "invalid_scope", "the requested scope exceeds "
		    "the client's");
		return -1;
	}
	return 0;
}

/* The sign-in page, whose form comes back to this request (without
 * prompt: the person has just signed in). */
static void
az_signin(struct conn *c, struct web_req *wr)
{
	const char	*kv[2 * AZ_NPARAMS];
	char		 next[WEB_NEXT_MAX];
	size_t		 i;

	for (i = 0; i < AZ_NPARAMS; i++) {
		kv[2 * i] = az_params[i];
		kv[2 * i + 1] = az_get(wr, az_params[i]);
	}
	if (oauth_redirect_with("/authorize", kv, AZ_NPARAMS, next,
	    sizeof(next)) == -1) {
		az_fail(c, wr, "invalid_request", "the request is too long");
		return;
	}
	web_signin_page(c, wr, 200, next, az_get(wr, "client_id"), NULL, NULL);
}

static void
az_coded(struct conn *c, PGresult *res, void *arg)
{
	struct web_req	*wr;
	char		 pfx[TOKEN_DISPLAY_LEN + 1];
	const char	*kv[4];

	(void)arg;
	if ((wr = web_row(c, res)) == NULL)
		return;
	oauth_prefix(wr->wr_tok, pfx);
	LOG(LVL_INFO, "token_issued", KV_S("grant", "browser"),
	    KV_S("client", az_get(wr, "client_id")), KV_S("user", wr->wr_user),
	    KV_S("code", pfx), KV_S("scope", wr->wr_scope));
	kv[0] = "code";
	kv[1] = wr->wr_tok;
	kv[2] = "state";
	kv[3] = az_state(wr);
	web_redirect_client(c, wr, az_get(wr, "redirect_uri"), kv, 2);
	web_resume(c, HANDLER_DONE);
}

static void
az_ticketed(struct conn *c, PGresult *res, void *arg)
{
	struct web_req	*wr;

	(void)arg;
	if ((wr = web_row(c, res)) == NULL)
		return;
	web_consent_page(c, wr, az_get(wr, "client_id"), wr->wr_user,
	    wr->wr_scope);
	web_resume(c, HANDLER_DONE);
}

/* Signed in, consent given or not needed: the code; else the ticket of
 * the consent page. */
static enum handler_result
az_issue(struct conn *c, struct web_req *wr, int consent)
{
	char		 hash[WEB_HEX], pfx[TOKEN_DISPLAY_LEN + 1], ttl[16];
	char		 uid[24];
	const char	*p[9];

	if (web_mint(wr, consent ? TOKEN_SESSION : TOKEN_CODE, hash) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	oauth_prefix(wr->wr_tok, pfx);
	snprintf(uid, sizeof(uid), "%lld", (long long)wr->wr_user_id);
	if (consent) {
		snprintf(ttl, sizeof(ttl), "%d", WEB_TICKET_TTL);
		p[0] = hash;
		p[1] = wr->wr_session_id;
		p[2] = wr->wr_client_pk;
		p[3] = wr->wr_scope;
		p[4] = az_get(wr, "redirect_uri");
		p[5] = az_state(wr);
		p[6] = az_get(wr, "code_challenge");
		p[7] = ttl;
		return web_query(c, ticket_sql, 8, p, az_ticketed);
	}
	snprintf(ttl, sizeof(ttl), "%d", W.wk_cf->cf_code_ttl);
	p[0] = wr->wr_client_pk;
	p[1] = uid;
	p[2] = wr->wr_session_id;
	p[3] = wr->wr_scope;
	p[4] = az_get(wr, "redirect_uri");
	p[5] = az_get(wr, "code_challenge");
	p[6] = hash;
	p[7] = pfx;
	p[8] = ttl;
	return web_query(c, code_sql, 9, p, az_coded);
}

/* The client is known and the redirect URI its own: what now. */
static enum handler_result
az_decide(struct conn *c, struct web_req *wr, int code_ok)
{
	const char	*pr = az_get(wr, "prompt");
	int		 none = pr != NULL && strcmp(pr, "none") == 0, consent;

	if (az_check(c, wr) == -1)
		return HANDLER_DONE;
	if (!code_ok) {
		az_fail(c, wr, "unauthorized_client", "this client may not "
		    "use the authorization code grant");
		return HANDLER_DONE;
	}
	if (wr->wr_user_id == 0 || (pr != NULL && strcmp(pr, "login") == 0)) {
		if (none)
			az_fail(c, wr, "login_required", "the user is not "
			    "signed in");
		else
			az_signin(c, wr);
		return HANDLER_DONE;
	}
	consent = (pr != NULL && strcmp(pr, "consent") == 0) ||
	    (!wr->wr_first_party && !scope_subset(wr->wr_scope,
	    wr->wr_consent));
	if (consent && none) {
		az_fail(c, wr, "consent_required", "the user has not "
		    "consented to this client and scope");
		return HANDLER_DONE;
	}
	return az_issue(c, wr, consent);
}

static void
az_begun(struct conn *c, PGresult *res, void *arg)
{
	struct web_req	*wr;
	const char	*st;

	(void)arg;
	if ((wr = web_row(c, res)) == NULL)
		return;
	st = PQgetvalue(res, 0, 0);
	if (strcmp(st, "ok") != 0) {
		web_error(c, wr, 400, "Unknown application", "The application "
		    "that sent you here is not registered, or gave an address "
		    "it did not register. Nothing was shared with it.");
		web_resume(c, HANDLER_DONE);
		return;
	}
	snprintf(wr->wr_client_pk, sizeof(wr->wr_client_pk), "%s",
	    PQgetvalue(res, 0, 1));
	wr->wr_public = PQgetvalue(res, 0, 2)[0] == 't';
	wr->wr_first_party = PQgetvalue(res, 0, 3)[0] == 't';
	snprintf(wr->wr_client_scope, sizeof(wr->wr_client_scope), "%s",
	    PQgetvalue(res, 0, 5));
	snprintf(wr->wr_session_id, sizeof(wr->wr_session_id), "%s",
	    PQgetvalue(res, 0, 6));
	wr->wr_user_id = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
	snprintf(wr->wr_user, sizeof(wr->wr_user), "%s", PQgetvalue(res, 0, 8));
	snprintf(wr->wr_consent, sizeof(wr->wr_consent), "%s",
	    PQgetvalue(res, 0, 9));
	az_form_src(wr, az_get(wr, "redirect_uri"));
	web_resume(c, az_decide(c, wr, PQgetvalue(res, 0, 4)[0] == 't'));
}

enum handler_result
web_authorize(struct conn *c)
{
	struct web_req	*wr;
	const char	*id, *uri, *p[3];

	if (c->c_req.rq_method == HTTP_POST)
		return h_authorize(c);
	if ((wr = web_req_new(c, 0)) == NULL)
		return HANDLER_DONE;
	id = az_get(wr, "client_id");
	uri = az_get(wr, "redirect_uri");
	if (id == NULL || uri == NULL || strlen(id) > OA_CLIENT_ID_MAX ||
	    strlen(uri) > OA_URI_MAX || !utf8_valid_str(id) ||
	    !utf8_valid_str(uri)) {
		web_error(c, wr, 400, "Unknown application", "The request "
		    "names no registered application (client_id) or no "
		    "address to return to (redirect_uri).");
		return web_done(c, HANDLER_DONE);
	}
	p[0] = id;
	p[1] = uri;
	p[2] = wr->wr_has_session ? wr->wr_session : NULL;
	return web_done(c, web_query(c, begin_sql, 3, p, az_begun));
}

/* ---- POST /consent --------------------------------------------------------- */

static void
consent_device(struct conn *c, struct web_req *wr, PGresult *res, int allow)
{
	struct html_var	 v[2] = {
		{ "title", allow ? "Device connected" : "Access denied",
		    HV_TEXT },
		{ "message", allow ? "The device is now signed in." :
		    "The device was not given access.", HV_TEXT },
	};

	if (allow)
		LOG(LVL_INFO, "device_approved", KV_S("client",
		    PQgetvalue(res, 0, 4)), KV_S("user", PQgetvalue(res, 0, 5)),
		    KV_S("scope", PQgetvalue(res, 0, 6)),
		    KV_S("peer", peer_name(c)));
	web_page(c, wr, 200, "device_done", v[0].hv_value, v, 2);
}

static void
consent_decided(struct conn *c, PGresult *res, void *arg)
{
	struct web_req	*wr;
	const char	*st, *kv[6];
	int		 allow;

	(void)arg;
	if ((wr = web_row(c, res)) == NULL)
		return;
	st = PQgetvalue(res, 0, 0);
	allow = strcmp(st, "allowed") == 0;
	if (!allow && strcmp(st, "denied") != 0) {
		web_error(c, wr, 400, "Request expired", "This request was "
		    "already answered, or it has expired. Start again from "
		    "the application.");
		web_resume(c, HANDLER_DONE);
		return;
	}
	LOG(LVL_INFO, allow ? "consent_given" : "consent_denied",
	    KV_S("client", PQgetvalue(res, 0, 4)),
	    KV_S("user", PQgetvalue(res, 0, 5)),
	    KV_S("scope", PQgetvalue(res, 0, 6)), KV_S("peer", peer_name(c)));
	if (PQgetvalue(res, 0, 1)[0] == 't')
		consent_device(c, wr, res, allow);
	else {
		kv[0] = allow ? "code" : "error";
		kv[1] = allow ? wr->wr_tok : "access_denied";
		kv[2] = "state";
		kv[3] = PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3);
		web_redirect_client(c, wr, PQgetvalue(res, 0, 2), kv, 2);
	}
	web_resume(c, HANDLER_DONE);
}

enum handler_result
web_consent(struct conn *c)
{
	struct web_req	*wr;
	const char	*tk, *dec, *p[6];
	char		 thash[WEB_HEX], chash[WEB_HEX], ttl[16];
	char		 pfx[TOKEN_DISPLAY_LEN + 1];
	int		 allow;

	if ((wr = web_req_new(c, 1)) == NULL)
		return HANDLER_DONE;
	if (!web_csrf_ok(c, wr))
		return web_done(c, HANDLER_DONE);
	tk = form_get(&wr->wr_form, "ticket");
	dec = form_get(&wr->wr_form, "decision");
	if (tk == NULL || dec == NULL || token_check(tk, strlen(tk)) !=
	    TOKEN_SESSION || (strcmp(dec, "allow") != 0 &&
	    strcmp(dec, "deny") != 0)) {
		web_error(c, wr, 400, "Bad request", "The form is incomplete.");
		return web_done(c, HANDLER_DONE);
	}
	allow = strcmp(dec, "allow") == 0;
	oauth_hash_hex(tk, thash);
	if (allow && web_mint(wr, TOKEN_CODE, chash) == -1) {
		oauth_unavailable(c);
		return web_done(c, HANDLER_DONE);
	}
	if (allow)
		oauth_prefix(wr->wr_tok, pfx);
	snprintf(ttl, sizeof(ttl), "%d", W.wk_cf->cf_code_ttl);
	p[0] = thash;
	p[1] = wr->wr_has_session ? wr->wr_session : NULL;
	p[2] = allow ? "true" : "false";
	p[3] = allow ? chash : NULL;
	p[4] = allow ? pfx : NULL;
	p[5] = ttl;
	return web_done(c, web_query(c, decide_sql, 6, p, consent_decided));
}

/*
 * POST /authorize: the first-party API form of the authorization endpoint
 * (SPEC section 4).  The user's own access token (Bearer) says who
 * authorizes; the JSON body names the client, its exact redirect URI, the
 * scope, state and the PKCE S256 challenge (required for public clients;
 * "plain" is refused).  One PL/pgSQL call (tokend_authorize) checks the
 * bearer token again, the client, and stores the code's hash; the answer
 * is the tkc_ code and the redirect URI with code and state appended.
 *
 * The bearer token grants no more than it holds: only an access token
 * issued to a first-party client may call this (else 403
 * insufficient_scope; the flag is read by tokend_authorize, since the cache
 * does not hold it), and the code's scope lies within the token's (without
 * "scope": the token's scope and the client's in common).
 *
 * Errors are JSON, never a redirect: a caller that cannot be sure the
 * redirect URI is the client's must not be sent there.  A body that is not
 * application/json is 415; a malformed one 400.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

#define ACCESS_ONLY	(1u << TOKEN_ACCESS)

static const char authorize_sql[] =
    "SELECT o_status, coalesce(o_scope, ''), o_id "
    "FROM tokend.tokend_authorize($1, $2, $3, $4::bigint, decode($5, 'hex'), $6, "
    "$7, $8::integer, $9::bigint)";

/* The request's state, in c_pending_data. */
struct az_wait {
	struct pending	 az_pd;		/* first */
	struct authorize_req az_req;
	char		 az_user[TI_USER_LEN];
	char		 az_code[TOKEN_LEN + 1];
};


static void
az_answer(struct conn *c, struct az_wait *az, PGresult *res)
{
	const struct authorize_req *ar = &az->az_req;
	char		 to[OA_URI_MAX + OA_STATE_MAX * 3 + CF_URL_LEN * 3 + 128];
	char		 pfx[TOKEN_DISPLAY_LEN + 1];

	if (oauth_redirect_to(ar->ar_redirect_uri, az->az_code,
	    ar->ar_has_state ? ar->ar_state : NULL, W.wk_cf->cf_issuer, to,
	    sizeof(to)) == -1) {
		oauth_api_error(c, 400, "invalid_request", "redirect_uri and state "
		    "are too long");
		return;
	}
	oauth_prefix(az->az_code, pfx);
	LOG(LVL_INFO, "token_issued", KV_S("grant", "authorize"),
	    KV_S("client", ar->ar_client_id), KV_S("user", az->az_user),
	    KV_S("code", pfx), KV_S("scope", PQgetvalue(res, 0, 1)));
	oauth_api_json(c, 200, json_pack("{s:s, s:s}", "code", az->az_code,
	    "redirect_to", to));
}

static void
authorized(struct conn *c, PGresult *res, void *arg)
{
	struct az_wait	*az;
	const char	*st;

	(void)arg;
	az = (struct az_wait *)c->c_pending_data;
	st = res != NULL && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "";
	if (res == NULL || PQntuples(res) != 1)
		oauth_unavailable(c);
	else if (strcmp(st, "ok") == 0)
		az_answer(c, az, res);
	else if (strcmp(st, "unknown_client") == 0)
		oauth_api_error(c, 400, "invalid_request", "unknown client_id");
	else if (strcmp(st, "bad_redirect_uri") == 0)
		oauth_api_error(c, 400, "invalid_request", "redirect_uri is not one "
		    "registered for this client");
	else if (strcmp(st, "pkce_required") == 0)
		oauth_api_error(c, 400, "invalid_request", "a public client must use "
		    "PKCE: code_challenge with code_challenge_method S256");
	else if (strcmp(st, "invalid_scope") == 0)
		oauth_api_error(c, 400, "invalid_scope", "the requested scope exceeds "
		    "the client's or the access token's");
	else if (strcmp(st, "not_first_party") == 0)
		auth_bearer_forbidden(c, "only an access token issued to a "
		    "first-party client may authorize");
	else if (strcmp(st, "invalid_user") == 0)
		auth_bearer_denied(c, "the user is disabled");
	else
		auth_bearer_denied(c, "the token is unknown, expired or "
		    "revoked");
	worker_pending_done(c, HANDLER_DONE);
	worker_resume(c);
}

/*
 * What the worker knows of the bearer token: a user's valid access token
 * holding the requested scope.  1, or 0 after answering.  Its client's
 * first-party flag is not in the cache: tokend_authorize checks it.
 */
static int
authorize_bearer_ok(struct conn *c, const struct authorize_req *ar,
    const struct tok_info *ti)
{
	if (!auth_bearer_check(c, ti, ACCESS_ONLY))
		return 0;
	if (ti->ti_user_id == 0) {
		auth_bearer_denied(c, "a user's access token is required");
		return 0;
	}
	if (ar->ar_has_scope && !scope_subset(ar->ar_scope, ti->ti_scope)) {
		oauth_api_error(c, 400, "invalid_scope", "the requested scope exceeds "
		    "the access token's");
		return 0;
	}
	return 1;
}

/* The bearer token is the user's: store a code for them. */
static enum handler_result
authorize_go(struct conn *c, const struct tok_info *ti)
{
	struct az_wait	*az = (struct az_wait *)c->c_pending_data;
	const struct authorize_req *ar = &az->az_req;
	char		 uid[24], hash[2 * TOKEN_HASH_LEN + 1], ttl[16];
	char		 pfx[TOKEN_DISPLAY_LEN + 1], tid[24];
	const char	*p[9];

	if (!authorize_bearer_ok(c, ar, ti))
		return HANDLER_DONE;
	snprintf(az->az_user, sizeof(az->az_user), "%s", ti->ti_user);
	if (token_generate(TOKEN_CODE, az->az_code) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	snprintf(uid, sizeof(uid), "%lld", (long long)ti->ti_user_id);
	oauth_hash_hex(az->az_code, hash);
	oauth_prefix(az->az_code, pfx);
	snprintf(ttl, sizeof(ttl), "%d", W.wk_cf->cf_code_ttl);
	snprintf(tid, sizeof(tid), "%lld", (long long)ti->ti_id);
	p[0] = ar->ar_client_id;
	p[1] = ar->ar_redirect_uri;
	p[2] = ar->ar_has_scope ? ar->ar_scope : NULL;
	p[3] = uid;
	p[4] = hash;
	p[5] = pfx;
	p[6] = ar->ar_has_challenge ? ar->ar_challenge : NULL;
	p[7] = ttl;
	p[8] = tid;
	return oauth_query(c, authorize_sql, 9, p, authorized);
}

static void
authorize_bearer(struct conn *c, const struct tok_info *ti)
{
	c->c_pending = NULL;
	if (worker_pending_done(c, authorize_go(c, ti)) == HANDLER_DONE)
		worker_resume(c);
}

enum handler_result
h_authorize(struct conn *c)
{
	const struct http_req *rq = &c->c_req;
	struct az_wait	*az;
	struct tok_info	 ti;
	const char	*err, *why;
	int		 r;

	if (!oauth_ctype_is(rq->rq_content_type, "application/json")) {
		oauth_api_error(c, 415, "invalid_request", "the body must be "
		    "application/json");
		return HANDLER_DONE;
	}
	if ((az = calloc(1, sizeof(*az))) == NULL) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	/* The new code is wiped with the state. */
	az->az_pd.pd_free = worker_pending_wipe;
	az->az_pd.pd_size = sizeof(*az);
	/* Parsed now: the body may not outlive a wait for the lookup. */
	if (oauth_parse_authorize(c->c_in + c->c_inoff + rq->rq_header_bytes,
	    rq->rq_content_length, &az->az_req, &err, &why) == -1) {
		free(az);
		oauth_api_error(c, 400, err, why);
		return HANDLER_DONE;
	}
	c->c_pending_data = &az->az_pd;
	r = auth_bearer_begin(c, ACCESS_ONLY, &ti, authorize_bearer);
	if (r == 2)
		return HANDLER_PENDING;
	return worker_pending_done(c, r == 1 ? authorize_go(c, &ti) : HANDLER_DONE);
}

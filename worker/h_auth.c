/*
 * GET /auth: validate a bearer token for nginx auth_request (SPEC section 4).
 *
 * The hit path: Authorization header -> format and checksum (no I/O) ->
 * SHA-256 -> one LMDB read -> expiry and scope checks -> one usage record in
 * this worker's own shm slot -> 200.  No PostgreSQL, no lock shared with
 * another worker, no allocation.
 *
 * A miss parks the connection on the worker's PostgreSQL lookup (lookup.c)
 * and answers when the row arrives, or 503 if PostgreSQL cannot be asked:
 * never 200 without verification, never 401 for a token not checked.
 *
 * Bounded staleness (SPEC 5): a hit is trusted while the writer's
 * revocation feed confirmed a round trip within max_revocation_lag (one
 * load of sh_feed_ok_ms, before the cache read); past that it is verified
 * like a miss (auth_hit), and when PostgreSQL cannot answer the cached
 * answer stands until stale_cache_ttl after that confirmation, then 503.
 *
 * auth_bearer_begin and auth_bearer_check give the same validation to the
 * endpoints that act for a user (/authorize, /pats).
 *
 * SPEC 13 on the same path, from the cache entry alone: a PAT's allowlist
 * (a client address outside it gets exactly the 401 of an unknown token,
 * and the operator a token_ip_refused line), its rate limit (a CAS on one
 * shared word, shm/ratelimit.c; past it 403 X-Auth-Error: rate_limited
 * with Retry-After, which nginx cannot pass on from auth_request, so
 * contrib/nginx maps it to 429), and the client address recorded with the
 * use.  A canary is a negative entry with a flag: every path answers it as
 * unknown, and peer_canary tells the operator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/lookup.h"
#include "worker/worker.h"

#define REQ_SCOPE_LEN 1024

/* What a parked /auth request needs when its answer comes back. */
struct auth_wait {
	struct pending	 aw_pd;				/* first */
	char		 aw_scope[REQ_SCOPE_LEN];	/* required scopes */
	char		 aw_prefix[TOKEN_DISPLAY_LEN + 1];
};

static const char auth_kind_refused[] =
    "this endpoint does not accept this kind of token";

/* aw_pd's free: nothing secret in it. */
static void
auth_wait_free(struct pending *pd)
{
	free(pd);
}

static void
auth_challenge(struct conn *c, int status, const char *error,
    const char *desc, const char *scope)
{
	resp_start(c, status);
	if (error == NULL)
		resp_header(c, "WWW-Authenticate", "Bearer realm=\"tokend\"");
	else if (scope == NULL)
		resp_headerf(c, "WWW-Authenticate",
		    "Bearer realm=\"tokend\", error=\"%s\"", error);
	else
		resp_headerf(c, "WWW-Authenticate", "Bearer realm=\"tokend\", "
		    "error=\"%s\", scope=\"%s\"", error, scope);
	resp_header(c, "Cache-Control", "no-store");
	resp_error_end(c, error ? error : "unauthorized", desc);
}

static void
auth_unavailable(struct conn *c)
{
	resp_start(c, 503);
	resp_header(c, "Retry-After", "1");
	resp_error_end(c, "temporarily_unavailable",
	    "PostgreSQL is unreachable and the token cannot be verified");
}

/*
 * Both usage tables of this worker are full: the writer is far behind
 * PostgreSQL, and a 200 now would be a use never counted (SPEC 6).  The
 * client retries; tokens already in the table keep being answered.
 * /introspect answers the same (worker.h).
 */
void
auth_usage_full(struct conn *c)
{
	static int64_t	 logged_ms;

	if (W.wk_wall_ms - logged_ms >= 1000) {
		logged_ms = W.wk_wall_ms;
		LOG(LVL_WARN, "usage_full", KV_S("reason", "both usage tables "
		    "are full: new tokens get 503 until the writer catches up"));
	}
	resp_start(c, 503);
	resp_header(c, "Cache-Control", "no-store");
	resp_header(c, "Retry-After", "1");
	resp_error_end(c, "temporarily_unavailable",
	    "usage accounting is behind; retry in a moment");
}

static void
auth_unknown(struct conn *c)
{
	auth_challenge(c, 401, "invalid_token",
	    "the token is unknown, expired or revoked", NULL);
}

/* A PAT with an allowlist presented from elsewhere (SPEC 13). */
static void
auth_ip_refused(struct conn *c, const struct tok_info *ti,
    const char *prefix)
{
	char	 addr[IP_STR_LEN];

	peer_client_str(c, addr);
	LOG(LVL_WARN, "token_ip_refused", KV_I("token_id", ti->ti_id),
	    KV_S("token", prefix), KV_S("address", addr));
	auth_unknown(c);
}

static void
auth_rate_limited(struct conn *c, int wait)
{
	ctr_add(&W.wk_slot->sl_rate_limited, 1);
	resp_start(c, 403);
	resp_header(c, "X-Auth-Error", "rate_limited");
	resp_header_i64(c, "Retry-After", wait);
	resp_header(c, "Cache-Control", "no-store");
	resp_error_end(c, "rate_limited", "the token's rate limit is reached");
}

/* The answer for a token we have facts about (cache hit or fresh row). */
static void
auth_answer(struct conn *c, const struct tok_info *ti, const char *need,
    const char *prefix)
{
	uint8_t	 ip[IP_LEN];
	int	 has_ip, wait;

	resp_log_token(c, ti);
	if (ti->ti_state != TI_VALID ||
	    (ti->ti_expires != 0 && ti->ti_expires <= W.wk_now) ||
	    (ti->ti_kind != TOKEN_ACCESS && ti->ti_kind != TOKEN_PAT)) {
		auth_unknown(c);
		return;
	}
	has_ip = peer_client(c, ip) == 0;
	if (ti->ti_nallow > 0 && (!has_ip ||
	    !cidr_match_any(ti->ti_allow, ti->ti_nallow, ip))) {
		auth_ip_refused(c, ti, prefix);
		return;
	}
	if (!scope_subset(need, ti->ti_scope)) {
		auth_challenge(c, 403, "insufficient_scope",
		    "the token lacks a required scope", need);
		return;
	}
	if (ti->ti_rate != 0 && (wait = ratelimit_token(W.wk_shm, ti->ti_id,
	    W.wk_now, ti->ti_rate, ti->ti_rate_window)) > 0) {
		auth_rate_limited(c, wait);
		return;
	}
	/* Count the use before the 200 leaves: see shm/README.md. */
	if (usage_record(W.wk_slot, ti->ti_id, W.wk_wall_ms,
	    has_ip ? ip : NULL) == -1) {
		auth_usage_full(c);
		return;
	}
	resp_start(c, 200);
	resp_header(c, "X-Auth-User", ti->ti_user);
	if (ti->ti_user_id != 0)
		resp_header_i64(c, "X-Auth-User-Id", ti->ti_user_id);
	else
		resp_header(c, "X-Auth-User-Id", "");
	resp_header(c, "X-Auth-Client", ti->ti_client);
	resp_header(c, "X-Auth-Scope", ti->ti_scope);
	resp_header_i64(c, "X-Auth-Token-Id", ti->ti_id);
	resp_header(c, "X-Auth-Token-Kind",
	    ti->ti_kind == TOKEN_PAT ? "pat" : "access");
	resp_header_i64(c, "X-Auth-Expires", ti->ti_expires);
	resp_header(c, "Cache-Control", "no-store");
	resp_end(c, NULL, NULL, 0);
}

static void
auth_resolved(struct conn *c, const struct tok_info *ti)
{
	struct auth_wait *aw = (struct auth_wait *)c->c_pending_data;

	c->c_pending = NULL;
	if (ti == NULL)
		auth_unavailable(c);
	else
		auth_answer(c, ti, aw ? aw->aw_scope : "",
		    aw ? aw->aw_prefix : "");
	worker_pending_free(c);
	worker_resume(c);
}

/*
 * The ?scope= requirement, decoded into need as a canonical scope list.
 * Returns 0, -1 for a bad query string, or -2 for a scope that is not an
 * RFC 6749 3.3 list: it is echoed in WWW-Authenticate, so a CR LF in it
 * would split the response.
 */
static int
required_scope(const struct http_req *rq, char *need, size_t needlen)
{
	struct form	 fm;
	char		 arena[REQ_SCOPE_LEN + 2 * FORM_MAX_FIELDS];
	const char	*s;

	need[0] = '\0';
	if (rq->rq_query.s_len == 0)
		return 0;
	if (rq->rq_query.s_len > REQ_SCOPE_LEN ||
	    form_parse(rq->rq_query.s_ptr, rq->rq_query.s_len, &fm, arena,
	    sizeof(arena)) == -1)
		return -1;
	if ((s = form_get(&fm, "scope")) != NULL &&
	    scope_normalize(s, need, needlen) != 0)
		return -2;
	return 0;
}

/*
 * r: 2 when c is parked on the lookup (the required scope goes with it), -1
 * when it could not be (503).
 */
static enum handler_result
auth_park(struct conn *c, int r, const char *need, const char *prefix)
{
	struct auth_wait *aw = NULL;

	if (r == 2 && (aw = malloc(sizeof(*aw))) == NULL)
		lookup_cancel(W.wk_lookup, c);
	if (aw == NULL) {
		auth_unavailable(c);
		return HANDLER_DONE;
	}
	aw->aw_pd.pd_free = auth_wait_free;
	snprintf(aw->aw_scope, sizeof(aw->aw_scope), "%s", need);
	snprintf(aw->aw_prefix, sizeof(aw->aw_prefix), "%s", prefix);
	c->c_pending_data = &aw->aw_pd;
	return HANDLER_PENDING;
}

int
auth_hit(struct conn *c, const uint8_t hash[TOKEN_HASH_LEN],
    const struct tok_info *ti, int64_t ok, bearer_cb cb)
{
	if (ti->ti_flags & TI_F_CANARY)
		peer_canary(c, ti);
	if (ti->ti_state != TI_VALID || auth_feed_fresh(ok))
		return 1;
	ctr_add(&W.wk_slot->sl_cache_verified, 1);
	if (lookup_verify(W.wk_lookup, c, hash, ti, cb) == 0)
		return 2;
	return lookup_stale_ok() ? 1 : -1;
}

enum handler_result
h_auth(struct conn *c)
{
	struct http_str	 tok;
	struct tok_info	 ti;
	uint8_t		 hash[TOKEN_HASH_LEN];
	char		 need[REQ_SCOPE_LEN], prefix[TOKEN_DISPLAY_LEN + 1];
	enum token_kind	 kind;
	int64_t		 ok;
	int		 r;

	if ((r = required_scope(&c->c_req, need, sizeof(need))) != 0) {
		resp_error(c, 400, "invalid_request", r == -1 ?
		    "bad query string" : "scope must be scope-tokens (RFC 6749 "
		    "3.3) separated by spaces");
		return HANDLER_DONE;
	}
	if (!http_bearer(c->c_req.rq_authorization, &tok)) {
		auth_challenge(c, 401, NULL, "a bearer token is required",
		    NULL);
		return HANDLER_DONE;
	}
	kind = token_check(tok.s_ptr, tok.s_len);
	if (kind != TOKEN_ACCESS && kind != TOKEN_PAT) {
		auth_challenge(c, 401, "invalid_token", "malformed token",
		    NULL);
		return HANDLER_DONE;
	}
	token_hash(tok.s_ptr, tok.s_len, hash);
	memcpy(prefix, tok.s_ptr, TOKEN_DISPLAY_LEN);
	prefix[TOKEN_DISPLAY_LEN] = '\0';
	ok = auth_feed_mark();
	r = W.wk_cache ? cache_get(W.wk_cache, hash, &ti) : -1;
	if (r == 1 && ti.ti_until > W.wk_now) {
		ctr_add(ti.ti_state == TI_VALID ? &W.wk_slot->sl_cache_hits :
		    &W.wk_slot->sl_cache_negative_hits, 1);
		if ((r = auth_hit(c, hash, &ti, ok, auth_resolved)) == 1) {
			auth_answer(c, &ti, need, prefix);
			return HANDLER_DONE;
		}
	} else {
		ctr_add(&W.wk_slot->sl_cache_misses, 1);
		r = lookup_submit(W.wk_lookup, c, hash, auth_resolved) == 0 ?
		    2 : -1;
	}
	return auth_park(c, r, need, prefix);
}

/* ---- bearer validation for other endpoints (worker.h) ------------------- */

int
auth_bearer_begin(struct conn *c, unsigned kinds, struct tok_info *ti,
    bearer_cb cb)
{
	struct http_str	 tok;
	uint8_t		 hash[TOKEN_HASH_LEN];
	enum token_kind	 kind;
	int64_t		 ok;

	if (!http_bearer(c->c_req.rq_authorization, &tok)) {
		auth_challenge(c, 401, NULL, "a bearer token is required",
		    NULL);
		return 0;
	}
	kind = token_check(tok.s_ptr, tok.s_len);
	/* A PAT is looked up even where it is refused: it may be a canary,
	 * which must be seen (and answered as unknown) wherever it shows. */
	if (kind == TOKEN_INVALID || ((kinds & (1u << kind)) == 0 &&
	    kind != TOKEN_PAT)) {
		auth_challenge(c, 401, "invalid_token", kind == TOKEN_INVALID ?
		    "malformed token" : auth_kind_refused, NULL);
		return 0;
	}
	token_hash(tok.s_ptr, tok.s_len, hash);
	ok = auth_feed_mark();
	if (W.wk_cache != NULL && cache_get(W.wk_cache, hash, ti) == 1 &&
	    ti->ti_until > W.wk_now) {
		ctr_add(ti->ti_state == TI_VALID ? &W.wk_slot->sl_cache_hits :
		    &W.wk_slot->sl_cache_negative_hits, 1);
		switch (auth_hit(c, hash, ti, ok, cb)) {
		case 1:
			return 1;
		case 2:
			return 2;
		default:
			auth_unavailable(c);
			return 0;
		}
	}
	ctr_add(&W.wk_slot->sl_cache_misses, 1);
	if (lookup_submit(W.wk_lookup, c, hash, cb) == -1) {
		auth_unavailable(c);
		return 0;
	}
	return 2;
}

void
auth_bearer_denied(struct conn *c, const char *desc)
{
	auth_challenge(c, 401, "invalid_token", desc, NULL);
}

void
auth_bearer_forbidden(struct conn *c, const char *desc)
{
	auth_challenge(c, 403, "insufficient_scope", desc, NULL);
}

int
auth_bearer_check(struct conn *c, const struct tok_info *ti, unsigned kinds)
{
	if (ti == NULL) {
		auth_unavailable(c);
		return 0;
	}
	if (ti->ti_state != TI_VALID ||
	    (ti->ti_expires != 0 && ti->ti_expires <= W.wk_now) ||
	    ti->ti_kind <= TOKEN_INVALID || ti->ti_kind > TOKEN_CODE) {
		auth_unknown(c);
		return 0;
	}
	if ((kinds & (1u << ti->ti_kind)) == 0) {
		auth_challenge(c, 401, "invalid_token", auth_kind_refused,
		    NULL);
		return 0;
	}
	resp_log_token(c, ti);
	return 1;
}

/*
 * The PAT API (SPEC section 4): POST /pats, GET /pats, DELETE /pats/ID.
 *
 * Authenticated with the user's own access token only: a PAT cannot mint or
 * list PATs (401 invalid_token), nor can a client-credentials token (it has
 * no user), and an access token of a client that is not first-party gets
 * 403 insufficient_scope.  That flag is not in the cache: each statement
 * reads the bearer token's row and client again (tokend_bearer) and says
 * first how it stands.  Each user sees and deletes only their own PATs;
 * another user's id answers exactly as an unknown one, 404.  The token
 * string appears only in the 201 of POST; only its SHA-256 is stored.
 *
 * POST takes application/json (else 415) {"name", "scope", "expires_in"}:
 * name 1 to 128 bytes without control characters; scope within the access
 * token's own (omitted: the access token's scope), else 400 invalid_scope;
 * expires_in 60 to 315360000 seconds and at most pat_max_lifetime (else 400
 * invalid_request), omitted or null for pat_max_lifetime (for never when it
 * is 0).  A stolen access token must not turn into a long-lived PAT, so
 * POST also needs one issued less than OA_PAT_REAUTH seconds ago (else 403
 * reauthentication_required).  tokend_pat_create checks all of it again.
 * Dates are ISO 8601 UTC strings ("2025-01-31T12:00:00Z"), null for never.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

#define ACCESS_ONLY	(1u << TOKEN_ACCESS)
#define TS(col) PG_EPOCH(col)

static const char create_sql[] =
    "SELECT o_status, o_id, " TS("o_created") ", " TS("o_expires")
    " FROM tokend.tokend_pat_create("
    "$1::bigint, $2, $3, $4::integer, decode($5, 'hex'), $6, $7::bigint, "
    "$8::integer, $9::integer)";

/* One row with the bearer's status and no PAT when there are none. */
static const char list_sql[] =
    "SELECT b.o_status, t.id, t.name, t.prefix, t.scope, "
    TS("t.created_at") ", " TS("t.expires_at") ", " TS("t.last_used_at")
    ", t.use_count FROM tokend.tokend_bearer($2::bigint, $1::bigint) b "
    "LEFT JOIN tokend.tokens t ON b.o_status = 'ok' AND t.user_id = $1::bigint "
    "AND t.kind = 'pat' AND t.revoked_at IS NULL ORDER BY t.id";

static const char delete_sql[] =
    "WITH b AS (SELECT o_status FROM tokend.tokend_bearer($3::bigint, $2::bigint)), "
    "d AS (UPDATE tokend.tokens SET revoked_at = now() WHERE id = $1::bigint "
    "AND user_id = $2::bigint AND kind = 'pat' AND revoked_at IS NULL "
    "AND (SELECT o_status FROM b) = 'ok' "
    "RETURNING encode(hash, 'hex') AS hex, prefix) "
    "SELECT b.o_status, d.hex, d.prefix FROM b LEFT JOIN d ON true";

/* Said by the worker's own checks and by tokend_pat_create's alike. */
static const char scope_why[] =
    "a PAT's scope must be within the access token's";
static const char reauth_why[] =
    "sign in again: this needs an access token issued less than 10 minutes "
    "ago";

enum pat_op { PAT_CREATE, PAT_LIST, PAT_DELETE };

/* The request's state, in c_pending_data. */
struct pat_wait {
	struct pending	 pw_pd;			/* first */
	enum pat_op	 pw_op;
	struct pat_req	 pw_req;		/* PAT_CREATE */
	char		 pw_id[24];		/* PAT_DELETE */
	char		 pw_reauth[16];		/* PAT_CREATE: SQL parameters */
	char		 pw_max[16];
	char		 pw_scope[TI_SCOPE_LEN];
	char		 pw_user[TI_USER_LEN];
	char		 pw_token[TOKEN_LEN + 1];
};


/* A nullable text column as a JSON string or null. */
static json_t *
col(PGresult *res, int r, int k)
{
	return PQgetisnull(res, r, k) ? json_null() :
	    json_string(PQgetvalue(res, r, k));
}

/* A TS() column as an ISO 8601 JSON string, or null. */
static json_t *
ts_col(PGresult *res, int r, int k)
{
	char	 ts[ISO8601_LEN];

	if (PQgetisnull(res, r, k) || iso8601_format(strtoll(PQgetvalue(res,
	    r, k), NULL, 10), -1, ts) == -1)
		return json_null();
	return json_string(ts);
}

/* ---- the answers ------------------------------------------------------------ */

/*
 * The status the SQL gave (the bearer token's, or tokend_pat_create's):
 * 1 when it is "ok", else 0 after answering.
 */
static int
pat_status(struct conn *c, PGresult *res)
{
	const char	*st = PQgetvalue(res, 0, 0);

	if (strcmp(st, "ok") == 0)
		return 1;
	if (strcmp(st, "not_first_party") == 0)
		auth_bearer_forbidden(c, "only an access token issued to a "
		    "first-party client may manage personal access tokens");
	else if (strcmp(st, "reauthentication_required") == 0)
		oauth_api_error(c, 403, st, reauth_why);
	else if (strcmp(st, "invalid_scope") == 0)
		oauth_api_error(c, 400, st, scope_why);
	else if (strcmp(st, "invalid_lifetime") == 0)
		oauth_api_error(c, 400, "invalid_request", "expires_in exceeds "
		    "pat_max_lifetime");
	else if (strcmp(st, "invalid_user") == 0)
		auth_bearer_denied(c, "the user is disabled");
	else
		auth_bearer_denied(c, "the token is unknown, expired or "
		    "revoked");
	return 0;
}

static void
pat_created(struct conn *c, struct pat_wait *pw, PGresult *res)
{
	char	 pfx[TOKEN_DISPLAY_LEN + 1];
	json_t	*o;

	if (!pat_status(c, res))
		return;
	o = json_pack("{s:I, s:s, s:s, s:s, s:o, s:o}", "id",
	    (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10), "token",
	    pw->pw_token, "name", pw->pw_req.pr_name, "scope", pw->pw_scope,
	    "created_at", ts_col(res, 0, 2), "expires_at", ts_col(res, 0, 3));
	oauth_prefix(pw->pw_token, pfx);
	LOG(LVL_INFO, "token_issued", KV_S("grant", "pat"),
	    KV_S("user", pw->pw_user), KV_S("pat", pfx),
	    KV_S("scope", pw->pw_scope));
	resp_start(c, 201);
	resp_header(c, "Cache-Control", "no-store");
	resp_json_end(c, o);
}

static void
pat_listed(struct conn *c, PGresult *res)
{
	json_t	*a, *o;
	int	 i;

	if (!pat_status(c, res))
		return;
	a = json_array();
	/* A row without a PAT (id NULL) only carries the status. */
	for (i = 0; a != NULL && i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 1))
			continue;
		o = json_pack("{s:I, s:o, s:s, s:s, s:o, s:o, s:o, s:I}", "id",
		    (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10),
		    "name", col(res, i, 2), "prefix", PQgetvalue(res, i, 3),
		    "scope", PQgetvalue(res, i, 4), "created_at",
		    ts_col(res, i, 5), "expires_at", ts_col(res, i, 6),
		    "last_used_at", ts_col(res, i, 7), "use_count",
		    (json_int_t)strtoll(PQgetvalue(res, i, 8), NULL, 10));
		json_array_append_new(a, o);
	}
	resp_start(c, 200);
	resp_header(c, "Cache-Control", "no-store");
	resp_json_end(c, a);
}

static void
pat_deleted(struct conn *c, struct pat_wait *pw, PGresult *res)
{
	if (!pat_status(c, res))
		return;
	if (PQgetisnull(res, 0, 1)) {
		oauth_api_error(c, 404, "not_found", "no such personal access token");
		return;
	}
	/* Gone from every worker's cache before the 204. */
	oauth_cache_revoke(PQgetvalue(res, 0, 1));
	LOG(LVL_INFO, "token_revoked", KV_S("token", PQgetvalue(res, 0, 2)),
	    KV_S("kind", "pat"), KV_S("user", pw->pw_user),
	    KV_S("by", "api"));
	resp_start(c, 204);
	resp_end(c, NULL, NULL, 0);
}

static void
pat_answered(struct conn *c, PGresult *res, void *arg)
{
	struct pat_wait	*pw;

	(void)arg;
	pw = (struct pat_wait *)c->c_pending_data;
	if (res == NULL || PQntuples(res) < 1)
		oauth_unavailable(c);
	else if (pw->pw_op == PAT_CREATE)
		pat_created(c, pw, res);
	else if (pw->pw_op == PAT_LIST)
		pat_listed(c, res);
	else
		pat_deleted(c, pw, res);
	worker_pending_done(c, HANDLER_DONE);
	worker_resume(c);
}

/* ---- the work ---------------------------------------------------------------- */

/*
 * The access token is fresh enough, and expires_in within pat_max_lifetime
 * (omitted: that maximum).  Returns 0, or -1 after answering.
 */
static int
pat_limits(struct conn *c, struct pat_req *pr, const struct tok_info *ti)
{
	int64_t		 max = W.wk_cf->cf_pat_max_lifetime;
	char		 why[96];

	if (W.wk_now - ti->ti_iat >= OA_PAT_REAUTH) {
		oauth_api_error(c, 403, "reauthentication_required", reauth_why);
		return -1;
	}
	if (max != 0 && pr->pr_expires_in > max) {
		snprintf(why, sizeof(why), "expires_in exceeds "
		    "pat_max_lifetime (%lld seconds)", (long long)max);
		oauth_api_error(c, 400, "invalid_request", why);
		return -1;
	}
	if (pr->pr_expires_in == 0)
		pr->pr_expires_in = max;
	return 0;
}

/* POST's parameters, checked against the access token's scope. */
static int
pat_create_params(struct conn *c, struct pat_wait *pw,
    const struct tok_info *ti, const char **p, char *hash, char *pfx,
    char *exp)
{
	const struct pat_req *pr = &pw->pw_req;

	if (pat_limits(c, &pw->pw_req, ti) == -1)
		return -1;
	if (!pr->pr_has_scope)
		snprintf(pw->pw_scope, sizeof(pw->pw_scope), "%s",
		    ti->ti_scope);
	else if (!scope_subset(pr->pr_scope, ti->ti_scope)) {
		oauth_api_error(c, 400, "invalid_scope", scope_why);
		return -1;
	} else
		snprintf(pw->pw_scope, sizeof(pw->pw_scope), "%s",
		    pr->pr_scope);
	if (token_generate(TOKEN_PAT, pw->pw_token) == -1) {
		oauth_unavailable(c);
		return -1;
	}
	oauth_hash_hex(pw->pw_token, hash);
	oauth_prefix(pw->pw_token, pfx);
	snprintf(exp, 24, "%lld", (long long)pr->pr_expires_in);
	snprintf(pw->pw_reauth, sizeof(pw->pw_reauth), "%d", OA_PAT_REAUTH);
	snprintf(pw->pw_max, sizeof(pw->pw_max), "%d",
	    W.wk_cf->cf_pat_max_lifetime);
	p[1] = pr->pr_name;
	p[2] = pw->pw_scope;
	p[3] = pr->pr_expires_in != 0 ? exp : NULL;
	p[4] = hash;
	p[5] = pfx;
	/* p[6] is the bearer token's id. */
	p[7] = pw->pw_reauth;
	p[8] = pw->pw_max;
	return 0;
}

static enum handler_result
pats_go(struct conn *c, const struct tok_info *ti)
{
	struct pat_wait	*pw = (struct pat_wait *)c->c_pending_data;
	char		 uid[24], tid[24], hash[2 * TOKEN_HASH_LEN + 1], exp[24];
	char		 pfx[TOKEN_DISPLAY_LEN + 1];
	const char	*p[9] = { uid, tid }, *sql = list_sql;
	int		 n = 2;

	if (!auth_bearer_check(c, ti, ACCESS_ONLY))
		return HANDLER_DONE;
	if (ti->ti_user_id == 0) {
		auth_bearer_denied(c, "a user's access token is required");
		return HANDLER_DONE;
	}
	snprintf(uid, sizeof(uid), "%lld", (long long)ti->ti_user_id);
	snprintf(tid, sizeof(tid), "%lld", (long long)ti->ti_id);
	snprintf(pw->pw_user, sizeof(pw->pw_user), "%s", ti->ti_user);
	if (pw->pw_op == PAT_CREATE) {
		if (pat_create_params(c, pw, ti, p, hash, pfx, exp) == -1)
			return HANDLER_DONE;
		p[6] = tid;
		sql = create_sql;
		n = 9;
	} else if (pw->pw_op == PAT_DELETE) {
		p[0] = pw->pw_id;
		p[1] = uid;
		p[2] = tid;
		sql = delete_sql;
		n = 3;
	}
	return oauth_query(c, sql, n, p, pat_answered);
}

static void
pats_bearer(struct conn *c, const struct tok_info *ti)
{
	c->c_pending = NULL;
	if (worker_pending_done(c, pats_go(c, ti)) == HANDLER_DONE)
		worker_resume(c);
}

/* Authenticate, then do pw's operation. */
static enum handler_result
pats_start(struct conn *c, struct pat_wait *pw)
{
	struct tok_info	 ti;
	int		 r;

	/* The new token is wiped with the state. */
	pw->pw_pd.pd_free = worker_pending_wipe;
	pw->pw_pd.pd_size = sizeof(*pw);
	c->c_pending_data = &pw->pw_pd;
	r = auth_bearer_begin(c, ACCESS_ONLY, &ti, pats_bearer);
	if (r == 2)
		return HANDLER_PENDING;
	return worker_pending_done(c, r == 1 ? pats_go(c, &ti) : HANDLER_DONE);
}

enum handler_result
h_pats(struct conn *c)
{
	const struct http_req *rq = &c->c_req;
	struct pat_wait	*pw;
	const char	*err, *why;

	if ((pw = calloc(1, sizeof(*pw))) == NULL) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	pw->pw_op = rq->rq_method == HTTP_POST ? PAT_CREATE : PAT_LIST;
	if (pw->pw_op == PAT_LIST)
		return pats_start(c, pw);
	if (!oauth_ctype_is(rq->rq_content_type, "application/json")) {
		free(pw);
		oauth_api_error(c, 415, "invalid_request", "the body must be "
		    "application/json");
		return HANDLER_DONE;
	}
	/* Parsed now: the body may not outlive a wait for the lookup. */
	if (oauth_parse_pat(c->c_in + c->c_inoff + rq->rq_header_bytes,
	    rq->rq_content_length, &pw->pw_req, &err, &why) == -1) {
		free(pw);
		oauth_api_error(c, 400, err, why);
		return HANDLER_DONE;
	}
	return pats_start(c, pw);
}

/* DELETE /pats/ID: ID a positive decimal int64; anything else is 404
 * (after authentication, so it tells an anonymous caller nothing). */
enum handler_result
h_pat_delete(struct conn *c)
{
	struct http_str	 path = c->c_req.rq_path;
	struct pat_wait	*pw;
	size_t		 i, n = strlen("/pats/");
	int		 ok;

	if ((pw = calloc(1, sizeof(*pw))) == NULL) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	pw->pw_op = PAT_DELETE;
	ok = path.s_len > n && path.s_len - n < 19 && path.s_ptr[n] != '0';
	for (i = n; ok && i < path.s_len; i++)
		ok = isdigit((unsigned char)path.s_ptr[i]);
	if (ok)
		memcpy(pw->pw_id, path.s_ptr + n, path.s_len - n);
	else
		strcpy(pw->pw_id, "0");		/* matches no row */
	return pats_start(c, pw);
}

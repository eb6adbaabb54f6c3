/*
 * The PAT API (SPEC sections 4 and 12): POST /pats, GET /pats,
 * DELETE /pats/ID, POST /pats/ID/rotate.
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
 * POST /pats/ID/rotate {"overlap": 0 to 604800, default 86400} answers
 * 201 like POST, under the same rules, for a new PAT with the old one's
 * name, scope and original lifetime (capped by pat_max_lifetime); the old
 * one expires overlap seconds from now at the latest (tokend_pat_rotate).
 * A revoked or expired PAT is 404 like an unknown one: there is nothing
 * left to rotate.
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

/* tokend_pat_limits sets SPEC 13's allowlist and rate in the same
 * statement, on the row tokend_pat_create just inserted (o_id; NULL when
 * it refused). */
static const char create_sql[] =
    "SELECT o_status, o_id, " TS("o_created") ", " TS("o_expires")
    ", tokend.tokend_pat_limits(o_id, string_to_array($10, ' ')::cidr[], "
    "$11::integer, $12::integer, false)"
    " FROM tokend.tokend_pat_create("
    "$1::bigint, $2, $3, $4::integer, decode($5, 'hex'), $6, $7::bigint, "
    "$8::integer, $9::integer)";

/* One row with the bearer's status and no PAT when there are none. */
static const char list_sql[] =
    "SELECT b.o_status, t.id, t.name, t.prefix, t.scope, "
    TS("t.created_at") ", " TS("t.expires_at") ", " TS("u.last_used_at")
    ", u.use_count, host(u.last_used_ip), "
    "array_to_string(t.allowed_ips, ' '), t.rate_limit || '/' || t.rate_window "
    "FROM tokend.tokend_bearer($2::bigint, $1::bigint) b "
    "LEFT JOIN tokend.tokens t ON b.o_status = 'ok' AND t.user_id = $1::bigint "
    "AND t.kind = 'pat' AND t.revoked_at IS NULL AND NOT t.canary "
    "LEFT JOIN tokend.token_usage u ON u.token_id = t.id "
    "ORDER BY t.id";

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

/* POST /pats/ID/rotate: tokend_pat_rotate (migration 014). */
static const char rotate_sql[] =
    "SELECT o_status, o_id, o_name, o_scope, " TS("o_created") ", "
    TS("o_expires") ", o_old_hash, " TS("o_old_expires")
    " FROM tokend.tokend_pat_rotate($1::bigint, $2::bigint, $3::integer, "
    "decode($4, 'hex'), $5, $6::bigint, $7::integer, $8::integer)";

enum pat_op { PAT_CREATE, PAT_LIST, PAT_DELETE, PAT_ROTATE };

/* POST /pats's "allowed_ips" and "rate" (SPEC 13), as SQL parameters. */
struct pat_limits {
	char		 pl_ips[IP_MAX_ALLOW * (IP_STR_LEN + 5)]; /* "" none */
	char		 pl_rate[16], pl_window[16];		/* "" none */
};

/* The request's state, in c_pending_data. */
struct pat_wait {
	struct oauth_wait pw_ow;		/* first */
	enum pat_op	 pw_op;
	struct pat_req	 pw_req;		/* PAT_CREATE */
	char		 pw_id[24];		/* PAT_DELETE, PAT_ROTATE */
	char		 pw_overlap[16];	/* PAT_ROTATE */
	char		 pw_reauth[16];		/* PAT_CREATE: SQL parameters */
	char		 pw_max[16];
	char		 pw_scope[TI_SCOPE_LEN];
	char		 pw_user[TI_USER_LEN];
	char		 pw_token[TOKEN_LEN + 1];
	struct pat_limits pw_lim;		/* PAT_CREATE, SPEC 13 */
};


/* A nullable text column as a JSON string or null. */
static json_t *
col(PGresult *res, int r, int k)
{
	return PQgetisnull(res, r, k) ? json_null() :
	    json_string(PQgetvalue(res, r, k));
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

/*
 * 201 with POST /pats's body for the PAT just made (by POST /pats or a
 * rotation): the only time its token is shown.  id is column 1 of res,
 * created_at and expires_at columns k and k + 1.
 */
static void
pat_made(struct conn *c, const struct pat_wait *pw, PGresult *res,
    const char *name, const char *scope, int k)
{
	oauth_api_json(c, 201, json_pack("{s:I, s:s, s:s, s:s, s:o, s:o}",
	    "id", (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10),
	    "token", pw->pw_token, "name", name, "scope", scope, "created_at",
	    oauth_ts_json(res, 0, k), "expires_at",
	    oauth_ts_json(res, 0, k + 1)));
}

static void
pat_created(struct conn *c, struct pat_wait *pw, PGresult *res)
{
	char	 pfx[TOKEN_DISPLAY_LEN + 1];

	if (!pat_status(c, res))
		return;
	oauth_prefix(pw->pw_token, pfx);
	metrics_token_issued(ISSUED_PAT);
	LOG(LVL_INFO, "token_issued", KV_S("grant", "pat"),
	    KV_S("user", pw->pw_user), KV_S("pat", pfx),
	    KV_S("scope", pw->pw_scope));
	pat_made(c, pw, res, pw->pw_req.pr_name, pw->pw_scope, 2);
}

/* SPEC 13's fields of a listed PAT: last_used_ip, allowed_ips, rate. */
static void
pat_listed_beyond(json_t *o, PGresult *res, int i)
{
	json_t	*ips = json_array();
	char	 buf[IP_MAX_ALLOW * (IP_STR_LEN + 5)], *w, *save = NULL;

	if (o == NULL || ips == NULL) {
		json_decref(ips);
		return;
	}
	snprintf(buf, sizeof(buf), "%s", PQgetvalue(res, i, 10));
	for (w = strtok_r(buf, " ", &save); w != NULL;
	    w = strtok_r(NULL, " ", &save))
		json_array_append_new(ips, json_string(w));
	json_object_set_new(o, "last_used_ip", col(res, i, 9));
	json_object_set_new(o, "allowed_ips", ips);
	json_object_set_new(o, "rate", col(res, i, 11));
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
		    oauth_ts_json(res, i, 5), "expires_at",
		    oauth_ts_json(res, i, 6), "last_used_at",
		    oauth_ts_json(res, i, 7), "use_count",
		    (json_int_t)strtoll(PQgetvalue(res, i, 8), NULL, 10));
		pat_listed_beyond(o, res, i);
		json_array_append_new(a, o);
	}
	oauth_api_json(c, 200, a);
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

/*
 * The rotation's answer: POST /pats's body for the new PAT.  The old one's
 * entry leaves the cache before the 201, so that every worker of this
 * instance reads its shortened expiry at once (the notify trigger tells
 * the other instances).
 */
static void
pat_rotated(struct conn *c, struct pat_wait *pw, PGresult *res)
{
	char	 pfx[TOKEN_DISPLAY_LEN + 1];

	if (strcmp(PQgetvalue(res, 0, 0), "not_found") == 0) {
		oauth_api_error(c, 404, "not_found", "no such personal access "
		    "token, or it is revoked or expired");
		return;
	}
	if (!pat_status(c, res))
		return;
	oauth_cache_revoke(PQgetvalue(res, 0, 6));
	oauth_prefix(pw->pw_token, pfx);
	LOG(LVL_INFO, "token_rotated", KV_S("user", pw->pw_user),
	    KV_S("old_id", pw->pw_id), KV_S("old_expires", PQgetvalue(res, 0,
	    7)), KV_S("pat", pfx), KV_S("id", PQgetvalue(res, 0, 1)),
	    KV_S("by", "api"));
	pat_made(c, pw, res, PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3), 4);
}

static void
pat_answered(struct conn *c, PGresult *res)
{
	struct pat_wait	*pw = (struct pat_wait *)c->c_pending_data;

	if (pw->pw_op == PAT_CREATE)
		pat_created(c, pw, res);
	else if (pw->pw_op == PAT_LIST)
		pat_listed(c, res);
	else if (pw->pw_op == PAT_ROTATE)
		pat_rotated(c, pw, res);
	else
		pat_deleted(c, pw, res);
}

/* ---- the work ---------------------------------------------------------------- */

/*
 * "allowed_ips": an array of 1 to IP_MAX_ALLOW CIDRs (null or absent: any
 * address), "rate": "N/SECONDS" (null or absent: none).  Returns 0, or -1
 * with *why set (400 invalid_request).
 */
static int
pat_parse_limits(const char *body, size_t len, struct pat_limits *pl,
    const char **err, const char **why)
{
	json_t		*o, *v, *e;
	size_t		 i;
	uint32_t	 n, secs;
	int		 rc = -1;

	memset(pl, 0, sizeof(*pl));
	*err = "invalid_request";
	if ((o = json_loadb(body, len, 0, NULL)) == NULL)
		return 0;	/* oauth_parse_pat has refused it already */
	v = json_object_get(o, "allowed_ips");
	*why = "allowed_ips must be an array of 1 to 16 CIDRs";
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_array(v) || json_array_size(v) < 1 ||
		    json_array_size(v) > IP_MAX_ALLOW)
			goto out;
		json_array_foreach(v, i, e)
			if (!json_is_string(e) || cidr_list_append(pl->pl_ips,
			    sizeof(pl->pl_ips), json_string_value(e),
			    why) == -1)
				goto out;
	}
	v = json_object_get(o, "rate");
	*why = "rate must be \"N/SECONDS\", N from 1 to 1000000, SECONDS "
	    "from 1 to 86400";
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v) || token_rate_parse(json_string_value(v),
		    &n, &secs) == -1)
			goto out;
		snprintf(pl->pl_rate, sizeof(pl->pl_rate), "%u", n);
		snprintf(pl->pl_window, sizeof(pl->pl_window), "%u", secs);
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

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
	p[9] = pw->pw_lim.pl_ips[0] ? pw->pw_lim.pl_ips : NULL;
	p[10] = pw->pw_lim.pl_rate[0] ? pw->pw_lim.pl_rate : NULL;
	p[11] = pw->pw_lim.pl_window[0] ? pw->pw_lim.pl_window : NULL;
	return 0;
}

/* POST /pats/ID/rotate's parameters: the new token, made now. */
static int
pat_rotate_params(struct conn *c, struct pat_wait *pw, const char **p,
    char *hash, char *pfx)
{
	if (token_generate(TOKEN_PAT, pw->pw_token) == -1) {
		oauth_unavailable(c);
		return -1;
	}
	oauth_hash_hex(pw->pw_token, hash);
	oauth_prefix(pw->pw_token, pfx);
	snprintf(pw->pw_reauth, sizeof(pw->pw_reauth), "%d", OA_PAT_REAUTH);
	snprintf(pw->pw_max, sizeof(pw->pw_max), "%d",
	    W.wk_cf->cf_pat_max_lifetime);
	p[1] = pw->pw_id;
	p[2] = pw->pw_overlap;
	p[3] = hash;
	p[4] = pfx;
	/* p[5] is the bearer token's id. */
	p[6] = pw->pw_reauth;
	p[7] = pw->pw_max;
	return 0;
}

static enum handler_result
pats_go(struct conn *c, const struct tok_info *ti)
{
	struct pat_wait	*pw = (struct pat_wait *)c->c_pending_data;
	char		 uid[24], tid[24], hash[2 * TOKEN_HASH_LEN + 1], exp[24];
	char		 pfx[TOKEN_DISPLAY_LEN + 1];
	const char	*p[12] = { uid, tid }, *sql = list_sql;
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
		n = 12;
	} else if (pw->pw_op == PAT_ROTATE) {
		if (pat_rotate_params(c, pw, p, hash, pfx) == -1)
			return HANDLER_DONE;
		p[5] = tid;
		sql = rotate_sql;
		n = 8;
	} else if (pw->pw_op == PAT_DELETE) {
		p[0] = pw->pw_id;
		p[1] = uid;
		p[2] = tid;
		sql = delete_sql;
		n = 3;
	}
	return oauth_bearer_query(c, sql, n, p);
}

/* Authenticate, then do pw's operation. */
static enum handler_result
pats_start(struct conn *c, struct pat_wait *pw)
{
	return oauth_bearer_start(c, &pw->pw_ow, sizeof(*pw), ACCESS_ONLY,
	    pats_go, pat_answered);
}

enum handler_result
h_pats(struct conn *c)
{
	const struct http_req *rq = &c->c_req;
	struct pat_wait	*pw;
	const char	*err, *why, *body;

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
	body = c->c_in + c->c_inoff + rq->rq_header_bytes;
	if (oauth_parse_pat(body, rq->rq_content_length, &pw->pw_req, &err,
	    &why) == -1 || pat_parse_limits(body, rq->rq_content_length,
	    &pw->pw_lim, &err, &why) == -1) {
		free(pw);
		oauth_api_error(c, 400, err, why);
		return HANDLER_DONE;
	}
	return pats_start(c, pw);
}

/* DELETE /pats/ID */
enum handler_result
h_pat_delete(struct conn *c)
{
	struct pat_wait	*pw;

	if ((pw = calloc(1, sizeof(*pw))) == NULL) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	pw->pw_op = PAT_DELETE;
	oauth_path_id(c->c_req.rq_path, "/pats/", "", pw->pw_id);
	return pats_start(c, pw);
}

/*
 * POST /pats/ID/rotate {"overlap": SECONDS}; an empty body is
 * OA_OVERLAP_DEFAULT (oauth.h).
 */
static enum handler_result
h_pat_rotate(struct conn *c)
{
	const struct http_req *rq = &c->c_req;
	struct pat_wait	*pw;
	const char	*err, *why;
	int64_t		 overlap = OA_OVERLAP_DEFAULT;

	if (rq->rq_content_length > 0 &&
	    !oauth_ctype_is(rq->rq_content_type, "application/json")) {
		oauth_api_error(c, 415, "invalid_request", "the body must be "
		    "application/json");
		return HANDLER_DONE;
	}
	if (rq->rq_content_length > 0 && oauth_parse_rotate(c->c_in +
	    c->c_inoff + rq->rq_header_bytes, rq->rq_content_length, &overlap,
	    &err, &why) == -1) {
		oauth_api_error(c, 400, err, why);
		return HANDLER_DONE;
	}
	if ((pw = calloc(1, sizeof(*pw))) == NULL) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	pw->pw_op = PAT_ROTATE;
	snprintf(pw->pw_overlap, sizeof(pw->pw_overlap), "%lld",
	    (long long)overlap);
	oauth_path_id(rq->rq_path, "/pats/", "/rotate", pw->pw_id);
	return pats_start(c, pw);
}

/* Everything under /pats/: DELETE /pats/ID, POST /pats/ID/rotate. */
enum handler_result
h_pat_item(struct conn *c)
{
	if (c->c_req.rq_method == HTTP_POST)
		return h_pat_rotate(c);
	return h_pat_delete(c);
}

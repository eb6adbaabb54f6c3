/*
 * POST /token (RFC 6749, SPEC section 4): the password, refresh_token,
 * authorization_code and client_credentials grants, and the RFC 8628
 * device grant's polling.  A client uses only the grant types it is
 * allowed (clients.grant_types, SPEC 11): any other is unauthorized_client.
 *
 * Each grant is: parse the form, authenticate the client (client.c), do
 * the grant's checks that need no I/O, mint the new token strings here
 * (RAND_bytes; only their SHA-256 leaves the process), then ONE call of a
 * PL/pgSQL function (store/migrations/002_oauth.sql) that claims, inserts
 * and revokes in one transaction.  The password grant first fetches the
 * user and verifies the password on the hashpool, never on the loop.
 *
 * Every answer carries Cache-Control: no-store and Pragma: no-cache.
 * Unknown, expired, reused and revoked refresh tokens and codes all get
 * the same invalid_grant body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "worker/hashpool.h"
#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

static const char bad_grant[] =
    "the grant is invalid, expired, revoked or was already used";
static const char bad_login[] = "the username or password is wrong";

/* Counts the attempt in PostgreSQL, so that every box sharing the
 * database sees it (store/migrations/006_login_limits.sql). */
const char oauth_login_sql[] =
    "SELECT o_wait, o_id, o_hash, o_disabled "
    "FROM tokend.tokend_login_attempt($1, $2::integer, $3::integer)";

static const char login_ok_sql[] = "SELECT tokend.tokend_login_ok($1)";

/* The audit rows of a refused sign-in and of a lockout (migration 015). */
static const char login_failed_sql[] =
    "SELECT tokend.tokend_login_failed($1, $2, $3, $4)";
static const char login_locked_sql[] =
    "SELECT tokend.tokend_login_locked($1, $2, $3)";

static const char issue_sql[] =
    "SELECT o_status, o_access_id, o_refresh_id, o_iat "
    "FROM tokend.tokend_issue($1::bigint, $2::bigint, $3, decode($4, 'hex'), $5, "
    "$6::integer, decode($7, 'hex'), $8, $9::integer)";

static const char refresh_sql[] =
    "SELECT o_status, coalesce(o_user, 0), coalesce(o_username, ''), "
    "coalesce(o_scope, ''), encode(o_box, 'hex'), o_access_id, "
    "o_refresh_id, o_iat, o_access_exp, o_family, o_family_size, o_n, "
    "o_hashes FROM tokend.tokend_refresh(decode($1, 'hex'), $2::bigint, $3, "
    "$4::integer, decode($5, 'hex'), decode($6, 'hex'), $7, $8::integer, "
    "decode($9, 'hex'), $10, $11::integer, $12::integer)";

static const char code_sql[] =
    "SELECT o_status, coalesce(o_user, 0), coalesce(o_username, ''), "
    "coalesce(o_scope, ''), o_access_id, o_refresh_id, o_iat, o_n, "
    "o_hashes FROM tokend.tokend_code_exchange(decode($1, 'hex'), $2::bigint, $3, "
    "$4, decode($5, 'hex'), $6, $7::integer, decode($8, 'hex'), $9, "
    "$10::integer)";

static const char device_sql[] =
    "SELECT o_status, coalesce(o_user, 0), coalesce(o_username, ''), "
    "coalesce(o_scope, ''), o_access_id, o_refresh_id, o_iat, o_interval "
    "FROM tokend.tokend_device_poll(decode($1, 'hex'), $2::bigint, "
    "decode($3, 'hex'), $4, $5::integer, decode($6, 'hex'), $7, "
    "$8::integer)";

/* The SQL parameters that describe the freshly minted tokens. */
struct minted {
	char	 mt_ahash[2 * TOKEN_HASH_LEN + 1];
	char	 mt_apfx[TOKEN_DISPLAY_LEN + 1];
	char	 mt_attl[16];
	char	 mt_rhash[2 * TOKEN_HASH_LEN + 1];
	char	 mt_rpfx[TOKEN_DISPLAY_LEN + 1];
	char	 mt_rttl[16];
};

/* ---- shared steps -------------------------------------------------------- */

/* The six SQL parameters of the minted pair, in the order every issuing
 * function takes them: access hash, prefix, ttl, then refresh's (NULL
 * without a refresh token). */
static void
minted_params(const struct minted *mt, int refresh, const char **p)
{
	p[0] = mt->mt_ahash;
	p[1] = mt->mt_apfx;
	p[2] = mt->mt_attl;
	p[3] = refresh ? mt->mt_rhash : NULL;
	p[4] = refresh ? mt->mt_rpfx : NULL;
	p[5] = refresh ? mt->mt_rttl : NULL;
}

/* Mint or_access (and or_refresh) and their SQL parameters. */
static int
mint(struct oreq *or, int refresh, struct minted *mt)
{
	const struct config *cf = W.wk_cf;

	memset(mt, 0, sizeof(*mt));
	if (token_generate(TOKEN_ACCESS, or->or_access) == -1 ||
	    (refresh && token_generate(TOKEN_REFRESH, or->or_refresh) == -1))
		return -1;
	oauth_hash_hex(or->or_access, mt->mt_ahash);
	oauth_prefix(or->or_access, mt->mt_apfx);
	snprintf(mt->mt_attl, sizeof(mt->mt_attl), "%d",
	    cf->cf_access_token_ttl);
	if (refresh) {
		oauth_hash_hex(or->or_refresh, mt->mt_rhash);
		oauth_prefix(or->or_refresh, mt->mt_rpfx);
		snprintf(mt->mt_rttl, sizeof(mt->mt_rttl), "%d",
		    cf->cf_refresh_token_ttl);
	} else
		or->or_refresh[0] = '\0';
	return 0;
}

/* 200 with the pair in or (RFC 6749 5.1). */
static void
token_ok(struct conn *c, struct oreq *or, int64_t expires_in)
{
	json_t	*o;

	resp_log_user(c, or->or_user_id);
	resp_log_prefix(c, or->or_access);
	o = json_pack("{s:s, s:s, s:I, s:s}", "access_token", or->or_access,
	    "token_type", "Bearer", "expires_in", (json_int_t)expires_in,
	    "scope", or->or_scope);
	if (o != NULL && or->or_refresh[0] != '\0')
		json_object_set_new(o, "refresh_token",
		    json_string(or->or_refresh));
	oauth_json(c, 200, o);
}

/* prime_cache copies whole: what fits in or fits in the cache entry. */
_Static_assert(sizeof(((struct oreq *)0)->or_user) <= TI_USER_LEN &&
    sizeof(((struct client_info *)0)->ci_client_id) <= TI_CLIENT_LEN &&
    sizeof(((struct oreq *)0)->or_scope) <= TI_SCOPE_LEN,
    "an identity would be truncated into tok_info");

/* The new access token, into the cache before anyone asks for it. */
static void
prime_cache(struct oreq *or, PGresult *res, int idcol, int iatcol)
{
	struct tok_info	 ti;

	memset(&ti, 0, sizeof(ti));
	ti.ti_state = TI_VALID;
	ti.ti_kind = TOKEN_ACCESS;
	ti.ti_id = strtoll(PQgetvalue(res, 0, idcol), NULL, 10);
	ti.ti_user_id = or->or_user_id;
	ti.ti_iat = strtoll(PQgetvalue(res, 0, iatcol), NULL, 10);
	ti.ti_expires = ti.ti_iat + W.wk_cf->cf_access_token_ttl;
	snprintf(ti.ti_user, sizeof(ti.ti_user), "%s", or->or_user);
	snprintf(ti.ti_client, sizeof(ti.ti_client), "%s",
	    or->or_client.ci_client_id);
	snprintf(ti.ti_scope, sizeof(ti.ti_scope), "%s", or->or_scope);
	oauth_cache_issued(or->or_access, &ti, or->or_cache_epoch);
}

static void
log_issued(struct oreq *or, const char *event, const char *grant)
{
	char	 ap[TOKEN_DISPLAY_LEN + 1], rp[TOKEN_DISPLAY_LEN + 1] = "";

	oauth_prefix(or->or_access, ap);
	if (or->or_refresh[0] != '\0')
		oauth_prefix(or->or_refresh, rp);
	LOG(LVL_INFO, event, KV_S("grant", grant),
	    KV_S("client", or->or_client.ci_client_id),
	    KV_S("user", or->or_user), KV_S("access", ap),
	    KV_S("refresh", rp), KV_S("scope", or->or_scope));
}

/*
 * The form's param, which must be a token of kind, into or_presented.
 * Returns 0, or -1 after answering: absent is invalid_request, anything
 * but such a token the same invalid_grant as an unknown one.
 */
static int
take_presented(struct conn *c, struct oreq *or, const char *param,
    enum token_kind kind)
{
	const char	*v = form_get(&or->or_form, param);
	char		 why[64];

	if (v == NULL) {
		snprintf(why, sizeof(why), "%s is required", param);
		oauth_error(c, 400, "invalid_request", why);
		return -1;
	}
	if (token_check(v, strlen(v)) != kind) {
		oauth_error(c, 400, "invalid_grant", bad_grant);
		return -1;
	}
	memcpy(or->or_presented, v, TOKEN_LEN + 1);
	return 0;
}

/* Mint the pair, and the SQL parameters of the presented code (its hash)
 * and of the client (its id).  Returns 0 or -1. */
static int
mint_presented(struct oreq *or, struct minted *mt,
    char hash[2 * TOKEN_HASH_LEN + 1], char cid[24])
{
	if (mint(or, 1, mt) == -1)
		return -1;
	oauth_hash_hex(or->or_presented, hash);
	snprintf(cid, 24, "%lld", (long long)or->or_client.ci_id);
	return 0;
}

/* ---- password and client_credentials: tokend_issue ----------------------- */

static void
issued(struct conn *c, PGresult *res, void *arg)
{
	struct oreq	*or;

	(void)arg;
	or = (struct oreq *)c->c_pending_data;
	if (res == NULL)
		oauth_unavailable(c);
	else if (PQntuples(res) != 1 ||
	    strcmp(PQgetvalue(res, 0, 0), "ok") != 0)
		oauth_error(c, 400, "invalid_grant", bad_login);
	else {
		prime_cache(or, res, 1, 3);
		log_issued(or, "token_issued", or->or_user_id != 0 ?
		    "password" : "client_credentials");
		metrics_token_issued(or->or_user_id != 0 ? ISSUED_PASSWORD :
		    ISSUED_CLIENT_CREDENTIALS);
		token_ok(c, or, W.wk_cf->cf_access_token_ttl);
	}
	oreq_resume(c, HANDLER_DONE);
}

static enum handler_result
issue(struct conn *c, struct oreq *or, int refresh)
{
	struct minted	 mt;
	char		 uid[24], cid[24];
	const char	*p[9];

	if (mint(or, refresh, &mt) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	snprintf(uid, sizeof(uid), "%lld", (long long)or->or_user_id);
	snprintf(cid, sizeof(cid), "%lld", (long long)or->or_client.ci_id);
	p[0] = or->or_user_id != 0 ? uid : NULL;
	p[1] = cid;
	p[2] = or->or_scope;
	minted_params(&mt, refresh, p + 3);
	or->or_cache_epoch = oauth_cache_epoch();
	return oauth_query(c, issue_sql, 9, p, issued);
}

static enum handler_result
grant_client_credentials(struct conn *c, struct oreq *or)
{
	if (or->or_client.ci_public) {
		oauth_error(c, 400, "unauthorized_client", "client_credentials "
		    "is for confidential clients");
		return HANDLER_DONE;
	}
	if (client_scope(c, or) == -1)
		return HANDLER_DONE;
	or->or_user_id = 0;
	or->or_user[0] = '\0';
	return issue(c, or, 0);
}

/* ---- password ------------------------------------------------------------- */

/*
 * The attempt was counted as a failure when it began (grant_password); the
 * audit row is written now that the failure is known.  Nobody waits for
 * it, as for the clear of a success.  or_user is empty when the name was
 * malformed: the row then names nobody.
 */
void
oauth_login_ok(const char *user)
{
	const char	*p[1] = { user };

	/* Nobody waits for the clear: the tokens do not depend on it, and
	 * were it lost the count would only end with its window. */
	(void)pgq_submit(W.wk_pgq, NULL, login_ok_sql, 1, p, NULL, NULL);
}

void
oauth_login_failed(const char *user, const char *client, const char *peer,
    const char *why)
{
	const char	*p[4] = { user != NULL && user[0] != '\0' ? user : NULL,
			    client, peer, why };

	metrics_signin_failed();
	(void)pgq_submit(W.wk_pgq, NULL, login_failed_sql, 4, p, NULL, NULL);
}

void
oauth_login_locked(const char *user, const char *client, const char *peer)
{
	const char	*p[3] = { user, client, peer };

	(void)pgq_submit(W.wk_pgq, NULL, login_locked_sql, 3, p, NULL, NULL);
	ctr_add(&W.wk_slot->sl_login_lockouts, 1);
}

static void
login_failed(struct conn *c, struct oreq *or, const char *why)
{
	const char	*name = form_get(&or->or_form, "username");

	LOG(LVL_INFO, "login_failed", KV_S("user", name),
	    KV_S("client", or->or_client.ci_client_id), KV_S("reason", why),
	    KV_S("peer", peer_name(c)));
	oauth_login_failed(or->or_user, or->or_client.ci_client_id, peer_name(c),
	    why);
	oauth_error(c, 400, "invalid_grant", bad_login);
}

static void
password_verified(struct conn *c, int ok, void *arg)
{
	struct oreq	*or;

	(void)arg;
	or = (struct oreq *)c->c_pending_data;
	if (!ok || or->or_user_id == 0) {
		login_failed(c, or, or->or_user_id == 0 ? "unknown user" :
		    "wrong password");
		oreq_resume(c, HANDLER_DONE);
		return;
	}
	if (or->or_user_disabled) {
		login_failed(c, or, "user disabled");
		oreq_resume(c, HANDLER_DONE);
		return;
	}
	oauth_login_ok(or->or_user);
	oreq_resume(c, issue(c, or, 1));
}

/* Refused by the limit: every box counted the name's failures.  The
 * audit row is written once per lockout (tokend_login_locked). */
static void
login_limited(struct conn *c, struct oreq *or, int wait)
{
	oauth_login_locked(or->or_user, or->or_client.ci_client_id, peer_name(c));
	LOG(LVL_WARN, "login_rate_limited", KV_S("user", or->or_user),
	    KV_I("retry_after", wait), KV_S("peer", peer_name(c)));
	oauth_busy(c, wait, "too many failed logins for this user; try "
	    "again later");
}

/* The user's row (or none): verify the password against its hash, or
 * against the dummy hash, which costs the same. */
static void
password_user(struct conn *c, PGresult *res, void *arg)
{
	struct oreq	*or;
	const char	*pw, *hash = NULL;
	int		 wait;

	(void)arg;
	if ((or = oreq_row(c, res)) == NULL)
		return;
	if ((wait = atoi(PQgetvalue(res, 0, 0))) > 0) {
		login_limited(c, or, wait);
		oreq_resume(c, HANDLER_DONE);
		return;
	}
	if (!PQgetisnull(res, 0, 1)) {
		or->or_user_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		if (!PQgetisnull(res, 0, 2))
			hash = PQgetvalue(res, 0, 2);
		or->or_user_disabled = PQgetvalue(res, 0, 3)[0] == 't';
	}
	pw = form_get(&or->or_form, "password");
	oreq_resume(c, oreq_verify(c, hash, pw, strlen(pw), password_verified,
	    NULL));
}

/*
 * A name that is not UTF-8, or too long for X-Auth-User, belongs to no
 * user (the schema refuses both): the wrong-password answer, at once, with
 * no query.  It tells the client nothing it did not send.
 */
static enum handler_result
login_start(struct conn *c, struct oreq *or, const char *name)
{
	char		 max[16], window[16];
	const char	*p[3] = { or->or_user, max, window };

	if (!utf8_valid_str(name) || text_copy(or->or_user,
	    sizeof(or->or_user), name) == -1) {
		or->or_user[0] = '\0';
		login_failed(c, or, "malformed user name");
		return HANDLER_DONE;
	}
	snprintf(max, sizeof(max), "%d", W.wk_cf->cf_login_max_failures);
	snprintf(window, sizeof(window), "%d", W.wk_cf->cf_login_window);
	return oauth_query(c, oauth_login_sql, 3, p, password_user);
}

static enum handler_result
grant_password(struct conn *c, struct oreq *or)
{
	const char	*name = form_get(&or->or_form, "username");
	const char	*pw = form_get(&or->or_form, "password");

	if (name == NULL || pw == NULL || name[0] == '\0') {
		oauth_error(c, 400, "invalid_request", "username and password "
		    "are required");
		return HANDLER_DONE;
	}
	if (client_scope(c, or) == -1)
		return HANDLER_DONE;
	return login_start(c, or, name);
}

/* ---- refresh_token: tokend_refresh ---------------------------------------- */

/* Presented again within the grace: the first rotation's pair, decrypted
 * with the presented token.  Returns 0, or -1 when the box does not open. */
static int
refresh_replay(struct oreq *or, PGresult *res)
{
	uint8_t		 box[OA_BOX_MAX];
	char		 plain[OA_BOX_MAX];
	const char	*hex = PQgetvalue(res, 0, 4);
	size_t		 n = strlen(hex) / 2;
	int		 rc = -1;

	if (n > sizeof(box) || hex_decode(hex, strlen(hex), box, n) == -1 ||
	    oauth_box_open(or->or_presented, box, n, plain,
	    sizeof(plain)) != 2 * TOKEN_LEN + 1 || plain[TOKEN_LEN] != ' ')
		goto out;
	memcpy(or->or_access, plain, TOKEN_LEN);
	or->or_access[TOKEN_LEN] = '\0';
	memcpy(or->or_refresh, plain + TOKEN_LEN + 1, TOKEN_LEN);
	or->or_refresh[TOKEN_LEN] = '\0';
	rc = 0;
out:
	OPENSSL_cleanse(plain, sizeof(plain));
	return rc;
}

static void
refresh_reuse(struct conn *c, struct oreq *or, PGresult *res)
{
	char	 pfx[TOKEN_DISPLAY_LEN + 1];

	oauth_cache_revoke(PQgetvalue(res, 0, 12));
	metrics_refresh_reuse();
	oauth_prefix(or->or_presented, pfx);
	LOG(LVL_WARN, "refresh_reuse_detected", KV_S("token", pfx),
	    KV_S("client", or->or_client.ci_client_id),
	    KV_S("user", or->or_user), KV_S("family", PQgetvalue(res, 0, 9)),
	    KV_S("family_size", PQgetvalue(res, 0, 10)),
	    KV_S("revoked", PQgetvalue(res, 0, 11)), KV_S("peer", peer_name(c)));
	oauth_error(c, 400, "invalid_grant", bad_grant);
}

/*
 * tokend_refresh and tokend_code_exchange both start their row with
 * o_status, o_user, o_username, o_scope: take the last three into or and
 * return the status.
 */
static const char *
grant_head(struct oreq *or, PGresult *res)
{
	or->or_user_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	/* A name from before the schema's length check: refused, never cut
	 * to another user's (migration 006). */
	if (text_copy(or->or_user, sizeof(or->or_user),
	    PQgetvalue(res, 0, 2)) == -1 || text_copy(or->or_scope,
	    sizeof(or->or_scope), PQgetvalue(res, 0, 3)) == -1) {
		LOG(LVL_WARN, "grant_refused", KV_S("client",
		    or->or_client.ci_client_id), KV_S("reason",
		    "stored user name or scope too long"));
		return "too_long";
	}
	return PQgetvalue(res, 0, 0);
}

static void
refreshed(struct conn *c, PGresult *res, void *arg)
{
	struct oreq	*or;
	const char	*st;
	int64_t		 exp;

	(void)arg;
	if ((or = oreq_row(c, res)) == NULL)
		return;
	st = grant_head(or, res);
	exp = strtoll(PQgetvalue(res, 0, 8), NULL, 10);
	if (strcmp(st, "rotated") == 0) {
		prime_cache(or, res, 5, 7);
		log_issued(or, "token_refreshed", "refresh_token");
		metrics_token_issued(ISSUED_REFRESH);
		token_ok(c, or, W.wk_cf->cf_access_token_ttl);
	} else if (strcmp(st, "replay") == 0 && refresh_replay(or, res) == 0) {
		log_issued(or, "refresh_grace_replay", "refresh_token");
		token_ok(c, or, exp > W.wk_now ? exp - W.wk_now : 0);
	} else if (strcmp(st, "reuse") == 0)
		refresh_reuse(c, or, res);
	else if (strcmp(st, "invalid_scope") == 0)
		oauth_error(c, 400, "invalid_scope", "the requested scope "
		    "exceeds the refresh token's");
	else
		oauth_error(c, 400, "invalid_grant", bad_grant);
	oreq_resume(c, HANDLER_DONE);
}

/*
 * The successor pair, sealed under the presented token, for a replay within
 * the grace, as hex into boxhex.  Returns the box length (0: grace off, no
 * box, every replay is reuse), or -1.
 */
static int
seal_successor(struct oreq *or, char *boxhex)
{
	char	 plain[2 * TOKEN_LEN + 2];
	uint8_t	 box[OA_BOX_MAX];
	int	 n;

	if (W.wk_cf->cf_refresh_grace == 0)
		return 0;
	snprintf(plain, sizeof(plain), "%s %s", or->or_access, or->or_refresh);
	n = oauth_box_seal(or->or_presented, plain, box, sizeof(box));
	OPENSSL_cleanse(plain, sizeof(plain));
	if (n > 0)
		hex_encode(box, (size_t)n, boxhex);
	return n;
}

/*
 * tokend_refresh (migration 005) holds the family to the client's scope as
 * it is now, gives a narrower "scope" to the new access token only, and
 * ends the family refresh_family_max_age after its sign-in.
 */
static enum handler_result
grant_refresh(struct conn *c, struct oreq *or)
{
	const char	*rt = or->or_presented;
	char		 old[2 * TOKEN_HASH_LEN + 1], cid[24], grace[16];
	char		 boxhex[2 * OA_BOX_MAX + 1], maxage[16];
	struct minted	 mt;
	const char	*p[12];
	int		 n;

	if (take_presented(c, or, "refresh_token", TOKEN_REFRESH) == -1)
		return HANDLER_DONE;
	if (mint(or, 1, &mt) == -1 || (n = seal_successor(or, boxhex)) < 0)
		goto fail;
	oauth_hash_hex(rt, old);
	snprintf(cid, sizeof(cid), "%lld", (long long)or->or_client.ci_id);
	snprintf(grace, sizeof(grace), "%d", W.wk_cf->cf_refresh_grace);
	snprintf(maxage, sizeof(maxage), "%d",
	    W.wk_cf->cf_refresh_family_max_age);
	p[0] = old;
	p[1] = cid;
	p[2] = or->or_has_scope ? or->or_scope : NULL;
	p[3] = grace;
	p[4] = n > 0 ? boxhex : NULL;
	minted_params(&mt, 1, p + 5);
	p[11] = maxage;
	or->or_cache_epoch = oauth_cache_epoch();
	if (pgq_submit(W.wk_pgq, c, refresh_sql, 12, p, refreshed,
	    NULL) == 0)
		return HANDLER_PENDING;
fail:
	oauth_unavailable(c);
	return HANDLER_DONE;
}

/* ---- authorization_code: tokend_code_exchange ----------------------------- */

static void
exchanged(struct conn *c, PGresult *res, void *arg)
{
	struct oreq	*or;
	const char	*st;
	char		 pfx[TOKEN_DISPLAY_LEN + 1];

	(void)arg;
	if ((or = oreq_row(c, res)) == NULL)
		return;
	st = grant_head(or, res);
	if (strcmp(st, "ok") == 0) {
		prime_cache(or, res, 4, 6);
		log_issued(or, "token_issued", "authorization_code");
		metrics_token_issued(ISSUED_CODE);
		token_ok(c, or, W.wk_cf->cf_access_token_ttl);
	} else {
		if (strcmp(st, "replay") == 0) {
			oauth_cache_revoke(PQgetvalue(res, 0, 8));
			metrics_code_replay();
			oauth_prefix(or->or_presented, pfx);
			LOG(LVL_WARN, "code_replay_detected", KV_S("code", pfx),
			    KV_S("client", or->or_client.ci_client_id),
			    KV_S("revoked", PQgetvalue(res, 0, 7)),
			    KV_S("peer", peer_name(c)));
		}
		oauth_error(c, 400, "invalid_grant", bad_grant);
	}
	oreq_resume(c, HANDLER_DONE);
}

/* The code_verifier's S256 into challenge; "" when none was sent.
 * Returns 0, or -1 after answering. */
static int
code_verifier(struct conn *c, struct oreq *or, char *challenge)
{
	const char	*v = form_get(&or->or_form, "code_verifier");

	challenge[0] = '\0';
	if (v == NULL) {
		if (!or->or_client.ci_public)
			return 0;
		oauth_error(c, 400, "invalid_request", "code_verifier is "
		    "required for public clients");
		return -1;
	}
	if (!oauth_pkce_verifier_ok(v)) {
		oauth_error(c, 400, "invalid_request", "code_verifier must be "
		    "43 to 128 characters of A-Z a-z 0-9 - . _ ~");
		return -1;
	}
	oauth_pkce_s256(v, challenge);
	return 0;
}

/* The code, redirect_uri and code_verifier parameters.  Returns 0 with
 * or_presented and challenge set, or -1 after answering. */
static int
code_params(struct conn *c, struct oreq *or, char *challenge)
{
	const char	*code = form_get(&or->or_form, "code");

	if (code == NULL || form_get(&or->or_form, "redirect_uri") == NULL) {
		oauth_error(c, 400, "invalid_request", "code and redirect_uri "
		    "are required");
		return -1;
	}
	if (!utf8_valid_str(form_get(&or->or_form, "redirect_uri"))) {
		oauth_error(c, 400, "invalid_request", "redirect_uri is not "
		    "valid UTF-8");
		return -1;
	}
	if (code_verifier(c, or, challenge) == -1)
		return -1;
	return take_presented(c, or, "code", TOKEN_CODE);
}

static enum handler_result
grant_code(struct conn *c, struct oreq *or)
{
	const char	*uri = form_get(&or->or_form, "redirect_uri");
	char		 hash[2 * TOKEN_HASH_LEN + 1], cid[24];
	char		 challenge[OA_CHALLENGE_LEN + 1];
	struct minted	 mt;
	const char	*p[10];

	if (code_params(c, or, challenge) == -1)
		return HANDLER_DONE;
	if (mint_presented(or, &mt, hash, cid) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	p[0] = hash;
	p[1] = cid;
	p[2] = uri;
	p[3] = challenge[0] != '\0' ? challenge : NULL;
	minted_params(&mt, 1, p + 4);
	or->or_cache_epoch = oauth_cache_epoch();
	return oauth_query(c, code_sql, 10, p, exchanged);
}

/* ---- urn:ietf:params:oauth:grant-type:device_code: tokend_device_poll --- */

/*
 * RFC 8628 3.5: the answers while the person has not finished are errors
 * the device keeps polling through; slow_down tells it the interval grew.
 */
static void
device_polled(struct conn *c, PGresult *res, void *arg)
{
	struct oreq	*or;
	const char	*st;
	char		 why[96];

	(void)arg;
	if ((or = oreq_row(c, res)) == NULL)
		return;
	st = grant_head(or, res);
	if (strcmp(st, "ok") == 0) {
		prime_cache(or, res, 4, 6);
		log_issued(or, "token_issued", GRANT_DEVICE_SHORT);
		metrics_token_issued(ISSUED_DEVICE);
		token_ok(c, or, W.wk_cf->cf_access_token_ttl);
	} else if (strcmp(st, "pending") == 0)
		oauth_error(c, 400, "authorization_pending", "the user has "
		    "not approved the device yet");
	else if (strcmp(st, "slow_down") == 0) {
		snprintf(why, sizeof(why), "polling too fast: wait %s seconds "
		    "between requests", PQgetvalue(res, 0, 7));
		oauth_error(c, 400, "slow_down", why);
	} else if (strcmp(st, "denied") == 0)
		oauth_error(c, 400, "access_denied", "the user denied the "
		    "device");
	else if (strcmp(st, "expired") == 0)
		oauth_error(c, 400, "expired_token", "the device_code has "
		    "expired; start again");
	else
		oauth_error(c, 400, "invalid_grant", bad_grant);
	oreq_resume(c, HANDLER_DONE);
}

static enum handler_result
grant_device(struct conn *c, struct oreq *or)
{
	char		 hash[2 * TOKEN_HASH_LEN + 1], cid[24];
	struct minted	 mt;
	const char	*p[8];

	if (take_presented(c, or, "device_code", TOKEN_DEVICE) == -1)
		return HANDLER_DONE;
	if (mint_presented(or, &mt, hash, cid) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	p[0] = hash;
	p[1] = cid;
	minted_params(&mt, 1, p + 2);
	or->or_cache_epoch = oauth_cache_epoch();
	return oauth_query(c, device_sql, 8, p, device_polled);
}

/* ---- the endpoint ------------------------------------------------------- */

static const struct grant {
	unsigned	 gr_bit;		/* GRANT_*: its name, proto/grant.c */
	oreq_fn		 gr_fn;
} grants[] = {
	{ GRANT_PASSWORD, grant_password },
	{ GRANT_REFRESH, grant_refresh },
	{ GRANT_CODE, grant_code },
	{ GRANT_CLIENT_CREDENTIALS, grant_client_credentials },
	{ GRANT_DEVICE, grant_device },
};

static const struct grant *
grant_find(const char *gt)
{
	unsigned	 bit = gt != NULL ? grant_bit(gt) : 0;
	size_t		 i;

	for (i = 0; bit != 0 && i < sizeof(grants) / sizeof(grants[0]); i++)
		if (grants[i].gr_bit == bit)
			return &grants[i];
	return NULL;
}

/* The grant_type and scope parameters.  NULL after answering. */
static const struct grant *
token_params(struct conn *c, struct oreq *or)
{
	const char	*gt = form_get(&or->or_form, "grant_type");
	const struct grant *g;

	if (gt == NULL) {
		oauth_error(c, 400, "invalid_request", "grant_type is "
		    "required");
		return NULL;
	}
	if ((g = grant_find(gt)) == NULL) {
		oauth_error(c, 400, "unsupported_grant_type", "grant_type must "
		    "be authorization_code, refresh_token, client_credentials, "
		    "password or " GRANT_DEVICE_URN);
		return NULL;
	}
	if (oreq_scope(c, or) == -1)
		return NULL;
	return g;
}

/* The client is authenticated: it runs the grant if it may use it. */
static enum handler_result
token_grant(struct conn *c, struct oreq *or)
{
	const struct grant *g = grant_find(form_get(&or->or_form,
	    "grant_type"));

	if (!(or->or_client.ci_grants & g->gr_bit)) {
		oauth_error(c, 400, "unauthorized_client", "this client is not "
		    "allowed this grant_type");
		return HANDLER_DONE;
	}
	return g->gr_fn(c, or);
}

enum handler_result
h_token(struct conn *c)
{
	struct oreq	*or;

	if ((or = oreq_new(c)) == NULL)
		return HANDLER_DONE;
	if (token_params(c, or) == NULL || client_creds(c, or) == -1)
		return oreq_done(c, HANDLER_DONE);
	return oreq_done(c, client_auth(c, or, 0, token_grant));
}

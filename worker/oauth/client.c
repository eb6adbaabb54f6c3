/*
 * OAuth client authentication (RFC 6749 2.3.1) and the form endpoints'
 * request state.
 *
 * A confidential client's secret is an argon2id hash: verifying it takes
 * tens of milliseconds on the hashpool, which would cap /introspect at a
 * few hundred per second.  So each worker remembers successful
 * authentications in a small direct-mapped table keyed by HMAC-SHA256 of
 * the presented client_id and secret (the HMAC key is random per worker
 * process; neither the secret nor a plain hash of it is kept), holding the
 * client's row.  An entry is used only while sh_client_epoch is what it
 * was before the row was fetched: the writer bumps it whenever any client
 * changes (shm/README.md, "Client epoch").  Failures are never cached.
 * The epoch is only as good as the revocation feed that bumps it: while
 * the feed is stale (no round trip within max_revocation_lag, SPEC 5), an
 * entry is re-checked like a token hit is, against the client's row.  The
 * entry keeps a SHA-256 digest of the row it was verified against; if the
 * row fetched now has the same digest, the secret is still good without
 * another argon2id; a rotated secret, or a client gone, goes the whole
 * way (and fails).  If PostgreSQL cannot answer either, the entry stands
 * while a token hit would (stale_cache_ttl).
 *
 * Unauthenticated clients must not be able to buy argon2id time, nor learn
 * which client ids exist: failures are counted per client id in shared
 * memory (shm/ratelimit.c, login_max_failures in login_window), and past
 * the limit the answer is 429 without a hash; an unknown client id, or a
 * public one, that presents a secret is verified against the dummy hash,
 * so it costs what a known id with a wrong secret costs and gets the same
 * answer; and the hashpool queues only a few jobs per source address.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "worker/hashpool.h"
#include "worker/lookup.h"
#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

#define CC_SLOTS	256

struct oauth OA;

struct cc_ent {
	int		 ce_used;
	uint8_t		 ce_key[TOKEN_HASH_LEN];
	uint64_t	 ce_epoch;		/* sh_client_epoch it is valid in */
	int64_t		 ce_until;		/* unix seconds */
	uint8_t		 ce_row[TOKEN_HASH_LEN];	/* client_row_digest */
	struct client_info ce_ci;
};

struct client_cache {
	EVP_MAC_CTX	*cc_mac;		/* HMAC-SHA256, random key set */
	struct cc_ent	 cc_ent[CC_SLOTS];
};

static const char client_sql[] =
    "SELECT id, client_id, secret_hash, public, scope, introspect, "
    "array_to_string(grant_types, ' ') FROM tokend.clients WHERE client_id = $1";

/* ---- responses ----------------------------------------------------------- */

static void
oauth_headers(struct conn *c, int status)
{
	resp_start(c, status);
	resp_header(c, "Cache-Control", "no-store");
	resp_header(c, "Pragma", "no-cache");
}

void
oauth_json(struct conn *c, int status, json_t *obj)
{
	oauth_headers(c, status);
	resp_json_end(c, obj);
}

void
oauth_body(struct conn *c, int status, const char *json, size_t len)
{
	oauth_headers(c, status);
	resp_end(c, "application/json", json, len);
}

void
oauth_error(struct conn *c, int status, const char *error, const char *desc)
{
	oauth_headers(c, status);
	resp_error_end(c, error, desc);
}

void
oauth_api_json(struct conn *c, int status, json_t *obj)
{
	resp_start(c, status);
	resp_header(c, "Cache-Control", "no-store");
	resp_json_end(c, obj);
}

void
oauth_api_error(struct conn *c, int status, const char *error,
    const char *desc)
{
	resp_start(c, status);
	resp_header(c, "Cache-Control", "no-store");
	resp_error_end(c, error, desc);
}

enum handler_result
oauth_query(struct conn *c, const char *sql, int nparams,
    const char *const *params, pgq_cb cb)
{
	if (pgq_submit(W.wk_pgq, c, sql, nparams, params, cb, NULL) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	return HANDLER_PENDING;
}

void
oauth_unavailable(struct conn *c)
{
	oauth_headers(c, 503);
	resp_header(c, "Retry-After", "1");
	resp_error_end(c, "temporarily_unavailable",
	    "PostgreSQL is unreachable or busy; try again");
}

void
oauth_busy(struct conn *c, int wait, const char *desc)
{
	oauth_headers(c, 429);
	resp_headerf(c, "Retry-After", "%d", wait > 0 ? wait : 1);
	resp_error_end(c, "temporarily_unavailable", desc);
}

json_t *
oauth_ts_json(PGresult *res, int r, int k)
{
	char	 ts[ISO8601_LEN];

	if (PQgetisnull(res, r, k) || iso8601_format(strtoll(PQgetvalue(res,
	    r, k), NULL, 10), -1, ts) == -1)
		return json_null();
	return json_string(ts);
}

/* ---- the bearer-authenticated JSON APIs ----------------------------- */

static void
oauth_bearer_found(struct conn *c, const struct tok_info *ti)
{
	struct oauth_wait *ow = (struct oauth_wait *)c->c_pending_data;

	c->c_pending = NULL;
	if (worker_pending_done(c, ow->ow_go(c, ti)) == HANDLER_DONE)
		worker_resume(c);
}

static void
oauth_bearer_answered(struct conn *c, PGresult *res, void *arg)
{
	struct oauth_wait *ow = (struct oauth_wait *)c->c_pending_data;

	(void)arg;
	if (res == NULL || PQntuples(res) < 1)
		oauth_unavailable(c);
	else
		ow->ow_done(c, res);
	worker_pending_done(c, HANDLER_DONE);
	worker_resume(c);
}

enum handler_result
oauth_bearer_query(struct conn *c, const char *sql, int nparams,
    const char *const *params)
{
	return oauth_query(c, sql, nparams, params, oauth_bearer_answered);
}

enum handler_result
oauth_bearer_start(struct conn *c, struct oauth_wait *ow, size_t size,
    unsigned kinds, oauth_go_fn go, oauth_done_fn done)
{
	struct tok_info	 ti;
	int		 r;

	/* A token minted for the answer is wiped with the state. */
	ow->ow_pd.pd_free = worker_pending_wipe;
	ow->ow_pd.pd_size = size;
	ow->ow_go = go;
	ow->ow_done = done;
	c->c_pending_data = &ow->ow_pd;
	r = auth_bearer_begin(c, kinds, &ti, oauth_bearer_found);
	if (r == 2)
		return HANDLER_PENDING;
	return worker_pending_done(c, r == 1 ? go(c, &ti) : HANDLER_DONE);
}

void
client_invalid(struct conn *c, const struct oreq *or)
{
	oauth_headers(c, 401);
	if (or->or_basic)
		resp_header(c, "WWW-Authenticate", "Basic realm=\"tokend\"");
	resp_error_end(c, "invalid_client",
	    "client authentication failed");
}

/* ---- request state ------------------------------------------------------- */

struct oreq *
oreq_new(struct conn *c)
{
	const struct http_req *rq = &c->c_req;
	const char	*body = c->c_in + c->c_inoff + rq->rq_header_bytes;
	size_t		 len = rq->rq_content_length;
	size_t		 arenalen = len + 2 * FORM_MAX_FIELDS + 1;
	struct oreq	*or;

	if (!oauth_ctype_is(rq->rq_content_type,
	    "application/x-www-form-urlencoded")) {
		oauth_error(c, 400, "invalid_request", "the body must be "
		    "application/x-www-form-urlencoded");
		return NULL;
	}
	if ((or = calloc(1, sizeof(*or) + arenalen)) == NULL) {
		oauth_unavailable(c);
		return NULL;
	}
	/* The form and the client secret are wiped with the state. */
	or->or_pd.pd_free = worker_pending_wipe;
	or->or_pd.pd_size = sizeof(*or) + arenalen;
	or->or_arenalen = arenalen;
	if (form_parse(body, len, &or->or_form, or->or_arena, arenalen) ==
	    -1) {
		free(or);
		oauth_error(c, 400, "invalid_request", "malformed form body, "
		    "or a parameter given twice");
		return NULL;
	}
	c->c_pending_data = &or->or_pd;
	return or;
}

void
oreq_free(struct conn *c)
{
	worker_pending_free(c);
}

enum handler_result
oreq_done(struct conn *c, enum handler_result r)
{
	if (r == HANDLER_DONE)
		oreq_free(c);
	return r;
}

enum handler_result
oreq_client_then(struct conn *c, int need_conf, oreq_fn next)
{
	struct oreq	*or;

	if ((or = oreq_new(c)) == NULL)
		return HANDLER_DONE;
	if (client_creds(c, or) == -1)
		return oreq_done(c, HANDLER_DONE);
	return oreq_done(c, client_auth(c, or, need_conf, next));
}

void
oreq_resume(struct conn *c, enum handler_result r)
{
	if (r == HANDLER_PENDING)
		return;
	oreq_free(c);
	worker_resume(c);
}

enum handler_result
oreq_verify(struct conn *c, const char *encoded, const char *pw, size_t len,
    hashpool_cb cb, void *arg)
{
	switch (hashpool_verify(W.wk_hashpool, c, encoded, pw, len, cb, arg)) {
	case 0:
		return HANDLER_PENDING;
	case HASHPOOL_BUSY:
		oauth_busy(c, 1, "too many password checks from this address "
		    "are in progress; try again");
		return HANDLER_DONE;
	default:
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
}

struct oreq *
oreq_row(struct conn *c, PGresult *res)
{
	if (res == NULL || PQntuples(res) != 1) {
		oauth_unavailable(c);
		oreq_resume(c, HANDLER_DONE);
		return NULL;
	}
	return (struct oreq *)c->c_pending_data;
}

int
oreq_scope(struct conn *c, struct oreq *or)
{
	const char	*scope = form_get(&or->or_form, "scope");

	if (scope == NULL)
		return 0;
	if (scope_normalize(scope, or->or_scope, sizeof(or->or_scope)) != 0) {
		oauth_error(c, 400, "invalid_scope", "malformed scope");
		return -1;
	}
	or->or_has_scope = 1;
	return 0;
}

int
client_scope(struct conn *c, struct oreq *or)
{
	if (!or->or_has_scope) {
		snprintf(or->or_scope, sizeof(or->or_scope), "%s",
		    or->or_client.ci_scope);
		return 0;
	}
	if (scope_subset(or->or_scope, or->or_client.ci_scope))
		return 0;
	oauth_error(c, 400, "invalid_scope", "the requested scope exceeds "
	    "the client's");
	return -1;
}

/* ---- the cache ----------------------------------------------------------- */

/*
 * The MAC context keeps its key: each use re-initialises it from the keyed
 * state (EVP_MAC_init with no key), which costs a copy where the one-shot
 * HMAC() fetched the digest and derived the key pads every time, a third
 * of a cached introspection's instructions.
 */
struct client_cache *
client_cache_new(void)
{
	struct client_cache *cc;
	EVP_MAC		*mac;
	OSSL_PARAM	 params[2];
	uint8_t		 key[32];
	int		 ok = 0;

	if ((cc = calloc(1, sizeof(*cc))) == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) != NULL &&
	    (cc->cc_mac = EVP_MAC_CTX_new(mac)) != NULL &&
	    RAND_bytes(key, sizeof(key)) == 1 &&
	    EVP_MAC_init(cc->cc_mac, key, sizeof(key), params) == 1)
		ok = 1;
	EVP_MAC_free(mac);
	OPENSSL_cleanse(key, sizeof(key));
	if (!ok) {
		EVP_MAC_CTX_free(cc->cc_mac);
		free(cc);
		return NULL;
	}
	return cc;
}

/* HMAC(client_id NUL secret) into or_cc_key.  Returns 0 or -1. */
static int
cc_key(struct client_cache *cc, struct oreq *or)
{
	static const unsigned char nul;
	size_t		 len = 0;

	if (EVP_MAC_init(cc->cc_mac, NULL, 0, NULL) != 1 ||
	    EVP_MAC_update(cc->cc_mac, (const unsigned char *)or->or_client_id,
	    strlen(or->or_client_id)) != 1 ||
	    EVP_MAC_update(cc->cc_mac, &nul, 1) != 1 ||
	    EVP_MAC_update(cc->cc_mac, (const unsigned char *)or->or_secret,
	    or->or_secret_len) != 1 ||
	    EVP_MAC_final(cc->cc_mac, or->or_cc_key, &len,
	    sizeof(or->or_cc_key)) != 1 || len != TOKEN_HASH_LEN)
		return -1;
	return 0;
}

static struct cc_ent *
cc_slot(struct client_cache *cc, const uint8_t *key)
{
	return &cc->cc_ent[(key[0] | (unsigned)key[1] << 8) % CC_SLOTS];
}

/*
 * or's credentials in the cache: their client, or NULL.  An entry found
 * while the revocation feed is stale is not answered from: it goes into
 * or_cc_check, or_cc_row and or_cc_client for client_row to re-check.
 */
static const struct client_info *
cc_get(struct oreq *or)
{
	struct client_cache *cc = OA.oa_clients;
	struct cc_ent	*e;
	int64_t		 ok = auth_feed_mark();	/* before the entry */

	or->or_cc_check = 0;
	if (cc == NULL || cc_key(cc, or) == -1)
		return NULL;
	e = cc_slot(cc, or->or_cc_key);
	if (!e->ce_used || CRYPTO_memcmp(e->ce_key, or->or_cc_key,
	    TOKEN_HASH_LEN) != 0 || e->ce_until <= W.wk_now ||
	    e->ce_epoch != __atomic_load_n(&W.wk_shm->sh_client_epoch,
	    __ATOMIC_ACQUIRE))
		return NULL;
	if (auth_feed_fresh(ok))
		return &e->ce_ci;
	or->or_cc_check = 1;
	memcpy(or->or_cc_row, e->ce_row, TOKEN_HASH_LEN);
	or->or_cc_client = e->ce_ci;
	return NULL;
}

/* Remember or's authenticated client, unless a client changed since the
 * row was read, or the writer's LISTEN is down (a change would be missed). */
static void
cc_put(struct oreq *or)
{
	struct client_cache *cc = OA.oa_clients;
	struct cc_ent	*e;

	if (cc == NULL || or->or_client_epoch !=
	    __atomic_load_n(&W.wk_shm->sh_client_epoch, __ATOMIC_ACQUIRE) ||
	    !__atomic_load_n(&W.wk_shm->sh_listening, __ATOMIC_ACQUIRE))
		return;
	e = cc_slot(cc, or->or_cc_key);
	memcpy(e->ce_key, or->or_cc_key, TOKEN_HASH_LEN);
	memcpy(e->ce_row, or->or_cc_row, TOKEN_HASH_LEN);
	e->ce_epoch = or->or_client_epoch;
	e->ce_until = W.wk_now + W.wk_cf->cf_cache_ttl;
	e->ce_ci = or->or_client;
	e->ce_used = 1;
}

/* ---- credentials --------------------------------------------------------- */

/* From HTTP Basic; the form may repeat the same client_id, nothing else. */
static int
creds_basic(struct conn *c, struct oreq *or, const char *fid,
    const char *fsecret)
{
	or->or_basic = 1;
	if (fsecret != NULL) {
		oauth_error(c, 400, "invalid_request", "the client "
		    "authenticated twice: HTTP Basic and client_secret");
		return -1;
	}
	if (fid != NULL && strcmp(fid, or->or_client_id) != 0) {
		oauth_error(c, 400, "invalid_request", "client_id differs "
		    "from the HTTP Basic credentials");
		return -1;
	}
	/* "id:" is a public client that used Basic for its id. */
	or->or_has_secret = or->or_secret_len > 0;
	return 0;
}

int
client_creds(struct conn *c, struct oreq *or)
{
	const char	*fid = form_get(&or->or_form, "client_id");
	const char	*fsecret = form_get(&or->or_form, "client_secret");
	int		 b;

	b = oauth_basic_decode(c->c_req.rq_authorization, or->or_client_id,
	    sizeof(or->or_client_id), or->or_secret, sizeof(or->or_secret),
	    &or->or_secret_len);
	/* No client id is anything but UTF-8: refused before any query. */
	if (b == 1 && !utf8_valid_str(or->or_client_id))
		b = -1;
	if (b == 1)
		return creds_basic(c, or, fid, fsecret);
	if (b == -1) {
		or->or_basic = 1;
		client_invalid(c, or);
		return -1;
	}
	if (fid == NULL || fid[0] == '\0' || strlen(fid) > OA_CLIENT_ID_MAX ||
	    !utf8_valid_str(fid) ||
	    (fsecret != NULL && strlen(fsecret) > PASSWD_MAX_LEN)) {
		client_invalid(c, or);
		return -1;
	}
	memcpy(or->or_client_id, fid, strlen(fid) + 1);
	if (fsecret != NULL && fsecret[0] != '\0') {
		or->or_secret_len = strlen(fsecret);
		memcpy(or->or_secret, fsecret, or->or_secret_len + 1);
		or->or_has_secret = 1;
	}
	return 0;
}

/* ---- authentication -------------------------------------------------------- */

/* Authentication failed: counted against the client id, then 401. */
static void
client_refused(struct conn *c, struct oreq *or)
{
	ratelimit_fail(W.wk_shm, or->or_client_id, W.wk_now,
	    W.wk_cf->cf_login_window);
	client_invalid(c, or);
}

static void
client_verified(struct conn *c, int ok, void *arg)
{
	struct oreq	*or;

	(void)arg;
	or = (struct oreq *)c->c_pending_data;
	if (!ok || or->or_client.ci_id == 0) {
		client_refused(c, or);
		oreq_resume(c, HANDLER_DONE);
		return;
	}
	ratelimit_reset(W.wk_shm, or->or_client_id);
	cc_put(or);
	oreq_resume(c, or->or_next(c, or));
}

/*
 * SHA-256 of the client's row as client_sql returns it, every column with
 * its length and whether it is NULL: what a cache entry was verified
 * against.  Returns 0, or -1 when OpenSSL fails (then nothing matches).
 */
static int
client_row_digest(PGresult *res, uint8_t out[TOKEN_HASH_LEN])
{
	EVP_MD_CTX	*md;
	uint32_t	 len;
	unsigned int	 outlen = 0;
	int		 i, ok;

	if ((md = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	for (i = 0; ok && i < PQnfields(res); i++) {
		len = PQgetisnull(res, 0, i) ? UINT32_MAX :
		    (uint32_t)PQgetlength(res, 0, i);
		ok = EVP_DigestUpdate(md, &len, sizeof(len)) == 1 &&
		    (len == UINT32_MAX || EVP_DigestUpdate(md,
		    PQgetvalue(res, 0, i), len) == 1);
	}
	ok = ok && EVP_DigestFinal_ex(md, out, &outlen) == 1 &&
	    outlen == TOKEN_HASH_LEN;
	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

/* The row into or_client; -1 when a value would not fit whole. */
static int
client_take_row(struct oreq *or, PGresult *res)
{
	struct client_info *ci = &or->or_client;

	if (text_copy(ci->ci_client_id, sizeof(ci->ci_client_id),
	    PQgetvalue(res, 0, 1)) == -1 || text_copy(ci->ci_scope,
	    sizeof(ci->ci_scope), PQgetvalue(res, 0, 4)) == -1) {
		LOG(LVL_WARN, "client_refused", KV_S("client", or->or_client_id),
		    KV_S("reason", "stored scope too long"));
		return -1;
	}
	ci->ci_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	ci->ci_public = PQgetvalue(res, 0, 3)[0] == 't';
	ci->ci_introspect = PQgetvalue(res, 0, 5)[0] == 't';
	ci->ci_grants = grant_set(PQgetvalue(res, 0, 6));
	return 0;
}

static int	client_limited(struct conn *, struct oreq *);

/*
 * The client's row (or none) arrived: check what kind it is, then its
 * secret.  A presented secret always costs one argon2id: against the
 * client's hash, or the dummy when there is none to check it against.
 */
static enum handler_result
client_row(struct conn *c, struct oreq *or, PGresult *res)
{
	struct client_info *ci = &or->or_client;
	const char	*hash = NULL;
	uint8_t		 row[TOKEN_HASH_LEN] = { 0 };
	int		 same;

	if (PQntuples(res) == 1 && client_take_row(or, res) == -1)
		goto invalid;
	/* A cached entry re-checked (cc_get): the same row, the same
	 * verdict; the digest is what cc_put keeps. */
	same = PQntuples(res) == 1 && client_row_digest(res, row) == 0 &&
	    or->or_cc_check && CRYPTO_memcmp(row, or->or_cc_row,
	    TOKEN_HASH_LEN) == 0;
	memcpy(or->or_cc_row, row, TOKEN_HASH_LEN);
	if (same && !(ci->ci_public && or->or_need_conf)) {
		ratelimit_reset(W.wk_shm, or->or_client_id);
		return or->or_next(c, or);
	}
	/* The row changed under a cached secret: from here on it is a guess
	 * like any other (a stolen old secret must not buy argon2id). */
	if (or->or_cc_check && client_limited(c, or))
		return HANDLER_DONE;
	if (ci->ci_id != 0 && ci->ci_public && !or->or_has_secret) {
		if (or->or_need_conf)
			goto invalid;
		ratelimit_reset(W.wk_shm, or->or_client_id);
		cc_put(or);
		return or->or_next(c, or);
	}
	if (!or->or_has_secret)
		goto invalid;
	if (ci->ci_id != 0 && !ci->ci_public && !PQgetisnull(res, 0, 2))
		hash = PQgetvalue(res, 0, 2);
	else
		ci->ci_id = 0;		/* client_verified: never a match */
	return oreq_verify(c, hash, or->or_secret, or->or_secret_len,
	    client_verified, NULL);
invalid:
	client_refused(c, or);
	return HANDLER_DONE;
}

static void
client_fetched(struct conn *c, PGresult *res, void *arg)
{
	struct oreq	*or;

	(void)arg;
	or = (struct oreq *)c->c_pending_data;
	if (res == NULL && or->or_cc_check && lookup_stale_ok()) {
		/* No answer to re-check against: the entry stands as long
		 * as a cached token's answer would (SPEC 5). */
		or->or_client = or->or_cc_client;
		if (or->or_client.ci_public && or->or_need_conf) {
			client_invalid(c, or);
			oreq_resume(c, HANDLER_DONE);
		} else
			oreq_resume(c, or->or_next(c, or));
		return;
	}
	if (res == NULL) {
		oauth_unavailable(c);
		oreq_resume(c, HANDLER_DONE);
		return;
	}
	oreq_resume(c, client_row(c, or, res));
}

/* Past the client id's failure limit: 429 without a query or a hash. */
static int
client_limited(struct conn *c, struct oreq *or)
{
	int	 wait;

	wait = ratelimit_check(W.wk_shm, or->or_client_id, W.wk_now,
	    W.wk_cf->cf_login_window, W.wk_cf->cf_login_max_failures);
	if (wait == 0)
		return 0;
	ctr_add(&W.wk_slot->sl_login_lockouts, 1);
	LOG(LVL_WARN, "client_rate_limited", KV_S("client", or->or_client_id),
	    KV_I("retry_after", wait), KV_S("peer", peer_name(c)));
	oauth_busy(c, wait, "too many failed authentications for this "
	    "client; try again later");
	return 1;
}

enum handler_result
client_auth(struct conn *c, struct oreq *or, int need_conf, oreq_fn next)
{
	const struct client_info *ci;
	const char	*params[1] = { or->or_client_id };

	or->or_need_conf = need_conf;
	or->or_next = next;
	resp_log_client(c, or->or_client_id);
	if ((ci = cc_get(or)) != NULL) {
		if (ci->ci_public && need_conf) {
			client_invalid(c, or);
			return HANDLER_DONE;
		}
		or->or_client = *ci;
		return next(c, or);
	}
	/* Credentials once verified are re-checked before the failure
	 * limit applies: client_row applies it if their row changed. */
	if (!or->or_cc_check && client_limited(c, or))
		return HANDLER_DONE;
	or->or_client_epoch = __atomic_load_n(&W.wk_shm->sh_client_epoch,
	    __ATOMIC_ACQUIRE);
	return oauth_query(c, client_sql, 1, params, client_fetched);
}

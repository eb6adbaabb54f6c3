/*
 * POST /introspect (RFC 7662), POST /revoke (RFC 7009), GET
 * /.well-known/oauth-authorization-server (RFC 8414), and the cache upkeep
 * every OAuth endpoint shares.
 *
 * /introspect is for the confidential clients registered with
 * --introspect (clients.introspect): any other client, once authenticated,
 * gets 403, and its question counts no use.  It answers access tokens and
 * PATs from the LMDB cache on a hit, exactly as /auth does (and, like a 200
 * from /auth, each active answer counts one use of the token); a miss goes
 * through the worker's lookup and fills the cache.  Refresh tokens are
 * never cached (a rotation is not notified), so they are always asked of
 * PostgreSQL, and only their own client learns that one is active.
 *
 * /revoke commits the revocation, then bumps sh_cache_epoch and deletes
 * the revoked hashes from the shared cache before it answers: when the 200
 * leaves, no worker can answer from the cache for them any more.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/lookup.h"
#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

static const char refresh_info_sql[] =
    "SELECT t.id, coalesce(t.user_id, 0), coalesce(u.name, ''), "
    "coalesce(c.client_id, ''), t.scope, "
    "floor(extract(epoch FROM t.expires_at))::bigint, "
    "floor(extract(epoch FROM t.created_at))::bigint "
    "FROM tokend.tokens t LEFT JOIN tokend.users u ON u.id = t.user_id "
    "LEFT JOIN tokend.clients c ON c.id = t.client_id "
    "WHERE t.hash = decode($1, 'hex') AND t.kind = 'refresh' "
    "AND t.client_id = $2::bigint "
    "AND t.revoked_at IS NULL AND t.rotated_at IS NULL "
    "AND t.expires_at > now() AND NOT coalesce(u.disabled, false)";

static const char revoke_sql[] =
    "SELECT coalesce(o_kind, ''), o_n, o_hashes "
    "FROM tokend.tokend_revoke(decode($1, 'hex'), $2::bigint)";

/* ---- the shared cache --------------------------------------------------- */

void
oauth_cache_revoke(const char *hexlist)
{
	uint8_t		(*h)[TOKEN_HASH_LEN];
	const char	*p;
	size_t		 n = 1, i = 0, len;

	if (hexlist == NULL || hexlist[0] == '\0')
		return;
	/* First the epoch: a lookup in flight must not cache them again. */
	__atomic_add_fetch(&W.wk_shm->sh_cache_epoch, 1, __ATOMIC_RELEASE);
	if (W.wk_cache == NULL)
		return;
	for (p = hexlist; *p != '\0'; p++)
		n += *p == ',';
	if ((h = calloc(n, TOKEN_HASH_LEN)) == NULL) {
		cache_clear(W.wk_cache);	/* too much rather than too little */
		return;
	}
	for (p = hexlist; *p != '\0'; p += len + (p[len] == ',')) {
		len = strcspn(p, ",");
		if (hex_decode(p, len, h[i], TOKEN_HASH_LEN) == 0)
			i++;
	}
	if (cache_del_many(W.wk_cache, (const uint8_t (*)[TOKEN_HASH_LEN])h,
	    i) == -1)
		cache_clear(W.wk_cache);
	free(h);
}

uint64_t
oauth_cache_epoch(void)
{
	return __atomic_load_n(&W.wk_shm->sh_cache_epoch, __ATOMIC_ACQUIRE);
}

void
oauth_cache_issued(const char *tok, const struct tok_info *ti,
    uint64_t epoch)
{
	struct tok_info	 t = *ti;
	uint8_t		 hash[TOKEN_HASH_LEN];

	if (W.wk_cache == NULL ||
	    !__atomic_load_n(&W.wk_shm->sh_listening, __ATOMIC_ACQUIRE))
		return;
	t.ti_until = cache_until(&t, W.wk_now, W.wk_cf->cf_cache_ttl,
	    W.wk_cf->cf_negative_ttl);
	token_hash(tok, strlen(tok), hash);
	cache_put(W.wk_cache, hash, &t, &W.wk_shm->sh_cache_epoch, epoch);
}

/* ---- /introspect ---------------------------------------------------------- */

/*
 * Written with jsonw rather than jansson: on a cache hit, building and
 * dumping a jansson object was a third of an introspection's instructions.
 * The buffer holds the longest answer: every string escaped at 6 bytes a
 * byte.
 */
static void
introspect_answer(struct conn *c, const struct tok_info *ti)
{
	static const char inactive[] = "{\"active\":false}";
	char		 body[6 * (TI_SCOPE_LEN + 2 * TI_CLIENT_LEN +
			    TI_USER_LEN) + 256];
	struct jsonw	 jw;
	long		 n;

	if (ti->ti_state != TI_VALID ||
	    (ti->ti_expires != 0 && ti->ti_expires <= W.wk_now) ||
	    (ti->ti_kind != TOKEN_ACCESS && ti->ti_kind != TOKEN_PAT &&
	    ti->ti_kind != TOKEN_REFRESH)) {
		oauth_body(c, 200, inactive, sizeof(inactive) - 1);
		return;
	}
	/* Counted before the answer leaves, as /auth does, and not
	 * answered active when it cannot be counted. */
	if (usage_record(W.wk_slot, ti->ti_id, W.wk_wall_ms, NULL) == -1) {
		auth_usage_full(c);
		return;
	}
	jw_begin(&jw, body, sizeof(body));
	jw_bool(&jw, "active", 1);
	jw_str(&jw, "scope", ti->ti_scope);
	jw_str(&jw, "token_type", "Bearer");
	jw_int(&jw, "iat", ti->ti_iat);
	if (ti->ti_client[0] != '\0')
		jw_str(&jw, "client_id", ti->ti_client);
	if (ti->ti_user_id != 0) {
		jw_str(&jw, "username", ti->ti_user);
		jw_int_str(&jw, "sub", ti->ti_user_id);
	} else if (ti->ti_client[0] != '\0')
		jw_str(&jw, "sub", ti->ti_client);
	if (ti->ti_expires != 0)
		jw_int(&jw, "exp", ti->ti_expires);
	if ((n = jw_end(&jw)) < 0) {
		oauth_unavailable(c);
		return;
	}
	oauth_body(c, 200, body, (size_t)n);
}

static void
introspect_looked(struct conn *c, const struct tok_info *ti)
{
	c->c_pending = NULL;
	if (ti == NULL)
		oauth_unavailable(c);
	else
		introspect_answer(c, ti);
	oreq_resume(c, HANDLER_DONE);
}

static void
introspect_refresh(struct conn *c, PGresult *res, void *arg)
{
	struct tok_info	 ti;

	(void)arg;
	memset(&ti, 0, sizeof(ti));
	ti.ti_state = TI_NEGATIVE;
	if (res != NULL && PQntuples(res) == 1) {
		ti.ti_state = TI_VALID;
		ti.ti_kind = TOKEN_REFRESH;
		ti.ti_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		ti.ti_user_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		/* Too long to hold whole: inactive, never cut short. */
		if (text_copy(ti.ti_user, sizeof(ti.ti_user),
		    PQgetvalue(res, 0, 2)) == -1 || text_copy(ti.ti_client,
		    sizeof(ti.ti_client), PQgetvalue(res, 0, 3)) == -1 ||
		    text_copy(ti.ti_scope, sizeof(ti.ti_scope),
		    PQgetvalue(res, 0, 4)) == -1)
			ti.ti_state = TI_NEGATIVE;
		ti.ti_expires = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
		ti.ti_iat = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
	}
	if (res == NULL)
		oauth_unavailable(c);
	else
		introspect_answer(c, &ti);
	oreq_resume(c, HANDLER_DONE);
}

/* Refresh tokens are never cached: always PostgreSQL.  Another client's
 * refresh token is inactive to the asker (no row). */
static enum handler_result
introspect_refresh_start(struct conn *c, struct oreq *or, const char *tok)
{
	char		 hex[2 * TOKEN_HASH_LEN + 1], cid[24];
	const char	*p[2] = { hex, cid };

	oauth_hash_hex(tok, hex);
	snprintf(cid, sizeof(cid), "%lld", (long long)or->or_client.ci_id);
	return oauth_query(c, refresh_info_sql, 2, p, introspect_refresh);
}

static enum handler_result
introspect_go(struct conn *c, struct oreq *or)
{
	const char	*tok = form_get(&or->or_form, "token");
	struct tok_info	 ti;
	uint8_t		 hash[TOKEN_HASH_LEN];
	enum token_kind	 kind;
	int64_t		 ok;

	if (!or->or_client.ci_introspect) {
		oauth_error(c, 403, "unauthorized_client", "this client is not "
		    "allowed to introspect tokens");
		return HANDLER_DONE;
	}
	if (tok == NULL) {
		oauth_error(c, 400, "invalid_request", "token is required");
		return HANDLER_DONE;
	}
	kind = token_check(tok, strlen(tok));
	if (kind == TOKEN_REFRESH)
		return introspect_refresh_start(c, or, tok);
	memset(&ti, 0, sizeof(ti));
	ti.ti_state = TI_NEGATIVE;
	if (kind != TOKEN_ACCESS && kind != TOKEN_PAT) {
		introspect_answer(c, &ti);
		return HANDLER_DONE;
	}
	token_hash(tok, strlen(tok), hash);
	ok = auth_feed_mark();
	if (W.wk_cache != NULL && cache_get(W.wk_cache, hash, &ti) == 1 &&
	    ti.ti_until > W.wk_now) {
		ctr_add(ti.ti_state == TI_VALID ? &W.wk_slot->sl_cache_hits :
		    &W.wk_slot->sl_cache_negative_hits, 1);
		switch (auth_hit(c, hash, &ti, ok, introspect_looked)) {
		case 1:
			introspect_answer(c, &ti);
			return HANDLER_DONE;
		case 2:
			return HANDLER_PENDING;
		default:
			oauth_unavailable(c);
			return HANDLER_DONE;
		}
	}
	ctr_add(&W.wk_slot->sl_cache_misses, 1);
	if (lookup_submit(W.wk_lookup, c, hash, introspect_looked) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	return HANDLER_PENDING;
}

enum handler_result
h_introspect(struct conn *c)
{
	return oreq_client_then(c, 1, introspect_go);
}

/* ---- /revoke -------------------------------------------------------------- */

static void
revoke_ok(struct conn *c)
{
	resp_start(c, 200);
	resp_header(c, "Cache-Control", "no-store");
	resp_header(c, "Pragma", "no-cache");
	resp_end(c, NULL, NULL, 0);
}

static void
revoked(struct conn *c, PGresult *res, void *arg)
{
	struct oreq	*or;
	char		 pfx[TOKEN_DISPLAY_LEN + 1];

	(void)arg;
	if ((or = oreq_row(c, res)) == NULL)
		return;
	oauth_cache_revoke(PQgetvalue(res, 0, 2));
	if (strtol(PQgetvalue(res, 0, 1), NULL, 10) > 0) {
		oauth_prefix(or->or_presented, pfx);
		LOG(LVL_INFO, "token_revoked", KV_S("token", pfx),
		    KV_S("kind", PQgetvalue(res, 0, 0)),
		    KV_S("revoked", PQgetvalue(res, 0, 1)),
		    KV_S("client", or->or_client.ci_client_id),
		    KV_S("by", "api"));
	}
	revoke_ok(c);
	oreq_resume(c, HANDLER_DONE);
}

static enum handler_result
revoke_go(struct conn *c, struct oreq *or)
{
	const char	*tok = form_get(&or->or_form, "token");
	const char	*p[2];
	char		 hex[2 * TOKEN_HASH_LEN + 1], cid[24];

	if (tok == NULL) {
		oauth_error(c, 400, "invalid_request", "token is required");
		return HANDLER_DONE;
	}
	/* RFC 7009 2.2: an invalid token is no error. */
	if (token_check(tok, strlen(tok)) == TOKEN_INVALID) {
		revoke_ok(c);
		return HANDLER_DONE;
	}
	memcpy(or->or_presented, tok, TOKEN_LEN + 1);
	oauth_hash_hex(tok, hex);
	snprintf(cid, sizeof(cid), "%lld", (long long)or->or_client.ci_id);
	p[0] = hex;
	p[1] = cid;
	return oauth_query(c, revoke_sql, 2, p, revoked);
}

enum handler_result
h_revoke(struct conn *c)
{
	return oreq_client_then(c, 0, revoke_go);
}

/* ---- RFC 8414 metadata ----------------------------------------------------- */

static json_t *
str_array(const char *const *v, size_t n)
{
	json_t	*a = json_array();
	size_t	 i;

	for (i = 0; a != NULL && i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* The configured scopes_supported, space-separated, as an array. */
static json_t *
scopes_array(const char *list)
{
	json_t		*a = json_array();
	const char	*p = list;
	char		 w[CF_SCOPES_LEN];
	size_t		 n;

	while (a != NULL && *p != '\0') {
		while (*p == ' ')
			p++;
		if ((n = strcspn(p, " ")) == 0)
			break;
		memcpy(w, p, n);
		w[n] = '\0';
		json_array_append_new(a, json_string(w));
		p += n;
	}
	return a;
}

void
oauth_url(const char *path, char *out, size_t outlen)
{
	const char	*iss = W.wk_cf->cf_issuer;
	size_t		 n = strlen(iss);

	while (n > 0 && iss[n - 1] == '/')
		n--;
	snprintf(out, outlen, "%.*s%s", (int)n, iss, path);
}

static void
endpoint(json_t *o, const char *key, const char *path)
{
	char	 url[OA_URL_MAX];

	oauth_url(path, url, sizeof(url));
	json_object_set_new(o, key, json_string(url));
}

/* Every grant type /token takes (proto/grant.c), as an array. */
static json_t *
grants_array(void)
{
	const char	*v[GRANT_NTYPES];
	int		 i;

	for (i = 0; i < GRANT_NTYPES; i++)
		v[i] = grant_name(i);
	return str_array(v, GRANT_NTYPES);
}

enum handler_result
h_wellknown(struct conn *c)
{
	static const char *const auth[] = { "client_secret_basic",
	    "client_secret_post", "none" };
	json_t		*o;

	o = json_pack("{s:s, s:o, s:[s], s:[s], s:o, s:o, s:o, s:b}",
	    "issuer", W.wk_cf->cf_issuer, "grant_types_supported",
	    grants_array(), "response_types_supported", "code",
	    "code_challenge_methods_supported", "S256",
	    "token_endpoint_auth_methods_supported", str_array(auth, 3),
	    "revocation_endpoint_auth_methods_supported", str_array(auth, 3),
	    "introspection_endpoint_auth_methods_supported",
	    str_array(auth, 2),
	    "authorization_response_iss_parameter_supported", 1);
	if (o == NULL) {
		resp_error(c, 500, "server_error", "out of memory");
		return HANDLER_DONE;
	}
	endpoint(o, "authorization_endpoint", "/authorize");
	endpoint(o, "token_endpoint", "/token");
	endpoint(o, "introspection_endpoint", "/introspect");
	endpoint(o, "revocation_endpoint", "/revoke");
	endpoint(o, "device_authorization_endpoint", "/device_authorization");
	if (W.wk_cf->cf_scopes_supported[0] != '\0')
		json_object_set_new(o, "scopes_supported",
		    scopes_array(W.wk_cf->cf_scopes_supported));
	resp_start(c, 200);
	resp_header(c, "Cache-Control", "public, max-age=300");
	resp_json_end(c, o);
	return HANDLER_DONE;
}

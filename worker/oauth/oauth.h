/*
 * The OAuth 2.0 module of the worker: the endpoints /token, /authorize,
 * /introspect, /revoke, /pats and the RFC 8414 metadata.  It runs in
 * worker processes only, on the loop thread, and plugs into the engine
 * through oauth_module (module.c), which master/main.c hands to
 * worker_main; the engine names nothing of it.  worker/oauth/README.md has
 * the design.
 *
 *   oauth_util.c   pure functions: HTTP Basic decoding, PKCE, the refresh
 *                  successor box (HKDF + AES-256-GCM), the JSON bodies of
 *                  /authorize and /pats (their scopes through proto/'s
 *                  scope functions), redirect_to.  They touch no worker
 *                  state, so the fuzzers and tests/unit/test_oauth_util.c
 *                  link them with proto/ alone.
 *   client.c       responses, the form request state, client
 *                  authentication and its per-worker cache (OA), the
 *                  bearer-authenticated JSON APIs' request skeleton.
 *   h_oauth.c      POST /introspect, POST /revoke, the RFC 8414 metadata,
 *                  the shared cache after issuing or revoking.
 *   h_sessions.c   GET /sessions, DELETE /sessions/ID (and h_pats.c
 *                  POST /pats/ID/rotate).
 *   h_token.c      POST /token: the five grants, each only for the
 *                  clients allowed it (clients.grant_types).
 *   h_device.c     POST /device_authorization (RFC 8628).
 *   h_authorize.c  POST /authorize.
 *   h_pats.c       POST /pats, GET /pats, DELETE /pats/ID.
 *   h_leak.c       POST /credentials/revoke, for secret scanners.
 *   module.c       the routes and the per-worker set-up.
 *   web*.c         the sign-in pages (web.h).
 *
 * A form endpoint's request state is one struct oreq in c_pending_data,
 * made by oreq_new and freed when the response is written (oreq_done,
 * oreq_resume) or, if the connection dies while parked, by conn_close,
 * both through its struct pending header, which wipes the whole block
 * (the form's strings, the client secret, a password live in it).  Every
 * asynchronous step (pgq, hashpool, lookup) finds it again through
 * c->c_pending_data; a step whose connection died is never called back.
 * Errors are answered here as JSON {"error","error_description"} through
 * resp.c's resp_error_end, with Cache-Control: no-store.
 */
#ifndef TOKEND_OAUTH_H
#define TOKEND_OAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "worker/hashpool.h"
#include "worker/pgq.h"
#include "worker/worker.h"

#define OA_CLIENT_ID_MAX	LIM_CLIENT_ID_MAX
#define OA_SCOPE_MAX		SCOPE_MAX	/* fits ti_scope */
#define OA_URI_MAX		LIM_URI_MAX
#define OA_STATE_MAX		1024
#define OA_NAME_MAX		LIM_PAT_NAME_MAX
#define OA_CHALLENGE_LEN	43	/* base64url of SHA-256, no padding */
#define OA_EXPIRES_MIN		LIM_EXPIRES_MIN
#define OA_EXPIRES_MAX		LIM_EXPIRES_MAX
#define OA_PAT_REAUTH		600	/* POST /pats: access token younger */
#define OA_BOX_MAX		512	/* the sealed successor pair */
#define OA_OVERLAP_DEFAULT	LIM_OVERLAP_DEFAULT	/* /pats/ID/rotate */
#define OA_OVERLAP_MAX		LIM_OVERLAP_MAX
#define OA_URL_MAX		(CF_URL_LEN + 64)	/* issuer + path */

/* ---- oauth_util.c: pure -------------------------------------------------- */

/*
 * RFC 6749 2.3.1: "Basic" base64(urlencode(id) ":" urlencode(secret)).
 * Returns 1 with both decoded (NUL-terminated, no NUL inside), 0 when the
 * header is absent or another scheme, -1 when it is Basic but malformed or
 * a part is too long (idlen and secretcap include the NUL).
 */
int	oauth_basic_decode(struct http_str auth, char *id, size_t idlen,
	    char *secret, size_t secretcap, size_t *secretlen);


/* RFC 7636 4.1: 43 to 128 characters of ALPHA / DIGIT / - . _ ~ */
int	oauth_pkce_verifier_ok(const char *v);
/* A well-formed S256 challenge: OA_CHALLENGE_LEN base64url characters. */
int	oauth_pkce_challenge_ok(const char *ch);
/* BASE64URL(SHA256(verifier)) into out (OA_CHALLENGE_LEN + 1 bytes). */
void	oauth_pkce_s256(const char *verifier, char *out);

/*
 * The refresh grace's box: AES-256-GCM of plain under HKDF-SHA256 of the
 * old refresh token string, as nonce(12) || ciphertext || tag(16).  Seal
 * returns the box length, or -1; open returns the plaintext length
 * (NUL-terminated in out), or -1 when the box is not one of this token's.
 */
int	oauth_box_seal(const char *old_refresh, const char *plain,
	    uint8_t *out, size_t outcap);
int	oauth_box_open(const char *old_refresh, const uint8_t *box, size_t n,
	    char *out, size_t outcap);

/* Is the Content-Type type (ignoring case and any ";param")? */
int	oauth_ctype_is(struct http_str ct, const char *type);

/* The JSON body of POST /authorize, checked. */
struct authorize_req {
	char	 ar_client_id[OA_CLIENT_ID_MAX + 1];
	char	 ar_redirect_uri[OA_URI_MAX + 1];
	int	 ar_has_scope;
	char	 ar_scope[OA_SCOPE_MAX + 1];	/* normalised */
	int	 ar_has_state;
	char	 ar_state[OA_STATE_MAX + 1];
	int	 ar_has_challenge;
	char	 ar_challenge[OA_CHALLENGE_LEN + 1];
};

/* The JSON body of POST /pats, checked. */
struct pat_req {
	char	 pr_name[OA_NAME_MAX + 1];
	int	 pr_has_scope;
	char	 pr_scope[OA_SCOPE_MAX + 1];	/* normalised */
	int64_t	 pr_expires_in;			/* 0: never */
};

/*
 * Parse and check body[0..len).  Return 0, or -1 with *err the OAuth error
 * code ("invalid_request", "invalid_scope", "unsupported_response_type")
 * and *why a static description.
 */
int	oauth_parse_authorize(const char *body, size_t len,
	    struct authorize_req *ar, const char **err, const char **why);
int	oauth_parse_pat(const char *body, size_t len, struct pat_req *pr,
	    const char **err, const char **why);

/* The JSON body of POST /pats/ID/rotate: {"overlap": 0 to OA_OVERLAP_MAX}
 * into *overlap (left as it is when absent or null). */
int	oauth_parse_rotate(const char *body, size_t len, int64_t *overlap,
	    const char **err, const char **why);

/*
 * The ID of a path prefix ID suffix (prefix "/pats/", suffix "/rotate" or
 * "") into out: a positive decimal int64, else "0", which matches no row,
 * so that a malformed path answers 404 after authentication and tells an
 * anonymous caller nothing.
 */
void	oauth_path_id(struct http_str path, const char *prefix,
	    const char *suffix, char out[24]);

/*
 * redirect_uri with code and (when not NULL) state and iss (RFC 9207)
 * appended as query parameters, before any fragment, after an existing
 * query with '&'.  Returns 0, or -1 when out is too small.
 */
int	oauth_redirect_to(const char *uri, const char *code,
	    const char *state, const char *iss, char *out, size_t outlen);

/*
 * The same with any query parameters: kv holds npairs name, value pairs
 * (a NULL value is skipped), each percent-encoded.
 */
int	oauth_redirect_with(const char *uri, const char *const *kv,
	    size_t npairs, char *out, size_t outlen);

/* The first TOKEN_DISPLAY_LEN characters of tok, for logs. */
void	oauth_prefix(const char *tok, char out[TOKEN_DISPLAY_LEN + 1]);
/* Lower-case hex of SHA-256(tok), the form the SQL functions decode. */
void	oauth_hash_hex(const char *tok, char out[2 * TOKEN_HASH_LEN + 1]);

/* ---- The form endpoints' request state ------------------------------------ */

struct client_info {
	int64_t	 ci_id;				/* clients.id */
	int	 ci_public;
	int	 ci_introspect;			/* may call /introspect */
	unsigned ci_grants;			/* GRANT_* it may use */
	char	 ci_client_id[OA_CLIENT_ID_MAX + 1];
	char	 ci_scope[TI_SCOPE_LEN];	/* allowed scopes */
};

struct oreq;
typedef enum handler_result (*oreq_fn)(struct conn *c, struct oreq *or);

struct oreq {
	struct pending	 or_pd;			/* first: c_pending_data */
	struct form	 or_form;		/* strings in or_arena */
	/* The presented client credentials (client.c). */
	int		 or_basic;		/* Basic was tried */
	int		 or_has_secret;
	char		 or_client_id[OA_CLIENT_ID_MAX + 1];
	char		 or_secret[PASSWD_MAX_LEN + 1];
	size_t		 or_secret_len;
	uint8_t		 or_cc_key[TOKEN_HASH_LEN];
	uint64_t	 or_client_epoch;	/* read before the fetch */
	int		 or_cc_check;		/* a cached entry to re-check */
	uint8_t		 or_cc_row[TOKEN_HASH_LEN];	/* the entry's row
						 * digest, then the fetched
						 * row's (cc_put keeps it) */
	struct client_info or_cc_client;	/* and its client */
	int		 or_need_conf;
	oreq_fn		 or_next;		/* once authenticated */
	struct client_info or_client;
	/* The grant or operation under way. */
	int		 or_has_scope;
	char		 or_scope[TI_SCOPE_LEN];	/* normalised */
	char		 or_user[TI_USER_LEN];
	int64_t		 or_user_id;
	int		 or_user_disabled;
	uint64_t	 or_cache_epoch;	/* sh_cache_epoch, before */
	char		 or_presented[TOKEN_LEN + 1];	/* refresh token, code */
	char		 or_access[TOKEN_LEN + 1];	/* minted */
	char		 or_refresh[TOKEN_LEN + 1];
	size_t		 or_arenalen;
	char		 or_arena[];
};

/*
 * Make c's request state from its form body (application/x-www-form-
 * urlencoded required), stored in c->c_pending_data.  NULL when it
 * answered already (400 invalid_request, 503 out of memory).
 */
struct oreq *oreq_new(struct conn *c);
/* Free c's state, wiping the secrets in it. */
void	oreq_free(struct conn *c);
/* A handler's result: DONE frees the state.  Returns r. */
enum handler_result oreq_done(struct conn *c, enum handler_result r);
/* A form endpoint whose client authenticates (client_creds, client_auth)
 * before next runs: the whole handler of /introspect and /revoke. */
enum handler_result oreq_client_then(struct conn *c, int need_conf,
	    oreq_fn next);
/* From a callback: on DONE free the state and resume the connection. */
void	oreq_resume(struct conn *c, enum handler_result r);
/*
 * Queue an argon2id check (hashpool_verify; encoded NULL: the dummy hash)
 * for c's request: PENDING, or DONE after answering 429 (this source
 * address has its share of the queue) or 503 (queue full, no pool).
 */
enum handler_result oreq_verify(struct conn *c, const char *encoded,
	    const char *pw, size_t len, hashpool_cb cb, void *arg);
/*
 * From a pgq callback expecting one row: the request's state, or NULL after
 * answering 503 and resuming c (PostgreSQL unavailable or no row).
 */
struct oreq *oreq_row(struct conn *c, PGresult *res);

/* The form's scope parameter, normalised into or_scope (or_has_scope).
 * Returns 0, or -1 after answering invalid_scope. */
int	oreq_scope(struct conn *c, struct oreq *or);
/* After client_auth: the requested scope, within the client's; omitted:
 * all of the client's.  Returns 0, or -1 after answering invalid_scope. */
int	client_scope(struct conn *c, struct oreq *or);

/* OAuth responses: every one has Cache-Control: no-store and Pragma:
 * no-cache (RFC 6749 5.1). */
void	oauth_json(struct conn *c, int status, json_t *obj);
/* The same with a body already serialised (json[0..len)). */
void	oauth_body(struct conn *c, int status, const char *json, size_t len);
void	oauth_error(struct conn *c, int status, const char *error,
	    const char *desc);
/* The JSON APIs' answers and errors (/authorize, /pats, /sessions):
 * Cache-Control: no-store. */
void	oauth_api_json(struct conn *c, int status, json_t *obj);
void	oauth_api_error(struct conn *c, int status, const char *error,
	    const char *desc);
/* 503 temporarily_unavailable with Retry-After. */
void	oauth_unavailable(struct conn *c);
/*
 * Queue sql for c on the OAuth connection (pgq.h; cb gets arg NULL):
 * HANDLER_PENDING, or HANDLER_DONE after answering 503 when it cannot be.
 */
enum handler_result oauth_query(struct conn *c, const char *sql,
	    int nparams, const char *const *params, pgq_cb cb);
/* 429 temporarily_unavailable with Retry-After: wait seconds (at least 1). */
void	oauth_busy(struct conn *c, int wait, const char *desc);

/* A PG_EPOCH column (store.h) as an ISO 8601 JSON string, or null. */
json_t	*oauth_ts_json(PGresult *res, int r, int k);

/*
 * The state of an endpoint authenticated by a user's bearer token (the PAT
 * API, /sessions) starts with this, in c_pending_data.  oauth_bearer_start
 * makes it c's state (freed and wiped, size bytes, as the engine frees
 * any), finds the bearer token (auth_bearer_begin with kinds), then runs
 * go with it (go checks it, auth_bearer_check): go's result at once, or
 * HANDLER_PENDING while the lookup runs, after which go's DONE resumes c.
 * go's query, sent by oauth_bearer_query, is answered by done with its
 * first row there (else 503), and then c resumes.
 */
typedef enum handler_result (*oauth_go_fn)(struct conn *c,
	    const struct tok_info *ti);
typedef void (*oauth_done_fn)(struct conn *c, PGresult *res);
struct oauth_wait {
	struct pending	 ow_pd;			/* first */
	oauth_go_fn	 ow_go;
	oauth_done_fn	 ow_done;
};
enum handler_result oauth_bearer_start(struct conn *c, struct oauth_wait *ow,
	    size_t size, unsigned kinds, oauth_go_fn go, oauth_done_fn done);
enum handler_result oauth_bearer_query(struct conn *c, const char *sql,
	    int nparams, const char *const *params);

/* sh_cache_epoch now, read before a query that issues tokens (acquire). */
uint64_t oauth_cache_epoch(void);

/*
 * After a revocation committed in PostgreSQL: bump sh_cache_epoch, then
 * delete the tokens whose hashes (hex, comma-separated, as the SQL
 * functions return them) are listed, from the shared cache, so that every
 * worker refuses them before this response is sent.
 */
void	oauth_cache_revoke(const char *hexlist);

/*
 * A token this worker just issued goes into the cache at once (so the
 * first /auth is a hit), unless an invalidation happened since epoch was
 * read or the writer's LISTEN is down.
 */
void	oauth_cache_issued(const char *tok, const struct tok_info *ti,
	    uint64_t epoch);

/* The issuer (without its trailing slashes) followed by path, for the
 * metadata and the device flow's verification_uri (h_oauth.c). */
void	oauth_url(const char *path, char *out, size_t outlen);

/* ---- module.c: the routes and set-up the engine runs -------------------- */

/* What master/main.c passes to worker_main. */
extern const struct worker_module oauth_module;

enum handler_result h_token(struct conn *c);

/*
 * The password check's first step, shared by the password grant and the
 * sign-in page: tokend_login_attempt (migration 006) counts the attempt
 * for every box and answers o_wait, o_id, o_hash, o_disabled.  After a
 * right password, oauth_login_ok clears the count without waiting.
 */
extern const char oauth_login_sql[];
void	oauth_login_ok(const char *user);

/*
 * A failed sign-in (the password grant's or the sign-in page's): counted in
 * tokend_signin_failures_total and written to the audit trail
 * (tokend_login_failed) without waiting.  user NULL or "" when the name
 * was malformed; client NULL for the pages.
 */
void	oauth_login_failed(const char *user, const char *client,
	    const char *peer, const char *why);
/* A sign-in refused by the failure limit: counted and audited likewise. */
void	oauth_login_locked(const char *user, const char *client,
	    const char *peer);
enum handler_result h_pat_item(struct conn *c);
enum handler_result h_sessions(struct conn *c);
enum handler_result h_session_delete(struct conn *c);
enum handler_result h_authorize(struct conn *c);
enum handler_result h_introspect(struct conn *c);
enum handler_result h_revoke(struct conn *c);
enum handler_result h_wellknown(struct conn *c);
enum handler_result h_pats(struct conn *c);
enum handler_result h_pat_delete(struct conn *c);
enum handler_result h_leak(struct conn *c);

/* ---- h_leak.c: POST /credentials/revoke -------------------------------- */

#define LEAK_MAX	1000	/* credentials per report */
#define LEAK_HEX_MAX	(LEAK_MAX * (2 * TOKEN_HASH_LEN + 1))

/*
 * Check a report's body, {"credentials": [1 to LEAK_MAX strings]}: the
 * lower-case hex SHA-256 of each well-formed token among them, comma-
 * separated, into hex (LEAK_HEX_MAX bytes; "" for none).  Returns 0 with
 * the strings received and the well-formed ones counted, or -1 with *why
 * a static description.  Pure: the fuzzer calls it.
 */
int	leak_parse(const char *body, size_t len, char *hex, size_t *received,
	    size_t *wellformed, const char **why);
enum handler_result h_device_authorization(struct conn *c);

/* ---- client.c ------------------------------------------------------------- */

struct client_cache;

/* The module's per-worker state (client.c), set up by oauth_init. */
struct oauth {
	struct client_cache *oa_clients;	/* authenticated clients */
};
extern struct oauth OA;

/* After fork: a worker's empty cache (NULL: none, every auth is fetched). */
struct client_cache *client_cache_new(void);

/*
 * Take the client credentials of c (Basic, or client_id/client_secret in
 * or's form; both at once is invalid_request) into or.  Returns 0, or -1
 * after answering 400 or 401.
 */
int	client_creds(struct conn *c, struct oreq *or);

/*
 * Authenticate or's client (need_conf: a confidential one) from the cache,
 * else PostgreSQL and argon2id off the loop; then run next, whose result
 * this returns (at once on a cache hit, or later from a callback, which
 * resumes the connection when next is done).  Unknown client, wrong or
 * missing secret: 401 invalid_client, with WWW-Authenticate: Basic when
 * Basic was tried.
 */
enum handler_result client_auth(struct conn *c, struct oreq *or,
	    int need_conf, oreq_fn next);
/* 401 invalid_client for or's credentials. */
void	client_invalid(struct conn *c, const struct oreq *or);

#endif /* TOKEND_OAUTH_H */

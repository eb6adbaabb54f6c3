/*
 * store: the LMDB cache, PostgreSQL access, schema migrations, passwords.
 * Its rooms: runtime/ (configuration and logging, below every process),
 * writer/ (the writer process), tokenctl/ (the tokenctl program).
 *
 *   cache.c     LMDB environment in cache_dir: token hash -> tok_info.
 *   pg.c        blocking libpq helpers for tokenctl, the master's schema
 *               check and the writer; the reconnect rule and the notice
 *               receiver, which workers' connections use too.
 *   migrate.c   versioned schema: store/migrations/NNN_*.sql, applied in
 *               order, each inside one transaction, recorded in
 *               schema_migrations.
 *   passwd.c    argon2id for passwords and client secrets.
 *
 * (A worker's own non-blocking PostgreSQL connection for cache misses is
 * worker/lookup.c: it lives with the event loop that drives it.)
 *
 * Contract: LMDB environments and libpq connections are opened after fork,
 * in the process that uses them, and never cross a fork.  Data returned by
 * the cache is copied out of the LMDB transaction into caller-owned memory.
 */
#ifndef TOKEND_STORE_H
#define TOKEND_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

struct config;
struct shm;

/* ---- What the cache holds about a token (cache.c) --------------------- */

#define TI_USER_LEN    128
#define TI_CLIENT_LEN  128
#define TI_SCOPE_LEN   1024

enum ti_state {
	TI_VALID = 0,
	TI_NEGATIVE,		/* unknown, revoked, expired, user disabled */
};

/* Everything /auth and /introspect answer with, without PostgreSQL. */
struct tok_info {
	int	 ti_state;		/* TI_* */
	int	 ti_kind;		/* enum token_kind */
	int64_t	 ti_id;			/* tokens.id */
	int64_t	 ti_user_id;		/* 0 when none (client credentials) */
	int64_t	 ti_expires;		/* unix seconds, 0 never */
	int64_t	 ti_iat;		/* unix seconds */
	int64_t	 ti_until;		/* the cache entry's own end, unix s */
	char	 ti_user[TI_USER_LEN];
	char	 ti_client[TI_CLIENT_LEN];
	char	 ti_scope[TI_SCOPE_LEN];
	/* SPEC 13, PATs only (zero for other kinds). */
	uint32_t ti_flags;		/* TI_F_* */
	uint32_t ti_rate;		/* uses per ti_rate_window s, 0 none */
	uint32_t ti_rate_window;	/* seconds */
	uint32_t ti_nallow;		/* 0: any client address */
	struct cidr ti_allow[IP_MAX_ALLOW];
};

/* A canary PAT: ti_state is TI_NEGATIVE, so every path answers it as an
 * unknown token, and the flag makes the one that sees it log it. */
#define TI_F_CANARY	0x01

/*
 * The entry's lifetime: min(now + ttl, expires) for a valid token (expires
 * 0 means never), now + negative_ttl for a negative one.
 */
int64_t	cache_until(const struct tok_info *ti, int64_t now, int cache_ttl,
	    int negative_ttl);

/*
 * Encode ti into buf (the LMDB value).  Returns the length, or -1 when buf
 * is too small.  cache_decode returns 0, or -1 for a value that is not a
 * well-formed entry (treated as a miss).
 */
int	cache_encode(const struct tok_info *ti, uint8_t *buf, size_t buflen);
int	cache_decode(const uint8_t *buf, size_t len, struct tok_info *ti);

/* ---- The LMDB cache (cache.c) ----------------------------------------- */

struct cache;

/*
 * Whoever can write in cache_dir can forge cache entries that /auth would
 * believe: refuse a directory that is group- or world-writable or owned by
 * another user than the effective one.  A missing one passes (it is
 * created 0700).  Returns 0, or -1 with err set ("cache_dir PATH: ...").
 */
int	cache_dir_check(const char *dir, char *err, size_t errlen);

/*
 * 1 when dir is on a filesystem held in memory (tmpfs, ramfs), 0 when it
 * is on a disk, -1 when statfs fails.  Both files in cache_dir are shared
 * mappings written on the request path (usage.shm by every hit, the cache
 * by every fill).  On a disk the kernel writes their dirty pages back and
 * write-protects them, and the next write to each page faults into the
 * filesystem inside a worker's event loop (store/README.md).
 */
int	cache_dir_in_memory(const char *dir);

/*
 * Master, at start, before any child exists: remove and recreate the
 * environment's files in dir, so nothing from a previous run survives.
 * Returns 0, or -1 with err set.
 */
int	cache_reset_dir(const char *dir, uint64_t map_size, char *err,
	    size_t errlen);

/*
 * Open the environment (MDB_NOSYNC | MDB_NOTLS: the cache is disposable).
 * After fork only.  Returns a handle owned by the caller (cache_close), or
 * NULL with err set.
 */
struct cache *cache_open(const char *dir, uint64_t map_size, char *err,
	    size_t errlen);
void	cache_close(struct cache *c);

/*
 * Look a hash up: 1 found (ti filled; the caller checks ti_until against
 * now), 0 absent, -1 LMDB error.  No allocation; one read transaction,
 * reset and renewed between calls.
 */
int	cache_get(struct cache *c, const uint8_t hash[TOKEN_HASH_LEN],
	    struct tok_info *ti);

/*
 * Insert or replace, unless *epoch no longer equals seen_epoch once the
 * write transaction holds LMDB's writer lock: an invalidation (revocation,
 * cache clear) happened after the caller read PostgreSQL, and its answer
 * may be stale.  ti->ti_until is stored as given (see cache_until).  A
 * full map is cleared (the cache is disposable) and the put tried once
 * more.  Returns 1 stored, 0 skipped, -1 error.
 */
int	cache_put(struct cache *c, const uint8_t hash[TOKEN_HASH_LEN],
	    const struct tok_info *ti, const volatile uint64_t *epoch,
	    uint64_t seen_epoch);

/* Returns 0 (deleted or absent) or -1.  Callers bump the epoch first. */
int	cache_del(struct cache *c, const uint8_t hash[TOKEN_HASH_LEN]);
int	cache_del_many(struct cache *c, const uint8_t (*hashes)[TOKEN_HASH_LEN],
	    size_t n);
int	cache_clear(struct cache *c);

/* Entries in the cache (for /metrics), -1 on error. */
long long cache_entries(struct cache *c);
/* The map's pages in use and its size, in bytes (for /metrics): 0, or -1. */
int	cache_map_use(struct cache *c, uint64_t *used, uint64_t *size);

/*
 * Master, after a child died: mdb_reader_check on a short-lived handle;
 * *dead is the number of reader slots freed.  A stale slot pins the pages
 * of its snapshot, so without this a full map could not be reused.  The
 * calling process must not hold a cache_open handle on dir: closing the
 * second handle would drop the process's POSIX locks on lock.mdb.
 */
int	cache_reader_check(const char *dir, uint64_t map_size, int *dead);

/* ---- Blocking PostgreSQL helpers (pg.c) ------------------------------- */

/*
 * A timestamptz column as whole seconds since the epoch (NULL when it is
 * NULL or infinite), what iso8601_format (proto.h) shows: every time
 * tokend or tokenctl prints is formatted there, not by to_char.
 */
#define PG_EPOCH(col) "CASE WHEN isfinite(" col ") THEN " \
	"floor(extract(epoch FROM " col "))::bigint END"

#include <libpq-fe.h>

/*
 * Connect with application_name set, and connect_timeout=5 unless the URL
 * sets one.  Returns NULL with err set to one line, "cannot connect to
 * PostgreSQL: ..." (never the URL, nor its password).  Caller PQfinish()es.
 */
PGconn	*pg_connect(const char *url, const char *appname, char *err,
	    size_t errlen);

/* PQexecParams with text parameters.  PQresultStatus is COMMAND_OK or
 * TUPLES_OK: returns the result (caller PQclear()s), else clears it, sets
 * err to the error's primary message (one line, no DETAIL, which may quote
 * row values) and returns NULL. */
PGresult *pg_exec(PGconn *db, const char *sql, int nparams,
	    const char *const *params, char *err, size_t errlen);

/*
 * Reconnecting, one rule for every PostgreSQL connection a process keeps
 * open (the writer's, a worker's lookup and OAuth connections; any other
 * long-lived one should use it too).  After a failed attempt or a broken
 * connection, pg_retry_failed logs db_retry (conn=rt_conn, the error, the
 * attempt number and the delay; at most one line a second per connection)
 * and sets the next attempt 100 ms later, the delay doubling up to 5 s;
 * pg_retry_due says whether that time has come; pg_retry_ok resets the
 * delay once a connection works.  Times are shm_now_ms() milliseconds.
 */
struct pg_retry {
	const char	*rt_conn;	/* static: "writer", "lookup", ... */
	int64_t		 rt_next_ms;	/* no attempt before this */
	int64_t		 rt_backoff;	/* the next delay */
	int64_t		 rt_logged_ms;	/* the last db_retry line */
	uint64_t	 rt_attempts;	/* failures since the last success */
};

void	pg_retry_init(struct pg_retry *rt, const char *conn);
void	pg_retry_failed(struct pg_retry *rt, const char *why, int64_t now_ms);
int	pg_retry_due(const struct pg_retry *rt, int64_t now_ms);
void	pg_retry_ok(struct pg_retry *rt);

/*
 * Send db's notices and warnings (a RAISE NOTICE, a migration's "already
 * exists") to the log as pg_notice events, conn=conn (static), severity and
 * primary message only (a DETAIL may quote row values), instead of libpq's
 * default of printing them raw on stderr.  pg_connect does it for its
 * connections; an asynchronous one calls it right after PQconnectStart.
 */
void	pg_notices(PGconn *db, const char *conn);

/* ---- Schema (migrate.c) ----------------------------------------------- */

/* The highest version this build knows. */
int	migrate_latest(void);

/*
 * Apply every migration newer than the database's, in order, each in its
 * own transaction under an advisory lock (so two tokenctls cannot race).
 * Returns the number applied (0: already current), or -1 with err set.
 */
int	migrate_up(PGconn *db, char *err, size_t errlen);

/* The database's schema version, 0 for an empty database, -1 on error. */
int	migrate_current(PGconn *db, char *err, size_t errlen);

/* Generated from store/migrations/NNN_name.sql by contrib/sql2c.sh. */
struct migration {
	int		 mg_version;	/* from the file name's NNN */
	const char	*mg_name;
	const char	*mg_sql;
};
extern const struct migration migrations[];
extern const int nmigrations;

/* ---- Passwords (passwd.c) --------------------------------------------- */

/*
 * argon2id with OWASP's recommended parameters (t=2, m=19 MiB, p=1), one
 * place for every password and client secret.  Any process may call these;
 * each call allocates PASSWD_M_COST KiB for its duration (libargon2).
 */
#define PASSWD_T_COST       2
#define PASSWD_M_COST       19456	/* KiB */
#define PASSWD_PARALLELISM  1
#define PASSWD_SALT_LEN     16
#define PASSWD_HASH_LEN     32
#define PASSWD_ENCODED_MAX  128	/* the encoded string is 97 bytes + NUL */
#define PASSWD_MAX_LEN      1024	/* longest password or secret accepted */

/*
 * Hash pw[0..len) with a fresh RAND_bytes salt into out, the encoded form
 * ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash").  Returns 0, or -1 when len
 * is 0 or over PASSWD_MAX_LEN, outlen is too small, or a library call fails.
 */
int	passwd_hash(const char *pw, size_t len, char *out, size_t outlen);

/*
 * Returns 0 when pw matches the encoded hash, -1 otherwise (mismatch,
 * malformed hash, len over PASSWD_MAX_LEN).  With encoded NULL (an unknown
 * user, or a user with no password) it verifies against a built-in hash of
 * the same cost and returns -1, so the caller's answer takes the same time
 * either way.
 */
int	passwd_verify(const char *encoded, const char *pw, size_t len);

/* The built-in hash passwd_verify(NULL, ...) uses (static storage). */
const char *passwd_dummy_hash(void);

#endif /* TOKEND_STORE_H */

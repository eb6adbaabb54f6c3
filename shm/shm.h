/*
 * shm: the segment the master creates before fork and every child shares.
 * The design (who writes what, memory ordering, what a dead process leaves
 * behind) is in shm/README.md; read it before changing anything here.
 *
 *   seg.c    creation, slots, counters and their sums.
 *   usage.c  the per-slot usage tables (record, swap, drain).
 *   ratelimit.c  failed client authentications per client id (lock-free,
 *            all workers; password logins are counted in PostgreSQL).
 *
 * Contract: shm_open_file is called once, by the master, before fork; the
 * segment is the file cache_dir/usage.shm, mapped MAP_SHARED, so what the
 * processes leave in it outlives them all and the next start applies it
 * (shm/README.md "The usage file").  shm_create is the same segment in
 * anonymous memory, for the unit tests.  Nothing in it is a pointer.  A
 * function named for a role (usage_record: worker; usage_take: writer) may
 * only be called by that role.
 */
#ifndef TOKEND_SHM_H
#define TOKEND_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/proto.h"

/* ---- Metrics dimensions ------------------------------------------------ */

/* The endpoints requests are counted by; their labels are the worker's
 * route paths (worker/dispatch.c). */
enum endpoint {
	EP_AUTH, EP_TOKEN, EP_AUTHORIZE, EP_INTROSPECT, EP_REVOKE, EP_PATS,
	EP_SESSIONS,
	EP_WELLKNOWN, EP_HEALTHZ, EP_READYZ, EP_METRICS, EP_OTHER,
	EP_LEAK,	/* POST /credentials/revoke */
	EP_WEB,		/* signin: the sign-in pages (/signin, /device ...) */
	EP_DEVICE,		/* POST /device_authorization (RFC 8628) */
	EP__COUNT
};

/* One label per status tokend sends (proto.h's HTTP_STATUSES); anything
 * else counts as "other". */
enum status_idx {
#define X(n, reason) ST_##n,
	HTTP_STATUSES
#undef X
	ST_OTHER,
	ST__COUNT
};

/* Request duration histogram upper bounds, in microseconds. */
#define SHM_BUCKETS_US \
	X(50) X(100) X(250) X(500) X(1000) X(2500) X(5000) X(10000) \
	X(25000) X(50000) X(100000) X(250000) X(1000000) X(2500000) \
	X(5000000) X(10000000)
enum { SHM_NBUCKETS = 16 };

/* Tokens issued, by grant (tokend_tokens_issued_total{grant}). */
#define SHM_GRANTS \
	X(PASSWORD, "password") X(REFRESH, "refresh_token") \
	X(CODE, "authorization_code") \
	X(CLIENT_CREDENTIALS, "client_credentials") \
	X(DEVICE, "device_code") X(PAT, "pat")
enum shm_grant {
#define X(id, label) ISSUED_##id,
	SHM_GRANTS
#undef X
	ISSUED__COUNT
};

int	status_index(int status);
/* The HTTP status of index st (0 for ST_OTHER). */
int	status_code(int st);
/* The upper bound of histogram bucket b, in microseconds. */
uint64_t shm_bucket_us(int b);

/* ---- Usage tables ------------------------------------------------------ */

#define USAGE_CAP	(1u << 18)		/* slots per table */
#define USAGE_LOAD_MAX	(USAGE_CAP / 10 * 7)	/* distinct tokens per table */

enum { UT_FREE = 0, UT_ACTIVE, UT_FROZEN };

/*
 * One entry per token and client network (/24, /56): a token used from
 * two networks in one interval has two entries, so the writer sees every
 * network (token_new_network) and the address of the newest use
 * (last_used_ip).  ue_ip is all zeros when the use had no address.
 */
struct usage_ent {
	int64_t		ue_token;	/* tokens.id; 0 is an empty entry */
	int64_t		ue_last_ms;	/* newest use, unix milliseconds */
	uint64_t	ue_count;
	uint8_t		ue_ip[IP_LEN];	/* the newest use's client address */
};

struct usage_table {
	uint32_t	ut_state;	/* UT_*; release/acquire */
	uint32_t	ut_used;	/* entries in ut_order */
	uint64_t	ut_batch;	/* batch sequence it was last sent in */
	uint32_t	ut_order[USAGE_CAP];	/* indexes of used entries */
	struct usage_ent ut_ent[USAGE_CAP];
};

/* ---- Slots ------------------------------------------------------------- */

enum { SLOT_FREE = 0, SLOT_USED, SLOT_RETIRED };

struct shm_slot {
	/* Master writes. */
	uint32_t	sl_state;		/* SLOT_* */
	int32_t		sl_worker;		/* worker number, 1-based */
	pid_t		sl_pid;

	/* Worker writes (the slot's only writer). */
	uint64_t	sl_requests[EP__COUNT][ST__COUNT];
	uint64_t	sl_duration[EP__COUNT][SHM_NBUCKETS + 1]; /* last +Inf */
	uint64_t	sl_duration_sum_us[EP__COUNT];
	uint64_t	sl_cache_hits;
	uint64_t	sl_cache_misses;
	uint64_t	sl_cache_negative_hits;
	uint64_t	sl_conns_open;
	uint64_t	sl_conns_total;
	uint64_t	sl_uses_recorded;
	uint64_t	sl_uses_dropped;
	uint64_t	sl_pg_errors;
	uint64_t	sl_login_lockouts;	/* refused by a failure limit */
	uint64_t	sl_cache_verified;	/* hits sent to PostgreSQL (SPEC 5) */
	/* ops: issue 13's counters (worker.h: metrics_count_*). */
	uint64_t	sl_signin_failures;	/* password grant, sign-in page */
	uint64_t	sl_refresh_reuse;	/* families revoked for reuse */
	uint64_t	sl_code_replay;		/* codes presented twice */
	uint64_t	sl_tokens_issued[ISSUED__COUNT];
	uint64_t	sl_swap_ack;
	uint32_t	sl_active;		/* index of the ACTIVE table */

	/* Writer writes. */
	uint64_t	sl_swap_req;

	struct usage_table sl_tables[2];

	/* tokend_leak_reports_total: POST /credentials/revoke answered 202
	 * (worker writes). */
	uint64_t	sl_leak_reports;
	/* Beyond (issue 14), worker writes: tokend_canary_hits_total and
	 * tokend_rate_limited_total. */
	uint64_t	sl_canary_hits;
	uint64_t	sl_rate_limited;
} __attribute__((aligned(64)));

/* ---- Client rate limit (ratelimit.c) --------------------------------- */

/*
 * Failures per name (an OAuth client id; also leaked-credential reports
 * per source address, worker/oauth/h_leak.c), shared by every worker:
 * RL_SETS sets of RL_WAYS 64-bit words, each word one name's (window
 * start, count, tag), updated only by compare-and-swap.  shm/README.md has
 * the layout.
 */
#define RL_SETS	4096
#define RL_WAYS	4

struct shm;

/*
 * Worker: 0 when name may try to log in now, else the seconds until it may
 * (it has max failures in the window that began at its first failure).
 */
int	ratelimit_check(struct shm *shm, const char *name, int64_t now,
	    int window, int max);
/* Worker: one more failure of name at now (unix seconds). */
void	ratelimit_fail(struct shm *shm, const char *name, int64_t now,
	    int window);
/* Worker: name logged in; its failures are forgotten. */
void	ratelimit_reset(struct shm *shm, const char *name);

/*
 * Per-PAT rate limits (SPEC 13), per box: TRL_SETS sets of TRL_WAYS words,
 * each one token's (tag, window number, uses in it), CAS only.
 * shm/README.md "Per-token rate limits".
 */
#define TRL_SETS	4096
#define TRL_WAYS	4
#define TRL_MAX_RATE	LIM_RATE_MAX	/* fits the word's 24-bit count */

/*
 * Worker: one use of token at now (unix seconds) under a limit of max
 * uses per window seconds.  Returns 0 when it may be used (and counts
 * it), else the seconds until its window ends (at least 1).
 */
int	ratelimit_token(struct shm *shm, int64_t token, int64_t now,
	    uint32_t max, uint32_t window);

/* ---- The segment ------------------------------------------------------- */

/*
 * The usage file is reused at start only when its first five fields equal
 * this build's.  Bump SHM_VERSION with any change to struct shm, struct
 * shm_slot or struct usage_table that keeps their sizes.
 */
#define SHM_MAGIC	0x746b7573u	/* "tkus" */
#define SHM_VERSION	3
#define SHM_MAX_SLOTS	4096

/* sh_stop: how far the master's graceful stop has gone. */
enum { SHM_RUNNING = 0, SHM_STOP_WORKERS, SHM_STOP_WRITER };

/* sh_feed_state: the writer's LISTEN connection and its round trips. */
enum { FEED_DOWN = 0, FEED_UNCONFIRMED, FEED_CONFIRMED };

struct shm {
	/* Layout of the usage file (README "The usage file"). */
	uint32_t	sh_magic;		/* SHM_MAGIC */
	uint32_t	sh_version;		/* SHM_VERSION */
	uint32_t	sh_hdr_size;		/* sizeof(struct shm) */
	uint32_t	sh_slot_size;		/* sizeof(struct shm_slot) */
	uint32_t	sh_usage_cap;		/* USAGE_CAP */
	char		sh_boot_id[40];		/* the kernel's boot_id */
	char		sh_instance[33];	/* hex id of this usage file */
	uint32_t	sh_nslots;
	uint64_t	sh_size;

	/* Master writes (release), SHM_*: the writer follows a stop. */
	uint32_t	sh_stop;

	/* Any invalidator: atomic add, release.  See README "Epoch". */
	uint64_t	sh_cache_epoch;

	/* Writer writes. */
	uint32_t	sh_listening;		/* LISTEN connection is up */
	int64_t		sh_pg_ok_ms;		/* last PostgreSQL answer, monotonic */
	uint64_t	sh_batch_seq;		/* last batch number used */
	uint64_t	sh_uses_flushed;
	uint64_t	sh_rows_flushed;
	uint64_t	sh_flushes;
	uint64_t	sh_writer_pg_errors;
	uint64_t	sh_revocations;		/* notifications applied */
	uint64_t	sh_cache_clears;

	/* Master writes. */
	uint64_t	sh_worker_restarts;
	uint64_t	sh_writer_restarts;
	pid_t		sh_writer_pid;		/* 0 while none runs */
	int64_t		sh_started;		/* master's start, unix seconds */

	/* Writer bumps (atomic add, release) on a client change ('c'
	 * notification) and when LISTEN comes up; workers' client caches
	 * are valid only while it is unchanged.  README "Client epoch". */
	uint64_t	sh_client_epoch;

	/*
	 * The revocation feed's heartbeat (README "Bounded staleness"): the
	 * writer's feed thread writes both (release), after applying every
	 * notification that came before; workers read sh_feed_ok_ms once
	 * per request, before the cache (acquire).  sh_feed_ok_ms: when the last ping that
	 * came back on the LISTEN connection was sent, monotonic ms, 0 for
	 * never.  The master sets sh_feed_state to FEED_DOWN when the writer
	 * dies.
	 */
	int64_t		sh_feed_ok_ms;
	uint32_t	sh_feed_state;		/* FEED_* */

	/*
	 * Writer liveness (README "Writer liveness"): each of the writer's
	 * two threads stores the time by which it will store again
	 * (relaxed); the master kills a writer that misses either.
	 */
	int64_t		sh_writer_due_ms;	/* main loop, monotonic ms */
	int64_t		sh_feed_due_ms;		/* feed thread, monotonic ms */

	/* Any worker, lock-free CAS per word.  README "Login rate limit". */
	uint64_t	sh_login_rl[RL_SETS * RL_WAYS] __attribute__((aligned(64)));

	/* Any worker, lock-free CAS per word.  README "Per-token rate
	 * limits". */
	uint64_t	sh_token_rl[TRL_SETS * TRL_WAYS] __attribute__((aligned(64)));

	/* Slots follow, 64-byte aligned, at offsetof(struct shm, sh_slots). */
	struct shm_slot	sh_slots[] __attribute__((aligned(64)));
};

/* Anonymous segment (unit tests).  Returns the mapping, or NULL with errno. */
struct shm *shm_create(uint32_t nslots);

/* What shm_open_file found in an existing usage file. */
struct shm_recovery {
	int		 sr_reused;	/* its instance and tables carry on */
	uint64_t	 sr_uses;	/* uses in it not yet in PostgreSQL */
	uint32_t	 sr_tables;	/* usage tables holding them */
	uint32_t	 sr_slots;	/* slots the previous run left */
	char		 sr_ignored[96];	/* why not reused, or "" */
};

/*
 * Master, before fork: map the usage file at path (created 0600), with at
 * least nslots slots.  The file is locked (flock) for as long as any
 * process of this tokend lives; another holder is waited for up to wait_ms.
 * A valid file from a previous run keeps its instance id, batch number and
 * usage tables: every slot it used becomes RETIRED, so that the writer
 * flushes what it holds exactly once; its counters start from zero.  A
 * file of another layout (or written before a reboot, when a crash may
 * have torn it) is emptied and sr_ignored says why.  Returns the mapping,
 * or NULL with err.
 */
struct shm *shm_open_file(const char *path, uint32_t nslots, int wait_ms,
	    struct shm_recovery *rec, char *err, size_t errlen);

/* Master: a FREE slot made USED for worker number w, or -1 if none. */
int	shm_slot_claim(struct shm *shm, int w);
/* Master: the slot's worker exited for good. */
void	shm_slot_retire(struct shm *shm, int slot);

/* Relaxed single-writer counter update: no locked instruction. */
static inline void
ctr_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n,
	    __ATOMIC_RELAXED);
}

static inline uint64_t
ctr_get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Worker: one finished request. */
void	shm_count_request(struct shm_slot *sl, enum endpoint ep, int status,
	    uint64_t micros);

/* Monotonic milliseconds (CLOCK_MONOTONIC), the clock of sh_pg_ok_ms. */
int64_t	shm_now_ms(void);
/* The same clock in microseconds (request durations). */
int64_t	shm_now_us(void);

/*
 * One counter summed over every slot: off is its offset in struct shm_slot
 * (SHM_SUM).  Relaxed loads: a scrape may miss a request counted meanwhile.
 */
uint64_t shm_sum(const struct shm *shm, size_t off);
#define SHM_SUM(shm, member) \
	shm_sum((shm), offsetof(struct shm_slot, member))

/* ---- Usage (usage.c) ---------------------------------------------------- */

/* Worker, at start: repair a table switch a dead predecessor left half done. */
void	usage_attach(struct shm_slot *sl);

/*
 * Worker: one use of token id at unix milliseconds now_ms from client
 * address ip (NULL: none known).  Returns 0, or -1 when both tables are
 * full (counted in sl_uses_dropped): the caller must not answer as if
 * the use counted (it answers 503).
 */
int	usage_record(struct shm_slot *sl, int64_t token, int64_t now_ms,
	    const uint8_t *ip);

/* Worker, every loop turn: answer the writer's swap request.  Cheap. */
void	usage_poll(struct shm_slot *sl);

/* Writer: ask every slot's worker to freeze its active table. */
void	usage_request_swap(struct shm *shm);
/* Writer: how many live workers have not answered the last request yet. */
int	usage_swaps_pending(struct shm *shm);

/*
 * Writer: for a RETIRED slot (no process writes it any more), freeze its
 * active table directly, and make the slot FREE once both tables are empty.
 */
void	usage_sweep_retired(struct shm *shm);

/* Writer: callback per entry of every FROZEN table; returns the number of
 * tables visited and stamps them with batch. */
typedef void (*usage_fn)(void *arg, int64_t token, uint64_t count,
	    int64_t last_ms, const uint8_t ip[IP_LEN]);
int	usage_collect(struct shm *shm, uint64_t batch, usage_fn fn, void *arg);

/*
 * Writer: empty every FROZEN table whose ut_batch is in [1, upto] and mark
 * it FREE.  Returns the number of uses emptied (added to sh_uses_flushed).
 */
uint64_t usage_release(struct shm *shm, uint64_t upto);

/* Master and writer: usage tables of any slot that still hold uses. */
uint32_t usage_tables_pending(const struct shm *shm);

/*
 * Master, at start on a reused usage file, before any child exists: repair
 * the order lists a dead process may have left short, and return the uses
 * sl's tables hold (*tables counts the tables that hold any).
 */
uint64_t usage_slot_recover(struct shm_slot *sl, uint32_t *tables);

#endif /* TOKEND_SHM_H */

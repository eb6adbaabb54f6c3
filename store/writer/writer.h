/*
 * writer: the writer process (one per tokend), run by the master's fork.
 *
 *   writer.c    usage flushes (the exactly-once protocol of shm/README.md),
 *               expiry cleanup, the reload of its settings.
 *   feed.c      the revocation feed thread: LISTEN, the heartbeat round
 *               trip, applying revocations to the cache (SPEC 5).
 *   netseen.c   (token, network) pairs already in token_networks.
 *   hot.c       tokens whose usage this writer wrote lately (021).
 *   sums.c      what this writer put into usage_deltas, summed per token.
 *
 * Contract: writer_conf_new and writer_conf_publish are the master's;
 * writer_main runs only in a child the master just forked, opens its own
 * LMDB environment and PostgreSQL connections, and never returns.
 */
#ifndef TOKEND_WRITER_H
#define TOKEND_WRITER_H

#include "store/runtime/runtime.h"
#include "store/store.h"

/* ---- The writer process (writer.c) ------------------------------------ */

/*
 * The configuration the master hands the writer, which keeps running (and
 * keeps its LISTEN, hence the cache) across a reload: shared memory the
 * master maps before fork.  writer_conf_new returns it holding cf, or NULL
 * with errno.  writer_conf_publish replaces it; the writer takes it on its
 * next turn (SIGHUP wakes it), reconnecting only when database_url changed.
 */
struct writer_conf;
struct writer_conf *writer_conf_new(const struct config *cf);
void	writer_conf_publish(struct writer_conf *wc, const struct config *cf);

/*
 * The writer's whole life, after fork, with cf the master's configuration
 * at fork and wc where newer ones arrive: open the cache, connect, LISTEN,
 * flush usage every cf_usage_flush_interval, delete expired rows.  It stops
 * after a last flush when the master, stopping, says all workers are gone
 * (shm sh_stop); when the master is gone, once the workers are; on a
 * SIGTERM of its own that no stop of the master follows.  Never returns.
 */
void	writer_main(const struct config *cf, const struct writer_conf *wc,
	    struct shm *shm, int master_fd) __attribute__((noreturn));

/* ---- The revocation feed (feed.c) ------------------------------------ */

/*
 * Writer only, once: start the feed thread, which connects twice to
 * cf_database_url, LISTENs, applies notifications to cache (which from now
 * on belongs to the thread; may be NULL), and keeps sh_feed_ok_ms,
 * sh_feed_state, sh_listening and sh_feed_due_ms.  Returns 0, or -1 when
 * the thread cannot be created (logged).
 */
int	feed_start(const struct config *cf, struct shm *shm,
	    struct cache *cache);
/* Writer: stop the thread and close its connections (feed down). */
void	feed_stop(void);

/* ---- Networks already recorded (netseen.c) --------------------------- */

/* The set's key of (token, network), never 0. */
uint64_t netseen_key(int64_t token, const struct cidr *net);
/* 1 when the pair is known to be in token_networks already. */
int	netseen_has(uint64_t key);
/* Start loading key's slot, for a netseen_has a few records later. */
void	netseen_prefetch(uint64_t key);
/* After the batch that inserted it committed. */
void	netseen_add(uint64_t key);

/* ---- Tokens whose usage was written lately (hot.c) ------------------- */

/* 1 when this writer flushed a use of token made less than window_ms
 * before now_ms (migration 021: its next uses may wait in usage_deltas). */
int	hot_is(int64_t token, int64_t now_ms, int64_t window_ms);
/* After the batch that flushed token's newest use, at ms, committed. */
void	hot_mark(int64_t token, int64_t ms);
/* Start loading token's slot, for a hot_is a few records later. */
void	hot_prefetch(int64_t token);

/* ---- What this writer put into usage_deltas (sums.c) ----------------- */

/*
 * Since the last fold: per token, the uses this writer appended to
 * usage_deltas, the newest, its address; and the ids of those rows.  The
 * fold writes the sums into tokens when the rows it deletes are exactly
 * those (writer.c); otherwise PostgreSQL aggregates the rows.
 */
struct usum {
	int64_t		 us_token;
	uint64_t	 us_count;
	int64_t		 us_ms;		/* newest use, ms since 1970 */
	uint8_t		 us_ip[IP_LEN];	/* its address, or all zeros */
};

/* A new batch: nothing staged. */
void	sums_stage_reset(void);
/* A hot token of the batch, in ascending order of token, once each. */
void	sums_stage(int64_t token, uint64_t count, int64_t ms,
	    const uint8_t ip[IP_LEN]);
/* The batch committed, its hot tokens in usage_deltas row `row`. */
void	sums_committed(int64_t row);
/* A fold committed: nothing of this writer's waits in usage_deltas. */
void	sums_clear(void);
/* The sums, ascending by token, and their number.  Returns 1, or 0 when
 * they are not known (too many tokens, or out of memory: the fold
 * aggregates the rows). */
int	sums_get(const struct usum **sum, size_t *n);
/* The ids of this writer's rows in usage_deltas since the last fold. */
const int64_t *sums_rows(size_t *n);

#endif /* TOKEND_WRITER_H */

/*
 * lookup: a worker's own PostgreSQL connections for cache misses.
 *
 * Non-blocking libpq in pipeline mode (PQconnectStart/PQconnectPoll,
 * PQsendQueryPrepared + PQpipelineSync, PQconsumeInput) driven by the
 * worker's epoll loop, so a slow or absent PostgreSQL never stalls the
 * worker's other connections.  The misses of one loop turn go out together
 * as one query ("hash = ANY(...)", up to LK_BATCH_MAX hashes), each with
 * its own sync (its own transaction).  While a lane has a query on the
 * wire, its new misses wait for it and join the next query, unless
 * LK_BATCH_EAGER of them wait: then up to LK_INFLIGHT queries go on the
 * wire at once.  So under load the misses of many connections share one
 * round trip, and an idle lane sends a lone miss at once.  The statement
 * is prepared once per connection, first in the pipeline.
 *
 * A worker keeps two such connections, "lanes" (LK_LANES in lookup.c),
 * both with application_name "tokend worker": one backend runs its
 * queries in turn, so two lanes let two PostgreSQL cores share a worker's
 * misses.  A new request goes to a lane that is up, the one holding the
 * fewest requests, and stays there until its callback.  Each lane
 * connects (on the worker's first request), times out stuck queries,
 * fails its own requests and reconnects on its own: a lane going down
 * answers only the requests it held, as below, never the other's.
 *
 * Measured (BENCHMARKS.md, scenario 3, 1 worker, 32 connections, every
 * request a miss): the prepared statement took misses from 21,500/s to
 * 29,500/s: parsing and planning each query had been about a quarter of
 * what PostgreSQL spent per miss.  Several queries in flight instead of one changed nothing
 * measurable there (a single backend runs them one after the other), but
 * a miss no longer waits for the query before it to come back.
 *
 * Each answer is written to the cache (unless an invalidation happened
 * since the query was sent: see the epoch in shm/README.md, or the writer's
 * LISTEN is down) and handed to the waiting connection's callback.
 *
 * Worker-only; the connections are opened lazily after fork.
 */
#ifndef TOKEND_LOOKUP_H
#define TOKEND_LOOKUP_H

#include <stdint.h>

#include "store/store.h"

struct conn;
struct config;
struct lookup;

/*
 * The answer for one hash: ti is the token (ti_state TI_NEGATIVE when it is
 * unknown, revoked, expired or its user disabled), or NULL when PostgreSQL
 * could not be asked (the caller answers 503).
 */
typedef void (*lookup_cb)(struct conn *c, const struct tok_info *ti);

struct lookup *lookup_new(const struct config *cf, int epfd);

/*
 * Queue a lookup for c; cb runs later from the loop (never from inside this
 * call), exactly once, unless lookup_cancel(c) comes first.  Returns 0, or
 * -1: PostgreSQL cannot be asked now (no lane is up or may connect now),
 * answer 503.
 */
int	lookup_submit(struct lookup *lk, struct conn *c,
	    const uint8_t hash[TOKEN_HASH_LEN], lookup_cb cb);
/*
 * The same for a cache hit that must be verified (the revocation feed is
 * older than max_revocation_lag, SPEC 5): cached is copied.  When
 * PostgreSQL gives no answer, cb gets the copy if lookup_stale_ok() still
 * holds then, else NULL.  Returns 0, or -1 (cannot be asked now: the
 * caller applies lookup_stale_ok itself).
 */
int	lookup_verify(struct lookup *lk, struct conn *c,
	    const uint8_t hash[TOKEN_HASH_LEN], const struct tok_info *cached,
	    lookup_cb cb);
void	lookup_cancel(struct lookup *lk, struct conn *c);
/*
 * For /readyz: 1 while a lane is up, else -1 when one went down (or there
 * is no lookup), else 0 (before the first connection, while connecting).
 */
int	lookup_up(const struct lookup *lk);
/*
 * 1 while a cached answer may stand without PostgreSQL: within
 * stale_cache_ttl of the feed's last confirmed round trip (no revocation
 * can be committed to a database nobody reaches).
 */
int	lookup_stale_ok(void);
/* lookup_new registers, per lane, the socket's evsrc handler and a worker
 * timer that connects when due and times out stuck queries, once per loop
 * turn. */

#endif /* TOKEND_LOOKUP_H */

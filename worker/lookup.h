/*
 * lookup: a worker's own PostgreSQL connection for cache misses.
 *
 * Non-blocking libpq (PQconnectStart/PQconnectPoll, PQsendQueryParams,
 * PQconsumeInput) driven by the worker's epoll loop, so a slow or absent
 * PostgreSQL never stalls the worker's other connections.  At most one
 * query is in flight; every miss that arrives meanwhile waits and goes out
 * in the next query as one more element of "hash = ANY(...)", so under load
 * the misses of many connections share one round trip.
 *
 * Each answer is written to the cache (unless an invalidation happened
 * since the query was sent: see the epoch in shm/README.md, or the writer's
 * LISTEN is down) and handed to the waiting connection's callback.
 *
 * Worker-only; the connection is opened lazily after fork.
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
 * -1: PostgreSQL cannot be asked now, answer 503.
 */
int	lookup_submit(struct lookup *lk, struct conn *c,
	    const uint8_t hash[TOKEN_HASH_LEN], lookup_cb cb);
void	lookup_cancel(struct lookup *lk, struct conn *c);
void	lookup_event(struct lookup *lk, uint32_t events);
/* Connects when due, times out stuck queries.  Once per loop turn. */
void	lookup_tick(struct lookup *lk);

#endif /* TOKEND_LOOKUP_H */

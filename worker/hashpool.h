/*
 * hashpool: argon2id verification off the event loop.
 *
 * One passwd_verify takes tens of milliseconds and 19 MiB; run on the loop
 * it would stall every connection of the worker.  A worker starts
 * HASHPOOL_THREADS threads after fork; jobs go to them through a mutex and
 * condition variable, and come back through an eventfd in the worker's
 * epoll set, so every callback runs on the loop thread.  The queue is
 * bounded: past HASHPOOL_MAX_QUEUED jobs a submit fails and the caller
 * answers 503, so a flood of logins costs bounded CPU and memory.  One
 * source address may have only HASHPOOL_MAX_PER_PEER jobs queued or
 * running at once: past that a submit fails at once with HASHPOOL_BUSY
 * (the caller answers 429), so a burst of guesses from one address cannot
 * fill the queue and make every other login wait behind it.  Behind a
 * proxy every request has the proxy's address: the cap is then the
 * proxy's share, which is why it is per worker and not tiny.
 *
 * Threads touch only the job's own copies of the hash and password (wiped
 * after use), never a connection or anything else of the worker.
 *
 * Scheduling: on a busy box the event loop should get the CPU first, and a
 * login wait rather than /auth.  The threads run HASHPOOL_NICE below the
 * worker (nice is per thread on Linux; not the lowest, or logins would
 * starve under load), and the loop thread asks for a short scheduler slice
 * (WORKER_SLICE_NS, worker.h).  On EEVDF kernels (6.12+) a task woken with
 * a shorter slice than the running one preempts it at once: a request that
 * arrives while argon2id computes is served within microseconds, where
 * with the slices the other way round it waited for the next timer tick,
 * up to 4 ms at HZ=250 (BENCHMARKS.md, interference).  Older kernels
 * ignore the slice and go by nice alone.
 */
#ifndef TOKEND_HASHPOOL_H
#define TOKEND_HASHPOOL_H

#include <stddef.h>
#include <stdint.h>

#define HASHPOOL_THREADS	1
#define HASHPOOL_MAX_QUEUED	64
#define HASHPOOL_NICE		10	/* added to the worker's nice */
#define HASHPOOL_MAX_PER_PEER	8	/* jobs of one source address */
#define HASHPOOL_BUSY		(-2)	/* hashpool_verify: that address's cap */

struct conn;
struct hashpool;

/*
 * The verdict for one job: ok 1 when the password matched the hash, 0
 * otherwise.  c is the connection given to hashpool_verify; cb is not
 * called when that connection was closed meanwhile (its c_pending_data,
 * where arg usually points, is already freed).
 */
typedef void (*hashpool_cb)(struct conn *c, int ok, void *arg);

/* After fork, in the worker.  NULL when the threads cannot start. */
struct hashpool *hashpool_new(int epfd);

/*
 * Queue passwd_verify(encoded, pw, len); encoded NULL verifies against the
 * dummy hash (same cost, never a match).  Both are copied.  On success
 * c->c_pending points at the job until cb runs, exactly once, from the
 * loop, unless conn_close cancelled it through c_pending (as for lookup.c):
 * then cb never runs.  Returns 0, HASHPOOL_BUSY (c's address, c_peer, has
 * HASHPOOL_MAX_PER_PEER jobs already: answer 429), or -1 (queue full, no
 * pool: answer 503).
 */
int	hashpool_verify(struct hashpool *hp, struct conn *c,
	    const char *encoded, const char *pw, size_t len, hashpool_cb cb,
	    void *arg);
/* The eventfd's evsrc handler runs the callbacks of finished jobs, from
 * the loop. */

#endif /* TOKEND_HASHPOOL_H */

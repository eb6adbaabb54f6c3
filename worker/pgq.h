/*
 * pgq: a worker's second PostgreSQL connection, for the OAuth endpoints'
 * arbitrary queries (lookup.c only batches token-hash lookups).
 *
 * Non-blocking libpq in pipeline mode, driven by the worker's epoll loop.
 * Queries submitted during a loop turn go out together at its end
 * (the driver's tick, pgconn.h), each followed by its own PQpipelineSync, so each is its own
 * implicit transaction and a failing one aborts nothing else, while several
 * queries of different connections are on the wire at once.  Answers come
 * back in the order the queries went out.  A query unanswered for
 * PGCONN_TIMEOUT_MS, or a broken connection, fails every query in flight; the
 * connection is then re-established with a growing delay (as lookup.c).
 *
 * Worker-only; the connection is opened lazily, on the first query.
 */
#ifndef TOKEND_PGQ_H
#define TOKEND_PGQ_H

#include <stdint.h>

#include <libpq-fe.h>

struct conn;
struct config;
struct pgq;

/*
 * The answer to one query.  res is the statement's result (TUPLES_OK or
 * COMMAND_OK; owned by pgq and cleared when cb returns), or NULL when
 * PostgreSQL could not be asked or the statement failed (logged as
 * db_error): the caller answers 503.  c is the connection given to
 * pgq_submit, never NULL: cb is not called when that connection was closed
 * meanwhile (its c_pending_data is already freed), nor for a query
 * submitted without one.
 */
typedef void (*pgq_cb)(struct conn *c, PGresult *res, void *arg);

struct pgq *pgq_new(const struct config *cf, int epfd);

/*
 * Queue sql with text parameters (copied; NULL elements are SQL NULL).  On
 * success c->c_pending points at the request until cb runs, which it does
 * exactly once, from the loop, never from inside pgq_submit; conn_close
 * cancels it through c_pending (the request's first member is the
 * connection pointer, which lookup_cancel clears), and cb then never runs.
 * c may be NULL for a query nobody waits for (its cb is never called).
 * Returns 0, or -1 (no database configured, backing off after a failure,
 * out of memory): answer 503 now.
 */
int	pgq_submit(struct pgq *q, struct conn *c, const char *sql,
	    int nparams, const char *const *params, pgq_cb cb, void *arg);
/* pgq_new registers the socket's evsrc handler and a worker timer that
 * sends what was queued and times out stuck queries, once per loop turn,
 * after the turn's events. */

#endif /* TOKEND_PGQ_H */

/*
 * pgconn: the connecting half of a worker's asynchronous PostgreSQL
 * connections (lookup.c for misses, pgq.c for the OAuth queries), written
 * once: PQconnectStart/PQconnectPoll in the worker's epoll set, the socket's
 * registration, and giving up with back-off (store.h's pg_retry).
 *
 * Why the registration is redone at every step: with a multi-host
 * database_url (or a host name with several addresses), libpq closes the
 * socket of a host that failed and opens another for the next one, often
 * under the same descriptor number.  Closing removed the old socket from
 * epoll, so the new one must be added again, or the connection waits for
 * an event that never comes.
 *
 * libpq has no per-host timeout when connecting asynchronously: a first
 * host that drops packets would hold every attempt until the owner's
 * timeout.  So each failed attempt starts one host further along the
 * URL's list (pgconn.c, pgconn_hosts).
 *
 * The rest of the driver is here too: pipeline mode, where each query
 * the owner hands libpq ends with its own sync (pgconn_end) and the
 * results come back in order; the socket's events (flush what libpq
 * holds, read, hand each result of the oldest query to po_result and its
 * sync to po_complete); a per-turn timer (timeouts: the attempt, and the
 * oldest query the owner has in flight, then po_send); going down (count
 * the error, drop, po_fail).  The owner (lookup.c, pgq.c) keeps only what
 * is its own: what a request is, how requests become queries, what a
 * result means.
 *
 * Worker-only, after fork.  The owner's struct pgconn lives as long as
 * the worker.  The ops run from the loop (the socket's handler, the
 * timer), and from inside the owner's own calls only in one case: po_fail,
 * when pgconn_end or pgconn_flush finds the connection broken.
 * pgconn_want never calls one: a connection is never up on the spot, and
 * one that fails on the spot has nothing queued.
 */
#ifndef TOKEND_PGCONN_H
#define TOKEND_PGCONN_H

#include <stdint.h>

#include <libpq-fe.h>

#include "store/store.h"

#include "worker/worker.h"

#define PGCONN_TIMEOUT_MS	5000	/* an attempt or a query this long fails */

enum pgconn_state { PC_DOWN, PC_CONNECTING, PC_READY };

/* What the owner does; owner is pc_owner. */
struct pgconn_ops {
	/* A result of the oldest query in flight, not its sync (takes res). */
	void	(*po_result)(void *owner, PGresult *res);
	/* The oldest query's sync came: it is complete. */
	void	(*po_complete)(void *owner);
	/* When the oldest query in flight was sent (ms), 0: none. */
	int64_t	(*po_oldest_ms)(const void *owner);
	/* Connected, before READY: the first queries (NULL: none). */
	void	(*po_ready)(void *owner);
	/* READY: send what waits.  Every loop turn, and after each socket
	 * event too when po_send_on_event. */
	void	(*po_send)(void *owner);
	int	  po_send_on_event;
	/* The connection is gone: every request, in flight or waiting,
	 * fails now (the state is PC_DOWN already). */
	void	(*po_fail)(void *owner);
};

struct pgconn {
	struct evsrc	 pc_ev;		/* first: the socket's epoll data */
	enum pgconn_state pc_state;
	PGconn		*pc_db;		/* NULL while down */
	const struct pgconn_ops *pc_ops;
	void		*pc_owner;
	const char	*pc_url;	/* database_url, "" for none */
	const char	*pc_appname;
	int		 pc_epfd;
	int		 pc_fd;		/* the socket in epoll, -1 none */
	uint32_t	 pc_events;
	int64_t		 pc_connect_ms;	/* when the attempt began */
	struct pg_retry	 pc_retry;	/* conn= of its log lines */
	uint64_t	 pc_fail_epoch;	/* sh_cache_epoch at the last failure */
	char		 pc_hosts[3][1024];	/* this attempt's host, hostaddr
					 * and port lists */
};

/*
 * Set pc up for owner (down, nothing sent) and register its per-turn timer.
 * conn names it in log lines, appname in pg_stat_activity.  0, or -1 when
 * the worker's timer table is full.
 */
int	pgconn_init(struct pgconn *pc, int epfd, const char *url,
	    const char *conn, const char *appname,
	    const struct pgconn_ops *ops, void *owner);

/*
 * A request is about to be queued: 0 when it can be (up, or connecting,
 * now or already), -1 when it must be answered 503 at once (no database
 * configured, backing off after a failure, failed on the spot).
 */
int	pgconn_want(struct pgconn *pc);

/* The query just handed to libpq (sent: libpq took it) ends with its
 * sync.  0, or -1 after going down. */
int	pgconn_end(struct pgconn *pc, int sent);
/* Write what libpq holds; watch for EPOLLOUT while some is left. */
void	pgconn_flush(struct pgconn *pc);
/* Count the error, drop the connection (logged, retry scheduled), then
 * po_fail. */
void	pgconn_down(struct pgconn *pc, const char *why);
/* A failed statement's db_error line: its primary message only (a DETAIL
 * may quote row values). */
void	pgconn_log_error(const struct pgconn *pc, const PGresult *res);

#endif /* TOKEND_PGCONN_H */

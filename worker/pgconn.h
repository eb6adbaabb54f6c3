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
 * Worker-only.  The owner keeps its own state (what it sends, what waits)
 * and drives this: pgconn_start when a connection is wanted and
 * pg_retry_due allows; pgconn_poll on each event while connecting;
 * pgconn_watch for the events it wants once connected; pgconn_drop when
 * anything fails.
 */
#ifndef TOKEND_PGCONN_H
#define TOKEND_PGCONN_H

#include <stdint.h>

#include <libpq-fe.h>

#include "store/store.h"

struct pgconn {
	PGconn		*pc_db;		/* NULL while down */
	int		 pc_epfd;
	void		*pc_owner;	/* epoll's data.ptr: the owner's evsrc */
	int		 pc_fd;		/* the socket in epoll, -1 none */
	uint32_t	 pc_events;
	int64_t		 pc_connect_ms;	/* when the attempt began */
	struct pg_retry	 pc_retry;	/* conn= of its log lines */
	char		 pc_hosts[3][1024];	/* this attempt's host, hostaddr
					 * and port lists */
};

void	pgconn_init(struct pgconn *pc, int epfd, void *owner,
	    const char *conn);

/*
 * Begin connecting to url (application_name appname), in non-blocking mode,
 * notices to the log.  Returns 0 (then pgconn_poll on every event), or -1:
 * failed on the spot, already dropped (logged, retry scheduled).
 */
int	pgconn_start(struct pgconn *pc, const char *url, const char *appname);

/*
 * One PQconnectPoll step, the socket registered anew for what libpq waits
 * for.  Returns 1 when the connection is up (non-blocking, pipeline mode,
 * the socket watched for EPOLLIN, the back-off reset), 0 while it is still
 * on its way, -1 when it failed: the caller calls pgconn_drop with
 * PQerrorMessage(pc_db).
 */
int	pgconn_poll(struct pgconn *pc);

/* Watch the socket for events (0: registered for nothing). */
void	pgconn_watch(struct pgconn *pc, uint32_t events);

/* Log why (rate-limited db_retry), close, and schedule the next attempt. */
void	pgconn_drop(struct pgconn *pc, const char *why);

#endif /* TOKEND_PGCONN_H */

/*
 * Connecting a worker's asynchronous PostgreSQL connections; the design is
 * in pgconn.h.
 */
#include <sys/epoll.h>

#include <errno.h>
#include <string.h>

#include <libpq-fe.h>

#include "worker/pgconn.h"
#include "worker/worker.h"

void
pgconn_init(struct pgconn *pc, int epfd, void *owner, const char *conn)
{
	memset(pc, 0, sizeof(*pc));
	pc->pc_epfd = epfd;
	pc->pc_owner = owner;
	pc->pc_fd = -1;
	pg_retry_init(&pc->pc_retry, conn);
}

/* Forget the registration: the socket it named may be closed already. */
static void
pgconn_unwatch(struct pgconn *pc)
{
	if (pc->pc_fd >= 0)
		epoll_ctl(pc->pc_epfd, EPOLL_CTL_DEL, pc->pc_fd, NULL);
	pc->pc_fd = -1;
	pc->pc_events = 0;
}

void
pgconn_watch(struct pgconn *pc, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = pc->pc_owner };
	int	 fd = pc->pc_db != NULL ? PQsocket(pc->pc_db) : -1;

	if (fd != pc->pc_fd)
		pgconn_unwatch(pc);
	if (fd < 0 || (fd == pc->pc_fd && events == pc->pc_events))
		return;
	if (epoll_ctl(pc->pc_epfd, fd == pc->pc_fd ? EPOLL_CTL_MOD :
	    EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_errorf("%s: epoll_ctl: %s", __func__, strerror(errno));
		return;
	}
	pc->pc_fd = fd;
	pc->pc_events = events;
}

int
pgconn_start(struct pgconn *pc, const char *url, const char *appname)
{
	const char *keys[] = { "dbname", "application_name", NULL };
	const char *vals[] = { url, appname, NULL };

	pc->pc_db = PQconnectStartParams(keys, vals, 1);
	if (pc->pc_db == NULL || PQstatus(pc->pc_db) == CONNECTION_BAD) {
		pgconn_drop(pc, pc->pc_db != NULL ?
		    PQerrorMessage(pc->pc_db) : "out of memory");
		return -1;
	}
	pg_notices(pc->pc_db, pc->pc_retry.rt_conn);
	pc->pc_connect_ms = W.wk_now_ms;
	pgconn_watch(pc, EPOLLOUT);
	return 0;
}

int
pgconn_poll(struct pgconn *pc)
{
	PostgresPollingStatusType st = PQconnectPoll(pc->pc_db);

	/* The socket may be another one now (pgconn.h): register afresh. */
	pgconn_unwatch(pc);
	switch (st) {
	case PGRES_POLLING_READING:
		pgconn_watch(pc, EPOLLIN);
		return 0;
	case PGRES_POLLING_WRITING:
		pgconn_watch(pc, EPOLLOUT);
		return 0;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(pc->pc_db, 1) == -1 ||
		    PQenterPipelineMode(pc->pc_db) != 1)
			return -1;
		pgconn_watch(pc, EPOLLIN);
		pg_retry_ok(&pc->pc_retry);
		return 1;
	default:
		return -1;
	}
}

void
pgconn_drop(struct pgconn *pc, const char *why)
{
	pg_retry_failed(&pc->pc_retry, why, W.wk_now_ms);
	pgconn_unwatch(pc);
	if (pc->pc_db != NULL)
		PQfinish(pc->pc_db);
	pc->pc_db = NULL;
}

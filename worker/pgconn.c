/*
 * Connecting a worker's asynchronous PostgreSQL connections; the design is
 * in pgconn.h.
 */
#include <sys/epoll.h>

#include <errno.h>
#include <stdio.h>
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

/*
 * The comma-separated list in, rotated to begin at its k-th element (k
 * modulo its length), into out.  Returns the number of elements.
 */
static int
pgconn_rotate(const char *in, uint64_t k, char *out, size_t outlen)
{
	const char	*p, *cut;
	int		 n = 1;

	for (p = in; (p = strchr(p, ',')) != NULL; p++)
		n++;
	for (cut = in, k %= (uint64_t)n; k > 0; k--)
		cut = strchr(cut, ',') + 1;
	if (cut == in)
		snprintf(out, outlen, "%s", in);
	else
		snprintf(out, outlen, "%s,%.*s", cut, (int)(cut - in - 1), in);
	return n;
}

/*
 * The attempt's hosts: libpq tries a multi-host URL's hosts in order, and
 * asynchronously it has no per-host timeout, so a first host that drops
 * packets (a machine that is gone) would hold every attempt until the
 * owner's timeout (lookup.c, pgq.c: 5 s).  Each failed attempt therefore
 * starts one host further along; host, hostaddr and port rotate together
 * (a single port applies to every host and stays).  Adds keys after
 * dbname, which override the URL's.  Returns the number of keys added.
 */
static int
pgconn_hosts(struct pgconn *pc, const char *url, const char **keys,
    const char **vals)
{
	static const char *const rotated[] = { "host", "hostaddr", "port" };
	PQconninfoOption *opts, *o;
	size_t		 i;
	int		 n = 0, nhosts = 0, cnt;

	if ((opts = PQconninfoParse(url, NULL)) == NULL)
		return 0;
	for (i = 0; i < 3; i++)
		for (o = opts; o->keyword != NULL; o++) {
			if (strcmp(o->keyword, rotated[i]) != 0 ||
			    o->val == NULL || o->val[0] == '\0')
				continue;
			cnt = pgconn_rotate(o->val, pc->pc_retry.rt_attempts,
			    pc->pc_hosts[i], sizeof(pc->pc_hosts[i]));
			if (nhosts == 0)
				nhosts = cnt;
			if (cnt > 1 && cnt == nhosts) {
				keys[n] = rotated[i];
				vals[n++] = pc->pc_hosts[i];
			}
		}
	PQconninfoFree(opts);
	return n;
}

int
pgconn_start(struct pgconn *pc, const char *url, const char *appname)
{
	const char	*keys[6] = { "dbname", "application_name" };
	const char	*vals[6] = { url, appname };

	pgconn_hosts(pc, url, keys + 2, vals + 2);
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

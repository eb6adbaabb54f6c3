/*
 * A worker's asynchronous PostgreSQL connection in pipeline mode: the
 * driver that lookup.c and pgq.c share.  The design is in pgconn.h.
 */
#include <sys/epoll.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "worker/pgconn.h"
#include "worker/worker.h"

static void pgconn_event(struct evsrc *src, uint32_t events);
static void pgconn_tick(void *arg);
static void pgconn_drop(struct pgconn *pc, const char *why);

int
pgconn_init(struct pgconn *pc, int epfd, const char *url, const char *conn,
    const char *appname, const struct pgconn_ops *ops, void *owner)
{
	memset(pc, 0, sizeof(*pc));
	pc->pc_ev.ev_fn = pgconn_event;
	pc->pc_state = PC_DOWN;
	pc->pc_ops = ops;
	pc->pc_owner = owner;
	pc->pc_url = url;
	pc->pc_appname = appname;
	pc->pc_epfd = epfd;
	pc->pc_fd = -1;
	pg_retry_init(&pc->pc_retry, conn);
	return worker_timer_add(pgconn_tick, pc);
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

/* Watch the socket for events (0: registered for nothing). */
static void
pgconn_watch(struct pgconn *pc, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = &pc->pc_ev };
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

/*
 * Begin connecting, in non-blocking mode, notices to the log.  Returns 0
 * (then pgconn_poll on every event), or -1: failed on the spot, already
 * dropped (logged, retry scheduled).
 */
static int
pgconn_start(struct pgconn *pc)
{
	const char	*keys[6] = { "dbname", "application_name" };
	const char	*vals[6] = { pc->pc_url, pc->pc_appname };

	pgconn_hosts(pc, pc->pc_url, keys + 2, vals + 2);
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

/*
 * One PQconnectPoll step, the socket registered anew for what libpq waits
 * for.  Returns 1 when the connection is up (non-blocking, pipeline mode,
 * the socket watched for EPOLLIN, the back-off reset), 0 while it is still
 * on its way, -1 when it failed.
 */
static int
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

/* Log why (rate-limited db_retry), close, and schedule the next attempt. */
static void
pgconn_drop(struct pgconn *pc, const char *why)
{
	pg_retry_failed(&pc->pc_retry, why, W.wk_now_ms);
	pc->pc_fail_epoch = __atomic_load_n(&W.wk_shm->sh_cache_epoch,
	    __ATOMIC_RELAXED);
	pgconn_unwatch(pc);
	if (pc->pc_db != NULL)
		PQfinish(pc->pc_db);
	pc->pc_db = NULL;
}

/* ---- the driver ---------------------------------------------------------- */

void
pgconn_down(struct pgconn *pc, const char *why)
{
	ctr_add(&W.wk_slot->sl_pg_errors, 1);
	pgconn_drop(pc, why);
	pc->pc_state = PC_DOWN;
	pc->pc_ops->po_fail(pc->pc_owner);
}

void
pgconn_log_error(const struct pgconn *pc, const PGresult *res)
{
	const char	*msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	LOG(LVL_ERROR, "db_error", KV_S("conn", pc->pc_retry.rt_conn),
	    KV_S("error", msg != NULL ? msg :
	    PQresStatus(PQresultStatus(res))));
}

/*
 * The writer's revocation feed has heard from PostgreSQL since this
 * connection last failed (the cache epoch moves when its LISTEN is
 * established again, and with every revocation): the server is back, so
 * the backoff need not be waited out.  The feed's return clears the
 * cache, and every miss after it would otherwise get 503 for as long as
 * PG_BACKOFF_MAX.  At worst one extra attempt per epoch.
 */
static int
pgconn_server_back(const struct pgconn *pc)
{
	return __atomic_load_n(&W.wk_shm->sh_cache_epoch, __ATOMIC_RELAXED) !=
	    pc->pc_fail_epoch;
}

int
pgconn_want(struct pgconn *pc)
{
	if (pc->pc_url[0] == '\0')
		return -1;
	/*
	 * Down: answer 503 at once while backing off, else reconnect first.
	 * A connection that fails on the spot leaves us down with nothing
	 * queued, so no callback ever runs from inside this call.
	 */
	if (pc->pc_state == PC_DOWN) {
		if ((!pg_retry_due(&pc->pc_retry, W.wk_now_ms) &&
		    !pgconn_server_back(pc)) || pgconn_start(pc) == -1)
			return -1;
		pc->pc_state = PC_CONNECTING;
	}
	return 0;
}

void
pgconn_flush(struct pgconn *pc)
{
	int	 r = PQflush(pc->pc_db);

	if (r == -1) {
		pgconn_down(pc, PQerrorMessage(pc->pc_db));
		return;
	}
	pgconn_watch(pc, r == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

int
pgconn_end(struct pgconn *pc, int sent)
{
	if (!sent || !PQpipelineSync(pc->pc_db)) {
		pgconn_down(pc, PQerrorMessage(pc->pc_db));
		return -1;
	}
	return 0;
}

/* Connected: the owner's first queries, then READY and what waits. */
static void
pgconn_connect_poll(struct pgconn *pc)
{
	switch (pgconn_poll(pc)) {
	case 0:
		break;
	case 1:
		if (pc->pc_ops->po_ready != NULL) {
			pc->pc_ops->po_ready(pc->pc_owner);
			if (pc->pc_state == PC_DOWN)
				break;
		}
		pc->pc_state = PC_READY;
		__atomic_store_n(&W.wk_shm->sh_pg_ok_ms, W.wk_now_ms,
		    __ATOMIC_RELAXED);
		pc->pc_ops->po_send(pc->pc_owner);
		break;
	default:
		pgconn_down(pc, PQerrorMessage(pc->pc_db));
		break;
	}
}

/*
 * Read every result that is complete.  Per query the stream is: its
 * result(s), a NULL, then the PGRES_PIPELINE_SYNC of its own sync, which
 * completes it.  A callback may take the connection down (pc_db changes).
 */
static void
pgconn_results(struct pgconn *pc)
{
	PGconn		*db = pc->pc_db;
	PGresult	*res;
	int		 nulls = 0;

	while (pc->pc_ops->po_oldest_ms(pc->pc_owner) != 0 &&
	    pc->pc_db == db && !PQisBusy(db)) {
		if ((res = PQgetResult(db)) == NULL) {
			/* The end of a statement; two in a row: nothing more
			 * is ready. */
			if (nulls++ > 0)
				break;
			continue;
		}
		nulls = 0;
		if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
			pc->pc_ops->po_result(pc->pc_owner, res);
			continue;
		}
		PQclear(res);
		__atomic_store_n(&W.wk_shm->sh_pg_ok_ms, W.wk_now_ms,
		    __ATOMIC_RELAXED);
		pc->pc_ops->po_complete(pc->pc_owner);
	}
}

/* The socket is ready (pc_ev's handler). */
static void
pgconn_event(struct evsrc *src, uint32_t events)
{
	struct pgconn	*pc = (struct pgconn *)src;

	if (pc->pc_state == PC_CONNECTING) {
		pgconn_connect_poll(pc);
		return;
	}
	if (pc->pc_db == NULL)
		return;
	if (events & EPOLLOUT) {
		pgconn_flush(pc);
		if (pc->pc_db == NULL)
			return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		/* A server that went away (a failover, a restart) is noticed
		 * here, idle or not, so the next request reconnects at once. */
		if (!PQconsumeInput(pc->pc_db) ||
		    PQstatus(pc->pc_db) == CONNECTION_BAD) {
			pgconn_down(pc, PQerrorMessage(pc->pc_db));
			return;
		}
		/* Notices and stray input on an idle connection are dropped. */
		pgconn_results(pc);
	}
	if (pc->pc_ops->po_send_on_event)
		pc->pc_ops->po_send(pc->pc_owner);
}

/* Every loop turn: time out the attempt or the oldest query, else send. */
static void
pgconn_tick(void *arg)
{
	struct pgconn	*pc = arg;
	int64_t		 oldest = pc->pc_ops->po_oldest_ms(pc->pc_owner);

	if ((pc->pc_state == PC_CONNECTING &&
	    W.wk_now_ms - pc->pc_connect_ms > PGCONN_TIMEOUT_MS) ||
	    (oldest != 0 && W.wk_now_ms - oldest > PGCONN_TIMEOUT_MS))
		pgconn_down(pc, "PostgreSQL did not answer in time");
	else if (pc->pc_state == PC_READY)
		pc->pc_ops->po_send(pc->pc_owner);
}

/*
 * The worker's pipelined PostgreSQL connection for the OAuth endpoints; the
 * design is in pgq.h.  The connect, back-off and timeout structure follows
 * lookup.c.
 */
#include <sys/epoll.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "worker/pgconn.h"
#include "worker/pgq.h"
#include "worker/worker.h"

#define PGQ_TIMEOUT_MS	5000		/* a query unanswered this long fails */
#define PGQ_MAX_PARAMS	16
#define PGQ_MAX_QUEUED	4096		/* waiting + in flight */

enum pgq_state { PQ_DOWN, PQ_CONNECTING, PQ_READY };

struct pgq_req {
	struct conn	*pr_conn;	/* first: conn_close clears it */
	pgq_cb		 pr_cb;
	void		*pr_arg;
	const char	*pr_sql;	/* static text */
	int		 pr_nparams;
	char		*pr_params[PGQ_MAX_PARAMS];
	PGresult	*pr_res;	/* the statement's result, once here */
	int		 pr_failed;	/* the statement failed */
	int64_t		 pr_sent_ms;
	struct pgq_req	*pr_next;
};

_Static_assert(offsetof(struct pgq_req, pr_conn) == 0,
    "conn_close clears the first member of whatever c_pending points at");

struct pgq {
	struct evsrc	 q_ev;
	const struct config *q_cf;
	enum pgq_state	 q_state;
	struct pgconn	 q_pc;		/* the connection, NULL while down */
	int		 q_count;	/* requests waiting or in flight */
	struct pgq_req	*q_wait;	/* not yet sent, FIFO */
	struct pgq_req	**q_wait_tail;
	struct pgq_req	*q_sent;	/* in flight, FIFO: answers come in order */
	struct pgq_req	**q_sent_tail;
};

static void pgq_event(struct evsrc *src, uint32_t events);
static void pgq_tick(void *arg);

struct pgq *
pgq_new(const struct config *cf, int epfd)
{
	struct pgq	*q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->q_ev.ev_fn = pgq_event;
	q->q_cf = cf;
	pgconn_init(&q->q_pc, epfd, q, "oauth");
	q->q_wait_tail = &q->q_wait;
	q->q_sent_tail = &q->q_sent;
	if (worker_timer_add(pgq_tick, q) == -1) {
		free(q);
		return NULL;
	}
	return q;
}

/* ---- finishing requests -------------------------------------------------- */

static void
pgq_req_free(struct pgq_req *r)
{
	int	 i;

	for (i = 0; i < r->pr_nparams; i++)
		free(r->pr_params[i]);
	PQclear(r->pr_res);
	free(r);
}

/* Hand r its answer (res NULL: failed) and free it. */
static void
pgq_finish(struct pgq *q, struct pgq_req *r, PGresult *res)
{
	struct conn	*c = r->pr_conn;

	q->q_count--;
	if (c != NULL)
		c->c_pending = NULL;
	if (r->pr_cb != NULL)
		r->pr_cb(c, res, r->pr_arg);
	pgq_req_free(r);
}

static void
pgq_fail_list(struct pgq *q, struct pgq_req *r)
{
	struct pgq_req	*next;

	for (; r != NULL; r = next) {
		next = r->pr_next;
		pgq_finish(q, r, NULL);
	}
}

/* PostgreSQL is gone: every waiting connection gets its 503 now. */
static void
pgq_down(struct pgq *q, const char *why)
{
	struct pgq_req	*sent = q->q_sent, *wait = q->q_wait;

	ctr_add(&W.wk_slot->sl_pg_errors, 1);
	pgconn_drop(&q->q_pc, why);
	q->q_state = PQ_DOWN;
	q->q_sent = q->q_wait = NULL;
	q->q_sent_tail = &q->q_sent;
	q->q_wait_tail = &q->q_wait;
	/* The callbacks may submit again: the lists are already detached. */
	pgq_fail_list(q, sent);
	pgq_fail_list(q, wait);
}

/* ---- sending ------------------------------------------------------------ */

static void
pgq_flush(struct pgq *q)
{
	int	 r = PQflush(q->q_pc.pc_db);

	if (r == -1) {
		pgq_down(q, PQerrorMessage(q->q_pc.pc_db));
		return;
	}
	pgconn_watch(&q->q_pc, r == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* Put every waiting query on the wire, each followed by its sync. */
static void
pgq_send(struct pgq *q)
{
	struct pgq_req	*r;
	int		 n = 0;

	while ((r = q->q_wait) != NULL) {
		if (!PQsendQueryParams(q->q_pc.pc_db, r->pr_sql, r->pr_nparams,
		    NULL, (const char *const *)r->pr_params, NULL, NULL, 0) ||
		    !PQpipelineSync(q->q_pc.pc_db)) {
			pgq_down(q, PQerrorMessage(q->q_pc.pc_db));
			return;
		}
		q->q_wait = r->pr_next;
		r->pr_next = NULL;
		r->pr_sent_ms = W.wk_now_ms;
		*q->q_sent_tail = r;
		q->q_sent_tail = &r->pr_next;
		n++;
	}
	q->q_wait_tail = &q->q_wait;
	if (n > 0)
		pgq_flush(q);
}

/* ---- receiving ---------------------------------------------------------- */

/* Keep the statement's first result; anything after it is dropped. */
static void
pgq_result(struct pgq_req *r, PGresult *res)
{
	ExecStatusType	 st = PQresultStatus(res);
	const char	*msg;

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		if (r->pr_res == NULL && !r->pr_failed) {
			r->pr_res = res;
			return;
		}
	} else if (!r->pr_failed) {
		r->pr_failed = 1;
		/* The primary message only: a DETAIL may quote row values. */
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		LOG(LVL_ERROR, "db_error", KV_S("conn", "oauth"),
		    KV_S("error", msg ? msg : PQresStatus(st)));
		ctr_add(&W.wk_slot->sl_pg_errors, 1);
	}
	PQclear(res);
}

/*
 * Read every result that is complete.  Per query the stream is: its
 * result(s), a NULL, then the PGRES_PIPELINE_SYNC of its own sync, which
 * completes it.
 */
static void
pgq_results(struct pgq *q)
{
	PGconn		*db = q->q_pc.pc_db;
	struct pgq_req	*r;
	PGresult	*res;

	int		 nulls = 0;

	while ((r = q->q_sent) != NULL && q->q_pc.pc_db == db &&
	    !PQisBusy(db)) {
		if ((res = PQgetResult(db)) == NULL) {
			/* The end of r's statement; two in a row: nothing
			 * more is ready. */
			if (nulls++ > 0)
				break;
			continue;
		}
		nulls = 0;
		if (PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
			pgq_result(r, res);
			continue;
		}
		PQclear(res);
		q->q_sent = r->pr_next;
		if (q->q_sent == NULL)
			q->q_sent_tail = &q->q_sent;
		__atomic_store_n(&W.wk_shm->sh_pg_ok_ms, W.wk_now_ms,
		    __ATOMIC_RELAXED);
		pgq_finish(q, r, r->pr_failed ? NULL : r->pr_res);
	}
}

/* ---- connecting --------------------------------------------------------- */

static void
pgq_connect(struct pgq *q)
{
	if (pgconn_start(&q->q_pc, q->q_cf->cf_database_url,
	    "tokend oauth") == 0)
		q->q_state = PQ_CONNECTING;
}

static void
pgq_connect_poll(struct pgq *q)
{
	switch (pgconn_poll(&q->q_pc)) {
	case 0:
		break;
	case 1:
		q->q_state = PQ_READY;
		__atomic_store_n(&W.wk_shm->sh_pg_ok_ms, W.wk_now_ms,
		    __ATOMIC_RELAXED);
		pgq_send(q);
		break;
	default:
		pgq_down(q, PQerrorMessage(q->q_pc.pc_db));
		break;
	}
}

/* ---- the interface ------------------------------------------------------ */

static struct pgq_req *
pgq_req_new(const char *sql, int nparams, const char *const *params)
{
	struct pgq_req	*r;
	int		 i;

	if (nparams < 0 || nparams > PGQ_MAX_PARAMS ||
	    (r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->pr_sql = sql;
	for (i = 0; i < nparams; i++) {
		if (params[i] != NULL &&
		    (r->pr_params[i] = strdup(params[i])) == NULL) {
			r->pr_nparams = i;
			pgq_req_free(r);
			return NULL;
		}
	}
	r->pr_nparams = nparams;
	return r;
}

int
pgq_submit(struct pgq *q, struct conn *c, const char *sql, int nparams,
    const char *const *params, pgq_cb cb, void *arg)
{
	struct pgq_req	*r;

	if (q == NULL || q->q_cf->cf_database_url[0] == '\0' ||
	    q->q_count >= PGQ_MAX_QUEUED)
		return -1;
	/* Down: answer 503 at once while backing off, else reconnect. */
	if (q->q_state == PQ_DOWN) {
		if (!pg_retry_due(&q->q_pc.pc_retry, W.wk_now_ms))
			return -1;
		pgq_connect(q);
		if (q->q_state == PQ_DOWN)
			return -1;
	}
	if ((r = pgq_req_new(sql, nparams, params)) == NULL)
		return -1;
	r->pr_conn = c;
	r->pr_cb = cb;
	r->pr_arg = arg;
	*q->q_wait_tail = r;
	q->q_wait_tail = &r->pr_next;
	q->q_count++;
	if (c != NULL)
		c->c_pending = r;
	/* Sent by pgq_tick at the end of this loop turn, with every other
	 * query of the turn, and never a callback from in here. */
	return 0;
}

/* The connection's socket is ready (q_ev's handler). */
static void
pgq_event(struct evsrc *src, uint32_t events)
{
	struct pgq	*q = (struct pgq *)src;

	if (q->q_state == PQ_CONNECTING) {
		pgq_connect_poll(q);
		return;
	}
	if (q->q_pc.pc_db == NULL)
		return;
	if (events & EPOLLOUT) {
		pgq_flush(q);
		if (q->q_pc.pc_db == NULL)
			return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		/* As lookup.c: a server gone away is noticed while idle. */
		if (!PQconsumeInput(q->q_pc.pc_db) ||
		    PQstatus(q->q_pc.pc_db) == CONNECTION_BAD) {
			pgq_down(q, PQerrorMessage(q->q_pc.pc_db));
			return;
		}
		pgq_results(q);
	}
}

/* Every loop turn: time out, or send what waits (a worker timer). */
static void
pgq_tick(void *arg)
{
	struct pgq	*q = arg;

	if (q->q_state == PQ_CONNECTING &&
	    W.wk_now_ms - q->q_pc.pc_connect_ms > PGQ_TIMEOUT_MS)
		pgq_down(q, "PostgreSQL did not answer in time");
	else if (q->q_sent != NULL &&
	    W.wk_now_ms - q->q_sent->pr_sent_ms > PGQ_TIMEOUT_MS)
		pgq_down(q, "PostgreSQL did not answer in time");
	else if (q->q_state == PQ_READY && q->q_wait != NULL)
		pgq_send(q);
}

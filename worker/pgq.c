/*
 * The worker's pipelined PostgreSQL connection for the OAuth endpoints; the
 * design is in pgq.h.  Connecting, the socket, timeouts and going down are
 * the driver's (pgconn.c): this file keeps the requests, one query each.
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

#define PGQ_MAX_PARAMS	16
#define PGQ_MAX_QUEUED	4096		/* waiting + in flight */

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
	struct pgconn	 q_pc;		/* the connection and its state */
	int		 q_count;	/* requests waiting or in flight */
	struct pgq_req	*q_wait;	/* not yet sent, FIFO */
	struct pgq_req	**q_wait_tail;
	struct pgq_req	*q_sent;	/* in flight, FIFO: answers come in order */
	struct pgq_req	**q_sent_tail;
};

static const struct pgconn_ops pgq_ops;

struct pgq *
pgq_new(const struct config *cf, int epfd)
{
	struct pgq	*q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->q_wait_tail = &q->q_wait;
	q->q_sent_tail = &q->q_sent;
	if (pgconn_init(&q->q_pc, epfd, cf->cf_database_url, "oauth",
	    "tokend oauth", &pgq_ops, q) == -1) {
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
	/* Nobody waits for a cancelled query, or one sent without a
	 * connection. */
	if (c != NULL) {
		c->c_pending = NULL;
		if (r->pr_cb != NULL)
			r->pr_cb(c, res, r->pr_arg);
	}
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
pgq_fail(void *owner)
{
	struct pgq	*q = owner;
	struct pgq_req	*sent = q->q_sent, *wait = q->q_wait;

	q->q_sent = q->q_wait = NULL;
	q->q_sent_tail = &q->q_sent;
	q->q_wait_tail = &q->q_wait;
	/* The callbacks may submit again: the lists are already detached. */
	pgq_fail_list(q, sent);
	pgq_fail_list(q, wait);
}

/* ---- sending ------------------------------------------------------------ */

/* Put every waiting query on the wire, each followed by its sync. */
static void
pgq_send(void *owner)
{
	struct pgq	*q = owner;
	struct pgq_req	*r;
	int		 n = 0;

	while ((r = q->q_wait) != NULL) {
		if (pgconn_end(&q->q_pc, PQsendQueryParams(q->q_pc.pc_db,
		    r->pr_sql, r->pr_nparams, NULL,
		    (const char *const *)r->pr_params, NULL, NULL, 0)) == -1)
			return;
		q->q_wait = r->pr_next;
		r->pr_next = NULL;
		r->pr_sent_ms = W.wk_now_ms;
		*q->q_sent_tail = r;
		q->q_sent_tail = &r->pr_next;
		n++;
	}
	q->q_wait_tail = &q->q_wait;
	if (n > 0)
		pgconn_flush(&q->q_pc);
}

/* ---- receiving ---------------------------------------------------------- */

/* Keep the statement's first result; anything after it is dropped. */
static void
pgq_result(void *owner, PGresult *res)
{
	struct pgq	*q = owner;
	struct pgq_req	*r = q->q_sent;
	ExecStatusType	 st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		if (r->pr_res == NULL && !r->pr_failed) {
			r->pr_res = res;
			return;
		}
	} else if (!r->pr_failed) {
		r->pr_failed = 1;
		pgconn_log_error(&q->q_pc, res);
		ctr_add(&W.wk_slot->sl_pg_errors, 1);
	}
	PQclear(res);
}

/* The oldest query's sync came: it is answered. */
static void
pgq_complete(void *owner)
{
	struct pgq	*q = owner;
	struct pgq_req	*r = q->q_sent;

	q->q_sent = r->pr_next;
	if (q->q_sent == NULL)
		q->q_sent_tail = &q->q_sent;
	pgq_finish(q, r, r->pr_failed ? NULL : r->pr_res);
}

static int64_t
pgq_oldest_ms(const void *owner)
{
	const struct pgq *q = owner;

	return q->q_sent != NULL ? q->q_sent->pr_sent_ms : 0;
}

static const struct pgconn_ops pgq_ops = {
	.po_result = pgq_result,
	.po_complete = pgq_complete,
	.po_oldest_ms = pgq_oldest_ms,
	.po_send = pgq_send,
	.po_fail = pgq_fail,
};

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

	if (q == NULL || q->q_count >= PGQ_MAX_QUEUED ||
	    pgconn_want(&q->q_pc) == -1)
		return -1;
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
	/* Sent by the driver's tick at the end of this loop turn, with every
	 * other query of the turn, and never a callback from in here. */
	return 0;
}

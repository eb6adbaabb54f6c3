/*
 * The worker's non-blocking PostgreSQL connections (lanes) for cache
 * misses; the design is in lookup.h.  Connecting, the socket, timeouts
 * and going down are the driver's (pgconn.c): this file keeps the choice
 * of a lane, the batching of misses into queries, the prepared statement
 * and what a row means.
 */
#include <sys/epoll.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "worker/lookup.h"
#include "worker/pgconn.h"
#include "worker/worker.h"

#define LK_BATCH_MAX	256		/* hashes per query */
#define LK_INFLIGHT	4		/* queries on the wire at once, per lane */
/*
 * While a lane has a query on the wire, its new misses wait for it to come
 * back unless this many are waiting: then they go out at once, pipelined.
 * Sent as they came, 32 connections of misses made queries of about three
 * hashes each, and a call's fixed cost (about 50 us of PostgreSQL, against
 * about 15 us a hash, from pg_stat_statements) was most of a miss's.
 */
#define LK_BATCH_EAGER	32
/*
 * Connections ("lanes") per worker.  A backend runs its queries one after
 * the other, so a single connection keeps a worker's misses on one
 * PostgreSQL core, where pgbench -S, the yardstick of BENCHMARKS.md
 * (0.76x with one), spreads over 32 backends and both cores of the box.
 * Two lanes let two backends share the misses.  Each lane costs one
 * backend per worker against PostgreSQL's max_connections, and batching
 * already keeps a lane's backend busy, so more would add backends, not
 * cores.
 */
#define LK_LANES	2

struct lk_req {
	struct conn	*lr_conn;	/* NULL once cancelled */
	lookup_cb	 lr_cb;
	uint8_t		 lr_hash[TOKEN_HASH_LEN];
	uint64_t	 lr_epoch;	/* sh_cache_epoch before the query */
	struct tok_info	*lr_cached;	/* a hit being verified, else NULL */
	struct lk_req	*lr_next;
};

/* One query on the wire: its requests, and its result once it is in. */
struct lk_batch {
	struct lk_req	*lb_reqs;
	PGresult	*lb_res;	/* the rows; NULL until they came */
	int		 lb_failed;	/* an error came instead */
	int		 lb_unprepared;	/* ... "no such statement" */
	int64_t		 lb_sent_ms;
};

/* One connection (a lane) and the requests it holds. */
struct lk_lane {
	struct pgconn	 ln_pc;		/* the connection and its state */
	const struct config *ln_cf;
	int		 ln_nreqs;	/* requests waiting or in flight */
	int		 ln_nwait;	/* ... of which waiting (ln_wait) */
	int		 ln_unnamed;	/* prepared statements do not hold */
	struct lk_req	*ln_wait;	/* not yet sent, FIFO */
	struct lk_req	**ln_wait_tail;
	/* Queries in flight, oldest first: a ring of ln_nsent from ln_head. */
	struct lk_batch	 ln_sent[LK_INFLIGHT];
	int		 ln_head, ln_nsent;
	char		 ln_param[LK_BATCH_MAX * (2 * TOKEN_HASH_LEN + 1) + 1];
};

/* A request stays on the lane that took it until its callback. */
struct lookup {
	struct lk_lane	 lk_lanes[LK_LANES];
};

static const char lookup_sql[] =
    "SELECT encode(t.hash, 'hex'), t.id, t.kind, coalesce(t.user_id, 0), "
    "coalesce(u.name, ''), coalesce(c.client_id, ''), t.scope, "
    "coalesce(floor(extract(epoch FROM t.expires_at))::bigint, 0), "
    "floor(extract(epoch FROM t.created_at))::bigint, "
    "t.revoked_at IS NOT NULL, coalesce(u.disabled, false), "
    "t.canary, coalesce(t.rate_limit, 0), coalesce(t.rate_window, 0), "
    "coalesce(array_to_string(t.allowed_ips, ' '), '') "
    "FROM tokend.tokens t LEFT JOIN tokend.users u ON u.id = t.user_id "
    "LEFT JOIN tokend.clients c ON c.id = t.client_id "
    "WHERE t.hash = ANY (ARRAY(SELECT decode(h, 'hex') "
    "FROM unnest(string_to_array($1, ',')) AS h))";

static const struct pgconn_ops lk_ops;

/* Each lane's name in log lines (conn=); the first keeps the old one. */
static const char *const lk_names[LK_LANES] = { "lookup", "lookup2" };

struct lookup *
lookup_new(const struct config *cf, int epfd)
{
	struct lookup	*lk;
	struct lk_lane	*ln;
	int		 i;

	if ((lk = calloc(1, sizeof(*lk))) == NULL)
		return NULL;
	for (i = 0; i < LK_LANES; i++) {
		ln = &lk->lk_lanes[i];
		ln->ln_cf = cf;
		ln->ln_wait_tail = &ln->ln_wait;
		/* The timer table is full (logged): the lanes whose timers
		 * were registered point into lk, which therefore stays. */
		if (pgconn_init(&ln->ln_pc, epfd, cf->cf_database_url,
		    lk_names[i], "tokend worker", &lk_ops, ln) == -1)
			return NULL;
	}
	return lk;
}

/* ---- answering the waiting connections ---------------------------------- */

static void
lk_req_free(struct lk_lane *ln, struct lk_req *r)
{
	ln->ln_nreqs--;
	free(r->lr_cached);
	free(r);
}

/*
 * No answer from PostgreSQL: 503 for a miss; a hit being verified keeps its
 * cached answer while lookup_stale_ok says it may (SPEC 5).
 */
static void
lk_fail_list(struct lk_lane *ln, struct lk_req *r)
{
	struct lk_req	*next;

	for (; r != NULL; r = next) {
		next = r->lr_next;
		if (r->lr_conn != NULL)
			r->lr_cb(r->lr_conn, r->lr_cached != NULL &&
			    lookup_stale_ok() ? r->lr_cached : NULL);
		lk_req_free(ln, r);
	}
}

/* This lane's connection is gone: every connection waiting on it gets
 * its 503 now (the other lane's keep theirs). */
static void
lk_fail(void *owner)
{
	struct lk_lane	*ln = owner;
	struct lk_batch	 sent[LK_INFLIGHT];
	struct lk_req	*wait = ln->ln_wait;
	int		 i, n = ln->ln_nsent;

	for (i = 0; i < n; i++)
		sent[i] = ln->ln_sent[(ln->ln_head + i) % LK_INFLIGHT];
	ln->ln_head = ln->ln_nsent = 0;
	ln->ln_wait = NULL;
	ln->ln_wait_tail = &ln->ln_wait;
	ln->ln_nwait = 0;
	/* The lists are detached first: a callback may submit again. */
	for (i = 0; i < n; i++) {
		PQclear(sent[i].lb_res);
		lk_fail_list(ln, sent[i].lb_reqs);
	}
	lk_fail_list(ln, wait);
}

/*
 * SPEC 13's columns.  A canary is negative whatever its state, so every
 * path answers it as unknown; its flag and id stay for peer_canary.  An
 * allowlist that does not parse (a row written around migration 017's
 * checks) refuses the token rather than opening it to everyone.
 */
static void
row_limits(PGresult *res, int i, struct tok_info *ti)
{
	const char	*why;
	char		 bad[64];
	int		 n;

	if (PQgetvalue(res, i, 11)[0] == 't') {
		ti->ti_flags |= TI_F_CANARY;
		ti->ti_state = TI_NEGATIVE;
	}
	ti->ti_rate = (uint32_t)strtoul(PQgetvalue(res, i, 12), NULL, 10);
	ti->ti_rate_window = (uint32_t)strtoul(PQgetvalue(res, i, 13), NULL,
	    10);
	if (ti->ti_rate_window == 0)
		ti->ti_rate = 0;
	n = cidr_list_parse(PQgetvalue(res, i, 14), ti->ti_allow,
	    IP_MAX_ALLOW, &why, bad, sizeof(bad));
	if (n < 0) {
		LOG(LVL_WARN, "token_refused", KV_I("token_id", ti->ti_id),
		    KV_S("reason", "stored allowlist unusable"));
		ti->ti_state = TI_NEGATIVE;
		n = 0;
	}
	ti->ti_nallow = (uint32_t)n;
}

static void
row_to_info(PGresult *res, int i, struct tok_info *ti, int64_t now)
{
	memset(ti, 0, sizeof(*ti));
	ti->ti_id = strtoll(PQgetvalue(res, i, 1), NULL, 10);
	ti->ti_kind = token_kind_from_name(PQgetvalue(res, i, 2));
	ti->ti_user_id = strtoll(PQgetvalue(res, i, 3), NULL, 10);
	ti->ti_expires = strtoll(PQgetvalue(res, i, 7), NULL, 10);
	ti->ti_iat = strtoll(PQgetvalue(res, i, 8), NULL, 10);
	ti->ti_state = TI_VALID;
	if (PQgetvalue(res, i, 9)[0] == 't' || PQgetvalue(res, i, 10)[0] ==
	    't' || (ti->ti_expires != 0 && ti->ti_expires <= now))
		ti->ti_state = TI_NEGATIVE;
	/* A value that does not fit (a row from before migration 006's
	 * checks) refuses the token: a cut name would be another user's. */
	if (text_copy(ti->ti_user, sizeof(ti->ti_user),
	    PQgetvalue(res, i, 4)) == -1 || text_copy(ti->ti_client,
	    sizeof(ti->ti_client), PQgetvalue(res, i, 5)) == -1 ||
	    text_copy(ti->ti_scope, sizeof(ti->ti_scope),
	    PQgetvalue(res, i, 6)) == -1) {
		LOG(LVL_WARN, "token_refused", KV_I("token_id", ti->ti_id),
		    KV_S("reason", "stored user, client or scope too long"));
		memset(ti->ti_user, 0, sizeof(ti->ti_user));
		memset(ti->ti_client, 0, sizeof(ti->ti_client));
		memset(ti->ti_scope, 0, sizeof(ti->ti_scope));
		ti->ti_state = TI_NEGATIVE;
	}
	row_limits(res, i, ti);
}

/* Find the row for r's hash; unknown hashes become negative entries. */
static void
lk_answer(struct lk_lane *ln, PGresult *res, struct lk_req *r)
{
	struct tok_info	 ti;
	char		 hex[2 * TOKEN_HASH_LEN + 1];
	int		 i, n = PQntuples(res);

	hex_encode(r->lr_hash, TOKEN_HASH_LEN, hex);
	memset(&ti, 0, sizeof(ti));
	ti.ti_state = TI_NEGATIVE;
	for (i = 0; i < n; i++)
		if (strcmp(PQgetvalue(res, i, 0), hex) == 0) {
			row_to_info(res, i, &ti, W.wk_now);
			break;
		}
	ti.ti_until = cache_until(&ti, W.wk_now, ln->ln_cf->cf_cache_ttl,
	    ln->ln_cf->cf_negative_ttl);
	if (W.wk_cache != NULL && ti.ti_until > W.wk_now &&
	    __atomic_load_n(&W.wk_shm->sh_listening, __ATOMIC_ACQUIRE))
		cache_put(W.wk_cache, r->lr_hash, &ti,
		    &W.wk_shm->sh_cache_epoch, r->lr_epoch);
	if (r->lr_conn != NULL && (ti.ti_flags & TI_F_CANARY))
		peer_canary(r->lr_conn, &ti);
	if (r->lr_conn != NULL)
		r->lr_cb(r->lr_conn, &ti);
}

/*
 * A pooler in transaction mode (PgBouncer before 1.21) sends each
 * transaction to whichever server connection is free, so a statement
 * prepared on one is missing on the next (26000), or already there when
 * another worker prepares it (42P05).  From then on this lane sends
 * unnamed statements, and the requests of the query that failed go again.
 */
static void
lk_unprepared(struct lk_lane *ln, struct lk_req *reqs)
{
	struct lk_req	*last;

	if (!ln->ln_unnamed)
		LOG(LVL_WARN, "lookup_unprepared", KV_S("reason", "a prepared "
		    "statement did not survive between transactions (a pooler "
		    "in transaction mode?): each lookup is parsed"));
	ln->ln_unnamed = 1;
	if (reqs == NULL)	/* the PREPARE itself */
		return;
	ln->ln_nwait++;
	for (last = reqs; last->lr_next != NULL; last = last->lr_next)
		ln->ln_nwait++;
	last->lr_next = ln->ln_wait;
	if (ln->ln_wait == NULL)
		ln->ln_wait_tail = &last->lr_next;
	ln->ln_wait = reqs;
}

static int
lk_is_unprepared(const PGresult *res)
{
	const char	*st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return st != NULL && (strcmp(st, "26000") == 0 ||
	    strcmp(st, "42P05") == 0);
}

/* The oldest query's sync came: answer its requests, or fail them. */
static void
lk_complete(void *owner)
{
	struct lk_lane	*ln = owner;
	struct lk_batch	 b = ln->ln_sent[ln->ln_head];
	struct lk_req	*r, *next;

	ln->ln_head = (ln->ln_head + 1) % LK_INFLIGHT;
	ln->ln_nsent--;
	if (b.lb_unprepared) {
		PQclear(b.lb_res);
		lk_unprepared(ln, b.lb_reqs);
		return;
	}
	if (b.lb_reqs == NULL && (b.lb_res == NULL || b.lb_failed)) {
		PQclear(b.lb_res);
		pgconn_down(&ln->ln_pc, "cannot prepare the lookup statement");
		return;
	}
	if (b.lb_res == NULL || b.lb_failed) {
		/* Without a result set its waiters get 503. */
		ctr_add(&W.wk_slot->sl_pg_errors, 1);
		PQclear(b.lb_res);
		lk_fail_list(ln, b.lb_reqs);
		return;
	}
	for (r = b.lb_reqs; r != NULL; r = next) {
		next = r->lr_next;
		lk_answer(ln, b.lb_res, r);
		lk_req_free(ln, r);
	}
	PQclear(b.lb_res);
}

/* A result of the oldest query: its rows (or the PREPARE's), or an error. */
static void
lk_result(void *owner, PGresult *res)
{
	struct lk_lane	*ln = owner;
	struct lk_batch	*b = &ln->ln_sent[ln->ln_head];

	switch (PQresultStatus(res)) {
	case PGRES_TUPLES_OK:
	case PGRES_COMMAND_OK:		/* the PREPARE */
		if (b->lb_res == NULL) {
			b->lb_res = res;
			return;
		}
		break;
	default:
		if (lk_is_unprepared(res))
			b->lb_unprepared = 1;
		else if (!b->lb_failed)
			pgconn_log_error(&ln->ln_pc, res);
		b->lb_failed = 1;
		break;
	}
	PQclear(res);
}

static int64_t
lk_oldest_ms(const void *owner)
{
	const struct lk_lane *ln = owner;

	return ln->ln_nsent > 0 ? ln->ln_sent[ln->ln_head].lb_sent_ms : 0;
}

/* ---- sending ------------------------------------------------------------ */

/* A query for reqs (NULL: the PREPARE) goes out: the ring's next slot. */
static void
lk_push(struct lk_lane *ln, struct lk_req *reqs)
{
	struct lk_batch	*b = &ln->ln_sent[(ln->ln_head + ln->ln_nsent) %
			    LK_INFLIGHT];

	memset(b, 0, sizeof(*b));
	b->lb_reqs = reqs;
	b->lb_sent_ms = W.wk_now_ms;
	ln->ln_nsent++;
}

/* End the query just handed to libpq (sent: it took it) with its sync,
 * and flush; any failure takes the connection down. */
static void
lk_sync(struct lk_lane *ln, int sent)
{
	if (pgconn_end(&ln->ln_pc, sent) == 0)
		pgconn_flush(&ln->ln_pc);
}

/* Put the waiting requests on the wire as one query, with its sync. */
static void
lk_send(struct lk_lane *ln)
{
	const char	*params[1];
	struct lk_req	*r, *reqs = NULL, **tail = &reqs;
	char		*p = ln->ln_param;
	int		 n = 0;

	while ((r = ln->ln_wait) != NULL && n < LK_BATCH_MAX) {
		ln->ln_wait = r->lr_next;
		ln->ln_nwait--;
		r->lr_next = NULL;
		if (r->lr_conn == NULL) {	/* cancelled before it went out */
			lk_req_free(ln, r);
			continue;
		}
		if (n++ > 0)
			*p++ = ',';
		hex_encode(r->lr_hash, TOKEN_HASH_LEN, p);
		p += 2 * TOKEN_HASH_LEN;
		*tail = r;
		tail = &r->lr_next;
	}
	if (ln->ln_wait == NULL)
		ln->ln_wait_tail = &ln->ln_wait;
	if (n == 0)
		return;
	*p = '\0';
	params[0] = ln->ln_param;
	lk_push(ln, reqs);
	lk_sync(ln, ln->ln_unnamed ? PQsendQueryParams(ln->ln_pc.pc_db,
	    lookup_sql, 1, NULL, params, NULL, NULL, 0) :
	    PQsendQueryPrepared(ln->ln_pc.pc_db, "lookup", 1, params, NULL,
	    NULL, 0));
}

/* Send what waits while there is room on the wire. */
static void
lk_send_all(void *owner)
{
	struct lk_lane	*ln = owner;

	while (ln->ln_pc.pc_state == PC_READY && ln->ln_wait != NULL &&
	    ln->ln_nsent < LK_INFLIGHT &&
	    (ln->ln_nsent == 0 || ln->ln_nwait >= LK_BATCH_EAGER))
		lk_send(ln);
}

/* ---- connecting --------------------------------------------------------- */

/*
 * The lookup statement is parsed and planned once per connection: first in
 * the pipeline, as a query with no requests (lk_complete goes down if it
 * fails).
 */
static void
lk_prepare(void *owner)
{
	struct lk_lane	*ln = owner;

	lk_push(ln, NULL);
	lk_sync(ln, PQsendPrepare(ln->ln_pc.pc_db, "lookup", lookup_sql, 1,
	    NULL));
}

static const struct pgconn_ops lk_ops = {
	.po_result = lk_result,
	.po_complete = lk_complete,
	.po_oldest_ms = lk_oldest_ms,
	.po_ready = lk_prepare,
	.po_send = lk_send_all,
	.po_send_on_event = 1,
	.po_fail = lk_fail,
};

/* ---- the interface ------------------------------------------------------ */

/*
 * The lane for a new request: one that is up before one connecting, then
 * the one holding the fewest requests.  A lane that is down starts
 * connecting first when its back-off allows (pgconn_want), so the second
 * lane comes up with the first request and each lane reconnects on its
 * own.  NULL: none can take it.
 */
static struct lk_lane *
lk_pick(struct lookup *lk)
{
	struct lk_lane	*ln, *best = NULL;
	int		 i, up, best_up = 0;

	for (i = 0; i < LK_LANES; i++) {
		ln = &lk->lk_lanes[i];
		if (ln->ln_pc.pc_state == PC_DOWN &&
		    pgconn_want(&ln->ln_pc) == -1)
			continue;
		up = ln->ln_pc.pc_state == PC_READY;
		if (best == NULL || up > best_up || (up == best_up &&
		    ln->ln_nreqs < best->ln_nreqs)) {
			best = ln;
			best_up = up;
		}
	}
	return best;
}

/* Queue r for c (lookup_submit's contract); frees r when it cannot. */
static int
lk_enqueue(struct lookup *lk, struct conn *c, struct lk_req *r)
{
	struct lk_lane	*ln;

	if ((ln = lk_pick(lk)) == NULL) {
		free(r->lr_cached);
		free(r);
		return -1;
	}
	ln->ln_nreqs++;
	ln->ln_nwait++;
	r->lr_conn = c;
	r->lr_epoch = __atomic_load_n(&W.wk_shm->sh_cache_epoch,
	    __ATOMIC_ACQUIRE);
	*ln->ln_wait_tail = r;
	ln->ln_wait_tail = &r->lr_next;
	c->c_pending = r;
	/* Sent by the driver's tick at the end of this loop turn, with every
	 * other miss of the turn on this lane in the same query. */
	return 0;
}

int
lookup_submit(struct lookup *lk, struct conn *c,
    const uint8_t hash[TOKEN_HASH_LEN], lookup_cb cb)
{
	struct lk_req	*r;

	if (lk == NULL || (r = calloc(1, sizeof(*r))) == NULL)
		return -1;
	r->lr_cb = cb;
	memcpy(r->lr_hash, hash, TOKEN_HASH_LEN);
	return lk_enqueue(lk, c, r);
}

int
lookup_verify(struct lookup *lk, struct conn *c,
    const uint8_t hash[TOKEN_HASH_LEN], const struct tok_info *cached,
    lookup_cb cb)
{
	struct lk_req	*r;

	if (lk == NULL || (r = calloc(1, sizeof(*r))) == NULL)
		return -1;
	if ((r->lr_cached = malloc(sizeof(*cached))) == NULL) {
		free(r);
		return -1;
	}
	memcpy(r->lr_cached, cached, sizeof(*cached));
	r->lr_cb = cb;
	memcpy(r->lr_hash, hash, TOKEN_HASH_LEN);
	return lk_enqueue(lk, c, r);
}

int
lookup_up(const struct lookup *lk)
{
	const struct pgconn *pc;
	int		 i, up = 0;

	if (lk == NULL)
		return -1;
	for (i = 0; i < LK_LANES; i++) {
		pc = &lk->lk_lanes[i].ln_pc;
		if (pc->pc_state == PC_READY)
			return 1;
		/* rt_attempts counts the failed attempts: DOWN without one
		 * is "not yet". */
		if (pc->pc_state == PC_DOWN && pc->pc_retry.rt_attempts != 0)
			up = -1;
	}
	return up;
}

int
lookup_stale_ok(void)
{
	int64_t	 ok = __atomic_load_n(&W.wk_shm->sh_feed_ok_ms,
	    __ATOMIC_RELAXED);

	return ok > 0 && W.wk_now_ms - ok <=
	    (int64_t)W.wk_cf->cf_stale_cache_ttl * 1000;
}

void
lookup_cancel(struct lookup *lk, struct conn *c)
{
	struct lk_req	*r = c->c_pending;

	/* Whichever lane holds r finds it cancelled and frees it. */
	(void)lk;
	if (r != NULL)
		r->lr_conn = NULL;
	c->c_pending = NULL;
}

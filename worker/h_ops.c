/*
 * Operations endpoints: /healthz (the process serves), /readyz (this
 * instance gives correct answers, SPEC 4 and 5), /metrics (Prometheus
 * text, every worker's slot summed; see shm/README.md).
 */
#include <stdlib.h>

#include "worker/lookup.h"
#include "worker/worker.h"

/* PostgreSQL counts as up when someone heard from it this recently. */
#define READY_PG_MS 5000

enum handler_result
h_healthz(struct conn *c)
{
	resp_start(c, 200);
	resp_header(c, "Cache-Control", "no-store");
	resp_end(c, "application/json", "{\"status\":\"ok\"}", 15);
	return HANDLER_DONE;
}

/*
 * This worker can ask PostgreSQL: its own lookup connection says best;
 * before its first connection, whether anyone heard from PostgreSQL lately.
 */
static int
ops_pg_reachable(void)
{
	int64_t	 pg_ms = __atomic_load_n(&W.wk_shm->sh_pg_ok_ms,
	    __ATOMIC_RELAXED);
	int	 up = lookup_up(W.wk_lookup);

	return up > 0 || (up == 0 && pg_ms > 0 &&
	    W.wk_now_ms - pg_ms < READY_PG_MS);
}

/* What /readyz knows, read once per request. */
struct ready {
	int		 rd_fresh;	/* feed confirmed within the lag */
	const char	*rd_feed;	/* fresh, stale, unconfirmed */
	int64_t		 rd_age_ms;	/* -1: never confirmed */
	int		 rd_pg;		/* this worker can ask PostgreSQL */
	int		 rd_cache;
	const char	*rd_why;	/* NULL when ready */
};

static void
ready_read(struct ready *rd)
{
	int64_t	 ok = __atomic_load_n(&W.wk_shm->sh_feed_ok_ms,
	    __ATOMIC_RELAXED);

	rd->rd_age_ms = ok > 0 ? W.wk_now_ms - ok : -1;
	rd->rd_fresh = auth_feed_fresh(ok);
	rd->rd_feed = rd->rd_fresh ? "fresh" : __atomic_load_n(
	    &W.wk_shm->sh_feed_state, __ATOMIC_ACQUIRE) == FEED_UNCONFIRMED ?
	    "unconfirmed" : "stale";
	rd->rd_pg = ops_pg_reachable();
	rd->rd_cache = W.wk_cache != NULL;
	rd->rd_why = NULL;
	if (W.wk_stopping)
		rd->rd_why = "stopping";
	else if (!rd->rd_cache)
		rd->rd_why = "the cache is not open";
	else if (!rd->rd_fresh && !rd->rd_pg && !lookup_stale_ok())
		rd->rd_why = "the revocation feed is not confirmed, PostgreSQL "
		    "is unreachable, and cached answers are older than "
		    "stale_cache_ttl";
}

/*
 * 200 while answers are correct: the feed is fresh, or hits can be
 * verified in PostgreSQL, or cached answers may still stand.  PostgreSQL
 * down alone is no reason: a load balancer would take every instance out
 * at once (SPEC 4).
 */
enum handler_result
h_readyz(struct conn *c)
{
	struct ready	 rd;
	json_t		*o;

	ready_read(&rd);
	o = json_pack("{s:s, s:s, s:b, s:b}", "status", rd.rd_why ?
	    "not_ready" : "ready", "feed", rd.rd_feed, "postgresql", rd.rd_pg,
	    "cache", rd.rd_cache);
	if (o != NULL) {
		json_object_set_new(o, "feed_age_ms", rd.rd_age_ms < 0 ?
		    json_null() : json_integer(rd.rd_age_ms));
		if (rd.rd_why != NULL)
			json_object_set_new(o, "reason",
			    json_string(rd.rd_why));
		else if (!rd.rd_fresh)
			json_object_set_new(o, "degraded", json_string(
			    rd.rd_pg ? "every cache hit is verified in "
			    "PostgreSQL" : "PostgreSQL is unreachable: cached "
			    "answers stand until stale_cache_ttl"));
	}
	resp_start(c, rd.rd_why ? 503 : 200);
	resp_header(c, "Cache-Control", "no-store");
	if (rd.rd_why != NULL)
		resp_header(c, "Retry-After", "1");
	resp_json_end(c, o);
	return HANDLER_DONE;
}

enum handler_result
h_metrics(struct conn *c)
{
	struct metrics_gauges	 g = { -1, 0, 0, 0 };
	int			 n;

	if (W.wk_cache != NULL) {
		g.mg_cache_entries = cache_entries(W.wk_cache);
		if (cache_map_use(W.wk_cache, &g.mg_map_used,
		    &g.mg_map_size) == -1)
			g.mg_map_size = 0;
	}
	/* Both kinds of connection: this worker's queries and the writer's
	 * LISTEN (revocations, usage flushes). */
	g.mg_pg_up = ops_pg_reachable() && __atomic_load_n(
	    &W.wk_shm->sh_listening, __ATOMIC_ACQUIRE);
	if (W.wk_mbufcap == 0)
		W.wk_mbufcap = 64 * 1024;
	for (;;) {
		if (W.wk_mbuf == NULL &&
		    (W.wk_mbuf = malloc(W.wk_mbufcap)) == NULL)
			break;
		n = metrics_render(&g, W.wk_mbuf, W.wk_mbufcap);
		if (n >= 0) {
			resp_start(c, 200);
			resp_end(c, "text/plain; version=0.0.4", W.wk_mbuf,
			    (size_t)n);
			return HANDLER_DONE;
		}
		free(W.wk_mbuf);
		W.wk_mbuf = NULL;
		W.wk_mbufcap *= 2;
	}
	resp_error(c, 500, "server_error", "out of memory");
	return HANDLER_DONE;
}

/*
 * Operations endpoints: /healthz (the process serves), /readyz (PostgreSQL
 * answered recently and the cache is open), /metrics (Prometheus text, every
 * worker's slot summed; see shm/README.md).
 */
#include <stdlib.h>

#include "worker/worker.h"

/* PostgreSQL counts as up when the writer heard from it this recently. */
#define READY_PG_MS 5000

enum handler_result
h_healthz(struct conn *c)
{
	resp_start(c, 200);
	resp_header(c, "Cache-Control", "no-store");
	resp_end(c, "application/json", "{\"status\":\"ok\"}", 15);
	return HANDLER_DONE;
}

enum handler_result
h_readyz(struct conn *c)
{
	int64_t	 ok_ms = __atomic_load_n(&W.wk_shm->sh_pg_ok_ms,
	    __ATOMIC_RELAXED);
	int	 pg = ok_ms > 0 && W.wk_now_ms - ok_ms < READY_PG_MS;
	int	 cache = W.wk_cache != NULL;
	json_t	*o;

	o = json_pack("{s:s, s:b, s:b}", "status", pg && cache ? "ready" :
	    "not_ready", "postgresql", pg, "cache", cache);
	resp_start(c, pg && cache ? 200 : 503);
	resp_header(c, "Cache-Control", "no-store");
	if (!(pg && cache))
		resp_header(c, "Retry-After", "1");
	resp_json_end(c, o);
	return HANDLER_DONE;
}

enum handler_result
h_metrics(struct conn *c)
{
	long long	 entries;
	int		 n;

	entries = W.wk_cache ? cache_entries(W.wk_cache) : -1;
	if (W.wk_mbufcap == 0)
		W.wk_mbufcap = 64 * 1024;
	for (;;) {
		if (W.wk_mbuf == NULL &&
		    (W.wk_mbuf = malloc(W.wk_mbufcap)) == NULL)
			break;
		n = shm_metrics(W.wk_shm, entries, W.wk_mbuf, W.wk_mbufcap);
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

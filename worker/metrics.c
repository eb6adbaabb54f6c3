/*
 * The /metrics text: every counter of the shared segment, summed over the
 * slots (shm/), in Prometheus' text format.  The endpoint labels are the
 * routes' paths (W.wk_ep_name, dispatch.c).
 */
#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>

#include "worker/worker.h"

struct mbuf {
	char	*mb_buf;
	size_t	 mb_len;
	size_t	 mb_cap;
	int	 mb_err;
};

static void mb_printf(struct mbuf *mb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mb_printf(struct mbuf *mb, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	if (mb->mb_err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(mb->mb_buf + mb->mb_len, mb->mb_cap - mb->mb_len, fmt,
	    ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= mb->mb_cap - mb->mb_len)
		mb->mb_err = 1;
	else
		mb->mb_len += (size_t)n;
}

static void
metrics_requests(const struct shm *shm, struct mbuf *mb)
{
	int	 ep, st;

	mb_printf(mb, "# HELP tokend_requests_total HTTP responses by "
	    "endpoint and status.\n# TYPE tokend_requests_total counter\n");
	for (ep = 0; ep < EP__COUNT; ep++)
		for (st = 0; st < ST__COUNT; st++) {
			uint64_t n = SHM_SUM(shm, sl_requests[ep][st]);
			if (n == 0)
				continue;
			if (st == ST_OTHER)
				mb_printf(mb, "tokend_requests_total{endpoint="
				    "\"%s\",status=\"other\"} %llu\n",
				    W.wk_ep_name[ep], (unsigned long long)n);
			else
				mb_printf(mb, "tokend_requests_total{endpoint="
				    "\"%s\",status=\"%d\"} %llu\n",
				    W.wk_ep_name[ep], status_code(st),
				    (unsigned long long)n);
		}
}

/* One endpoint's series of the duration histogram. */
static void
metrics_hist_ep(const struct shm *shm, struct mbuf *mb, int ep)
{
	const char	*name = W.wk_ep_name[ep];
	uint64_t	 cum = 0;
	int		 b;

	for (b = 0; b < SHM_NBUCKETS; b++) {
		cum += SHM_SUM(shm, sl_duration[ep][b]);
		mb_printf(mb, "tokend_request_duration_seconds_bucket{endpoint="
		    "\"%s\",le=\"%g\"} %llu\n", name,
		    (double)shm_bucket_us(b) / 1e6, (unsigned long long)cum);
	}
	cum += SHM_SUM(shm, sl_duration[ep][SHM_NBUCKETS]);
	mb_printf(mb, "tokend_request_duration_seconds_bucket{endpoint=\"%s\","
	    "le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	mb_printf(mb, "tokend_request_duration_seconds_sum{endpoint=\"%s\"} "
	    "%.6f\n", name, (double)SHM_SUM(shm, sl_duration_sum_us[ep]) / 1e6);
	mb_printf(mb, "tokend_request_duration_seconds_count{endpoint=\"%s\"} "
	    "%llu\n", name, (unsigned long long)cum);
}

static void
metrics_histogram(const struct shm *shm, struct mbuf *mb)
{
	int	 ep;

	mb_printf(mb, "# HELP tokend_request_duration_seconds Time from a "
	    "complete request to its response.\n"
	    "# TYPE tokend_request_duration_seconds histogram\n");
	for (ep = 0; ep < EP__COUNT; ep++)
		metrics_hist_ep(shm, mb, ep);
}

static void
metric(struct mbuf *mb, const char *name, const char *type, const char *help,
    uint64_t v)
{
	mb_printf(mb, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help,
	    name, type, name, (unsigned long long)v);
}

/*
 * Bounded staleness (SPEC 5): how old the revocation feed's last confirmed
 * round trip is (+Inf before the first), and the hits that were verified in
 * PostgreSQL because it was older than max_revocation_lag.
 */
static void
metrics_feed(const struct shm *shm, struct mbuf *mb)
{
	int64_t	 ok = __atomic_load_n(&shm->sh_feed_ok_ms, __ATOMIC_RELAXED);

	mb_printf(mb, "# HELP tokend_revocation_feed_age_seconds Age of the "
	    "last revocation feed round trip confirmed.\n"
	    "# TYPE tokend_revocation_feed_age_seconds gauge\n");
	if (ok > 0)
		mb_printf(mb, "tokend_revocation_feed_age_seconds %.3f\n",
		    (double)(shm_now_ms() - ok) / 1000.0);
	else
		mb_printf(mb, "tokend_revocation_feed_age_seconds +Inf\n");
	metric(mb, "tokend_cache_hits_verified_total", "counter",
	    "Cache hits verified in PostgreSQL: the feed was stale.",
	    SHM_SUM(shm, sl_cache_verified));
}

static const char *const metrics_grants[ISSUED__COUNT] = {
#define X(id, label) label,
	SHM_GRANTS
#undef X
};

/* Issue 13's security events and tokens issued by grant. */
static void
metrics_events(const struct shm *shm, struct mbuf *mb)
{
	int	 g;

	metric(mb, "tokend_signin_failures_total", "counter",
	    "Failed sign-ins: wrong, unknown or disabled user.",
	    SHM_SUM(shm, sl_signin_failures));
	metric(mb, "tokend_refresh_reuse_total", "counter",
	    "Refresh families revoked because a used refresh token came back.",
	    SHM_SUM(shm, sl_refresh_reuse));
	metric(mb, "tokend_code_replays_total", "counter",
	    "Authorization codes presented again (their tokens revoked).",
	    SHM_SUM(shm, sl_code_replay));
	mb_printf(mb, "# HELP tokend_tokens_issued_total Tokens issued, by "
	    "grant (an access and refresh pair counts once).\n"
	    "# TYPE tokend_tokens_issued_total counter\n");
	for (g = 0; g < ISSUED__COUNT; g++)
		mb_printf(mb, "tokend_tokens_issued_total{grant=\"%s\"} %llu\n",
		    metrics_grants[g], (unsigned long long)SHM_SUM(shm,
		    sl_tokens_issued[g]));
}

/* Resident bytes and open descriptors of process pid; absent: nothing. */
static void
metrics_proc_add(pid_t pid, uint64_t *rss, uint64_t *fds)
{
	char		 path[64];
	unsigned long	 size, res;
	struct dirent	*de;
	FILE		*f;
	DIR		*d;

	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	if ((f = fopen(path, "re")) != NULL) {
		if (fscanf(f, "%lu %lu", &size, &res) == 2)
			*rss += (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			(*fds)++;
	closedir(d);
}

/*
 * The standard process metrics for tokend as a whole: the master, the
 * writer and every live worker summed (RSS counts the shared cache and
 * segment pages each process touched), and the master's start time.
 * Read from /proc at scrape time, off every request's path.
 */
static void
metrics_process(const struct shm *shm, struct mbuf *mb)
{
	uint64_t	 rss = 0, fds = 0;
	uint32_t	 i;

	metrics_proc_add(getppid(), &rss, &fds);
	metrics_proc_add(__atomic_load_n(&shm->sh_writer_pid,
	    __ATOMIC_RELAXED), &rss, &fds);
	for (i = 0; i < shm->sh_nslots; i++)
		if (__atomic_load_n(&shm->sh_slots[i].sl_state,
		    __ATOMIC_RELAXED) == SLOT_USED)
			metrics_proc_add(shm->sh_slots[i].sl_pid, &rss, &fds);
	metric(mb, "process_resident_memory_bytes", "gauge",
	    "Resident memory of every tokend process, summed.", rss);
	metric(mb, "process_open_fds", "gauge",
	    "Open file descriptors of every tokend process, summed.", fds);
	metric(mb, "process_start_time_seconds", "gauge",
	    "When the master started, unix seconds.",
	    (uint64_t)shm->sh_started);
}

/* PostgreSQL reachable, and the LMDB map against cache_map_size. */
static void
metrics_gauges(const struct metrics_gauges *g, struct mbuf *mb)
{
	metric(mb, "tokend_pg_up", "gauge", "1 while this instance's "
	    "PostgreSQL connections work.", g->mg_pg_up ? 1 : 0);
	if (g->mg_cache_entries >= 0)
		metric(mb, "tokend_cache_entries", "gauge",
		    "Entries in the LMDB cache.", (uint64_t)g->mg_cache_entries);
	if (g->mg_map_size == 0)
		return;
	metric(mb, "tokend_cache_map_used_bytes", "gauge",
	    "LMDB cache pages in use.", g->mg_map_used);
	metric(mb, "tokend_cache_map_size_bytes", "gauge",
	    "LMDB map size (cache_map_size).", g->mg_map_size);
}

int
metrics_render(const struct metrics_gauges *g, char *buf, size_t buflen)
{
	const struct shm *shm = W.wk_shm;
	struct mbuf	 mb = { buf, 0, buflen, 0 };
	uint64_t	 recorded, flushed;

	metrics_requests(shm, &mb);
	metrics_histogram(shm, &mb);
	metric(&mb, "tokend_cache_hits_total", "counter",
	    "Token lookups answered from the cache.",
	    SHM_SUM(shm, sl_cache_hits));
	metric(&mb, "tokend_cache_negative_hits_total", "counter",
	    "Lookups answered by a cached negative entry.",
	    SHM_SUM(shm, sl_cache_negative_hits));
	metric(&mb, "tokend_cache_misses_total", "counter",
	    "Lookups that needed PostgreSQL.", SHM_SUM(shm, sl_cache_misses));
	metrics_gauges(g, &mb);
	recorded = SHM_SUM(shm, sl_uses_recorded);
	flushed = __atomic_load_n(&shm->sh_uses_flushed, __ATOMIC_RELAXED);
	metric(&mb, "tokend_usage_pending", "gauge",
	    "Token uses recorded but not yet in PostgreSQL.",
	    recorded > flushed ? recorded - flushed : 0);
	metric(&mb, "tokend_usage_flushed_total", "counter",
	    "Token uses written to PostgreSQL.", flushed);
	metric(&mb, "tokend_usage_rows_flushed_total", "counter",
	    "Token rows updated by usage flushes.",
	    __atomic_load_n(&shm->sh_rows_flushed, __ATOMIC_RELAXED));
	metric(&mb, "tokend_usage_flushes_total", "counter",
	    "Usage flush batches committed.",
	    __atomic_load_n(&shm->sh_flushes, __ATOMIC_RELAXED));
	metric(&mb, "tokend_usage_dropped_total", "counter",
	    "Requests answered 503 because both usage tables were full.",
	    SHM_SUM(shm, sl_uses_dropped));
	metric(&mb, "tokend_pg_errors_total", "counter",
	    "PostgreSQL errors in workers and the writer.",
	    SHM_SUM(shm, sl_pg_errors) + __atomic_load_n(
	    &shm->sh_writer_pg_errors, __ATOMIC_RELAXED));
	metric(&mb, "tokend_login_lockouts_total", "counter",
	    "Logins and client authentications refused by the failure limit.",
	    SHM_SUM(shm, sl_login_lockouts));
	metric(&mb, "tokend_revocations_applied_total", "counter",
	    "Revocation notifications applied to the cache.",
	    __atomic_load_n(&shm->sh_revocations, __ATOMIC_RELAXED));
	metric(&mb, "tokend_cache_clears_total", "counter",
	    "Whole-cache clears (LISTEN connection re-established).",
	    __atomic_load_n(&shm->sh_cache_clears, __ATOMIC_RELAXED));
	metric(&mb, "tokend_worker_restarts_total", "counter",
	    "Workers respawned after dying.",
	    __atomic_load_n(&shm->sh_worker_restarts, __ATOMIC_RELAXED));
	metric(&mb, "tokend_writer_restarts_total", "counter",
	    "Writers respawned after dying.",
	    __atomic_load_n(&shm->sh_writer_restarts, __ATOMIC_RELAXED));
	metric(&mb, "tokend_connections_open", "gauge",
	    "Client connections open now.", SHM_SUM(shm, sl_conns_open));
	metric(&mb, "tokend_connections_total", "counter",
	    "Client connections accepted.", SHM_SUM(shm, sl_conns_total));
	metrics_feed(shm, &mb);
	/* Beyond (issue 14). */
	metric(&mb, "tokend_canary_hits_total", "counter",
	    "Canary PATs presented (each logged canary_token_used).",
	    SHM_SUM(shm, sl_canary_hits));
	metric(&mb, "tokend_rate_limited_total", "counter",
	    "Requests refused by a PAT's rate limit on this box.",
	    SHM_SUM(shm, sl_rate_limited));
	metrics_events(shm, &mb);
	metrics_process(shm, &mb);
	mb_printf(&mb, "# HELP tokend_build_info The running build.\n"
	    "# TYPE tokend_build_info gauge\n"
	    "tokend_build_info{version=\"%s\"} 1\n", TOKEND_VERSION);
	/* Leaked-credential reports (SPEC 13). */
	metric(&mb, "tokend_leak_reports_total", "counter",
	    "Leaked-credential reports accepted (POST /credentials/revoke).",
	    SHM_SUM(shm, sl_leak_reports));
	return mb.mb_err ? -1 : (int)mb.mb_len;
}

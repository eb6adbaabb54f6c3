/*
 * The writer process.  Its main thread has one PostgreSQL connection, the
 * work connection, used for:
 *
 *   usage     every usage_flush_interval, one statement applies every FROZEN
 *             usage table (shm/README.md) and records the batch number for
 *             this master's instance in usage_batches, so that a writer
 *             killed between the commit and emptying the tables never
 *             counts a use twice.
 *   cleanup   rows expired or revoked longer ago than `retention` are
 *             deleted every CLEANUP_MS; refresh successor boxes past
 *             their grace are wiped every WIPE_MS.
 *
 * The revocation feed (LISTEN, the cache, the heartbeat) is a thread of its
 * own with its own connections (feed.c), so that nothing the work
 * connection waits on can hold a revocation back.  The work connection has
 * a statement_timeout and a lock_timeout, so that nothing waits forever,
 * and before each step that may wait the main thread stores in
 * sh_writer_due_ms when it will be back (shm/README.md "Writer liveness").
 *
 * Blocking libpq is fine here: the writer serves no request, and the
 * workers keep answering from the cache while it waits.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"
#include "shm/shm.h"
#include "store/store.h"

#define PING_MS		1000
#define CLEANUP_MS	(300 * 1000)
#define WIPE_MS		1000	/* successor boxes past their grace */
#define SWAP_WAIT_MS	150		/* an idle worker's tick, and some */
#define WR_STATEMENT_TIMEOUT "60s"	/* work connection; lock_timeout: */
#define WR_LOCK_TIMEOUT	"5s"		/* a flush retries after it */
#define WR_STATEMENT_DUE_MS (60000 + 5000)
#define WR_CONNECT_DUE_MS 30000		/* connect_timeout, multi-host */
#define WR_IDLE_DUE_MS	(PING_MS + 5000)	/* a loop turn, busy box */

struct sbuf {
	char	*sb_buf;
	size_t	 sb_len;
	size_t	 sb_cap;
};

static struct writer {
	const struct config *wr_cf;
	struct shm	*wr_shm;
	int		 wr_master_fd;
	struct cache	*wr_cache;
	PGconn		*wr_db;
	struct pg_retry	 wr_retry;	/* reconnecting after a failure */
	int64_t		 wr_next_flush_ms;
	int64_t		 wr_next_cleanup_ms;
	int64_t		 wr_next_wipe_ms;
	int64_t		 wr_last_ok_ms;
	struct sbuf	 wr_ids, wr_counts, wr_last;	/* batch arrays */
	uint64_t	 wr_batch_uses;
} WR;

static volatile sig_atomic_t got_term;
static volatile sig_atomic_t got_usr1;

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else
		got_term = 1;
}

static const char usage_sql[] =
    "WITH b AS (SELECT id, sum(n)::bigint AS n, max(ms) AS ms "
    "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS x(id, n, ms) "
    "GROUP BY id), "
    "u AS (UPDATE tokens t SET use_count = t.use_count + b.n, "
    "last_used_at = greatest(t.last_used_at, to_timestamp(b.ms / 1000.0)) "
    "FROM b WHERE t.id = b.id RETURNING 1) "
    "INSERT INTO usage_batches (instance, seq, rows, at) "
    "VALUES ($4, $5, (SELECT count(*) FROM u), now()) "
    "ON CONFLICT (instance) DO UPDATE SET seq = excluded.seq, "
    "rows = excluded.rows, at = excluded.at RETURNING rows";

/* ---- small string buffers for the batch arrays ------------------------- */

static int
sb_printf(struct sbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
sb_printf(struct sbuf *sb, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;
	char	*p;

	for (;;) {
		if (sb->sb_cap - sb->sb_len > 64) {
			va_start(ap, fmt);
			n = vsnprintf(sb->sb_buf + sb->sb_len,
			    sb->sb_cap - sb->sb_len, fmt, ap);
			va_end(ap);
			if (n >= 0 && (size_t)n < sb->sb_cap - sb->sb_len) {
				sb->sb_len += (size_t)n;
				return 0;
			}
		}
		if ((p = realloc(sb->sb_buf, sb->sb_cap ? sb->sb_cap * 2 :
		    65536)) == NULL)
			return -1;
		sb->sb_buf = p;
		sb->sb_cap = sb->sb_cap ? sb->sb_cap * 2 : 65536;
	}
}

/* ---- connection ---------------------------------------------------------- */

static void
wr_ok(void)
{
	WR.wr_last_ok_ms = shm_now_ms();
	__atomic_store_n(&WR.wr_shm->sh_pg_ok_ms, WR.wr_last_ok_ms,
	    __ATOMIC_RELAXED);
}

/* Tell the master when this thread will be back (liveness). */
static void
wr_promise(int64_t ms)
{
	__atomic_store_n(&WR.wr_shm->sh_writer_due_ms, shm_now_ms() + ms,
	    __ATOMIC_RELAXED);
}

/* pg_exec on the work connection, within the promise of a statement. */
static PGresult *
wr_exec(const char *sql, int nparams, const char *const *params, char *err,
    size_t errlen)
{
	wr_promise(WR_STATEMENT_DUE_MS);
	return pg_exec(WR.wr_db, sql, nparams, params, err, errlen);
}

static void
wr_disconnect(const char *why)
{
	__atomic_add_fetch(&WR.wr_shm->sh_writer_pg_errors, 1,
	    __ATOMIC_RELAXED);
	pg_retry_failed(&WR.wr_retry, why, shm_now_ms());
	if (WR.wr_db != NULL)
		PQfinish(WR.wr_db);
	WR.wr_db = NULL;
}

/*
 * A usage batch may have committed just before the last connection broke.
 * usage_batches says which: release every FROZEN table up to that batch.
 */
static int
wr_recover_usage(char *err, size_t errlen)
{
	const char	*params[1] = { WR.wr_shm->sh_instance };
	PGresult	*res;
	uint64_t	 seq = 0, uses;

	res = wr_exec("SELECT seq FROM usage_batches "
	    "WHERE instance = $1", 1, params, err, errlen);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1)
		seq = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (seq > WR.wr_shm->sh_batch_seq)
		WR.wr_shm->sh_batch_seq = seq;
	if (seq > 0 && (uses = usage_release(WR.wr_shm, seq)) > 0)
		LOG(LVL_INFO, "usage_recovered", KV_I("batch", seq),
		    KV_I("uses", uses));
	return 0;
}

/* No statement or lock wait may hold the work connection forever. */
static int
wr_timeouts(char *err, size_t errlen)
{
	const char	*params[2] = { WR_STATEMENT_TIMEOUT, WR_LOCK_TIMEOUT };
	PGresult	*res;

	if ((res = wr_exec("SELECT set_config('statement_timeout', $1, false), "
	    "set_config('lock_timeout', $2, false)", 2, params, err,
	    errlen)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static void
wr_connect(void)
{
	char	 err[512];
	int	 v;

	wr_promise(WR_CONNECT_DUE_MS);
	if ((WR.wr_db = pg_connect(WR.wr_cf->cf_database_url, "tokend writer",
	    err, sizeof(err))) == NULL) {
		wr_disconnect(err);
		return;
	}
	v = migrate_current(WR.wr_db, err, sizeof(err));
	if (v >= 0 && v < migrate_latest()) {
		snprintf(err, sizeof(err), "schema at version %d, tokend "
		    "needs %d: run tokenctl migrate", v, migrate_latest());
		v = -1;
	}
	if (v < 0 || wr_timeouts(err, sizeof(err)) == -1 ||
	    wr_recover_usage(err, sizeof(err)) == -1) {
		wr_disconnect(err);
		return;
	}
	pg_retry_ok(&WR.wr_retry);
	wr_ok();
	LOG(LVL_INFO, "db_connected", KV_S("conn", "writer"));
}

/* ---- usage flush ------------------------------------------------------------ */

static void
wr_collect(void *arg, int64_t token, uint64_t count, int64_t last_ms)
{
	(void)arg;
	sb_printf(&WR.wr_ids, "%s%" PRId64, WR.wr_ids.sb_len > 1 ? "," : "",
	    token);
	sb_printf(&WR.wr_counts, "%s%" PRIu64, WR.wr_counts.sb_len > 1 ? "," :
	    "", count);
	sb_printf(&WR.wr_last, "%s%" PRId64, WR.wr_last.sb_len > 1 ? "," : "",
	    last_ms);
	WR.wr_batch_uses += count;
}

static int
wr_flush(void)
{
	const char	*params[5];
	char		 err[512], seqs[24];
	PGresult	*res;
	uint64_t	 seq, uses;
	int		 tables;

	usage_sweep_retired(WR.wr_shm);
	seq = ++WR.wr_shm->sh_batch_seq;
	WR.wr_ids.sb_len = WR.wr_counts.sb_len = WR.wr_last.sb_len = 0;
	WR.wr_batch_uses = 0;
	sb_printf(&WR.wr_ids, "{");
	sb_printf(&WR.wr_counts, "{");
	sb_printf(&WR.wr_last, "{");
	tables = usage_collect(WR.wr_shm, seq, wr_collect, NULL);
	if (tables == 0)
		return 0;
	if (WR.wr_batch_uses == 0) {
		usage_release(WR.wr_shm, seq);	/* only empty entries */
		return 0;
	}
	sb_printf(&WR.wr_ids, "}");
	sb_printf(&WR.wr_counts, "}");
	sb_printf(&WR.wr_last, "}");
	snprintf(seqs, sizeof(seqs), "%" PRIu64, seq);
	params[0] = WR.wr_ids.sb_buf;
	params[1] = WR.wr_counts.sb_buf;
	params[2] = WR.wr_last.sb_buf;
	params[3] = WR.wr_shm->sh_instance;
	params[4] = seqs;
	if ((res = wr_exec(usage_sql, 5, params, err,
	    sizeof(err))) == NULL) {
		wr_disconnect(err);
		return -1;
	}
	__atomic_add_fetch(&WR.wr_shm->sh_rows_flushed,
	    strtoull(PQgetvalue(res, 0, 0), NULL, 10), __ATOMIC_RELAXED);
	PQclear(res);
	uses = usage_release(WR.wr_shm, seq);
	__atomic_add_fetch(&WR.wr_shm->sh_flushes, 1, __ATOMIC_RELAXED);
	wr_ok();
	LOG(LVL_INFO, "usage_flushed", KV_I("batch", seq), KV_I("uses", uses),
	    KV_I("tables", tables));
	return 0;
}

static void
wr_cleanup(void)
{
	char		 err[512], ret[24];
	const char	*params[1] = { ret };
	PGresult	*res;

	snprintf(ret, sizeof(ret), "%d", WR.wr_cf->cf_retention);
	res = wr_exec("DELETE FROM tokens WHERE expires_at < now() - "
	    "make_interval(secs => $1::int) OR revoked_at < now() - "
	    "make_interval(secs => $1::int)", 1, params, err, sizeof(err));
	if (res == NULL) {
		wr_disconnect(err);
		return;
	}
	if (atoi(PQcmdTuples(res)) > 0)
		LOG(LVL_INFO, "tokens_cleaned", KV_S("deleted",
		    PQcmdTuples(res)));
	PQclear(res);
}

/*
 * Refresh rotation keeps each successor pair encrypted for refresh_grace
 * seconds; this sweep, once a WIPE_MS, is what wipes them after (it used to
 * run inside every rotation: store/migrations/004_wipe_in_writer.sql says
 * why no more).  A replay past the grace is refused whether or not the box
 * is wiped yet.
 */
static void
wr_wipe_boxes(void)
{
	char		 err[512], grace[24];
	const char	*params[1] = { grace };
	PGresult	*res;

	snprintf(grace, sizeof(grace), "%d", WR.wr_cf->cf_refresh_grace);
	res = wr_exec("SELECT tokend_wipe_boxes($1::int)", 1,
	    params, err, sizeof(err));
	if (res == NULL) {
		wr_disconnect(err);
		return;
	}
	PQclear(res);
}

static void
wr_ping(void)
{
	char		 err[512];
	PGresult	*res;

	if ((res = wr_exec("SELECT 1", 0, NULL, err,
	    sizeof(err))) == NULL) {
		wr_disconnect(err);
		return;
	}
	PQclear(res);
	wr_ok();
}

/* ---- the loop ----------------------------------------------------------------- */

static int64_t
interval_ms(void)
{
	return (int64_t)(WR.wr_cf->cf_usage_flush_interval * 1000.0 + 0.5);
}

/* Sleep until the master's pipe says something or t milliseconds pass. */
static void
wr_wait(int64_t t)
{
	struct pollfd	 pfd;
	char		 buf[64];

	pfd.fd = WR.wr_master_fd;
	pfd.events = POLLIN;
	if (t > PING_MS)
		t = PING_MS;
	if (t < 0)
		t = 0;
	wr_promise(WR_IDLE_DUE_MS);
	if (poll(&pfd, 1, (int)t) <= 0)
		return;
	if ((pfd.revents & (POLLIN | POLLHUP)) &&
	    read(WR.wr_master_fd, buf, sizeof(buf)) <= 0)
		got_term = 1;	/* the master is gone */
}

/*
 * Swap, then flush: wait for the workers to freeze their tables, so that a
 * flush carries the uses up to now rather than up to the previous tick
 * (last_used_at lags the last use by at most one interval, not two).  A
 * busy worker answers within a loop turn; an idle one within its 100 ms
 * tick, and has nothing to give.
 */
static void
wr_await_swaps(int64_t now)
{
	int64_t	 end = now + (SWAP_WAIT_MS < interval_ms() / 2 ? SWAP_WAIT_MS :
		    interval_ms() / 2);

	while (!got_term && WR.wr_db != NULL &&
	    usage_swaps_pending(WR.wr_shm) > 0 && (now = shm_now_ms()) < end)
		wr_wait(end - now < 2 ? end - now : 2);
}

/* Periodic work that is due now. */
static void
wr_due(int64_t now)
{
	if (now >= WR.wr_next_flush_ms) {
		WR.wr_next_flush_ms = now + interval_ms();
		if (WR.wr_db != NULL) {
			usage_request_swap(WR.wr_shm);
			wr_await_swaps(now);
			if (WR.wr_db != NULL)	/* may have dropped meanwhile */
				wr_flush();
		}
	}
	if (WR.wr_db != NULL && now >= WR.wr_next_cleanup_ms) {
		WR.wr_next_cleanup_ms = now + CLEANUP_MS;
		wr_cleanup();
	}
	if (WR.wr_db != NULL && now >= WR.wr_next_wipe_ms) {
		WR.wr_next_wipe_ms = now + WIPE_MS;
		wr_wipe_boxes();
	}
	if (WR.wr_db != NULL && now - WR.wr_last_ok_ms >= PING_MS)
		wr_ping();
}

/* SIGTERM: one last flush of everything, retrying until shutdown_timeout. */
static void
wr_final(void)
{
	int64_t	 end = shm_now_ms() + (int64_t)WR.wr_cf->cf_shutdown_timeout *
	    1000;

	usage_request_swap(WR.wr_shm);
	do {
		if (WR.wr_db == NULL && pg_retry_due(&WR.wr_retry,
		    shm_now_ms()))
			wr_connect();
		if (WR.wr_db != NULL && wr_flush() == 0)
			return;
		usleep(100 * 1000);
	} while (shm_now_ms() < end);
	LOG(LVL_ERROR, "usage_unflushed", KV_S("reason",
	    "PostgreSQL unreachable at shutdown"));
}

void
writer_main(const struct config *cf, struct shm *shm, int master_fd)
{
	struct sigaction sa;
	char		 err[256];
	int64_t		 now;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	WR.wr_cf = cf;
	WR.wr_shm = shm;
	WR.wr_master_fd = master_fd;
	pg_retry_init(&WR.wr_retry, "writer");
	if ((WR.wr_cache = cache_open(cf->cf_cache_dir, cf->cf_cache_map_size,
	    err, sizeof(err))) == NULL)
		LOG(LVL_ERROR, "cache_open_failed", KV_S("error", err));
	LOG(LVL_INFO, "writer_started", KV_S("instance", shm->sh_instance));
	wr_promise(WR_CONNECT_DUE_MS);
	if (feed_start(cf, shm, WR.wr_cache) == -1)
		exit(1);	/* the master respawns the writer */
	WR.wr_next_flush_ms = shm_now_ms() + interval_ms();
	while (!got_term) {
		now = shm_now_ms();
		if (WR.wr_db == NULL && pg_retry_due(&WR.wr_retry, now))
			wr_connect();
		wr_due(now);
		if (got_usr1) {
			got_usr1 = 0;
			log_reopen();
		}
		wr_wait(WR.wr_next_flush_ms - shm_now_ms());
	}
	feed_stop();
	wr_final();
	LOG(LVL_INFO, "writer_stopped");
	if (WR.wr_db != NULL)
		PQfinish(WR.wr_db);
	exit(0);
}

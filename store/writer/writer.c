/*
 * The writer process.  Its main thread has one PostgreSQL connection, the
 * work connection, used for:
 *
 *   usage     every usage_flush_interval, one statement applies every FROZEN
 *             usage table (shm/README.md) and records the batch number for
 *             this master's instance in usage_batches, so that a writer
 *             killed between the commit and emptying the tables never
 *             counts a use twice.  In a busy flush the uses of tokens it
 *             wrote lately wait in usage_deltas, folded into tokens
 *             every usage_fold_interval (migration 021, hot.c).
 *   cleanup   tokend_cleanup (migration 010) deletes rows expired or
 *             revoked, and watermarks, older than `retention`,
 *             every CLEANUP_MS; refresh successor boxes past
 *             their grace are wiped every WIPE_MS.
 *   expiry    every EXPIRING_MS, tokend_pat_expiring (migration 014)
 *             claims the PATs that entered their 7-day or 1-day window,
 *             and each is logged once as token_expiring, whichever
 *             tokend's writer claims it.
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
#include <sys/mman.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/runtime/runtime.h"
#include "shm/shm.h"
#include "store/store.h"
#include "store/writer/writer.h"

#define PING_MS		1000
#define CLEANUP_MS	(300 * 1000)
#define WIPE_MS		1000	/* successor boxes past their grace */
#define EXPIRING_MS	5000	/* token_expiring: one indexed UPDATE */
#define SWAP_WAIT_MS	150		/* an idle worker's tick, and some */
#define LONE_TERM_MS	1000	/* a SIGTERM no stop of the master follows */
#define ORPHAN_GRACE_MS	2000	/* past shutdown_timeout, master gone */
#define WR_STATEMENT_TIMEOUT "60s"	/* work connection; lock_timeout: */
#define WR_LOCK_TIMEOUT	"5s"		/* a flush retries after it */
#define WR_STATEMENT_DUE_MS (60000 + 5000)
#define WR_CONNECT_DUE_MS 30000		/* connect_timeout, multi-host */
#define WR_IDLE_DUE_MS	(PING_MS + 5000)	/* a loop turn, busy box */
#define USAGE_BUSY	100	/* tokens a flush: above, hot ones wait (021) */

/* store.h: the master's newer configurations, a seqlock on wc_gen. */
struct writer_conf {
	uint64_t	 wc_gen;	/* odd while the master writes */
	struct config	 wc_cf;
};

struct sbuf {
	char	*sb_buf;
	size_t	 sb_len;
	size_t	 sb_cap;
	int	 sb_failed;	/* an append found no memory */
};

/* A usage entry of the batch (shm usage_collect). */
struct urec {
	int64_t		 ur_token;
	uint64_t	 ur_count;
	int64_t		 ur_ms;		/* newest use */
	uint8_t		 ur_ip[IP_LEN];	/* its address, or all zeros */
	uint64_t	 ur_seen;	/* netseen key of its network; 0: none */
	int		 ur_hot;	/* to usage_deltas */
};

/*
 * How far ahead wr_merge and wr_plan prefetch the netseen and hot slots of
 * the records they will look at: with 100,000 tokens a flush, each lookup
 * is a cache miss in a table of tens of megabytes, and one at a time they
 * were a third of the writer's CPU.
 */
#define WR_AHEAD	8

static struct writer {
	const struct config *wr_cf;	/* &wr_conf */
	struct config	 wr_conf;	/* the configuration in force */
	struct config	 wr_feed_conf;	/* the feed thread's copy */
	const struct writer_conf *wr_wc;
	uint64_t	 wr_conf_gen;	/* wc_gen of wr_conf */
	int		 wr_usage_waiting; /* "usage_waiting" was logged */
	int		 wr_orphan;	/* the master is gone */
	int64_t		 wr_term_ms;	/* when a SIGTERM came, or 0 */
	int64_t		 wr_stop_by_ms;	/* orphan: stop by then at the latest */
	struct shm	*wr_shm;
	int		 wr_master_fd;
	struct cache	*wr_cache;
	PGconn		*wr_db;
	struct pg_retry	 wr_retry;	/* reconnecting after a failure */
	int64_t		 wr_next_flush_ms;
	int64_t		 wr_next_cleanup_ms;
	int64_t		 wr_next_wipe_ms;
	int64_t		 wr_next_expiring_ms;
	int64_t		 wr_last_ok_ms;
	/* The batch's usage entries, merged per token before sending. */
	struct urec	*wr_recs;
	size_t		 wr_nrecs, wr_reccap;
	struct sbuf	 wr_ids, wr_counts, wr_last;	/* batch arrays */
	struct sbuf	 wr_ips;			/* ... and addresses */
	struct sbuf	 wr_hids, wr_hcounts, wr_hlast, wr_hips; /* hot ones,
					 * or at a fold this writer's sums */
	struct sbuf	 wr_drows;	/* a fold: this writer's rows (sums.c) */
	int64_t		 wr_hrow;	/* the row the hot ones went into */
	int		 wr_fold_sums;	/* the fold wrote the sums, not rows */
	int64_t		 wr_deltas_ms;	/* this writer's oldest row still in
					 * usage_deltas, 0: none, 1: unknown
					 * (a start, a lost connection) */
	int		 wr_final;	/* the last flush: fold */
	/* New-network candidates (netseen.c): (token, network, address)
	 * arrays, and their keys, added to the set once committed. */
	struct sbuf	 wr_nids, wr_nnets, wr_naddrs;
	uint64_t	*wr_nkeys;
	size_t		 wr_nnew, wr_nkeycap;
	uint64_t	 wr_batch_uses;
	int		 wr_collect_failed;
} WR;

static volatile sig_atomic_t got_term;
static volatile sig_atomic_t got_usr1;

/*
 * One statement per flush (SPEC 6), whatever else it records: the usage
 * entries, merged per token here ($1..$3, and $6 the newest client
 * address), and the (token, network) pairs this writer has not seen
 * committed yet ($7..$9).  A pair that comes back from token_networks is a
 * first use from that network, on any box, ever: token_new_network.  Its
 * token may be gone since the use (the EXISTS), and duplicates are nothing
 * new (DO NOTHING).
 *
 * Two shapes (migration 021).  usage_sql writes $1..$3 into tokens and
 * appends the hot tokens' uses ($10..$13) to usage_deltas as one row of
 * arrays, whose id it returns (sums.c keeps their sums).  usage_fold_sql
 * writes $1..$3 and this writer's rows of usage_deltas, and any row old
 * enough to be a stopped writer's, into tokens, deleting them in the same
 * statement.  A token appears once in $1 and once in $10 at most, and
 * never in both in usage_sql: an UPDATE ... FROM that joins a row twice
 * would count it once (the fold groups by token first).
 */
#define USAGE_U \
    "u AS (UPDATE tokend.tokens t SET use_count = t.use_count + b.n, " \
    "last_used_at = greatest(t.last_used_at, b.at), " \
    "last_used_ip = CASE WHEN b.ip IS NOT NULL AND (t.last_used_at IS NULL " \
    "OR b.at >= t.last_used_at) THEN b.ip ELSE t.last_used_ip END " \
    "FROM b WHERE t.id = b.id RETURNING 1), " \
    "n AS (INSERT INTO tokend.token_networks (token_id, network, address) " \
    "SELECT k.id, k.net, k.ip FROM unnest($7::bigint[], $8::cidr[], " \
    "$9::inet[]) AS k(id, net, ip) " \
    "WHERE EXISTS (SELECT 1 FROM tokend.tokens t WHERE t.id = k.id) " \
    "ON CONFLICT DO NOTHING RETURNING token_id, network, address), "
#define USAGE_W(rows, more) \
    "w AS (INSERT INTO tokend.usage_batches (instance, seq, rows, at) " \
    "VALUES ($4, $5, " rows ", now()) " \
    "ON CONFLICT (instance) DO UPDATE SET seq = excluded.seq, " \
    "rows = excluded.rows, at = excluded.at RETURNING rows) " \
    "SELECT w.rows, n.token_id, n.network, host(n.address), t.prefix, " \
    more " FROM w LEFT JOIN n ON true " \
    "LEFT JOIN tokend.tokens t ON t.id = n.token_id"
#define USAGE_BATCH \
    "SELECT id, n, to_timestamp(ms::float8 / 1000) AS at, ip FROM unnest(" \
    "$1::bigint[], $2::bigint[], $3::bigint[], $6::inet[]) AS x(id, n, ms, ip)"
#define USAGE_ELEMS \
    "SELECT x.id, x.n, to_timestamp(x.ms::float8 / 1000), x.ip FROM "

static const char usage_sql[] =
    "WITH b AS (" USAGE_BATCH "), " USAGE_U
    "h AS (INSERT INTO tokend.usage_deltas (token_ids, uses, last_ms, "
    "last_ips) SELECT $10::bigint[], $11::bigint[], $12::bigint[], "
    "$13::inet[] WHERE cardinality($10::bigint[]) > 0 "
    "RETURNING id, cardinality(token_ids) AS n), "
    USAGE_W("(SELECT count(*) FROM u) + (SELECT coalesce(sum(n), 0) "
    "FROM h)", "(SELECT id FROM h), NULL::boolean");

/*
 * The fold deletes this writer's rows ($14, from sums.c) and every row
 * older than $15 seconds: another writer's that stopped, or one of this
 * writer's whose commit was in doubt; at start, $15 = 0, every row.  When
 * the rows deleted are exactly $14 and $16 says the sums are known, the
 * sums of those rows ($10..$13, one element per token) stand for them;
 * otherwise the rows' elements are aggregated (k.sums picks one branch,
 * the other is not run).  Each row is counted by the statement that
 * deleted it, whichever writer's: a row another writer folded is not in
 * d, so the sums are not used.
 */
static const char usage_fold_sql[] =
    "WITH d AS (DELETE FROM tokend.usage_deltas WHERE id = ANY($14::bigint[]) "
    "OR at <= now() - $15::bigint * interval '1 second' "
    "RETURNING id, token_ids, uses, last_ms, last_ips), "
    "k AS (SELECT $16::boolean AND count(*) = cardinality($14::bigint[]) "
    "AND coalesce(bool_and(id = ANY($14::bigint[])), true) AS sums FROM d), "
    "a AS (" USAGE_BATCH " UNION ALL " USAGE_ELEMS "unnest($10::bigint[], "
    "$11::bigint[], $12::bigint[], $13::inet[]) AS x(id, n, ms, ip) "
    "WHERE (SELECT sums FROM k) UNION ALL " USAGE_ELEMS "d, unnest("
    "d.token_ids, d.uses, d.last_ms, d.last_ips) AS x(id, n, ms, ip) "
    "WHERE NOT (SELECT sums FROM k)), "
    "b AS (SELECT id, sum(n)::bigint AS n, max(at) AS at, "
    "(array_agg(ip ORDER BY at DESC) FILTER (WHERE ip IS NOT NULL))[1] "
    "AS ip FROM a GROUP BY id), " USAGE_U
    USAGE_W("(SELECT count(*) FROM u)", "NULL::bigint, "
    "(SELECT sums FROM k)");

/* ---- small string buffers for the batch arrays ------------------------- */

/* Room for need more bytes after sb_len. */
static int
sb_room(struct sbuf *sb, size_t need)
{
	size_t	 cap = sb->sb_cap ? sb->sb_cap : 65536;
	char	*p;

	if (sb->sb_cap - sb->sb_len > need)
		return 0;
	while (cap - sb->sb_len <= need)
		cap *= 2;
	if ((p = realloc(sb->sb_buf, cap)) == NULL) {
		sb->sb_failed = 1;
		return -1;
	}
	sb->sb_buf = p;
	sb->sb_cap = cap;
	return 0;
}

/* One character: the brace that opens or closes an array. */
static int
sb_char(struct sbuf *sb, char c)
{
	if (sb_room(sb, 1) == -1)
		return -1;
	sb->sb_buf[sb->sb_len++] = c;
	sb->sb_buf[sb->sb_len] = '\0';
	return 0;
}

/*
 * An array element: "," unless it is the first after "{", then s.  The
 * batch arrays take one of these per token and flush, so no printf.
 */
static int
sb_elem(struct sbuf *sb, const char *s, size_t len)
{
	if (sb_room(sb, len + 2) == -1)
		return -1;
	if (sb->sb_len > 1)
		sb->sb_buf[sb->sb_len++] = ',';
	memcpy(sb->sb_buf + sb->sb_len, s, len);
	sb->sb_len += len;
	sb->sb_buf[sb->sb_len] = '\0';
	return 0;
}

/* v in decimal (proto's i64_digits, no printf), as an array element. */
static int
sb_elem_i64(struct sbuf *sb, int64_t v)
{
	char	 buf[I64_DIGITS], *p;
	size_t	 len;

	p = i64_digits(v, buf, &len);
	return sb_elem(sb, p, len);
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
	/* A batch whose commit is in doubt may have left a row in
	 * usage_deltas that sums.c does not know: the next flush folds every
	 * row, as after a start. */
	WR.wr_deltas_ms = 1;
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

	res = wr_exec("SELECT seq FROM tokend.usage_batches "
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

/*
 * No statement or lock wait may hold the work connection forever.  And no
 * JIT: a busy flush's arrays make the planner's cost pass jit_above_cost,
 * and compiling the statement took PostgreSQL more CPU than running it.
 */
static int
wr_timeouts(char *err, size_t errlen)
{
	const char	*params[2] = { WR_STATEMENT_TIMEOUT, WR_LOCK_TIMEOUT };
	PGresult	*res;

	if ((res = wr_exec("SELECT set_config('statement_timeout', $1, false), "
	    "set_config('lock_timeout', $2, false), "
	    "set_config('jit', 'off', false)", 2, params, err,
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

/*
 * A (token, network) pair this writer has not seen committed: sent.  Its
 * key is r->ur_seen, computed when the record was collected.
 */
static void
wr_candidate(const struct urec *r)
{
	struct cidr	 net;
	char		 nets[IP_STR_LEN + 8], addr[IP_STR_LEN];

	if (netseen_has(r->ur_seen))
		return;
	if (array_room(&WR.wr_nkeys, &WR.wr_nkeycap, WR.wr_nnew + 1,
	    sizeof(*WR.wr_nkeys), 1024) == -1)
		return;		/* the alert waits for the next use */
	WR.wr_nkeys[WR.wr_nnew] = r->ur_seen;
	ip_network(r->ur_ip, &net);
	cidr_format(&net, nets, sizeof(nets));
	ip_format(r->ur_ip, addr, sizeof(addr));
	sb_elem_i64(&WR.wr_nids, r->ur_token);
	sb_elem(&WR.wr_nnets, nets, strlen(nets));
	sb_elem(&WR.wr_naddrs, addr, strlen(addr));
	WR.wr_nnew++;
}

static void
wr_collect(void *arg, int64_t token, uint64_t count, int64_t last_ms,
    const uint8_t ip[IP_LEN])
{
	struct urec	*r;

	(void)arg;
	if (array_room(&WR.wr_recs, &WR.wr_reccap, WR.wr_nrecs + 1,
	    sizeof(*WR.wr_recs), 4096) == -1) {
		/* The tables stay FROZEN: the next flush takes them. */
		WR.wr_collect_failed = 1;
		return;
	}
	r = &WR.wr_recs[WR.wr_nrecs++];
	r->ur_token = token;
	r->ur_count = count;
	r->ur_ms = last_ms;
	memcpy(r->ur_ip, ip, IP_LEN);
	r->ur_seen = 0;
	if (!ip_is_none(ip)) {
		struct cidr net;

		ip_network(ip, &net);
		r->ur_seen = netseen_key(token, &net);
	}
	r->ur_hot = 0;
	WR.wr_batch_uses += count;
}

static int
urec_cmp(const void *a, const void *b)
{
	const struct urec *x = a, *y = b;

	if (x->ur_token != y->ur_token)
		return x->ur_token < y->ur_token ? -1 : 1;
	return x->ur_ms < y->ur_ms ? -1 : x->ur_ms > y->ur_ms;
}

/*
 * One entry per token (a token used from two networks, or on two workers,
 * has several): the uses summed, the newest use, its address (the newest
 * one that has an address).  Each address is a token_networks candidate.
 * Returns the number of tokens.
 */
static size_t
wr_merge(void)
{
	struct urec	*r = WR.wr_recs, *o;
	size_t		 i, n = 0;

	if (WR.wr_nrecs > 1)	/* a fold alone has none, and no array */
		qsort(r, WR.wr_nrecs, sizeof(*r), urec_cmp);
	for (i = 0; i < WR.wr_nrecs; i++) {
		if (i + WR_AHEAD < WR.wr_nrecs && r[i + WR_AHEAD].ur_seen)
			netseen_prefetch(r[i + WR_AHEAD].ur_seen);
		if (r[i].ur_seen != 0)
			wr_candidate(&r[i]);
		o = n > 0 && r[n - 1].ur_token == r[i].ur_token ? &r[n - 1] :
		    NULL;
		if (o == NULL) {
			r[n++] = r[i];
			continue;
		}
		o->ur_count += r[i].ur_count;
		o->ur_ms = r[i].ur_ms;		/* sorted: the newest */
		if (!ip_is_none(r[i].ur_ip))
			memcpy(o->ur_ip, r[i].ur_ip, IP_LEN);
	}
	WR.wr_nrecs = n;
	return n;
}

/* A token's entry into the four arrays ids, counts, last, ips. */
static void
wr_format(int64_t token, uint64_t count, int64_t ms, const uint8_t *ip,
    struct sbuf *ids, struct sbuf *counts, struct sbuf *last,
    struct sbuf *ips)
{
	char		 addr[IP_STR_LEN];

	sb_elem_i64(ids, token);
	sb_elem_i64(counts, (int64_t)count);	/* a bigint */
	sb_elem_i64(last, ms);
	if (!ip_is_none(ip)) {
		ip_format(ip, addr, sizeof(addr));
		sb_elem(ips, addr, strlen(addr));
	} else
		sb_elem(ips, "NULL", 4);
}

/*
 * A fold: this writer's sums into the hot arrays (which a fold has no other
 * use for) and its rows into wr_drows.  Returns 1 when the sums are known.
 */
static int
wr_format_sums(void)
{
	const struct usum *u;
	const int64_t	*rows;
	size_t		 i, n;

	rows = sums_rows(&n);
	for (i = 0; i < n; i++)
		sb_elem_i64(&WR.wr_drows, rows[i]);
	if (!sums_get(&u, &n))
		return 0;
	for (i = 0; i < n; i++)
		wr_format(u[i].us_token, u[i].us_count, u[i].us_ms,
		    u[i].us_ip, &WR.wr_hids, &WR.wr_hcounts, &WR.wr_hlast,
		    &WR.wr_hips);
	return 1;
}

/*
 * Which shape this flush takes (migration 021), and which tokens are hot.
 * Fold when this writer's rows may be in usage_deltas and the fold is due
 * (usage_fold_interval after the oldest), the load is light (no more than
 * USAGE_BUSY tokens: the table becomes exact again at once), or tokend
 * stops.  Otherwise, in a busy flush, a token hot in hot.c (a use flushed
 * by this writer less than usage_fold_interval ago) waits in usage_deltas.
 */
static int
wr_plan(size_t ntokens, int64_t now)
{
	int64_t		 window = (int64_t)WR.wr_cf->cf_usage_fold_interval *
			    1000;
	size_t		 i;
	int		 fold;

	fold = WR.wr_deltas_ms != 0 && (ntokens <= USAGE_BUSY ||
	    WR.wr_final || window == 0 || now - WR.wr_deltas_ms >= window);
	for (i = 0; i < WR.wr_nrecs; i++) {
		struct urec *r = &WR.wr_recs[i];

		if (i + WR_AHEAD < WR.wr_nrecs)
			hot_prefetch(WR.wr_recs[i + WR_AHEAD].ur_token);
		r->ur_hot = !fold && window > 0 && ntokens > USAGE_BUSY &&
		    hot_is(r->ur_token, now, window);
		if (r->ur_hot) {
			wr_format(r->ur_token, r->ur_count, r->ur_ms,
			    r->ur_ip, &WR.wr_hids, &WR.wr_hcounts,
			    &WR.wr_hlast, &WR.wr_hips);
			sums_stage(r->ur_token, r->ur_count, r->ur_ms,
			    r->ur_ip);
		} else
			wr_format(r->ur_token, r->ur_count, r->ur_ms,
			    r->ur_ip, &WR.wr_ids, &WR.wr_counts, &WR.wr_last,
			    &WR.wr_ips);
	}
	return fold;
}

/* One statement without a result, on the work connection. */
static int
wr_run(const char *sql, char *err, size_t errlen)
{
	PGresult	*res;

	if ((res = wr_exec(sql, 0, NULL, err, errlen)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/*
 * Every flush is one transaction that takes this instance's advisory
 * transaction lock before anything else.  A dead writer's batch whose
 * COMMIT was already sent (waiting on synchronous replication or a slow
 * disk, it becomes visible after its client is gone) holds it too, so no
 * flush reads the watermark before that batch has committed or rolled
 * back; the watermark then says which FROZEN tables are in already
 * (wr_recover_usage), and only the others are sent.  A transaction lock,
 * not a session one, so that a pooler in transaction mode cannot leave it
 * behind.  Returns 1 with the lock held, 0 when another transaction holds
 * it (nothing begun), -1 on error.
 */
static int
wr_flush_begin(char *err, size_t errlen)
{
	const char	*params[1] = { WR.wr_shm->sh_instance };
	PGresult	*res;
	int		 got;

	if (wr_run("BEGIN", err, errlen) == -1)
		return -1;
	res = wr_exec("SELECT pg_try_advisory_xact_lock("
	    "hashtextextended('tokend usage ' || $1, 0))", 1, params, err,
	    errlen);
	if (res == NULL)
		return -1;
	got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!got) {
		if (!WR.wr_usage_waiting++)
			LOG(LVL_WARN, "usage_waiting", KV_S("reason", "a "
			    "batch of this instance is still running in "
			    "PostgreSQL"));
		return wr_run("ROLLBACK", err, errlen) == -1 ? -1 : 0;
	}
	WR.wr_usage_waiting = 0;
	return wr_recover_usage(err, errlen) == -1 ? -1 : 1;
}

#define WR_ARRAYS { &WR.wr_ids, &WR.wr_counts, &WR.wr_last, &WR.wr_ips, \
	    &WR.wr_nids, &WR.wr_nnets, &WR.wr_naddrs, &WR.wr_hids, \
	    &WR.wr_hcounts, &WR.wr_hlast, &WR.wr_hips, &WR.wr_drows }

/* The batch arrays, empty and open ("{"), for a new flush. */
static void
wr_batch_reset(void)
{
	struct sbuf	*sb[] = WR_ARRAYS;
	size_t		 i;

	for (i = 0; i < sizeof(sb) / sizeof(sb[0]); i++) {
		sb[i]->sb_len = 0;
		sb[i]->sb_failed = 0;
		sb_char(sb[i], '{');
	}
	WR.wr_nnew = 0;
	WR.wr_nrecs = 0;
	WR.wr_batch_uses = 0;
	WR.wr_collect_failed = 0;
	WR.wr_hrow = 0;
	WR.wr_fold_sums = 0;
	sums_stage_reset();
}

/* The rows token_networks returned: first uses from a network. */
static void
wr_new_networks(PGresult *res)
{
	int	 i;

	for (i = 0; i < PQntuples(res); i++)
		if (!PQgetisnull(res, i, 1))
			LOG(LVL_WARN, "token_new_network",
			    KV_S("token_id", PQgetvalue(res, i, 1)),
			    KV_S("token", PQgetvalue(res, i, 4)),
			    KV_S("network", PQgetvalue(res, i, 2)),
			    KV_S("address", PQgetvalue(res, i, 3)));
}

/*
 * How old another writer's row in usage_deltas must be for a fold to take
 * it ($15 of usage_fold_sql): its writer would have folded it twice over by
 * then, unless it stopped.  The first fold after a start or a lost
 * connection takes every row (a commit may have been in doubt).  Taking a live writer's row is safe, only
 * slower: that writer's next fold finds its rows changed and aggregates.
 */
static int64_t
wr_stale_s(void)
{
	if (WR.wr_deltas_ms == 1)
		return 0;
	return 2 * (int64_t)WR.wr_cf->cf_usage_fold_interval + 60;
}

/* The batch statement, in the transaction wr_flush_begin opened. */
static int
wr_flush_send(uint64_t seq, int fold, char *err, size_t errlen)
{
	struct sbuf	*sb[] = WR_ARRAYS;
	const char	*params[16];
	char		 seqs[24], stale[24];
	PGresult	*res;
	size_t		 i;
	int		 known = fold && wr_format_sums();

	for (i = 0; i < sizeof(sb) / sizeof(sb[0]); i++)
		if (sb_char(sb[i], '}') == -1 || sb[i]->sb_failed) {
			/* An element missing from one array would pair the
			 * others' with the wrong token: send nothing. */
			snprintf(err, errlen, "usage batch: out of memory");
			return -1;
		}
	snprintf(seqs, sizeof(seqs), "%" PRIu64, seq);
	params[0] = WR.wr_ids.sb_buf;
	params[1] = WR.wr_counts.sb_buf;
	params[2] = WR.wr_last.sb_buf;
	params[3] = WR.wr_shm->sh_instance;
	params[4] = seqs;
	params[5] = WR.wr_ips.sb_buf;
	params[6] = WR.wr_nids.sb_buf;
	params[7] = WR.wr_nnets.sb_buf;
	params[8] = WR.wr_naddrs.sb_buf;
	params[9] = WR.wr_hids.sb_buf;
	params[10] = WR.wr_hcounts.sb_buf;
	params[11] = WR.wr_hlast.sb_buf;
	params[12] = WR.wr_hips.sb_buf;
	params[13] = WR.wr_drows.sb_buf;
	snprintf(stale, sizeof(stale), "%" PRId64, wr_stale_s());
	params[14] = stale;
	params[15] = known ? "t" : "f";
	if ((res = wr_exec(fold ? usage_fold_sql : usage_sql, fold ? 16 : 13,
	    params, err, errlen)) == NULL)
		return -1;
	__atomic_add_fetch(&WR.wr_shm->sh_rows_flushed,
	    strtoull(PQgetvalue(res, 0, 0), NULL, 10), __ATOMIC_RELAXED);
	if (!PQgetisnull(res, 0, 5))
		WR.wr_hrow = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
	WR.wr_fold_sums = !PQgetisnull(res, 0, 6) &&
	    strcmp(PQgetvalue(res, 0, 6), "t") == 0;
	if (wr_run("COMMIT", err, errlen) == -1) {
		PQclear(res);
		return -1;
	}
	/* Committed: log the first uses, and remember every pair sent. */
	wr_new_networks(res);
	PQclear(res);
	for (i = 0; i < WR.wr_nnew; i++)
		netseen_add(WR.wr_nkeys[i]);
	return 0;
}

/*
 * After the commit: remember each token's newest use, as a time of now's
 * (monotonic) clock, and what waits in usage_deltas.  A token is hot while
 * its newest use this writer has flushed, in tokens or in usage_deltas, is
 * less than usage_fold_interval old: one in use all the time then waits
 * in usage_deltas for the folds only, and a use after a quiet period of
 * that length is written directly, however late its flush.
 */
static void
wr_flushed(int fold, int64_t now)
{
	struct timespec	 ts;
	int64_t		 wall, ms;
	size_t		 i;
	int		 hot = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	wall = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	for (i = 0; i < WR.wr_nrecs; i++) {
		const struct urec *r = &WR.wr_recs[i];

		hot |= r->ur_hot;
		ms = now - (wall - r->ur_ms);
		hot_mark(r->ur_token, ms < now ? ms : now);
	}
	if (fold) {
		WR.wr_deltas_ms = 0;
		sums_clear();
	}
	if (WR.wr_hrow != 0)
		sums_committed(WR.wr_hrow);
	if (hot && WR.wr_deltas_ms == 0)
		WR.wr_deltas_ms = now;
}

/* Returns 0 (flushed, or nothing to), 1 (not now: usage_waiting), or -1
 * (disconnected). */
static int
wr_flush(void)
{
	char		 err[512];
	uint64_t	 seq, uses;
	int64_t		 now = shm_now_ms();
	int		 tables, rc, fold;
	size_t		 ntokens;

	usage_sweep_retired(WR.wr_shm);
	/* Nothing to send: still fold what waits, as the load is light. */
	if (usage_tables_pending(WR.wr_shm) == 0 && WR.wr_deltas_ms == 0)
		return 0;
	if ((rc = wr_flush_begin(err, sizeof(err))) == 0)
		return 1;
	if (rc == -1)
		goto fail;
	seq = ++WR.wr_shm->sh_batch_seq;
	wr_batch_reset();
	tables = usage_collect(WR.wr_shm, seq, wr_collect, NULL);
	if (WR.wr_collect_failed) {
		snprintf(err, sizeof(err), "usage batch: out of memory");
		goto fail;	/* rolled back by the disconnect: sent again */
	}
	ntokens = wr_merge();
	fold = wr_plan(ntokens, now);
	if (WR.wr_batch_uses == 0 && !fold) {
		usage_release(WR.wr_shm, seq);	/* only empty entries */
		if (wr_run("COMMIT", err, sizeof(err)) == -1)
			goto fail;
		return 0;
	}
	if (wr_flush_send(seq, fold, err, sizeof(err)) == -1)
		goto fail;
	wr_flushed(fold, now);
	uses = usage_release(WR.wr_shm, seq);
	__atomic_add_fetch(&WR.wr_shm->sh_flushes, 1, __ATOMIC_RELAXED);
	wr_ok();
	if (fold)
		LOG(LVL_INFO, "usage_flushed", KV_I("batch", seq),
		    KV_I("uses", uses), KV_I("tables", tables),
		    KV_I("tokens", (int64_t)ntokens), KV_I("folded", 1),
		    KV_S("fold_from", WR.wr_fold_sums ? "sums" : "rows"));
	else
		LOG(LVL_INFO, "usage_flushed", KV_I("batch", seq),
		    KV_I("uses", uses), KV_I("tables", tables),
		    KV_I("tokens", (int64_t)ntokens), KV_I("folded", 0));
	return 0;
fail:
	wr_disconnect(err);
	return -1;
}

/*
 * Run sql, a SELECT of one function of one integer argument; on failure
 * drop the connection.  Returns the result, which the caller PQclears, or
 * NULL.
 */
static PGresult *
wr_call_int(const char *sql, int arg)
{
	char		 err[512], num[24];
	const char	*params[1] = { num };
	PGresult	*res;

	snprintf(num, sizeof(num), "%d", arg);
	if ((res = wr_exec(sql, 1, params, err, sizeof(err))) == NULL)
		wr_disconnect(err);
	return res;
}

/* Retention, by tokend_cleanup: the rule tokenctl cleanup runs too. */
static void
wr_cleanup(void)
{
	PGresult	*res;

	if ((res = wr_call_int("SELECT o_tokens, o_batches FROM "
	    "tokend.tokend_cleanup($1::int)", WR.wr_cf->cf_retention)) == NULL)
		return;
	if (PQntuples(res) == 1 && (atoll(PQgetvalue(res, 0, 0)) > 0 ||
	    atoll(PQgetvalue(res, 0, 1)) > 0))
		LOG(LVL_INFO, "tokens_cleaned", KV_S("deleted",
		    PQgetvalue(res, 0, 0)), KV_S("batches",
		    PQgetvalue(res, 0, 1)));
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
	PGresult	*res;

	if ((res = wr_call_int("SELECT tokend.tokend_wipe_boxes($1::int)",
	    WR.wr_cf->cf_refresh_grace)) != NULL)
		PQclear(res);
}

/*
 * Expiry warnings (SPEC 12): the claim and its rows are one statement, so
 * a PAT is logged once in each window across restarts and instances.  The
 * line names the token by id and prefix, never more of it.
 */
static void
wr_expiring(void)
{
	char		 err[512], ts[ISO8601_LEN];
	PGresult	*res;
	int		 i;

	if ((res = wr_exec("SELECT o_id, o_prefix, o_user, o_name, "
	    PG_EPOCH("o_expires") ", o_warned FROM tokend.tokend_pat_expiring()", 0,
	    NULL, err, sizeof(err))) == NULL) {
		wr_disconnect(err);
		return;
	}
	for (i = 0; i < PQntuples(res); i++) {
		if (iso8601_format(strtoll(PQgetvalue(res, i, 4), NULL, 10),
		    -1, ts) == -1)
			snprintf(ts, sizeof(ts), "%s", PQgetvalue(res, i, 4));
		LOG(LVL_INFO, "token_expiring", KV_S("id", PQgetvalue(res, i,
		    0)), KV_S("token", PQgetvalue(res, i, 1)), KV_S("user",
		    PQgetvalue(res, i, 2)), KV_S("name", PQgetvalue(res, i, 3)),
		    KV_S("expires_at", ts), KV_S("in",
		    strcmp(PQgetvalue(res, i, 5), "2") == 0 ? "1d" : "7d"));
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

/* ---- stopping ------------------------------------------------------------ */

/*
 * The master is gone (its pipe is at EOF): the workers drain their
 * connections and exit on their own, for up to shutdown_timeout, and
 * nobody is left to retire their slots.  The writer keeps flushing and
 * stops once they are all gone.
 */
static void
wr_orphaned(void)
{
	if (WR.wr_orphan)
		return;
	WR.wr_orphan = 1;
	WR.wr_stop_by_ms = shm_now_ms() + ORPHAN_GRACE_MS +
	    (int64_t)WR.wr_cf->cf_shutdown_timeout * 1000;
	LOG(LVL_WARN, "master_gone", KV_S("action", "flushing until the "
	    "workers are gone"));
}

/* A worker process still runs: it exists and is not a zombie. */
static int
wr_pid_alive(pid_t pid)
{
	char	 path[64], buf[256], *p;
	FILE	*f;
	int	 alive = 1;

	if (pid <= 0 || (kill(pid, 0) == -1 && errno == ESRCH))
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 1;
	if (fgets(buf, sizeof(buf), f) != NULL &&
	    (p = strrchr(buf, ')')) != NULL && p[1] == ' ' && p[2] == 'Z')
		alive = 0;
	fclose(f);
	return alive;
}

/*
 * Orphaned: retire the slot of every worker that has exited (the master
 * would have, and no master is left to race), so that the sweep flushes
 * what it left.  Returns 1 once no worker is left, or past the deadline.
 */
static int
wr_orphan_done(int64_t now)
{
	uint32_t	 i;
	int		 alive = 0;

	for (i = 0; i < WR.wr_shm->sh_nslots; i++) {
		struct shm_slot *sl = &WR.wr_shm->sh_slots[i];

		if (__atomic_load_n(&sl->sl_state, __ATOMIC_ACQUIRE) !=
		    SLOT_USED)
			continue;
		if (wr_pid_alive(sl->sl_pid))
			alive++;
		else
			shm_slot_retire(WR.wr_shm, (int)i);
	}
	return alive == 0 || now >= WR.wr_stop_by_ms;
}

/*
 * Whether to make the last flush and exit now.  A SIGTERM of the writer's
 * own does not stop it while workers may still count uses: when every
 * process got one at once (systemd without KillMode=mixed), the master
 * stops the workers and then says so in sh_stop.  Only when no stop of
 * the master follows within LONE_TERM_MS is it a request to restart the
 * writer alone (the master respawns it).
 */
static int
wr_should_stop(int64_t now)
{
	uint32_t	 stop;

	stop = __atomic_load_n(&WR.wr_shm->sh_stop, __ATOMIC_ACQUIRE);
	if (stop == SHM_STOP_WRITER)
		return 1;
	if (WR.wr_orphan)
		return wr_orphan_done(now);
	if (got_term && WR.wr_term_ms == 0)
		WR.wr_term_ms = now;
	return WR.wr_term_ms != 0 && stop == SHM_RUNNING &&
	    now - WR.wr_term_ms >= LONE_TERM_MS;
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

	/* Once the master is gone its pipe is at EOF for good: not polled. */
	pfd.fd = WR.wr_orphan ? -1 : WR.wr_master_fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (t > PING_MS)
		t = PING_MS;
	if (t < 0)
		t = 0;
	wr_promise(WR_IDLE_DUE_MS);
	if (poll(&pfd, 1, (int)t) <= 0)
		return;
	if ((pfd.revents & (POLLIN | POLLHUP)) &&
	    read(WR.wr_master_fd, buf, sizeof(buf)) <= 0)
		wr_orphaned();
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

	while (WR.wr_db != NULL && usage_swaps_pending(WR.wr_shm) > 0 &&
	    (now = shm_now_ms()) < end)
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
	if (WR.wr_db != NULL && now >= WR.wr_next_expiring_ms) {
		WR.wr_next_expiring_ms = now + EXPIRING_MS;
		wr_expiring();
	}
	if (WR.wr_db != NULL && now - WR.wr_last_ok_ms >= PING_MS)
		wr_ping();
}

/* ---- reload -------------------------------------------------------------- */

struct writer_conf *
writer_conf_new(const struct config *cf)
{
	struct writer_conf *wc;

	wc = mmap(NULL, sizeof(*wc), PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	if (wc == MAP_FAILED)
		return NULL;
	wc->wc_cf = *cf;
	return wc;
}

void
writer_conf_publish(struct writer_conf *wc, const struct config *cf)
{
	uint64_t	 gen = __atomic_load_n(&wc->wc_gen, __ATOMIC_RELAXED);

	__atomic_store_n(&wc->wc_gen, gen + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(&wc->wc_cf, cf, sizeof(*cf));
	__atomic_store_n(&wc->wc_gen, gen + 2, __ATOMIC_RELEASE);
}

/* A configuration newer than the one in force, copied whole into out:
 * 1, else 0, out untouched (also while the master is writing one: next
 * turn). */
static int
wr_conf_take(struct config *out)
{
	static struct config copy;
	uint64_t	 g1, g2;

	for (;;) {
		g1 = __atomic_load_n(&WR.wr_wc->wc_gen, __ATOMIC_ACQUIRE);
		if (g1 == WR.wr_conf_gen || (g1 & 1))
			return 0;
		memcpy(&copy, &WR.wr_wc->wc_cf, sizeof(copy));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		g2 = __atomic_load_n(&WR.wr_wc->wc_gen, __ATOMIC_RELAXED);
		if (g1 == g2) {
			WR.wr_conf_gen = g1;
			*out = copy;
			return 1;
		}
	}
}

/*
 * A reload keeps the writer, hence its LISTEN and the cache.  Only a new
 * database_url makes it reconnect: the uses counted so far go to the old
 * database first, and the new connection's LISTEN clears the cache, which
 * held the old database's answers.
 */
static void
wr_reconfigure(void)
{
	static struct config ncf;
	int		 moved;

	if (!wr_conf_take(&ncf))
		return;
	moved = strcmp(ncf.cf_database_url, WR.wr_conf.cf_database_url) != 0;
	if (moved && WR.wr_db != NULL) {
		usage_request_swap(WR.wr_shm);
		wr_await_swaps(shm_now_ms());
		if (WR.wr_db != NULL)
			wr_flush();
	}
	WR.wr_conf = ncf;
	if (log_open(WR.wr_cf, "writer") == -1)
		log_errorf("%s: log_open: %s", __func__, strerror(errno));
	LOG(LVL_INFO, "writer_reloaded", KV_I("database_changed", moved));
	if (!moved)
		return;
	/* The feed keeps its own copy: it reads it from its thread. */
	feed_stop();
	WR.wr_feed_conf = WR.wr_conf;
	if (feed_start(&WR.wr_feed_conf, WR.wr_shm, WR.wr_cache) == -1)
		exit(1);	/* the master respawns the writer */
	if (WR.wr_db != NULL) {
		wr_disconnect("database_url changed");
		WR.wr_retry.rt_next_ms = shm_now_ms();
	}
}

/*
 * The last flush, of everything the exited workers left (the master or
 * wr_orphan_done retired their slots), retrying until shutdown_timeout.
 * What it cannot flush stays in the usage file for the next start.
 */
static void
wr_final(void)
{
	int64_t	 end = shm_now_ms() + (int64_t)WR.wr_cf->cf_shutdown_timeout *
	    1000;

	WR.wr_final = 1;
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
	    "PostgreSQL unreachable at shutdown"), KV_S("kept",
	    "in usage.shm for the next start"));
}

void
writer_main(const struct config *cf, const struct writer_conf *wc,
    struct shm *shm, int master_fd)
{
	char		 err[256];
	int64_t		 now;

	/* Blocked since fork (child_init); SIGHUP only wakes the loop, which
	 * looks for a new configuration. */
	sig_child(SP_WRITER, &got_term, &got_usr1);
	WR.wr_conf = *cf;
	WR.wr_cf = &WR.wr_conf;
	WR.wr_wc = wc;
	WR.wr_conf_gen = UINT64_MAX;	/* take wc's, at least as new as cf */
	wr_conf_take(&WR.wr_conf);
	WR.wr_shm = shm;
	WR.wr_master_fd = master_fd;
	pg_retry_init(&WR.wr_retry, "writer");
	if ((WR.wr_cache = cache_open(cf->cf_cache_dir, cf->cf_cache_map_size,
	    err, sizeof(err))) == NULL)
		LOG(LVL_ERROR, "cache_open_failed", KV_S("error", err));
	LOG(LVL_INFO, "writer_started", KV_S("instance", shm->sh_instance));
	wr_promise(WR_CONNECT_DUE_MS);
	WR.wr_feed_conf = WR.wr_conf;
	if (feed_start(&WR.wr_feed_conf, shm, WR.wr_cache) == -1)
		exit(1);	/* the master respawns the writer */
	WR.wr_next_flush_ms = shm_now_ms() + interval_ms();
	/* A previous writer may have left rows in usage_deltas: fold them. */
	WR.wr_deltas_ms = 1;
	while (!wr_should_stop(now = shm_now_ms())) {
		if (WR.wr_db == NULL && pg_retry_due(&WR.wr_retry, now))
			wr_connect();
		wr_due(now);
		if (got_usr1) {
			got_usr1 = 0;
			log_reopen();
		}
		wr_reconfigure();
		wr_wait(WR.wr_next_flush_ms - shm_now_ms());
	}
	feed_stop();
	wr_final();
	LOG(LVL_INFO, "writer_stopped");
	if (WR.wr_db != NULL)
		PQfinish(WR.wr_db);
	exit(0);
}

/*
 * The revocation feed (SPEC 5, bounded staleness): a thread of the writer
 * process with two PostgreSQL connections of its own, so that no usage
 * flush, cleanup or lock that the writer's work connection waits on can
 * hold a revocation back.
 *
 *   listen   LISTEN tokend_revoke, and nothing else.  Notifications are
 *            applied to the cache in the order they arrive: 't' + hex
 *            token hash, 'u' + users.id, 'c' + client_id (the client
 *            epoch), '*' + table (a TRUNCATE: clear everything), 'p' +
 *            instance + ':' + sequence (a ping, below).
 *   ask      sends the pings, and the one query a notification needs (a
 *            user's token hashes, for 'u').
 *
 * The round trip.  Every ping interval the ask connection sends a ping
 * with this instance's id and a new sequence number.  PostgreSQL delivers
 * notifications in commit order, so when a ping comes back on the listen
 * connection every revocation committed before it was sent has been
 * applied: sh_feed_ok_ms becomes the time the ping was sent.  The ping
 * must not go out on the listen connection itself: a session hears its
 * own notifications at commit, even through a pooler that drops every
 * other one (PgBouncer in transaction mode), which would hide exactly
 * the failure this detects.  A ping not back within max_revocation_lag
 * makes the feed unconfirmed: logged once as an error (and once more when
 * it recovers), shown by /readyz, and workers verify their hits.
 *
 * The feed thread is the only user of the writer's cache handle.  It
 * blocks the process's signals (the main thread takes them) and stores
 * sh_feed_due_ms before each step that may wait, for the master's
 * liveness check (shm/README.md "Writer liveness").
 */
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/runtime/runtime.h"
#include "shm/shm.h"
#include "store/store.h"
#include "store/writer/writer.h"

#define FD_BACKOFF_MIN	100
#define FD_BACKOFF_MAX	5000
#define FD_WAIT_MS	100	/* longest poll: how soon a stop is seen */
#define FD_PINGS	64	/* sent times remembered, by sequence */
#define FD_ASK_TIMEOUT	"5s"	/* the ask connection's statement_timeout */
#define FD_IDLE_DUE_MS	5000	/* a loop turn, with room for a busy box */
#define FD_ASK_DUE_MS	8000	/* a statement on the ask connection */
#define FD_CONNECT_DUE_MS 30000	/* two connections, connect_timeout each */

static struct feed {
	const struct config *fd_cf;
	struct shm	*fd_shm;
	struct cache	*fd_cache;
	PGconn		*fd_listen;
	PGconn		*fd_ask;
	pthread_t	 fd_thread;
	int		 fd_started;
	int		 fd_stop;	/* atomic: the main thread asks */
	int64_t		 fd_retry_ms;
	int64_t		 fd_backoff;
	int64_t		 fd_next_ping_ms;
	uint64_t	 fd_seq;	/* last ping sent */
	uint64_t	 fd_seq_ok;	/* last ping back */
	int64_t		 fd_unanswered_ms; /* oldest ping not back, if any */
	int64_t		 fd_sent[FD_PINGS];	/* by seq % FD_PINGS */
	int		 fd_unconfirmed_logged;
	int		 fd_confirmed_logged;	/* since LISTEN came up */
} FD;

static void
fd_due(int64_t ms)
{
	__atomic_store_n(&FD.fd_shm->sh_feed_due_ms, shm_now_ms() + ms,
	    __ATOMIC_RELAXED);
}

static void
fd_state(uint32_t st)
{
	__atomic_store_n(&FD.fd_shm->sh_feed_state, st, __ATOMIC_RELEASE);
}

/* A ping goes out every fifth of max_revocation_lag, 100 ms to 1 s. */
static int64_t
fd_ping_ms(void)
{
	int64_t	 ms = (int64_t)FD.fd_cf->cf_max_revocation_lag * 1000 / 5;

	return ms < 100 ? 100 : ms > 1000 ? 1000 : ms;
}

/* ---- connections --------------------------------------------------------- */

static void
fd_disconnect(const char *why)
{
	__atomic_store_n(&FD.fd_shm->sh_listening, 0, __ATOMIC_RELEASE);
	fd_state(FEED_DOWN);
	__atomic_add_fetch(&FD.fd_shm->sh_writer_pg_errors, 1,
	    __ATOMIC_RELAXED);
	LOG(LVL_WARN, "db_retry", KV_S("conn", "feed"), KV_S("error", why),
	    KV_I("retry_ms", FD.fd_backoff));
	PQfinish(FD.fd_listen);
	PQfinish(FD.fd_ask);
	FD.fd_listen = FD.fd_ask = NULL;
	FD.fd_retry_ms = shm_now_ms() + FD.fd_backoff;
	FD.fd_backoff = FD.fd_backoff * 2 > FD_BACKOFF_MAX ? FD_BACKOFF_MAX :
	    FD.fd_backoff * 2;
}

/* LISTEN first, then clear: a revocation is either notified or cleared. */
static int
fd_listen(char *err, size_t errlen)
{
	PGresult	*res;

	if ((res = pg_exec(FD.fd_listen, "LISTEN tokend_revoke", 0, NULL, err,
	    errlen)) == NULL)
		return -1;
	PQclear(res);
	__atomic_add_fetch(&FD.fd_shm->sh_cache_epoch, 1, __ATOMIC_RELEASE);
	/* Client changes notified while LISTEN was down are lost too. */
	__atomic_add_fetch(&FD.fd_shm->sh_client_epoch, 1, __ATOMIC_RELEASE);
	if (FD.fd_cache != NULL && cache_clear(FD.fd_cache) == -1) {
		snprintf(err, errlen, "cannot clear the cache");
		return -1;
	}
	__atomic_add_fetch(&FD.fd_shm->sh_cache_clears, 1, __ATOMIC_RELAXED);
	/* Before the line that tests (and operators) wait for. */
	__atomic_store_n(&FD.fd_shm->sh_listening, 1, __ATOMIC_RELEASE);
	LOG(LVL_INFO, "cache_cleared", KV_S("reason", "listen established"));
	return 0;
}

static void
fd_connect(void)
{
	const char	*params[1] = { FD_ASK_TIMEOUT };
	char		 err[512];
	PGresult	*res;

	fd_due(FD_CONNECT_DUE_MS);
	if ((FD.fd_listen = pg_connect(FD.fd_cf->cf_database_url,
	    "tokend writer", err, sizeof(err))) == NULL ||
	    (FD.fd_ask = pg_connect(FD.fd_cf->cf_database_url,
	    "tokend writer", err, sizeof(err))) == NULL) {
		fd_disconnect(err);
		return;
	}
	if ((res = pg_exec(FD.fd_ask, "SELECT set_config('statement_timeout', "
	    "$1, false)", 1, params, err, sizeof(err))) == NULL ||
	    fd_listen(err, sizeof(err)) == -1) {
		fd_disconnect(err);
		return;
	}
	PQclear(res);
	FD.fd_backoff = FD_BACKOFF_MIN;
	FD.fd_next_ping_ms = shm_now_ms();
	FD.fd_seq_ok = FD.fd_seq;	/* earlier pings are void */
	FD.fd_confirmed_logged = 0;
	fd_state(FEED_UNCONFIRMED);
	LOG(LVL_INFO, "db_connected", KV_S("conn", "feed"));
}

/* ---- the round trip ----------------------------------------------------- */

static void
fd_ping(int64_t now)
{
	char		 payload[64], err[512];
	const char	*params[1] = { payload };
	PGresult	*res;

	FD.fd_next_ping_ms = now + fd_ping_ms();
	if (FD.fd_seq == FD.fd_seq_ok)
		FD.fd_unanswered_ms = now;
	FD.fd_seq++;
	FD.fd_sent[FD.fd_seq % FD_PINGS] = now;
	snprintf(payload, sizeof(payload), "p%s:%" PRIu64,
	    FD.fd_shm->sh_instance, FD.fd_seq);
	fd_due(FD_ASK_DUE_MS);
	if ((res = pg_exec(FD.fd_ask, "SELECT pg_notify('tokend_revoke', $1)",
	    1, params, err, sizeof(err))) == NULL) {
		fd_disconnect(err);
		return;
	}
	PQclear(res);
}

/* A ping came back: everything committed before it was sent is applied. */
static void
fd_pong(const char *payload)
{
	size_t		 n = strlen(FD.fd_shm->sh_instance);
	uint64_t	 seq;
	char		*end;

	if (strncmp(payload, FD.fd_shm->sh_instance, n) != 0 ||
	    payload[n] != ':')
		return;		/* another tokend's ping */
	seq = strtoull(payload + n + 1, &end, 10);
	if (*end != '\0' || seq <= FD.fd_seq_ok || seq > FD.fd_seq ||
	    FD.fd_seq - seq >= FD_PINGS)
		return;		/* unknown, late, or of an earlier connection */
	FD.fd_seq_ok = seq;
	if (seq < FD.fd_seq)	/* the next one is still out */
		FD.fd_unanswered_ms = FD.fd_sent[(seq + 1) % FD_PINGS];
	__atomic_store_n(&FD.fd_shm->sh_feed_ok_ms, FD.fd_sent[seq % FD_PINGS],
	    __ATOMIC_RELEASE);
	fd_state(FEED_CONFIRMED);
	if (FD.fd_unconfirmed_logged) {
		FD.fd_unconfirmed_logged = 0;
		LOG(LVL_INFO, "feed_confirmed", KV_S("reason", "recovered"));
	} else if (!FD.fd_confirmed_logged)
		LOG(LVL_INFO, "feed_confirmed", KV_S("reason", "first ping"));
	FD.fd_confirmed_logged = 1;
}

/*
 * No ping back for max_revocation_lag, on a LISTEN connection that looks
 * fine: notifications do not reach it.  Logged once until it recovers.
 */
static void
fd_check(int64_t now)
{
	int64_t	 lag = (int64_t)FD.fd_cf->cf_max_revocation_lag * 1000;

	if (FD.fd_seq_ok == FD.fd_seq || now - FD.fd_unanswered_ms <= lag)
		return;
	fd_state(FEED_UNCONFIRMED);
	if (FD.fd_unconfirmed_logged)
		return;
	FD.fd_unconfirmed_logged = 1;
	LOG(LVL_ERROR, "feed_unconfirmed", KV_I("waited_ms",
	    now - FD.fd_unanswered_ms),
	    KV_S("reason", "a notification sent on another connection did "
	    "not come back on the LISTEN connection (a pooler in transaction "
	    "mode drops them): every cache hit is verified in PostgreSQL"));
}

/* ---- revocations --------------------------------------------------------- */

static int
fd_user_hashes(const char *uid, uint8_t (**out)[TOKEN_HASH_LEN], size_t *n)
{
	const char	*params[1] = { uid };
	char		 err[256];
	PGresult	*res;
	int		 i;

	fd_due(FD_ASK_DUE_MS);
	res = pg_exec(FD.fd_ask, "SELECT encode(hash, 'hex') FROM tokend.tokens "
	    "WHERE user_id = $1::bigint", 1, params, err, sizeof(err));
	if (res == NULL)
		return -1;
	*n = (size_t)PQntuples(res);
	*out = calloc(*n + 1, TOKEN_HASH_LEN);
	for (i = 0; *out != NULL && i < PQntuples(res); i++)
		hex_decode(PQgetvalue(res, i, 0), 2 * TOKEN_HASH_LEN,
		    (*out)[i], TOKEN_HASH_LEN);
	PQclear(res);
	return *out ? 0 : -1;
}

/* A user's tokens; when they cannot be listed, everything goes. */
static void
fd_revoke_user(const char *uid)
{
	uint8_t		(*many)[TOKEN_HASH_LEN] = NULL;
	size_t		 n = 0;

	if (fd_user_hashes(uid, &many, &n) == 0)
		cache_del_many(FD.fd_cache, (const uint8_t (*)[TOKEN_HASH_LEN])
		    many, n);
	else if (cache_clear(FD.fd_cache) == 0)
		__atomic_add_fetch(&FD.fd_shm->sh_cache_clears, 1,
		    __ATOMIC_RELAXED);
	free(many);
}

static void
fd_revoke_one(const char *payload)
{
	uint8_t		 hash[TOKEN_HASH_LEN];

	if (payload[0] == 't' && hex_decode(payload + 1, strlen(payload + 1),
	    hash, TOKEN_HASH_LEN) == 0)
		cache_del(FD.fd_cache, hash);
	else if (payload[0] == 'u')
		fd_revoke_user(payload + 1);
	else if (payload[0] == 'c')	/* every worker's client cache */
		__atomic_add_fetch(&FD.fd_shm->sh_client_epoch, 1,
		    __ATOMIC_RELEASE);
	else if (payload[0] == '*') {	/* TRUNCATE: no row to name */
		__atomic_add_fetch(&FD.fd_shm->sh_client_epoch, 1,
		    __ATOMIC_RELEASE);
		if (cache_clear(FD.fd_cache) == 0)
			__atomic_add_fetch(&FD.fd_shm->sh_cache_clears, 1,
			    __ATOMIC_RELAXED);
		LOG(LVL_INFO, "cache_cleared", KV_S("reason", "truncate"),
		    KV_S("table", payload + 1));
	}
	__atomic_add_fetch(&FD.fd_shm->sh_revocations, 1, __ATOMIC_RELAXED);
}

static void
fd_notifications(void)
{
	PGnotify	*nt;

	if (!PQconsumeInput(FD.fd_listen) ||
	    PQstatus(FD.fd_listen) == CONNECTION_BAD) {
		fd_disconnect(PQerrorMessage(FD.fd_listen));
		return;
	}
	while (FD.fd_listen != NULL &&
	    (nt = PQnotifies(FD.fd_listen)) != NULL) {
		if (nt->extra[0] == 'p')
			fd_pong(nt->extra + 1);
		else {
			/* The epoch moves before the delete: shm/README.md. */
			__atomic_add_fetch(&FD.fd_shm->sh_cache_epoch, 1,
			    __ATOMIC_RELEASE);
			if (FD.fd_cache != NULL)
				fd_revoke_one(nt->extra);
		}
		PQfreemem(nt);
	}
}

/* ---- the thread ---------------------------------------------------------- */

static void
fd_wait(void)
{
	struct pollfd	 pfd;

	if (FD.fd_listen == NULL) {
		usleep(FD_WAIT_MS * 1000);
		return;
	}
	pfd.fd = PQsocket(FD.fd_listen);
	pfd.events = POLLIN;
	if (poll(&pfd, 1, FD_WAIT_MS) > 0 && pfd.revents)
		fd_notifications();
}

static void *
fd_run(void *arg)
{
	int64_t	 now;

	(void)arg;
	while (!__atomic_load_n(&FD.fd_stop, __ATOMIC_ACQUIRE)) {
		now = shm_now_ms();
		fd_due(FD_IDLE_DUE_MS);
		if (FD.fd_listen == NULL && now >= FD.fd_retry_ms)
			fd_connect();
		else if (FD.fd_listen != NULL && now >= FD.fd_next_ping_ms)
			fd_ping(now);
		if (FD.fd_listen != NULL)
			fd_check(now);
		fd_wait();
	}
	fd_state(FEED_DOWN);
	PQfinish(FD.fd_listen);
	PQfinish(FD.fd_ask);
	FD.fd_listen = FD.fd_ask = NULL;
	return NULL;
}

int
feed_start(const struct config *cf, struct shm *shm, struct cache *cache)
{
	sigset_t	 all, old;
	int		 rc;

	FD.fd_cf = cf;
	FD.fd_shm = shm;
	FD.fd_cache = cache;
	FD.fd_backoff = FD_BACKOFF_MIN;
	FD.fd_retry_ms = 0;	/* again after feed_stop: a reload's new URL */
	__atomic_store_n(&FD.fd_stop, 0, __ATOMIC_RELEASE);
	fd_due(FD_CONNECT_DUE_MS);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&FD.fd_thread, NULL, fd_run, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_errorf("%s: pthread_create: %s", __func__, strerror(rc));
		return -1;
	}
	FD.fd_started = 1;
	return 0;
}

void
feed_stop(void)
{
	if (!FD.fd_started)
		return;
	__atomic_store_n(&FD.fd_stop, 1, __ATOMIC_RELEASE);
	pthread_join(FD.fd_thread, NULL);
	FD.fd_started = 0;
}

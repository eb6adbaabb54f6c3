/*
 * tokend: the master process.
 *
 * PROCESSES
 *   master    1        reads the configuration, opens the listeners, creates
 *                      the shared segment, clears the cache, forks and
 *                      supervises the others.  Serves no request, holds no
 *                      LMDB environment or PostgreSQL connection across a
 *                      fork.
 *   worker    workers  epoll loop, HTTP, every endpoint (worker/).
 *   writer    1        usage flushes, LISTEN for revocations, expiry
 *                      cleanup (store/writer/).
 *
 * START-UP ORDER
 *   config -> log -> pid file -> listeners -> schema check (a short-lived
 *   PostgreSQL connection, closed before any fork) -> cache reset -> shm
 *   (cache_dir/usage.shm, kept by the reset: what a killed run left in it
 *   is applied by the first writer) -> writer -> workers.  Everything a
 *   child needs is inherited; LMDB and libpq are opened by each child after
 *   fork.
 *
 * SIGNALS (the master blocks them all and takes them with sigtimedwait, so
 * no work happens in a handler; store/runtime/sig.c has the one table of
 * what each signal does in each process)
 *   SIGTERM, SIGINT  graceful stop: workers stop accepting, finish what is in
 *                    flight (shutdown_timeout), then the writer flushes all
 *                    usage and exits; the master exits 0.  The same when
 *                    every process gets the signal at once: the writer
 *                    waits for sh_stop (shm/README.md "Stopping").
 *   SIGHUP           reload: re-read the configuration; on error keep the old
 *                    one.  Fork a new generation of workers, then ask the old
 *                    ones to stop gracefully; the listening sockets stay open
 *                    throughout, so no connection is refused.  The writer
 *                    stays, takes the new configuration (writer_conf) and
 *                    keeps its LISTEN, so the cache survives.
 *   SIGUSR1          reopen the log files; forwarded to every child.
 *   SIGCHLD          reap.
 *
 * WHEN A CHILD DIES
 *   Every death is logged (worker_exited / writer_exited with the exit status
 *   or signal) and followed by mdb_reader_check, so a dead reader never pins
 *   the cache.  A child of the current generation is respawned at once, a
 *   worker into the same shm slot (its counters and unflushed uses carry on).
 *   A child that dies within CHILD_QUICK_MS of its start is respawned after a
 *   delay that doubles from 100 ms up to 5 s.  When the writer dies the
 *   master clears sh_listening: until the new writer's LISTEN is up, workers
 *   do not fill the cache.
 *
 * WHEN THE WRITER HANGS
 *   Each of the writer's two threads (the work loop and the revocation
 *   feed) stores in shm when it will be back (shm/README.md "Writer
 *   liveness").  A writer that misses either time (stopped, wedged) is
 *   logged as writer_stalled, killed with SIGKILL and respawned as after a
 *   crash.  Meanwhile the feed's heartbeat ages and workers verify their
 *   cache hits in PostgreSQL (bounded staleness, SPEC 5).
 *
 * CHILDREN NOTICE THE MASTER'S DEATH through a pipe only the master writes:
 * EOF on its read end means stop: workers drain and exit, the writer flushes
 * until they are gone, then exits.
 *
 * PHASES (enum pm_state; master/README.md draws the same table)
 *   phase            moves on                          to
 *   PM_STARTING      children forked                   PM_RUN
 *   PM_RUN           SIGHUP                            PM_RELOAD
 *                    SIGTERM, SIGINT                   PM_STOP_WORKERS
 *   PM_RELOAD        new generation forked, or the     PM_RUN
 *                    new configuration refused
 *   PM_STOP_WORKERS  no worker left (or killed after   PM_STOP_WRITER
 *                    shutdown_timeout + 2 s)
 *   PM_STOP_WRITER   no writer left (killed after      PM_EXIT
 *                    twice that budget)
 *   PM_EXIT          the pid file is removed; exit 0
 *   Children are respawned (with backoff) and the writer's liveness is
 *   watched in PM_RUN only; from PM_STOP_WORKERS on, a death is final,
 *   except that PM_STOP_WRITER replaces a missing writer once, for the
 *   last flush, when usage waits in shm.  pm_set is the one place the
 *   phase changes, and logs each change at debug level (master_state).
 *
 * SHARED MEMORY (shm/README.md has the details)
 *   created by the master before the first fork; slots handed out by the
 *   master; counters written by one worker each; usage tables passed between
 *   worker and writer by a state handshake; header fields written by the
 *   writer (or the master, for restart counts).
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "master/master.h"
#include "shm/shm.h"
#include "store/store.h"
#include "store/writer/writer.h"
#include "worker/worker.h"
#include "worker/oauth/oauth.h"

#define MAX_CHILDREN	(4 * 256 + 8)
#define CHILD_QUICK_MS	1000	/* a death this soon after start is a crash loop */
#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	5000
#define EX_CONFIG	78
/*
 * Descriptors a worker holds besides its connections: stdio, the logs, up
 * to 2 * CF_MAX_LISTEN listeners, epoll, the master's pipe, LMDB, its
 * PostgreSQL connections, the hash pool's eventfd, TLS files.
 */
#define NOFILE_RESERVE	64
#define WRITER_START_DUE_MS 10000	/* fork to the writer's first promise */

enum child_kind { CK_WORKER, CK_WRITER };

/* The master's phase: see PHASES above.  Only pm_set changes it. */
enum pm_state {
	PM_STARTING,
	PM_RUN,
	PM_RELOAD,
	PM_STOP_WORKERS,
	PM_STOP_WRITER,
	PM_EXIT
};

static const char *const pm_names[] = {
	[PM_STARTING] = "starting",
	[PM_RUN] = "run",
	[PM_RELOAD] = "reload",
	[PM_STOP_WORKERS] = "stop_workers",
	[PM_STOP_WRITER] = "stop_writer",
	[PM_EXIT] = "exit",
};

struct child {
	pid_t		 ch_pid;	/* 0: slot unused or waiting to respawn */
	enum child_kind	 ch_kind;
	int		 ch_num;	/* worker number, 1-based */
	int		 ch_slot;	/* shm slot (workers) */
	int		 ch_gen;	/* configuration generation */
	int		 ch_stopping;	/* asked to stop: do not respawn */
	int		 ch_fails;	/* consecutive quick deaths */
	int64_t		 ch_started_ms;
	int64_t		 ch_respawn_ms;	/* when waiting: respawn time */
	int		 ch_waiting;	/* dead, to be respawned at ch_respawn_ms */
};

static struct master {
	struct config	 ms_cf;
	const char	*ms_conf_path;
	struct listener	 ms_ls[2 * CF_MAX_LISTEN];
	int		 ms_nls;
	struct shm	*ms_shm;
	struct writer_conf *ms_wconf;	/* the writer's newer configurations */
	int		 ms_pipe[2];	/* children hold [0]; EOF = master gone */
	struct child	 ms_ch[MAX_CHILDREN];
	int		 ms_gen;
	enum pm_state	 ms_state;
	int64_t		 ms_stop_ms;	/* when PM_STOP_WORKERS began */
	int		 ms_exit_code;
} M;

static void
usage(void)
{
	fprintf(stderr, "usage: tokend [-c FILE] [-t | -T] [--version]\n");
	exit(2);
}

/* ---- phases ----------------------------------------------------------- */

/*
 * The one transition function: every change of phase goes through here,
 * so whatever must accompany one (a log line, a notification to a service
 * manager) has one place.
 */
static void
pm_set(enum pm_state to, const char *why)
{
	LOG(LVL_DEBUG, "master_state", KV_S("from", pm_names[M.ms_state]),
	    KV_S("to", pm_names[to]), KV_S("reason", why));
	/* systemd hears of the phases that it shows (Type=notify). */
	if (to == PM_RUN)
		notify_ready(&M.ms_cf);
	else if (to == PM_RELOAD)
		notify_reloading();
	else if (to == PM_STOP_WORKERS && M.ms_state < PM_STOP_WORKERS)
		notify_stopping();
	M.ms_state = to;
}

/* From PM_STOP_WORKERS on, no child is respawned. */
static int
pm_stopping(void)
{
	return M.ms_state >= PM_STOP_WORKERS;
}

/* ---- children ---------------------------------------------------------- */

static struct child *
child_alloc(void)
{
	int	 i;

	for (i = 0; i < MAX_CHILDREN; i++)
		if (M.ms_ch[i].ch_pid == 0 && !M.ms_ch[i].ch_waiting) {
			memset(&M.ms_ch[i], 0, sizeof(M.ms_ch[i]));
			return &M.ms_ch[i];
		}
	return NULL;
}

/*
 * In the child, right after fork: shed what belongs to the master.  The
 * signals stay blocked until worker_main or writer_main has its handlers: a
 * SIGTERM (every process signalled at once) or the master's SIGHUP to the
 * writer that arrives meanwhile waits for them instead of killing.
 */
static void
child_init(const char *title)
{
	close(M.ms_pipe[1]);
	sig_default_all();
	proctitle_set(title);
	log_set_proc(title + strlen("tokend: "));
}

/* The new writer has this long before its threads promise anything. */
static void
writer_due_reset(int64_t now)
{
	__atomic_store_n(&M.ms_shm->sh_writer_due_ms, now + WRITER_START_DUE_MS,
	    __ATOMIC_RELAXED);
	__atomic_store_n(&M.ms_shm->sh_feed_due_ms, now + WRITER_START_DUE_MS,
	    __ATOMIC_RELAXED);
}

static int
child_fork(struct child *ch)
{
	char	 title[64];
	pid_t	 pid;

	if (ch->ch_kind == CK_WRITER)
		writer_due_reset(shm_now_ms());
	if ((pid = fork()) == -1) {
		log_errorf("%s: fork: %s", __func__, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		if (ch->ch_kind == CK_WRITER) {
			child_init("tokend: writer");
			writer_main(&M.ms_cf, M.ms_wconf, M.ms_shm,
			    M.ms_pipe[0]);
		}
		snprintf(title, sizeof(title), "tokend: worker %d", ch->ch_num);
		child_init(title);
		worker_main(&M.ms_cf, M.ms_shm, ch->ch_slot, M.ms_ls, M.ms_nls,
		    M.ms_pipe[0], (const struct worker_module *[]){
		    &oauth_module, NULL });
	}
	ch->ch_pid = pid;
	ch->ch_waiting = 0;
	ch->ch_started_ms = shm_now_ms();
	if (ch->ch_kind == CK_WORKER)
		M.ms_shm->sh_slots[ch->ch_slot].sl_pid = pid;
	else	/* /metrics adds the writer's process metrics */
		__atomic_store_n(&M.ms_shm->sh_writer_pid, pid,
		    __ATOMIC_RELAXED);
	return 0;
}

static int
spawn_worker(int num)
{
	struct child	*ch;
	int		 slot;

	if ((ch = child_alloc()) == NULL ||
	    (slot = shm_slot_claim(M.ms_shm, num)) == -1) {
		LOG(LVL_ERROR, "spawn_failed", KV_S("reason",
		    "no free worker slot"), KV_I("worker", num));
		return -1;
	}
	ch->ch_kind = CK_WORKER;
	ch->ch_num = num;
	ch->ch_slot = slot;
	ch->ch_gen = M.ms_gen;
	if (child_fork(ch) == -1) {
		shm_slot_retire(M.ms_shm, slot);
		return -1;
	}
	return 0;
}

static int
spawn_writer(void)
{
	struct child	*ch;

	if ((ch = child_alloc()) == NULL)
		return -1;
	ch->ch_kind = CK_WRITER;
	ch->ch_gen = M.ms_gen;
	return child_fork(ch);
}

static void
signal_children(int sig, int only_kind)
{
	int	 i;

	for (i = 0; i < MAX_CHILDREN; i++)
		if (M.ms_ch[i].ch_pid > 0 &&
		    (only_kind < 0 || (int)M.ms_ch[i].ch_kind == only_kind))
			kill(M.ms_ch[i].ch_pid, sig);
}

static int
count_children(int kind)
{
	int	 i, n = 0;

	for (i = 0; i < MAX_CHILDREN; i++)
		if ((M.ms_ch[i].ch_pid > 0 || M.ms_ch[i].ch_waiting) &&
		    (kind < 0 || (int)M.ms_ch[i].ch_kind == kind))
			n++;
	return n;
}

/* ---- reaping ------------------------------------------------------------ */

static void
log_exit(const struct child *ch, int status)
{
	const char	*ev = ch->ch_kind == CK_WRITER ? "writer_exited" :
	    "worker_exited";
	int		 lvl = ch->ch_stopping ? LVL_INFO : LVL_WARN;

	if (WIFSIGNALED(status))
		LOG(lvl, ev, KV_I("child_pid", ch->ch_pid), KV_I("worker",
		    ch->ch_num), KV_S("signal", strsignal(WTERMSIG(status))),
		    KV_I("expected", ch->ch_stopping));
	else
		LOG(lvl, ev, KV_I("child_pid", ch->ch_pid), KV_I("worker",
		    ch->ch_num), KV_I("status", WEXITSTATUS(status)),
		    KV_I("expected", ch->ch_stopping));
}

/* A child of the current generation died: respawn, with backoff. */
static void
schedule_respawn(struct child *ch, int64_t now)
{
	int64_t	 delay = 0;
	int	 i;

	if (now - ch->ch_started_ms < CHILD_QUICK_MS) {
		ch->ch_fails++;
		delay = BACKOFF_MIN_MS;
		for (i = 1; i < ch->ch_fails && delay < BACKOFF_MAX_MS; i++)
			delay *= 2;
		if (delay > BACKOFF_MAX_MS)
			delay = BACKOFF_MAX_MS;
		if (ch->ch_fails == 1)
			delay = 0;	/* the first quick death: at once */
	} else
		ch->ch_fails = 0;
	ch->ch_pid = 0;
	ch->ch_waiting = 1;
	ch->ch_respawn_ms = now + delay;
	if (delay > 0)
		LOG(LVL_WARN, "respawn_delayed", KV_I("worker", ch->ch_num),
		    KV_I("delay_ms", delay));
}

static void
child_died(struct child *ch, int status)
{
	int	 dead = 0;

	log_exit(ch, status);
	if (cache_reader_check(M.ms_cf.cf_cache_dir,
	    M.ms_cf.cf_cache_map_size, &dead) == 0 && dead > 0)
		LOG(LVL_INFO, "cache_readers_cleared", KV_I("count", dead));
	if (ch->ch_kind == CK_WRITER) {
		__atomic_store_n(&M.ms_shm->sh_listening, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&M.ms_shm->sh_feed_state, FEED_DOWN,
		    __ATOMIC_RELEASE);
		__atomic_store_n(&M.ms_shm->sh_writer_pid, 0,
		    __ATOMIC_RELAXED);
	}
	if (ch->ch_stopping || pm_stopping()) {
		if (ch->ch_kind == CK_WORKER)
			shm_slot_retire(M.ms_shm, ch->ch_slot);
		ch->ch_pid = 0;
		ch->ch_waiting = 0;
		return;
	}
	if (ch->ch_kind == CK_WORKER)
		__atomic_add_fetch(&M.ms_shm->sh_worker_restarts, 1,
		    __ATOMIC_RELAXED);
	else
		__atomic_add_fetch(&M.ms_shm->sh_writer_restarts, 1,
		    __ATOMIC_RELAXED);
	schedule_respawn(ch, shm_now_ms());
}

static void
reap(void)
{
	pid_t	 pid;
	int	 status, i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (i = 0; i < MAX_CHILDREN; i++)
			if (M.ms_ch[i].ch_pid == pid) {
				child_died(&M.ms_ch[i], status);
				break;
			}
}

/*
 * A running writer that missed the time one of its threads promised to be
 * back by is stopped or wedged: SIGKILL, and child_died respawns it as after
 * a crash.  One that is stopping is left to pm_step's budget.
 */
static void
writer_check(int64_t now)
{
	int64_t	 main_due, feed_due;
	int	 i;

	main_due = __atomic_load_n(&M.ms_shm->sh_writer_due_ms,
	    __ATOMIC_RELAXED);
	feed_due = __atomic_load_n(&M.ms_shm->sh_feed_due_ms,
	    __ATOMIC_RELAXED);
	if (now <= main_due && now <= feed_due)
		return;
	for (i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &M.ms_ch[i];

		if (ch->ch_pid <= 0 || ch->ch_kind != CK_WRITER ||
		    ch->ch_stopping)
			continue;
		LOG(LVL_ERROR, "writer_stalled", KV_I("child_pid", ch->ch_pid),
		    KV_S("thread", now > main_due ? "main" : "feed"),
		    KV_I("late_ms", now - (now > main_due ? main_due :
		    feed_due)));
		kill(ch->ch_pid, SIGKILL);
		/* Once: the next writer gets its own start-up time. */
		writer_due_reset(now);
	}
}

/* Respawn the children whose delay has passed; returns ms to the next. */
static int64_t
respawn_due(int64_t now)
{
	int64_t	 next = -1;
	int	 i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &M.ms_ch[i];

		if (!ch->ch_waiting)
			continue;
		if (ch->ch_respawn_ms <= now) {
			if (child_fork(ch) == -1)
				ch->ch_respawn_ms = now + BACKOFF_MAX_MS;
			else
				continue;
		}
		if (next < 0 || ch->ch_respawn_ms - now < next)
			next = ch->ch_respawn_ms - now;
	}
	return next;
}

/* ---- start, reload, stop ------------------------------------------------ */

static int
start_children(void)
{
	int	 i;

	if (spawn_writer() == -1)
		return -1;
	for (i = 1; i <= M.ms_cf.cf_workers; i++)
		if (spawn_worker(i) == -1)
			return -1;
	return 0;
}

/* The soft RLIMIT_NOFILE up to the hard one: connections are descriptors. */
static void
nofile_raise(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_errorf("%s: setrlimit: %s", __func__, strerror(errno));
}

/*
 * max_connections (per worker) down to what RLIMIT_NOFILE leaves after
 * NOFILE_RESERVE, with a warning that gives the numbers: past the limit a
 * worker would only meet EMFILE.  Returns -1 when no room is left.
 */
static int
nofile_fit(struct config *cf)
{
	struct rlimit	 rl;
	rlim_t		 room;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	room = rl.rlim_cur > NOFILE_RESERVE ? rl.rlim_cur - NOFILE_RESERVE : 0;
	if ((rlim_t)cf->cf_max_connections <= room)
		return 0;
	if (room == 0) {
		LOG(LVL_ERROR, "nofile_too_low", KV_I("nofile_limit",
		    rl.rlim_cur), KV_I("reserved", NOFILE_RESERVE));
		return -1;
	}
	LOG(LVL_WARN, "max_connections_clamped", KV_I("max_connections",
	    cf->cf_max_connections), KV_I("clamped_to", room),
	    KV_I("nofile_limit", rl.rlim_cur), KV_I("reserved",
	    NOFILE_RESERVE));
	cf->cf_max_connections = (int)room;
	return 0;
}

/* Values that only a restart can change, because the running children
 * share them: the cache location and size. */
static void
reload_keep_fixed(struct config *ncf)
{
	if (strcmp(ncf->cf_cache_dir, M.ms_cf.cf_cache_dir) != 0 ||
	    ncf->cf_cache_map_size != M.ms_cf.cf_cache_map_size)
		LOG(LVL_WARN, "reload_ignored", KV_S("keys",
		    "cache_dir cache_map_size"), KV_S("reason",
		    "take effect on restart"));
	memcpy(ncf->cf_cache_dir, M.ms_cf.cf_cache_dir,
	    sizeof(ncf->cf_cache_dir));
	ncf->cf_cache_map_size = M.ms_cf.cf_cache_map_size;
}

/*
 * Every worker alive now belongs to the old generation.  The writer is not
 * replaced: it takes the new configuration (writer_conf_publish) and keeps
 * its LISTEN connection, so the cache survives the reload.
 */
static void
reload_mark_old(void)
{
	int	 i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &M.ms_ch[i];

		if (ch->ch_kind != CK_WORKER)
			continue;
		if (ch->ch_waiting) {
			ch->ch_waiting = 0;	/* superseded, never respawn */
			shm_slot_retire(M.ms_shm, ch->ch_slot);
		}
		if (ch->ch_pid > 0)
			ch->ch_stopping = 1;
	}
}

/* Once the new workers are forked, the old ones stop gracefully. */
static void
reload_stop_old(void)
{
	int	 i;

	for (i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &M.ms_ch[i];

		if (ch->ch_pid > 0 && ch->ch_stopping &&
		    ch->ch_kind == CK_WORKER)
			kill(ch->ch_pid, SIGTERM);
	}
}

/* Returns 0, or -1 when the new configuration is refused (logged). */
static int
reload(void)
{
	struct config	 ncf;
	struct listener	 nls[2 * CF_MAX_LISTEN];
	char		 err[512];
	int		 n, i;

	if (config_load(&ncf, M.ms_conf_path, err, sizeof(err)) == -1) {
		LOG(LVL_ERROR, "reload_failed", KV_S("error", err));
		return -1;
	}
	reload_keep_fixed(&ncf);
	if (nofile_fit(&ncf) == -1)
		return -1;
	n = listen_open(&ncf, M.ms_ls, M.ms_nls, nls, 2 * CF_MAX_LISTEN, err,
	    sizeof(err));
	if (n == -1) {
		LOG(LVL_ERROR, "reload_failed", KV_S("error", err));
		return -1;
	}
	M.ms_cf = ncf;
	memcpy(M.ms_ls, nls, sizeof(nls[0]) * (size_t)n);
	M.ms_nls = n;
	if (log_open(&M.ms_cf, "master") == -1)
		log_errorf("%s: log_open: %s", __func__, strerror(errno));
	reload_mark_old();
	M.ms_gen++;
	for (i = 1; i <= M.ms_cf.cf_workers; i++)
		spawn_worker(i);
	reload_stop_old();
	writer_conf_publish(M.ms_wconf, &M.ms_cf);
	signal_children(SIGHUP, CK_WRITER);
	if (count_children(CK_WRITER) == 0)
		spawn_writer();
	LOG(LVL_INFO, "reloaded", KV_I("workers", M.ms_cf.cf_workers),
	    KV_I("generation", M.ms_gen));
	return 0;
}

/* PM_RUN -> PM_STOP_WORKERS: every worker is asked to drain. */
static void
stop_begin(int sig)
{
	int	 i;

	pm_set(PM_STOP_WORKERS, strsignal(sig));
	M.ms_stop_ms = shm_now_ms();
	/* A writer that got its own SIGTERM now waits for PM_STOP_WRITER. */
	__atomic_store_n(&M.ms_shm->sh_stop, SHM_STOP_WORKERS,
	    __ATOMIC_RELEASE);
	LOG(LVL_INFO, "stopping", KV_S("signal", strsignal(sig)));
	for (i = 0; i < MAX_CHILDREN; i++) {
		struct child *ch = &M.ms_ch[i];

		if (ch->ch_waiting && ch->ch_kind == CK_WORKER)
			shm_slot_retire(M.ms_shm, ch->ch_slot);
		ch->ch_waiting = 0;
		if (ch->ch_pid > 0)
			ch->ch_stopping = 1;
	}
	signal_children(SIGTERM, CK_WORKER);
}

/*
 * PM_STOP_WORKERS -> PM_STOP_WRITER: all workers are gone, the writer's
 * turn.  sh_stop says so to a writer that got a SIGTERM of its own and
 * waits for it; stop_writer signals the others.  A writer that died, or
 * was waiting to be respawned, is replaced once by one that only makes the
 * last flush (it starts with sh_stop set; no SIGTERM, which could reach it
 * before its handler).
 */
static void
stop_writer_begin(void)
{
	int	 i;

	pm_set(PM_STOP_WRITER, "workers gone");
	__atomic_store_n(&M.ms_shm->sh_stop, SHM_STOP_WRITER, __ATOMIC_RELEASE);
	if (count_children(CK_WRITER) > 0 ||
	    usage_tables_pending(M.ms_shm) == 0 || spawn_writer() == -1)
		return;
	for (i = 0; i < MAX_CHILDREN; i++)
		if (M.ms_ch[i].ch_pid > 0 && M.ms_ch[i].ch_kind == CK_WRITER)
			M.ms_ch[i].ch_stopping = 2;
}

/* In PM_STOP_WRITER: SIGTERM once, SIGKILL past the budget. */
static void
stop_writer(int64_t now, int64_t budget)
{
	int	 i;

	for (i = 0; i < MAX_CHILDREN; i++)
		if (M.ms_ch[i].ch_pid > 0 && M.ms_ch[i].ch_kind == CK_WRITER &&
		    M.ms_ch[i].ch_stopping < 2) {
			kill(M.ms_ch[i].ch_pid, SIGTERM);
			M.ms_ch[i].ch_stopping = 2;
		}
	if (now - M.ms_stop_ms > 2 * budget)
		signal_children(SIGKILL, CK_WRITER);
}

/*
 * The phases that move on by themselves, not by a signal (PostgreSQL's
 * PostmasterStateMachine): run once per turn of the loop.  Stopping
 * proceeds in two steps, workers first and the writer once they are all
 * gone, so its last flush sees every use; children that outlive their
 * budget are killed.
 */
static void
pm_step(int64_t now)
{
	int64_t	 budget = (int64_t)M.ms_cf.cf_shutdown_timeout * 1000 + 2000;

	switch (M.ms_state) {
	case PM_RUN:
		writer_check(now);
		break;
	case PM_STOP_WORKERS:
		if (count_children(CK_WORKER) > 0) {
			if (now - M.ms_stop_ms > budget)
				signal_children(SIGKILL, CK_WORKER);
			break;
		}
		/* The writer is signalled in this same turn. */
		stop_writer_begin();
		/* FALLTHROUGH */
	case PM_STOP_WRITER:
		if (count_children(CK_WRITER) == 0)
			pm_set(PM_EXIT, "writer gone");
		else
			stop_writer(now, budget);
		break;
	default:	/* PM_STARTING, PM_RELOAD, PM_EXIT: not in the loop */
		break;
	}
}

/* ---- main loop ---------------------------------------------------------- */

/* A signal taken by sigtimedwait, in PM_RUN or a stop phase. */
static void
master_signal(int sig)
{
	switch (sig) {
	case SIGCHLD:
		reap();
		break;
	case SIGTERM:
	case SIGINT:
		if (M.ms_state == PM_RUN)
			stop_begin(sig);
		break;
	case SIGHUP:
		if (M.ms_state != PM_RUN)
			break;
		pm_set(PM_RELOAD, "SIGHUP");
		pm_set(PM_RUN, reload() == 0 ? "reloaded" : "reload refused");
		break;
	case SIGUSR1:
		log_reopen();
		signal_children(SIGUSR1, -1);
		break;
	default:
		reap();	/* a timeout; a missed SIGCHLD costs nothing */
		break;
	}
}

static void
master_loop(const sigset_t *set)
{
	siginfo_t	 si;
	struct timespec	 ts;
	int64_t		 now, next;

	for (;;) {
		now = shm_now_ms();
		next = respawn_due(now);
		pm_step(now);
		if (M.ms_state == PM_EXIT)
			return;
		if (next < 0 || next > 100)
			next = pm_stopping() ? 50 : 1000;
		ts.tv_sec = next / 1000;
		ts.tv_nsec = (next % 1000) * 1000000;
		master_signal(sigtimedwait(set, &si, &ts));
	}
}

/* ---- start-up ------------------------------------------------------------ */

static void
config_fail(const char *err, int check_only)
{
	fprintf(stderr, "%s\n", err);
	exit(check_only ? 1 : EX_CONFIG);
}

/* Checks that need more than the configuration text. */
static int
config_check_start(const struct config *cf, char *err, size_t errlen)
{
	size_t	 n;

	if (cf->cf_database_url[0] == '\0') {
		snprintf(err, errlen, "%s: database_url: not set (make run "
		    "starts a throwaway PostgreSQL and sets it)",
		    cf->cf_file[0] ? cf->cf_file : "tokend");
		return -1;
	}
	/* "FILE: cache_dir PATH: reason", as the other start checks say. */
	n = (size_t)snprintf(err, errlen, "%s: ", cf->cf_file[0] ?
	    cf->cf_file : "tokend");
	if (n < errlen &&
	    cache_dir_check(cf->cf_cache_dir, err + n, errlen - n) == -1)
		return -1;
	/* Load the certificate once here, so a bad one fails -t and start
	 * instead of every worker at fork. */
	if (cf->cf_ntls_listen > 0) {
		SSL_CTX *ctx = tls_ctx_new(cf, err, errlen);

		if (ctx == NULL)
			return -1;
		SSL_CTX_free(ctx);
	}
	return 0;
}

/*
 * Refuse to serve on a schema older than this build needs.  An unreachable
 * database is not fatal: the writer and workers retry, /readyz says 503.
 */
static int
schema_check(const struct config *cf)
{
	char	 err[512];
	PGconn	*db;
	int	 v;

	if ((db = pg_connect(cf->cf_database_url, "tokend master", err,
	    sizeof(err))) == NULL) {
		LOG(LVL_WARN, "db_unreachable", KV_S("error", err));
		return 0;
	}
	v = migrate_current(db, err, sizeof(err));
	PQfinish(db);
	if (v >= 0 && v < migrate_latest()) {
		fprintf(stderr, "tokend: the database schema is at version %d "
		    "but this tokend needs %d: run `tokenctl migrate`\n", v,
		    migrate_latest());
		return -1;
	}
	return 0;
}

/*
 * The pid file, opened without following a symbolic link: in a directory
 * others can write, a link planted there would make the master truncate
 * and write whatever file it points at.  Returns 0, or -1 with err set.
 */
static int
pid_file_write(const char *path, char *err, size_t errlen)
{
	char	 buf[32];
	int	 fd, n, rc = -1;

	if (path[0] == '\0')
		return 0;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	if (fd == -1) {
		snprintf(err, errlen, "pid_file %s: %s", path, errno == ELOOP ?
		    "is a symbolic link; refusing to follow it" :
		    strerror(errno));
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n) {
		snprintf(err, errlen, "pid_file %s: write: %s", path,
		    strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/*
 * The shared segment, in cache_dir/usage.shm: what a previous run left in
 * it (all processes killed) is flushed by the first writer, exactly once.
 */
static int
master_shm(char *err, size_t errlen)
{
	char			 path[CF_PATH_LEN + 16];
	struct shm_recovery	 rec;
	uint32_t		 nslots;

	nslots = 4 * (uint32_t)M.ms_cf.cf_workers;
	if (nslots < 8)
		nslots = 8;
	snprintf(path, sizeof(path), "%s/usage.shm", M.ms_cf.cf_cache_dir);
	if ((M.ms_shm = shm_open_file(path, nslots,
	    (M.ms_cf.cf_shutdown_timeout + 5) * 1000, &rec, err,
	    errlen)) == NULL)
		return -1;
	M.ms_shm->sh_started = (int64_t)time(NULL);
	if (rec.sr_ignored[0] != '\0')
		LOG(LVL_WARN, "usage_file_ignored", KV_S("file", path),
		    KV_S("reason", rec.sr_ignored));
	if (rec.sr_uses > 0)
		LOG(LVL_INFO, "usage_recovered", KV_S("file", path),
		    KV_S("instance", M.ms_shm->sh_instance), KV_I("uses",
		    rec.sr_uses), KV_I("tables", rec.sr_tables), KV_I("slots",
		    rec.sr_slots));
	return 0;
}

static int
master_init(char *err, size_t errlen)
{

	if ((M.ms_nls = listen_open(&M.ms_cf, NULL, 0, M.ms_ls,
	    2 * CF_MAX_LISTEN, err, errlen)) == -1)
		return -1;
	if (cache_reset_dir(M.ms_cf.cf_cache_dir, M.ms_cf.cf_cache_map_size,
	    err, errlen) == -1)
		return -1;
	if (cache_dir_in_memory(M.ms_cf.cf_cache_dir) == 0)
		LOG(LVL_INFO, "cache_dir_on_disk", KV_S("dir",
		    M.ms_cf.cf_cache_dir));
	if (master_shm(err, errlen) == -1)
		return -1;
	if ((M.ms_wconf = writer_conf_new(&M.ms_cf)) == NULL) {
		snprintf(err, errlen, "shared memory: %s", strerror(errno));
		return -1;
	}
	if (pipe2(M.ms_pipe, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe2: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * -c FILE, -t, -T, --version.  Returns 1 for -t, 2 for -T.  The path is
 * copied: argv's memory is about to hold the process title.
 */
static int
parse_args(int argc, char **argv)
{
	int	 i, check = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			M.ms_conf_path = strdup(argv[++i]);
		else if (strcmp(argv[i], "-t") == 0)
			check = 1;
		else if (strcmp(argv[i], "-T") == 0)
			check = 2;
		else if (strcmp(argv[i], "--version") == 0) {
			printf("tokend %s\n", TOKEND_VERSION);
			exit(0);
		} else
			usage();
	}
	return check;
}

int
main(int argc, char **argv)
{
	char		 err[CF_PATH_LEN + 1024];
	sigset_t	 set;
	int		 check;

	check = parse_args(argc, argv);
	if (check == 2)
		return config_print(M.ms_conf_path, stdout) == 0 ? 0 : 1;
	/* Every error of the file and the environment, one line each. */
	if (config_check(&M.ms_cf, M.ms_conf_path, stderr) > 0)
		exit(check ? 1 : EX_CONFIG);
	if (config_check_start(&M.ms_cf, err, sizeof(err)) == -1)
		config_fail(err, check);
	if (check) {
		printf("%s: configuration ok\n", M.ms_conf_path ?
		    M.ms_conf_path : "defaults");
		return 0;
	}
	proctitle_init(argc, argv);
	proctitle_set("tokend: master");
	if (log_open(&M.ms_cf, "master") == -1) {
		fprintf(stderr, "tokend: log_file %s: %s\n",
		    M.ms_cf.cf_log_file, strerror(errno));
		return EX_CONFIG;
	}
	/* Block the signals before any child exists; sigtimedwait takes them. */
	sig_master(&set);
	nofile_raise();
	if (nofile_fit(&M.ms_cf) == -1) {
		fprintf(stderr, "tokend: RLIMIT_NOFILE is too low: a worker "
		    "needs more than %d descriptors\n", NOFILE_RESERVE);
		return 1;
	}
	if (schema_check(&M.ms_cf) == -1)
		return 1;
	/* The pid file after the listeners: a second tokend on the same
	 * addresses fails there and leaves the first one's pid file alone. */
	if (master_init(err, sizeof(err)) == -1 ||
	    pid_file_write(M.ms_cf.cf_pid_file, err, sizeof(err)) == -1)
		goto fail;
	LOG(LVL_INFO, "started", KV_S("version", TOKEND_VERSION),
	    KV_I("workers", M.ms_cf.cf_workers),
	    KV_S("listen", M.ms_cf.cf_listen[0]));
	notify_init();
	if (start_children() == -1)
		LOG(LVL_ERROR, "start_incomplete");
	pm_set(PM_RUN, "children forked");
	master_loop(&set);
	if (M.ms_cf.cf_pid_file[0])
		unlink(M.ms_cf.cf_pid_file);
	LOG(LVL_INFO, "stopped");
	return M.ms_exit_code;
fail:
	fprintf(stderr, "tokend: %s\n", err);
	LOG(LVL_ERROR, "start_failed", KV_S("error", err));
	return 1;
}

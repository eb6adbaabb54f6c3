/*
 * The worker process: set-up after fork, the epoll loop, timers, and the
 * graceful stop.  A worker serves requests only; everything it shares with
 * other workers is read-mostly (the LMDB cache) or its own slot of shm.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker/worker.h"
#include "worker/lookup.h"
#include "worker/hashpool.h"
#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

struct worker W;

static volatile sig_atomic_t got_term;
static volatile sig_atomic_t got_usr1;

/*
 * SIGTERM and SIGINT mean a graceful stop whoever sends them: the master
 * (stop, reload), or systemd and a terminal signalling every process at
 * once.  The signals have been blocked since fork (master/main.c
 * child_init); one that came meanwhile is taken once the handlers are in.
 */
static void
signals_init(void)
{
	sig_child(SP_WORKER, &got_term, &got_usr1);
}

static int
ep_add(int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };

	if (epoll_ctl(W.wk_epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_errorf("%s: epoll_ctl: %s", __func__, strerror(errno));
		return -1;
	}
	return 0;
}

void
worker_sched(int nice_delta, uint64_t slice_ns)
{
	struct {		/* the kernel's struct sched_attr, version 0 */
		uint32_t size, sched_policy;
		uint64_t sched_flags;
		int32_t	 sched_nice;
		uint32_t sched_priority;
		uint64_t sched_runtime, sched_deadline, sched_period;
	} attr;
	int	 nice;

	errno = 0;
	nice = getpriority(PRIO_PROCESS, 0);	/* this thread's */
	if (nice == -1 && errno != 0)
		nice = 0;
	nice = nice + nice_delta > 19 ? 19 : nice + nice_delta;
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.sched_policy = SCHED_OTHER;
	attr.sched_nice = nice;
	attr.sched_runtime = slice_ns;
	if (syscall(SYS_sched_setattr, 0, &attr, 0) == -1)
		(void)setpriority(PRIO_PROCESS, 0, nice);
}

/*
 * The listeners are shared by every worker: EPOLLEXCLUSIVE wakes one waiter
 * per connection instead of all of them, and a shared socket (unlike one
 * SO_REUSEPORT socket per worker) keeps queued connections when workers are
 * replaced on reload.  Measured against SO_REUSEPORT per worker
 * (contrib/bench/listeners.sh, 16-core machine, medians of 3): keep-alive
 * 831k vs 859k req/s at 8 workers and 553k vs 557k at 4, a connection per
 * request 163k vs 175k and 183k vs 179k: within the rounds' spread, so the
 * design that fails no request on reload wins.
 */
void
worker_listen(int on)
{
	int	 i;

	for (i = 0; i < W.wk_nls; i++) {
		struct wk_listener *wl = &W.wk_ls[i];

		if (on && !wl->wl_armed) {
			if (ep_add(wl->wl_fd, EPOLLIN | EPOLLEXCLUSIVE,
			    &wl->wl_ev) == 0)
				wl->wl_armed = 1;
		} else if (!on && wl->wl_armed) {
			epoll_ctl(W.wk_epfd, EPOLL_CTL_DEL, wl->wl_fd, NULL);
			wl->wl_armed = 0;
		}
	}
}

void
worker_accept_pause(void)
{
	worker_listen(0);
	W.wk_accept_resume_ms = W.wk_now_ms + WORKER_ACCEPT_PAUSE_MS;
}

/* The pause is over: accept again, unless at max_connections or stopping. */
static void
worker_accept_tick(void)
{
	if (W.wk_accept_resume_ms == 0 || W.wk_now_ms < W.wk_accept_resume_ms)
		return;
	W.wk_accept_resume_ms = 0;
	if (!W.wk_stopping && W.wk_nconns < W.wk_cf->cf_max_connections)
		worker_listen(1);
}

static void
clock_tick(void)
{
	struct timespec	 ts;
	struct tm	 tm;
	time_t		 now;

	W.wk_now_ms = shm_now_ms();
	clock_gettime(CLOCK_REALTIME, &ts);
	W.wk_wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	now = ts.tv_sec;
	if (now == W.wk_now)
		return;
	W.wk_now = now;
	gmtime_r(&now, &tm);
	strftime(W.wk_date, sizeof(W.wk_date),
	    "Date: %a, %d %b %Y %H:%M:%S GMT\r\n",
	    &tm);
}

static void
worker_stop_begin(void)
{
	int	 i;

	if (W.wk_stopping)
		return;
	W.wk_stopping = 1;
	W.wk_stop_at_ms = W.wk_now_ms;
	worker_listen(0);
	for (i = 0; i < W.wk_nls; i++)
		close(W.wk_ls[i].wl_fd);
	W.wk_nls = 0;
	LOG(LVL_INFO, "worker_stopping", KV_I("connections", W.wk_nconns));
}

static int
worker_init(const struct config *cf, struct shm *shm, int slot,
    const struct listener *ls, int nls, int master_fd)
{
	char	 err[256];
	int	 i;

	W.wk_cf = cf;
	W.wk_shm = shm;
	W.wk_slot = &shm->sh_slots[slot];
	W.wk_num = W.wk_slot->sl_worker;
	W.wk_master_fd = master_fd;
	W.wk_master_ev.ev_type = EV_MASTER;
	clock_tick();
	usage_attach(W.wk_slot);
	if ((W.wk_epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		log_errorf("%s: epoll_create1: %s", __func__, strerror(errno));
		return -1;
	}
	for (i = 0; i < nls && i < 2 * CF_MAX_LISTEN; i++) {
		W.wk_ls[i].wl_ev.ev_type = EV_LISTENER;
		W.wk_ls[i].wl_fd = ls[i].li_fd;
		W.wk_ls[i].wl_tls = ls[i].li_tls;
		if (ls[i].li_tls && W.wk_tls == NULL &&
		    (W.wk_tls = tls_ctx_new(cf, err, sizeof(err))) == NULL) {
			LOG(LVL_ERROR, "tls_failed", KV_S("error", err));
			return -1;
		}
	}
	W.wk_nls = i;
	if (ep_add(master_fd, EPOLLIN, &W.wk_master_ev) == -1)
		return -1;
	W.wk_cache = cache_open(cf->cf_cache_dir, cf->cf_cache_map_size, err,
	    sizeof(err));
	if (W.wk_cache == NULL)
		LOG(LVL_ERROR, "cache_open_failed", KV_S("error", err));
	W.wk_lookup = lookup_new(cf, W.wk_epfd);
	W.wk_pgq = pgq_new(cf, W.wk_epfd);
	W.wk_clients = client_cache_new();
	worker_sched(0, WORKER_SLICE_NS);
	/* Threads only now, after fork: fork copies only the calling one. */
	if ((W.wk_hashpool = hashpool_new(W.wk_epfd)) == NULL)
		LOG(LVL_ERROR, "hashpool_failed");
	worker_listen(1);
	return 0;
}

static int
next_timeout_ms(void)
{
	int	 t = 100;	/* usage swaps and timers need a regular tick */

	if (W.wk_stopping)
		t = 20;
	return t;
}

static void
handle_event(struct epoll_event *ev)
{
	struct evsrc	*src = ev->data.ptr;
	char		 buf[64];

	switch (src->ev_type) {
	case EV_LISTENER:
		conn_accept(((struct wk_listener *)src)->wl_fd,
		    ((struct wk_listener *)src)->wl_tls);
		break;
	case EV_CONN:
		conn_event((struct conn *)src, ev->events);
		break;
	case EV_MASTER:
		/* Only the master writes this pipe; EOF means it is gone. */
		if (read(W.wk_master_fd, buf, sizeof(buf)) <= 0) {
			LOG(LVL_WARN, "master_gone");
			worker_stop_begin();
			epoll_ctl(W.wk_epfd, EPOLL_CTL_DEL, W.wk_master_fd,
			    NULL);
		}
		break;
	case EV_LOOKUP:
		lookup_event(W.wk_lookup, ev->events);
		break;
	case EV_PGQ:
		pgq_event(W.wk_pgq, ev->events);
		break;
	case EV_HASHPOOL:
		hashpool_event(W.wk_hashpool);
		break;
	}
}

/* Stopping: done when no connection is left or shutdown_timeout passed. */
static int
worker_stop_done(void)
{
	if (W.wk_nconns == 0)
		return 1;
	return W.wk_now_ms - W.wk_stop_at_ms >=
	    (int64_t)W.wk_cf->cf_shutdown_timeout * 1000;
}

void
worker_main(const struct config *cf, struct shm *shm, int slot,
    const struct listener *ls, int nls, int master_fd)
{
	struct epoll_event evs[128];
	int		 n, i;

	signals_init();
	if (worker_init(cf, shm, slot, ls, nls, master_fd) == -1)
		exit(1);
	LOG(LVL_INFO, "worker_started", KV_I("slot", slot));
	for (;;) {
		conn_free_closed();
		n = epoll_wait(W.wk_epfd, evs, 128, next_timeout_ms());
		if (n == -1 && errno != EINTR) {
			log_errorf("%s: epoll_wait: %s", __func__,
			    strerror(errno));
			exit(1);
		}
		clock_tick();
		for (i = 0; i < n; i++)
			handle_event(&evs[i]);
		if (got_usr1) {
			got_usr1 = 0;
			log_reopen();
		}
		if (got_term)
			worker_stop_begin();
		usage_poll(W.wk_slot);
		lookup_tick(W.wk_lookup);
		pgq_tick(W.wk_pgq);
		conn_expire(W.wk_now_ms);
		worker_accept_tick();
		if (W.wk_stopping) {
			conn_drain_idle();
			if (worker_stop_done())
				break;
		}
	}
	LOG(LVL_INFO, "worker_stopped", KV_I("connections", W.wk_nconns));
	exit(0);
}

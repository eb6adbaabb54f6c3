/*
 * The worker process: set-up after fork, the epoll loop, timers, and the
 * graceful stop.  A worker serves requests only; everything it shares with
 * other workers is read-mostly (the LMDB cache) or its own slot of shm.
 */
#include <sys/epoll.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker/worker.h"
#include "worker/lookup.h"
#include "worker/hashpool.h"
#include "worker/pgq.h"

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

/* A shared listener has a connection to accept (wl_ev's handler). */
static void
loop_listener_event(struct evsrc *src, uint32_t events)
{
	struct wk_listener *wl = (struct wk_listener *)src;

	(void)events;
	conn_accept(wl->wl_fd, wl->wl_tls);
}

/* Only the master writes this pipe; EOF means it is gone (its handler). */
static void
loop_master_event(struct evsrc *src, uint32_t events)
{
	char	 buf[64];

	(void)src;
	(void)events;
	if (read(W.wk_master_fd, buf, sizeof(buf)) <= 0) {
		LOG(LVL_WARN, "master_gone");
		worker_stop_begin();
		epoll_ctl(W.wk_epfd, EPOLL_CTL_DEL, W.wk_master_fd, NULL);
	}
}

/* Each module's set-up, after the engine's, in the order given. */
static int
loop_modules_init(void)
{
	const struct worker_module *const *m;

	for (m = W.wk_mods; *m != NULL; m++)
		if ((*m)->wm_init != NULL && (*m)->wm_init() == -1) {
			LOG(LVL_ERROR, "module_failed",
			    KV_S("module", (*m)->wm_name));
			return -1;
		}
	return 0;
}

static int
worker_init(const struct config *cf, struct shm *shm, int slot,
    const struct listener *ls, int nls, int master_fd,
    const struct worker_module *const *mods)
{
	char	 err[256];
	int	 i;

	W.wk_cf = cf;
	peer_init(cf);
	W.wk_mods = mods;
	W.wk_resume = conn_resume;
	W.wk_shm = shm;
	W.wk_slot = &shm->sh_slots[slot];
	W.wk_num = W.wk_slot->sl_worker;
	W.wk_master_fd = master_fd;
	W.wk_master_ev.ev_fn = loop_master_event;
	worker_clock();
	usage_attach(W.wk_slot);
	if ((W.wk_epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		log_errorf("%s: epoll_create1: %s", __func__, strerror(errno));
		return -1;
	}
	for (i = 0; i < nls && i < 2 * CF_MAX_LISTEN; i++) {
		W.wk_ls[i].wl_ev.ev_fn = loop_listener_event;
		W.wk_ls[i].wl_fd = ls[i].li_fd;
		W.wk_ls[i].wl_tls = ls[i].li_tls;
		if (ls[i].li_tls && W.wk_tls == NULL &&
		    (W.wk_tls = tls_ctx_new(cf, err, sizeof(err))) == NULL) {
			LOG(LVL_ERROR, "tls_failed", KV_S("error", err));
			return -1;
		}
	}
	W.wk_nls = i;
	if (worker_ep_add(master_fd, EPOLLIN, &W.wk_master_ev) == -1)
		return -1;
	W.wk_cache = cache_open(cf->cf_cache_dir, cf->cf_cache_map_size, err,
	    sizeof(err));
	if (W.wk_cache == NULL)
		LOG(LVL_ERROR, "cache_open_failed", KV_S("error", err));
	W.wk_lookup = lookup_new(cf, W.wk_epfd);
	W.wk_pgq = pgq_new(cf, W.wk_epfd);
	dispatch_init();
	worker_sched(0, WORKER_SLICE_NS);
	/* Threads only now, after fork: fork copies only the calling one. */
	if ((W.wk_hashpool = hashpool_new(W.wk_epfd)) == NULL)
		LOG(LVL_ERROR, "hashpool_failed");
	if (loop_modules_init() == -1)
		return -1;
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
    const struct listener *ls, int nls, int master_fd,
    const struct worker_module *const *mods)
{
	struct epoll_event evs[128];
	int		 n, i;

	signals_init();
	if (worker_init(cf, shm, slot, ls, nls, master_fd, mods) == -1)
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
		worker_clock();
		for (i = 0; i < n; i++) {
			struct evsrc *src = evs[i].data.ptr;

			src->ev_fn(src, evs[i].events);
		}
		if (got_usr1) {
			got_usr1 = 0;
			log_reopen();
		}
		if (got_term)
			worker_stop_begin();
		usage_poll(W.wk_slot);
		worker_timers_run();
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

/*
 * The worker's state and the few things every file of the engine and its
 * modules needs from it: the clocks, the epoll set, the listeners' arming,
 * the timers, the scheduler hints, and the way back to a parked
 * connection.  It sits at the bottom of the worker: it calls no other file
 * of worker/, so the files above it form no cycle.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker/worker.h"

struct worker W;

void
worker_clock(void)
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

int
worker_ep_add(int fd, uint32_t events, struct evsrc *src)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	if (epoll_ctl(W.wk_epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_errorf("%s: epoll_ctl: %s", __func__, strerror(errno));
		return -1;
	}
	return 0;
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
			if (worker_ep_add(wl->wl_fd, EPOLLIN | EPOLLEXCLUSIVE,
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

int
worker_timer_add(worker_timer_fn fn, void *arg)
{
	if (W.wk_ntimers == WORKER_MAX_TIMERS) {
		log_errorf("%s: more than %d timers", __func__,
		    WORKER_MAX_TIMERS);
		return -1;
	}
	W.wk_timers[W.wk_ntimers].wt_fn = fn;
	W.wk_timers[W.wk_ntimers].wt_arg = arg;
	W.wk_ntimers++;
	return 0;
}

void
worker_timers_run(void)
{
	int	 i;

	for (i = 0; i < W.wk_ntimers; i++)
		W.wk_timers[i].wt_fn(W.wk_timers[i].wt_arg);
}

void
worker_pending_free(struct conn *c)
{
	struct pending	*pd = c->c_pending_data;

	if (pd == NULL)
		return;
	c->c_pending_data = NULL;
	pd->pd_free(pd);
}

enum handler_result
worker_pending_done(struct conn *c, enum handler_result r)
{
	if (r != HANDLER_PENDING)
		worker_pending_free(c);
	return r;
}

/* explicit_bzero: a wipe the compiler may not drop, at memset's speed
 * (an OAuth form's state is 5 KiB). */
void
worker_pending_wipe(struct pending *pd)
{
	explicit_bzero(pd, pd->pd_size);
	free(pd);
}

void
worker_resume(struct conn *c)
{
	W.wk_resume(c);
}

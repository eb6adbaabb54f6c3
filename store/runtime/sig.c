/*
 * Signals, for every process, from one table: a row per signal, a column
 * per process, saying what the signal does there.  The one handler only
 * sets the flag its process registered for that signal; the work happens in
 * the process's loop.  The master takes its signals with sigtimedwait
 * instead, so it installs no handler at all.
 */
#include <signal.h>
#include <stddef.h>
#include <string.h>

#include "store/runtime/runtime.h"

/* What a signal does in one process. */
enum {
	SE_KEEP,	/* untouched: default disposition (blocked in the master) */
	SE_WAIT,	/* master: blocked, taken by sigtimedwait */
	SE_TERM,	/* sets the process's stop flag */
	SE_REOPEN,	/* sets the process's reopen-the-logs flag */
	SE_WAKE,	/* caught and dropped: only interrupts the loop's sleep */
	SE_IGNORE	/* SIG_IGN */
};

struct sig_row {
	int	sr_sig;
	int	sr_act[SP_COUNT];	/* SE_*, by enum sig_proc */
};

static const struct sig_row sig_table[] = {
	/* signal	master	   worker	writer */
	{ SIGTERM, {	SE_WAIT,   SE_TERM,	SE_TERM } },	/* graceful stop */
	{ SIGINT, {	SE_WAIT,   SE_TERM,	SE_TERM } },	/* the same */
	{ SIGHUP, {	SE_WAIT,   SE_IGNORE,	SE_WAKE } },	/* reload */
	{ SIGUSR1, {	SE_WAIT,   SE_REOPEN,	SE_REOPEN } },	/* reopen logs */
	{ SIGCHLD, {	SE_WAIT,   SE_KEEP,	SE_KEEP } },	/* reap */
	{ SIGPIPE, {	SE_KEEP,   SE_IGNORE,	SE_IGNORE } },	/* EPIPE instead */
};

#define SIG_NROWS (sizeof(sig_table) / sizeof(sig_table[0]))

/*
 * The flag each caught signal sets.  Written by sig_child while every
 * signal is still blocked, before the handler is in place: the handler
 * never sees a half-written entry.
 */
static volatile sig_atomic_t *sig_flag[NSIG];

static void
sig_handler(int sig)
{
	if (sig > 0 && sig < NSIG && sig_flag[sig] != NULL)
		*sig_flag[sig] = 1;
}

void
sig_master(sigset_t *wait)
{
	sigset_t	 all;
	size_t		 i;

	/* Faults stay deliverable: blocked, they would kill without a core. */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigprocmask(SIG_BLOCK, &all, NULL);
	sigemptyset(wait);
	for (i = 0; i < SIG_NROWS; i++)
		if (sig_table[i].sr_act[SP_MASTER] == SE_WAIT)
			sigaddset(wait, sig_table[i].sr_sig);
}

void
sig_default_all(void)
{
	struct sigaction sa;
	int		 s;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (s = 1; s < NSIG; s++)
		sigaction(s, &sa, NULL);
}

/*
 * No SA_RESTART: a caught signal interrupts the poll or epoll_wait the
 * process sleeps in, so its loop sees the flag at once.  sigaction cannot
 * fail here: every signal in the table is valid and catchable.
 */
void
sig_child(int proc, volatile sig_atomic_t *term,
    volatile sig_atomic_t *reopen)
{
	struct sigaction sa;
	sigset_t	 none;
	size_t		 i;
	int		 act;

	for (i = 0; i < SIG_NROWS; i++) {
		if ((act = sig_table[i].sr_act[proc]) == SE_KEEP ||
		    act == SE_WAIT)
			continue;
		memset(&sa, 0, sizeof(sa));
		sigemptyset(&sa.sa_mask);
		sa.sa_handler = act == SE_IGNORE ? SIG_IGN : sig_handler;
		sig_flag[sig_table[i].sr_sig] = act == SE_TERM ? term :
		    act == SE_REOPEN ? reopen : NULL;
		sigaction(sig_table[i].sr_sig, &sa, NULL);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

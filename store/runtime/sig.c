/*
 * Signals, for every process: each process describes what its signals do
 * in one table (signal -> flag or action) and installs it here.  The one
 * handler only sets the flag the table names; the work happens in the
 * process's loop.  The master takes its signals with sigtimedwait instead,
 * so it installs no handler at all.
 */
#include <signal.h>
#include <stddef.h>
#include <string.h>

#include "store/runtime/runtime.h"

/*
 * The flag each caught signal sets.  Written by sig_install before the
 * handler is in place and while the signal is blocked, read by the handler:
 * the handler never sees a half-written entry.
 */
static volatile sig_atomic_t *sig_flag[NSIG];

static void
sig_handler(int sig)
{
	if (sig > 0 && sig < NSIG && sig_flag[sig] != NULL)
		*sig_flag[sig] = 1;
}

void
sig_block_all(void)
{
	sigset_t	 set;

	/* Faults stay deliverable: blocked, they would kill without a core. */
	sigfillset(&set);
	sigdelset(&set, SIGSEGV);
	sigdelset(&set, SIGBUS);
	sigdelset(&set, SIGFPE);
	sigdelset(&set, SIGILL);
	sigprocmask(SIG_BLOCK, &set, NULL);
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
 * process sleeps in, so its loop sees the flag at once.
 */
int
sig_install(const struct sig_entry *tab, size_t n, sigset_t *wait)
{
	struct sigaction sa;
	size_t		 i;

	if (wait != NULL)
		sigemptyset(wait);
	for (i = 0; i < n; i++) {
		if (tab[i].se_sig <= 0 || tab[i].se_sig >= NSIG)
			return -1;
		memset(&sa, 0, sizeof(sa));
		sigemptyset(&sa.sa_mask);
		switch (tab[i].se_act) {
		case SE_FLAG:
		case SE_WAKE:
			sig_flag[tab[i].se_sig] = tab[i].se_act == SE_FLAG ?
			    tab[i].se_flag : NULL;
			sa.sa_handler = sig_handler;
			break;
		case SE_IGNORE:
			sa.sa_handler = SIG_IGN;
			break;
		case SE_WAIT:
			if (wait == NULL || sigaddset(wait, tab[i].se_sig) == -1)
				return -1;
			continue;	/* stays blocked, no handler */
		default:
			return -1;
		}
		if (sigaction(tab[i].se_sig, &sa, NULL) == -1)
			return -1;
	}
	return 0;
}

void
sig_unblock_all(void)
{
	sigset_t	 none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * master: the supervisor (top of the house).  It reads the configuration,
 * opens the listeners, creates the shared segment, forks the workers and
 * the writer and supervises them; it serves nothing.
 *
 *   main.c       tokend's main(): the process model (see master/README.md).
 *   listen.c     TCP and unix: listeners, opened before fork.
 *   notify.c     the sd_notify protocol (systemd Type=notify).
 *
 * Contract: master only, before and between forks.  Children inherit the
 * listeners' descriptors (struct listener, store/runtime/runtime.h).
 */
#ifndef TOKEND_MASTER_H
#define TOKEND_MASTER_H

#include "store/runtime/runtime.h"

/* ---- Listeners (listen.c) --------------------------------------------- */

/*
 * Open (bind, listen, non-blocking, close-on-exec) every listen and
 * tls_listen address of cf.  Reuses sockets in old[0..nold) whose address
 * is unchanged, so a reload never drops a queued connection, and closes
 * those no longer configured (unlinking a unix: socket's path).  Returns the
 * count written to out (listen addresses first, then tls_listen), or -1 with
 * err set ("listen 127.0.0.1:8080: bind: Address already in use"); on error
 * nothing of old is closed and nothing newly opened is left open.  A stale
 * unix: socket file is removed only when nothing accepts on it.  A unix:
 * socket file gets listen_mode and listen_group (kept sockets too, so a
 * reload applies them).  Master only.
 */
int	listen_open(const struct config *cf, const struct listener *old,
	    int nold, struct listener *out, int maxout, char *err,
	    size_t errlen);

/* ---- systemd readiness (notify.c) ------------------------------------ */

/*
 * notify_init reads $NOTIFY_SOCKET once, at start; without it the others
 * do nothing.  Only the master sends (systemd's NotifyAccess=main).  notify_ready: READY=1
 * (the listeners are open and the children forked: a connection made now
 * is answered), with STATUS.  notify_reloading: RELOADING=1 and
 * MONOTONIC_USEC at SIGHUP, before re-reading; notify_ready again once the
 * reload is done (or refused).  notify_stopping: STOPPING=1 at SIGTERM.
 */
void	notify_init(void);
void	notify_ready(const struct config *cf);
void	notify_reloading(void);
void	notify_stopping(void);

#endif /* TOKEND_MASTER_H */

/*
 * The sd_notify protocol, spoken without libsystemd: one datagram of
 * "KEY=value" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path,
 * or "@name" for the abstract namespace).  systemd's Type=notify waits for
 * READY=1 before it calls the service started, and RELOADING=1 with
 * MONOTONIC_USEC lets `systemctl reload` wait for the reload to finish.
 * Without NOTIFY_SOCKET (not under systemd) every call does nothing.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "master/master.h"

static struct {
	struct sockaddr_un	 nt_addr;
	socklen_t		 nt_len;	/* 0: no NOTIFY_SOCKET */
	int			 nt_fd;
} N = { .nt_fd = -1 };

void
notify_init(void)
{
	const char	*path = getenv("NOTIFY_SOCKET");
	size_t		 len;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (len = strlen(path)) >= sizeof(N.nt_addr.sun_path) || len < 2)
		return;
	if ((N.nt_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1) {
		log_errorf("%s: socket: %s", __func__, strerror(errno));
		return;
	}
	N.nt_addr.sun_family = AF_UNIX;
	memcpy(N.nt_addr.sun_path, path, len);
	if (path[0] == '@')
		N.nt_addr.sun_path[0] = '\0';	/* abstract: no NUL at the end */
	/* Left in the environment: the children are forked, never exec'd,
	 * and only this process calls notify_send. */
	N.nt_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
	    (path[0] == '/'));
}

/* One message.  A lost datagram is logged; systemd's timeout does the rest. */
static void
notify_send(const char *msg)
{
	if (N.nt_len == 0)
		return;
	if (sendto(N.nt_fd, msg, strlen(msg), MSG_NOSIGNAL,
	    (struct sockaddr *)&N.nt_addr, N.nt_len) == -1)
		log_errorf("%s: sendto NOTIFY_SOCKET: %s", __func__,
		    strerror(errno));
}

void
notify_ready(const struct config *cf)
{
	char	 msg[CF_ADDR_LEN + 128];

	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving on %s with %d "
	    "worker%s\nMAINPID=%ld\n", cf->cf_nlisten ? cf->cf_listen[0] :
	    cf->cf_tls_listen[0], cf->cf_workers, cf->cf_workers == 1 ? "" :
	    "s", (long)getpid());
	notify_send(msg);
}

void
notify_reloading(void)
{
	struct timespec	 ts;
	char		 msg[128];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nSTATUS=reloading the "
	    "configuration\nMONOTONIC_USEC=%llu\n", (unsigned long long)
	    ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	notify_send(msg);
}

void
notify_stopping(void)
{
	notify_send("STOPPING=1\nSTATUS=stopping: finishing requests and "
	    "flushing usage\n");
}

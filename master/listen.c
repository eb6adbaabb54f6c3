/*
 * Listeners: parse the configured addresses and open the sockets the master
 * hands to every worker.  A reload (SIGHUP) passes the sockets it has, so an
 * address that stays configured keeps its socket and its accept queue.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"
#include "proto/proto.h"

/* The kernel caps this at net.core.somaxconn (4096 by default since 5.4). */
#define LISTEN_BACKLOG	4096

/*
 * A non-blocking, close-on-exec socket.  "*" (dual) takes IPv4 too; an
 * explicit [::] leaves 0.0.0.0 to a listener of its own.  Returns the fd,
 * or -1 with errno and *call naming what failed.
 */
static int
listen_socket(int family, int dual, const char **call)
{
	int	 fd, one = 1, v6only = !dual, saved;

	*call = "socket";
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	*call = "setsockopt";
	if (family != AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR,
	    &one, sizeof(one)) == -1)
		goto fail;
	if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
	    &v6only, sizeof(v6only)) == -1)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/*
 * A socket file left by a server that died still exists and refuses
 * connections.  Remove it only then: a live one is someone else's.
 * Returns 1 when it removed the file.
 */
static int
listen_unix_stale(const char *path)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	int			 fd, rc, saved;

	if (lstat(path, &st) == -1 || !S_ISSOCK(st.st_mode))
		return 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	saved = errno;
	close(fd);
	if (rc == -1 && saved == ECONNREFUSED)
		return unlink(path) == 0;
	return 0;
}

/*
 * A unix: socket file's access is its mode and group (listen_mode,
 * listen_group): whoever may connect may ask /auth and the OAuth
 * endpoints, so the default is 0660, not the 0777 bind would leave.
 */
static int
listen_unix_perm(const char *path, const struct config *cf,
    const char **call)
{
	gid_t	 gid;

	*call = "chmod";
	if (chmod(path, (mode_t)cf->cf_listen_mode) == -1)
		return -1;
	if (cf->cf_listen_group[0] == '\0')
		return 0;
	*call = "listen_group";
	if (config_group_gid(cf->cf_listen_group, &gid) == -1) {
		errno = ENOENT;
		return -1;
	}
	*call = "chown";
	return chown(path, (uid_t)-1, gid);
}

static int
listen_bind(int fd, const struct sockaddr_storage *ss, socklen_t sslen,
    const struct config *cf, const char **call)
{
	const struct sockaddr_un *sun = (const struct sockaddr_un *)ss;
	const struct sockaddr	 *sa = (const struct sockaddr *)ss;
	mode_t			 mask = 0;
	int			 rc;

	/* The file is born with listen_mode's bits at most, not 0777 until
	 * the chmod: the master is single-threaded, so umask is safe here. */
	if (ss->ss_family == AF_UNIX)
		mask = umask(~(mode_t)cf->cf_listen_mode & 0777);
	*call = "bind";
	rc = bind(fd, sa, sslen);
	if (rc == -1 && ss->ss_family == AF_UNIX && errno == EADDRINUSE) {
		if (listen_unix_stale(sun->sun_path))
			rc = bind(fd, sa, sslen);
		else
			errno = EADDRINUSE;
	}
	if (ss->ss_family == AF_UNIX) {
		int saved = errno;

		umask(mask);
		errno = saved;
	}
	if (rc == -1)
		return -1;
	if (ss->ss_family == AF_UNIX &&
	    listen_unix_perm(sun->sun_path, cf, call) == -1)
		return -1;
	*call = "listen";
	return listen(fd, LISTEN_BACKLOG);
}

/* "*" on a kernel without IPv6: the IPv4 any address, same port. */
static void
listen_any4(struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	in_port_t		 port;

	port = ((struct sockaddr_in6 *)ss)->sin6_port;
	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_ANY);
	sin->sin_port = port;
	*sslen = (socklen_t)sizeof(*sin);
}

static int
listen_one(const struct config *cf, const char *kind, const char *addr,
    int *fdp, char *err, size_t errlen)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	const char		*why, *call;
	int			 fd, saved, star = strncmp(addr, "*:", 2) == 0;

	if (addr_parse(addr, &ss, &sslen, &why) == -1) {
		snprintf(err, errlen, "%s %s: %s", kind, addr, why);
		return -1;
	}
	fd = listen_socket(ss.ss_family, star, &call);
	if (fd == -1 && errno == EAFNOSUPPORT && star) {
		listen_any4(&ss, &sslen);
		fd = listen_socket(AF_INET, 0, &call);
	}
	if (fd == -1 || listen_bind(fd, &ss, sslen, cf, &call) == -1)
		goto fail;
	*fdp = fd;
	return 0;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	snprintf(err, errlen, "%s %s: %s: %s", kind, addr, call,
	    strerror(saved));
	return -1;
}

static int
listen_in(const struct listener *set, int n, int fd)
{
	int	 i;

	for (i = 0; i < n; i++)
		if (set[i].li_fd == fd)
			return 1;
	return 0;
}

/* An old socket for addr not already taken into out[0..nout). */
static int
listen_find(const struct listener *old, int nold, const char *addr, int tls,
    const struct listener *out, int nout)
{
	int	 i;

	for (i = 0; i < nold; i++)
		if (old[i].li_tls == tls && strcmp(old[i].li_addr, addr) == 0 &&
		    !listen_in(out, nout, old[i].li_fd))
			return old[i].li_fd;
	return -1;
}

static int
listen_add(const struct config *cf, const char *addr, int tls,
    const struct listener *old, int nold, struct listener *out, int *nout,
    char *err, size_t errlen)
{
	struct listener	*li = &out[*nout];
	const char	*kind = tls ? "tls_listen" : "listen", *call;
	int		 fd;

	fd = listen_find(old, nold, addr, tls, out, *nout);
	if (fd == -1 && listen_one(cf, kind, addr, &fd, err, errlen) == -1)
		return -1;
	/* A kept unix: socket takes the reloaded mode and group. */
	if (fd != -1 && listen_in(old, nold, fd) &&
	    strncmp(addr, "unix:", 5) == 0 &&
	    listen_unix_perm(addr + 5, cf, &call) == -1) {
		snprintf(err, errlen, "%s %s: %s: %s", kind, addr, call,
		    strerror(errno));
		return -1;
	}
	li->li_fd = fd;
	li->li_tls = tls;
	snprintf(li->li_addr, sizeof(li->li_addr), "%s", addr);
	(*nout)++;
	return 0;
}

static void
listen_close(const struct listener *li)
{
	close(li->li_fd);
	if (strncmp(li->li_addr, "unix:", 5) == 0)
		unlink(li->li_addr + 5);
}

int
listen_open(const struct config *cf, const struct listener *old, int nold,
    struct listener *out, int maxout, char *err, size_t errlen)
{
	size_t	 i, want = cf->cf_nlisten + cf->cf_ntls_listen;
	int	 n = 0, rc = -1;

	if (want > (size_t)maxout) {
		snprintf(err, errlen, "listen: %zu addresses, room for %d",
		    want, maxout);
		return -1;
	}
	for (i = 0; i < cf->cf_nlisten; i++)
		if (listen_add(cf, cf->cf_listen[i], 0, old, nold, out, &n,
		    err, errlen) == -1)
			goto out;
	for (i = 0; i < cf->cf_ntls_listen; i++)
		if (listen_add(cf, cf->cf_tls_listen[i], 1, old, nold, out,
		    &n, err, errlen) == -1)
			goto out;
	for (i = 0; i < (size_t)nold; i++)
		if (!listen_in(out, n, old[i].li_fd))
			listen_close(&old[i]);
	rc = n;
out:
	/* On failure close only what this call opened; old stays intact. */
	while (rc == -1 && n-- > 0)
		if (!listen_in(old, nold, out[n].li_fd))
			listen_close(&out[n]);
	return rc;
}

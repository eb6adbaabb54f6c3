/*
 * Listen addresses (SPEC 7 listen, tls_listen): "host:port", "[v6]:port",
 * "*:port" and "unix:/path" into a socket address.  Pure: no socket is
 * made here (master/listen.c opens them), so the configuration can check
 * every address with the same parser.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static int
addr_port(const char *s, in_port_t *port)
{
	char		*end;
	unsigned long	 v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*port = htons((in_port_t)v);
	return 0;
}

static int
addr_parse_unix(const char *path, struct sockaddr_storage *ss,
    socklen_t *sslen, const char **why)
{
	struct sockaddr_un	*sun = (struct sockaddr_un *)ss;

	if (path[0] != '/' || strlen(path) >= sizeof(sun->sun_path)) {
		*why = "unix: needs an absolute path of at most 107 bytes";
		return -1;
	}
	sun->sun_family = AF_UNIX;
	strcpy(sun->sun_path, path);
	*sslen = (socklen_t)sizeof(*sun);
	return 0;
}

/* host is "*", "localhost" or an IPv4 literal; "[v6]" was handled above. */
static int
addr_parse_host(const char *host, in_port_t port,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	if (strcmp(host, "*") == 0) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_any;
		sin6->sin6_port = port;
		*sslen = (socklen_t)sizeof(*sin6);
		return 0;
	}
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		return -1;
	sin->sin_family = AF_INET;
	sin->sin_port = port;
	*sslen = (socklen_t)sizeof(*sin);
	return 0;
}

int
addr_parse(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen,
    const char **why)
{
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 host[ADDR_LEN];
	const char		*colon;
	in_port_t		 port;
	size_t			 hlen;

	memset(ss, 0, sizeof(*ss));
	if (strncmp(addr, "unix:", 5) == 0)
		return addr_parse_unix(addr + 5, ss, sslen, why);
	*why = "must be host:port, [ipv6]:port or unix:/path";
	if ((colon = strrchr(addr, ':')) == NULL)
		return -1;
	if (addr_port(colon + 1, &port) == -1) {
		*why = "port must be an integer from 1 to 65535";
		return -1;
	}
	hlen = (size_t)(colon - addr);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	*why = "host must be an IPv4 address, [IPv6 address], localhost or *";
	if (host[0] != '[')
		return addr_parse_host(host, port, ss, sslen);
	if (hlen < 3 || host[hlen - 1] != ']')
		return -1;
	host[hlen - 1] = '\0';
	if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
		return -1;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = port;
	*sslen = (socklen_t)sizeof(*sin6);
	return 0;
}

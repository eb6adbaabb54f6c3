/*
 * Listen addresses (SPEC 7 listen, tls_listen): "host:port", "[v6]:port",
 * "*:port" and "unix:/path" into a socket address.  Pure: no socket is
 * made here (master/listen.c opens them), so the configuration can check
 * every address with the same parser.
 *
 * Client addresses (SPEC 13): 16-byte addresses (IPv4 mapped into IPv6),
 * CIDR lists (trusted_proxies, a PAT's allowlist) and the X-Forwarded-For
 * walk.  No allocation: the worker calls them on the hit path.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
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

/* ---- client addresses and CIDRs ------------------------------------------ */

static const uint8_t ip_v4_mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

int
ip_is_v4(const uint8_t ip[IP_LEN])
{
	return memcmp(ip, ip_v4_mapped, sizeof(ip_v4_mapped)) == 0;
}

int
ip_is_none(const uint8_t ip[IP_LEN])
{
	static const uint8_t none[IP_LEN];

	return memcmp(ip, none, IP_LEN) == 0;
}

int
ip_parse(const char *s, size_t len, uint8_t ip[IP_LEN])
{
	char	 buf[IP_STR_LEN];

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, ip + 12) == 1) {
		memcpy(ip, ip_v4_mapped, sizeof(ip_v4_mapped));
		return 0;
	}
	return inet_pton(AF_INET6, buf, ip) == 1 ? 0 : -1;
}

void
ip_format(const uint8_t ip[IP_LEN], char *buf, size_t len)
{
	if (ip_is_v4(ip))
		inet_ntop(AF_INET, ip + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, ip, buf, (socklen_t)len);
}

/* Zero the bits of a past the first bits; 1 when some were set. */
static int
ip_mask(uint8_t a[IP_LEN], unsigned bits)
{
	unsigned	 i;
	int		 cut = 0;
	uint8_t		 keep;

	for (i = 0; i < IP_LEN; i++) {
		if (bits >= 8 * (i + 1))
			continue;
		keep = bits > 8 * i ? (uint8_t)(0xff00 >> (bits - 8 * i)) : 0;
		cut |= (a[i] & ~keep) != 0;
		a[i] &= keep;
	}
	return cut;
}

void
ip_network(const uint8_t ip[IP_LEN], struct cidr *net)
{
	memcpy(net->cr_addr, ip, IP_LEN);
	net->cr_bits = ip_is_v4(ip) ? 96 + 24 : 56;
	ip_mask(net->cr_addr, net->cr_bits);
}

int
cidr_parse(const char *s, struct cidr *cr, const char **why)
{
	const char	*slash = strchr(s, '/');
	size_t		 alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long	 bits;
	char		*end;
	unsigned	 max;

	*why = "must be an IPv4 or IPv6 address, with an optional /prefix";
	if (ip_parse(s, alen, cr->cr_addr) == -1)
		return -1;
	max = ip_is_v4(cr->cr_addr) ? 32 : 128;
	bits = max;
	if (slash != NULL) {
		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		errno = 0;
		bits = strtoul(slash + 1, &end, 10);
		if (errno != 0 || *end != '\0' || bits > max) {
			*why = "prefix length out of range";
			return -1;
		}
	}
	cr->cr_bits = (uint8_t)(bits + (128 - max));
	if (ip_mask(cr->cr_addr, cr->cr_bits)) {
		*why = "has bits set to the right of the prefix length";
		return -1;
	}
	return 0;
}

void
cidr_format(const struct cidr *cr, char *buf, size_t len)
{
	char	 a[IP_STR_LEN];
	int	 v4 = ip_is_v4(cr->cr_addr) && cr->cr_bits >= 96;

	ip_format(cr->cr_addr, a, sizeof(a));
	snprintf(buf, len, "%s/%u", a, cr->cr_bits - (v4 ? 96u : 0u));
}

int
cidr_list_append(char *out, size_t outlen, const char *s, const char **why)
{
	struct cidr	 cr;
	char		 one[IP_STR_LEN + 8];
	size_t		 off = strlen(out);

	if (cidr_parse(s, &cr, why) == -1)
		return -1;
	cidr_format(&cr, one, sizeof(one));
	if (off + 1 + strlen(one) >= outlen) {
		*why = "too many entries";
		return -1;
	}
	snprintf(out + off, outlen - off, "%s%s", off ? " " : "", one);
	return 0;
}

int
cidr_match(const struct cidr *cr, const uint8_t ip[IP_LEN])
{
	unsigned	 whole = cr->cr_bits / 8, rest = cr->cr_bits % 8;

	if (memcmp(cr->cr_addr, ip, whole) != 0)
		return 0;
	return rest == 0 || ((cr->cr_addr[whole] ^ ip[whole]) &
	    (uint8_t)(0xff00 >> rest)) == 0;
}

int
cidr_match_any(const struct cidr *list, size_t n, const uint8_t ip[IP_LEN])
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (cidr_match(&list[i], ip))
			return 1;
	return 0;
}

int
cidr_list_parse(const char *list, struct cidr *out, size_t max,
    const char **why, char *bad, size_t badlen)
{
	const char	*p = list, *e;
	char		 one[IP_STR_LEN + 8];
	size_t		 n = 0, len;

	for (;;) {
		p += strspn(p, ", \t");
		if (*p == '\0')
			return (int)n;
		e = p + strcspn(p, ", \t");
		len = (size_t)(e - p);
		snprintf(bad, badlen, "%.*s", (int)len, p);
		if (n == max) {
			*why = "too many entries";
			return -1;
		}
		if (len >= sizeof(one)) {
			*why = "must be an IPv4 or IPv6 address, with an "
			    "optional /prefix";
			return -1;
		}
		memcpy(one, p, len);
		one[len] = '\0';
		if (cidr_parse(one, &out[n], why) == -1)
			return -1;
		n++;
		p = e;
	}
}

/* The next list entry from the right of s[0..*end), trimmed; -1 at none. */
static int
xff_prev(const char *s, size_t *end, const char **ep, size_t *elen)
{
	size_t	 e = *end, b;

	if (e == 0)
		return -1;
	b = e;
	while (b > 0 && s[b - 1] != ',')
		b--;
	*end = b > 0 ? b - 1 : 0;
	while (b < e && (s[b] == ' ' || s[b] == '\t'))
		b++;
	while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
		e--;
	*ep = s + b;
	*elen = e - b;
	return 0;
}

int
ip_forwarded(const struct http_str *xff, size_t n,
    const struct cidr *trusted, size_t ntrusted, uint8_t ip[IP_LEN])
{
	uint8_t		 cand[IP_LEN];
	const char	*ep;
	size_t		 elen, end;
	int		 have = 0;

	while (n-- > 0) {
		end = xff[n].s_len;
		while (xff_prev(xff[n].s_ptr, &end, &ep, &elen) == 0) {
			if (ip_parse(ep, elen, cand) == -1)
				return have ? 0 : -1;
			memcpy(ip, cand, IP_LEN);
			have = 1;
			if (!cidr_match_any(trusted, ntrusted, cand))
				return 0;
		}
	}
	return have ? 0 : -1;
}

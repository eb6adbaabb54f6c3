/*
 * The client address of a request (SPEC 13): the socket's peer, or, when
 * the peer is inside trusted_proxies, the address its X-Forwarded-For (the
 * rightmost one not itself a trusted proxy) or X-Real-IP names.  A peer
 * outside the list is never believed: whatever it sends in those headers
 * is ignored, so a client cannot pick the address its uses are recorded
 * under or slip past a PAT's allowlist.
 *
 * The peer's own address and whether it is trusted are worked out once,
 * at accept; a request from an untrusted peer then costs one 16-byte copy.
 * A unix-socket peer has no address (the token's allowlist refuses it, no
 * last_used_ip is recorded).
 *
 * peer_canary says what is known of the client that presented a canary
 * PAT: one log line written by the worker itself (one write(2), as every
 * line; nothing waits on PostgreSQL or the writer), so it is out within
 * the request.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "worker/worker.h"

#define PEER_UA_MAX	256	/* user agent and path in canary_token_used */

static struct cidr	peer_proxies[IP_MAX_PROXIES];
static size_t		peer_nproxies;

void
peer_init(const struct config *cf)
{
	const char	*why;
	char		 bad[64];
	int		 n;

	/* config.c validated the list: this parse cannot fail. */
	n = cidr_list_parse(cf->cf_trusted_proxies, peer_proxies,
	    IP_MAX_PROXIES, &why, bad, sizeof(bad));
	peer_nproxies = n > 0 ? (size_t)n : 0;
}

void
peer_accept(struct conn *c, const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*sin = (const void *)ss;
	const struct sockaddr_in6	*sin6 = (const void *)ss;

	c->c_peer_has_ip = 1;
	if (ss->ss_family == AF_INET) {
		memset(c->c_peer_ip, 0, 10);
		c->c_peer_ip[10] = c->c_peer_ip[11] = 0xff;
		memcpy(c->c_peer_ip + 12, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6)
		memcpy(c->c_peer_ip, &sin6->sin6_addr, IP_LEN);
	else {
		memset(c->c_peer_ip, 0, IP_LEN);
		c->c_peer_has_ip = 0;
	}
	c->c_peer_trusted = c->c_peer_has_ip &&
	    cidr_match_any(peer_proxies, peer_nproxies, c->c_peer_ip);
}

/* The forwarded address of a trusted peer's request: 0, or -1 for none. */
static int
peer_forwarded(const struct http_req *rq, uint8_t ip[IP_LEN])
{
	struct http_str	 xff[8];
	const struct http_str *h;
	size_t		 i, n = 0;

	for (i = 0; i < rq->rq_nheaders && n < 8; i++)
		if (rq->rq_headers[i].h_name.s_len == 15 &&
		    strncasecmp(rq->rq_headers[i].h_name.s_ptr,
		    "X-Forwarded-For", 15) == 0)
			xff[n++] = rq->rq_headers[i].h_value;
	if (n > 0)
		return ip_forwarded(xff, n, peer_proxies, peer_nproxies, ip);
	if ((h = http_header_get(rq, "X-Real-IP")) != NULL)
		return ip_parse(h->s_ptr, h->s_len, ip);
	return -1;
}

int
peer_client(const struct conn *c, uint8_t ip[IP_LEN])
{
	if (c->c_peer_trusted && peer_forwarded(&c->c_req, ip) == 0)
		return 0;
	memcpy(ip, c->c_peer_ip, IP_LEN);
	return c->c_peer_has_ip ? 0 : -1;
}

void
peer_client_str(const struct conn *c, char buf[IP_STR_LEN])
{
	uint8_t	 ip[IP_LEN];

	if (peer_client(c, ip) == 0)
		ip_format(ip, buf, IP_STR_LEN);
	else
		snprintf(buf, IP_STR_LEN, "unix");
}

const char *
peer_name(struct conn *c)
{
	peer_client_str(c, c->c_client);
	return c->c_client;
}

void
peer_canary(struct conn *c, const struct tok_info *ti)
{
	const struct http_str *ua = http_header_get(&c->c_req, "User-Agent");
	char	 addr[IP_STR_LEN], agent[PEER_UA_MAX + 1], path[PEER_UA_MAX + 1];

	ctr_add(&W.wk_slot->sl_canary_hits, 1);
	peer_client_str(c, addr);
	/* The log escapes what it writes; these bound the line. */
	snprintf(agent, sizeof(agent), "%.*s", ua ? (int)ua->s_len : 0,
	    ua ? ua->s_ptr : "");
	snprintf(path, sizeof(path), "%.*s", (int)c->c_req.rq_path.s_len,
	    c->c_req.rq_path.s_ptr);
	LOG(LVL_WARN, "canary_token_used", KV_I("token_id", ti->ti_id),
	    KV_S("user", ti->ti_user), KV_S("address", addr),
	    KV_S("user_agent", agent), KV_S("path", path));
}

/*
 * proto/http.c: the strict request head parser.  Each test is a request a
 * client or an attacker could send, and the status tokend must answer.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

#define MAX_BODY 65536

static struct http_req req;

static int
parse_n(const char *s, size_t n)
{
	return http_parse_request(s, n, MAX_BODY, &req);
}

static int
parse(const char *s)
{
	return parse_n(s, strlen(s));
}

/* Every shorter prefix must say "more" or give the whole's own error. */
static void
assert_split_consistent(const char *s, size_t n)
{
	struct http_req	r;
	size_t		i;
	int		whole, part;

	whole = http_parse_request(s, n, MAX_BODY, &r);
	for (i = 0; i < n; i++) {
		part = http_parse_request(s, i, MAX_BODY, &r);
		cr_assert(part == 0 || part == whole,
		    "prefix %zu gave %d, whole %d", i, part, whole);
	}
}

Test(http, get_ok)
{
	const char *s = "GET /auth?scope=a%20b HTTP/1.1\r\n"
	    "Host: auth.example\r\n"
	    "Authorization:   Bearer tka_x  \r\n"
	    "\r\n";

	cr_assert_eq(parse(s), (int)strlen(s));
	cr_assert_eq(req.rq_method, HTTP_GET);
	cr_assert(http_str_eq(req.rq_method_str, "GET"));
	cr_assert(http_str_eq(req.rq_target, "/auth?scope=a%20b"));
	cr_assert(http_str_eq(req.rq_path, "/auth"));
	cr_assert(http_str_eq(req.rq_query, "scope=a%20b"));
	cr_assert_eq(req.rq_minor, 1);
	cr_assert_eq(req.rq_keepalive, 1);
	cr_assert_eq(req.rq_has_body, 0);
	cr_assert_eq(req.rq_content_length, 0);
	cr_assert_eq(req.rq_header_bytes, strlen(s));
	cr_assert_eq(req.rq_nheaders, 2);
	cr_assert(http_str_eq(req.rq_host, "auth.example"));
	/* Leading and trailing OWS are not part of the value. */
	cr_assert(http_str_eq(req.rq_authorization, "Bearer tka_x"));
	cr_assert_null(req.rq_content_type.s_ptr);
}

Test(http, get_no_query_has_empty_query)
{
	cr_assert_gt(parse("GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(http_str_eq(req.rq_path, "/healthz"));
	cr_assert_not_null(req.rq_query.s_ptr);
	cr_assert_eq(req.rq_query.s_len, 0);
	cr_assert(http_str_eq(req.rq_query, ""));
}

Test(http, query_split_at_first_question_mark)
{
	cr_assert_gt(parse("GET /a?b=c?d HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(http_str_eq(req.rq_path, "/a"));
	cr_assert(http_str_eq(req.rq_query, "b=c?d"));
}

Test(http, post_with_body)
{
	const char *head = "POST /token HTTP/1.1\r\n"
	    "Host: h\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Content-Length: 18\r\n"
	    "\r\n";
	char buf[256];

	snprintf(buf, sizeof(buf), "%sgrant_type=passwo", head);
	/* The head is complete even though the body is not. */
	cr_assert_eq(parse(buf), (int)strlen(head));
	cr_assert_eq(req.rq_method, HTTP_POST);
	cr_assert_eq(req.rq_has_body, 1);
	cr_assert_eq(req.rq_content_length, 18);
	cr_assert(http_str_eq(req.rq_content_type,
	    "application/x-www-form-urlencoded"));
}

Test(http, zero_length_body)
{
	cr_assert_gt(parse("POST /revoke HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 0\r\n\r\n"), 0);
	cr_assert_eq(req.rq_has_body, 1);
	cr_assert_eq(req.rq_content_length, 0);
}

Test(http, methods)
{
	static const struct {
		const char	*m;
		enum http_method e;
	} t[] = {
		{ "GET", HTTP_GET }, { "HEAD", HTTP_HEAD },
		{ "DELETE", HTTP_DELETE }, { "OPTIONS", HTTP_OPTIONS },
		{ "PURGE", HTTP_OTHER }, { "get", HTTP_OTHER },
		{ "Get", HTTP_OTHER }, { "GETX", HTTP_OTHER },
	};
	char	buf[128];
	size_t	i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: h\r\n\r\n",
		    t[i].m);
		cr_assert_gt(parse(buf), 0, "%s", t[i].m);
		cr_assert_eq(req.rq_method, t[i].e, "%s", t[i].m);
		cr_assert(http_str_eq(req.rq_method_str, t[i].m));
	}
	cr_assert_gt(parse("PUT /x HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 1\r\n\r\n"), 0);
	cr_assert_eq(req.rq_method, HTTP_PUT);
	cr_assert_gt(parse("PATCH /x HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 1\r\n\r\n"), 0);
	cr_assert_eq(req.rq_method, HTTP_PATCH);
}

Test(http, keepalive_rules)
{
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert_eq(req.rq_keepalive, 1);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "Connection: close\r\n\r\n"), 0);
	cr_assert_eq(req.rq_keepalive, 0);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "Connection: Upgrade ,  CLOSE \r\n\r\n"), 0);
	cr_assert_eq(req.rq_keepalive, 0);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "Connection: closed\r\n\r\n"), 0);
	cr_assert_eq(req.rq_keepalive, 1);

	/* HTTP/1.0: off unless asked for, and Host is optional. */
	cr_assert_gt(parse("GET / HTTP/1.0\r\n\r\n"), 0);
	cr_assert_eq(req.rq_minor, 0);
	cr_assert_eq(req.rq_keepalive, 0);
	cr_assert_gt(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
	    0);
	cr_assert_eq(req.rq_keepalive, 1);
	cr_assert_gt(parse("GET / HTTP/1.0\r\nConnection: te\r\n"
	    "Connection: keep-alive\r\n\r\n"), 0);
	cr_assert_eq(req.rq_keepalive, 1);
	cr_assert_gt(parse("GET / HTTP/1.0\r\n"
	    "Connection: keep-alive, close\r\n\r\n"), 0);
	cr_assert_eq(req.rq_keepalive, 0);
}

Test(http, pipelined)
{
	const char *a = "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n";
	const char *b = "POST /revoke HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 5\r\n\r\n";
	const char *c = "GET /readyz HTTP/1.1\r\nHost: h\r\n\r\n";
	char	buf[512];
	size_t	off;
	int	n;

	snprintf(buf, sizeof(buf), "%s%stoken%s", a, b, c);
	n = parse(buf);
	cr_assert_eq(n, (int)strlen(a));
	cr_assert(http_str_eq(req.rq_path, "/healthz"));
	off = (size_t)n;
	n = parse(buf + off);
	cr_assert_eq(n, (int)strlen(b));
	cr_assert(http_str_eq(req.rq_path, "/revoke"));
	off += (size_t)n + req.rq_content_length;
	n = parse(buf + off);
	cr_assert_eq(n, (int)strlen(c));
	cr_assert(http_str_eq(req.rq_path, "/readyz"));
}

Test(http, split_at_every_byte)
{
	static const char *t[] = {
		"GET /auth HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer x\r\n\r\n",
		"\r\n\r\nPOST /token HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
		"GET / HTTP/2.0x\r\nHost: h\r\n\r\n",
		"GE\x01T / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
		"GET / HTTP/1.1\r\r\n\r\n",
	};
	size_t	i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_split_consistent(t[i], strlen(t[i]));
}

Test(http, split_consistent_near_limit)
{
	char	*buf;
	size_t	 n = HTTP_MAX_HEADER_BYTES + 64;

	/* A head that ends just past the limit: -431 at every long prefix. */
	buf = malloc(n);
	cr_assert_not_null(buf);
	memset(buf, 'a', n);
	memcpy(buf, "GET / HTTP/1.1\r\nHost: h\r\nX: ", 28);
	memcpy(buf + HTTP_MAX_HEADER_BYTES - 2, "\r\n\r\n", 4);
	cr_assert_eq(http_parse_request(buf, HTTP_MAX_HEADER_BYTES + 2,
	    MAX_BODY, &req), -431);
	assert_split_consistent(buf, HTTP_MAX_HEADER_BYTES + 2);
	free(buf);
}

Test(http, leading_empty_lines)
{
	const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";

	cr_assert_eq(parse(s), (int)strlen(s));
	cr_assert_eq(req.rq_header_bytes, strlen(s));
	cr_assert(http_str_eq(req.rq_path, "/"));
	cr_assert_eq(parse("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n"
	    "Host: h\r\n\r\n"), -400);
	cr_assert_eq(parse("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("\r\n\r"), 0);
}

/* A head of exactly n bytes with one padded field. */
static char *
head_of(size_t n, int complete)
{
	const char	*pre = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
	char		*buf;

	buf = malloc(n);
	cr_assert_not_null(buf);
	memset(buf, 'p', n);
	memcpy(buf, pre, strlen(pre));
	if (complete)
		memcpy(buf + n - 4, "\r\n\r\n", 4);
	return buf;
}

Test(http, head_size_limit)
{
	char	*buf;

	buf = head_of(HTTP_MAX_HEADER_BYTES, 1);
	cr_assert_eq(parse_n(buf, HTTP_MAX_HEADER_BYTES),
	    HTTP_MAX_HEADER_BYTES);
	free(buf);

	buf = head_of(HTTP_MAX_HEADER_BYTES + 1, 1);
	cr_assert_eq(parse_n(buf, HTTP_MAX_HEADER_BYTES + 1), -431);
	free(buf);

	/* Incomplete: wait below the limit, refuse at it. */
	buf = head_of(HTTP_MAX_HEADER_BYTES + 100, 0);
	cr_assert_eq(parse_n(buf, HTTP_MAX_HEADER_BYTES - 1), 0);
	cr_assert_eq(parse_n(buf, HTTP_MAX_HEADER_BYTES), -431);
	cr_assert_eq(parse_n(buf, HTTP_MAX_HEADER_BYTES + 100), -431);
	free(buf);

	/* An endless request line is refused the same way. */
	buf = malloc(HTTP_MAX_HEADER_BYTES);
	cr_assert_not_null(buf);
	memset(buf, 'a', HTTP_MAX_HEADER_BYTES);
	memcpy(buf, "GET /", 5);
	cr_assert_eq(parse_n(buf, HTTP_MAX_HEADER_BYTES - 1), 0);
	cr_assert_eq(parse_n(buf, HTTP_MAX_HEADER_BYTES), -431);
	free(buf);
}

static char *
with_headers(int n)
{
	char	*buf;
	size_t	 off;
	int	 i;

	buf = malloc(4096);
	cr_assert_not_null(buf);
	off = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (i = 1; i < n; i++)
		off += (size_t)sprintf(buf + off, "X-%d: v\r\n", i);
	sprintf(buf + off, "\r\n");
	return buf;
}

Test(http, header_count_limit)
{
	char	*buf;

	buf = with_headers(HTTP_MAX_HEADERS);
	cr_assert_gt(parse(buf), 0);
	cr_assert_eq(req.rq_nheaders, HTTP_MAX_HEADERS);
	free(buf);
	buf = with_headers(HTTP_MAX_HEADERS + 1);
	cr_assert_eq(parse(buf), -431);
	free(buf);
}

Test(http, body_limit)
{
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 65536\r\n\r\n"), 0);
	cr_assert_eq(req.rq_content_length, 65536);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 65537\r\n\r\n"), -413);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 18446744073709551615\r\n\r\n"), -413);
}

Test(http, bad_line_endings)
{
	cr_assert_eq(parse("GET / HTTP/1.1\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\n\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\r-Y: b\r\n\r\n"),
	    -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n"), -400);
	/* A bare LF in the request line is refused before the head ends. */
	cr_assert_eq(parse("GET / HTTP/1.1\n"), -400);
}

Test(http, bad_header_fields)
{
	static const char nul[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0z\r\n\r\n";

	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n"),
	    -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"),
	    -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX(y): v\r\n\r\n"),
	    -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n"),
	    -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n"),
	    -400);
	cr_assert_eq(parse_n(nul, sizeof(nul) - 1), -400);
	/* obs-text and inner whitespace are allowed in values. */
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9 \t au "
	    "lait\r\nEmpty:\r\n\r\n"), 0);
	cr_assert(http_str_eq(*http_header_get(&req, "x"),
	    "caf\xc3\xa9 \t au lait"));
	cr_assert(http_str_eq(*http_header_get(&req, "EMPTY"), ""));
}

Test(http, bad_request_line)
{
	cr_assert_eq(parse("G@T / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET /\r\nHost: h\r\n\r\n"), -400);
	/* origin-form and absolute-form only: not authority-form or '*'. */
	cr_assert_eq(parse("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
	    -400);
	cr_assert_eq(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET /a\x80 HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), -400);
	/* Garbage (a TLS ClientHello) is refused before any CRLF arrives. */
	cr_assert_eq(parse_n("\x16\x03\x01\x02\x00\x01", 6), -400);
	cr_assert_eq(parse("GET /\x01"), -400);
}

Test(http, versions)
{
	cr_assert_eq(parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), -505);
	cr_assert_eq(parse("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), -505);
	cr_assert_eq(parse("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), -505);
	cr_assert_eq(parse("GET / http/1.1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/11\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1\r\nHost: h\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1"), 0);
}

Test(http, host_rules)
{
	cr_assert_eq(parse("GET / HTTP/1.1\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nX: y\r\n\r\n"), -400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
	    -400);
	cr_assert_eq(parse("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
	    -400);
	cr_assert_gt(parse("GET / HTTP/1.1\r\nHOST: a\r\n\r\n"), 0);
	cr_assert(http_str_eq(req.rq_host, "a"));
}

Test(http, duplicate_singletons)
{
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n"),
	    -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
	    "Content-Type: a/b\r\nContent-Type: c/d\r\n\r\n"), -400);
}

Test(http, content_length_rules)
{
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
	    "Content-Length: 5\r\n\r\n"), -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
	    "Content-Length: 6\r\n\r\n"), -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: +5\r\n\r\n"), -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: -1\r\n\r\n"), -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 5 5\r\n\r\n"), -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 5,5\r\n\r\n"), -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length:\r\n\r\n"), -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 0x10\r\n\r\n"), -400);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 99999999999999999999999\r\n\r\n"), -400);
	cr_assert_gt(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "content-length:  007 \r\n\r\n"), 0);
	cr_assert_eq(req.rq_content_length, 7);
}

Test(http, body_framing)
{
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n"), -501);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"), -501);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "transfer-encoding: identity\r\n\r\n"), -501);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n\r\n"), -411);
	cr_assert_eq(parse("PUT / HTTP/1.1\r\nHost: h\r\n\r\n"), -411);
	cr_assert_eq(parse("PATCH / HTTP/1.0\r\n\r\n"), -411);
	cr_assert_gt(parse("DELETE /pats/1 HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert_eq(req.rq_has_body, 0);
}

Test(http, header_lookup_and_compare)
{
	struct http_str	absent = { NULL, 0 };

	cr_assert_gt(parse("GET / HTTP/1.1\r\nHost: h\r\nX-Req-Id: 42\r\n\r\n"),
	    0);
	cr_assert(http_str_eq(*http_header_get(&req, "x-req-id"), "42"));
	cr_assert(http_str_eq(*http_header_get(&req, "X-REQ-ID"), "42"));
	cr_assert_null(http_header_get(&req, "x-req"));
	cr_assert_null(http_header_get(&req, "x-req-id2"));
	cr_assert(http_str_eq_ci(req.rq_host, "H"));
	cr_assert_not(http_str_eq(req.rq_host, "H"));
	cr_assert_not(http_str_eq_ci(absent, ""));
	cr_assert_not(http_str_eq(absent, ""));
}

Test(http, reasons)
{
	cr_assert_str_eq(http_reason(200), "OK");
	cr_assert_str_eq(http_reason(204), "No Content");
	cr_assert_str_eq(http_reason(400), "Bad Request");
	cr_assert_str_eq(http_reason(401), "Unauthorized");
	cr_assert_str_eq(http_reason(404), "Not Found");
	cr_assert_str_eq(http_reason(405), "Method Not Allowed");
	cr_assert_str_eq(http_reason(411), "Length Required");
	cr_assert_str_eq(http_reason(413), "Content Too Large");
	cr_assert_str_eq(http_reason(429), "Too Many Requests");
	cr_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
	cr_assert_str_eq(http_reason(501), "Not Implemented");
	cr_assert_str_eq(http_reason(503), "Service Unavailable");
	cr_assert_str_eq(http_reason(505), "HTTP Version Not Supported");
	cr_assert_str_eq(http_reason(299), "Unknown");
	cr_assert_str_eq(http_reason(-1), "Unknown");
}

Test(http, absolute_form_is_routed_by_its_path)
{
	const char *s = "GET http://127.0.0.1:8080/auth?scope=x HTTP/1.1\r\n"
	    "Host: other.example\r\n\r\n";

	cr_assert_eq(parse(s), (int)strlen(s));
	assert_split_consistent(s, strlen(s));
	cr_assert(http_str_eq(req.rq_path, "/auth"));
	cr_assert(http_str_eq(req.rq_query, "scope=x"));
	/* RFC 9112 3.2.2: the target's authority stands for Host. */
	cr_assert(http_str_eq(req.rq_host, "127.0.0.1:8080"));
	cr_assert(http_str_eq(req.rq_target,
	    "http://127.0.0.1:8080/auth?scope=x"));

	cr_assert_gt(parse("GET HTTPS://[::1]:443/a/b HTTP/1.1\r\n"
	    "Host: h\r\n\r\n"), 0);
	cr_assert(http_str_eq(req.rq_path, "/a/b"));
	cr_assert(http_str_eq(req.rq_host, "[::1]:443"));
	/* An empty path is "/". */
	cr_assert_gt(parse("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(http_str_eq(req.rq_path, "/"));
	cr_assert(http_str_eq(req.rq_query, ""));
	cr_assert_gt(parse("GET http://h?a=1 HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(http_str_eq(req.rq_path, "/"));
	cr_assert(http_str_eq(req.rq_query, "a=1"));
	/* HTTP/1.0 needs no Host; the authority is the host. */
	cr_assert_gt(parse("GET http://a.example/x HTTP/1.0\r\n\r\n"), 0);
	cr_assert(http_str_eq(req.rq_host, "a.example"));
}

Test(http, absolute_form_refused)
{
	static const char *const bad[] = {
		"ftp://h/x", "http:/h/x", "http://", "http:///x",
		"http://u@h/x", "http://h:8x/", "http://[::1/x",
		"http://[]/x", "http://h%2/x", "http//h/x", "h", "*",
		"http://h\"/x", "http://h{/x",
	};
	char	buf[256];
	size_t	i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n",
		    bad[i]);
		cr_assert_eq(parse(buf), -400, "%s", bad[i]);
		assert_split_consistent(buf, strlen(buf));
	}
	/* HTTP/1.1 still needs its Host header (RFC 9112 3.2). */
	cr_assert_eq(parse("GET http://h/ HTTP/1.1\r\n\r\n"), -400);
}

/* A request for / with the given Host value.  The buffer is static: req's
 * slices point into it after the call. */
static int
parse_host(const char *host)
{
	static char	buf[256];

	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
	return parse(buf);
}

Test(http, host_values)
{
	static const char *const good[] = {
		"h", "auth.example:8080", "127.0.0.1", "[::1]:8080", "[::1]",
		"a%20b", "h:", "", "x-y_z~!$&'()*+,;=",
	};
	static const char *const bad[] = {
		"a b", "a/b", "a@b", "h:x", "h:1:2", "%zz", "%2", "[::1",
		"[::1]x", "[]", ":80", "a\"b", "a\\b", "\xc3\xa9",
	};
	size_t	i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cr_assert_gt(parse_host(good[i]), 0, "%s", good[i]);
		cr_assert(http_str_eq(req.rq_host, good[i]));
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(parse_host(bad[i]), -400, "%s", bad[i]);
}

Test(http, response_field_checks)
{
	static const struct {
		const char	*s;
		size_t		 n;
		int		 name_ok, value_ok;
	} cases[] = {
		{ "WWW-Authenticate", 16, 1, 1 },
		{ "Bearer realm=\"tokend\"", 21, 0, 1 },
		{ "", 0, 0, 1 },
		{ "X-A b", 5, 0, 1 },
		{ "X-A:", 4, 0, 1 },
		{ "a\tb \x01\x7f\xff", 7, 0, 1 },
		{ "admin\r\nSet-Cookie: a=b", 23, 0, 0 },
		{ "a\rb", 3, 0, 0 },
		{ "a\nb", 3, 0, 0 },
		{ "a\0b", 3, 0, 0 },
	};
	size_t	i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(http_field_name_ok(cases[i].s, cases[i].n),
		    cases[i].name_ok, "%zu", i);
		cr_assert_eq(http_field_value_ok(cases[i].s, cases[i].n),
		    cases[i].value_ok, "%zu", i);
	}
}

Test(http, method_names)
{
	cr_assert_str_eq(http_method_name(HTTP_GET), "GET");
	cr_assert_str_eq(http_method_name(HTTP_PATCH), "PATCH");
	cr_assert_str_eq(http_method_name(HTTP_OTHER), "-");
}

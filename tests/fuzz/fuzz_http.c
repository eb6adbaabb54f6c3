/*
 * libFuzzer target for http_parse_request.  Beyond "no crash", it checks
 * what the worker relies on: every slice lies inside the head, the head
 * ends in CRLFCRLF within the limit, and a shorter prefix never gives an
 * answer other than "more" or the whole input's own answer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/proto.h"

#define MAX_BODY 65536

static void
check_slice(struct http_str s, const char *buf, size_t n, int may_be_null)
{
	if (s.s_ptr == NULL) {
		if (!may_be_null || s.s_len != 0)
			abort();
		return;
	}
	if (s.s_ptr < buf || s.s_ptr > buf + n ||
	    s.s_len > (size_t)(buf + n - s.s_ptr))
		abort();
}

/* Field values: VCHAR, obs-text, SP, HTAB; no OWS at either end. */
static void
check_value(struct http_str v)
{
	size_t		i;
	unsigned char	c;

	for (i = 0; i < v.s_len; i++) {
		c = (unsigned char)v.s_ptr[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			abort();
	}
	if (v.s_len > 0 && (v.s_ptr[0] == ' ' || v.s_ptr[0] == '\t' ||
	    v.s_ptr[v.s_len - 1] == ' ' || v.s_ptr[v.s_len - 1] == '\t'))
		abort();
}

/* Field names: tokens (RFC 9110 5.6.2). */
static void
check_name(struct http_str n)
{
	size_t		i;
	unsigned char	c;

	if (n.s_len == 0)
		abort();
	for (i = 0; i < n.s_len; i++) {
		c = (unsigned char)n.s_ptr[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) !=
		    NULL) || c == '\0')
			abort();
	}
}

/*
 * origin-form: the path starts the target.  absolute-form: an http(s) URI
 * whose path ("/" when empty) and query end the target, and whose
 * authority is the host.
 */
static void
check_target(const struct http_req *r)
{
	const char	*t = r->rq_target.s_ptr, *end;

	end = t + r->rq_target.s_len;
	if (r->rq_target.s_len == 0 || r->rq_path.s_len == 0 ||
	    r->rq_path.s_ptr[0] != '/' ||
	    memchr(r->rq_path.s_ptr, '?', r->rq_path.s_len) != NULL ||
	    r->rq_query.s_ptr + r->rq_query.s_len != end)
		abort();
	if (t[0] == '/') {
		if (r->rq_path.s_ptr != t)
			abort();
		return;
	}
	if (strncasecmp(t, "http", 4) != 0 || r->rq_host.s_ptr == NULL ||
	    r->rq_host.s_ptr < t || r->rq_host.s_ptr + r->rq_host.s_len > end ||
	    memchr(r->rq_host.s_ptr, '@', r->rq_host.s_len) != NULL ||
	    memchr(r->rq_host.s_ptr, '/', r->rq_host.s_len) != NULL)
		abort();
}

static void
check_complete(const char *buf, size_t len, int rc, const struct http_req *r)
{
	size_t	n = (size_t)rc, i;

	if (n > len || n > HTTP_MAX_HEADER_BYTES || n != r->rq_header_bytes ||
	    n < 4 || memcmp(buf + n - 4, "\r\n\r\n", 4) != 0)
		abort();
	if (r->rq_nheaders > HTTP_MAX_HEADERS || (r->rq_minor != 0 &&
	    r->rq_minor != 1) || (r->rq_keepalive != 0 && r->rq_keepalive != 1))
		abort();
	if (r->rq_has_body ? r->rq_content_length > MAX_BODY :
	    r->rq_content_length != 0)
		abort();
	if (r->rq_minor == 1 && r->rq_host.s_ptr == NULL)
		abort();
	check_slice(r->rq_method_str, buf, n, 0);
	check_slice(r->rq_target, buf, n, 0);
	if (!(r->rq_path.s_len == 1 && r->rq_path.s_ptr[0] == '/'))
		check_slice(r->rq_path, buf, n, 0);
	check_slice(r->rq_query, buf, n, 0);
	check_target(r);
	check_slice(r->rq_host, buf, n, 1);
	check_slice(r->rq_authorization, buf, n, 1);
	check_slice(r->rq_content_type, buf, n, 1);
	for (i = 0; i < r->rq_nheaders; i++) {
		check_slice(r->rq_headers[i].h_name, buf, n, 0);
		check_slice(r->rq_headers[i].h_value, buf, n, 0);
		check_name(r->rq_headers[i].h_name);
		check_value(r->rq_headers[i].h_value);
	}
}

static int
parse_copy(const uint8_t *data, size_t n, struct http_req *r)
{
	char	*buf;
	int	 rc;

	/* An exact-size copy, so ASan sees a read past the prefix. */
	if ((buf = malloc(n ? n : 1)) == NULL)
		abort();
	memcpy(buf, data, n);
	rc = http_parse_request(buf, n, MAX_BODY, r);
	if (rc > 0)
		check_complete(buf, n, rc, r);
	free(buf);
	return rc;
}

static void
check_rc(int rc, size_t len)
{
	if (rc > 0 || (rc == 0 && len < HTTP_MAX_HEADER_BYTES))
		return;
	if (rc != -400 && rc != -411 && rc != -413 && rc != -431 &&
	    rc != -501 && rc != -505)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_req	r;
	size_t			p, step;
	int			whole, part;

	whole = parse_copy(data, size, &r);
	check_rc(whole, size);
	/* Every prefix of short inputs; a sample of long ones. */
	step = size <= 512 ? 1 : size / 61 + 1;
	for (p = 0; p < size; p += step) {
		part = parse_copy(data, p, &r);
		if (part != 0 && part != whole)
			abort();
	}
	return 0;
}

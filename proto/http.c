/*
 * Strict HTTP/1.1 request head parser (RFC 9112) and the status table.
 *
 * The parser is stateless and is called again each time bytes arrive, so it
 * is built to make that cheap and safe:
 *
 *  - Every verdict depends only on buf[0..min(len, HTTP_MAX_HEADER_BYTES))
 *    and on whether len reached HTTP_MAX_HEADER_BYTES.  A longer prefix of
 *    the same bytes therefore never turns an answer into a different one.
 *  - The request line is checked byte by byte as it arrives, so garbage (a
 *    TLS hello, a port scanner) is refused with 400 at once instead of
 *    waiting for a CRLFCRLF that never comes.
 *  - The header fields are only parsed once the end of the head is found;
 *    until then a call costs one memchr scan over the bytes received.
 *
 * Anything the RFC lets a server be lenient about (bare LF, obs-fold,
 * whitespace before the colon, Transfer-Encoding with Content-Length) is
 * refused here: tokend sits behind proxies, and any leniency that a proxy
 * does not share is a request smuggling hole.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "proto/proto.h"

/*
 * At most this many empty lines before the request line.  RFC 9112 2.2
 * asks servers to ignore at least one (clients sometimes send a stray CRLF
 * after a POST body); a stream of them is not a client worth waiting for.
 */
#define HTTP_MAX_EMPTY_LINES 4

/* Byte classes; see http_class. */
#define HC_TCHAR  0x01	/* token character (RFC 9110 5.6.2) */
#define HC_VALUE  0x02	/* field value byte: VCHAR, obs-text, SP, HTAB */
#define HC_TARGET 0x04	/* request-target byte: 0x21-0x7e except '#' */

static const uint8_t http_class[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,	/* 00 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 10 */
	2, 7, 6, 3, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6,	/* 20 */
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6,	/* 30 */
	6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,	/* 40 */
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7,	/* 50 */
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,	/* 60 */
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0,	/* 70 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,	/* 80 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,	/* 90 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,	/* a0 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,	/* b0 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,	/* c0 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,	/* d0 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,	/* e0 */
	2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,	/* f0 */
};

#define HTTP_IS(c, cls) (http_class[(uint8_t)(c)] & (cls))

static int
http_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
http_hex(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

/* reg-name bytes other than pct-encoded: unreserved and sub-delims. */
static int
http_host_char(int c)
{
	return http_alpha(c) || (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("-._~!$&'()*+,;=", c) != NULL);
}

/* What the header fields said, gathered before any verdict is drawn. */
struct http_fields {
	size_t	hf_nhost;
	size_t	hf_nauth;
	size_t	hf_nctype;
	size_t	hf_nlength;
	size_t	hf_nte;
	int	hf_length_bad;	/* not 1*DIGIT, or overflows size_t */
	int	hf_close;	/* Connection: close */
	int	hf_keepalive;	/* Connection: keep-alive */
};

static int
http_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* ASCII-only, so the answer never depends on the locale. */
static int
http_mem_eq_ci(const char *a, const char *b, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (http_lower((uint8_t)a[i]) != http_lower((uint8_t)b[i]))
			return 0;
	return 1;
}

/*
 * An absent slice (s_ptr NULL) equals no string, not even "", so that an
 * absent header never passes for an empty one.
 */
static int
http_str_same(struct http_str a, const char *b, int ci)
{
	size_t	n;

	if (a.s_ptr == NULL || b == NULL)
		return 0;
	n = strlen(b);
	if (a.s_len != n || n == 0)
		return a.s_len == n;
	return ci ? http_mem_eq_ci(a.s_ptr, b, n) : memcmp(a.s_ptr, b, n) == 0;
}

int
http_str_eq_ci(struct http_str a, const char *b)
{
	return http_str_same(a, b, 1);
}

int
http_str_eq(struct http_str a, const char *b)
{
	return http_str_same(a, b, 0);
}

const struct http_str *
http_header_get(const struct http_req *req, const char *name)
{
	size_t	i;

	for (i = 0; i < req->rq_nheaders; i++)
		if (http_str_eq_ci(req->rq_headers[i].h_name, name))
			return &req->rq_headers[i].h_value;
	return NULL;
}

const char *
http_reason(int status)
{
	switch (status) {
#define X(n, reason) case n: return reason;
	HTTP_STATUSES
#undef X
	default: return "Unknown";
	}
}

int
http_field_name_ok(const char *s, size_t n)
{
	size_t	i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!HTTP_IS(s[i], HC_TCHAR))
			return 0;
	return 1;
}

/*
 * RFC 9110 5.5: CR, LF and NUL in a field value are what splits a header
 * or a response; other controls are merely invalid, and a recipient may
 * turn them into SP, so only these three are refused.
 */
int
http_field_value_ok(const char *s, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return 0;
	return 1;
}

static struct http_str
http_slice(const char *p, size_t n)
{
	struct http_str	s;

	s.s_ptr = p;
	s.s_len = n;
	return s;
}

/* The method names, indexed by enum http_method: one table for both ways. */
static const char *const http_methods[] = {
	[HTTP_OTHER] = "-", [HTTP_GET] = "GET", [HTTP_HEAD] = "HEAD",
	[HTTP_POST] = "POST", [HTTP_PUT] = "PUT", [HTTP_DELETE] = "DELETE",
	[HTTP_OPTIONS] = "OPTIONS", [HTTP_PATCH] = "PATCH",
};
#define HTTP_NMETHODS	(sizeof(http_methods) / sizeof(http_methods[0]))

const char *
http_method_name(enum http_method m)
{
	return (size_t)m < HTTP_NMETHODS ? http_methods[m] : "-";
}

/* Methods are case-sensitive (RFC 9110 9.1): "get" is HTTP_OTHER. */
static enum http_method
http_method_of(struct http_str m)
{
	size_t	 i;

	for (i = HTTP_OTHER + 1; i < HTTP_NMETHODS; i++)
		if (http_str_eq(m, http_methods[i]))
			return (enum http_method)i;
	return HTTP_OTHER;
}

/*
 * Skip the few CRLFs RFC 9112 2.2 lets a client send before the request
 * line.  Returns 1 with *offp after them, 0 when a lone CR ends the
 * buffer, or -400.
 */
static int
http_skip_empty_lines(const char *buf, size_t lim, size_t *offp)
{
	size_t	i = 0;
	int	n = 0;

	while (i < lim && buf[i] == '\r') {
		if (i + 1 == lim)
			return 0;
		if (buf[i + 1] != '\n' || ++n > HTTP_MAX_EMPTY_LINES)
			return -400;
		i += 2;
	}
	*offp = i;
	return 1;
}

/*
 * The version and its CRLF: exactly "HTTP/" DIGIT "." DIGIT CR LF.  Bytes
 * are checked against that shape as they arrive; the value is judged only
 * once all ten are here, so "HTTP/2.0" is 505 but "HTTP/2.0x" is 400 at
 * every prefix length.  Returns 1, 0 for more, or a negated status.
 */
static int
http_parse_version(const char *p, size_t n, struct http_req *req)
{
	static const char shape[] = "HTTP/d.d\r\n";
	size_t	k;

	for (k = 0; k < n && k < sizeof(shape) - 1; k++) {
		if (shape[k] == 'd' ? (p[k] < '0' || p[k] > '9') :
		    p[k] != shape[k])
			return -400;
	}
	if (k < sizeof(shape) - 1)
		return 0;
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
		return -505;
	req->rq_minor = p[7] - '0';
	return 1;
}

/*
 * An authority of an http(s) URI or a Host value (RFC 9110 4.2.3, 7.2; RFC
 * 3986 3.2.2): uri-host [ ":" port ], uri-host being an IP-literal in
 * brackets or a reg-name of unreserved, pct-encoded and sub-delims bytes.
 * No userinfo ('@' is in neither).  An empty host is valid only where
 * empty_ok (a Host header for a target without authority).
 */
static int
http_host_ok(const char *p, size_t n, int empty_ok)
{
	size_t	i = 0, hlen;

	if (n > 0 && p[0] == '[') {
		for (i = 1; i < n && p[i] != ']'; i++)
			if (!http_host_char((uint8_t)p[i]) && p[i] != ':')
				return 0;
		if (i == n || i == 1)
			return 0;
		i++;
	} else {
		for (; i < n && p[i] != ':'; i++) {
			if (http_host_char((uint8_t)p[i]))
				continue;
			if (p[i] != '%' || n - i < 3 ||
			    !http_hex((uint8_t)p[i + 1]) ||
			    !http_hex((uint8_t)p[i + 2]))
				return 0;
			i += 2;
		}
	}
	hlen = i;
	if (hlen == 0 && (!empty_ok || n > 0))
		return 0;
	if (i < n && p[i++] != ':')
		return 0;
	for (; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return 0;
	return 1;
}

/*
 * absolute-form (RFC 9112 3.2.2) of an http or https URI: the scheme, in
 * any case, "//", the authority and what follows it (empty, or from its
 * '/' or '?').  Returns 0 with *auth and *rest set, or -1.
 */
static int
http_absolute(struct http_str t, struct http_str *auth, struct http_str *rest)
{
	size_t	i, start;

	if (t.s_len > 7 && http_mem_eq_ci(t.s_ptr, "http://", 7))
		start = 7;
	else if (t.s_len > 8 && http_mem_eq_ci(t.s_ptr, "https://", 8))
		start = 8;
	else
		return -1;
	for (i = start; i < t.s_len && t.s_ptr[i] != '/' && t.s_ptr[i] != '?';
	    i++)
		;
	if (!http_host_ok(t.s_ptr + start, i - start, 0))
		return -1;
	*auth = http_slice(t.s_ptr + start, i - start);
	*rest = http_slice(t.s_ptr + i, t.s_len - i);
	return 0;
}

/*
 * The request line: method SP request-target SP version CRLF, checked left
 * to right so an error is reported as soon as its byte arrives.  The target
 * is origin-form or absolute-form (an http(s) URI, judged once whole);
 * authority-form and '*' are 400.  Returns 1 with *offp past the CRLF, 0
 * for more, or a negated status.
 */
static int
http_parse_request_line(const char *buf, size_t lim, size_t *offp,
    struct http_req *req)
{
	struct http_str	 auth, rest;
	size_t		 i = *offp, start = *offp;
	int		 rc;

	while (i < lim && HTTP_IS(buf[i], HC_TCHAR))
		i++;
	if (i == lim)
		return 0;
	if (i == start || buf[i] != ' ')
		return -400;
	req->rq_method_str = http_slice(buf + start, i - start);

	start = ++i;
	if (i == lim)
		return 0;
	if (buf[i] != '/' && !http_alpha((uint8_t)buf[i]))
		return -400;
	while (i < lim && HTTP_IS(buf[i], HC_TARGET))
		i++;
	if (i == lim)
		return 0;
	if (buf[i] != ' ')
		return -400;
	req->rq_target = http_slice(buf + start, i - start);
	if (buf[start] != '/' && http_absolute(req->rq_target, &auth,
	    &rest) == -1)
		return -400;

	i++;
	if ((rc = http_parse_version(buf + i, lim - i, req)) <= 0)
		return rc;
	*offp = i + 10;
	return 1;
}

/*
 * Split the target into path and query at its first '?'; the query is
 * empty, not NULL, without one.  An absolute-form target (already checked
 * by the request line) is split after its authority, returned in *auth
 * (s_ptr NULL for origin-form); its empty path is "/" (RFC 9110 4.2.3).
 */
static void
http_split_target(struct http_req *req, struct http_str *auth)
{
	struct http_str	 t = req->rq_target;
	const char	*q;

	*auth = http_slice(NULL, 0);
	if (t.s_ptr[0] != '/')
		(void)http_absolute(req->rq_target, auth, &t);
	q = memchr(t.s_ptr, '?', t.s_len);
	req->rq_path = http_slice(t.s_ptr, q ? (size_t)(q - t.s_ptr) :
	    t.s_len);
	req->rq_query = q ? http_slice(q + 1, t.s_len - req->rq_path.s_len -
	    1) : http_slice(t.s_ptr + t.s_len, 0);
	if (req->rq_path.s_len == 0)
		req->rq_path = http_slice("/", 1);
}

/*
 * Skip field-value bytes from buf[i] eight at a time while none is a
 * control byte (HTAB and the CR ending the line included) or DEL; the byte
 * loop after it then judges those exactly.  Values are most of a head
 * (tokens, User-Agent), so this is where the parser spends its time.
 * Never reads at or past end.
 */
static size_t
http_skip_value_fast(const char *buf, size_t i, size_t end)
{
	const uint64_t	ones = 0x0101010101010101ULL;
	const uint64_t	highs = 0x8080808080808080ULL;
	uint64_t	w, del;

	while (end - i >= 8) {
		memcpy(&w, buf + i, 8);
		del = w ^ (ones * 0x7f);
		/* Any byte < 0x20, or any byte == 0x7f (exact tests). */
		if (((w - ones * 0x20) & ~w & highs) |
		    ((del - ones) & ~del & highs))
			break;
		i += 8;
	}
	return i;
}

/*
 * One header field line at *offp: token ':' OWS value OWS CRLF.  The caller
 * guarantees a CRLFCRLF ends the head, so the scans stop at a CR in time.
 * A line starting with SP/HTAB is obs-fold and an empty name or a space
 * before the colon is refused (RFC 9112 5.1, 5.2).  Returns 1 or -400.
 */
static int
http_parse_field(const char *buf, size_t *offp, size_t end,
    struct http_header *h)
{
	size_t	i = *offp, start = *offp, vend;

	while (HTTP_IS(buf[i], HC_TCHAR))
		i++;
	if (i == start || buf[i] != ':')
		return -400;
	h->h_name = http_slice(buf + start, i - start);

	i++;
	while (buf[i] == ' ' || buf[i] == '\t')
		i++;
	start = i;
	i = http_skip_value_fast(buf, i, end);
	while (HTTP_IS(buf[i], HC_VALUE))
		i++;
	if (buf[i] != '\r' || buf[i + 1] != '\n')
		return -400;
	vend = i;
	while (vend > start && (buf[vend - 1] == ' ' || buf[vend - 1] == '\t'))
		vend--;
	h->h_value = http_slice(buf + start, vend - start);
	*offp = i + 2;
	return 1;
}

/* 1*DIGIT into *out; -1 for anything else, or a value size_t cannot hold. */
static int
http_parse_length(struct http_str v, size_t *out)
{
	size_t	i, n = 0, d;

	if (v.s_len == 0)
		return -1;
	for (i = 0; i < v.s_len; i++) {
		if (v.s_ptr[i] < '0' || v.s_ptr[i] > '9')
			return -1;
		d = (size_t)(v.s_ptr[i] - '0');
		if (n > (SIZE_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*out = n;
	return 0;
}

/* Connection is a comma-separated list of case-insensitive tokens. */
static void
http_scan_connection(struct http_str v, struct http_fields *hf)
{
	size_t	i = 0, start, end;

	while (i < v.s_len) {
		while (i < v.s_len && (v.s_ptr[i] == ' ' || v.s_ptr[i] == '\t'))
			i++;
		start = i;
		while (i < v.s_len && v.s_ptr[i] != ',')
			i++;
		end = i;
		while (end > start &&
		    (v.s_ptr[end - 1] == ' ' || v.s_ptr[end - 1] == '\t'))
			end--;
		if (http_str_eq_ci(http_slice(v.s_ptr + start, end - start),
		    "close"))
			hf->hf_close = 1;
		else if (http_str_eq_ci(http_slice(v.s_ptr + start,
		    end - start), "keep-alive"))
			hf->hf_keepalive = 1;
		i++;
	}
}

/*
 * Is the field name n, in any case, the lower-case name lc (letters and
 * '-' only)?  OR-ing 0x20 folds letters to lower case and maps only '-'
 * and CR to '-'; n is a token, so it holds no CR.
 */
static int
http_name_is(struct http_str n, const char *lc, size_t lclen)
{
	size_t	i;

	if (n.s_len != lclen)
		return 0;
	for (i = 0; i < lclen; i++)
		if ((n.s_ptr[i] | 0x20) != lc[i])
			return 0;
	return 1;
}

#define HTTP_NAME_IS(n, lc) http_name_is((n), (lc), sizeof(lc) - 1)

/*
 * Note one field in hf and the request's shortcuts.  This runs for every
 * field of every request, so the length picks the one name to compare.
 */
static void
http_note_field(struct http_req *req, const struct http_header *h,
    struct http_fields *hf)
{
	struct http_str	n = h->h_name;

	switch (n.s_len) {
	case 4:
		if (HTTP_NAME_IS(n, "host")) {
			hf->hf_nhost++;
			req->rq_host = h->h_value;
		}
		break;
	case 10:
		if (HTTP_NAME_IS(n, "connection"))
			http_scan_connection(h->h_value, hf);
		break;
	case 12:
		if (HTTP_NAME_IS(n, "content-type")) {
			hf->hf_nctype++;
			req->rq_content_type = h->h_value;
		}
		break;
	case 13:
		if (HTTP_NAME_IS(n, "authorization")) {
			hf->hf_nauth++;
			req->rq_authorization = h->h_value;
		}
		break;
	case 14:
		if (HTTP_NAME_IS(n, "content-length")) {
			hf->hf_nlength++;
			if (http_parse_length(h->h_value,
			    &req->rq_content_length) == -1)
				hf->hf_length_bad = 1;
		}
		break;
	case 17:
		if (HTTP_NAME_IS(n, "transfer-encoding"))
			hf->hf_nte++;
		break;
	}
}

/*
 * Parse the header lines in buf[off..end), end being just past the CRLF of
 * the last field.  Syntax errors come first, in line order, so the verdict
 * is the same whatever the semantics of the fields.
 */
static int
http_parse_fields(const char *buf, size_t off, size_t end,
    struct http_req *req, struct http_fields *hf)
{
	struct http_header	*h;
	int			 rc;

	while (off < end) {
		if (req->rq_nheaders == HTTP_MAX_HEADERS)
			return -431;
		h = &req->rq_headers[req->rq_nheaders];
		if ((rc = http_parse_field(buf, &off, end, h)) < 0)
			return rc;
		req->rq_nheaders++;
		http_note_field(req, h, hf);
	}
	return 0;
}

/*
 * Framing and the singleton fields.  Transfer-Encoding is refused outright
 * (no chunked bodies), a Content-Length must be single and plain digits,
 * and the fields an attacker could send twice to make a proxy and tokend
 * disagree (Host, Authorization, Content-Type) must be single too.
 */
static int
http_check_fields(struct http_req *req, const struct http_fields *hf,
    size_t max_body)
{
	if (hf->hf_nte > 0)
		return -501;
	if (hf->hf_nlength > 1 || hf->hf_length_bad)
		return -400;
	/* RFC 9112 3.2: no Host in HTTP/1.1, two, or a bad one is 400. */
	if (hf->hf_nhost > 1 || (req->rq_minor == 1 && hf->hf_nhost == 0))
		return -400;
	if (hf->hf_nhost == 1 && !http_host_ok(req->rq_host.s_ptr,
	    req->rq_host.s_len, 1))
		return -400;
	if (hf->hf_nauth > 1 || hf->hf_nctype > 1)
		return -400;
	if (hf->hf_nlength == 1) {
		req->rq_has_body = 1;
		if (req->rq_content_length > max_body)
			return -413;
	} else {
		req->rq_content_length = 0;
		if (req->rq_method == HTTP_POST || req->rq_method == HTTP_PUT ||
		    req->rq_method == HTTP_PATCH)
			return -411;
	}
	if (req->rq_minor == 1)
		req->rq_keepalive = !hf->hf_close;
	else
		req->rq_keepalive = hf->hf_keepalive && !hf->hf_close;
	return 0;
}

/*
 * The first CRLFCRLF in [p, end), or NULL.  memchr for the CR that starts
 * each line is much faster here than glibc's memmem, which is tuned for
 * long haystacks: a head has one CR per line.
 */
static const char *
http_find_end(const char *p, const char *end)
{
	while (end - p >= 4) {
		if ((p = memchr(p, '\r', (size_t)(end - p) - 3)) == NULL)
			return NULL;
		if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n')
			return p;
		p++;
	}
	return NULL;
}

static void
http_req_init(struct http_req *req)
{
	req->rq_method = HTTP_OTHER;
	req->rq_method_str = http_slice(NULL, 0);
	req->rq_target = req->rq_path = req->rq_query = http_slice(NULL, 0);
	req->rq_minor = 0;
	req->rq_keepalive = 0;
	req->rq_has_body = 0;
	req->rq_content_length = 0;
	req->rq_header_bytes = 0;
	req->rq_nheaders = 0;
	req->rq_host = req->rq_authorization = req->rq_content_type =
	    http_slice(NULL, 0);
}

int
http_parse_request(const char *buf, size_t len, size_t max_body,
    struct http_req *req)
{
	struct http_fields	 hf;
	struct http_str		 auth;
	const char		*eoh;
	size_t			 lim, off;
	int			 rc;

	http_req_init(req);
	/* Nothing past the limit is looked at: see the top of this file. */
	lim = len < HTTP_MAX_HEADER_BYTES ? len : HTTP_MAX_HEADER_BYTES;
	if ((rc = http_skip_empty_lines(buf, lim, &off)) <= 0 ||
	    (rc = http_parse_request_line(buf, lim, &off, req)) <= 0)
		goto more;

	/* Search from the request line's own CRLF: a head may have no fields. */
	eoh = http_find_end(buf + off - 2, buf + lim);
	if (eoh == NULL) {
		rc = 0;
		goto more;
	}
	req->rq_header_bytes = (size_t)(eoh - buf) + 4;
	req->rq_method = http_method_of(req->rq_method_str);
	http_split_target(req, &auth);

	memset(&hf, 0, sizeof(hf));
	if ((rc = http_parse_fields(buf, off, req->rq_header_bytes - 2, req,
	    &hf)) < 0 || (rc = http_check_fields(req, &hf, max_body)) < 0)
		return rc;
	/* RFC 9112 3.2.2: an absolute-form target's authority is the host. */
	if (auth.s_ptr != NULL)
		req->rq_host = auth;
	return (int)req->rq_header_bytes;

more:
	if (rc == 0 && len >= HTTP_MAX_HEADER_BYTES)
		return -431;
	return rc;
}

/* token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static int
is_token68(int ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
	    ch == '~' || ch == '+' || ch == '/';
}

int
http_bearer(struct http_str auth, struct http_str *tok)
{
	const char	*p = auth.s_ptr, *end;
	size_t		 n = 0;

	if (p == NULL || auth.s_len < 7 || strncasecmp(p, "Bearer ", 7) != 0)
		return 0;
	end = p + auth.s_len;
	for (p += 7; p < end && *p == ' '; p++)
		;
	while (p + n < end && is_token68((unsigned char)p[n]))
		n++;
	while (p + n < end && p[n] == '=')
		n++;
	if (n == 0)
		return 0;
	tok->s_ptr = p;
	tok->s_len = n;
	for (p += n; p < end; p++)
		if (*p != ' ')
			return 0;
	return 1;
}

/*
 * The Cookie request header (RFC 6265 5.4): "name=value" pairs separated
 * by ";" and optional spaces.  Parsed the way RFC 6265 5.2 tells a user
 * agent to read a pair, leniently: a pair without "=" is skipped, names
 * and values are trimmed of spaces and tabs, and a value in double quotes
 * (cookie-value, 4.1.1) loses them.  Nothing is decoded: tokend's own
 * cookies hold only token characters.
 */
#include <string.h>

#include "proto/proto.h"

static int
cookie_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* Trim s[0..*len) of spaces and tabs at both ends. */
static const char *
cookie_trim(const char *s, size_t *len)
{
	while (*len > 0 && cookie_ws(s[0])) {
		s++;
		(*len)--;
	}
	while (*len > 0 && cookie_ws(s[*len - 1]))
		(*len)--;
	return s;
}

/* The pair in p[0..n): 1 with its value when its name is name. */
static int
cookie_pair(const char *p, size_t n, const char *name, struct http_str *val)
{
	const char	*eq = memchr(p, '=', n), *k, *v;
	size_t		 klen, vlen;

	if (eq == NULL)
		return 0;
	klen = (size_t)(eq - p);
	k = cookie_trim(p, &klen);
	if (klen != strlen(name) || memcmp(k, name, klen) != 0)
		return 0;
	vlen = (size_t)(p + n - eq - 1);
	v = cookie_trim(eq + 1, &vlen);
	if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
		v++;
		vlen -= 2;
	}
	val->s_ptr = v;
	val->s_len = vlen;
	return 1;
}

int
cookie_get(struct http_str hdr, const char *name, struct http_str *val)
{
	const char	*p = hdr.s_ptr, *end, *semi;

	val->s_ptr = NULL;
	val->s_len = 0;
	if (p == NULL || name[0] == '\0')
		return 0;
	end = p + hdr.s_len;
	while (p < end) {
		semi = memchr(p, ';', (size_t)(end - p));
		if (semi == NULL)
			semi = end;
		if (cookie_pair(p, (size_t)(semi - p), name, val))
			return 1;
		p = semi + 1;
	}
	return 0;
}

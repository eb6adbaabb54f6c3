/*
 * JSON objects written in place (proto.h).  No allocation, no printf; and
 * i64_digits, which the HTTP responses use too, and the string escaper
 * the log lines use too.
 */
#include <stdint.h>
#include <string.h>

#include "proto/proto.h"

static void
jw_put(struct jsonw *jw, const char *s, size_t n)
{
	if (jw->jw_full || jw->jw_cap - jw->jw_len < n) {
		jw->jw_full = 1;
		return;
	}
	memcpy(jw->jw_buf + jw->jw_len, s, n);
	jw->jw_len += n;
}

size_t
json_plain_run(const unsigned char *s, size_t n)
{
	size_t	 run;

	for (run = 0; run < n && s[run] >= 0x20 && s[run] < 0x7f &&
	    s[run] != '"' && s[run] != '\\'; run++)
		;
	return run;
}

size_t
json_esc_char(const unsigned char *s, size_t n, char out[JSON_ESC_MAX],
    size_t *outlen)
{
	static const char hex[] = "0123456789abcdef";
	static const char shortc[] = "\"\\\b\f\n\r\t", shortv[] = "\"\\bfnrt";
	const char	*sh;
	size_t		 u;

	if (*s >= 0x80) {
		if ((u = utf8_seq_len(s, n)) == 0) {
			memcpy(out, "\\ufffd", 6);
			*outlen = 6;
			return 1;
		}
		memcpy(out, s, u);
		*outlen = u;
		return u;
	}
	if (json_plain_run(s, 1) == 1) {
		out[0] = (char)*s;
		*outlen = 1;
	} else if (*s != '\0' && (sh = strchr(shortc, *s)) != NULL) {
		out[0] = '\\';
		out[1] = shortv[sh - shortc];
		*outlen = 2;
	} else {
		memcpy(out, "\\u00", 4);
		out[4] = hex[*s >> 4];
		out[5] = hex[*s & 0xf];
		*outlen = 6;
	}
	return 1;
}

static void
jw_string(struct jsonw *jw, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t		 n = strlen(str), run, used, elen;
	char		 esc[JSON_ESC_MAX];

	jw_put(jw, "\"", 1);
	while (n > 0) {
		/* Plain ASCII goes in runs. */
		run = json_plain_run(s, n);
		jw_put(jw, (const char *)s, run);
		s += run;
		n -= run;
		if (n == 0)
			break;
		used = json_esc_char(s, n, esc, &elen);
		jw_put(jw, esc, elen);
		s += used;
		n -= used;
	}
	jw_put(jw, "\"", 1);
}

static void
jw_key(struct jsonw *jw, const char *key)
{
	if (jw->jw_fields++ > 0)
		jw_put(jw, ",", 1);
	jw_string(jw, key);
	jw_put(jw, ":", 1);
}

void
jw_begin(struct jsonw *jw, char *buf, size_t cap)
{
	jw->jw_buf = buf;
	jw->jw_cap = cap;
	jw->jw_len = 0;
	jw->jw_fields = 0;
	jw->jw_full = 0;
	jw_put(jw, "{", 1);
}

void
jw_str(struct jsonw *jw, const char *key, const char *val)
{
	jw_key(jw, key);
	jw_string(jw, val);
}

char *
i64_digits(int64_t v, char buf[I64_DIGITS], size_t *len)
{
	char		*p = buf + I64_DIGITS;
	uint64_t	 u = v < 0 ? -(uint64_t)v : (uint64_t)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	*len = (size_t)(buf + I64_DIGITS - p);
	return p;
}

/* v in decimal, as a JSON number or (quoted) a string. */
static void
jw_digits(struct jsonw *jw, const char *key, int64_t v, int quoted)
{
	char	 buf[I64_DIGITS], *p;
	size_t	 n;

	p = i64_digits(v, buf, &n);
	jw_key(jw, key);
	if (quoted)
		jw_put(jw, "\"", 1);
	jw_put(jw, p, n);
	if (quoted)
		jw_put(jw, "\"", 1);
}

void
jw_int(struct jsonw *jw, const char *key, int64_t v)
{
	jw_digits(jw, key, v, 0);
}

void
jw_int_str(struct jsonw *jw, const char *key, int64_t v)
{
	jw_digits(jw, key, v, 1);
}

void
jw_bool(struct jsonw *jw, const char *key, int v)
{
	jw_key(jw, key);
	if (v)
		jw_put(jw, "true", 4);
	else
		jw_put(jw, "false", 5);
}

long
jw_end(struct jsonw *jw)
{
	jw_put(jw, "}", 1);
	return jw->jw_full ? -1 : (long)jw->jw_len;
}

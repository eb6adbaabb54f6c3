/*
 * OAuth scope lists (RFC 6749 3.3): scope-tokens of %x21 / %x23-5B /
 * %x5D-7E separated by spaces.  tokend stores them canonical (single
 * spaces, no duplicates), so /auth, /token and tokenctl agree on what a
 * scope string holds.
 */
#include <string.h>

#include "proto/proto.h"

int
scope_has(const char *list, const char *w, size_t n)
{
	const char	*p = list;
	size_t		 len;

	while (*p != '\0') {
		len = strcspn(p, " ");
		if (len == n && memcmp(p, w, n) == 0)
			return 1;
		p += len;
		while (*p == ' ')
			p++;
	}
	return 0;
}

int
scope_subset(const char *want, const char *have)
{
	const char	*p = want;
	size_t		 n;

	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return 1;
		n = strcspn(p, " ");
		if (!scope_has(have, p, n))
			return 0;
		p += n;
	}
}

static int
scope_char_ok(int c)
{
	return c >= 0x21 && c <= 0x7e && c != '"' && c != '\\';
}

int
scope_normalize(const char *in, char *out, size_t outlen)
{
	const char	*p = in, *end;
	size_t		 n, used = 0;

	if (outlen == 0)
		return SCOPE_TOO_LONG;
	out[0] = '\0';
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return 0;
		for (end = p; *end != '\0' && *end != ' '; end++)
			if (!scope_char_ok((unsigned char)*end))
				return SCOPE_BAD_CHAR;
		n = (size_t)(end - p);
		if (!scope_has(out, p, n)) {
			if (used + (used > 0) + n > SCOPE_MAX ||
			    used + (used > 0) + n >= outlen)
				return SCOPE_TOO_LONG;
			if (used > 0)
				out[used++] = ' ';
			memcpy(out + used, p, n);
			out[used += n] = '\0';
		}
		p = end;
	}
}

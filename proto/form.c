/*
 * application/x-www-form-urlencoded decoding, used for OAuth request bodies
 * and for URL query strings alike.
 *
 * The decoded strings go into a caller-supplied arena, so nothing is
 * allocated: each field costs at most its encoded length plus two NULs,
 * which is where the len + FORM_MAX_FIELDS * 2 bound in proto.h comes from.
 * Strictness follows from the OAuth use: a repeated parameter is an error
 * (RFC 6749 3.1, 3.2), and so is a decoded NUL, which would silently cut a
 * C string short.
 */
#include <string.h>

#include "proto/proto.h"

/* The arena being filled. */
struct form_arena {
	char	*fa_buf;
	size_t	 fa_len;
	size_t	 fa_used;
};

long
form_unescape(const char *in, size_t n, char *out, size_t cap)
{
	size_t	 i, o = 0;
	int	 hi, lo, c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)in[i];
		if (c == '+')
			c = ' ';
		else if (c == '%') {
			if (n - i < 3 || (hi = hex_value(in[i + 1])) < 0 ||
			    (lo = hex_value(in[i + 2])) < 0)
				return -1;
			c = hi << 4 | lo;
			i += 2;
		}
		if (c == '\0' || o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (long)o;
}

/*
 * Decode in[0..len) into the arena and NUL-terminate it; *out points at the
 * result.  Returns 0, or -1 for a bad %-escape, a NUL, or a full arena.
 */
static int
form_decode(const char *in, size_t len, struct form_arena *fa, char **out)
{
	long	 n;

	*out = fa->fa_buf + fa->fa_used;
	n = form_unescape(in, len, *out, fa->fa_len - fa->fa_used);
	if (n < 0)
		return -1;
	fa->fa_used += (size_t)n + 1;
	return 0;
}

/* Decode one name[=value] piece and add it, refusing a repeated name. */
static int
form_add(struct form *fm, const char *p, size_t n, struct form_arena *fa)
{
	struct form_field	*f;
	const char		*eq;
	size_t			 nlen, i;

	if (fm->fm_n == FORM_MAX_FIELDS)
		return -1;
	f = &fm->fm_fields[fm->fm_n];
	eq = memchr(p, '=', n);
	nlen = eq != NULL ? (size_t)(eq - p) : n;
	if (form_decode(p, nlen, fa, &f->f_name) == -1)
		return -1;
	if (eq != NULL) {
		if (form_decode(eq + 1, n - nlen - 1, fa, &f->f_value) == -1)
			return -1;
	} else if (form_decode("", 0, fa, &f->f_value) == -1)
		return -1;
	for (i = 0; i < fm->fm_n; i++)
		if (strcmp(fm->fm_fields[i].f_name, f->f_name) == 0)
			return -1;
	fm->fm_n++;
	return 0;
}

int
form_parse(const char *in, size_t len, struct form *fm, char *arena,
    size_t arenalen)
{
	struct form_arena	 fa;
	const char		*amp, *end;
	int			 rc = -1;

	fm->fm_n = 0;
	if (len == 0)
		return 0;	/* in may be NULL for an empty query */
	end = in + len;
	fa.fa_buf = arena;
	fa.fa_len = arenalen;
	fa.fa_used = 0;
	while (in < end) {
		amp = memchr(in, '&', (size_t)(end - in));
		if (amp == NULL)
			amp = end;
		/* "a=1&&b=2" and a trailing '&' carry no field. */
		if (amp > in && form_add(fm, in, (size_t)(amp - in), &fa) == -1)
			goto out;
		in = amp == end ? end : amp + 1;
	}
	rc = 0;
out:
	/* Never leave a half-decoded form for a caller to trust. */
	if (rc == -1)
		fm->fm_n = 0;
	return rc;
}

const char *
form_get(const struct form *fm, const char *name)
{
	size_t	i;

	for (i = 0; i < fm->fm_n; i++)
		if (strcmp(fm->fm_fields[i].f_name, name) == 0)
			return fm->fm_fields[i].f_value;
	return NULL;
}

/*
 * libFuzzer target for form_parse.  Checks that the documented arena bound
 * holds, that every decoded string lies in the arena, and that re-encoding
 * a decoded form and parsing it again gives the same fields.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static void
check_in_arena(const char *s, const char *arena, size_t alen)
{
	size_t	n;

	if (s < arena || s >= arena + alen)
		abort();
	n = strnlen(s, (size_t)(arena + alen - s));
	if (n == (size_t)(arena + alen - s))
		abort();	/* not NUL-terminated inside the arena */
}

/* Percent-encode everything but alphanumerics. */
static size_t
encode(const char *s, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t	n = 0;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9'))
			out[n++] = (char)c;
		else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	return n;
}

static void
check_roundtrip(const struct form *fm, size_t inlen)
{
	static struct form	 again;
	char			*enc, *arena;
	size_t			 n = 0, i, alen;

	if ((enc = malloc(inlen * 3 + FORM_MAX_FIELDS * 2 + 1)) == NULL)
		abort();
	for (i = 0; i < fm->fm_n; i++) {
		n += encode(fm->fm_fields[i].f_name, enc + n);
		enc[n++] = '=';
		n += encode(fm->fm_fields[i].f_value, enc + n);
		enc[n++] = '&';
	}
	alen = n + FORM_MAX_FIELDS * 2;
	if ((arena = malloc(alen)) == NULL)
		abort();
	if (form_parse(enc, n, &again, arena, alen) != 0 ||
	    again.fm_n != fm->fm_n)
		abort();
	for (i = 0; i < fm->fm_n; i++)
		if (strcmp(again.fm_fields[i].f_name,
		    fm->fm_fields[i].f_name) != 0 ||
		    strcmp(again.fm_fields[i].f_value,
		    fm->fm_fields[i].f_value) != 0)
			abort();
	free(arena);
	free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct form	 fm;
	char			*arena;
	size_t			 alen = size + FORM_MAX_FIELDS * 2, i, j;

	if ((arena = malloc(alen)) == NULL)
		abort();
	if (form_parse((const char *)data, size, &fm, arena, alen) == 0) {
		if (fm.fm_n > FORM_MAX_FIELDS)
			abort();
		for (i = 0; i < fm.fm_n; i++) {
			check_in_arena(fm.fm_fields[i].f_name, arena, alen);
			check_in_arena(fm.fm_fields[i].f_value, arena, alen);
			for (j = 0; j < i; j++)
				if (strcmp(fm.fm_fields[i].f_name,
				    fm.fm_fields[j].f_name) == 0)
					abort();
			if (form_get(&fm, fm.fm_fields[i].f_name) !=
			    fm.fm_fields[i].f_value)
				abort();
		}
		check_roundtrip(&fm, size);
	} else if (fm.fm_n != 0)
		abort();
	free(arena);
	return 0;
}

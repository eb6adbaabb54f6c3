/*
 * proto/form.c: form bodies and query strings as OAuth clients send them.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proto/proto.h"

static struct form fm;
static char arena[4096];

static int
parse(const char *s)
{
	return form_parse(s, strlen(s), &fm, arena, sizeof(arena));
}

Test(form, password_grant)
{
	cr_assert_eq(parse("grant_type=password&username=alice"
	    "&password=s%3Dcr%26t+x&scope=read%20write"), 0);
	cr_assert_eq(fm.fm_n, 4);
	cr_assert_str_eq(form_get(&fm, "grant_type"), "password");
	cr_assert_str_eq(form_get(&fm, "username"), "alice");
	/* '=' and '&' survive when escaped; '+' is a space. */
	cr_assert_str_eq(form_get(&fm, "password"), "s=cr&t x");
	cr_assert_str_eq(form_get(&fm, "scope"), "read write");
	cr_assert_null(form_get(&fm, "client_id"));
	cr_assert_null(form_get(&fm, "Username"));
}

Test(form, escapes)
{
	cr_assert_eq(parse("a=%41%62%7e%7E%2b&b%5Fc=%e2%82%AC"), 0);
	cr_assert_str_eq(form_get(&fm, "a"), "Ab~~+");
	cr_assert_str_eq(form_get(&fm, "b_c"), "\xe2\x82\xac");
	/* Only one round of decoding: %2541 is "%41", not "A". */
	cr_assert_eq(parse("x=%2541"), 0);
	cr_assert_str_eq(form_get(&fm, "x"), "%41");
	cr_assert_eq(parse("redirect_uri=https%3A%2F%2Fapp%2Fcb%3Fa%3D1"), 0);
	cr_assert_str_eq(form_get(&fm, "redirect_uri"), "https://app/cb?a=1");
}

Test(form, empty_and_valueless)
{
	cr_assert_eq(parse(""), 0);
	cr_assert_eq(fm.fm_n, 0);
	cr_assert_eq(form_parse(NULL, 0, &fm, arena, sizeof(arena)), 0);
	cr_assert_eq(fm.fm_n, 0);
	cr_assert_eq(parse("&&a=1&&b&c=&"), 0);
	cr_assert_eq(fm.fm_n, 3);
	cr_assert_str_eq(form_get(&fm, "a"), "1");
	cr_assert_str_eq(form_get(&fm, "b"), "");
	cr_assert_str_eq(form_get(&fm, "c"), "");
	/* Only the first '=' splits. */
	cr_assert_eq(parse("state=a=b"), 0);
	cr_assert_str_eq(form_get(&fm, "state"), "a=b");
}

Test(form, bad_escapes)
{
	cr_assert_eq(parse("a=%"), -1);
	cr_assert_eq(parse("a=%4"), -1);
	cr_assert_eq(parse("a=%4&b=1"), -1);
	cr_assert_eq(parse("a=%zz"), -1);
	cr_assert_eq(parse("a=%g1"), -1);
	cr_assert_eq(parse("a%=1"), -1);
	cr_assert_eq(parse("a=1%"), -1);
	cr_assert_eq(fm.fm_n, 0);
}

Test(form, nul_refused)
{
	static const char raw[] = "a=x\0y";

	cr_assert_eq(parse("a=x%00y"), -1);
	cr_assert_eq(parse("a%00b=1"), -1);
	cr_assert_eq(form_parse(raw, sizeof(raw) - 1, &fm, arena,
	    sizeof(arena)), -1);
}

Test(form, repeated_name_refused)
{
	cr_assert_eq(parse("scope=a&scope=b"), -1);
	cr_assert_eq(parse("scope=a&scope=a"), -1);
	/* The same name, written differently, is still the same name. */
	cr_assert_eq(parse("client_id=a&client%5Fid=b"), -1);
	cr_assert_eq(parse("a+b=1&a%20b=2"), -1);
	cr_assert_eq(fm.fm_n, 0);
	/* Names are case-sensitive. */
	cr_assert_eq(parse("a=1&A=2"), 0);
}

Test(form, field_limit)
{
	char	buf[512];
	size_t	off = 0;
	int	i;

	for (i = 0; i < FORM_MAX_FIELDS; i++)
		off += (size_t)sprintf(buf + off, "f%d=%d&", i, i);
	cr_assert_eq(parse(buf), 0);
	cr_assert_eq(fm.fm_n, FORM_MAX_FIELDS);
	cr_assert_str_eq(form_get(&fm, "f31"), "31");
	sprintf(buf + off, "one=more");
	cr_assert_eq(parse(buf), -1);
}

Test(form, arena_bound)
{
	char	small[16];
	char	buf[512];
	size_t	off = 0, n;
	int	i;

	/* The documented bound is enough even for the worst case. */
	for (i = 0; i < FORM_MAX_FIELDS; i++)
		off += (size_t)sprintf(buf + off, "%c&", 'a' + i);
	n = strlen(buf);
	cr_assert_eq(form_parse(buf, n, &fm, arena, n + FORM_MAX_FIELDS * 2),
	    0);
	cr_assert_eq(fm.fm_n, FORM_MAX_FIELDS);
	/* Too small: refused, not overrun. */
	memset(small, 'Z', sizeof(small));
	cr_assert_eq(form_parse("name=0123456789", 15, &fm, small, 12), -1);
	cr_assert_eq(small[12], 'Z');
	cr_assert_eq(form_parse("name=0123456789", 15, &fm, small, 16), 0);
	cr_assert_str_eq(form_get(&fm, "name"), "0123456789");
}

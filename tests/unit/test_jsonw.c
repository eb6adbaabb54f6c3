/*
 * proto/jsonw.c: the in-place JSON writer behind /introspect.  What a client
 * parses must be what was written, whatever bytes a stored name holds.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "proto/proto.h"

static char buf[8192];

/* The object { "k": s } as written, parsed back with jansson. */
static json_t *
roundtrip(const char *s)
{
	struct jsonw	 jw;
	long		 n;
	json_t		*o;

	jw_begin(&jw, buf, sizeof(buf));
	jw_str(&jw, "k", s);
	n = jw_end(&jw);
	cr_assert_gt(n, 0);
	o = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
	cr_assert_not_null(o, "not JSON: %.*s", (int)n, buf);
	return o;
}

static void
same(const char *s)
{
	json_t	*o = roundtrip(s);

	cr_assert_str_eq(json_string_value(json_object_get(o, "k")), s);
	json_decref(o);
}

Test(jsonw, introspection_shape)
{
	struct jsonw	 jw;
	long		 n;

	jw_begin(&jw, buf, sizeof(buf));
	jw_bool(&jw, "active", 1);
	jw_str(&jw, "scope", "read write");
	jw_int(&jw, "iat", 1795519040);
	jw_int(&jw, "neg", -42);
	jw_int(&jw, "min", INT64_MIN);
	jw_bool(&jw, "no", 0);
	jw_int_str(&jw, "sub", 7);
	n = jw_end(&jw);
	buf[n] = '\0';
	cr_assert_str_eq(buf, "{\"active\":true,\"scope\":\"read write\","
	    "\"iat\":1795519040,\"neg\":-42,\"min\":-9223372036854775808,"
	    "\"no\":false,\"sub\":\"7\"}");
}

Test(jsonw, empty_object)
{
	struct jsonw	 jw;

	jw_begin(&jw, buf, sizeof(buf));
	cr_assert_eq(jw_end(&jw), 2);
	cr_assert_eq(memcmp(buf, "{}", 2), 0);
}

Test(jsonw, escapes_what_json_requires)
{
	same("quote \" backslash \\ slash /");
	same("tab\tnewline\ncr\rbs\bff\f");
	same("\x01\x1f\x7f");
	same("");
}

Test(jsonw, every_control_byte)
{
	char	 s[2] = "";
	int	 b;

	for (b = 1; b < 0x20; b++) {
		s[0] = (char)b;
		same(s);
	}
}

Test(jsonw, valid_utf8_passes_through)
{
	same("Zoë Ångström");
	same("\xe2\x82\xac");			/* U+20AC */
	same("\xf0\x9f\x94\x91 key");		/* U+1F511 */
	same("\xed\x9f\xbf");			/* U+D7FF, below the surrogates */
	same("\xf4\x8f\xbf\xbf");		/* U+10FFFF */
}

Test(jsonw, invalid_utf8_becomes_replacement_characters)
{
	static const char *bad[] = {
		"\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
		"\xf4\x90\x80\x80", "\xc3", "\xe2\x82", "\x80",
	};
	size_t	 i;
	json_t	*o;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = roundtrip(bad[i]);
		cr_assert_not_null(strstr(json_string_value(json_object_get(o,
		    "k")), "\xef\xbf\xbd"), "case %zu", i);
		json_decref(o);
	}
	o = roundtrip("a\xff" "b");
	cr_assert_str_eq(json_string_value(json_object_get(o, "k")),
	    "a\xef\xbf\xbd" "b");
	json_decref(o);
}

Test(jsonw, a_full_buffer_is_an_error_not_a_truncation)
{
	struct jsonw	 jw;
	char		 small[16];

	jw_begin(&jw, small, sizeof(small));
	jw_str(&jw, "scope", "read write admin");
	cr_assert_eq(jw_end(&jw), -1);
	jw_begin(&jw, small, sizeof(small));
	jw_str(&jw, "a", "b");
	cr_assert_eq(jw_end(&jw), 9);
}

Test(jsonw, worst_case_fits_six_bytes_per_byte)
{
	char		 s[200], out[6 * 199 + 8];
	struct jsonw	 jw;

	memset(s, 0x01, sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	jw_begin(&jw, out, sizeof(out));
	jw_str(&jw, "k", s);
	cr_assert_eq(jw_end(&jw), (long)(6 * 199 + 8));
}

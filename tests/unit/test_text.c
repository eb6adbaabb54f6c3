/*
 * proto/text.c: the UTF-8 check that stands before every query, and the
 * copy that refuses instead of truncating an identity.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/proto.h"

#define V(lit)	utf8_valid(lit, sizeof(lit) - 1)

Test(text, valid_utf8_is_accepted)
{
	cr_assert(V(""));
	cr_assert(V("alice"));
	cr_assert(V("j\xc3\xb6rg"));			/* U+00F6 */
	cr_assert(V("\xe2\x82\xac"));			/* U+20AC */
	cr_assert(V("\xed\x9f\xbf"));			/* U+D7FF */
	cr_assert(V("\xef\xbf\xbf"));			/* U+FFFF */
	cr_assert(V("\xf0\x90\x80\x80"));		/* U+10000 */
	cr_assert(V("\xf4\x8f\xbf\xbf"));		/* U+10FFFF */
	cr_assert(utf8_valid_str(NULL));
	cr_assert(utf8_valid_str("caf\xc3\xa9"));
}

Test(text, invalid_utf8_is_refused)
{
	cr_assert_not(V("\xff"));
	cr_assert_not(V("\x80"));			/* lone continuation */
	cr_assert_not(V("ab\xc3"));			/* truncated */
	cr_assert_not(V("\xe2\x82"));
	cr_assert_not(V("\xc0\xaf"));			/* overlong '/' */
	cr_assert_not(V("\xc1\xbf"));
	cr_assert_not(V("\xe0\x80\xaf"));		/* overlong */
	cr_assert_not(V("\xf0\x80\x80\xaf"));
	cr_assert_not(V("\xed\xa0\x80"));		/* surrogate U+D800 */
	cr_assert_not(V("\xf4\x90\x80\x80"));		/* U+110000 */
	cr_assert_not(V("\xf5\x80\x80\x80"));
	cr_assert_not(V("\xc3\x28"));			/* bad continuation */
	cr_assert_not(V("a\0b"));			/* NUL inside */
	cr_assert_not(utf8_valid_str("\xe9t\xe9"));	/* Latin-1 */
}

Test(text, sequence_lengths)
{
	cr_assert_eq(utf8_seq_len((const unsigned char *)"a", 1), 1);
	cr_assert_eq(utf8_seq_len((const unsigned char *)"\xc3\xb6", 2), 2);
	cr_assert_eq(utf8_seq_len((const unsigned char *)"\xc3\xb6", 1), 0);
	cr_assert_eq(utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
	cr_assert_eq(utf8_seq_len((const unsigned char *)"\xf0\x9f\x98\x80",
	    4), 4);
	cr_assert_eq(utf8_seq_len((const unsigned char *)"", 0), 0);
}

Test(text, copy_refuses_what_does_not_fit)
{
	char	 buf[8];

	memset(buf, 'x', sizeof(buf));
	cr_assert_eq(text_copy(buf, sizeof(buf), "1234567"), 0);
	cr_assert_str_eq(buf, "1234567");
	memset(buf, 'x', sizeof(buf));
	cr_assert_eq(text_copy(buf, sizeof(buf), "12345678"), -1);
	cr_assert_eq(buf[0], 'x', "nothing is copied");
	cr_assert_eq(text_copy(buf, 0, ""), -1);
	cr_assert_eq(text_copy(buf, 1, ""), 0);
	cr_assert_str_eq(buf, "");
}

Test(text, iso8601_is_utc_with_or_without_milliseconds)
{
	char	 ts[ISO8601_LEN];

	cr_assert_eq(iso8601_format(0, -1, ts), 0);
	cr_assert_str_eq(ts, "1970-01-01T00:00:00Z");
	cr_assert_eq(iso8601_format(1795946400, 123, ts), 0);
	cr_assert_str_eq(ts, "2026-11-29T10:00:00.123Z");
	cr_assert_eq(iso8601_format(1795946400, 7, ts), 0);
	cr_assert_str_eq(ts, "2026-11-29T10:00:00.007Z");
}

Test(text, word_alphabet)
{
	cr_assert(text_word_ok("alice.b@x-y_z", 13, "._@-"));
	cr_assert_not(text_word_ok("a b", 3, "._@-"));
	cr_assert_not(text_word_ok("a\0b", 3, "._@-"));
	cr_assert(text_word_ok("", 0, ""));
}

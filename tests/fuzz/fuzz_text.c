/*
 * libFuzzer target for the UTF-8 check that every form and Basic value
 * passes before it may reach PostgreSQL (issue 9: bad bytes must be
 * refused, not sent).  The check is compared with a second, plain decoder
 * written from RFC 3629's definition: a code point from U+0001 to
 * U+10FFFF, not a surrogate, in the shortest encoding.  Both must agree on
 * every input; text_copy must copy whole or refuse.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Length of the sequence at s decoded by value, 0 when it is not valid. */
static size_t
fuzz_ref_seq(const uint8_t *s, size_t n)
{
	uint32_t	 cp;
	size_t		 len, i;

	if (s[0] < 0x80)
		return s[0] == 0 ? 0 : 1;
	len = (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 :
	    (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (len == 0 || n < len)
		return 0;
	cp = s[0] & (0x7f >> len);
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static int
fuzz_ref_valid(const uint8_t *s, size_t n)
{
	size_t	 u;

	while (n > 0) {
		if ((u = fuzz_ref_seq(s, n)) == 0)
			return 0;
		s += u;
		n -= u;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s, dst[16];
	size_t	 n;

	if (utf8_valid((const char *)data, size) != fuzz_ref_valid(data, size))
		abort();
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	n = strlen(s);
	if (text_copy(dst, sizeof(dst), s) == 0) {
		if (n >= sizeof(dst) || strcmp(dst, s) != 0)
			abort();
	} else if (n < sizeof(dst))
		abort();
	free(s);
	return 0;
}

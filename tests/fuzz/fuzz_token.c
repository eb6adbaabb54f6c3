/*
 * libFuzzer target for the token format check, which sees every bearer
 * token sent to /auth.  Besides "no crash, no out-of-bounds read", it
 * asserts what the check promises: a string it accepts has the length, the
 * prefix of the kind it reports, and only base62 characters; hashing any
 * input is defined; hex round-trips.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check_accepted(const char *s, enum token_kind kind)
{
	static const char prefix[] = " arpcds";	/* index by enum token_kind */
	size_t	 i;
	char	 c;

	if (s[0] != 't' || s[1] != 'k' || s[2] != prefix[kind] || s[3] != '_')
		abort();
	for (i = TOKEN_PREFIX_LEN; i < TOKEN_LEN; i++) {
		c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		    (c >= 'a' && c <= 'z')))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t		 h[TOKEN_HASH_LEN], back[TOKEN_HASH_LEN];
	char		 hex[2 * TOKEN_HASH_LEN + 1];
	char		*copy;
	enum token_kind	 kind;

	/* An exact-size heap copy, so ASan sees any read past the end. */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	kind = token_check(copy, size);
	if (kind != TOKEN_INVALID) {
		if (size != TOKEN_LEN)
			abort();
		fuzz_check_accepted(copy, kind);
	}
	token_hash(copy, size, h);
	hex_encode(h, sizeof(h), hex);
	if (hex_decode(hex, strlen(hex), back, sizeof(back)) != 0 ||
	    memcmp(h, back, sizeof(h)) != 0)
		abort();
	(void)hex_decode(copy, size, back, size / 2 < sizeof(back) ?
	    size / 2 : sizeof(back));
	free(copy);
	return 0;
}

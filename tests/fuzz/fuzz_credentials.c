/*
 * The body of POST /credentials/revoke (worker/oauth/h_leak.c: leak_parse),
 * which anyone may send.  Whatever the bytes, an accepted body counted 1
 * to LEAK_MAX strings, no more well-formed ones than that, and its hash
 * list is exactly that many 64-digit lower-case hex hashes joined by
 * commas, inside its buffer; a refused one says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/oauth/oauth.h"

static void
check_hex(const char *hex, size_t wellformed)
{
	size_t	 len = strnlen(hex, LEAK_HEX_MAX), i;

	if (len >= LEAK_HEX_MAX)
		abort();
	if (len != (wellformed == 0 ? 0 : wellformed *
	    (2 * TOKEN_HASH_LEN + 1) - 1))
		abort();
	for (i = 0; i < len; i++)
		if ((i + 1) % (2 * TOKEN_HASH_LEN + 1) == 0 ? hex[i] != ',' :
		    strchr("0123456789abcdef", hex[i]) == NULL)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char	 hex[LEAK_HEX_MAX];
	const char	*why = NULL;
	size_t		 received = 0, wellformed = 0;
	char		*copy;

	/* An exact-size copy, so ASan catches any read past the end. */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	if (leak_parse(copy, size, hex, &received, &wellformed, &why) == 0) {
		if (received < 1 || received > LEAK_MAX ||
		    wellformed > received)
			abort();
		check_hex(hex, wellformed);
	} else if (why == NULL)
		abort();
	free(copy);
	return 0;
}

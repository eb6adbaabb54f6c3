/*
 * The Authorization header on its way through /auth: Bearer parsing, then
 * the token format check and hash.  Every slice must stay inside the input,
 * and anything token_check accepts must have the exact SPEC section 3 shape.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_str	 auth, tok;
	uint8_t		 hash[TOKEN_HASH_LEN];
	char		*copy;
	enum token_kind	 kind;

	/* An exact-size copy, so ASan catches any read past the end. */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	auth.s_ptr = copy;
	auth.s_len = size;
	if (http_bearer(auth, &tok)) {
		if (tok.s_ptr < copy || tok.s_ptr + tok.s_len > copy + size ||
		    tok.s_len == 0)
			abort();
		kind = token_check(tok.s_ptr, tok.s_len);
		if (kind != TOKEN_INVALID) {
			if (tok.s_len != TOKEN_LEN || tok.s_ptr[3] != '_')
				abort();
			token_hash(tok.s_ptr, tok.s_len, hash);
		}
	}
	free(copy);
	return 0;
}

/*
 * Token format (SPEC section 3).  The known answers below were computed
 * independently with Python (int.to_bytes / zlib.crc32 / hashlib.sha256)
 * when this test was written; the round-trip test decodes base62 with a
 * multiply-add over 32-bit limbs, the reverse of token.c's long division.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "proto/proto.h"

static const char alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static const struct {
	enum token_kind	 kind;
	const char	*prefix;
	const char	*name;
} kinds[] = {
	{ TOKEN_ACCESS, "tka_", "access" },
	{ TOKEN_REFRESH, "tkr_", "refresh" },
	{ TOKEN_PAT, "tkp_", "pat" },
	{ TOKEN_CODE, "tkc_", "code" },
	{ TOKEN_DEVICE, "tkd_", "device" },
	{ TOKEN_SESSION, "tks_", "session" },
};

/* python3: entropy 0 -> "0"*43, crc32 = 0x7849568f = "2CZclj" */
static const char zero_tok[] =
    "tkp_0000000000000000000000000000000000000000000" "2CZclj";
/* python3: 2**256-1 in base62, crc32 = 0xd3c65e7f = "3sRzl1" */
static const char ff_tok[] =
    "tka_yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1" "3sRzl1";
/* python3: bytes(range(32)) */
static const char seq_tok[] =
    "tkr_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf" "1Yo7hP";

static int
b62val(char c)
{
	const char *p = strchr(alphabet, c);

	return (c == '\0' || p == NULL) ? -1 : (int)(p - alphabet);
}

/* Base62 digits -> 256-bit big-endian bytes; -1 when it does not fit. */
static int
b62_to_bytes(const char *s, size_t n, uint8_t out[32])
{
	uint32_t limb[8] = { 0 };	/* little-endian 32-bit limbs */
	uint64_t carry;
	size_t	 i;
	int	 k;

	for (i = 0; i < n; i++) {
		carry = (uint64_t)b62val(s[i]);
		for (k = 0; k < 8; k++) {
			carry += (uint64_t)limb[k] * 62;
			limb[k] = (uint32_t)carry;
			carry >>= 32;
		}
		if (carry != 0)
			return -1;
	}
	for (k = 0; k < 8; k++) {
		out[31 - 4 * k] = (uint8_t)limb[k];
		out[30 - 4 * k] = (uint8_t)(limb[k] >> 8);
		out[29 - 4 * k] = (uint8_t)(limb[k] >> 16);
		out[28 - 4 * k] = (uint8_t)(limb[k] >> 24);
	}
	return 0;
}

/* Recompute the 6 checksum characters of tok from its entropy. */
static void
fix_checksum(char *tok)
{
	uLong	 crc = crc32(0L, (const Bytef *)tok + 4, 43);
	int	 i;

	for (i = 5; i >= 0; i--) {
		tok[47 + i] = alphabet[crc % 62];
		crc /= 62;
	}
}

Test(token, generated_tokens_have_the_spec_shape)
{
	char	 tok[TOKEN_LEN + 1], other[TOKEN_LEN + 1];
	size_t	 k, i;

	for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		cr_assert_eq(token_generate(kinds[k].kind, tok), 0);
		cr_assert_eq(strlen(tok), 53);
		cr_assert_eq(memcmp(tok, kinds[k].prefix, 4), 0, "%s", tok);
		for (i = 4; i < 53; i++)
			cr_assert(b62val(tok[i]) >= 0, "%s", tok);
		cr_assert_eq(token_check(tok, 53), kinds[k].kind, "%s", tok);
		cr_assert_eq(token_generate(kinds[k].kind, other), 0);
		cr_assert_str_neq(tok, other, "two tokens were equal");
	}
	cr_assert_eq(token_generate(TOKEN_INVALID, tok), -1);
}

Test(token, known_answers)
{
	uint8_t	 e[32];
	char	 tok[TOKEN_LEN + 1];
	int	 i;

	memset(e, 0, sizeof(e));
	cr_assert_eq(token_format(TOKEN_PAT, e, tok), 0);
	cr_assert_str_eq(tok, zero_tok);
	memset(e, 0xff, sizeof(e));
	cr_assert_eq(token_format(TOKEN_ACCESS, e, tok), 0);
	cr_assert_str_eq(tok, ff_tok);
	for (i = 0; i < 32; i++)
		e[i] = (uint8_t)i;
	cr_assert_eq(token_format(TOKEN_REFRESH, e, tok), 0);
	cr_assert_str_eq(tok, seq_tok);
	cr_assert_eq(token_check(zero_tok, 53), TOKEN_PAT);
	cr_assert_eq(token_check(ff_tok, 53), TOKEN_ACCESS);
	cr_assert_eq(token_check(seq_tok, 53), TOKEN_REFRESH);
}

Test(token, entropy_round_trips_through_independent_decoder)
{
	uint8_t	 e[32], back[32];
	char	 tok[TOKEN_LEN + 1];
	int	 n;

	for (n = 0; n < 200; n++) {
		cr_assert_eq(RAND_bytes(e, sizeof(e)), 1);
		cr_assert_eq(token_format(TOKEN_CODE, e, tok), 0);
		cr_assert_eq(b62_to_bytes(tok + 4, 43, back), 0, "%s", tok);
		cr_assert_eq(memcmp(e, back, 32), 0, "%s", tok);
		cr_assert_eq(token_check(tok, 53), TOKEN_CODE, "%s", tok);
	}
}

Test(token, every_wrong_prefix_is_invalid)
{
	static const char *bad[] = { "tkx_", "TKA_", "tka-", "xka_", "tk__",
	    "tKa_", "ska_", "tkaa", "tkp ", "tk1_", "\0ka_" };
	char	 tok[TOKEN_LEN + 1];
	size_t	 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(tok, seq_tok, sizeof(tok));
		memcpy(tok, bad[i], 4);
		cr_assert_eq(token_check(tok, 53), TOKEN_INVALID, "%s", tok);
	}
	/* The right entropy under each other kind's prefix is fine. */
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		memcpy(tok, seq_tok, sizeof(tok));
		memcpy(tok, kinds[i].prefix, 4);
		cr_assert_eq(token_check(tok, 53), kinds[i].kind);
	}
}

Test(token, wrong_lengths_are_invalid)
{
	char	 tok[TOKEN_LEN + 2];
	size_t	 n;

	memcpy(tok, seq_tok, TOKEN_LEN);
	tok[53] = 'A';
	tok[54] = '\0';
	for (n = 0; n < 53; n++)
		cr_assert_eq(token_check(tok, n), TOKEN_INVALID, "len %zu", n);
	cr_assert_eq(token_check(tok, 54), TOKEN_INVALID);
	cr_assert_eq(token_check(tok, 53), TOKEN_REFRESH);
	cr_assert_eq(token_check(NULL, 53), TOKEN_INVALID);
	cr_assert_eq(token_check("", 0), TOKEN_INVALID);
	/* A valid token with one character dropped from the middle. */
	memmove(tok + 20, tok + 21, 33);
	cr_assert_eq(token_check(tok, 52), TOKEN_INVALID);
}

Test(token, a_bad_character_at_any_position_is_invalid)
{
	static const char bad[] = { '-', '_', '+', '/', '=', ' ', '\0', '.',
	    '@', '[', '`', '{', '~', '\n', (char)0x80, (char)0xff, (char)0xc3 };
	char	 tok[TOKEN_LEN + 1];
	size_t	 pos, b;

	for (pos = 0; pos < 53; pos++) {
		for (b = 0; b < sizeof(bad); b++) {
			memcpy(tok, zero_tok, sizeof(tok));
			if (tok[pos] == bad[b])
				continue;	/* the '_' of the prefix */
			tok[pos] = bad[b];
			cr_assert_eq(token_check(tok, 53), TOKEN_INVALID,
			    "pos %zu byte 0x%02x", pos, (unsigned char)bad[b]);
		}
	}
}

Test(token, alphabet_is_exactly_0_9_A_Z_a_z)
{
	char	 tok[TOKEN_LEN + 1];
	int	 c;

	/* Every byte in an entropy position, with a correct checksum. */
	for (c = 0; c < 256; c++) {
		memcpy(tok, seq_tok, sizeof(tok));
		tok[30] = (char)c;
		fix_checksum(tok);
		if (b62val((char)c) >= 0)
			cr_assert_eq(token_check(tok, 53), TOKEN_REFRESH,
			    "byte 0x%02x", c);
		else
			cr_assert_eq(token_check(tok, 53), TOKEN_INVALID,
			    "byte 0x%02x", c);
	}
}

Test(token, any_single_character_change_fails_the_checksum)
{
	char	 tok[TOKEN_LEN + 1];
	size_t	 pos;
	int	 v;

	for (pos = 4; pos < 53; pos++) {
		memcpy(tok, ff_tok, sizeof(tok));
		v = b62val(tok[pos]);
		tok[pos] = alphabet[(v + 1) % 62];
		cr_assert_eq(token_check(tok, 53), TOKEN_INVALID, "pos %zu",
		    pos);
		tok[pos] = alphabet[(v + 61) % 62];
		cr_assert_eq(token_check(tok, 53), TOKEN_INVALID, "pos %zu",
		    pos);
	}
	/* Swapping two adjacent different entropy characters too. */
	memcpy(tok, seq_tok, sizeof(tok));
	tok[10] = seq_tok[11];
	tok[11] = seq_tok[10];
	cr_assert_neq(tok[10], tok[11]);
	cr_assert_eq(token_check(tok, 53), TOKEN_INVALID);
}

Test(token, hash_is_sha256_of_the_whole_token)
{
	uint8_t	 h[TOKEN_HASH_LEN];
	char	 hex[2 * TOKEN_HASH_LEN + 1];

	token_hash(zero_tok, 53, h);
	hex_encode(h, sizeof(h), hex);
	cr_assert_str_eq(hex, "7d6f78fff432388dddc30fd78dd97219"
	    "17eaab3039b2a3af730ec54a149133ed");
	token_hash(ff_tok, 53, h);
	hex_encode(h, sizeof(h), hex);
	cr_assert_str_eq(hex, "4f6b61d39dea22379bddedf35e0a1dc5"
	    "167b5cc121679724cbc8378ebed4f74a");
}

Test(token, kind_names)
{
	size_t	 k;

	for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		cr_assert_str_eq(token_kind_name(kinds[k].kind), kinds[k].name);
		cr_assert_eq(token_kind_from_name(kinds[k].name),
		    kinds[k].kind);
	}
	cr_assert_null(token_kind_name(TOKEN_INVALID));
	cr_assert_eq(token_kind_from_name("Access"), TOKEN_INVALID);
	cr_assert_eq(token_kind_from_name(""), TOKEN_INVALID);
	cr_assert_eq(token_kind_from_name(NULL), TOKEN_INVALID);
}

Test(hex, round_trips_and_refuses_garbage)
{
	uint8_t	 in[256], out[256];
	char	 hex[513];
	int	 i;

	for (i = 0; i < 256; i++)
		in[i] = (uint8_t)i;
	hex_encode(in, 256, hex);
	cr_assert_eq(strlen(hex), 512);
	cr_assert_eq(strncmp(hex, "000102", 6), 0);
	cr_assert_str_eq(hex + 506, "fdfeff");
	cr_assert_eq(hex_decode(hex, 512, out, 256), 0);
	cr_assert_eq(memcmp(in, out, 256), 0);
	cr_assert_eq(hex_decode("ABcd", 4, out, 2), 0);
	cr_assert_eq(out[0], 0xab);
	cr_assert_eq(out[1], 0xcd);
	cr_assert_eq(hex_decode("abc", 3, out, 2), -1);
	cr_assert_eq(hex_decode("abcd", 4, out, 1), -1);
	cr_assert_eq(hex_decode("abcg", 4, out, 2), -1);
	cr_assert_eq(hex_decode("ab c", 4, out, 2), -1);
	cr_assert_eq(hex_decode("0x12", 4, out, 2), -1);
	hex_encode(in, 0, hex);
	cr_assert_str_eq(hex, "");
}

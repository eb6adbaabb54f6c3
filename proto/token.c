/*
 * Tokens (SPEC section 3): PREFIX + 43 base62 characters of entropy + 6
 * base62 characters of CRC-32 checksum.
 *
 * The checksum lets token_check refuse typos, truncations and garbage
 * without a cache or database lookup; it is no secret and proves nothing
 * about a token's validity.  token_check runs on every /auth request, so it
 * allocates nothing and decodes the alphabet with one table lookup per
 * character.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "proto/proto.h"

static const char b62_digits[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Value of each byte as a base62 digit, -1 for bytes outside the alphabet. */
#define B62_ROW_NONE16 -1, -1, -1, -1, -1, -1, -1, -1, \
	-1, -1, -1, -1, -1, -1, -1, -1
static const signed char b62_value[256] = {
	B62_ROW_NONE16, B62_ROW_NONE16, B62_ROW_NONE16,		/* 0x00-0x2f */
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1, -1, -1, -1, -1,	/* 0x30 */
	-1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
	25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, -1, -1, -1, -1, -1,
	-1, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50,
	51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1,
	B62_ROW_NONE16, B62_ROW_NONE16, B62_ROW_NONE16, B62_ROW_NONE16,
	B62_ROW_NONE16, B62_ROW_NONE16, B62_ROW_NONE16, B62_ROW_NONE16,
};

static const char *const token_prefixes[] = {
	[TOKEN_ACCESS] = "tka_",
	[TOKEN_REFRESH] = "tkr_",
	[TOKEN_PAT] = "tkp_",
	[TOKEN_CODE] = "tkc_",
	[TOKEN_DEVICE] = "tkd_",
	[TOKEN_SESSION] = "tks_",
};

static const char *const token_names[] = {
	[TOKEN_ACCESS] = "access",
	[TOKEN_REFRESH] = "refresh",
	[TOKEN_PAT] = "pat",
	[TOKEN_CODE] = "code",
	[TOKEN_DEVICE] = "device",
	[TOKEN_SESSION] = "session",
};

#define TOKEN_NKINDS (sizeof(token_names) / sizeof(token_names[0]))

/*
 * Write the 256-bit big-endian number in bytes[32] as TOKEN_ENTROPY_LEN
 * base62 digits, most significant first.  62^43 > 2^256, so 43 digits
 * always suffice and the leading ones are '0' for small numbers.  Long
 * division by 62, one byte at a time; bytes is consumed (left zero).
 */
static void
token_b62_entropy(uint8_t bytes[32], char out[TOKEN_ENTROPY_LEN])
{
	int	 i, j;
	unsigned rem;

	for (i = TOKEN_ENTROPY_LEN - 1; i >= 0; i--) {
		rem = 0;
		for (j = 0; j < 32; j++) {
			rem = rem * 256 + bytes[j];
			bytes[j] = (uint8_t)(rem / 62);
			rem %= 62;
		}
		out[i] = b62_digits[rem];
	}
}

/* The checksum of the entropy characters, as TOKEN_CRC_LEN base62 digits. */
static void
token_b62_crc(const char *entropy, char out[TOKEN_CRC_LEN])
{
	uLong	 crc;
	int	 i;

	crc = crc32(0L, Z_NULL, 0);
	crc = crc32(crc, (const Bytef *)entropy, TOKEN_ENTROPY_LEN);
	for (i = TOKEN_CRC_LEN - 1; i >= 0; i--) {
		out[i] = b62_digits[crc % 62];
		crc /= 62;
	}
}

int
token_format(enum token_kind kind, const uint8_t entropy[32],
    char out[TOKEN_LEN + 1])
{
	uint8_t	 work[32];

	if (kind <= TOKEN_INVALID || (size_t)kind >= TOKEN_NKINDS)
		return -1;
	memcpy(work, entropy, sizeof(work));
	memcpy(out, token_prefixes[kind], TOKEN_PREFIX_LEN);
	token_b62_entropy(work, out + TOKEN_PREFIX_LEN);
	token_b62_crc(out + TOKEN_PREFIX_LEN,
	    out + TOKEN_PREFIX_LEN + TOKEN_ENTROPY_LEN);
	out[TOKEN_LEN] = '\0';
	OPENSSL_cleanse(work, sizeof(work));
	return 0;
}

int
token_generate(enum token_kind kind, char out[TOKEN_LEN + 1])
{
	uint8_t	 bytes[32];
	int	 rc = -1;

	if (kind <= TOKEN_INVALID || (size_t)kind >= TOKEN_NKINDS)
		return -1;
	if (RAND_bytes(bytes, sizeof(bytes)) != 1)
		goto out;
	rc = token_format(kind, bytes, out);
out:
	/* The entropy is the secret; leave none of it on the stack. */
	OPENSSL_cleanse(bytes, sizeof(bytes));
	return rc;
}

static enum token_kind
token_prefix_kind(const char *s)
{
	if (s[0] != 't' || s[1] != 'k' || s[3] != '_')
		return TOKEN_INVALID;
	switch (s[2]) {
	case 'a':
		return TOKEN_ACCESS;
	case 'r':
		return TOKEN_REFRESH;
	case 'p':
		return TOKEN_PAT;
	case 'c':
		return TOKEN_CODE;
	case 'd':
		return TOKEN_DEVICE;
	case 's':
		return TOKEN_SESSION;
	default:
		return TOKEN_INVALID;
	}
}

enum token_kind
token_check(const char *s, size_t len)
{
	enum token_kind	 kind;
	const char	*body, *sum;
	uLong		 crc;
	uint64_t	 want = 0;
	size_t		 i;

	if (s == NULL || len != TOKEN_LEN)
		return TOKEN_INVALID;
	if ((kind = token_prefix_kind(s)) == TOKEN_INVALID)
		return TOKEN_INVALID;
	body = s + TOKEN_PREFIX_LEN;
	for (i = 0; i < TOKEN_ENTROPY_LEN + TOKEN_CRC_LEN; i++)
		if (b62_value[(unsigned char)body[i]] < 0)
			return TOKEN_INVALID;
	sum = body + TOKEN_ENTROPY_LEN;
	for (i = 0; i < TOKEN_CRC_LEN; i++)
		want = want * 62 + (uint64_t)b62_value[(unsigned char)sum[i]];
	crc = crc32(0L, Z_NULL, 0);
	crc = crc32(crc, (const Bytef *)body, TOKEN_ENTROPY_LEN);
	return want == (uint64_t)crc ? kind : TOKEN_INVALID;
}

/*
 * OpenSSL 3's one-shot SHA256() looks the algorithm up on every call, which
 * made it the most expensive step of a cache hit (about 300 ns for 53
 * bytes).  A context fetched once and reset per call costs 90 ns.  It is
 * per thread (the worker's hash pool has threads) and per process (a child
 * inherits a copy, never a shared one).
 */
static _Thread_local struct {
	EVP_MD		*sh_md;
	EVP_MD_CTX	*sh_ctx;
	int		 sh_failed;
} sha;

void
token_hash(const char *tok, size_t len, uint8_t out[TOKEN_HASH_LEN])
{
	if (sha.sh_ctx == NULL && !sha.sh_failed) {
		sha.sh_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
		sha.sh_ctx = EVP_MD_CTX_new();
		if (sha.sh_md == NULL || sha.sh_ctx == NULL) {
			EVP_MD_free(sha.sh_md);
			EVP_MD_CTX_free(sha.sh_ctx);
			sha.sh_ctx = NULL;
			sha.sh_failed = 1;
		}
	}
	if (sha.sh_ctx != NULL && EVP_DigestInit_ex2(sha.sh_ctx, sha.sh_md,
	    NULL) == 1 && EVP_DigestUpdate(sha.sh_ctx, tok, len) == 1 &&
	    EVP_DigestFinal_ex(sha.sh_ctx, out, NULL) == 1)
		return;
	SHA256((const unsigned char *)tok, len, out);
}

const char *
token_kind_name(enum token_kind kind)
{
	if (kind <= TOKEN_INVALID || (size_t)kind >= TOKEN_NKINDS)
		return NULL;
	return token_names[kind];
}

enum token_kind
token_kind_from_name(const char *name)
{
	size_t	 k;

	if (name == NULL)
		return TOKEN_INVALID;
	for (k = TOKEN_ACCESS; k < TOKEN_NKINDS; k++)
		if (strcmp(name, token_names[k]) == 0)
			return (enum token_kind)k;
	return TOKEN_INVALID;
}

void
hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char hexdig[] = "0123456789abcdef";
	size_t	 i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hexdig[in[i] >> 4];
		out[2 * i + 1] = hexdig[in[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

int
hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
hex_decode(const char *in, size_t inlen, uint8_t *out, size_t n)
{
	size_t	 i;
	int	 hi, lo;

	if (inlen != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		hi = hex_value((unsigned char)in[2 * i]);
		lo = hex_value((unsigned char)in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int
token_rate_parse(const char *s, uint32_t *n, uint32_t *secs)
{
	unsigned long	 a, b;
	char		*end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	a = strtoul(s, &end, 10);
	if (errno != 0 || *end != '/' || end[1] < '0' || end[1] > '9' ||
	    a < 1 || a > LIM_RATE_MAX)
		return -1;
	b = strtoul(end + 1, &end, 10);
	if (errno != 0 || *end != '\0' || b < 1 || b > LIM_RATE_WINDOW_MAX)
		return -1;
	*n = (uint32_t)a;
	*secs = (uint32_t)b;
	return 0;
}

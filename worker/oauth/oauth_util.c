/*
 * The OAuth endpoints' pure functions (see oauth.h): everything that parses
 * what a client sent, and the refresh grace's encryption.  No worker state,
 * no logging, no I/O, so tests/fuzz/fuzz_json.c can run them alone.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "worker/oauth/oauth.h"

#define BOX_NONCE_LEN	12
#define BOX_TAG_LEN	16

static const char box_salt[] = "tokend refresh grace";
static const char box_info[] = "successor pair v1";

/* ---- HTTP Basic (RFC 6749 2.3.1, RFC 7617) ------------------------------- */

/* Standard base64, padded, nothing else.  Returns the decoded length or
 * -1.  out holds at least n / 4 * 3 bytes. */
static long
b64_decode(const char *p, size_t n, unsigned char *out)
{
	size_t	 i, pad = 0;
	int	 m;

	if (n == 0 || n % 4 != 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] == '=' && i >= n - 2) {
			pad++;
			continue;
		}
		if (pad > 0 || !(isalnum((unsigned char)p[i]) || p[i] == '+' ||
		    p[i] == '/'))
			return -1;
	}
	if ((m = EVP_DecodeBlock(out, (const unsigned char *)p, (int)n)) < 0)
		return -1;
	return (long)m - (long)pad;
}

int
oauth_basic_decode(struct http_str auth, char *id, size_t idlen,
    char *secret, size_t secretcap, size_t *secretlen)
{
	unsigned char	 raw[HTTP_MAX_HEADER_BYTES];
	const char	*p = auth.s_ptr, *colon;
	size_t		 n = auth.s_len;
	long		 m, s;
	int		 rc;

	if (p == NULL || n < 6 || strncasecmp(p, "Basic ", 6) != 0)
		return 0;
	for (p += 6, n -= 6; n > 0 && *p == ' '; p++, n--)
		;
	while (n > 0 && p[n - 1] == ' ')
		n--;
	if (n / 4 * 3 > sizeof(raw))
		return -1;
	/* Every way out wipes what b64_decode may have written, and only
	 * that: the whole buffer was most of a cached introspection. */
	rc = -1;
	if ((m = b64_decode(p, n, raw)) >= 0 &&
	    (colon = memchr(raw, ':', (size_t)m)) != NULL &&
	    form_unescape((const char *)raw, (size_t)(colon - (char *)raw), id,
	    idlen) > 0 &&
	    (s = form_unescape(colon + 1, (size_t)((char *)raw + m - colon - 1),
	    secret, secretcap)) >= 0) {
		*secretlen = (size_t)s;
		rc = 1;
	}
	OPENSSL_cleanse(raw, n / 4 * 3);
	return rc;
}

/* ---- PKCE (RFC 7636) ------------------------------------------------------- */

int
oauth_pkce_verifier_ok(const char *v)
{
	size_t	 n = strlen(v);

	return n >= 43 && n <= 128 && text_word_ok(v, n, "-._~");
}

int
oauth_pkce_challenge_ok(const char *ch)
{
	size_t	 i;

	if (strlen(ch) != OA_CHALLENGE_LEN)
		return 0;
	for (i = 0; i < OA_CHALLENGE_LEN; i++)
		if (!isalnum((unsigned char)ch[i]) && ch[i] != '-' &&
		    ch[i] != '_')
			return 0;
	return 1;
}

void
oauth_pkce_s256(const char *verifier, char *out)
{
	unsigned char	 md[EVP_MAX_MD_SIZE], b64[64];
	unsigned	 mdlen = 0;
	int		 i;

	EVP_Digest(verifier, strlen(verifier), md, &mdlen, EVP_sha256(),
	    NULL);
	EVP_EncodeBlock(b64, md, 32);
	for (i = 0; i < OA_CHALLENGE_LEN; i++)
		out[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' :
		    (char)b64[i];
	out[OA_CHALLENGE_LEN] = '\0';
}

/* ---- the successor box ------------------------------------------------------ */

/* HKDF-SHA256(old refresh token) -> the box's AES-256 key. */
static int
box_key(const char *tok, uint8_t key[32])
{
	EVP_PKEY_CTX	*pc;
	size_t		 len = 32;
	int		 ok;

	if ((pc = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL)) == NULL)
		return -1;
	ok = EVP_PKEY_derive_init(pc) > 0 &&
	    EVP_PKEY_CTX_set_hkdf_md(pc, EVP_sha256()) > 0 &&
	    EVP_PKEY_CTX_set1_hkdf_salt(pc, (const unsigned char *)box_salt,
	    sizeof(box_salt) - 1) > 0 &&
	    EVP_PKEY_CTX_set1_hkdf_key(pc, (const unsigned char *)tok,
	    (int)strlen(tok)) > 0 &&
	    EVP_PKEY_CTX_add1_hkdf_info(pc, (const unsigned char *)box_info,
	    sizeof(box_info) - 1) > 0 &&
	    EVP_PKEY_derive(pc, key, &len) > 0 && len == 32;
	EVP_PKEY_CTX_free(pc);
	return ok ? 0 : -1;
}

int
oauth_box_seal(const char *old_refresh, const char *plain, uint8_t *out,
    size_t outcap)
{
	EVP_CIPHER_CTX	*cx = NULL;
	uint8_t		 key[32];
	size_t		 n = strlen(plain);
	int		 len, fin, rc = -1;

	if (outcap < BOX_NONCE_LEN + n + BOX_TAG_LEN || n > INT32_MAX ||
	    box_key(old_refresh, key) == -1)
		goto out;
	if (RAND_bytes(out, BOX_NONCE_LEN) != 1 ||
	    (cx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_EncryptInit_ex(cx, EVP_aes_256_gcm(), NULL, key, out) != 1 ||
	    EVP_EncryptUpdate(cx, out + BOX_NONCE_LEN, &len,
	    (const unsigned char *)plain, (int)n) != 1 ||
	    EVP_EncryptFinal_ex(cx, out + BOX_NONCE_LEN + len, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, BOX_TAG_LEN,
	    out + BOX_NONCE_LEN + len + fin) != 1)
		goto out;
	rc = BOX_NONCE_LEN + len + fin + BOX_TAG_LEN;
out:
	EVP_CIPHER_CTX_free(cx);
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

int
oauth_box_open(const char *old_refresh, const uint8_t *box, size_t n,
    char *out, size_t outcap)
{
	EVP_CIPHER_CTX	*cx = NULL;
	uint8_t		 key[32];
	size_t		 clen;
	int		 len, fin, rc = -1;

	if (n < BOX_NONCE_LEN + BOX_TAG_LEN)
		return -1;
	clen = n - BOX_NONCE_LEN - BOX_TAG_LEN;
	if (clen + 1 > outcap || box_key(old_refresh, key) == -1)
		goto out;
	if ((cx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_DecryptInit_ex(cx, EVP_aes_256_gcm(), NULL, key, box) != 1 ||
	    EVP_DecryptUpdate(cx, (unsigned char *)out, &len,
	    box + BOX_NONCE_LEN, (int)clen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, BOX_TAG_LEN,
	    (void *)(box + n - BOX_TAG_LEN)) != 1 ||
	    EVP_DecryptFinal_ex(cx, (unsigned char *)out + len, &fin) != 1) {
		OPENSSL_cleanse(out, outcap);
		goto out;
	}
	out[len + fin] = '\0';
	rc = len + fin;
out:
	EVP_CIPHER_CTX_free(cx);
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

/* ---- content types, redirects, small helpers ------------------------------ */

int
oauth_ctype_is(struct http_str ct, const char *type)
{
	size_t	 n = strlen(type), i;

	if (ct.s_ptr == NULL || ct.s_len < n ||
	    strncasecmp(ct.s_ptr, type, n) != 0)
		return 0;
	for (i = n; i < ct.s_len && (ct.s_ptr[i] == ' ' ||
	    ct.s_ptr[i] == '\t'); i++)
		;
	return i == ct.s_len || ct.s_ptr[i] == ';';
}

/* Append s to out[*n..), percent-encoding all but RFC 3986 unreserved. */
static int
append_enc(char *out, size_t outlen, size_t *n, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char	 ch;

	for (; *s != '\0'; s++) {
		ch = (unsigned char)*s;
		if (*n + 4 > outlen)
			return -1;
		if (isalnum(ch) || strchr("-._~", ch) != NULL)
			out[(*n)++] = (char)ch;
		else {
			out[(*n)++] = '%';
			out[(*n)++] = hex[ch >> 4];
			out[(*n)++] = hex[ch & 15];
		}
	}
	out[*n] = '\0';
	return 0;
}

static int
append_raw(char *out, size_t outlen, size_t *n, const char *s, size_t len)
{
	if (*n + len + 1 > outlen)
		return -1;
	memcpy(out + *n, s, len);
	*n += len;
	out[*n] = '\0';
	return 0;
}

int
oauth_redirect_with(const char *uri, const char *const *kv, size_t npairs,
    char *out, size_t outlen)
{
	const char	*frag = strchr(uri, '#'), *q;
	size_t		 base = frag ? (size_t)(frag - uri) : strlen(uri), n = 0;
	size_t		 i;
	const char	*sep = "?";

	q = memchr(uri, '?', base);
	if (q != NULL)
		sep = (uri[base - 1] == '?' || uri[base - 1] == '&') ? "" :
		    "&";
	if (append_raw(out, outlen, &n, uri, base) == -1)
		return -1;
	for (i = 0; i < npairs; i++) {
		if (kv[2 * i + 1] == NULL)
			continue;
		if (append_raw(out, outlen, &n, sep, strlen(sep)) == -1 ||
		    append_enc(out, outlen, &n, kv[2 * i]) == -1 ||
		    append_raw(out, outlen, &n, "=", 1) == -1 ||
		    append_enc(out, outlen, &n, kv[2 * i + 1]) == -1)
			return -1;
		sep = "&";
	}
	if (frag != NULL && append_raw(out, outlen, &n, frag, strlen(frag)) ==
	    -1)
		return -1;
	return 0;
}

int
oauth_redirect_to(const char *uri, const char *code, const char *state,
    const char *iss, char *out, size_t outlen)
{
	const char	*kv[6] = { "code", code, "state", state, "iss", iss };

	return oauth_redirect_with(uri, kv, 3, out, outlen);
}

void
oauth_prefix(const char *tok, char out[TOKEN_DISPLAY_LEN + 1])
{
	memcpy(out, tok, TOKEN_DISPLAY_LEN);
	out[TOKEN_DISPLAY_LEN] = '\0';
}

void
oauth_hash_hex(const char *tok, char out[2 * TOKEN_HASH_LEN + 1])
{
	uint8_t	 h[TOKEN_HASH_LEN];

	token_hash(tok, strlen(tok), h);
	hex_encode(h, sizeof(h), out);
}

/* ---- JSON bodies ------------------------------------------------------------ */

/*
 * Member key of o as a string into out: 1 copied, 0 absent or null, -1 of
 * another type, empty, too long, or (ctl) holding a control character.
 */
static int
json_str(json_t *o, const char *key, char *out, size_t cap, int ctl)
{
	json_t		*v = json_object_get(o, key);
	const char	*s;
	size_t		 n, i;

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n >= cap)
		return -1;
	for (i = 0; ctl && i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return -1;
	memcpy(out, s, n + 1);
	return 1;
}

/* Member key as a normalised scope: 1, 0 absent, -1 not a valid scope. */
static int
json_scope(json_t *o, const char *key, char *out, size_t cap)
{
	json_t	*v = json_object_get(o, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= TI_SCOPE_LEN ||
	    scope_normalize(json_string_value(v), out, cap) != 0)
		return -1;
	return 1;
}

static json_t *
json_body(const char *body, size_t len)
{
	json_error_t	 je;
	json_t		*o;

	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

#define FAIL(e, w) do { *err = (e); *why = (w); goto out; } while (0)

/* code_challenge and code_challenge_method: S256 only. */
static int
authorize_pkce(json_t *o, struct authorize_req *ar, const char **err,
    const char **why)
{
	char	 method[16];
	int	 m, rc = -1;

	ar->ar_has_challenge = json_str(o, "code_challenge", ar->ar_challenge,
	    sizeof(ar->ar_challenge), 1);
	m = json_str(o, "code_challenge_method", method, sizeof(method), 1);
	if (ar->ar_has_challenge == -1 || (ar->ar_has_challenge == 1 &&
	    !oauth_pkce_challenge_ok(ar->ar_challenge)))
		FAIL("invalid_request", "code_challenge must be 43 base64url "
		    "characters");
	if (m == -1 || (m == 1 && strcmp(method, "S256") != 0))
		FAIL("invalid_request", "code_challenge_method must be S256 "
		    "(plain is not supported)");
	if (ar->ar_has_challenge == 1 && m == 0)
		FAIL("invalid_request", "code_challenge_method must be S256 "
		    "(the default, plain, is not supported)");
	if (ar->ar_has_challenge == 0 && m == 1)
		FAIL("invalid_request", "code_challenge_method without "
		    "code_challenge");
	rc = 0;
out:
	return rc;
}

int
oauth_parse_authorize(const char *body, size_t len,
    struct authorize_req *ar, const char **err, const char **why)
{
	json_t	*o;
	char	 rt[16];
	int	 r, rc = -1;

	memset(ar, 0, sizeof(*ar));
	if ((o = json_body(body, len)) == NULL)
		FAIL("invalid_request", "the body must be a JSON object");
	if (json_str(o, "client_id", ar->ar_client_id,
	    sizeof(ar->ar_client_id), 1) != 1)
		FAIL("invalid_request", "client_id must be a string");
	if (json_str(o, "redirect_uri", ar->ar_redirect_uri,
	    sizeof(ar->ar_redirect_uri), 1) != 1)
		FAIL("invalid_request", "redirect_uri must be a string");
	if ((r = json_str(o, "response_type", rt, sizeof(rt), 1)) == -1 ||
	    (r == 1 && strcmp(rt, "code") != 0))
		FAIL("unsupported_response_type", "response_type must be code");
	if ((ar->ar_has_scope = json_scope(o, "scope", ar->ar_scope,
	    sizeof(ar->ar_scope))) == -1)
		FAIL("invalid_scope", "scope must be a string of scope words");
	if ((ar->ar_has_state = json_str(o, "state", ar->ar_state,
	    sizeof(ar->ar_state), 0)) == -1)
		FAIL("invalid_request", "state must be a string of at most "
		    "1024 bytes");
	if (authorize_pkce(o, ar, err, why) == -1)
		goto out;
	rc = 0;
out:
	json_decref(o);
	return rc;
}

int
oauth_parse_pat(const char *body, size_t len, struct pat_req *pr,
    const char **err, const char **why)
{
	json_t		*o, *v;
	json_int_t	 e;
	int		 rc = -1;

	memset(pr, 0, sizeof(*pr));
	if ((o = json_body(body, len)) == NULL)
		FAIL("invalid_request", "the body must be a JSON object");
	if (json_str(o, "name", pr->pr_name, sizeof(pr->pr_name), 1) != 1)
		FAIL("invalid_request", "name must be a string of 1 to 128 "
		    "bytes without control characters");
	if ((pr->pr_has_scope = json_scope(o, "scope", pr->pr_scope,
	    sizeof(pr->pr_scope))) == -1)
		FAIL("invalid_scope", "scope must be a string of scope words");
	v = json_object_get(o, "expires_in");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_integer(v))
			FAIL("invalid_request", "expires_in must be an integer");
		e = json_integer_value(v);
		if (e < OA_EXPIRES_MIN || e > OA_EXPIRES_MAX)
			FAIL("invalid_request", "expires_in must be 60 to "
			    "315360000 seconds");
		pr->pr_expires_in = (int64_t)e;
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

int
oauth_parse_rotate(const char *body, size_t len, int64_t *overlap,
    const char **err, const char **why)
{
	json_t		*o, *v;
	json_int_t	 e;
	int		 rc = -1;

	if ((o = json_body(body, len)) == NULL)
		FAIL("invalid_request", "the body must be a JSON object");
	v = json_object_get(o, "overlap");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_integer(v))
			FAIL("invalid_request", "overlap must be an integer");
		e = json_integer_value(v);
		if (e < 0 || e > OA_OVERLAP_MAX)
			FAIL("invalid_request", "overlap must be 0 to 604800 "
			    "seconds");
		*overlap = (int64_t)e;
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

void
oauth_path_id(struct http_str path, const char *prefix, const char *suffix,
    char out[24])
{
	size_t	 i, n = strlen(prefix), sl = strlen(suffix), end;
	int	 ok;

	end = path.s_len >= n + sl ? path.s_len - sl : 0;
	ok = end > n && end - n < 19 && path.s_ptr[n] != '0' &&
	    memcmp(path.s_ptr + end, suffix, sl) == 0;
	for (i = n; ok && i < end; i++)
		ok = isdigit((unsigned char)path.s_ptr[i]);
	if (ok) {
		memcpy(out, path.s_ptr + n, end - n);
		out[end - n] = '\0';
	} else
		strcpy(out, "0");
}

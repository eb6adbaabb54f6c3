/*
 * The OAuth pure functions (worker/oauth/oauth_util.c), linked with proto/
 * alone: what a client sees of them is which credentials, verifiers,
 * challenges, scopes and bodies are taken, and that a refresh successor
 * sealed for one token opens only with that token.
 */
#include <string.h>

#include <criterion/criterion.h>

#include "worker/oauth/oauth.h"

static int
basic(const char *hdr, char *id, char *secret, size_t *slen)
{
	struct http_str	 h = { hdr, hdr ? strlen(hdr) : 0 };

	return oauth_basic_decode(h, id, OA_CLIENT_ID_MAX + 1, secret,
	    PASSWD_MAX_LEN + 1, slen);
}

Test(basic, decodes_the_urlencoded_parts)
{
	char	 id[OA_CLIENT_ID_MAX + 1], secret[PASSWD_MAX_LEN + 1];
	size_t	 slen = 0;

	/* base64("my%20app:s%3Acr+t") */
	cr_assert_eq(basic("Basic bXklMjBhcHA6cyUzQWNyK3Q=", id, secret,
	    &slen), 1);
	cr_assert_str_eq(id, "my app");
	cr_assert_str_eq(secret, "s:cr t");
	cr_assert_eq(slen, 6);
	/* The scheme is case-insensitive (RFC 7617 2). */
	cr_assert_eq(basic("basic bXklMjBhcHA6cyUzQWNyK3Q=", id, secret,
	    &slen), 1);
}

Test(basic, absent_or_another_scheme_is_not_basic)
{
	char	 id[OA_CLIENT_ID_MAX + 1], secret[PASSWD_MAX_LEN + 1];
	size_t	 slen;

	cr_assert_eq(basic(NULL, id, secret, &slen), 0);
	cr_assert_eq(basic("Bearer abc", id, secret, &slen), 0);
}

Test(basic, malformed_is_refused)
{
	char	 id[OA_CLIENT_ID_MAX + 1], secret[PASSWD_MAX_LEN + 1];
	size_t	 slen;

	cr_assert_eq(basic("Basic !!!!", id, secret, &slen), -1);
	cr_assert_eq(basic("Basic bm9jb2xvbg==", id, secret, &slen), -1,
	    "no colon");
	cr_assert_eq(basic("Basic OnNlY3JldA==", id, secret, &slen), -1,
	    "empty client id");
	cr_assert_eq(basic("Basic YWJj", id, secret, &slen), -1);
	cr_assert_eq(basic("Basic YQ=a", id, secret, &slen), -1,
	    "padding in the middle");
}

Test(pkce, s256_of_rfc7636_appendix_b)
{
	char	 out[OA_CHALLENGE_LEN + 1];

	oauth_pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", out);
	cr_assert_str_eq(out, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	cr_assert(oauth_pkce_challenge_ok(out));
}

Test(pkce, verifier_length_and_alphabet)
{
	char	 v[130];
	size_t	 n;

	/* RFC 7636 4.1: 43 to 128 characters. */
	for (n = 42; n <= 129; n++) {
		memset(v, 'a', n);
		v[n] = '\0';
		cr_assert_eq(oauth_pkce_verifier_ok(v), n >= 43 && n <= 128,
		    "%zu characters", n);
	}
	cr_assert(oauth_pkce_verifier_ok(
	    "-._~0123456789abcdefghijklmnopqrstuvwxyzABCD"));
	cr_assert_not(oauth_pkce_verifier_ok(
	    "+123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"));
}

Test(pkce, challenge_shape)
{
	cr_assert_not(oauth_pkce_challenge_ok(
	    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"), "42");
	cr_assert_not(oauth_pkce_challenge_ok(
	    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"), "not base64url");
}

Test(box, opens_only_with_its_token)
{
	uint8_t	 box[OA_BOX_MAX];
	char	 out[256];
	int	 n;

	n = oauth_box_seal("old-refresh", "access refresh", box, sizeof(box));
	cr_assert_gt(n, 0);
	cr_assert_eq(oauth_box_open("old-refresh", box, (size_t)n, out,
	    sizeof(out)), (int)strlen("access refresh"));
	cr_assert_str_eq(out, "access refresh");
	cr_assert_eq(oauth_box_open("other-refresh", box, (size_t)n, out,
	    sizeof(out)), -1);
	box[n - 1] ^= 1;
	cr_assert_eq(oauth_box_open("old-refresh", box, (size_t)n, out,
	    sizeof(out)), -1, "a changed tag");
	cr_assert_eq(oauth_box_open("old-refresh", box, 10, out,
	    sizeof(out)), -1, "shorter than nonce and tag");
}

Test(scope, authorize_normalises_the_scope)
{
	struct authorize_req ar;
	const char	*err, *why;
	const char	 ok[] = "{\"client_id\":\"c\",\"redirect_uri\":"
	    "\"https://a/cb\",\"scope\":\"read  write read\"}";
	const char	 bad[] = "{\"client_id\":\"c\",\"redirect_uri\":"
	    "\"https://a/cb\",\"scope\":\"re\\\"ad\"}";

	cr_assert_eq(oauth_parse_authorize(ok, strlen(ok), &ar, &err, &why),
	    0);
	cr_assert(ar.ar_has_scope);
	cr_assert_str_eq(ar.ar_scope, "read write");
	cr_assert_eq(oauth_parse_authorize(bad, strlen(bad), &ar, &err,
	    &why), -1);
	cr_assert_str_eq(err, "invalid_scope");
}

Test(scope, authorize_requires_s256)
{
	struct authorize_req ar;
	const char	*err, *why;
	const char	 plain[] = "{\"client_id\":\"c\",\"redirect_uri\":"
	    "\"https://a/cb\",\"code_challenge\":"
	    "\"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\"}";

	cr_assert_eq(oauth_parse_authorize(plain, strlen(plain), &ar, &err,
	    &why), -1);
	cr_assert_str_eq(err, "invalid_request");
}

Test(redirect, appends_code_and_state_before_the_fragment)
{
	char	 out[256];

	cr_assert_eq(oauth_redirect_to("https://a/cb?x=1#f", "C0de", "s t",
	    NULL, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "https://a/cb?x=1&code=C0de&state=s%20t#f");
	cr_assert_eq(oauth_redirect_to("https://a/cb", "C0de", NULL,
	    "https://id.example", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "https://a/cb?code=C0de"
	    "&iss=https%3A%2F%2Fid.example");
	cr_assert_eq(oauth_redirect_to("https://a/cb", "C0de", NULL, NULL, out,
	    10), -1);
}

Test(redirect, with_any_parameters)
{
	const char	*kv[6] = { "error", "access_denied", "state", NULL,
			    "iss", "https://id.example:8443" };
	char		 out[256];

	cr_assert_eq(oauth_redirect_with("http://127.0.0.1:9/cb?", kv, 3, out,
	    sizeof(out)), 0);
	cr_assert_str_eq(out, "http://127.0.0.1:9/cb?error=access_denied"
	    "&iss=https%3A%2F%2Fid.example%3A8443");
	kv[3] = "<&>";
	cr_assert_eq(oauth_redirect_with("/authorize", kv, 2, out,
	    sizeof(out)), 0);
	cr_assert_str_eq(out, "/authorize?error=access_denied&state=%3C%26%3E");
	cr_assert_eq(oauth_redirect_with("/a", kv, 3, out, 20), -1);
}

Test(rotate, overlap_within_a_week)
{
	const char	*err, *why;
	int64_t		 ov = 7;
	const char	*bad[] = { "{\"overlap\":604801}", "{\"overlap\":-1}",
	    "{\"overlap\":\"60\"}", "{\"overlap\":1.5}", "[]", "x" };
	size_t		 i;

	cr_assert_eq(oauth_parse_rotate("{}", 2, &ov, &err, &why), 0);
	cr_assert_eq(ov, 7);
	cr_assert_eq(oauth_parse_rotate("{\"overlap\":null}", 16, &ov, &err,
	    &why), 0);
	cr_assert_eq(ov, 7);
	cr_assert_eq(oauth_parse_rotate("{\"overlap\":604800}", 18, &ov, &err,
	    &why), 0);
	cr_assert_eq(ov, 604800);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(oauth_parse_rotate(bad[i], strlen(bad[i]), &ov,
		    &err, &why), -1, "%s", bad[i]);
		cr_assert_str_eq(err, "invalid_request");
	}
}

static const char *
path_id(const char *path, const char *suffix, char out[24])
{
	struct http_str	 p = { path, strlen(path) };

	oauth_path_id(p, "/pats/", suffix, out);
	return out;
}

Test(path, id_between_prefix_and_suffix)
{
	char	 id[24];

	cr_assert_str_eq(path_id("/pats/42", "", id), "42");
	cr_assert_str_eq(path_id("/pats/42/rotate", "/rotate", id), "42");
	cr_assert_str_eq(path_id("/pats/42/rotate", "", id), "0");
	cr_assert_str_eq(path_id("/pats/42", "/rotate", id), "0");
	cr_assert_str_eq(path_id("/pats//rotate", "/rotate", id), "0");
	cr_assert_str_eq(path_id("/pats/042", "", id), "0");
	cr_assert_str_eq(path_id("/pats/-1", "", id), "0");
	cr_assert_str_eq(path_id("/pats/1234567890123456789", "", id), "0");
	cr_assert_str_eq(path_id("/pats/rotate", "/rotate", id), "0");
}

/*
 * libFuzzer target for what the OAuth endpoints parse besides forms: the
 * JSON bodies of POST /authorize and POST /pats, the HTTP Basic client
 * credentials, scopes and the redirect_to builder (worker/oauth/oauth_util.c).
 * Checks the documented invariants of whatever they accept: every string
 * NUL-terminated inside its buffer and within its limit, scopes already
 * canonical, a challenge of 43 base64url characters, and a redirect_to that
 * always fits the buffer the handler gives it.  Also the JSON writer
 * behind /introspect (proto/jsonw.c), on the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "worker/oauth/oauth.h"

/* The worst issuer for the redirect's size: as long as the setting may be,
 * every character one that percent-encoding triples. */
static char	 issuer[CF_URL_LEN];

static void
check_str(const char *s, size_t cap)
{
	if (strnlen(s, cap) >= cap)
		abort();
}

/* A normalised scope normalises to itself. */
static void
check_scope(const char *scope)
{
	char	 again[OA_SCOPE_MAX + 1];

	check_str(scope, OA_SCOPE_MAX + 1);
	if (scope_normalize(scope, again, sizeof(again)) != 0 ||
	    strcmp(scope, again) != 0 || !scope_subset(scope, again))
		abort();
}

static void
check_authorize(const uint8_t *data, size_t size)
{
	struct authorize_req ar;
	const char	*err, *why;
	char		 to[OA_URI_MAX + OA_STATE_MAX * 3 + CF_URL_LEN * 3 + 128];

	if (issuer[0] == '\0')
		memset(issuer, '/', sizeof(issuer) - 1);

	if (oauth_parse_authorize((const char *)data, size, &ar, &err,
	    &why) == -1) {
		if (err == NULL || why == NULL)
			abort();
		return;
	}
	check_str(ar.ar_client_id, sizeof(ar.ar_client_id));
	check_str(ar.ar_redirect_uri, sizeof(ar.ar_redirect_uri));
	check_str(ar.ar_state, sizeof(ar.ar_state));
	if (ar.ar_client_id[0] == '\0' || ar.ar_redirect_uri[0] == '\0')
		abort();
	if (ar.ar_has_scope)
		check_scope(ar.ar_scope);
	if (ar.ar_has_challenge && !oauth_pkce_challenge_ok(ar.ar_challenge))
		abort();
	/* h_authorize.c sizes its buffer like this: it must always fit. */
	if (oauth_redirect_to(ar.ar_redirect_uri,
	    "tkc_0000000000000000000000000000000000000000000000000",
	    ar.ar_has_state ? ar.ar_state : NULL, issuer, to,
	    sizeof(to)) == -1)
		abort();
	check_str(to, sizeof(to));
}

static void
check_pat(const uint8_t *data, size_t size)
{
	struct pat_req	 pr;
	const char	*err, *why;

	if (oauth_parse_pat((const char *)data, size, &pr, &err, &why) == -1)
		return;
	check_str(pr.pr_name, sizeof(pr.pr_name));
	if (pr.pr_name[0] == '\0')
		abort();
	if (pr.pr_has_scope)
		check_scope(pr.pr_scope);
	if (pr.pr_expires_in != 0 && (pr.pr_expires_in < OA_EXPIRES_MIN ||
	    pr.pr_expires_in > OA_EXPIRES_MAX))
		abort();
}

static void
check_rotate(const uint8_t *data, size_t size)
{
	const char	*err, *why;
	int64_t		 overlap = -1;

	if (oauth_parse_rotate((const char *)data, size, &overlap, &err,
	    &why) == -1)
		return;
	if (overlap != -1 && (overlap < 0 || overlap > OA_OVERLAP_MAX))
		abort();
}

static void
check_basic(const char *s, size_t n)
{
	struct http_str	 a = { s, n };
	char		 id[OA_CLIENT_ID_MAX + 1], secret[PASSWD_MAX_LEN + 1];
	size_t		 slen = 0;

	if (oauth_basic_decode(a, id, sizeof(id), secret, sizeof(secret),
	    &slen) != 1)
		return;
	check_str(id, sizeof(id));
	check_str(secret, sizeof(secret));
	if (id[0] == '\0' || slen != strlen(secret))
		abort();
}

/*
 * The JSON the workers write themselves (proto/jsonw.c): whatever bytes a
 * stored name holds, jansson parses the object back, and a string that was
 * valid UTF-8 comes back unchanged.  s is NUL-terminated.
 */
static void
check_jsonw(const char *s)
{
	char		*out;
	size_t		 cap = 6 * strlen(s) + 64;
	struct jsonw	 jw;
	json_t		*o, *v, *ref;
	long		 n;

	if ((out = malloc(cap)) == NULL)
		return;
	jw_begin(&jw, out, cap);
	jw_str(&jw, "k", s);
	jw_int(&jw, "n", (int64_t)strlen(s));
	if ((n = jw_end(&jw)) < 0)
		abort();
	if ((o = json_loadb(out, (size_t)n, 0, NULL)) == NULL ||
	    (v = json_object_get(o, "k")) == NULL || !json_is_string(v))
		abort();
	/* jansson's json_string() takes exactly the valid UTF-8. */
	if ((ref = json_string(s)) != NULL &&
	    strcmp(json_string_value(v), s) != 0)
		abort();
	json_decref(ref);
	json_decref(o);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*s, scope[OA_SCOPE_MAX + 1];

	check_authorize(data, size);
	check_pat(data, size);
	check_rotate(data, size);
	check_basic((const char *)data, size);
	if ((s = malloc(size + 7)) == NULL)
		return 0;
	/* The same bytes as the base64 of a Basic header, and as a scope. */
	memcpy(s, "Basic ", 6);
	memcpy(s + 6, data, size);
	check_basic(s, size + 6);
	s[size + 6] = '\0';
	if (scope_normalize(s + 6, scope, sizeof(scope)) == 0)
		check_scope(scope);
	check_jsonw(s + 6);
	free(s);
	return 0;
}

/*
 * POST /device_authorization (RFC 8628 3.1, SPEC 11): a device without a
 * browser gets a device_code to poll /token with (h_token.c) and a short
 * user_code that the person types at /device on another screen.
 *
 * The device_code is a tkd_ token: only its SHA-256 reaches PostgreSQL.
 * The user_code is 8 letters of BCDFGHJKLMNPQRSTVWXZ (RFC 8628 6.1: no
 * vowels, no look-alikes), drawn from RAND_bytes by rejection so every
 * letter is equally likely, stored without its dash and shown as two
 * groups of four letters joined by a dash (BCDF-GHJK).
 * 20^8 codes live for DEV_TTL seconds each; guessing one is the /device
 * pages' limit to enforce.  Issuing is limited per source address here,
 * in the shared table client authentication failures use (shm/ratelimit.c),
 * under a name no client id can have (client ids hold no space).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

#define DEV_TTL		600	/* expires_in */
#define DEV_INTERVAL	5	/* interval: seconds between polls */
#define DEV_RATE_MAX	30	/* codes per address ... */
#define DEV_RATE_WINDOW	60	/* ... per this many seconds */
#define DEV_CODE_LEN	8	/* letters of a user code */

static const char dev_alphabet[] = "BCDFGHJKLMNPQRSTVWXZ";

static const char start_sql[] =
    "SELECT o_status FROM tokend.tokend_device_start(decode($1, 'hex'), $2, $3, "
    "$4::bigint, $5, $6::integer, $7::integer)";

/*
 * DEV_CODE_LEN letters into out (NUL-terminated).  A byte counts only
 * below 240, the largest multiple of 20 that fits, so b % 20 is uniform.
 * Returns 0, or -1 when RAND_bytes fails.
 */
static int
dev_user_code(char out[DEV_CODE_LEN + 1])
{
	const size_t	 na = sizeof(dev_alphabet) - 1;
	unsigned char	 b[32];
	size_t		 i, n = 0;

	while (n < DEV_CODE_LEN) {
		if (RAND_bytes(b, sizeof(b)) != 1)
			return -1;
		for (i = 0; i < sizeof(b) && n < DEV_CODE_LEN; i++)
			if (b[i] < 256 - 256 % na)
				out[n++] = dev_alphabet[b[i] % na];
	}
	out[n] = '\0';
	OPENSSL_cleanse(b, sizeof(b));
	return 0;
}

/* The rate limit's name for c's address. */
static void
dev_rate_name(struct conn *c, char *out, size_t len)
{
	snprintf(out, len, "device_authorization %s", peer_name(c));
}

/* Past this address's share: 429 with Retry-After.  Returns 1 if so. */
static int
dev_limited(struct conn *c)
{
	char	 name[96];
	int	 wait;

	dev_rate_name(c, name, sizeof(name));
	wait = ratelimit_check(W.wk_shm, name, W.wk_now, DEV_RATE_WINDOW,
	    DEV_RATE_MAX);
	if (wait == 0)
		return 0;
	LOG(LVL_WARN, "device_rate_limited", KV_I("retry_after", wait),
	    KV_S("peer", peer_name(c)));
	oauth_busy(c, wait, "too many device authorizations from this "
	    "address; try again later");
	return 1;
}

/* 200 with the codes (RFC 8628 3.2).  or_presented holds the device_code,
 * or_user the user code. */
static void
dev_answer(struct conn *c, struct oreq *or)
{
	char	 shown[DEV_CODE_LEN + 2], uri[OA_URL_MAX];
	char	 complete[OA_URL_MAX + 32];
	json_t	*o;

	snprintf(shown, sizeof(shown), "%.4s-%s", or->or_user,
	    or->or_user + 4);
	oauth_url("/device", uri, sizeof(uri));
	snprintf(complete, sizeof(complete), "%s?user_code=%s", uri, shown);
	o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "device_code",
	    or->or_presented, "user_code", shown, "verification_uri", uri,
	    "verification_uri_complete", complete, "expires_in", DEV_TTL,
	    "interval", DEV_INTERVAL);
	oauth_json(c, 200, o);
}

static void
dev_started(struct conn *c, PGresult *res, void *arg)
{
	struct oreq	*or;
	char		 pfx[TOKEN_DISPLAY_LEN + 1];

	(void)arg;
	if ((or = oreq_row(c, res)) == NULL)
		return;
	if (strcmp(PQgetvalue(res, 0, 0), "ok") != 0)
		oauth_unavailable(c);
	else {
		oauth_prefix(or->or_presented, pfx);
		LOG(LVL_INFO, "device_code_issued", KV_S("code", pfx),
		    KV_S("client", or->or_client.ci_client_id),
		    KV_S("scope", or->or_scope), KV_S("peer", peer_name(c)));
		dev_answer(c, or);
	}
	oreq_resume(c, HANDLER_DONE);
}

/* The client is authenticated: check it may use the grant, then store
 * the new codes. */
static enum handler_result
dev_go(struct conn *c, struct oreq *or)
{
	char		 hash[2 * TOKEN_HASH_LEN + 1], pfx[TOKEN_DISPLAY_LEN + 1];
	char		 cid[24], ttl[16], interval[16], rname[96];
	const char	*p[7];

	if (!(or->or_client.ci_grants & GRANT_DEVICE)) {
		oauth_error(c, 400, "unauthorized_client", "this client is not "
		    "allowed the device grant");
		return HANDLER_DONE;
	}
	if (client_scope(c, or) == -1)
		return HANDLER_DONE;
	if (token_generate(TOKEN_DEVICE, or->or_presented) == -1 ||
	    dev_user_code(or->or_user) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	dev_rate_name(c, rname, sizeof(rname));
	ratelimit_fail(W.wk_shm, rname, W.wk_now, DEV_RATE_WINDOW);
	oauth_hash_hex(or->or_presented, hash);
	oauth_prefix(or->or_presented, pfx);
	snprintf(cid, sizeof(cid), "%lld", (long long)or->or_client.ci_id);
	snprintf(ttl, sizeof(ttl), "%d", DEV_TTL);
	snprintf(interval, sizeof(interval), "%d", DEV_INTERVAL);
	p[0] = hash;
	p[1] = pfx;
	p[2] = or->or_user;
	p[3] = cid;
	p[4] = or->or_scope;
	p[5] = ttl;
	p[6] = interval;
	return oauth_query(c, start_sql, 7, p, dev_started);
}

enum handler_result
h_device_authorization(struct conn *c)
{
	struct oreq	*or;

	if (dev_limited(c))
		return HANDLER_DONE;
	if ((or = oreq_new(c)) == NULL)
		return HANDLER_DONE;
	if (oreq_scope(c, or) == -1 || client_creds(c, or) == -1)
		return oreq_done(c, HANDLER_DONE);
	return oreq_done(c, client_auth(c, or, 0, dev_go));
}

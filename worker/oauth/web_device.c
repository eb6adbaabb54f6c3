/*
 * GET and POST /device: where a person enters the user code a device
 * shows (RFC 8628 3.3), signs in if need be, and approves or denies on the
 * consent page (POST /consent, web_authorize.c, which runs the update of
 * SPEC 11's contract with the device grant).
 *
 * A user code is 8 letters of an alphabet of 20 (RFC 8628 6.1: about 2^34
 * codes): guessing one is slow only if guesses are few, so each source
 * address may get WEB_DEVICE_MAX_WRONG codes wrong in WEB_DEVICE_WINDOW
 * seconds, counted in the shared rate-limit table (shm/ratelimit.c) that
 * every worker sees; past that the answer is 429 without a lookup.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/oauth/web.h"

static const char device_sql[] =
    "SELECT o_status, coalesce(o_client, ''), coalesce(o_scope, ''), "
    "coalesce(o_username, '') FROM tokend.tokend_web_device($1, decode($2, 'hex'), "
    "decode($3, 'hex'), $4::integer)";

static const char device_alphabet[] = "BCDFGHJKLMNPQRSTVWXZ";

static void
device_form(struct conn *c, struct web_req *wr, int status, const char *code,
    const char *error)
{
	struct html_var	 v[] = {
		{ "csrf", wr->wr_csrf, HV_TEXT },
		{ "user_code", code, HV_TEXT },
		{ "error", error, HV_TEXT },
	};

	web_page(c, wr, status, "device", "Connect a device", v, 3);
}

/* Upper case, without dashes and spaces: 0, or -1 when what is left is
 * not 8 letters of the alphabet. */
static int
device_normalize(const char *in, char out[9])
{
	size_t	 n = 0;

	for (; *in != '\0'; in++) {
		if (*in == '-' || *in == ' ')
			continue;
		if (n == 8 || strchr(device_alphabet,
		    toupper((unsigned char)*in)) == NULL || *in == '\0')
			return -1;
		out[n++] = (char)toupper((unsigned char)*in);
	}
	out[n] = '\0';
	return n == 8 ? 0 : -1;
}

/* This address's key in the shared rate-limit table. */
static void
device_rl_key(struct conn *c, char *key, size_t len)
{
	snprintf(key, len, "device %s", peer_name(c));
}

static void
device_wrong(struct conn *c, struct web_req *wr)
{
	char	 key[96];

	device_rl_key(c, key, sizeof(key));
	ratelimit_fail(W.wk_shm, key, W.wk_now, WEB_DEVICE_WINDOW);
	LOG(LVL_INFO, "device_code_wrong", KV_S("peer", peer_name(c)));
	device_form(c, wr, 400, form_get(&wr->wr_form, "user_code"),
	    "That code is not valid, or it has expired. Check the code on "
	    "your device.");
}

static void
device_found(struct conn *c, PGresult *res, void *arg)
{
	struct web_req	*wr;
	const char	*st;
	char		 next[32];

	(void)arg;
	if ((wr = web_row(c, res)) == NULL)
		return;
	st = PQgetvalue(res, 0, 0);
	if (strcmp(st, "no_code") == 0)
		device_wrong(c, wr);
	else if (strcmp(st, "no_session") == 0) {
		snprintf(next, sizeof(next), "/device?user_code=%s",
		    wr->wr_code_user);
		web_signin_page(c, wr, 200, next, PQgetvalue(res, 0, 1), NULL,
		    NULL);
	} else
		web_consent_page(c, wr, PQgetvalue(res, 0, 1),
		    PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 2));
	web_resume(c, HANDLER_DONE);
}

static enum handler_result
device_post(struct conn *c, struct web_req *wr)
{
	const char	*code = form_get(&wr->wr_form, "user_code"), *p[4];
	char		 key[96], hash[WEB_HEX], ttl[16];
	int		 wait;

	if (!web_csrf_ok(c, wr))
		return HANDLER_DONE;
	device_rl_key(c, key, sizeof(key));
	if ((wait = ratelimit_check(W.wk_shm, key, W.wk_now, WEB_DEVICE_WINDOW,
	    WEB_DEVICE_MAX_WRONG)) > 0) {
		LOG(LVL_WARN, "device_code_rate_limited", KV_I("retry_after",
		    wait), KV_S("peer", peer_name(c)));
		wr->wr_retry_after = wait;
		web_error(c, wr, 429, "Too many attempts", "Too many wrong "
		    "codes were entered from this address. Wait a few minutes "
		    "and try again.");
		return HANDLER_DONE;
	}
	if (code == NULL || device_normalize(code, wr->wr_code_user) == -1) {
		device_wrong(c, wr);
		return HANDLER_DONE;
	}
	if (web_mint(wr, TOKEN_SESSION, hash) == -1) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	snprintf(ttl, sizeof(ttl), "%d", WEB_TICKET_TTL);
	p[0] = wr->wr_code_user;
	p[1] = wr->wr_has_session ? wr->wr_session : NULL;
	p[2] = hash;
	p[3] = ttl;
	return web_query(c, device_sql, 4, p, device_found);
}

enum handler_result
web_device(struct conn *c)
{
	struct web_req	*wr;
	const char	*code;

	if ((wr = web_req_new(c, c->c_req.rq_method == HTTP_POST)) == NULL)
		return HANDLER_DONE;
	if (c->c_req.rq_method == HTTP_POST)
		return web_done(c, device_post(c, wr));
	code = form_get(&wr->wr_form, "user_code");
	device_form(c, wr, 200, code, NULL);
	return web_done(c, HANDLER_DONE);
}

/*
 * POST /credentials/revoke (SPEC 13): leaked credentials reported by a
 * secret scanner, on the model of GitHub's secret scanning partner
 * programme.  No authentication: whoever holds a leaked token may revoke
 * it, and that is all this endpoint lets anyone do.
 *
 * The answer must not tell a caller which tokens exist, by its bytes or by
 * its time.  So every request that passes the checks makes exactly one
 * statement, tokend_leak_revoke (migration 018), with the SHA-256 of each
 * well-formed string (none at all still makes it), and answers 202
 * {"received": N} after it, N counting every string, malformed ones
 * included (they are ignored).  What was revoked goes only to the log
 * (leak_report_received) and to the audit trail (by=leak_report).  The
 * revoked hashes leave this box's cache before the answer; other boxes
 * drop them through the notify triggers.
 *
 * Each source address may report LEAK_PER_WINDOW times per LEAK_WINDOW
 * seconds (per box), counted in shm's shared rate-limit table before the
 * body is parsed; past it, 429 with Retry-After and no query.
 */
#include <stdlib.h>
#include <string.h>

#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

#define LEAK_WINDOW	60
#define LEAK_PER_WINDOW	10
/* Rate-limit names: "\xff" is never in a client id (those are UTF-8), so
 * no client's failures and no address's reports share a name. */
#define LEAK_RL_TAG	"\xff" "leak "

static const char leak_sql[] =
    "SELECT o_found, o_n, o_hashes FROM tokend.tokend_leak_revoke("
    "ARRAY(SELECT decode(x, 'hex') FROM unnest(string_to_array($1, ',')) x),"
    " 'leak_report')";

/* The request's state, in c_pending_data. */
struct leak_wait {
	struct pending	 lw_pd;			/* first */
	size_t		 lw_received;
	size_t		 lw_wellformed;
	char		 lw_hex[LEAK_HEX_MAX];
};

int
leak_parse(const char *body, size_t len, char *hex, size_t *received,
    size_t *wellformed, const char **why)
{
	json_t		*o, *a, *v;
	const char	*s;
	size_t		 i, n = 0, w = 0;
	int		 rc = -1;

	hex[0] = '\0';
	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	a = json_is_object(o) ? json_object_get(o, "credentials") : NULL;
	if (!json_is_array(a) || json_array_size(a) < 1 ||
	    json_array_size(a) > LEAK_MAX) {
		*why = "the body must be {\"credentials\": [...]} with 1 to "
		    "1000 strings";
		goto out;
	}
	json_array_foreach(a, i, v) {
		if (!json_is_string(v)) {
			*why = "every credential must be a string";
			goto out;
		}
		s = json_string_value(v);
		n++;
		if (token_check(s, json_string_length(v)) == TOKEN_INVALID)
			continue;
		if (w++ > 0)
			*hex++ = ',';
		oauth_hash_hex(s, hex);
		hex += 2 * TOKEN_HASH_LEN;
	}
	*received = n;
	*wellformed = w;
	rc = 0;
out:
	json_decref(o);
	return rc;
}

/* Past this address's share: 1 after answering 429, else 0 (and counted). */
static int
leak_limited(struct conn *c)
{
	char	 name[sizeof(LEAK_RL_TAG) + IP_STR_LEN];
	int	 wait;

	snprintf(name, sizeof(name), "%s%s", LEAK_RL_TAG, peer_name(c));
	wait = ratelimit_check(W.wk_shm, name, W.wk_now, LEAK_WINDOW,
	    LEAK_PER_WINDOW);
	if (wait == 0) {
		ratelimit_fail(W.wk_shm, name, W.wk_now, LEAK_WINDOW);
		return 0;
	}
	LOG(LVL_WARN, "leak_report_limited", KV_S("peer", peer_name(c)),
	    KV_I("retry_after", wait));
	oauth_busy(c, wait, "too many reports from this address; try again "
	    "later");
	return 1;
}

static void
leak_answered(struct conn *c, PGresult *res, void *arg)
{
	struct leak_wait *lw = (struct leak_wait *)c->c_pending_data;
	struct jsonw	 jw;
	char		 body[64];
	long		 n;

	(void)arg;
	if (res == NULL || PQntuples(res) != 1) {
		oauth_unavailable(c);
		goto out;
	}
	oauth_cache_revoke(PQgetvalue(res, 0, 2));
	ctr_add(&W.wk_slot->sl_leak_reports, 1);
	LOG(LVL_WARN, "leak_report_received", KV_S("peer", peer_name(c)),
	    KV_I("received", lw->lw_received),
	    KV_I("wellformed", lw->lw_wellformed),
	    KV_I("found", strtoll(PQgetvalue(res, 0, 0), NULL, 10)),
	    KV_I("revoked", strtoll(PQgetvalue(res, 0, 1), NULL, 10)),
	    KV_S("by", "leak_report"));
	jw_begin(&jw, body, sizeof(body));
	jw_int(&jw, "received", (int64_t)lw->lw_received);
	if ((n = jw_end(&jw)) < 0)
		oauth_unavailable(c);
	else
		oauth_body(c, 202, body, (size_t)n);
out:
	worker_pending_done(c, HANDLER_DONE);
	worker_resume(c);
}

enum handler_result
h_leak(struct conn *c)
{
	const struct http_req *rq = &c->c_req;
	struct leak_wait *lw;
	const char	*why, *p[1];

	if (leak_limited(c))
		return HANDLER_DONE;
	if (!oauth_ctype_is(rq->rq_content_type, "application/json")) {
		oauth_api_error(c, 415, "invalid_request", "the body must be "
		    "application/json");
		return HANDLER_DONE;
	}
	if ((lw = calloc(1, sizeof(*lw))) == NULL) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	lw->lw_pd.pd_free = worker_pending_wipe;
	lw->lw_pd.pd_size = sizeof(*lw);
	c->c_pending_data = &lw->lw_pd;
	if (leak_parse(c->c_in + c->c_inoff + rq->rq_header_bytes,
	    rq->rq_content_length, lw->lw_hex, &lw->lw_received,
	    &lw->lw_wellformed, &why) == -1) {
		oauth_api_error(c, 400, "invalid_request", why);
		return worker_pending_done(c, HANDLER_DONE);
	}
	p[0] = lw->lw_hex;
	return worker_pending_done(c, oauth_query(c, leak_sql, 1, p,
	    leak_answered));
}

/*
 * A user's sessions (SPEC 12): GET /sessions, DELETE /sessions/ID.
 *
 * A session is a live refresh family (tokend_sessions, migration 014): its
 * id is the family id, and "current" marks the family of the access token
 * that asks.  Authenticated as the PAT API is: the user's own access token
 * of a first-party client (tokend_bearer), never a PAT.  DELETE ends the
 * family with tokend_session_revoke in one transaction: its tokens, the
 * browser sessions they were issued under, and the consent of its user to
 * its client.  The family leaves this instance's cache before the 204, and
 * every other instance's within a second through the notify trigger.
 * Another user's, an unknown or an ended family answers 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/oauth/oauth.h"
#include "worker/pgq.h"

#define ACCESS_ONLY	(1u << TOKEN_ACCESS)

/* One row with the bearer's status and no session when there are none. */
static const char list_sql[] =
    "SELECT b.o_status, s.o_id, s.o_client, " PG_EPOCH("s.o_created") ", "
    PG_EPOCH("s.o_last_used") ", coalesce(s.o_id = (SELECT family "
    "FROM tokend.tokens WHERE id = $2::bigint), false) "
    "FROM tokend.tokend_bearer($2::bigint, $1::bigint) b "
    "LEFT JOIN tokend.tokend_sessions($1::bigint) s ON b.o_status = 'ok' "
    "ORDER BY s.o_id";

static const char revoke_sql[] =
    "SELECT o_status, o_hashes, o_client FROM "
    "tokend.tokend_session_revoke($1::bigint, $2::bigint, $3::bigint)";

/* The request's state, in c_pending_data. */
struct sess_wait {
	struct oauth_wait sw_ow;		/* first */
	int		 sw_delete;
	char		 sw_id[24];		/* DELETE: the family */
	char		 sw_user[TI_USER_LEN];
};

/* The bearer's status from the SQL: 1 when "ok", else 0 after answering. */
static int
sess_status(struct conn *c, const char *st)
{
	if (strcmp(st, "ok") == 0)
		return 1;
	if (strcmp(st, "not_first_party") == 0)
		auth_bearer_forbidden(c, "only an access token issued to a "
		    "first-party client may manage sessions");
	else if (strcmp(st, "not_found") == 0)
		oauth_api_error(c, 404, "not_found", "no such session");
	else
		auth_bearer_denied(c, "the token is unknown, expired or "
		    "revoked");
	return 0;
}

static void
sess_listed(struct conn *c, PGresult *res)
{
	json_t	*a, *o;
	int	 i;

	if (!sess_status(c, PQgetvalue(res, 0, 0)))
		return;
	a = json_array();
	/* A row without a session (id NULL) only carries the status. */
	for (i = 0; a != NULL && i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 1))
			continue;
		o = json_pack("{s:I, s:s, s:o, s:o, s:b}", "id",
		    (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10),
		    "client_id", PQgetvalue(res, i, 2), "created_at",
		    oauth_ts_json(res, i, 3), "last_used_at",
		    oauth_ts_json(res, i, 4), "current",
		    PQgetvalue(res, i, 5)[0] == 't');
		json_array_append_new(a, o);
	}
	oauth_api_json(c, 200, a);
}

static void
sess_revoked(struct conn *c, struct sess_wait *sw, PGresult *res)
{
	if (!sess_status(c, PQgetvalue(res, 0, 0)))
		return;
	/* Gone from every worker's cache before the 204. */
	oauth_cache_revoke(PQgetvalue(res, 0, 1));
	LOG(LVL_INFO, "session_revoked", KV_S("family", sw->sw_id),
	    KV_S("user", sw->sw_user), KV_S("client", PQgetvalue(res, 0, 2)),
	    KV_S("by", "api"));
	resp_start(c, 204);
	resp_end(c, NULL, NULL, 0);
}

static void
sess_answered(struct conn *c, PGresult *res)
{
	struct sess_wait *sw = (struct sess_wait *)c->c_pending_data;

	if (sw->sw_delete)
		sess_revoked(c, sw, res);
	else
		sess_listed(c, res);
}

static enum handler_result
sess_go(struct conn *c, const struct tok_info *ti)
{
	struct sess_wait *sw = (struct sess_wait *)c->c_pending_data;
	char		 uid[24], tid[24];
	const char	*p[3] = { uid, tid };

	if (!auth_bearer_check(c, ti, ACCESS_ONLY))
		return HANDLER_DONE;
	if (ti->ti_user_id == 0) {
		auth_bearer_denied(c, "a user's access token is required");
		return HANDLER_DONE;
	}
	snprintf(uid, sizeof(uid), "%lld", (long long)ti->ti_user_id);
	snprintf(tid, sizeof(tid), "%lld", (long long)ti->ti_id);
	snprintf(sw->sw_user, sizeof(sw->sw_user), "%s", ti->ti_user);
	if (!sw->sw_delete)
		return oauth_bearer_query(c, list_sql, 2, p);
	p[0] = sw->sw_id;
	p[1] = uid;
	p[2] = tid;
	return oauth_bearer_query(c, revoke_sql, 3, p);
}

/* Authenticate, then list or end. */
static enum handler_result
sess_start(struct conn *c, int delete)
{
	struct sess_wait *sw;

	if ((sw = calloc(1, sizeof(*sw))) == NULL) {
		oauth_unavailable(c);
		return HANDLER_DONE;
	}
	sw->sw_delete = delete;
	if (delete)
		oauth_path_id(c->c_req.rq_path, "/sessions/", "", sw->sw_id);
	return oauth_bearer_start(c, &sw->sw_ow, sizeof(*sw), ACCESS_ONLY,
	    sess_go, sess_answered);
}

enum handler_result
h_sessions(struct conn *c)
{
	return sess_start(c, 0);
}

enum handler_result
h_session_delete(struct conn *c)
{
	return sess_start(c, 1);
}

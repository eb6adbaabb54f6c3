/*
 * Blocking libpq helpers, for tokenctl, the master's schema check and the
 * writer.  Workers never block on PostgreSQL and use lookup.c instead.
 *
 * Error strings are built so that nothing of the connection URL, which may
 * hold a password, reaches them: libpq's messages name the host and user at
 * most, and a URL libpq cannot even parse gets a generic message because
 * libpq quotes the offending part of it.
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "store/runtime/runtime.h"
#include "store/store.h"

#define PG_BACKOFF_MIN	100
#define PG_BACKOFF_MAX	5000
#define PG_RETRY_LOG_MS	1000	/* at most one db_retry line this often */

/* Copy the first line of msg (no "ERROR:  " label) into err. */
static void
pg_first_line(const char *prefix, const char *msg, char *err, size_t errlen)
{
	size_t	 n;

	if (msg == NULL || *msg == '\0')
		msg = "unknown error";
	n = strcspn(msg, "\r\n");
	snprintf(err, errlen, "%s%.*s", prefix, (int)n, msg);
}

/* Overwrite every occurrence of secret in s, in case a message quotes it. */
static void
pg_scrub(char *s, const char *secret)
{
	size_t	 n;
	char	*p;

	if (secret == NULL || (n = strlen(secret)) == 0)
		return;
	while ((p = strstr(s, secret)) != NULL)
		memset(p, '*', n);
}

/*
 * Whether the URL sets connect_timeout itself, and its password (a copy
 * into pw, "" when none).  Returns 0, or -1 when libpq cannot parse it.
 */
static int
pg_url_inspect(const char *url, int *has_timeout, char *pw, size_t pwlen)
{
	PQconninfoOption *opts, *o;
	char		 *perr = NULL;

	*has_timeout = 0;
	pw[0] = '\0';
	if ((opts = PQconninfoParse(url, &perr)) == NULL) {
		PQfreemem(perr);	/* may quote the URL: never shown */
		return -1;
	}
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "connect_timeout") == 0)
			*has_timeout = 1;
		else if (strcmp(o->keyword, "password") == 0)
			snprintf(pw, pwlen, "%s", o->val);
	}
	PQconninfoFree(opts);
	return 0;
}

PGconn *
pg_connect(const char *url, const char *appname, char *err, size_t errlen)
{
	const char	*keys[4], *vals[4];
	PGconn		*db = NULL;
	const char	*app = appname != NULL ? appname : "tokend";
	char		 pw[1024];
	int		 has_timeout, n = 0;

	if (url == NULL) {
		snprintf(err, errlen, "cannot connect to PostgreSQL: no URL");
		return NULL;
	}
	if (pg_url_inspect(url, &has_timeout, pw, sizeof(pw)) == -1) {
		snprintf(err, errlen, "cannot connect to PostgreSQL: "
		    "invalid database URL");
		return NULL;
	}
	/* With expand_dbname, the URL's own settings override keys given
	 * before dbname, and keys after it override the URL. */
	if (!has_timeout) {
		keys[n] = "connect_timeout";
		vals[n++] = "5";
	}
	keys[n] = "dbname";
	vals[n++] = url;
	keys[n] = "application_name";
	vals[n++] = app;
	keys[n] = NULL;
	vals[n] = NULL;
	db = PQconnectdbParams(keys, vals, 1);
	if (db != NULL && PQstatus(db) == CONNECTION_OK)
		pg_notices(db, strncmp(app, "tokend ", 7) == 0 ? app + 7 :
		    app);
	else {
		pg_first_line("cannot connect to PostgreSQL: ",
		    db != NULL ? PQerrorMessage(db) : "out of memory", err,
		    errlen);
		pg_scrub(err, pw);
		PQfinish(db);
		db = NULL;
	}
	memset(pw, 0, sizeof(pw));
	return db;
}

PGresult *
pg_exec(PGconn *db, const char *sql, int nparams, const char *const *params,
    char *err, size_t errlen)
{
	PGresult	*res;
	const char	*msg;

	res = PQexecParams(db, sql, nparams, NULL, params, NULL, NULL, 0);
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
		return res;
	default:
		break;
	}
	/* The primary message is the line a person can act on; the
	 * DETAIL that follows may quote row values, so it is left out. */
	msg = res != NULL ?
	    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (msg == NULL)
		msg = res != NULL ? PQresultErrorMessage(res) : NULL;
	if (msg == NULL || *msg == '\0')
		msg = PQerrorMessage(db);
	pg_first_line("", msg, err, errlen);
	PQclear(res);
	return NULL;
}

/* ---- reconnecting ----------------------------------------------------- */

void
pg_retry_init(struct pg_retry *rt, const char *conn)
{
	memset(rt, 0, sizeof(*rt));
	rt->rt_conn = conn;
	rt->rt_backoff = PG_BACKOFF_MIN;
}

void
pg_retry_failed(struct pg_retry *rt, const char *why, int64_t now_ms)
{
	char	 line[512];

	rt->rt_attempts++;
	/* A dead host fails every attempt: one line a second says so. */
	if (rt->rt_attempts == 1 || now_ms - rt->rt_logged_ms >=
	    PG_RETRY_LOG_MS) {
		pg_first_line("", why, line, sizeof(line));
		LOG(LVL_WARN, "db_retry", KV_S("conn", rt->rt_conn),
		    KV_S("error", line), KV_I("attempt", rt->rt_attempts),
		    KV_I("retry_ms", rt->rt_backoff));
		rt->rt_logged_ms = now_ms;
	}
	rt->rt_next_ms = now_ms + rt->rt_backoff;
	rt->rt_backoff = rt->rt_backoff * 2 > PG_BACKOFF_MAX ?
	    PG_BACKOFF_MAX : rt->rt_backoff * 2;
}

int
pg_retry_due(const struct pg_retry *rt, int64_t now_ms)
{
	return now_ms >= rt->rt_next_ms;
}

void
pg_retry_ok(struct pg_retry *rt)
{
	rt->rt_backoff = PG_BACKOFF_MIN;
	rt->rt_attempts = 0;
	rt->rt_next_ms = 0;
}

/* ---- notices ---------------------------------------------------------- */

static void
pg_notice_receive(void *arg, const PGresult *res)
{
	const char	*sev, *msg;
	char		 line[512];

	sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	pg_first_line("", msg, line, sizeof(line));
	/* NOTICE, INFO, LOG, DEBUG: information; WARNING, and an ERROR or
	 * FATAL that came while no statement ran (a server shutting down):
	 * worth a look. */
	LOG(sev == NULL || strcmp(sev, "NOTICE") == 0 || strcmp(sev, "INFO") ==
	    0 || strcmp(sev, "LOG") == 0 || strncmp(sev, "DEBUG", 5) == 0 ?
	    LVL_INFO : LVL_WARN,
	    "pg_notice", KV_S("conn", (const char *)arg),
	    KV_S("severity", sev != NULL ? sev : "NOTICE"),
	    KV_S("message", line));
}

void
pg_notices(PGconn *db, const char *conn)
{
	if (db != NULL)
		PQsetNoticeReceiver(db, pg_notice_receive, (void *)conn);
}

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

#include "store/store.h"

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
	vals[n++] = appname != NULL ? appname : "tokend";
	keys[n] = NULL;
	vals[n] = NULL;
	db = PQconnectdbParams(keys, vals, 1);
	if (db == NULL || PQstatus(db) != CONNECTION_OK) {
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

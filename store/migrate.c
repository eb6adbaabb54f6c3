/*
 * Versioned schema.  Each store/migrations/NNN_name.sql is compiled in
 * (contrib/sql2c.sh) and applied once, in version order, inside its own
 * transaction that also records it in schema_migrations.  A transaction-
 * scoped advisory lock serialises concurrent migrators (two tokenctls, or a
 * tokenctl and an operator): the second waits, then finds the version
 * recorded and skips it.  A failed migration rolls back whole, leaving the
 * database at the previous version.
 *
 * Everything lives in the PostgreSQL schema tokend, so tokend can share a
 * database with an application.  Each migration runs with search_path
 * "tokend, public": new objects land in tokend.  A database migrated
 * before the schema existed is moved into it first (migrate_legacy).  After each migration every function in tokend
 * is pinned to search_path "pg_catalog, tokend", so its body finds its
 * tables whatever the caller's search_path (and no caller can shadow them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "store/store.h"

/* pg_advisory_xact_lock key: "tokendmg" read as a big-endian int64. */
#define MIGRATE_LOCK_KEY "8390042714202467687"

/* A database migrated before the schema tokend: its bookkeeping table is
 * public.schema_migrations beside migration 001's trigger function (an
 * application's own schema_migrations and tokens tables do not count). */
#define MIGRATE_LEGACY "to_regclass('public.schema_migrations') IS NOT NULL " \
	"AND to_regprocedure('public.tokend_tokens_notify()') IS NOT NULL"

/* Pin every function of the schema to its own search_path. */
#define MIGRATE_PIN "DO $pin$ DECLARE f oid; BEGIN " \
	"FOR f IN SELECT p.oid FROM pg_proc p " \
	"WHERE p.pronamespace = 'tokend'::regnamespace AND NOT " \
	"coalesce(p.proconfig @> '{\"search_path=pg_catalog, tokend\"}', " \
	"false) LOOP EXECUTE format('ALTER FUNCTION %s SET search_path = " \
	"pg_catalog, tokend', f::regprocedure); END LOOP; END $pin$"

int
migrate_latest(void)
{
	int	 i, v = 0;

	for (i = 0; i < nmigrations; i++)
		if (migrations[i].mg_version > v)
			v = migrations[i].mg_version;
	return v;
}

int
migrate_current(PGconn *db, char *err, size_t errlen)
{
	PGresult	*res;
	char		 which;
	int		 v = -1;

	/* Which bookkeeping table, if any: tokend's, or a legacy one. */
	res = pg_exec(db, "SELECT CASE WHEN to_regclass('tokend."
	    "schema_migrations') IS NOT NULL THEN 'tokend' WHEN "
	    MIGRATE_LEGACY " THEN 'public' ELSE '' END", 0, NULL, err, errlen);
	if (res == NULL)
		return -1;
	which = PQgetvalue(res, 0, 0)[0];
	PQclear(res);
	if (which == '\0')
		return 0;	/* an empty database */
	res = pg_exec(db, which == 't' ?
	    "SELECT coalesce(max(version), 0) FROM tokend.schema_migrations" :
	    "SELECT coalesce(max(version), 0) FROM public.schema_migrations",
	    0, NULL, err, errlen);
	if (res == NULL)
		return -1;
	v = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
}

/* Run a whole SQL script (several statements): PQexec, not PQexecParams. */
static int
migrate_script(PGconn *db, const char *sql, char *err, size_t errlen)
{
	PGresult	*res;
	const char	*msg;
	int		 rc = -1;

	res = PQexec(db, sql);
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
		rc = 0;
		break;
	default:
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		snprintf(err, errlen, "%s", msg != NULL ? msg :
		    PQerrorMessage(db));
		err[strcspn(err, "\r\n")] = '\0';
		break;
	}
	PQclear(res);
	return rc;
}

/*
 * A database migrated before the schema tokend moves into it before
 * anything else runs, bookkeeping included, by the SQL of the migration
 * that introduced the schema (019_schema): had later migrations run first,
 * their CREATE OR REPLACE FUNCTIONs would have made second copies in
 * tokend beside the old ones in public.  Returns 0, or -1.
 */
static int
migrate_legacy(PGconn *db, char *err, size_t errlen)
{
	PGresult	*res;
	int		 i, legacy;

	if ((res = pg_exec(db, "SELECT to_regclass('tokend.schema_migrations') "
	    "IS NULL AND " MIGRATE_LEGACY, 0, NULL, err, errlen)) == NULL)
		return -1;
	legacy = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!legacy)
		return 0;
	for (i = 0; i < nmigrations; i++)
		if (strcmp(migrations[i].mg_name, "schema") == 0)
			break;
	if (i == nmigrations) {
		snprintf(err, errlen, "no schema migration (build error)");
		return -1;
	}
	if (migrate_script(db, "ALTER TABLE public.schema_migrations "
	    "SET SCHEMA tokend", err, errlen) == -1)
		return -1;
	return migrate_script(db, migrations[i].mg_sql, err, errlen);
}

/*
 * Open the migration's transaction: lock, make sure the bookkeeping table
 * exists (inside the lock, so concurrent first runs cannot collide on it),
 * and say whether mg is already applied.  Returns 1 applied, 0 not, -1.
 */
static int
migrate_begin(PGconn *db, const struct migration *mg, char *err,
    size_t errlen)
{
	PGresult	*res;
	const char	*params[1];
	char		 ver[16];
	int		 rc;

	/* Quiet the "already exists, skipping" NOTICE.  The schema is
	 * created only when missing: CREATE SCHEMA IF NOT EXISTS would need
	 * CREATE on the database even then (the migration role of README's
	 * least-privilege set-up owns the schema but has no such right). */
	if (migrate_script(db, "BEGIN; "
	    "SET LOCAL client_min_messages = warning; "
	    "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY "); "
	    "DO $s$ BEGIN IF to_regnamespace('tokend') IS NULL THEN "
	    "CREATE SCHEMA tokend; END IF; END $s$; "
	    "SET LOCAL search_path = tokend, public", err, errlen) == -1 ||
	    migrate_legacy(db, err, errlen) == -1 ||
	    migrate_script(db, "CREATE TABLE IF NOT EXISTS "
	    "tokend.schema_migrations (version int PRIMARY KEY, name text,"
	    " applied_at timestamptz DEFAULT now())", err, errlen) == -1)
		return -1;
	snprintf(ver, sizeof(ver), "%d", mg->mg_version);
	params[0] = ver;
	res = pg_exec(db, "SELECT 1 FROM tokend.schema_migrations "
	    "WHERE version = $1",
	    1, params, err, errlen);
	if (res == NULL)
		return -1;
	rc = PQntuples(res) > 0;
	PQclear(res);
	return rc;
}

/* Apply one migration unless it is recorded.  Returns 1, 0, or -1. */
static int
migrate_one(PGconn *db, const struct migration *mg, char *err, size_t errlen)
{
	const char	*params[2];
	char		 ver[16], why[512], scratch[512];
	PGresult	*res;
	int		 done, rc = -1;

	if ((done = migrate_begin(db, mg, why, sizeof(why))) == -1)
		goto out;
	if (done) {
		rc = 0;
		goto out;
	}
	if (migrate_script(db, mg->mg_sql, why, sizeof(why)) == -1 ||
	    migrate_script(db, MIGRATE_PIN, why, sizeof(why)) == -1)
		goto out;
	snprintf(ver, sizeof(ver), "%d", mg->mg_version);
	params[0] = ver;
	params[1] = mg->mg_name;
	res = pg_exec(db, "INSERT INTO tokend.schema_migrations "
	    "(version, name) "
	    "VALUES ($1, $2)", 2, params, why, sizeof(why));
	if (res == NULL)
		goto out;
	PQclear(res);
	rc = 1;
out:
	/* The first error is the one to report, not the ROLLBACK's. */
	if (rc == -1)
		(void)migrate_script(db, "ROLLBACK", scratch, sizeof(scratch));
	else if (migrate_script(db, "COMMIT", why, sizeof(why)) == -1)
		rc = -1;
	if (rc == -1)
		snprintf(err, errlen, "migration %03d_%s: %s", mg->mg_version,
		    mg->mg_name, why);
	return rc;
}

int
migrate_up(PGconn *db, char *err, size_t errlen)
{
	int	 i, r, applied = 0;

	for (i = 0; i < nmigrations; i++) {
		if (i > 0 && migrations[i].mg_version <=
		    migrations[i - 1].mg_version) {
			snprintf(err, errlen, "migration %03d_%s is out of "
			    "order (build error)", migrations[i].mg_version,
			    migrations[i].mg_name);
			return -1;
		}
		if ((r = migrate_one(db, &migrations[i], err, errlen)) == -1)
			return -1;
		applied += r;
	}
	return applied;
}

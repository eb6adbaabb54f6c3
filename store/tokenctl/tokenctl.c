/*
 * tokenctl: administers tokend's PostgreSQL database directly (SPEC
 * section 2).  It never talks to a running tokend: revocations reach every
 * tokend's cache through the triggers of store/migrations and the writer's
 * LISTEN.
 *
 *   tokenctl [--database-url URL] [-c FILE] [--json] COMMAND ...
 *
 * Options may come before or after the command words.  The database URL is
 * --database-url, else TOKEND_DATABASE_URL, else -c FILE's database_url.
 * Exit status: 0 done, 1 an error (one line "tokenctl: reason" on stderr),
 * 2 a malformed command line (one line: the reason and the command's
 * usage).  Secrets never reach stdout except the one PAT that "pat create"
 * and the client secret that "client rotate-secret" exist to print, and
 * never reach stderr or the database in plaintext.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "store/runtime/runtime.h"
#include "proto/proto.h"
#include "store/store.h"

#define CTL_MAX_URIS      16
#define CTL_HASH_HEX      (2 + 2 * TOKEN_HASH_LEN + 1)	/* "\x" and hex */
#define CTL_IPS_LEN       (CTL_MAX_URIS * (IP_STR_LEN + 5))

#define EXIT_USAGE 2

/* Command options, as bits: each command says which it accepts. */
enum {
	OPT_PASSWORD_STDIN = 1 << 0,
	OPT_USER = 1 << 1,
	OPT_NAME = 1 << 2,
	OPT_SCOPE = 1 << 3,
	OPT_EXPIRES_IN = 1 << 4,
	OPT_URL = 1 << 5,	/* the global ones */
	OPT_CONFIG = 1 << 6,
	OPT_JSON = 1 << 7,
	OPT_PUBLIC = 1 << 8,
	OPT_SECRET_STDIN = 1 << 9,
	OPT_REDIRECT_URI = 1 << 10,	/* repeatable */
	OPT_FIRST_PARTY = 1 << 11,
	OPT_INTROSPECT = 1 << 12,
	OPT_NO_PASSWORD = 1 << 13,
	OPT_GRANT = 1 << 14,		/* repeatable: client add --grant */
	OPT_OVERLAP = 1 << 15,		/* pat rotate --overlap */
	OPT_EXPIRING = 1 << 16,		/* token list --expiring */
	OPT_SINCE = 1 << 17,		/* audit --since */
	OPT_ALLOW_IP = 1 << 18,		/* repeatable: pat create --allow-ip */
	OPT_RATE = 1 << 19,		/* pat create --rate N/SECONDS */
	OPT_CANARY = 1 << 20,		/* pat create --canary */
	OPT_REVOKE = 1 << 21,		/* scan --revoke */
};
#define OPT_REPEATABLE (OPT_REDIRECT_URI | OPT_GRANT | OPT_ALLOW_IP)
#define OPT_GLOBAL (OPT_URL | OPT_CONFIG | OPT_JSON)

/* The values of a repeatable option, in order. */
struct ctl_multi {
	int		 m_n;
	const char	*m_v[CTL_MAX_URIS];
};

/* The one state struct of the process. */
struct ctl {
	unsigned	 ctl_opts;		/* OPT_* given */
	const char	*ctl_url;
	const char	*ctl_conf;
	const char	*ctl_user;
	const char	*ctl_name;
	const char	*ctl_scope;
	const char	*ctl_expires_in;
	struct ctl_multi ctl_uris;		/* --redirect-uri ... */
	struct ctl_multi ctl_grants;		/* --grant ... */
	struct ctl_multi ctl_allow_ips;		/* --allow-ip ... */
	const char	*ctl_overlap;
	const char	*ctl_expiring;
	const char	*ctl_since;
	const char	*ctl_rate;
	int		 ctl_nwords;
	char		**ctl_words;		/* argc entries */
	int		 ctl_exit;		/* main's status when 0 */
	PGconn		*ctl_db;
	int		 ctl_cf_loaded;
	struct config	 ctl_cf;
	char		 ctl_err[1024];
};

#define CTL_ARGS_SOME	(-1)

struct ctl_cmd {
	const char	*cmd_w1, *cmd_w2;	/* "user", "add"; w2 NULL */
	int		 cmd_nargs;		/* words after the command's;
						 * CTL_ARGS_SOME: one or more */
	unsigned	 cmd_opts;		/* OPT_* it accepts */
	int		(*cmd_fn)(struct ctl *);
	const char	*cmd_usage;
};

static const struct ctl_opt {
	const char	*o_name;
	unsigned	 o_bit;
	size_t		 o_off;		/* offsetof the value, 0: a flag */
} ctl_opts[] = {
	{ "--database-url", OPT_URL, offsetof(struct ctl, ctl_url) },
	{ "-c", OPT_CONFIG, offsetof(struct ctl, ctl_conf) },
	{ "--json", OPT_JSON, 0 },
	{ "--password-stdin", OPT_PASSWORD_STDIN, 0 },
	{ "--user", OPT_USER, offsetof(struct ctl, ctl_user) },
	{ "--name", OPT_NAME, offsetof(struct ctl, ctl_name) },
	{ "--scope", OPT_SCOPE, offsetof(struct ctl, ctl_scope) },
	{ "--expires-in", OPT_EXPIRES_IN,
	    offsetof(struct ctl, ctl_expires_in) },
	{ "--public", OPT_PUBLIC, 0 },
	{ "--secret-stdin", OPT_SECRET_STDIN, 0 },
	{ "--redirect-uri", OPT_REDIRECT_URI, offsetof(struct ctl, ctl_uris) },
	{ "--grant", OPT_GRANT, offsetof(struct ctl, ctl_grants) },
	{ "--overlap", OPT_OVERLAP, offsetof(struct ctl, ctl_overlap) },
	{ "--expiring", OPT_EXPIRING, offsetof(struct ctl, ctl_expiring) },
	{ "--since", OPT_SINCE, offsetof(struct ctl, ctl_since) },
	{ "--allow-ip", OPT_ALLOW_IP, offsetof(struct ctl, ctl_allow_ips) },
	{ "--rate", OPT_RATE, offsetof(struct ctl, ctl_rate) },
	{ "--canary", OPT_CANARY, 0 },
	{ "--revoke", OPT_REVOKE, 0 },
	{ "--first-party", OPT_FIRST_PARTY, 0 },
	{ "--introspect", OPT_INTROSPECT, 0 },
	{ "--no-password", OPT_NO_PASSWORD, 0 },
};

/* Format the reason for main to print; always returns -1. */
static int __attribute__((format(printf, 2, 3)))
ctl_fail(struct ctl *c, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(c->ctl_err, sizeof(c->ctl_err), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- Command line ---------------------------------------------------- */

static const char ctl_usage_head[] =
    "usage: tokenctl [--database-url URL] [-c FILE] [--json] COMMAND ...\n";

static void ctl_usage_all(FILE *fp);
static const char *ctl_cmd_usage(int (*fn)(struct ctl *));

static void __attribute__((noreturn, format(printf, 2, 3)))
ctl_usage(const char *usage, const char *fmt, ...)
{
	va_list	 ap;

	fputs("tokenctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (usage != NULL)
		fprintf(stderr, " (usage: tokenctl %s)\n", usage);
	else
		fputs(" (see tokenctl --help)\n", stderr);
	exit(EXIT_USAGE);
}

static const struct ctl_opt *
ctl_find_opt(const char *arg, const char **inline_val)
{
	size_t	 i, n;

	*inline_val = NULL;
	for (i = 0; i < sizeof(ctl_opts) / sizeof(ctl_opts[0]); i++) {
		n = strlen(ctl_opts[i].o_name);
		if (strncmp(arg, ctl_opts[i].o_name, n) != 0)
			continue;
		if (arg[n] == '\0')
			return &ctl_opts[i];
		/* --name=value, for long options that take a value */
		if (arg[n] == '=' && arg[1] == '-' && ctl_opts[i].o_off != 0) {
			*inline_val = arg + n + 1;
			return &ctl_opts[i];
		}
	}
	return NULL;
}

/* Sort argv into options and command words; usage errors exit here. */
static void
ctl_parse(struct ctl *c, int argc, char **argv)
{
	const struct ctl_opt	*o;
	struct ctl_multi	*m;
	const char		*val;
	int			 i, words_only = 0;

	/* As many words as arguments: scan takes any number of files. */
	if ((c->ctl_words = calloc((size_t)argc, sizeof(char *))) == NULL) {
		fputs("tokenctl: out of memory\n", stderr);
		exit(1);
	}
	for (i = 1; i < argc; i++) {
		if (words_only || argv[i][0] != '-' || argv[i][1] == '\0') {
			c->ctl_words[c->ctl_nwords++] = argv[i];
			continue;
		}
		if (strcmp(argv[i], "--") == 0) {
			words_only = 1;
			continue;
		}
		if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			ctl_usage_all(stdout);
			exit(0);
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("tokenctl %s\n", TOKEND_VERSION);
			exit(0);
		}
		if ((o = ctl_find_opt(argv[i], &val)) == NULL)
			ctl_usage(NULL, "unknown option %s", argv[i]);
		if ((c->ctl_opts & o->o_bit) && !(o->o_bit & OPT_REPEATABLE))
			ctl_usage(NULL, "option %s given twice", o->o_name);
		c->ctl_opts |= o->o_bit;
		if (o->o_off == 0)
			continue;
		if (val == NULL && (val = argv[++i]) == NULL)
			ctl_usage(NULL, "option %s needs a value", o->o_name);
		if (!(o->o_bit & OPT_REPEATABLE)) {
			*(const char **)(void *)((char *)c + o->o_off) = val;
			continue;
		}
		m = (struct ctl_multi *)(void *)((char *)c + o->o_off);
		if (m->m_n == CTL_MAX_URIS)
			ctl_usage(NULL, "at most %d %s", CTL_MAX_URIS,
			    o->o_name);
		m->m_v[m->m_n++] = val;
	}
}

/* ---- Helpers ---------------------------------------------------------- */

/* Load -c FILE (or, without one, defaults and TOKEND_*) once. */
static int
ctl_config(struct ctl *c)
{
	char	 err[CF_PATH_LEN + 256];

	if (c->ctl_cf_loaded)
		return 0;
	if (config_load(&c->ctl_cf, c->ctl_conf, err, sizeof(err)) == -1)
		return ctl_fail(c, "%s", err);
	c->ctl_cf_loaded = 1;
	return 0;
}

static int
ctl_database_url(struct ctl *c, const char **url)
{
	const char	*env;

	*url = NULL;
	if (c->ctl_url != NULL && c->ctl_url[0] != '\0')
		*url = c->ctl_url;
	else if ((env = getenv("TOKEND_DATABASE_URL")) != NULL && *env != '\0')
		*url = env;
	else if (c->ctl_conf != NULL) {
		if (ctl_config(c) == -1)
			return -1;
		if (c->ctl_cf.cf_database_url[0] != '\0')
			*url = c->ctl_cf.cf_database_url;
	}
	if (*url == NULL)
		return ctl_fail(c, "no database URL: give --database-url, "
		    "TOKEND_DATABASE_URL or -c FILE with database_url");
	return 0;
}

/* Connect; unless migrating, insist on a schema this tokenctl knows. */
static int
ctl_connect(struct ctl *c, int check_schema)
{
	const char	*url;
	int		 v;

	if (ctl_database_url(c, &url) == -1)
		return -1;
	c->ctl_db = pg_connect(url, "tokenctl", c->ctl_err, sizeof(c->ctl_err));
	if (c->ctl_db == NULL)
		return -1;
	if (!check_schema)
		return 0;
	if ((v = migrate_current(c->ctl_db, c->ctl_err,
	    sizeof(c->ctl_err))) == -1)
		return -1;
	if (v < migrate_latest())
		return ctl_fail(c, "database schema is at version %d, this "
		    "tokenctl needs %d: run tokenctl migrate", v,
		    migrate_latest());
	return 0;
}

static PGresult *
ctl_sql(struct ctl *c, const char *sql, int n, const char *const *params)
{
	return pg_exec(c->ctl_db, sql, n, params, c->ctl_err,
	    sizeof(c->ctl_err));
}

/* Run a statement whose result does not matter.  Returns 0 or -1. */
static int
ctl_run(struct ctl *c, const char *sql, int n, const char *const *params)
{
	PGresult	*res;

	if ((res = ctl_sql(c, sql, n, params)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/* Run a statement; *count is how many rows it touched.  Returns 0 or -1. */
static int
ctl_run_count(struct ctl *c, const char *sql, int n,
    const char *const *params, long long *count)
{
	PGresult	*res;

	if ((res = ctl_sql(c, sql, n, params)) == NULL)
		return -1;
	*count = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return 0;
}

/*
 * Run a statement that must give a row (a lookup, or an INSERT ... ON
 * CONFLICT DO NOTHING RETURNING); without one, fmt is the reason.
 * Returns the result, which the caller PQclears, or NULL.
 */
static PGresult * __attribute__((format(printf, 5, 6)))
ctl_sql_row(struct ctl *c, const char *sql, int n, const char *const *params,
    const char *fmt, ...)
{
	PGresult	*res;
	va_list		 ap;

	if ((res = ctl_sql(c, sql, n, params)) == NULL)
		return NULL;
	if (PQntuples(res) > 0)
		return res;
	PQclear(res);
	va_start(ap, fmt);
	vsnprintf(c->ctl_err, sizeof(c->ctl_err), fmt, ap);
	va_end(ap);
	return NULL;
}

/* After a failure inside BEGIN: keep the first error, end the block. */
static void
ctl_rollback(struct ctl *c)
{
	PGresult	*res;

	res = PQexec(c->ctl_db, "ROLLBACK");
	PQclear(res);
}

static int
ctl_valid_user_name(const char *s)
{
	size_t	 n = strlen(s);

	return n > 0 && n <= LIM_USER_NAME_MAX && text_word_ok(s, n, "._@-");
}

static int
ctl_check_user_name(struct ctl *c, const char *name)
{
	if (!ctl_valid_user_name(name))
		return ctl_fail(c, "invalid user name: 1 to %d characters of "
		    "A-Z a-z 0-9 . _ @ -", LIM_USER_NAME_MAX);
	return 0;
}

/*
 * Run sql, which finds user name ($1) and gives its id in the first
 * column.  Returns the row, which the caller PQclears, or NULL ("unknown
 * user NAME" when there is none).
 */
static PGresult *
ctl_user_row(struct ctl *c, const char *sql, const char *name)
{
	const char	*params[1] = { name };

	return ctl_sql_row(c, sql, 1, params, "unknown user %s", name);
}

/* ---- Output: aligned tables or JSON ----------------------------------- */

/* COL_LIST: words joined by spaces (array_to_string), a JSON array.
 * COL_JSON: a jsonb column's text, as is in JSON output ("-" for {}). */
enum { COL_STR, COL_NUM, COL_BOOL, COL_TS, COL_LIST, COL_JSON };

struct ctl_col {
	const char	*col_name;	/* header and JSON key */
	int		 col_type;	/* COL_* */
	const char	*col_null;	/* table text for NULL */
};

/* Display width, counting UTF-8 sequences as one column each. */
static size_t
ctl_width(const char *s)
{
	size_t	 w = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

/*
 * The table text of a cell: "-" for empty, yes/no for booleans, ISO 8601
 * for times (PG_EPOCH columns), written into ts.  Lives as long as res
 * and ts.
 */
static const char *
ctl_cell(const PGresult *res, int r, int k, const struct ctl_col *col,
    char ts[ISO8601_LEN])
{
	const char	*v;

	if (PQgetisnull(res, r, k))
		return col->col_null;
	v = PQgetvalue(res, r, k);
	if (col->col_type == COL_BOOL)
		return strcmp(v, "t") == 0 ? "yes" : "no";
	if (col->col_type == COL_TS)
		return iso8601_format(strtoll(v, NULL, 10), -1, ts) == 0 ?
		    ts : "-";
	if (col->col_type == COL_JSON && strcmp(v, "{}") == 0)
		return "-";
	return *v == '\0' ? "-" : v;
}

/* Print s, with control characters (from SQL edits) shown as '?'. */
static void
ctl_put_safe(const char *s)
{
	for (; *s != '\0'; s++)
		putchar(((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s);
}

static void
ctl_print_table(const PGresult *res, const struct ctl_col *cols, int ncols)
{
	size_t	 w[16];
	char	 ts[ISO8601_LEN];
	int	 r, k, nrows = PQntuples(res);

	for (k = 0; k < ncols; k++) {
		w[k] = strlen(cols[k].col_name);
		for (r = 0; r < nrows; r++)
			if (ctl_width(ctl_cell(res, r, k, &cols[k], ts)) > w[k])
				w[k] = ctl_width(ctl_cell(res, r, k, &cols[k],
				    ts));
	}
	for (r = -1; r < nrows; r++) {
		for (k = 0; k < ncols; k++) {
			const char *v = r < 0 ? cols[k].col_name :
			    ctl_cell(res, r, k, &cols[k], ts);

			ctl_put_safe(v);
			if (k + 1 < ncols)
				printf("%*s", (int)(w[k] - ctl_width(v) + 2),
				    "");
		}
		putchar('\n');
	}
}

/* A JSON string, or U+FFFD for text that is not UTF-8 (SQL_ASCII). */
static json_t *
ctl_json_text(const char *s, size_t n)
{
	json_t	*j;

	if ((j = json_stringn(s, n)) == NULL)
		j = json_string("\xef\xbf\xbd");
	return j;
}

/* "a b c" as ["a","b","c"]; NULL when out of memory. */
static json_t *
ctl_json_words(const char *v)
{
	json_t	*arr;
	size_t	 n;

	if ((arr = json_array()) == NULL)
		return NULL;
	for (; *v != '\0'; v += n) {
		v += strspn(v, " ");
		if ((n = strcspn(v, " ")) > 0 &&
		    json_array_append_new(arr, ctl_json_text(v, n)) == -1) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static json_t *
ctl_json_value(const PGresult *res, int r, int k, const struct ctl_col *col)
{
	const char	*v;
	char		 ts[ISO8601_LEN];
	json_t		*j;

	if (PQgetisnull(res, r, k))
		return json_null();
	v = PQgetvalue(res, r, k);
	if (col->col_type == COL_NUM)
		return json_integer(strtoll(v, NULL, 10));
	if (col->col_type == COL_BOOL)
		return json_boolean(strcmp(v, "t") == 0);
	if (col->col_type == COL_TS)
		return json_string(ctl_cell(res, r, k, col, ts));
	if (col->col_type == COL_LIST)
		return ctl_json_words(v);
	if (col->col_type == COL_JSON && (j = json_loads(v, JSON_DECODE_ANY,
	    NULL)) != NULL)
		return j;
	return ctl_json_text(v, strlen(v));
}

/* Row r as an object keyed by the column names; NULL when out of memory. */
static json_t *
ctl_json_row(const PGresult *res, int r, const struct ctl_col *cols,
    int ncols)
{
	json_t	*obj;
	int	 k;

	if ((obj = json_object()) == NULL)
		return NULL;
	for (k = 0; k < ncols; k++)
		if (json_object_set_new(obj, cols[k].col_name,
		    ctl_json_value(res, r, k, &cols[k])) == -1) {
			json_decref(obj);
			return NULL;
		}
	return obj;
}

/* Print j indented and let it go.  Returns 0 or -1. */
static int
ctl_put_json(struct ctl *c, json_t *j)
{
	char	*out = NULL;

	if (j != NULL && (out = json_dumps(j, JSON_INDENT(2))) != NULL)
		printf("%s\n", out);
	free(out);
	json_decref(j);
	return out != NULL ? 0 : ctl_fail(c, "out of memory");
}

static int
ctl_print_json(struct ctl *c, const PGresult *res, const struct ctl_col *cols,
    int ncols)
{
	json_t	*arr;
	int	 r;

	if ((arr = json_array()) == NULL)
		return ctl_fail(c, "out of memory");
	for (r = 0; r < PQntuples(res); r++)
		if (json_array_append_new(arr, ctl_json_row(res, r, cols,
		    ncols)) == -1) {
			json_decref(arr);
			return ctl_fail(c, "out of memory");
		}
	return ctl_put_json(c, arr);
}

/* Run a query and print its rows: a table, or with --json an array. */
static int
ctl_list(struct ctl *c, const char *sql, int n, const char *const *params,
    const struct ctl_col *cols, int ncols)
{
	PGresult	*res;
	int		 rc = 0;

	if ((res = ctl_sql(c, sql, n, params)) == NULL)
		return -1;
	if (c->ctl_opts & OPT_JSON)
		rc = ctl_print_json(c, res, cols, ncols);
	else
		ctl_print_table(res, cols, ncols);
	PQclear(res);
	return rc;
}

/*
 * Print the one row sql gives: "column  value" lines, or with --json an
 * object.  Without a row, fmt (with what) is the error.
 */
static int
ctl_show(struct ctl *c, const char *sql, const char *what, const char *fmt,
    const struct ctl_col *cols, int ncols)
{
	const char	*params[1] = { what };
	PGresult	*res;
	char		 ts[ISO8601_LEN];
	int		 k, rc = 0;

	if ((res = ctl_sql_row(c, sql, 1, params, fmt, what)) == NULL)
		return -1;
	if (c->ctl_opts & OPT_JSON)
		rc = ctl_put_json(c, ctl_json_row(res, 0, cols, ncols));
	else
		for (k = 0; k < ncols; k++) {
			printf("%-14s", cols[k].col_name);
			ctl_put_safe(ctl_cell(res, 0, k, &cols[k], ts));
			putchar('\n');
		}
	PQclear(res);
	return rc;
}


/* ---- migrate ----------------------------------------------------------- */

static int
cmd_migrate(struct ctl *c)
{
	int	 applied, v;

	if (ctl_connect(c, 0) == -1)
		return -1;
	if ((applied = migrate_up(c->ctl_db, c->ctl_err,
	    sizeof(c->ctl_err))) == -1)
		return -1;
	if ((v = migrate_current(c->ctl_db, c->ctl_err,
	    sizeof(c->ctl_err))) == -1)
		return -1;
	if (v > migrate_latest())
		fprintf(stderr, "tokenctl: warning: the database schema "
		    "(version %d) is newer than this tokenctl (%d)\n", v,
		    migrate_latest());
	printf("schema at version %d (applied %d)\n", v, applied);
	return 0;
}

/* ---- user add / disable / list ---------------------------------------- */

/* A terminal gets a prompt and no echo; a pipe is read as it is. */
static int
ctl_read_line(char *buf, size_t buflen, size_t *len)
{
	struct termios	 old, quiet;
	int		 tty = isatty(STDIN_FILENO), ch, rc = -1;
	size_t		 n = 0;

	if (tty && tcgetattr(STDIN_FILENO, &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		fputs("password: ", stderr);
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	} else
		tty = 0;
	while ((ch = getchar()) != EOF && ch != '\n') {
		if (n + 1 >= buflen)
			goto out;	/* too long */
		buf[n++] = (char)ch;
	}
	buf[n] = '\0';
	*len = n;
	rc = 0;
out:
	if (tty) {
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	return rc;
}

/* The first line of stdin, hashed into out. */
static int
ctl_password_hash(struct ctl *c, char *out, size_t outlen)
{
	char	 pw[PASSWD_MAX_LEN + 2];
	size_t	 len = 0;
	int	 rc = -1;

	if (ctl_read_line(pw, sizeof(pw), &len) == -1 ||
	    len > PASSWD_MAX_LEN || len == 0) {
		ctl_fail(c, "the password on stdin must be 1 to %d bytes",
		    PASSWD_MAX_LEN);
		goto out;
	}
	if (memchr(pw, '\0', len) != NULL) {
		ctl_fail(c, "the password on stdin contains a NUL byte");
		goto out;
	}
	if (passwd_hash(pw, len, out, outlen) == -1) {
		ctl_fail(c, "cannot hash the password");
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(pw, sizeof(pw));
	return rc;
}

static int
cmd_user_add(struct ctl *c)
{
	const char	*name = c->ctl_words[2], *params[2];
	char		 hash[PASSWD_ENCODED_MAX];
	PGresult	*res;

	/* A password piped in without --password-stdin was never a choice
	 * to create a user who cannot sign in: say it in words. */
	if (!(c->ctl_opts & (OPT_PASSWORD_STDIN | OPT_NO_PASSWORD)))
		ctl_usage(ctl_cmd_usage(cmd_user_add), "user add needs "
		    "--password-stdin, or --no-password for a user without "
		    "password sign-in");
	if ((c->ctl_opts & OPT_PASSWORD_STDIN) &&
	    (c->ctl_opts & OPT_NO_PASSWORD))
		ctl_usage(ctl_cmd_usage(cmd_user_add), "--password-stdin and "
		    "--no-password exclude each other");
	if (ctl_check_user_name(c, name) == -1)
		return -1;
	/* X-Auth-User holds TI_USER_LEN - 1 bytes and is never truncated;
	 * longer names exist only from before, and may still be named. */
	if (strlen(name) > TI_USER_LEN - 1)
		return ctl_fail(c, "invalid user name: longer than %d "
		    "characters", TI_USER_LEN - 1);
	if ((c->ctl_opts & OPT_PASSWORD_STDIN) &&
	    ctl_password_hash(c, hash, sizeof(hash)) == -1)
		return -1;
	if (ctl_connect(c, 1) == -1)
		return -1;
	params[0] = name;
	params[1] = (c->ctl_opts & OPT_PASSWORD_STDIN) ? hash : NULL;
	if ((res = ctl_sql_row(c, "INSERT INTO tokend.users (name, password_hash) "
	    "VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING id",
	    2, params, "user %s already exists", name)) == NULL)
		return -1;
	printf("user %s added (id %s)\n", name, PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/*
 * Disable the user and revoke its tokens in one transaction: either both
 * happen or neither.  The triggers notify every tokend ('u' + id, and 't'
 * + hash for each token) when it commits.
 */
static int
cmd_user_disable(struct ctl *c)
{
	const char	*name = c->ctl_words[2], *params[1];
	PGresult	*res;
	char		 id[32];
	long long	 n;
	int		 rc = -1;

	if (ctl_check_user_name(c, name) == -1 || ctl_connect(c, 1) == -1)
		return -1;
	if (ctl_run(c, "BEGIN", 0, NULL) == -1)
		return -1;
	if ((res = ctl_user_row(c, "UPDATE tokend.users SET disabled = true "
	    "WHERE name = $1 RETURNING id", name)) == NULL)
		goto out;
	snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	params[0] = id;
	if (ctl_run_count(c, "UPDATE tokend.tokens SET revoked_at = now() "
	    "WHERE user_id = $1 AND revoked_at IS NULL", 1, params, &n) == -1 ||
	    ctl_run(c, "COMMIT", 0, NULL) == -1)
		goto out;
	printf("user %s disabled, %lld tokens revoked\n", name, n);
	rc = 0;
out:
	if (rc == -1)
		ctl_rollback(c);
	return rc;
}

/*
 * Forget the user's failed logins (login_failures, migration 006): every
 * tokend sharing the database lets the user try again at once.
 */
static int
cmd_user_unlock(struct ctl *c)
{
	const char	*name = c->ctl_words[2];
	PGresult	*res;

	if (ctl_check_user_name(c, name) == -1 || ctl_connect(c, 1) == -1)
		return -1;
	if ((res = ctl_user_row(c, "WITH u AS (SELECT id FROM tokend.users "
	    "WHERE name = $1), d AS (DELETE FROM tokend.login_failures WHERE "
	    "name = $1 AND EXISTS (SELECT 1 FROM u) RETURNING failures) "
	    "SELECT u.id, coalesce((SELECT failures FROM d), 0) FROM u",
	    name)) == NULL)
		return -1;
	printf("user %s unlocked, %s failed logins forgotten\n", name,
	    PQgetvalue(res, 0, 1));
	PQclear(res);
	return 0;
}

/*
 * Run sql on user name ($1; $2 is arg when given) and print fmt with the
 * name and the row's second column.  The row's first column is the user's
 * id; no row means an unknown user.
 */
static int
ctl_user_do(struct ctl *c, const char *sql, const char *arg, const char *fmt)
{
	const char	*name = c->ctl_words[2], *params[2] = { name, arg };
	PGresult	*res;

	if (ctl_check_user_name(c, name) == -1 || ctl_connect(c, 1) == -1)
		return -1;
	if ((res = ctl_sql_row(c, sql, arg != NULL ? 2 : 1, params,
	    "unknown user %s", name)) == NULL)
		return -1;
	printf(fmt, name, PQgetvalue(res, 0, 1));
	putchar('\n');
	PQclear(res);
	return 0;
}

/* The user's tokens stay revoked: enabling brings back sign-in only. */
static int
cmd_user_enable(struct ctl *c)
{
	return ctl_user_do(c, "UPDATE tokend.users SET disabled = false "
	    "WHERE name = $1 RETURNING id, 'enabled'", NULL, "user %s %s");
}

static int
cmd_user_passwd(struct ctl *c)
{
	char	 hash[PASSWD_ENCODED_MAX];

	if (!(c->ctl_opts & OPT_PASSWORD_STDIN))
		ctl_usage(ctl_cmd_usage(cmd_user_passwd), "user passwd needs "
		    "--password-stdin");
	if (ctl_check_user_name(c, c->ctl_words[2]) == -1 ||
	    ctl_password_hash(c, hash, sizeof(hash)) == -1)
		return -1;
	return ctl_user_do(c, "UPDATE tokend.users SET password_hash = $2 "
	    "WHERE name = $1 RETURNING id, 'password changed'", hash,
	    "user %s: %s");
}

/*
 * tokens.user_id is ON DELETE CASCADE: the user's tokens go with it, and
 * the DELETE triggers tell every tokend ('u' + id, 't' + each hash).  The
 * CTE's count sees the tokens as they were before the statement.
 */
static int
cmd_user_delete(struct ctl *c)
{
	return ctl_user_do(c, "WITH d AS (DELETE FROM tokend.users WHERE name = $1 "
	    "RETURNING id) SELECT d.id, (SELECT count(*) FROM tokend.tokens t "
	    "WHERE t.user_id = d.id) FROM d", NULL,
	    "user %s deleted with %s tokens");
}

/*
 * Revoke every live token of the user and leave the user enabled.  FOR
 * UPDATE waits for a "pat create" holding the user FOR SHARE, so its
 * token is revoked too.
 */
static int
cmd_user_revoke_tokens(struct ctl *c)
{
	return ctl_user_do(c, "WITH u AS (SELECT id FROM tokend.users "
	    "WHERE name = $1 FOR UPDATE), r AS (UPDATE tokend.tokens SET "
	    "revoked_at = now() WHERE user_id = (SELECT id FROM u) AND "
	    "revoked_at IS NULL RETURNING 1) SELECT u.id, "
	    "(SELECT count(*) FROM r) FROM u", NULL,
	    "user %s: %s tokens revoked");
}

static int
cmd_user_list(struct ctl *c)
{
	static const struct ctl_col cols[] = {
		{ "id", COL_NUM, "-" },
		{ "name", COL_STR, "-" },
		{ "disabled", COL_BOOL, "-" },
		{ "created", COL_TS, "-" },
	};

	if (ctl_connect(c, 1) == -1)
		return -1;
	return ctl_list(c, "SELECT id, name, disabled, " PG_EPOCH("created_at")
	    " FROM tokend.users ORDER BY id", 0, NULL, cols, 4);
}

/* ---- pat create ------------------------------------------------------- */

/*
 * RFC 6749 scope: scope-tokens of %x21 / %x23-5B / %x5D-7E separated by
 * spaces.  Runs of spaces collapse and duplicates go, so what is stored is
 * canonical.  Returns 0 with out filled, or -1.
 */
static int
ctl_scope_normalize(struct ctl *c, const char *in, char *out, size_t outlen)
{
	switch (scope_normalize(in, out, outlen)) {
	case 0:
		return 0;
	case SCOPE_BAD_CHAR:
		return ctl_fail(c, "invalid scope: printable ASCII words, no "
		    "quotes or backslashes");
	default:
		return ctl_fail(c, "invalid scope: longer than %d characters",
		    SCOPE_MAX);
	}
}

static int
ctl_check_pat_args(struct ctl *c, char *scope, size_t scopelen,
    const char **expires)
{
	const char	*s;
	char		*end;
	long long	 secs;

	if (ctl_check_user_name(c, c->ctl_user) == -1)
		return -1;
	if (c->ctl_name[0] == '\0' || strlen(c->ctl_name) > LIM_PAT_NAME_MAX)
		return ctl_fail(c, "invalid --name: 1 to %d bytes",
		    LIM_PAT_NAME_MAX);
	for (s = c->ctl_name; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return ctl_fail(c, "invalid --name: control character");
	if (ctl_scope_normalize(c, c->ctl_scope != NULL ? c->ctl_scope : "",
	    scope, scopelen) == -1)
		return -1;
	*expires = c->ctl_expires_in;
	if (*expires == NULL)
		return 0;
	errno = 0;
	secs = strtoll(*expires, &end, 10);
	if (!isdigit((unsigned char)**expires) || *end != '\0' || errno != 0 ||
	    secs < LIM_EXPIRES_MIN || secs > LIM_EXPIRES_MAX)
		return ctl_fail(c, "invalid --expires-in: seconds from %d "
		    "to %d", LIM_EXPIRES_MIN, LIM_EXPIRES_MAX);
	return 0;
}

/*
 * Look the user up FOR SHARE, so a concurrent "user disable" waits for this
 * transaction and then revokes the new token too, or commits first and is
 * seen here.  Writes the id into id.  Returns 0 or -1.
 */
static int
ctl_lock_active_user(struct ctl *c, const char *name, char *id, size_t idlen)
{
	PGresult	*res;
	int		 rc = -1;

	if ((res = ctl_user_row(c, "SELECT id, disabled FROM tokend.users "
	    "WHERE name = $1 FOR SHARE", name)) == NULL)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 1), "t") == 0)
		ctl_fail(c, "user %s is disabled", name);
	else {
		snprintf(id, idlen, "%s", PQgetvalue(res, 0, 0));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

/* What is stored of token tok: its SHA-256 as a bytea literal, its
 * display prefix. */
static void
ctl_token_hash(const char *tok, char hex[CTL_HASH_HEX],
    char prefix[TOKEN_DISPLAY_LEN + 1])
{
	uint8_t		 h[TOKEN_HASH_LEN];

	token_hash(tok, TOKEN_LEN, h);
	memcpy(hex, "\\x", 2);
	hex_encode(h, sizeof(h), hex + 2);
	memcpy(prefix, tok, TOKEN_DISPLAY_LEN);
	prefix[TOKEN_DISPLAY_LEN] = '\0';
}

/*
 * --allow-ip CIDR... as one space-separated list in canonical form (the
 * worker's parser), and --rate N/SECONDS; checked before connecting.
 */
static int
ctl_pat_opts(struct ctl *c, char *ips, size_t ipslen, char *n, char *secs)
{
	const char	*why;
	uint32_t	 rn, rs;
	int		 i;

	ips[0] = n[0] = secs[0] = '\0';
	for (i = 0; i < c->ctl_allow_ips.m_n; i++)
		if (cidr_list_append(ips, ipslen, c->ctl_allow_ips.m_v[i],
		    &why) == -1)
			return ctl_fail(c, "invalid --allow-ip %s: %s",
			    c->ctl_allow_ips.m_v[i], why);
	if (c->ctl_rate == NULL)
		return 0;
	if (token_rate_parse(c->ctl_rate, &rn, &rs) == -1)
		return ctl_fail(c, "invalid --rate: N/SECONDS, N from 1 to %d, "
		    "SECONDS from 1 to %d", LIM_RATE_MAX, LIM_RATE_WINDOW_MAX);
	snprintf(n, 16, "%u", rn);
	snprintf(secs, 16, "%u", rs);
	return 0;
}

/* SPEC 13's options of the PAT just created (tokend_pat_limits). */
static int
ctl_pat_limits(struct ctl *c, const char *id)
{
	char		 ips[CTL_IPS_LEN], n[16], s[16];
	const char	*params[5];
	PGresult	*res;

	if (ctl_pat_opts(c, ips, sizeof(ips), n, s) == -1)
		return -1;
	params[0] = id;
	params[1] = ips[0] ? ips : NULL;
	params[2] = n[0] ? n : NULL;
	params[3] = s[0] ? s : NULL;
	params[4] = (c->ctl_opts & OPT_CANARY) ? "true" : "false";
	if ((res = ctl_sql(c, "SELECT tokend.tokend_pat_limits($1::bigint, "
	    "string_to_array($2, ' ')::cidr[], $3::integer, $4::integer, "
	    "$5::boolean)", 5, params)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

/*
 * Create the PAT tok for user id through tokend_pat_create, the function
 * the worker's POST /pats calls, on its operator path (no bearer token, no
 * lifetime limit); only the hash and prefix are stored.  Returns 0 or -1.
 */
static int
ctl_insert_pat(struct ctl *c, const char *tok, const char *uid,
    const char *scope, const char *expires)
{
	const char	*params[6];
	char		 hex[CTL_HASH_HEX], prefix[TOKEN_DISPLAY_LEN + 1];
	PGresult	*res;
	int		 rc = 0;

	ctl_token_hash(tok, hex, prefix);
	params[0] = uid;
	params[1] = c->ctl_name;
	params[2] = scope;
	params[3] = expires;
	params[4] = hex;
	params[5] = prefix;
	if ((res = ctl_sql_row(c, "SELECT o_status, o_id FROM "
	    "tokend.tokend_pat_create($1::bigint, $2, $3, $4::integer, $5::bytea, $6, "
	    "NULL, NULL, 0)", 6, params, "no PAT created")) == NULL)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 0), "ok") != 0)
		rc = ctl_fail(c, "cannot create the PAT: %s",
		    PQgetvalue(res, 0, 0));
	else
		rc = ctl_pat_limits(c, PQgetvalue(res, 0, 1));
	PQclear(res);
	return rc;
}

static int
cmd_pat_create(struct ctl *c)
{
	char		 scope[SCOPE_MAX + 1], uid[32], tok[TOKEN_LEN + 1];
	char		 ips[CTL_IPS_LEN], n[16], secs[16];
	const char	*expires = NULL;
	int		 rc = -1;

	if (c->ctl_user == NULL || c->ctl_name == NULL)
		ctl_usage(ctl_cmd_usage(cmd_pat_create),
		    "pat create needs --user and --name");
	if (ctl_check_pat_args(c, scope, sizeof(scope), &expires) == -1 ||
	    ctl_pat_opts(c, ips, sizeof(ips), n, secs) == -1)
		return -1;
	if (ctl_connect(c, 1) == -1 || ctl_run(c, "BEGIN", 0, NULL) == -1)
		return -1;
	if (ctl_lock_active_user(c, c->ctl_user, uid, sizeof(uid)) == -1)
		goto out;
	if (token_generate(TOKEN_PAT, tok) == -1) {
		ctl_fail(c, "cannot generate a token: RAND_bytes failed");
		goto out;
	}
	if (ctl_insert_pat(c, tok, uid, scope, expires) == -1 ||
	    ctl_run(c, "COMMIT", 0, NULL) == -1)
		goto out;
	printf("%s\n", tok);
	rc = 0;
out:
	if (rc == -1)
		ctl_rollback(c);
	OPENSSL_cleanse(tok, sizeof(tok));
	return rc;
}

/* ---- client add -------------------------------------------------------- */

/* Printable ASCII without spaces: it travels in HTTP Basic and forms. */
static int
ctl_check_client_id(struct ctl *c, const char *id)
{
	size_t	 n = strlen(id), i;

	for (i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			break;
	if (n == 0 || n > LIM_CLIENT_ID_MAX || i < n)
		return ctl_fail(c, "invalid client id: 1 to %d printable "
		    "ASCII characters, no spaces", LIM_CLIENT_ID_MAX);
	return 0;
}

/*
 * An absolute URI (scheme ":" ...) without a fragment (RFC 6749 3.1.2),
 * spaces, control characters, quotes or backslashes; /authorize compares
 * it byte for byte.
 */
static int
ctl_check_uri(struct ctl *c, const char *u)
{
	size_t	 n = strlen(u), i, scheme = strspn(u, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");

	for (i = 0; i < n; i++)
		if (u[i] <= 0x20 || u[i] == 0x7f || strchr("#\"\\", u[i]))
			break;
	if (n == 0 || n > LIM_URI_MAX || i < n || scheme == 0 ||
	    !isalpha((unsigned char)u[0]) || u[scheme] != ':' ||
	    u[scheme + 1] == '\0')
		return ctl_fail(c, "invalid --redirect-uri %s: an absolute URI "
		    "of at most %d characters, without a fragment", u,
		    LIM_URI_MAX);
	return 0;
}

/* The redirect URIs as a text[] literal: {"a","b"}.  They hold no quote
 * or backslash (ctl_check_uri), so none needs escaping. */
static int
ctl_uri_array(struct ctl *c, char *out, size_t outlen)
{
	size_t	 n = 0;
	int	 i, w;

	out[n++] = '{';
	for (i = 0; i < c->ctl_uris.m_n; i++) {
		if (ctl_check_uri(c, c->ctl_uris.m_v[i]) == -1)
			return -1;
		w = snprintf(out + n, outlen - n, "%s\"%s\"", i > 0 ? "," : "",
		    c->ctl_uris.m_v[i]);
		if (w < 0 || (size_t)w >= outlen - n)
			return ctl_fail(c, "too many redirect URIs");
		n += (size_t)w;
	}
	if (n + 2 > outlen)
		return ctl_fail(c, "too many redirect URIs");
	memcpy(out + n, "}", 2);
	return 0;
}

static int cmd_client_add(struct ctl *c);

/*
 * The --grant names as a set: the grant_type names /token takes, and
 * device_code for the device grant's URN.  Without --grant, what SPEC 11
 * gives a new client: the code flow, refresh and the device grant, plus
 * client_credentials for a confidential one; password only when named
 * (RFC 9700 2.4).  A public client cannot authenticate, so it cannot use
 * client_credentials.
 */
static unsigned
ctl_grant_set(struct ctl *c, int pub)
{
	const char	*g;
	unsigned	 set = 0, bit;
	int		 i;

	if (c->ctl_grants.m_n == 0)
		return GRANT_CODE | GRANT_REFRESH | GRANT_DEVICE |
		    (pub ? 0 : GRANT_CLIENT_CREDENTIALS);
	for (i = 0; i < c->ctl_grants.m_n; i++) {
		g = c->ctl_grants.m_v[i];
		bit = strcmp(g, GRANT_DEVICE_SHORT) == 0 ? GRANT_DEVICE :
		    grant_bit(g);
		if (bit == 0)
			ctl_usage(ctl_cmd_usage(cmd_client_add), "unknown "
			    "--grant %s: authorization_code, refresh_token, "
			    "device_code, client_credentials or password", g);
		if (pub && bit == GRANT_CLIENT_CREDENTIALS)
			ctl_usage(ctl_cmd_usage(cmd_client_add), "a --public "
			    "client cannot use client_credentials");
		set |= bit;
	}
	return set;
}

/* The set as a text[] literal of grant_type names (no quoting needed). */
static void
ctl_grant_array(unsigned set, char *out, size_t outlen)
{
	size_t	 n = 0;
	int	 i;

	out[n++] = '{';
	for (i = 0; i < GRANT_NTYPES; i++)
		if (set & (1u << i))
			n += (size_t)snprintf(out + n, outlen - n, "%s%s",
			    n > 1 ? "," : "", grant_name(i));
	snprintf(out + n, outlen - n, "}");
}

/*
 * --first-party: its users' access tokens may call POST /authorize and the
 * PAT API.  --introspect: it may call /introspect, which needs client
 * authentication, so a public client cannot.
 */
static int
cmd_client_add(struct ctl *c)
{
	static char	 uris[CTL_MAX_URIS * (LIM_URI_MAX + 3) + 3];
	const char	*id = c->ctl_words[2], *params[8];
	char		 scope[SCOPE_MAX + 1], hash[PASSWD_ENCODED_MAX];
	char		 grants[GRANT_NTYPES * 64];
	int		 pub = (c->ctl_opts & OPT_PUBLIC) != 0;
	PGresult	*res;

	if (pub && (c->ctl_opts & (OPT_SECRET_STDIN | OPT_INTROSPECT)))
		ctl_usage(ctl_cmd_usage(cmd_client_add), "a --public client "
		    "has no secret and cannot introspect");
	if (!pub && !(c->ctl_opts & OPT_SECRET_STDIN))
		ctl_usage(ctl_cmd_usage(cmd_client_add), "a confidential "
		    "client needs --secret-stdin (or give --public)");
	ctl_grant_array(ctl_grant_set(c, pub), grants, sizeof(grants));
	if (ctl_check_client_id(c, id) == -1 ||
	    ctl_uri_array(c, uris, sizeof(uris)) == -1 ||
	    ctl_scope_normalize(c, c->ctl_scope != NULL ? c->ctl_scope : "",
	    scope, sizeof(scope)) == -1)
		return -1;
	if (!pub && ctl_password_hash(c, hash, sizeof(hash)) == -1)
		return -1;
	if (ctl_connect(c, 1) == -1)
		return -1;
	params[0] = id;
	params[1] = pub ? NULL : hash;
	params[2] = pub ? "t" : "f";
	params[3] = uris;
	params[4] = scope;
	params[5] = c->ctl_opts & OPT_FIRST_PARTY ? "t" : "f";
	params[6] = c->ctl_opts & OPT_INTROSPECT ? "t" : "f";
	params[7] = grants;
	if ((res = ctl_sql_row(c, "INSERT INTO tokend.clients (client_id, "
	    "secret_hash, public, redirect_uris, scope, first_party, "
	    "introspect, grant_types) VALUES ($1, $2, $3, $4::text[], $5, $6, "
	    "$7, $8::text[]) ON CONFLICT (client_id) DO NOTHING RETURNING id",
	    8, params,
	    "client %s already exists", id)) == NULL)
		return -1;
	printf("client %s added (id %s, %s)\n", id, PQgetvalue(res, 0, 0),
	    pub ? "public" : "confidential");
	PQclear(res);
	return 0;
}

/* ---- client list / show / remove / rotate-secret ----------------------- */

static const struct ctl_col ctl_client_cols[] = {
	{ "id", COL_STR, "-" },
	{ "public", COL_BOOL, "-" },
	{ "first_party", COL_BOOL, "-" },
	{ "introspect", COL_BOOL, "-" },
	{ "scope", COL_STR, "-" },
	{ "redirect_uris", COL_LIST, "-" },
	{ "grant_types", COL_LIST, "-" },
	{ "created", COL_TS, "-" },
	{ "updated", COL_TS, "-" },
};
#define CTL_CLIENT_NCOLS \
	(int)(sizeof(ctl_client_cols) / sizeof(ctl_client_cols[0]))

#define CTL_CLIENT_SELECT "SELECT client_id, public, first_party, " \
	"introspect, scope, array_to_string(redirect_uris, ' '), " \
	"array_to_string(grant_types, ' '), " \
	PG_EPOCH("created_at") ", " PG_EPOCH("updated_at") " FROM tokend.clients "

static int
cmd_client_list(struct ctl *c)
{
	if (ctl_connect(c, 1) == -1)
		return -1;
	return ctl_list(c, CTL_CLIENT_SELECT "ORDER BY id", 0, NULL,
	    ctl_client_cols, CTL_CLIENT_NCOLS);
}

static int
cmd_client_show(struct ctl *c)
{
	if (ctl_check_client_id(c, c->ctl_words[2]) == -1 ||
	    ctl_connect(c, 1) == -1)
		return -1;
	return ctl_show(c, CTL_CLIENT_SELECT "WHERE client_id = $1",
	    c->ctl_words[2], "unknown client %s", ctl_client_cols,
	    CTL_CLIENT_NCOLS);
}

/*
 * tokens.client_id is ON DELETE CASCADE: the client's tokens (and codes)
 * go with it, and the DELETE triggers tell every tokend.  The CTE's count
 * sees the tokens as they were before the statement.
 */
static int
cmd_client_remove(struct ctl *c)
{
	const char	*id = c->ctl_words[2], *params[1] = { id };
	PGresult	*res;

	if (ctl_check_client_id(c, id) == -1 || ctl_connect(c, 1) == -1)
		return -1;
	if ((res = ctl_sql_row(c, "WITH d AS (DELETE FROM tokend.clients "
	    "WHERE client_id = $1 RETURNING id) SELECT d.id, (SELECT count(*) "
	    "FROM tokend.tokens t WHERE t.client_id = d.id) FROM d", 1, params,
	    "unknown client %s", id)) == NULL)
		return -1;
	printf("client %s removed with %s tokens\n", id, PQgetvalue(res, 0, 1));
	PQclear(res);
	return 0;
}

/* A new secret of 32 random bytes in hex, hashed into hash. */
static int
ctl_new_secret(struct ctl *c, char secret[65], char *hash, size_t hashlen)
{
	uint8_t	 raw[32];
	int	 rc = -1;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		ctl_fail(c, "cannot generate a secret: RAND_bytes failed");
	else {
		hex_encode(raw, sizeof(raw), secret);
		if (passwd_hash(secret, 2 * sizeof(raw), hash, hashlen) == -1)
			ctl_fail(c, "cannot hash the secret");
		else
			rc = 0;
	}
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}

/*
 * The new secret from stdin (--secret-stdin), or generated and printed as
 * the only line of stdout.  The clients trigger tells every tokend, which
 * drops the client's cached tokens; they stay valid.  The UPDATE's
 * "NOT public" closes the race with a change to public in between.
 */
static int
cmd_client_rotate_secret(struct ctl *c)
{
	const char	*id = c->ctl_words[2], *params[2] = { id, NULL };
	char		 secret[65] = "", hash[PASSWD_ENCODED_MAX];
	PGresult	*res;
	int		 rc = -1;

	if (ctl_check_client_id(c, id) == -1 || ctl_connect(c, 1) == -1)
		return -1;
	if ((res = ctl_sql_row(c, "SELECT public FROM tokend.clients "
	    "WHERE client_id = $1", 1, params, "unknown client %s", id)) == NULL)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		ctl_fail(c, "client %s is public: it has no secret", id);
		goto out;
	}
	PQclear(res);
	res = NULL;
	if ((c->ctl_opts & OPT_SECRET_STDIN) ?
	    ctl_password_hash(c, hash, sizeof(hash)) == -1 :
	    ctl_new_secret(c, secret, hash, sizeof(hash)) == -1)
		goto out;
	params[1] = hash;
	if ((res = ctl_sql_row(c, "UPDATE tokend.clients SET secret_hash = $2, "
	    "updated_at = now() WHERE client_id = $1 AND NOT public "
	    "RETURNING id", 2, params, "client %s is public or gone",
	    id)) == NULL)
		goto out;
	if (secret[0] != '\0')
		printf("%s\n", secret);
	rc = 0;
out:
	PQclear(res);
	OPENSSL_cleanse(secret, sizeof(secret));
	return rc;
}

/* A number of seconds from min to max, or -1 after failing with what. */
static long long
ctl_seconds(struct ctl *c, const char *what, const char *v, long long min,
    long long max)
{
	char		*end;
	long long	 secs;

	errno = 0;
	secs = strtoll(v, &end, 10);
	if (!isdigit((unsigned char)*v) || *end != '\0' || errno != 0 ||
	    secs < min || secs > max) {
		ctl_fail(c, "invalid %s: seconds from %lld to %lld", what, min,
		    max);
		return -1;
	}
	return secs;
}

/* ---- token list / revoke ---------------------------------------------- */

static int
ctl_user_id(struct ctl *c, const char *name, char *id, size_t idlen)
{
	PGresult	*res;

	if ((res = ctl_user_row(c, "SELECT id FROM tokend.users WHERE name = $1",
	    name)) == NULL)
		return -1;
	snprintf(id, idlen, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

static int
cmd_token_list(struct ctl *c)
{
	static const struct ctl_col cols[] = {
		{ "id", COL_NUM, "-" },
		{ "user", COL_STR, "-" },
		{ "kind", COL_STR, "-" },
		{ "prefix", COL_STR, "-" },
		{ "name", COL_STR, "-" },
		{ "scope", COL_STR, "-" },
		{ "created", COL_TS, "-" },
		{ "expires", COL_TS, "never" },
		{ "last_used_at", COL_TS, "-" },
		{ "use_count", COL_NUM, "-" },
		{ "revoked", COL_TS, "-" },
		{ "last_used_ip", COL_STR, "-" },
		{ "allowed_ips", COL_LIST, "any" },
		{ "rate", COL_STR, "-" },
		{ "canary", COL_BOOL, "-" },
	};
	const char	*params[2] = { NULL, c->ctl_expiring };
	char		 uid[32];

	if (c->ctl_user != NULL && ctl_check_user_name(c, c->ctl_user) == -1)
		return -1;
	if (c->ctl_expiring != NULL && ctl_seconds(c, "--expiring",
	    c->ctl_expiring, 1, LIM_EXPIRES_MAX) == -1)
		return -1;
	if (ctl_connect(c, 1) == -1)
		return -1;
	if (c->ctl_user != NULL) {
		if (ctl_user_id(c, c->ctl_user, uid, sizeof(uid)) == -1)
			return -1;
		params[0] = uid;
	}
	/* user: whose token it is; a client-credentials token has none. */
	return ctl_list(c, "SELECT t.id, coalesce(u.name, ''), t.kind, "
	    "t.prefix, t.name, t.scope, " PG_EPOCH("t.created_at") ", "
	    PG_EPOCH("t.expires_at") ", " PG_EPOCH("s.last_used_at") ", "
	    "s.use_count, " PG_EPOCH("t.revoked_at") ", host(s.last_used_ip), "
	    "array_to_string(t.allowed_ips, ' '), "
	    "t.rate_limit || '/' || t.rate_window, t.canary FROM tokend.tokens t "
	    "JOIN tokend.token_usage s ON s.token_id = t.id "
	    "LEFT JOIN tokend.users u ON u.id = t.user_id "
	    "WHERE ($1::bigint IS NULL OR t.user_id = $1) AND "
	    "($2::integer IS NULL OR (t.revoked_at IS NULL AND "
	    "t.expires_at > now() AND "
	    "t.expires_at <= now() + make_interval(secs => $2))) "
	    "ORDER BY t.id", 2, params, cols, 15);
}

/* A positive int64 in decimal, nothing else. */
static int
ctl_valid_id(const char *s)
{
	char		*end;
	long long	 v;

	if (!isdigit((unsigned char)*s))
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	return *end == '\0' && errno == 0 && v > 0;
}

/*
 * Revoke token id; a refresh token takes its whole family with it (every
 * token whose family, or id, is the family's id: refresh and access
 * tokens alike).  The row lock keeps a concurrent rotation from adding a
 * member we would miss.  Sets *was_revoked, *n to the rows revoked.
 */
static int
ctl_revoke(struct ctl *c, const char *id, int *was_revoked, long long *n)
{
	const char	*params[2] = { id, NULL };
	PGresult	*res;
	char		 family[32];
	int		 refresh;

	if ((res = ctl_sql_row(c, "SELECT kind, coalesce(family, id), "
	    "revoked_at IS NOT NULL FROM tokend.tokens WHERE id = $1 FOR UPDATE",
	    1, params, "unknown token %s", id)) == NULL)
		return -1;
	refresh = strcmp(PQgetvalue(res, 0, 0), "refresh") == 0;
	snprintf(family, sizeof(family), "%s", PQgetvalue(res, 0, 1));
	*was_revoked = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	PQclear(res);
	params[1] = family;
	if (refresh)
		return ctl_run_count(c, "UPDATE tokend.tokens SET revoked_at = now() "
		    "WHERE revoked_at IS NULL "
		    "AND (id = $1 OR id = $2 OR family = $2)", 2, params, n);
	return ctl_run_count(c, "UPDATE tokend.tokens SET revoked_at = now() "
	    "WHERE revoked_at IS NULL AND id = $1", 1, params, n);
}

static int
cmd_token_revoke(struct ctl *c)
{
	const char	*id = c->ctl_words[2];
	long long	 n = 0;
	int		 was_revoked = 0;

	if (!ctl_valid_id(id))
		return ctl_fail(c, "invalid token id %s: a positive integer "
		    "(see tokenctl token list)", id);
	if (ctl_connect(c, 1) == -1 || ctl_run(c, "BEGIN", 0, NULL) == -1)
		return -1;
	if (ctl_revoke(c, id, &was_revoked, &n) == -1 ||
	    ctl_run(c, "COMMIT", 0, NULL) == -1) {
		ctl_rollback(c);
		return -1;
	}
	if (was_revoked && n == 0)
		printf("token %s already revoked\n", id);
	else
		printf("token %s revoked\n", id);
	return 0;
}

/* ---- audit ------------------------------------------------------------- */

/*
 * The audit trail (migration 015), oldest first, so that the newest rows
 * end the output as a log's do.  --user NAME: the rows of the user now
 * called NAME and the rows that named NAME when they were written (rows
 * outlive users; a failed sign-in may name nobody), so an unknown name is
 * no error.  --since S: the rows of the last S seconds.
 */
static int
cmd_audit(struct ctl *c)
{
	static const struct ctl_col cols[] = {
		{ "at", COL_TS, "-" },
		{ "event", COL_STR, "-" },
		{ "by", COL_STR, "-" },
		{ "user", COL_STR, "-" },
		{ "client", COL_STR, "-" },
		{ "token", COL_NUM, "-" },
		{ "prefix", COL_STR, "-" },
		{ "detail", COL_JSON, "-" },
	};
	const char	*params[2] = { c->ctl_user, c->ctl_since };

	if (c->ctl_user != NULL && c->ctl_user[0] == '\0')
		ctl_usage(ctl_cmd_usage(cmd_audit), "empty --user");
	/* Ten digits: more than three centuries, and no interval overflow. */
	if (c->ctl_since != NULL && (!ctl_valid_id(c->ctl_since) ||
	    strlen(c->ctl_since) > 10))
		ctl_usage(ctl_cmd_usage(cmd_audit), "invalid --since %s: a "
		    "positive number of seconds", c->ctl_since);
	if (ctl_connect(c, 1) == -1)
		return -1;
	return ctl_list(c, "SELECT " PG_EPOCH("a.at") ", a.event, a.by, "
	    "coalesce(a.user_name, '#' || a.user_id), a.client_id, "
	    "a.token_id, a.token_prefix, a.detail::text FROM tokend.audit a "
	    "WHERE ($1::text IS NULL OR a.user_name = $1 OR a.user_id = "
	    "(SELECT id FROM tokend.users WHERE name = $1)) AND ($2::bigint IS NULL "
	    "OR a.at >= now() - $2::bigint * interval '1 second') "
	    "ORDER BY a.at, a.id", 2, params, cols, 8);
}

/* ---- pat rotate -------------------------------------------------------- */

/*
 * A new PAT for PAT id, by tokend_pat_rotate, the function POST
 * /pats/ID/rotate calls, on its operator path: no bearer token, and, as
 * for pat create, no lifetime limit (the new one lives as long as the old
 * one was made to).  The old one expires --overlap seconds from now at the
 * latest (default a day).  The new token is the only line on stdout.
 */
static int
cmd_pat_rotate(struct ctl *c)
{
	const char	*params[5];
	char		 tok[TOKEN_LEN + 1], hex[CTL_HASH_HEX], overlap[16];
	char		 prefix[TOKEN_DISPLAY_LEN + 1];
	PGresult	*res;
	int		 rc = -1;

	if (!ctl_valid_id(c->ctl_words[2]))
		return ctl_fail(c, "invalid PAT id %s: a positive integer "
		    "(see tokenctl token list)", c->ctl_words[2]);
	snprintf(overlap, sizeof(overlap), "%d", LIM_OVERLAP_DEFAULT);
	if (c->ctl_overlap != NULL && ctl_seconds(c, "--overlap",
	    c->ctl_overlap, 0, LIM_OVERLAP_MAX) == -1)
		return -1;
	if (ctl_connect(c, 1) == -1)
		return -1;
	if (token_generate(TOKEN_PAT, tok) == -1)
		return ctl_fail(c, "cannot generate a token: RAND_bytes failed");
	ctl_token_hash(tok, hex, prefix);
	params[0] = c->ctl_words[2];
	params[1] = c->ctl_overlap != NULL ? c->ctl_overlap : overlap;
	params[2] = hex;
	params[3] = prefix;
	if ((res = ctl_sql_row(c, "SELECT o_status FROM tokend.tokend_pat_rotate("
	    "NULL, $1::bigint, $2::integer, $3::bytea, $4, NULL, NULL, 0)",
	    4, params, "no PAT rotated")) == NULL)
		goto out;
	if (strcmp(PQgetvalue(res, 0, 0), "not_found") == 0)
		ctl_fail(c, "no live PAT %s (unknown, revoked or expired)",
		    params[0]);
	else if (strcmp(PQgetvalue(res, 0, 0), "ok") != 0)
		ctl_fail(c, "cannot rotate PAT %s: %s", params[0],
		    PQgetvalue(res, 0, 0));
	else {
		printf("%s\n", tok);
		rc = 0;
	}
	PQclear(res);
out:
	OPENSSL_cleanse(tok, sizeof(tok));
	return rc;
}

/* ---- sessions ---------------------------------------------------------- */

/* The user's live refresh families, as GET /sessions lists them. */
static int
cmd_user_sessions(struct ctl *c)
{
	static const struct ctl_col cols[] = {
		{ "id", COL_NUM, "-" },
		{ "client_id", COL_STR, "-" },
		{ "created_at", COL_TS, "-" },
		{ "last_used_at", COL_TS, "-" },
	};
	const char	*params[1];
	char		 uid[32];

	if (ctl_check_user_name(c, c->ctl_words[2]) == -1 ||
	    ctl_connect(c, 1) == -1 ||
	    ctl_user_id(c, c->ctl_words[2], uid, sizeof(uid)) == -1)
		return -1;
	params[0] = uid;
	return ctl_list(c, "SELECT o_id, o_client, " PG_EPOCH("o_created")
	    ", " PG_EPOCH("o_last_used") " FROM tokend.tokend_sessions($1::bigint)",
	    1, params, cols, 4);
}

/*
 * End session (refresh family) id as DELETE /sessions/ID does, by
 * tokend_session_revoke: its tokens, its browser sessions, its consent.
 */
static int
cmd_session_revoke(struct ctl *c)
{
	const char	*params[1] = { c->ctl_words[2] };
	PGresult	*res;
	int		 rc = -1;

	if (!ctl_valid_id(params[0]))
		return ctl_fail(c, "invalid session id %s: a positive integer "
		    "(see tokenctl user sessions)", params[0]);
	if (ctl_connect(c, 1) == -1)
		return -1;
	if ((res = ctl_sql_row(c, "SELECT o_status, o_n, o_user, o_client "
	    "FROM tokend.tokend_session_revoke($1::bigint, NULL, NULL)", 1, params,
	    "no session revoked")) == NULL)
		return -1;
	if (strcmp(PQgetvalue(res, 0, 0), "ok") != 0)
		ctl_fail(c, "no live session %s", params[0]);
	else {
		printf("session %s of %s at %s revoked (%s tokens)\n",
		    params[0], PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
		    PQgetvalue(res, 0, 1));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

/* ---- cleanup ----------------------------------------------------------- */

/*
 * Rows expired or revoked more than retention seconds ago go, by
 * tokend_cleanup (migration 010), as the writer's periodic sweep.  The
 * retention comes from -c FILE, else TOKEND_RETENTION, else the default,
 * all through config_load so it is validated as tokend validates it.
 */
static int
cmd_cleanup(struct ctl *c)
{
	const char	*params[1];
	char		 ret[32];
	PGresult	*res;

	if (ctl_config(c) == -1 || ctl_connect(c, 1) == -1)
		return -1;
	snprintf(ret, sizeof(ret), "%d", c->ctl_cf.cf_retention);
	params[0] = ret;
	if ((res = ctl_sql_row(c, "SELECT o_tokens FROM tokend.tokend_cleanup($1)",
	    1, params, "cleanup gave no counts")) == NULL)
		return -1;
	printf("deleted %s tokens\n", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* ---- scan ---------------------------------------------------------------- */

/*
 * tokenctl scan FILE... [--revoke]: every well-formed tokend token (a
 * prefix of proto/token.c, the length, the alphabet and the checksum, all
 * through token_check) in the files, as "FILE:LINE prefix", never more of
 * the token than its display prefix.  "-" is stdin.  Files are read as
 * bytes in chunks, so binary files and files without newlines cost no
 * more memory than text.  Exit status like grep's: 0 none found, 1 some
 * found (with --revoke too: a leak was there), 2 a file could not be read
 * or the revocation failed.  With --revoke, and only when something was
 * found, the distinct tokens go to tokend_leak_revoke (migration 018, the
 * function behind POST /credentials/revoke), audited by=tokenctl.
 */
#define SCAN_CHUNK	65536

struct ctl_scan {
	size_t		 sc_found;		/* occurrences printed */
	size_t		 sc_n;			/* distinct tokens */
	size_t		 sc_cap;
	uint8_t		(*sc_hash)[TOKEN_HASH_LEN];
	int		 sc_trouble;		/* a file could not be read */
};

/* One token at tok, on line of name: print it, remember its hash. */
static int
ctl_scan_hit(struct ctl *c, struct ctl_scan *sc, const char *name,
    long long line, const char *tok)
{
	uint8_t		 h[TOKEN_HASH_LEN];
	size_t		 i;

	ctl_put_safe(name);
	printf(":%lld %.*s\n", line, TOKEN_DISPLAY_LEN, tok);
	sc->sc_found++;
	token_hash(tok, TOKEN_LEN, h);
	for (i = 0; i < sc->sc_n; i++)
		if (memcmp(sc->sc_hash[i], h, sizeof(h)) == 0)
			return 0;
	if (array_room(&sc->sc_hash, &sc->sc_cap, sc->sc_n + 1,
	    sizeof(*sc->sc_hash), 16) == -1)
		return ctl_fail(c, "out of memory");
	memcpy(sc->sc_hash[sc->sc_n++], h, sizeof(h));
	return 0;
}

/*
 * Each byte is looked at once: a chunk's last TOKEN_LEN - 1 bytes, which
 * may start a token that the next chunk ends, move to the front and are
 * looked at with it.
 */
static int
ctl_scan_file(struct ctl *c, struct ctl_scan *sc, FILE *fp, const char *name)
{
	static char	 buf[SCAN_CHUNK + TOKEN_LEN];
	size_t		 have = 0, n, i;
	long long	 line = 1;
	int		 eof = 0;

	while (!eof) {
		n = have + fread(buf + have, 1, SCAN_CHUNK, fp);
		if (ferror(fp))
			return ctl_fail(c, "%s: %s", name, strerror(errno));
		eof = feof(fp);
		for (i = 0; eof ? i < n : i + TOKEN_LEN <= n; i++) {
			if (buf[i] == '\n')
				line++;
			else if (buf[i] == 't' && n - i >= TOKEN_LEN &&
			    token_check(buf + i, TOKEN_LEN) != TOKEN_INVALID) {
				if (ctl_scan_hit(c, sc, name, line,
				    buf + i) == -1)
					return -1;
				i += TOKEN_LEN - 1;	/* no newline inside */
			}
		}
		have = n - i;
		memmove(buf, buf + i, have);
	}
	return 0;
}

/* The distinct tokens found, revoked in one call.  Returns 0 or -1. */
static int
ctl_scan_revoke(struct ctl *c, struct ctl_scan *sc)
{
	const char	*params[1];
	PGresult	*res;
	char		*hex;
	size_t		 i;

	if ((hex = calloc(sc->sc_n, 2 * TOKEN_HASH_LEN + 1)) == NULL)
		return ctl_fail(c, "out of memory");
	for (i = 0; i < sc->sc_n; i++) {
		hex_encode(sc->sc_hash[i], TOKEN_HASH_LEN,
		    hex + i * (2 * TOKEN_HASH_LEN + 1));
		if (i + 1 < sc->sc_n)
			hex[(i + 1) * (2 * TOKEN_HASH_LEN + 1) - 1] = ',';
	}
	params[0] = hex;
	res = ctl_connect(c, 1) == -1 ? NULL : ctl_sql_row(c, "SELECT o_found, "
	    "o_n FROM tokend.tokend_leak_revoke(ARRAY(SELECT decode(x, 'hex') FROM "
	    "unnest(string_to_array($1, ',')) x), 'tokenctl')", 1, params,
	    "tokend_leak_revoke gave no row");
	free(hex);
	if (res == NULL)
		return -1;
	printf("revoked %s (%s of the %zu distinct tokens found are known)\n",
	    PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0), sc->sc_n);
	PQclear(res);
	return 0;
}

static int
cmd_scan(struct ctl *c)
{
	struct ctl_scan	 sc;
	const char	*name;
	FILE		*fp;
	int		 i, rc;

	if (c->ctl_opts & OPT_JSON)
		ctl_usage(ctl_cmd_usage(cmd_scan), "--json does not apply "
		    "here");
	memset(&sc, 0, sizeof(sc));
	for (i = 1; i < c->ctl_nwords; i++) {
		name = c->ctl_words[i];
		fp = strcmp(name, "-") == 0 ? stdin : fopen(name, "rb");
		rc = fp == NULL ? ctl_fail(c, "%s: %s", name, strerror(errno)) :
		    ctl_scan_file(c, &sc, fp, name);
		if (fp != NULL && fp != stdin)
			fclose(fp);
		if (rc == -1) {
			fprintf(stderr, "tokenctl: %s\n", c->ctl_err);
			sc.sc_trouble = 1;
		}
	}
	if (sc.sc_n > 0 && (c->ctl_opts & OPT_REVOKE) &&
	    ctl_scan_revoke(c, &sc) == -1) {
		fprintf(stderr, "tokenctl: %s\n", c->ctl_err);
		sc.sc_trouble = 1;
	}
	free(sc.sc_hash);
	c->ctl_exit = sc.sc_trouble ? EXIT_USAGE : sc.sc_found > 0;
	return 0;
}

/* ---- Dispatch ---------------------------------------------------------- */

static const struct ctl_cmd ctl_cmds[] = {
	{ "migrate", NULL, 0, 0, cmd_migrate, "migrate" },
	{ "user", "add", 1, OPT_PASSWORD_STDIN | OPT_NO_PASSWORD, cmd_user_add,
	    "user add NAME --password-stdin | --no-password" },
	{ "user", "disable", 1, 0, cmd_user_disable, "user disable NAME" },
	{ "user", "enable", 1, 0, cmd_user_enable, "user enable NAME" },
	{ "user", "passwd", 1, OPT_PASSWORD_STDIN, cmd_user_passwd,
	    "user passwd NAME --password-stdin" },
	{ "user", "delete", 1, 0, cmd_user_delete, "user delete NAME" },
	{ "user", "revoke-tokens", 1, 0, cmd_user_revoke_tokens,
	    "user revoke-tokens NAME" },
	{ "user", "unlock", 1, 0, cmd_user_unlock, "user unlock NAME" },
	{ "user", "list", 0, 0, cmd_user_list, "user list" },
	{ "user", "sessions", 1, 0, cmd_user_sessions, "user sessions NAME" },
	{ "session", "revoke", 1, 0, cmd_session_revoke, "session revoke ID" },
	{ "pat", "create", 0, OPT_USER | OPT_NAME | OPT_SCOPE | OPT_EXPIRES_IN |
	    OPT_ALLOW_IP | OPT_RATE | OPT_CANARY,
	    cmd_pat_create, "pat create --user NAME --name LABEL "
	    "[--scope \"a b\"] [--expires-in SECONDS] [--allow-ip CIDR]... "
	    "[--rate N/SECONDS] [--canary]" },
	{ "pat", "rotate", 1, OPT_OVERLAP, cmd_pat_rotate,
	    "pat rotate ID [--overlap SECONDS]" },
	{ "token", "list", 0, OPT_USER | OPT_EXPIRING, cmd_token_list,
	    "token list [--user NAME] [--expiring SECONDS]" },
	{ "token", "revoke", 1, 0, cmd_token_revoke, "token revoke ID" },
	{ "client", "add", 1, OPT_PUBLIC | OPT_SECRET_STDIN | OPT_REDIRECT_URI |
	    OPT_SCOPE | OPT_FIRST_PARTY | OPT_INTROSPECT | OPT_GRANT,
	    cmd_client_add, "client add ID [--public] [--secret-stdin] "
	    "[--redirect-uri URI]... [--scope \"a b\"] [--first-party] "
	    "[--introspect] [--grant TYPE]..." },
	{ "client", "list", 0, 0, cmd_client_list, "client list" },
	{ "client", "show", 1, 0, cmd_client_show, "client show ID" },
	{ "client", "remove", 1, 0, cmd_client_remove, "client remove ID" },
	{ "client", "rotate-secret", 1, OPT_SECRET_STDIN,
	    cmd_client_rotate_secret, "client rotate-secret ID [--secret-stdin]" },
	{ "audit", NULL, 0, OPT_USER | OPT_SINCE, cmd_audit,
	    "audit [--user NAME] [--since SECONDS]" },
	{ "cleanup", NULL, 0, 0, cmd_cleanup, "cleanup" },
	{ "scan", NULL, CTL_ARGS_SOME, OPT_REVOKE, cmd_scan,
	    "scan FILE... [--revoke]" },
};
#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

static const char *
ctl_cmd_usage(int (*fn)(struct ctl *))
{
	size_t	 i;

	for (i = 0; i < CTL_NCMDS; i++)
		if (ctl_cmds[i].cmd_fn == fn)
			return ctl_cmds[i].cmd_usage;
	return NULL;
}

static void
ctl_usage_all(FILE *fp)
{
	size_t	 i;

	fputs(ctl_usage_head, fp);
	fputs("commands:\n", fp);
	for (i = 0; i < CTL_NCMDS; i++)
		fprintf(fp, "  %s\n", ctl_cmds[i].cmd_usage);
}

/* The name of the lowest option bit in bits. */
static const char *
ctl_opt_name(unsigned bits)
{
	size_t	 i;

	for (i = 0; i < sizeof(ctl_opts) / sizeof(ctl_opts[0]); i++)
		if (bits & ctl_opts[i].o_bit & -bits)
			return ctl_opts[i].o_name;
	return "?";
}

/*
 * The subcommands of w1 as "user add|disable|...", into buf.  Returns 0,
 * or -1 when w1 is no command word that takes a subcommand.
 */
static int
ctl_subcommands(const char *w1, char *buf, size_t buflen)
{
	size_t	 i, n = 0;
	int	 w;

	for (i = 0; i < CTL_NCMDS; i++) {
		if (ctl_cmds[i].cmd_w2 == NULL ||
		    strcmp(ctl_cmds[i].cmd_w1, w1) != 0)
			continue;
		w = snprintf(buf + n, buflen - n, "%s%s", n == 0 ? "" : "|",
		    ctl_cmds[i].cmd_w2);
		if (w < 0 || (size_t)w >= buflen - n)
			break;
		n += (size_t)w;
	}
	return n == 0 ? -1 : 0;
}

/* The command the words name, with its argument count and options checked. */
static const struct ctl_cmd *
ctl_find_cmd(const struct ctl *c)
{
	const struct ctl_cmd	*cmd;
	char			 subs[256];
	size_t			 i;
	int			 nw;

	if (c->ctl_nwords == 0 || c->ctl_words[0] == NULL)
		ctl_usage(NULL, "no command given");
	for (i = 0; i < CTL_NCMDS; i++) {
		cmd = &ctl_cmds[i];
		if (strcmp(c->ctl_words[0], cmd->cmd_w1) != 0 ||
		    (cmd->cmd_w2 != NULL && (c->ctl_nwords < 2 ||
		    strcmp(c->ctl_words[1], cmd->cmd_w2) != 0)))
			continue;
		nw = cmd->cmd_w2 != NULL ? 2 : 1;
		if (cmd->cmd_nargs == CTL_ARGS_SOME ? c->ctl_nwords <= nw :
		    c->ctl_nwords != nw + cmd->cmd_nargs)
			ctl_usage(cmd->cmd_usage, "%s arguments",
			    c->ctl_nwords < nw + cmd->cmd_nargs ||
			    c->ctl_nwords <= nw ? "missing" : "too many");
		if (c->ctl_opts & ~(cmd->cmd_opts | OPT_GLOBAL))
			ctl_usage(cmd->cmd_usage, "option %s does not apply "
			    "here", ctl_opt_name(c->ctl_opts &
			    ~(cmd->cmd_opts | OPT_GLOBAL)));
		return cmd;
	}
	if (ctl_subcommands(c->ctl_words[0], subs, sizeof(subs)) == -1)
		ctl_usage(NULL, "unknown command: %s", c->ctl_words[0]);
	if (c->ctl_nwords == 1)
		ctl_usage(NULL, "missing subcommand: tokenctl %s %s",
		    c->ctl_words[0], subs);
	ctl_usage(NULL, "unknown subcommand: %s %s (one of %s)",
	    c->ctl_words[0], c->ctl_words[1], subs);
}

int
main(int argc, char **argv)
{
	static struct ctl	 c;	/* struct config is large */
	const struct ctl_cmd	*cmd;
	int			 rc;

	ctl_parse(&c, argc, argv);
	cmd = ctl_find_cmd(&c);
	rc = cmd->cmd_fn(&c);
	if (c.ctl_db != NULL)
		PQfinish(c.ctl_db);
	if (fflush(stdout) == EOF && rc == 0)
		rc = ctl_fail(&c, "stdout: %s", strerror(errno));
	if (rc == -1) {
		fprintf(stderr, "tokenctl: %s\n", c.ctl_err);
		return 1;
	}
	return c.ctl_exit;
}

/*
 * Configuration (SPEC section 7): defaults, then the file, then the
 * TOKEND_* environment.  One table describes every key: its type, where it
 * lives in struct config and its range, so the file and the environment
 * share one parser and every reason is worded the same way.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "proto/proto.h"
#include "store/runtime/runtime.h"

#define KIB	1024ULL
#define MIB	(1024ULL * KIB)
#define GIB	(1024ULL * MIB)
#define TIB	(1024ULL * GIB)

enum {
	CT_INT,		/* int member, decimal in [ck_min, ck_max] */
	CT_SIZE,	/* uint64_t member, bytes or K/M/G/T suffix */
	CT_NUM,		/* double member, decimal in [ck_dmin, ck_dmax] */
	CT_STR,		/* char array, any text that fits */
	CT_PATH,	/* char array; ck_words are the words meaning "",
			   NULL when the path is required */
	CT_ENUM,	/* int member, index into ck_words */
	CT_ADDRS,	/* listen array, count at ck_noff; repeatable */
	CT_URL,		/* issuer */
	CT_SCOPES,	/* space-separated RFC 6749 scope-tokens */
	CT_MODE,	/* int member, octal file mode in [ck_min, ck_max] */
	CT_CIDRS,	/* char array, CIDRs separated by spaces or commas */
};

struct cf_key {
	const char		*ck_name;
	int			 ck_type;
	size_t			 ck_off;
	size_t			 ck_size;
	size_t			 ck_noff;
	long long		 ck_min, ck_max;
	double			 ck_dmin, ck_dmax;
	long long		 ck_def;	/* int, mode, size, enum */
	double			 ck_ddef;	/* num */
	const char *const	*ck_words;
};

/*
 * Where each key was last set, for errors found after loading and for -T;
 * and the errors: every one goes to cl_out when set (tokend -t), the first
 * is kept in cl_err for config_load's caller.
 */
struct cf_load {
	const char	*cl_file;
	int		 cl_line[64];	/* file line, 0 when not in the file */
	int		 cl_env[64];	/* set from the environment */
	int		 cl_bad[64];	/* a value was refused */
	FILE		*cl_out;
	char		*cl_err;
	size_t		 cl_errlen;
	int		 cl_nerr;
};

/* Not configuration keys: the project's own scripts read these. */
static const char *const cf_tool_vars[] = { "TOKEND_BIN", "TOKEND_KEEP",
    "TOKEND_CONFIG", NULL };

static const char *const cf_levels[] = { "debug", "info", "warn", "error",
    NULL };
static const char *const cf_formats[] = { "logfmt", "json", NULL };
static const char *const cf_stderr[] = { "stderr", NULL };
static const char *const cf_off[] = { "off", NULL };
static const char *const cf_nowords[] = { NULL };

#define F(m)	.ck_off = offsetof(struct config, m),			\
		.ck_size = sizeof(((struct config *)0)->m)
#define INT(n, m, lo, hi, d) { .ck_name = n, .ck_type = CT_INT, F(m), \
		.ck_min = lo, .ck_max = hi, .ck_def = d }
#define SIZE(n, m, lo, hi, d) { .ck_name = n, .ck_type = CT_SIZE, F(m), \
		.ck_min = lo, .ck_max = hi, .ck_def = d }
#define PATH(n, m, w) { .ck_name = n, .ck_type = CT_PATH, F(m),	\
		.ck_words = w }

static const struct cf_key cf_keys[] = {
	{ .ck_name = "listen", .ck_type = CT_ADDRS, F(cf_listen),
	    .ck_noff = offsetof(struct config, cf_nlisten) },
	{ .ck_name = "tls_listen", .ck_type = CT_ADDRS, F(cf_tls_listen),
	    .ck_noff = offsetof(struct config, cf_ntls_listen) },
	PATH("tls_cert", cf_tls_cert, cf_nowords),
	PATH("tls_key", cf_tls_key, cf_nowords),
	INT("workers", cf_workers, 1, 256, 1),	/* default: the CPUs */
	{ .ck_name = "issuer", .ck_type = CT_URL, F(cf_issuer) },
	{ .ck_name = "database_url", .ck_type = CT_STR, F(cf_database_url) },
	PATH("cache_dir", cf_cache_dir, NULL),
	SIZE("cache_map_size", cf_cache_map_size, (long long)MIB,
	    (long long)TIB, (long long)GIB),
	INT("cache_ttl", cf_cache_ttl, 1, 86400, 600),
	INT("negative_ttl", cf_negative_ttl, 0, 3600, 10),
	{ .ck_name = "usage_flush_interval", .ck_type = CT_NUM,
	    F(cf_usage_flush_interval), .ck_dmin = 0.05, .ck_dmax = 60,
	    .ck_ddef = 1 },
	INT("usage_fold_interval", cf_usage_fold_interval, 0, 3600, 60),
	INT("access_token_ttl", cf_access_token_ttl, 300, 86400, 900),
	INT("refresh_token_ttl", cf_refresh_token_ttl, 60, 31536000, 2592000),
	INT("refresh_grace", cf_refresh_grace, 0, 60, 10),
	INT("code_ttl", cf_code_ttl, 1, 600, 60),
	INT("login_max_failures", cf_login_max_failures, 1, 1000, 5),
	INT("login_window", cf_login_window, 1, 86400, 300),
	INT("retention", cf_retention, 0, LIM_TEN_YEARS, 604800),
	INT("max_connections", cf_max_connections, 1, 1000000, 10000),
	INT("keepalive_timeout", cf_keepalive_timeout, 0, 3600, 75),
	INT("header_timeout", cf_header_timeout, 1, 3600, 10),
	INT("shutdown_timeout", cf_shutdown_timeout, 0, 3600, 10),
	SIZE("max_body", cf_max_body, 1024, (long long)(16 * MIB), 65536),
	{ .ck_name = "log_level", .ck_type = CT_ENUM, F(cf_log_level),
	    .ck_words = cf_levels, .ck_def = LVL_INFO },
	{ .ck_name = "log_format", .ck_type = CT_ENUM, F(cf_log_format),
	    .ck_words = cf_formats, .ck_def = LOGF_LOGFMT },
	PATH("log_file", cf_log_file, cf_stderr),
	PATH("access_log", cf_access_log, cf_off),
	PATH("pid_file", cf_pid_file, cf_nowords),
	{ .ck_name = "scopes_supported", .ck_type = CT_SCOPES,
	    F(cf_scopes_supported) },
	{ .ck_name = "listen_mode", .ck_type = CT_MODE, F(cf_listen_mode),
	    .ck_min = 0, .ck_max = 0777, .ck_def = 0660 },
	{ .ck_name = "listen_group", .ck_type = CT_STR, F(cf_listen_group) },
	INT("max_revocation_lag", cf_max_revocation_lag, 1, 3600, 5),
	INT("stale_cache_ttl", cf_stale_cache_ttl, 0, 86400, 600),
	INT("pat_max_lifetime", cf_pat_max_lifetime, 0, LIM_TEN_YEARS, 7776000),
	INT("refresh_family_max_age", cf_refresh_family_max_age, 60,
	    LIM_TEN_YEARS, 7776000),
	INT("session_ttl", cf_session_ttl, 60, 2592000, 43200),
	{ .ck_name = "trusted_proxies", .ck_type = CT_CIDRS,
	    F(cf_trusted_proxies) },
	PATH("template_dir", cf_template_dir, cf_nowords),
	{ .ck_name = "product_name", .ck_type = CT_STR, F(cf_product_name) },
};
#define CF_NKEYS	(sizeof(cf_keys) / sizeof(cf_keys[0]))
_Static_assert(CF_NKEYS <= 64, "cf_load arrays too small");

/* Each key's default stands beside its range in cf_keys. */
void
config_defaults(struct config *cf)
{
	long		 ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const struct cf_key *ck;
	void		*m;

	memset(cf, 0, sizeof(*cf));
	for (ck = cf_keys; ck < cf_keys + CF_NKEYS; ck++) {
		m = (char *)cf + ck->ck_off;
		if (ck->ck_type == CT_SIZE)
			*(uint64_t *)m = (uint64_t)ck->ck_def;
		else if (ck->ck_type == CT_NUM)
			*(double *)m = ck->ck_ddef;
		else if (ck->ck_type == CT_INT || ck->ck_type == CT_MODE ||
		    ck->ck_type == CT_ENUM)
			*(int *)m = (int)ck->ck_def;
	}
	cf->cf_nlisten = 1;
	strcpy(cf->cf_listen[0], "127.0.0.1:8080");
	cf->cf_workers = ncpu < 1 ? 1 : ncpu > 256 ? 256 : (int)ncpu;
	strcpy(cf->cf_cache_dir, "./var/cache");
	strcpy(cf->cf_product_name, "tokend");
}

static const struct cf_key *
cf_find(const char *name)
{
	size_t	 i;

	for (i = 0; i < CF_NKEYS; i++)
		if (strcmp(cf_keys[i].ck_name, name) == 0)
			return &cf_keys[i];
	return NULL;
}

/* Decimal only: no sign but "-", no spaces, no hex, no trailing junk. */
static int
cf_parse_int(const char *s, long long *v)
{
	char	*end;

	if (!isdigit((unsigned char)s[s[0] == '-']))
		return -1;
	errno = 0;
	*v = strtoll(s, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

static int
cf_parse_size(const char *s, uint64_t *v)
{
	static const struct { const char *u; uint64_t m; } units[] = {
		{ "", 1 }, { "K", KIB }, { "KiB", KIB }, { "M", MIB },
		{ "MiB", MIB }, { "G", GIB }, { "GiB", GIB }, { "T", TIB },
		{ "TiB", TIB },
	};
	unsigned long long	 n;
	char			*end;
	size_t			 i;

	if (!isdigit((unsigned char)s[0]))
		return -1;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	while (*end == ' ')
		end++;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(end, units[i].u) == 0) {
			if (n > UINT64_MAX / units[i].m)
				return -1;
			*v = n * units[i].m;
			return 0;
		}
	return -1;
}

/* Digits with at most one '.': strtod alone would take hex, inf and 1e3. */
static int
cf_parse_num(const char *s, double *v)
{
	size_t	 digits = strspn(s, "0123456789"), frac = 0;

	if (s[digits] == '.')
		frac = strspn(s + digits + 1, "0123456789") + 1;
	if ((digits == 0 && frac <= 1) || s[digits + frac] != '\0')
		return -1;
	*v = strtod(s, NULL);
	return isfinite(*v) ? 0 : -1;
}

static void
cf_fmt_size(uint64_t v, char *buf, size_t len)
{
	if (v % TIB == 0)
		snprintf(buf, len, "%lluTiB", (unsigned long long)(v / TIB));
	else if (v % GIB == 0)
		snprintf(buf, len, "%lluGiB", (unsigned long long)(v / GIB));
	else if (v % MIB == 0)
		snprintf(buf, len, "%lluMiB", (unsigned long long)(v / MIB));
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* What a numeric key accepts, for its error message; returns -1. */
static int
cf_range_why(const struct cf_key *ck, char *why, size_t whylen)
{
	char	 lo[32], hi[32];

	switch (ck->ck_type) {
	case CT_MODE:
		snprintf(why, whylen, "must be an octal mode from %04llo to "
		    "%04llo", ck->ck_min, ck->ck_max);
		break;
	case CT_SIZE:
		cf_fmt_size((uint64_t)ck->ck_min, lo, sizeof(lo));
		cf_fmt_size((uint64_t)ck->ck_max, hi, sizeof(hi));
		snprintf(why, whylen, "must be a size from %s to %s", lo, hi);
		break;
	case CT_NUM:
		snprintf(why, whylen, "must be a number from %g to %g",
		    ck->ck_dmin, ck->ck_dmax);
		break;
	default:
		snprintf(why, whylen, "must be an integer from %lld to %lld",
		    ck->ck_min, ck->ck_max);
	}
	return -1;
}

/* A file mode: octal digits only ("0660", "660"). */
static int
cf_parse_mode(const char *s, long long *v)
{
	char	*end;

	errno = 0;
	*v = strtoll(s, &end, 8);
	return *s < '0' || *s > '7' || *end != '\0' || errno != 0 ? -1 : 0;
}

/* A number of the key's type (int, mode, size, num) within its range. */
static int
cf_set_number(const struct cf_key *ck, void *m, const char *val, char *why,
    size_t whylen)
{
	long long	 i;
	uint64_t	 u;
	double		 d;

	switch (ck->ck_type) {
	case CT_SIZE:
		if (cf_parse_size(val, &u) == -1 ||
		    u < (uint64_t)ck->ck_min || u > (uint64_t)ck->ck_max)
			break;
		*(uint64_t *)m = u;
		return 0;
	case CT_NUM:
		if (cf_parse_num(val, &d) == -1 || d < ck->ck_dmin ||
		    d > ck->ck_dmax)
			break;
		*(double *)m = d;
		return 0;
	default:
		if ((ck->ck_type == CT_MODE ? cf_parse_mode(val, &i) :
		    cf_parse_int(val, &i)) == -1 || i < ck->ck_min ||
		    i > ck->ck_max)
			break;
		*(int *)m = (int)i;
		return 0;
	}
	return cf_range_why(ck, why, whylen);
}

static int
cf_set_enum(const struct cf_key *ck, void *m, const char *val, char *why,
    size_t whylen)
{
	size_t	 i, off;

	for (i = 0; ck->ck_words[i] != NULL; i++)
		if (strcmp(val, ck->ck_words[i]) == 0) {
			*(int *)m = (int)i;
			return 0;
		}
	off = (size_t)snprintf(why, whylen, "must be one of ");
	for (i = 0; ck->ck_words[i] != NULL && off < whylen; i++)
		off += (size_t)snprintf(why + off, whylen - off, "%s%s",
		    i ? ", " : "", ck->ck_words[i]);
	return -1;
}

static int
cf_set_str(const struct cf_key *ck, void *m, const char *val, char *why,
    size_t whylen)
{
	size_t	 i;

	for (i = 0; ck->ck_type == CT_PATH && ck->ck_words != NULL &&
	    ck->ck_words[i] != NULL; i++)
		if (strcmp(val, ck->ck_words[i]) == 0)
			val = "";
	if (ck->ck_type == CT_PATH && ck->ck_words == NULL && *val == '\0') {
		snprintf(why, whylen, "must be a path");
		return -1;
	}
	if (strlen(val) >= ck->ck_size) {
		snprintf(why, whylen, "must be %sat most %zu bytes",
		    ck->ck_type == CT_PATH ? "a path of " : "", ck->ck_size - 1);
		return -1;
	}
	strcpy(m, val);
	return 0;
}

/* The public base URL: scheme and host, no query or fragment. */
static int
cf_set_url(const struct cf_key *ck, void *m, const char *val, char *why,
    size_t whylen)
{
	size_t	 len = strlen(val), skip, i;

	skip = strncmp(val, "https://", 8) == 0 ? 8 :
	    strncmp(val, "http://", 7) == 0 ? 7 : 0;
	if (len > skip && val[len - 1] == '/')
		len--;
	/* A URI is printable ASCII (RFC 3986); IDN hosts come punycoded. */
	for (i = skip; i < len; i++)
		if ((unsigned char)val[i] <= ' ' ||
		    (unsigned char)val[i] >= 0x7f || val[i] == '?' ||
		    val[i] == '#')
			break;
	if (skip == 0 || len == skip || i < len || val[skip] == '/') {
		snprintf(why, whylen, "must be an http:// or https:// URL "
		    "without query or fragment");
		return -1;
	}
	if (len >= ck->ck_size) {
		snprintf(why, whylen, "must be at most %zu bytes",
		    ck->ck_size - 1);
		return -1;
	}
	memcpy(m, val, len);
	((char *)m)[len] = '\0';
	return 0;
}

/* RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
static int
cf_set_scopes(const struct cf_key *ck, void *m, const char *val, char *why,
    size_t whylen)
{
	char		 out[CF_SCOPES_LEN];
	size_t		 n = 0;
	const unsigned char *p;

	for (p = (const unsigned char *)val; *p != '\0'; p++) {
		if (*p == ' ' || *p == '\t') {
			if (n > 0 && out[n - 1] != ' ')
				out[n++] = ' ';
		} else if (*p < 0x21 || *p > 0x7e || *p == '"' || *p == '\\') {
			snprintf(why, whylen, "must be scope names separated "
			    "by spaces, of printable ASCII without '\"' or '\\'");
			return -1;
		} else
			out[n++] = (char)*p;
		if (n >= ck->ck_size) {
			snprintf(why, whylen, "must be at most %zu bytes",
			    ck->ck_size - 1);
			return -1;
		}
	}
	if (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
	memcpy(m, out, n + 1);
	return 0;
}

/* trusted_proxies: checked with the parser the workers use (proto). */
static int
cf_set_cidrs(const struct cf_key *ck, void *m, const char *val, char *why,
    size_t whylen)
{
	struct cidr	 list[IP_MAX_PROXIES];
	const char	*reason;
	char		 bad[64];

	if (cidr_list_parse(val, list, IP_MAX_PROXIES, &reason, bad,
	    sizeof(bad)) == -1) {
		snprintf(why, whylen, "%s: %s (at most %d CIDRs)", bad, reason,
		    IP_MAX_PROXIES);
		return -1;
	}
	return cf_set_str(ck, m, val, why, whylen);
}

static int
cf_add_addr(const struct cf_key *ck, struct config *cf, const char *addr,
    char *why, size_t whylen)
{
	char			(*list)[CF_ADDR_LEN] = (void *)((char *)cf +
				    ck->ck_off);
	size_t			*n = (size_t *)((char *)cf + ck->ck_noff), i;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	const char		*reason = "address too long";

	if (strlen(addr) >= CF_ADDR_LEN || addr_parse(addr, &ss, &sslen,
	    &reason) == -1) {
		snprintf(why, whylen, "%s: %s", addr, reason);
		return -1;
	}
	for (i = 0; i < *n; i++)
		if (strcmp(list[i], addr) == 0) {
			snprintf(why, whylen, "%s: listed twice", addr);
			return -1;
		}
	if (*n == CF_MAX_LISTEN) {
		snprintf(why, whylen, "at most %d addresses", CF_MAX_LISTEN);
		return -1;
	}
	strcpy(list[(*n)++], addr);
	return 0;
}

/* A comma- or space-separated list; replace empties the list first. */
static int
cf_set_addrs(const struct cf_key *ck, struct config *cf, const char *val,
    int replace, char *why, size_t whylen)
{
	char	 buf[CF_MAX_LISTEN * CF_ADDR_LEN], *tok, *save = NULL;

	if (replace)
		*(size_t *)((char *)cf + ck->ck_noff) = 0;
	if (strlen(val) >= sizeof(buf)) {
		snprintf(why, whylen, "at most %d addresses", CF_MAX_LISTEN);
		return -1;
	}
	strcpy(buf, val);
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save))
		if (cf_add_addr(ck, cf, tok, why, whylen) == -1)
			return -1;
	return 0;
}

static int
cf_set(const struct cf_key *ck, struct config *cf, const char *val,
    int replace, char *why, size_t whylen)
{
	void	*m = (char *)cf + ck->ck_off;

	switch (ck->ck_type) {
	case CT_INT:
	case CT_MODE:
	case CT_SIZE:
	case CT_NUM:
		return cf_set_number(ck, m, val, why, whylen);
	case CT_ENUM:
		return cf_set_enum(ck, m, val, why, whylen);
	case CT_URL:
		return cf_set_url(ck, m, val, why, whylen);
	case CT_SCOPES:
		return cf_set_scopes(ck, m, val, why, whylen);
	case CT_ADDRS:
		return cf_set_addrs(ck, cf, val, replace, why, whylen);
	case CT_CIDRS:
		return cf_set_cidrs(ck, m, val, why, whylen);
	default:
		return cf_set_str(ck, m, val, why, whylen);
	}
}

static char *
cf_trim(char *s)
{
	char	*e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* "..." with \" and \\; only blanks or a comment may follow. */
static int
cf_unquote(char *v, const char **why)
{
	char	*r = v + 1, *w = v;

	for (; *r != '"'; r++, w++) {
		if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
			r++;
		if (*r == '\0') {
			*why = "unterminated quoted value";
			return -1;
		}
		*w = *r;
	}
	*w = '\0';
	r = cf_trim(r + 1);
	if (*r != '\0' && *r != '#') {
		*why = "text after the closing quote";
		return -1;
	}
	return 0;
}

/* A comment starts at a '#' that opens the value or follows a blank. */
static void
cf_uncomment(char *v)
{
	char	*p;

	for (p = v; *p != '\0'; p++)
		if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			break;
		}
	cf_trim(v);
}

/*
 * Split one line into key and value, in place.  Returns 1 for a line to
 * skip, 0 with *key and *val set, -1 with *why (a syntax error when *key
 * is NULL, else an error about that key's value).
 */
static int
cf_split(char *line, char **key, char **val, const char **why)
{
	char	*s = cf_trim(line), *eq;

	*key = NULL;
	if (*s == '\0' || *s == '#')
		return 1;
	if ((eq = strchr(s, '=')) == NULL || eq == s) {
		*why = "expected key = value";
		return -1;
	}
	*eq = '\0';
	*key = cf_trim(s);
	*val = eq + 1;
	while (isspace((unsigned char)**val))
		(*val)++;
	if (**val == '"')
		return cf_unquote(*val, why);
	cf_uncomment(*val);
	return 0;
}

static int
cf_line(struct config *cf, struct cf_load *cl, char *line, int lineno,
    char *err, size_t errlen)
{
	const struct cf_key	*ck;
	const char		*why = NULL;
	char			*key, *val, reason[512];
	int			 rc;

	if ((rc = cf_split(line, &key, &val, &why)) != 0) {
		if (rc == -1)
			snprintf(err, errlen, "%s:%d: %s: %s", cl->cl_file,
			    lineno, key ? key : "syntax", why);
		return rc == 1 ? 0 : -1;
	}
	if ((ck = cf_find(key)) == NULL) {
		snprintf(err, errlen, "%s:%d: %s: unknown key", cl->cl_file,
		    lineno, key);
		return -1;
	}
	/* The first listen line replaces the default; later ones append. */
	if (cf_set(ck, cf, val, cl->cl_line[ck - cf_keys] == 0, reason,
	    sizeof(reason)) == -1) {
		cl->cl_bad[ck - cf_keys] = 1;
		snprintf(err, errlen, "%s:%d: %s: %s", cl->cl_file, lineno,
		    key, reason);
		return -1;
	}
	cl->cl_line[ck - cf_keys] = lineno;
	return 0;
}

/* One error: printed at once for -t, the first one kept for the caller. */
static void
cf_report(struct cf_load *cl, const char *msg)
{
	if (cl->cl_nerr++ == 0)
		snprintf(cl->cl_err, cl->cl_errlen, "%s", msg);
	if (cl->cl_out != NULL)
		fprintf(cl->cl_out, "%s\n", msg);
}

/* A bad line is reported and skipped, so -t finds every error at once. */
static void
cf_file(struct config *cf, struct cf_load *cl)
{
	FILE	*fp;
	char	*line = NULL, err[CF_PATH_LEN + 1024];
	size_t	 cap = 0;
	ssize_t	 len;
	int	 lineno = 0;

	if ((fp = fopen(cl->cl_file, "re")) == NULL) {
		snprintf(err, sizeof(err), "%s: cannot open: %s", cl->cl_file,
		    strerror(errno));
		cf_report(cl, err);
		return;
	}
	while ((len = getline(&line, &cap, fp)) != -1) {
		lineno++;
		if (strlen(line) != (size_t)len) {
			snprintf(err, sizeof(err), "%s:%d: syntax: NUL byte",
			    cl->cl_file, lineno);
			cf_report(cl, err);
		} else if (cf_line(cf, cl, line, lineno, err,
		    sizeof(err)) == -1)
			cf_report(cl, err);
	}
	if (ferror(fp)) {
		snprintf(err, sizeof(err), "%s: cannot read: %s", cl->cl_file,
		    strerror(errno));
		cf_report(cl, err);
	}
	free(line);
	fclose(fp);
}

/* "workers" is TOKEND_WORKERS. */
static void
cf_envname(const struct cf_key *ck, char *buf, size_t len)
{
	size_t	 i;

	snprintf(buf, len, "TOKEND_%s", ck->ck_name);
	for (i = 0; buf[i] != '\0'; i++)
		buf[i] = (char)toupper((unsigned char)buf[i]);
}

static void
cf_env(struct config *cf, struct cf_load *cl)
{
	char		 name[64], reason[512], err[1024];
	const char	*val;
	size_t		 i;

	for (i = 0; i < CF_NKEYS; i++) {
		cf_envname(&cf_keys[i], name, sizeof(name));
		if ((val = getenv(name)) == NULL)
			continue;
		if (cf_set(&cf_keys[i], cf, val, 1, reason,
		    sizeof(reason)) == -1) {
			snprintf(err, sizeof(err), "%s: %s: %s", name,
			    cf_keys[i].ck_name, reason);
			cf_report(cl, err);
			cl->cl_bad[i] = 1;
			continue;
		}
		cl->cl_env[i] = 1;
	}
}

/* Edit distance, capped: enough to tell a typo from another word. */
static size_t
cf_distance(const char *a, const char *b)
{
	size_t	 row[64], i, j, diag, up, lb = strlen(b);

	if (lb >= sizeof(row) / sizeof(row[0]) || strlen(a) >= 64)
		return 64;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; a[i - 1] != '\0'; i++) {
		diag = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			row[j] = diag + (tolower((unsigned char)a[i - 1]) !=
			    b[j - 1]);
			if (up + 1 < row[j])
				row[j] = up + 1;
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			diag = up;
		}
	}
	return row[lb];
}

/*
 * A TOKEND_* variable that names no key is most likely a typo that would
 * otherwise be ignored in silence: warn, naming the nearest key.
 */
static void
cf_env_unknown(void)
{
	extern char	**environ;
	char		**e, name[64];
	const struct cf_key *near;
	char		 hint[80];
	size_t		 i, len, d, best;

	for (e = environ; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, "TOKEND_", 7) != 0 ||
		    (len = strcspn(*e, "=")) >= sizeof(name))
			continue;
		memcpy(name, *e, len);
		name[len] = '\0';
		for (i = 0; cf_tool_vars[i] != NULL; i++)
			if (strcmp(name, cf_tool_vars[i]) == 0)
				break;
		if (cf_tool_vars[i] != NULL)
			continue;
		near = NULL;
		best = 3;
		for (i = 0; i < CF_NKEYS; i++)
			if ((d = cf_distance(name + 7, cf_keys[i].ck_name)) <
			    best) {
				best = d;
				near = &cf_keys[i];
			}
		if (best == 0)
			continue;
		hint[0] = '\0';
		if (near != NULL) {
			memcpy(hint, "; did you mean ", 15);
			cf_envname(near, hint + 15, sizeof(hint) - 16);
			strcat(hint, "?");
		}
		fprintf(stderr, "%s: warning: %s: no such configuration key, "
		    "ignored%s\n", program_invocation_short_name, name, hint);
	}
}

/*
 * Where a key was set, as errors name it: TOKEND_KEY, else FILE:LINE when
 * withline and the key is on a line, else FILE.
 */
static void
cf_origin(const struct cf_load *cl, const struct cf_key *ck, int withline,
    char *buf, size_t len)
{
	size_t	 i = (size_t)(ck - cf_keys);

	if (cl->cl_env[i])
		cf_envname(ck, buf, len);
	else if (withline && cl->cl_line[i] != 0)
		snprintf(buf, len, "%s:%d", cl->cl_file, cl->cl_line[i]);
	else
		snprintf(buf, len, "%s", cl->cl_file ? cl->cl_file :
		    "configuration");
}

/* tls_listen needs a certificate and key this process can read now. */
static int
cf_check_tls(const struct cf_load *cl,
    const char *name, const char *path, char *err, size_t errlen)
{
	char	 where[CF_PATH_LEN + 64];
	int	 fd;

	if (*path == '\0') {
		cf_origin(cl, cf_find("tls_listen"), 0, where, sizeof(where));
		snprintf(err, errlen, "%s: %s: required by tls_listen", where,
		    name);
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		cf_origin(cl, cf_find(name), 1, where, sizeof(where));
		snprintf(err, errlen, "%s: %s: cannot read %s: %s", where, name,
		    path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/*
 * http:// + the first listen address (https:// + the first tls_listen when
 * there is no listen).  A wildcard or unix: address names no host a client
 * could use, so those say localhost.
 */
static void
cf_default_issuer(struct config *cf)
{
	static const char *const any[] = { "*", "0.0.0.0", "[::]" };
	const char	*scheme = "http", *addr = cf->cf_listen[0], *port;
	size_t		 i, hlen;

	if (cf->cf_nlisten == 0) {
		scheme = "https";
		addr = cf->cf_tls_listen[0];
	}
	if (strncmp(addr, "unix:", 5) == 0) {
		snprintf(cf->cf_issuer, sizeof(cf->cf_issuer), "%s://localhost",
		    scheme);
		return;
	}
	port = strrchr(addr, ':');
	hlen = (size_t)(port - addr);
	for (i = 0; i < sizeof(any) / sizeof(any[0]); i++)
		if (strlen(any[i]) == hlen && strncmp(addr, any[i], hlen) == 0) {
			addr = "localhost";
			hlen = strlen(addr);
			break;
		}
	snprintf(cf->cf_issuer, sizeof(cf->cf_issuer), "%s://%.*s%s", scheme,
	    (int)hlen, addr, port);
}

int
config_group_gid(const char *name, gid_t *gid)
{
	struct group	*gr;
	char		*end;
	unsigned long	 v;

	if ((gr = getgrnam(name)) != NULL) {
		*gid = gr->gr_gid;
		return 0;
	}
	if (*name < '0' || *name > '9')
		return -1;
	errno = 0;
	v = strtoul(name, &end, 10);
	if (errno != 0 || *end != '\0' || v != (unsigned long)(gid_t)v)
		return -1;
	*gid = (gid_t)v;
	return 0;
}

/* listen_group must name a group that exists, so -t catches a typo. */
static int
cf_check_group(const struct config *cf, const struct cf_load *cl, char *err,
    size_t errlen)
{
	char	 where[CF_PATH_LEN + 64];
	gid_t	 gid;

	if (cf->cf_listen_group[0] == '\0' ||
	    config_group_gid(cf->cf_listen_group, &gid) == 0)
		return 0;
	cf_origin(cl, cf_find("listen_group"), 1, where, sizeof(where));
	snprintf(err, errlen, "%s: listen_group: no such group: %s", where,
	    cf->cf_listen_group);
	return -1;
}

static int
cf_bad(const struct cf_load *cl, const char *name)
{
	return cl->cl_bad[cf_find(name) - cf_keys];
}

/*
 * The checks across keys, each reported on its own; one whose key already
 * had a value refused is skipped, so one mistake is one error line.
 */
static void
cf_finish(struct config *cf, struct cf_load *cl)
{
	const struct cf_key	*issuer = cf_find("issuer");
	char			 where[CF_PATH_LEN + 64], err[3 * CF_PATH_LEN];
	int			 tls = cf->cf_ntls_listen > 0;

	if (cf->cf_nlisten + cf->cf_ntls_listen > 0) {
		if (!cl->cl_env[issuer - cf_keys] &&
		    cl->cl_line[issuer - cf_keys] == 0)
			cf_default_issuer(cf);
	} else if (!cf_bad(cl, "listen") && !cf_bad(cl, "tls_listen")) {
		cf_origin(cl, cf_find("listen"), 0, where, sizeof(where));
		snprintf(err, sizeof(err), "%s: listen: no listen or "
		    "tls_listen address", where);
		cf_report(cl, err);
	}
	if (tls && !cf_bad(cl, "tls_cert") && cf_check_tls(cl, "tls_cert",
	    cf->cf_tls_cert, err, sizeof(err)) == -1)
		cf_report(cl, err);
	if (tls && !cf_bad(cl, "tls_key") && cf_check_tls(cl, "tls_key",
	    cf->cf_tls_key, err, sizeof(err)) == -1)
		cf_report(cl, err);
	if (!cf_bad(cl, "listen_group") &&
	    cf_check_group(cf, cl, err, sizeof(err)) == -1)
		cf_report(cl, err);
}

/* Defaults, the file, the environment, the checks across keys. */
static int
cf_load_all(struct config *cf, struct cf_load *cl, const char *path)
{
	char	 err[CF_PATH_LEN + 64];

	cl->cl_file = path;
	config_defaults(cf);
	if (path != NULL && strlen(path) >= sizeof(cf->cf_file)) {
		snprintf(err, sizeof(err), "%.*s: cannot open: %s",
		    CF_PATH_LEN, path, strerror(ENAMETOOLONG));
		cf_report(cl, err);
		return cl->cl_nerr;
	}
	if (path != NULL) {
		strcpy(cf->cf_file, path);
		cf_file(cf, cl);
	}
	cf_env(cf, cl);
	cf_env_unknown();
	cf_finish(cf, cl);
	return cl->cl_nerr;
}

int
config_load(struct config *cf, const char *path, char *err, size_t errlen)
{
	struct cf_load	 cl;

	memset(&cl, 0, sizeof(cl));
	cl.cl_err = err;
	cl.cl_errlen = errlen;
	return cf_load_all(cf, &cl, path) == 0 ? 0 : -1;
}

int
config_check(struct config *cf, const char *path, FILE *out)
{
	struct cf_load	 cl;
	char		 first[CF_PATH_LEN + 1024];

	memset(&cl, 0, sizeof(cl));
	cl.cl_err = first;
	cl.cl_errlen = sizeof(first);
	cl.cl_out = out;
	return cf_load_all(cf, &cl, path);
}

/* ---- tokend -T: the effective configuration ---------------------------- */

/* A value as the file would take it back: quoted when it must be. */
static void
cf_put_value(FILE *out, const char *v)
{
	size_t	 len = strlen(v);

	if (len > 0 && strpbrk(v, "#\"\\") == NULL &&
	    !isspace((unsigned char)v[0]) && !isspace((unsigned char)v[len - 1])) {
		fputs(v, out);
		return;
	}
	fputc('"', out);
	for (; *v != '\0'; v++) {
		if (*v == '"' || *v == '\\')
			fputc('\\', out);
		fputc(*v, out);
	}
	fputc('"', out);
}

/*
 * database_url without its password, in either libpq form: the URI's
 * "user:PASSWORD@" and a "password=..." keyword or query parameter.
 */
static void
cf_redact_url(const char *url, char *buf, size_t len)
{
	const char	*sch = strstr(url, "://"), *at, *colon, *pw;
	char		 tmp[CF_URL_LEN + 32];

	snprintf(tmp, sizeof(tmp), "%s", url);
	if (sch != NULL && (at = strchr(sch + 3, '@')) != NULL &&
	    (colon = memchr(sch + 3, ':', (size_t)(at - sch - 3))) != NULL)
		snprintf(tmp, sizeof(tmp), "%.*s:REDACTED%s",
		    (int)(colon - url), url, at);
	if ((pw = strstr(tmp, "password=")) != NULL)
		snprintf(buf, len, "%.*sREDACTED%s", (int)(pw + 9 - tmp), tmp,
		    pw + 9 + strcspn(pw + 9, " &"));
	else
		snprintf(buf, len, "%s", tmp);
}

static void
cf_source(const struct cf_load *cl, const struct cf_key *ck, char *buf,
    size_t len)
{
	char	 name[64];
	size_t	 i = (size_t)(ck - cf_keys);

	if (cl->cl_env[i]) {
		cf_envname(ck, name, sizeof(name));
		snprintf(buf, len, "environment %s", name);
	} else if (cl->cl_line[i] != 0)
		snprintf(buf, len, "%s:%d", cl->cl_file, cl->cl_line[i]);
	else
		snprintf(buf, len, "default");
}

static void
cf_print_key(const struct config *cf, const struct cf_load *cl,
    const struct cf_key *ck, FILE *out)
{
	const char	*m = (const char *)cf + ck->ck_off;
	char		 src[CF_PATH_LEN + 64], val[CF_URL_LEN + 64];
	size_t		 i, n;

	cf_source(cl, ck, src, sizeof(src));
	val[0] = '\0';
	switch (ck->ck_type) {
	case CT_ADDRS:
		n = *(const size_t *)((const char *)cf + ck->ck_noff);
		for (i = 0; i < n; i++)
			fprintf(out, "%s = %s\t# %s\n", ck->ck_name,
			    m + i * CF_ADDR_LEN, src);
		if (n == 0)
			fprintf(out, "%s = \"\"\t# %s\n", ck->ck_name, src);
		return;
	case CT_INT:
		snprintf(val, sizeof(val), "%d", *(const int *)m);
		break;
	case CT_MODE:
		snprintf(val, sizeof(val), "%04o", *(const int *)m);
		break;
	case CT_SIZE:
		cf_fmt_size(*(const uint64_t *)m, val, sizeof(val));
		break;
	case CT_NUM:
		snprintf(val, sizeof(val), "%g", *(const double *)m);
		break;
	case CT_ENUM:
		snprintf(val, sizeof(val), "%s", ck->ck_words[*(const int *)m]);
		break;
	default:
		if (ck->ck_off == offsetof(struct config, cf_database_url))
			cf_redact_url(m, val, sizeof(val));
		else if (*m == '\0' && ck->ck_words != NULL &&
		    ck->ck_words[0] != NULL)
			snprintf(val, sizeof(val), "%s", ck->ck_words[0]);
		else
			snprintf(val, sizeof(val), "%s", m);
	}
	fprintf(out, "%s = ", ck->ck_name);
	cf_put_value(out, val);
	fprintf(out, "\t# %s\n", src);
}

int
config_print(const char *path, FILE *out)
{
	static struct config	 cf;	/* large: not on the stack */
	struct cf_load		 cl;
	char			 first[CF_PATH_LEN + 1024];
	size_t			 i;

	memset(&cl, 0, sizeof(cl));
	cl.cl_err = first;
	cl.cl_errlen = sizeof(first);
	cl.cl_out = stderr;
	if (cf_load_all(&cf, &cl, path) > 0)
		return cl.cl_nerr;
	for (i = 0; i < CF_NKEYS; i++)
		cf_print_key(&cf, &cl, &cf_keys[i], out);
	return 0;
}

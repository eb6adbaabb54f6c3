/*
 * runtime: what every process shares and every program links: the
 * configuration, logging and process titles.  It sits below the processes
 * (master, workers, writer, tokenctl) and above proto/.
 *
 *   config.c     SPEC section 7: file, TOKEND_* environment, defaults.
 *   log.c        one line per event, logfmt or JSON (SPEC section 9).
 *   proctitle.c  "tokend: worker 3" in ps.
 *   sig.c        each process's signal table, installed the same way.
 *   grow.c       room in a growing array.
 *
 * Contract: config and log are used by every process (master, workers,
 * writer) and by tokenctl; they allocate nothing after load and are safe
 * after fork.  A struct config is plain data (fixed arrays, no pointers), so
 * it may be copied by assignment, and a child owns the copy it inherits.
 */
#ifndef TOKEND_RUNTIME_H
#define TOKEND_RUNTIME_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/socket.h>

#include "proto/proto.h"

/* The build passes `git describe` (GNUmakefile); a bare compile says this. */
#ifndef TOKEND_VERSION
#define TOKEND_VERSION "0.2.0"
#endif

/* ---- Configuration (config.c) ----------------------------------------- */

#define CF_MAX_LISTEN   16
#define CF_ADDR_LEN     ADDR_LEN
#define CF_PATH_LEN     1024
#define CF_URL_LEN      1024
#define CF_SCOPES_LEN   1024
#define CF_NAME_LEN     128

enum { LVL_DEBUG, LVL_INFO, LVL_WARN, LVL_ERROR };
enum { LOGF_LOGFMT, LOGF_JSON };

struct config {
	char	cf_file[CF_PATH_LEN];		/* "" when none */
	size_t	cf_nlisten;
	char	cf_listen[CF_MAX_LISTEN][CF_ADDR_LEN];	/* "host:port", "unix:/p" */
	size_t	cf_ntls_listen;
	char	cf_tls_listen[CF_MAX_LISTEN][CF_ADDR_LEN];
	char	cf_tls_cert[CF_PATH_LEN];
	char	cf_tls_key[CF_PATH_LEN];
	int	cf_workers;
	char	cf_issuer[CF_URL_LEN];
	char	cf_database_url[CF_URL_LEN];
	char	cf_cache_dir[CF_PATH_LEN];
	uint64_t cf_cache_map_size;		/* bytes */
	int	cf_cache_ttl;
	int	cf_negative_ttl;
	double	cf_usage_flush_interval;	/* seconds, 0.05 .. 60 */
	int	cf_usage_fold_interval;		/* seconds; 0: no usage_deltas */
	int	cf_access_token_ttl;
	int	cf_refresh_token_ttl;
	int	cf_refresh_grace;
	int	cf_code_ttl;
	int	cf_login_max_failures;
	int	cf_login_window;
	int	cf_retention;
	int	cf_max_connections;
	int	cf_keepalive_timeout;
	int	cf_header_timeout;
	int	cf_shutdown_timeout;
	uint64_t cf_max_body;
	int	cf_log_level;			/* LVL_* */
	int	cf_log_format;			/* LOGF_* */
	char	cf_log_file[CF_PATH_LEN];	/* "" is stderr */
	char	cf_access_log[CF_PATH_LEN];	/* "" is off */
	char	cf_pid_file[CF_PATH_LEN];	/* "" is none */
	char	cf_scopes_supported[CF_SCOPES_LEN]; /* space-separated, "" none */
	int	cf_listen_mode;			/* unix: sockets, 0660 */
	char	cf_listen_group[CF_ADDR_LEN];	/* unix: sockets' group, "" */
	int	cf_max_revocation_lag;		/* SPEC 5 bounded staleness */
	int	cf_stale_cache_ttl;
	int	cf_pat_max_lifetime;		/* 0: no limit */
	int	cf_refresh_family_max_age;
	int	cf_session_ttl;			/* SPEC 11 browser session */
	char	cf_trusted_proxies[CF_SCOPES_LEN]; /* CIDRs, space/comma list */
	char	cf_template_dir[CF_PATH_LEN];	/* "" is the built-in pages */
	char	cf_product_name[CF_NAME_LEN];	/* shown on the pages */
};

/*
 * Fill cf with the defaults, then the file at path (NULL: no file), then the
 * TOKEND_* environment.  Returns 0, or -1 with err holding one line:
 * "FILE:LINE: key: reason" for the file, "TOKEND_KEY: key: reason" for the
 * environment, "FILE: key: reason" for checks across keys (tls_listen needs
 * tls_cert and tls_key, readable).  Every key is range-checked here, so a
 * loaded config is valid.
 *
 * File syntax: "key = value" lines, blank lines, "#" comments on their own
 * line or after a value (" # ..."); a value may be double-quoted (then "#"
 * is literal and \" and \\ are escapes).  A key given twice: the last wins,
 * except listen and tls_listen, whose lines append (the first listen line
 * replaces the default).  An environment value of listen or tls_listen is a
 * comma- or space-separated list that replaces the whole list.  A
 * TOKEND_* variable that names no key is ignored with a warning on stderr
 * that names the nearest key (TOKEND_BIN, TOKEND_KEEP and TOKEND_CONFIG,
 * which the project's scripts read, are not warned about).
 * Sizes (cache_map_size, max_body) take bytes or a K, M, G, T suffix
 * (KiB, MiB, ...: powers of 1024).  Called before fork, so it may allocate.
 */
int	config_load(struct config *cf, const char *path, char *err,
	    size_t errlen);

/*
 * tokend -t: as config_load, but every error is written to out as its own
 * line and loading goes on past it.  Returns the number of errors; 0 means
 * cf is valid.
 */
int	config_check(struct config *cf, const char *path, FILE *out);

/*
 * tokend -T: load as config_check does (errors to stderr), then write the
 * effective configuration to out, one "key = value\t# source" line per key
 * (listen: per address), where source is "default", "FILE:LINE" or
 * "environment TOKEND_KEY".  The output is itself a valid file; the
 * password in database_url reads REDACTED.  Returns the number of errors.
 */
int	config_print(const char *path, FILE *out);

/* Defaults only (used by config_load and the unit tests). */
void	config_defaults(struct config *cf);

/*
 * listen_group's gid: a group name, or a decimal gid.  Returns 0, or -1
 * when no such group exists (config_load refuses it, so after a load only
 * a group deleted since fails).
 */
int	config_group_gid(const char *name, gid_t *gid);

/* ---- Logging (log.c) -------------------------------------------------- */

enum { KV_STR, KV_INT, KV_DBL };

struct log_kv {
	const char	*kv_key;
	int		 kv_type;
	const char	*kv_str;
	long long	 kv_int;
	double		 kv_dbl;
};

#define KV_S(k, v) ((struct log_kv){ (k), KV_STR, (v), 0, 0 })
#define KV_I(k, v) ((struct log_kv){ (k), KV_INT, NULL, (long long)(v), 0 })
#define KV_D(k, v) ((struct log_kv){ (k), KV_DBL, NULL, 0, (double)(v) })

/*
 * Set the process name every line carries ("master", "worker 2", "writer",
 * "tokenctl") and the level, format and file.  log_open opens cf_log_file
 * (O_APPEND, so lines from all processes interleave whole) and the access
 * log; a process calls it again after fork only to change its name.
 * Returns 0, or -1 with errno when a file cannot be opened.
 */
int	log_open(const struct config *cf, const char *proc);
void	log_set_proc(const char *proc);

/* SIGUSR1: reopen both files by path.  Returns 0 or -1. */
int	log_reopen(void);

/*
 * One line: ts, level, event, proc, then the fields in order.  Values are
 * quoted when needed (logfmt) or JSON-escaped.  One write(2) per line.
 * Never pass a secret: tokens appear only as their display prefix.
 */
void	log_event(int level, const char *event, size_t n,
	    const struct log_kv *kv);

#define LOG(level, event, ...) do {					\
	const struct log_kv kv_[] = { KV_S("", NULL), __VA_ARGS__ };	\
	log_event((level), (event), sizeof(kv_) / sizeof(kv_[0]) - 1,	\
	    kv_ + 1);							\
} while (0)

/* An "error" event whose msg is printf-formatted, for failed calls:
 * log_errorf("%s: epoll_ctl: %s", __func__, strerror(errno)). */
void	log_errorf(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
void	log_warnf(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));

/*
 * The access log, when configured: one "request" line per response.  NULL
 * strings and 0 ids are written empty (null in JSON), so that every line
 * has every field.  The user agent is cut to LOG_UA_MAX bytes.
 */
struct log_access {
	const char	*la_method;
	const char	*la_path;	/* without the query string */
	int		 la_status;
	size_t		 la_bytes;
	double		 la_seconds;
	const char	*la_peer;
	const char	*la_request_id;
	int64_t		 la_user_id;
	int64_t		 la_token_id;
	const char	*la_prefix;	/* a token's display prefix, or "" */
	const char	*la_client;
	const char	*la_user_agent;	/* not NUL-terminated: la_ua_len */
	size_t		 la_ua_len;
};
#define LOG_UA_MAX	256

int	log_access_enabled(void);
void	log_access(const struct log_access *la);
/* la's user agent as log_access writes it: cut at a character boundary
 * to LOG_UA_MAX bytes, NUL-terminated, into ua. */
void	log_access_ua(const struct log_access *la, char ua[LOG_UA_MAX + 1]);

/* ---- Listening sockets, as the master hands them to workers ------------ */

struct listener {
	int	li_fd;
	int	li_tls;
	char	li_addr[CF_ADDR_LEN];
};

/* ---- Process titles (proctitle.c) ------------------------------------- */

/*
 * Call once from main with its argv before anything reads environ: it moves
 * environ to the heap so that the argv and environ strings form one area
 * proctitle_set may overwrite.  After it, the argv[] strings are gone: main
 * copies whatever it needs from argv (option values, the config path)
 * before calling it.  proctitle_set makes /proc/PID/cmdline read exactly the
 * title ("tokend: worker 2") and sets the thread name (comm) to its first 15
 * characters.  Process-local; call again in a child after fork.
 */
void	proctitle_init(int argc, char **argv);
void	proctitle_set(const char *title);

/* ---- Signals (sig.c) ------------------------------------------------- */

/*
 * One table in sig.c says what each signal does in each process (a column
 * per enum sig_proc): the master takes SIGTERM, SIGINT, SIGHUP, SIGUSR1 and
 * SIGCHLD with sigtimedwait; a worker and the writer stop on SIGTERM and
 * SIGINT, reopen their logs on SIGUSR1 and ignore SIGPIPE; SIGHUP is
 * ignored by a worker and only wakes the writer's loop.
 *
 * The order every process follows: sig_master before the first fork, so a
 * child starts with every signal blocked; in the child right after fork,
 * sig_default_all (the mask stays), then sig_child once its loop can read
 * the flags: it installs the handlers and unblocks every signal, so one
 * that came in between reaches the handler, not the default action.
 * Process-local; nothing is allocated.
 */
enum sig_proc { SP_MASTER, SP_WORKER, SP_WRITER, SP_COUNT };

/* Block every signal but the faults; wait receives the master's signals. */
void	sig_master(sigset_t *wait);
void	sig_default_all(void);

/*
 * The process's column: term is set to 1 on a stop signal, reopen on
 * SIGUSR1 (each a volatile sig_atomic_t the loop reads and clears).
 */
void	sig_child(int proc, volatile sig_atomic_t *term,
	    volatile sig_atomic_t *reopen);

/* ---- Growing arrays (grow.c) ------------------------------------------ */

/*
 * Room for need elements of size bytes in the array *arrayp (a pointer to
 * the array's pointer) of capacity *cap, doubling from first (or from *cap)
 * until it fits.  Returns 0, or -1 when memory is short, leaving the array
 * and *cap as they were.
 */
int	array_room(void *arrayp, size_t *cap, size_t need, size_t size,
	    size_t first);

#endif /* TOKEND_RUNTIME_H */

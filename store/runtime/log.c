/*
 * Logging (SPEC section 9): one line per event, logfmt or JSON, written
 * with one write(2) so that lines from every process sharing the file (it
 * is opened O_APPEND) stay whole.  A line is built in a stack buffer: no
 * allocation, so workers may log on any path, and a value too long for the
 * line is cut at a character boundary and the line marked truncated.
 *
 * The access log carries the request path without its query string: the
 * caller strips it, because a query may hold a secret (a code, a token).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/runtime/runtime.h"

#define LOG_LINE_MAX	4096	/* PIPE_BUF: a line to a pipe is atomic too */
#define LOG_RESERVE	32	/* kept free to close a truncated line */

/* This process's logging state; before log_open: stderr, info, logfmt. */
struct log_state {
	int	lg_fd;			/* event lines */
	int	lg_afd;			/* access log, -1 when off */
	int	lg_level;		/* LVL_*: lines below it are dropped */
	int	lg_format;		/* LOGF_* */
	char	lg_proc[64];
	char	lg_file[CF_PATH_LEN];	/* "" is stderr */
	char	lg_access[CF_PATH_LEN];	/* "" is off */
};

static struct log_state lg = {
	.lg_fd = 2, .lg_afd = -1, .lg_level = LVL_INFO,
	.lg_format = LOGF_LOGFMT, .lg_proc = "tokend",
};

static const char *const log_levels[] = { "debug", "info", "warn", "error" };

struct log_line {
	char	ll_buf[LOG_LINE_MAX];
	size_t	ll_len;
	int	ll_full;	/* something did not fit; later pieces drop */
};

static int
ll_fits(const struct log_line *l, size_t n)
{
	return !l->ll_full && l->ll_len + n <= LOG_LINE_MAX - LOG_RESERVE;
}

/* All or nothing, within the line less its reserve. */
static int
ll_put(struct log_line *l, const char *s, size_t n)
{
	if (!ll_fits(l, n)) {
		l->ll_full = 1;
		return -1;
	}
	memcpy(l->ll_buf + l->ll_len, s, n);
	l->ll_len += n;
	return 0;
}

/* Closing text for a line: may use the reserve. */
static void
ll_close(struct log_line *l, const char *s)
{
	size_t	 n = strlen(s);

	if (l->ll_len + n <= LOG_LINE_MAX) {
		memcpy(l->ll_buf + l->ll_len, s, n);
		l->ll_len += n;
	}
}

/*
 * "...", escaped by proto's JSON escaper, whose escapes logfmt readers
 * share.  A value too long for the line is cut at a character boundary.
 * Returns -1 when not even the opening quote fit.
 */
static int
log_quoted(struct log_line *l, const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n = strlen(s), used, elen;
	char			 esc[JSON_ESC_MAX];

	if (ll_put(l, "\"", 1) == -1)
		return -1;
	while (n > 0) {
		used = json_esc_char(p, n, esc, &elen);
		if (ll_put(l, esc, elen) == -1)
			break;
		p += used;
		n -= used;
	}
	if (ll_put(l, "\"", 1) == -1)
		ll_close(l, "\"");
	return 0;
}

/* logfmt leaves a value bare when it is printable ASCII without = " \ */
static int
log_bare(const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;

	if (*p == '\0')
		return 0;
	for (; *p != '\0'; p++)
		if (*p < 0x21 || *p > 0x7e || *p == '=' || *p == '"' ||
		    *p == '\\')
			return 0;
	return 1;
}

static int
log_value_str(struct log_line *l, int json, const char *s)
{
	if (s == NULL)
		return json ? ll_put(l, "null", 4) : log_quoted(l, "");
	/* A bare value too long for the line is cut, so quoted. */
	if (!json && log_bare(s) && ll_fits(l, strlen(s)))
		return ll_put(l, s, strlen(s));
	return log_quoted(l, s);
}

static int
log_value(struct log_line *l, int json, const struct log_kv *kv)
{
	char	 num[64];

	switch (kv->kv_type) {
	case KV_INT:
		snprintf(num, sizeof(num), "%lld", kv->kv_int);
		return ll_put(l, num, strlen(num));
	case KV_DBL:
		if (json && !isfinite(kv->kv_dbl))
			return ll_put(l, "null", 4);
		snprintf(num, sizeof(num), "%.6f", kv->kv_dbl);
		return ll_put(l, num, strlen(num));
	default:
		return log_value_str(l, json, kv->kv_str);
	}
}

/*
 * One field.  A field whose name did not fit, or whose value did not even
 * start, is dropped whole; a long string value is kept cut and closed.
 */
static void
log_field(struct log_line *l, int json, int first, const struct log_kv *kv)
{
	size_t	 start = l->ll_len;

	if (!first)
		ll_put(l, json ? "," : " ", 1);
	if (json) {
		log_quoted(l, kv->kv_key);
		ll_put(l, ":", 1);
	} else {
		ll_put(l, kv->kv_key, strlen(kv->kv_key));
		ll_put(l, "=", 1);
	}
	if (l->ll_full || log_value(l, json, kv) == -1)
		l->ll_len = start;
}

/* UTC, RFC 3339, milliseconds: 2026-11-24T10:00:00.123Z */
static void
log_ts(char buf[ISO8601_LEN])
{
	struct timespec	 now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (iso8601_format(now.tv_sec, (int)(now.tv_nsec / 1000000),
	    buf) == -1)
		buf[0] = '\0';
}

/* Whole or not at all, as far as write(2) lets us: nowhere to report. */
static void
log_write(int fd, const char *buf, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

static void
log_emit(int fd, int level, const char *event, size_t n,
    const struct log_kv *kv)
{
	struct log_line	 l;
	char		 ts[ISO8601_LEN];
	int		 json = lg.lg_format == LOGF_JSON, saved = errno;
	size_t		 i;
	const struct log_kv head[] = { KV_S("ts", ts),
	    KV_S("level", level >= LVL_DEBUG && level <= LVL_ERROR ?
	    log_levels[level] : "error"), KV_S("event", event),
	    KV_S("proc", lg.lg_proc), KV_I("pid", getpid()) };

	log_ts(ts);
	l.ll_len = 0;
	l.ll_full = 0;
	if (json)
		ll_put(&l, "{", 1);
	for (i = 0; i < sizeof(head) / sizeof(head[0]); i++)
		log_field(&l, json, i == 0, &head[i]);
	for (i = 0; i < n; i++)
		log_field(&l, json, 0, &kv[i]);
	if (l.ll_full)
		ll_close(&l, json ? ",\"truncated\":true}\n" :
		    " truncated=true\n");
	else
		ll_close(&l, json ? "}\n" : "\n");
	log_write(fd, l.ll_buf, l.ll_len);
	errno = saved;
}

void
log_event(int level, const char *event, size_t n, const struct log_kv *kv)
{
	if (level >= lg.lg_level)
		log_emit(lg.lg_fd, level, event, n, kv);
}

static void
log_vmsg(int level, const char *event, const char *fmt, va_list ap)
{
	char		 msg[1024];
	struct log_kv	 kv = KV_S("msg", msg);
	int		 saved = errno;

	if (level < lg.lg_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_emit(lg.lg_fd, level, event, 1, &kv);
	errno = saved;
}

void
log_errorf(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vmsg(LVL_ERROR, "error", fmt, ap);
	va_end(ap);
}

void
log_warnf(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vmsg(LVL_WARN, "warning", fmt, ap);
	va_end(ap);
}

int
log_access_enabled(void)
{
	return lg.lg_afd != -1;
}

/* "" for an empty or absent string, so that the field is still there. */
static struct log_kv
log_kv_opt_str(const char *key, const char *s)
{
	return KV_S(key, s != NULL && *s != '\0' ? s : NULL);
}

static struct log_kv
log_kv_opt_id(const char *key, int64_t id)
{
	return id != 0 ? KV_I(key, id) : KV_S(key, NULL);
}

void
log_access_ua(const struct log_access *la, char ua[LOG_UA_MAX + 1])
{
	size_t	 n = la->la_ua_len;

	if (n > LOG_UA_MAX) {
		n = LOG_UA_MAX;
		while (n > 0 && ((unsigned char)la->la_user_agent[n] & 0xc0) ==
		    0x80)
			n--;
	}
	if (n > 0)
		memcpy(ua, la->la_user_agent, n);
	ua[n] = '\0';
}

/* The path comes without its query string (the caller's duty: secrets). */
void
log_access(const struct log_access *la)
{
	char		 ua[LOG_UA_MAX + 1];
	const struct log_kv kv[] = { KV_S("method", la->la_method),
	    KV_S("path", la->la_path), KV_I("status", la->la_status),
	    KV_I("bytes", la->la_bytes), KV_D("duration", la->la_seconds),
	    KV_S("peer", la->la_peer),
	    log_kv_opt_str("request_id", la->la_request_id),
	    log_kv_opt_id("user_id", la->la_user_id),
	    log_kv_opt_id("token_id", la->la_token_id),
	    log_kv_opt_str("token", la->la_prefix),
	    log_kv_opt_str("client", la->la_client),
	    KV_S("user_agent", ua) };

	if (lg.lg_afd == -1)
		return;
	log_access_ua(la, ua);
	log_emit(lg.lg_afd, LVL_INFO, "request", sizeof(kv) / sizeof(kv[0]),
	    kv);
}

/* Open path in place of *fd; "" means dflt (stderr, or -1 for off). */
static int
log_swap(int *fd, const char *path, int dflt)
{
	int	 nfd = dflt;

	if (*path != '\0' && (nfd = open(path, O_WRONLY | O_APPEND | O_CREAT |
	    O_CLOEXEC, 0640)) == -1)
		return -1;
	if (*fd > 2 && *fd != nfd)
		close(*fd);
	*fd = nfd;
	return 0;
}

static int
log_reopen_files(void)
{
	int	 rc = 0, saved = 0;

	if (log_swap(&lg.lg_fd, lg.lg_file, 2) == -1) {
		saved = errno;
		rc = -1;
	}
	if (log_swap(&lg.lg_afd, lg.lg_access, -1) == -1) {
		saved = saved ? saved : errno;
		rc = -1;
	}
	errno = rc == -1 ? saved : errno;
	return rc;
}

/* SIGUSR1: the line lands in the new file, so logrotate's result shows it. */
int
log_reopen(void)
{
	int	 saved;

	if (log_reopen_files() == -1) {
		saved = errno;
		LOG(LVL_ERROR, "log_reopen_failed", KV_S("file", lg.lg_file[0] ?
		    lg.lg_file : "stderr"), KV_S("error", strerror(saved)));
		errno = saved;
		return -1;
	}
	LOG(LVL_INFO, "log_reopened", KV_S("file", lg.lg_file[0] ?
	    lg.lg_file : "stderr"));
	return 0;
}

void
log_set_proc(const char *proc)
{
	snprintf(lg.lg_proc, sizeof(lg.lg_proc), "%s", proc);
}

int
log_open(const struct config *cf, const char *proc)
{
	log_set_proc(proc);
	lg.lg_level = cf->cf_log_level;
	lg.lg_format = cf->cf_log_format;
	snprintf(lg.lg_file, sizeof(lg.lg_file), "%s", cf->cf_log_file);
	snprintf(lg.lg_access, sizeof(lg.lg_access), "%s", cf->cf_access_log);
	return log_reopen_files();
}

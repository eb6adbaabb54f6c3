/*
 * Logging and process titles: the lines an operator greps, a log shipper
 * parses, and the names ps shows.  Criterion runs each test in a process
 * of its own, so each starts from log.c's pre-log_open state.
 */
#include <criterion/criterion.h>

#include <sys/wait.h>

#include <fcntl.h>
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/runtime/runtime.h"

static char dir[64];
static char logpath[128];
static char accpath[128];
static char text[65536];

static void
setup(void)
{
	strcpy(dir, "/tmp/tokend-log-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(logpath, sizeof(logpath), "%s/tokend.log", dir);
	snprintf(accpath, sizeof(accpath), "%s/access.log", dir);
}

static void
teardown(void)
{
	char	 cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_expect_eq(system(cmd), 0);
}

TestSuite(log, .init = setup, .fini = teardown);

/* The whole file as a string ("" when it does not exist). */
static const char *
slurp(const char *path)
{
	ssize_t	 n = 0;
	int	 fd;

	text[0] = '\0';
	if ((fd = open(path, O_RDONLY)) == -1)
		return text;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[n > 0 ? n : 0] = '\0';
	return text;
}

static void
open_log(int format, int level, const char *access)
{
	struct config	 cf;

	config_defaults(&cf);
	cf.cf_log_format = format;
	cf.cf_log_level = level;
	strcpy(cf.cf_log_file, logpath);
	strcpy(cf.cf_access_log, access);
	cr_assert_eq(log_open(&cf, "worker 2"), 0);
}

static int
matches(const char *re, const char *s)
{
	regex_t	 rx;
	int	 rc;

	cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0, "%s", re);
	rc = regexec(&rx, s, 0, NULL, 0) == 0;
	regfree(&rx);
	return rc;
}

static size_t
count_lines(const char *s)
{
	size_t	 n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

Test(log, before_open_stderr_info_logfmt)
{
	char	 want[256];
	int	 saved = dup(2), fd;

	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd != -1 && saved != -1);
	dup2(fd, 2);
	LOG(LVL_DEBUG, "not_shown", KV_S("a", "b"));
	LOG(LVL_INFO, "early", KV_S("file", "/etc/tokend.conf"));
	dup2(saved, 2);
	close(fd);
	close(saved);
	slurp(logpath);
	snprintf(want, sizeof(want), "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:"
	    "[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z level=info event=early proc=tokend "
	    "pid=%d file=/etc/tokend.conf\n$", (int)getpid());
	cr_expect(matches(want, text), "got: %s", text);
}

Test(log, ts_is_utc_now)
{
	char		 before[32], after[32];
	time_t		 t0, t1;
	struct tm	 tm;

	open_log(LOGF_LOGFMT, LVL_INFO, "");
	t0 = time(NULL);
	LOG(LVL_INFO, "tick");
	t1 = time(NULL);
	strftime(before, sizeof(before), "ts=%Y-%m-%dT%H:%M:%S.",
	    gmtime_r(&t0, &tm));
	strftime(after, sizeof(after), "ts=%Y-%m-%dT%H:%M:%S.",
	    gmtime_r(&t1, &tm));
	slurp(logpath);
	cr_expect(strncmp(text, before, strlen(before)) == 0 ||
	    strncmp(text, after, strlen(after)) == 0, "got: %s", text);
}

Test(log, logfmt_quoting)
{
	open_log(LOGF_LOGFMT, LVL_INFO, "");
	LOG(LVL_WARN, "quoting", KV_S("plain", "abc/def:1"),
	    KV_S("space", "has space"), KV_S("eq", "a=b"),
	    KV_S("quote", "say \"hi\""), KV_S("empty", ""),
	    KV_S("bs", "back\\slash"), KV_S("nl", "two\nlines"),
	    KV_S("ctl", "bell\a"), KV_S("null", NULL), KV_S("utf8", "jörg"),
	    KV_S("bad", "\xff\xfe"), KV_I("n", -42), KV_D("secs", 0.0015));
	slurp(logpath);
	cr_expect(strstr(text, " level=warn event=quoting proc=\"worker 2\" "
	    "pid=") != NULL, "got: %s", text);
	cr_expect(strstr(text, " plain=abc/def:1 space=\"has space\" "
	    "eq=\"a=b\" quote=\"say \\\"hi\\\"\" empty=\"\" "
	    "bs=\"back\\\\slash\" nl=\"two\\nlines\" ctl=\"bell\\u0007\" "
	    "null=\"\" utf8=\"jörg\" bad=\"\\ufffd\\ufffd\" n=-42 "
	    "secs=0.001500\n") != NULL, "got: %s", text);
	cr_expect_eq(count_lines(text), 1, "a newline in a value must not "
	    "split the line");
}

Test(log, json_lines_parse_back)
{
	json_t		*j;
	json_error_t	 je;
	char		*line, *save = NULL;
	int		 n = 0;

	open_log(LOGF_JSON, LVL_DEBUG, "");
	LOG(LVL_DEBUG, "tricky", KV_S("q", "say \"hi\"\\ \n\t\x01 jörg"),
	    KV_S("bad", "a\xc3(z"), KV_S("null", NULL), KV_I("n", 7),
	    KV_D("d", 1.25));
	log_errorf("%s: epoll_ctl: %s", "worker_loop", "Bad file descriptor");
	slurp(logpath);
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save), n++) {
		j = json_loads(line, 0, &je);
		cr_assert_not_null(j, "not JSON (%s): %s", je.text, line);
		cr_expect(json_is_string(json_object_get(j, "ts")));
		cr_expect_str_eq(json_string_value(json_object_get(j, "proc")),
		    "worker 2");
		cr_expect_eq(json_integer_value(json_object_get(j, "pid")),
		    getpid());
		if (n == 0) {
			cr_expect_str_eq(json_string_value(json_object_get(j,
			    "level")), "debug");
			cr_expect_str_eq(json_string_value(json_object_get(j,
			    "event")), "tricky");
			cr_expect_str_eq(json_string_value(json_object_get(j,
			    "q")), "say \"hi\"\\ \n\t\x01 jörg");
			cr_expect_str_eq(json_string_value(json_object_get(j,
			    "bad")), "a\xef\xbf\xbd(z");
			cr_expect(json_is_null(json_object_get(j, "null")));
			cr_expect_eq(json_integer_value(json_object_get(j,
			    "n")), 7);
			cr_expect_eq(json_real_value(json_object_get(j, "d")),
			    1.25);
		} else {
			cr_expect_str_eq(json_string_value(json_object_get(j,
			    "event")), "error");
			cr_expect_str_eq(json_string_value(json_object_get(j,
			    "msg")), "worker_loop: epoll_ctl: Bad file "
			    "descriptor");
		}
		json_decref(j);
	}
	cr_expect_eq(n, 2);
}

Test(log, level_filter)
{
	open_log(LOGF_LOGFMT, LVL_WARN, "");
	LOG(LVL_DEBUG, "dbg");
	LOG(LVL_INFO, "inf");
	log_warnf("disk %d%% full", 91);
	LOG(LVL_ERROR, "bad", KV_I("code", 3));
	slurp(logpath);
	cr_expect_null(strstr(text, "event=dbg"));
	cr_expect_null(strstr(text, "event=inf"));
	cr_expect(strstr(text, "level=warn event=warning proc=\"worker 2\"")
	    != NULL, "got: %s", text);
	cr_expect(strstr(text, " msg=\"disk 91% full\"\n") != NULL);
	cr_expect(strstr(text, "level=error event=bad ") != NULL);
	cr_expect_eq(count_lines(text), 2);
}

Test(log, long_values_truncated_whole)
{
	static char	 big[10000];
	json_t		*j;

	memset(big, 'x', sizeof(big) - 1);
	open_log(LOGF_LOGFMT, LVL_INFO, "");
	LOG(LVL_INFO, "big", KV_S("v", big), KV_S("after", "dropped"));
	slurp(logpath);
	cr_expect_leq(strlen(text), 4096);
	cr_expect_eq(count_lines(text), 1);
	cr_expect(matches(" v=\"x+\" truncated=true\n$", text), "tail: %s",
	    text + strlen(text) - 40);

	unlink(logpath);
	open_log(LOGF_JSON, LVL_INFO, "");
	/* Escapes around the cut must stay whole. */
	memset(big + 3800, '"', 400);
	LOG(LVL_INFO, "big", KV_S("v", big), KV_S("after", "dropped"));
	slurp(logpath);
	cr_expect_leq(strlen(text), 4096);
	j = json_loads(text, 0, NULL);
	cr_assert_not_null(j, "truncated JSON line must stay valid");
	cr_expect(json_is_true(json_object_get(j, "truncated")));
	cr_expect_null(json_object_get(j, "after"));
	json_decref(j);
}

Test(log, reopen_after_rename)
{
	char	 moved[160];

	snprintf(moved, sizeof(moved), "%s.1", logpath);
	open_log(LOGF_LOGFMT, LVL_INFO, "");
	LOG(LVL_INFO, "first");
	cr_assert_eq(rename(logpath, moved), 0);
	LOG(LVL_INFO, "second");	/* logrotate moved it; not yet told */
	cr_assert_eq(log_reopen(), 0);
	LOG(LVL_INFO, "third");
	slurp(moved);
	cr_expect(strstr(text, "event=first") && strstr(text, "event=second"),
	    "old file: %s", text);
	cr_expect_null(strstr(text, "event=third"));
	slurp(logpath);
	cr_expect(strstr(text, "event=third") != NULL, "new file: %s", text);
	/* The reopen says so first, in the new file (issue 15). */
	cr_expect_eq(strncmp(strstr(text, "event=") ? strstr(text, "event=") :
	    "", "event=log_reopened ", 19), 0, "new file: %s", text);
	cr_expect_eq(count_lines(text), 2);
}

Test(log, log_file_cannot_open)
{
	struct config	 cf;

	config_defaults(&cf);
	snprintf(cf.cf_log_file, sizeof(cf.cf_log_file), "%s/no/such/dir.log",
	    dir);
	cr_expect_eq(log_open(&cf, "master"), -1);
}

Test(log, access_log)
{
	open_log(LOGF_LOGFMT, LVL_ERROR, "");
	cr_expect_eq(log_access_enabled(), 0);
	open_log(LOGF_LOGFMT, LVL_ERROR, accpath);
	cr_expect_eq(log_access_enabled(), 1);
	{
		char	 ua[400];
		struct log_access a = { "GET", "/auth", 200, 0, 0.000042,
		    "127.0.0.1:51000", "req-1", 7, 42, "tkp_AbCd", "web",
		    "curl/8.0 \"x\"", 12 };
		struct log_access b = { "POST", "/token", 400, 87, 1.5, "unix",
		    "0f0f", 0, 0, "", NULL, ua, sizeof(ua) };

		memset(ua, 'u', sizeof(ua));
		log_access(&a);
		log_access(&b);
	}
	slurp(accpath);
	cr_expect(strstr(text, " level=info event=request proc=\"worker 2\" "
	    "pid=") != NULL, "got: %s", text);
	cr_expect(strstr(text, " method=GET path=/auth status=200 bytes=0 "
	    "duration=0.000042 peer=127.0.0.1:51000 request_id=req-1 "
	    "user_id=7 token_id=42 token=tkp_AbCd client=web "
	    "user_agent=\"curl/8.0 \\\"x\\\"\"\n") != NULL, "got: %s", text);
	/* Absent facts are empty, the user agent is cut to LOG_UA_MAX. */
	cr_expect(strstr(text, " method=POST path=/token status=400 bytes=87 "
	    "duration=1.500000 peer=unix request_id=0f0f user_id=\"\" "
	    "token_id=\"\" token=\"\" client=\"\" user_agent=uuuu") != NULL,
	    "got: %s", text);
	{
		char	 want[LOG_UA_MAX + 16];

		strcpy(want, "user_agent=");
		memset(want + 11, 'u', LOG_UA_MAX);
		strcpy(want + 11 + LOG_UA_MAX, "\n");
		cr_expect(strstr(text, want) != NULL, "got: %s", text);
	}
	slurp(logpath);
	cr_expect_str_eq(text, "", "requests stay out of the event log");
}

/*
 * glibc calls .init_array functions with main's arguments, which gives
 * this test the real argv (and so the real argv memory) criterion got.
 */
static int	 real_argc;
static char	**real_argv;

static void
grab_argv(int argc, char **argv, char **envp)
{
	(void)envp;
	real_argc = argc;
	real_argv = argv;
}

__attribute__((section(".init_array"), used))
static void (*grab_argv_p)(int, char **, char **) = grab_argv;

extern char **environ;

static void
send_file(int fd, const char *path)
{
	char	 buf[4096];
	ssize_t	 n;
	int	 in;

	in = open(path, O_RDONLY);
	n = read(in, buf, sizeof(buf));
	close(in);
	/* A short write leaves the parent's read short: its check fails. */
	if (write(fd, &n, sizeof(n)) != (ssize_t)sizeof(n) ||
	    write(fd, buf, n > 0 ? (size_t)n : 0) != (n > 0 ? n : 0))
		_exit(1);
}

/*
 * In a child: set the title, send back cmdline, comm, and whether the
 * first environment variable still reads as it did (environ moved).
 */
static void
title_child(int fd, const char *title)
{
	char	 first[4096], *eq, *val;
	int	 envok;

	snprintf(first, sizeof(first), "%s", environ[0]);
	proctitle_init(real_argc, real_argv);
	proctitle_set(title);
	send_file(fd, "/proc/self/cmdline");
	send_file(fd, "/proc/self/comm");
	eq = strchr(first, '=');
	*eq = '\0';
	val = getenv(first);
	envok = val != NULL && strcmp(val, eq + 1) == 0;
	if (write(fd, &envok, sizeof(envok)) != (ssize_t)sizeof(envok))
		_exit(1);
	_exit(0);
}

static void
expect_title(const char *title)
{
	char	 cmdline[4096], comm[64];
	ssize_t	 n, m;
	int	 p[2], st, envok = 0;
	pid_t	 pid;

	cr_assert_eq(pipe(p), 0);
	if ((pid = fork()) == 0) {
		close(p[0]);
		title_child(p[1], title);
	}
	close(p[1]);
	cr_assert_eq(read(p[0], &n, sizeof(n)), sizeof(n));
	cr_assert_eq(read(p[0], cmdline, (size_t)n), n);
	cr_assert_eq(read(p[0], &m, sizeof(m)), sizeof(m));
	cr_assert_eq(read(p[0], comm, (size_t)m), m);
	cr_assert_eq(read(p[0], &envok, sizeof(envok)), sizeof(envok));
	close(p[0]);
	waitpid(pid, &st, 0);
	cr_expect_eq(n, (ssize_t)strlen(title) + 1, "cmdline is %zd bytes", n);
	cr_expect_eq(memcmp(cmdline, title, strlen(title) + 1), 0);
	/* comm: the first 15 characters, and /proc adds a newline. */
	m--;
	cr_expect_eq(m, strlen(title) < 15 ? (ssize_t)strlen(title) : 15);
	cr_expect_eq(memcmp(comm, title, (size_t)m), 0);
	cr_expect_eq(comm[m], '\n');
	cr_expect(envok, "the environment must survive the title");
}

Test(log, proctitle_sets_cmdline)
{
	char	 longer[301];

	cr_assert_not_null(real_argv, "no argv from .init_array");
	expect_title("tokend: worker 2");
	/* Shorter than any command line: the rest must not show as NULs. */
	expect_title("tk");
	/* Longer than the command line was: it spills into environ's area. */
	memset(longer, 't', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	expect_title(longer);
}

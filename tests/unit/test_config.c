/*
 * Configuration: what an operator sees from `tokend -t`.  Every error is
 * checked word for word, with its line number, because the message is the
 * whole user interface of a bad config.  The listen suite checks the
 * sockets those addresses become, across a reload and a restart.
 */
#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master/master.h"

extern char **environ;

static char conf[64];
static char err[2048];
static struct config cf;

/* A developer's shell may hold TOKEND_* settings; tests start clean. */
static void
setup(void)
{
	char	 name[256];
	size_t	 i, n;
	int	 fd;

	for (i = 0; environ[i] != NULL;)
		if (strncmp(environ[i], "TOKEND_", 7) == 0) {
			n = strcspn(environ[i], "=");
			snprintf(name, sizeof(name), "%.*s", (int)n, environ[i]);
			unsetenv(name);
		} else
			i++;
	strcpy(conf, "/tmp/tokend-conf-XXXXXX");
	fd = mkstemp(conf);
	cr_assert(fd != -1);
	close(fd);
}

static void
teardown(void)
{
	unlink(conf);
}

TestSuite(config, .init = setup, .fini = teardown);

static void
put(const char *text)
{
	FILE	*fp = fopen(conf, "w");

	cr_assert_not_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static int
load(const char *text)
{
	put(text);
	err[0] = '\0';
	return config_load(&cf, conf, err, sizeof(err));
}

/* The message must be "<conf>" followed by want exactly. */
static void
expect_err(const char *text, const char *want)
{
	char	 full[2048];

	snprintf(full, sizeof(full), "%s%s", conf, want);
	cr_expect_eq(load(text), -1, "accepted: %s", text);
	cr_expect_str_eq(err, full, "for %s", text);
}

Test(config, defaults)
{
	long	 ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(cf.cf_nlisten, 1);
	cr_expect_str_eq(cf.cf_listen[0], "127.0.0.1:8080");
	cr_expect_eq(cf.cf_ntls_listen, 0);
	cr_expect_eq(cf.cf_workers, ncpu > 256 ? 256 : ncpu);
	cr_expect_str_eq(cf.cf_issuer, "http://127.0.0.1:8080");
	cr_expect_str_eq(cf.cf_database_url, "");
	cr_expect_str_eq(cf.cf_cache_dir, "./var/cache");
	cr_expect_eq(cf.cf_cache_map_size, 1ULL << 30);
	cr_expect_eq(cf.cf_cache_ttl, 600);
	cr_expect_eq(cf.cf_negative_ttl, 10);
	cr_expect_eq(cf.cf_usage_flush_interval, 1.0);
	cr_expect_eq(cf.cf_access_token_ttl, 900);
	cr_expect_eq(cf.cf_refresh_token_ttl, 2592000);
	cr_expect_eq(cf.cf_refresh_grace, 10);
	cr_expect_eq(cf.cf_code_ttl, 60);
	cr_expect_eq(cf.cf_login_max_failures, 5);
	cr_expect_eq(cf.cf_login_window, 300);
	cr_expect_eq(cf.cf_retention, 604800);
	cr_expect_eq(cf.cf_max_connections, 10000);
	cr_expect_eq(cf.cf_keepalive_timeout, 75);
	cr_expect_eq(cf.cf_header_timeout, 10);
	cr_expect_eq(cf.cf_shutdown_timeout, 10);
	cr_expect_eq(cf.cf_max_body, 65536);
	cr_expect_eq(cf.cf_log_level, LVL_INFO);
	cr_expect_eq(cf.cf_log_format, LOGF_LOGFMT);
	cr_expect_str_eq(cf.cf_log_file, "");
	cr_expect_str_eq(cf.cf_access_log, "");
	cr_expect_str_eq(cf.cf_pid_file, "");
	cr_expect_str_eq(cf.cf_scopes_supported, "");
	cr_expect_eq(cf.cf_listen_mode, 0660);
	cr_expect_str_eq(cf.cf_listen_group, "");
	cr_expect_eq(cf.cf_max_revocation_lag, 5);
	cr_expect_eq(cf.cf_stale_cache_ttl, 600);
	cr_expect_eq(cf.cf_pat_max_lifetime, 7776000);
	cr_expect_eq(cf.cf_refresh_family_max_age, 7776000);
	cr_expect_str_eq(cf.cf_file, "");
}

Test(config, every_key_good)
{
	char	 text[4096];

	snprintf(text, sizeof(text),
	    "listen = 0.0.0.0:9000\n"
	    "listen = [::1]:9001\n"
	    "listen = unix:/run/tokend.sock\n"
	    "tls_listen = *:9443\n"
	    "tls_cert = %s\n"
	    "tls_key = %s\n"
	    "workers = 3\n"
	    "issuer = https://auth.example.com/\n"
	    "database_url = postgresql://u@localhost/tokend?sslmode=disable\n"
	    "cache_dir = /var/cache/tokend\n"
	    "cache_map_size = 2GiB\n"
	    "cache_ttl = 1\n"
	    "negative_ttl = 0\n"
	    "usage_flush_interval = 0.25\n"
	    "access_token_ttl = 86400\n"
	    "refresh_token_ttl = 60\n"
	    "refresh_grace = 0\n"
	    "code_ttl = 600\n"
	    "login_max_failures = 1000\n"
	    "login_window = 86400\n"
	    "retention = 0\n"
	    "max_connections = 1000000\n"
	    "keepalive_timeout = 0\n"
	    "header_timeout = 3600\n"
	    "shutdown_timeout = 0\n"
	    "max_body = 1M\n"
	    "log_level = debug\n"
	    "log_format = json\n"
	    "log_file = /var/log/tokend.log\n"
	    "access_log = /var/log/tokend-access.log\n"
	    "pid_file = /run/tokend.pid\n"
	    "scopes_supported = read  write:all openid\n"
	    "listen_mode = 0600\n"
	    "max_revocation_lag = 2\n"
	    "stale_cache_ttl = 0\n"
	    "pat_max_lifetime = 0\n"
	    "refresh_family_max_age = 86400\n", conf, conf);
	cr_assert_eq(load(text), 0, "%s", err);
	cr_expect_eq(cf.cf_nlisten, 3);
	cr_expect_str_eq(cf.cf_listen[0], "0.0.0.0:9000");
	cr_expect_str_eq(cf.cf_listen[1], "[::1]:9001");
	cr_expect_str_eq(cf.cf_listen[2], "unix:/run/tokend.sock");
	cr_expect_eq(cf.cf_ntls_listen, 1);
	cr_expect_str_eq(cf.cf_tls_listen[0], "*:9443");
	cr_expect_str_eq(cf.cf_tls_cert, conf);
	cr_expect_str_eq(cf.cf_tls_key, conf);
	cr_expect_eq(cf.cf_workers, 3);
	cr_expect_str_eq(cf.cf_issuer, "https://auth.example.com");
	cr_expect_str_eq(cf.cf_database_url,
	    "postgresql://u@localhost/tokend?sslmode=disable");
	cr_expect_str_eq(cf.cf_cache_dir, "/var/cache/tokend");
	cr_expect_eq(cf.cf_cache_map_size, 2ULL << 30);
	cr_expect_eq(cf.cf_cache_ttl, 1);
	cr_expect_eq(cf.cf_negative_ttl, 0);
	cr_expect_eq(cf.cf_usage_flush_interval, 0.25);
	cr_expect_eq(cf.cf_access_token_ttl, 86400);
	cr_expect_eq(cf.cf_refresh_token_ttl, 60);
	cr_expect_eq(cf.cf_refresh_grace, 0);
	cr_expect_eq(cf.cf_code_ttl, 600);
	cr_expect_eq(cf.cf_login_max_failures, 1000);
	cr_expect_eq(cf.cf_login_window, 86400);
	cr_expect_eq(cf.cf_retention, 0);
	cr_expect_eq(cf.cf_max_connections, 1000000);
	cr_expect_eq(cf.cf_keepalive_timeout, 0);
	cr_expect_eq(cf.cf_header_timeout, 3600);
	cr_expect_eq(cf.cf_shutdown_timeout, 0);
	cr_expect_eq(cf.cf_max_body, 1 << 20);
	cr_expect_eq(cf.cf_log_level, LVL_DEBUG);
	cr_expect_eq(cf.cf_log_format, LOGF_JSON);
	cr_expect_str_eq(cf.cf_log_file, "/var/log/tokend.log");
	cr_expect_str_eq(cf.cf_access_log, "/var/log/tokend-access.log");
	cr_expect_str_eq(cf.cf_pid_file, "/run/tokend.pid");
	cr_expect_str_eq(cf.cf_scopes_supported, "read write:all openid");
	cr_expect_eq(cf.cf_listen_mode, 0600);
	cr_expect_eq(cf.cf_max_revocation_lag, 2);
	cr_expect_eq(cf.cf_stale_cache_ttl, 0);
	cr_expect_eq(cf.cf_pat_max_lifetime, 0);
	cr_expect_eq(cf.cf_refresh_family_max_age, 86400);
	cr_expect_str_eq(cf.cf_file, conf);
}

Test(config, sizes_and_words)
{
	cr_assert_eq(load("cache_map_size = 1048576\nmax_body = 64 KiB\n"),
	    0, "%s", err);
	cr_expect_eq(cf.cf_cache_map_size, 1 << 20);
	cr_expect_eq(cf.cf_max_body, 65536);
	cr_assert_eq(load("cache_map_size = 1T\nmax_body = 16MiB\n"), 0, "%s",
	    err);
	cr_expect_eq(cf.cf_cache_map_size, 1ULL << 40);
	cr_expect_eq(cf.cf_max_body, 16 << 20);
	cr_assert_eq(load("log_file = stderr\naccess_log = off\n"
	    "pid_file = \"\"\nlog_level = error\n"), 0, "%s", err);
	cr_expect_str_eq(cf.cf_log_file, "");
	cr_expect_str_eq(cf.cf_access_log, "");
	cr_expect_str_eq(cf.cf_pid_file, "");
	cr_expect_eq(cf.cf_log_level, LVL_ERROR);
}

/* The bad line is line 3, after a comment and a blank line. */
static void
expect_bad(const char *line, const char *want)
{
	char	 text[8192], suffix[4096];

	snprintf(text, sizeof(text), "# tokend\n\n%s\nworkers = 2\n", line);
	snprintf(suffix, sizeof(suffix), ":3: %s", want);
	expect_err(text, suffix);
}

Test(config, bad_integers)
{
	expect_bad("workers = 0", "workers: must be an integer from 1 to 256");
	expect_bad("workers = 257",
	    "workers: must be an integer from 1 to 256");
	expect_bad("workers = four",
	    "workers: must be an integer from 1 to 256");
	expect_bad("workers = 4x", "workers: must be an integer from 1 to 256");
	expect_bad("workers = 0x4",
	    "workers: must be an integer from 1 to 256");
	expect_bad("workers = +4", "workers: must be an integer from 1 to 256");
	expect_bad("workers =", "workers: must be an integer from 1 to 256");
	expect_bad("workers = 99999999999999999999999",
	    "workers: must be an integer from 1 to 256");
	expect_bad("cache_ttl = 0",
	    "cache_ttl: must be an integer from 1 to 86400");
	expect_bad("cache_ttl = 86401",
	    "cache_ttl: must be an integer from 1 to 86400");
	expect_bad("negative_ttl = -1",
	    "negative_ttl: must be an integer from 0 to 3600");
	expect_bad("negative_ttl = 3601",
	    "negative_ttl: must be an integer from 0 to 3600");
	expect_bad("access_token_ttl = 299",
	    "access_token_ttl: must be an integer from 300 to 86400");
	expect_bad("access_token_ttl = 86401",
	    "access_token_ttl: must be an integer from 300 to 86400");
	expect_bad("refresh_token_ttl = 59",
	    "refresh_token_ttl: must be an integer from 60 to 31536000");
	expect_bad("refresh_token_ttl = 31536001",
	    "refresh_token_ttl: must be an integer from 60 to 31536000");
	expect_bad("refresh_grace = 61",
	    "refresh_grace: must be an integer from 0 to 60");
	expect_bad("listen_mode = 0800",
	    "listen_mode: must be an octal mode from 0000 to 0777");
	expect_bad("listen_mode = 1777",
	    "listen_mode: must be an octal mode from 0000 to 0777");
	expect_bad("listen_mode = rw",
	    "listen_mode: must be an octal mode from 0000 to 0777");
	expect_bad("max_revocation_lag = 0",
	    "max_revocation_lag: must be an integer from 1 to 3600");
	expect_bad("pat_max_lifetime = -1",
	    "pat_max_lifetime: must be an integer from 0 to 315360000");
	expect_bad("refresh_grace = ten",
	    "refresh_grace: must be an integer from 0 to 60");
	expect_bad("code_ttl = 0", "code_ttl: must be an integer from 1 to 600");
	expect_bad("code_ttl = 601",
	    "code_ttl: must be an integer from 1 to 600");
	expect_bad("login_max_failures = 0",
	    "login_max_failures: must be an integer from 1 to 1000");
	expect_bad("login_max_failures = 1001",
	    "login_max_failures: must be an integer from 1 to 1000");
	expect_bad("login_window = 0",
	    "login_window: must be an integer from 1 to 86400");
	expect_bad("login_window = 86401",
	    "login_window: must be an integer from 1 to 86400");
	expect_bad("retention = -5",
	    "retention: must be an integer from 0 to 315360000");
	expect_bad("retention = 315360001",
	    "retention: must be an integer from 0 to 315360000");
	expect_bad("max_connections = 0",
	    "max_connections: must be an integer from 1 to 1000000");
	expect_bad("max_connections = 1000001",
	    "max_connections: must be an integer from 1 to 1000000");
	expect_bad("keepalive_timeout = -1",
	    "keepalive_timeout: must be an integer from 0 to 3600");
	expect_bad("keepalive_timeout = 3601",
	    "keepalive_timeout: must be an integer from 0 to 3600");
	expect_bad("header_timeout = 0",
	    "header_timeout: must be an integer from 1 to 3600");
	expect_bad("header_timeout = 3601",
	    "header_timeout: must be an integer from 1 to 3600");
	expect_bad("shutdown_timeout = 3601",
	    "shutdown_timeout: must be an integer from 0 to 3600");
	expect_bad("shutdown_timeout = 1.5",
	    "shutdown_timeout: must be an integer from 0 to 3600");
}

Test(config, bad_sizes_and_numbers)
{
	expect_bad("cache_map_size = 1048575",
	    "cache_map_size: must be a size from 1MiB to 1TiB");
	expect_bad("cache_map_size = 2T",
	    "cache_map_size: must be a size from 1MiB to 1TiB");
	expect_bad("cache_map_size = 1 GB",
	    "cache_map_size: must be a size from 1MiB to 1TiB");
	expect_bad("cache_map_size = big",
	    "cache_map_size: must be a size from 1MiB to 1TiB");
	expect_bad("cache_map_size = 99999999999999999999G",
	    "cache_map_size: must be a size from 1MiB to 1TiB");
	expect_bad("cache_map_size = 20000000000T",
	    "cache_map_size: must be a size from 1MiB to 1TiB");
	expect_bad("max_body = 1023", "max_body: must be a size from 1024 to "
	    "16MiB");
	expect_bad("max_body = 17M", "max_body: must be a size from 1024 to "
	    "16MiB");
	expect_bad("usage_flush_interval = 0.04",
	    "usage_flush_interval: must be a number from 0.05 to 60");
	expect_bad("usage_flush_interval = 60.5",
	    "usage_flush_interval: must be a number from 0.05 to 60");
	expect_bad("usage_flush_interval = 1e0",
	    "usage_flush_interval: must be a number from 0.05 to 60");
	expect_bad("usage_flush_interval = inf",
	    "usage_flush_interval: must be a number from 0.05 to 60");
	expect_bad("usage_flush_interval = .",
	    "usage_flush_interval: must be a number from 0.05 to 60");
	expect_bad("usage_flush_interval = 1s",
	    "usage_flush_interval: must be a number from 0.05 to 60");
}

Test(config, bad_words)
{
	expect_bad("log_level = verbose",
	    "log_level: must be one of debug, info, warn, error");
	expect_bad("log_level = INFO",
	    "log_level: must be one of debug, info, warn, error");
	expect_bad("log_format = text",
	    "log_format: must be one of logfmt, json");
	expect_bad("colour = blue", "colour: unknown key");
	expect_bad("Workers = 2", "Workers: unknown key");
	expect_bad("workers 2", "syntax: expected key = value");
	expect_bad("= 2", "syntax: expected key = value");
	expect_bad("database_url = \"postgresql://x",
	    "database_url: unterminated quoted value");
	expect_bad("database_url = \"a\" b",
	    "database_url: text after the closing quote");
	expect_bad("scopes_supported = read \"write\"",
	    "scopes_supported: must be scope names separated by spaces, of "
	    "printable ASCII without '\"' or '\\'");
	expect_bad("scopes_supported = a\\b",
	    "scopes_supported: must be scope names separated by spaces, of "
	    "printable ASCII without '\"' or '\\'");
	expect_bad("issuer = ftp://example.com", "issuer: must be an http:// "
	    "or https:// URL without query or fragment");
	expect_bad("issuer = https://example.com/?x=1", "issuer: must be an "
	    "http:// or https:// URL without query or fragment");
	expect_bad("issuer = https://example.com/#top", "issuer: must be an "
	    "http:// or https:// URL without query or fragment");
	expect_bad("issuer = https://", "issuer: must be an http:// or "
	    "https:// URL without query or fragment");
	expect_bad("cache_dir =", "cache_dir: must be a path");
}

Test(config, bad_addresses)
{
	expect_bad("listen = 127.0.0.1",
	    "listen: 127.0.0.1: must be host:port, [ipv6]:port or unix:/path");
	expect_bad("listen = 127.0.0.1:0",
	    "listen: 127.0.0.1:0: port must be an integer from 1 to 65535");
	expect_bad("listen = 127.0.0.1:65536",
	    "listen: 127.0.0.1:65536: port must be an integer from 1 to 65535");
	expect_bad("listen = 127.0.0.1:http",
	    "listen: 127.0.0.1:http: port must be an integer from 1 to 65535");
	expect_bad("listen = example.com:80", "listen: example.com:80: host "
	    "must be an IPv4 address, [IPv6 address], localhost or *");
	expect_bad("listen = 300.1.1.1:80", "listen: 300.1.1.1:80: host "
	    "must be an IPv4 address, [IPv6 address], localhost or *");
	expect_bad("listen = [::1:80", "listen: [::1:80: host "
	    "must be an IPv4 address, [IPv6 address], localhost or *");
	expect_bad("tls_listen = ::1:443", "tls_listen: ::1:443: host "
	    "must be an IPv4 address, [IPv6 address], localhost or *");
	expect_bad("listen = unix:run/tokend.sock",
	    "listen: unix:run/tokend.sock: unix: needs an absolute path of at "
	    "most 107 bytes");
	expect_bad("listen = 127.0.0.1:80, 127.0.0.1:80",
	    "listen: 127.0.0.1:80: listed twice");
}

Test(config, too_many_listen)
{
	char	 text[4096];
	size_t	 n = 0;
	int	 i;

	for (i = 0; i < CF_MAX_LISTEN; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "listen = 127.0.0.1:%d\n", 8000 + i);
	cr_assert_eq(load(text), 0, "%s", err);
	cr_expect_eq(cf.cf_nlisten, CF_MAX_LISTEN);
	snprintf(text + n, sizeof(text) - n, "listen = 127.0.0.1:9999\n");
	expect_err(text, ":17: listen: at most 16 addresses");
}

Test(config, too_long_values)
{
	char	 line[2200], want[2200];

	snprintf(line, sizeof(line), "pid_file = /%01100d", 0);
	expect_bad(line, "pid_file: must be a path of at most 1023 bytes");
	snprintf(line, sizeof(line), "cache_dir = /%01023d", 0);
	expect_bad(line, "cache_dir: must be a path of at most 1023 bytes");
	snprintf(line, sizeof(line), "database_url = postgresql://%01100d", 0);
	expect_bad(line, "database_url: must be at most 1023 bytes");
	snprintf(line, sizeof(line), "listen = unix:/%0120d", 0);
	snprintf(want, sizeof(want), "listen: unix:/%0120d: unix: needs an "
	    "absolute path of at most 107 bytes", 0);
	expect_bad(line, want);
	/* The longest path that fits is accepted. */
	snprintf(line, sizeof(line), "cache_dir = /%01022d\n", 0);
	cr_expect_eq(load(line), 0, "%s", err);
	cr_expect_eq(strlen(cf.cf_cache_dir), 1023);
}

Test(config, missing_file)
{
	char	 want[128];

	unlink(conf);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or "
	    "directory", conf);
	cr_assert_eq(config_load(&cf, conf, err, sizeof(err)), -1);
	cr_expect_str_eq(err, want);
}

Test(config, comments_and_quotes)
{
	cr_assert_eq(load(
	    "  # indented comment\n"
	    "\n"
	    "\t\n"
	    "workers = 7   # trailing comment\n"
	    "database_url = \"host=/run/pg dbname=tokend # not a comment\"  "
	    "# a comment\n"
	    "pid_file=/run/a#b.pid\n"
	    "scopes_supported = \"read write\"\n"
	    "log_file = \"/var/log/t \\\"x\\\".log\"\n"
	    "   access_log   =   /var/log/access.log   \r\n"), 0, "%s", err);
	cr_expect_eq(cf.cf_workers, 7);
	cr_expect_str_eq(cf.cf_database_url,
	    "host=/run/pg dbname=tokend # not a comment");
	cr_expect_str_eq(cf.cf_pid_file, "/run/a#b.pid");
	cr_expect_str_eq(cf.cf_scopes_supported, "read write");
	cr_expect_str_eq(cf.cf_log_file, "/var/log/t \"x\".log");
	cr_expect_str_eq(cf.cf_access_log, "/var/log/access.log");
}

Test(config, last_value_wins)
{
	cr_assert_eq(load("workers = 2\nworkers = 5\n"), 0, "%s", err);
	cr_expect_eq(cf.cf_workers, 5);
}

Test(config, env_overrides_file)
{
	setenv("TOKEND_WORKERS", "9", 1);
	setenv("TOKEND_LOG_FORMAT", "json", 1);
	setenv("TOKEND_DATABASE_URL", "postgresql:///env", 1);
	cr_assert_eq(load("workers = 2\nlog_format = logfmt\n"
	    "database_url = postgresql:///file\ncode_ttl = 30\n"), 0, "%s",
	    err);
	cr_expect_eq(cf.cf_workers, 9);
	cr_expect_eq(cf.cf_log_format, LOGF_JSON);
	cr_expect_str_eq(cf.cf_database_url, "postgresql:///env");
	cr_expect_eq(cf.cf_code_ttl, 30);
}

Test(config, env_bad_value)
{
	setenv("TOKEND_WORKERS", "lots", 1);
	cr_assert_eq(config_load(&cf, NULL, err, sizeof(err)), -1);
	cr_expect_str_eq(err,
	    "TOKEND_WORKERS: workers: must be an integer from 1 to 256");
	unsetenv("TOKEND_WORKERS");
	setenv("TOKEND_USAGE_FLUSH_INTERVAL", "0", 1);
	cr_assert_eq(load("workers = 2\n"), -1);
	cr_expect_str_eq(err, "TOKEND_USAGE_FLUSH_INTERVAL: "
	    "usage_flush_interval: must be a number from 0.05 to 60");
}

/* The test harness sets TOKEND_BIN; it is not a key and must not fail. */
Test(config, env_unknown_ignored)
{
	setenv("TOKEND_BIN", "/usr/bin", 1);
	cr_expect_eq(config_load(&cf, NULL, err, sizeof(err)), 0, "%s", err);
}

Test(config, listen_repeats)
{
	cr_assert_eq(load("listen = 127.0.0.1:9000\n"
	    "listen = localhost:9001, *:9002\n"), 0, "%s", err);
	cr_expect_eq(cf.cf_nlisten, 3);
	cr_expect_str_eq(cf.cf_listen[0], "127.0.0.1:9000");
	cr_expect_str_eq(cf.cf_listen[1], "localhost:9001");
	cr_expect_str_eq(cf.cf_listen[2], "*:9002");

	setenv("TOKEND_LISTEN", "[::1]:7000,unix:/tmp/t.sock 127.0.0.1:7001",
	    1);
	cr_assert_eq(load("listen = 127.0.0.1:9000\n"), 0, "%s", err);
	cr_expect_eq(cf.cf_nlisten, 3);
	cr_expect_str_eq(cf.cf_listen[0], "[::1]:7000");
	cr_expect_str_eq(cf.cf_listen[1], "unix:/tmp/t.sock");
	cr_expect_str_eq(cf.cf_listen[2], "127.0.0.1:7001");
	cr_expect_str_eq(cf.cf_issuer, "http://[::1]:7000");

	setenv("TOKEND_LISTEN", "127.0.0.1:1 nonsense", 1);
	cr_assert_eq(load(""), -1);
	cr_expect_str_eq(err, "TOKEND_LISTEN: listen: nonsense: must be "
	    "host:port, [ipv6]:port or unix:/path");
}

Test(config, no_address_at_all)
{
	setenv("TOKEND_LISTEN", "", 1);
	cr_assert_eq(load(""), -1);
	cr_expect_str_eq(err, "TOKEND_LISTEN: listen: no listen or tls_listen "
	    "address");
}

Test(config, issuer_default_follows_listen)
{
	cr_assert_eq(load("listen = 10.0.0.5:8081\n"), 0, "%s", err);
	cr_expect_str_eq(cf.cf_issuer, "http://10.0.0.5:8081");
	cr_assert_eq(load("listen = unix:/run/tokend.sock\n"
	    "listen = 127.0.0.1:80\n"), 0, "%s", err);
	cr_expect_str_eq(cf.cf_issuer, "http://localhost");
	cr_assert_eq(load("listen = *:8080\n"), 0, "%s", err);
	cr_expect_str_eq(cf.cf_issuer, "http://localhost:8080");
	cr_assert_eq(load("listen = 0.0.0.0:8080\n"), 0, "%s", err);
	cr_expect_str_eq(cf.cf_issuer, "http://localhost:8080");
	cr_assert_eq(load("listen = *:8080\nissuer = http://auth.test:8080\n"),
	    0, "%s", err);
	cr_expect_str_eq(cf.cf_issuer, "http://auth.test:8080");
	setenv("TOKEND_ISSUER", "https://id.example.org/", 1);
	cr_assert_eq(load("listen = *:8080\n"), 0, "%s", err);
	cr_expect_str_eq(cf.cf_issuer, "https://id.example.org");
}

Test(config, tls_needs_cert_and_key)
{
	char	 text[1024], want[2048];

	expect_err("tls_listen = 127.0.0.1:8443\n",
	    ": tls_cert: required by tls_listen");
	snprintf(text, sizeof(text), "tls_listen = 127.0.0.1:8443\n"
	    "tls_cert = %s\n", conf);
	expect_err(text, ": tls_key: required by tls_listen");
	snprintf(text, sizeof(text), "tls_listen = 127.0.0.1:8443\n"
	    "tls_cert = %s\ntls_key = /nonexistent/key.pem\n", conf);
	snprintf(want, sizeof(want), ":3: tls_key: cannot read "
	    "/nonexistent/key.pem: No such file or directory");
	expect_err(text, want);
	snprintf(text, sizeof(text), "tls_listen = 127.0.0.1:8443\n"
	    "tls_cert = %s\ntls_key = %s\n", conf, conf);
	cr_assert_eq(load(text), 0, "%s", err);
	cr_expect_eq(cf.cf_ntls_listen, 1);
	cr_expect_eq(cf.cf_nlisten, 1, "the default listen stays");
	/* A certificate without tls_listen is not needed, so not checked. */
	cr_expect_eq(load("tls_cert = /nonexistent\n"), 0, "%s", err);
}

Test(config, tls_only_issuer_is_https)
{
	char	 text[1024];

	setenv("TOKEND_LISTEN", "", 1);
	snprintf(text, sizeof(text), "tls_listen = 127.0.0.1:8443\n"
	    "tls_cert = %s\ntls_key = %s\n", conf, conf);
	cr_assert_eq(load(text), 0, "%s", err);
	cr_expect_eq(cf.cf_nlisten, 0);
	cr_expect_str_eq(cf.cf_issuer, "https://127.0.0.1:8443");
}

/* ---- Listeners: what a reload and a restart look like from outside ---- */

TestSuite(listen, .init = setup, .fini = teardown);

/* A port nothing listens on now (the kernel's pick, then released). */
static int
free_port(void)
{
	struct sockaddr_in	 sin = { .sin_family = AF_INET };
	socklen_t		 len = sizeof(sin);
	int			 fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* Someone else's server on 127.0.0.1:port. */
static int
hold_port(int port)
{
	struct sockaddr_in	 sin = { .sin_family = AF_INET };
	int			 fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((in_port_t)port);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	return fd;
}

static int
connect_to(int family, const char *host, int port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	int			 fd, rc;

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)family;
	if (family == AF_INET) {
		inet_pton(AF_INET, host, &sin->sin_addr);
		sin->sin_port = htons((in_port_t)port);
	} else {
		inet_pton(AF_INET6, host, &sin6->sin6_addr);
		sin6->sin6_port = htons((in_port_t)port);
	}
	if ((fd = socket(family, SOCK_STREAM, 0)) == -1)
		return -1;
	rc = connect(fd, (struct sockaddr *)&ss, sizeof(ss));
	close(fd);
	return rc;
}

static int
connect_unix(const char *path)
{
	struct sockaddr_un	 sun = { .sun_family = AF_UNIX };
	int			 fd = socket(AF_UNIX, SOCK_STREAM, 0), rc;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
	return rc;
}

static int
is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

Test(listen, opens_reuses_and_closes)
{
	struct listener	 a[4], b[4];
	int		 p1 = free_port(), p2 = free_port(), n;

	config_defaults(&cf);
	snprintf(cf.cf_listen[0], CF_ADDR_LEN, "127.0.0.1:%d", p1);
	snprintf(cf.cf_listen[1], CF_ADDR_LEN, "localhost:%d", p2);
	cf.cf_nlisten = 2;
	n = listen_open(&cf, NULL, 0, a, 4, err, sizeof(err));
	cr_assert_eq(n, 2, "%s", err);
	cr_expect_eq(connect_to(AF_INET, "127.0.0.1", p1), 0);
	cr_expect_eq(connect_to(AF_INET, "127.0.0.1", p2), 0);
	cr_expect(fcntl(a[0].li_fd, F_GETFL) & O_NONBLOCK);
	cr_expect(fcntl(a[0].li_fd, F_GETFD) & FD_CLOEXEC);
	cr_expect_eq(a[1].li_tls, 0);
	cr_expect_str_eq(a[1].li_addr, cf.cf_listen[1]);

	/* Reload keeping the first address only: same socket, second shut. */
	cf.cf_nlisten = 1;
	n = listen_open(&cf, a, 2, b, 4, err, sizeof(err));
	cr_assert_eq(n, 1, "%s", err);
	cr_expect_eq(b[0].li_fd, a[0].li_fd, "an unchanged address keeps "
	    "its socket");
	cr_expect(!is_open(a[1].li_fd));
	cr_expect_neq(connect_to(AF_INET, "127.0.0.1", p2), 0);
	close(b[0].li_fd);
}

Test(listen, failure_leaves_old_intact)
{
	struct listener	 a[4], b[4];
	int		 p1 = free_port(), p2 = free_port(), p3 = free_port();
	int		 busy, n;
	char		 want[128];

	config_defaults(&cf);
	snprintf(cf.cf_listen[0], CF_ADDR_LEN, "127.0.0.1:%d", p1);
	n = listen_open(&cf, NULL, 0, a, 4, err, sizeof(err));
	cr_assert_eq(n, 1, "%s", err);

	/* Someone else holds p3; the reload wants p2 (new) and p3. */
	config_defaults(&cf);
	snprintf(cf.cf_listen[0], CF_ADDR_LEN, "127.0.0.1:%d", p2);
	snprintf(cf.cf_listen[1], CF_ADDR_LEN, "127.0.0.1:%d", p3);
	cf.cf_nlisten = 2;
	busy = hold_port(p3);
	cr_expect_eq(listen_open(&cf, a, 1, b, 4, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "listen 127.0.0.1:%d: bind: Address "
	    "already in use", p3);
	cr_expect_str_eq(err, want);
	cr_expect(is_open(a[0].li_fd), "old socket closed on failure");
	cr_expect_eq(connect_to(AF_INET, "127.0.0.1", p1), 0);
	cr_expect_neq(connect_to(AF_INET, "127.0.0.1", p2), 0,
	    "the socket opened for p2 was left open");
	close(busy);
}

Test(listen, unix_stale_and_live)
{
	struct listener	 a[2], b[2];
	struct stat	 st;
	char		 path[128], want[256];
	int		 n;

	snprintf(path, sizeof(path), "%s.sock", conf);
	config_defaults(&cf);
	snprintf(cf.cf_listen[0], CF_ADDR_LEN, "unix:%s", path);
	n = listen_open(&cf, NULL, 0, a, 2, err, sizeof(err));
	cr_assert_eq(n, 1, "%s", err);
	cr_expect_eq(stat(path, &st), 0);
	/* listen_mode's default (issue 9): not world-connectable. */
	cr_expect_eq(st.st_mode & 0777, 0660);
	cr_expect_eq(connect_unix(path), 0);

	/* A second server must not steal a live socket. */
	cr_expect_eq(listen_open(&cf, NULL, 0, b, 2, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "listen unix:%s: bind: Address already "
	    "in use", path);
	cr_expect_str_eq(err, want);
	cr_expect_eq(connect_unix(path), 0, "the live socket was removed");

	/* The server died (socket closed, file left): the file is reused. */
	close(a[0].li_fd);
	cr_expect_neq(connect_unix(path), 0);
	n = listen_open(&cf, NULL, 0, b, 2, err, sizeof(err));
	cr_assert_eq(n, 1, "%s", err);
	cr_expect_eq(connect_unix(path), 0);
	close(b[0].li_fd);
	unlink(path);
}

Test(listen, unix_path_not_a_socket_kept)
{
	struct listener	 a[2];
	struct stat	 st;

	config_defaults(&cf);
	snprintf(cf.cf_listen[0], CF_ADDR_LEN, "unix:%s", conf);
	cr_expect_eq(listen_open(&cf, NULL, 0, a, 2, err, sizeof(err)), -1);
	cr_expect(stat(conf, &st) == 0 && S_ISREG(st.st_mode),
	    "a regular file in the way must not be deleted");
}

Test(listen, star_is_dual_stack)
{
	struct listener	 a[2];
	int		 p = free_port(), fd6;

	config_defaults(&cf);
	snprintf(cf.cf_listen[0], CF_ADDR_LEN, "*:%d", p);
	cr_assert_eq(listen_open(&cf, NULL, 0, a, 2, err, sizeof(err)), 1,
	    "%s", err);
	cr_expect_eq(connect_to(AF_INET, "127.0.0.1", p), 0);
	if ((fd6 = socket(AF_INET6, SOCK_STREAM, 0)) != -1) {
		close(fd6);
		cr_expect_eq(connect_to(AF_INET6, "::1", p), 0);
	}
	close(a[0].li_fd);
}

/* ---- tokend -t, -T and unknown variables --------------------------------- */

/* What fn wrote to a FILE, read back whole. */
static const char *
slurp(FILE *fp)
{
	static char	 buf[16384];
	size_t		 n;

	fflush(fp);
	rewind(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

/* -t names every mistake, one line each, and counts them. */
Test(config, check_reports_every_error)
{
	FILE	*out = tmpfile();
	char	 want[1024];

	put("workers = banana\ncache_ttl = 5\nfrobnicate = 1\n"
	    "code_ttl = 601\n");
	setenv("TOKEND_NEGATIVE_TTL", "-1", 1);
	cr_assert_eq(config_check(&cf, conf, out), 4);
	snprintf(want, sizeof(want),
	    "%s:1: workers: must be an integer from 1 to 256\n"
	    "%s:3: frobnicate: unknown key\n"
	    "%s:4: code_ttl: must be an integer from 1 to 600\n"
	    "TOKEND_NEGATIVE_TTL: negative_ttl: must be an integer from 0 to "
	    "3600\n", conf, conf, conf);
	cr_expect_str_eq(slurp(out), want);
	/* The good lines still took effect, and config_load keeps the first. */
	cr_expect_eq(cf.cf_cache_ttl, 5);
	cr_expect_eq(config_load(&cf, conf, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
	    "%s:1: workers: must be an integer from 1 to 256", conf);
	cr_expect_str_eq(err, want);
}

/* A refused listen value does not also report "no listen address". */
Test(config, check_one_mistake_one_line)
{
	FILE	*out = tmpfile();
	char	 want[512];

	put("listen = 127.0.0.1:99999\n");
	cr_assert_eq(config_check(&cf, conf, out), 1);
	snprintf(want, sizeof(want), "%s:1: listen: 127.0.0.1:99999: port "
	    "must be an integer from 1 to 65535\n", conf);
	cr_expect_str_eq(slurp(out), want);
}

Test(config, check_clean_file_is_zero)
{
	FILE	*out = tmpfile();

	put("workers = 2\n");
	cr_expect_eq(config_check(&cf, conf, out), 0);
	cr_expect_str_eq(slurp(out), "");
}

/* -T: each key once, its value and where it came from; a valid file. */
Test(config, print_values_and_sources)
{
	FILE		*out = tmpfile(), *again;
	const char	*text;
	char		 want[512];

	put("# settings\ncache_ttl = 300\nlisten = 127.0.0.1:9000\n"
	    "listen = unix:/tmp/t.sock\nlog_file = \"/tmp/a #b.log\"\n"
	    "database_url = postgresql://tok:s3cret@db/tok?password=s3cret\n");
	setenv("TOKEND_WORKERS", "3", 1);
	cr_assert_eq(config_print(conf, out), 0);
	text = slurp(out);
	snprintf(want, sizeof(want), "cache_ttl = 300\t# %s:2\n", conf);
	cr_expect_not_null(strstr(text, want), "%s", text);
	snprintf(want, sizeof(want), "listen = 127.0.0.1:9000\t# %s:4\n"
	    "listen = unix:/tmp/t.sock\t# %s:4\n", conf, conf);
	cr_expect_not_null(strstr(text, want), "%s", text);
	cr_expect_not_null(strstr(text,
	    "workers = 3\t# environment TOKEND_WORKERS\n"), "%s", text);
	cr_expect_not_null(strstr(text, "negative_ttl = 10\t# default\n"));
	cr_expect_not_null(strstr(text, "cache_map_size = 1GiB\t# default\n"));
	cr_expect_not_null(strstr(text, "listen_mode = 0660\t# default\n"));
	cr_expect_not_null(strstr(text, "access_log = off\t# default\n"));
	cr_expect_not_null(strstr(text, "log_file = \"/tmp/a #b.log\""));
	cr_expect_null(strstr(text, "s3cret"), "password shown: %s", text);
	cr_expect_not_null(strstr(text, "tok:REDACTED@db"), "%s", text);
	/* Fed back as a file (the password aside), it loads to the same. */
	unsetenv("TOKEND_WORKERS");
	again = fopen(conf, "w");
	cr_assert_not_null(again);
	fputs(text, again);
	fclose(again);
	cr_assert_eq(config_load(&cf, conf, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(cf.cf_workers, 3);
	cr_expect_eq(cf.cf_nlisten, 2);
	cr_expect_str_eq(cf.cf_log_file, "/tmp/a #b.log");
	cr_expect_eq(cf.cf_cache_ttl, 300);
}

/* stderr while fn runs, read back. */
static const char *
stderr_of(void (*fn)(void))
{
	FILE	*tmp = tmpfile();
	int	 saved = dup(2);

	fflush(stderr);
	dup2(fileno(tmp), 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	return slurp(tmp);
}

static void
load_defaults(void)
{
	cr_expect_eq(config_load(&cf, NULL, err, sizeof(err)), 0, "%s", err);
}

/* A typo is a warning naming the key meant; the scripts' own are quiet. */
Test(config, env_unknown_warns)
{
	const char	*text;

	setenv("TOKEND_WORKRES", "3", 1);
	setenv("TOKEND_NO_SUCH_THING_AT_ALL", "1", 1);
	setenv("TOKEND_BIN", "/usr/bin", 1);
	text = stderr_of(load_defaults);
	cr_expect_not_null(strstr(text, "warning: TOKEND_WORKRES: no such "
	    "configuration key, ignored; did you mean TOKEND_WORKERS?\n"),
	    "%s", text);
	cr_expect_not_null(strstr(text, "warning: TOKEND_NO_SUCH_THING_AT_ALL: "
	    "no such configuration key, ignored\n"), "%s", text);
	cr_expect_null(strstr(text, "TOKEND_BIN"), "%s", text);
	cr_expect_eq(cf.cf_workers, (int)(sysconf(_SC_NPROCESSORS_ONLN) > 256 ?
	    256 : sysconf(_SC_NPROCESSORS_ONLN)));
}

Test(config, trusted_proxies_are_cidrs)
{
	cr_assert_eq(load("trusted_proxies = 10.0.0.0/8, ::1 127.0.0.1\n"), 0,
	    "%s", err);
	cr_expect_str_eq(cf.cf_trusted_proxies, "10.0.0.0/8, ::1 127.0.0.1");
	expect_bad("trusted_proxies = 10.0.0.0/33", "trusted_proxies: "
	    "10.0.0.0/33: prefix length out of range (at most 64 CIDRs)");
	expect_bad("trusted_proxies = 10.0.0.1/8", "trusted_proxies: "
	    "10.0.0.1/8: has bits set to the right of the prefix length (at "
	    "most 64 CIDRs)");
	expect_bad("trusted_proxies = proxy.example", "trusted_proxies: "
	    "proxy.example: must be an IPv4 or IPv6 address, with an optional "
	    "/prefix (at most 64 CIDRs)");
}

/*
 * The LMDB cache: the value codec, entry lifetimes, and the environment as
 * the workers, the writer and the master use it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <lmdb.h>

#include "store/store.h"

#define MIB (1024ULL * 1024)

/* ---- helpers ---------------------------------------------------------- */

static char *
tmpdir(void)
{
	static char	 dir[64];

	strcpy(dir, "/tmp/tokend-cache-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	return dir;
}

static void
rmdir_all(const char *dir)
{
	char	 path[256];

	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

static void
fill_str(char *s, size_t size, char c)
{
	memset(s, c, size - 1);
	s[size - 1] = '\0';
}

static struct tok_info
sample(int64_t id)
{
	struct tok_info	 ti;

	memset(&ti, 0, sizeof(ti));
	ti.ti_state = TI_VALID;
	ti.ti_kind = TOKEN_ACCESS;
	ti.ti_id = id;
	ti.ti_user_id = 42;
	ti.ti_expires = 2000000000;
	ti.ti_iat = 1700000000;
	ti.ti_until = 1700000600;
	strcpy(ti.ti_user, "alice");
	strcpy(ti.ti_client, "web");
	strcpy(ti.ti_scope, "read write");
	return ti;
}

static void
hash_of(uint64_t n, uint8_t h[TOKEN_HASH_LEN])
{
	memset(h, 0xa5, TOKEN_HASH_LEN);
	memcpy(h, &n, sizeof(n));
}

static void
assert_same(const struct tok_info *a, const struct tok_info *b)
{
	cr_assert_eq(a->ti_state, b->ti_state);
	cr_assert_eq(a->ti_kind, b->ti_kind);
	cr_assert_eq(a->ti_id, b->ti_id);
	cr_assert_eq(a->ti_user_id, b->ti_user_id);
	cr_assert_eq(a->ti_expires, b->ti_expires);
	cr_assert_eq(a->ti_iat, b->ti_iat);
	cr_assert_eq(a->ti_until, b->ti_until);
	cr_assert_str_eq(a->ti_user, b->ti_user);
	cr_assert_str_eq(a->ti_client, b->ti_client);
	cr_assert_str_eq(a->ti_scope, b->ti_scope);
}

/* ---- the value codec -------------------------------------------------- */

Test(codec, round_trip_with_longest_strings)
{
	struct tok_info	 in, out;
	uint8_t		 buf[4096];
	int		 n;

	in = sample(-7);
	in.ti_state = TI_NEGATIVE;
	in.ti_kind = TOKEN_PAT;
	in.ti_expires = INT64_MAX;
	in.ti_iat = INT64_MIN;
	fill_str(in.ti_user, sizeof(in.ti_user), 'u');
	fill_str(in.ti_client, sizeof(in.ti_client), 'c');
	fill_str(in.ti_scope, sizeof(in.ti_scope), 's');
	n = cache_encode(&in, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	memset(&out, 0x55, sizeof(out));
	cr_assert_eq(cache_decode(buf, (size_t)n, &out), 0);
	assert_same(&in, &out);
}

Test(codec, empty_strings_round_trip)
{
	struct tok_info	 in, out;
	uint8_t		 buf[256];
	int		 n;

	/* A client-credentials token: no user; a PAT: no client. */
	in = sample(1);
	in.ti_user[0] = in.ti_client[0] = in.ti_scope[0] = '\0';
	in.ti_user_id = 0;
	n = cache_encode(&in, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	memset(&out, 'x', sizeof(out));
	cr_assert_eq(cache_decode(buf, (size_t)n, &out), 0);
	assert_same(&in, &out);
}

Test(codec, buffer_too_small_is_refused)
{
	struct tok_info	 in = sample(1);
	uint8_t		 buf[256];
	int		 n;

	n = cache_encode(&in, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	cr_assert_eq(cache_encode(&in, buf, (size_t)n - 1), -1);
	cr_assert_eq(cache_encode(&in, buf, (size_t)n), n);
}

Test(codec, every_truncation_is_refused)
{
	struct tok_info	 in = sample(9), out;
	uint8_t		 buf[256];
	int		 n, i;

	n = cache_encode(&in, buf, sizeof(buf));
	for (i = 0; i < n; i++)
		cr_assert_eq(cache_decode(buf, (size_t)i, &out), -1,
		    "a %d-byte prefix of a %d-byte value was accepted", i, n);
}

Test(codec, corrupt_values_are_refused)
{
	struct tok_info	 in = sample(9), out;
	uint8_t		 good[256], buf[300];
	uint16_t	 len;
	size_t		 user_at = 53;	/* after the fixed header */
	int		 n;

	n = cache_encode(&in, good, sizeof(good));
	cr_assert_gt(n, 0);

#define CORRUPT(what, stmt, size) do {					\
	memcpy(buf, good, (size_t)n);					\
	stmt;								\
	cr_assert_eq(cache_decode(buf, (size), &out), -1, what);	\
} while (0)

	CORRUPT("version", buf[0] = 0, (size_t)n);
	CORRUPT("version", buf[0] = 200, (size_t)n);
	CORRUPT("state", buf[1] = 7, (size_t)n);
	CORRUPT("kind", buf[2] = TOKEN_CODE + 1, (size_t)n);
	CORRUPT("trailing byte", buf[n] = 0, (size_t)n + 1);
	len = 0xffff;
	CORRUPT("user length past the end",
	    memcpy(buf + user_at, &len, 2), (size_t)n);
	len = 6;
	CORRUPT("user length overlapping the next field",
	    memcpy(buf + user_at, &len, 2), (size_t)n);
	CORRUPT("NUL inside a string", buf[user_at + 3] = '\0', (size_t)n);
	CORRUPT("allowlist longer than IP_MAX_ALLOW",
	    buf[52] = IP_MAX_ALLOW + 1, (size_t)n);
	CORRUPT("allowlist the value does not hold", buf[52] = 1, (size_t)n);
	CORRUPT("a rate without its window", buf[44] = 5, (size_t)n);
#undef CORRUPT
	/* The unmodified value still decodes: the checks above are not
	 * refusing everything. */
	cr_assert_eq(cache_decode(good, (size_t)n, &out), 0);
}

Test(codec, string_at_the_limit_is_refused)
{
	struct tok_info	 out;
	uint8_t		 buf[2048];
	uint16_t	 len;
	size_t		 off = 53;

	/* A user of TI_USER_LEN bytes leaves no room for the NUL. */
	memset(buf, 0, sizeof(buf));
	buf[0] = 2;
	len = TI_USER_LEN;
	memcpy(buf + off, &len, 2);
	memset(buf + off + 2, 'u', TI_USER_LEN);
	off += 2 + TI_USER_LEN;
	len = 0;
	memcpy(buf + off, &len, 2);
	memcpy(buf + off + 2, &len, 2);
	off += 4;
	cr_assert_eq(cache_decode(buf, off, &out), -1);
	/* One byte shorter is a well-formed value. */
	len = TI_USER_LEN - 1;
	memcpy(buf + 53, &len, 2);
	memmove(buf + 53 + 2 + TI_USER_LEN - 1, buf + 53 + 2 + TI_USER_LEN, 4);
	cr_assert_eq(cache_decode(buf, off - 1, &out), 0);
	cr_assert_eq(strlen(out.ti_user), TI_USER_LEN - 1);
}

/* ---- entry lifetime --------------------------------------------------- */

Test(until, valid_token_lives_cache_ttl_when_it_expires_later)
{
	struct tok_info	 ti = sample(1);

	ti.ti_expires = 1000 + 5000;
	cr_assert_eq(cache_until(&ti, 1000, 600, 10), 1600);
}

Test(until, valid_token_ends_at_its_expiry_when_sooner)
{
	struct tok_info	 ti = sample(1);

	ti.ti_expires = 1000 + 30;
	cr_assert_eq(cache_until(&ti, 1000, 600, 10), 1030);
}

Test(until, token_that_never_expires_lives_cache_ttl)
{
	struct tok_info	 ti = sample(1);

	ti.ti_expires = 0;
	cr_assert_eq(cache_until(&ti, 1000, 600, 10), 1600);
}

Test(until, already_expired_token_is_not_alive)
{
	struct tok_info	 ti = sample(1);

	ti.ti_expires = 999;
	cr_assert_leq(cache_until(&ti, 1000, 600, 10), 1000);
}

Test(until, negative_entry_lives_negative_ttl)
{
	struct tok_info	 ti = sample(1);

	ti.ti_state = TI_NEGATIVE;
	ti.ti_expires = 1005;	/* irrelevant for a negative entry */
	cr_assert_eq(cache_until(&ti, 1000, 600, 10), 1010);
	cr_assert_eq(cache_until(&ti, 1000, 600, 0), 1000);
}

/* ---- the environment -------------------------------------------------- */

static struct cache *
open_fresh(char **dirp, uint64_t map_size)
{
	char		 err[256];
	struct cache	*c;
	char		*dir = tmpdir();

	cr_assert_eq(cache_reset_dir(dir, map_size, err, sizeof(err)), 0,
	    "%s", err);
	c = cache_open(dir, map_size, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	*dirp = dir;
	return c;
}

Test(cache, put_get_del_clear)
{
	struct cache	*c;
	struct tok_info	 in, out;
	uint8_t		 h1[TOKEN_HASH_LEN], h2[TOKEN_HASH_LEN];
	uint8_t		 both[2][TOKEN_HASH_LEN];
	char		*dir;

	c = open_fresh(&dir, 16 * MIB);
	hash_of(1, h1);
	hash_of(2, h2);
	cr_assert_eq(cache_entries(c), 0);
	cr_assert_eq(cache_get(c, h1, &out), 0);

	in = sample(11);
	cr_assert_eq(cache_put(c, h1, &in, NULL, 0), 1);
	cr_assert_eq(cache_get(c, h1, &out), 1);
	assert_same(&in, &out);
	cr_assert_eq(cache_get(c, h2, &out), 0);

	/* Replace: a revocation turns the entry negative. */
	in.ti_state = TI_NEGATIVE;
	cr_assert_eq(cache_put(c, h1, &in, NULL, 0), 1);
	cr_assert_eq(cache_get(c, h1, &out), 1);
	cr_assert_eq(out.ti_state, TI_NEGATIVE);
	cr_assert_eq(cache_entries(c), 1);

	cr_assert_eq(cache_del(c, h1), 0);
	cr_assert_eq(cache_get(c, h1, &out), 0);
	cr_assert_eq(cache_del(c, h1), 0, "deleting an absent hash fails");

	cr_assert_eq(cache_put(c, h1, &in, NULL, 0), 1);
	cr_assert_eq(cache_put(c, h2, &in, NULL, 0), 1);
	cr_assert_eq(cache_entries(c), 2);
	memcpy(both[0], h1, TOKEN_HASH_LEN);
	memcpy(both[1], h2, TOKEN_HASH_LEN);
	cr_assert_eq(cache_del_many(c, (const uint8_t (*)[TOKEN_HASH_LEN])both,
	    2), 0);
	cr_assert_eq(cache_entries(c), 0);

	cr_assert_eq(cache_put(c, h1, &in, NULL, 0), 1);
	cr_assert_eq(cache_clear(c), 0);
	cr_assert_eq(cache_get(c, h1, &out), 0);
	cr_assert_eq(cache_entries(c), 0);
	cache_close(c);
	rmdir_all(dir);
}

Test(cache, epoch_moved_skips_the_put)
{
	struct cache		*c;
	struct tok_info		 in = sample(5), out;
	uint8_t			 h[TOKEN_HASH_LEN];
	volatile uint64_t	 epoch = 3;
	char			*dir;

	c = open_fresh(&dir, 16 * MIB);
	hash_of(5, h);
	/* A revocation bumped the epoch after this lookup read PostgreSQL:
	 * its (stale, valid) answer must not land in the cache. */
	cr_assert_eq(cache_put(c, h, &in, &epoch, 2), 0);
	cr_assert_eq(cache_get(c, h, &out), 0);
	cr_assert_eq(cache_put(c, h, &in, &epoch, 3), 1);
	cr_assert_eq(cache_get(c, h, &out), 1);
	cache_close(c);
	rmdir_all(dir);
}

Test(cache, entries_are_shared_between_processes)
{
	struct cache	*c;
	struct tok_info	 in = sample(77), out;
	uint8_t		 h[TOKEN_HASH_LEN];
	char		 err[256], *dir;
	pid_t		 pid;
	int		 st;

	c = open_fresh(&dir, 16 * MIB);
	hash_of(77, h);
	cr_assert_eq(cache_get(c, h, &out), 0);	/* a reset read txn exists */
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		struct cache *cc = cache_open(dir, 16 * MIB, err, sizeof(err));

		_exit(cc != NULL && cache_put(cc, h, &in, NULL, 0) == 1 ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* The renewed read transaction sees the other process's commit. */
	cr_assert_eq(cache_get(c, h, &out), 1);
	assert_same(&in, &out);
	cache_close(c);
	rmdir_all(dir);
}

Test(cache, reset_dir_forgets_the_previous_run)
{
	struct cache	*c;
	struct tok_info	 in = sample(1), out;
	uint8_t		 h[TOKEN_HASH_LEN];
	char		 err[256], *dir;

	c = open_fresh(&dir, 16 * MIB);
	hash_of(1, h);
	cr_assert_eq(cache_put(c, h, &in, NULL, 0), 1);
	cache_close(c);
	cr_assert_eq(cache_reset_dir(dir, 16 * MIB, err, sizeof(err)), 0);
	c = cache_open(dir, 16 * MIB, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(cache_get(c, h, &out), 0);
	cr_assert_eq(cache_entries(c), 0);
	cache_close(c);
	rmdir_all(dir);
}

Test(cache, reset_dir_creates_missing_directories)
{
	char		 top[64], dir[128], err[256], path[160];
	struct stat	 sb;

	snprintf(top, sizeof(top), "%s", tmpdir());
	snprintf(dir, sizeof(dir), "%s/a/b", top);
	cr_assert_eq(cache_reset_dir(dir, 16 * MIB, err, sizeof(err)), 0,
	    "%s", err);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	cr_assert_eq(stat(path, &sb), 0, "no data.mdb after reset");
	cr_assert_eq(sb.st_mode & 0777, 0600);
	cr_assert_eq(stat(dir, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0700);
	rmdir_all(dir);
	snprintf(path, sizeof(path), "%s/a", top);
	rmdir(path);
	rmdir(top);
}

Test(cache, unusable_dir_is_reported)
{
	char	 err[256] = "";

	cr_assert_eq(cache_reset_dir("/proc/version/cache", 16 * MIB, err,
	    sizeof(err)), -1);
	cr_assert_neq(err[0], '\0', "no reason given");
	cr_assert_null(cache_open("/proc/version/cache", 16 * MIB, err,
	    sizeof(err)));
}

/*
 * A child that opens the environment the way another worker would, then
 * waits to be killed.  With hold_reader it also sits inside a read
 * transaction, as a worker killed in the middle of cache_get would.  It
 * uses LMDB directly because the cache API never leaves a reader open.
 */
static pid_t
spawn_holder(const char *dir, uint64_t map_size, int hold_reader)
{
	MDB_env		*env;
	MDB_txn		*txn;
	char		 c;
	int		 p[2];
	pid_t		 pid;

	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		close(p[0]);
		if (mdb_env_create(&env) != 0 ||
		    mdb_env_set_mapsize(env, map_size) != 0 ||
		    mdb_env_set_maxreaders(env, 1024) != 0 ||
		    mdb_env_open(env, dir, MDB_NOSYNC | MDB_NOMETASYNC |
		    MDB_NOTLS | MDB_NORDAHEAD | MDB_WRITEMAP, 0600) != 0)
			_exit(1);
		if (hold_reader &&
		    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
			_exit(1);
		if (write(p[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	cr_assert_eq(read(p[0], &c, 1), 1, "holder did not start");
	close(p[0]);
	return pid;
}

static void
kill_holder(pid_t pid)
{
	int	 st;

	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
}

/*
 * Puts of distinct hashes until n succeeded; returns how many times the
 * entry count went down, i.e. how often a full map was cleared.
 */
static int
fill(struct cache *c, int from, int n)
{
	struct tok_info	 in = sample(1), out;
	uint8_t		 h[TOKEN_HASH_LEN];
	long long	 prev = -1, now;
	int		 i, clears = 0;

	fill_str(in.ti_scope, 200, 's');
	for (i = from; i < from + n; i++) {
		hash_of((uint64_t)i, h);
		in.ti_id = i;
		cr_assert_eq(cache_put(c, h, &in, NULL, 0), 1,
		    "put %d failed", i);
		now = cache_entries(c);
		if (now < prev)
			clears++;
		prev = now;
	}
	/* The last put is readable whatever happened before it. */
	cr_assert_eq(cache_get(c, h, &out), 1);
	cr_assert_eq(out.ti_id, from + n - 1);
	return clears;
}

Test(cache, full_map_is_cleared_and_the_put_succeeds)
{
	struct cache	*c;
	char		*dir;

	c = open_fresh(&dir, 1 * MIB);
	cr_assert_geq(fill(c, 0, 20000), 1, "1 MiB never filled up");
	cache_close(c);
	rmdir_all(dir);
}

Test(cache, reader_check_reclaims_a_killed_readers_slot)
{
	struct cache	*c;
	char		 err[256], *dir;
	pid_t		 keeper, reader;
	int		 dead = -1;

	c = open_fresh(&dir, 1 * MIB);
	fill(c, 0, 100);
	cache_close(c);
	/* The keeper stands for the workers still alive: while it holds the
	 * environment, nobody reinitialises the lock file on open, so the
	 * dead reader's slot stays taken until someone checks. */
	keeper = spawn_holder(dir, 1 * MIB, 0);
	reader = spawn_holder(dir, 1 * MIB, 1);
	kill_holder(reader);

	cr_assert_eq(cache_reader_check(dir, 1 * MIB, &dead), 0);
	cr_assert_geq(dead, 1, "the killed reader was not found");
	cr_assert_eq(cache_reader_check(dir, 1 * MIB, &dead), 0);
	cr_assert_eq(dead, 0, "the stale slot was not cleared");

	/* With the slot gone, nothing pins old pages: a full map is cleared
	 * and reused as if the reader had never existed. */
	c = cache_open(dir, 1 * MIB, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_geq(fill(c, 1000, 20000), 1);
	cache_close(c);
	kill_holder(keeper);
	rmdir_all(dir);
}

Test(cache, reader_check_finds_nothing_when_all_alive)
{
	char	*dir;
	pid_t	 reader;
	int	 dead = -1;
	struct cache *c;

	c = open_fresh(&dir, 16 * MIB);
	cache_close(c);
	reader = spawn_holder(dir, 16 * MIB, 1);
	cr_assert_eq(cache_reader_check(dir, 16 * MIB, &dead), 0);
	cr_assert_eq(dead, 0, "a live reader was counted as dead");
	kill_holder(reader);
	rmdir_all(dir);
}

Test(codec, limits_and_allowlist_round_trip)
{
	struct tok_info	 in = sample(11), out;
	uint8_t		 buf[4096];
	const char	*why;
	int		 n;

	in.ti_flags = TI_F_CANARY;
	in.ti_rate = 1000000;
	in.ti_rate_window = 86400;
	in.ti_nallow = IP_MAX_ALLOW;
	for (n = 0; n < IP_MAX_ALLOW; n++) {
		char	 s[32];

		snprintf(s, sizeof(s), "10.%d.0.0/16", n);
		cr_assert_eq(cidr_parse(s, &in.ti_allow[n], &why), 0);
	}
	n = cache_encode(&in, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	memset(&out, 0, sizeof(out));
	cr_assert_eq(cache_decode(buf, (size_t)n, &out), 0);
	cr_assert_eq(out.ti_flags, TI_F_CANARY);
	cr_assert_eq(out.ti_rate, 1000000);
	cr_assert_eq(out.ti_rate_window, 86400);
	cr_assert_eq(out.ti_nallow, IP_MAX_ALLOW);
	cr_assert_eq(memcmp(out.ti_allow, in.ti_allow, sizeof(in.ti_allow)), 0);
	/* A bit count past 128 is a foreign value. */
	buf[n - 1] = 129;
	cr_assert_eq(cache_decode(buf, (size_t)n, &out), -1);
	in.ti_nallow = IP_MAX_ALLOW + 1;
	cr_assert_eq(cache_encode(&in, buf, sizeof(buf)), -1);
}

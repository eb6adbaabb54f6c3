/*
 * The LMDB cache: token hash (32 bytes of SHA-256) -> encoded tok_info.
 *
 * One environment per process, opened after fork, one unnamed database.
 * The cache is disposable (the master clears it at every start and the
 * writer clears it when its LISTEN connection comes back), so it is opened
 * with MDB_NOSYNC | MDB_NOMETASYNC: a crash of the machine loses nothing
 * that PostgreSQL does not hold.  MDB_NOTLS ties a reader slot to our
 * MDB_txn rather than to the thread, which is what lets each handle keep
 * one read transaction and reset/renew it around every get: the hot path
 * then takes no lock and allocates nothing.
 *
 * MDB_WRITEMAP: writes go straight into the shared map instead of through
 * malloc'ed dirty pages and pwrite().  Measured here (50,000 random-hash
 * puts, 256 MiB map, one process): 1.2 us per put with it, 6 to 8 us
 * without; gets cost 0.11 us either way.  Its costs (a sparse data.mdb as
 * large as the map, no nested transactions) do not matter to a disposable
 * cache that uses none.
 *
 * The value layout (native byte order; the file never leaves this host):
 *
 *   0       version (CACHE_VERSION)
 *   1       ti_state
 *   2       ti_kind
 *   3..42   ti_id, ti_user_id, ti_expires, ti_iat, ti_until (int64 each)
 *   43      ti_flags
 *   44..51  ti_rate, ti_rate_window (uint32 each)
 *   52      ti_nallow (at most IP_MAX_ALLOW)
 *   53..    u16 length + bytes, for ti_user, ti_client, ti_scope in order
 *   then    ti_nallow CIDRs of 17 bytes (16 of address, 1 of bits)
 *
 * A hit decodes the allowlist only when there is one: the common PAT
 * costs the three bytes of its header fields.
 *
 * cache_decode checks every length against the value's size and the TI_*
 * limits, so a truncated or foreign value is a miss, never an overread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>
#include <lmdb.h>

#include "store/store.h"

#define CACHE_VERSION	2
#define CACHE_HDR_LEN	(3 + 5 * 8 + 1 + 2 * 4 + 1)
#define CACHE_CIDR_LEN	(IP_LEN + 1)
#define CACHE_VAL_MAX	(CACHE_HDR_LEN + 3 * 2 + TI_USER_LEN + \
			    TI_CLIENT_LEN + TI_SCOPE_LEN + \
			    IP_MAX_ALLOW * CACHE_CIDR_LEN)
#define CACHE_ENV_FLAGS	(MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS | \
			    MDB_NORDAHEAD | MDB_WRITEMAP)
#define CACHE_MAXREADERS 1024

struct cache {
	MDB_env	*ca_env;
	MDB_dbi	 ca_dbi;
	MDB_txn	*ca_rtxn;	/* reset between gets; NULL until the first */
};

/* ---- Entry lifetime and encoding -------------------------------------- */

int64_t
cache_until(const struct tok_info *ti, int64_t now, int cache_ttl,
    int negative_ttl)
{
	int64_t	 until;

	if (ti->ti_state != TI_VALID)
		return now + (negative_ttl > 0 ? negative_ttl : 0);
	until = now + (cache_ttl > 0 ? cache_ttl : 0);
	/* An expiry already past gives until <= now: the caller stores
	 * nothing, or the next get sees the entry as ended. */
	if (ti->ti_expires != 0 && ti->ti_expires < until)
		until = ti->ti_expires;
	return until;
}

static uint8_t *
put_str(uint8_t *p, const char *s, size_t max)
{
	uint16_t n;

	n = (uint16_t)strnlen(s, max - 1);
	memcpy(p, &n, sizeof(n));
	memcpy(p + sizeof(n), s, n);
	return p + sizeof(n) + n;
}

int
cache_encode(const struct tok_info *ti, uint8_t *buf, size_t buflen)
{
	size_t	 need;
	uint8_t	*p;
	uint32_t i;

	need = CACHE_HDR_LEN + 3 * sizeof(uint16_t) +
	    strnlen(ti->ti_user, TI_USER_LEN - 1) +
	    strnlen(ti->ti_client, TI_CLIENT_LEN - 1) +
	    strnlen(ti->ti_scope, TI_SCOPE_LEN - 1) +
	    ti->ti_nallow * CACHE_CIDR_LEN;
	if (ti->ti_nallow > IP_MAX_ALLOW || ti->ti_flags > 255)
		return -1;
	/* A field without its NUL is refused, not cut (put_str's max). */
	if (strnlen(ti->ti_user, TI_USER_LEN) == TI_USER_LEN ||
	    strnlen(ti->ti_client, TI_CLIENT_LEN) == TI_CLIENT_LEN ||
	    strnlen(ti->ti_scope, TI_SCOPE_LEN) == TI_SCOPE_LEN)
		return -1;
	if (buflen < need || ti->ti_state < 0 || ti->ti_state > 255 ||
	    ti->ti_kind < 0 || ti->ti_kind > 255)
		return -1;
	buf[0] = CACHE_VERSION;
	buf[1] = (uint8_t)ti->ti_state;
	buf[2] = (uint8_t)ti->ti_kind;
	memcpy(buf + 3, &ti->ti_id, 8);
	memcpy(buf + 11, &ti->ti_user_id, 8);
	memcpy(buf + 19, &ti->ti_expires, 8);
	memcpy(buf + 27, &ti->ti_iat, 8);
	memcpy(buf + 35, &ti->ti_until, 8);
	buf[43] = (uint8_t)ti->ti_flags;
	memcpy(buf + 44, &ti->ti_rate, 4);
	memcpy(buf + 48, &ti->ti_rate_window, 4);
	buf[52] = (uint8_t)ti->ti_nallow;
	p = buf + CACHE_HDR_LEN;
	p = put_str(p, ti->ti_user, TI_USER_LEN);
	p = put_str(p, ti->ti_client, TI_CLIENT_LEN);
	p = put_str(p, ti->ti_scope, TI_SCOPE_LEN);
	for (i = 0; i < ti->ti_nallow; i++) {
		memcpy(p, ti->ti_allow[i].cr_addr, IP_LEN);
		p[IP_LEN] = ti->ti_allow[i].cr_bits;
		p += CACHE_CIDR_LEN;
	}
	return (int)(p - buf);
}

/*
 * Copy one length-prefixed string at *off into dst (max bytes with the
 * NUL).  Refuses a length past the value's end, one that does not fit, and
 * an embedded NUL (which would make the string mean something shorter).
 */
static int
get_str(const uint8_t *buf, size_t len, size_t *off, char *dst, size_t max)
{
	uint16_t n;

	if (len - *off < sizeof(n))
		return -1;
	memcpy(&n, buf + *off, sizeof(n));
	*off += sizeof(n);
	if (n >= max || n > len - *off || memchr(buf + *off, '\0', n) != NULL)
		return -1;
	memcpy(dst, buf + *off, n);
	dst[n] = '\0';
	*off += n;
	return 0;
}

int
cache_decode(const uint8_t *buf, size_t len, struct tok_info *ti)
{
	size_t	 off = CACHE_HDR_LEN;
	uint32_t i;

	if (len < CACHE_HDR_LEN || buf[0] != CACHE_VERSION)
		return -1;
	if (buf[1] != TI_VALID && buf[1] != TI_NEGATIVE)
		return -1;
	if (buf[2] > TOKEN_CODE)
		return -1;
	ti->ti_state = buf[1];
	ti->ti_kind = buf[2];
	memcpy(&ti->ti_id, buf + 3, 8);
	memcpy(&ti->ti_user_id, buf + 11, 8);
	memcpy(&ti->ti_expires, buf + 19, 8);
	memcpy(&ti->ti_iat, buf + 27, 8);
	memcpy(&ti->ti_until, buf + 35, 8);
	ti->ti_flags = buf[43];
	memcpy(&ti->ti_rate, buf + 44, 4);
	memcpy(&ti->ti_rate_window, buf + 48, 4);
	ti->ti_nallow = buf[52];
	if (ti->ti_nallow > IP_MAX_ALLOW || (ti->ti_rate != 0 &&
	    ti->ti_rate_window == 0))
		return -1;
	if (get_str(buf, len, &off, ti->ti_user, TI_USER_LEN) == -1 ||
	    get_str(buf, len, &off, ti->ti_client, TI_CLIENT_LEN) == -1 ||
	    get_str(buf, len, &off, ti->ti_scope, TI_SCOPE_LEN) == -1)
		return -1;
	if (len - off != ti->ti_nallow * CACHE_CIDR_LEN)
		return -1;
	for (i = 0; i < ti->ti_nallow; i++, off += CACHE_CIDR_LEN) {
		memcpy(ti->ti_allow[i].cr_addr, buf + off, IP_LEN);
		ti->ti_allow[i].cr_bits = buf[off + IP_LEN];
		if (ti->ti_allow[i].cr_bits > 128)
			return -1;
	}
	return 0;
}

/* ---- Environment ------------------------------------------------------ */

/* mkdir -p with mode 0700 for the directories it creates. */
static int
mkdir_p(const char *dir, char *err, size_t errlen)
{
	char	 path[4096];
	size_t	 i, n;

	n = strlen(dir);
	if (n == 0 || n >= sizeof(path)) {
		snprintf(err, errlen, "cache_dir: bad path");
		return -1;
	}
	memcpy(path, dir, n + 1);
	for (i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", path,
			    strerror(errno));
			return -1;
		}
		path[i] = dir[i];
	}
	return 0;
}

int
cache_dir_check(const char *dir, char *err, size_t errlen)
{
	struct stat	 st;

	if (stat(dir, &st) == -1) {
		if (errno == ENOENT)
			return 0;	/* created 0700 at start */
		snprintf(err, errlen, "cache_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "cache_dir %s: not a directory", dir);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "cache_dir %s: owned by uid %ld, not by "
		    "uid %ld that tokend runs as", dir, (long)st.st_uid,
		    (long)geteuid());
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "cache_dir %s: mode %04o is group- or "
		    "world-writable (chmod go-w it)", dir,
		    (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

int
cache_dir_in_memory(const char *dir)
{
	struct statfs	 fs;

	if (statfs(dir, &fs) == -1)
		return -1;
	return fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC;
}

/* Create and open an environment with the flags every process uses. */
static MDB_env *
env_open(const char *dir, uint64_t map_size, char *err, size_t errlen)
{
	MDB_env	*env = NULL;
	int	 rc;

	if ((rc = mdb_env_create(&env)) != 0) {
		snprintf(err, errlen, "mdb_env_create: %s", mdb_strerror(rc));
		return NULL;
	}
	if ((rc = mdb_env_set_mapsize(env, (size_t)map_size)) != 0 ||
	    (rc = mdb_env_set_maxreaders(env, CACHE_MAXREADERS)) != 0) {
		snprintf(err, errlen, "mdb_env_set: %s", mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_env_open(env, dir, CACHE_ENV_FLAGS, 0600)) != 0) {
		snprintf(err, errlen, "mdb_env_open %s: %s", dir,
		    mdb_strerror(rc));
		goto fail;
	}
	return env;
fail:
	mdb_env_close(env);
	return NULL;
}

static int
unlink_in(const char *dir, const char *name, char *err, size_t errlen)
{
	char	 path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path)) {
		snprintf(err, errlen, "cache_dir: path too long");
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		snprintf(err, errlen, "unlink %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int
cache_reset_dir(const char *dir, uint64_t map_size, char *err,
    size_t errlen)
{
	MDB_env	*env;

	if (mkdir_p(dir, err, errlen) == -1 ||
	    unlink_in(dir, "data.mdb", err, errlen) == -1 ||
	    unlink_in(dir, "lock.mdb", err, errlen) == -1)
		return -1;
	/* Create the files now, so a permission problem shows at start and
	 * not in the first worker. */
	if ((env = env_open(dir, map_size, err, errlen)) == NULL)
		return -1;
	mdb_env_close(env);
	return 0;
}

struct cache *
cache_open(const char *dir, uint64_t map_size, char *err, size_t errlen)
{
	struct cache	*c;
	MDB_txn		*txn = NULL;
	int		 rc;

	if (mkdir_p(dir, err, errlen) == -1)
		return NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "calloc: %s", strerror(errno));
		return NULL;
	}
	if ((c->ca_env = env_open(dir, map_size, err, errlen)) == NULL)
		goto fail;
	/* The unnamed database needs no write transaction to open. */
	if ((rc = mdb_txn_begin(c->ca_env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &c->ca_dbi)) != 0) {
		snprintf(err, errlen, "mdb_dbi_open: %s", mdb_strerror(rc));
		if (rc != 0 && txn != NULL)
			mdb_txn_abort(txn);
		goto fail;
	}
	mdb_txn_abort(txn);
	return c;
fail:
	if (c->ca_env != NULL)
		mdb_env_close(c->ca_env);
	free(c);
	return NULL;
}

void
cache_close(struct cache *c)
{
	if (c == NULL)
		return;
	if (c->ca_rtxn != NULL)
		mdb_txn_abort(c->ca_rtxn);
	mdb_env_close(c->ca_env);
	free(c);
}

/* ---- Reads ------------------------------------------------------------ */

/*
 * Make c->ca_rtxn a live read transaction: renew the reset one, or begin a
 * new one.  MDB_MAP_RESIZED (another process grew the map, after a reload
 * with a larger cache_map_size) is answered by adopting the new size.
 */
static int
rtxn_start(struct cache *c)
{
	int	 rc;

	if (c->ca_rtxn != NULL) {
		if ((rc = mdb_txn_renew(c->ca_rtxn)) == 0)
			return 0;
		mdb_txn_abort(c->ca_rtxn);
		c->ca_rtxn = NULL;
		if (rc != MDB_MAP_RESIZED)
			return rc;
		mdb_env_set_mapsize(c->ca_env, 0);
	}
	rc = mdb_txn_begin(c->ca_env, NULL, MDB_RDONLY, &c->ca_rtxn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(c->ca_env, 0);
		rc = mdb_txn_begin(c->ca_env, NULL, MDB_RDONLY, &c->ca_rtxn);
	}
	if (rc != 0)
		c->ca_rtxn = NULL;
	return rc;
}

int
cache_get(struct cache *c, const uint8_t hash[TOKEN_HASH_LEN],
    struct tok_info *ti)
{
	MDB_val	 key = { TOKEN_HASH_LEN, (void *)hash };
	MDB_val	 val;
	int	 rc, ret;

	if (rtxn_start(c) != 0)
		return -1;
	rc = mdb_get(c->ca_rtxn, c->ca_dbi, &key, &val);
	if (rc == 0)
		/* The mapped value dies with the transaction: decode now.  A
		 * value we cannot read is a miss; the next put replaces it. */
		ret = cache_decode(val.mv_data, val.mv_size, ti) == 0 ? 1 : 0;
	else
		ret = rc == MDB_NOTFOUND ? 0 : -1;
	mdb_txn_reset(c->ca_rtxn);
	return ret;
}

long long
cache_entries(struct cache *c)
{
	MDB_stat st;

	if (mdb_env_stat(c->ca_env, &st) != 0)
		return -1;
	return (long long)st.ms_entries;
}

/* Pages up to the last one written are in use (or on LMDB's free list,
 * which is reused before the map grows): what cache_map_size must hold. */
int
cache_map_use(struct cache *c, uint64_t *used, uint64_t *size)
{
	MDB_envinfo	 info;
	MDB_stat	 st;

	if (mdb_env_info(c->ca_env, &info) != 0 ||
	    mdb_env_stat(c->ca_env, &st) != 0)
		return -1;
	*used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	*size = info.me_mapsize;
	return 0;
}

/* ---- Writes ----------------------------------------------------------- */

static int
wtxn_begin(struct cache *c, MDB_txn **txn)
{
	int	 rc;

	rc = mdb_txn_begin(c->ca_env, NULL, 0, txn);
	if (rc == MDB_MAP_RESIZED) {
		/* Adopting the new size needs no transaction of ours alive:
		 * drop the (reset) read one; cache_get begins a new one. */
		if (c->ca_rtxn != NULL) {
			mdb_txn_abort(c->ca_rtxn);
			c->ca_rtxn = NULL;
		}
		mdb_env_set_mapsize(c->ca_env, 0);
		rc = mdb_txn_begin(c->ca_env, NULL, 0, txn);
	}
	return rc;
}

/*
 * One put attempt.  Returns 1 stored, 0 skipped (epoch moved), or an LMDB
 * error code negated (so MDB_MAP_FULL can be told apart).
 */
static int
put_once(struct cache *c, MDB_val *key, MDB_val *val,
    const volatile uint64_t *epoch, uint64_t seen_epoch)
{
	MDB_txn	*txn;
	int	 rc;

	if ((rc = wtxn_begin(c, &txn)) != 0)
		return -abs(rc);
	/* Checked under LMDB's writer lock: an invalidation that bumped the
	 * epoch before its own delete cannot slip between this check and our
	 * commit, since its delete needs the same lock. */
	if (epoch != NULL &&
	    __atomic_load_n(epoch, __ATOMIC_ACQUIRE) != seen_epoch) {
		mdb_txn_abort(txn);
		return 0;
	}
	if ((rc = mdb_put(txn, c->ca_dbi, key, val, 0)) != 0) {
		mdb_txn_abort(txn);
		return -abs(rc);
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return -abs(rc);
	return 1;
}

int
cache_put(struct cache *c, const uint8_t hash[TOKEN_HASH_LEN],
    const struct tok_info *ti, const volatile uint64_t *epoch,
    uint64_t seen_epoch)
{
	uint8_t	 buf[CACHE_VAL_MAX];
	MDB_val	 key = { TOKEN_HASH_LEN, (void *)hash };
	MDB_val	 val;
	int	 n, rc;

	if ((n = cache_encode(ti, buf, sizeof(buf))) == -1)
		return -1;
	val.mv_size = (size_t)n;
	val.mv_data = buf;
	rc = put_once(c, &key, &val, epoch, seen_epoch);
	if (rc == -abs(MDB_MAP_FULL)) {
		/* The map is full of entries that PostgreSQL can give back:
		 * start over rather than fail every miss from now on. */
		if (cache_clear(c) == -1)
			return -1;
		rc = put_once(c, &key, &val, epoch, seen_epoch);
	}
	return rc < 0 ? -1 : rc;
}

int
cache_del_many(struct cache *c, const uint8_t (*hashes)[TOKEN_HASH_LEN],
    size_t n)
{
	MDB_txn	*txn;
	MDB_val	 key;
	size_t	 i;
	int	 rc;

	if (wtxn_begin(c, &txn) != 0)
		return -1;
	for (i = 0; i < n; i++) {
		key.mv_size = TOKEN_HASH_LEN;
		key.mv_data = (void *)hashes[i];
		rc = mdb_del(txn, c->ca_dbi, &key, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			mdb_txn_abort(txn);
			return -1;
		}
	}
	return mdb_txn_commit(txn) == 0 ? 0 : -1;
}

int
cache_del(struct cache *c, const uint8_t hash[TOKEN_HASH_LEN])
{
	return cache_del_many(c, (const uint8_t (*)[TOKEN_HASH_LEN])hash, 1);
}

int
cache_clear(struct cache *c)
{
	MDB_txn	*txn;

	if (wtxn_begin(c, &txn) != 0)
		return -1;
	if (mdb_drop(txn, c->ca_dbi, 0) != 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	return mdb_txn_commit(txn) == 0 ? 0 : -1;
}

/* ---- Master ----------------------------------------------------------- */

int
cache_reader_check(const char *dir, uint64_t map_size, int *dead)
{
	char	 err[256];
	MDB_env	*env;
	int	 rc;

	*dead = 0;
	if ((env = env_open(dir, map_size, err, sizeof(err))) == NULL)
		return -1;
	rc = mdb_reader_check(env, dead);
	mdb_env_close(env);
	return rc == 0 ? 0 : -1;
}

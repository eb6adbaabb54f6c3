/*
 * The client rate limit: failed OAuth client authentications per client
 * id, counted by every worker in one shared table (shm/README.md, "Login
 * rate limit").  Password logins are counted in PostgreSQL instead, where
 * every box sharing the database sees them (tokend_login_attempt); client
 * failures stay here, per box, because their cost is argon2id on this box
 * and the check must cost no query.
 *
 * Each entry is one 64-bit word, changed only by compare-and-swap, so no
 * process ever holds a lock: a worker killed in the middle of an update
 * leaves the old word or the new one, and nobody waits on it.
 *
 *     bits 63..32  window start, unix seconds (first failure of the window)
 *     bits 31..16  failures in the window (saturating)
 *     bits 15..0   tag: 16 more bits of the name's hash, never 0
 *
 * A name's hash picks one set of RL_WAYS words; its word is the one with
 * its tag.  The hash is keyed with this master's random instance id, so
 * nobody outside can choose names that share a set with a victim's.
 */
#include <string.h>

#include <openssl/evp.h>

#include "shm/shm.h"

#define RL_START(w)	((int64_t)((w) >> 32))
#define RL_COUNT(w)	((unsigned)(((w) >> 16) & 0xffff))
#define RL_TAG(w)	((unsigned)((w) & 0xffff))
#define RL_WORD(start, count, tag) \
	(((uint64_t)(uint32_t)(start) << 32) | ((uint64_t)(count) << 16) | \
	(uint64_t)(tag))

/* The set (its first word) and tag of name. */
static uint64_t *
rl_set(struct shm *shm, const char *name, unsigned *tag)
{
	uint8_t		 md[EVP_MAX_MD_SIZE];
	unsigned	 mdlen = 0, set;
	EVP_MD_CTX	*ctx;

	memset(md, 0, sizeof(md));
	if ((ctx = EVP_MD_CTX_new()) != NULL) {
		if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestUpdate(ctx, shm->sh_instance,
		    sizeof(shm->sh_instance)) != 1 ||
		    EVP_DigestUpdate(ctx, name, strlen(name)) != 1 ||
		    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
			memset(md, 0, sizeof(md));
		EVP_MD_CTX_free(ctx);
	}
	set = ((unsigned)md[0] << 24 | (unsigned)md[1] << 16 |
	    (unsigned)md[2] << 8 | md[3]) % RL_SETS;
	*tag = ((unsigned)md[4] << 8 | md[5]);
	if (*tag == 0)
		*tag = 1;
	return &shm->sh_login_rl[(size_t)set * RL_WAYS];
}

/* A word of name's whose window is still open at now. */
static int
rl_live(uint64_t w, unsigned tag, int64_t now, int window)
{
	return w != 0 && RL_TAG(w) == tag && now < RL_START(w) + window &&
	    now >= RL_START(w);
}

int
ratelimit_check(struct shm *shm, const char *name, int64_t now, int window,
    int max)
{
	uint64_t	*set, w;
	unsigned	 tag, count = 0;
	int64_t		 end = 0;
	int		 i;

	set = rl_set(shm, name, &tag);
	/* Two workers inserting the same name at once may each take a way:
	 * the name's count is the sum of its live words. */
	for (i = 0; i < RL_WAYS; i++) {
		w = __atomic_load_n(&set[i], __ATOMIC_RELAXED);
		if (!rl_live(w, tag, now, window))
			continue;
		count += RL_COUNT(w);
		if (RL_START(w) + window > end)
			end = RL_START(w) + window;
	}
	if (count < (unsigned)max)
		return 0;
	return end - now > 0 ? (int)(end - now) : 1;
}

/* The way to give a name that has none: empty, else stale, else the one
 * with the fewest failures. */
static int
rl_victim(const uint64_t *seen, int64_t now, int window)
{
	int	 i, best = 0;

	for (i = 0; i < RL_WAYS; i++) {
		if (seen[i] == 0 || now >= RL_START(seen[i]) + window ||
		    now < RL_START(seen[i]))
			return i;
		if (RL_COUNT(seen[i]) < RL_COUNT(seen[best]))
			best = i;
	}
	return best;
}

void
ratelimit_fail(struct shm *shm, const char *name, int64_t now, int window)
{
	uint64_t	*set, seen[RL_WAYS], want;
	unsigned	 tag, n;
	int		 i, tries;

	set = rl_set(shm, name, &tag);
	/* A failed CAS means another worker changed the set: look again.
	 * Bounded, so a pathological race cannot spin forever. */
	for (tries = 0; tries < 64; tries++) {
		for (i = 0; i < RL_WAYS; i++)
			seen[i] = __atomic_load_n(&set[i], __ATOMIC_RELAXED);
		for (i = 0; i < RL_WAYS; i++)
			if (rl_live(seen[i], tag, now, window))
				break;
		if (i < RL_WAYS) {
			n = RL_COUNT(seen[i]);
			want = RL_WORD(RL_START(seen[i]), n < 0xffff ? n + 1 :
			    n, tag);
		} else {
			i = rl_victim(seen, now, window);
			want = RL_WORD(now, 1, tag);
		}
		if (__atomic_compare_exchange_n(&set[i], &seen[i], want, 0,
		    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			return;
	}
}

void
ratelimit_reset(struct shm *shm, const char *name)
{
	uint64_t	*set, w;
	unsigned	 tag;
	int		 i;

	set = rl_set(shm, name, &tag);
	for (i = 0; i < RL_WAYS; i++) {
		w = __atomic_load_n(&set[i], __ATOMIC_RELAXED);
		/* Lost to a concurrent change: that word is newer anyway. */
		if (w != 0 && RL_TAG(w) == tag)
			__atomic_compare_exchange_n(&set[i], &w, 0, 0,
			    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
	}
}

/* ---- per-PAT rate limits (README "Per-token rate limits") ---------------- */

/*
 * A fixed window per token: window number now / window.  One word:
 *
 *     bits 63..48  tag: 16 bits of the token id's hash, never 0
 *     bits 47..24  window number (mod 2^24)
 *     bits 23..0   uses in that window (at most TRL_MAX_RATE)
 *
 * Token ids are not chosen by clients, so a plain mix of the id picks the
 * set; a way is found by its tag, else an empty word is taken, else the
 * one with the fewest uses (an eviction lets that token start again).
 */
#define TRL_TAG(w)	((unsigned)((w) >> 48))
#define TRL_WIN(w)	((uint32_t)(((w) >> 24) & 0xffffff))
#define TRL_COUNT(w)	((uint32_t)((w) & 0xffffff))
#define TRL_WORD(tag, win, n) (((uint64_t)(tag) << 48) | \
	((uint64_t)((win) & 0xffffff) << 24) | (uint64_t)(n))

static uint64_t
trl_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The way of set holding tag, else the one to take for it. */
static int
trl_way(uint64_t *set, unsigned tag, uint64_t *seen)
{
	uint64_t	 w;
	int		 i, pick = 0;

	for (i = 0; i < TRL_WAYS; i++) {
		seen[i] = w = __atomic_load_n(&set[i], __ATOMIC_RELAXED);
		if (w != 0 && TRL_TAG(w) == tag)
			return i;
	}
	for (i = 0; i < TRL_WAYS; i++) {
		if (seen[i] == 0)
			return i;
		if (TRL_COUNT(seen[i]) < TRL_COUNT(seen[pick]))
			pick = i;
	}
	return pick;
}

int
ratelimit_token(struct shm *shm, int64_t token, int64_t now, uint32_t max,
    uint32_t window)
{
	uint64_t	 h = trl_mix((uint64_t)token), seen[TRL_WAYS], nw;
	uint64_t	*set = &shm->sh_token_rl[(h % TRL_SETS) * TRL_WAYS];
	unsigned	 tag = (unsigned)(h >> 48);
	uint32_t	 win;
	int		 i;

	if (max == 0 || window == 0)
		return 0;
	if (max > TRL_MAX_RATE)
		max = TRL_MAX_RATE;
	if (tag == 0)
		tag = 1;
	win = (uint32_t)((uint64_t)now / window) & 0xffffff;
	for (;;) {
		i = trl_way(set, tag, seen);
		if (seen[i] == 0 || TRL_TAG(seen[i]) != tag ||
		    TRL_WIN(seen[i]) != win)
			nw = TRL_WORD(tag, win, 1);
		else if (TRL_COUNT(seen[i]) >= max)
			return (int)(window - (uint64_t)now % window);
		else
			nw = seen[i] + 1;
		if (__atomic_compare_exchange_n(&set[i], &seen[i], nw, 0,
		    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			return 0;
	}
}

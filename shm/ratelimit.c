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

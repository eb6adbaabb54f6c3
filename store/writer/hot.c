/*
 * The writer's memory of each token's newest use it has flushed, into
 * tokens or into usage_deltas (migration 021): a token used less than
 * usage_fold_interval before is "hot", and in a busy flush its uses go to
 * usage_deltas, to be folded later, instead of costing a row update each
 * flush.  A token in use all the time stays hot, so its row is written by
 * the folds only; its first use after that long without one is not hot,
 * and reaches tokens in its own flush.
 *
 * A direct-mapped table: one slot per hash of the token id, the newest
 * token overwriting whatever held its slot.  Forgetting is always safe (a
 * forgotten token is written directly, as before 021); only remembering a
 * token wrongly could delay its first use after a quiet period, and a slot
 * holds the whole id, so it cannot.  2^20 slots (16 MiB of address space,
 * touched only as tokens come) keep almost every one of 100,000 tokens
 * used a second.
 */
#include "store/writer/writer.h"

#define HOT_BITS	20
#define HOT_CAP		(1u << HOT_BITS)

static struct hot_slot {
	int64_t	 hs_token;	/* 0: empty (ids start at 1) */
	int64_t	 hs_ms;		/* its newest use flushed (monotonic) */
} hot_slots[HOT_CAP];

static uint32_t
hot_slot(int64_t token)
{
	return (uint32_t)(((uint64_t)token * 0x9e3779b97f4a7c15ull) >>
	    (64 - HOT_BITS));
}

int
hot_is(int64_t token, int64_t now_ms, int64_t window_ms)
{
	const struct hot_slot *s = &hot_slots[hot_slot(token)];

	return s->hs_token == token && now_ms - s->hs_ms < window_ms;
}

void
hot_prefetch(int64_t token)
{
	__builtin_prefetch(&hot_slots[hot_slot(token)]);
}

void
hot_mark(int64_t token, int64_t ms)
{
	struct hot_slot	*s = &hot_slots[hot_slot(token)];

	s->hs_token = token;
	s->hs_ms = ms;
}

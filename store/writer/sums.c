/*
 * What this writer has put into usage_deltas since its last fold
 * (migration 021), summed per token: the uses, the newest use, and its
 * address; and the ids of those rows.
 *
 * The fold used to have PostgreSQL unnest and group every element of every
 * row: with 100,000 tokens in use, one element per token and flush, 60
 * flushes a fold, that is millions of elements sorted (the newest address
 * wants an ordered aggregate) to update 100,000 rows.  The writer sent
 * those elements; it can keep their sums as it goes, one merge of two
 * sorted arrays a flush, and send the sums instead.  The fold statement
 * uses them only when the rows it deletes are exactly the rows these sums
 * were made from (writer.c, usage_fold_sql); otherwise, after a flush
 * whose commit is in doubt or a fold by another writer, it aggregates the
 * rows as before.  Either way each row is counted once, by whichever
 * statement deleted it.
 *
 * The sums are "lost" (the fold aggregates the rows) when they would pass
 * SUMS_MAX tokens or memory runs out; they are known again after the next
 * fold.  The row ids are kept whatever happens: the fold deletes this
 * writer's rows by id.
 */
#include <stdlib.h>
#include <string.h>

#include "store/writer/writer.h"

#define SUMS_MAX	(1u << 19)	/* 524,288 tokens, 20 MiB */

static struct sums {
	struct usum	*s_sum;		/* ascending by token */
	size_t		 s_n, s_cap;
	struct usum	*s_stage;	/* the batch being sent */
	size_t		 s_nstage, s_stagecap;
	int64_t		*s_rows;
	size_t		 s_nrows, s_rowcap;
	int		 s_lost;
	int		 s_stage_lost;
} S;

void
sums_stage_reset(void)
{
	S.s_nstage = 0;
	S.s_stage_lost = 0;
}

void
sums_stage(int64_t token, uint64_t count, int64_t ms,
    const uint8_t ip[IP_LEN])
{
	struct usum	*u;

	if (S.s_stage_lost || S.s_lost)
		return;
	if (array_room(&S.s_stage, &S.s_stagecap, S.s_nstage + 1,
	    sizeof(*u), 4096) == -1) {
		S.s_stage_lost = 1;
		return;
	}
	u = &S.s_stage[S.s_nstage++];
	u->us_token = token;
	u->us_count = count;
	u->us_ms = ms;
	memcpy(u->us_ip, ip, IP_LEN);
}

/*
 * The staged batch into the sums, in place: merge from the back into room
 * for both, then close the gap the tokens present in both left at the
 * front.  Both are ascending by token, one entry per token.
 */
static void
sums_merge(void)
{
	struct usum	*a = S.s_sum, *b = S.s_stage;
	size_t		 i = S.s_n, j = S.s_nstage, k = S.s_n + S.s_nstage;

	while (j > 0) {
		if (i > 0 && a[i - 1].us_token > b[j - 1].us_token)
			a[--k] = a[--i];
		else if (i > 0 && a[i - 1].us_token == b[j - 1].us_token) {
			struct usum *o = &a[--i], *n = &b[--j];

			o->us_count += n->us_count;
			if (n->us_ms > o->us_ms)
				o->us_ms = n->us_ms;
			/* The batch is the newer: its address, if any. */
			if (!ip_is_none(n->us_ip))
				memcpy(o->us_ip, n->us_ip, IP_LEN);
			a[--k] = *o;
		} else
			a[--k] = b[--j];
	}
	/* a[0..i) stayed where they were; a[k..) is the rest. */
	if (k > i)
		memmove(a + i, a + k, (S.s_n + S.s_nstage - k) * sizeof(*a));
	S.s_n = i + (S.s_n + S.s_nstage - k);
}

void
sums_committed(int64_t row)
{
	if (array_room(&S.s_rows, &S.s_rowcap, S.s_nrows + 1,
	    sizeof(*S.s_rows), 4096) == -1) {
		/* The row is in usage_deltas but not in the list: the fold
		 * leaves it to a later fold, which takes it as another
		 * writer's (older than its stale age) and aggregates. */
		S.s_lost = 1;
		sums_stage_reset();
		return;
	}
	S.s_rows[S.s_nrows++] = row;
	if (!S.s_lost && (S.s_stage_lost || S.s_n + S.s_nstage > SUMS_MAX ||
	    array_room(&S.s_sum, &S.s_cap, S.s_n + S.s_nstage,
	    sizeof(*S.s_sum), 4096) == -1))
		S.s_lost = 1;
	if (!S.s_lost)
		sums_merge();
	sums_stage_reset();
}

void
sums_clear(void)
{
	S.s_n = 0;
	S.s_nrows = 0;
	S.s_lost = 0;
	sums_stage_reset();
}

int
sums_get(const struct usum **sum, size_t *n)
{
	*sum = S.s_lost ? NULL : S.s_sum;
	*n = S.s_lost ? 0 : S.s_n;
	return !S.s_lost;
}

const int64_t *
sums_rows(size_t *n)
{
	*n = S.s_nrows;
	return S.s_rows;
}

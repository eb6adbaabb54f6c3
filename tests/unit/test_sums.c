/*
 * store/writer/sums.c: the writer's sums of what it put into usage_deltas.
 * The fold writes them into tokens in place of the rows, so they must be
 * exactly the rows' aggregate: the uses summed, the newest use, the newest
 * address, per token, over the committed batches only.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "store/writer/writer.h"

#define NTOK	5000

static struct want {
	uint64_t	 count;
	int64_t		 ms;
	uint8_t		 ip[IP_LEN];
} want[NTOK];

static void
ip_of(uint8_t ip[IP_LEN], unsigned v)
{
	memset(ip, 0, IP_LEN);
	if (v == 0)
		return;		/* no address */
	ip[10] = ip[11] = 0xff;
	ip[12] = 10;
	ip[13] = (uint8_t)(v >> 8);
	ip[14] = (uint8_t)v;
	ip[15] = 1;
}

/* One batch of about n distinct tokens, ascending, staged; committed as
 * row when commit, and then into want. */
static void
batch(int64_t ms, size_t n, int commit, int64_t row)
{
	static const uint8_t none[IP_LEN];
	uint8_t		 ip[IP_LEN];
	int64_t		 t;

	sums_stage_reset();
	for (t = 1; t < NTOK; t++) {
		uint64_t c;
		unsigned v;

		if ((size_t)(rand() % NTOK) >= n)
			continue;
		c = 1 + (uint64_t)(rand() % 1000);
		v = (unsigned)(rand() % 3 == 0 ? 0 : rand() % 60000 + 1);
		ip_of(ip, v);
		sums_stage(t, c, ms, ip);
		if (!commit)
			continue;
		want[t].count += c;
		want[t].ms = ms;
		if (memcmp(ip, none, IP_LEN) != 0)
			memcpy(want[t].ip, ip, IP_LEN);
	}
	if (commit)
		sums_committed(row);
}

static void
check(void)
{
	const struct usum *u;
	size_t		 n, i, k = 0;
	int64_t		 t;

	cr_assert(sums_get(&u, &n));
	for (t = 1; t < NTOK; t++) {
		if (want[t].count == 0)
			continue;
		cr_assert_lt(k, n, "token %lld missing", (long long)t);
		cr_assert_eq(u[k].us_token, t, "ascending, once each");
		cr_assert_eq(u[k].us_count, want[t].count);
		cr_assert_eq(u[k].us_ms, want[t].ms);
		cr_assert(memcmp(u[k].us_ip, want[t].ip, IP_LEN) == 0,
		    "newest address of token %lld", (long long)t);
		k++;
	}
	cr_assert_eq(k, n, "no token the batches did not have");
	for (i = 1; i < n; i++)
		cr_assert_lt(u[i - 1].us_token, u[i].us_token);
}

Test(sums, equal_the_committed_batches_aggregate)
{
	const int64_t	*rows;
	size_t		 n;
	int		 b;

	srand(7);
	for (b = 0; b < 40; b++)
		batch(1000 + b, b % 5 == 0 ? NTOK : (size_t)(rand() % 2000),
		    b % 7 != 3, 100 + b);
	check();
	rows = sums_rows(&n);
	cr_assert_eq(n, 40 - 6, "a row per committed batch");
	cr_assert_eq(rows[0], 100);
	cr_assert_eq(rows[n - 1], 139);
}

Test(sums, a_batch_not_committed_counts_nothing)
{
	const struct usum *u;
	size_t		 n;

	srand(1);
	batch(5, 3000, 0, 0);
	cr_assert(sums_get(&u, &n));
	cr_assert_eq(n, 0);
	batch(6, 3000, 1, 9);
	check();
}

Test(sums, a_fold_clears_them)
{
	const struct usum *u;
	size_t		 n;

	srand(2);
	batch(5, 3000, 1, 1);
	sums_clear();
	memset(want, 0, sizeof(want));
	cr_assert(sums_get(&u, &n));
	cr_assert_eq(n, 0);
	sums_rows(&n);
	cr_assert_eq(n, 0);
	batch(6, 3000, 1, 2);
	check();
}

Test(sums, too_many_tokens_are_lost_but_the_rows_are_kept)
{
	static const uint8_t ip[IP_LEN];
	const struct usum *u;
	size_t		 n;
	int64_t		 t, row;

	/* 2^19 tokens at most: three batches of 200,000 pass it. */
	for (row = 1; row <= 3; row++) {
		sums_stage_reset();
		for (t = 1; t <= 200000; t++)
			sums_stage(row * 1000000 + t, 1, row, ip);
		sums_committed(row);
	}
	cr_assert_not(sums_get(&u, &n), "past the cap: aggregate the rows");
	sums_rows(&n);
	cr_assert_eq(n, 3, "the fold still deletes this writer's rows");
	sums_clear();
	cr_assert(sums_get(&u, &n), "known again after the fold");
}

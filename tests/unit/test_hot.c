/*
 * store/writer/hot.c: which tokens the writer saw used lately.  What matters
 * is the one-sided error: a token may be forgotten (its next use is
 * written into tokens, as before migration 021), never remembered wrongly
 * (that could delay its first use after a quiet period).
 */
#include <criterion/criterion.h>

#include "store/writer/writer.h"

#define WINDOW	60000

Test(hot, unknown_token_is_cold)
{
	cr_assert_not(hot_is(123456789, 1000, WINDOW));
}

Test(hot, hot_within_the_window_only)
{
	hot_mark(42, 10000);
	cr_assert(hot_is(42, 10000, WINDOW));
	cr_assert(hot_is(42, 10000 + WINDOW - 1, WINDOW));
	cr_assert_not(hot_is(42, 10000 + WINDOW, WINDOW));
	cr_assert_not(hot_is(42, 10000, 0), "window 0: never hot");
}

Test(hot, a_later_mark_renews)
{
	hot_mark(77, 1000);
	hot_mark(77, 50000);
	cr_assert(hot_is(77, 50000 + WINDOW - 1, WINDOW));
}

Test(hot, another_token_in_the_slot_is_never_taken_for_this_one)
{
	int64_t	 t, other = -1;

	hot_mark(5, 1000);
	/* Find a token sharing 5's slot: marking it forgets 5. */
	for (t = 6; t < 100000000 && other < 0; t++) {
		hot_mark(t, 1000);
		if (!hot_is(5, 1000, WINDOW))
			other = t;
		else
			hot_mark(5, 1000);
	}
	cr_assert(other > 0, "no colliding id below 10^8");
	cr_assert(hot_is(other, 1000, WINDOW));
	cr_assert_not(hot_is(5, 1000, WINDOW));
}

Test(hot, most_of_100000_tokens_are_remembered)
{
	int64_t	 t;
	int	 kept = 0;

	for (t = 1000001; t <= 1100000; t++)
		hot_mark(t, 5000);
	for (t = 1000001; t <= 1100000; t++)
		kept += hot_is(t, 5000, WINDOW);
	cr_assert_gt(kept, 90000, "kept %d of 100000", kept);
}

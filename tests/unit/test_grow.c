/*
 * store/runtime/grow.c: array_room, the growing arrays' one doubling
 * (the writer's records and sums, tokenctl's scan).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "store/runtime/runtime.h"

Test(grow, doubles_from_first_and_keeps_what_was_there)
{
	int	*a = NULL;
	size_t	 cap = 0, i;

	for (i = 0; i < 1000; i++) {
		cr_assert_eq(array_room(&a, &cap, i + 1, sizeof(*a), 16), 0);
		cr_assert_geq(cap, i + 1);
		a[i] = (int)i;
	}
	cr_assert_eq(cap, 1024, "16 doubled six times, no more");
	for (i = 0; i < 1000; i++)
		cr_assert_eq(a[i], (int)i);
	cr_assert_eq(array_room(&a, &cap, 1024, sizeof(*a), 16), 0);
	cr_assert_eq(cap, 1024, "room enough: nothing moves");
	cr_assert_eq(array_room(&a, &cap, 5000, sizeof(*a), 16), 0);
	cr_assert_eq(cap, 8192, "one call doubles as often as it must");
	free(a);
}

Test(grow, an_impossible_size_fails_and_leaves_the_array_whole)
{
	int	*a = NULL, *before;
	size_t	 cap = 0;

	cr_assert_eq(array_room(&a, &cap, 4, sizeof(*a), 4), 0);
	a[3] = 42;
	before = a;
	cr_assert_eq(array_room(&a, &cap, SIZE_MAX / 2 + 2, sizeof(*a), 4), -1,
	    "doubling would overflow size_t");
	cr_assert_eq(array_room(&a, &cap, SIZE_MAX / 4, sizeof(*a), 4), -1,
	    "count times size overflows");
	cr_assert_eq(a, before);
	cr_assert_eq(cap, 4);
	cr_assert_eq(a[3], 42);
	free(a);
}

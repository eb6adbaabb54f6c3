/*
 * The one grow-by-doubling the growing arrays share (the writer's records
 * and sums, tokenctl's scan): an array never shrinks, so after the first
 * few flushes it stops reallocating at all.
 */
#include <stdint.h>
#include <stdlib.h>

#include "store/runtime/runtime.h"

int
array_room(void *arrayp, size_t *cap, size_t need, size_t size, size_t first)
{
	size_t	 n = *cap ? *cap : first ? first : 1;
	void	*p;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return -1;
		n *= 2;
	}
	if (n > SIZE_MAX / size ||
	    (p = realloc(*(void **)arrayp, n * size)) == NULL)
		return -1;
	*(void **)arrayp = p;
	*cap = n;
	return 0;
}

/*
 * The writer's memory of (token, network) pairs already in token_networks
 * (SPEC 13, token_new_network), so that a token used from its usual
 * networks adds nothing to the usage statement after the first flush.
 * PostgreSQL's table is the truth (ON CONFLICT DO NOTHING decides which
 * use is a first one, across boxes and restarts); this set only saves
 * sending pairs again.  A pair is added only after the batch that sent it
 * committed, so a failed flush sends it again.
 *
 * A direct-mapped set of 64-bit keys (a hash of the pair; a collision can
 * at worst hide one alert among 2^64): a key overwrites whatever held its
 * slot, and a forgotten pair is only sent again, PostgreSQL returning
 * nothing for it.  2^22 slots (32 MiB of address space, touched only as
 * pairs come) keep most of a million tokens' pairs: each pair the set
 * misses costs the flush an index probe in tokens and one in
 * token_networks.  (It used to be emptied when 49,152 pairs filled it, so
 * 100,000 tokens in use resent nearly every pair in every flush.)
 */
#include "store/writer/writer.h"

#define NS_BITS		22
#define NS_CAP		(1u << NS_BITS)

static uint64_t	ns_keys[NS_CAP];	/* 0: empty */

uint64_t
netseen_key(int64_t token, const struct cidr *net)
{
	uint64_t	 h = 0xcbf29ce484222325ull ^ (uint64_t)token;
	size_t		 i;

	for (i = 0; i < IP_LEN; i++)
		h = (h ^ net->cr_addr[i]) * 0x100000001b3ull;
	h = (h ^ net->cr_bits) * 0x100000001b3ull;
	return h != 0 ? h : 1;
}

static uint32_t
ns_slot(uint64_t key)
{
	return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> (64 - NS_BITS));
}

int
netseen_has(uint64_t key)
{
	return ns_keys[ns_slot(key)] == key;
}

void
netseen_prefetch(uint64_t key)
{
	__builtin_prefetch(&ns_keys[ns_slot(key)]);
}

void
netseen_add(uint64_t key)
{
	ns_keys[ns_slot(key)] = key;
}

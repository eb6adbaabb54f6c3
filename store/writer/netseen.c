/*
 * The writer's memory of (token, network) pairs already in token_networks
 * (SPEC 13, token_new_network), so that a token used from its usual
 * networks adds nothing to the usage statement after the first flush.
 * PostgreSQL's table is the truth (ON CONFLICT DO NOTHING decides which
 * use is a first one, across boxes and restarts); this set only saves
 * sending pairs again.  A pair is added only after the batch that sent it
 * committed, so a failed flush sends it again.
 *
 * An open-addressing set of 64-bit keys (a hash of the pair; a collision
 * can at worst hide one alert among 2^64), emptied when it fills: the next
 * flushes send the pairs again, and PostgreSQL returns nothing for them.
 */
#include <string.h>

#include "store/writer/writer.h"

#define NS_CAP		(1u << 16)
#define NS_MAX		(NS_CAP / 4 * 3)

static uint64_t	ns_keys[NS_CAP];	/* 0: empty */
static uint32_t	ns_used;

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
	uint32_t	 i = (uint32_t)(key >> 32) & (NS_CAP - 1);

	while (ns_keys[i] != 0 && ns_keys[i] != key)
		i = (i + 1) & (NS_CAP - 1);
	return i;
}

int
netseen_has(uint64_t key)
{
	return ns_keys[ns_slot(key)] == key;
}

void
netseen_add(uint64_t key)
{
	uint32_t	 i;

	if (ns_used >= NS_MAX) {
		memset(ns_keys, 0, sizeof(ns_keys));
		ns_used = 0;
	}
	i = ns_slot(key);
	if (ns_keys[i] == 0) {
		ns_keys[i] = key;
		ns_used++;
	}
}

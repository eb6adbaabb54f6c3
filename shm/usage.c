/*
 * Usage tables: each use of a token is counted in shared memory before its
 * 200 is sent, and leaves shared memory only after the PostgreSQL batch that
 * holds it has committed.  The protocol, and what each kind of death leaves
 * behind, is in shm/README.md ("Usage tables").
 */
#include <string.h>

#include "shm/shm.h"

#define USAGE_MASK (USAGE_CAP - 1)

static inline uint32_t
state_get(const struct usage_table *t)
{
	return __atomic_load_n(&t->ut_state, __ATOMIC_ACQUIRE);
}

static inline void
state_set(struct usage_table *t, uint32_t st)
{
	__atomic_store_n(&t->ut_state, st, __ATOMIC_RELEASE);
}

/*
 * A process killed between writing an entry's token and appending its index
 * to ut_order leaves an entry the order list misses.  Whoever takes the table
 * over rebuilds the list from the entries, which are the truth.
 */
static void
table_rebuild_order(struct usage_table *t)
{
	uint32_t	 i, n = 0;

	for (i = 0; i < USAGE_CAP; i++)
		if (t->ut_ent[i].ue_token != 0)
			t->ut_order[n++] = i;
	t->ut_used = n;
}

/* Worker: make the other table active; it must be FREE. */
static void
table_switch(struct shm_slot *sl)
{
	uint32_t	 a = sl->sl_active;

	state_set(&sl->sl_tables[a], UT_FROZEN);
	sl->sl_active = 1 - a;
	state_set(&sl->sl_tables[1 - a], UT_ACTIVE);
}

void
usage_attach(struct shm_slot *sl)
{
	uint32_t		 a = sl->sl_active & 1;
	struct usage_table	*t = &sl->sl_tables[a];
	struct usage_table	*o = &sl->sl_tables[1 - a];

	sl->sl_active = a;
	if (state_get(t) == UT_FROZEN && state_get(o) == UT_FREE) {
		/* Died between freezing and switching. */
		sl->sl_active = 1 - a;
		t = o;
	}
	if (state_get(t) == UT_FREE)
		state_set(t, UT_ACTIVE);
	if (state_get(t) == UT_ACTIVE)
		table_rebuild_order(t);
}

static const uint8_t usage_no_ip[IP_LEN];

/* a and b are in one network of ip_network (/24 IPv4, /56 IPv6). */
static inline int
usage_same_net(const uint8_t *a, const uint8_t *b)
{
	int	 v4 = ip_is_v4(a);

	return memcmp(a, b, v4 ? 15 : 7) == 0 && (v4 || !ip_is_v4(b));
}

/*
 * An entry is a (token, network) pair, so the network is hashed too: one
 * token used from many networks (a proxy's clients, or a stolen token
 * from everywhere) must not pile its entries into one probe run.  Equal
 * under usage_same_net means equal here: a network's bytes and its family.
 */
static inline uint32_t
usage_hash(int64_t token, const uint8_t *ip)
{
	uint64_t	 net = 0;
	int		 v4 = ip_is_v4(ip);

	memcpy(&net, v4 ? ip + 12 : ip, v4 ? 3 : 7);
	net = (net << 1 | (uint64_t)v4) * 0xff51afd7ed558ccdull;
	return (uint32_t)((((uint64_t)token ^ net) * 0x9E3779B97F4A7C15ull) >>
	    46) & USAGE_MASK;
}

int
usage_record(struct shm_slot *sl, int64_t token, int64_t now_ms,
    const uint8_t *ip)
{
	struct usage_table	*t = &sl->sl_tables[sl->sl_active];
	struct usage_ent	*e;
	uint32_t		 i;

	if (ip == NULL)
		ip = usage_no_ip;

	if (t->ut_used >= USAGE_LOAD_MAX &&
	    state_get(&sl->sl_tables[1 - sl->sl_active]) == UT_FREE) {
		table_switch(sl);
		t = &sl->sl_tables[sl->sl_active];
	}
	for (i = usage_hash(token, ip);; i = (i + 1) & USAGE_MASK) {
		e = &t->ut_ent[i];
		if (e->ue_token == token && usage_same_net(e->ue_ip, ip))
			break;
		if (e->ue_token != 0)
			continue;
		if (t->ut_used >= USAGE_LOAD_MAX ||
		    state_get(t) != UT_ACTIVE) {
			ctr_add(&sl->sl_uses_dropped, 1);
			return -1;
		}
		e->ue_token = token;
		memcpy(e->ue_ip, ip, IP_LEN);
		t->ut_order[t->ut_used++] = i;
		break;
	}
	e->ue_count++;
	if (now_ms > e->ue_last_ms) {
		e->ue_last_ms = now_ms;
		memcpy(e->ue_ip, ip, IP_LEN);
	}
	ctr_add(&sl->sl_uses_recorded, 1);
	return 0;
}

void
usage_poll(struct shm_slot *sl)
{
	uint64_t		 req;
	struct usage_table	*t;

	req = __atomic_load_n(&sl->sl_swap_req, __ATOMIC_ACQUIRE);
	if (req == sl->sl_swap_ack)
		return;
	t = &sl->sl_tables[sl->sl_active];
	if (t->ut_used > 0) {
		/* The writer has not emptied the other one yet: ask again on
		 * the next turn, the active table keeps counting meanwhile. */
		if (state_get(&sl->sl_tables[1 - sl->sl_active]) != UT_FREE)
			return;
		table_switch(sl);
	}
	__atomic_store_n(&sl->sl_swap_ack, req, __ATOMIC_RELEASE);
}

void
usage_request_swap(struct shm *shm)
{
	uint32_t	 i;

	for (i = 0; i < shm->sh_nslots; i++) {
		struct shm_slot *sl = &shm->sh_slots[i];

		if (__atomic_load_n(&sl->sl_state, __ATOMIC_ACQUIRE) ==
		    SLOT_USED)
			__atomic_add_fetch(&sl->sl_swap_req, 1,
			    __ATOMIC_RELEASE);
	}
}

int
usage_swaps_pending(struct shm *shm)
{
	uint32_t	 i;
	int		 n = 0;

	for (i = 0; i < shm->sh_nslots; i++) {
		struct shm_slot *sl = &shm->sh_slots[i];

		if (__atomic_load_n(&sl->sl_state, __ATOMIC_ACQUIRE) ==
		    SLOT_USED &&
		    __atomic_load_n(&sl->sl_swap_ack, __ATOMIC_ACQUIRE) !=
		    __atomic_load_n(&sl->sl_swap_req, __ATOMIC_ACQUIRE))
			n++;
	}
	return n;
}

void
usage_sweep_retired(struct shm *shm)
{
	uint32_t	 i, k;

	for (i = 0; i < shm->sh_nslots; i++) {
		struct shm_slot *sl = &shm->sh_slots[i];
		int free_tables = 0;

		if (__atomic_load_n(&sl->sl_state, __ATOMIC_ACQUIRE) !=
		    SLOT_RETIRED)
			continue;
		for (k = 0; k < 2; k++) {
			struct usage_table *t = &sl->sl_tables[k];

			if (state_get(t) == UT_ACTIVE) {
				table_rebuild_order(t);
				state_set(t, t->ut_used ? UT_FROZEN : UT_FREE);
			}
			free_tables += state_get(t) == UT_FREE;
		}
		if (free_tables == 2)
			__atomic_store_n(&sl->sl_state, SLOT_FREE,
			    __ATOMIC_RELEASE);
	}
}

int
usage_collect(struct shm *shm, uint64_t batch, usage_fn fn, void *arg)
{
	uint32_t	 i, k, j;
	int		 tables = 0;

	for (i = 0; i < shm->sh_nslots; i++)
		for (k = 0; k < 2; k++) {
			struct usage_table *t = &shm->sh_slots[i].sl_tables[k];

			if (state_get(t) != UT_FROZEN)
				continue;
			t->ut_batch = batch;
			for (j = 0; j < t->ut_used; j++) {
				struct usage_ent *e = &t->ut_ent[t->ut_order[j]];

				if (e->ue_token != 0 && e->ue_count != 0)
					fn(arg, e->ue_token, e->ue_count,
					    e->ue_last_ms, e->ue_ip);
			}
			tables++;
		}
	return tables;
}

uint64_t
usage_release(struct shm *shm, uint64_t upto)
{
	uint64_t	 uses = 0;
	uint32_t	 i, k, j;

	for (i = 0; i < shm->sh_nslots; i++)
		for (k = 0; k < 2; k++) {
			struct usage_table *t = &shm->sh_slots[i].sl_tables[k];

			if (state_get(t) != UT_FROZEN || t->ut_batch == 0 ||
			    t->ut_batch > upto)
				continue;
			for (j = 0; j < t->ut_used; j++) {
				struct usage_ent *e = &t->ut_ent[t->ut_order[j]];

				uses += e->ue_count;
				memset(e, 0, sizeof(*e));
			}
			t->ut_used = 0;
			t->ut_batch = 0;
			state_set(t, UT_FREE);
		}
	__atomic_add_fetch(&shm->sh_uses_flushed, uses, __ATOMIC_RELAXED);
	return uses;
}

/* The order list of a table read back from the usage file is in bounds. */
static int
table_order_ok(const struct usage_table *t)
{
	uint32_t	 j;

	if (t->ut_used > USAGE_CAP)
		return 0;
	for (j = 0; j < t->ut_used; j++)
		if (t->ut_order[j] >= USAGE_CAP)
			return 0;
	return 1;
}

uint64_t
usage_slot_recover(struct shm_slot *sl, uint32_t *tables)
{
	uint64_t	 uses = 0, n;
	uint32_t	 k, j;

	for (k = 0; k < 2; k++) {
		struct usage_table *t = &sl->sl_tables[k];

		if (state_get(t) == UT_FREE)
			continue;
		/* A dead worker may have left the order list short. */
		if (state_get(t) == UT_ACTIVE || !table_order_ok(t))
			table_rebuild_order(t);
		for (n = 0, j = 0; j < t->ut_used; j++)
			n += t->ut_ent[t->ut_order[j]].ue_count;
		if (n > 0)
			(*tables)++;
		uses += n;
	}
	return uses;
}

uint32_t
usage_tables_pending(const struct shm *shm)
{
	uint32_t	 i, k, n = 0;

	for (i = 0; i < shm->sh_nslots; i++)
		for (k = 0; k < 2; k++) {
			const struct usage_table *t =
			    &shm->sh_slots[i].sl_tables[k];

			if (state_get(t) != UT_FREE &&
			    __atomic_load_n(&t->ut_used, __ATOMIC_RELAXED) > 0)
				n++;
		}
	return n;
}

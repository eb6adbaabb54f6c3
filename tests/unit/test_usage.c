/*
 * The usage tables (shm/usage.c): what a worker records must reach the
 * writer exactly once, whatever the interleaving and whoever dies.
 */
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shm/shm.h"

static struct shm *shm;
static struct shm_slot *sl;

static void
setup(void)
{
	shm = shm_create(8);
	cr_assert_not_null(shm);
	cr_assert_eq(shm_slot_claim(shm, 1), 0);
	sl = &shm->sh_slots[0];
	usage_attach(sl);
}

TestSuite(usage, .init = setup);

struct tally {
	uint64_t	 uses;
	uint64_t	 per_token[64];
	int64_t		 last[64];
	int		 entries;
};

static void
tally_fn(void *arg, int64_t token, uint64_t count, int64_t last_ms,
    const uint8_t ip[IP_LEN])
{
	struct tally *t = arg;

	(void)ip;
	t->uses += count;
	t->entries++;
	if (token > 0 && token < 64) {
		t->per_token[token] += count;
		if (last_ms > t->last[token])
			t->last[token] = last_ms;
	}
}

/* One writer round: request a swap, let the worker answer, collect, commit. */
static uint64_t
writer_round(struct tally *t, int worker_polls)
{
	uint64_t	 batch = ++shm->sh_batch_seq;

	usage_request_swap(shm);
	if (worker_polls)
		usage_poll(sl);
	usage_collect(shm, batch, tally_fn, t);
	return usage_release(shm, batch);
}

Test(usage, records_coalesce_per_token_and_reach_the_writer)
{
	struct tally	 t = { 0 };

	for (int i = 0; i < 10; i++)
		cr_assert_eq(usage_record(sl, 7, 1000 + i, NULL), 0);
	cr_assert_eq(usage_record(sl, 9, 5000, NULL), 0);
	cr_assert_eq(writer_round(&t, 1), 11);
	cr_assert_eq(t.per_token[7], 10);
	cr_assert_eq(t.per_token[9], 1);
	cr_assert_eq(t.last[7], 1009, "newest use wins");
	cr_assert_eq(t.entries, 2, "one entry per distinct token");
	cr_assert_eq(shm->sh_uses_flushed, 11);
	cr_assert_eq(sl->sl_uses_recorded, 11);
}

Test(usage, nothing_leaves_before_the_worker_swaps)
{
	struct tally	 t = { 0 };

	usage_record(sl, 3, 1, NULL);
	/* The worker has not polled: its table is still ACTIVE, untouched. */
	cr_assert_eq(writer_round(&t, 0), 0);
	cr_assert_eq(t.uses, 0);
	usage_poll(sl);
	cr_assert_eq(writer_round(&t, 0), 1);
}

Test(usage, failed_batch_is_sent_again_and_only_once)
{
	struct tally	 t1 = { 0 }, t2 = { 0 };
	uint64_t	 b1;

	usage_record(sl, 5, 1, NULL);
	usage_request_swap(shm);
	usage_poll(sl);
	b1 = ++shm->sh_batch_seq;
	usage_collect(shm, b1, tally_fn, &t1);	/* the statement fails */
	usage_record(sl, 5, 2, NULL);
	/* Retry: the frozen table is collected again under a new number. */
	cr_assert_eq(writer_round(&t2, 1), 1);
	cr_assert_eq(t2.per_token[5], 1);
	/* The later use waits for the next swap (the other table was busy). */
	cr_assert_eq(writer_round(&t2, 1), 1);
	cr_assert_eq(t2.per_token[5], 2);
}

Test(usage, a_batch_committed_before_a_writer_died_is_released_not_resent)
{
	struct tally	 t = { 0 }, again = { 0 };
	uint64_t	 b;

	usage_record(sl, 4, 1, NULL);
	usage_request_swap(shm);
	usage_poll(sl);
	b = ++shm->sh_batch_seq;
	usage_collect(shm, b, tally_fn, &t);
	/* Committed in PostgreSQL, then the writer died before releasing.
	 * The next writer reads seq b from usage_batches and releases. */
	cr_assert_eq(usage_release(shm, b), 1);
	usage_collect(shm, ++shm->sh_batch_seq, tally_fn, &again);
	cr_assert_eq(again.uses, 0);
}

Test(usage, full_table_swaps_on_its_own_then_counts_drops)
{
	int64_t		 tok;

	for (tok = 1; tok <= (int64_t)USAGE_LOAD_MAX; tok++)
		cr_assert_eq(usage_record(sl, tok, 1, NULL), 0);
	/* The active table is full: the next new token moves to the other. */
	cr_assert_eq(usage_record(sl, tok, 1, NULL), 0);
	cr_assert_eq(sl->sl_tables[1 - sl->sl_active].ut_state, UT_FROZEN);
	for (tok++; tok <= 2 * (int64_t)USAGE_LOAD_MAX; tok++)
		usage_record(sl, tok, 1, NULL);
	/* Both full: refused and counted, never silently lost. */
	cr_assert_eq(usage_record(sl, tok + 1, 1, NULL), -1);
	cr_assert_eq(sl->sl_uses_dropped, 1);
	/* A token already present still counts. */
	cr_assert_eq(usage_record(sl, tok - 1, 2, NULL), 0);
}

Test(usage, worker_killed_mid_switch_is_repaired_by_its_successor)
{
	struct tally	 t = { 0 };
	uint32_t	 a = sl->sl_active;

	usage_record(sl, 8, 1, NULL);
	/* As if killed after freezing the active table, before switching. */
	sl->sl_tables[a].ut_state = UT_FROZEN;
	usage_attach(sl);
	cr_assert_neq(sl->sl_active, a);
	cr_assert_eq(sl->sl_tables[sl->sl_active].ut_state, UT_ACTIVE);
	cr_assert_eq(usage_record(sl, 8, 2, NULL), 0);
	usage_collect(shm, ++shm->sh_batch_seq, tally_fn, &t);
	cr_assert_eq(t.per_token[8], 1, "the frozen half reaches the writer");
}

Test(usage, entry_missing_from_the_order_list_is_found_on_attach)
{
	struct tally	 t = { 0 };
	struct usage_table *ut;

	usage_record(sl, 11, 1, NULL);
	ut = &sl->sl_tables[sl->sl_active];
	/* As if killed between writing the entry and listing it. */
	ut->ut_used = 0;
	usage_attach(sl);
	cr_assert_eq(ut->ut_used, 1);
	cr_assert_eq(writer_round(&t, 1), 1);
}

Test(usage, retired_slot_is_flushed_and_freed_by_the_writer)
{
	struct tally	 t = { 0 };

	usage_record(sl, 2, 1, NULL);
	shm_slot_retire(shm, 0);
	usage_sweep_retired(shm);
	cr_assert_eq(writer_round(&t, 0), 1);
	usage_sweep_retired(shm);
	cr_assert_eq(sl->sl_state, SLOT_FREE);
	cr_assert_eq(shm_slot_claim(shm, 3), 0, "a free slot is reused");
}

/* ---- concurrency: a worker thread and a writer thread ------------------ */

#define PRODUCED 2000000

static volatile int producer_done;

static void *
producer(void *arg)
{
	(void)arg;
	for (int i = 0; i < PRODUCED; i++) {
		cr_assert_eq(usage_record(sl, 1 + i % 50, i, NULL), 0);
		if (i % 64 == 0)
			usage_poll(sl);
	}
	__atomic_store_n(&producer_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

Test(usage, concurrent_worker_and_writer_lose_and_double_nothing)
{
	pthread_t	 th;
	struct tally	 t = { 0 };
	uint64_t	 released = 0;

	pthread_create(&th, NULL, producer, NULL);
	while (!__atomic_load_n(&producer_done, __ATOMIC_ACQUIRE)) {
		uint64_t b = ++shm->sh_batch_seq;

		usage_request_swap(shm);
		usage_collect(shm, b, tally_fn, &t);
		released += usage_release(shm, b);
	}
	pthread_join(th, NULL);
	/* Drain what is left: the worker answers one last swap. */
	for (int k = 0; k < 2; k++)
		released += writer_round(&t, 1);
	cr_assert_eq(t.uses, PRODUCED);
	cr_assert_eq(released, PRODUCED);
	for (int tok = 1; tok <= 50; tok++)
		cr_assert_eq(t.per_token[tok], PRODUCED / 50);
}

/* ---- a real process killed with SIGKILL ---------------------------------- */

Test(usage, sigkilled_worker_process_loses_no_recorded_use)
{
	struct tally	 t = { 0 };
	pid_t		 pid;
	int		 st;

	if ((pid = fork()) == 0) {
		for (int i = 0;; i++) {
			usage_record(sl, 1 + i % 7, i, NULL);
			usage_poll(sl);
		}
	}
	usleep(100 * 1000);
	for (int k = 0; k < 20; k++) {
		uint64_t b = ++shm->sh_batch_seq;

		usage_request_swap(shm);
		usleep(1000);
		usage_collect(shm, b, tally_fn, &t);
		usage_release(shm, b);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	/* The successor takes the slot over, then everything is drained. */
	usage_attach(sl);
	for (int k = 0; k < 3; k++)
		writer_round(&t, 1);
	/* Every use the dead process finished recording arrived once; the
	 * one it may have been in the middle of is the SPEC's "in flight". */
	cr_assert_geq(t.uses + 1, sl->sl_uses_recorded);
	cr_assert_leq(t.uses, sl->sl_uses_recorded + 1);
	cr_assert_gt(t.uses, 1000);
}

/* The addresses of the uses reach the writer, one entry per network. */
struct nets {
	int	 entries;
	char	 ip[4][IP_STR_LEN];
	uint64_t count[4];
};

static void
nets_fn(void *arg, int64_t token, uint64_t count, int64_t last_ms,
    const uint8_t ip[IP_LEN])
{
	struct nets *n = arg;

	(void)token;
	(void)last_ms;
	if (n->entries < 4) {
		ip_format(ip, n->ip[n->entries], IP_STR_LEN);
		n->count[n->entries++] = count;
	}
}

Test(usage, each_network_of_a_token_is_an_entry_with_its_newest_address)
{
	struct nets	 n;
	uint8_t		 a[IP_LEN], b[IP_LEN], c[IP_LEN];
	uint64_t	 batch;
	int		 i, found = 0;

	cr_assert_eq(ip_parse("198.51.100.1", 12, a), 0);
	cr_assert_eq(ip_parse("198.51.100.9", 12, b), 0);	/* same /24 */
	cr_assert_eq(ip_parse("203.0.113.5", 11, c), 0);
	usage_record(sl, 5, 10, a);
	usage_record(sl, 5, 20, b);
	usage_record(sl, 5, 30, c);
	memset(&n, 0, sizeof(n));
	batch = ++shm->sh_batch_seq;
	usage_request_swap(shm);
	usage_poll(sl);
	usage_collect(shm, batch, nets_fn, &n);
	cr_assert_eq(usage_release(shm, batch), 3);
	cr_assert_eq(n.entries, 2);
	for (i = 0; i < 2; i++) {
		if (strcmp(n.ip[i], "198.51.100.9") == 0) {
			found |= 1;
			cr_assert_eq(n.count[i], 2);
		}
		if (strcmp(n.ip[i], "203.0.113.5") == 0) {
			found |= 2;
			cr_assert_eq(n.count[i], 1);
		}
	}
	cr_assert_eq(found, 3);
}

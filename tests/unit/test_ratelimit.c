/*
 * The login rate limit in shared memory (shm/ratelimit.c): what an
 * operator relies on is that login_max_failures failures of one username
 * within login_window lock that name out, whichever workers counted them,
 * and only that name, and only for the rest of the window.
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include <stdio.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "shm/shm.h"

static struct shm *shm;

static void
setup(void)
{
	shm = shm_create(1);
	cr_assert_not_null(shm);
}

static void
teardown(void)
{
	munmap(shm, shm->sh_size);
}

TestSuite(ratelimit, .init = setup, .fini = teardown);

Test(ratelimit, locks_out_after_max_failures_until_the_window_ends)
{
	int	 i;

	for (i = 0; i < 5; i++) {
		cr_assert_eq(ratelimit_check(shm, "alice", 1000 + i, 300, 5), 0);
		ratelimit_fail(shm, "alice", 1000 + i, 300);
	}
	/* The window began at the first failure, 1000. */
	cr_assert_eq(ratelimit_check(shm, "alice", 1010, 300, 5), 290);
	cr_assert_eq(ratelimit_check(shm, "alice", 1299, 300, 5), 1);
	cr_assert_eq(ratelimit_check(shm, "alice", 1300, 300, 5), 0);
	/* A failure after the window starts a new count. */
	ratelimit_fail(shm, "alice", 1300, 300);
	cr_assert_eq(ratelimit_check(shm, "alice", 1301, 300, 2), 0);
}

Test(ratelimit, other_names_are_not_affected)
{
	int	 i;

	for (i = 0; i < 3; i++)
		ratelimit_fail(shm, "mallory", 50, 60);
	cr_assert_gt(ratelimit_check(shm, "mallory", 51, 60, 3), 0);
	cr_assert_eq(ratelimit_check(shm, "bob", 51, 60, 3), 0);
	cr_assert_eq(ratelimit_check(shm, "Mallory", 51, 60, 3), 0);
	cr_assert_eq(ratelimit_check(shm, "mallory ", 51, 60, 3), 0);
}

Test(ratelimit, a_success_clears_the_failures)
{
	ratelimit_fail(shm, "carol", 10, 60);
	ratelimit_fail(shm, "carol", 11, 60);
	ratelimit_reset(shm, "carol");
	ratelimit_fail(shm, "carol", 12, 60);
	cr_assert_eq(ratelimit_check(shm, "carol", 13, 60, 2), 0);
	ratelimit_fail(shm, "carol", 13, 60);
	cr_assert_gt(ratelimit_check(shm, "carol", 14, 60, 2), 0);
}

/* Workers are processes: four of them failing at once lose no count. */
Test(ratelimit, concurrent_processes_count_every_failure)
{
	pid_t	 pids[4];
	int	 i, j, st;

	for (i = 0; i < 4; i++) {
		if ((pids[i] = fork()) == 0) {
			for (j = 0; j < 2000; j++)
				ratelimit_fail(shm, "dave", 100, 600);
			_exit(0);
		}
		cr_assert_gt(pids[i], 0);
	}
	for (i = 0; i < 4; i++) {
		cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	cr_assert_gt(ratelimit_check(shm, "dave", 101, 600, 8000), 0);
	cr_assert_eq(ratelimit_check(shm, "dave", 101, 600, 8001), 0);
}

/* A flood of other names (credential stuffing) cannot evict a name that
 * is being attacked: a full set gives up its least-failed entry. */
Test(ratelimit, a_flood_of_names_does_not_free_a_victim)
{
	char	 name[32];
	int	 i;

	for (i = 0; i < 5; i++)
		ratelimit_fail(shm, "victim", 500, 300);
	for (i = 0; i < 50000; i++) {
		snprintf(name, sizeof(name), "spray%d", i);
		ratelimit_fail(shm, name, 501, 300);
	}
	cr_assert_gt(ratelimit_check(shm, "victim", 502, 300, 5), 0);
}

Test(ratelimit, the_count_saturates_instead_of_wrapping)
{
	int	 i;

	for (i = 0; i < 70000; i++)
		ratelimit_fail(shm, "eve", 7, 600);
	cr_assert_gt(ratelimit_check(shm, "eve", 8, 600, 1000), 0);
}

/* ---- per-PAT rate limits (ratelimit_token) ------------------------------ */

Test(ratelimit, token_limit_counts_per_window_and_says_when_it_ends)
{
	int	 i;

	for (i = 0; i < 3; i++)
		cr_assert_eq(ratelimit_token(shm, 42, 1000, 3, 10), 0);
	/* Window [1000, 1010): 10 s left at 1000, 4 s at 1006. */
	cr_assert_eq(ratelimit_token(shm, 42, 1000, 3, 10), 10);
	cr_assert_eq(ratelimit_token(shm, 42, 1006, 3, 10), 4);
	/* Another token is not affected. */
	cr_assert_eq(ratelimit_token(shm, 43, 1006, 3, 10), 0);
	/* The next window starts afresh. */
	cr_assert_eq(ratelimit_token(shm, 42, 1010, 3, 10), 0);
	/* No limit: always allowed. */
	for (i = 0; i < 10; i++)
		cr_assert_eq(ratelimit_token(shm, 44, 1000, 0, 0), 0);
}

Test(ratelimit, token_limit_is_shared_by_processes)
{
	pid_t	 pid;
	int	 i, st;

	for (i = 0; i < 2; i++) {
		if ((pid = fork()) == 0) {
			int	 j;

			for (j = 0; j < 500; j++)
				(void)ratelimit_token(shm, 7, 5000, 600, 60);
			_exit(0);
		}
		cr_assert_gt(pid, 0);
	}
	while (wait(&st) > 0)
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* 1,000 attempts, 600 allowed: the 601st is refused. */
	cr_assert_gt(ratelimit_token(shm, 7, 5000, 600, 60), 0);
	cr_assert_eq(ratelimit_token(shm, 7, 5000, 1001, 60), 0);
}

Test(ratelimit, a_high_limit_never_wraps)
{
	int	 i;

	for (i = 0; i < 100000; i++)
		cr_assert_eq(ratelimit_token(shm, 9, 1, TRL_MAX_RATE, 1), 0);
}

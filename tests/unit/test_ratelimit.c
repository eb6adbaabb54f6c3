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

/*
 * The usage file (shm/seg.c shm_open_file): what a killed run left in it is
 * found by the next one, under the same instance id; a file of another
 * layout is ignored, never trusted; a file in use is not taken.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shm/shm.h"

static char	 dir[64];
static char	 path[128];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tokend-usagefile-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/usage.shm", dir);
}

static void
teardown(void)
{
	unlink(path);
	rmdir(dir);
}

TestSuite(usagefile, .init = setup, .fini = teardown);

/* In a child that then dies as if killed: record uses, report the id. */
static void
child_records(int fd_out)
{
	struct shm_recovery rec;
	struct shm	*shm;
	char		 err[256];
	int		 s, i;

	if ((shm = shm_open_file(path, 8, 0, &rec, err, sizeof(err))) == NULL)
		_exit(1);
	s = shm_slot_claim(shm, 1);
	usage_attach(&shm->sh_slots[s]);
	for (i = 0; i < 3; i++)
		usage_record(&shm->sh_slots[s], 7, 1000 + i, NULL);
	usage_record(&shm->sh_slots[s], 9, 2000, NULL);
	if (write(fd_out, shm->sh_instance, 32) != 32)
		_exit(1);
	_exit(0);
}

static void
sum_fn(void *arg, int64_t token, uint64_t count, int64_t last_ms,
    const uint8_t ip[IP_LEN])
{
	uint64_t *sum = arg;

	(void)last_ms;
	(void)ip;
	sum[token == 7 ? 0 : 1] += count;
}

Test(usagefile, a_killed_run_is_recovered_under_its_instance)
{
	struct shm_recovery rec;
	struct shm	*shm;
	char		 err[256], id[33] = "";
	uint64_t	 sum[2] = { 0, 0 };
	int		 p[2], status;
	pid_t		 pid;

	cr_assert_eq(pipe(p), 0);
	if ((pid = fork()) == 0)
		child_records(p[1]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert_eq(status, 0);
	cr_assert_eq(read(p[0], id, 32), 32);
	shm = shm_open_file(path, 8, 0, &rec, err, sizeof(err));
	cr_assert_not_null(shm, "%s", err);
	cr_assert_eq(rec.sr_reused, 1);
	cr_assert_eq(rec.sr_uses, 4);
	cr_assert_eq(rec.sr_slots, 1);
	cr_assert_str_eq(shm->sh_instance, id);
	cr_assert_eq(shm->sh_slots[0].sl_state, SLOT_RETIRED);
	/* The writer's path: sweep, collect. */
	usage_sweep_retired(shm);
	cr_assert_eq(usage_collect(shm, 1, sum_fn, sum), 1);
	cr_assert_eq(sum[0], 3);
	cr_assert_eq(sum[1], 1);
	cr_assert_eq(usage_release(shm, 1), 4);
	cr_assert_eq(usage_tables_pending(shm), 0);
}

Test(usagefile, a_file_of_another_layout_is_ignored)
{
	struct shm_recovery rec;
	struct shm	*shm;
	struct stat	 st;
	char		 err[256], junk[8192];
	int		 fd;

	memset(junk, 'x', sizeof(junk));
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	shm = shm_open_file(path, 8, 0, &rec, err, sizeof(err));
	cr_assert_not_null(shm, "%s", err);
	cr_assert_eq(rec.sr_reused, 0);
	cr_assert_str_eq(rec.sr_ignored, "not a tokend usage file");
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq((uint64_t)st.st_size, shm->sh_size);
	cr_assert_eq(shm->sh_magic, SHM_MAGIC);
	cr_assert_eq(usage_tables_pending(shm), 0);
}

Test(usagefile, another_layout_version_is_ignored)
{
	struct shm_recovery rec;
	struct shm	*shm;
	char		 err[256];
	int		 status;
	pid_t		 pid;

	/* A run of a build whose layout differs (only the version says so). */
	if ((pid = fork()) == 0) {
		if ((shm = shm_open_file(path, 8, 0, &rec, err,
		    sizeof(err))) == NULL)
			_exit(1);
		usage_attach(&shm->sh_slots[shm_slot_claim(shm, 1)]);
		usage_record(&shm->sh_slots[0], 7, 1000, NULL);
		shm->sh_version = SHM_VERSION + 1;
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert_eq(status, 0);
	shm = shm_open_file(path, 8, 0, &rec, err, sizeof(err));
	cr_assert_not_null(shm, "%s", err);
	cr_assert_eq(rec.sr_reused, 0);
	cr_assert_str_eq(rec.sr_ignored,
	    "another layout (another tokend version)");
	cr_assert_eq(shm->sh_version, SHM_VERSION);
	cr_assert_eq(usage_tables_pending(shm), 0);
}

Test(usagefile, a_file_in_use_is_refused)
{
	struct shm_recovery rec;
	char		 err[256];
	int		 p[2], status;
	pid_t		 pid;
	char		 c;

	cr_assert_eq(pipe(p), 0);
	if ((pid = fork()) == 0) {
		if (shm_open_file(path, 8, 0, &rec, err, sizeof(err)) == NULL)
			_exit(1);
		if (write(p[1], "k", 1) != 1)
			_exit(1);
		sleep(5);
		_exit(0);
	}
	cr_assert_eq(read(p[0], &c, 1), 1);
	cr_assert_null(shm_open_file(path, 8, 100, &rec, err, sizeof(err)));
	cr_assert(strstr(err, "in use") != NULL, "%s", err);
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	/* Gone: the next start takes it. */
	cr_assert_not_null(shm_open_file(path, 8, 1000, &rec, err,
	    sizeof(err)), "%s", err);
}

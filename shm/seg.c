/*
 * The shared segment: creation, slot hand-out, counters and their sums
 * (worker/metrics.c renders them).  The layout and its rules are in
 * shm/README.md.
 */
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "proto/proto.h"
#include "shm/shm.h"

static const int status_codes[ST__COUNT] = {
#define X(n, reason) [ST_##n] = n,
	HTTP_STATUSES
#undef X
	[ST_OTHER] = 0,
};

static const uint64_t bucket_us[SHM_NBUCKETS] = {
#define X(n) n,
	SHM_BUCKETS_US
#undef X
};

int
status_index(int status)
{
	switch (status) {
#define X(n, reason) case n: return ST_##n;
	HTTP_STATUSES
#undef X
	default:
		return ST_OTHER;
	}
}

static size_t
seg_size(uint32_t nslots)
{
	return sizeof(struct shm) + (size_t)nslots * sizeof(struct shm_slot);
}

/* The kernel's id of this boot: a file from another boot may be torn. */
static void
seg_boot_id(char out[40])
{
	ssize_t	 n = -1;
	int	 fd;

	if ((fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY |
	    O_CLOEXEC)) != -1) {
		n = read(fd, out, 39);
		close(fd);
	}
	out[n > 0 ? n : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

/* A fresh header: layout, boot, a new random instance id. */
static int
seg_init(struct shm *shm, uint32_t nslots)
{
	uint8_t		 id[16];

	if (RAND_bytes(id, sizeof(id)) != 1) {
		errno = EIO;
		return -1;
	}
	shm->sh_magic = SHM_MAGIC;
	shm->sh_version = SHM_VERSION;
	shm->sh_hdr_size = sizeof(struct shm);
	shm->sh_slot_size = sizeof(struct shm_slot);
	shm->sh_usage_cap = USAGE_CAP;
	seg_boot_id(shm->sh_boot_id);
	hex_encode(id, sizeof(id), shm->sh_instance);
	shm->sh_nslots = nslots;
	shm->sh_size = seg_size(nslots);
	return 0;
}

struct shm *
shm_create(uint32_t nslots)
{
	struct shm	*shm;
	size_t		 size = seg_size(nslots);

	/*
	 * MAP_NORESERVE: the usage tables are large but touched sparsely;
	 * pages are only backed once a worker or the writer writes them.
	 */
	shm = mmap(NULL, size, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (shm == MAP_FAILED)
		return NULL;
	if (seg_init(shm, nslots) == -1) {
		munmap(shm, size);
		return NULL;
	}
	return shm;
}

/* Why the header of an existing usage file of size bytes cannot be
 * reused, or NULL when it can. */
static const char *
seg_check(const struct shm *h, off_t size)
{
	char	 boot[40];

	if (size < (off_t)sizeof(struct shm) || h->sh_magic != SHM_MAGIC)
		return "not a tokend usage file";
	if (h->sh_version != SHM_VERSION ||
	    h->sh_hdr_size != sizeof(struct shm) ||
	    h->sh_slot_size != sizeof(struct shm_slot) ||
	    h->sh_usage_cap != USAGE_CAP)
		return "another layout (another tokend version)";
	if (h->sh_nslots == 0 || h->sh_nslots > SHM_MAX_SLOTS ||
	    h->sh_size != seg_size(h->sh_nslots) || (off_t)h->sh_size != size)
		return "its sizes do not add up";
	if (memchr(h->sh_instance, '\0', sizeof(h->sh_instance)) == NULL ||
	    strlen(h->sh_instance) != 32 ||
	    memchr(h->sh_boot_id, '\0', sizeof(h->sh_boot_id)) == NULL)
		return "a damaged header";
	seg_boot_id(boot);
	if (strcmp(boot, h->sh_boot_id) != 0)
		return "written before a reboot (a crash may have torn it)";
	return NULL;
}

/*
 * A previous run's segment: keep the instance id, the batch number and the
 * usage tables (README "The usage file"); start every counter from zero,
 * as a new master would, and retire every slot, since no process owns one.
 */
#define SLOT_TAIL	(offsetof(struct shm_slot, sl_tables) + \
			    sizeof(((struct shm_slot *)0)->sl_tables))

static void
seg_recover(struct shm *shm, uint32_t nslots, struct shm_recovery *rec)
{
	char		 instance[sizeof(shm->sh_instance)];
	uint64_t	 seq = shm->sh_batch_seq;
	uint32_t	 i, old = shm->sh_nslots;

	memcpy(instance, shm->sh_instance, sizeof(instance));
	memset(shm, 0, sizeof(*shm));
	seg_init(shm, nslots);
	memcpy(shm->sh_instance, instance, sizeof(instance));
	shm->sh_batch_seq = seq;
	for (i = 0; i < old; i++) {
		struct shm_slot	*sl = &shm->sh_slots[i];
		uint32_t	 state = sl->sl_state, active = sl->sl_active;
		uint64_t	 uses;

		memset(sl, 0, offsetof(struct shm_slot, sl_tables));
		/* The counters added after the tables start from zero too. */
		memset((char *)sl + SLOT_TAIL, 0, sizeof(*sl) - SLOT_TAIL);
		sl->sl_active = active & 1;
		uses = usage_slot_recover(sl, &rec->sr_tables);
		sl->sl_uses_recorded = uses;
		rec->sr_uses += uses;
		if (state != SLOT_FREE || uses > 0) {
			sl->sl_state = SLOT_RETIRED;
			rec->sr_slots++;
		}
	}
	rec->sr_reused = 1;
}

/* flock the usage file, waiting up to wait_ms for a previous run's last
 * process to exit. */
static int
seg_lock(int fd, int wait_ms)
{
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK || wait_ms <= 0)
			return -1;
		usleep(50 * 1000);
		wait_ms -= 50;
	}
}

/*
 * Check the header of the file open on fd.  Returns 1 when it can be
 * reused (*nslots raised to its slot count), 0 when not (*why says why, or
 * is NULL for a new, empty file), -1 on error.
 */
static int
seg_probe(int fd, uint32_t *nslots, const char **why)
{
	struct stat	 st;
	struct shm	*h;

	*why = NULL;
	if (fstat(fd, &st) == -1)
		return -1;
	if (st.st_size == 0)
		return 0;
	if (st.st_size < (off_t)sizeof(struct shm)) {
		*why = "not a tokend usage file";
		return 0;
	}
	h = mmap(NULL, sizeof(*h), PROT_READ, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		return -1;
	if ((*why = seg_check(h, st.st_size)) == NULL && h->sh_nslots > *nslots)
		*nslots = h->sh_nslots;
	munmap(h, sizeof(*h));
	return *why == NULL ? 1 : 0;
}

struct shm *
shm_open_file(const char *path, uint32_t nslots, int wait_ms,
    struct shm_recovery *rec, char *err, size_t errlen)
{
	struct shm	*shm = MAP_FAILED;
	const char	*why;
	int		 fd, reuse;

	memset(rec, 0, sizeof(*rec));
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1 || fchmod(fd, 0600) == -1)
		goto fail;
	if (seg_lock(fd, wait_ms) == -1) {
		if (errno == EWOULDBLOCK)
			snprintf(err, errlen, "%s: in use by another tokend "
			    "(its processes still run)", path);
		else
			snprintf(err, errlen, "%s: flock: %s", path,
			    strerror(errno));
		close(fd);
		return NULL;
	}
	if ((reuse = seg_probe(fd, &nslots, &why)) == -1)
		goto fail;
	if (why != NULL)
		snprintf(rec->sr_ignored, sizeof(rec->sr_ignored), "%s", why);
	/* Not reused: empty it, so that nothing of it is read as ours. */
	if ((!reuse && ftruncate(fd, 0) == -1) ||
	    ftruncate(fd, (off_t)seg_size(nslots)) == -1)
		goto fail;
	shm = mmap(NULL, seg_size(nslots), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (shm == MAP_FAILED)
		goto fail;
	if (reuse)
		seg_recover(shm, nslots, rec);
	else if (seg_init(shm, nslots) == -1)
		goto fail;
	/* fd stays open, and the lock held, in this process and its
	 * children: the lock is gone only when all of them are. */
	return shm;
fail:
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	if (shm != MAP_FAILED)
		munmap(shm, seg_size(nslots));
	if (fd != -1)
		close(fd);
	return NULL;
}

int
shm_slot_claim(struct shm *shm, int w)
{
	uint32_t	 i;

	for (i = 0; i < shm->sh_nslots; i++) {
		struct shm_slot *sl = &shm->sh_slots[i];

		if (__atomic_load_n(&sl->sl_state, __ATOMIC_ACQUIRE) !=
		    SLOT_FREE)
			continue;
		sl->sl_worker = w;
		sl->sl_pid = 0;
		__atomic_store_n(&sl->sl_state, SLOT_USED, __ATOMIC_RELEASE);
		return (int)i;
	}
	return -1;
}

void
shm_slot_retire(struct shm *shm, int slot)
{
	struct shm_slot *sl = &shm->sh_slots[slot];

	sl->sl_pid = 0;
	__atomic_store_n(&sl->sl_state, SLOT_RETIRED, __ATOMIC_RELEASE);
}

void
shm_count_request(struct shm_slot *sl, enum endpoint ep, int status,
    uint64_t micros)
{
	int	 b;

	ctr_add(&sl->sl_requests[ep][status_index(status)], 1);
	for (b = 0; b < SHM_NBUCKETS; b++)
		if (micros <= bucket_us[b])
			break;
	ctr_add(&sl->sl_duration[ep][b], 1);
	ctr_add(&sl->sl_duration_sum_us[ep], micros);
}

int64_t
shm_now_us(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
shm_now_ms(void)
{
	return shm_now_us() / 1000;
}

/* ---- summing ----------------------------------------------------------- */

uint64_t
shm_sum(const struct shm *shm, size_t off)
{
	uint64_t	 sum = 0;
	uint32_t	 i;

	for (i = 0; i < shm->sh_nslots; i++)
		sum += ctr_get((const uint64_t *)
		    ((const char *)&shm->sh_slots[i] + off));
	return sum;
}

int
status_code(int st)
{
	return st >= 0 && st < ST__COUNT ? status_codes[st] : 0;
}

uint64_t
shm_bucket_us(int b)
{
	return b >= 0 && b < SHM_NBUCKETS ? bucket_us[b] : UINT64_MAX;
}

/*
 * The shared segment: creation, slot hand-out, counters and the /metrics
 * text.  The layout and its rules are in shm/README.md.
 */
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "proto/proto.h"
#include "shm/shm.h"

static const char *const endpoint_names[EP__COUNT] = {
	[EP_AUTH] = "/auth", [EP_TOKEN] = "/token",
	[EP_AUTHORIZE] = "/authorize", [EP_INTROSPECT] = "/introspect",
	[EP_REVOKE] = "/revoke", [EP_PATS] = "/pats",
	[EP_WELLKNOWN] = "/.well-known/oauth-authorization-server",
	[EP_HEALTHZ] = "/healthz", [EP_READYZ] = "/readyz",
	[EP_METRICS] = "/metrics", [EP_OTHER] = "other",
};

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

const char *
endpoint_name(enum endpoint ep)
{
	return ep < EP__COUNT ? endpoint_names[ep] : "other";
}

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
	ctr_add(&sl->sl_duration[b], 1);
	ctr_add(&sl->sl_duration_sum_us, micros);
}

int64_t
shm_now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- /metrics ---------------------------------------------------------- */

struct mbuf {
	char	*mb_buf;
	size_t	 mb_len;
	size_t	 mb_cap;
	int	 mb_err;
};

static void mb_printf(struct mbuf *mb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mb_printf(struct mbuf *mb, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	if (mb->mb_err)
		return;
	va_start(ap, fmt);
	n = vsnprintf(mb->mb_buf + mb->mb_len, mb->mb_cap - mb->mb_len, fmt,
	    ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= mb->mb_cap - mb->mb_len)
		mb->mb_err = 1;
	else
		mb->mb_len += (size_t)n;
}

/* Sum one counter, found at the same offset in every slot. */
static uint64_t
slot_sum(const struct shm *shm, size_t off)
{
	uint64_t	 sum = 0;
	uint32_t	 i;

	for (i = 0; i < shm->sh_nslots; i++)
		sum += ctr_get((const uint64_t *)
		    ((const char *)&shm->sh_slots[i] + off));
	return sum;
}

#define SLOT_SUM(shm, member) slot_sum((shm), offsetof(struct shm_slot, member))

static void
metrics_requests(const struct shm *shm, struct mbuf *mb)
{
	int	 ep, st;

	mb_printf(mb, "# HELP tokend_requests_total HTTP responses by "
	    "endpoint and status.\n# TYPE tokend_requests_total counter\n");
	for (ep = 0; ep < EP__COUNT; ep++)
		for (st = 0; st < ST__COUNT; st++) {
			uint64_t n = SLOT_SUM(shm, sl_requests[ep][st]);
			if (n == 0)
				continue;
			if (st == ST_OTHER)
				mb_printf(mb, "tokend_requests_total{endpoint="
				    "\"%s\",status=\"other\"} %llu\n",
				    endpoint_name(ep), (unsigned long long)n);
			else
				mb_printf(mb, "tokend_requests_total{endpoint="
				    "\"%s\",status=\"%d\"} %llu\n",
				    endpoint_name(ep), status_codes[st],
				    (unsigned long long)n);
		}
}

static void
metrics_histogram(const struct shm *shm, struct mbuf *mb)
{
	uint64_t	 cum = 0;
	int		 b;

	mb_printf(mb, "# HELP tokend_request_duration_seconds Time from a "
	    "complete request to its response.\n"
	    "# TYPE tokend_request_duration_seconds histogram\n");
	for (b = 0; b < SHM_NBUCKETS; b++) {
		cum += SLOT_SUM(shm, sl_duration[b]);
		mb_printf(mb, "tokend_request_duration_seconds_bucket{le=\"%g\"}"
		    " %llu\n", (double)bucket_us[b] / 1e6,
		    (unsigned long long)cum);
	}
	cum += SLOT_SUM(shm, sl_duration[SHM_NBUCKETS]);
	mb_printf(mb, "tokend_request_duration_seconds_bucket{le=\"+Inf\"} "
	    "%llu\n", (unsigned long long)cum);
	mb_printf(mb, "tokend_request_duration_seconds_sum %.6f\n",
	    (double)SLOT_SUM(shm, sl_duration_sum_us) / 1e6);
	mb_printf(mb, "tokend_request_duration_seconds_count %llu\n",
	    (unsigned long long)cum);
}

static void
metric(struct mbuf *mb, const char *name, const char *type, const char *help,
    uint64_t v)
{
	mb_printf(mb, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help,
	    name, type, name, (unsigned long long)v);
}

/*
 * Bounded staleness (SPEC 5): how old the revocation feed's last confirmed
 * round trip is (+Inf before the first), and the hits that were verified in
 * PostgreSQL because it was older than max_revocation_lag.
 */
static void
metrics_feed(const struct shm *shm, struct mbuf *mb)
{
	int64_t	 ok = __atomic_load_n(&shm->sh_feed_ok_ms, __ATOMIC_RELAXED);

	mb_printf(mb, "# HELP tokend_revocation_feed_age_seconds Age of the "
	    "last revocation feed round trip confirmed.\n"
	    "# TYPE tokend_revocation_feed_age_seconds gauge\n");
	if (ok > 0)
		mb_printf(mb, "tokend_revocation_feed_age_seconds %.3f\n",
		    (double)(shm_now_ms() - ok) / 1000.0);
	else
		mb_printf(mb, "tokend_revocation_feed_age_seconds +Inf\n");
	metric(mb, "tokend_cache_hits_verified_total", "counter",
	    "Cache hits verified in PostgreSQL: the feed was stale.",
	    SLOT_SUM(shm, sl_cache_verified));
}

int
shm_metrics(const struct shm *shm, long long cache_entries, char *buf,
    size_t buflen)
{
	struct mbuf	 mb = { buf, 0, buflen, 0 };
	uint64_t	 recorded, flushed;

	metrics_requests(shm, &mb);
	metrics_histogram(shm, &mb);
	metric(&mb, "tokend_cache_hits_total", "counter",
	    "Token lookups answered from the cache.",
	    SLOT_SUM(shm, sl_cache_hits));
	metric(&mb, "tokend_cache_negative_hits_total", "counter",
	    "Lookups answered by a cached negative entry.",
	    SLOT_SUM(shm, sl_cache_negative_hits));
	metric(&mb, "tokend_cache_misses_total", "counter",
	    "Lookups that needed PostgreSQL.", SLOT_SUM(shm, sl_cache_misses));
	if (cache_entries >= 0)
		metric(&mb, "tokend_cache_entries", "gauge",
		    "Entries in the LMDB cache.", (uint64_t)cache_entries);
	recorded = SLOT_SUM(shm, sl_uses_recorded);
	flushed = __atomic_load_n(&shm->sh_uses_flushed, __ATOMIC_RELAXED);
	metric(&mb, "tokend_usage_pending", "gauge",
	    "Token uses recorded but not yet in PostgreSQL.",
	    recorded > flushed ? recorded - flushed : 0);
	metric(&mb, "tokend_usage_flushed_total", "counter",
	    "Token uses written to PostgreSQL.", flushed);
	metric(&mb, "tokend_usage_rows_flushed_total", "counter",
	    "Token rows updated by usage flushes.",
	    __atomic_load_n(&shm->sh_rows_flushed, __ATOMIC_RELAXED));
	metric(&mb, "tokend_usage_flushes_total", "counter",
	    "Usage flush batches committed.",
	    __atomic_load_n(&shm->sh_flushes, __ATOMIC_RELAXED));
	metric(&mb, "tokend_usage_dropped_total", "counter",
	    "Uses that found both usage tables full.",
	    SLOT_SUM(shm, sl_uses_dropped));
	metric(&mb, "tokend_pg_errors_total", "counter",
	    "PostgreSQL errors in workers and the writer.",
	    SLOT_SUM(shm, sl_pg_errors) + __atomic_load_n(
	    &shm->sh_writer_pg_errors, __ATOMIC_RELAXED));
	metric(&mb, "tokend_login_lockouts_total", "counter",
	    "Logins and client authentications refused by the failure limit.",
	    SLOT_SUM(shm, sl_login_lockouts));
	metric(&mb, "tokend_revocations_applied_total", "counter",
	    "Revocation notifications applied to the cache.",
	    __atomic_load_n(&shm->sh_revocations, __ATOMIC_RELAXED));
	metric(&mb, "tokend_cache_clears_total", "counter",
	    "Whole-cache clears (LISTEN connection re-established).",
	    __atomic_load_n(&shm->sh_cache_clears, __ATOMIC_RELAXED));
	metric(&mb, "tokend_worker_restarts_total", "counter",
	    "Workers respawned after dying.",
	    __atomic_load_n(&shm->sh_worker_restarts, __ATOMIC_RELAXED));
	metric(&mb, "tokend_writer_restarts_total", "counter",
	    "Writers respawned after dying.",
	    __atomic_load_n(&shm->sh_writer_restarts, __ATOMIC_RELAXED));
	metric(&mb, "tokend_connections_open", "gauge",
	    "Client connections open now.", SLOT_SUM(shm, sl_conns_open));
	metric(&mb, "tokend_connections_total", "counter",
	    "Client connections accepted.", SLOT_SUM(shm, sl_conns_total));
	metrics_feed(shm, &mb);
	mb_printf(&mb, "# HELP tokend_build_info The running build.\n"
	    "# TYPE tokend_build_info gauge\n"
	    "tokend_build_info{version=\"%s\"} 1\n", TOKEND_VERSION);
	return mb.mb_err ? -1 : (int)mb.mb_len;
}

/*
 * argon2id verification threads; the design is in hashpool.h.
 */
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "worker/hashpool.h"
#include "worker/worker.h"

#define HP_PEER_LEN	sizeof(((struct conn *)0)->c_peer)

struct hp_job {
	struct conn	*jb_conn;	/* first: conn_close clears it */
	hashpool_cb	 jb_cb;
	void		*jb_arg;
	int		 jb_has_hash;
	int		 jb_ok;
	size_t		 jb_len;
	int		 jb_peer;	/* index in hp_peer, or -1 */
	char		 jb_hash[PASSWD_ENCODED_MAX];
	char		 jb_pw[PASSWD_MAX_LEN + 1];
	struct hp_job	*jb_next;
};

_Static_assert(offsetof(struct hp_job, jb_conn) == 0,
    "conn_close clears the first member of whatever c_pending points at");

struct hashpool {
	struct evsrc	 hp_ev;
	int		 hp_efd;	/* eventfd: jobs are done */
	int		 hp_queued;	/* loop thread only */
	/* The source address of each job not yet called back ("": free
	 * entry), loop thread only; a few dozen at most, so a scan. */
	char		 hp_peer[HASHPOOL_MAX_QUEUED][HP_PEER_LEN];
	pthread_mutex_t	 hp_mu;		/* guards the two lists */
	pthread_cond_t	 hp_cv;		/* hp_todo is not empty */
	struct hp_job	*hp_todo;	/* FIFO */
	struct hp_job	**hp_todo_tail;
	struct hp_job	*hp_done;	/* LIFO; reversed when taken */
};

/* ---- the threads -------------------------------------------------------- */

static struct hp_job *
hp_take(struct hashpool *hp)
{
	struct hp_job	*j;

	pthread_mutex_lock(&hp->hp_mu);
	while ((j = hp->hp_todo) == NULL)
		pthread_cond_wait(&hp->hp_cv, &hp->hp_mu);
	hp->hp_todo = j->jb_next;
	if (hp->hp_todo == NULL)
		hp->hp_todo_tail = &hp->hp_todo;
	pthread_mutex_unlock(&hp->hp_mu);
	return j;
}

static void *
hp_thread(void *arg)
{
	struct hashpool	*hp = arg;
	struct hp_job	*j;
	uint64_t	 one = 1;

	/* Below the loop, with the default slice: hashpool.h says why. */
	worker_sched(HASHPOOL_NICE, 0);
	for (;;) {
		j = hp_take(hp);
		j->jb_ok = passwd_verify(j->jb_has_hash ? j->jb_hash : NULL,
		    j->jb_pw, j->jb_len) == 0;
		OPENSSL_cleanse(j->jb_pw, sizeof(j->jb_pw));
		pthread_mutex_lock(&hp->hp_mu);
		j->jb_next = hp->hp_done;
		hp->hp_done = j;
		pthread_mutex_unlock(&hp->hp_mu);
		/* Only EAGAIN can fail here (counter full): already readable. */
		if (write(hp->hp_efd, &one, sizeof(one)) == -1)
			continue;
	}
	return NULL;
}

/* Threads take no signals: the loop thread's handlers set its flags. */
static int
hp_start(struct hashpool *hp)
{
	pthread_t	 t;
	sigset_t	 all, old;
	int		 i, rc = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < HASHPOOL_THREADS && rc == 0; i++)
		if ((rc = pthread_create(&t, NULL, hp_thread, hp)) == 0)
			pthread_detach(t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_errorf("%s: pthread_create: %s", __func__, strerror(rc));
		return i > 1 ? 0 : -1;	/* one thread is enough to serve */
	}
	return 0;
}

static void hashpool_event(struct evsrc *src, uint32_t events);

struct hashpool *
hashpool_new(int epfd)
{
	struct hashpool	*hp;
	struct epoll_event ev;

	if ((hp = calloc(1, sizeof(*hp))) == NULL)
		return NULL;
	hp->hp_ev.ev_fn = hashpool_event;
	hp->hp_todo_tail = &hp->hp_todo;
	pthread_mutex_init(&hp->hp_mu, NULL);
	pthread_cond_init(&hp->hp_cv, NULL);
	if ((hp->hp_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_errorf("%s: eventfd: %s", __func__, strerror(errno));
		free(hp);
		return NULL;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = hp;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, hp->hp_efd, &ev) == -1) {
		log_errorf("%s: epoll_ctl: %s", __func__, strerror(errno));
		goto fail;
	}
	if (hp_start(hp) == -1)
		goto fail;
	return hp;
fail:
	close(hp->hp_efd);
	free(hp);
	return NULL;
}

/* ---- the loop side ------------------------------------------------------ */

/*
 * An entry of hp_peer for a job of peer: its index, -1 for a job with no
 * connection, HASHPOOL_BUSY when peer has its share of the queue already.
 * The caller checked hp_queued, so a free entry exists; none would be
 * answered as busy, never written past the table.
 */
static int
hp_peer_claim(struct hashpool *hp, const char *peer)
{
	int	 i, n = 0, slot = -1;

	if (peer == NULL)
		return -1;
	for (i = 0; i < HASHPOOL_MAX_QUEUED; i++) {
		if (hp->hp_peer[i][0] == '\0') {
			if (slot == -1)
				slot = i;
		} else if (strcmp(hp->hp_peer[i], peer) == 0)
			n++;
	}
	if (n >= HASHPOOL_MAX_PER_PEER || slot == -1)
		return HASHPOOL_BUSY;
	/* An empty c_peer cannot happen (conn.c writes "unix" at least). */
	snprintf(hp->hp_peer[slot], sizeof(hp->hp_peer[slot]), "%s",
	    peer[0] != '\0' ? peer : "?");
	return slot;
}

int
hashpool_verify(struct hashpool *hp, struct conn *c, const char *encoded,
    const char *pw, size_t len, hashpool_cb cb, void *arg)
{
	struct hp_job	*j;
	int		 peer;

	if (hp == NULL || hp->hp_queued >= HASHPOOL_MAX_QUEUED)
		return -1;
	if ((peer = hp_peer_claim(hp, c != NULL ? c->c_peer : NULL)) ==
	    HASHPOOL_BUSY)
		return HASHPOOL_BUSY;
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		if (peer >= 0)
			hp->hp_peer[peer][0] = '\0';
		return -1;
	}
	j->jb_peer = peer;
	j->jb_conn = c;
	j->jb_cb = cb;
	j->jb_arg = arg;
	/* Too long for the buffers: verify the dummy, which fails as
	 * passwd_verify would for an over-long password. */
	if (encoded != NULL && strlen(encoded) < sizeof(j->jb_hash)) {
		memcpy(j->jb_hash, encoded, strlen(encoded) + 1);
		j->jb_has_hash = 1;
	}
	j->jb_len = len <= PASSWD_MAX_LEN ? len : 0;
	memcpy(j->jb_pw, pw, j->jb_len);
	if (len > PASSWD_MAX_LEN)
		j->jb_has_hash = 0;
	pthread_mutex_lock(&hp->hp_mu);
	*hp->hp_todo_tail = j;
	hp->hp_todo_tail = &j->jb_next;
	pthread_cond_signal(&hp->hp_cv);
	pthread_mutex_unlock(&hp->hp_mu);
	hp->hp_queued++;
	if (c != NULL)
		c->c_pending = j;
	return 0;
}

/* Jobs are done (hp_ev's handler): call them back, oldest first. */
static void
hashpool_event(struct evsrc *src, uint32_t events)
{
	struct hashpool	*hp = (struct hashpool *)src;
	struct hp_job	*j, *next, *fifo = NULL;
	struct conn	*c;
	uint64_t	 n;

	(void)events;
	/* EAGAIN: a job finished after the last read; take it anyway. */
	if (read(hp->hp_efd, &n, sizeof(n)) == -1)
		n = 0;
	pthread_mutex_lock(&hp->hp_mu);
	j = hp->hp_done;
	hp->hp_done = NULL;
	pthread_mutex_unlock(&hp->hp_mu);
	for (; j != NULL; j = next) {	/* oldest first */
		next = j->jb_next;
		j->jb_next = fifo;
		fifo = j;
	}
	for (j = fifo; j != NULL; j = next) {
		next = j->jb_next;
		hp->hp_queued--;
		if (j->jb_peer >= 0)
			hp->hp_peer[j->jb_peer][0] = '\0';
		/* A cancelled job's connection is gone: nobody to answer. */
		if ((c = j->jb_conn) != NULL) {
			c->c_pending = NULL;
			j->jb_cb(c, j->jb_ok, j->jb_arg);
		}
		free(j);
	}
}

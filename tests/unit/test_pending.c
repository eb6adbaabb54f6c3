/*
 * A parked request's state (worker.h: struct pending): when the client goes
 * away while its request waits for PostgreSQL or argon2, conn_close frees
 * the state through the free function in its header, which wipes what it
 * holds (a client secret, a password, a new token), and not with a plain
 * free() that leaves those in freed memory.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "worker/worker.h"

struct secret_state {
	struct pending	 ss_pd;
	char		 ss_secret[32];
};

static int	 freed;
static char	 seen[32];

static void
secret_free(struct pending *pd)
{
	struct secret_state *ss = (struct secret_state *)pd;

	freed++;
	memcpy(seen, ss->ss_secret, sizeof(seen));
	explicit_bzero(ss, sizeof(*ss));
	free(ss);
}

static struct config	 cf;
static struct shm_slot	 slot;

static struct conn *
parked_conn(void)
{
	struct conn		*c;
	struct secret_state	*ss;

	cf.cf_max_connections = 10;
	W.wk_cf = &cf;
	W.wk_slot = &slot;
	W.wk_nconns = 1;
	c = calloc(1, sizeof(*c));
	ss = calloc(1, sizeof(*ss));
	cr_assert(c != NULL && ss != NULL);
	c->c_fd = -1;
	c->c_state = CS_PENDING;
	ss->ss_pd.pd_free = secret_free;
	strcpy(ss->ss_secret, "client-secret");
	c->c_pending_data = &ss->ss_pd;
	freed = 0;
	return c;
}

Test(pending, conn_close_frees_through_the_header)
{
	struct conn	*c = parked_conn();

	conn_close(c);
	cr_assert_eq(freed, 1, "the state's own free function ran");
	cr_assert_str_eq(seen, "client-secret");
	cr_assert_null(c->c_pending_data);
	conn_free_closed();
}

Test(pending, freed_once)
{
	struct conn	*c = parked_conn();

	worker_pending_free(c);
	cr_assert_eq(freed, 1);
	cr_assert_null(c->c_pending_data);
	worker_pending_free(c);		/* the answering path, then close */
	conn_close(c);
	cr_assert_eq(freed, 1, "a state is freed once");
	conn_free_closed();
}

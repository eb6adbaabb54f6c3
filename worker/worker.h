/*
 * worker: the engine of one process of the prefork pool.  An epoll loop
 * over the shared listeners, its client connections, the master's pipe and
 * its own PostgreSQL connections; HTTP/1.1 with keep-alive and pipelining.
 * OAuth plugs in as a module (worker/oauth/oauth.h); worker/README.md has
 * the design.  From the bottom up; each file calls only files listed
 * before it:
 *
 *   worker.c    W, the clocks, the epoll set, listeners' arming, timers,
 *               worker_resume: what every file above needs.
 *   tls.c       TLS for tls_listen connections.
 *   resp.c      building responses into the connection's output buffer,
 *               the one JSON error answer.
 *   metrics.c   the /metrics text from shm's counters.
 *   peer.c      the client address of a request (trusted_proxies), and
 *               the canary_token_used line about that client.
 *   hashpool.c  argon2id verification threads.
 *   pgconn.c    the asynchronous PostgreSQL driver (pgconn.h), used by
 *   lookup.c    the cache misses' batched lookups, and by
 *   pgq.c       the OAuth endpoints' queries.
 *   h_auth.c    /auth: bearer validation through the cache.
 *   h_ops.c     /healthz, /readyz, /metrics.
 *   dispatch.c  the routes (the engine's, then each module's): path and
 *               method to handler, 404/405, the endpoints' labels.
 *   conn.c      a connection: read, parse, dispatch in order, write.
 *   loop.c      worker_main: set-up after fork, the loop, the stop.
 *
 * Contract: worker_main runs only in a child the master just forked, with
 * the modules the master hands it; it owns everything it opens and exits
 * the process (never returns).  Everything here runs on the loop thread
 * except hashpool's workers (hashpool.h).  Handlers must never block: work
 * that needs PostgreSQL or argon2 parks the connection (HANDLER_PENDING,
 * its state in c_pending_data behind a struct pending) and a completion
 * resumes it through worker_resume once the answer is written.  A
 * connection closed while parked has its request cancelled (the
 * completion gets c NULL) and its state freed through pd_free.
 */
#ifndef TOKEND_WORKER_H
#define TOKEND_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "store/runtime/runtime.h"
#include "proto/proto.h"
#include "shm/shm.h"
#include "store/store.h"

/*
 * What an epoll event's data.ptr points at: the first member of each event
 * source (a listener, a connection, the master's pipe, a PostgreSQL
 * connection, the hashpool's eventfd).  Like nginx's events, a source
 * carries its own handler, so the loop calls it without knowing what the
 * source is, and a module adds sources without the loop changing.
 */
struct evsrc;
typedef void (*evsrc_fn)(struct evsrc *src, uint32_t events);

struct evsrc {
	evsrc_fn	 ev_fn;
};

/*
 * A parked handler's own state (c_pending_data).  Every such state starts
 * with this header: conn_close, when it cancels a parked request, frees the
 * state through pd_free, so a state that holds secrets (a form with a
 * client secret, a password, a new token) is wiped on that path as on the
 * path that answers.  pd_free frees the whole block.
 */
struct pending {
	void	(*pd_free)(struct pending *pd);
	size_t	  pd_size;	/* for worker_pending_wipe: the whole block */
};

/*
 * Output caps.  A connection stops parsing requests once CONN_OUT_MAX
 * bytes of answers are waiting in its buffer; when the socket is full too,
 * it waits for EPOLLOUT alone (no read, no parse) until the client reads.
 * WORKER_OUT_MAX caps the output buffers of all the worker's connections
 * together (wk_outbuf): at that cap every connection whose output is not
 * all sent answers one request per write and, while its socket is full,
 * reads nothing, so a client that reads is still served while those that
 * do not hold no more memory.  A client that never reads is closed after
 * header_timeout, and a drained buffer over 64 KiB is given back.
 */
#define CONN_OUT_MAX	(1 << 20)
#define WORKER_OUT_MAX	(64 << 20)

/* Intrusive FIFO of connections ordered by deadline (all share a timeout). */
struct conn;
struct conn_list {
	struct conn	*cl_head;
	struct conn	*cl_tail;
};

enum conn_state {
	CS_IDLE,	/* keep-alive, waiting for a first byte */
	CS_READING,	/* part of a request is here */
	CS_PENDING,	/* a handler waits for PostgreSQL */
	CS_CLOSING,	/* write what is buffered, then close */
};

/*
 * The request id: X-Request-Id as sent when it is 1 to REQID_MAX printable
 * ASCII characters, else 16 random bytes in hex; returned on every response.
 */
#define REQID_MAX	128

/*
 * What the access log says about the request being answered, beyond the
 * request itself: set by the handlers that know it (resp_log_*), reset
 * when the request is done.  Copied only while the access log is on.
 */
struct reqlog {
	int64_t		 rl_user_id;	/* 0: none */
	int64_t		 rl_token_id;	/* 0: none */
	char		 rl_prefix[TOKEN_DISPLAY_LEN + 1];
	char		 rl_client[TI_CLIENT_LEN];
	char		 rl_ua[LOG_UA_MAX + 1];	/* cut by log_access's rule */
};

struct conn {
	struct evsrc	 c_ev;
	int		 c_fd;
	enum conn_state	 c_state;
	uint32_t	 c_events;	/* the epoll events registered */
	int		 c_closed;	/* freed at the end of the loop turn */
	struct conn	*c_dead_next;
	SSL		*c_ssl;		/* NULL on a plain connection */
	int		 c_tls_want_out; /* a read waits for the socket to drain */
	int		 c_keepalive;	/* of the request being answered */
	int		 c_close;	/* close once the output is written */
	char		*c_in;
	size_t		 c_inoff;	/* start of the unparsed bytes */
	size_t		 c_inlen;	/* end of the bytes read */
	size_t		 c_incap;
	char		*c_out;
	size_t		 c_outlen;
	size_t		 c_outoff;
	size_t		 c_outcap;
	/* The request being answered (its slices point into c_in). */
	struct http_req	 c_req;
	size_t		 c_reqlen;	/* head + body, consumed when done */
	enum endpoint	 c_ep;
	int		 c_status;
	size_t		 c_resp_off;	/* where this response starts in c_out */
	const char	*c_resp_bad;	/* a header resp_header refused, or NULL */
	int		 c_peer_gone;	/* EOF while a handler was pending */
	int64_t		 c_start_us;
	/* Deadline list membership. */
	struct conn_list *c_list;
	struct conn	*c_prev;
	struct conn	*c_next;
	int64_t		 c_deadline_ms;
	/* While CS_PENDING: the request an answer will come for (lookup,
	 * pgq or hashpool; its first member is a struct conn * that
	 * conn_close clears through lookup_cancel, so the answer finds no
	 * connection), and the handler's own state (a struct pending
	 * header first; freed through it by the handler or by conn_close:
	 * worker_pending_free). */
	void		*c_pending;
	struct pending	*c_pending_data;
	char		 c_peer[64];
	char		 c_reqid[REQID_MAX + 1];	/* "": not chosen yet */
	struct reqlog	 c_log;
	/* The socket peer (peer.c): IPv4 mapped, zeros for a unix socket. */
	uint8_t		 c_peer_ip[IP_LEN];
	uint8_t		 c_peer_has_ip;
	uint8_t		 c_peer_trusted;	/* inside trusted_proxies */
	char		 c_client[IP_STR_LEN];	/* peer_name's buffer */
};

struct lookup;
struct pgq;
struct hashpool;

enum handler_result { HANDLER_DONE, HANDLER_PENDING };

typedef enum handler_result (*handler_fn)(struct conn *c);

/*
 * A route: a path (or, with wr_prefix, a path prefix such as "/pats/")
 * names one endpoint; the methods it accepts are a bit set (1 << method),
 * and wr_allow is its Allow header.  The first route of an endpoint gives
 * the endpoint's label in logs and /metrics, so each endpoint is named
 * once, in its route.
 */
#define WR_M(method)	(1u << (method))	/* a wr_methods bit */

struct worker_route {
	const char	*wr_path;
	int		 wr_prefix;
	enum endpoint	 wr_ep;
	unsigned	 wr_methods;
	const char	*wr_allow;
	handler_fn	 wr_fn;
};

/*
 * A module plugs handlers into the engine: its routes (after the engine's
 * own) and its set-up, run once in the worker after the engine's, with W
 * ready (wm_init returns 0, or -1 to stop the worker).  The master passes
 * the modules to worker_main, so the engine names none of them.
 */
struct worker_module {
	const char		 *wm_name;
	const struct worker_route *wm_routes;
	size_t			  wm_nroutes;
	int			(*wm_init)(void);
};

/* A periodic task, run every loop turn (at least every 100 ms). */
typedef void (*worker_timer_fn)(void *arg);
#define WORKER_MAX_TIMERS	8

struct worker {
	const struct config *wk_cf;
	struct shm	*wk_shm;
	struct shm_slot	*wk_slot;
	int		 wk_num;
	int		 wk_epfd;
	struct evsrc	 wk_master_ev;
	int		 wk_master_fd;
	struct wk_listener {
		struct evsrc	 wl_ev;
		int		 wl_fd;
		int		 wl_armed;	/* in the epoll set */
		int		 wl_tls;
	}		 wk_ls[2 * CF_MAX_LISTEN];
	int		 wk_nls;
	int		 wk_nconns;
	struct conn_list wk_reading;	/* header_timeout */
	struct conn_list wk_idle;	/* keepalive_timeout */
	struct conn	*wk_dead;	/* closed this loop turn, not yet freed */
	size_t		 wk_outbuf;	/* bytes of all c_out buffers */
	int64_t		 wk_accept_resume_ms; /* listeners paused until; 0 */
	int64_t		 wk_accept_log_ms[4]; /* accept errors: last logged */
	int64_t		 wk_accept_quiet[4];  /* ... and not logged since */
	SSL_CTX		*wk_tls;	/* NULL without tls_listen */
	struct cache	*wk_cache;
	struct lookup	*wk_lookup;
	struct pgq	*wk_pgq;	/* OAuth queries (pgq.h) */
	struct hashpool	*wk_hashpool;	/* argon2id threads (hashpool.h) */
	const struct worker_module *const *wk_mods; /* NULL-terminated */
	const char	*wk_ep_name[EP__COUNT];	/* from the routes */
	struct wk_timer {
		worker_timer_fn	 wt_fn;
		void		*wt_arg;
	}		 wk_timers[WORKER_MAX_TIMERS];
	int		 wk_ntimers;
	void		(*wk_resume)(struct conn *c);	/* conn_resume */
	int		 wk_stopping;
	int64_t		 wk_stop_at_ms;	/* when stopping began */
	int64_t		 wk_now_ms;	/* monotonic, once per loop turn */
	int64_t		 wk_now;	/* unix seconds, once per loop turn */
	int64_t		 wk_wall_ms;	/* unix milliseconds, once per turn */
	char		*wk_mbuf;	/* /metrics text buffer */
	size_t		 wk_mbufcap;
	char		 wk_date[64];	/* "Date: ...\r\n", the current second */
};

/* ---- loop.c ------------------------------------------------------------ */

/*
 * mods: the modules to plug in (NULL-terminated, static), each set up after
 * the engine.
 */
void	worker_main(const struct config *cf, struct shm *shm, int slot,
	    const struct listener *ls, int nls, int master_fd,
	    const struct worker_module *const *mods)
	    __attribute__((noreturn));

/* ---- worker.c: the state, the clock, what every file above needs -------- */

/* The one worker state of this process. */
extern struct worker W;

/* Read the clocks into W: once per loop turn. */
void	worker_clock(void);
/* Add fd to the epoll set with src as its data: 0, or -1 (logged). */
int	worker_ep_add(int fd, uint32_t events, struct evsrc *src);
/* Arm (1) or disarm (0) the listeners: max_connections, stopping. */
void	worker_listen(int on);
/*
 * Out of descriptors (EMFILE, ENFILE) or memory: disarm the listeners for
 * WORKER_ACCEPT_PAUSE_MS, after which the loop re-arms them.  Level-
 * triggered listeners would otherwise wake the loop for ever while the
 * queued connection cannot be taken.
 */
void	worker_accept_pause(void);
#define WORKER_ACCEPT_PAUSE_MS	100
/*
 * The calling thread's nice, nice_delta above the one it inherited (at most
 * 19), and its requested scheduler slice (0: the kernel's default), which
 * kernels with EEVDF (6.12+) honour and older ones ignore.  Best effort.
 */
void	worker_sched(int nice_delta, uint64_t slice_ns);
/* The loop thread's slice: hashpool.h says why it is short. */
#define WORKER_SLICE_NS	100000	/* 0.1 ms, the kernel's minimum */
/* Run fn(arg) every loop turn from now on: 0, or -1 when the table is full. */
int	worker_timer_add(worker_timer_fn fn, void *arg);
void	worker_timers_run(void);
/* Free c's pending state through its header (none: nothing). */
void	worker_pending_free(struct conn *c);
/* A handler's result: when it is not HANDLER_PENDING, free the state.
 * Returns r. */
enum handler_result worker_pending_done(struct conn *c,
	    enum handler_result r);
/* A pd_free for a state that holds secrets: wipe pd_size bytes, free. */
void	worker_pending_wipe(struct pending *pd);
/*
 * A parked connection's handler finished (its answer is written): the
 * engine writes it and goes on parsing.  Completions call this, not
 * conn.c, so that the handlers sit below the connection code.
 */
void	worker_resume(struct conn *c);

/* ---- conn.c ------------------------------------------------------------ */

void	conn_accept(int lfd, int tls);
/* A parked connection's handler finished: write, then go on parsing (the
 * engine's wk_resume; handlers call worker_resume). */
void	conn_resume(struct conn *c);
void	conn_close(struct conn *c);
void	conn_free_closed(void);
void	conn_expire(int64_t now_ms);
void	conn_list_remove(struct conn *c);
/* Stopping: close idle connections, answer the rest with close. */
void	conn_drain_idle(void);

/* ---- tls.c ------------------------------------------------------------- */

/* After fork: the context for tls_listen connections, or NULL (err set). */
SSL_CTX	*tls_ctx_new(const struct config *cf, char *err, size_t errlen);
/* read(2)/send(2) semantics: > 0, 0 for EOF, -1 with errno EAGAIN or other. */
ssize_t	tls_recv(struct conn *c, void *buf, size_t len);
ssize_t	tls_send(struct conn *c, const void *buf, size_t len);
int	tls_pending(struct conn *c);

/* ---- resp.c ------------------------------------------------------------ */

/*
 * A header name that is not a token, or a value with CR, LF or NUL, is
 * never written (that would split the header or the response): resp_end
 * then drops what the response wrote so far and answers 500 server_error
 * instead, after a "header_refused" error event naming the header (never
 * its value).  A 500 rather than the response without that header,
 * because a 200 from /auth without its X-Auth-User would pass a request
 * on with no identity.
 */

void	resp_start(struct conn *c, int status);
/*
 * The access log's facts (worker.h struct reqlog), for whoever knows them:
 * the token a request presented (resp_log_token: its user, id, client;
 * resp_log_prefix: its display prefix, from the token string), the client
 * that authenticated (resp_log_client), the user it acted for
 * (resp_log_user).  Each does nothing while the access log is off.  A
 * bearer token's prefix and the user agent are copied when the request
 * begins: c_req's slices may move while a handler is parked.
 */
void	resp_log_token(struct conn *c, const struct tok_info *ti);
void	resp_log_prefix(struct conn *c, const char *token);
void	resp_log_client(struct conn *c, const char *client_id);
void	resp_log_user(struct conn *c, int64_t user_id);
/* conn.c: a request was parsed (take its X-Request-Id); one is done. */
void	resp_request_begin(struct conn *c);
void	resp_request_done(struct conn *c);
void	resp_header(struct conn *c, const char *name, const char *value);
void	resp_header_i64(struct conn *c, const char *name, int64_t v);
void	resp_headerf(struct conn *c, const char *name, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/* Content-Type (NULL: none), Content-Length, Connection, the blank line and
 * the body (omitted for HEAD); counts the request in /metrics. */
void	resp_end(struct conn *c, const char *ctype, const void *body,
	    size_t len);
/*
 * The one error answer of the engine and its modules: the body
 * {"error": error, "error_description": desc}, as the whole response
 * (resp_error) or after resp_start and headers (resp_error_end).
 */
void	resp_error(struct conn *c, int status, const char *error,
	    const char *desc);
void	resp_error_end(struct conn *c, const char *error, const char *desc);
/* Serialise a jansson object as the whole response (resp_json) or as the
 * body after resp_start and headers (resp_json_end); both steal obj. */
void	resp_json(struct conn *c, int status, json_t *obj);
void	resp_json_end(struct conn *c, json_t *obj);

/* ---- metrics.c --------------------------------------------------------- */

/* What /metrics reads outside the shared segment (h_ops.c). */
struct metrics_gauges {
	long long	 mg_cache_entries;	/* -1: unknown */
	uint64_t	 mg_map_used;		/* LMDB pages in use, bytes */
	uint64_t	 mg_map_size;		/* 0: unknown */
	int		 mg_pg_up;		/* tokend_pg_up */
};

/*
 * The Prometheus text of every counter, summed over all slots, and of the
 * gauges g, into buf.  Returns the length, or -1 when buf is too small.
 */
int	metrics_render(const struct metrics_gauges *g, char *buf,
	    size_t buflen);

/*
 * Issue 13's event counters, one call where the event happens (any file of
 * the worker): a failed sign-in (the password grant's wrong login, the
 * sign-in page's), a refresh family revoked for reuse, a code replayed, a
 * token issued by grant (a pair counts once).  One relaxed store each.
 */
static inline void
metrics_signin_failed(void)
{
	ctr_add(&W.wk_slot->sl_signin_failures, 1);
}

static inline void
metrics_refresh_reuse(void)
{
	ctr_add(&W.wk_slot->sl_refresh_reuse, 1);
}

static inline void
metrics_code_replay(void)
{
	ctr_add(&W.wk_slot->sl_code_replay, 1);
}

static inline void
metrics_token_issued(enum shm_grant g)
{
	ctr_add(&W.wk_slot->sl_tokens_issued[g], 1);
}

/* ---- peer.c: the client address (SPEC 13) ------------------------------ */

/* Worker start: parse trusted_proxies (config.c validated it). */
void	peer_init(const struct config *cf);
/* At accept: c's peer address and whether it is a trusted proxy. */
void	peer_accept(struct conn *c, const struct sockaddr_storage *ss);
/*
 * The client address of c's current request: the forwarded one when the
 * peer is a trusted proxy that sent one, else the peer.  0 with ip set,
 * or -1 when there is none (a unix-socket peer).
 */
int	peer_client(const struct conn *c, uint8_t ip[IP_LEN]);
/* The same as text for logs ("unix" when none). */
void	peer_client_str(const struct conn *c, char buf[IP_STR_LEN]);
/*
 * The client address as text, as peer_client_str writes it, in c's own
 * buffer: what logs, limits per address and the audit trail name, so that
 * behind a trusted proxy they name the client, not the proxy.
 */
const char *peer_name(struct conn *c);
/*
 * A canary PAT was presented on c (SPEC 13): count it and log
 * canary_token_used with the client address, user agent and path.  The
 * caller answers as for an unknown token.  auth_hit calls it for cache
 * hits, the lookup for answers from PostgreSQL.
 */
void	peer_canary(struct conn *c, const struct tok_info *ti);

/* ---- dispatch.c -------------------------------------------------------- */

/* Label each endpoint from the routes of the engine and W.wk_mods. */
void	dispatch_init(void);
/* Route c->c_req; a response is written unless HANDLER_PENDING. */
enum handler_result dispatch(struct conn *c);

/* ---- handlers ---------------------------------------------------------- */

enum handler_result h_healthz(struct conn *c);
enum handler_result h_readyz(struct conn *c);
enum handler_result h_metrics(struct conn *c);
enum handler_result h_auth(struct conn *c);

/*
 * Bearer validation for the endpoints that take a user's token (/authorize,
 * /pats), from h_auth.c.  auth_bearer_begin: 1 with *ti from the cache (to
 * be checked), 2 when parked on the lookup (cb runs later, as lookup.h
 * says, and must first set c->c_pending to NULL), 0 when it answered (401:
 * no or malformed token, or a kind not in kinds; 503).  auth_bearer_check: 1
 * when ti is a valid, unexpired token of one of kinds, else 0 after
 * answering 401 invalid_token (503 for ti NULL).  kinds: bits
 * 1 << TOKEN_ACCESS, ...
 */
typedef void (*bearer_cb)(struct conn *c, const struct tok_info *ti);
int	auth_bearer_begin(struct conn *c, unsigned kinds, struct tok_info *ti,
	    bearer_cb cb);
int	auth_bearer_check(struct conn *c, const struct tok_info *ti,
	    unsigned kinds);
/* 401 invalid_token with its WWW-Authenticate challenge. */
void	auth_bearer_denied(struct conn *c, const char *desc);
/* 403 insufficient_scope with its challenge (RFC 6750 3.1): a valid
 * token that may not call this endpoint. */
void	auth_bearer_forbidden(struct conn *c, const char *desc);
/* 503 temporarily_unavailable, Retry-After: 1, no-store, after a failed
 * usage_record (both usage tables full, SPEC 6); logs usage_full at most
 * once a second.  /auth and /introspect. */
void	auth_usage_full(struct conn *c);
/*
 * The revocation feed's heartbeat, read before the cache (acquire: the
 * entries it vouches for are read after it; a plain load on x86).  Read
 * after the cache, a ping applied in between could vouch for an entry
 * read before its revocation was.  shm/README.md "Bounded staleness".
 */
static inline int64_t
auth_feed_mark(void)
{
	return __atomic_load_n(&W.wk_shm->sh_feed_ok_ms, __ATOMIC_ACQUIRE);
}

/* Whether a feed mark ok is fresh: a round trip confirmed within
 * max_revocation_lag (SPEC 5).  What is cached is trusted only then. */
static inline int
auth_feed_fresh(int64_t ok)
{
	return ok > 0 && W.wk_now_ms - ok <=
	    (int64_t)W.wk_cf->cf_max_revocation_lag * 1000;
}

/*
 * A cache hit on hash found ti, with feed_ok from auth_feed_mark taken
 * before the cache read (SPEC 5, bounded staleness).  1: answer from ti now
 * (a negative entry, or the feed confirmed within max_revocation_lag, or
 * PostgreSQL cannot be asked and the entry may still stand:
 * lookup_stale_ok); 2: parked on the lookup to be verified, cb runs later
 * as for a miss (lookup.h: lookup_verify); -1: answer 503.
 */
int	auth_hit(struct conn *c, const uint8_t hash[TOKEN_HASH_LEN],
	    const struct tok_info *ti, int64_t feed_ok, bearer_cb cb);

#endif /* TOKEND_WORKER_H */

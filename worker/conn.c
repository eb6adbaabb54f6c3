/*
 * A client connection: read, parse, dispatch each complete request in order,
 * write the responses of a whole read in one send().  Pipelined requests are
 * answered strictly in order: while a handler waits for PostgreSQL the
 * connection is parked and later requests stay unparsed in its buffer.
 *
 * Timeouts: a connection with part of a request (or a new one with none)
 * sits on wk_reading and gets 408 after header_timeout; one between requests
 * sits on wk_idle and is closed after keepalive_timeout.  Both lists are
 * FIFOs because every member of a list has the same timeout.
 *
 * Back-pressure: a client that pipelines requests and never reads its
 * answers must not cost CPU.  Once its output is at the cap (worker.h)
 * and the socket is full, the connection waits for EPOLLOUT alone: no
 * read, no parse, so a level-triggered EPOLLIN cannot spin the loop.  The
 * same holds for a full input buffer while a handler is pending.
 */
#include <sys/epoll.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker/worker.h"
#include "worker/lookup.h"

#define CONN_IN_INITIAL	4096
#define CONN_OUT_KEEP	(64 * 1024)	/* a drained buffer over this is freed */

static void conn_process(struct conn *c);
static int conn_write(struct conn *c);
static void conn_watch(struct conn *c);
static void conn_event(struct evsrc *src, uint32_t events);

/* ---- deadline lists ---------------------------------------------------- */

void
conn_list_remove(struct conn *c)
{
	struct conn_list *l = c->c_list;

	if (l == NULL)
		return;
	if (c->c_prev)
		c->c_prev->c_next = c->c_next;
	else
		l->cl_head = c->c_next;
	if (c->c_next)
		c->c_next->c_prev = c->c_prev;
	else
		l->cl_tail = c->c_prev;
	c->c_prev = c->c_next = NULL;
	c->c_list = NULL;
}

static void
conn_list_push(struct conn_list *l, struct conn *c, int timeout_s)
{
	conn_list_remove(c);
	c->c_deadline_ms = W.wk_now_ms + (int64_t)timeout_s * 1000;
	c->c_list = l;
	c->c_prev = l->cl_tail;
	c->c_next = NULL;
	if (l->cl_tail)
		l->cl_tail->c_next = c;
	else
		l->cl_head = c;
	l->cl_tail = c;
}

/* ---- accept and close -------------------------------------------------- */

static void
conn_peer(struct conn *c, const struct sockaddr_storage *ss)
{
	const void	*addr = NULL;

	if (ss->ss_family == AF_INET)
		addr = &((const struct sockaddr_in *)ss)->sin_addr;
	else if (ss->ss_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	if (addr == NULL ||
	    inet_ntop(ss->ss_family, addr, c->c_peer, sizeof(c->c_peer)) ==
	    NULL)
		strcpy(c->c_peer, "unix");
	peer_accept(c, ss);
}

static struct conn *
conn_new(int fd, const struct sockaddr_storage *ss, int tls)
{
	struct conn	*c;
	struct epoll_event ev;
	int		 one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->c_in = malloc(CONN_IN_INITIAL)) == NULL) {
		free(c);
		return NULL;
	}
	c->c_ev.ev_fn = conn_event;
	c->c_fd = fd;
	if (tls && ((c->c_ssl = SSL_new(W.wk_tls)) == NULL ||
	    SSL_set_fd(c->c_ssl, fd) != 1)) {
		SSL_free(c->c_ssl);
		free(c->c_in);
		free(c);
		return NULL;
	}
	if (c->c_ssl != NULL)
		SSL_set_accept_state(c->c_ssl);
	c->c_incap = CONN_IN_INITIAL;
	c->c_state = CS_IDLE;
	conn_peer(c, ss);
	if (ss->ss_family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev.events = c->c_events = EPOLLIN | EPOLLRDHUP;
	ev.data.ptr = c;
	if (epoll_ctl(W.wk_epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_errorf("%s: epoll_ctl: %s", __func__, strerror(errno));
		SSL_free(c->c_ssl);
		free(c->c_in);
		free(c);
		return NULL;
	}
	return c;
}

/*
 * accept4 failed.  Out of descriptors or memory, the listeners pause (the
 * queued connection stays readable, so retrying at once would spin); each
 * kind of error is logged at most once a second, with how many were not.
 */
static void
conn_accept_failed(int err)
{
	int	 k;

	if (err == EAGAIN || err == EINTR || err == ECONNABORTED)
		return;
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
		worker_accept_pause();
	k = err == EMFILE ? 0 : err == ENFILE ? 1 : err == ENOBUFS ||
	    err == ENOMEM ? 2 : 3;
	if (W.wk_accept_log_ms[k] != 0 &&
	    W.wk_now_ms - W.wk_accept_log_ms[k] < 1000) {
		W.wk_accept_quiet[k]++;
		return;
	}
	LOG(LVL_ERROR, "accept_failed", KV_S("error", strerror(err)),
	    KV_I("not_logged", W.wk_accept_quiet[k]),
	    KV_I("connections", W.wk_nconns));
	W.wk_accept_log_ms[k] = W.wk_now_ms;
	W.wk_accept_quiet[k] = 0;
}

void
conn_accept(int lfd, int tls)
{
	/* accept4 fills ss; zeroed only because the static analyzer does not
	 * model accept4 and takes ss_family for garbage. */
	struct sockaddr_storage ss = { 0 };
	socklen_t	 len;
	struct conn	*c;
	int		 fd, i;

	/* A bounded batch, so one busy listener cannot starve the loop. */
	for (i = 0; i < 64 && W.wk_nconns < W.wk_cf->cf_max_connections;
	    i++) {
		len = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			conn_accept_failed(errno);
			return;
		}
		if ((c = conn_new(fd, &ss, tls)) == NULL) {
			close(fd);
			continue;
		}
		W.wk_nconns++;
		ctr_add(&W.wk_slot->sl_conns_open, 1);
		ctr_add(&W.wk_slot->sl_conns_total, 1);
		/* A new connection must send its request in header_timeout. */
		conn_list_push(&W.wk_reading, c, W.wk_cf->cf_header_timeout);
	}
	if (W.wk_nconns >= W.wk_cf->cf_max_connections)
		worker_listen(0);
}

void
conn_close(struct conn *c)
{
	if (c->c_closed)
		return;
	if (c->c_state == CS_PENDING) {
		lookup_cancel(W.wk_lookup, c);
		worker_pending_free(c);
	}
	conn_list_remove(c);
	if (c->c_ssl != NULL) {
		SSL_shutdown(c->c_ssl);	/* best effort close_notify */
		SSL_free(c->c_ssl);
		c->c_ssl = NULL;
	}
	close(c->c_fd);
	free(c->c_in);
	free(c->c_out);
	W.wk_outbuf -= c->c_outcap;
	c->c_outcap = 0;
	c->c_in = c->c_out = NULL;
	/*
	 * The struct itself is freed at the end of the loop turn: a later
	 * event of the same epoll batch may still point at it (a PostgreSQL
	 * answer resumed and closed it while its socket event waits).
	 */
	c->c_closed = 1;
	c->c_dead_next = W.wk_dead;
	W.wk_dead = c;
	if (W.wk_nconns-- == W.wk_cf->cf_max_connections && !W.wk_stopping &&
	    W.wk_accept_resume_ms == 0)
		worker_listen(1);
	ctr_add(&W.wk_slot->sl_conns_open, (uint64_t)-1);
}

/* ---- reading ----------------------------------------------------------- */

static size_t
conn_in_max(void)
{
	return HTTP_MAX_HEADER_BYTES + W.wk_cf->cf_max_body + 4096;
}

/* Make room for more input; returns the free space (0: buffer at max). */
static size_t
conn_in_room(struct conn *c)
{
	size_t	 max = conn_in_max(), cap;
	char	*p;

	if (c->c_inoff > 0 && c->c_state != CS_PENDING) {
		memmove(c->c_in, c->c_in + c->c_inoff, c->c_inlen - c->c_inoff);
		c->c_inlen -= c->c_inoff;
		c->c_inoff = 0;
	}
	if (c->c_inlen < c->c_incap)
		return c->c_incap - c->c_inlen;
	if (c->c_incap >= max)
		return 0;
	cap = c->c_incap * 2 > max ? max : c->c_incap * 2;
	if ((p = realloc(c->c_in, cap)) == NULL)
		return 0;
	c->c_in = p;
	c->c_incap = cap;
	return cap - c->c_inlen;
}

/* Returns 0, or -1 when the connection was closed. */
static int
conn_read(struct conn *c)
{
	size_t	 room;
	ssize_t	 n;

	while ((room = conn_in_room(c)) > 0) {
		n = c->c_ssl ? tls_recv(c, c->c_in + c->c_inlen, room) :
		    read(c->c_fd, c->c_in + c->c_inlen, room);
		if (n > 0) {
			c->c_inlen += (size_t)n;
			/* A short read drained the socket, unless OpenSSL still
			 * holds decrypted bytes epoll will never announce. */
			if ((size_t)n < room && !tls_pending(c))
				break;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			break;
		/* EOF or error: nothing more will come. */
		if (c->c_state == CS_PENDING) {
			c->c_peer_gone = 1;
			conn_watch(c);	/* the EOF would stay readable */
			return 0;
		}
		conn_close(c);
		return -1;
	}
	conn_watch(c);
	return 0;
}

/* End of a loop turn: free the connections closed during it. */
void
conn_free_closed(void)
{
	struct conn	*c;

	while ((c = W.wk_dead) != NULL) {
		W.wk_dead = c->c_dead_next;
		free(c);
	}
}

/* The socket is ready (c_ev's handler). */
static void
conn_event(struct evsrc *src, uint32_t events)
{
	struct conn	*c = (struct conn *)src;

	if (c->c_closed)
		return;		/* closed earlier in this epoll batch */
	if (events & EPOLLOUT) {
		if (conn_write(c) != 1)
			return;
		conn_list_remove(c);	/* the write wait is over */
		/* A TLS read was waiting for this, or OpenSSL holds bytes
		 * read before input stopped, which epoll will not announce. */
		if (c->c_tls_want_out || (c->c_ssl != NULL && tls_pending(c))) {
			if (conn_read(c) == -1)
				return;
		}
		if (c->c_state != CS_PENDING)
			conn_process(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		if (conn_read(c) == -1)
			return;
		if (c->c_state != CS_PENDING)
			conn_process(c);
	}
}

/* ---- processing -------------------------------------------------------- */

/* The request is answered: drop its bytes and go on. */
static void
conn_done(struct conn *c)
{
	c->c_inoff += c->c_reqlen;
	c->c_reqlen = 0;
	c->c_state = CS_READING;
	resp_request_done(c);
	if (!c->c_keepalive)
		c->c_close = 1;
}

/*
 * Is the output at its cap: this connection's, or the worker's total with
 * something of this connection's still unsent?  See worker.h.
 */
static int
conn_out_full(const struct conn *c)
{
	return c->c_outlen >= CONN_OUT_MAX ||
	    (W.wk_outbuf >= WORKER_OUT_MAX && c->c_outlen > c->c_outoff);
}

/*
 * Register the events the connection can act on now.  Input is not
 * watched while unsent output is at the cap, while the input buffer is
 * full and cannot be compacted (a pending handler), nor after EOF: nothing
 * would read it, and a level-triggered EPOLLIN would wake the loop for
 * ever.  Costs no syscall when nothing changed.
 */
static void
conn_watch(struct conn *c)
{
	struct epoll_event ev;
	int		 blocked, in_full;

	blocked = c->c_outlen > c->c_outoff && conn_out_full(c);
	in_full = c->c_inlen == c->c_incap && c->c_incap >= conn_in_max() &&
	    (c->c_inoff == 0 || c->c_state == CS_PENDING);
	ev.events = 0;
	if (!blocked && !in_full && !c->c_peer_gone)
		ev.events |= EPOLLIN | EPOLLRDHUP;
	if (c->c_outlen > c->c_outoff || c->c_tls_want_out)
		ev.events |= EPOLLOUT;
	if (ev.events == c->c_events)
		return;
	ev.data.ptr = c;
	if (epoll_ctl(W.wk_epfd, EPOLL_CTL_MOD, c->c_fd, &ev) == 0)
		c->c_events = ev.events;
}

/* All of it was sent: keep a small buffer, give a big one back. */
static void
conn_out_drained(struct conn *c)
{
	c->c_outoff = c->c_outlen = 0;
	if (c->c_outcap > CONN_OUT_KEEP) {
		free(c->c_out);
		c->c_out = NULL;
		W.wk_outbuf -= c->c_outcap;
		c->c_outcap = 0;
	}
}

/*
 * Write what is buffered.  Returns 1 when all of it is out, 0 when the
 * socket is full (EPOLLOUT armed; a client that stops reading gets
 * header_timeout), -1 when the connection was closed.
 */
static int
conn_write(struct conn *c)
{
	ssize_t	 n;

	while (c->c_outoff < c->c_outlen) {
		n = c->c_ssl ? tls_send(c, c->c_out + c->c_outoff,
		    c->c_outlen - c->c_outoff) : send(c->c_fd, c->c_out +
		    c->c_outoff, c->c_outlen - c->c_outoff, MSG_NOSIGNAL);
		if (n > 0) {
			c->c_outoff += (size_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			conn_watch(c);
			if (c->c_list == NULL)
				conn_list_push(&W.wk_reading, c,
				    W.wk_cf->cf_header_timeout);
			return 0;
		}
		conn_close(c);
		return -1;
	}
	conn_out_drained(c);
	conn_watch(c);
	if (c->c_close) {
		conn_close(c);
		return -1;
	}
	return 1;
}

/*
 * Parse and answer every complete request in the buffer, in order.  Returns
 * 1 when it stopped because the output is at its cap (conn_out_full) with
 * more requests waiting.
 */
static int
conn_parse_all(struct conn *c)
{
	int	 r;

	while (!c->c_close && c->c_state != CS_PENDING) {
		const char *p = c->c_in + c->c_inoff;
		size_t avail = c->c_inlen - c->c_inoff;

		if (avail == 0)
			return 0;
		if (conn_out_full(c))
			return 1;
		r = http_parse_request(p, avail, W.wk_cf->cf_max_body,
		    &c->c_req);
		if (r == 0 || (r > 0 && avail < (size_t)r +
		    c->c_req.rq_content_length)) {
			/* Incomplete: header_timeout runs from its first byte. */
			if (c->c_state != CS_READING ||
			    c->c_list != &W.wk_reading)
				conn_list_push(&W.wk_reading, c,
				    W.wk_cf->cf_header_timeout);
			c->c_state = CS_READING;
			return 0;
		}
		conn_list_remove(c);
		c->c_start_us = shm_now_us();
		if (r < 0) {
			/* A bad request poisons the rest of the stream. */
			c->c_req.rq_method = HTTP_OTHER;
			c->c_keepalive = 0;
			c->c_ep = EP_OTHER;
			resp_error(c, -r, "invalid_request", http_reason(-r));
			c->c_close = 1;
			return 0;
		}
		c->c_reqlen = (size_t)r + c->c_req.rq_content_length;
		c->c_keepalive = c->c_req.rq_keepalive && !W.wk_stopping &&
		    W.wk_cf->cf_keepalive_timeout > 0;
		resp_request_begin(c);
		if (dispatch(c) == HANDLER_PENDING) {
			c->c_state = CS_PENDING;
			return 0;
		}
		conn_done(c);
	}
	return 0;
}

/* Answer what can be answered, write it in one go, then wait. */
static void
conn_process(struct conn *c)
{
	int	 more;

	do {
		more = conn_parse_all(c);
		if (conn_write(c) != 1)
			return;
	} while (more);
	if (c->c_state == CS_PENDING || c->c_inlen > c->c_inoff) {
		conn_watch(c);	/* parked, or waiting for the rest */
		return;
	}
	c->c_state = CS_IDLE;
	c->c_inoff = c->c_inlen = 0;
	conn_list_push(&W.wk_idle, c, W.wk_cf->cf_keepalive_timeout);
}

void
conn_resume(struct conn *c)
{
	conn_done(c);
	if (c->c_peer_gone)
		c->c_close = 1;
	conn_process(c);
}

/* ---- timeouts and stopping --------------------------------------------- */

void
conn_expire(int64_t now_ms)
{
	struct conn	*c;

	while ((c = W.wk_reading.cl_head) != NULL &&
	    c->c_deadline_ms <= now_ms) {
		conn_list_remove(c);
		if (c->c_outlen > c->c_outoff) {
			conn_close(c);	/* the client stopped reading */
			continue;
		}
		c->c_req.rq_method = HTTP_OTHER;
		c->c_keepalive = 0;
		c->c_ep = EP_OTHER;
		c->c_start_us = shm_now_us();
		resp_error(c, 408, "request_timeout",
		    "the request was not received in time");
		c->c_close = 1;
		conn_write(c);
	}
	while ((c = W.wk_idle.cl_head) != NULL && c->c_deadline_ms <= now_ms)
		conn_close(c);
}

/*
 * While stopping, an idle keep-alive connection is given a short linger
 * before it is closed: a client that sends on it in that time gets its
 * answer (with Connection: close) instead of a reset, which is what lets a
 * reload under steady traffic fail no request.
 */
void
conn_drain_idle(void)
{
	int64_t		 linger = 1000;
	struct conn	*c, *next;

	if (linger > (int64_t)W.wk_cf->cf_shutdown_timeout * 1000)
		linger = (int64_t)W.wk_cf->cf_shutdown_timeout * 1000;
	if (W.wk_now_ms - W.wk_stop_at_ms < linger)
		return;
	for (c = W.wk_idle.cl_head; c != NULL; c = next) {
		next = c->c_next;
		conn_close(c);
	}
	for (c = W.wk_reading.cl_head; c != NULL; c = next) {
		next = c->c_next;
		if (c->c_state == CS_IDLE && c->c_inlen == c->c_inoff)
			conn_close(c);
	}
}

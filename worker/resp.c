/*
 * Responses are built straight into the connection's output buffer; the
 * buffer is sent once per batch of pipelined requests (conn.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "worker/worker.h"

/* Grow c_out to hold n more bytes.  Returns 0, or -1 (out of memory). */
static int
out_reserve(struct conn *c, size_t n)
{
	size_t	 cap;
	char	*p;

	if (c->c_outlen + n <= c->c_outcap)
		return 0;
	cap = c->c_outcap ? c->c_outcap : 1024;
	while (cap < c->c_outlen + n)
		cap *= 2;
	if ((p = realloc(c->c_out, cap)) == NULL)
		return -1;
	W.wk_outbuf += cap - c->c_outcap;
	c->c_out = p;
	c->c_outcap = cap;
	return 0;
}

static void
out_append(struct conn *c, const void *data, size_t n)
{
	if (out_reserve(c, n) == -1) {
		c->c_close = 1;
		return;
	}
	memcpy(c->c_out + c->c_outlen, data, n);
	c->c_outlen += n;
}

static void
out_str(struct conn *c, const char *s)
{
	out_append(c, s, strlen(s));
}

static void
out_i64(struct conn *c, int64_t v)
{
	char	 buf[I64_DIGITS], *p;
	size_t	 n;

	p = i64_digits(v, buf, &n);
	out_append(c, p, n);
}

/* ---- the request id and the access log's facts ------------------------ */

/* X-Request-Id worth passing on: 1 to REQID_MAX printable ASCII bytes. */
static int
reqid_sane(const struct http_str *v)
{
	size_t	 i;

	if (v == NULL || v->s_len == 0 || v->s_len > REQID_MAX)
		return 0;
	for (i = 0; i < v->s_len; i++)
		if ((unsigned char)v->s_ptr[i] < 0x20 ||
		    (unsigned char)v->s_ptr[i] > 0x7e)
			return 0;
	return 1;
}

/*
 * 16 bytes from OpenSSL's DRBG, in hex.  Drawn REQID_POOL ids at a time:
 * RAND_bytes checks for a fork with getpid(2) on every call, a system
 * call the request path would otherwise pay.
 */
#define REQID_BYTES	16
#define REQID_POOL	256

static void
reqid_new(struct conn *c)
{
	static uint8_t	 pool[REQID_BYTES * REQID_POOL];
	static size_t	 used = sizeof(pool);

	if (used == sizeof(pool)) {
		if (RAND_bytes(pool, sizeof(pool)) != 1)
			memset(pool, 0, sizeof(pool));
		used = 0;
	}
	hex_encode(pool + used, REQID_BYTES, c->c_reqid);
	used += REQID_BYTES;
}

/* A well-formed bearer token's display prefix and the user agent. */
static void
reqlog_begin(struct conn *c)
{
	const struct http_str *ua = http_header_get(&c->c_req, "User-Agent");
	struct http_str	 tok;

	if (http_bearer(c->c_req.rq_authorization, &tok) &&
	    token_check(tok.s_ptr, tok.s_len) != TOKEN_INVALID) {
		memcpy(c->c_log.rl_prefix, tok.s_ptr, TOKEN_DISPLAY_LEN);
		c->c_log.rl_prefix[TOKEN_DISPLAY_LEN] = '\0';
	}
	if (ua != NULL) {
		const struct log_access la = { .la_user_agent = ua->s_ptr,
		    .la_ua_len = ua->s_len };

		log_access_ua(&la, c->c_log.rl_ua);
	}
}

void
resp_request_begin(struct conn *c)
{
	const struct http_str *v = http_header_get(&c->c_req, "X-Request-Id");

	if (reqid_sane(v)) {
		memcpy(c->c_reqid, v->s_ptr, v->s_len);
		c->c_reqid[v->s_len] = '\0';
	}
	if (log_access_enabled())
		reqlog_begin(c);
}

void
resp_request_done(struct conn *c)
{
	c->c_reqid[0] = '\0';
	c->c_log.rl_user_id = c->c_log.rl_token_id = 0;
	c->c_log.rl_prefix[0] = c->c_log.rl_client[0] = '\0';
	c->c_log.rl_ua[0] = '\0';
}

void
resp_log_token(struct conn *c, const struct tok_info *ti)
{
	if (!log_access_enabled() || ti == NULL || ti->ti_state != TI_VALID)
		return;
	c->c_log.rl_user_id = ti->ti_user_id;
	c->c_log.rl_token_id = ti->ti_id;
	resp_log_client(c, ti->ti_client);
}

void
resp_log_prefix(struct conn *c, const char *token)
{
	if (log_access_enabled() && token != NULL &&
	    strlen(token) >= TOKEN_DISPLAY_LEN) {
		memcpy(c->c_log.rl_prefix, token, TOKEN_DISPLAY_LEN);
		c->c_log.rl_prefix[TOKEN_DISPLAY_LEN] = '\0';
	}
}

void
resp_log_client(struct conn *c, const char *client_id)
{
	if (log_access_enabled() && client_id != NULL)
		snprintf(c->c_log.rl_client, sizeof(c->c_log.rl_client), "%s",
		    client_id);
}

void
resp_log_user(struct conn *c, int64_t user_id)
{
	if (log_access_enabled())
		c->c_log.rl_user_id = user_id;
}

/* One access log line for the response just written. */
static void
resp_log(struct conn *c, size_t len, int64_t us)
{
	const struct log_access la = { http_method_name(c->c_req.rq_method),
	    W.wk_ep_name[c->c_ep], c->c_status, len, (double)us / 1e6,
	    c->c_peer, c->c_reqid, c->c_log.rl_user_id, c->c_log.rl_token_id,
	    c->c_log.rl_prefix, c->c_log.rl_client, c->c_log.rl_ua,
	    strlen(c->c_log.rl_ua) };

	log_access(&la);
}

/* ---- responses ---------------------------------------------------------- */

void
resp_start(struct conn *c, int status)
{
	c->c_status = status;
	c->c_resp_off = c->c_outlen;
	c->c_resp_bad = NULL;
	out_append(c, "HTTP/1.1 ", 9);
	out_i64(c, status);
	out_append(c, " ", 1);
	out_str(c, http_reason(status));
	out_append(c, "\r\n", 2);
	out_str(c, W.wk_date);		/* "Date: ...\r\n" */
	if (c->c_reqid[0] == '\0')
		reqid_new(c);
	out_append(c, "X-Request-Id: ", 14);
	out_str(c, c->c_reqid);
	out_append(c, "\r\n", 2);
}

void
resp_header_i64(struct conn *c, const char *name, int64_t v)
{
	out_str(c, name);
	out_append(c, ": ", 2);
	out_i64(c, v);
	out_append(c, "\r\n", 2);
}

void
resp_header(struct conn *c, const char *name, const char *value)
{
	size_t	 nlen = strlen(name), vlen = strlen(value);

	if (!http_field_name_ok(name, nlen) ||
	    !http_field_value_ok(value, vlen)) {
		c->c_resp_bad = name;	/* see worker.h */
		return;
	}
	out_append(c, name, nlen);
	out_append(c, ": ", 2);
	out_append(c, value, vlen);
	out_append(c, "\r\n", 2);
}

/* A header was refused: this response becomes a 500 (worker.h). */
static void
resp_refused(struct conn *c)
{
	LOG(LVL_ERROR, "header_refused", KV_S("header", c->c_resp_bad),
	    KV_S("endpoint", W.wk_ep_name[c->c_ep]),
	    KV_I("status", c->c_status));
	c->c_outlen = c->c_resp_off;
	resp_error(c, 500, "server_error",
	    "the response could not be written safely");
}

void
resp_headerf(struct conn *c, const char *name, const char *fmt, ...)
{
	char	 buf[2048];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	resp_header(c, name, buf);
}

void
resp_end(struct conn *c, const char *ctype, const void *body, size_t len)
{
	int64_t	 us;

	if (ctype != NULL)
		resp_header(c, "Content-Type", ctype);
	if (c->c_resp_bad != NULL) {
		resp_refused(c);
		return;
	}
	/* RFC 9110 8.6: no Content-Length on a 204. */
	if (c->c_status != 204)
		resp_header_i64(c, "Content-Length", (int64_t)len);
	if (!c->c_keepalive)
		out_str(c, "Connection: close\r\n");
	else if (c->c_req.rq_minor == 0)
		out_str(c, "Connection: keep-alive\r\n");
	out_append(c, "\r\n", 2);
	if (c->c_req.rq_method != HTTP_HEAD && len > 0)
		out_append(c, body, len);
	us = shm_now_us() - c->c_start_us;
	shm_count_request(W.wk_slot, c->c_ep, c->c_status,
	    us > 0 ? (uint64_t)us : 0);
	if (log_access_enabled())
		resp_log(c, len, us);
}

void
resp_error_end(struct conn *c, const char *error, const char *desc)
{
	resp_json_end(c, json_pack("{s:s, s:s}", "error", error,
	    "error_description", desc));
}

void
resp_error(struct conn *c, int status, const char *error, const char *desc)
{
	resp_start(c, status);
	resp_error_end(c, error, desc);
}

void
resp_json_end(struct conn *c, json_t *obj)
{
	char	 buf[4096];		/* not zeroed: 4 KiB a response */
	char	*big = NULL;
	size_t	 n;

	buf[0] = '\0';
	n = obj ? json_dumpb(obj, buf, sizeof(buf), JSON_COMPACT) : 0;
	if (n > sizeof(buf)) {
		big = json_dumps(obj, JSON_COMPACT);
		n = big ? strlen(big) : 0;
	}
	resp_end(c, "application/json", big ? big : buf, n);
	free(big);
	json_decref(obj);
}

void
resp_json(struct conn *c, int status, json_t *obj)
{
	resp_start(c, status);
	resp_json_end(c, obj);
}

/*
 * HTTPS for tls_listen addresses.  Each worker builds its own SSL_CTX after
 * fork (so a reload, which forks new workers, picks up a renewed
 * certificate), and a TLS connection differs from a plain one only in how
 * bytes move: conn.c calls tls_recv/tls_send instead of read/send, and
 * OpenSSL's non-blocking API maps onto the same EAGAIN-and-wait loop.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "worker/worker.h"

static void
tls_error(char *err, size_t errlen, const char *what, const char *path)
{
	char	 buf[256];

	ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	snprintf(err, errlen, "%s %s: %s", what, path, buf);
}

SSL_CTX *
tls_ctx_new(const struct config *cf, char *err, size_t errlen)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_error(err, errlen, "SSL_CTX_new", "");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* conn.c may retry a partial write from a moved (realloc'd) buffer. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cf->cf_tls_cert) != 1) {
		tls_error(err, errlen, "tls_cert", cf->cf_tls_cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cf->cf_tls_key,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		tls_error(err, errlen, "tls_key", cf->cf_tls_key);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* Map an SSL_ERROR to the errno conn.c understands. */
static ssize_t
tls_result(struct conn *c, int n)
{
	switch (SSL_get_error(c->c_ssl, n)) {
	case SSL_ERROR_WANT_WRITE:
		/* The handshake wants to write while we read: wait for it. */
		c->c_tls_want_out = 1;
		/* FALLTHROUGH */
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_clear_error();
		errno = ECONNRESET;
		return -1;
	}
}

ssize_t
tls_recv(struct conn *c, void *buf, size_t len)
{
	int	 n;

	c->c_tls_want_out = 0;
	n = SSL_read(c->c_ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	return n > 0 ? n : tls_result(c, n);
}

ssize_t
tls_send(struct conn *c, const void *buf, size_t len)
{
	int	 n;

	n = SSL_write(c->c_ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	return n > 0 ? n : tls_result(c, n);
}

/* Bytes OpenSSL has already decrypted that epoll cannot know about. */
int
tls_pending(struct conn *c)
{
	return c->c_ssl != NULL && SSL_pending(c->c_ssl) > 0;
}

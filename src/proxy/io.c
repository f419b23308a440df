/*
 * Socket buffers of the proxy's connections: the on-demand byte buffers, send and
 * recv through TLS or not, queueing what a socket cannot take now, pausing reads.
 */
#include "proxy/conn.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "pgproto/sqlstate.h"
#include "proxy/admin.h"
#include "proxy/authq.h"
#include "proxy/defaults.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- buffers ---- */

int buf_append(struct proxy_buf *b, const void *d, size_t n)
{
	if (b->off && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : BUF_MIN;
		uint8_t *grown;

		if (b->off) { /* compact first */
			memmove(b->data, b->data + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		while (cap < b->len + n)
			cap *= 2;
		if (cap != b->cap) {
			grown = realloc(b->data, cap);
			if (!grown)
				return PGW_ENOMEM;
			b->data = grown;
			b->cap = cap;
		}
	}
	memcpy(b->data + b->len, d, n);
	b->len += n;
	return PGW_OK;
}

void buf_consume(struct proxy_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len) {
		/* Drained: give the memory back (idle connections keep nothing). */
		free(b->data);
		memset(b, 0, sizeof(*b));
	}
}

void buf_free(struct proxy_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* send / recv, through TLS when ssl is set: -1 with errno EAGAIN when it would block. */
ssize_t sock_send(int fd, SSL *ssl, const void *d, size_t n)
{
	int r, e;

	if (!ssl)
		return send(fd, d, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	ERR_clear_error();
	r = SSL_write(ssl, d, n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0)
		return r;
	e = SSL_get_error(ssl, r);
	errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EPIPE;
	return -1;
}

ssize_t sock_recv(int fd, SSL *ssl, void *d, size_t n)
{
	int r, e;

	if (!ssl)
		return recv(fd, d, n, 0);
	ERR_clear_error();
	r = SSL_read(ssl, d, n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0)
		return r;
	e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : ECONNRESET;
	return -1;
}

bool send_or_queue(struct cmn_loop *loop, struct cmn_io *io, SSL *ssl, struct proxy_buf *out,
		   const uint8_t *d, size_t n)
{
	if (io->fd < 0)
		return false;
	if (buf_used(out) == 0 && n) {
		ssize_t w = sock_send(io->fd, ssl, d, n);

		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return false;
			w = 0;
		}
		d += w;
		n -= (size_t)w;
	}
	if (n) {
		if (buf_append(out, d, n) != PGW_OK)
			return false;
		(void)cmn_io_set(loop, io, io->events | EPOLLOUT);
	}
	return true;
}

int sock_setup(int fd, const struct proxy_config *cfg)
{
	int one = 1;

	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
		return -1;
	/* Options a Unix socket does not have fail harmlessly. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cfg && cfg->tcp_keepalive) {
		int idle = cfg->tcp_keepidle_ms / 1000, intvl = cfg->tcp_keepintvl_ms / 1000;

		(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cfg->tcp_keepcnt,
				 sizeof(cfg->tcp_keepcnt));
	}
	if (cfg && cfg->tcp_user_timeout_ms) {
		unsigned int user_timeout = (unsigned int)cfg->tcp_user_timeout_ms;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
				 sizeof(user_timeout));
	}
	return 0;
}

void pause_reading(struct cmn_loop *loop, struct cmn_io *io, bool *paused, bool pause)
{
	if (*paused == pause || io->fd < 0)
		return;
	*paused = pause;
	(void)cmn_io_set(loop, io, pause ? (io->events & ~EPOLLIN) : (io->events | EPOLLIN));
}

bool flush_out(struct cmn_loop *loop, struct cmn_io *io, SSL *ssl, struct proxy_buf *out)
{
	while (buf_used(out)) {
		ssize_t w = sock_send(io->fd, ssl, out->data + out->off, buf_used(out));

		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			return false;
		}
		buf_consume(out, (size_t)w);
	}
	(void)cmn_io_set(loop, io, io->events & ~EPOLLOUT);
	return true;
}

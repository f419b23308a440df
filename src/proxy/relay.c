/*
 * Passing bytes through between a client and its server while watching message
 * boundaries: the extended protocol's bookkeeping, COPY, and the end of a transaction.
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

/* Forwards part of a server's stream to its client; false when the client is gone. */
static bool to_client(struct proxy_client *c, const uint8_t *d, size_t n)
{
	if (!c || !n)
		return true;
	c->pool->stats.bytes_sent += n;
	if (!send_or_queue(c->proxy->loop, &c->io, c->ssl, &c->out, d, n)) {
		client_close(c, "client socket error");
		return false;
	}
	return true;
}

/* The answers the proxy makes itself that are due now (the server's stream is at a
 * message boundary). False when the client is gone. */
static bool emit_synth(struct proxy_server *s)
{
	struct cmn_buf b = {0};
	uint8_t t;
	bool ok = true;

	while ((t = extq_next_synth(&s->pq)))
		if (extq_put_synth(&b, t) != PGW_OK)
			ok = false;
	if (!ok && s->client)
		client_close(s->client, "out of memory");
	else if (!ok)
		ok = true; /* nobody to answer */
	else if (b.len)
		ok = to_client(s->client, (const uint8_t *)b.data, b.len);
	cmn_buf_free(&b);
	return ok;
}

/* The proxy's SETs failed on a server (body: the ErrorResponse when whole, else
 * NULL): the client takes the server's reported values; what else the server runs
 * with is unknown, so it leaves the pool. A client being checked gets the error. */
static void own_query_failed(struct proxy_server *s, const uint8_t *body, size_t len)
{
	struct proxy_client *c = s->client;
	struct pgp_error_fields f;
	bool parsed = body && pgp_parse_error(body, len, &f) == PGW_OK && f.message;

	log_warning("S-%llu: the proxy's SET of a client's session parameters failed: %s",
		    (unsigned long long)s->id, parsed ? f.message : "(error not read)");
	s->close_after = true;
	for (int k = 0; c && k < PROXY_N_PARAMS; k++)
		if (s->params[k])
			client_param_set(c, k, s->params[k]);
	if (c && c->checking && !c->check_error) {
		c->check_error = strdup(parsed ? f.message : "a startup parameter was refused");
		snprintf(c->check_state, sizeof(c->check_state), "%s",
			 parsed && f.sqlstate && strlen(f.sqlstate) == 5
			     ? f.sqlstate
			     : SQLSTATE_INVALID_PARAMETER_VALUE);
	}
}

/*
 * Server -> client: forward everything, watching each message's type to find
 * ReadyForQuery (the end of a request) and COPY IN, and which request each
 * answer belongs to (the proxy's own are dropped, answers it makes itself are
 * inserted). A message header split between two reads waits in s->in.
 */
/*
 * What a server message means for the bookkeeping (msg: its first bytes, at least 6 for
 * a ReadyForQuery, all of them for a ParameterStatus of up to 8 kB): the transaction
 * status, answers owed, COPY IN, the session's parameters. Returns whether the server
 * may go back to its pool once this data is passed on (release, updated).
 */
static bool track_answer(struct proxy_server *s, struct proxy_client *c, uint8_t type,
			 const uint8_t *msg, bool release)
{
	switch (type) {
	case PGP_BE_READY:
		s->txn = (char)msg[5];
		if (s->outstanding > 0)
			s->outstanding--;
		if (c)
			c->txn = s->txn;
		if (s->outstanding == 0 && s->txn == 'I')
			release = true;
		break;
	case PGP_BE_COPY_IN:
		/* Syncs sent after the Execute that started it are ignored during COPY
		 * IN: only the one after CopyDone / CopyFail will answer. */
		s->copy_in = true;
		s->outstanding -= s->syncs_since_execute;
		if (s->outstanding < 0)
			s->outstanding = 0;
		s->syncs_since_execute = 0;
		if (c)
			c->in_copy = true;
		break;
	case PGP_BE_PARAMETER_STATUS:
		break; /* asynchronous: they do not start a new request (server_data reads it) */
	case PGP_BE_NOTICE:
	case PGP_BE_NOTIFICATION:
		break;
	default:
		release = false;
		break;
	}
	return release;
}

/* Once a server's data is passed on: pause it if its client is behind, and give it
 * back to its pool when its work is done. */
static void after_answers(struct proxy_server *s, struct proxy_client *c, bool release)
{
	if (s->state == PROXY_SV_DEAD)
		return;
	if (c && buf_used(&c->out) > BACKLOG_LIMIT)
		pause_reading(s->proxy->loop, &s->io, &s->reading_paused, true);
	if (!release || s->be.left || buf_used(&s->in))
		return;
	if (s->state == PROXY_SV_RESET) {
		if (s->generation == s->pool->generation)
			server_release(s);
		else
			server_close(s, "its target changed");
		return;
	}
	if (!c) {
		/* The client left while its request ran: the server is clean again. */
		server_release(s);
		return;
	}
	if (c->checking && !server_checked(s, c))
		return;
	if (s->pool->transaction_mode && !buf_used(&c->in) && !c->in_copy && !s->ext_open &&
	    !c->fe.left && (!extq_pending(&s->pq) || s->pq.desync))
		server_release(s);
}

/*
 * An error at a Bind or Describe of statement id, which the proxy prepared on s: if
 * the server no longer has it (a client's dynamic SQL dropped it behind the proxy's
 * back), it is prepared again at its next use here, and s, whose other statements are
 * unknown now, closes when its transaction ends.
 */
static void statement_error(struct proxy_server *s, uint64_t id, const uint8_t *body, size_t len)
{
	struct pgp_error_fields f;

	if (pgp_parse_error(body, len, &f) != PGW_OK || !f.sqlstate ||
	    strcmp(f.sqlstate, SQLSTATE_INVALID_SQL_STATEMENT_NAME) != 0)
		return;
	log_warning("S-%llu: a prepared statement of the proxy's is gone from the server "
		    "(dropped by a client's SQL): prepared again at its next use; the connection "
		    "closes after this transaction",
		    (unsigned long long)s->id);
	extq_statement_gone(&s->pq, id);
}

/* A ParameterStatus of the client's own value of tracked parameter k; false when the
 * client is gone. */
static bool tell_param(struct proxy_client *c, int k)
{
	struct cmn_buf b = {0};
	bool ok;

	if (pgp_put_parameter_status(&b, proxy_param_names[k], client_param(c, k)) != PGW_OK) {
		cmn_buf_free(&b);
		client_close(c, "out of memory");
		return false;
	}
	ok = to_client(c, (const uint8_t *)b.data, b.len);
	cmn_buf_free(&b);
	return ok;
}

static void server_data(struct proxy_server *s, const uint8_t *d, size_t n)
{
	struct proxy_client *c = s->client;
	size_t start = 0, i = 0;
	bool release = false;
	struct extq_verdict v;

	while (i < n) {
		if (s->be.left) {
			size_t k = s->be.left < n - i ? s->be.left : n - i;

			s->be.left -= k;
			i += k;
			if (s->be_drop)
				start = i;
			continue;
		}
		/* At a message boundary. */
		if (extq_synth_due(&s->pq)) {
			if (!to_client(c, d + start, i - start))
				return;
			start = i;
			if (!emit_synth(s))
				return;
		}
		/* Need the type, length and (for 'Z') status; a whole ParameterStatus. */
		if (n - i < 5 || (d[i] == PGP_BE_READY && n - i < 6))
			goto fragment;
		uint8_t type = d[i];
		uint32_t len = ((uint32_t)d[i + 1] << 24) | ((uint32_t)d[i + 2] << 16) |
			       ((uint32_t)d[i + 3] << 8) | d[i + 4];

		if (len < 4) {
			server_close(s, "malformed message from the server");
			return;
		}
		if ((type == PGP_BE_PARAMETER_STATUS || type == PGP_BE_ERROR) && len <= 8192 &&
		    n - i < 1 + (size_t)len)
			goto fragment;
		extq_backend(&s->pq, type, &v);
		if (type == PGP_BE_ERROR && v.owner_stmt && v.owner_msg != 'P' &&
		    n - i >= 1 + (size_t)len)
			statement_error(s, v.owner_stmt, d + i + 5, len - 4);
		if (s->pq.desync && !s->close_after) {
			log_warning("S-%llu: an answer matched no request: the connection closes "
				    "after this transaction",
				    (unsigned long long)s->id);
			s->close_after = true;
		}
		if (v.own_error)
			own_query_failed(s, n - i >= 1 + (size_t)len ? d + i + 5 : NULL, len - 4);
		if (type == PGP_BE_PARAMETER_STATUS && len <= 8192) {
			int k = server_param_status(s, d + i + 5, len - 4);

			if (k >= 0 && c && !v.drop) {
				/* Its RESET brought back the server's value: it is told its own. */
				if (!to_client(c, d + start, i - start) || !tell_param(c, k))
					return;
				start = i;
				v.drop = true;
			}
		}
		release = track_answer(s, c, type, d + i, release);
		if (v.drop) {
			if (!to_client(c, d + start, i - start))
				return;
			start = i;
		}
		s->be_drop = v.drop;
		s->be.left = 1 + (size_t)len;
	}
	if (!to_client(c, d + start, n - start))
		return;
	if (!s->be.left && extq_synth_due(&s->pq) && !emit_synth(s))
		return;
	goto forwarded;
fragment:
	/* Keep the fragment; forward what precedes it. */
	if (!to_client(c, d + start, i - start))
		return;
	if (buf_append(&s->in, d + i, n - i) != PGW_OK) {
		server_close(s, "out of memory");
		return;
	}
forwarded:
	after_answers(s, c, release);
}

/* A client's startup settings ran on s (link_client): refused, its login fails;
 * accepted, it is welcomed and its requests go on. False when it is gone. */
bool server_checked(struct proxy_server *s, struct proxy_client *c)
{
	c->checking = false;
	if (c->check_error) {
		client_fatal(c, c->check_state, "%s", c->check_error);
		return false;
	}
	pool_settings_accepted(s->pool, c->sets);
	client_welcome(c);
	if (c->state == PROXY_CL_DEAD)
		return false;
	pause_reading(c->proxy->loop, &c->io, &c->reading_paused, false);
	if (buf_used(&c->in) && c->server == s) {
		client_forward(c);
		return false;
	}
	return true;
}

/* Reads a server socket (after login). */
static void server_read(struct proxy_server *s)
{
	struct proxy *px = s->proxy;

	/* TLS may hold decrypted bytes epoll cannot see: read it dry. */
	for (int rounds = 0; (rounds < 4 || s->ssl) && s->state != PROXY_SV_DEAD; rounds++) {
		ssize_t r = sock_recv(s->io.fd, s->ssl, px->scratch, px->scratch_size);

		if (r == 0) {
			server_close(s, "the server closed the connection");
			return;
		}
		if (r < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				server_close(s, strerror(errno));
			return;
		}
		if (buf_used(&s->in)) {
			/* A header fragment from the previous read comes first. */
			if (buf_append(&s->in, px->scratch, (size_t)r) != PGW_OK) {
				server_close(s, "out of memory");
				return;
			}
			struct proxy_buf tmp = s->in;

			memset(&s->in, 0, sizeof(s->in));
			server_data(s, tmp.data + tmp.off, tmp.len - tmp.off);
			buf_free(&tmp);
		} else {
			server_data(s, px->scratch, (size_t)r);
		}
		if (s->reading_paused || (!s->ssl && (size_t)r < px->scratch_size))
			return;
	}
}

/* The server's side of TLS: the answer to SSLRequest, then the handshake. */
static void server_tls_step(struct proxy_server *s)
{
	struct proxy *px = s->proxy;

	const char *mode = px->cfg.server_tls_sslmode;
	bool required = strcmp(mode, "require") == 0 || strncmp(mode, "verify", 6) == 0;

	if (s->tls_state == 1) {
		char answer;
		ssize_t r = recv(s->io.fd, &answer, 1, 0);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r != 1 || (answer != 'S' && answer != 'N')) {
			server_close(s, "bad answer to SSLRequest");
			return;
		}
		if (answer == 'N') {
			if (required) {
				snprintf(s->pool->last_error, sizeof(s->pool->last_error),
					 "the server at %s:%d does not support TLS "
					 "(server_tls_sslmode %s)",
					 s->host, s->port, mode);
				bool warm = s->warm; /* ahead of a promotion: nobody waits on it */

				server_close(s, s->pool->last_error);
				if (!warm)
					pool_fail_waiting(s->pool, SQLSTATE_CONNECTION_FAILURE,
							  s->pool->last_error);
				return;
			}
			s->tls_state = 0;
			server_start_login(s);
			return;
		}
		s->ssl = SSL_new(px->tls.server);
		if (!s->ssl || SSL_set_fd(s->ssl, s->io.fd) != 1) {
			server_close(s, "cannot start TLS");
			return;
		}
		SSL_set_connect_state(s->ssl);
		if (strcmp(mode, "verify-full") == 0) {
			struct in6_addr a6;
			struct in_addr a4;
			X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);

			if (inet_pton(AF_INET, s->host, &a4) == 1 ||
			    inet_pton(AF_INET6, s->host, &a6) == 1)
				(void)X509_VERIFY_PARAM_set1_ip_asc(vp, s->host);
			else
				(void)SSL_set1_host(s->ssl, s->host);
		}
		s->tls_state = 2;
	}
	ERR_clear_error();
	int r = SSL_do_handshake(s->ssl);

	if (r == 1) {
		s->tls_state = 0;
		(void)cmn_io_set(px->loop, &s->io, EPOLLIN);
		server_start_login(s);
		return;
	}
	int e = SSL_get_error(s->ssl, r);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		(void)cmn_io_set(px->loop, &s->io,
				 EPOLLIN | (e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0));
		return;
	}
	snprintf(s->pool->last_error, sizeof(s->pool->last_error),
		 "TLS handshake with %s:%d failed: %s", s->host, s->port, proxy_tls_error());
	bool warm = s->warm;

	server_close(s, s->pool->last_error);
	if (required && !warm)
		pool_fail_waiting(s->pool, SQLSTATE_CONNECTION_FAILURE, s->pool->last_error);
}

void on_server(struct cmn_loop *l, struct cmn_io *io, uint32_t events)
{
	struct proxy_server *s = io->owner;
	struct proxy *px = s->proxy;

	(void)l;
	if (s->state == PROXY_SV_LOGIN && !s->auth_started) {
		/* The connect finished (or failed). */
		int err = 0;
		socklen_t elen = sizeof(err);

		if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err) {
			snprintf(s->pool->last_error, sizeof(s->pool->last_error),
				 "cannot connect to %s:%d: %s", s->host, s->port,
				 strerror(err ? err : errno));
			server_close(s, s->pool->last_error);
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		s->auth_started = true;
		(void)cmn_io_set(px->loop, io, EPOLLIN);
		if (px->tls.server) {
			static const uint8_t ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};

			if (send(io->fd, ssl_request, sizeof(ssl_request), MSG_NOSIGNAL) != 8) {
				server_close(s, "cannot send SSLRequest");
				return;
			}
			s->tls_state = 1;
			return;
		}
		server_start_login(s);
		return;
	}
	if (s->state == PROXY_SV_LOGIN && s->tls_state) {
		server_tls_step(s);
		return;
	}
	if (events & EPOLLOUT) {
		if (!flush_out(s->proxy->loop, io, s->ssl, &s->out)) {
			server_close(s, "server socket error");
			return;
		}
		if (!buf_used(&s->out) && s->client) {
			struct proxy_client *c = s->client;

			pause_reading(c->proxy->loop, &c->io, &c->reading_paused, false);
			if (c->ssl && SSL_pending(c->ssl) > 0)
				on_client(px->loop, &c->io, EPOLLIN);
			if (s->state == PROXY_SV_DEAD)
				return;
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	if (s->state == PROXY_SV_LOGIN) {
		do {
			ssize_t r = sock_recv(io->fd, s->ssl, px->scratch, px->scratch_size);

			if (r <= 0) {
				if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
					return;
				snprintf(s->pool->last_error, sizeof(s->pool->last_error),
					 "the server at %s:%d closed the connection during login",
					 s->host, s->port);
				server_close(s, s->pool->last_error);
				return;
			}
			if (buf_append(&s->in, px->scratch, (size_t)r) != PGW_OK) {
				server_close(s, "out of memory");
				return;
			}
			server_login_input(s);
		} while (s->state == PROXY_SV_LOGIN && s->ssl && SSL_pending(s->ssl) > 0);
		return;
	}
	server_read(s);
}

/* A message the proxy must see whole before it goes (statement names, queries that
 * drop statements). */
/*
 * Bytes of a client message (type, total bytes, avail of them at m) the proxy must
 * have before it passes the message on: the header when it passes as it arrives, a
 * Bind's head, the whole message when the proxy keeps or reads it (a tracked
 * statement's Parse, Describe or Close; a Query or Parse that may drop statements
 * or settings). Those are held up to max_packet_size; a longer Query or untracked
 * Parse passes as it arrives (assumed to drop them), anything else closes the
 * client with the reason and 0 is returned.
 */
/* The portal and statement names of a Bind the proxy looks for (PostgreSQL's names are
 * short: this bounds the search, run again at each read, for a client that trickles). */
#define BIND_HEAD_MAX 65536

static size_t bytes_needed(struct proxy_client *c, const struct proxy_server *s, int max_stmts,
			   const uint8_t *m, size_t avail, size_t total)
{
	int64_t max = c->proxy->cfg.max_packet_size;
	bool fits = (int64_t)total <= max, inspect = s->pq.n_held > 0 || s->pq.has_settings;
	uint8_t type = m[0];
	size_t head;

	switch (type) {
	case PGP_FE_QUERY:
		return inspect && fits ? total : 5;
	case PGP_FE_PARSE:
		if (max_stmts && !s->pq.skipping && total > 5) {
			if (avail < 6)
				return 6; /* its name's first byte: named or not? */
			if (m[5] != '\0')
				break; /* a named statement: kept */
		}
		return inspect && fits ? total : 5;
	case PGP_FE_DESCRIBE:
	case PGP_FE_CLOSE:
		if (!max_stmts)
			return 5;
		break;
	case PGP_FE_BIND:
		if (!max_stmts)
			return 5;
		if (total - 1 > PGP_MAX_MESSAGE - EXTQ_NAME_SIZE) {
			/* Its statement renamed, it could pass PostgreSQL's limit. */
			client_fatal(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
				     "a Bind message of %zu bytes is too long", total);
			return 0;
		}
		head = extq_bind_head(m, avail);
		if (head || avail == total)
			return head ? head
				    : total; /* no head in a whole one: the server refuses it */
		if ((int64_t)avail <= max && avail <= 5 + BIND_HEAD_MAX)
			return avail + 1;
		client_fatal(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
			     "a Bind message's portal and statement names are longer than %d bytes",
			     BIND_HEAD_MAX);
		return 0;
	default:
		return 5;
	}
	if (fits)
		return total;
	client_fatal(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
		     "a '%c' message of %zu bytes is longer than max_packet_size (%lld): "
		     "the proxy holds this one whole",
		     type, total, (long long)max);
	return 0;
}

/*
 * A Parse of total bytes within the client's and the proxy's limits on statements
 * (kept for the client's life: memory it could pin); else the client is closed with
 * the reason and false.
 */
static bool parse_allowed(struct proxy_client *c, int max_stmts, size_t total)
{
	struct proxy *px = c->proxy;

	if (c->stmts.count >= MAX_CLIENT_STATEMENTS) {
		client_fatal(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
			     "too many prepared statements (%d)", MAX_CLIENT_STATEMENTS);
		return false;
	}
	if (max_stmts && (int64_t)(c->stmts.bytes + total) > px->cfg.max_client_statement_memory) {
		client_fatal(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
			     "prepared statements of this client take more than %lld "
			     "bytes (max_client_statement_memory)",
			     (long long)px->cfg.max_client_statement_memory);
		return false;
	}
	if (max_stmts && (int64_t)(extq_stmt_bytes() + total) > px->cfg.max_statement_memory) {
		client_fatal(c, SQLSTATE_OUT_OF_MEMORY,
			     "prepared statements take more than %lld bytes in the "
			     "proxy (max_statement_memory)",
			     (long long)px->cfg.max_statement_memory);
		return false;
	}
	return true;
}

/*
 * What a client message passing to its server means for the bookkeeping: answers
 * owed, the extended protocol's state, COPY, statistics, whether a Query ends the
 * transaction (msg: the message, whole when all total bytes are there). true for a
 * Terminate.
 */
static bool track_message(struct proxy_client *c, struct proxy_server *s, uint8_t type,
			  const uint8_t *msg, bool whole, size_t total)
{
	bool terminate = false;

	switch (type) {
	case PGP_FE_TERMINATE:
		terminate = true;
		break;
	case PGP_FE_QUERY:
		s->outstanding++;
		c->pool->stats.query_count++;
		c->proxy->rings.queries++;
		/* If the server is lost while it runs, is the transaction over anyway? */
		c->ending =
		    c->txn != 'I' && whole && ends_transaction((const char *)msg + 5, total - 5);
		break;
	case PGP_FE_FUNCTION_CALL:
		s->outstanding++;
		break;
	case PGP_FE_SYNC:
		if (!c->in_copy) {
			s->outstanding++;
			s->syncs_since_execute++;
		}
		s->ext_open = false;
		break;
	case PGP_FE_EXECUTE:
		c->pool->stats.query_count++;
		c->proxy->rings.queries++;
		s->syncs_since_execute = 0;
		s->ext_open = true;
		break;
	case PGP_FE_PARSE:
	case PGP_FE_BIND:
	case PGP_FE_DESCRIBE:
	case PGP_FE_CLOSE:
	case PGP_FE_FLUSH:
		s->ext_open = true;
		break;
	case PGP_FE_COPY_DONE:
	case PGP_FE_COPY_FAIL:
		c->in_copy = false;
		s->copy_in = false;
		break;
	default:
		break;
	}
	return terminate;
}

/*
 * Sends the first i bytes of the client's input (d), with the replaced messages in tx
 * (those from run on still to append), to the server; consumes them. false when the
 * client or the server was closed.
 */
static bool send_forwarded(struct proxy_client *c, struct proxy_server *s, const uint8_t *d,
			   size_t i, size_t run, struct cmn_buf *tx)
{
	const uint8_t *out = d;
	size_t out_len = i;

	if (tx->len || run > 0) {
		if (cmn_buf_append(tx, d + run, i - run) != PGW_OK) {
			cmn_buf_free(tx);
			client_fatal(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
			return false;
		}
		out = (const uint8_t *)tx->data;
		out_len = tx->len;
	}
	c->pool->stats.bytes_received += i;
	bool sent =
	    !out_len || send_or_queue(s->proxy->loop, &s->io, s->ssl, &s->out, out, out_len);

	cmn_buf_free(tx);
	/* Consumed either way: answered by the proxy if the server is lost now. */
	buf_consume(&c->in, i);
	if (!sent) {
		server_close(s, "server socket error");
		return false;
	}
	if (buf_used(&s->out) > BACKLOG_LIMIT)
		pause_reading(c->proxy->loop, &c->io, &c->reading_paused, true);
	return true;
}

/*
 * Client -> server: forwards complete messages from c->in, counting requests
 * that expect a ReadyForQuery and keeping an answer slot for each; named
 * prepared statements are renamed (transaction pooling). Stops at a partial
 * message (kept), at Terminate (the client leaves), or when the server socket
 * backs up. A long message the proxy need not read passes as it arrives.
 */
void client_forward(struct proxy_client *c)
{
	struct proxy *px = c->proxy;

	struct proxy_server *s = c->server;
	const uint8_t *d;
	size_t n, i = 0, run = 0;
	bool terminate = false, ok = true;
	struct cmn_buf tx = {0}, rep = {0};
	int max_stmts;

	if (!s || !buf_used(&c->in) || c->checking)
		return;
	/* The client's RESET / DISCARD may have undone its startup settings: at the next
	 * request that starts outside a transaction, they are set again first. */
	if (s->pq.reset_seen && (c->sets || s->sets || c->startup) && c->txn == 'I' &&
	    s->outstanding == 0 && !s->ext_open && !c->in_copy && !c->fe.left &&
	    !server_sync_params(s, c))
		return;
	max_stmts = c->pool->transaction_mode ? px->cfg.max_prepared_statements : 0;
	d = c->in.data + c->in.off;
	n = buf_used(&c->in);
	while (i < n) {
		if (c->fe.left) {
			size_t k = c->fe.left < n - i ? c->fe.left : n - i;

			c->fe.left -= k;
			i += k;
			continue;
		}
		if (n - i < 5)
			break;
		uint8_t type = d[i];
		uint32_t len = ((uint32_t)d[i + 1] << 24) | ((uint32_t)d[i + 2] << 16) |
			       ((uint32_t)d[i + 3] << 8) | d[i + 4];
		size_t total = 1 + (size_t)len, replaced = 0, need;
		size_t avail = n - i < total ? n - i : total;

		if (len < 4 || len > PGP_MAX_MESSAGE) {
			cmn_buf_free(&tx);
			cmn_buf_free(&rep);
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid message length %u",
				     len);
			return;
		}
		need = bytes_needed(c, s, max_stmts, d + i, avail, total);
		/* A named Parse (kept, so bounded), with all of it here. */
		bool kept = type == PGP_FE_PARSE && max_stmts && need == total && total > 5 &&
			    d[i + 5] != '\0' && !s->pq.skipping;

		if (!need || (kept && avail >= need && !parse_allowed(c, max_stmts, total))) {
			cmn_buf_free(&tx);
			cmn_buf_free(&rep);
			return;
		}
		if (avail < need)
			break; /* wait for the rest */
		if (type == PGP_FE_SYNC && c->in_copy)
			; /* ignored by the server during COPY IN: no answer */
		else if (extq_client_message(&c->stmts, &s->pq, max_stmts, d + i, avail, total,
					     &rep, &replaced) != PGW_OK) {
			ok = false;
			break;
		}
		terminate = track_message(c, s, type, d + i, avail == total, total);
		if (terminate)
			break;
		if (replaced) {
			/* What came before goes first; the rest of the message follows as it is. */
			if (cmn_buf_append(&tx, d + run, i - run) != PGW_OK ||
			    cmn_buf_append(&tx, rep.data ? rep.data : "", rep.len) != PGW_OK) {
				ok = false;
				break;
			}
			cmn_buf_reset(&rep);
			i += replaced;
			run = i;
			c->fe.left = total - replaced;
			continue;
		}
		c->fe.left = total;
	}
	cmn_buf_free(&rep);
	if (!ok) {
		cmn_buf_free(&tx);
		client_fatal(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return;
	}
	if (i > 0 && !send_forwarded(c, s, d, i, run, &tx))
		return;
	/* Answers the proxy made itself, due now if nothing is owed before them. */
	if (!s->be.left && extq_synth_due(&s->pq) && !emit_synth(s))
		return;
	if (terminate) {
		client_close(c, NULL);
		return;
	}
}

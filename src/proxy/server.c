/*
 * Servers: connecting to PostgreSQL, logging in (SCRAM, TLS), releasing and
 * resetting a connection, cancel requests, closing.
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

static struct proxy_server_list *server_list(struct proxy_server *s)
{
	struct proxy *px = s->proxy;

	switch (s->state) {
	case PROXY_SV_LOGIN:
		return &s->pool->login;
	case PROXY_SV_IDLE:
		return &s->pool->idle;
	case PROXY_SV_ACTIVE:
		return &s->pool->active;
	case PROXY_SV_RESET:
		return &s->pool->resetting;
	case PROXY_SV_WARM:
		return &s->pool->warm;
	case PROXY_SV_DEAD:
		break;
	}
	return &px->dead_servers;
}

void server_set_state(struct proxy_server *s, enum proxy_sv_state st)
{
	TAILQ_REMOVE(server_list(s), s, entry);
	s->state = st;
	/* Idle: most recently used first, so a few clients keep to a few warm backends. */
	if (st == PROXY_SV_IDLE)
		TAILQ_INSERT_HEAD(server_list(s), s, entry);
	else
		TAILQ_INSERT_TAIL(server_list(s), s, entry);
}

void server_connect(struct proxy_pool *pool)
{
	char host[256];
	int port = 0;

	host[0] = '\0';
	(void)pool_target(pool, host, sizeof(host), &port);
	server_connect_to(pool, host, port, false);
}

void server_connect_to(struct proxy_pool *pool, const char *host, int port, bool warm)
{
	struct proxy *px = pool->proxy;

	struct proxy_server *s;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char portstr[16];
	int fd;

	s = calloc(1, sizeof(*s));
	if (!s)
		return;
	s->proxy = pool->proxy;
	s->io.fd = -1;
	s->pool = pool;
	s->id = ++px->next_id;
	s->generation = pool->generation;
	s->connect_ms = cmn_now_ms();
	s->state = PROXY_SV_LOGIN;
	s->warm = warm;
	TAILQ_INSERT_TAIL(&pool->login, s, entry);
	pool->n_servers++;
	px->n_servers++;
	if (!host[0]) {
		server_close(s, "no server to connect to");
		return;
	}
	snprintf(s->host, sizeof(s->host), "%s", host);
	s->port = port;
	snprintf(portstr, sizeof(portstr), "%d", s->port);
	if (getaddrinfo(s->host, portstr, &hints, &ai) != 0 || !ai) {
		snprintf(pool->last_error, sizeof(pool->last_error), "cannot resolve %s", s->host);
		server_close(s, "cannot resolve the server's address");
		return;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || sock_setup(fd, &px->cfg) != 0 ||
	    (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
		snprintf(pool->last_error, sizeof(pool->last_error), "cannot connect to %s:%d: %s",
			 s->host, s->port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		s->io.fd = -1;
		server_close(s, "connect failed");
		return;
	}
	freeaddrinfo(ai);
	if (cmn_io_add(px->loop, &s->io, fd, EPOLLOUT | EPOLLIN, on_server, s) != PGW_OK) {
		close(fd);
		server_close(s, "cannot watch the socket");
		return;
	}
	log_debug("S-%llu: connecting to %s:%d for %s/%s", (unsigned long long)s->id, s->host,
		  s->port, pool->database, pool->user);
}

void cancel_done(struct proxy_cancel *k)
{
	struct proxy *px = k->proxy;

	if (k->io.fd >= 0) {
		int fd = k->io.fd;

		cmn_io_del(px->loop, &k->io);
		close(fd);
		k->io.fd = -1;
	}
	TAILQ_REMOVE(&px->cancels, k, entry);
	TAILQ_INSERT_TAIL(&px->dead_cancels, k, entry); /* freed after this batch of events */
}

static void on_cancel(struct cmn_loop *l, struct cmn_io *io, uint32_t events)
{
	struct proxy_cancel *k = io->owner;
	uint8_t sink[64];
	ssize_t n;

	if (k->sent < sizeof(k->packet) && (events & EPOLLOUT)) {
		n = send(io->fd, k->packet + k->sent, sizeof(k->packet) - k->sent, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			cancel_done(k); /* refused: the server is gone or unreachable */
			return;
		}
		if (n > 0)
			k->sent += (size_t)n;
		if (k->sent == sizeof(k->packet))
			(void)cmn_io_set(l, io, EPOLLIN);
		return;
	}
	/* PostgreSQL closes the connection once it has signalled the backend. */
	while ((n = recv(io->fd, sink, sizeof(sink), 0)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EINTR) || (events & (EPOLLHUP | EPOLLERR)))
		cancel_done(k);
}

/*
 * A CancelRequest for what s runs now, to the address s is connected to, without
 * waiting: the loop goes on. s is never reused afterwards (close_after): the signal may
 * reach its backend after the query it was meant for has ended, and must not cancel the
 * next client's.
 */
void send_cancel(struct proxy_server *s)
{
	struct proxy *px = s->proxy;

	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct cmn_buf b = {0};
	struct proxy_cancel *k;
	int fd;

	if (!s->be_pid || s->io.fd < 0 || getpeername(s->io.fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	s->close_after = true;
	k = calloc(1, sizeof(*k));
	if (!k || pgp_put_cancel(&b, s->be_pid, s->be_key) != PGW_OK ||
	    b.len != sizeof(k->packet)) {
		free(k);
		cmn_buf_free(&b);
		return;
	}
	k->proxy = s->proxy;
	memcpy(k->packet, b.data, b.len);
	cmn_buf_free(&b);
	k->started_ms = cmn_now_ms();
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) ||
	    cmn_io_add(px->loop, &k->io, fd, EPOLLOUT, on_cancel, k) != PGW_OK) {
		log_debug("S-%llu: cannot send a cancel: %s", (unsigned long long)s->id,
			  strerror(errno));
		if (fd >= 0)
			close(fd);
		free(k);
		return;
	}
	TAILQ_INSERT_TAIL(&px->cancels, k, entry);
}

void server_close(struct proxy_server *s, const char *why)
{
	struct proxy *px = s->proxy;

	struct proxy_pool *pool = s->pool;

	if (s->state == PROXY_SV_DEAD)
		return;
	log_debug("S-%llu: closing: %s", (unsigned long long)s->id, why);
	if (s->client) {
		struct proxy_client *c = s->client;

		s->client = NULL;
		c->server = NULL;
		if (c->checking)
			client_fatal(c, SQLSTATE_CONNECTION_FAILURE,
				     "server connection lost while its startup parameters ran: %s",
				     why);
		else if (pool->transaction_mode)
			client_lost_server(c, s, why);
		else
			client_fatal(c, SQLSTATE_CONNECTION_FAILURE, "server connection lost: %s",
				     why);
	}
	/* A query still running there would go on after the socket closes: cancel it. */
	if (s->io.fd >= 0 && s->state == PROXY_SV_ACTIVE && s->outstanding > 0 &&
	    s->generation == pool->generation)
		send_cancel(s);
	if (s->io.fd >= 0) {
		int fd = s->io.fd;

		if (s->state == PROXY_SV_IDLE || s->state == PROXY_SV_RESET) {
			static const uint8_t terminate[5] = {'X', 0, 0, 0, 4};

			(void)sock_send(fd, s->ssl, terminate, sizeof(terminate));
		}
		cmn_io_del(px->loop, &s->io);
		close(fd);
	}
	SSL_free(s->ssl);
	s->ssl = NULL;
	if (s->state == PROXY_SV_LOGIN && !s->warm)
		pool->next_connect_ms = cmn_now_ms() + SERVER_RETRY_MS;
	server_set_state(s, PROXY_SV_DEAD);
	pool->n_servers--;
	px->n_servers--;
	buf_free(&s->in);
	buf_free(&s->out);
	free(s->scram);
	s->scram = NULL;
	extq_server_free(&s->pq);
	params_free(s->params);
	server_settings_set(s, NULL, NULL);
	/* Others may connect in its place. */
	pool_dispatch(pool);
	pool_check_unused(pool);
}

bool server_send(struct proxy_server *s, const struct cmn_buf *b)
{
	if (!b->data || !send_or_queue(s->proxy->loop, &s->io, s->ssl, &s->out,
				       (const uint8_t *)b->data, b->len)) {
		server_close(s, "server socket error");
		return false;
	}
	return true;
}

/* The client's half of the link has no more to say: the server goes back or closes. */

void server_release(struct proxy_server *s)
{
	struct proxy *px = s->proxy;

	struct proxy_pool *pool = s->pool;
	struct proxy_client *c = s->client;

	/* Paused for a slow client: the next one must be heard. */
	pause_reading(s->proxy->loop, &s->io, &s->reading_paused, false);
	if (c)
		pause_reading(c->proxy->loop, &c->io, &c->reading_paused, false);
	if (c) {
		c->server = NULL;
		s->client = NULL;
		if (c->state == PROXY_CL_ACTIVE)
			client_set_state(c, PROXY_CL_IDLE);
		uint64_t us = (uint64_t)(cmn_now_us() - c->active_us);

		pool->stats.xact_count++;
		pool->stats.xact_time_us += us;
		rings_xact(&px->rings, us);
	}
	if (s->close_after || s->generation != pool->generation) {
		server_close(s, "its target changed");
		return;
	}
	if (extq_pending(&s->pq) || s->pq.dirty) {
		/* DISCARD / DEALLOCATE ran, or an answer is still owed: state unknown. */
		server_close(s, "its prepared statements are unknown");
		return;
	}
	server_set_state(s, PROXY_SV_IDLE);
	s->idle_since_ms = cmn_now_ms();
	pool_dispatch(pool);
	if (px->pause_waiters)
		pause_check(px);
}

/* A session ended on a healthy server: reset it, then it is idle again. */
void server_reset(struct proxy_server *s)
{
	struct proxy *px = s->proxy;

	struct cmn_buf b = {0};

	if (s->generation != s->pool->generation || !px->cfg.server_reset_query[0]) {
		server_release(s);
		return;
	}
	pause_reading(s->proxy->loop, &s->io, &s->reading_paused, false);
	server_set_state(s, PROXY_SV_RESET);
	/* A reset that keeps them (a custom server_reset_query) is not known: RESET next. */
	if (strcasestr(px->cfg.server_reset_query, "DISCARD ALL") ||
	    strcasestr(px->cfg.server_reset_query, "RESET ALL"))
		server_settings_set(s, NULL, NULL);
	if (pgp_put_query(&b, px->cfg.server_reset_query) == PGW_OK && server_send(s, &b))
		s->outstanding = 1;
	cmn_buf_free(&b);
}

static void server_login_done(struct proxy_server *s)
{
	struct proxy_pool *pool = s->pool;

	if (s->warm) {
		/* A candidate's: kept aside until it runs as primary (proxy_adopt_warm). */
		free(s->scram);
		s->scram = NULL;
		buf_free(&s->in);
		server_set_state(s, PROXY_SV_WARM);
		s->txn = 'I';
		log_debug("S-%llu: logged in to %s:%d ahead of its promotion",
			  (unsigned long long)s->id, s->host, s->port);
		return;
	}
	if (s->in_recovery && pool_to_primary(pool)) {
		/* The new leader holds the key but its promotion is still running: a write
		 * would fail (25006). Try again shortly; the clients wait meanwhile. */
		snprintf(pool->last_error, sizeof(pool->last_error),
			 "%s:%d is still in recovery (promotion running)", s->host, s->port);
		server_close(s, pool->last_error);
		pool->next_connect_ms = cmn_now_ms() + PROMOTION_RETRY_MS;
		return;
	}
	free(s->scram);
	s->scram = NULL;
	for (int k = 0; k < PROXY_N_PARAMS; k++)
		if (!pool->defaults[k] && s->params[k])
			pool->defaults[k] = strdup(s->params[k]);
	pool->welcome_ok = true;
	pool->last_error[0] = '\0';
	pool->next_connect_ms = 0;
	buf_free(&s->in);
	server_set_state(s, PROXY_SV_IDLE);
	s->idle_since_ms = cmn_now_ms();
	s->txn = 'I';
	log_debug("S-%llu: logged in to %s:%d", (unsigned long long)s->id, s->host, s->port);
	pool_dispatch(pool);
}

static void server_login_error(struct proxy_server *s, const uint8_t *body, size_t len)
{
	struct pgp_error_fields f;
	struct proxy_pool *pool = s->pool;
	char msg[300];

	if (s->warm) { /* only ahead of time: the pool's clients are not concerned */
		server_close(s, "login to the switchover's candidate failed");
		return;
	}
	if (pgp_parse_error(body, len, &f) != PGW_OK || !f.message)
		snprintf(msg, sizeof(msg), "server login failed");
	else
		snprintf(msg, sizeof(msg), "%s", f.message);
	snprintf(pool->last_error, sizeof(pool->last_error), "%s", msg);
	pool->last_error_ms = cmn_now_ms();
	log_warning("login to %s:%d as %s (database %s) failed: %s", s->host, s->port, pool->user,
		    pool->database, msg);
	/* Starting up / shutting down: the clients may wait for another try. */
	if (f.sqlstate && strncmp(f.sqlstate, "57P0", 4) == 0) {
		server_close(s, msg);
		return;
	}
	char code[6];

	snprintf(code, sizeof(code), "%s", f.sqlstate ? f.sqlstate : SQLSTATE_CONNECTION_FAILURE);
	server_close(s, msg);
	pool_fail_waiting(pool, code, msg);
}

static int server_auth(struct proxy_server *s, const uint8_t *body, size_t len)
{
	struct proxy *px = s->proxy;

	struct pgp_reader r;
	struct proxy_user *u = proxy_userlist_find(&px->users, s->pool->user);
	struct cmn_buf out = {0};
	char msg[PGP_SCRAM_MAX_MSG];
	uint32_t code;
	int rc = PGW_OK;

	pgp_reader_init(&r, body, len);
	code = pgp_get_u32(&r);
	if (r.bad)
		return PGW_EPROTO;
	/* Only SCRAM proves that the server knows the secret, and shows it nothing: the
	 * address came from etcd, whose records anyone with write access can change. */
	if ((code == PGP_AUTH_CLEARTEXT || code == PGP_AUTH_MD5) && !px->cfg.server_plain_auth) {
		log_warning("%s:%d asks %s for a%s: refused (server_plain_auth = off)", s->host,
			    s->port, s->pool->user,
			    code == PGP_AUTH_MD5 ? "n MD5 response" : " cleartext password");
		return PGW_EAUTH;
	}
	switch (code) {
	case PGP_AUTH_OK:
		/* After SCRAM, only once the server proved it knows the secret too. */
		return s->scram && !s->scram_verified ? PGW_EAUTH : PGW_OK;
	case PGP_AUTH_CLEARTEXT:
		if (!u || !u->password)
			return PGW_EAUTH;
		rc = pgp_put_password(&out, u->password);
		break;
	case PGP_AUTH_MD5: {
		const uint8_t *salt = pgp_get_bytes(&r, 4);
		char resp[36];

		if (!salt)
			return PGW_EPROTO;
		if (!u || !u->has_md5)
			return PGW_EAUTH;
		pgp_md5_response(u->md5, salt, resp);
		rc = pgp_put_password(&out, resp);
		break;
	}
	case PGP_AUTH_SASL: {
		bool found = false;
		const char *mech;

		while ((mech = pgp_get_str(&r)) && *mech)
			found = found || strcmp(mech, PGP_SCRAM_MECHANISM) == 0;
		if (!found)
			return PGW_EPROTO;
		if (!u || (!u->password && !u->has_client_key))
			return PGW_EAUTH;
		free(s->scram);
		s->scram = calloc(1, sizeof(*s->scram));
		if (!s->scram || pgp_scram_client_first(s->scram, msg, sizeof(msg)) != PGW_OK)
			return PGW_ENOMEM;
		rc = pgp_put_sasl_initial(&out, PGP_SCRAM_MECHANISM, msg, strlen(msg));
		break;
	}
	case PGP_AUTH_SASL_CONTINUE: {
		size_t n = (size_t)(r.end - r.p);

		if (!s->scram || !u)
			return PGW_EPROTO;
		if (u->password)
			rc = pgp_scram_client_final(s->scram, u->password, (const char *)r.p, n,
						    msg, sizeof(msg));
		else
			rc = pgp_scram_client_final_keys(s->scram, u->client_key,
							 u->scram.server_key, (const char *)r.p, n,
							 msg, sizeof(msg));
		if (rc != PGW_OK)
			return rc;
		rc = pgp_put_sasl_response(&out, msg, strlen(msg));
		break;
	}
	case PGP_AUTH_SASL_FINAL:
		if (!s->scram)
			return PGW_EPROTO;
		rc = pgp_scram_client_verify(s->scram, (const char *)r.p, (size_t)(r.end - r.p));
		s->scram_verified = rc == PGW_OK;
		return rc;
	default:
		return PGW_EPROTO;
	}
	if (rc == PGW_OK && !server_send(s, &out))
		rc = PGW_ERR;
	cmn_buf_free(&out);
	return rc;
}

void server_login_input(struct proxy_server *s)
{
	while (s->state == PROXY_SV_LOGIN) {
		uint8_t type;
		size_t total;
		const uint8_t *d = s->in.data + s->in.off;
		int rc = pgp_frame(d, buf_used(&s->in), 1 << 20, &type, &total);

		if (rc == 0)
			return;
		if (rc < 0) {
			server_close(s, "malformed message from the server during login");
			return;
		}
		const uint8_t *body = d + 5;
		size_t blen = total - 5;

		switch (type) {
		case PGP_BE_AUTH:
			rc = server_auth(s, body, blen);
			if (rc == PGW_EAUTH) {
				bool warm = s->warm;

				snprintf(s->pool->last_error, sizeof(s->pool->last_error),
					 "no password for user %s in the auth file to log in to "
					 "the server",
					 s->pool->user);
				server_close(s, s->pool->last_error);
				if (!warm)
					pool_fail_waiting(
					    s->pool, SQLSTATE_INVALID_AUTHORIZATION_SPECIFICATION,
					    s->pool->last_error);
				return;
			}
			if (rc != PGW_OK) {
				server_close(s, "authentication with the server failed");
				return;
			}
			break;
		case PGP_BE_PARAMETER_STATUS: {
			struct proxy_pool *pool = s->pool;

			(void)server_param_status(s, body, blen);
			if (blen == sizeof("in_hot_standby\0on") &&
			    memcmp(body, "in_hot_standby\0on", blen) == 0)
				s->in_recovery = true;
			if (!pool->welcome_ok && !s->warm) {
				uint8_t *grown = realloc(pool->welcome, pool->welcome_len + total);

				if (grown) {
					memcpy(grown + pool->welcome_len, d, total);
					pool->welcome = grown;
					pool->welcome_len += total;
				}
			}
			break;
		}
		case PGP_BE_BACKEND_KEY: {
			struct pgp_reader r;

			pgp_reader_init(&r, body, blen);
			s->be_pid = pgp_get_u32(&r);
			s->be_key = pgp_get_u32(&r);
			break;
		}
		case PGP_BE_READY:
			buf_consume(&s->in, total);
			server_login_done(s);
			return;
		case PGP_BE_ERROR:
			server_login_error(s, body, blen);
			return;
		case PGP_BE_NOTICE:
		case PGP_BE_NEGOTIATE_VERSION:
			break;
		default:
			server_close(s, "unexpected message from the server during login");
			return;
		}
		buf_consume(&s->in, total);
	}
}

void server_start_login(struct proxy_server *s)
{
	struct cmn_buf b = {0};
	struct pgp_param params[3] = {
	    {"user", s->pool->user},
	    {"database", s->pool->database},
	    {"application_name", "pgwarden-proxy"},
	};

	if (pgp_put_startup(&b, params, 3) == PGW_OK)
		(void)server_send(s, &b);
	cmn_buf_free(&b);
}

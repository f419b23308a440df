/*
 * Clients: accepting them, their startup packet and login, their input, errors
 * sent to them, closing them.
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

/* Sends b's bytes to the client; false (client closed) on a socket error. */
bool client_send(struct proxy_client *c, const struct cmn_buf *b)
{
	if (!b->data)
		return false;
	if (!send_or_queue(c->proxy->loop, &c->io, c->ssl, &c->out, (const uint8_t *)b->data,
			   b->len)) {
		client_close(c, "client socket error");
		return false;
	}
	return true;
}

/* Failed logins at info, at most 10 a second (then how many were left out). */
static void log_failed_login(const struct proxy_client *c, const char *msg)
{
	static int64_t window_ms;
	static int in_window, left_out;
	int64_t now = cmn_now_ms();

	if (now - window_ms >= 1000) {
		if (left_out)
			log_info(
			    "%d more failed logins in the second before (not logged one by one)",
			    left_out);
		window_ms = now;
		in_window = left_out = 0;
	}
	if (in_window++ < 10)
		log_info("failed login from %s: %s", c->addr, msg);
	else
		left_out++;
}

void client_fatal(struct proxy_client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	struct cmn_buf b = {0};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strncmp(sqlstate, "28", 2) == 0) /* 28000, 28P01: authentication */
		log_failed_login(c, msg);
	/* The charts' errors: a server lost or not reached, a timeout, a refusal (not a
	 * client's own protocol errors nor its failed logins). */
	if ((strncmp(sqlstate, "08", 2) == 0 && strcmp(sqlstate, "08P01") != 0) ||
	    strcmp(sqlstate, SQLSTATE_TOO_MANY_CONNECTIONS) == 0 ||
	    strcmp(sqlstate, SQLSTATE_QUERY_CANCELED) == 0 ||
	    strcmp(sqlstate, SQLSTATE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT) == 0 ||
	    strcmp(sqlstate, "57P03") == 0)
		c->proxy->rings.errors++;
	if (pgp_put_error(&b, "FATAL", sqlstate, msg, NULL) == PGW_OK && c->io.fd >= 0) {
		uint8_t sink[4096];

		/* After anything still queued for the client, never in the middle of it. */
		if (buf_used(&c->out)) {
			if (buf_append(&c->out, b.data, b.len) == PGW_OK)
				(void)flush_out(c->proxy->loop, &c->io, c->ssl, &c->out);
		} else {
			(void)sock_send(c->io.fd, c->ssl, b.data, b.len);
		}
		/* Unread input would turn the close into a reset, which can make the
		 * client's kernel drop the error before the client reads it. */
		if (!c->ssl)
			(void)shutdown(c->io.fd, SHUT_WR);
		for (int i = 0; i < 16 && recv(c->io.fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
			;
	}
	cmn_buf_free(&b);
	client_close(c, msg);
}

static struct proxy_client_list *client_list(struct proxy_client *c)
{
	struct proxy *px = c->proxy;

	if (!c->pool) {
		if (c->state == PROXY_CL_DEAD)
			return &px->dead_clients;
		return c->admin && c->state != PROXY_CL_LOGIN ? &px->admin_clients
							      : &px->login_clients;
	}
	switch (c->state) {
	case PROXY_CL_IDLE:
		return &c->pool->idle_clients;
	case PROXY_CL_WAITING:
		return &c->pool->waiting;
	case PROXY_CL_ACTIVE:
		return &c->pool->active_clients;
	case PROXY_CL_DEAD:
		return &px->dead_clients;
	case PROXY_CL_LOGIN:
		break;
	}
	return &px->login_clients;
}

void client_set_state(struct proxy_client *c, enum proxy_cl_state st)
{
	TAILQ_REMOVE(client_list(c), c, entry);
	c->state = st;
	if (st == PROXY_CL_DEAD)
		c->pool = NULL;
	TAILQ_INSERT_TAIL(client_list(c), c, entry);
}

void client_close(struct proxy_client *c, const char *why)
{
	struct proxy *px = c->proxy;

	struct proxy_server *s = c->server;
	struct proxy_pool *pool = c->pool;

	if (c->state == PROXY_CL_DEAD)
		return;
	if (why)
		log_debug("C-%llu: closing: %s", (unsigned long long)c->id, why);
	if (s) {
		c->server = NULL;
		s->client = NULL;
		/* Mid-request or in a transaction: nobody can reuse that server safely. */
		if (s->state == PROXY_SV_ACTIVE) {
			if (s->outstanding == 0 && s->txn == 'I' && !s->copy_in && !s->ext_open &&
			    !s->be.left && !c->fe.left) {
				if (s->pool->transaction_mode)
					server_release(s);
				else
					server_reset(s);
			} else {
				server_close(s, "its client left in the middle of a request");
			}
		}
	}
	if (c->io.fd >= 0) {
		int fd = c->io.fd;

		cmn_io_del(px->loop, &c->io);
		close(fd);
	}
	SSL_free(c->ssl);
	c->ssl = NULL;
	client_set_state(c, PROXY_CL_DEAD);
	if (pool)
		pool_check_unused(pool);
	px->n_clients--;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c->scram);
	c->scram = NULL;
	extq_names_free(&c->stmts);
	if (c->pause_reply) {
		cmn_buf_free(c->pause_reply);
		free(c->pause_reply);
		c->pause_reply = NULL;
		px->pause_waiters--;
	}
	params_free(c->params);
	free(c->params);
	params_free(c->startup);
	free(c->startup);
	c->params = NULL;
	free(c->sets);
	free(c->resets);
	free(c->check_error);
	c->sets = c->resets = c->check_error = NULL;
}

/*
 * Why a new connection is refused before it says anything (NULL: it is not): its
 * address has max_logins_per_address logins in progress, or the open files left are
 * kept for servers. Either way everyone else keeps being served.
 */
static const char *accept_refusal(struct proxy *p, const char *addr)
{
	static char why[160];
	int same = 0;

	if (p->fd_limit && (int)p->n_clients + p->n_servers >= p->fd_limit - p->fd_reserve) {
		snprintf(why, sizeof(why),
			 "too many connections: the proxy's open files are taken (limit %d)",
			 p->fd_limit);
		return why;
	}
	if (!p->cfg.max_logins_per_address)
		return NULL;
	struct proxy_client *c;

	TAILQ_FOREACH(c, &p->login_clients, entry)
	same += strcmp(c->addr, addr) == 0 && !c->replica_wait_ms; /* those are logged in */
	if (same < p->cfg.max_logins_per_address)
		return NULL;
	snprintf(why, sizeof(why),
		 "too many logins in progress from %s (max_logins_per_address %d)", addr,
		 p->cfg.max_logins_per_address);
	return why;
}

/* A 53300 ErrorResponse, sent without waiting, then the connection closed. */
static void refuse_at_once(int fd, const char *why)
{
	static int64_t last_log_ms;
	static int left_out;
	struct cmn_buf b = {0};
	int64_t now = cmn_now_ms();

	if (pgp_put_error(&b, "FATAL", SQLSTATE_TOO_MANY_CONNECTIONS, why, NULL) == PGW_OK)
		(void)send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	cmn_buf_free(&b);
	close(fd);
	if (now - last_log_ms >= 1000) {
		log_warning("refused a connection: %s%s", why,
			    left_out ? " (and others since the last such line)" : "");
		last_log_ms = now;
		left_out = 0;
	} else {
		left_out++;
	}
}

void proxy_accept(struct cmn_loop *l, struct cmn_io *io, uint32_t events)
{
	struct proxy *p = io->owner;
	enum proxy_port port = (enum proxy_port)(io - p->listeners);

	(void)l;
	(void)events;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct proxy_client *c;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* Out of file descriptors: stop accepting for a moment. */
				log_warning(
				    "accept: %s (max_client_conn too high for the open-file "
				    "limit?): pausing new connections for 1 s",
				    strerror(errno));
				(void)cmn_io_set(p->loop, io, 0);
				p->accept_paused_until_ms = cmn_now_ms() + ACCEPT_PAUSE_MS;
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				log_warning("accept: %s", strerror(errno));
			}
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->proxy = p;
		(void)sock_setup(fd, &p->cfg);
		c->io.fd = -1;
		c->id = ++p->next_id;
		c->port = port;
		c->state = PROXY_CL_LOGIN;
		c->connect_ms = cmn_now_ms();
		c->txn = 'I';
		if (getnameinfo((struct sockaddr *)&ss, sl, c->addr, sizeof(c->addr), NULL, 0,
				NI_NUMERICHOST) != 0)
			snprintf(c->addr, sizeof(c->addr), "?");
		const char *why = accept_refusal(p, c->addr);

		if (why) {
			refuse_at_once(fd, why);
			p->rings.errors++;
			free(c);
			continue;
		}
		TAILQ_INSERT_TAIL(&p->login_clients, c, entry);
		p->n_clients++;
		if (cmn_io_add(p->loop, &c->io, fd, EPOLLIN, on_client, c) != PGW_OK) {
			close(fd);
			client_set_state(c, PROXY_CL_DEAD);
			p->n_clients--;
		}
	}
}

/* Cancels the query of the client holding (pid, key), on its server, if linked. */
static void cancel_request(struct proxy *p, uint32_t pid, uint32_t key)
{
	struct proxy_pool *pool;
	struct proxy_client *c;

	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		TAILQ_FOREACH(c, &pool->active_clients, entry)
		{
			if (c->cancel_pid != pid || c->cancel_key != key || !c->server)
				continue;
			struct proxy_server *s = c->server;

			send_cancel(s);
			log_debug("C-%llu: cancel forwarded to S-%llu", (unsigned long long)c->id,
				  (unsigned long long)s->id);
			return;
		}
	}
}

/*
 * A client of the replica port waiting for a healthy replica (replica_wait_ms):
 * logged in once there is one, told so past query_wait_timeout. At each tick and
 * each change of the cluster's view.
 */
void client_replica_wait(struct proxy_client *c, int64_t now)
{
	struct proxy *px = c->proxy;

	if (replica_available(px)) {
		client_logged_in(c);
		if (c->state != PROXY_CL_DEAD && c->state != PROXY_CL_LOGIN && buf_used(&c->in))
			client_request(c); /* what it sent meanwhile */
		return;
	}
	if (now - c->replica_wait_ms > px->cfg.query_wait_timeout_ms)
		client_fatal(c, SQLSTATE_CANNOT_CONNECT_NOW,
			     "no replica is available (healthy and within max_replica_lag) "
			     "within query_wait_timeout (%d ms)",
			     px->cfg.query_wait_timeout_ms);
}

void client_logged_in(struct proxy_client *c)
{
	struct proxy *px = c->proxy;

	struct cmn_buf b = {0};
	char member[DCS_NAME_MAX] = "";
	enum proxy_port port = c->port;

	if (c->state != PROXY_CL_LOGIN)
		return; /* closed on the way (a failed send) */
	if (c->admin) {
		admin_logged_in(c);
		return;
	}

	if (c->port == PROXY_PORT_REPLICA && !pick_replica(c->proxy, member, sizeof(member))) {
		if (px->cfg.query_wait_timeout_ms > 0) {
			/* None healthy yet: wait (client_replica_wait), as 6432 waits for a
			 * primary. */
			if (!c->replica_wait_ms)
				c->replica_wait_ms = cmn_now_ms();
			return;
		}
		client_fatal(c, SQLSTATE_CANNOT_CONNECT_NOW,
			     "no replica is available (healthy and within "
			     "max_replica_lag)");
		return;
	}
	int64_t waited_since = c->replica_wait_ms;

	c->replica_wait_ms = 0;
	if (c->port == PROXY_PORT_REPLICA && !member[0])
		port = PROXY_PORT_PRIMARY; /* fallback */
	bool full;

	c->pool = pool_get(c->proxy, port, c->database, c->user, member, &full);
	if (!c->pool && full) {
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "too many pools: %d database/user pools exist (max_pools); try again "
			     "once unused ones are freed (pool_idle_timeout)",
			     px->n_pools);
		return;
	}
	if (!c->pool) {
		client_fatal(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return;
	}
	c->pool->stats.client_logins++;
	if (pgp_put_auth(&b, PGP_AUTH_OK, NULL, 0) != PGW_OK || !client_send(c, &b)) {
		cmn_buf_free(&b);
		return;
	}
	cmn_buf_free(&b);
	free(c->scram);
	c->scram = NULL;
	if (pgp_random(&c->cancel_pid, sizeof(c->cancel_pid)) != PGW_OK ||
	    pgp_random(&c->cancel_key, sizeof(c->cancel_key)) != PGW_OK) {
		client_fatal(c, SQLSTATE_SYSTEM_ERROR, "no random bytes for the cancel key");
		return;
	}
	c->cancel_pid &= 0x7fffffff;
	TAILQ_REMOVE(&px->login_clients, c, entry);
	if (c->pool->transaction_mode && c->pool->welcome_ok &&
	    pool_settings_ok(c->pool, c->sets)) {
		c->state = PROXY_CL_IDLE;
		TAILQ_INSERT_TAIL(&c->pool->idle_clients, c, entry);
		client_welcome(c);
		return;
	}
	/* Session ports get their server now; a new pool first needs a server's welcome. */
	c->state = PROXY_CL_WAITING;
	c->wait_since_ms = waited_since ? waited_since : cmn_now_ms(); /* one wait in all */
	c->wait_since_us = cmn_now_us();
	TAILQ_INSERT_TAIL(&c->pool->waiting, c, entry);
	pool_dispatch(c->pool);
}

static void client_startup(struct proxy_client *c, const uint8_t *pkt, size_t len)
{
	struct proxy *px = c->proxy;

	struct pgp_startup st;
	struct cmn_buf b = {0};
	char err[256];

	if (pgp_parse_startup(pkt, len, &st, err, sizeof(err)) != PGW_OK) {
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "%s", err);
		return;
	}
	if (st.code == PGP_SSL_REQUEST || st.code == PGP_GSSENC_REQUEST) {
		bool tls = st.code == PGP_SSL_REQUEST && px->tls.client && !c->ssl;

		if (buf_used(&c->in) > 0) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "received unencrypted data after SSL request");
			return;
		}
		if (send(c->io.fd, tls ? "S" : "N", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
			client_close(c, "client socket error");
			return;
		}
		if (tls) {
			c->ssl = SSL_new(px->tls.client);
			if (!c->ssl || SSL_set_fd(c->ssl, c->io.fd) != 1) {
				client_close(c, "cannot start TLS");
				return;
			}
			SSL_set_accept_state(c->ssl);
			c->tls_handshake = true;
		}
		return;
	}
	if (st.code >> 16 == 3 && !c->ssl && strcmp(px->cfg.client_tls_sslmode, "require") == 0) {
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION_SPECIFICATION,
			     "SSL required (client_tls_sslmode require)");
		return;
	}
	if (st.code == PGP_CANCEL_REQUEST) {
		if (st.cancel_key_len == 4) {
			uint32_t key = ((uint32_t)st.cancel_key[0] << 24) |
				       ((uint32_t)st.cancel_key[1] << 16) |
				       ((uint32_t)st.cancel_key[2] << 8) | st.cancel_key[3];

			cancel_request(c->proxy, st.cancel_pid, key);
		}
		client_close(c, NULL);
		return;
	}
	if ((size_t)px->cfg.max_client_conn < px->n_clients) {
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "no more connections allowed (max_client_conn %d)",
			     px->cfg.max_client_conn);
		return;
	}
	if (st.replication) {
		client_fatal(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
			     "replication connections are not supported by the proxy");
		return;
	}
	snprintf(c->user, sizeof(c->user), "%s", st.user);
	snprintf(c->database, sizeof(c->database), "%s", st.database);
	for (size_t i = 0; i < st.n_params; i++) {
		int k = param_index(st.params[i].name);

		if (strcmp(st.params[i].name, "application_name") == 0)
			snprintf(c->app_name, sizeof(c->app_name), "%s", st.params[i].value);
		if (k >= 0)
			client_param_set(c, k, st.params[i].value);
	}
	if (strcmp(c->database, "pgbouncer") == 0 || strcmp(c->database, "pgwarden") == 0) {
		c->admin = true;
		if (!cmn_name_in_list(px->cfg.admin_users, c->user) &&
		    !cmn_name_in_list(px->cfg.stats_users, c->user)) {
			client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION_SPECIFICATION,
				     "not allowed on the admin console: %s", c->user);
			return;
		}
		if (c->port != PROXY_PORT_POOLED) {
			client_fatal(c, SQLSTATE_INVALID_CATALOG_NAME,
				     "the admin console is on the pooled port");
			return;
		}
	}
	if (!c->admin && !client_settings(c, &st))
		return;
	if ((st.code & 0xffff) > 0 || st.n_unknown_pq > 0) {
		if (pgp_put_negotiate(&b, 0, st.unknown_pq, st.n_unknown_pq) == PGW_OK)
			(void)client_send(c, &b);
		cmn_buf_reset(&b);
		if (c->state == PROXY_CL_DEAD) {
			cmn_buf_free(&b);
			return;
		}
	}
	if (strcasecmp(px->cfg.auth_type, "trust") == 0) {
		cmn_buf_free(&b);
		client_logged_in(c);
		return;
	}
	cmn_buf_free(&b);
	struct proxy_user *u = proxy_userlist_find(&px->users, c->user);

	/* Users learned from auth_query are asked again: their password may have changed. */
	if (!u || u->dynamic) {
		if (px->cfg.auth_user && *px->cfg.auth_user)
			auth_query_start(c);
		else
			client_fatal(c, SQLSTATE_INVALID_PASSWORD,
				     "password authentication failed for user \"%s\"", c->user);
		return;
	}
	client_challenge(c);
}

/*
 * Login phase: startup packet(s), then password messages. Each packet leaves the
 * input buffer before it is handled: whatever follows it there (a client that
 * pipelines its first query) is a request for a server.
 */
static void client_login_input(struct proxy_client *c)
{
	while (c->state == PROXY_CL_LOGIN && !c->replica_wait_ms && buf_used(&c->in)) {
		const uint8_t *d = c->in.data + c->in.off;
		size_t n = buf_used(&c->in), total;
		uint8_t *pkt;
		int rc;

		if (c->auth_step == 0) {
			rc = pgp_startup_frame(d, n, &total);
			if (rc < 0) {
				client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
					     "invalid startup packet length");
				return;
			}
		} else {
			uint8_t type;

			rc = pgp_frame(d, n, PGP_SCRAM_MAX_MSG + 64, &type, &total);
			if (rc > 0 && type == PGP_FE_TERMINATE) {
				client_close(c, NULL);
				return;
			}
			if (rc < 0 || (rc > 0 && type != PGP_FE_PASSWORD)) {
				client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
					     "expected a password message");
				return;
			}
		}
		if (rc == 0)
			return;
		pkt = malloc(total);
		if (!pkt) {
			client_close(c, "out of memory");
			return;
		}
		memcpy(pkt, d, total);
		buf_consume(&c->in, total);
		/* The startup packet's strings point into pkt: handled before it is freed. */
		if (c->auth_step == 0)
			client_startup(c, pkt, total);
		else
			client_password(c, pkt + 5, total - 5);
		free(pkt);
	}
	if (c->state != PROXY_CL_LOGIN && c->state != PROXY_CL_DEAD && !c->admin &&
	    buf_used(&c->in))
		client_request(c);
}

void on_client(struct cmn_loop *l, struct cmn_io *io, uint32_t events)
{
	struct proxy_client *c = io->owner;
	struct proxy *px = c->proxy;

	(void)l;
	if (c->tls_handshake) {
		int r, e;

		ERR_clear_error();
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				(void)cmn_io_set(px->loop, io,
						 EPOLLIN |
						     (e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0));
				return;
			}
			log_info("C-%llu: TLS handshake failed: %s", (unsigned long long)c->id,
				 proxy_tls_error());
			client_close(c, "TLS handshake failed");
			return;
		}
		c->tls_handshake = false;
		(void)cmn_io_set(px->loop, io, EPOLLIN);
		events = EPOLLIN; /* the startup packet may already wait inside TLS */
	}
	if (events & EPOLLOUT) {
		if (!flush_out(c->proxy->loop, io, c->ssl, &c->out)) {
			client_close(c, "client socket error");
			return;
		}
		if (!buf_used(&c->out) && c->orphan) {
			pause_reading(c->proxy->loop, &c->io, &c->reading_paused, false);
			client_request(c);
			if (c->state == PROXY_CL_DEAD)
				return;
		}
		if (!buf_used(&c->out) && c->server) {
			struct proxy_server *s = c->server;

			pause_reading(s->proxy->loop, &s->io, &s->reading_paused, false);
			if (s->ssl && SSL_pending(s->ssl) > 0)
				on_server(px->loop, &s->io, EPOLLIN);
			if (c->state == PROXY_CL_DEAD)
				return;
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (int rounds = 0; (rounds < 4 || c->ssl) && c->state != PROXY_CL_DEAD; rounds++) {
		ssize_t r = sock_recv(io->fd, c->ssl, px->scratch, px->scratch_size);

		if (r == 0) {
			client_close(c, "client closed the connection");
			return;
		}
		if (r < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				client_close(c, strerror(errno));
			return;
		}
		c->last_io_ms = cmn_now_ms();
		if (c->state == PROXY_CL_LOGIN && buf_used(&c->in) + (size_t)r > PGP_MAX_STARTUP) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "login packets too long");
			return;
		}
		if (buf_append(&c->in, px->scratch, (size_t)r) != PGW_OK) {
			client_close(c, "out of memory");
			return;
		}
		if (c->state == PROXY_CL_LOGIN && c->replica_wait_ms)
			; /* logged in, waiting for a replica: kept for then */
		else if (c->state == PROXY_CL_LOGIN)
			client_login_input(c);
		else if (c->admin)
			admin_input(c);
		else
			client_request(c);
		/* Waiting for a server: stop reading once enough is queued. */
		if (c->state != PROXY_CL_DEAD && c->state != PROXY_CL_ACTIVE &&
		    buf_used(&c->in) > BACKLOG_LIMIT)
			pause_reading(c->proxy->loop, &c->io, &c->reading_paused, true);
		if (c->reading_paused || (!c->ssl && (size_t)r < px->scratch_size))
			return;
	}
}

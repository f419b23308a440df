/*
 * Client and server connections of the proxy: login on both sides, pools,
 * linking a client to a server for a transaction (6432) or a session
 * (5000 / 5001), and passing bytes through while watching message boundaries.
 */
#include "common/log.h"
#include "pgproto/sqlstate.h"
#include "common/timeutil.h"
#include "proxy/admin.h"
#include "proxy/authq.h"
#include "proxy/proxy_int.h"

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

/* Pause reading a source while its destination holds this much unsent. */
#define BACKLOG_LIMIT (256 * 1024)
#define BUF_MIN	      8192
/* A server connection or login that failed: the pool waits this long before another. */
#define SERVER_RETRY_MS 500
/* Named prepared statements one client may have. */
#define MAX_CLIENT_STATEMENTS 10000
/* A new primary still finishing its promotion: the next connection attempt after. */
#define PROMOTION_RETRY_MS 50

static struct proxy *P;

/* ---- buffers ---- */

static size_t buf_used(const struct proxy_buf *b)
{
	return b->len - b->off;
}

static int buf_append(struct proxy_buf *b, const void *d, size_t n)
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

static void buf_consume(struct proxy_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len) {
		/* Drained: give the memory back (idle connections keep nothing). */
		free(b->data);
		memset(b, 0, sizeof(*b));
	}
}

static void buf_free(struct proxy_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---- errors to clients ---- */

static void client_close(struct proxy_client *c, const char *why);
static void server_close(struct proxy_server *s, const char *why);
static bool flush_out(struct cmn_io *io, SSL *ssl, struct proxy_buf *out);
static void pool_dispatch(struct proxy_pool *pool);
static void params_free(char **v);
static void client_forward(struct proxy_client *c);
static void client_welcome(struct proxy_client *c);
static bool server_checked(struct proxy_server *s, struct proxy_client *c);
static bool server_sync_params(struct proxy_server *s, struct proxy_client *c);
static void server_release(struct proxy_server *s);
static void pause_check(void);
static void pause_reading(struct cmn_io *io, bool *paused, bool pause);

/* send / recv, through TLS when ssl is set: -1 with errno EAGAIN when it would block. */
static ssize_t sock_send(int fd, SSL *ssl, const void *d, size_t n)
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

static ssize_t sock_recv(int fd, SSL *ssl, void *d, size_t n)
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

static bool send_or_queue(struct cmn_io *io, SSL *ssl, struct proxy_buf *out, const uint8_t *d,
			  size_t n)
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
		(void)cmn_io_set(P->loop, io, io->events | EPOLLOUT);
	}
	return true;
}

/* Sends b's bytes to the client; false (client closed) on a socket error. */
static bool client_send(struct proxy_client *c, const struct cmn_buf *b)
{
	if (!b->data)
		return false;
	if (!send_or_queue(&c->io, c->ssl, &c->out, (const uint8_t *)b->data, b->len)) {
		client_close(c, "client socket error");
		return false;
	}
	return true;
}

/* A FATAL error to the client, then the connection closes (the one exit path for errors). */
static void client_fatal(struct proxy_client *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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

static void client_fatal(struct proxy_client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	struct cmn_buf b = {0};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strncmp(sqlstate, "28", 2) == 0) /* 28000, 28P01: authentication */
		log_failed_login(c, msg);
	if (pgp_put_error(&b, "FATAL", sqlstate, msg, NULL) == PGW_OK && c->io.fd >= 0) {
		uint8_t sink[4096];

		/* After anything still queued for the client, never in the middle of it. */
		if (buf_used(&c->out)) {
			if (buf_append(&c->out, b.data, b.len) == PGW_OK)
				(void)flush_out(&c->io, c->ssl, &c->out);
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

/* ---- pools ---- */

/* No client and no server. */
static bool pool_unused(const struct proxy_pool *pool)
{
	return pool->n_servers == 0 && TAILQ_EMPTY(&pool->idle_clients) &&
	       TAILQ_EMPTY(&pool->waiting) && TAILQ_EMPTY(&pool->active_clients) &&
	       TAILQ_EMPTY(&pool->login) && TAILQ_EMPTY(&pool->idle) &&
	       TAILQ_EMPTY(&pool->active) && TAILQ_EMPTY(&pool->resetting);
}

static void pool_doom(struct proxy_pool *pool)
{
	if (!pool->doomed) {
		pool->doomed = true;
		P->n_doomed++;
	}
}

/*
 * A pool whose server login never succeeded (a database or user PostgreSQL does not
 * know) goes with its last client and server: names made up by a client must not pile
 * up pools (they did: 30,000 of them, 160 MB).
 */
static void pool_check_unused(struct proxy_pool *pool)
{
	if (!pool->welcome_ok && pool_unused(pool))
		pool_doom(pool);
}

static void pool_free(struct proxy_pool *pool)
{
	TAILQ_REMOVE(&P->pools, pool, entry);
	P->n_pools--;
	params_free(pool->defaults);
	for (size_t i = 0; i < sizeof(pool->sets_ok) / sizeof(pool->sets_ok[0]); i++)
		free(pool->sets_ok[i]);
	free(pool->welcome);
	free(pool);
}

void proxy_free_unused_pools(struct proxy *p)
{
	struct proxy_pool *pool, *tmp;

	if (!p->n_doomed)
		return;
	P = p;
	TAILQ_FOREACH_SAFE(pool, &p->pools, entry, tmp)
	{
		if (!pool->doomed)
			continue;
		if (pool_unused(pool))
			pool_free(pool);
		else
			pool->doomed = false;
	}
	p->n_doomed = 0;
}

/* The pool of port/db/user/member, made when missing; NULL with *full set beyond
 * max_pools, NULL alone when out of memory. */
static struct proxy_pool *pool_get(enum proxy_port port, const char *db, const char *user,
				   const char *member, bool *full)
{
	struct proxy_pool *pool;

	*full = false;
	TAILQ_FOREACH(pool, &P->pools, entry)
	{
		if (pool->port == port && strcmp(pool->database, db) == 0 &&
		    strcmp(pool->user, user) == 0 && strcmp(pool->member, member) == 0) {
			pool->doomed = false; /* in use again (n_doomed recounts at the sweep) */
			return pool;
		}
	}
	if (P->n_pools >= P->cfg.max_pools) {
		*full = true;
		return NULL;
	}
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	P->n_pools++;
	pool->port = port;
	snprintf(pool->database, sizeof(pool->database), "%s", db);
	snprintf(pool->user, sizeof(pool->user), "%s", user);
	snprintf(pool->member, sizeof(pool->member), "%s", member);
	pool->transaction_mode = port == PROXY_PORT_POOLED;
	pool->pool_size =
	    pool->transaction_mode ? P->cfg.default_pool_size : P->cfg.session_pool_size;
	pool->generation = port == PROXY_PORT_REPLICA ? 1 : P->leader_generation;
	TAILQ_INIT(&pool->idle_clients);
	TAILQ_INIT(&pool->waiting);
	TAILQ_INIT(&pool->active_clients);
	TAILQ_INIT(&pool->login);
	TAILQ_INIT(&pool->idle);
	TAILQ_INIT(&pool->active);
	TAILQ_INIT(&pool->resetting);
	TAILQ_INSERT_TAIL(&P->pools, pool, entry);
	return pool;
}

/* The pool's servers go to the primary (held during a planned switchover). */
static bool pool_to_primary(const struct proxy_pool *pool)
{
	return pool->port != PROXY_PORT_REPLICA || !pool->member[0];
}

/* ---- session parameters ---- */

const char *const proxy_param_names[PROXY_N_PARAMS] = {
    "application_name", "client_encoding", "DateStyle",
    "IntervalStyle",	"TimeZone",	   "standard_conforming_strings",
};

static int param_index(const char *name)
{
	for (int k = 0; k < PROXY_N_PARAMS; k++)
		if (strcasecmp(proxy_param_names[k], name) == 0)
			return k;
	return -1;
}

static const char *client_param(const struct proxy_client *c, int k)
{
	if (c->params && c->params[k])
		return c->params[k];
	return c->pool ? c->pool->defaults[k] : NULL;
}

/* Values the proxy puts into its own SQL are printable ASCII only: in a multibyte
 * client encoding another byte could swallow an escape. */
static bool printable_ascii(const char *value)
{
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return false;
	return true;
}

/* Appends value as the body of an E'' literal (' and \ escaped). */
static void append_literal(struct cmn_buf *b, const char *value)
{
	for (const char *p = value; *p; p++)
		(void)cmn_buf_printf(b, "%s%c", *p == '\'' || *p == '\\' ? "\\" : "", *p);
}

/* The client's session has this value now (kept only where it differs from a fresh
 * server session's: idle clients cost little). */
static void client_param_set(struct proxy_client *c, int k, const char *value)
{
	char *v;

	/* The values PostgreSQL reports are printable ASCII; anything else is refused. */
	if (!printable_ascii(value)) {
		log_info("C-%llu: %s value with non-printable or non-ASCII bytes ignored",
			 (unsigned long long)c->id, proxy_param_names[k]);
		return;
	}
	if (c->pool && c->pool->defaults[k] && strcmp(c->pool->defaults[k], value) == 0) {
		if (c->params) {
			free(c->params[k]);
			c->params[k] = NULL;
		}
		return;
	}
	if (c->params && c->params[k] && strcmp(c->params[k], value) == 0)
		return;
	if (!c->params && !(c->params = calloc(PROXY_N_PARAMS, sizeof(char *))))
		return;
	if (!(v = strdup(value)))
		return;
	free(c->params[k]);
	c->params[k] = v;
}

static void server_param_set(struct proxy_server *s, int k, const char *value)
{
	char *v;

	if (s->params[k] && strcmp(s->params[k], value) == 0)
		return;
	if (!(v = strdup(value)))
		return;
	free(s->params[k]);
	s->params[k] = v;
}

static void params_free(char **v)
{
	for (int k = 0; v && k < PROXY_N_PARAMS; k++) {
		free(v[k]);
		v[k] = NULL;
	}
}

/* ---- other startup settings ("options" -c, search_path, statement_timeout, ...) ----
 * PostgreSQL reports none of them, so the proxy runs them itself: a client's settings
 * are checked on a server before its welcome (a refused one fails its login, as it
 * would on PostgreSQL), then set before each of its transactions on a server that
 * runs with other settings (after a RESET of those). */

static bool streq_null(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

struct settings_build {
	struct proxy_client *c;
	struct cmn_buf sets, resets;
	const char *sqlstate;
	char err[200];
};

static int settings_add(void *arg, const char *name, const char *value)
{
	struct settings_build *sb = arg;
	int k = param_index(name);
	size_t n = strlen(name);

	if (k >= 0) {
		client_param_set(sb->c, k, value);
		return PGW_OK;
	}
	for (size_t i = 0; i < n; i++)
		if (!(isalpha((unsigned char)name[i]) || name[i] == '_' ||
		      (i > 0 && (isdigit((unsigned char)name[i]) || name[i] == '.')))) {
			n = 0;
			break;
		}
	if (n == 0 || n > 63) {
		sb->sqlstate = SQLSTATE_INVALID_NAME;
		snprintf(sb->err, sizeof(sb->err), "invalid configuration parameter name \"%.64s\"",
			 name);
		return PGW_EINVAL;
	}
	if (!printable_ascii(value)) {
		sb->sqlstate = SQLSTATE_INVALID_PARAMETER_VALUE;
		snprintf(sb->err, sizeof(sb->err),
			 "startup parameter \"%s\": the proxy takes printable ASCII values only",
			 name);
		return PGW_EINVAL;
	}
	/* set_config takes the value as a startup setting does (SET would read a quoted
	 * "a,b" as one search_path entry); a quoted name may be a keyword (my.user). */
	(void)cmn_buf_printf(&sb->sets, "SELECT pg_catalog.set_config('%s', E'", name);
	append_literal(&sb->sets, value);
	(void)cmn_buf_printf(&sb->sets, "', false);");
	(void)cmn_buf_printf(&sb->resets, "RESET \"%s\";", name);
	return sb->sets.data && sb->resets.data ? PGW_OK : PGW_ENOMEM;
}

/* The client's startup settings: "options" first, then the other parameters (the
 * order PostgreSQL applies them in). False when the client was refused. */
static bool client_settings(struct proxy_client *c, const struct pgp_startup *st)
{
	static const char *const skip[] = {"user", "database", "replication", "options"};
	struct settings_build sb = {.c = c, .sqlstate = SQLSTATE_SYNTAX_ERROR};
	int rc = PGW_OK;

	if (st->options)
		rc = pgp_parse_options(st->options, settings_add, &sb, sb.err, sizeof(sb.err));
	for (size_t i = 0; rc == PGW_OK && i < st->n_params; i++) {
		const char *name = st->params[i].name;
		bool known = strncmp(name, "_pq_.", 5) == 0;

		for (size_t j = 0; j < sizeof(skip) / sizeof(skip[0]); j++)
			known = known || strcmp(name, skip[j]) == 0;
		if (!known)
			rc = settings_add(&sb, name, st->params[i].value);
	}
	if (rc == PGW_OK && sb.sets.len &&
	    (!(c->sets = strdup(sb.sets.data)) || !(c->resets = strdup(sb.resets.data))))
		rc = PGW_ENOMEM;
	cmn_buf_free(&sb.sets);
	cmn_buf_free(&sb.resets);
	if (rc == PGW_ENOMEM)
		client_fatal(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
	else if (rc != PGW_OK)
		client_fatal(c, sb.sqlstate, "%s", sb.err);
	return rc == PGW_OK;
}

/* A server of the pool accepted these settings recently. */
static bool pool_settings_ok(const struct proxy_pool *pool, const char *sets)
{
	if (!sets)
		return true;
	for (size_t i = 0; i < sizeof(pool->sets_ok) / sizeof(pool->sets_ok[0]); i++)
		if (pool->sets_ok[i] && strcmp(pool->sets_ok[i], sets) == 0)
			return true;
	return false;
}

static void pool_settings_accepted(struct proxy_pool *pool, const char *sets)
{
	unsigned n = sizeof(pool->sets_ok) / sizeof(pool->sets_ok[0]);
	char *copy;

	if (pool_settings_ok(pool, sets) || !(copy = strdup(sets)))
		return;
	free(pool->sets_ok[pool->sets_ok_next % n]);
	pool->sets_ok[pool->sets_ok_next++ % n] = copy;
}

/* The server runs with a client's settings now (NULL: its own). */
static void server_settings_set(struct proxy_server *s, const char *sets, const char *resets)
{
	free(s->sets);
	free(s->resets);
	s->sets = sets ? strdup(sets) : NULL;
	s->resets = resets ? strdup(resets) : NULL;
	if (sets && (!s->sets || !s->resets)) {
		/* Out of memory: what it runs with is unknown; it leaves the pool. */
		s->close_after = true;
		free(s->sets);
		s->sets = NULL;
	}
	s->pq.has_settings = s->sets != NULL;
}

/* A ParameterStatus from a server: its session, and its client's, have that value. */
static void server_param_status(struct proxy_server *s, const uint8_t *body, size_t len)
{
	struct pgp_reader r;
	const char *name, *value;
	int k;

	pgp_reader_init(&r, body, len);
	name = pgp_get_str(&r);
	value = pgp_get_str(&r);
	if (r.bad || !name || !value || (k = param_index(name)) < 0)
		return;
	server_param_set(s, k, value);
	if (s->client)
		client_param_set(s->client, k, value);
}

static struct proxy_client_list *client_list(struct proxy_client *c)
{
	if (!c->pool) {
		if (c->state == PROXY_CL_DEAD)
			return &P->dead_clients;
		return c->admin && c->state != PROXY_CL_LOGIN ? &P->admin_clients
							      : &P->login_clients;
	}
	switch (c->state) {
	case PROXY_CL_IDLE:
		return &c->pool->idle_clients;
	case PROXY_CL_WAITING:
		return &c->pool->waiting;
	case PROXY_CL_ACTIVE:
		return &c->pool->active_clients;
	case PROXY_CL_DEAD:
		return &P->dead_clients;
	case PROXY_CL_LOGIN:
		break;
	}
	return &P->login_clients;
}

static void client_set_state(struct proxy_client *c, enum proxy_cl_state st)
{
	TAILQ_REMOVE(client_list(c), c, entry);
	c->state = st;
	if (st == PROXY_CL_DEAD)
		c->pool = NULL;
	TAILQ_INSERT_TAIL(client_list(c), c, entry);
}

static struct proxy_server_list *server_list(struct proxy_server *s)
{
	switch (s->state) {
	case PROXY_SV_LOGIN:
		return &s->pool->login;
	case PROXY_SV_IDLE:
		return &s->pool->idle;
	case PROXY_SV_ACTIVE:
		return &s->pool->active;
	case PROXY_SV_RESET:
		return &s->pool->resetting;
	case PROXY_SV_DEAD:
		break;
	}
	return &P->dead_servers;
}

static void server_set_state(struct proxy_server *s, enum proxy_sv_state st)
{
	TAILQ_REMOVE(server_list(s), s, entry);
	s->state = st;
	/* Idle: most recently used first, so a few clients keep to a few warm backends. */
	if (st == PROXY_SV_IDLE)
		TAILQ_INSERT_HEAD(server_list(s), s, entry);
	else
		TAILQ_INSERT_TAIL(server_list(s), s, entry);
}

/* Where a pool's servers go now (false: nowhere yet). */
static bool pool_target(struct proxy_pool *pool, char *host, size_t size, int *port)
{
	if (pool->port == PROXY_PORT_REPLICA && pool->member[0]) {
		for (size_t i = 0; i < P->topo.n_members; i++) {
			const struct proxy_member *m = &P->topo.members[i];

			if (strcmp(m->name, pool->member) == 0 && !m->is_leader && m->host[0]) {
				snprintf(host, size, "%s", m->host);
				*port = m->port;
				return true;
			}
		}
		return false;
	}
	if (!P->routing_writes)
		return false;
	snprintf(host, size, "%s", P->leader_host);
	*port = P->leader_port;
	return true;
}

/* ---- servers ---- */

static void on_server(struct cmn_loop *l, struct cmn_io *io, uint32_t events);
static void on_client(struct cmn_loop *l, struct cmn_io *io, uint32_t events);

static int set_nonblock_nodelay(int fd)
{
	int one = 1;

	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
		return -1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

static void server_connect(struct proxy_pool *pool)
{
	struct proxy_server *s;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char portstr[16];
	int fd;

	s = calloc(1, sizeof(*s));
	if (!s)
		return;
	s->io.fd = -1;
	s->pool = pool;
	s->id = ++P->next_id;
	s->generation = pool->generation;
	s->connect_ms = cmn_now_ms();
	s->state = PROXY_SV_LOGIN;
	TAILQ_INSERT_TAIL(&pool->login, s, entry);
	pool->n_servers++;
	P->n_servers++;
	if (!pool_target(pool, s->host, sizeof(s->host), &s->port)) {
		server_close(s, "no server to connect to");
		return;
	}
	snprintf(portstr, sizeof(portstr), "%d", s->port);
	if (getaddrinfo(s->host, portstr, &hints, &ai) != 0 || !ai) {
		snprintf(pool->last_error, sizeof(pool->last_error), "cannot resolve %s", s->host);
		server_close(s, "cannot resolve the server's address");
		return;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || set_nonblock_nodelay(fd) != 0 ||
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
	if (cmn_io_add(P->loop, &s->io, fd, EPOLLOUT | EPOLLIN, on_server, s) != PGW_OK) {
		close(fd);
		server_close(s, "cannot watch the socket");
		return;
	}
	log_debug("S-%llu: connecting to %s:%d for %s/%s", (unsigned long long)s->id, s->host,
		  s->port, pool->database, pool->user);
}

#define CANCEL_TIMEOUT_MS 5000

static void cancel_done(struct proxy_cancel *k)
{
	if (k->io.fd >= 0) {
		int fd = k->io.fd;

		cmn_io_del(P->loop, &k->io);
		close(fd);
		k->io.fd = -1;
	}
	TAILQ_REMOVE(&P->cancels, k, entry);
	TAILQ_INSERT_TAIL(&P->dead_cancels, k, entry); /* freed after this batch of events */
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
static void send_cancel(struct proxy_server *s)
{
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
	memcpy(k->packet, b.data, b.len);
	cmn_buf_free(&b);
	k->started_ms = cmn_now_ms();
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) ||
	    cmn_io_add(P->loop, &k->io, fd, EPOLLOUT, on_cancel, k) != PGW_OK) {
		log_debug("S-%llu: cannot send a cancel: %s", (unsigned long long)s->id,
			  strerror(errno));
		if (fd >= 0)
			close(fd);
		free(k);
		return;
	}
	TAILQ_INSERT_TAIL(&P->cancels, k, entry);
}

/* Fails every client of the pool that waits for a server, with the server's error. */
static void pool_fail_waiting(struct proxy_pool *pool, const char *sqlstate, const char *msg)
{
	struct proxy_client *c, *tmp;

	TAILQ_FOREACH_SAFE(c, &pool->waiting, entry, tmp)
	client_fatal(c, sqlstate, "%s", msg);
}

/* ---- a client whose server was lost (transaction pooling) ---- */

static void orphan_input(struct proxy_client *c);

static bool orphan_send(struct proxy_client *c, struct cmn_buf *b, int rc)
{
	bool ok = rc == PGW_OK && client_send(c, b);

	cmn_buf_reset(b);
	if (rc != PGW_OK && c->state != PROXY_CL_DEAD)
		client_close(c, "out of memory");
	return ok;
}

/*
 * The server running a client's transaction is gone (it died, or the leader
 * changed): the client keeps its connection. What it waits for is answered with
 * an error (08006: the outcome is unknown); inside a transaction block it is left
 * in a failed transaction, which the proxy plays until the client ends it, and
 * its next transaction runs on a server again (the new primary's, after a
 * failover).
 */
/* The rest of a message the lost server got only part of is never parsed. */
static void discard_partial(struct proxy_client *c)
{
	size_t k = c->fe.left < buf_used(&c->in) ? c->fe.left : buf_used(&c->in);

	c->fe.left -= k;
	if (k)
		buf_consume(&c->in, k);
}

static void client_lost_server(struct proxy_client *c, struct proxy_server *s, const char *why)
{
	struct cmn_buf b = {0};
	char msg[300];
	int units = 0, rc = PGW_OK;
	bool tail = false; /* answers owed after the last ReadyForQuery owed */
	char status;

	if (s->be.left && !s->be_drop) {
		/* Part of a message reached the client: nothing more can be said cleanly. */
		client_close(c, "server connection lost in the middle of a message");
		return;
	}
	extq_owed(&s->pq, &units, &tail);
	/* Inside a transaction block the client must roll back, unless what was lost
	 * was the command ending it (a failed COMMIT ends the transaction too). */
	status = c->txn == 'I' || (units && c->ending) ? 'I' : 'E';
	if (c->state == PROXY_CL_ACTIVE)
		client_set_state(c, PROXY_CL_IDLE);
	c->in_copy = false;
	snprintf(msg, sizeof(msg), "server connection lost (%s): %s", why,
		 units || tail ? "the outcome of the command in flight is unknown"
			       : "the transaction is rolled back");
	log_info("C-%llu: %s", (unsigned long long)c->id, msg);
	for (int u = 0; u < units && rc == PGW_OK; u++) {
		rc = pgp_put_error(&b, "ERROR", SQLSTATE_CONNECTION_FAILURE, msg, NULL);
		if (rc == PGW_OK)
			rc = pgp_put_ready(&b, status);
	}
	/* Extended-protocol messages not yet synced (a COPY IN by Execute included): an
	 * error now (unless the server already sent one), then nothing up to the Sync. */
	c->orphan_skip = tail || s->ext_open;
	if (c->orphan_skip && !s->pq.skipping && rc == PGW_OK)
		rc = pgp_put_error(&b, "ERROR", SQLSTATE_CONNECTION_FAILURE, msg, NULL);
	c->txn = status;
	c->orphan = status == 'E' || c->orphan_skip;
	c->orphan_untold = c->orphan && units == 0 && !c->orphan_skip;
	c->orphan_unnamed_end = c->orphan_portal_end = 0;
	if ((b.len || rc != PGW_OK) && !orphan_send(c, &b, rc)) {
		cmn_buf_free(&b);
		return;
	}
	cmn_buf_free(&b);
	/* What the client sent that the server never got is answered now; a request
	 * after the end of the failed transaction waits for a server (the pool's
	 * dispatch runs after this). */
	if (c->orphan && buf_used(&c->in))
		orphan_input(c);
	if (c->state == PROXY_CL_DEAD)
		return;
	if (!c->orphan)
		discard_partial(c);
	if (!c->orphan && c->state == PROXY_CL_IDLE && buf_used(&c->in) && !c->fe.left) {
		client_set_state(c, PROXY_CL_WAITING);
		c->wait_since_ms = cmn_now_ms();
		c->wait_since_us = cmn_now_us();
	}
}

/* A statement that ends a transaction block (answered "ROLLBACK" in a failed one):
 * END_ROLLBACK (ROLLBACK, ABORT) or END_COMMIT (COMMIT, END), else 0. */
enum { END_ROLLBACK = 1, END_COMMIT = 2 };

static int ends_transaction(const char *q, size_t n)
{
	static const char *const words[] = {"rollback", "abort", "commit", "end"};
	size_t i = 0, w;

	while (i < n && (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r'))
		i++;
	for (w = 0; w < 4; w++) {
		size_t l = strlen(words[w]);

		if (n - i >= l && strncasecmp(q + i, words[w], l) == 0 &&
		    (n - i == l || (!isalnum((unsigned char)q[i + l]) && q[i + l] != '_')))
			break;
	}
	if (w == 4)
		return 0;
	int kind = w < 2 ? END_ROLLBACK : END_COMMIT;

	i += strlen(words[w]);
	/* Only optional WORK / TRANSACTION, then spaces and semicolons. */
	while (i < n && q[i]) {
		if (isspace((unsigned char)q[i]) || q[i] == ';') {
			i++;
			continue;
		}
		if (n - i >= 4 && strncasecmp(q + i, "work", 4) == 0) {
			i += 4;
			continue;
		}
		if (n - i >= 11 && strncasecmp(q + i, "transaction", 11) == 0) {
			i += 11;
			continue;
		}
		return 0;
	}
	return kind;
}

/* The query text of a Bind / Describe target in the failed transaction. */
static int orphan_stmt_ends(struct proxy_client *c, const char *name)
{
	const struct extq_stmt *st;

	if (!name[0])
		return c->orphan_unnamed_end;
	st = extq_names_get(&c->stmts, name);
	return st ? ends_transaction((const char *)st->body,
				     strnlen((const char *)st->body, st->len))
		  : 0;
}

/* Answers the client's messages while it has no server (see client_lost_server). */
static void orphan_input(struct proxy_client *c)
{
	struct cmn_buf b = {0};
	static const char aborted[] =
	    "current transaction is aborted, commands ignored until end of transaction block";

	while (c->orphan && c->state != PROXY_CL_DEAD) {
		if (buf_used(&c->out) > BACKLOG_LIMIT) {
			/* It does not read its answers: stop reading until it does. */
			pause_reading(&c->io, &c->reading_paused, true);
			break;
		}
		const char *state = c->orphan_untold ? SQLSTATE_CONNECTION_FAILURE
						     : SQLSTATE_IN_FAILED_SQL_TRANSACTION;
		const char *text = c->orphan_untold ? "server connection lost while idle in a "
						      "transaction: the transaction is rolled back"
						    : aborted;
		const uint8_t *d = c->in.data + c->in.off;
		size_t n = buf_used(&c->in), total;
		int rc = PGW_OK;
		uint8_t type;

		if (c->fe.left) { /* the rest of a message the server never got */
			size_t k = c->fe.left < n ? c->fe.left : n;

			c->fe.left -= k;
			buf_consume(&c->in, k);
			if (c->fe.left)
				break;
			continue;
		}
		if (n < 5)
			break;
		type = d[0];
		total =
		    1 + (((size_t)d[1] << 24) | ((size_t)d[2] << 16) | ((size_t)d[3] << 8) | d[4]);
		if (total < 5 || (int64_t)total > P->cfg.max_packet_size) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid message length");
			break;
		}
		if (n < total) {
			if (type == PGP_FE_COPY_DATA) { /* skipped as it arrives */
				c->fe.left = total - n;
				buf_consume(&c->in, n);
			}
			break;
		}
		struct pgp_reader r;
		const char *s1 = NULL, *s2 = NULL;
		uint8_t kind = 0;
		int end;

		pgp_reader_init(&r, d + 5, total - 5);
		if (type == PGP_FE_TERMINATE) {
			client_close(c, NULL);
			break;
		}
		if (c->orphan_skip && type != PGP_FE_SYNC) {
			buf_consume(&c->in, total);
			continue;
		}
		switch (type) {
		case PGP_FE_SYNC:
			c->orphan_skip = false;
			rc = pgp_put_ready(&b, c->txn);
			break;
		case PGP_FE_QUERY:
			s1 = pgp_get_str(&r);
			end = s1 ? ends_transaction(s1, strlen(s1)) : 0;
			if (end == END_COMMIT && c->orphan_untold) {
				/* Never a quiet "ROLLBACK" for a COMMIT that did not see the loss.
				 */
				c->txn = 'I';
				rc = pgp_put_error(&b, "ERROR", state, text, NULL);
			} else if (end) {
				c->txn = 'I';
				rc = pgp_put_command_complete(&b, "ROLLBACK");
			} else {
				rc = pgp_put_error(&b, "ERROR", state, text, NULL);
			}
			if (rc == PGW_OK)
				rc = pgp_put_ready(&b, c->txn);
			break;
		case PGP_FE_PARSE:
			s1 = pgp_get_str(&r);
			s2 = pgp_get_str(&r);
			end = s1 && s2 ? ends_transaction(s2, strlen(s2)) : 0;
			if (end) {
				if (!s1[0])
					c->orphan_unnamed_end = (uint8_t)end;
				rc = extq_put_synth(&b, PGP_BE_PARSE_COMPLETE);
				break;
			}
			goto fail;
		case PGP_FE_BIND:
			s1 = pgp_get_str(&r);
			s2 = pgp_get_str(&r);
			end = s1 && s2 && !s1[0] ? orphan_stmt_ends(c, s2) : 0;
			if (end) {
				c->orphan_portal_end = (uint8_t)end;
				rc = extq_put_synth(&b, PGP_BE_BIND_COMPLETE);
				break;
			}
			goto fail;
		case PGP_FE_DESCRIBE:
			kind = pgp_get_u8(&r);
			s1 = pgp_get_str(&r);
			if (s1 && kind == 'S' && orphan_stmt_ends(c, s1)) {
				static const uint8_t none[7] = {'t', 0, 0, 0, 6, 0, 0};

				rc = cmn_buf_append(&b, none, sizeof(none));
				if (rc == PGW_OK)
					rc = extq_put_synth(&b, PGP_BE_NO_DATA);
				break;
			}
			if (s1 && kind == 'P' && !s1[0] && c->orphan_portal_end) {
				rc = extq_put_synth(&b, PGP_BE_NO_DATA);
				break;
			}
			goto fail;
		case PGP_FE_EXECUTE:
			s1 = pgp_get_str(&r);
			if (s1 && !s1[0] && c->orphan_portal_end) {
				c->txn = 'I';
				end = c->orphan_portal_end;
				c->orphan_portal_end = 0;
				if (end == END_COMMIT && c->orphan_untold) {
					rc = pgp_put_error(&b, "ERROR", state, text, NULL);
					c->orphan_skip = true;
				} else {
					rc = pgp_put_command_complete(&b, "ROLLBACK");
				}
				break;
			}
			goto fail;
		case PGP_FE_CLOSE:
			rc = extq_put_synth(&b, PGP_BE_CLOSE_COMPLETE);
			break;
		case PGP_FE_FLUSH:
		case PGP_FE_COPY_DATA:
		case PGP_FE_COPY_DONE:
		case PGP_FE_COPY_FAIL:
			break;
		case PGP_FE_FUNCTION_CALL:
			rc = pgp_put_error(&b, "ERROR", state, text, NULL);
			if (rc == PGW_OK)
				rc = pgp_put_ready(&b, c->txn);
			break;
		default:
		fail:
			rc = pgp_put_error(&b, "ERROR", state, text, NULL);
			c->orphan_skip = true;
			break;
		}
		log_debug("C-%llu: no server: '%c' %.40s answered by the proxy (transaction %c%s)",
			  (unsigned long long)c->id, type, type == PGP_FE_QUERY && s1 ? s1 : "",
			  c->txn, c->orphan_skip ? ", skipping" : "");
		buf_consume(&c->in, total);
		if (b.len && ((const uint8_t *)b.data)[0] == 'E')
			c->orphan_untold = false;
		if (!orphan_send(c, &b, rc))
			break;
		if (c->txn == 'I' && !c->orphan_skip)
			c->orphan = false; /* the next transaction gets a server again */
	}
	cmn_buf_free(&b);
}

static void server_close(struct proxy_server *s, const char *why)
{
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
		cmn_io_del(P->loop, &s->io);
		close(fd);
	}
	SSL_free(s->ssl);
	s->ssl = NULL;
	if (s->state == PROXY_SV_LOGIN)
		pool->next_connect_ms = cmn_now_ms() + SERVER_RETRY_MS;
	server_set_state(s, PROXY_SV_DEAD);
	pool->n_servers--;
	P->n_servers--;
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

static bool server_send(struct proxy_server *s, const struct cmn_buf *b)
{
	if (!b->data || !send_or_queue(&s->io, s->ssl, &s->out, (const uint8_t *)b->data, b->len)) {
		server_close(s, "server socket error");
		return false;
	}
	return true;
}

/* The client's half of the link has no more to say: the server goes back or closes. */

static void server_release(struct proxy_server *s)
{
	struct proxy_pool *pool = s->pool;
	struct proxy_client *c = s->client;

	/* Paused for a slow client: the next one must be heard. */
	pause_reading(&s->io, &s->reading_paused, false);
	if (c)
		pause_reading(&c->io, &c->reading_paused, false);
	if (c) {
		c->server = NULL;
		s->client = NULL;
		if (c->state == PROXY_CL_ACTIVE)
			client_set_state(c, PROXY_CL_IDLE);
		pool->stats.xact_count++;
		pool->stats.xact_time_us += (uint64_t)(cmn_now_us() - c->active_us);
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
	if (P->pause_waiters)
		pause_check();
}

/* A session ended on a healthy server: reset it, then it is idle again. */
static void server_reset(struct proxy_server *s)
{
	struct cmn_buf b = {0};

	if (s->generation != s->pool->generation || !P->cfg.server_reset_query[0]) {
		server_release(s);
		return;
	}
	pause_reading(&s->io, &s->reading_paused, false);
	server_set_state(s, PROXY_SV_RESET);
	/* A reset that keeps them (a custom server_reset_query) is not known: RESET next. */
	if (strcasestr(P->cfg.server_reset_query, "DISCARD ALL") ||
	    strcasestr(P->cfg.server_reset_query, "RESET ALL"))
		server_settings_set(s, NULL, NULL);
	if (pgp_put_query(&b, P->cfg.server_reset_query) == PGW_OK && server_send(s, &b))
		s->outstanding = 1;
	cmn_buf_free(&b);
}

/* ---- server login ---- */

static void server_login_done(struct proxy_server *s)
{
	struct proxy_pool *pool = s->pool;

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
	struct pgp_reader r;
	struct proxy_user *u = proxy_userlist_find(&P->users, s->pool->user);
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
	if ((code == PGP_AUTH_CLEARTEXT || code == PGP_AUTH_MD5) && !P->cfg.server_plain_auth) {
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

static void server_login_input(struct proxy_server *s)
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
				snprintf(s->pool->last_error, sizeof(s->pool->last_error),
					 "no password for user %s in the auth file to log in to "
					 "the server",
					 s->pool->user);
				server_close(s, s->pool->last_error);
				pool_fail_waiting(s->pool,
						  SQLSTATE_INVALID_AUTHORIZATION_SPECIFICATION,
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

			server_param_status(s, body, blen);
			if (blen == sizeof("in_hot_standby\0on") &&
			    memcmp(body, "in_hot_standby\0on", blen) == 0)
				s->in_recovery = true;
			if (!pool->welcome_ok) {
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

static void server_start_login(struct proxy_server *s)
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

/* ---- passing bytes through ---- */

static void pause_reading(struct cmn_io *io, bool *paused, bool pause)
{
	if (*paused == pause || io->fd < 0)
		return;
	*paused = pause;
	(void)cmn_io_set(P->loop, io, pause ? (io->events & ~EPOLLIN) : (io->events | EPOLLIN));
}

/* Forwards part of a server's stream to its client; false when the client is gone. */
static bool to_client(struct proxy_client *c, const uint8_t *d, size_t n)
{
	if (!c || !n)
		return true;
	c->pool->stats.bytes_sent += n;
	if (!send_or_queue(&c->io, c->ssl, &c->out, d, n)) {
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
		if (type == PGP_BE_PARAMETER_STATUS && len <= 8192 && n - i < 1 + (size_t)len)
			goto fragment;
		extq_backend(&s->pq, type, &v);
		if (s->pq.desync && !s->close_after) {
			log_warning("S-%llu: an answer matched no request: the connection closes "
				    "after this transaction",
				    (unsigned long long)s->id);
			s->close_after = true;
		}
		if (v.own_error)
			own_query_failed(s, n - i >= 1 + (size_t)len ? d + i + 5 : NULL, len - 4);
		switch (type) {
		case PGP_BE_READY:
			s->txn = (char)d[i + 5];
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
			if (len <= 8192)
				server_param_status(s, d + i + 5, len - 4);
			break; /* asynchronous: they do not start a new request */
		case PGP_BE_NOTICE:
		case PGP_BE_NOTIFICATION:
			break;
		default:
			release = false;
			break;
		}
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
	if (s->state == PROXY_SV_DEAD)
		return;
	if (c && buf_used(&c->out) > BACKLOG_LIMIT)
		pause_reading(&s->io, &s->reading_paused, true);
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

/* A client's startup settings ran on s (link_client): refused, its login fails;
 * accepted, it is welcomed and its requests go on. False when it is gone. */
static bool server_checked(struct proxy_server *s, struct proxy_client *c)
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
	pause_reading(&c->io, &c->reading_paused, false);
	if (buf_used(&c->in) && c->server == s) {
		client_forward(c);
		return false;
	}
	return true;
}

/* Reads a server socket (after login). */
static void server_read(struct proxy_server *s)
{
	/* TLS may hold decrypted bytes epoll cannot see: read it dry. */
	for (int rounds = 0; (rounds < 4 || s->ssl) && s->state != PROXY_SV_DEAD; rounds++) {
		ssize_t r = sock_recv(s->io.fd, s->ssl, P->scratch, P->scratch_size);

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
			if (buf_append(&s->in, P->scratch, (size_t)r) != PGW_OK) {
				server_close(s, "out of memory");
				return;
			}
			struct proxy_buf tmp = s->in;

			memset(&s->in, 0, sizeof(s->in));
			server_data(s, tmp.data + tmp.off, tmp.len - tmp.off);
			buf_free(&tmp);
		} else {
			server_data(s, P->scratch, (size_t)r);
		}
		if (s->reading_paused || (!s->ssl && (size_t)r < P->scratch_size))
			return;
	}
}

static bool flush_out(struct cmn_io *io, SSL *ssl, struct proxy_buf *out)
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
	(void)cmn_io_set(P->loop, io, io->events & ~EPOLLOUT);
	return true;
}

/* The server's side of TLS: the answer to SSLRequest, then the handshake. */
static void server_tls_step(struct proxy_server *s)
{
	const char *mode = P->cfg.server_tls_sslmode;
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
				server_close(s, s->pool->last_error);
				pool_fail_waiting(s->pool, SQLSTATE_CONNECTION_FAILURE,
						  s->pool->last_error);
				return;
			}
			s->tls_state = 0;
			server_start_login(s);
			return;
		}
		s->ssl = SSL_new(P->tls.server);
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
		(void)cmn_io_set(P->loop, &s->io, EPOLLIN);
		server_start_login(s);
		return;
	}
	int e = SSL_get_error(s->ssl, r);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		(void)cmn_io_set(P->loop, &s->io,
				 EPOLLIN | (e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0));
		return;
	}
	snprintf(s->pool->last_error, sizeof(s->pool->last_error),
		 "TLS handshake with %s:%d failed: %s", s->host, s->port, proxy_tls_error());
	server_close(s, s->pool->last_error);
	if (required)
		pool_fail_waiting(s->pool, SQLSTATE_CONNECTION_FAILURE, s->pool->last_error);
}

static void on_server(struct cmn_loop *l, struct cmn_io *io, uint32_t events)
{
	struct proxy_server *s = io->owner;

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
		(void)cmn_io_set(P->loop, io, EPOLLIN);
		if (P->tls.server) {
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
		if (!flush_out(io, s->ssl, &s->out)) {
			server_close(s, "server socket error");
			return;
		}
		if (!buf_used(&s->out) && s->client) {
			struct proxy_client *c = s->client;

			pause_reading(&c->io, &c->reading_paused, false);
			if (c->ssl && SSL_pending(c->ssl) > 0)
				on_client(P->loop, &c->io, EPOLLIN);
			if (s->state == PROXY_SV_DEAD)
				return;
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	if (s->state == PROXY_SV_LOGIN) {
		do {
			ssize_t r = sock_recv(io->fd, s->ssl, P->scratch, P->scratch_size);

			if (r <= 0) {
				if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
					return;
				snprintf(s->pool->last_error, sizeof(s->pool->last_error),
					 "the server at %s:%d closed the connection during login",
					 s->host, s->port);
				server_close(s, s->pool->last_error);
				return;
			}
			if (buf_append(&s->in, P->scratch, (size_t)r) != PGW_OK) {
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
static bool needs_whole(const struct proxy_server *s, int max_stmts, uint8_t type)
{
	if (!max_stmts)
		return false;
	switch (type) {
	case PGP_FE_PARSE:
	case PGP_FE_BIND:
	case PGP_FE_DESCRIBE:
	case PGP_FE_CLOSE:
		return true;
	case PGP_FE_QUERY:
		return s->pq.n_held > 0;
	default:
		return false;
	}
}

/*
 * Client -> server: forwards complete messages from c->in, counting requests
 * that expect a ReadyForQuery and keeping an answer slot for each; named
 * prepared statements are renamed (transaction pooling). Stops at a partial
 * message (kept), at Terminate (the client leaves), or when the server socket
 * backs up. A long message the proxy need not read passes as it arrives.
 */
static void client_forward(struct proxy_client *c)
{
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
	if (s->pq.reset_seen && (c->sets || s->sets) && c->txn == 'I' && s->outstanding == 0 &&
	    !s->ext_open && !c->in_copy && !c->fe.left && !server_sync_params(s, c))
		return;
	max_stmts = c->pool->transaction_mode ? P->cfg.max_prepared_statements : 0;
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
		size_t total = 1 + (size_t)len;
		bool verbatim = true;

		if (len < 4 || (int64_t)len + 1 > P->cfg.max_packet_size) {
			cmn_buf_free(&tx);
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "invalid message length %u (max_packet_size %lld)", len,
				     (long long)P->cfg.max_packet_size);
			return;
		}
		if (n - i >= total || !needs_whole(s, max_stmts, type)) {
			/* Whole, or passing as it arrives: the slot needs only the type. */
			static const uint8_t hdr_only[5] = {0, 0, 0, 0, 4};
			const uint8_t *m = d + i;
			uint8_t tmp[5];

			if (n - i < total) {
				memcpy(tmp, hdr_only, 5);
				tmp[0] = type;
				m = tmp;
			}
			if (type == PGP_FE_PARSE && c->stmts.count >= MAX_CLIENT_STATEMENTS) {
				cmn_buf_free(&tx);
				cmn_buf_free(&rep);
				client_fatal(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
					     "too many prepared statements (%d)",
					     MAX_CLIENT_STATEMENTS);
				return;
			}
			/* Statements are kept for the client's life: memory it could pin. */
			if (type == PGP_FE_PARSE && max_stmts &&
			    (int64_t)(c->stmts.bytes + total) >
				P->cfg.max_client_statement_memory) {
				cmn_buf_free(&tx);
				cmn_buf_free(&rep);
				client_fatal(
				    c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
				    "prepared statements of this client take more than %lld "
				    "bytes (max_client_statement_memory)",
				    (long long)P->cfg.max_client_statement_memory);
				return;
			}
			if (type == PGP_FE_PARSE && max_stmts &&
			    (int64_t)(extq_stmt_bytes() + total) > P->cfg.max_statement_memory) {
				cmn_buf_free(&tx);
				cmn_buf_free(&rep);
				client_fatal(c, SQLSTATE_OUT_OF_MEMORY,
					     "prepared statements take more than %lld bytes in the "
					     "proxy (max_statement_memory)",
					     (long long)P->cfg.max_statement_memory);
				return;
			}
			if (type == PGP_FE_SYNC && c->in_copy)
				; /* ignored by the server during COPY IN: no answer */
			else if (extq_client_message(&c->stmts, &s->pq, max_stmts, m,
						     n - i >= total ? total : 5, &rep,
						     &verbatim) != PGW_OK) {
				ok = false;
				break;
			}
		} else {
			break; /* wait for the rest */
		}
		switch (type) {
		case PGP_FE_TERMINATE:
			terminate = true;
			break;
		case PGP_FE_QUERY:
			s->outstanding++;
			c->pool->stats.query_count++;
			/* If the server is lost while it runs, is the transaction over anyway? */
			c->ending = c->txn != 'I' && n - i >= total &&
				    ends_transaction((const char *)d + i + 5, total - 5);
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
		if (terminate)
			break;
		if (!verbatim) {
			/* Replaced (or answered by the proxy): what came before goes first. */
			if (cmn_buf_append(&tx, d + run, i - run) != PGW_OK ||
			    cmn_buf_append(&tx, rep.data ? rep.data : "", rep.len) != PGW_OK) {
				ok = false;
				break;
			}
			cmn_buf_reset(&rep);
			i += total;
			run = i;
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
	if (i > 0) {
		const uint8_t *out = d;
		size_t out_len = i;

		if (tx.len || run > 0) {
			if (cmn_buf_append(&tx, d + run, i - run) != PGW_OK) {
				cmn_buf_free(&tx);
				client_fatal(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
				return;
			}
			out = (const uint8_t *)tx.data;
			out_len = tx.len;
		}
		c->pool->stats.bytes_received += i;
		bool sent = !out_len || send_or_queue(&s->io, s->ssl, &s->out, out, out_len);

		cmn_buf_free(&tx);
		/* Consumed either way: answered by the proxy if the server is lost now. */
		buf_consume(&c->in, i);
		if (!sent) {
			server_close(s, "server socket error");
			return;
		}
		if (buf_used(&s->out) > BACKLOG_LIMIT)
			pause_reading(&c->io, &c->reading_paused, true);
	}
	/* Answers the proxy made itself, due now if nothing is owed before them. */
	if (!s->be.left && extq_synth_due(&s->pq) && !emit_synth(s))
		return;
	if (terminate) {
		client_close(c, NULL);
		return;
	}
}

/* ---- linking ---- */

static void client_welcome(struct proxy_client *c)
{
	struct cmn_buf b = {0};
	struct proxy_pool *pool = c->pool;
	int rc = PGW_OK;

	/* The pool's ParameterStatus messages, with the client's own values. */
	for (size_t off = 0; rc == PGW_OK && off + 5 <= pool->welcome_len;) {
		const uint8_t *m = pool->welcome + off;
		size_t total =
		    1 + (((size_t)m[1] << 24) | ((size_t)m[2] << 16) | ((size_t)m[3] << 8) | m[4]);
		struct pgp_reader r;
		int k;

		if (total < 5 || off + total > pool->welcome_len)
			break;
		pgp_reader_init(&r, m + 5, total - 5);
		k = param_index(pgp_get_str(&r) ?: "");
		if (k >= 0 && c->params && c->params[k])
			rc = pgp_put_parameter_status(&b, proxy_param_names[k], c->params[k]);
		else
			rc = cmn_buf_append(&b, m, total);
		off += total;
	}
	if (rc == PGW_OK)
		rc = pgp_put_backend_key(&b, c->cancel_pid, c->cancel_key);
	if (rc == PGW_OK)
		rc = pgp_put_ready(&b, 'I');
	c->welcomed = true;
	if (rc == PGW_OK)
		(void)client_send(c, &b);
	else
		client_close(c, "out of memory");
	cmn_buf_free(&b);
}

/* One Query of the proxy's own on s (its answers are dropped). False when s is lost. */
static bool server_own_query(struct proxy_server *s, struct proxy_client *c, const char *sql)
{
	struct cmn_buf b = {0};
	bool ok;

	log_debug("S-%llu: for C-%llu: %s", (unsigned long long)s->id, (unsigned long long)c->id,
		  sql);
	if (pgp_put_query(&b, sql) != PGW_OK || extq_push_own_query(&s->pq) != PGW_OK) {
		server_close(s, "out of memory");
		ok = false;
	} else if ((ok = server_send(s, &b))) {
		s->outstanding++;
	}
	cmn_buf_free(&b);
	return ok;
}

/* Before a client's request runs on a server: SET what differs between the client's
 * session and the server's (the answers are dropped). The RESETs of another client's
 * startup settings go in a Query of their own, so that a refused SET (which undoes its
 * whole Query) cannot leave them in place. False when the server is lost. */
static bool server_sync_params(struct proxy_server *s, struct proxy_client *c)
{
	struct cmn_buf q = {0};
	bool ok = true;
	bool settings = !streq_null(c->sets, s->sets) || (s->pq.reset_seen && c->sets);

	s->pq.reset_seen = false;
	if (settings && s->resets && !server_own_query(s, c, s->resets))
		return false;
	if (settings && c->sets)
		(void)cmn_buf_printf(&q, "%s", c->sets);
	for (int k = 0; k < PROXY_N_PARAMS; k++) {
		const char *want = client_param(c, k);

		if (!want || !s->params[k] || strcmp(want, s->params[k]) == 0)
			continue;
		(void)cmn_buf_printf(&q, "SET %s TO E'", proxy_param_names[k]);
		append_literal(&q, want);
		(void)cmn_buf_printf(&q, "';");
	}
	if (q.len && !q.data) {
		server_close(s, "out of memory");
		ok = false;
	} else if (q.len) {
		ok = server_own_query(s, c, q.data);
	}
	/* Recorded as sent: a refused SET closes the server after this transaction. */
	if (ok && settings)
		server_settings_set(s, c->sets, c->resets);
	cmn_buf_free(&q);
	return ok;
}

static void link_client(struct proxy_client *c, struct proxy_server *s)
{
	struct proxy_pool *pool = c->pool;

	c->server = s;
	s->client = c;
	s->outstanding = 0;
	s->ext_open = false;
	s->syncs_since_execute = 0;
	s->copy_in = false;
	pause_reading(&s->io, &s->reading_paused, false);
	pause_reading(&c->io, &c->reading_paused, false);
	c->in_copy = false;
	c->fe.left = 0;
	s->be.left = 0;
	client_set_state(c, PROXY_CL_ACTIVE);
	server_set_state(s, PROXY_SV_ACTIVE);
	pool->stats.server_assignments++;
	c->active_us = cmn_now_us();
	if (c->wait_since_us)
		pool->stats.wait_time_us += (uint64_t)(c->active_us - c->wait_since_us);
	c->wait_since_ms = 0;
	c->wait_since_us = 0;
	if (!c->welcomed && !pool_settings_ok(pool, c->sets)) {
		if (streq_null(c->sets, s->sets)) {
			pool_settings_accepted(pool, c->sets);
		} else {
			/* Its settings first, on this server, before it is welcomed; its
			 * requests wait (server_checked). */
			c->checking = true;
			pause_reading(&c->io, &c->reading_paused, true);
			(void)server_sync_params(s, c);
			return;
		}
	}
	if (!c->welcomed)
		client_welcome(c);
	/* A session's parameters are set at once; a transaction's when it has a request. */
	if (c->state == PROXY_CL_ACTIVE && (buf_used(&c->in) || !pool->transaction_mode) &&
	    !server_sync_params(s, c))
		return;
	if (c->state == PROXY_CL_ACTIVE)
		client_forward(c);
	/* Linked only for the welcome: nothing to run yet. */
	if (c->state == PROXY_CL_ACTIVE && s->state == PROXY_SV_ACTIVE && pool->transaction_mode &&
	    !buf_used(&c->in) && s->outstanding == 0 && !c->fe.left && !s->ext_open)
		server_release(s);
}

/* Serves the pool's waiting clients with idle servers; opens servers when needed. */
static void pool_dispatch(struct proxy_pool *pool)
{
	struct proxy_client *c;
	struct proxy_server *s;
	int waiting = 0, connecting = 0;

	if (P->paused || pool->dispatching || (P->held && pool_to_primary(pool)))
		return;
	pool->dispatching = true;
	while ((c = TAILQ_FIRST(&pool->waiting))) {
		/* Transaction pooling: a client that only needs its welcome gets it. */
		if (!c->welcomed && pool->transaction_mode && pool->welcome_ok &&
		    !buf_used(&c->in) && pool_settings_ok(pool, c->sets)) {
			client_set_state(c, PROXY_CL_IDLE);
			client_welcome(c);
			continue;
		}
		s = TAILQ_FIRST(&pool->idle);
		while (s && s->generation != pool->generation) {
			server_close(s, "its target changed");
			s = TAILQ_FIRST(&pool->idle);
		}
		if (!s)
			break;
		link_client(c, s);
	}
	TAILQ_FOREACH(c, &pool->waiting, entry)
	waiting++;
	TAILQ_FOREACH(s, &pool->login, entry)
	connecting++;
	int limit = pool->pool_size;

	if (P->cfg.reserve_pool_size && (c = TAILQ_FIRST(&pool->waiting)) &&
	    cmn_now_ms() - c->wait_since_ms > 5000)
		limit += P->cfg.reserve_pool_size;
	/* After a failure, new connections wait (the tick calls again): no storm. */
	while (waiting > connecting && pool->n_servers < limit &&
	       cmn_now_ms() >= pool->next_connect_ms) {
		char host[256];
		int port;

		if (!pool_target(pool, host, sizeof(host), &port))
			break;
		server_connect(pool);
		connecting++;
	}
	pool->dispatching = false;
}

/* A logged-in client has bytes for a server. */
static void client_request(struct proxy_client *c)
{
	if (c->orphan) {
		orphan_input(c);
		if (c->orphan || c->state == PROXY_CL_DEAD || !buf_used(&c->in))
			return;
	}
	if (!c->server && c->fe.left) {
		discard_partial(c);
		if (c->fe.left || !buf_used(&c->in))
			return;
	}
	if (c->state == PROXY_CL_ACTIVE) {
		client_forward(c);
		return;
	}
	if (c->state == PROXY_CL_IDLE) {
		client_set_state(c, PROXY_CL_WAITING);
		c->wait_since_ms = cmn_now_ms();
		c->wait_since_us = cmn_now_us();
		pool_dispatch(c->pool);
	}
}

/* ---- clients ---- */

static void client_close(struct proxy_client *c, const char *why)
{
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

		cmn_io_del(P->loop, &c->io);
		close(fd);
	}
	SSL_free(c->ssl);
	c->ssl = NULL;
	client_set_state(c, PROXY_CL_DEAD);
	if (pool)
		pool_check_unused(pool);
	P->n_clients--;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c->scram);
	c->scram = NULL;
	extq_names_free(&c->stmts);
	if (c->pause_reply) {
		cmn_buf_free(c->pause_reply);
		free(c->pause_reply);
		c->pause_reply = NULL;
		P->pause_waiters--;
	}
	params_free(c->params);
	free(c->params);
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
	same += strcmp(c->addr, addr) == 0;
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
	P = p;
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
				p->accept_paused_until_ms = cmn_now_ms() + 1000;
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
		(void)set_nonblock_nodelay(fd);
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
static void cancel_request(uint32_t pid, uint32_t key)
{
	struct proxy_pool *pool;
	struct proxy_client *c;

	TAILQ_FOREACH(pool, &P->pools, entry)
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

/* Picks the replica for a new session on the replica port ("" = the primary). */
static bool pick_replica(char *member, size_t size)
{
	size_t ok[DCS_MAX_MEMBERS], n = 0;

	for (size_t i = 0; i < P->topo.n_members; i++)
		if (P->topo.members[i].replica_ok && !P->topo.members[i].is_leader)
			ok[n++] = i;
	if (n) {
		snprintf(member, size, "%s", P->topo.members[ok[P->replica_rr++ % n]].name);
		return true;
	}
	member[0] = '\0';
	return P->cfg.replica_fallback_primary;
}

/* The admin console's fixed welcome (PgBouncer's). */
static void admin_logged_in(struct proxy_client *c)
{
	static const char *const params[][2] = {
	    {"server_version", "15.0/pgwarden"},
	    {"client_encoding", "UTF8"},
	    {"server_encoding", "UTF8"},
	    {"DateStyle", "ISO"},
	    {"TimeZone", "GMT"},
	    {"standard_conforming_strings", "on"},
	    {"is_superuser", "on"},
	    {"integer_datetimes", "on"},
	};
	struct cmn_buf b = {0};
	int rc = pgp_put_auth(&b, PGP_AUTH_OK, NULL, 0);

	for (size_t i = 0; rc == PGW_OK && i < sizeof(params) / sizeof(params[0]); i++)
		rc = pgp_put_parameter_status(&b, params[i][0], params[i][1]);
	if (rc == PGW_OK)
		rc = pgp_put_backend_key(&b, 0, 0);
	if (rc == PGW_OK)
		rc = pgp_put_ready(&b, 'I');
	free(c->scram);
	c->scram = NULL;
	TAILQ_REMOVE(&P->login_clients, c, entry);
	c->state = PROXY_CL_IDLE;
	c->welcomed = true;
	TAILQ_INSERT_TAIL(&P->admin_clients, c, entry);
	if (rc == PGW_OK)
		(void)client_send(c, &b);
	else
		client_close(c, "out of memory");
	cmn_buf_free(&b);
}

/* Admin console input: simple queries only. */
static bool is_pause(const char *sql)
{
	while (isspace((unsigned char)*sql))
		sql++;
	if (strncasecmp(sql, "pause", 5) != 0)
		return false;
	for (sql += 5; *sql; sql++)
		if (!isspace((unsigned char)*sql) && *sql != ';')
			return false;
	return true;
}

static void admin_input(struct proxy_client *c);

/* Answers the PAUSEs waiting for the transactions in flight, once none is left (or
 * once RESUME came). */
static void pause_check(void)
{
	struct proxy_client *c, *tmp;

	if (!P->pause_waiters || (P->paused && proxy_active_servers(P) > 0))
		return;
	TAILQ_FOREACH_SAFE(c, &P->admin_clients, entry, tmp)
	{
		struct cmn_buf *reply = c->pause_reply;

		if (!reply)
			continue;
		c->pause_reply = NULL;
		P->pause_waiters--;
		(void)client_send(c, reply);
		cmn_buf_free(reply);
		free(reply);
		if (c->state != PROXY_CL_DEAD)
			admin_input(c);
	}
}

static void admin_input(struct proxy_client *c)
{
	if (c->pause_reply)
		return; /* its PAUSE has not answered yet */
	while (c->state != PROXY_CL_DEAD && buf_used(&c->in)) {
		const uint8_t *d = c->in.data + c->in.off;
		uint8_t type;
		size_t total;
		int rc = pgp_frame(d, buf_used(&c->in), 1 << 16, &type, &total);

		if (rc < 0) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "invalid message on the admin console");
			return;
		}
		if (rc == 0)
			return;
		if (type == PGP_FE_TERMINATE) {
			client_close(c, NULL);
			return;
		}
		if (type != PGP_FE_QUERY || d[total - 1] != '\0') {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "extended query protocol not supported by admin console");
			return;
		}
		struct cmn_buf out = {0};
		bool shutdown = false;
		char *sql = strndup((const char *)d + 5, total - 6);

		rc = sql ? proxy_admin_query(P, c, sql, &out, &shutdown) : PGW_ENOMEM;
		buf_consume(&c->in, total);
		if (rc == PGW_OK && P->paused && is_pause(sql) && out.len &&
		    out.data[0] == PGP_BE_COMMAND_COMPLETE && proxy_active_servers(P) > 0) {
			/* As PgBouncer's: PAUSE answers once the transactions in flight ended. */
			c->pause_reply = malloc(sizeof(*c->pause_reply));
			if (c->pause_reply) {
				*c->pause_reply = out;
				P->pause_waiters++;
				free(sql);
				return;
			}
		}
		free(sql);
		if (rc == PGW_OK)
			(void)client_send(c, &out);
		else
			client_close(c, "out of memory");
		cmn_buf_free(&out);
		if (shutdown) {
			log_info("SHUTDOWN from the admin console (%s)", c->user);
			cmn_loop_stop(P->loop);
			return;
		}
	}
}

/* Servers with work in flight (session servers stay active between transactions: only
 * work in flight counts), in every pool or in the primary's only. */
static int busy_servers(struct proxy *p, bool primary_only)
{
	struct proxy_pool *pool;
	struct proxy_server *s;
	int n = 0;

	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		if (primary_only && !pool_to_primary(pool))
			continue;
		TAILQ_FOREACH(s, &pool->active, entry)
		n += s->outstanding > 0 || s->txn != 'I' || s->copy_in || s->ext_open;
	}
	return n;
}

int proxy_active_servers(struct proxy *p)
{
	return busy_servers(p, false);
}

int proxy_primary_busy(struct proxy *p)
{
	return busy_servers(p, true);
}

void proxy_hold_primary(struct proxy *p, bool hold)
{
	struct proxy_pool *pool;

	P = p;
	if (p->held == hold)
		return;
	p->held = hold;
	if (!hold)
		TAILQ_FOREACH(pool, &p->pools, entry)
	pool_dispatch(pool);
}

void proxy_apply_pool_sizes(struct proxy *p)
{
	struct proxy_pool *pool;

	P = p;
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		pool->pool_size =
		    pool->transaction_mode ? p->cfg.default_pool_size : p->cfg.session_pool_size;
		pool_dispatch(pool);
	}
}

void proxy_pause(struct proxy *p, bool pause)
{
	struct proxy_pool *pool;

	P = p;
	if (p->paused == pause)
		return;
	p->paused = pause;
	log_info("%s", pause ? "PAUSE: no new server assignments" : "RESUME");
	pause_check();
	if (!pause)
		TAILQ_FOREACH(pool, &p->pools, entry)
	pool_dispatch(pool);
}

static void client_logged_in(struct proxy_client *c)
{
	struct cmn_buf b = {0};
	char member[DCS_NAME_MAX] = "";
	enum proxy_port port = c->port;

	if (c->state != PROXY_CL_LOGIN)
		return; /* closed on the way (a failed send) */
	if (c->admin) {
		admin_logged_in(c);
		return;
	}

	if (c->port == PROXY_PORT_REPLICA && !pick_replica(member, sizeof(member))) {
		client_fatal(c, SQLSTATE_CANNOT_CONNECT_NOW,
			     "no replica is available (healthy and within "
			     "max_replica_lag)");
		return;
	}
	if (c->port == PROXY_PORT_REPLICA && !member[0])
		port = PROXY_PORT_PRIMARY; /* fallback */
	bool full;

	c->pool = pool_get(port, c->database, c->user, member, &full);
	if (!c->pool && full) {
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "too many pools: %d database/user pools exist (max_pools); try again "
			     "once unused ones are freed (pool_idle_timeout)",
			     P->n_pools);
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
	TAILQ_REMOVE(&P->login_clients, c, entry);
	if (c->pool->transaction_mode && c->pool->welcome_ok &&
	    pool_settings_ok(c->pool, c->sets)) {
		c->state = PROXY_CL_IDLE;
		TAILQ_INSERT_TAIL(&c->pool->idle_clients, c, entry);
		client_welcome(c);
		return;
	}
	/* Session ports get their server now; a new pool first needs a server's welcome. */
	c->state = PROXY_CL_WAITING;
	c->wait_since_ms = cmn_now_ms();
	c->wait_since_us = cmn_now_us();
	TAILQ_INSERT_TAIL(&c->pool->waiting, c, entry);
	pool_dispatch(c->pool);
}

/* The password step of the client's login. */
static void client_password(struct proxy_client *c, const uint8_t *body, size_t len)
{
	struct proxy_user *u = proxy_userlist_find(&P->users, c->user);
	struct cmn_buf b = {0};
	char msg[PGP_SCRAM_MAX_MSG];

	if (!u)
		goto bad;
	if (c->auth_md5) {
		char want[36];

		if (!u->has_md5 || len < 1 || body[len - 1] != '\0')
			goto bad;
		pgp_md5_response(u->md5, c->md5_salt, want);
		if (strcmp((const char *)body, want) != 0)
			goto bad;
		client_logged_in(c);
		return;
	}
	if (c->auth_step == 1) { /* SASLInitialResponse */
		struct pgp_reader r;
		const char *mech;
		uint32_t dlen;
		const uint8_t *data;

		pgp_reader_init(&r, body, len);
		mech = pgp_get_str(&r);
		dlen = pgp_get_u32(&r);
		data = r.bad || dlen > PGP_SCRAM_MAX_MSG ? NULL : pgp_get_bytes(&r, dlen);
		if (!mech || strcmp(mech, PGP_SCRAM_MECHANISM) != 0 || !data) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "malformed SASL initial response");
			return;
		}
		c->scram = calloc(1, sizeof(*c->scram));
		if (!c->scram || pgp_scram_server_first(c->scram, &u->scram, (const char *)data,
							dlen, msg, sizeof(msg)) != PGW_OK)
			goto bad;
		if (pgp_put_auth(&b, PGP_AUTH_SASL_CONTINUE, msg, strlen(msg)) == PGW_OK)
			(void)client_send(c, &b);
		cmn_buf_free(&b);
		c->auth_step = 2;
		return;
	}
	if (c->auth_step == 2 && c->scram) {
		uint8_t key[PGP_SCRAM_KEY_LEN];
		int rc = pgp_scram_server_final(c->scram, (const char *)body, len, msg, sizeof(msg),
						key);

		if (rc != PGW_OK)
			goto bad;
		if (!u->password && !u->has_client_key) {
			memcpy(u->client_key, key, sizeof(key));
			u->has_client_key = true;
		}
		if (pgp_put_auth(&b, PGP_AUTH_SASL_FINAL, msg, strlen(msg)) != PGW_OK ||
		    !client_send(c, &b)) {
			cmn_buf_free(&b);
			return;
		}
		cmn_buf_free(&b);
		client_logged_in(c);
		return;
	}
bad:
	client_fatal(c, SQLSTATE_INVALID_PASSWORD, "password authentication failed for user \"%s\"",
		     c->user);
}

/* Asks the client for its password: SCRAM, or MD5 when that is all we know (or want). */
static void client_challenge(struct proxy_client *c)
{
	struct proxy_user *u = proxy_userlist_find(&P->users, c->user);
	struct cmn_buf b = {0};

	bool md5_allowed = strcasecmp(P->cfg.auth_type, "md5") == 0;

	c->auth_step = 1;
	if (u && !u->has_scram && !md5_allowed) {
		/* MD5 only where asked for: its hash is as good as the password to replay. */
		log_warning("user \"%s\" has only an MD5 secret and auth_type is %s: login refused "
			    "(give it a SCRAM secret, or set auth_type = md5)",
			    c->user, P->cfg.auth_type);
		client_fatal(c, SQLSTATE_INVALID_PASSWORD,
			     "password authentication failed for user \"%s\"", c->user);
		return;
	}
	c->auth_md5 = u && (!u->has_scram || (md5_allowed && u->has_md5));
	if (c->auth_md5) {
		if (pgp_random(c->md5_salt, sizeof(c->md5_salt)) == PGW_OK &&
		    pgp_put_auth(&b, PGP_AUTH_MD5, c->md5_salt, 4) == PGW_OK)
			(void)client_send(c, &b);
	} else if (pgp_put_auth_sasl(&b, PGP_SCRAM_MECHANISM) == PGW_OK) {
		(void)client_send(c, &b);
	}
	cmn_buf_free(&b);
}

/*
 * Users auth_query did not find, remembered AUTHQ_NEGATIVE_MS, and a bound on lookups
 * per second: made-up user names must not each open a connection to the primary.
 */
#define AUTHQ_NEGATIVE_MS     10000
#define AUTHQ_NEGATIVE_N      256
#define AUTHQ_LOOKUPS_PER_SEC 50

static struct {
	char user[64];
	int64_t until_ms;
} authq_missing[AUTHQ_NEGATIVE_N];
static unsigned authq_missing_next;

static bool authq_known_missing(const char *user)
{
	int64_t now = cmn_now_ms();

	for (size_t i = 0; i < AUTHQ_NEGATIVE_N; i++)
		if (authq_missing[i].until_ms > now && strcmp(authq_missing[i].user, user) == 0)
			return true;
	return false;
}

static void authq_remember_missing(const char *user)
{
	unsigned i = authq_missing_next++ % AUTHQ_NEGATIVE_N;

	snprintf(authq_missing[i].user, sizeof(authq_missing[i].user), "%s", user);
	authq_missing[i].until_ms = cmn_now_ms() + AUTHQ_NEGATIVE_MS;
}

/*
 * false once AUTHQ_LOOKUPS_PER_SEC lookups started this second for addr (per address:
 * one flooding host must not lock every auth_query user out).
 */
static bool authq_lookup_allowed(const char *addr)
{
	static struct {
		char addr[64];
		int64_t window_ms;
		int n;
	} seen[64];
	int64_t now = cmn_now_ms();
	size_t pick = 0;

	for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
		if (strcmp(seen[i].addr, addr) == 0) {
			pick = i;
			break;
		}
		if (seen[i].window_ms < seen[pick].window_ms)
			pick = i; /* the stalest slot, if addr has none */
	}
	if (strcmp(seen[pick].addr, addr) != 0 || now - seen[pick].window_ms >= 1000) {
		snprintf(seen[pick].addr, sizeof(seen[pick].addr), "%s", addr);
		seen[pick].window_ms = now;
		seen[pick].n = 0;
	}
	return seen[pick].n++ < AUTHQ_LOOKUPS_PER_SEC;
}

/* The user is not in the auth file: ask the primary (auth_user, auth_query). */
static void auth_query_start(struct proxy_client *c)
{
	struct proxy_user *au = proxy_userlist_find(&P->users, P->cfg.auth_user);

	if (authq_known_missing(c->user)) {
		client_fatal(c, SQLSTATE_INVALID_PASSWORD,
			     "password authentication failed for user \"%s\"", c->user);
		return;
	}

	if (!au || !au->password) {
		log_error("auth_user %s needs a plaintext password in the auth file",
			  P->cfg.auth_user);
		client_fatal(c, SQLSTATE_INVALID_PASSWORD,
			     "password authentication failed for user \"%s\"", c->user);
		return;
	}
	if (!P->routing_writes) {
		/* No primary yet (start-up, failover): wait for one, within the login timeout. */
		c->auth_step = 8;
		return;
	}
	if (!P->authq && proxy_authq_start(P->loop, &P->authq) != PGW_OK) {
		client_fatal(c, SQLSTATE_SYSTEM_ERROR, "cannot start the auth_query worker");
		return;
	}
	if (!authq_lookup_allowed(c->addr)) {
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "too many user lookups this second from %s (auth_query)", c->addr);
		return;
	}
	if (proxy_authq_request(P->authq, c->id, c->user,
				P->cfg.auth_dbname ? P->cfg.auth_dbname : c->database,
				P->leader_host, P->leader_port, au->name, au->password,
				P->cfg.auth_query) != PGW_OK) {
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "too many user lookups waiting for the primary (auth_query)");
		return;
	}
	c->auth_step = 9; /* waiting for the answer */
}

/* Clients that waited for a primary to ask. */
static void auth_query_retry(void)
{
	struct proxy_client *c, *tmp;

	if (!P->routing_writes)
		return;
	TAILQ_FOREACH_SAFE(c, &P->login_clients, entry, tmp)
	if (c->auth_step == 8)
		auth_query_start(c);
}

/* Answers of auth_query (loop thread, after a wake-up). */
static void auth_query_answers(void)
{
	struct proxy_authq_result r;

	while (P->authq && proxy_authq_take(P->authq, &r)) {
		struct proxy_client *c;

		TAILQ_FOREACH(c, &P->login_clients, entry)
		if (c->id == r.client_id)
			break;
		if (!c || c->auth_step != 9)
			continue; /* the client left meanwhile */
		if (r.error[0]) {
			log_warning("%s", r.error);
			client_fatal(c, SQLSTATE_CONNECTION_FAILURE,
				     "cannot look up user \"%s\": auth_query failed", c->user);
			continue;
		}
		if (!r.found) {
			log_info("auth_query: no user \"%s\" on the primary (remembered for %d s)",
				 r.user, AUTHQ_NEGATIVE_MS / 1000);
			authq_remember_missing(r.user);
		}
		if (!r.found || proxy_userlist_set(&P->users, r.user, r.secret) != PGW_OK) {
			client_fatal(c, SQLSTATE_INVALID_PASSWORD,
				     "password authentication failed for user \"%s\"", c->user);
			continue;
		}
		client_challenge(c);
	}
}

static void client_startup(struct proxy_client *c, const uint8_t *pkt, size_t len)
{
	struct pgp_startup st;
	struct cmn_buf b = {0};
	char err[256];

	if (pgp_parse_startup(pkt, len, &st, err, sizeof(err)) != PGW_OK) {
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "%s", err);
		return;
	}
	if (st.code == PGP_SSL_REQUEST || st.code == PGP_GSSENC_REQUEST) {
		bool tls = st.code == PGP_SSL_REQUEST && P->tls.client && !c->ssl;

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
			c->ssl = SSL_new(P->tls.client);
			if (!c->ssl || SSL_set_fd(c->ssl, c->io.fd) != 1) {
				client_close(c, "cannot start TLS");
				return;
			}
			SSL_set_accept_state(c->ssl);
			c->tls_handshake = true;
		}
		return;
	}
	if (st.code >> 16 == 3 && !c->ssl && strcmp(P->cfg.client_tls_sslmode, "require") == 0) {
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION_SPECIFICATION,
			     "SSL required (client_tls_sslmode require)");
		return;
	}
	if (st.code == PGP_CANCEL_REQUEST) {
		if (st.cancel_key_len == 4) {
			uint32_t key = ((uint32_t)st.cancel_key[0] << 24) |
				       ((uint32_t)st.cancel_key[1] << 16) |
				       ((uint32_t)st.cancel_key[2] << 8) | st.cancel_key[3];

			cancel_request(st.cancel_pid, key);
		}
		client_close(c, NULL);
		return;
	}
	if ((size_t)P->cfg.max_client_conn < P->n_clients) {
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "no more connections allowed (max_client_conn %d)",
			     P->cfg.max_client_conn);
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
		if (!cmn_name_in_list(P->cfg.admin_users, c->user) &&
		    !cmn_name_in_list(P->cfg.stats_users, c->user)) {
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
	if (strcasecmp(P->cfg.auth_type, "trust") == 0) {
		cmn_buf_free(&b);
		client_logged_in(c);
		return;
	}
	cmn_buf_free(&b);
	struct proxy_user *u = proxy_userlist_find(&P->users, c->user);

	/* Users learned from auth_query are asked again: their password may have changed. */
	if (!u || u->dynamic) {
		if (P->cfg.auth_user && *P->cfg.auth_user)
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
	while (c->state == PROXY_CL_LOGIN && buf_used(&c->in)) {
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

static void on_client(struct cmn_loop *l, struct cmn_io *io, uint32_t events)
{
	struct proxy_client *c = io->owner;

	(void)l;
	if (c->tls_handshake) {
		int r, e;

		ERR_clear_error();
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				(void)cmn_io_set(P->loop, io,
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
		(void)cmn_io_set(P->loop, io, EPOLLIN);
		events = EPOLLIN; /* the startup packet may already wait inside TLS */
	}
	if (events & EPOLLOUT) {
		if (!flush_out(io, c->ssl, &c->out)) {
			client_close(c, "client socket error");
			return;
		}
		if (!buf_used(&c->out) && c->orphan) {
			pause_reading(&c->io, &c->reading_paused, false);
			client_request(c);
			if (c->state == PROXY_CL_DEAD)
				return;
		}
		if (!buf_used(&c->out) && c->server) {
			struct proxy_server *s = c->server;

			pause_reading(&s->io, &s->reading_paused, false);
			if (s->ssl && SSL_pending(s->ssl) > 0)
				on_server(P->loop, &s->io, EPOLLIN);
			if (c->state == PROXY_CL_DEAD)
				return;
		}
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (int rounds = 0; (rounds < 4 || c->ssl) && c->state != PROXY_CL_DEAD; rounds++) {
		ssize_t r = sock_recv(io->fd, c->ssl, P->scratch, P->scratch_size);

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
		if (buf_append(&c->in, P->scratch, (size_t)r) != PGW_OK) {
			client_close(c, "out of memory");
			return;
		}
		if (c->state == PROXY_CL_LOGIN)
			client_login_input(c);
		else if (c->admin)
			admin_input(c);
		else
			client_request(c);
		/* Waiting for a server: stop reading once enough is queued. */
		if (c->state != PROXY_CL_DEAD && c->state != PROXY_CL_ACTIVE &&
		    buf_used(&c->in) > BACKLOG_LIMIT)
			pause_reading(&c->io, &c->reading_paused, true);
		if (c->reading_paused || (!c->ssl && (size_t)r < P->scratch_size))
			return;
	}
}

/* ---- periodic work, topology, shutdown ---- */

static void close_pool_servers(struct proxy_pool *pool, const char *why)
{
	struct proxy_server *s, *tmp;
	struct proxy_server_list *lists[] = {&pool->idle, &pool->login, &pool->active,
					     &pool->resetting};

	for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
		TAILQ_FOREACH_SAFE(s, lists[k], entry, tmp)
	server_close(s, why);
}

void proxy_topology_changed(struct proxy *p)
{
	struct proxy_pool *pool;
	int64_t now = cmn_now_ms();
	bool route;

	P = p;
	auth_query_answers();
	proxy_topology_get(p->topo_watch, &p->topo);
	/* Fail closed: without etcd, the last leader only while its lease may be valid. */
	route = p->topo.has_leader && now - p->topo.confirmed_ms <= p->cfg.ttl_ms;
	if (route == p->routing_writes &&
	    (!route || (strcmp(p->leader_host, p->topo.leader_host) == 0 &&
			p->leader_port == p->topo.leader_port)))
		goto replicas;
	if (route)
		log_info("routing writes to %s (%s:%d)", p->topo.leader, p->topo.leader_host,
			 p->topo.leader_port);
	else if (p->topo.has_leader)
		log_warning("etcd has not confirmed leader %s for %lld ms (more than ttl): no "
			    "writes routed until it answers",
			    p->topo.leader, (long long)(now - p->topo.confirmed_ms));
	else
		log_warning("no leader: writes wait");
	p->routing_writes = route;
	snprintf(p->leader_host, sizeof(p->leader_host), "%s", route ? p->topo.leader_host : "");
	p->leader_port = route ? p->topo.leader_port : 0;
	p->leader_generation++;
	p->leader_changes++;
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		if (pool->port == PROXY_PORT_REPLICA && pool->member[0])
			continue;
		pool->generation = p->leader_generation;
		/* Never a write to a member without the leader key: close them now. */
		close_pool_servers(pool, "the leader changed");
		pool->next_connect_ms = 0; /* not a failure: connect to the new one at once */
	}
replicas:
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		if (pool->port != PROXY_PORT_REPLICA || !pool->member[0])
			continue;
		bool still = false;

		for (size_t i = 0; i < p->topo.n_members; i++)
			if (strcmp(p->topo.members[i].name, pool->member) == 0 &&
			    !p->topo.members[i].is_leader)
				still = true;
		if (!still) {
			char why[160];

			pool->generation++;
			close_pool_servers(pool, "the member is no longer a replica");
			snprintf(why, sizeof(why), "%s is no longer a replica: connect again",
				 pool->member);
			pool_fail_waiting(pool, SQLSTATE_CANNOT_CONNECT_NOW, why);
		}
	}
	TAILQ_FOREACH(pool, &p->pools, entry)
	pool_dispatch(pool);
	auth_query_retry();
}

void proxy_tick(struct proxy *p)
{
	struct proxy_pool *pool;
	struct proxy_client *c, *ctmp;
	struct proxy_server *s, *stmp;
	int64_t now = cmn_now_ms();

	P = p;
	if (p->accept_paused_until_ms && now >= p->accept_paused_until_ms) {
		p->accept_paused_until_ms = 0;
		for (int i = 0; i < PROXY_PORT_COUNT; i++)
			if (p->listeners[i].fd >= 0)
				(void)cmn_io_set(p->loop, &p->listeners[i], EPOLLIN);
	}
	if (p->routing_writes && now - p->topo.confirmed_ms > p->cfg.ttl_ms)
		proxy_topology_changed(p);
	pause_check(); /* servers closed rather than released */
	struct proxy_cancel *k, *ktmp;

	TAILQ_FOREACH_SAFE(k, &p->cancels, entry, ktmp)
	{
		if (now - k->started_ms > CANCEL_TIMEOUT_MS)
			cancel_done(k);
	}
	TAILQ_FOREACH_SAFE(c, &p->login_clients, entry, ctmp)
	{
		if (p->cfg.client_login_timeout_ms &&
		    now - c->connect_ms > p->cfg.client_login_timeout_ms)
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "client_login_timeout");
		else if (p->cfg.client_startup_timeout_ms && !c->user[0] &&
			 now - c->connect_ms > p->cfg.client_startup_timeout_ms)
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "client_startup_timeout: no startup packet");
	}
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		TAILQ_FOREACH_SAFE(c, &pool->waiting, entry, ctmp)
		{
			if (p->cfg.query_wait_timeout_ms &&
			    now - c->wait_since_ms > p->cfg.query_wait_timeout_ms)
				client_fatal(
				    c, SQLSTATE_QUERY_CANCELED,
				    "query_wait_timeout: no server connection within %d ms%s%s",
				    p->cfg.query_wait_timeout_ms, pool->last_error[0] ? ": " : "",
				    pool->last_error);
		}
		TAILQ_FOREACH_SAFE(c, &pool->active_clients, entry, ctmp)
		{
			if (p->cfg.idle_transaction_timeout_ms && c->server &&
			    c->server->outstanding == 0 && c->txn != 'I' &&
			    now - c->last_io_ms > p->cfg.idle_transaction_timeout_ms)
				client_fatal(c, SQLSTATE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
					     "idle transaction timeout");
		}
		TAILQ_FOREACH_SAFE(s, &pool->login, entry, stmp)
		{
			if (now - s->connect_ms > p->cfg.server_connect_timeout_ms) {
				snprintf(pool->last_error, sizeof(pool->last_error),
					 "connecting to %s:%d timed out", s->host, s->port);
				server_close(s, pool->last_error);
			}
		}
		TAILQ_FOREACH_SAFE(s, &pool->idle, entry, stmp)
		{
			if (p->cfg.server_idle_timeout_ms &&
			    now - s->idle_since_ms > p->cfg.server_idle_timeout_ms)
				server_close(s, "server_idle_timeout");
		}
		pool_dispatch(pool);
		if (!pool_unused(pool))
			pool->empty_since_ms = 0;
		else if (!pool->empty_since_ms)
			pool->empty_since_ms = now;
		else if (p->cfg.pool_idle_timeout_ms &&
			 now - pool->empty_since_ms >= p->cfg.pool_idle_timeout_ms)
			pool_doom(pool);
	}
}

void proxy_free_dead(struct proxy *p)
{
	struct proxy_client *c;
	struct proxy_server *s;

	while ((c = TAILQ_FIRST(&p->dead_clients))) {
		TAILQ_REMOVE(&p->dead_clients, c, entry);
		free(c);
	}
	while ((s = TAILQ_FIRST(&p->dead_servers))) {
		TAILQ_REMOVE(&p->dead_servers, s, entry);
		free(s);
	}
	struct proxy_cancel *k;

	while ((k = TAILQ_FIRST(&p->dead_cancels))) {
		TAILQ_REMOVE(&p->dead_cancels, k, entry);
		free(k);
	}
}

void proxy_close_all(struct proxy *p)
{
	struct proxy_pool *pool;
	struct proxy_client *c, *tmp;

	P = p;
	TAILQ_FOREACH_SAFE(c, &p->login_clients, entry, tmp)
	client_fatal(c, SQLSTATE_ADMIN_SHUTDOWN, "the proxy is shutting down");
	TAILQ_FOREACH_SAFE(c, &p->admin_clients, entry, tmp)
	client_fatal(c, SQLSTATE_ADMIN_SHUTDOWN, "the proxy is shutting down");
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		struct proxy_client_list *lists[] = {&pool->idle_clients, &pool->waiting,
						     &pool->active_clients};

		for (size_t k = 0; k < 3; k++)
			TAILQ_FOREACH_SAFE(c, lists[k], entry, tmp)
		client_fatal(c, SQLSTATE_ADMIN_SHUTDOWN, "the proxy is shutting down");
		close_pool_servers(pool, "shutting down");
	}
	while (!TAILQ_EMPTY(&p->cancels))
		cancel_done(TAILQ_FIRST(&p->cancels));
	proxy_free_dead(p);
	proxy_authq_stop(p->authq);
	p->authq = NULL;
	while ((pool = TAILQ_FIRST(&p->pools)))
		pool_free(pool);
}

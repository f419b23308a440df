/*
 * Pools and routing: a pool per port, database and user, where its servers go
 * (the leader, or a healthy replica), linking a waiting client to a server, holding and
 * pausing, and the periodic work (topology changes, timeouts, shutdown).
 */
#include "proxy/conn.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "pgproto/sqlstate.h"
#include "proxy/admin.h"
#include "proxy/authq.h"
#include "proxy/defaults.h"
#include "proxy/stats.h"

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

/* No client and no server. */
static bool pool_unused(const struct proxy_pool *pool)
{
	return pool->n_servers == 0 && TAILQ_EMPTY(&pool->idle_clients) &&
	       TAILQ_EMPTY(&pool->waiting) && TAILQ_EMPTY(&pool->active_clients) &&
	       TAILQ_EMPTY(&pool->login) && TAILQ_EMPTY(&pool->idle) &&
	       TAILQ_EMPTY(&pool->active) && TAILQ_EMPTY(&pool->resetting) &&
	       TAILQ_EMPTY(&pool->warm);
}

static void pool_doom(struct proxy_pool *pool)
{
	struct proxy *px = pool->proxy;

	if (!pool->doomed) {
		pool->doomed = true;
		px->n_doomed++;
	}
}

/*
 * A pool whose server login never succeeded (a database or user PostgreSQL does not
 * know) goes with its last client and server: names made up by a client must not pile
 * up pools (they did: 30,000 of them, 160 MB).
 */
void pool_check_unused(struct proxy_pool *pool)
{
	if (!pool->welcome_ok && pool_unused(pool))
		pool_doom(pool);
}

static void pool_free(struct proxy_pool *pool)
{
	struct proxy *px = pool->proxy;

	TAILQ_REMOVE(&px->pools, pool, entry);
	px->n_pools--;
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
struct proxy_pool *pool_get(struct proxy *p, enum proxy_port port, const char *db, const char *user,
			    const char *member, bool *full)
{
	struct proxy_pool *pool;

	*full = false;
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		if (pool->port == port && strcmp(pool->database, db) == 0 &&
		    strcmp(pool->user, user) == 0 && strcmp(pool->member, member) == 0) {
			pool->doomed = false; /* in use again (n_doomed recounts at the sweep) */
			return pool;
		}
	}
	if (p->n_pools >= p->cfg.max_pools) {
		*full = true;
		return NULL;
	}
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->proxy = p;
	p->n_pools++;
	pool->port = port;
	snprintf(pool->database, sizeof(pool->database), "%s", db);
	snprintf(pool->user, sizeof(pool->user), "%s", user);
	snprintf(pool->member, sizeof(pool->member), "%s", member);
	pool->transaction_mode = port == PROXY_PORT_POOLED;
	pool->pool_size =
	    pool->transaction_mode ? p->cfg.default_pool_size : p->cfg.session_pool_size;
	pool->generation = port == PROXY_PORT_REPLICA ? 1 : p->leader_generation;
	TAILQ_INIT(&pool->idle_clients);
	TAILQ_INIT(&pool->waiting);
	TAILQ_INIT(&pool->active_clients);
	TAILQ_INIT(&pool->login);
	TAILQ_INIT(&pool->idle);
	TAILQ_INIT(&pool->active);
	TAILQ_INIT(&pool->resetting);
	TAILQ_INIT(&pool->warm);
	TAILQ_INSERT_TAIL(&p->pools, pool, entry);
	return pool;
}

/* The pool's servers go to the primary (held during a planned switchover). */
bool pool_to_primary(const struct proxy_pool *pool)
{
	return pool->port != PROXY_PORT_REPLICA || !pool->member[0];
}

/* Where a pool's servers go now (false: nowhere yet). */
bool pool_target(struct proxy_pool *pool, char *host, size_t size, int *port)
{
	struct proxy *px = pool->proxy;

	if (pool->port == PROXY_PORT_REPLICA && pool->member[0]) {
		for (size_t i = 0; i < px->topo.n_members; i++) {
			const struct proxy_member *m = &px->topo.members[i];

			if (strcmp(m->name, pool->member) == 0 && !m->is_leader && m->host[0]) {
				snprintf(host, size, "%s", m->host);
				*port = m->port;
				return true;
			}
		}
		return false;
	}
	if (!px->routing_writes)
		return false;
	snprintf(host, size, "%s", px->leader_host);
	*port = px->leader_port;
	return true;
}

/* Fails every client of the pool that waits for a server, with the server's error. */
void pool_fail_waiting(struct proxy_pool *pool, const char *sqlstate, const char *msg)
{
	struct proxy_client *c, *tmp;

	TAILQ_FOREACH_SAFE(c, &pool->waiting, entry, tmp)
	client_fatal(c, sqlstate, "%s", msg);
}

void client_welcome(struct proxy_client *c)
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
bool server_sync_params(struct proxy_server *s, struct proxy_client *c)
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

void link_client(struct proxy_client *c, struct proxy_server *s)
{
	struct proxy_pool *pool = c->pool;

	c->server = s;
	s->client = c;
	s->pq.watch_reset = c->startup != NULL;
	s->outstanding = 0;
	s->ext_open = false;
	s->syncs_since_execute = 0;
	s->copy_in = false;
	pause_reading(s->proxy->loop, &s->io, &s->reading_paused, false);
	pause_reading(c->proxy->loop, &c->io, &c->reading_paused, false);
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
			pause_reading(c->proxy->loop, &c->io, &c->reading_paused, true);
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
void pool_dispatch(struct proxy_pool *pool)
{
	struct proxy *px = pool->proxy;

	struct proxy_client *c;
	struct proxy_server *s;
	int waiting = 0, connecting = 0;

	if (px->paused || pool->dispatching || (px->held && pool_to_primary(pool)))
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

	if (px->cfg.reserve_pool_size && (c = TAILQ_FIRST(&pool->waiting)) &&
	    cmn_now_ms() - c->wait_since_ms > RESERVE_POOL_TIMEOUT_MS)
		limit += px->cfg.reserve_pool_size;
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
void client_request(struct proxy_client *c)
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

/* A replica (or the fallback primary) would be picked now; nothing changes. */
bool replica_available(const struct proxy *p)
{
	for (size_t i = 0; i < p->topo.n_members; i++)
		if (p->topo.members[i].replica_ok && !p->topo.members[i].is_leader)
			return true;
	return p->cfg.replica_fallback_primary;
}

/* Picks the replica for a new session on the replica port ("" = the primary). */
bool pick_replica(struct proxy *p, char *member, size_t size)
{
	size_t ok[DCS_MAX_MEMBERS], n = 0;

	for (size_t i = 0; i < p->topo.n_members; i++)
		if (p->topo.members[i].replica_ok && !p->topo.members[i].is_leader)
			ok[n++] = i;
	if (n) {
		snprintf(member, size, "%s", p->topo.members[ok[p->replica_rr++ % n]].name);
		return true;
	}
	member[0] = '\0';
	return p->cfg.replica_fallback_primary;
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

	if (p->paused == pause)
		return;
	p->paused = pause;
	log_info("%s", pause ? "PAUSE: no new server assignments" : "RESUME");
	pause_check(p);
	if (!pause)
		TAILQ_FOREACH(pool, &p->pools, entry)
	pool_dispatch(pool);
}

/* Closes the pool's servers; keep_warm: not those kept for a switchover's candidate. */
static void close_pool_servers(struct proxy_pool *pool, const char *why, bool keep_warm)
{
	struct proxy_server *s, *tmp;
	struct proxy_server_list *lists[] = {&pool->idle, &pool->login, &pool->active,
					     &pool->resetting, &pool->warm};

	for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
		TAILQ_FOREACH_SAFE(s, lists[k], entry, tmp)
	if (!(keep_warm && s->warm))
		server_close(s, why);
}

void proxy_warm_candidate(struct proxy *p, const char *host, int port)
{
	struct proxy_pool *pool;
	int opened = 0;

	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		const struct proxy_server *s;
		int want = 0, have = 0;

		if (!pool->transaction_mode || !pool_to_primary(pool) || !pool->welcome_ok)
			continue;
		TAILQ_FOREACH(s, &pool->active, entry)
		want++;
		TAILQ_FOREACH(s, &pool->idle, entry)
		want++;
		TAILQ_FOREACH(s, &pool->login, entry)
		have += s->warm;
		TAILQ_FOREACH(s, &pool->warm, entry)
		have++;
		if (want > pool->pool_size)
			want = pool->pool_size;
		for (; have < want; have++, opened++)
			server_connect_to(pool, host, port, true);
	}
	if (opened)
		log_info("switchover: %d server connection(s) to %s:%d opened ahead of its "
			 "promotion",
			 opened, host, port);
}

void proxy_adopt_warm(struct proxy *p, const char *host, int port)
{
	struct proxy_pool *pool;
	int adopted = 0, closed = 0;

	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		struct proxy_server *s, *tmp;
		struct proxy_server_list *lists[] = {&pool->warm, &pool->login};

		for (size_t k = 0; k < 2; k++)
			TAILQ_FOREACH_SAFE(s, lists[k], entry, tmp)
			{
				if (!s->warm)
					continue;
				if (!host || strcmp(s->host, host) != 0 || s->port != port) {
					server_close(s, "the switchover went elsewhere");
					closed++;
					continue;
				}
				if (s->state != PROXY_SV_WARM) {
					/* Still logging in: its startup saw a standby. */
					server_close(s, "not logged in before the promotion");
					closed++;
					continue;
				}
				/* The pool's own from now on: a session that began on the standby
				 * runs read-write transactions once the promotion is over. */
				s->warm = false;
				s->generation = pool->generation;
				s->in_recovery = false;
				server_set_state(s, PROXY_SV_IDLE);
				s->idle_since_ms = cmn_now_ms();
				adopted++;
			}
	}
	if (adopted || closed)
		log_info("switchover: %d server connection(s) opened ahead taken into the pools, "
			 "%d closed",
			 adopted, closed);
}

void proxy_topology_changed(struct proxy *p)
{
	struct proxy_pool *pool;
	struct proxy_client *c, *ctmp;
	int64_t now = cmn_now_ms();
	bool route;

	auth_query_answers(p);
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
	if (route) {
		if (p->last_leader[0] && strcmp(p->last_leader, p->topo.leader) != 0)
			p->leader_switches++;
		snprintf(p->last_leader, sizeof(p->last_leader), "%s", p->topo.leader);
	}
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
		close_pool_servers(pool, "the leader changed", true);
		pool->next_connect_ms = 0; /* not a failure: connect to the new one at once */
	}
replicas:
	TAILQ_FOREACH_SAFE(c, &p->login_clients, entry, ctmp)
	if (c->replica_wait_ms)
		client_replica_wait(c, now);
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
			close_pool_servers(pool, "the member is no longer a replica", false);
			snprintf(why, sizeof(why), "%s is no longer a replica: connect again",
				 pool->member);
			pool_fail_waiting(pool, SQLSTATE_CANNOT_CONNECT_NOW, why);
		}
	}
	TAILQ_FOREACH(pool, &p->pools, entry)
	pool_dispatch(pool);
	auth_query_retry(p);
}

void proxy_tick(struct proxy *p)
{
	struct proxy_pool *pool;
	struct proxy_client *c, *ctmp;
	struct proxy_server *s, *stmp;
	int64_t now = cmn_now_ms();

	if (p->accept_paused_until_ms && now >= p->accept_paused_until_ms) {
		p->accept_paused_until_ms = 0;
		for (int i = 0; i < PROXY_PORT_COUNT; i++)
			if (p->listeners[i].fd >= 0)
				(void)cmn_io_set(p->loop, &p->listeners[i], EPOLLIN);
	}
	if (p->routing_writes && now - p->topo.confirmed_ms > p->cfg.ttl_ms)
		proxy_topology_changed(p);
	if (rings_due(&p->rings, now)) {
		int waiting = 0;

		TAILQ_FOREACH(pool, &p->pools, entry)
		waiting += proxy_count_clients(&pool->waiting);
		(void)rings_tick(&p->rings, now, cmn_wall_ms(), waiting, p->leader_switches);
	}
	pause_check(p); /* servers closed rather than released */
	struct proxy_cancel *k, *ktmp;

	TAILQ_FOREACH_SAFE(k, &p->cancels, entry, ktmp)
	{
		if (now - k->started_ms > CANCEL_TIMEOUT_MS)
			cancel_done(k);
	}
	TAILQ_FOREACH_SAFE(c, &p->login_clients, entry, ctmp)
	{
		if (c->replica_wait_ms)
			client_replica_wait(c, now); /* logged in: query_wait_timeout bounds it */
		else if (p->cfg.client_login_timeout_ms &&
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
			if (now - s->connect_ms <= p->cfg.server_connect_timeout_ms)
				continue;
			if (s->warm) { /* ahead of a promotion: not the pool's error */
				server_close(s, "connecting ahead of a promotion timed out");
				continue;
			}
			snprintf(pool->last_error, sizeof(pool->last_error),
				 "connecting to %s:%d timed out", s->host, s->port);
			server_close(s, pool->last_error);
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
		close_pool_servers(pool, "shutting down", false);
	}
	while (!TAILQ_EMPTY(&p->cancels))
		cancel_done(TAILQ_FIRST(&p->cancels));
	proxy_free_dead(p);
	proxy_authq_stop(p->authq);
	p->authq = NULL;
	while ((pool = TAILQ_FIRST(&p->pools)))
		pool_free(pool);
}

/*
 * The admin console: database "pgbouncer" (or "pgwarden") on the pooled port,
 * for admin_users (everything) and stats_users (SHOW only). PgBouncer's commands
 * and column names, so its exporters and dashboards work unchanged.
 */
#include "proxy/admin.h"
#include "proxy/stats.h"
#include "pgproto/sqlstate.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define OID_TEXT 25
#define OID_INT8 20
#define MAX_COLS 32

/* One result set: columns, then rows of text values. */
struct result {
	struct cmn_buf *out;
	size_t n;
	int rows;
	int rc;
};

/* spec: one letter per column, 's' text or 'i' int8; names: at least strlen(spec). */
static void cols_list(struct result *r, const char *spec, const char *const *names)
{
	uint32_t oids[MAX_COLS];

	r->n = strlen(spec);
	for (size_t i = 0; i < r->n && i < MAX_COLS; i++)
		oids[i] = spec[i] == 'i' ? OID_INT8 : OID_TEXT;
	if (r->rc == PGW_OK)
		r->rc = pgp_put_row_description(r->out, r->n, names, oids);
}

/* The same with the names as varargs. */
static void cols(struct result *r, const char *spec, ...)
{
	const char *names[MAX_COLS];
	va_list ap;

	va_start(ap, spec);
	for (size_t i = 0; i < strlen(spec) && i < MAX_COLS; i++)
		names[i] = va_arg(ap, const char *);
	va_end(ap);
	cols_list(r, spec, names);
}

/* A row: n values, each a string or NULL; format with row_printf-like helpers below. */
static void row(struct result *r, const char *const *values)
{
	if (r->rc == PGW_OK)
		r->rc = pgp_put_data_row(r->out, r->n, values);
	r->rows++;
}

static void finish(struct result *r, const char *tag)
{
	char t[64];

	if (strcmp(tag, "SHOW") == 0)
		snprintf(t, sizeof(t), "SHOW");
	else
		snprintf(t, sizeof(t), "%s", tag);
	if (r->rc == PGW_OK)
		r->rc = pgp_put_command_complete(r->out, t);
}

static const char *num(char *buf, size_t size, uint64_t v)
{
	snprintf(buf, size, "%" PRIu64, v);
	return buf;
}

static void pool_db_name(const struct proxy_pool *pool, char *out, size_t size)
{
	/* Pools of the session ports show as db@primary / db@member. */
	if (pool->port == PROXY_PORT_POOLED)
		snprintf(out, size, "%s", pool->database);
	else if (pool->port == PROXY_PORT_PRIMARY)
		snprintf(out, size, "%s@primary", pool->database);
	else
		snprintf(out, size, "%s@%s", pool->database, pool->member);
}

/* Clients of a pool: linked, idle and waiting. */
static int pool_clients(const struct proxy_pool *pool)
{
	return proxy_count_clients(&pool->active_clients) +
	       proxy_count_clients(&pool->idle_clients) + proxy_count_clients(&pool->waiting);
}

static void show_pools(struct proxy *p, struct result *r)
{
	struct proxy_view view;

	cols(r, "ssiiiiiiiiiiiiiss", "database", "user", "cl_active", "cl_waiting",
	     "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active", "sv_active_cancel",
	     "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait",
	     "maxwait_us", "pool_mode", "load_balance_hosts");
	if (proxy_view_build(&view, p) != PGW_OK) {
		r->rc = PGW_ENOMEM;
		return;
	}
	for (size_t i = 0; i < view.n_rows; i++) {
		const struct proxy_pool_row *pr = &view.rows[i];
		char v[17][32], db[140];
		const char *vals[17];

		pool_db_name(pr->pool, db, sizeof(db));
		vals[0] = db;
		vals[1] = pr->pool->user;
		vals[2] = num(v[2], 32, (uint64_t)(pr->cl_active + pr->cl_idle));
		vals[3] = num(v[3], 32, (uint64_t)pr->cl_waiting);
		vals[4] = vals[5] = "0";
		vals[6] = num(v[6], 32, (uint64_t)pr->sv_active);
		vals[7] = vals[8] = "0";
		vals[9] = num(v[9], 32, (uint64_t)pr->sv_idle);
		vals[10] = num(v[10], 32, (uint64_t)pr->sv_used);
		vals[11] = "0";
		vals[12] = num(v[12], 32, (uint64_t)pr->sv_login);
		vals[13] = num(v[13], 32, (uint64_t)(pr->maxwait_ms / 1000));
		vals[14] = num(v[14], 32, (uint64_t)(pr->maxwait_ms % 1000) * 1000);
		vals[15] = pr->pool->transaction_mode ? "transaction" : "session";
		vals[16] = NULL;
		row(r, vals);
	}
	proxy_view_free(&view);
	finish(r, "SHOW");
}

/* Per database: the sum of its pools. */
static void show_stats(struct proxy *p, struct result *r, bool totals, bool averages)
{
	struct proxy_pool *pool;
	double secs = (double)(cmn_now_ms() - p->started_ms) / 1000.0;

	if (secs < 1)
		secs = 1;
	if (totals && averages)
		cols(r,
		     "s"
		     "iiiiiiiiiiii"
		     "iiiiiiiiiiii",
		     "database", "total_server_assignment_count", "total_xact_count",
		     "total_query_count", "total_received", "total_sent", "total_xact_time",
		     "total_query_time", "total_wait_time", "total_client_parse_count",
		     "total_server_parse_count", "total_bind_count", "total_client_login_count",
		     "avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv",
		     "avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time",
		     "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count",
		     "avg_client_login_count");
	else if (totals)
		cols(r, "siiiiiiiiiiii", "database", "server_assignment_count", "xact_count",
		     "query_count", "bytes_received", "bytes_sent", "xact_time", "query_time",
		     "wait_time", "client_parse_count", "server_parse_count", "bind_count",
		     "client_login_count");
	else
		cols(r, "siiiiiiiiiiii", "database", "server_assignment_count", "xact_count",
		     "query_count", "bytes_received", "bytes_sent", "xact_time", "query_time",
		     "wait_time", "client_parse_count", "server_parse_count", "bind_count",
		     "client_login_count");
	/* Databases in the order their first pool appeared. */
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		struct proxy_pool *q;
		struct proxy_stats s = {0};
		bool first = true;
		char db[140], other[140];

		pool_db_name(pool, db, sizeof(db));
		TAILQ_FOREACH(q, &p->pools, entry)
		{
			pool_db_name(q, other, sizeof(other));
			if (strcmp(db, other) != 0)
				continue;
			if (q != pool && first) {
				first = q == pool;
				break;
			}
			s.server_assignments += q->stats.server_assignments;
			s.xact_count += q->stats.xact_count;
			s.query_count += q->stats.query_count;
			s.bytes_received += q->stats.bytes_received;
			s.bytes_sent += q->stats.bytes_sent;
			s.xact_time_us += q->stats.xact_time_us;
			s.query_time_us += q->stats.query_time_us;
			s.wait_time_us += q->stats.wait_time_us;
			s.client_logins += q->stats.client_logins;
		}
		if (!first)
			continue; /* an earlier pool of the same database printed it */
		uint64_t tot[12] = {s.server_assignments,
				    s.xact_count,
				    s.query_count,
				    s.bytes_received,
				    s.bytes_sent,
				    s.xact_time_us,
				    s.query_time_us,
				    s.wait_time_us,
				    0,
				    0,
				    0,
				    s.client_logins};
		char v[25][32];
		const char *vals[25];
		size_t k = 0;

		vals[k++] = db;
		if (totals)
			for (int i = 0; i < 12; i++, k++)
				vals[k] = num(v[k], 32, tot[i]);
		if (averages || !totals) {
			for (int i = 0; i < 12; i++, k++) {
				uint64_t avg = (uint64_t)((double)tot[i] / secs);

				/* avg times are per transaction / query, as PgBouncer's */
				if (i == 5)
					avg = s.xact_count ? s.xact_time_us / s.xact_count : 0;
				if (i == 6)
					avg = s.query_count ? s.query_time_us / s.query_count : 0;
				if (i == 7)
					avg = s.xact_count ? s.wait_time_us / s.xact_count : 0;
				vals[k] = num(v[k], 32, avg);
			}
		}
		row(r, vals);
	}
	finish(r, "SHOW");
}

static void fmt_time(int64_t wall_ms, char *out, size_t size)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/*
 * SHOW SOCKETS' seven columns after SHOW CLIENTS' ones, from a connection's buffers:
 * what was received (recv_pos) and parsed (pkt_pos) of its input, what waits to be sent.
 */
#define SOCKET_COLS 7
static void socket_cols(char v[][64], const char **vals, const struct proxy_buf *in,
			const struct proxy_buf *out)
{
	vals[0] = num(v[0], 64, in->len);
	vals[1] = num(v[1], 64, in->off);
	vals[2] = "0";
	vals[3] = num(v[3], 64, out->off);
	vals[4] = num(v[4], 64, out->len - out->off);
	vals[5] = num(v[5], 64, in->len - in->off);
	vals[6] = vals[4];
}

static void client_row(struct proxy *p, struct result *r, const struct proxy_client *c,
		       const char *state, bool sockets)
{
	char v[21 + SOCKET_COLS][64], db[140] = "", ct[40], rt[40];
	const char *vals[21 + SOCKET_COLS];
	int64_t now = cmn_now_ms(), wall = cmn_wall_ms();

	if (c->pool)
		pool_db_name(c->pool, db, sizeof(db));
	else
		snprintf(db, sizeof(db), "%s", c->database);
	fmt_time(wall - (now - c->connect_ms), ct, sizeof(ct));
	fmt_time(wall - (now - (c->last_io_ms ? c->last_io_ms : c->connect_ms)), rt, sizeof(rt));
	int64_t wait = c->state == PROXY_CL_WAITING ? now - c->wait_since_ms : 0;

	vals[0] = "C";
	vals[1] = c->user;
	vals[2] = db;
	vals[3] = "no";
	vals[4] = state;
	vals[5] = c->addr;
	vals[6] = "0";
	vals[7] = p->cfg.listen_host;
	vals[8] = num(v[8], 64, 0);
	vals[9] = ct;
	vals[10] = rt;
	vals[11] = num(v[11], 64, (uint64_t)(wait / 1000));
	vals[12] = num(v[12], 64, (uint64_t)(wait % 1000) * 1000);
	vals[13] = "0";
	snprintf(v[14], 64, "0x%llx", (unsigned long long)c->id);
	vals[14] = v[14];
	if (c->server) {
		snprintf(v[15], 64, "0x%llx", (unsigned long long)c->server->id);
		vals[15] = v[15];
	} else {
		vals[15] = "";
	}
	vals[16] = "0";
	vals[17] = "";
	vals[18] = c->app_name;
	vals[19] = "0";
	vals[20] = num(v[20], 64, c->id);
	if (sockets)
		socket_cols(v + 21, vals + 21, &c->in, &c->out);
	row(r, vals);
}

static void client_cols(struct result *r, bool sockets)
{
	static const char *const names[] = {
	    "type",	    "user",	  "database",	"replication",	    "state",
	    "addr",	    "port",	  "local_addr", "local_port",	    "connect_time",
	    "request_time", "wait",	  "wait_us",	"close_needed",	    "ptr",
	    "link",	    "remote_pid", "tls",	"application_name", "prepared_statements",
	    "id",	    "recv_pos",	  "pkt_pos",	"pkt_remain",	    "send_pos",
	    "send_remain",  "pkt_avail",  "send_avail"};

	cols_list(r, sockets ? "ssssssisissiiississiiiiiiiii" : "ssssssisissiiississii", names);
}

/* The clients' rows (SHOW CLIENTS; with the buffers, SHOW SOCKETS; only those with a
 * server linked, SHOW ACTIVE_SOCKETS). */
static void clients_rows(struct proxy *p, struct result *r, bool sockets, bool only_active)
{
	struct proxy_pool *pool;
	const struct proxy_client *c;

	if (!only_active) {
		TAILQ_FOREACH(c, &p->login_clients, entry)
		client_row(p, r, c, "login", sockets);
	}
	TAILQ_FOREACH(c, &p->admin_clients, entry)
	client_row(p, r, c, "active", sockets);
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		TAILQ_FOREACH(c, &pool->active_clients, entry)
		client_row(p, r, c, "active", sockets);
		if (only_active)
			continue;
		TAILQ_FOREACH(c, &pool->idle_clients, entry)
		client_row(p, r, c, "active", sockets);
		TAILQ_FOREACH(c, &pool->waiting, entry)
		client_row(p, r, c, "waiting", sockets);
	}
}

static void show_clients(struct proxy *p, struct result *r)
{
	client_cols(r, false);
	clients_rows(p, r, false, false);
	finish(r, "SHOW");
}

static void server_row(struct result *r, const struct proxy_server *s, const char *state,
		       bool sockets)
{
	char v[21 + SOCKET_COLS][64], db[140], ct[40], rt[40];
	const char *vals[21 + SOCKET_COLS];
	int64_t now = cmn_now_ms(), wall = cmn_wall_ms();

	pool_db_name(s->pool, db, sizeof(db));
	fmt_time(wall - (now - s->connect_ms), ct, sizeof(ct));
	fmt_time(wall - (now - (s->idle_since_ms ? s->idle_since_ms : s->connect_ms)), rt,
		 sizeof(rt));
	vals[0] = "S";
	vals[1] = s->pool->user;
	vals[2] = db;
	vals[3] = "no";
	vals[4] = state;
	vals[5] = s->host;
	vals[6] = num(v[6], 64, (uint64_t)s->port);
	vals[7] = "";
	vals[8] = "0";
	vals[9] = ct;
	vals[10] = rt;
	vals[11] = vals[12] = vals[13] = "0";
	snprintf(v[14], 64, "0x%llx", (unsigned long long)s->id);
	vals[14] = v[14];
	if (s->client) {
		snprintf(v[15], 64, "0x%llx", (unsigned long long)s->client->id);
		vals[15] = v[15];
	} else {
		vals[15] = "";
	}
	vals[16] = num(v[16], 64, s->be_pid);
	vals[17] = "";
	vals[18] = "pgwarden";
	vals[19] = "0";
	vals[20] = num(v[20], 64, s->id);
	if (sockets)
		socket_cols(v + 21, vals + 21, &s->in, &s->out);
	row(r, vals);
}

static void servers_rows(struct proxy *p, struct result *r, bool sockets, bool only_active)
{
	struct proxy_pool *pool;
	const struct proxy_server *s;

	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		TAILQ_FOREACH(s, &pool->active, entry)
		server_row(r, s, "active", sockets);
		if (only_active)
			continue;
		TAILQ_FOREACH(s, &pool->idle, entry)
		server_row(r, s, "idle", sockets);
		TAILQ_FOREACH(s, &pool->resetting, entry)
		server_row(r, s, "used", sockets);
		TAILQ_FOREACH(s, &pool->login, entry)
		server_row(r, s, "login", sockets);
		/* Logged in ahead to a switchover's candidate (those logging in: login). */
		TAILQ_FOREACH(s, &pool->warm, entry)
		server_row(r, s, "warm", sockets);
	}
}

static void show_servers(struct proxy *p, struct result *r)
{
	client_cols(r, false);
	servers_rows(p, r, false, false);
	finish(r, "SHOW");
}

/* SHOW SOCKETS / ACTIVE_SOCKETS: clients and servers with their buffers. */
static void show_sockets(struct proxy *p, struct result *r, bool only_active)
{
	client_cols(r, true);
	clients_rows(p, r, true, only_active);
	servers_rows(p, r, true, only_active);
	finish(r, "SHOW");
}

static void show_databases(struct proxy *p, struct result *r)
{
	struct proxy_pool *pool;

	cols(r, "ssissiiiissiiiiii", "name", "host", "port", "database", "force_user", "pool_size",
	     "min_pool_size", "reserve_pool_size", "server_lifetime", "pool_mode",
	     "load_balance_hosts", "max_connections", "current_connections",
	     "max_client_connections", "current_client_connections", "paused", "disabled");
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		char v[17][64], db[140], host[256] = "";
		const char *vals[17];
		int port = 0;

		pool_db_name(pool, db, sizeof(db));
		if (pool->port == PROXY_PORT_REPLICA) {
			for (size_t i = 0; i < p->topo.n_members; i++)
				if (strcmp(p->topo.members[i].name, pool->member) == 0) {
					snprintf(host, sizeof(host), "%s", p->topo.members[i].host);
					port = p->topo.members[i].port;
				}
		} else if (p->routing_writes) {
			snprintf(host, sizeof(host), "%s", p->leader_host);
			port = p->leader_port;
		}
		vals[0] = db;
		vals[1] = host;
		vals[2] = num(v[2], 64, (uint64_t)port);
		vals[3] = pool->database;
		vals[4] = "";
		vals[5] = num(v[5], 64, (uint64_t)pool->pool_size);
		vals[6] = "0";
		vals[7] = num(v[7], 64, (uint64_t)p->cfg.reserve_pool_size);
		vals[8] = "3600";
		vals[9] = pool->transaction_mode ? "transaction" : "session";
		vals[10] = "";
		vals[11] = "0";
		vals[12] = num(v[12], 64, (uint64_t)pool->n_servers);
		vals[13] = num(v[13], 64, (uint64_t)p->cfg.max_client_conn);
		vals[14] = num(v[14], 64, (uint64_t)(pool_clients(pool)));
		vals[15] = p->paused ? "1" : "0";
		vals[16] = "0";
		row(r, vals);
	}
	finish(r, "SHOW");
}

static void show_config(struct proxy *p, struct result *r)
{
	const struct cmn_cfg_schema *sc = &proxy_config_schema;

	cols(r, "ssss", "key", "value", "default", "changeable");
	for (size_t i = 0; i < sc->n_keys; i++) {
		const struct cmn_cfg_key *k = &sc->keys[i];
		const char *base = (const char *)&p->cfg + k->offset;
		char value[512] = "", name[128];
		const char *vals[4];

		switch (k->type) {
		case CMN_CFG_STRING: {
			const char *s = *(char *const *)(const void *)base;

			snprintf(value, sizeof(value), "%s", s ? s : "");
			break;
		}
		case CMN_CFG_SECRET:
			snprintf(value, sizeof(value), "%s",
				 *(char *const *)(const void *)base ? "********" : "");
			break;
		case CMN_CFG_INT:
		case CMN_CFG_DURATION:
			snprintf(value, sizeof(value), "%d", *(const int *)(const void *)base);
			break;
		case CMN_CFG_BOOL:
			snprintf(value, sizeof(value), "%s",
				 *(const bool *)(const void *)base ? "on" : "off");
			break;
		case CMN_CFG_SIZE:
			snprintf(value, sizeof(value), "%lld",
				 (long long)*(const int64_t *)(const void *)base);
			break;
		}
		snprintf(name, sizeof(name), "%s.%s", k->section, k->name);
		vals[0] = strcmp(k->section, "proxy") == 0 ? k->name : name;
		vals[1] = value;
		vals[2] = k->default_value ? k->default_value : "";
		vals[3] = "no";
		row(r, vals);
	}
	finish(r, "SHOW");
}

static void show_lists(struct proxy *p, struct result *r)
{
	struct proxy_pool *pool;
	int used_clients = 0, used_servers = 0, free_servers = 0, dbs = 0;
	char v[12][32];

	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		used_clients += pool_clients(pool);
		used_servers += proxy_count_servers(&pool->active) +
				proxy_count_servers(&pool->login) +
				proxy_count_servers(&pool->resetting);
		free_servers += proxy_count_servers(&pool->idle);
		dbs++;
	}
	const struct {
		const char *name;
		uint64_t n;
	} items[] = {
	    {"databases", (uint64_t)dbs},
	    {"users", p->users.n},
	    {"pools", (uint64_t)dbs},
	    {"free_clients", 0},
	    {"used_clients", (uint64_t)used_clients},
	    {"login_clients", (uint64_t)proxy_count_clients(&p->login_clients)},
	    {"free_servers", (uint64_t)free_servers},
	    {"used_servers", (uint64_t)used_servers},
	    {"dns_names", 0},
	    {"dns_zones", 0},
	    {"dns_queries", 0},
	    {"dns_pending", 0},
	};

	cols(r, "si", "list", "items");
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		const char *vals[2] = {items[i].name, num(v[i], 32, items[i].n)};

		row(r, vals);
	}
	finish(r, "SHOW");
}

/* Server and client connections of a user (every pool of it). */
static void user_counts(const struct proxy *p, const char *user, uint64_t *servers,
			uint64_t *clients)
{
	const struct proxy_pool *pool;

	*servers = *clients = 0;
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		if (strcmp(pool->user, user) != 0)
			continue;
		*servers += (uint64_t)pool->n_servers;
		*clients += (uint64_t)(pool_clients(pool));
	}
}

/* SHOW USERS: PgBouncer's columns; no per-user overrides here (NULL), no per-user caps
 * (0). */
static void show_users(struct proxy *p, struct result *r)
{
	cols(r, "siisiiii", "name", "pool_size", "reserve_pool_size", "pool_mode",
	     "max_user_connections", "current_connections", "max_user_client_connections",
	     "current_client_connections");
	for (size_t i = 0; i < p->users.n; i++) {
		char v[2][32];
		uint64_t servers, clients;

		user_counts(p, p->users.users[i].name, &servers, &clients);
		const char *vals[8] = {
		    p->users.users[i].name, NULL, NULL, NULL, "0", num(v[0], 32, servers), "0",
		    num(v[1], 32, clients)};

		row(r, vals);
	}
	finish(r, "SHOW");
}

/* SHOW TOTALS: SHOW STATS summed over every pool, a (name, value) row each. */
static void show_totals(struct proxy *p, struct result *r)
{
	struct proxy_pool *pool;
	struct proxy_stats s = {0};
	double secs = (double)(cmn_now_ms() - p->started_ms) / 1000.0;

	if (secs < 1)
		secs = 1;
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		s.server_assignments += pool->stats.server_assignments;
		s.xact_count += pool->stats.xact_count;
		s.query_count += pool->stats.query_count;
		s.bytes_received += pool->stats.bytes_received;
		s.bytes_sent += pool->stats.bytes_sent;
		s.xact_time_us += pool->stats.xact_time_us;
		s.query_time_us += pool->stats.query_time_us;
		s.wait_time_us += pool->stats.wait_time_us;
	}
	const struct {
		const char *name;
		uint64_t v;
	} items[] = {
	    {"total_server_assignment_count", s.server_assignments},
	    {"total_xact_count", s.xact_count},
	    {"total_query_count", s.query_count},
	    {"total_received", s.bytes_received},
	    {"total_sent", s.bytes_sent},
	    {"total_xact_time", s.xact_time_us},
	    {"total_query_time", s.query_time_us},
	    {"total_wait_time", s.wait_time_us},
	    {"total_client_parse_count", 0},
	    {"total_server_parse_count", 0},
	    {"total_bind_count", 0},
	    {"avg_server_assignment_count", (uint64_t)((double)s.server_assignments / secs)},
	    {"avg_xact_count", (uint64_t)((double)s.xact_count / secs)},
	    {"avg_query_count", (uint64_t)((double)s.query_count / secs)},
	    {"avg_recv", (uint64_t)((double)s.bytes_received / secs)},
	    {"avg_sent", (uint64_t)((double)s.bytes_sent / secs)},
	    {"avg_xact_time", s.xact_count ? s.xact_time_us / s.xact_count : 0},
	    {"avg_query_time", s.query_count ? s.query_time_us / s.query_count : 0},
	    {"avg_wait_time", s.xact_count ? s.wait_time_us / s.xact_count : 0},
	    {"avg_client_parse_count", 0},
	    {"avg_server_parse_count", 0},
	    {"avg_bind_count", 0},
	};

	cols(r, "si", "name", "value");
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		char v[32];
		const char *vals[2] = {items[i].name, num(v, 32, items[i].v)};

		row(r, vals);
	}
	finish(r, "SHOW");
}

/* SHOW MEM: PgBouncer lists its slab caches; here, the objects of each kind alive and
 * the memory their structures and the kept statement texts take. */
static void show_mem(struct proxy *p, struct result *r)
{
	struct proxy_pool *pool;
	uint64_t clients = proxy_count_clients(&p->login_clients), servers = 0, pools = 0;

	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		pools++;
		servers += (uint64_t)pool->n_servers;
		clients += (uint64_t)(pool_clients(pool));
	}
	const struct {
		const char *name;
		uint64_t size, used;
	} items[] = {
	    {"client_cache", sizeof(struct proxy_client), clients},
	    {"server_cache", sizeof(struct proxy_server), servers},
	    {"pool_cache", sizeof(struct proxy_pool), pools},
	    {"user_cache", sizeof(struct proxy_user), p->users.n},
	    {"server_prepared_statement_cache", 1, extq_stmt_bytes()},
	};

	cols(r, "siiii", "name", "size", "used", "free", "memtotal");
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		char v[3][32];
		const char *vals[5] = {items[i].name, num(v[0], 32, items[i].size),
				       num(v[1], 32, items[i].used), "0",
				       num(v[2], 32, items[i].size * items[i].used)};

		row(r, vals);
	}
	finish(r, "SHOW");
}

/* SHOW STATE: active, paused, suspended (never: no online restart here). */
static void show_state(struct proxy *p, struct result *r)
{
	const char *rows[3][2] = {{"active", p->paused ? "no" : "yes"},
				  {"paused", p->paused ? "yes" : "no"},
				  {"suspended", "no"}};

	cols(r, "ss", "key", "value");
	for (size_t i = 0; i < 3; i++)
		row(r, rows[i]);
	finish(r, "SHOW");
}

/* SHOW FDS: the listening sockets, then every client's and server's, with the fd of
 * its partner (no online restart here: the fds are not passed). */
static void show_fds(struct proxy *p, struct result *r)
{
	struct proxy_pool *pool;
	struct proxy_client *c;
	struct proxy_server *s;
	char v[4][32];

	cols(r, "issssiii", "fd", "task", "user", "database", "addr", "port", "cancel", "link");
	for (int k = 0; k < PROXY_PORT_COUNT; k++) {
		if (p->listeners[k].fd < 0)
			continue;
		const char *vals[8] = {
		    num(v[0], 32, (uint64_t)p->listeners[k].fd),
		    "pooler",
		    NULL,
		    NULL,
		    p->cfg.listen_host,
		    num(v[1], 32,
			(uint64_t)(k == PROXY_PORT_POOLED    ? p->cfg.pooled_port
				   : k == PROXY_PORT_PRIMARY ? p->cfg.primary_port
							     : p->cfg.replica_port)),
		    NULL,
		    NULL};

		row(r, vals);
	}
	TAILQ_FOREACH(c, &p->login_clients, entry)
	{
		const char *vals[8] = {num(v[0], 32, (uint64_t)c->io.fd),
				       "client",
				       c->user,
				       c->database,
				       c->addr,
				       "0",
				       NULL,
				       NULL};

		row(r, vals);
	}
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		struct proxy_client_list *cl[] = {&pool->active_clients, &pool->idle_clients,
						  &pool->waiting};
		struct proxy_server_list *sl[] = {&pool->active, &pool->idle, &pool->login,
						  &pool->resetting, &pool->warm};

		for (size_t k = 0; k < 3; k++)
			TAILQ_FOREACH(c, cl[k], entry)
			{
				const char *vals[8] = {
				    num(v[0], 32, (uint64_t)c->io.fd),
				    "client",
				    c->user,
				    pool->database,
				    c->addr,
				    "0",
				    num(v[1], 32, c->cancel_key),
				    c->server ? num(v[2], 32, (uint64_t)c->server->io.fd) : NULL};

				row(r, vals);
			}
		for (size_t k = 0; k < sizeof(sl) / sizeof(sl[0]); k++)
			TAILQ_FOREACH(s, sl[k], entry)
			{
				const char *vals[8] = {
				    num(v[0], 32, (uint64_t)s->io.fd),
				    "server",
				    pool->user,
				    pool->database,
				    s->host,
				    num(v[1], 32, (uint64_t)s->port),
				    num(v[2], 32, s->be_key),
				    s->client ? num(v[3], 32, (uint64_t)s->client->io.fd) : NULL};

				row(r, vals);
			}
	}
	finish(r, "SHOW");
}

/* Commands of PgBouncer's with nothing to show here: the columns, no rows. */
static void show_empty(struct result *r, const char *what)
{
	if (strcmp(what, "peers") == 0)
		cols(r, "isii", "peer_id", "host", "port", "pool_size");
	else if (strcmp(what, "peer_pools") == 0)
		cols(r, "siiii", "database", "cl_active_cancel_req", "cl_waiting_cancel_req",
		     "sv_active_cancel", "sv_login");
	else if (strcmp(what, "dns_hosts") == 0)
		cols(r, "sis", "hostname", "ttl", "addrs");
	else
		cols(r, "sii", "zonename", "serial", "count");
	finish(r, "SHOW");
}

static const char console_usage[] =
    "Console usage\n"
    "SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
    "SHOW PEERS|PEER_POOLS\n"
    "SHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n"
    "SHOW DNS_HOSTS|DNS_ZONES\n"
    "SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
    "PAUSE\nRESUME\nRELOAD\nSHUTDOWN";

static void show_help(struct result *r)
{
	if (r->rc == PGW_OK)
		r->rc = pgp_put_notice(r->out, "NOTICE", "00000", console_usage);
	finish(r, "SHOW");
}

static void show_version(struct result *r)
{
	const char *vals[1] = {"PgBouncer 1.21.0 compatible (pgwarden " PGW_VERSION ")"};

	cols(r, "s", "version");
	row(r, vals);
	finish(r, "SHOW");
}

/* Lower-cases and splits the command into words (at most 3). */
static size_t words(const char *sql, char w[3][64])
{
	size_t n = 0;
	const char *p = sql;

	while (n < 3) {
		size_t len = 0;

		while (*p && (isspace((unsigned char)*p) || *p == ';'))
			p++;
		if (!*p)
			break;
		while (*p && !isspace((unsigned char)*p) && *p != ';') {
			if (len + 1 < 64)
				w[n][len++] = (char)tolower((unsigned char)*p);
			p++;
		}
		w[n][len] = '\0';
		n++;
	}
	while (*p && (isspace((unsigned char)*p) || *p == ';'))
		p++;
	return *p ? 4 : n; /* 4: more words than any command takes */
}

int proxy_admin_query(struct proxy *p, const struct proxy_admin_ops *ops,
		      const struct proxy_client *c, const char *sql, struct cmn_buf *out,
		      bool *shutdown)
{
	struct result r = {.out = out, .rc = PGW_OK};
	char w[3][64] = {"", "", ""};
	size_t n = words(sql, w);
	bool may_act = proxy_admin_is_admin(p, c->user);

	*shutdown = false;
	if (n == 0) {
		r.rc = pgp_put_empty_query(out);
	} else if (n == 2 && strcmp(w[0], "show") == 0) {
		if (strcmp(w[1], "pools") == 0)
			show_pools(p, &r);
		else if (strcmp(w[1], "stats") == 0)
			show_stats(p, &r, true, true);
		else if (strcmp(w[1], "stats_totals") == 0)
			show_stats(p, &r, true, false);
		else if (strcmp(w[1], "stats_averages") == 0)
			show_stats(p, &r, false, true);
		else if (strcmp(w[1], "clients") == 0)
			show_clients(p, &r);
		else if (strcmp(w[1], "servers") == 0)
			show_servers(p, &r);
		else if (strcmp(w[1], "sockets") == 0)
			show_sockets(p, &r, false);
		else if (strcmp(w[1], "active_sockets") == 0)
			show_sockets(p, &r, true);
		else if (strcmp(w[1], "databases") == 0)
			show_databases(p, &r);
		else if (strcmp(w[1], "config") == 0)
			show_config(p, &r);
		else if (strcmp(w[1], "lists") == 0)
			show_lists(p, &r);
		else if (strcmp(w[1], "version") == 0)
			show_version(&r);
		else if (strcmp(w[1], "users") == 0)
			show_users(p, &r);
		else if (strcmp(w[1], "totals") == 0)
			show_totals(p, &r);
		else if (strcmp(w[1], "mem") == 0)
			show_mem(p, &r);
		else if (strcmp(w[1], "state") == 0)
			show_state(p, &r);
		else if (strcmp(w[1], "fds") == 0 && !may_act)
			/* Cancel keys: anyone with them could cancel others' queries. */
			r.rc = pgp_put_error(out, "ERROR", SQLSTATE_INSUFFICIENT_PRIVILEGE,
					     "admin access needed (admin_users)", NULL);
		else if (strcmp(w[1], "fds") == 0)
			show_fds(p, &r);
		else if (strcmp(w[1], "help") == 0)
			show_help(&r);
		else if (strcmp(w[1], "peers") == 0 || strcmp(w[1], "peer_pools") == 0 ||
			 strcmp(w[1], "dns_hosts") == 0 || strcmp(w[1], "dns_zones") == 0)
			show_empty(&r, w[1]);
		else
			r.rc = pgp_put_error(out, "ERROR", SQLSTATE_UNDEFINED_OBJECT,
					     "unknown SHOW subcommand", "see SHOW HELP");
	} else if (n == 1 && (strcmp(w[0], "pause") == 0 || strcmp(w[0], "resume") == 0 ||
			      strcmp(w[0], "reload") == 0 || strcmp(w[0], "shutdown") == 0)) {
		if (!may_act) {
			r.rc = pgp_put_error(out, "ERROR", SQLSTATE_INSUFFICIENT_PRIVILEGE,
					     "admin access needed (admin_users)", NULL);
		} else if (strcmp(w[0], "pause") == 0) {
			ops->pause(p, true);
			finish(&r, "PAUSE");
		} else if (strcmp(w[0], "resume") == 0) {
			ops->pause(p, false);
			finish(&r, "RESUME");
		} else if (strcmp(w[0], "reload") == 0) {
			if (ops->reload(p) == PGW_OK)
				finish(&r, "RELOAD");
			else
				r.rc = pgp_put_error(out, "ERROR", SQLSTATE_CONFIG_FILE_ERROR,
						     "reload failed: see the proxy log", NULL);
		} else {
			*shutdown = true;
			finish(&r, "SHUTDOWN");
		}
	} else if (n >= 1 && (strcmp(w[0], "set") == 0 || strcmp(w[0], "begin") == 0 ||
			      strcmp(w[0], "commit") == 0 || strcmp(w[0], "rollback") == 0)) {
		/* What drivers send on connect: accepted and ignored. */
		char tag[16];

		snprintf(tag, sizeof(tag), "%s", w[0]);
		for (char *q = tag; *q; q++)
			*q = (char)toupper((unsigned char)*q);
		finish(&r, tag);
	} else {
		r.rc = pgp_put_error(out, "ERROR", SQLSTATE_SYNTAX_ERROR,
				     "unknown admin console command", "see SHOW HELP");
	}
	if (r.rc == PGW_OK)
		r.rc = pgp_put_ready(out, 'I');
	return r.rc;
}

bool proxy_admin_is_admin(const struct proxy *p, const char *user)
{
	return cmn_name_in_list(p->cfg.admin_users, user);
}

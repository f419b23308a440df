/*
 * pgwarden proxy: one event loop serving the pooled (6432), primary (5000) and
 * replica (5001) ports, following the cluster's leader from etcd.
 */
#include "proxy/proxy.h"
#include "common/http.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "proxy/http.h"
#include "proxy/conn.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH_SIZE	 (64 * 1024)
#define SHUTDOWN_DRAIN_S 30   /* SIGTERM: how long transactions in flight may take */
#define HTTP_PUBLISH_MS	 1000 /* the status page and /metrics are this fresh */

static struct proxy *the_proxy;
static volatile sig_atomic_t stop_requested, reload_requested;

/* The HTTP port's server and what its last publish saw (loop thread only). */
static struct proxy_http *the_http;
static int64_t http_published_ms;
static struct proxy_topology http_topo;
static bool http_routing;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_requested = 1;
	else
		stop_requested = stop_requested + 1 + (sig == SIGINT); /* SIGINT: at once */
	if (the_proxy && the_proxy->loop)
		cmn_loop_wake(the_proxy->loop);
}

#define SWAP_STR(field)                     \
	do {                                \
		char *tmp_ = p->cfg.field;  \
		p->cfg.field = fresh.field; \
		fresh.field = tmp_;         \
	} while (0)

/*
 * Re-reads proxy.ini: pool sizes, limits, timeouts, users and authentication take
 * effect at once without dropping anyone; the ports, the listen address, the
 * cluster, etcd and TLS need a restart (said in the log).
 */
static int reload_config(struct proxy *p)
{
	struct proxy_config fresh;
	char err[1024];
	enum cmn_log_level level;

	if (!p->config_path)
		return PGW_OK;
	if (proxy_config_load(p->config_path, &fresh, err, sizeof(err)) != PGW_OK) {
		log_error("reload: %s (keeping the configuration loaded before)", err);
		return PGW_EINVAL;
	}
	if (fresh.pooled_port != p->cfg.pooled_port || fresh.primary_port != p->cfg.primary_port ||
	    fresh.replica_port != p->cfg.replica_port || fresh.http_port != p->cfg.http_port ||
	    strcmp(fresh.listen_host, p->cfg.listen_host) != 0 ||
	    strcmp(fresh.cluster_name, p->cfg.cluster_name) != 0 ||
	    strcmp(fresh.etcd.endpoints, p->cfg.etcd.endpoints) != 0 ||
	    strcmp(fresh.client_tls_sslmode, p->cfg.client_tls_sslmode) != 0 ||
	    strcmp(fresh.server_tls_sslmode, p->cfg.server_tls_sslmode) != 0)
		log_warning("reload: ports, listen, cluster, etcd and TLS settings change only at "
			    "a restart of the proxy");
	p->cfg.max_client_conn = fresh.max_client_conn;
	p->cfg.default_pool_size = fresh.default_pool_size;
	p->cfg.max_pools = fresh.max_pools;
	p->cfg.max_client_statement_memory = fresh.max_client_statement_memory;
	p->cfg.max_statement_memory = fresh.max_statement_memory;
	p->cfg.server_plain_auth = fresh.server_plain_auth;
	p->cfg.pool_idle_timeout_ms = fresh.pool_idle_timeout_ms;
	p->cfg.reserve_pool_size = fresh.reserve_pool_size;
	p->cfg.session_pool_size = fresh.session_pool_size;
	p->cfg.query_wait_timeout_ms = fresh.query_wait_timeout_ms;
	p->cfg.client_login_timeout_ms = fresh.client_login_timeout_ms;
	p->cfg.client_startup_timeout_ms = fresh.client_startup_timeout_ms;
	p->cfg.max_logins_per_address = fresh.max_logins_per_address;
	p->cfg.server_idle_timeout_ms = fresh.server_idle_timeout_ms;
	p->cfg.server_connect_timeout_ms = fresh.server_connect_timeout_ms;
	p->cfg.idle_transaction_timeout_ms = fresh.idle_transaction_timeout_ms;
	p->cfg.max_packet_size = fresh.max_packet_size;
	p->cfg.max_replica_lag = fresh.max_replica_lag;
	p->cfg.replica_fallback_primary = fresh.replica_fallback_primary;
	p->cfg.ttl_ms = fresh.ttl_ms;
	p->cfg.switchover_drain_timeout_ms = fresh.switchover_drain_timeout_ms;
	p->cfg.switchover_hold_timeout_ms = fresh.switchover_hold_timeout_ms;
	SWAP_STR(auth_type);
	SWAP_STR(auth_file);
	SWAP_STR(auth_user);
	SWAP_STR(auth_query);
	SWAP_STR(auth_dbname);
	SWAP_STR(admin_users);
	SWAP_STR(stats_users);
	SWAP_STR(server_reset_query);
	SWAP_STR(log_level);
	if (cmn_log_parse_level(p->cfg.log_level, &level) == PGW_OK)
		cmn_log_set_level(level);
	proxy_config_free(&fresh);
	proxy_apply_pool_sizes(p);
	log_info("reloaded %s", p->config_path);
	return PGW_OK;
}

static int proxy_reload(struct proxy *p)
{
	struct proxy_userlist fresh;
	char err[512];

	if (reload_config(p) != PGW_OK)
		return PGW_EINVAL;
	if (!p->cfg.auth_file)
		return PGW_OK;
	if (proxy_userlist_load(p->cfg.auth_file, &fresh, err, sizeof(err)) != PGW_OK) {
		log_error("reload: %s (keeping the users loaded before)", err);
		return PGW_EINVAL;
	}
	/* Keep what clients taught us (SCRAM keys) for users whose secret did not change. */
	for (size_t i = 0; i < fresh.n; i++) {
		struct proxy_user *old = proxy_userlist_find(&p->users, fresh.users[i].name);

		if (old && old->has_client_key && !fresh.users[i].password &&
		    memcmp(&old->scram, &fresh.users[i].scram, sizeof(old->scram)) == 0) {
			memcpy(fresh.users[i].client_key, old->client_key, PGP_SCRAM_KEY_LEN);
			fresh.users[i].has_client_key = true;
		}
	}
	proxy_userlist_free(&p->users);
	p->users = fresh;
	log_info("reloaded %s: %zu users", p->cfg.auth_file, p->users.n);
	return PGW_OK;
}

/*
 * Renders the status page and /metrics: once a second from the tick, and at once
 * when the view of the cluster changed (not for etcd's once-a-second confirmation).
 */
static void http_publish(struct proxy *p, bool only_if_changed)
{
	struct proxy_topology t;

	if (!the_http)
		return;
	t = p->topo;
	t.version = 0;
	t.confirmed_ms = 0;
	for (size_t i = 0; i < DCS_MAX_MEMBERS; i++) { /* the replicas' lag: at the next render */
		t.members[i].lag = 0;
		t.members[i].lag_seconds = 0;
	}
	if (only_if_changed && p->routing_writes == http_routing &&
	    memcmp(&t, &http_topo, sizeof(t)) == 0)
		return;
	http_topo = t;
	http_routing = p->routing_writes;
	http_published_ms = cmn_now_ms();
	proxy_http_publish(the_http, p);
}

/*
 * Planned switchover (loop thread only). When the leader we route to marks the
 * failover key "drain" (it has checkpointed, clients still running, and is about to
 * stop), the primary's pools are held: new transactions wait, those in flight go
 * on. Once none is in flight (or switchover_drain_timeout passed) the registration
 * thread reports drained in etcd, which lets the leader stop. The hold ends when
 * the new leader runs as primary (conn.c has already closed the old servers; held
 * clients go to the new one), when the request goes away without a leader change
 * (cancelled), or after switchover_hold_timeout.
 */
static struct {
	int64_t handled; /* failover key revision acted on (never twice) */
	bool holding, reported;
	int64_t since_ms;
	char old_leader[DCS_NAME_MAX];
} so;

static bool switchover_due(const struct proxy *p)
{
	const struct proxy_topology *t = &p->topo;

	return t->switchover_pending && t->switchover_drain &&
	       t->switchover_revision != so.handled && t->has_leader && p->routing_writes &&
	       (!t->switchover_leader[0] || strcmp(t->switchover_leader, t->leader) == 0) &&
	       strcmp(t->switchover_candidate, t->leader) != 0;
}

/* promoted: the new leader runs as primary at p->leader_host (the pools' target). */
static void switchover_release(struct proxy *p, const char *why, bool promoted)
{
	if (promoted)
		proxy_adopt_warm(p, p->leader_host, p->leader_port);
	else
		proxy_adopt_warm(p, NULL, 0);
	so.holding = false;
	proxy_hold_primary(p, false);
	/* Our key says drained only while we hold. */
	if (so.reported)
		proxy_topology_report_drained(p->topo_watch, 0);
	log_info("switchover: %s: new transactions flow again", why);
}

static void switchover_step(struct proxy *p)
{
	const struct proxy_topology *t = &p->topo;
	int64_t now = cmn_now_ms();

	if (!so.holding) {
		if (!switchover_due(p))
			return;
		so.handled = t->switchover_revision;
		so.holding = true;
		so.reported = false;
		so.since_ms = now;
		snprintf(so.old_leader, sizeof(so.old_leader), "%s", t->leader);
		proxy_hold_primary(p, true);
		log_info("switchover from %s to %s: holding new transactions for the primary, "
			 "draining %d in flight (at most %d ms)",
			 t->leader,
			 t->switchover_candidate[0] ? t->switchover_candidate : "a replica",
			 proxy_primary_busy(p), p->cfg.switchover_drain_timeout_ms);
		for (size_t i = 0; i < t->n_members; i++)
			if (t->switchover_candidate[0] &&
			    strcmp(t->members[i].name, t->switchover_candidate) == 0 &&
			    t->members[i].host[0] && !t->members[i].is_leader)
				proxy_warm_candidate(p, t->members[i].host, t->members[i].port);
	}
	if (!so.reported) {
		int busy = proxy_primary_busy(p);

		if (busy && now - so.since_ms < p->cfg.switchover_drain_timeout_ms)
			return;
		if (busy)
			log_warning("switchover: %d transaction(s) still in flight after %d ms: "
				    "reporting drained anyway",
				    busy, p->cfg.switchover_drain_timeout_ms);
		else
			log_info("switchover: primary pools drained in %lld ms",
				 (long long)(now - so.since_ms));
		proxy_topology_report_drained(p->topo_watch, so.handled);
		so.reported = true;
	}
	if (t->has_leader && strcmp(t->leader, so.old_leader) != 0 && t->leader_primary) {
		char why[200];

		snprintf(why, sizeof(why), "%s runs as primary after %lld ms", t->leader,
			 (long long)(now - so.since_ms));
		switchover_release(p, why, true);
	} else if (t->has_leader && strcmp(t->leader, so.old_leader) == 0 &&
		   !(t->switchover_pending && t->switchover_revision == so.handled)) {
		switchover_release(p, "cancelled (the request went away, same leader)", false);
	} else if (now - so.since_ms >= p->cfg.switchover_hold_timeout_ms) {
		log_warning("switchover: no new primary after %d ms (switchover_hold_timeout)",
			    p->cfg.switchover_hold_timeout_ms);
		switchover_release(p, "hold given up", false);
	}
}

static void on_woken(struct cmn_loop *l, void *arg)
{
	struct proxy *p = arg;

	if (stop_requested == 1 && !p->shutting_down) {
		/* SIGTERM: drain. No new clients; transactions running end, then we go. */
		log_info("SIGTERM: draining (no new connections; waiting up to %d s for "
			 "transactions in flight)",
			 SHUTDOWN_DRAIN_S);
		p->shutting_down = true;
		p->drain_deadline_ms = cmn_now_ms() + SHUTDOWN_DRAIN_S * 1000;
		for (int i = 0; i < PROXY_PORT_COUNT; i++) {
			if (p->listeners[i].fd >= 0) {
				int fd = p->listeners[i].fd;

				cmn_io_del(p->loop, &p->listeners[i]);
				close(fd);
			}
		}
		proxy_pause(p, true);
	} else if (stop_requested > 1) {
		cmn_loop_stop(l); /* a second signal: at once */
		return;
	}
	if (reload_requested) {
		reload_requested = 0;
		if (proxy_reload(p) != PGW_OK)
			log_debug("reload kept the users loaded before");
	}
	proxy_topology_changed(p);
	switchover_step(p);
	http_publish(p, true);
}

static void on_tick(struct cmn_loop *l, void *arg)
{
	struct proxy *p = arg;

	proxy_tick(arg);
	switchover_step(p);
	if (p->shutting_down &&
	    (proxy_active_servers(p) == 0 || cmn_now_ms() >= p->drain_deadline_ms)) {
		cmn_loop_stop(l);
		return;
	}
	if (cmn_now_ms() - http_published_ms >= HTTP_PUBLISH_MS)
		http_publish(arg, false);
}

static void on_after(struct cmn_loop *l, void *arg)
{
	(void)l;
	proxy_free_dead(arg);
	proxy_free_unused_pools(arg);
	/* Report drained as soon as the last transaction in flight ends. */
	if (so.holding && !so.reported)
		switchover_step(arg);
}

/*
 * The soft open-file limit goes up to the hard one; what it allows is said. A share is
 * kept for servers, etcd and HTTP: clients beyond the rest are refused with 53300
 * instead of making accept() fail for everyone.
 */
static void open_file_limit(struct proxy *p)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		p->fd_limit = 1024;
		return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit want = {rl.rlim_max, rl.rlim_max};

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl = want;
	}
	p->fd_limit = rl.rlim_cur > INT_MAX ? INT_MAX : (int)rl.rlim_cur;
	p->fd_reserve = p->fd_limit / 10 < 64 ? 64 : p->fd_limit / 10;
	if (p->fd_reserve > p->fd_limit / 2)
		p->fd_reserve = p->fd_limit / 2;
	log_info("open-file limit %d: clients and servers share %d of them, %d kept for the "
		 "rest; max_client_conn %d",
		 p->fd_limit, p->fd_limit - p->fd_reserve, p->fd_reserve, p->cfg.max_client_conn);
	if (p->cfg.max_client_conn > p->fd_limit - p->fd_reserve)
		log_warning("max_client_conn %d is more than the open-file limit allows (%d "
			    "clients and servers together)",
			    p->cfg.max_client_conn, p->fd_limit - p->fd_reserve);
}

static void usage(void)
{
	fprintf(stderr, "usage: pgwarden proxy -c proxy.ini\n");
}

/* The lists, the scratch buffer and the starting values of a proxy (config loaded). */
static void init_state(struct proxy *p, const char *path)
{
	p->config_path = path;
	p->reload = proxy_reload;
	cmn_http_set_cafile(p->cfg.api_cafile);
	open_file_limit(p);
	TAILQ_INIT(&p->pools);
	TAILQ_INIT(&p->login_clients);
	TAILQ_INIT(&p->admin_clients);
	p->started_ms = cmn_now_ms();
	TAILQ_INIT(&p->dead_clients);
	TAILQ_INIT(&p->dead_servers);
	TAILQ_INIT(&p->cancels);
	TAILQ_INIT(&p->dead_cancels);
	p->scratch_size = SCRATCH_SIZE;
	p->scratch = malloc(p->scratch_size);
	p->leader_generation = 1;
	for (int i = 0; i < PROXY_PORT_COUNT; i++)
		p->listeners[i].fd = -1;
}

/* The pooled, primary and replica ports (those not 0) in the loop; PGW_ERR (logged). */
static int listen_ports(struct proxy *p)
{
	const int port_of[PROXY_PORT_COUNT] = {p->cfg.pooled_port, p->cfg.primary_port,
					       p->cfg.replica_port};

	for (int i = 0; i < PROXY_PORT_COUNT; i++) {
		int fd;

		if (!port_of[i])
			continue;
		fd = cmn_tcp_listen(p->cfg.listen_host, port_of[i], 4096, true, "proxy");
		if (fd < 0 ||
		    cmn_io_add(p->loop, &p->listeners[i], fd, EPOLLIN, proxy_accept, p) != PGW_OK) {
			if (fd >= 0)
				close(fd);
			return PGW_ERR;
		}
	}
	return PGW_OK;
}

int proxy_main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {NULL, 0, NULL, 0}};
	struct proxy *p = calloc(1, sizeof(*p));
	const char *path = NULL;
	char err[1024];
	int c, rc = 2;
	enum cmn_log_level level;

	if (!p)
		return 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (c == 'c') {
			path = optarg;
		} else {
			usage();
			free(p);
			return 2;
		}
	}
	if (proxy_config_load(path, &p->cfg, err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden proxy: %s\n", err);
		free(p);
		return 2;
	}
	if (cmn_log_parse_level(p->cfg.log_level, &level) == PGW_OK)
		cmn_log_set_level(level);
	cmn_log_set_ident("proxy");
	if (p->cfg.auth_file &&
	    proxy_userlist_load(p->cfg.auth_file, &p->users, err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden proxy: %s\n", err);
		goto out_cfg;
	}
	if (proxy_tls_init(&p->cfg, &p->tls, err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden proxy: %s\n", err);
		proxy_userlist_free(&p->users);
		goto out_cfg;
	}
	init_state(p, path);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!p->scratch || cmn_loop_new(&p->loop) != PGW_OK)
		goto out_users;
	the_proxy = p;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGHUP, on_signal);
	rc = 1;
	if (listen_ports(p) != PGW_OK)
		goto out_listen;
	if (proxy_topology_start(&p->cfg, p->loop, &p->topo_watch) != PGW_OK)
		goto out_listen;
	if (proxy_http_start(&p->cfg, &the_http) != PGW_OK) {
		proxy_topology_stop(p->topo_watch);
		goto out_listen;
	}
	http_publish(p, false);
	cmn_loop_set_tick(p->loop, 200, on_tick, p);
	cmn_loop_set_after(p->loop, on_after, p);
	cmn_loop_set_woken(p->loop, on_woken, p);
	log_info("listening on %s: pooled %d, primary %d, replica %d, http %d; cluster %s, "
		 "etcd %s",
		 p->cfg.listen_host, p->cfg.pooled_port, p->cfg.primary_port, p->cfg.replica_port,
		 p->cfg.http_port, p->cfg.cluster_name, p->cfg.etcd.endpoints);
	rc = cmn_loop_run(p->loop) == PGW_OK ? 0 : 1;
	log_info("shutting down");
	proxy_http_stop(the_http);
	the_http = NULL;
	proxy_close_all(p);
	proxy_topology_stop(p->topo_watch);
out_listen:
	for (int i = 0; i < PROXY_PORT_COUNT; i++) {
		if (p->listeners[i].fd >= 0) {
			int fd = p->listeners[i].fd;

			cmn_io_del(p->loop, &p->listeners[i]);
			close(fd);
		}
	}
	cmn_loop_free(p->loop);
out_users:
	the_proxy = NULL;
	proxy_tls_free(&p->tls);
	free(p->scratch);
	proxy_userlist_free(&p->users);
out_cfg:
	proxy_config_free(&p->cfg);
	free(p);
	return rc;
}

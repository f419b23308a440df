/*
 * The proxy's configuration (proxy.ini; every key overridable by
 * PGWARDEN_<SECTION>_<KEY>). Durations are milliseconds, sizes bytes.
 */
#ifndef PGW_PROXYCFG_H
#define PGW_PROXYCFG_H

#include "cluster/clustercfg.h"
#include "common/config.h"
#include "common/err.h"

#include <stdbool.h>
#include <stdint.h>

struct proxy_config {
	/* [cluster]: which cluster to follow */
	char *cluster_name;
	char *namespace;
	char *allowed_networks; /* members' addresses must lie within (NULL: any) */
	/* [etcd] */
	struct cluster_etcd_config etcd;
	/* [proxy] */
	char *listen_host;
	int pooled_port;  /* transaction pooling to the primary (6432) */
	int primary_port; /* sessions to the primary (5000) */
	int replica_port; /* sessions to a replica (5001) */
	int http_port;	  /* status page and /metrics (7000) */
	char *auth_type;  /* scram-sha-256, md5, trust */
	char *auth_file;  /* userlist.txt: "user" "password or verifier" */
	char *auth_user;  /* looks up users missing from auth_file with auth_query */
	char *auth_query;
	char *auth_dbname;
	char *admin_users;
	char *stats_users;
	char *http_username;
	char *http_password;
	int max_client_conn;
	int default_pool_size;
	int max_pools;		  /* database/user pools per port, all ports together */
	int pool_idle_timeout_ms; /* an unused pool is freed after this */
	int reserve_pool_size;
	int session_pool_size;
	int query_wait_timeout_ms;
	int client_login_timeout_ms;
	int client_startup_timeout_ms; /* a connection that sent no startup packet yet */
	int max_logins_per_address;    /* logins in progress from one address (0: no limit) */
	int server_idle_timeout_ms;
	int server_connect_timeout_ms;
	int idle_transaction_timeout_ms;
	/* TCP keepalive on client and server sockets (PgBouncer's tcp_* settings) */
	bool tcp_keepalive;
	int tcp_keepidle_ms;
	int tcp_keepintvl_ms;
	int tcp_keepcnt;
	int tcp_user_timeout_ms; /* 0: the kernel's */
	int64_t max_packet_size;
	int max_prepared_statements;	     /* per pooled server connection (0: not tracked) */
	int64_t max_client_statement_memory; /* bytes of statements one client may name */
	int64_t max_statement_memory;	     /* bytes of every statement the proxy keeps */
	char *server_reset_query;
	int64_t max_replica_lag;
	bool replica_fallback_primary;
	char *log_level;
	/* TLS: client side (clients to the proxy), server side (proxy to PostgreSQL) */
	char *client_tls_sslmode; /* disable, allow, prefer, require */
	char *client_tls_cert_file;
	char *client_tls_key_file;
	char *server_tls_sslmode; /* disable, allow, prefer, require, verify-ca, verify-full */
	char *server_tls_ca_file;
	char *api_cafile;	/* the CA the members' REST APIs are checked against (https) */
	bool server_plain_auth; /* answer a server's cleartext-password or MD5 request */
	int ttl_ms; /* the cluster's leader lease ttl: how long a stale view stays usable */
	/* Planned switchover */
	char *proxy_name;		 /* key proxies/<name> (default host:pooled_port) */
	int switchover_drain_timeout_ms; /* transactions in flight get this long */
	int switchover_hold_timeout_ms;	 /* the hold ends after this at the latest */
};

extern const struct cmn_cfg_schema proxy_config_schema;

int proxy_config_load(const char *path, struct proxy_config *cfg, char *err,
		      size_t err_size) PGW_WUR;
void proxy_config_free(struct proxy_config *cfg);

#endif

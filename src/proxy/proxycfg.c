#include "proxy/proxycfg.h"
#include "cluster/dcs.h"
#include "common/util.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define OFF(f) offsetof(struct proxy_config, f)
#define SEC(s) (s * 1000LL)

static const struct cmn_cfg_section sections[] = {
    {"cluster", false, 0},
    {"etcd", false, 0},
    {"proxy", false, 0},
};

static const struct cmn_cfg_key keys[] = {
    CLUSTER_CFG_NAME_ROWS(OFF, "cluster to follow (Patroni's scope)"),
    CLUSTER_CFG_TTL_ROW(OFF, "the agents' leader lease ttl: how long the last leader is trusted "
			     "without etcd"),
    CLUSTER_CFG_ETCD_ROWS(OFF),
    {"proxy", "listen", CMN_CFG_STRING, OFF(listen_host), "127.0.0.1", false, 0, 0,
     "address the ports listen on (* for all)"},
    {"proxy", "pooled_port", CMN_CFG_INT, OFF(pooled_port), "6432", false, 0, 65535,
     "transaction pooling to the primary (0: off)"},
    {"proxy", "primary_port", CMN_CFG_INT, OFF(primary_port), "5000", false, 0, 65535,
     "a session on the primary (0: off)"},
    {"proxy", "replica_port", CMN_CFG_INT, OFF(replica_port), "5001", false, 0, 65535,
     "a session on a replica (0: off)"},
    {"proxy", "http_port", CMN_CFG_INT, OFF(http_port), "7000", false, 0, 65535,
     "status page and /metrics (0: off)"},
    {"proxy", "auth_type", CMN_CFG_STRING, OFF(auth_type), "scram-sha-256", false, 0, 0,
     "client authentication: scram-sha-256, md5 or trust"},
    {"proxy", "auth_file", CMN_CFG_STRING, OFF(auth_file), NULL, false, 0, 0,
     "users and passwords (PgBouncer's userlist.txt format)"},
    {"proxy", "auth_user", CMN_CFG_STRING, OFF(auth_user), NULL, false, 0, 0,
     "user (with its password in auth_file) that runs auth_query on the primary"},
    {"proxy", "auth_query", CMN_CFG_STRING, OFF(auth_query),
     "SELECT usename, passwd FROM pg_shadow WHERE usename = $1", false, 0, 0,
     "the secret of a user missing from auth_file"},
    {"proxy", "auth_dbname", CMN_CFG_STRING, OFF(auth_dbname), NULL, false, 0, 0,
     "database auth_query runs in (default: the client's)"},
    {"proxy", "admin_users", CMN_CFG_STRING, OFF(admin_users), NULL, false, 0, 0,
     "comma-separated users allowed on the admin console"},
    {"proxy", "stats_users", CMN_CFG_STRING, OFF(stats_users), NULL, false, 0, 0,
     "comma-separated users allowed read-only SHOW commands"},
    {"proxy", "http_username", CMN_CFG_STRING, OFF(http_username), NULL, false, 0, 0,
     "basic auth user of the status page"},
    {"proxy", "http_password", CMN_CFG_SECRET, OFF(http_password), NULL, false, 0, 0, NULL},
    {"proxy", "max_client_conn", CMN_CFG_INT, OFF(max_client_conn), "10000", false, 1, 1000000,
     "client connections accepted at most (then 53300)"},
    {"proxy", "default_pool_size", CMN_CFG_INT, OFF(default_pool_size), "20", false, 1, 10000,
     "server connections per database/user on the pooled port"},
    {"proxy", "max_pools", CMN_CFG_INT, OFF(max_pools), "5000", false, 1, 1000000,
     "pools (database/user pairs on each port) at most; a login that needs another gets 53300"},
    {"proxy", "pool_idle_timeout", CMN_CFG_DURATION, OFF(pool_idle_timeout_ms), "60s", false, 0,
     SEC(86400),
     "a pool without clients or servers is freed after this (0: never); one whose server "
     "login never succeeded (a database that does not exist) at once"},
    {"proxy", "reserve_pool_size", CMN_CFG_INT, OFF(reserve_pool_size), "0", false, 0, 10000,
     "extra server connections when clients wait longer than 5 s"},
    {"proxy", "session_pool_size", CMN_CFG_INT, OFF(session_pool_size), "100", false, 1, 10000,
     "server connections per database/user on the session ports"},
    {"proxy", "query_wait_timeout", CMN_CFG_DURATION, OFF(query_wait_timeout_ms), "120s", false, 0,
     SEC(86400), "a client waits this long for a server (0: for ever)"},
    {"proxy", "client_login_timeout", CMN_CFG_DURATION, OFF(client_login_timeout_ms), "60s", false,
     0, SEC(86400), "a client must log in within this"},
    {"proxy", "client_startup_timeout", CMN_CFG_DURATION, OFF(client_startup_timeout_ms), "5s",
     false, 0, SEC(3600), "a connection must send its startup packet within this (0: no limit)"},
    {"proxy", "max_logins_per_address", CMN_CFG_INT, OFF(max_logins_per_address), "256", false, 0,
     1000000,
     "connections from one address still logging in at most; more are refused at once with "
     "53300 (0: no limit)"},
    {"proxy", "server_idle_timeout", CMN_CFG_DURATION, OFF(server_idle_timeout_ms), "600s", false,
     0, SEC(86400), "idle server connections are closed after this (0: never)"},
    {"proxy", "server_connect_timeout", CMN_CFG_DURATION, OFF(server_connect_timeout_ms), "5s",
     false, 100, SEC(3600), "bound on connecting and logging in to a server"},
    {"proxy", "idle_transaction_timeout", CMN_CFG_DURATION, OFF(idle_transaction_timeout_ms), "0",
     false, 0, SEC(86400), "a client idle inside a transaction is closed after this (0: never)"},
    {"proxy", "tcp_keepalive", CMN_CFG_BOOL, OFF(tcp_keepalive), "on", false, 0, 0,
     "TCP keepalive on client and server connections: a silent connection whose peer went "
     "away (host cut off, or its reset lost) is dropped after tcp_keepidle + tcp_keepcnt * "
     "tcp_keepintvl"},
    {"proxy", "tcp_keepidle", CMN_CFG_DURATION, OFF(tcp_keepidle_ms), "15s", false, SEC(1),
     SEC(32767), "a connection silent this long gets its first keepalive probe"},
    {"proxy", "tcp_keepintvl", CMN_CFG_DURATION, OFF(tcp_keepintvl_ms), "5s", false, SEC(1),
     SEC(32767), "between two unanswered probes"},
    {"proxy", "tcp_keepcnt", CMN_CFG_INT, OFF(tcp_keepcnt), "3", false, 1, 127,
     "unanswered probes before the connection is dropped"},
    {"proxy", "tcp_user_timeout", CMN_CFG_DURATION, OFF(tcp_user_timeout_ms), "0", false, 0,
     SEC(86400),
     "sent data unacknowledged this long drops the connection (TCP_USER_TIMEOUT; 0: the "
     "kernel's retries, about 15 minutes; a bare number is seconds, unlike PgBouncer's "
     "milliseconds: write 500ms)"},
    {"proxy", "max_packet_size", CMN_CFG_SIZE, OFF(max_packet_size), "4MB", false, 1024, INT32_MAX,
     "largest client message the proxy holds whole (Query, Bind and COPY data pass "
     "as they arrive, up to 1GB)"},
    {"proxy", "max_prepared_statements", CMN_CFG_INT, OFF(max_prepared_statements), "200", false, 0,
     100000,
     "named prepared statements each pooled server connection keeps for its clients (0: none "
     "tracked; names then reach the server as they are)"},
    {"proxy", "max_client_statement_memory", CMN_CFG_SIZE, OFF(max_client_statement_memory), "16MB",
     false, 1024, INT64_MAX,
     "bytes of named prepared statements one client may hold (then 54000, the client closed)"},
    {"proxy", "max_statement_memory", CMN_CFG_SIZE, OFF(max_statement_memory), "256MB", false, 1024,
     INT64_MAX,
     "bytes of prepared statements the proxy keeps for all clients (then 53200, the client "
     "closed)"},
    {"proxy", "server_reset_query", CMN_CFG_STRING, OFF(server_reset_query), "DISCARD ALL", false,
     0, 0, "run when a session ends, before its server is reused"},
    {"proxy", "api_cafile", CMN_CFG_STRING, OFF(api_cafile), NULL, false, 0, 0,
     "the CA the members' REST APIs (health checks) are checked against, when they serve https"},
    {"proxy", "server_plain_auth", CMN_CFG_BOOL, OFF(server_plain_auth), "off", false, 0, 0,
     "answer a server that asks for a cleartext password or an MD5 response (off: SCRAM only, "
     "so a server that etcd's records point to cannot learn a password)"},
    {"proxy", "max_replica_lag", CMN_CFG_SIZE, OFF(max_replica_lag), "16MB", false, 0, INT64_MAX,
     "replicas lagging more get no new sessions on the replica port"},
    {"proxy", "replica_fallback_primary", CMN_CFG_BOOL, OFF(replica_fallback_primary), "off", false,
     0, 0, "the replica port uses the primary when no replica qualifies"},
    {"proxy", "name", CMN_CFG_STRING, OFF(proxy_name), NULL, false, 0, 0,
     "this proxy's name in etcd (proxies/<name>), unique per cluster (default host:pooled_port)"},
    {"proxy", "switchover_drain_timeout", CMN_CFG_DURATION, OFF(switchover_drain_timeout_ms), "5s",
     false, 0, SEC(3600),
     "planned switchover: transactions in flight get this long before the proxy reports "
     "drained anyway"},
    {"proxy", "switchover_hold_timeout", CMN_CFG_DURATION, OFF(switchover_hold_timeout_ms), "30s",
     false, SEC(1), SEC(3600),
     "planned switchover: new transactions are held at most this long for the new primary"},
    {"proxy", "log_level", CMN_CFG_STRING, OFF(log_level), "info", false, 0, 0,
     "debug, info, warning or error"},
    {"proxy", "client_tls_sslmode", CMN_CFG_STRING, OFF(client_tls_sslmode), "disable", false, 0, 0,
     "TLS for clients: disable, allow, prefer or require"},
    {"proxy", "client_tls_cert_file", CMN_CFG_STRING, OFF(client_tls_cert_file), NULL, false, 0, 0,
     "the proxy's certificate (PEM) for clients"},
    {"proxy", "client_tls_key_file", CMN_CFG_STRING, OFF(client_tls_key_file), NULL, false, 0, 0,
     "its private key (PEM)"},
    {"proxy", "server_tls_sslmode", CMN_CFG_STRING, OFF(server_tls_sslmode), "prefer", false, 0, 0,
     "TLS to PostgreSQL: disable, allow, prefer, require, verify-ca or verify-full"},
    {"proxy", "server_tls_ca_file", CMN_CFG_STRING, OFF(server_tls_ca_file), NULL, false, 0, 0,
     "CA (PEM) that signed the servers' certificates (verify-ca, verify-full)"},
};

const struct cmn_cfg_schema proxy_config_schema = {
    .sections = sections,
    .n_sections = sizeof(sections) / sizeof(sections[0]),
    .keys = keys,
    .n_keys = sizeof(keys) / sizeof(keys[0]),
};

int proxy_config_load(const char *path, struct proxy_config *cfg, char *err, size_t err_size)
{
	const char *where = path ? path : "configuration";

	memset(cfg, 0, sizeof(*cfg));
	if (cmn_config_load(&proxy_config_schema, cfg, path, err, err_size) != PGW_OK)
		return PGW_EINVAL;
	char why[200];

	/* cmn_tcp_listen would take "" for every address: * says that. */
	if (!cfg->listen_host || !*cfg->listen_host) {
		snprintf(
		    err, err_size,
		    "%s: 'listen' in [proxy] is empty: give an address, or * for every address",
		    where);
		proxy_config_free(cfg);
		return PGW_EINVAL;
	}
	if (cmn_networks_check(cfg->allowed_networks, why, sizeof(why)) != PGW_OK) {
		snprintf(err, err_size, "%s: 'allowed_networks' in [cluster]: %s", where, why);
		proxy_config_free(cfg);
		return PGW_EINVAL;
	}
	if (strcasecmp(cfg->auth_type, "scram-sha-256") != 0 &&
	    strcasecmp(cfg->auth_type, "md5") != 0 && strcasecmp(cfg->auth_type, "trust") != 0) {
		snprintf(
		    err, err_size,
		    "%s: bad value '%s' for 'auth_type' in [proxy]: expected scram-sha-256, md5 "
		    "or trust",
		    where, cfg->auth_type);
		proxy_config_free(cfg);
		return PGW_EINVAL;
	}
	static const char *const client_modes[] = {"disable", "allow", "prefer", "require", NULL};
	static const char *const server_modes[] = {"disable",	"allow",       "prefer", "require",
						   "verify-ca", "verify-full", NULL};
	const char *bad = NULL;
	bool ok = false;

	for (size_t i = 0; client_modes[i]; i++)
		ok = ok || strcmp(cfg->client_tls_sslmode, client_modes[i]) == 0;
	if (!ok)
		bad = "client_tls_sslmode";
	ok = false;
	for (size_t i = 0; server_modes[i]; i++)
		ok = ok || strcmp(cfg->server_tls_sslmode, server_modes[i]) == 0;
	if (!ok && !bad)
		bad = "server_tls_sslmode";
	if (bad) {
		snprintf(err, err_size, "%s: bad value for '%s' in [proxy]", where, bad);
		proxy_config_free(cfg);
		return PGW_EINVAL;
	}
	if (strcmp(cfg->client_tls_sslmode, "disable") != 0 &&
	    (!cfg->client_tls_cert_file || !cfg->client_tls_key_file)) {
		snprintf(err, err_size,
			 "%s: [proxy] client_tls_sslmode %s needs client_tls_cert_file and "
			 "client_tls_key_file",
			 where, cfg->client_tls_sslmode);
		proxy_config_free(cfg);
		return PGW_EINVAL;
	}
	if (strncmp(cfg->server_tls_sslmode, "verify", 6) == 0 && !cfg->server_tls_ca_file) {
		snprintf(err, err_size,
			 "%s: [proxy] server_tls_sslmode %s needs server_tls_ca_file", where,
			 cfg->server_tls_sslmode);
		proxy_config_free(cfg);
		return PGW_EINVAL;
	}
	if (cfg->proxy_name && !dcs_proxy_name_ok(cfg->proxy_name)) {
		snprintf(
		    err, err_size,
		    "%s: bad value '%s' for 'name' in [proxy]: expected 1 to %d characters, no "
		    "'/' or spaces",
		    where, cfg->proxy_name, DCS_NAME_MAX - 1);
		proxy_config_free(cfg);
		return PGW_EINVAL;
	}
	if (strcasecmp(cfg->auth_type, "trust") != 0 && !cfg->auth_file) {
		snprintf(err, err_size,
			 "%s: [proxy] auth_type %s needs an auth_file with the users' passwords",
			 where, cfg->auth_type);
		proxy_config_free(cfg);
		return PGW_EINVAL;
	}
	return PGW_OK;
}

void proxy_config_free(struct proxy_config *cfg)
{
	cmn_config_free(&proxy_config_schema, cfg);
}

#include "node/agentcfg.h"
#include "node/pgconf.h"
#include "node/defaults.h"
#include "node/schedule.h"
#include "common/util.h"

#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OFF(f) offsetof(struct agent_config, f)
#define SEC(s) (s * 1000LL)

static const struct cmn_cfg_section sections[] = {
    {"cluster", false, 0},
    {"etcd", false, 0},
    {"postgresql", false, 0},
    {"api", false, 0},
    {"parameters", true, OFF(parameters)},
    {"tags", true, OFF(tags)},
    {"backup", false, 0},
};

static const struct cmn_cfg_key keys[] = {
    CLUSTER_CFG_NAME_ROWS(OFF, "cluster name (Patroni's scope)"),
    {"cluster", "member", CMN_CFG_STRING, OFF(member_name), NULL, true, 0, 0,
     "this node's member name, unique in the cluster"},
    CLUSTER_CFG_TTL_ROW(OFF, "leader lease time-to-live"),
    {"cluster", "loop_wait", CMN_CFG_DURATION, OFF(loop_wait_ms), CLUSTER_DEFAULT_LOOP_WAIT, false,
     100, SEC(600), "period of the HA loop"},
    {"cluster", "retry_timeout", CMN_CFG_DURATION, OFF(retry_timeout_ms),
     CLUSTER_DEFAULT_RETRY_TIMEOUT, false, 100, SEC(600),
     "bound on one etcd or PostgreSQL operation"},
    {"cluster", "maximum_lag_on_failover", CMN_CFG_SIZE, OFF(maximum_lag_on_failover),
     AGENT_DEFAULT_MAX_LAG, false, 0, INT64_MAX, "bytes a replica may lag and still promote"},
    {"cluster", "primary_start_timeout", CMN_CFG_DURATION, OFF(primary_start_timeout_ms),
     AGENT_DEFAULT_PRIMARY_START_TIMEOUT, false, 0, SEC(3600),
     "how long a crashed primary may take to restart before the leader key is released"},
    {"cluster", "switchover_proxy_wait", CMN_CFG_DURATION, OFF(switchover_proxy_wait_ms),
     AGENT_DEFAULT_SWITCHOVER_PROXY_WAIT, false, 0, SEC(600),
     "planned switchover: how long the leader waits for the proxies to drain before it stops"},
    {"cluster", "shutdown_handover_timeout", CMN_CFG_DURATION, OFF(shutdown_handover_timeout_ms),
     AGENT_DEFAULT_SHUTDOWN_HANDOVER_TIMEOUT, false, 0, SEC(3600),
     "SIGTERM to the leader: how long it may take to hand the role to a replica first (0: "
     "stop at once)"},
    {"cluster", "log_level", CMN_CFG_STRING, OFF(log_level), "info", false, 0, 0,
     "debug, info, warning or error"},
    CLUSTER_CFG_ETCD_ROWS(OFF),
    {"postgresql", "data_dir", CMN_CFG_STRING, OFF(data_dir), NULL, true, 0, 0,
     "PGDATA of this node"},
    {"postgresql", "bin_dir", CMN_CFG_STRING, OFF(bin_dir), "/usr/lib/postgresql/15/bin", false, 0,
     0, "where initdb, pg_ctl, pg_basebackup, pg_rewind live"},
    {"postgresql", "listen", CMN_CFG_STRING, OFF(pg_listen), "127.0.0.1:5432", false, 0, 0,
     "host:port PostgreSQL listens on"},
    {"postgresql", "connect_address", CMN_CFG_STRING, OFF(pg_connect_address), NULL, false, 0, 0,
     "host:port other members and clients use (default: listen)"},
    {"postgresql", "socket_dir", CMN_CFG_STRING, OFF(socket_dir), NULL, false, 0, 0,
     "unix socket directory (default: data_dir/../run)"},
    {"postgresql", "superuser", CMN_CFG_STRING, OFF(superuser), "postgres", false, 0, 0, NULL},
    {"postgresql", "superuser_password", CMN_CFG_SECRET, OFF(superuser_password), NULL, true, 0, 0,
     NULL},
    {"postgresql", "replication_user", CMN_CFG_STRING, OFF(replication_user), "replicator", false,
     0, 0, NULL},
    {"postgresql", "replication_password", CMN_CFG_SECRET, OFF(replication_password), NULL, true, 0,
     0, NULL},
    {"postgresql", "memory", CMN_CFG_SIZE, OFF(memory), "0", false, 0, INT64_MAX,
     "memory given to this node, for the tuned parameters (0: all of this machine's)"},
    {"postgresql", "use_pg_rewind", CMN_CFG_BOOL, OFF(use_pg_rewind), "on", false, 0, 0, NULL},
    {"postgresql", "remove_data_on_rewind_failure", CMN_CFG_BOOL,
     OFF(remove_data_on_rewind_failure), "on", false, 0, 0,
     "re-clone from the leader when pg_rewind fails"},
    {"postgresql", "connect_sslmode", CMN_CFG_STRING, OFF(connect_sslmode), "prefer", false, 0, 0,
     "libpq sslmode when agents and the CLI connect to other members (replication, rewind, "
     "checks): disable, allow, prefer, require, verify-ca or verify-full"},
    {"postgresql", "connect_sslrootcert", CMN_CFG_STRING, OFF(connect_sslrootcert), NULL, false, 0,
     0, "the CA the members' certificates are checked against (verify-ca, verify-full)"},
    {"postgresql", "pgpass", CMN_CFG_STRING, OFF(pgpass), NULL, false, 0, 0,
     "passfile the agent writes for its own connections (default data_dir/../pgpass)"},
    {"postgresql", "pg_hba", CMN_CFG_STRING, OFF(pg_hba_extra), NULL, false, 0, 0,
     "extra pg_hba.conf lines, separated by ';'"},
    {"api", "listen", CMN_CFG_STRING, OFF(api_listen), "127.0.0.1:8008", false, 0, 0,
     "host:port of the REST API"},
    {"api", "connect_address", CMN_CFG_STRING, OFF(api_connect_address), NULL, false, 0, 0, NULL},
    {"api", "username", CMN_CFG_STRING, OFF(api_username), NULL, false, 0, 0,
     "basic auth for mutating endpoints"},
    {"api", "password", CMN_CFG_SECRET, OFF(api_password), NULL, false, 0, 0, NULL},
    {"api", "certfile", CMN_CFG_STRING, OFF(api_certfile), NULL, false, 0, 0,
     "the REST API's certificate (PEM): it serves https"},
    {"api", "keyfile", CMN_CFG_STRING, OFF(api_keyfile), NULL, false, 0, 0,
     "its private key (PEM)"},
    {"api", "cafile", CMN_CFG_STRING, OFF(api_cafile), NULL, false, 0, 0,
     "the CA the members' REST APIs are checked against (agents, CLI)"},
    {"backup", "repo_path", CMN_CFG_STRING, OFF(backup_repo_path), NULL, false, 0, 0,
     "pgBackRest repository folder (absolute); backups and WAL archiving are on when set"},
    {"backup", "stanza", CMN_CFG_STRING, OFF(backup_stanza), NULL, false, 0, 0,
     "pgBackRest stanza (default: the cluster name)"},
    {"backup", "retention_full", CMN_CFG_INT, OFF(backup_retention_full), "2", false, 1, 9999,
     "full backups kept (older ones and their WAL are expired)"},
    {"backup", "retention_diff", CMN_CFG_INT, OFF(backup_retention_diff), "0", false, 0, 9999,
     "differential backups kept (0: as many as the full ones allow)"},
    {"backup", "compress", CMN_CFG_STRING, OFF(backup_compress), "zst", false, 0, 0,
     "none, gz, lz4, zst or bz2"},
    {"backup", "cipher_pass", CMN_CFG_SECRET, OFF(backup_cipher_pass), NULL, false, 0, 0,
     "repository encryption passphrase (aes-256-cbc); none: not encrypted"},
    {"backup", "process_max", CMN_CFG_INT, OFF(backup_process_max), "2", false, 1, 64,
     "parallel processes for backup, restore and WAL archiving"},
    {"backup", "archive_async", CMN_CFG_BOOL, OFF(backup_archive_async), "off", false, 0, 0,
     "push WAL in the background, several segments at a time (a spool folder); off by "
     "default: pgBackRest 2.45's background push can stall a segment for archive-timeout"},
    {"backup", "pgbackrest", CMN_CFG_STRING, OFF(backup_pgbackrest), "/usr/bin/pgbackrest", false,
     0, 0, "the pgbackrest program"},
    {"backup", "replica_from_backup", CMN_CFG_BOOL, OFF(backup_replica_from_backup), "on", false, 0,
     0,
     "new replicas and reinit restore the latest backup, then replay the archive and stream "
     "(pg_basebackup from the leader when that fails)"},
    {"backup", "schedule_full", CMN_CFG_STRING, OFF(backup_schedule_full), NULL, false, 0, 0,
     "full backups: an interval (1w) or cron in UTC (0 1 * * 0); the leader runs them"},
    {"backup", "schedule_diff", CMN_CFG_STRING, OFF(backup_schedule_diff), NULL, false, 0, 0,
     "differential backups, the same way"},
    {"backup", "schedule_incr", CMN_CFG_STRING, OFF(backup_schedule_incr), NULL, false, 0, 0,
     "incremental backups, the same way"},
    {"backup", "repo_host", CMN_CFG_STRING, OFF(backup_repo_host), NULL, false, 0, 0,
     "host[:port] of the repository host (`pgwarden repo-server`, pgBackRest's TLS server, "
     "port 8432 by default); repo_path is then the path there"},
    {"backup", "tls_ca_file", CMN_CFG_STRING, OFF(backup_tls_ca_file), NULL, false, 0, 0,
     "with repo_host: the CA that signed the certificates of every member and of the "
     "repository host"},
    {"backup", "tls_cert_file", CMN_CFG_STRING, OFF(backup_tls_cert_file), NULL, false, 0, 0,
     "with repo_host: this host's certificate, as client and as server"},
    {"backup", "tls_key_file", CMN_CFG_STRING, OFF(backup_tls_key_file), NULL, false, 0, 0,
     "with repo_host: its private key"},
    {"backup", "tls_listen", CMN_CFG_STRING, OFF(backup_tls_listen), "0.0.0.0:8432", false, 0, 0,
     "with repo_host: host:port of this host's own pgBackRest TLS server (the repository "
     "host reaches the member's data through it for backups)"},
    {"backup", "tls_connect_address", CMN_CFG_STRING, OFF(backup_tls_connect_address), NULL, false,
     0, 0,
     "host:port the repository host uses to reach this member's TLS server (default: "
     "PostgreSQL's connect host and the tls_listen port)"},
    {"backup", "tls_client_cn", CMN_CFG_STRING, OFF(backup_tls_client_cn), "pgwarden", false, 0, 0,
     "the certificate common name (CN) the TLS servers accept"},
    {"backup", "work_dir", CMN_CFG_STRING, OFF(backup_work_dir), "/var/lib/pgwarden", false, 0, 0,
     "repository host: where its pgbackrest.conf, log and lock folders go"},
};

static int check_value(const struct cmn_cfg_key *k, const char *value, char *why, size_t why_size)
{
	static const char *const compress[] = {"none", "gz", "lz4", "zst", "bz2"};

	if (strcmp(k->section, "backup") != 0)
		return PGW_OK;
	if (strncmp(k->name, "schedule_", 9) == 0) {
		struct schedule sched;

		return schedule_parse(value, &sched, why, why_size) == 0 ? PGW_OK : PGW_EINVAL;
	}
	if (strcmp(k->name, "compress") == 0) {
		for (size_t i = 0; i < sizeof(compress) / sizeof(compress[0]); i++)
			if (strcmp(value, compress[i]) == 0)
				return PGW_OK;
		snprintf(why, why_size, "expected none, gz, lz4, zst or bz2");
		return PGW_EINVAL;
	}
	if ((strcmp(k->name, "repo_path") == 0 || strcmp(k->name, "pgbackrest") == 0 ||
	     strcmp(k->name, "work_dir") == 0 ||
	     (strncmp(k->name, "tls_", 4) == 0 && strstr(k->name, "_file"))) &&
	    value[0] != '/') {
		snprintf(why, why_size, "expected an absolute path");
		return PGW_EINVAL;
	}
	if (strcmp(k->name, "stanza") == 0) {
		for (const char *p = value; *p; p++)
			if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') {
				snprintf(why, why_size, "letters, digits, '-', '_' and '.' only");
				return PGW_EINVAL;
			}
		if (!value[0]) {
			snprintf(why, why_size, "empty");
			return PGW_EINVAL;
		}
	}
	/* They end up in pgbackrest.conf, one line each. */
	if (strpbrk(value, "\n\r")) {
		snprintf(why, why_size, "a line break");
		return PGW_EINVAL;
	}
	return PGW_OK;
}

const struct cmn_cfg_schema agent_config_schema = {
    .sections = sections,
    .n_sections = sizeof(sections) / sizeof(sections[0]),
    .keys = keys,
    .n_keys = sizeof(keys) / sizeof(keys[0]),
    .check = check_value,
};

static int check_tag(struct agent_config *cfg, const char *name, bool *out, char *err,
		     size_t err_size)
{
	const char *v = cmn_kvlist_get(&cfg->tags, name);

	*out = false;
	if (!v)
		return PGW_OK;
	if (cmn_parse_bool(v, out) != PGW_OK) {
		const char *origin = "";

		for (size_t i = 0; i < cfg->tags.n; i++)
			if (strcmp(cfg->tags.items[i].key, name) == 0)
				origin = cfg->tags.items[i].origin;
		snprintf(err, err_size, "%s: bad value '%s' for '%s' in [tags]: expected on or off",
			 origin, v, name);
		return PGW_EINVAL;
	}
	return PGW_OK;
}

/* *field, when not configured: <node_dir>/<name>. */
static int default_in_node_dir(const struct agent_config *cfg, const char *name, char **field)
{
	size_t l;

	if (*field)
		return PGW_OK;
	l = strlen(cfg->node_dir) + strlen(name) + 2;
	*field = malloc(l);
	if (!*field)
		return PGW_ENOMEM;
	snprintf(*field, l, "%s/%s", cfg->node_dir, name);
	return PGW_OK;
}

/* [postgresql] listen and connect_address, [api] listen and its TLS and password:
 * split and checked; the REST API's URL for the others. */
static int check_addresses(struct agent_config *cfg, const char *where, char *err, size_t err_size)
{
	if (cmn_split_hostport(cfg->pg_listen, cfg->pg_host, sizeof(cfg->pg_host), &cfg->pg_port) !=
	    PGW_OK) {
		snprintf(err, err_size,
			 "%s: bad value '%s' for 'listen' in [postgresql]: expected host:port",
			 where, cfg->pg_listen);
		return PGW_EINVAL;
	}
	const char *pca = cfg->pg_connect_address ? cfg->pg_connect_address : cfg->pg_listen;

	if (cmn_split_hostport(pca, cfg->pg_connect_host, sizeof(cfg->pg_connect_host),
			       &cfg->pg_connect_port) != PGW_OK) {
		snprintf(err, err_size,
			 "%s: bad value '%s' for 'connect_address' in [postgresql]: expected "
			 "host:port",
			 where, pca);
		return PGW_EINVAL;
	}
	if (cmn_split_hostport(cfg->api_listen, cfg->api_host, sizeof(cfg->api_host),
			       &cfg->api_port) != PGW_OK) {
		snprintf(err, err_size,
			 "%s: bad value '%s' for 'listen' in [api]: expected host:port", where,
			 cfg->api_listen);
		return PGW_EINVAL;
	}
	if (cfg->api_username && (!cfg->api_password || !cfg->api_password[0])) {
		snprintf(err, err_size,
			 "%s: [api] has a username but an empty password: set 'password' (an "
			 "empty one would let anyone switch over, restart or reinit)",
			 where);
		return PGW_EINVAL;
	}
	if (!cfg->api_certfile != !cfg->api_keyfile) {
		snprintf(err, err_size, "%s: [api] needs both certfile and keyfile for TLS", where);
		return PGW_EINVAL;
	}
	snprintf(cfg->api_connect, sizeof(cfg->api_connect), "%s://%s",
		 cfg->api_certfile ? "https" : "http",
		 cfg->api_connect_address ? cfg->api_connect_address : cfg->api_listen);
	return PGW_OK;
}

/* How the member connects to the others (connect_sslmode) and whom it accepts as one
 * (allowed_networks, its own address within them). */
static int check_connections(struct agent_config *cfg, const char *where, char *err,
			     size_t err_size)
{
	char why[200];
	static const char *const modes[] = {"disable", "allow",	    "prefer",
					    "require", "verify-ca", "verify-full"};
	bool mode_ok = false;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		mode_ok = mode_ok || strcmp(cfg->connect_sslmode, modes[i]) == 0;
	if (!mode_ok) {
		snprintf(err, err_size,
			 "%s: bad value '%s' for 'connect_sslmode' in [postgresql]: expected "
			 "disable, allow, prefer, require, verify-ca or verify-full",
			 where, cfg->connect_sslmode);
		return PGW_EINVAL;
	}
	if (strncmp(cfg->connect_sslmode, "verify-", 7) == 0 && !cfg->connect_sslrootcert) {
		snprintf(
		    err, err_size,
		    "%s: connect_sslmode %s in [postgresql] needs connect_sslrootcert (the CA)",
		    where, cfg->connect_sslmode);
		return PGW_EINVAL;
	}
	if (cmn_networks_check(cfg->allowed_networks, why, sizeof(why)) != PGW_OK) {
		snprintf(err, err_size, "%s: 'allowed_networks' in [cluster]: %s", where, why);
		return PGW_EINVAL;
	}
	if (cfg->allowed_networks && *cfg->allowed_networks &&
	    !cmn_host_in_networks(cfg->pg_connect_host, cfg->allowed_networks)) {
		snprintf(err, err_size,
			 "%s: this member's PostgreSQL address %s is not within allowed_networks "
			 "(%s): members must publish address literals within them",
			 where, cfg->pg_connect_host, cfg->allowed_networks);
		return PGW_EINVAL;
	}
	return PGW_OK;
}

int agent_config_load(const char *path, struct agent_config *cfg, char *err, size_t err_size)
{
	const char *where = path ? path : "configuration";

	memset(cfg, 0, sizeof(*cfg));
	if (cmn_config_load(&agent_config_schema, cfg, path, err, err_size) != PGW_OK)
		return PGW_EINVAL;
	if (cluster_check_timing(cfg->ttl_ms, cfg->loop_wait_ms, cfg->retry_timeout_ms, err,
				 err_size) != PGW_OK) {
		char tmp[512];

		snprintf(tmp, sizeof(tmp), "%s: [cluster] %s", where, err);
		snprintf(err, err_size, "%s", tmp);
		return PGW_EINVAL;
	}
	for (const char *p = cfg->member_name; *p; p++) {
		if (*p == '/' || *p <= ' ') {
			snprintf(err, err_size,
				 "%s: bad value '%s' for 'member' in [cluster]: no '/' or spaces",
				 where, cfg->member_name);
			return PGW_EINVAL;
		}
	}
	if (check_addresses(cfg, where, err, err_size) != PGW_OK ||
	    check_connections(cfg, where, err, err_size) != PGW_OK)
		return PGW_EINVAL;
	if (cfg->data_dir[0] != '/') {
		snprintf(err, err_size, "%s: 'data_dir' in [postgresql] must be an absolute path",
			 where);
		return PGW_EINVAL;
	}
	if (check_tag(cfg, "nofailover", &cfg->nofailover, err, err_size) != PGW_OK ||
	    check_tag(cfg, "noloadbalance", &cfg->noloadbalance, err, err_size) != PGW_OK ||
	    check_tag(cfg, "nosync", &cfg->nosync, err, err_size) != PGW_OK ||
	    check_tag(cfg, "clonefrom", &cfg->clonefrom, err, err_size) != PGW_OK)
		return PGW_EINVAL;
	if (cfg->memory == 0)
		cfg->memory = cmn_physical_memory();
	{
		char *buf = cfg->node_dir, *slash;
		size_t size = sizeof(cfg->node_dir);

		snprintf(buf, size, "%s", cfg->data_dir);
		while ((slash = strrchr(buf, '/')) && slash[1] == '\0')
			*slash = '\0';
		slash = strrchr(buf, '/');
		if (slash && slash != buf)
			*slash = '\0';
		else
			snprintf(buf, size, "/tmp");
	}
	if (default_in_node_dir(cfg, "run", &cfg->socket_dir) != PGW_OK ||
	    default_in_node_dir(cfg, "pgpass", &cfg->pgpass) != PGW_OK)
		return PGW_ENOMEM;
	return agent_config_check_backup(cfg, where, err, err_size);
}

/* host[:port], the port defaulting to pgBackRest's TLS port. */
static int split_tls_address(const char *value, char *host, size_t host_size, int *port)
{
	char tmp[300];

	if (!strchr(value, ':')) {
		snprintf(tmp, sizeof(tmp), "%s:%d", value, AGENT_BACKUP_TLS_PORT);
		value = tmp;
	}
	return cmn_split_hostport(value, host, host_size, port);
}

int agent_config_check_backup(struct agent_config *cfg, const char *where, char *err,
			      size_t err_size)
{
	bool repository = agent_config_is_repository(cfg);

	if (cfg->backup_repo_host && !cfg->backup_repo_path) {
		cfg->backup_repo_path = strdup("/var/lib/pgbackrest");
		if (!cfg->backup_repo_path)
			return PGW_ENOMEM;
	}
	if (cfg->backup_repo_host &&
	    split_tls_address(cfg->backup_repo_host, cfg->repo_host, sizeof(cfg->repo_host),
			      &cfg->repo_port) != PGW_OK) {
		snprintf(err, err_size,
			 "%s: bad value '%s' for 'repo_host' in [backup]: expected host or "
			 "host:port",
			 where, cfg->backup_repo_host);
		return PGW_EINVAL;
	}
	if (cfg->backup_repo_host || repository) {
		/* The repository host's own check is repo-server's (the CLI may read a
		 * repository folder alone, with no TLS at all). */
		if (!repository && !agent_config_has_tls(cfg)) {
			snprintf(err, err_size,
				 "%s: [backup] repo_host needs tls_ca_file, tls_cert_file and "
				 "tls_key_file (pgBackRest's TLS protocol)",
				 where);
			return PGW_EINVAL;
		}
		if (split_tls_address(cfg->backup_tls_listen, cfg->tls_host, sizeof(cfg->tls_host),
				      &cfg->tls_port) != PGW_OK) {
			snprintf(err, err_size,
				 "%s: bad value '%s' for 'tls_listen' in [backup]: expected "
				 "host:port",
				 where, cfg->backup_tls_listen);
			return PGW_EINVAL;
		}
		snprintf(cfg->tls_connect_host, sizeof(cfg->tls_connect_host), "%s",
			 cfg->pg_connect_host);
		cfg->tls_connect_port = cfg->tls_port;
		if (cfg->backup_tls_connect_address &&
		    split_tls_address(cfg->backup_tls_connect_address, cfg->tls_connect_host,
				      sizeof(cfg->tls_connect_host),
				      &cfg->tls_connect_port) != PGW_OK) {
			snprintf(err, err_size,
				 "%s: bad value '%s' for 'tls_connect_address' in [backup]: "
				 "expected host:port",
				 where, cfg->backup_tls_connect_address);
			return PGW_EINVAL;
		}
	}
	if (cfg->backup_repo_path && !cfg->backup_stanza) {
		struct cmn_cfg_key k = {.section = "backup", .name = "stanza"};
		char why[200];

		cfg->backup_stanza = strdup(cfg->cluster_name);
		if (!cfg->backup_stanza)
			return PGW_ENOMEM;
		if (check_value(&k, cfg->backup_stanza, why, sizeof(why)) != PGW_OK) {
			snprintf(err, err_size,
				 "%s: the cluster name '%s' cannot be the pgBackRest stanza (%s): "
				 "set 'stanza' in [backup]",
				 where, cfg->cluster_name, why);
			return PGW_EINVAL;
		}
	}
	return PGW_OK;
}

bool agent_config_has_tls(const struct agent_config *cfg)
{
	return cfg->backup_tls_ca_file && cfg->backup_tls_cert_file && cfg->backup_tls_key_file;
}

bool agent_config_is_repository(const struct agent_config *cfg)
{
	return !cfg->member_name && cfg->backup_repo_path && !cfg->backup_repo_host;
}

int agent_config_repository(struct agent_config *cfg, const char *where, char *err, size_t err_size)
{
	if (!agent_config_is_repository(cfg)) {
		snprintf(err, err_size,
			 "%s: not a repository host's configuration (it needs [backup] "
			 "repo_path and no [cluster] member)",
			 where);
		return PGW_EINVAL;
	}
	snprintf(cfg->node_dir, sizeof(cfg->node_dir), "%s", cfg->backup_work_dir);
	return agent_config_check_backup(cfg, where, err, err_size);
}

static const char *const dynamic_backup_keys[] = {
    "schedule_full", "schedule_diff", "schedule_incr", "retention_full",      "retention_diff",
    "compress",	     "process_max",   "archive_async", "replica_from_backup",
};
#define N_DYNAMIC_BACKUP (sizeof(dynamic_backup_keys) / sizeof(dynamic_backup_keys[0]))

const struct cmn_cfg_key *agent_config_dynamic_backup_key(const char *name)
{
	for (size_t i = 0; i < N_DYNAMIC_BACKUP; i++) {
		if (strcmp(name, dynamic_backup_keys[i]) != 0)
			continue;
		for (size_t j = 0; j < sizeof(keys) / sizeof(keys[0]); j++)
			if (strcmp(keys[j].section, "backup") == 0 &&
			    strcmp(keys[j].name, name) == 0)
				return &keys[j];
	}
	return NULL;
}

int agent_config_check_dynamic_backup(const char *name, const char *value, char *why,
				      size_t why_size)
{
	struct agent_config scratch;
	int rc;

	if (!agent_config_dynamic_backup_key(name)) {
		snprintf(why, why_size, "'backup.%s' cannot be set in the dynamic configuration",
			 name);
		return PGW_EINVAL;
	}
	memset(&scratch, 0, sizeof(scratch));
	rc = cmn_config_set(&agent_config_schema, &scratch, "backup", name, value, why, why_size);
	cmn_config_free(&agent_config_schema, &scratch);
	return rc == PGW_ENOMEM ? PGW_ENOMEM : rc == PGW_OK ? PGW_OK : PGW_EINVAL;
}

int agent_config_backup_snapshot(const struct agent_config *cfg, struct cmn_kvlist *out)
{
	char text[4200];

	for (size_t i = 0; i < N_DYNAMIC_BACKUP; i++)
		if (cmn_config_format(&agent_config_schema, cfg, "backup", dynamic_backup_keys[i],
				      text, sizeof(text)) &&
		    cmn_kvlist_set(out, dynamic_backup_keys[i], text, "node") != PGW_OK)
			return PGW_ENOMEM;
	return PGW_OK;
}

int agent_config_apply_dynamic_backup(struct agent_config *cfg, const struct cmn_kvlist *dyn,
				      const struct cmn_kvlist *node, bool *changed, char *why,
				      size_t why_size)
{
	int rc = PGW_OK;

	*changed = false;
	for (size_t i = 0; i < N_DYNAMIC_BACKUP; i++) {
		const char *name = dynamic_backup_keys[i];
		const char *want = dyn ? cmn_kvlist_get(dyn, name) : NULL;
		char before[4200], after[4200];
		bool had, has;

		if (!want && !node)
			continue;
		if (!want)
			want = cmn_kvlist_get(node, name);
		had = cmn_config_format(&agent_config_schema, cfg, "backup", name, before,
					sizeof(before));
		if (cmn_config_set(&agent_config_schema, cfg, "backup", name, want, why,
				   why_size) != PGW_OK) {
			rc = PGW_EINVAL;
			/* The previous value stays. */
			if (cmn_config_set(&agent_config_schema, cfg, "backup", name,
					   had ? before : NULL, after, sizeof(after)) != PGW_OK)
				return PGW_ENOMEM;
			continue;
		}
		has = cmn_config_format(&agent_config_schema, cfg, "backup", name, after,
					sizeof(after));
		if (had != has || (had && strcmp(before, after) != 0))
			*changed = true;
	}
	return rc;
}

void agent_config_free(struct agent_config *cfg)
{
	cmn_config_free(&agent_config_schema, cfg);
	cmn_kvlist_free(&cfg->dyn_parameters);
	memset(&cfg->dyn_parameters, 0, sizeof(cfg->dyn_parameters));
}

struct switchover_policy agent_config_switchover_policy(const struct agent_config *cfg)
{
	struct switchover_policy p = {.cluster_name = cfg->cluster_name,
				      .maximum_lag = cfg->maximum_lag_on_failover};

	return p;
}

const struct dyncfg_rules agent_config_dyncfg_rules = {
    .param_managed = pgconf_managed_reason,
    .param_node_only = pgconf_node_only_reason,
    .backup_key = agent_config_dynamic_backup_key,
    .backup_check = agent_config_check_dynamic_backup,
};

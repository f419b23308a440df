/*
 * The agent's node configuration (one INI file per node, every key overridable
 * by PGWARDEN_<SECTION>_<KEY>). Durations are milliseconds, sizes bytes.
 */
#ifndef PGW_AGENTCFG_H
#define PGW_AGENTCFG_H

#include "cluster/clustercfg.h"
#include "cluster/dyncfg.h"
#include "cluster/switchover.h"
#include "common/config.h"
#include "etcd/etcd.h"

#include <stdbool.h>
#include <stdint.h>

struct agent_config {
	/* [cluster] */
	char *cluster_name;
	char *namespace;
	char *allowed_networks; /* members' addresses must lie within (NULL: any) */
	char *member_name;
	int ttl_ms;
	int loop_wait_ms;
	int retry_timeout_ms;
	int64_t maximum_lag_on_failover;
	int primary_start_timeout_ms;
	int switchover_proxy_wait_ms;	  /* planned switchover: bound on waiting for the proxies */
	int shutdown_handover_timeout_ms; /* SIGTERM to the leader: hand over first (0: no) */
	char *log_level;
	/* [etcd] */
	struct cluster_etcd_config etcd;
	/* [postgresql] */
	char *data_dir;
	char *bin_dir;
	char *pg_listen;	  /* host:port postgres listens on */
	char *pg_connect_address; /* host:port others use to reach it */
	char *socket_dir;
	char *superuser;
	char *superuser_password;
	char *replication_user;
	char *replication_password;
	int64_t memory;
	bool use_pg_rewind;
	bool remove_data_on_rewind_failure;
	char *pgpass; /* passfile the agent writes (default <data_dir>/../pgpass) */
	char *pg_hba_extra;
	/* [api] */
	char *connect_sslmode;	   /* libpq sslmode toward other members (prefer) */
	char *connect_sslrootcert; /* CA for verify-ca / verify-full */
	char *api_listen;
	char *api_connect_address;
	char *api_username;
	char *api_password;
	char *api_certfile; /* TLS: the REST API's certificate and key (PEM) */
	char *api_keyfile;
	char *api_cafile; /* the CA other members' REST APIs are checked against */
	/* [backup]: pgBackRest, on when repo_path is set */
	char *backup_repo_path;
	char *backup_stanza; /* default: the cluster name */
	int backup_retention_full;
	int backup_retention_diff; /* 0: not set */
	char *backup_compress;
	char *backup_cipher_pass;
	int backup_process_max;
	bool backup_archive_async;
	char *backup_pgbackrest;	 /* the pgbackrest program */
	bool backup_replica_from_backup; /* clone replicas from the repository first */
	char *backup_schedule_full;	 /* schedule.h syntax; NULL or "": none */
	char *backup_schedule_diff;
	char *backup_schedule_incr;
	/* a repository host: members reach it over pgBackRest's TLS protocol */
	char *backup_repo_host;	    /* host[:port] of its `pgbackrest server` */
	char *backup_tls_ca_file;   /* CA that signed every certificate */
	char *backup_tls_cert_file; /* this host's certificate (client and server) */
	char *backup_tls_key_file;
	char *backup_tls_listen;	  /* host:port of this host's own `pgbackrest server` */
	char *backup_tls_connect_address; /* host:port the repository host uses */
	char *backup_tls_client_cn;	  /* certificate CN allowed to connect */
	char *backup_work_dir;		  /* repository host: its pgbackrest.conf, log, lock */
	/* free-form */
	struct cmn_kvlist parameters;
	struct cmn_kvlist tags;
	/* derived */
	char pg_host[256];
	int pg_port;
	char pg_connect_host[256];
	int pg_connect_port;
	char api_host[256];
	int api_port;
	char api_connect[300]; /* http://host:port */
	char tls_host[256];    /* [backup] tls_listen, split */
	int tls_port;
	char tls_connect_host[256]; /* [backup] tls_connect_address (default: PostgreSQL's host) */
	int tls_connect_port;
	char repo_host[256]; /* [backup] repo_host, split */
	int repo_port;
	bool nofailover, noloadbalance, nosync, clonefrom;
	char node_dir[4096]; /* the folder above data_dir (its parent) */
	/* set by the agent, not read from the file */
	struct cmn_kvlist dyn_parameters;     /* from etcd's config key (below [parameters]) */
	char synchronous_standby_names[1024]; /* what the leader keeps in postgresql.conf */
};

extern const struct cmn_cfg_schema agent_config_schema;

/* pgBackRest's TLS server port, when [backup] repo_host / tls_listen give none. */
#define AGENT_BACKUP_TLS_PORT 8432

/* Loads and cross-validates; err gets a file:line message on failure. */
int agent_config_load(const char *path, struct agent_config *cfg, char *err,
		      size_t err_size) PGW_WUR;
void agent_config_free(struct agent_config *cfg);
/*
 * The [backup] cross-checks shared by members and the repository host: repo_host and
 * tls_listen split, the TLS files required with either, the stanza's default. PGW_OK
 * or PGW_EINVAL with err set (where: the file's name).
 */
int agent_config_check_backup(struct agent_config *cfg, const char *where, char *err,
			      size_t err_size) PGW_WUR;
/*
 * A repository host's configuration, loaded leniently by the CLI (no member, no
 * PostgreSQL): node_dir becomes [backup] work_dir. err as agent_config_load's.
 */
int agent_config_repository(struct agent_config *cfg, const char *where, char *err,
			    size_t err_size) PGW_WUR;
/* No [cluster] member and a [backup] repo_path: the repository host's configuration. */
bool agent_config_is_repository(const struct agent_config *cfg);
/* [backup] tls_ca_file, tls_cert_file and tls_key_file are all set. */
bool agent_config_has_tls(const struct agent_config *cfg);
/*
 * The [backup] settings the dynamic configuration may set cluster-wide ("backup" in
 * etcd's config key): the schedule, retention, compression, process_max, archive_async
 * and replica_from_backup. Never the repository's place, the passphrase or a program
 * (a secret or code must not come from etcd). NULL when name is not one of them.
 */
const struct cmn_cfg_key *agent_config_dynamic_backup_key(const char *name);
/* PGW_EINVAL with why set when value is not valid for that [backup] setting. */
int agent_config_check_dynamic_backup(const char *name, const char *value, char *why,
				      size_t why_size) PGW_WUR;
/* The node's own values of those settings, as text (an unset one is left out). */
int agent_config_backup_snapshot(const struct agent_config *cfg, struct cmn_kvlist *out) PGW_WUR;
/*
 * Sets those settings from dyn (the dynamic configuration's "backup"), and those dyn
 * leaves out from node (a snapshot; NULL: left as they are). *changed tells whether
 * any value changed. A value that does not check keeps the previous one (why says).
 */
int agent_config_apply_dynamic_backup(struct agent_config *cfg, const struct cmn_kvlist *dyn,
				      const struct cmn_kvlist *node, bool *changed, char *why,
				      size_t why_size) PGW_WUR;

/* What the dynamic configuration may set, as this configuration's schema and
 * pgconf's managed and node-only parameters say. */
extern const struct dyncfg_rules agent_config_dyncfg_rules;

/* The switchover checks' view of this configuration. */
struct switchover_policy agent_config_switchover_policy(const struct agent_config *cfg);

#endif

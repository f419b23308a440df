/*
 * The agent's state: one struct agent, owned by the loop thread (the REST API's
 * threads hand it requests through req, under req_lock), and the jobs it watches. The
 * functions on it are in agent/parts.h.
 */
#ifndef PGW_AGENT_TYPES_H
#define PGW_AGENT_TYPES_H

#include "agent/api.h"
#include "agent/ha.h"
#include "agent/metrics.h"
#include "cluster/dcs.h"
#include "cluster/follow.h"
#include "node/agentcfg.h"
#include "node/backup.h"
#include "node/pgctl.h"
#include "etcd/etcd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum job_kind {
	JOB_NONE,
	JOB_INITDB,
	JOB_CLONE,
	JOB_START,
	JOB_REWIND,
	JOB_PROMOTE,
};

/* What the agent reports while a job of each kind runs ("starting", ...). */
extern const char *const job_state[];

/* A long-running command the HA loop watches without blocking on it. */
struct job {
	enum job_kind kind;
	pid_t pid;
	int64_t started_ms;
	char upstream_host[256]; /* clone / rewind source, replica's upstream after */
	int upstream_port;
	bool from_repo;	 /* JOB_CLONE: pgbackrest restore from the repository */
	char source[64]; /* JOB_CLONE: the member to clone from with pg_basebackup */
};

struct agent {
	struct agent_config cfg;
	struct backup_state backup;
	bool repo_clone_failed; /* the last restore from the repository failed: basebackup next */
	struct etcd_client *etcd;
	struct dcs dcs;
	struct pgctl pg;
	struct api_state api;
	struct api_server *api_srv;

	int64_t lease_id;
	int64_t lease_deadline_ms; /* local clock: lease surely valid until then */
	int64_t last_etcd_error_log_ms;

	struct dcs_cluster cluster;
	bool dcs_ok;
	struct dcs_cache cache;	   /* kept current by the watch thread */
	int64_t last_full_read_ms; /* last Range of the whole prefix by the loop */
	int64_t last_renew_try_ms;
	int64_t last_renew_ok_ms; /* etcd answered a keepalive or grant then */
	struct pgctl_probe probe;
	struct pgctl_controldata cd;
	bool cd_valid;
	char local_sysid[32];

	struct job job;
	bool bootstrapping;
	int64_t bootstrap_deadline_ms;
	char configured_upstream[300];
	int64_t primary_down_since_ms;
	int64_t race_wait_since_ms; /* racing waits for a member that does not answer (0: no) */
	int64_t stopped_at_wait_since_ms; /* racing waits for the old leader's last WAL */
	int64_t not_streaming_since_ms;
	double caught_up_at;  /* replica: unix seconds it was last seen caught up (0: not yet) */
	int replica_timeline; /* newest timeline our replica has received */
	int64_t switchover_seen_ms; /* a switchover request is pending since (0: none) */
	/* The switchover this leader is carrying out: the failover key's mod_revision
	 * (0: none), since when, and whether it is waiting for the proxies to drain. */
	int64_t so_revision;
	int64_t so_started_ms;
	bool so_waiting;
	bool so_release_early; /* its fast stop: the key goes at the shutdown checkpoint */
	bool so_released;      /* and went */
	int promote_from_timeline;
	uint64_t promote_from_lsn;
	char promote_reason[DCS_NAME_MAX + 32]; /* recorded in the history key */
	bool after_promote;
	bool archive_lookups_off;  /* restore_command '' for a promotion (actions.c) */
	bool archiving_off;	   /* archive_command '' for a stop (stop_postgres) */
	bool conf_written;	   /* this agent wrote postgresql.conf (not only an earlier one) */
	bool promote_after_reload; /* a promotion waits one short loop for its reload */
	bool promote_reloaded;	   /* ... and this loop is that one (run_once) */

	char *published_member;
	int64_t published_lease;
	uint64_t published_optime;
	int published_timeline;
	int64_t published_status_ms;

	bool fence_armed;

	/* The dynamic configuration (etcd config key) as applied, and the node's own values. */
	int64_t dyn_revision; /* config key mod_revision applied (-1: none yet) */
	int node_ttl_ms, node_loop_wait_ms, node_retry_timeout_ms;
	int64_t node_max_lag;
	struct cmn_kvlist node_backup; /* the node's own [backup] values dyncfg may override */
	bool sync_mode, sync_strict;
	int sync_count;
	bool conf_dirty;	   /* parameters changed: rewrite postgresql.conf and reload */
	bool sync_unsure;	   /* a sync key write timed out: its outcome is unknown */
	int lease_ttl_ms;	   /* the TTL our lease was granted with */
	int64_t sync_changed_ms;   /* synchronous_standby_names last changed (leader) */
	uint64_t sync_confirm_lsn; /* joining standbys must have flushed this far */
	/* Each standby's last reply_time (as text) and when it last changed, on our clock:
	 * a standby whose replies stop is not fit to be synchronous (see manage_sync). */
	struct {
		int pid; /* of the walsender (a standby's new connection is a new entry) */
		char reply[40];
		int64_t changed_ms;
		bool silent; /* reported as silent (logged once) */
	} replies[DCS_MAX_MEMBERS];

	enum ha_action last_action;
	char last_reason[256];

	struct agent_counters counters;			  /* for GET /metrics */
	struct metrics_standby standbys[DCS_MAX_MEMBERS]; /* leader: its replicas' lag */
	size_t n_standbys;

	/*
	 * Shutting down as the leader (SIGTERM, SIGINT): the role goes to a replica
	 * through a planned switchover first, bounded by shutdown_handover_timeout.
	 */
	int signals_seen; /* shutdown signals the loop has acted on */
	struct {
		bool active;
		int64_t started_ms, deadline_ms;
		bool seen; /* our switchover request was in a view of etcd */
	} ho;

	struct dcs_follow follow; /* keeps cache current */
	struct {
		char leader[600], failover[600], initialize[600], proxies[600], members[600];
	} wake_keys; /* what wakes the loop at once (on_cluster_change) */
	const char *config_path;
	pthread_mutex_t req_lock; /* guards req, req_waits_job */
	pthread_cond_t req_cond;
	struct agent_req *req; /* a REST request for the loop (NULL: none) */
	bool req_waits_job;    /* the request is answered when the job ends */
	bool req_stopping;     /* shutting down: no more requests */
	pthread_mutex_t wake_lock;
	pthread_cond_t wake_cond;
	bool woken;
	/* A member's record wakes the loop: no data directory yet, or waiting on the
	 * leader's record (its address, its checkpoint after a promotion). */
	atomic_bool wake_on_members;
	atomic_bool members_changed; /* a member's record changed since the loop read etcd */
};

enum req_kind { REQ_RESTART, REQ_RELOAD, REQ_REINIT };

/* A restart / reload / reinitialize handed from the HTTP thread to the HA loop. */
struct agent_req {
	enum req_kind kind;
	bool pending_only; /* restart only with a pending parameter change */
	bool done, abandoned;
	unsigned int code;
	char message[400];
};

#endif

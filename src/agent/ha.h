/*
 * The HA decision: given what etcd says about the cluster and what the agent
 * sees of its own PostgreSQL, which one action to take now. Pure functions, no
 * I/O, so every rule has a unit test (tests/unit/agent/test_ha.c).
 */
#ifndef PGW_HA_H
#define PGW_HA_H

#include "cluster/dcs.h"
#include "node/pgctl.h"

#include <stdbool.h>
#include <stdint.h>

enum ha_action {
	HA_WAIT,	  /* nothing to do now (reason says why) */
	HA_BOOTSTRAP,	  /* race for the initialize key, then initdb */
	HA_CLONE,	  /* pg_basebackup from member */
	HA_START_STANDBY, /* start as a replica of member ("" = no upstream yet) */
	HA_START_PRIMARY, /* restart our crashed primary: we still hold the leader key */
	HA_REWIND,	  /* pg_rewind from member, then start as its replica */
	HA_RACE,	  /* no leader: ask the peers, take the key if healthiest, promote */
	HA_PROMOTE,	  /* we hold the key but run as a replica */
	HA_KEEP_LEADER,	  /* healthy leader: slots, status */
	HA_DEMOTE,	  /* stop at once: we must not accept writes */
	HA_FOLLOW,	  /* point primary_conninfo at member, reload */
	HA_RELEASE,	  /* our primary cannot come back: give up the key */
	HA_STOP_STUCK,	  /* replica stuck on an old timeline: stop it so it can be rewound */
	HA_SWITCHOVER,	  /* planned: checkpoint, stop cleanly, hand the key to member */
};

struct ha_input {
	int64_t now_ms;
	const char *me;
	bool nofailover;
	int64_t maximum_lag;
	/* etcd */
	bool dcs_ok; /* this loop's read succeeded; cluster valid only then */
	const struct dcs_cluster *cluster;
	int64_t lease_id; /* 0: none */
	int64_t lease_deadline_ms;
	int demote_margin_ms;
	/* local PostgreSQL */
	const struct pgctl_probe *pg;
	bool cd_valid; /* controldata below was read (only when postgres is down) */
	struct pgctl_controldata cd;
	char local_sysid[32];
	int64_t primary_down_since_ms; /* we hold the key and our primary is down since */
	int primary_start_timeout_ms;
	char
	    configured_upstream[300]; /* host:port in our primary_conninfo ("" none, "?" unknown) */
	int64_t not_streaming_since_ms; /* replica under a leader, not streaming since (0: is) */
	int stuck_replica_ms;
	int64_t now_wall_s;	       /* for scheduled switchovers */
	uint64_t fork_lsn;	       /* where our stopped data's timeline ended (history), 0 */
	int64_t switchover_waiting_ms; /* how long a pending switchover has kept us waiting */
	int switchover_grace_ms;       /* after that, a switchover's candidate lost its turn */
};

struct ha_decision {
	enum ha_action action;
	char member[DCS_NAME_MAX]; /* source / upstream / new leader, when the action has one */
	char reason[256];
	bool wait_leader_record; /* HA_WAIT until the leader's member record changes */
};

/* What the agent learned from a peer's REST API during the race. */
struct ha_peer {
	char name[DCS_NAME_MAX];
	bool reachable;	 /* answered on its REST API */
	bool is_primary; /* running and not in recovery (when reachable) */
	bool nofailover;
	uint64_t lsn; /* live when reachable, else as it last published it in etcd */
	int timeline;
};

void ha_decide(const struct ha_input *in, struct ha_decision *out);
/*
 * true when we may take the leader key: no reachable primary, nobody eligible ahead,
 * an unreachable member judged by the position it last published in etcd (not answering
 * is not being behind: its REST API may be flooded while its data is ahead).
 */
bool ha_healthiest(const struct ha_input *in, const struct ha_peer *peers, size_t n_peers,
		   char *reason, size_t reason_size);
const char *ha_action_name(enum ha_action a);
/* Member to clone from: a running clonefrom-tagged replica, else the leader; NULL if none. */
const struct dcs_member *ha_clone_source(const struct dcs_cluster *c, const char *me);

/* One of the leader's walsenders, as pg_stat_replication shows it. */
struct ha_standby {
	char name[DCS_NAME_MAX]; /* application_name: the member's name */
	bool streaming;
	uint64_t flush; /* flush_lsn: what the standby has on disk */
};

/*
 * The replica a leader that is shutting down hands its role to: its member key says
 * it is a streaming replica, one of our walsenders streams to it, it is not tagged
 * nofailover, it is in the synchronous set when the cluster has one (as a planned
 * switchover requires), and it has flushed to within max_lag of leader_lsn; the most
 * advanced of those. NULL when none qualifies: why then says, member by member, why
 * not. The name returned points into c.
 */
const char *ha_handover_candidate(const struct dcs_cluster *c, const char *me,
				  const struct ha_standby *ws, size_t n_ws, uint64_t leader_lsn,
				  int64_t max_lag, char *why, size_t why_size);

/*
 * The lease rule, the one place it is written: a primary holding a lease valid until
 * deadline_ms must stop writing margin_ms before it (expiring), and its fence process
 * (fence.h) acts halfway through that margin if the agent itself stalls.
 */
bool ha_lease_expiring(int64_t now_ms, int64_t deadline_ms, int margin_ms);
int64_t ha_fence_deadline(int64_t deadline_ms, int margin_ms);

#endif

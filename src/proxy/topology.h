/*
 * What the proxy knows of the cluster, kept current by two threads: one follows
 * the cluster's etcd prefix with a watch (a cache of every key, as the agents
 * keep), the other confirms once a second that etcd still answers (a read of
 * the leader key), health-checks the replicas over their REST API
 * (/replica?lag=N, as HAProxy would) and publishes a snapshot for the event
 * loop, waking it at once when the leader changes.
 *
 * A third thread registers the proxy in etcd: <prefix>proxies/<name> on the
 * proxy's own lease (ttl = the cluster's ttl, kept alive every ttl/3), with
 * {"drained": R}, R the failover key's mod_revision once the event loop has
 * drained its primary pools for that planned switchover (0: none). The leader
 * waits for every live proxy key to say so before it stops PostgreSQL.
 */
#ifndef PGW_TOPOLOGY_H
#define PGW_TOPOLOGY_H

#include "cluster/dcs.h"
#include "proxy/proxycfg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct cmn_loop;

#define TOPO_HISTORY 5

struct proxy_member {
	char name[DCS_NAME_MAX];
	char host[256];
	int port;
	bool is_leader;
	bool replica_ok; /* running replica within max_replica_lag, not noloadbalance */
	/* As its member key last said, and its lag (bytes, -1: unknown; seconds) as its
	 * REST API's health check last said: the status page */
	char role[16];
	char state[32];
	int timeline;
	int64_t lag;
	double lag_seconds;
};

struct proxy_topology {
	uint64_t version; /* changes with every published snapshot */
	bool has_leader;
	char leader[DCS_NAME_MAX];
	char leader_host[256];
	int leader_port;
	int64_t confirmed_ms; /* monotonic time etcd last confirmed this view */
	bool etcd_ok;
	bool switchover_pending;
	/* The pending switchover (the failover key), when switchover_pending. */
	int64_t switchover_revision; /* the failover key's mod_revision */
	char switchover_leader[DCS_NAME_MAX];
	char switchover_candidate[DCS_NAME_MAX];
	bool switchover_drain;	  /* the leader has checkpointed: hold and drain now */
	bool leader_primary;	  /* the leader's member key says it runs as primary */
	bool registered;	  /* our proxies/<name> key is on a live lease */
	int64_t drained_reported; /* the revision our key says drained (0: none) */
	struct proxy_member members[DCS_MAX_MEMBERS];
	/* The last leader changes, from the history key, newest first (the status page) */
	struct dcs_history_entry history[TOPO_HISTORY];
	size_t n_history;
	size_t n_members;
	char etcd_error[200];
};

struct proxy_topo_watch;

/* Starts both threads; the loop is woken after each published change. */
int proxy_topology_start(const struct proxy_config *cfg, struct cmn_loop *loop,
			 struct proxy_topo_watch **out) PGW_WUR;
/* Copies the latest snapshot. */
void proxy_topology_get(struct proxy_topo_watch *w, struct proxy_topology *out);
/*
 * Asks the registration thread to write {"drained": revision} to our proxies/ key
 * now (0: back to none). Never blocks on etcd (loop thread).
 */
void proxy_topology_report_drained(struct proxy_topo_watch *w, int64_t revision);
void proxy_topology_stop(struct proxy_topo_watch *w);

#endif

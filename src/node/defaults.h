/*
 * Every timing default of the agent in one place.
 *
 * Failover budget with the defaults (primary host killed): the lease expires at
 * most ttl after the last renewal (etcd checks expiry every 500 ms), the watch
 * wakes the replicas at once, the healthiest takes the key and promotes in well
 * under a second: about ttl - loop_wait/2 + 0.5 s on average, 4-5 s at worst.
 * The lease timing itself (ttl, loop_wait, retry_timeout, the demote margin) is in
 * cluster/clustercfg.h: the proxy trusts the same ttl.
 */
#ifndef PGW_AGENT_DEFAULTS_H
#define PGW_AGENT_DEFAULTS_H

#include "cluster/clustercfg.h"

#define AGENT_DEFAULT_MAX_LAG		    "1MB"
#define AGENT_DEFAULT_PRIMARY_START_TIMEOUT "10s"
/*
 * Planned switchover: the leader waits at most this long for every registered proxy
 * to report its primary pools drained (the proxies give up draining after their own
 * switchover_drain_timeout, 5 s by default, and report anyway).
 */
#define AGENT_DEFAULT_SWITCHOVER_PROXY_WAIT "8s"
/*
 * SIGTERM to the leader's agent: the leader role goes to a healthy replica through a
 * planned switchover first, bounded by this (0: no hand-over, stop at once). It covers
 * the checkpoint, switchover_proxy_wait, the clean stop and the candidate taking the key,
 * and must stay below what the supervisor waits before SIGKILL (Docker's
 * stop_grace_period, systemd's TimeoutStopSec).
 */
#define AGENT_DEFAULT_SHUTDOWN_HANDOVER_TIMEOUT "20s"

/* Bound on asking another member's REST API during the leader race. */
#define AGENT_PEER_TIMEOUT_MS 800
/*
 * The loop reads the whole cluster prefix at least this often, and at least every half
 * ttl (else it uses the watch cache). A watch on a member we are cut off from goes
 * silent without an error; the chaos suite's partitions showed a replica 16 s late to
 * see its leader's key expire when this was 10 s.
 */
#define AGENT_RESYNC_MS 10000
/* The leader publishes its WAL position at most this often. */
#define AGENT_STATUS_INTERVAL_MS 5000
/* libpq connect_timeout (s) and statement_timeout for the agent's own queries. */
#define AGENT_PG_CONNECT_TIMEOUT_S    2
#define AGENT_PG_STATEMENT_TIMEOUT_MS 2000
/* pg_ctl start waits this long for the server to accept connections. */
#define AGENT_PG_START_WAIT_S 15
/* pg_ctl promote / stop waits. */
#define AGENT_PG_START_TIMEOUT_S 60
#define AGENT_PG_STOP_TIMEOUT_S	 60
/* A switchover's candidate waits for the old leader's shutdown checkpoint, looking this
 * often, for up to this long a loop. */
#define AGENT_STOPPED_AT_POLL_MS 10
#define AGENT_STOPPED_AT_WAIT_MS 1000
/* A standby that never streams: how long before the agent looks at rewinding it. */
#define AGENT_STUCK_REPLICA_MS 15000

/* initdb and the first start: the bootstrap gives up (and lets another try) after. */
#define AGENT_BOOTSTRAP_TIMEOUT_MS 300000
/* pg_ctl stop -m immediate: bound on its run. */
#define AGENT_PG_IMMEDIATE_STOP_MS 30000
/* An etcd error is logged at most this often (the others are counted). */
#define AGENT_ETCD_ERROR_LOG_MS 5000
/* REST API: etcd's timeout for its requests, how long a switchover request waits for
 * the new leader, how long a restart / reinit request waits for the loop. */
#define AGENT_API_ETCD_TIMEOUT_MS    3000
#define AGENT_API_SWITCHOVER_WAIT_MS 60000
#define AGENT_API_REQUEST_TIMEOUT_MS 150000
/* How often the loop looks at a job that runs, and at a signalled promotion (the
 * proxies hold the clients of the primary until it is seen to be over). */
#define AGENT_JOB_POLL_MS     100
#define AGENT_PROMOTE_POLL_MS 20
/* A replica that a switchover may promote looks for the next timeline's history file in
 * the archive this often; the promotion trusts a look that ended twice this long ago. */
#define BACKUP_HISTORY_LOOK_MS 10000
/*
 * The members' archive-get (restore_command, the look above) gives up on a repository
 * host that makes no progress for this long (pgBackRest's io-timeout, 60 s by default;
 * a host it cannot resolve or reach costs it about twice that): PostgreSQL waits for the
 * one in flight before it sees a promotion, and takes a failure as "not in the archive"
 * (it streams, or asks again 5 s later). A restore's recovery keeps pgBackRest's default.
 */
#define BACKUP_ARCHIVE_GET_IO_TIMEOUT "--io-timeout=2"
/* The same for archive_command: longer, as the repository host syncs each segment before
 * it answers; a push that fails is tried again (a primary stopping waits for it). */
#define BACKUP_ARCHIVE_PUSH_IO_TIMEOUT "--io-timeout=5"
/* Before a promotion (and a primary's stop): the repository host must accept a
 * connection this soon (a lost SYN is sent again after 1 s), or the promotion runs without
 * archive lookups (the stop without archiving). */
#define BACKUP_REPO_ANSWER_MS 1200

#endif

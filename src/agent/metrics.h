/*
 * The agent's GET /metrics (Prometheus text format 0.0.4, no auth, as Patroni's).
 *
 * Patroni's metric names and labels ({scope="<cluster>",name="<member>"}), so its
 * dashboards and alert rules work unchanged, then pgwarden_* for what is ours: lease
 * renewals and their latency, the HA loop's duration, decisions by kind, the fence,
 * etcd errors, and (on the leader) each replica's lag in bytes and seconds.
 *
 * The HA loop fills a struct metrics_view from what it knows and renders the text once
 * per loop; a scrape only copies it, so it answers at once whatever etcd or PostgreSQL
 * are doing (the values are those of the last loop).
 */
#ifndef PGW_AGENT_METRICS_H
#define PGW_AGENT_METRICS_H

#include "agent/ha.h"
#include "cluster/dcs.h"
#include "common/doc.h"

#include <stdbool.h>
#include <stdint.h>

/* Counters the loop keeps (its thread only). */
struct agent_counters {
	uint64_t loops;
	double loop_seconds_sum, loop_seconds_last;
	uint64_t renewals_ok, renewals_failed;
	double renewal_seconds_sum, renewal_seconds_last; /* of the successful ones */
	uint64_t etcd_errors;
	uint64_t promotions; /* of this member's PostgreSQL (failover or switchover) */
	uint64_t decisions[HA_SWITCHOVER + 1]; /* by enum ha_action */
};

/* A replica as the leader sees it (pg_stat_replication). */
struct metrics_standby {
	char name[DCS_NAME_MAX];
	char state[16];
	uint64_t lag_bytes; /* the leader's WAL position - what it replayed */
	double lag_seconds; /* replay_lag (0 when PostgreSQL reports none: caught up) */
};

struct metrics_view {
	const char *scope, *name, *version;
	bool pg_running; /* postmaster up and answering */
	bool primary;	 /* holds the leader key and runs as primary */
	bool replica;	 /* runs in recovery */
	bool sync_standby;
	bool streaming;
	bool archive_recovery; /* in recovery, not streaming, restoring from the repository */
	bool xlog_paused;
	bool cluster_unlocked; /* etcd answered and nobody holds the leader key */
	bool pending_restart;
	bool paused;
	bool fence_armed;
	bool dcs_ok;
	int64_t postmaster_start_time; /* unix seconds (0: not running) */
	uint64_t xlog_location;	       /* primary: flushed position */
	uint64_t received_location, replayed_location;
	double replayed_timestamp; /* unix seconds of the last replayed commit (0: none) */
	int server_version, timeline;
	double dcs_last_seen;	  /* unix seconds of the last successful etcd request (0: never) */
	int64_t last_backup_stop; /* the last backup's end (unix seconds; 0: none known) */
	const struct agent_counters *counters;
	const struct metrics_standby *standbys;
	size_t n_standbys;
};

/* The text of GET /metrics into d (d->failed when out of memory). */
void metrics_render(struct doc *d, const struct metrics_view *v);

#endif

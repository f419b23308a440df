/*
 * GET /metrics of the agent (see metrics.h). Patroni's names, types and help texts
 * (its REST API documentation lists them), so existing dashboards and alert rules
 * read these unchanged.
 */
#include "agent/metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* name{scope="...",name="..." (the caller adds labels and closes it). */
static void open_sample(struct doc *d, const struct metrics_view *v, const char *metric)
{
	doc_printf(d, "%s{scope=\"", metric);
	doc_label(d, v->scope);
	DOC_LIT(d, "\",name=\"");
	doc_label(d, v->name);
	DOC_LIT(d, "\"");
}

static void family(struct doc *d, const char *name, const char *type, const char *help)
{
	doc_printf(d, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(struct doc *d, const struct metrics_view *v, const char *name, double value,
		  const char *help)
{
	family(d, name, "gauge", help);
	open_sample(d, v, name);
	doc_printf(d, "} %.17g\n", value);
}

static void counter_u64(struct doc *d, const struct metrics_view *v, const char *name,
			uint64_t value, const char *help)
{
	family(d, name, "counter", help);
	open_sample(d, v, name);
	doc_printf(d, "} %" PRIu64 "\n", value);
}

/* A summary without quantiles: its _sum and _count. */
static void summary(struct doc *d, const struct metrics_view *v, const char *name, double sum,
		    uint64_t count, const char *help)
{
	char metric[96];

	family(d, name, "summary", help);
	snprintf(metric, sizeof(metric), "%s_sum", name);
	open_sample(d, v, metric);
	doc_printf(d, "} %.6f\n", sum);
	snprintf(metric, sizeof(metric), "%s_count", name);
	open_sample(d, v, metric);
	doc_printf(d, "} %" PRIu64 "\n", count);
}

/* "1.2.3" -> 10203 (each part two digits, as Patroni's patroni_version). */
static long padded_version(const char *version)
{
	long out = 0;
	const char *s = version;

	for (int part = 0; part < 3; part++) {
		char *end;
		long n = strtol(s, &end, 10);

		out = out * 100 + (end == s ? 0 : n % 100);
		s = *end == '.' ? end + 1 : end;
	}
	return out;
}

static void patroni_metrics(struct doc *d, const struct metrics_view *v)
{
	gauge(d, v, "patroni_version", (double)padded_version(v->version),
	      "Patroni semver without periods (here: pgwarden's version).");
	gauge(d, v, "patroni_postgres_running", v->pg_running,
	      "Value is 1 if Postgres is running, 0 otherwise.");
	gauge(d, v, "patroni_postmaster_start_time", (double)v->postmaster_start_time,
	      "Epoch seconds since Postgres started.");
	gauge(d, v, "patroni_primary", v->primary,
	      "Value is 1 if this node is the leader, 0 otherwise.");
	gauge(d, v, "patroni_master", v->primary,
	      "Value is 1 if this node is the leader, 0 otherwise (older name).");
	counter_u64(d, v, "patroni_xlog_location", v->primary ? v->xlog_location : 0,
		    "Current location of the Postgres transaction log, 0 if this node is not "
		    "the leader.");
	gauge(d, v, "patroni_standby_leader", 0,
	      "Value is 1 if this node is the standby_leader, 0 otherwise.");
	gauge(d, v, "patroni_replica", v->replica,
	      "Value is 1 if this node is a replica, 0 otherwise.");
	gauge(d, v, "patroni_sync_standby", v->sync_standby,
	      "Value is 1 if this node is a sync standby, 0 otherwise.");
	gauge(d, v, "patroni_quorum_standby", 0,
	      "Value is 1 if this node is a quorum standby, 0 otherwise.");
	counter_u64(d, v, "patroni_xlog_received_location", v->replica ? v->received_location : 0,
		    "Current location of the received Postgres transaction log, 0 if this node "
		    "is not a replica.");
	counter_u64(d, v, "patroni_xlog_replayed_location", v->replica ? v->replayed_location : 0,
		    "Current location of the replayed Postgres transaction log, 0 if this node "
		    "is not a replica.");
	gauge(d, v, "patroni_xlog_replayed_timestamp", v->replica ? v->replayed_timestamp : 0,
	      "Current timestamp of the replayed Postgres transaction log, 0 if null.");
	gauge(d, v, "patroni_xlog_paused", v->replica && v->xlog_paused,
	      "Value is 1 if the Postgres xlog is paused, 0 otherwise.");
	gauge(d, v, "patroni_postgres_streaming", v->replica && v->streaming,
	      "Value is 1 if Postgres is streaming, 0 otherwise.");
	gauge(d, v, "patroni_postgres_in_archive_recovery", v->archive_recovery,
	      "Value is 1 if Postgres is replicating from archive, 0 otherwise.");
	gauge(d, v, "patroni_postgres_server_version", v->pg_running ? v->server_version : 0,
	      "Version of Postgres (if running), 0 otherwise.");
	gauge(d, v, "patroni_cluster_unlocked", v->cluster_unlocked,
	      "Value is 1 if the cluster is unlocked, 0 if locked.");
	gauge(d, v, "patroni_failsafe_mode_is_active", 0,
	      "Value is 1 if failsafe mode is active, 0 if inactive.");
	counter_u64(d, v, "patroni_postgres_timeline",
		    v->pg_running ? (uint64_t)(v->timeline > 0 ? v->timeline : 0) : 0,
		    "Postgres timeline of this node (if running), 0 otherwise.");
	gauge(d, v, "patroni_dcs_last_seen", v->dcs_last_seen,
	      "Epoch timestamp when DCS was last contacted successfully by Patroni.");
	gauge(d, v, "patroni_pending_restart", v->pending_restart,
	      "Value is 1 if the node needs a restart, 0 otherwise.");
	gauge(d, v, "patroni_is_paused", v->paused,
	      "Value is 1 if auto failover is disabled, 0 otherwise.");
}

static void standby_labels(struct doc *d, const struct metrics_view *v, const char *metric,
			   const struct metrics_standby *sb)
{
	open_sample(d, v, metric);
	DOC_LIT(d, ",replica=\"");
	doc_label(d, sb->name);
	DOC_LIT(d, "\",state=\"");
	doc_label(d, sb->state);
	DOC_LIT(d, "\"");
}

static void pgwarden_metrics(struct doc *d, const struct metrics_view *v)
{
	const struct agent_counters *c = v->counters;

	gauge(d, v, "pgwarden_dcs_ok", v->dcs_ok,
	      "Value is 1 if this loop's view of etcd is current, 0 otherwise.");
	gauge(d, v, "pgwarden_fence_armed", v->fence_armed,
	      "Value is 1 if the fence process would stop PostgreSQL should this agent stall.");
	family(d, "pgwarden_lease_renewals_total", "counter",
	       "Lease keepalives and grants sent to etcd, by result.");
	open_sample(d, v, "pgwarden_lease_renewals_total");
	doc_printf(d, ",result=\"ok\"} %" PRIu64 "\n", c->renewals_ok);
	open_sample(d, v, "pgwarden_lease_renewals_total");
	doc_printf(d, ",result=\"failed\"} %" PRIu64 "\n", c->renewals_failed);
	summary(d, v, "pgwarden_lease_renewal_seconds", c->renewal_seconds_sum, c->renewals_ok,
		"Latency of the successful lease renewals.");
	gauge(d, v, "pgwarden_lease_renewal_last_seconds", c->renewal_seconds_last,
	      "Seconds the last successful lease renewal took.");
	summary(d, v, "pgwarden_ha_loop_seconds", c->loop_seconds_sum, c->loops,
		"Duration of the HA loops (not counting the wait between them).");
	gauge(d, v, "pgwarden_ha_loop_last_seconds", c->loop_seconds_last,
	      "Seconds the last HA loop took.");
	family(d, "pgwarden_ha_decisions_total", "counter", "HA decisions taken, by kind.");
	for (int k = 0; k <= HA_SWITCHOVER; k++) {
		char action[64];

		/* "keep leader" -> keep_leader */
		snprintf(action, sizeof(action), "%s", ha_action_name((enum ha_action)k));
		for (char *ch = action; *ch; ch++)
			*ch = *ch == ' ' ? '_' : *ch;
		open_sample(d, v, "pgwarden_ha_decisions_total");
		doc_printf(d, ",action=\"%s\"} %" PRIu64 "\n", action, c->decisions[k]);
	}
	counter_u64(d, v, "pgwarden_etcd_errors_total", c->etcd_errors,
		    "Requests to etcd that failed.");
	counter_u64(d, v, "pgwarden_promotions_total", c->promotions,
		    "Promotions of this member's PostgreSQL to primary (failover or switchover).");
	if (v->last_backup_stop > 0)
		gauge(d, v, "pgwarden_last_backup_timestamp_seconds", (double)v->last_backup_stop,
		      "When the cluster's last backup completed (absent: none recorded).");
	family(d, "pgwarden_replication_lag_bytes", "gauge",
	       "Leader only: bytes of WAL a replica has yet to replay.");
	for (size_t i = 0; i < v->n_standbys; i++) {
		standby_labels(d, v, "pgwarden_replication_lag_bytes", &v->standbys[i]);
		doc_printf(d, "} %" PRIu64 "\n", v->standbys[i].lag_bytes);
	}
	family(d, "pgwarden_replication_lag_seconds", "gauge",
	       "Leader only: a replica's replay lag (0 when caught up).");
	for (size_t i = 0; i < v->n_standbys; i++) {
		standby_labels(d, v, "pgwarden_replication_lag_seconds", &v->standbys[i]);
		doc_printf(d, "} %.6f\n", v->standbys[i].lag_seconds);
	}
}

void metrics_render(struct doc *d, const struct metrics_view *v)
{
	patroni_metrics(d, v);
	pgwarden_metrics(d, v);
}

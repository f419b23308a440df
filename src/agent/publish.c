/*
 * What the agent publishes: its member key in etcd and the REST API's documents
 * (status, cluster, history).
 */
#include "agent/parts.h"
#include "agent/agent.h"
#include "node/agentcfg.h"
#include "agent/api.h"
#include "cluster/member.h"
#include "node/backup.h"
#include "cluster/dcs.h"
#include "cluster/follow.h"
#include "node/defaults.h"
#include "cluster/confedit.h"
#include "cluster/dyncfg.h"
#include "cluster/switchover.h"
#include "agent/fence.h"
#include "agent/ha.h"
#include "agent/metrics.h"
#include "common/doc.h"
#include "agent/syncrep.h"
#include "node/pgconf.h"
#include "node/pgctl.h"
#include "common/http.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "etcd/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *pg_role(const struct agent *a)
{
	if (!a->probe.data_valid)
		return "uninitialized";
	if (a->probe.accepting && !a->probe.in_recovery)
		return "primary";
	return "replica";
}

static const char *pg_state(const struct agent *a)
{
	const struct pgctl_probe *p = &a->probe;

	if (a->job.kind != JOB_NONE)
		return job_state[a->job.kind];
	if (!p->data_valid)
		return "uninitialized";
	if (!p->postmaster_pid) {
		if (a->cd_valid && !a->cd.backup_label &&
		    (a->cd.state == PGCTL_CD_IN_PRODUCTION ||
		     a->cd.state == PGCTL_CD_IN_ARCHIVE_RECOVERY ||
		     a->cd.state == PGCTL_CD_IN_CRASH_RECOVERY))
			return "crashed";
		return "stopped";
	}
	if (!p->accepting)
		return "starting";
	if (p->in_recovery)
		return p->streaming ? "streaming" : "running";
	return "running";
}

static char *tags_json(const struct agent_config *cfg)
{
	json_object *o = json_object_new_object();
	char *s;

	for (size_t i = 0; i < cfg->tags.n; i++) {
		const struct cmn_kv *kv = &cfg->tags.items[i];
		bool b;

		if (cmn_parse_bool(kv->value, &b) == PGW_OK)
			json_object_object_add(o, kv->key, json_object_new_boolean(b));
		else
			json_object_object_add(o, kv->key, json_object_new_string(kv->value));
	}
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static void fill_member(const struct agent *a, struct dcs_member *m)
{
	char *tags = tags_json(&a->cfg);

	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", a->cfg.member_name);
	snprintf(m->host, sizeof(m->host), "%s", a->cfg.pg_connect_host);
	m->port = a->cfg.pg_connect_port;
	snprintf(m->api_url, sizeof(m->api_url), "%s", a->cfg.api_connect);
	snprintf(m->role, sizeof(m->role), "%s", pg_role(a));
	snprintf(m->state, sizeof(m->state), "%s", pg_state(a));
	m->timeline =
	    a->probe.timeline ? a->probe.timeline : (a->cd_valid ? a->cd.checkpoint_tli : 0);
	snprintf(m->tags_json, sizeof(m->tags_json), "%s", tags ? tags : "{}");
	m->pending_restart = a->probe.accepting && a->probe.pending_restart;
	m->checkpoint_pending = a->after_promote;
	if (backup_remote(&a->cfg)) {
		snprintf(m->pgbackrest.host, sizeof(m->pgbackrest.host), "%s",
			 a->cfg.tls_connect_host);
		m->pgbackrest.port = a->cfg.tls_connect_port;
		snprintf(m->pgbackrest.pg_path, sizeof(m->pgbackrest.pg_path), "%s",
			 a->cfg.data_dir);
		m->pgbackrest.pg_port = a->cfg.pg_port;
		snprintf(m->pgbackrest.pg_socket, sizeof(m->pgbackrest.pg_socket), "%s",
			 a->cfg.socket_dir);
		snprintf(m->pgbackrest.pg_user, sizeof(m->pgbackrest.pg_user), "%s",
			 a->cfg.superuser);
	}
	free(tags);
}

void publish_member(struct agent *a)
{
	struct dcs_member m;
	char *json;

	if (!a->lease_id || !a->dcs_ok)
		return;
	fill_member(a, &m);
	json = dcs_member_to_json(&m);
	if (!json)
		return;
	if (a->published_member && a->published_lease == a->lease_id &&
	    strcmp(a->published_member, json) == 0) {
		free(json);
		return;
	}
	if (dcs_put_member(&a->dcs, a->cfg.member_name, json, a->lease_id) != PGW_OK) {
		etcd_trouble(a, "member update", PGW_ERR);
		free(json);
		return;
	}
	free(a->published_member);
	a->published_member = json;
	a->published_lease = a->lease_id;
}

/*
 * Do we hold the leader key? Our last view of the cluster says so, and etcd
 * answered this loop or our lease cannot have run out yet: a short etcd hiccup
 * (a leader election) must not make the leader say it is not one.
 */
bool holds_leader(const struct agent *a)
{
	if (!a->cluster.has_leader || strcmp(a->cluster.leader, a->cfg.member_name) != 0)
		return false;
	return a->dcs_ok ||
	       !ha_lease_expiring(cmn_now_ms(), a->lease_deadline_ms, CLUSTER_DEMOTE_MARGIN_MS);
}

/*
 * A replica's lag in seconds: while it is behind (the leader's last published position,
 * or WAL received and not replayed yet), the time since it last was caught up or last
 * replayed a commit, whichever is later (after an idle hour, WAL that holds no commit is
 * not an hour behind); 0 when caught up. NULL (JSON null) when it cannot tell: etcd
 * unreachable with nothing streamed, or behind since it started with no commit replayed.
 */
static json_object *replica_lag_seconds(struct agent *a)
{
	const struct pgctl_probe *p = &a->probe;
	double now = (double)cmn_wall_ms() / 1000.0, since;
	bool behind;

	if (!p->in_recovery) {
		a->caught_up_at = 0;
		return json_object_new_double(0);
	}
	if (!a->dcs_ok && !p->receive_lsn)
		return NULL;
	behind = (a->dcs_ok && a->cluster.optime > p->lsn) || p->replay_lsn < p->receive_lsn;
	if (!behind) {
		a->caught_up_at = now;
		return json_object_new_double(0);
	}
	since = p->replayed_at > a->caught_up_at ? p->replayed_at : a->caught_up_at;
	if (since <= 0)
		return NULL;
	return json_object_new_double(now > since ? now - since : 0);
}

static char *render_status(struct agent *a)
{
	json_object *o = json_object_new_object(), *x = json_object_new_object();
	char lsn[32];
	char *s;
	const struct pgctl_probe *p = &a->probe;
	bool leader = holds_leader(a) && p->accepting && !p->in_recovery;

	json_object_object_add(o, "name", json_object_new_string(a->cfg.member_name));
	json_object_object_add(o, "scope", json_object_new_string(a->cfg.cluster_name));
	json_object_object_add(o, "state", json_object_new_string(pg_state(a)));
	json_object_object_add(o, "role", json_object_new_string(leader ? "primary" : pg_role(a)));
	json_object_object_add(o, "leader", json_object_new_boolean(leader));
	json_object_object_add(o, "timeline", json_object_new_int(p->timeline));
	json_object_object_add(o, "server_version", json_object_new_int(p->server_version));
	json_object_object_add(o, "postmaster_start_time", json_object_new_int64(p->start_time));
	json_object_object_add(o, "database_system_identifier",
			       json_object_new_string(a->local_sysid));
	if (p->accepting && !p->in_recovery) {
		json_object_object_add(x, "location", json_object_new_int64((int64_t)p->lsn));
	} else {
		json_object_object_add(x, "received_location",
				       json_object_new_int64((int64_t)p->receive_lsn));
		json_object_object_add(x, "replayed_location",
				       json_object_new_int64((int64_t)p->replay_lsn));
		json_object_object_add(x, "upstream", json_object_new_string(p->upstream));
	}
	json_object_object_add(o, "xlog", x);
	json_object_object_add(o, "lsn", json_object_new_int64((int64_t)p->lsn));
	cmn_format_lsn(p->lsn, lsn, sizeof(lsn));
	json_object_object_add(o, "lsn_text", json_object_new_string(lsn));
	if (p->in_recovery && a->dcs_ok && a->cluster.optime > p->lsn)
		json_object_object_add(
		    o, "lag", json_object_new_int64((int64_t)(a->cluster.optime - p->lsn)));
	else
		json_object_object_add(o, "lag", json_object_new_int64(0));
	json_object_object_add(o, "lag_seconds", replica_lag_seconds(a));
	json_object_object_add(o, "dcs_ok", json_object_new_boolean(a->dcs_ok));
	if (p->accepting && p->pending_restart)
		json_object_object_add(o, "pending_restart", json_object_new_boolean(true));
	if (a->cfg.synchronous_standby_names[0] && leader)
		json_object_object_add(o, "synchronous_standby_names",
				       json_object_new_string(a->cfg.synchronous_standby_names));
	json_object_object_add(o, "pause", json_object_new_boolean(a->dcs_ok && a->cluster.paused));
	json_object_object_add(
	    o, "cluster_leader",
	    json_object_new_string(a->dcs_ok && a->cluster.has_leader ? a->cluster.leader : ""));
	json_object_object_add(o, "last_action",
			       json_object_new_string(ha_action_name(a->last_action)));
	json_object_object_add(o, "last_reason", json_object_new_string(a->last_reason));
	char *tags = tags_json(&a->cfg);
	json_object *t = tags ? json_tokener_parse(tags) : NULL;

	free(tags);
	json_object_object_add(o, "tags", t ? t : json_object_new_object());
	json_object_object_add(o, "version", json_object_new_string(PGW_VERSION));
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static char *render_cluster(struct agent *a)
{
	json_object *o = json_object_new_object(), *list = json_object_new_array();
	char *s;

	for (size_t i = 0; i < a->cluster.n_members; i++) {
		const struct dcs_member *m = &a->cluster.members[i];
		json_object *e = json_object_new_object();
		json_object *tags = m->tags_json[0] ? json_tokener_parse(m->tags_json) : NULL;
		bool leader = a->cluster.has_leader && strcmp(m->name, a->cluster.leader) == 0;

		json_object_object_add(e, "name", json_object_new_string(m->name));
		json_object_object_add(e, "role",
				       json_object_new_string(leader ? "leader" : m->role));
		json_object_object_add(e, "state", json_object_new_string(m->state));
		json_object_object_add(e, "host", json_object_new_string(m->host));
		json_object_object_add(e, "port", json_object_new_int(m->port));
		json_object_object_add(e, "api_url", json_object_new_string(m->api_url));
		json_object_object_add(e, "timeline", json_object_new_int(m->timeline));
		json_object_object_add(e, "tags", tags ? tags : json_object_new_object());
		json_object_array_add(list, e);
	}
	json_object_object_add(o, "scope", json_object_new_string(a->cfg.cluster_name));
	json_object_object_add(o, "system_identifier", json_object_new_string(a->cluster.sysid));
	json_object_object_add(
	    o, "leader", json_object_new_string(a->cluster.has_leader ? a->cluster.leader : ""));
	json_object_object_add(o, "members", list);
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

/* Leader: each replica's lag as pg_stat_replication says (into a->standbys). */
static void read_replica_lag(struct agent *a)
{
	char *rows, *save = NULL, *line;

	a->n_standbys = 0;
	rows = pgctl_query_value(
	    &a->pg, "SELECT coalesce(string_agg(application_name || ' ' || state || ' ' ||"
		    " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint"
		    " || ' ' || coalesce(extract(epoch FROM replay_lag), 0), E'\\n'), '')"
		    " FROM pg_stat_replication");
	for (line = rows ? strtok_r(rows, "\n", &save) : NULL;
	     line && a->n_standbys < DCS_MAX_MEMBERS; line = strtok_r(NULL, "\n", &save)) {
		struct metrics_standby *sb = &a->standbys[a->n_standbys];
		long long bytes;

		if (sscanf(line, "%63s %15s %lld %lf", sb->name, sb->state, &bytes,
			   &sb->lag_seconds) != 4 ||
		    !dcs_find_member(&a->cluster, sb->name))
			continue; /* a member's walsender only (not pg_basebackup's, ...) */
		bool seen = false;

		for (size_t i = 0; i < a->n_standbys; i++)
			seen = seen || strcmp(a->standbys[i].name, sb->name) == 0;
		if (seen)
			continue; /* its second walsender: the first one counts */
		sb->lag_bytes = bytes > 0 ? (uint64_t)bytes : 0;
		a->n_standbys++;
	}
	free(rows);
}

/* GET /metrics as of this loop (heap text, NULL when out of memory). */
static char *render_metrics(struct agent *a, bool leader)
{
	const struct pgctl_probe *p = &a->probe;

	if (leader)
		read_replica_lag(a);
	int64_t last =
	    a->last_renew_ok_ms > a->last_full_read_ms ? a->last_renew_ok_ms : a->last_full_read_ms;
	struct metrics_view v = {
	    .scope = a->cfg.cluster_name,
	    .name = a->cfg.member_name,
	    .version = PGW_VERSION,
	    .pg_running = p->accepting,
	    .primary = leader,
	    .replica = p->accepting && p->in_recovery,
	    .sync_standby = a->dcs_ok && a->cluster.has_sync && p->in_recovery &&
			    dcs_sync_has(&a->cluster, a->cfg.member_name),
	    .streaming = p->streaming,
	    .archive_recovery =
		p->accepting && p->in_recovery && !p->streaming && backup_enabled(&a->cfg),
	    .xlog_paused = p->replay_paused,
	    .cluster_unlocked = a->dcs_ok && !a->cluster.has_leader,
	    .pending_restart = p->accepting && p->pending_restart,
	    .paused = a->dcs_ok && a->cluster.paused,
	    .fence_armed = a->fence_armed,
	    .dcs_ok = a->dcs_ok,
	    .postmaster_start_time = p->accepting ? p->start_time : 0,
	    .xlog_location = p->lsn,
	    .received_location = p->receive_lsn,
	    .replayed_location = p->replay_lsn,
	    .replayed_timestamp = p->replayed_at,
	    .server_version = p->server_version,
	    .timeline = p->timeline,
	    .dcs_last_seen =
		last > 0 ? (double)(cmn_wall_ms() - (cmn_now_ms() - last)) / 1000.0 : 0,
	    .last_backup_stop = a->dcs_ok ? a->cluster.last_backup_stop : 0,
	    .counters = &a->counters,
	    .standbys = a->standbys,
	    .n_standbys = leader ? a->n_standbys : 0,
	};
	struct doc d = {0};

	metrics_render(&d, &v);
	if (d.failed) {
		cmn_buf_free(&d.b);
		return NULL;
	}
	return d.b.data;
}

void publish_api(struct agent *a)
{
	char *status = render_status(a);
	char *cluster = a->dcs_ok ? render_cluster(a) : NULL;
	char *history = a->dcs_ok ? strdup(a->cluster.history ? a->cluster.history : "[]") : NULL;
	char *config = a->dcs_ok ? strdup(a->cluster.config ? a->cluster.config : "{}") : NULL;
	const struct pgctl_probe *p = &a->probe;
	char *metrics = render_metrics(a, holds_leader(a) && p->accepting && !p->in_recovery);

	pthread_mutex_lock(&a->api.lock);
	api_state_set_docs(&a->api, status, cluster, history);
	if (metrics) {
		free(a->api.metrics_text);
		a->api.metrics_text = metrics;
	}
	if (config) {
		free(a->api.config_json);
		a->api.config_json = config;
	}
	a->api.pg_running = p->accepting;
	a->api.is_leader = holds_leader(a) && p->accepting && !p->in_recovery;
	a->api.is_replica = p->accepting && p->in_recovery;
	a->api.streaming = p->streaming;
	a->api.noloadbalance = a->cfg.noloadbalance;
	a->api.lag_bytes = p->in_recovery && a->dcs_ok && a->cluster.optime > p->lsn
			       ? a->cluster.optime - p->lsn
			       : 0;
	a->api.last_loop_ms = cmn_now_ms();
	pthread_mutex_unlock(&a->api.lock);
}

/*
 * The agent's loop: waking it (the etcd follower, signals), one pass (observe,
 * decide, act), shutting down (the leader hands its role over first), and agent_main.
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

extern char **environ;

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

/* SIGTERM / SIGINT received: 1 once, 2 for a second one (stop at once). */
static volatile sig_atomic_t shutdown_requested, reload_requested;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_requested = 1;
	else if (shutdown_requested < 2)
		shutdown_requested = shutdown_requested + 1;
}

void agent_wake(struct agent *a)
{
	pthread_mutex_lock(&a->wake_lock);
	a->woken = true;
	pthread_cond_signal(&a->wake_cond);
	pthread_mutex_unlock(&a->wake_lock);
}

static void agent_sleep(struct agent *a, int64_t until_ms)
{
	pthread_mutex_lock(&a->wake_lock);
	while (!a->woken && shutdown_requested == a->signals_seen) {
		int64_t left = until_ms - cmn_now_ms();
		struct timespec ts;

		if (left <= 0)
			break;
		if (left > 200)
			left = 200;			     /* re-check the shutdown flag */
		cmn_deadline_ts(CLOCK_MONOTONIC, left, &ts); /* wake_cond's clock */
		pthread_cond_timedwait(&a->wake_cond, &a->wake_lock, &ts);
	}
	a->woken = false;
	pthread_mutex_unlock(&a->wake_lock);
}

/*
 * The follower's callback (its thread). Wakes the loop at once after a full read,
 * and for the leader key, a switchover request, the proxies' drain reports (the
 * leader waits for those while it hands over) and the initialize key (the others
 * clone as soon as the bootstrap recorded the system); and the members' records
 * while this member has no data yet (it clones as soon as the leader's says it
 * runs) or waits on the leader's record (a stopped former primary rewinds as soon
 * as the new leader's checkpoint after its promotion is done).
 */
static void on_cluster_change(void *arg, const struct etcd_event *ev, size_t n)
{
	struct agent *a = arg;

	if (!ev) {
		agent_wake(a);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const char *key = ev[i].kv.key;
		bool member = strncmp(key, a->wake_keys.members, strlen(a->wake_keys.members)) == 0;

		if (member)
			atomic_store(&a->members_changed, true);
		if (strcmp(key, a->wake_keys.leader) == 0 ||
		    strcmp(key, a->wake_keys.failover) == 0 ||
		    strcmp(key, a->wake_keys.initialize) == 0 ||
		    strncmp(key, a->wake_keys.proxies, strlen(a->wake_keys.proxies)) == 0 ||
		    (member && atomic_load(&a->wake_on_members))) {
			agent_wake(a);
			return;
		}
	}
}

/* Keeps a->cache current (cluster/follow.h); the loop is woken as on_cluster_change says. */
static int follow_start(struct agent *a)
{
	dcs_key(&a->dcs, DCS_KEY_LEADER, a->wake_keys.leader, sizeof(a->wake_keys.leader));
	dcs_key(&a->dcs, DCS_KEY_FAILOVER, a->wake_keys.failover, sizeof(a->wake_keys.failover));
	dcs_key(&a->dcs, DCS_KEY_INITIALIZE, a->wake_keys.initialize,
		sizeof(a->wake_keys.initialize));
	dcs_key(&a->dcs, DCS_PREFIX_PROXIES, a->wake_keys.proxies, sizeof(a->wake_keys.proxies));
	dcs_key(&a->dcs, DCS_PREFIX_MEMBERS, a->wake_keys.members, sizeof(a->wake_keys.members));
	a->follow.dcs = &a->dcs;
	a->follow.cache = &a->cache;
	cluster_etcd_opts(&a->cfg.etcd, a->cfg.retry_timeout_ms, &a->follow.etcd);
	a->follow.changed = on_cluster_change;
	a->follow.arg = a;
	return dcs_follow_start(&a->follow);
}

static void observe(struct agent *a)
{
	int64_t now = cmn_now_ms();

	pgctl_probe(&a->pg, &a->probe);
	/*
	 * A replica's timeline: the WAL receiver's while it streams; once the upstream
	 * is gone PostgreSQL only reports the last restartpoint's, which may be older
	 * than WAL already received. Keep the newest seen (received WAL is on disk).
	 */
	if (a->probe.accepting && a->probe.in_recovery) {
		if (a->probe.timeline > a->replica_timeline)
			a->replica_timeline = a->probe.timeline;
		else
			a->probe.timeline = a->replica_timeline;
	} else if (a->probe.accepting || !a->probe.data_valid) {
		a->replica_timeline = 0;
	}
	if (!a->probe.data_valid) /* cleared only by a decision (below) */
		atomic_store(&a->wake_on_members, true);
	a->cd_valid = false;
	if (a->probe.data_valid && !a->probe.postmaster_pid && a->job.kind == JOB_NONE)
		a->cd_valid = pgctl_controldata(&a->pg, &a->cd) == PGW_OK;
	if (a->cd_valid)
		snprintf(a->local_sysid, sizeof(a->local_sysid), "%s", a->cd.sysid);
	else if (a->probe.data_valid && !a->local_sysid[0] && a->probe.accepting) {
		char *s = pgctl_query_value(
		    &a->pg, "SELECT system_identifier::text FROM pg_control_system()");

		if (s)
			snprintf(a->local_sysid, sizeof(a->local_sysid), "%s", s);
		free(s);
	}
	if (!a->probe.data_valid)
		a->local_sysid[0] = '\0';
	if (a->dcs_ok && a->cluster.has_switchover) {
		if (!a->switchover_seen_ms)
			a->switchover_seen_ms = now;
	} else if (a->dcs_ok) {
		a->switchover_seen_ms = 0;
		a->so_revision = 0;
		a->so_started_ms = 0;
		a->so_waiting = false;
	}
	/* How long has our primary been down while we hold the key? */
	if (holds_leader(a) && !(a->probe.accepting && !a->probe.in_recovery)) {
		if (!a->primary_down_since_ms)
			a->primary_down_since_ms = now;
	} else {
		a->primary_down_since_ms = 0;
	}
	if (a->probe.accepting && a->probe.in_recovery && !a->probe.streaming) {
		if (!a->not_streaming_since_ms)
			a->not_streaming_since_ms = now;
	} else {
		a->not_streaming_since_ms = 0;
	}
}

static void read_cluster(struct agent *a)
{
	struct dcs_cluster fresh;
	struct etcd_range_result r;
	int64_t now = cmn_now_ms();
	int rc;

	/*
	 * The watch keeps the cache current; a recent successful renewal shows etcd
	 * answers. Still read the whole prefix every half ttl, in case the watch stream
	 * hangs on a member we are cut off from (it goes silent, with no error). On
	 * failure the previous view stays (marked stale by dcs_ok = false).
	 */
	int64_t resync_ms =
	    a->cfg.ttl_ms / 2 < AGENT_RESYNC_MS ? a->cfg.ttl_ms / 2 : AGENT_RESYNC_MS;

	a->dcs_ok = now - a->last_renew_ok_ms < a->cfg.ttl_ms / 2 + a->cfg.loop_wait_ms &&
		    now - a->last_full_read_ms < resync_ms &&
		    dcs_cache_snapshot(&a->dcs, &a->cache, &fresh);
	if (!a->dcs_ok) {
		rc = etcd_range_prefix(a->etcd, a->dcs.prefix, &r);
		if (rc != PGW_OK) {
			etcd_trouble(a, "reading the cluster", rc);
			return;
		}
		dcs_cluster_from_kvs(&a->dcs, r.kvs, r.n_kvs, r.header.revision, &fresh);
		dcs_cache_load(&a->cache, &r);
		etcd_range_result_free(&r);
		a->last_full_read_ms = now;
		a->dcs_ok = true;
		a->sync_unsure = false;
	}
	dcs_cluster_free(&a->cluster);
	a->cluster = fresh;
	apply_dynamic_config(a);
	/* A restarted agent finds the key on its previous lease: move it to the new one. */
	if (holds_leader(a) && a->lease_id && a->cluster.leader_lease != a->lease_id) {
		bool ok = false;

		if (dcs_move_leader(&a->dcs, a->cfg.member_name, a->lease_id, &ok) == PGW_OK &&
		    ok) {
			log_info("re-attached the leader key to our lease");
			if (a->cluster.leader_lease &&
			    etcd_lease_revoke(a->etcd, a->cluster.leader_lease) != PGW_OK)
				log_debug("old lease already gone");
			a->cluster.leader_lease = a->lease_id;
		} else {
			a->cluster.has_leader = false; /* someone else has it now */
		}
	}
}

/*
 * The fence stops our primary if we fail to renew the lease in time (see fence.h).
 * Armed while we lead and a server that may take writes runs (or is being promoted:
 * do_promote arms it before the signal); an etcd read that
 * failed changes nothing (the deadline only moves on a successful renewal).
 */
static void update_fence(struct agent *a)
{
	bool leading = a->dcs_ok ? holds_leader(a) && !a->cluster.paused : a->fence_armed;
	bool may_write = pgctl_maybe_primary(&a->probe) || a->job.kind == JOB_PROMOTE;
	bool arm = leading && may_write && a->lease_deadline_ms > 0;

	agent_fence_reap();
	if (!arm && !a->fence_armed)
		return;
	if (agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir,
			    arm ? ha_fence_deadline(a->lease_deadline_ms, CLUSTER_DEMOTE_MARGIN_MS)
				: 0) == PGW_OK)
		a->fence_armed = arm;
}

static void handover_filter(struct agent *a, struct ha_decision *d);

static void run_once(struct agent *a)
{
	struct ha_decision d;
	int code;
	int64_t started_us = cmn_now_us();

	/* A promotion that waited for its reload goes ahead this time (do_promote). */
	a->promote_reloaded = a->promote_after_reload;
	a->promote_after_reload = false;

	/* Before any I/O: a primary past its lease deadline stops now (SIGSTOP, stalls). */
	if (!(a->dcs_ok && a->cluster.paused) && pgctl_maybe_primary(&a->probe) &&
	    a->lease_deadline_ms &&
	    ha_lease_expiring(cmn_now_ms(), a->lease_deadline_ms, CLUSTER_DEMOTE_MARGIN_MS) &&
	    a->job.kind == JOB_NONE) {
		pgctl_probe(&a->pg, &a->probe);
		if (pgctl_maybe_primary(&a->probe))
			do_demote(a,
				  "the leader lease may have expired while the agent was stalled");
	}
	(void)lease_maintain(a, false);
	atomic_store(&a->members_changed, false);
	read_cluster(a);
	if (a->job.kind != JOB_NONE && a->job.pid && cmn_proc_poll(a->job.pid, &code) == 1)
		job_finished(a, code);
	observe(a);
	if (a->job.kind == JOB_PROMOTE && !a->job.pid && promote_poll(a, &code))
		job_finished(a, code);
	{
		char log[4200];

		pgctl_log_path(&a->pg, log, sizeof(log));
		a->backup.replicas_ready = a->dcs_ok && backup_replicas_ready(&a->cluster);
		backup_tick(&a->backup, &a->cfg,
			    holds_leader(a) && a->probe.accepting && !a->probe.in_recovery,
			    pgctl_env(&a->pg), log);
		backup_history_tick(&a->backup, &a->cfg, switchover_next_timeline(a),
				    switchover_may_promote_us(a) && switchover_next_timeline(a) > 0,
				    pgctl_env(&a->pg), log);
		switchover_archive_lookups(a);
	}
	if (reload_requested) {
		char err[600];

		reload_requested = 0;
		if (reload_node_config(a, err, sizeof(err)) != PGW_OK)
			log_error("reload (SIGHUP) failed: %s", err);
	}
	do_request(a);
	apply_conf_change(a); /* before a promotion: with the settings it must have */
	if (a->job.kind != JOB_NONE) {
		snprintf(a->last_reason, sizeof(a->last_reason), "%s", job_state[a->job.kind]);
	} else if (a->bootstrapping) {
		finish_bootstrap(a);
	} else {
		struct ha_input in = {
		    .now_ms = cmn_now_ms(),
		    .me = a->cfg.member_name,
		    .nofailover = a->cfg.nofailover,
		    .maximum_lag = a->cfg.maximum_lag_on_failover,
		    .dcs_ok = a->dcs_ok,
		    .cluster = &a->cluster,
		    .lease_id = a->lease_id,
		    .lease_deadline_ms = a->lease_deadline_ms,
		    .demote_margin_ms = CLUSTER_DEMOTE_MARGIN_MS,
		    .pg = &a->probe,
		    .cd_valid = a->cd_valid,
		    .cd = a->cd,
		    .primary_down_since_ms = a->primary_down_since_ms,
		    .primary_start_timeout_ms = a->cfg.primary_start_timeout_ms,
		    .not_streaming_since_ms = a->not_streaming_since_ms,
		    .stuck_replica_ms = AGENT_STUCK_REPLICA_MS,
		    .now_wall_s = cmn_wall_ms() / 1000,
		    .switchover_waiting_ms =
			a->switchover_seen_ms ? cmn_now_ms() - a->switchover_seen_ms : 0,
		    /* The old leader may first wait for the proxies to drain. */
		    .switchover_grace_ms = 2 * a->cfg.ttl_ms + a->cfg.switchover_proxy_wait_ms,
		};

		if (a->cd_valid) {
			int tli = a->cd.checkpoint_tli > a->cd.min_recovery_tli
				      ? a->cd.checkpoint_tli
				      : a->cd.min_recovery_tli;

			in.fork_lsn = dcs_history_switch_lsn(a->cluster.history, tli);
		} else if (a->probe.accepting && a->probe.in_recovery) {
			in.fork_lsn = dcs_history_switch_lsn(a->cluster.history, a->probe.timeline);
		}

		snprintf(in.local_sysid, sizeof(in.local_sysid), "%s", a->local_sysid);
		snprintf(in.configured_upstream, sizeof(in.configured_upstream), "%s",
			 a->configured_upstream);
		ha_decide(&in, &d);
		bool wake = !a->probe.data_valid || d.wait_leader_record;

		atomic_store(&a->wake_on_members, wake);
		/* A record that changed since the read, before the flag was set: look again. */
		if (wake && atomic_load(&a->members_changed))
			agent_wake(a);
		handover_filter(a, &d);
		if (d.action != a->last_action || strcmp(d.reason, a->last_reason) != 0)
			log_info("%s: %s", ha_action_name(d.action), d.reason);
		a->last_action = d.action;
		a->counters.decisions[d.action]++;
		snprintf(a->last_reason, sizeof(a->last_reason), "%s", d.reason);
		execute(a, &d);
		if (d.action != HA_WAIT && d.action != HA_KEEP_LEADER)
			observe(a);
	}
	update_fence(a);
	publish_member(a);
	a->counters.loops++;
	a->counters.loop_seconds_last = (double)(cmn_now_us() - started_us) / 1e6;
	a->counters.loop_seconds_sum += a->counters.loop_seconds_last;
	publish_api(a);
}

/* No more REST requests for the loop (those waiting are answered 503). */
static void req_stop(struct agent *a)
{
	req_finish(a, 503, "the agent is shutting down");
	pthread_mutex_lock(&a->req_lock);
	a->req_stopping = true;
	pthread_cond_broadcast(&a->req_cond);
	pthread_mutex_unlock(&a->req_lock);
}

/* Our walsenders (pg_stat_replication) and our flushed position; false on failure. */
static bool read_standbys(struct agent *a, struct ha_standby *ws, size_t *n, uint64_t *lsn)
{
	char *rows = pgctl_query_value(
	    &a->pg, "SELECT pg_current_wal_flush_lsn()::text || coalesce((SELECT string_agg("
		    "E'\\n' || application_name || ' ' || state || ' ' || coalesce(flush_lsn, "
		    "'0/0')::text, '') FROM pg_stat_replication), '')");
	char *save = NULL, *line = rows ? strtok_r(rows, "\n", &save) : NULL;

	*n = 0;
	if (!line || cmn_parse_lsn(line, lsn) != PGW_OK) {
		free(rows);
		return false;
	}
	while ((line = strtok_r(NULL, "\n", &save)) && *n < DCS_MAX_MEMBERS) {
		char name[DCS_NAME_MAX], state[32], flush[32];

		if (sscanf(line, "%63s %31s %31s", name, state, flush) != 3)
			continue;
		snprintf(ws[*n].name, sizeof(ws[*n].name), "%s", name);
		ws[*n].streaming = strcmp(state, "streaming") == 0;
		if (cmn_parse_lsn(flush, &ws[*n].flush) != PGW_OK)
			ws[*n].flush = 0;
		(*n)++;
	}
	free(rows);
	return true;
}

/* The failover key holds a switchover request that names us as its leader. */
static bool switchover_names_us(const struct agent *a)
{
	return a->cluster.has_switchover &&
	       strcmp(a->cluster.switchover_leader, a->cfg.member_name) == 0;
}

/*
 * The first SIGTERM / SIGINT: a healthy leader hands its role to a replica before it
 * stops, through the planned switchover (a request in the failover key, as `pgwarden
 * switchover` writes it, which the loop then carries out). true: the hand-over has
 * begun, the loop goes on; false: stop now as without one (the reason is logged).
 */
static bool handover_begin(struct agent *a)
{
	struct ha_standby ws[DCS_MAX_MEMBERS];
	size_t n_ws = 0;
	uint64_t lsn = 0;
	char why[1024];
	const char *cand;
	bool created = false;

	/* A fresh view: the watch cache may lag our own last writes by a loop. */
	a->last_full_read_ms = 0;
	read_cluster(a);
	pgctl_probe(&a->pg, &a->probe);
	if (!a->dcs_ok || !holds_leader(a) || !a->probe.accepting || a->probe.in_recovery ||
	    a->job.kind != JOB_NONE || a->bootstrapping)
		return false; /* not a healthy leader: nothing to hand over */
	if (a->cfg.shutdown_handover_timeout_ms <= 0) {
		log_info("shutting down: shutdown_handover_timeout is 0, no hand-over of the "
			 "leader role");
		return false;
	}
	if (a->cluster.paused) {
		log_info("shutting down: maintenance mode, no hand-over of the leader role");
		return false;
	}
	if (a->cluster.has_switchover) {
		if ((a->cluster.switchover_leader[0] && !switchover_names_us(a)) ||
		    a->cluster.switchover_at > cmn_wall_ms() / 1000) {
			log_info("shutting down: a switchover we cannot carry out now is pending "
				 "(scheduled for later, or from another leader), no hand-over of "
				 "the leader role");
			return false;
		}
		cand = a->cluster.switchover_candidate;
		log_info("shutting down: finishing the switchover under way to %s first (at most "
			 "%d ms)",
			 cand[0] ? cand : "the healthiest replica",
			 a->cfg.shutdown_handover_timeout_ms);
	} else {
		if (!read_standbys(a, ws, &n_ws, &lsn)) {
			log_warning(
			    "shutting down: cannot read pg_stat_replication, no hand-over of "
			    "the leader role");
			return false;
		}
		cand = ha_handover_candidate(&a->cluster, a->cfg.member_name, ws, n_ws, lsn,
					     a->cfg.maximum_lag_on_failover, why, sizeof(why));
		if (!cand) {
			log_info("shutting down: no replica can take the leader role (%s)", why);
			return false;
		}
		if (dcs_request_switchover(&a->dcs, a->cfg.member_name, cand, 0, &created) !=
		    PGW_OK) {
			log_warning(
			    "shutting down: cannot write the switchover request, no hand-over");
			return false;
		}
		log_info(
		    "shutting down: handing the leader role over to %s first (at most %d ms)%s",
		    cand, a->cfg.shutdown_handover_timeout_ms,
		    created ? "" : "; another switchover request came first: following it");
	}
	req_stop(a);
	a->ho.active = true;
	a->ho.seen = false;
	a->ho.started_ms = cmn_now_ms();
	a->ho.deadline_ms = a->ho.started_ms + a->cfg.shutdown_handover_timeout_ms;
	a->last_full_read_ms = 0; /* next loop: read the request back from etcd */
	return true;
}

/*
 * While handing over, the loop only carries the switchover out: it never starts,
 * rewinds or promotes anything (once the key has gone, the rules would have us rejoin
 * as a replica). Safety actions stay: demote, release.
 */
static void handover_filter(struct agent *a, struct ha_decision *d)
{
	char reason[sizeof(d->reason)];

	if (!a->ho.active)
		return;
	switch (d->action) {
	case HA_WAIT:
	case HA_KEEP_LEADER:
	case HA_SWITCHOVER:
	case HA_DEMOTE:
	case HA_RELEASE:
		return;
	default:
		snprintf(reason, sizeof(reason), "shutting down: not acting (would %s: %s)",
			 ha_action_name(d->action), d->reason);
		d->action = HA_WAIT;
		snprintf(d->reason, sizeof(d->reason), "%s", reason);
		return;
	}
}

/* Our PostgreSQL stopped and the key gone: done once another member holds it. */
static bool handover_done(const struct agent *a)
{
	return !a->probe.postmaster_pid && !holds_leader(a) && a->dcs_ok && a->cluster.has_leader;
}

/*
 * Where the hand-over stands, before each loop. true: go on; false: stop now (done,
 * cancelled, out of time, or a second signal), logged.
 */
static bool handover_going_on(struct agent *a)
{
	int64_t now = cmn_now_ms(), took = now - a->ho.started_ms;
	bool leads = holds_leader(a);

	if (a->dcs_ok && switchover_names_us(a))
		a->ho.seen = true;
	if (handover_done(a)) {
		log_info("shutting down: hand-over done in %lld ms: %s is the leader, PostgreSQL "
			 "stays stopped",
			 (long long)took, a->cluster.leader);
		return false;
	}
	if (shutdown_requested > 1) {
		log_warning("shutting down: second signal after %lld ms of hand-over: stopping now",
			    (long long)took);
	} else if (now >= a->ho.deadline_ms) {
		log_warning("shutting down: hand-over did not finish in %d ms: stopping now",
			    a->cfg.shutdown_handover_timeout_ms);
	} else if (a->ho.seen && a->dcs_ok && !a->cluster.has_switchover && leads &&
		   a->probe.postmaster_pid) {
		log_warning("shutting down: the switchover request went away (cancelled) after "
			    "%lld ms: stopping now",
			    (long long)took);
	} else {
		return true;
	}
	/* Still leading: a plain stop, the replicas race as after any loss of the key. */
	if (leads && a->probe.postmaster_pid && switchover_names_us(a) &&
	    dcs_clear_switchover(&a->dcs) != PGW_OK)
		log_warning("could not clear our switchover request");
	return false;
}

/* Before each loop: false when the loop should end (shutting down, no hand-over left). */
static bool loop_going_on(struct agent *a)
{
	if (!shutdown_requested)
		return true;
	if (a->ho.active)
		return handover_going_on(a);
	a->signals_seen = shutdown_requested;
	return handover_begin(a);
}

static void agent_shutdown(struct agent *a)
{
	bool leader;

	if (a->job.kind != JOB_NONE && a->job.pid) {
		kill(a->job.pid, SIGTERM);
		for (int i = 0; i < 100 && cmn_proc_poll(a->job.pid, &(int){0}) == 0; i++)
			usleep(100000);
	}
	pgctl_probe(&a->pg, &a->probe);
	if (a->bootstrapping)
		bootstrap_failed(a, "interrupted"); /* let another member bootstrap */
	leader = holds_leader(a);
	pgctl_close(&a->pg);
	if (a->probe.postmaster_pid) {
		log_info("shutting down: stopping PostgreSQL");
		if (stop_postgres(a, "fast") != 0)
			(void)stop_postgres(a, "immediate");
		pgctl_probe(&a->pg, &a->probe);
		pgctl_close(&a->pg);
	}
	/* The fence goes, and the key with it, only once PostgreSQL is down. */
	if (a->probe.postmaster_pid && leader) {
		log_error(
		    "shutting down: PostgreSQL did not stop; keeping the leader key until our "
		    "lease expires (the fence stops PostgreSQL before that)");
		return;
	}
	if (agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir, 0) != PGW_OK)
		log_warning("could not disarm the fence");
	else
		a->fence_armed = false;
	if (leader && dcs_release_leader(&a->dcs, a->cfg.member_name) == PGW_OK)
		log_info("released the leader key");
	if (a->lease_id && etcd_lease_revoke(a->etcd, a->lease_id) != PGW_OK)
		log_debug("could not revoke our lease");
	log_info("shutting down: done");
}

static void usage(void)
{
	fprintf(stderr, "usage: pgwarden agent [-c node.ini]\n"
			"  Every key can also come from PGWARDEN_<SECTION>_<KEY>.\n");
}

/* Loads and checks the node file; the exit code when it does not do (2), else 0. */
static int load_config(struct agent *a, const char *path)
{
	enum cmn_log_level lvl;
	char err[1024];

	if (agent_config_load(path, &a->cfg, err, sizeof(err)) != PGW_OK ||
	    pgconf_check_parameters(&a->cfg, err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden agent: %s\n", err);
		return 2;
	}
	if (geteuid() == 0) {
		fprintf(stderr,
			"pgwarden agent: refusing to run as root (PostgreSQL cannot); run "
			"it as the postgres user, e.g. runuser -u postgres -- pgwarden agent "
			"...\n");
		return 2;
	}
	if (cmn_log_parse_level(a->cfg.log_level, &lvl) == PGW_OK)
		cmn_log_set_level(lvl);
	return 0;
}

/*
 * The configuration is loaded: the PGWARDEN_* variables (passwords among them) must
 * not be inherited by PostgreSQL and the tools we run.
 */
static void scrub_environment(void)
{
	for (char **e = environ; *e;) {
		char name[256];
		const char *eq = strchr(*e, '=');

		if (strncmp(*e, "PGWARDEN_", 9) != 0 || !eq || eq - *e >= (ptrdiff_t)sizeof(name)) {
			e++;
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
		unsetenv(name); /* shifts environ down: look at the same slot again */
	}
}

/* Signals, locks and the state's starting values; PGW_ENOMEM. */
static int init_state(struct agent *a, const char *path)
{
	pthread_condattr_t cattr;
	char ident[128];

	snprintf(ident, sizeof(ident), "agent[%s]", a->cfg.member_name);
	cmn_log_set_ident(ident);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGHUP, on_signal);
	pthread_mutex_init(&a->wake_lock, NULL);
	/* A wall-clock step must not stretch the loop's sleep. */
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&a->wake_cond, &cattr);
	pthread_cond_init(&a->req_cond, &cattr);
	pthread_condattr_destroy(&cattr);
	pthread_mutex_init(&a->req_lock, NULL);
	a->config_path = path;
	a->backup.config_path = path;
	dcs_cache_init(&a->cache);
	a->configured_upstream[0] = '?';
	/* An earlier agent's postgresql.conf without restore_command (stopped in the middle
	 * of a switchover) is written again before any promotion (do_promote). */
	a->conf_written = !pgconf_restore_command_off(&a->cfg);
	if (backup_remote(&a->cfg)) /* an earlier agent's, left by a stop mid-promotion */
		backup_repo_down(&a->cfg, false);
	/* A crash's (a lost host): pg_ctl stop would signal whatever process has its pid now.
	 * Kept while any postgres works in the directory (a running server among them). */
	(void)pgctl_remove_stale_pidfile(a->cfg.data_dir);
	a->dyn_revision = -1;
	a->sync_count = 1;
	a->node_ttl_ms = a->cfg.ttl_ms;
	a->node_loop_wait_ms = a->cfg.loop_wait_ms;
	a->node_retry_timeout_ms = a->cfg.retry_timeout_ms;
	a->node_max_lag = a->cfg.maximum_lag_on_failover;
	if (agent_config_backup_snapshot(&a->cfg, &a->node_backup) != PGW_OK)
		return PGW_ENOMEM;
	/* A restarted agent must not loosen what a running primary waits for. */
	pgconf_read_ssn(&a->cfg, a->cfg.synchronous_standby_names,
			sizeof(a->cfg.synchronous_standby_names));
	return PGW_OK;
}

/* etcd's client, the PostgreSQL controller, the files they need; PGW_ERR (logged). */
static int prepare(struct agent *a)
{
	struct etcd_client_opts eo;

	cluster_etcd_opts(&a->cfg.etcd, a->cfg.retry_timeout_ms, &eo);
	if (etcd_client_new(&eo, &a->etcd) != PGW_OK) {
		fprintf(stderr, "pgwarden agent: bad etcd endpoints '%s'\n", a->cfg.etcd.endpoints);
		return PGW_ERR;
	}
	dcs_init(&a->dcs, a->etcd, a->cfg.namespace, a->cfg.cluster_name);
	a->dcs.allowed_networks = a->cfg.allowed_networks;
	pgctl_init(&a->pg, &a->cfg);
	if (cmn_mkdir_p(a->cfg.socket_dir, 0700) != PGW_OK) {
		log_fatal("cannot create the socket directory %s: %s", a->cfg.socket_dir,
			  strerror(errno));
		return PGW_ERR;
	}
	if (pgconf_write_pgpass(&a->cfg) != PGW_OK)
		return PGW_ERR;
	if (backup_enabled(&a->cfg) && access(a->cfg.backup_pgbackrest, X_OK) != 0) {
		log_fatal("[backup] is set but %s cannot be run (%s): install pgBackRest (apt "
			  "install pgbackrest) or set [backup] pgbackrest",
			  a->cfg.backup_pgbackrest, strerror(errno));
		return PGW_ERR;
	}
	if (backup_enabled(&a->cfg) && backup_write_config(&a->cfg) != PGW_OK)
		return PGW_ERR;
	return PGW_OK;
}

/* The HA loop, until shutdown: one pass, then sleep until loop_wait or a wake-up. */
static void run_loop(struct agent *a)
{
	log_info("starting: cluster %s, member %s, etcd %s, ttl %d ms, loop_wait %d ms",
		 a->cfg.cluster_name, a->cfg.member_name, a->cfg.etcd.endpoints, a->cfg.ttl_ms,
		 a->cfg.loop_wait_ms);
	if (a->cfg.shutdown_handover_timeout_ms > 0 &&
	    a->cfg.shutdown_handover_timeout_ms <= a->cfg.switchover_proxy_wait_ms)
		log_warning(
		    "shutdown_handover_timeout (%d ms) does not exceed switchover_proxy_wait "
		    "(%d ms): a hand-over at shutdown may run out of time while the proxies "
		    "drain",
		    a->cfg.shutdown_handover_timeout_ms, a->cfg.switchover_proxy_wait_ms);
	(void)follow_start(a);
	while (loop_going_on(a)) {
		int64_t started = cmn_now_ms(), until = started + a->cfg.loop_wait_ms;

		run_once(a);
		if ((a->job.kind == JOB_PROMOTE && !a->job.pid) || a->promote_after_reload)
			until = started + AGENT_PROMOTE_POLL_MS; /* the clients wait for it */
		else if (a->job.kind != JOB_NONE || a->bootstrapping || a->backup.history_pid)
			until = started + AGENT_JOB_POLL_MS;
		else if (a->so_waiting && a->last_action == HA_SWITCHOVER &&
			 a->so_started_ms + a->cfg.switchover_proxy_wait_ms < until)
			/* Waiting for the proxies: their reports wake us; else the bound. */
			until = a->so_started_ms + a->cfg.switchover_proxy_wait_ms;
		if (a->ho.active && a->ho.deadline_ms < until)
			until = a->ho.deadline_ms;
		if (!(a->ho.active && handover_done(a)))
			agent_sleep(a, until);
	}
	req_stop(a);
	backup_stop(&a->backup);
	agent_shutdown(a);
	dcs_follow_stop(&a->follow);
}

int agent_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	struct agent *a;
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage();
			return 0;
		default:
			usage();
			return 2;
		}
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return 1;
	rc = load_config(a, path);
	if (rc != 0) {
		agent_config_free(&a->cfg);
		free(a);
		return rc;
	}
	scrub_environment();
	if (init_state(a, path) != PGW_OK) {
		log_fatal("out of memory");
		agent_config_free(&a->cfg);
		return 1;
	}
	rc = 1;
	if (prepare(a) != PGW_OK)
		goto out;
	api_state_init(&a->api, a->cfg.ttl_ms);
	struct api_ops ops = {.fn = api_op,
			      .arg = a,
			      .username = a->cfg.api_username,
			      .password = a->cfg.api_password};

	cmn_http_set_cafile(a->cfg.api_cafile);
	if (api_start(a->cfg.api_host, a->cfg.api_port, a->cfg.api_certfile, a->cfg.api_keyfile,
		      &a->api, &ops, &a->api_srv) == PGW_OK) {
		run_loop(a);
		rc = 0;
		api_stop(a->api_srv);
	}
	api_state_destroy(&a->api);
out:
	pgctl_close(&a->pg);
	dcs_cluster_free(&a->cluster);
	dcs_cache_destroy(&a->cache);
	free(a->published_member);
	if (a->etcd)
		etcd_client_free(a->etcd);
	cmn_kvlist_free(&a->node_backup);
	agent_config_free(&a->cfg);
	free(a);
	curl_global_cleanup();
	return rc;
}

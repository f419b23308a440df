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

enum job_kind {
	JOB_NONE,
	JOB_INITDB,
	JOB_CLONE,
	JOB_START,
	JOB_REWIND,
	JOB_PROMOTE,
};

static const char *const job_state[] = {
    [JOB_NONE] = "",
    [JOB_INITDB] = "initializing new cluster",
    [JOB_CLONE] = "creating replica",
    [JOB_START] = "starting",
    [JOB_REWIND] = "rewinding",
    [JOB_PROMOTE] = "promoting",
};

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
	int64_t not_streaming_since_ms;
	int replica_timeline;	    /* newest timeline our replica has received */
	int64_t switchover_seen_ms; /* a switchover request is pending since (0: none) */
	/* The switchover this leader is carrying out: the failover key's mod_revision
	 * (0: none), since when, and whether it is waiting for the proxies to drain. */
	int64_t so_revision;
	int64_t so_started_ms;
	bool so_waiting;
	int promote_from_timeline;
	uint64_t promote_from_lsn;
	bool after_promote;

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
	atomic_bool no_data; /* no data directory yet: a member's record wakes the loop */
};

extern char **environ;

static void req_finish(struct agent *a, unsigned int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* SIGTERM / SIGINT received: 1 once, 2 for a second one (stop at once). */
static volatile sig_atomic_t shutdown_requested, reload_requested;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_requested = 1;
	else if (shutdown_requested < 2)
		shutdown_requested = shutdown_requested + 1;
}

/* ---- waking the loop ---- */

static void agent_wake(struct agent *a)
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
			left = 200;		     /* re-check the shutdown flag */
		clock_gettime(CLOCK_MONOTONIC, &ts); /* wake_cond waits on this clock */
		ts.tv_sec += left / 1000;
		ts.tv_nsec += (left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&a->wake_cond, &a->wake_lock, &ts);
	}
	a->woken = false;
	pthread_mutex_unlock(&a->wake_lock);
}

/*
 * The follower's callback (its thread). Wakes the loop at once after a full read,
 * and for the leader key, a switchover request, the proxies' drain reports (the
 * leader waits for those while it hands over) and the initialize key (the others
 * clone as soon as the bootstrap recorded the system); and, while this member has no
 * data yet, the members' records (it clones as soon as the leader's says it runs).
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

		if (strcmp(key, a->wake_keys.leader) == 0 ||
		    strcmp(key, a->wake_keys.failover) == 0 ||
		    strcmp(key, a->wake_keys.initialize) == 0 ||
		    strncmp(key, a->wake_keys.proxies, strlen(a->wake_keys.proxies)) == 0 ||
		    (atomic_load(&a->no_data) &&
		     strncmp(key, a->wake_keys.members, strlen(a->wake_keys.members)) == 0)) {
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

/* ---- jobs ---- */

static int job_spawn(struct agent *a, enum job_kind kind, const char *const *argv)
{
	char log[4200];
	struct cmn_proc_opts o = {
	    .argv = argv,
	    .env_extra = pgctl_env(&a->pg),
	    .new_session = true,
	};
	pid_t pid;

	pgctl_log_path(&a->pg, log, sizeof(log));
	o.log_path = log;
	if (cmn_proc_spawn(&o, &pid) != PGW_OK)
		return PGW_ERR;
	a->job.kind = kind;
	a->job.pid = pid;
	a->job.started_ms = cmn_now_ms();
	a->job.from_repo = false;
	log_info("started %s (pid %d): %s", job_state[kind], (int)pid, argv[0]);
	return PGW_OK;
}

/* Runs a short command to completion (pg_ctl stop); returns its exit code or -1. */
static int run_now(struct agent *a, const char *const *argv, int timeout_ms)
{
	int code = -1;
	struct cmn_buf out = {0};

	if (cmn_proc_run(argv, pgctl_env(&a->pg), timeout_ms, &out, &code) != PGW_OK)
		code = -1;
	if (code != 0)
		log_warning("%s exited with %d: %s", argv[0], code, out.data ? out.data : "");
	cmn_buf_free(&out);
	return code;
}

static int write_standby_config(struct agent *a, const char *host, int port)
{
	struct pgconf_upstream up = {.host = host && *host ? host : NULL, .port = port};

	/* Ignored by a standby; what a promoted one starts with (strict: no write yet). */
	snprintf(a->cfg.synchronous_standby_names, sizeof(a->cfg.synchronous_standby_names), "%s",
		 a->sync_mode && a->sync_strict ? "*" : "");
	if (pgconf_write_conf(&a->cfg, &up) != PGW_OK || pgconf_write_hba(&a->cfg) != PGW_OK ||
	    pgconf_set_standby_signal(&a->cfg, true) != PGW_OK)
		return PGW_ERR;
	if (up.host)
		snprintf(a->configured_upstream, sizeof(a->configured_upstream), "%s:%d", host,
			 port);
	else
		a->configured_upstream[0] = '\0';
	return PGW_OK;
}

static int write_primary_config(struct agent *a)
{
	if (pgconf_write_conf(&a->cfg, NULL) != PGW_OK || pgconf_write_hba(&a->cfg) != PGW_OK ||
	    pgconf_set_standby_signal(&a->cfg, false) != PGW_OK)
		return PGW_ERR;
	a->configured_upstream[0] = '\0';
	return PGW_OK;
}

static void start_standby(struct agent *a, const char *host, int port)
{
	if (write_standby_config(a, host, port) != PGW_OK)
		return;
	if (job_spawn(a, JOB_START, pgctl_argv_start(&a->pg)) != PGW_OK)
		log_error("cannot start PostgreSQL");
}

static void clone_dir(const struct agent *a, char *out, size_t size)
{
	snprintf(out, size, "%s.clone", a->cfg.data_dir);
}

static void bootstrap_failed(struct agent *a, const char *why)
{
	log_error("bootstrap failed: %s; giving the initialize key back", why);
	if (a->probe.postmaster_pid)
		(void)run_now(a, pgctl_argv_stop(&a->pg, "immediate"), 30000);
	if (dcs_delete_initialize(&a->dcs) != PGW_OK)
		log_error("could not delete the initialize key: delete it by hand");
	if (cmn_rm_rf(a->cfg.data_dir) != PGW_OK)
		log_error("cannot remove %s", a->cfg.data_dir);
	a->bootstrapping = false;
}

static void manage_slots(struct agent *a);
static void do_clone(struct agent *a, const char *source);

static void job_finished(struct agent *a, int code)
{
	struct job j = a->job;

	memset(&a->job, 0, sizeof(a->job));
	log_info("%s finished with exit code %d after %lld ms", job_state[j.kind], code,
		 (long long)(cmn_now_ms() - j.started_ms));
	switch (j.kind) {
	case JOB_INITDB: {
		char pwfile[4200];

		snprintf(pwfile, sizeof(pwfile), "%s.pwfile", a->cfg.data_dir);
		unlink(pwfile);
		if (code != 0) {
			bootstrap_failed(a, "initdb failed (see the PostgreSQL log)");
			return;
		}
		if (write_primary_config(a) != PGW_OK ||
		    job_spawn(a, JOB_START, pgctl_argv_start(&a->pg)) != PGW_OK)
			bootstrap_failed(a, "cannot start the new cluster");
		return;
	}
	case JOB_CLONE: {
		char tmp[4200];

		clone_dir(a, tmp, sizeof(tmp));
		if (code != 0 && j.from_repo) {
			/* The repository cannot be read: pg_basebackup from the leader instead (a
			 * later clone tries the repository again). */
			log_warning(
			    "restore from the repository failed (exit %d, see the PostgreSQL "
			    "log): cloning with pg_basebackup instead",
			    code);
			a->repo_clone_failed = true;
			/* now: a reinit's stopped data must not start again meanwhile */
			do_clone(a, j.source);
			return;
		}
		if (code != 0) {
			log_error("pg_basebackup failed; will retry");
			if (cmn_rm_rf(tmp) != PGW_OK)
				log_error("cannot remove %s", tmp);
			return;
		}
		if (j.from_repo)
			log_info(
			    "replica restored from the repository: it replays the archive, then "
			    "streams from %s:%d",
			    j.upstream_host, j.upstream_port);
		if (cmn_rm_rf(a->cfg.data_dir) != PGW_OK || rename(tmp, a->cfg.data_dir) != 0 ||
		    chmod(a->cfg.data_dir, 0700) != 0) {
			log_error("cannot move the clone into %s: %s", a->cfg.data_dir,
				  strerror(errno));
			return;
		}
		start_standby(a, j.upstream_host, j.upstream_port);
		return;
	}
	case JOB_REWIND:
		if (code != 0) {
			if (a->cfg.remove_data_on_rewind_failure) {
				log_error("pg_rewind failed: removing the data directory to clone "
					  "again from the leader");
				if (cmn_rm_rf(a->cfg.data_dir) != PGW_OK)
					log_error("cannot remove %s", a->cfg.data_dir);
			} else {
				log_error(
				    "pg_rewind failed and remove_data_on_rewind_failure is off: "
				    "run 'pgwarden reinit' for this member");
			}
			return;
		}
		start_standby(a, j.upstream_host, j.upstream_port);
		return;
	case JOB_PROMOTE:
		if (code != 0) {
			log_error("promotion failed (exit %d)", code);
			return;
		}
		if (write_primary_config(a) != PGW_OK)
			log_error("cannot rewrite the configuration after promotion");
		(void)backup_requeue_timeline(&a->cfg, a->promote_from_timeline);
		a->after_promote = true;
		/* Slots before the others connect: a missing slot makes them retry later. */
		manage_slots(a);
		return;
	case JOB_START:
		if (a->req_waits_job) {
			if (code == 0)
				req_finish(a, 200, "restarted PostgreSQL");
			else
				req_finish(a, 503, "PostgreSQL did not start (exit %d)", code);
		}
		if (code != 0)
			log_warning(
			    "pg_ctl start returned %d: not accepting connections yet (a "
			    "replica waiting for WAL, or a failed start: see the PostgreSQL "
			    "log)",
			    code);
		return;
	case JOB_NONE:
		return;
	}
}

/* ---- lease ---- */

static void etcd_trouble(struct agent *a, const char *what, int rc)
{
	int64_t now = cmn_now_ms();

	if (now - a->last_etcd_error_log_ms >= 5000) {
		log_warning("etcd: %s failed: %s (endpoint %s)", what, pgw_strerror(rc),
			    etcd_client_endpoint(a->etcd));
		a->last_etcd_error_log_ms = now;
	}
}

static bool holds_leader(const struct agent *a);

/*
 * Renews our lease: every loop while we hold the leader key, otherwise only once
 * half of it has run out (member keys tolerate that; it halves the keepalives).
 * force: renew now (before taking the leader key).
 */
static bool lease_maintain(struct agent *a, bool force)
{
	int64_t sent = cmn_now_ms();
	int ttl = 0;
	int rc;

	if (a->lease_id && a->lease_ttl_ms != a->cfg.ttl_ms) {
		/*
		 * ttl changed: a new lease. The leader moves its key over at once, and
		 * keeps the old lease (and its deadline) if that fails, so its deadline
		 * never runs past the lease the key is really on.
		 */
		int64_t old = a->lease_id, old_deadline = a->lease_deadline_ms;
		int old_ttl = a->lease_ttl_ms;
		bool leader = holds_leader(a), moved = false;

		log_info("ttl is now %d ms: granting a new lease", a->cfg.ttl_ms);
		a->lease_id = 0;
		if (lease_maintain(a, true)) {
			if (!leader || (dcs_move_leader(&a->dcs, a->cfg.member_name, a->lease_id,
							&moved) == PGW_OK &&
					moved)) {
				if (leader)
					a->cluster.leader_lease = a->lease_id;
				if (etcd_lease_revoke(a->etcd, old) != PGW_OK)
					log_debug("could not revoke the old lease");
				return true;
			}
			log_warning("could not move the leader key to the new lease: keeping the "
				    "old one");
			if (etcd_lease_revoke(a->etcd, a->lease_id) != PGW_OK)
				log_debug("could not revoke the new lease");
		}
		a->lease_id = old;
		a->lease_deadline_ms = old_deadline;
		a->lease_ttl_ms = old_ttl;
		free(a->published_member);
		a->published_member = NULL;
		force = true; /* renew the old one now */
	}
	if (a->lease_id && !force) {
		if (sent - a->last_renew_try_ms < a->cfg.loop_wait_ms - 100)
			return false; /* a job makes the loop tick faster: not the keepalives */
		if (!holds_leader(a) && a->lease_deadline_ms - sent > a->cfg.ttl_ms / 2)
			return false;
	}
	a->last_renew_try_ms = sent;
	if (a->lease_id) {
		rc = etcd_lease_keepalive(a->etcd, a->lease_id, &ttl);
		if (rc == PGW_OK && ttl > 0) {
			a->lease_deadline_ms = sent + (int64_t)ttl * 1000;
			a->last_renew_ok_ms = sent;
			return true;
		}
		if (rc != PGW_ENOTFOUND && !(rc == PGW_OK && ttl <= 0)) {
			etcd_trouble(a, "lease keepalive", rc);
			return false;
		}
		log_warning("lease %llx expired in etcd: granting a new one",
			    (unsigned long long)a->lease_id);
		a->lease_id = 0;
		a->lease_deadline_ms = 0;
	}
	sent = cmn_now_ms();
	rc = etcd_lease_grant(a->etcd, a->cfg.ttl_ms / 1000, &a->lease_id, &ttl);
	if (rc != PGW_OK) {
		a->lease_id = 0;
		etcd_trouble(a, "lease grant", rc);
		return false;
	}
	a->lease_deadline_ms = sent + (int64_t)ttl * 1000;
	a->last_renew_ok_ms = sent;
	a->lease_ttl_ms = a->cfg.ttl_ms;
	free(a->published_member);
	a->published_member = NULL; /* re-put the member key on the new lease */
	return true;
}

/* ---- state published to etcd and the REST API ---- */

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

static void publish_member(struct agent *a)
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
static bool holds_leader(const struct agent *a)
{
	if (!a->cluster.has_leader || strcmp(a->cluster.leader, a->cfg.member_name) != 0)
		return false;
	return a->dcs_ok || cmn_now_ms() < a->lease_deadline_ms - CLUSTER_DEMOTE_MARGIN_MS;
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

static void publish_api(struct agent *a)
{
	char *status = render_status(a);
	char *cluster = a->dcs_ok ? render_cluster(a) : NULL;
	char *history = a->dcs_ok ? strdup(a->cluster.history ? a->cluster.history : "[]") : NULL;
	char *config = a->dcs_ok ? strdup(a->cluster.config ? a->cluster.config : "{}") : NULL;
	const struct pgctl_probe *p = &a->probe;

	pthread_mutex_lock(&a->api.lock);
	api_state_set_docs(&a->api, status, cluster, history);
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

/* ---- actions ---- */

static const struct dcs_member *member_of(const struct agent *a, const char *name)
{
	return name && *name ? dcs_find_member(&a->cluster, name) : NULL;
}

static void do_bootstrap(struct agent *a)
{
	bool won = false;
	char pwfile[4200];

	if (dcs_take_initialize(&a->dcs, &won) != PGW_OK || !won)
		return;
	log_info("won the initialize race: bootstrapping a new cluster");
	if (cmn_rm_rf(a->cfg.data_dir) != PGW_OK) {
		bootstrap_failed(a, "cannot empty the data directory");
		return;
	}
	snprintf(pwfile, sizeof(pwfile), "%s.pwfile", a->cfg.data_dir);
	if (cmn_write_file_atomic(pwfile, a->cfg.superuser_password,
				  strlen(a->cfg.superuser_password), 0600) != PGW_OK) {
		bootstrap_failed(a, "cannot write the initdb password file");
		return;
	}
	a->bootstrapping = true;
	a->bootstrap_deadline_ms = cmn_now_ms() + 300000;
	if (job_spawn(a, JOB_INITDB, pgctl_argv_initdb(&a->pg, pwfile)) != PGW_OK) {
		unlink(pwfile);
		bootstrap_failed(a, "cannot run initdb");
	}
}

/* Creates the replication role once the new primary accepts connections. */
/* Creates the replication role if missing; the server only sees a SCRAM verifier. */
static int create_replication_role(struct agent *a)
{
	PGconn *conn = a->pg.conn;
	const char *user = a->cfg.replication_user;
	int rc = PGW_ENOMEM;

	if (!conn)
		return PGW_ENET;
	char *verifier =
	    PQencryptPasswordConn(conn, a->cfg.replication_password, user, "scram-sha-256");
	char *ident = PQescapeIdentifier(conn, user, strlen(user));
	char *name_lit = PQescapeLiteral(conn, user, strlen(user));
	char *pw_lit = verifier ? PQescapeLiteral(conn, verifier, strlen(verifier)) : NULL;

	if (ident && name_lit && pw_lit) {
		char sql[2048];

		snprintf(sql, sizeof(sql),
			 "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) "
			 "THEN CREATE ROLE %s WITH LOGIN REPLICATION PASSWORD %s; END IF; END$$",
			 name_lit, ident, pw_lit);
		rc = pgctl_exec(&a->pg, sql);
	}
	PQfreemem(verifier);
	PQfreemem(ident);
	PQfreemem(name_lit);
	PQfreemem(pw_lit);
	return rc;
}

/*
 * The new primary accepts connections: replication role, leader key, and the
 * system identifier in the initialize key (which lets the others clone).
 */
static void finish_bootstrap(struct agent *a)
{
	bool won = false;

	if (!a->probe.accepting) {
		if (cmn_now_ms() > a->bootstrap_deadline_ms)
			bootstrap_failed(a, "the new cluster did not start in time");
		return;
	}
	if (!a->lease_id)
		return;
	if (create_replication_role(a) != PGW_OK) {
		bootstrap_failed(a, "cannot create the replication role");
		return;
	}
	if (!a->local_sysid[0]) {
		bootstrap_failed(a, "cannot read the system identifier");
		return;
	}
	if (dcs_acquire_leader(&a->dcs, a->cfg.member_name, a->lease_id, -1, &won) != PGW_OK ||
	    !won) {
		bootstrap_failed(a, "cannot take the leader key");
		return;
	}
	if (dcs_set_initialize(&a->dcs, a->local_sysid) != PGW_OK) {
		log_error("cannot record the system identifier; will retry");
		return;
	}
	log_info("bootstrap done: system identifier %s, leader %s", a->local_sysid,
		 a->cfg.member_name);
	a->bootstrapping = false;
	a->last_full_read_ms = 0;
	if (dcs_append_history(&a->dcs, NULL, 1, 0, "bootstrap", a->cfg.member_name) != PGW_OK)
		log_warning("could not start the history");
}

static void do_clone(struct agent *a, const char *source)
{
	const struct dcs_member *src = member_of(a, source);
	const struct dcs_member *leader = member_of(a, a->cluster.leader);
	char tmp[4200];

	if (!src || !leader)
		return;
	clone_dir(a, tmp, sizeof(tmp));
	if (cmn_rm_rf(tmp) != PGW_OK) {
		log_error("cannot clean %s", tmp);
		return;
	}
	if (backup_enabled(&a->cfg) && a->cfg.backup_replica_from_backup &&
	    a->cluster.has_last_backup && !a->repo_clone_failed) {
		/* Patroni's create_replica_methods: the repository first, the leader spared. */
		char store[8][4200], opt[4300];
		const char *argv[9], *extra[] = {opt, "--type=standby", "--target-timeline=latest",
						 "--log-level-console=info", NULL};

		if (cmn_mkdir_p(tmp, 0700) != PGW_OK) {
			log_error("cannot create %s: %s", tmp, strerror(errno));
			return;
		}
		snprintf(opt, sizeof(opt), "--pg1-path=%s", tmp);
		backup_argv(&a->cfg, "restore", extra, store, argv, 9);
		log_info("creating a replica from the repository %s (then streaming from %s)",
			 a->cfg.backup_repo_path, leader->name);
		if (job_spawn(a, JOB_CLONE, argv) != PGW_OK)
			return;
		a->job.from_repo = true;
	} else {
		log_info("cloning from %s (%s:%d)", src->name, src->host, src->port);
		if (job_spawn(a, JOB_CLONE,
			      pgctl_argv_basebackup(&a->pg, tmp, src->host, src->port)) != PGW_OK)
			return;
		a->repo_clone_failed = false;
	}
	snprintf(a->job.upstream_host, sizeof(a->job.upstream_host), "%s", leader->host);
	a->job.upstream_port = leader->port;
	snprintf(a->job.source, sizeof(a->job.source), "%s", src->name);
}

static void do_rewind(struct agent *a, const char *source)
{
	const struct dcs_member *src = member_of(a, source);

	if (!src)
		return;
	if (!a->cfg.use_pg_rewind) {
		log_warning("use_pg_rewind is off: re-cloning from %s instead", src->name);
		if (cmn_rm_rf(a->cfg.data_dir) != PGW_OK)
			log_error("cannot remove %s", a->cfg.data_dir);
		return;
	}
	/* pg_rewind copies the leader's config files: ours are rewritten afterwards. */
	if (job_spawn(a, JOB_REWIND, pgctl_argv_rewind(&a->pg, src->host, src->port)) != PGW_OK)
		return;
	snprintf(a->job.upstream_host, sizeof(a->job.upstream_host), "%s", src->host);
	a->job.upstream_port = src->port;
}

/*
 * Promotion: the promote file and SIGUSR1, as pg_ctl promote does, without its process
 * start on the hand-over's path; the job (no process: pid 0) ends when the probe sees
 * PostgreSQL out of recovery (promote_poll). pg_ctl promote when the signal cannot be
 * sent.
 */
static void do_promote(struct agent *a)
{
	a->promote_from_timeline = a->probe.timeline;
	a->promote_from_lsn = a->probe.lsn;
	log_info("promoting (timeline %d, position %llx)", a->probe.timeline,
		 (unsigned long long)a->probe.lsn);
	/* Before the promotion's checkpoint can remove what the old primary did not archive. */
	(void)backup_requeue_timeline(&a->cfg, a->promote_from_timeline);
	if (pgctl_signal_promote(&a->pg) == PGW_OK) {
		a->job.kind = JOB_PROMOTE;
		a->job.pid = 0;
		a->job.started_ms = cmn_now_ms();
		return;
	}
	if (job_spawn(a, JOB_PROMOTE, pgctl_argv_promote(&a->pg)) != PGW_OK)
		log_error("cannot run pg_ctl promote");
}

/* The signalled promotion's end, after a probe: 1 with *code set, 0 while it runs. */
static int promote_poll(struct agent *a, int *code)
{
	if (a->probe.accepting && !a->probe.in_recovery) {
		*code = 0;
		return 1;
	}
	if (!a->probe.postmaster_pid) {
		log_error("PostgreSQL stopped while promoting");
		*code = 1;
		return 1;
	}
	if (cmn_now_ms() - a->job.started_ms >= AGENT_PG_START_TIMEOUT_S * 1000LL) {
		log_error("PostgreSQL still in recovery %d s after the promotion request",
			  AGENT_PG_START_TIMEOUT_S);
		*code = 1;
		return 1;
	}
	return 0;
}

static void do_demote(struct agent *a, const char *why);
static bool claim_sync(struct agent *a);

static void do_race(struct agent *a)
{
	struct ha_peer peers[DCS_MAX_MEMBERS];
	const char *urls[DCS_MAX_MEMBERS] = {NULL};
	const struct dcs_member *of[DCS_MAX_MEMBERS];
	const char *unanswered = NULL;
	struct cmn_buf bodies[DCS_MAX_MEMBERS];
	long status[DCS_MAX_MEMBERS];
	char url_store[DCS_MAX_MEMBERS][400];
	size_t n = 0;
	char reason[256];
	bool won = false;

	memset(bodies, 0, sizeof(bodies));
	for (size_t i = 0; i < a->cluster.n_members && n < DCS_MAX_MEMBERS; i++) {
		const struct dcs_member *m = &a->cluster.members[i];

		if (strcmp(m->name, a->cfg.member_name) == 0 || !m->api_url[0])
			continue;
		memset(&peers[n], 0, sizeof(peers[n]));
		snprintf(peers[n].name, sizeof(peers[n].name), "%s", m->name);
		/* Synchronous mode: members outside the set cannot take over, they don't count. */
		peers[n].nofailover =
		    m->nofailover || (a->cluster.has_sync && !dcs_sync_has(&a->cluster, m->name) &&
				      strcmp(a->cluster.sync_leader, m->name) != 0);
		snprintf(url_store[n], sizeof(url_store[n]), "%s/status", m->api_url);
		urls[n] = url_store[n];
		of[n] = m;
		n++;
	}
	cmn_http_get_many(urls, n, AGENT_PEER_TIMEOUT_MS, bodies, status);
	for (size_t i = 0; i < n; i++) {
		struct member_status st;

		if (status[i] == 200 && member_parse_status(bodies[i].data, &st)) {
			peers[i].reachable = true;
			peers[i].is_primary = strcmp(st.role, "primary") == 0;
			peers[i].lsn = st.lsn;
			peers[i].timeline = st.timeline;
		} else {
			/* Alive in etcd (its member key lives on its lease) yet silent: judged by
			 * what it last published, and waited for a while. */
			peers[i].lsn = of[i]->lsn;
			peers[i].timeline = of[i]->timeline;
			if (!peers[i].nofailover)
				unanswered = peers[i].name;
		}
		cmn_buf_free(&bodies[i]);
	}
	struct ha_input in = {.me = a->cfg.member_name, .pg = &a->probe};
	bool candidate = a->cluster.has_switchover &&
			 strcmp(a->cluster.switchover_candidate, a->cfg.member_name) == 0;

	/* A switchover's candidate: the old leader stopped cleanly, every replica has
	 * its last WAL; only a still-running primary would stop us. */
	for (size_t i = 0; candidate && i < n; i++) {
		peers[i].lsn = 0;
		peers[i].timeline = 0;
	}
	/* Not answering is not being behind (a flooded REST API, a stalled host): wait up
	 * to ttl for its live position, then go by the one it published. */
	if (unanswered && !candidate) {
		int64_t now = cmn_now_ms();

		if (!a->race_wait_since_ms)
			a->race_wait_since_ms = now;
		if (now - a->race_wait_since_ms < a->cfg.ttl_ms) {
			log_info(
			    "not taking the leader key yet: %s does not answer on its REST API "
			    "(waiting up to %d ms for its position)",
			    unanswered, a->cfg.ttl_ms);
			return;
		}
		log_warning("%s has not answered for %lld ms: going by the position it last "
			    "published in etcd",
			    unanswered, (long long)(now - a->race_wait_since_ms));
	}
	a->race_wait_since_ms = 0;
	if (!ha_healthiest(&in, peers, n, reason, sizeof(reason))) {
		log_info("not taking the leader key: %s", reason);
		if (!a->probe.in_recovery)
			do_demote(a, "a primary without the leader key that is not the healthiest");
		return;
	}
	if (!lease_maintain(a, true)) /* the leader key starts with a full lease */
		return;
	/* Compared with the sync key we decided on: a newer one may not list us. */
	if (dcs_acquire_leader(&a->dcs, a->cfg.member_name, a->lease_id,
			       a->cluster.sync_mod_revision, &won) != PGW_OK)
		return;
	if (!won) {
		log_info("another member took the leader key first");
		if (!a->probe.in_recovery)
			do_demote(a, "another member took the leader key");
		return;
	}
	log_info("took the leader key (%s)", reason);
	a->last_full_read_ms = 0; /* next loop: read etcd itself, not the watch cache */

	snprintf(a->cluster.leader, sizeof(a->cluster.leader), "%s", a->cfg.member_name);
	a->cluster.has_leader = true;
	a->cluster.leader_lease = a->lease_id;
	if (a->probe.in_recovery && claim_sync(a))
		do_promote(a);
}

static void do_demote(struct agent *a, const char *why)
{
	log_warning("demoting: %s", why);
	if (run_now(a, pgctl_argv_stop(&a->pg, "immediate"), 30000) != 0) {
		log_error("pg_ctl stop -m immediate failed: the fence stays armed");
	} else if (agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir, 0) == PGW_OK) {
		a->fence_armed = false;
	}
	a->configured_upstream[0] = '?';
	a->configured_upstream[1] = '\0';
	pgctl_close(&a->pg);
}

/* ---- dynamic configuration and synchronous replication ---- */

static bool kvlist_equal(const struct cmn_kvlist *x, const struct cmn_kvlist *y)
{
	if (x->n != y->n)
		return false;
	for (size_t i = 0; i < x->n; i++) {
		const char *v = cmn_kvlist_get(y, x->items[i].key);

		if (!v || strcmp(v, x->items[i].value) != 0)
			return false;
	}
	return true;
}

/* Rewrites postgresql.conf for the role it has now and reloads a running server. */
static int rewrite_conf_and_reload(struct agent *a)
{
	struct pgconf_upstream up = {0};
	char host[256];
	int port = 0;

	if (pgconf_has_standby_signal(&a->cfg) && a->configured_upstream[0] &&
	    a->configured_upstream[0] != '?' &&
	    cmn_split_hostport(a->configured_upstream, host, sizeof(host), &port) == PGW_OK) {
		up.host = host;
		up.port = port;
	}
	if (pgconf_write_conf(&a->cfg, pgconf_has_standby_signal(&a->cfg) ? &up : NULL) != PGW_OK)
		return PGW_ERR;
	if (!a->probe.postmaster_pid)
		return PGW_OK;
	return pgctl_reload(&a->pg);
}

/*
 * Applies the config key when it changed: timing, maximum lag, synchronous mode
 * and PostgreSQL parameters (written to postgresql.conf and reloaded by the loop).
 * An invalid document is ignored as a whole, with an error in the log.
 */
static void apply_dynamic_config(struct agent *a)
{
	struct dyncfg d;
	char err[512];

	if (a->cluster.config_mod_revision == a->dyn_revision)
		return;
	a->dyn_revision = a->cluster.config_mod_revision;
	if (dyncfg_parse(a->cluster.config, &agent_config_dyncfg_rules, &d, err, sizeof(err)) !=
	    PGW_OK) {
		log_error("ignoring the dynamic configuration in etcd: %s", err);
		return;
	}
	int ttl = d.ttl_ms ? d.ttl_ms : a->node_ttl_ms;
	int lw = d.loop_wait_ms ? d.loop_wait_ms : a->node_loop_wait_ms;
	int rt = d.retry_timeout_ms ? d.retry_timeout_ms : a->node_retry_timeout_ms;

	if (cluster_check_timing(ttl, lw, rt, err, sizeof(err)) != PGW_OK) {
		log_error("ignoring the timing of the dynamic configuration: %s", err);
		ttl = a->node_ttl_ms;
		lw = a->node_loop_wait_ms;
		rt = a->node_retry_timeout_ms;
	}
	if (ttl != a->cfg.ttl_ms || lw != a->cfg.loop_wait_ms || rt != a->cfg.retry_timeout_ms)
		log_info("timing now: ttl %d ms, loop_wait %d ms, retry_timeout %d ms", ttl, lw,
			 rt);
	if (rt != a->cfg.retry_timeout_ms)
		etcd_client_set_timeout(a->etcd, rt);
	a->cfg.ttl_ms = ttl;
	a->cfg.loop_wait_ms = lw;
	a->cfg.retry_timeout_ms = rt;
	a->cfg.maximum_lag_on_failover = d.maximum_lag >= 0 ? d.maximum_lag : a->node_max_lag;
	if (d.sync_mode != a->sync_mode || d.sync_strict != a->sync_strict ||
	    d.sync_count != a->sync_count)
		log_info("synchronous_mode %s%s, synchronous_node_count %d",
			 d.sync_mode ? "on" : "off", d.sync_strict ? " (strict)" : "",
			 d.sync_count);
	a->sync_mode = d.sync_mode;
	a->sync_strict = d.sync_strict;
	a->sync_count = d.sync_count;
	if (!holds_leader(a)) {
		const char *want = a->sync_mode && a->sync_strict ? "*" : "";

		if (strcmp(a->cfg.synchronous_standby_names, want) != 0) {
			snprintf(a->cfg.synchronous_standby_names,
				 sizeof(a->cfg.synchronous_standby_names), "%s", want);
			a->conf_dirty = true;
		}
	}
	if (!kvlist_equal(&a->cfg.dyn_parameters, &d.parameters)) {
		cmn_kvlist_free(&a->cfg.dyn_parameters);
		a->cfg.dyn_parameters = d.parameters;
		memset(&d.parameters, 0, sizeof(d.parameters));
		a->conf_dirty = true;
		log_info("PostgreSQL parameters of the dynamic configuration changed");
	}
	/* pgbackrest.conf is written again; archive_command follows (archive_async). */
	if (backup_apply_dynamic(&a->cfg, &d.backup, &a->node_backup))
		a->conf_dirty = true;
	dyncfg_free(&d);
}

/* After the HA action: new parameters reach a running server by a reload. */
static void apply_conf_change(struct agent *a)
{
	if (!a->conf_dirty || a->job.kind != JOB_NONE)
		return;
	if (!a->probe.data_valid) {
		a->conf_dirty = false;
		return;
	}
	if (rewrite_conf_and_reload(a) == PGW_OK) {
		if (a->probe.postmaster_pid)
			log_info("postgresql.conf rewritten and reloaded");
		a->conf_dirty = false;
	}
}

/* One line of pg_stat_replication as manage_sync needs it. */

/*
 * Whether a standby still answers: the reply_time of its walsender (the standby's
 * own clock, so only compared with its earlier value) changed within max_age_ms of
 * our clock (now: read before the query, so a slow query cannot make a standby look
 * silent). A standby replies at least every wal_receiver_status_interval; one whose
 * postgres hangs, or that is cut off from us while its agent still reaches etcd,
 * keeps a "streaming" walsender until wal_sender_timeout (60 s) while every commit
 * waits for it.
 */
static bool standby_replies(struct agent *a, const char *name, int pid, const char *reply,
			    int64_t now, int64_t max_age_ms)
{
	size_t n = sizeof(a->replies) / sizeof(a->replies[0]), slot = n, oldest = 0;

	for (size_t i = 0; i < n; i++) {
		if (a->replies[i].pid == pid) {
			slot = i;
			break;
		}
		/* A new walsender takes the oldest entry, a silent one last. */
		if (a->replies[i].silent < a->replies[oldest].silent ||
		    (a->replies[i].silent == a->replies[oldest].silent &&
		     a->replies[i].changed_ms < a->replies[oldest].changed_ms))
			oldest = i;
	}
	if (slot == n) {
		slot = oldest;
		a->replies[slot].pid = pid;
		a->replies[slot].reply[0] = '\0';
		a->replies[slot].silent = false;
	}
	if (strcmp(a->replies[slot].reply, reply) != 0) {
		snprintf(a->replies[slot].reply, sizeof(a->replies[slot].reply), "%s", reply);
		a->replies[slot].changed_ms = now;
		if (a->replies[slot].silent)
			log_info("standby %s replies again", name);
		a->replies[slot].silent = false;
		return true;
	}
	if (max_age_ms <= 0 || now - a->replies[slot].changed_ms <= max_age_ms)
		return true;
	if (!a->replies[slot].silent)
		log_warning("standby %s sent no reply for %lld ms: not fit to be synchronous", name,
			    (long long)(now - a->replies[slot].changed_ms));
	a->replies[slot].silent = true;
	return false;
}

static int write_sync(struct agent *a, const char *set)
{
	bool ok = false;

	a->last_full_read_ms = 0; /* see our own write (or someone else's) next loop */
	if (dcs_write_sync(&a->dcs, a->cfg.member_name, set, a->cluster.sync_mod_revision, &ok) !=
	    PGW_OK) {
		/* It may have been written all the same: change nothing until a full read. */
		a->sync_unsure = true;
		return PGW_ERR;
	}
	if (!ok)
		return PGW_ERR;
	log_info("synchronous set recorded in etcd: [%s]", set);
	a->cluster.has_sync = true;
	snprintf(a->cluster.sync_leader, sizeof(a->cluster.sync_leader), "%s", a->cfg.member_name);
	snprintf(a->cluster.sync_standby, sizeof(a->cluster.sync_standby), "%s", set);
	return PGW_OK;
}

/*
 * Before a promotion in synchronous mode: the sync key must name us, with nobody
 * synchronous yet, so that none of the old set (nor the old leader) can take over
 * from commits we will acknowledge. No promotion until that is written.
 */
static bool claim_sync(struct agent *a)
{
	const struct dcs_cluster *c = &a->cluster;

	if (!c->has_sync ||
	    (strcmp(c->sync_leader, a->cfg.member_name) == 0 && !c->sync_standby[0]))
		return true;
	if (!a->sync_unsure && write_sync(a, "") == PGW_OK)
		return true;
	log_warning("not promoting yet: could not record ourselves in the sync key");
	return false;
}

static void set_ssn(struct agent *a, const char *ssn)
{
	snprintf(a->cfg.synchronous_standby_names, sizeof(a->cfg.synchronous_standby_names), "%s",
		 ssn);
	if (rewrite_conf_and_reload(a) != PGW_OK) {
		log_warning("could not apply synchronous_standby_names = '%s'", ssn);
		a->conf_dirty = true;
		return;
	}
	log_info("synchronous_standby_names = '%s'", ssn);
	a->sync_changed_ms = cmn_now_ms();
	a->sync_confirm_lsn = 0;
}

/*
 * Synchronous replication, on the leader. Invariant: every member listed in the
 * sync key has every commit acknowledged to a client, so any of them may take
 * over without losing one. Hence the order of steps, one per loop (except that 3
 * follows 2 at once, etcd having confirmed the write):
 *   1. the key names us as leader (a new leader first empties it);
 *   2. a standby leaves the key before synchronous_standby_names stops waiting
 *      for it;
 *   3. synchronous_standby_names waits for all of the wanted standbys
 *      ("FIRST n (all n)"), or for any standby in strict mode when none is;
 *   4. a standby joins the key only after commits wait for it and it has flushed
 *      everything written before that.
 */
static void manage_sync(struct agent *a)
{
	const struct dcs_cluster *c = &a->cluster;
	const char *me = a->cfg.member_name;
	struct walsender ws[DCS_MAX_MEMBERS];
	size_t n_ws = 0;
	uint64_t flushed = 0;
	char *rows;

	if (a->sync_unsure)
		return; /* a sync key write of unknown outcome: wait for a full read */
	if (!a->sync_mode) {
		/* Off: nobody is listed any more before commits stop waiting. */
		if (c->has_sync && (strcmp(c->sync_leader, me) != 0 || c->sync_standby[0]))
			(void)write_sync(a, "");
		else if (a->cfg.synchronous_standby_names[0])
			set_ssn(a, "");
		else if (c->has_sync) {
			char key[600];

			dcs_key(&a->dcs, DCS_KEY_SYNC, key, sizeof(key));
			if (etcd_delete(a->etcd, key, NULL, NULL) == PGW_OK)
				log_info("synchronous mode off: sync key removed");
			a->last_full_read_ms = 0;
		}
		return;
	}
	if (!c->has_sync || strcmp(c->sync_leader, me) != 0) {
		(void)write_sync(a, "");
		return;
	}
	int64_t asked_ms = cmn_now_ms();

	rows = pgctl_query_value(
	    &a->pg, "SELECT '=' || current_setting('synchronous_standby_names') || E'\\n' ||"
		    " pg_current_wal_flush_lsn()::text || ' ' || (SELECT setting FROM pg_settings"
		    " WHERE name = 'wal_receiver_status_interval') || coalesce((SELECT"
		    " string_agg(E'\\n' || application_name || ' ' || state || ' ' ||"
		    " coalesce(flush_lsn, '0/0')::text || ' ' || pid || ' ' || coalesce(extract("
		    "epoch FROM reply_time)::text, '-'), '') FROM pg_stat_replication), '')");
	if (!rows)
		return;
	char *save = NULL, *line = strtok_r(rows, "\n", &save);
	/* "=" + the setting as this session sees it (it may be empty). */
	bool ssn_live = line && strcmp(line + 1, a->cfg.synchronous_standby_names) == 0;

	char flush_s[32];
	int interval_s = 0;

	line = line ? strtok_r(NULL, "\n", &save) : NULL;
	if (!line || sscanf(line, "%31s %d", flush_s, &interval_s) != 2 ||
	    cmn_parse_lsn(flush_s, &flushed) != PGW_OK) {
		free(rows);
		return;
	}
	/* Three status intervals without a reply (at least 3 s; none when standbys send
	 * no periodic status): the standby is not fit to be synchronous. */
	int64_t reply_max_ms = interval_s > 0 ? (int64_t)interval_s * 3000 : 0;

	while ((line = strtok_r(NULL, "\n", &save)) && n_ws < DCS_MAX_MEMBERS) {
		char name[DCS_NAME_MAX], state[32], lsn[32], reply[40];
		int pid;

		if (sscanf(line, "%63s %31s %31s %d %39s", name, state, lsn, &pid, reply) != 5)
			continue;
		snprintf(ws[n_ws].name, sizeof(ws[n_ws].name), "%s", name);
		ws[n_ws].streaming = strcmp(state, "streaming") == 0;
		if (ws[n_ws].streaming && strcmp(reply, "-") != 0 &&
		    !standby_replies(a, name, pid, reply, asked_ms, reply_max_ms))
			ws[n_ws].streaming = false;
		if (cmn_parse_lsn(lsn, &ws[n_ws].flush) != PGW_OK)
			ws[n_ws].flush = 0;
		n_ws++;
	}
	free(rows);

	/* Wanted: streaming members fit to take over, current ones first, then the most
	 * advanced, up to synchronous_node_count (syncrep_pick). */
	const struct walsender *pick[DCS_MAX_MEMBERS];
	size_t n_pick =
	    syncrep_pick(c, me, a->cfg.synchronous_standby_names, ws, n_ws, a->sync_count, pick);
	struct cmn_buf want = {0}, ssn = {0}, keep = {0};

	for (size_t i = 0; i < n_pick; i++)
		cmn_buf_printf(&want, "%s%s", i ? "," : "", pick[i]->name);
	const char *want_s = want.data ? want.data : "";

	/* Step 2: a member we no longer want leaves the key first. */
	if (syncrep_keep(c->sync_standby, want_s, &keep) &&
	    write_sync(a, keep.data ? keep.data : "") != PGW_OK)
		goto out;
	/* Step 3 (after a confirmed step 2: commits stop waiting for it in this loop). */
	if (syncrep_ssn(pick, n_pick, a->sync_strict, &ssn) != PGW_OK)
		goto out;
	if (strcmp(ssn.data ? ssn.data : "", a->cfg.synchronous_standby_names) != 0) {
		set_ssn(a, ssn.data ? ssn.data : "");
		goto out;
	}
	/* Step 4. */
	if (strcmp(want_s, c->sync_standby) == 0 || !ssn_live)
		goto out;
	if (cmn_now_ms() - a->sync_changed_ms < a->cfg.loop_wait_ms)
		goto out; /* let every walsender see the new setting */
	if (!a->sync_confirm_lsn) {
		a->sync_confirm_lsn = flushed;
		goto out;
	}
	for (size_t i = 0; i < n_pick; i++)
		if (!dcs_sync_has(c, pick[i]->name) && pick[i]->flush < a->sync_confirm_lsn)
			goto out;
	(void)write_sync(a, want_s);
out:
	cmn_buf_free(&want);
	cmn_buf_free(&ssn);
	cmn_buf_free(&keep);
}

static void manage_slots(struct agent *a)
{
	struct cmn_buf sql = {0};
	char slot[64];
	bool first = true;

	/* Create a slot per other member, drop inactive ones of members that left. */
	cmn_buf_printf(&sql, "WITH want(name) AS (VALUES ");
	for (size_t i = 0; i < a->cluster.n_members; i++) {
		if (strcmp(a->cluster.members[i].name, a->cfg.member_name) == 0)
			continue;
		cmn_slot_name(a->cluster.members[i].name, slot, sizeof(slot));
		cmn_buf_printf(&sql, "%s('%s')", first ? "" : ",", slot);
		first = false;
	}
	if (first)
		cmn_buf_printf(&sql, "(NULL::text)");
	cmn_buf_printf(
	    &sql,
	    "), created AS (SELECT pg_create_physical_replication_slot(w.name, true) FROM want w"
	    " WHERE w.name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s"
	    " WHERE s.slot_name = w.name)),"
	    " dropped AS (SELECT pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s"
	    " WHERE s.slot_type = 'physical' AND NOT s.active AND NOT s.temporary"
	    " AND s.slot_name NOT IN (SELECT name FROM want WHERE name IS NOT NULL))"
	    " SELECT (SELECT count(*) FROM created), (SELECT count(*) FROM dropped)");
	if (sql.data && pgctl_exec(&a->pg, sql.data) != PGW_OK)
		log_warning("could not manage replication slots");
	cmn_buf_free(&sql);
}

static void keep_leader(struct agent *a)
{
	int64_t now = cmn_now_ms();

	/* A bootstrap interrupted after initdb: the others still wait for the identifier. */
	if (a->cluster.has_initialize && !a->cluster.sysid[0] && a->local_sysid[0]) {
		if (create_replication_role(a) == PGW_OK &&
		    dcs_set_initialize(&a->dcs, a->local_sysid) == PGW_OK)
			log_info("recorded system identifier %s", a->local_sysid);
	}

	if (a->after_promote && a->probe.accepting && !a->probe.in_recovery) {
		/* So that pg_rewind against us sees the new timeline in pg_control. */
		if (pgctl_exec(&a->pg, "CHECKPOINT") != PGW_OK)
			log_warning("CHECKPOINT after promotion failed");
		if (dcs_append_history(&a->dcs, a->cluster.history, a->promote_from_timeline,
				       a->promote_from_lsn, "promoted",
				       a->cfg.member_name) != PGW_OK)
			log_warning("could not record the timeline switch in history");
		a->after_promote = false;
	}
	/* A switchover that made us leader is done; one we cannot act on is stale. */
	if (a->cluster.has_switchover &&
	    (strcmp(a->cluster.switchover_candidate, a->cfg.member_name) == 0 ||
	     (a->cluster.switchover_leader[0] &&
	      strcmp(a->cluster.switchover_leader, a->cfg.member_name) != 0))) {
		if (dcs_clear_switchover(&a->dcs) == PGW_OK)
			log_info("switchover request cleared");
	}
	if (a->configured_upstream[0] || pgconf_has_standby_signal(&a->cfg)) {
		/* Running as primary with replica settings (after a re-adopt): fix the files. */
		if (write_primary_config(a) != PGW_OK)
			log_warning("cannot rewrite the primary configuration");
	}
	manage_slots(a);
	manage_sync(a);
	if (a->probe.timeline != a->published_timeline ||
	    (a->probe.lsn != a->published_optime &&
	     now - a->published_status_ms >= AGENT_STATUS_INTERVAL_MS)) {
		if (dcs_put_status(&a->dcs, a->probe.lsn, a->probe.timeline) == PGW_OK) {
			a->published_optime = a->probe.lsn;
			a->published_timeline = a->probe.timeline;
			a->published_status_ms = now;
		}
	}
}

/*
 * Stops PostgreSQL (mode as pg_ctl stop -m), our lease kept meanwhile: while we lead, the
 * lease is renewed every loop_wait and the fence moved with it, so a long shutdown
 * checkpoint is not cut short by our own fence, and the REST API still sees a live loop.
 * If etcd stops answering, the fence stops PostgreSQL before the lease can expire, as in
 * the loop. The postmaster is signalled directly (pg_ctl only when that cannot be done):
 * a hand-over waits on this, and pg_ctl costs its start and looks only every 100 ms; we
 * look every 20 ms. PostgreSQL removes postmaster.pid last, once it is down: that is what
 * both wait for. Returns 0 when it is down, pg_ctl's exit code or -1 otherwise.
 */
static int stop_postgres(struct agent *a, const char *mode)
{
	char log[4200];
	struct cmn_proc_opts o = {
	    .argv = pgctl_argv_stop(&a->pg, mode),
	    .env_extra = pgctl_env(&a->pg),
	    .new_session = true,
	};
	int64_t started = cmn_now_ms(), last_beat = started;
	int64_t kill_at = started + (AGENT_PG_STOP_TIMEOUT_S + 10) * 1000LL;
	char pidfile[4200];
	bool running, signalled;
	pid_t pid = 0, pm_pid;
	int code = -1;

	pgctl_log_path(&a->pg, log, sizeof(log));
	o.log_path = log;
	snprintf(pidfile, sizeof(pidfile), "%s/postmaster.pid", a->cfg.data_dir);
	running = access(pidfile, F_OK) == 0;
	pm_pid = running ? a->probe.postmaster_pid : 0;
	signalled = running && pgctl_signal_stop(&a->pg, mode) == PGW_OK;
	if (signalled)
		kill_at = started + AGENT_PG_STOP_TIMEOUT_S * 1000LL; /* pg_ctl's -t */
	else if (cmn_proc_spawn(&o, &pid) != PGW_OK) {
		log_error("cannot run pg_ctl stop -m %s", mode);
		return -1;
	}
	for (;;) {
		int64_t now = cmn_now_ms();

		if (!signalled && cmn_proc_poll(pid, &code) != 0)
			break;
		if (running && ((access(pidfile, F_OK) != 0 && errno == ENOENT) ||
				(pm_pid > 0 && kill(pm_pid, 0) != 0 && errno == ESRCH))) {
			if (!signalled) {
				kill(pid, SIGKILL);
				while (cmn_proc_poll(pid, &code) == 0)
					usleep(1000);
			}
			code = 0;
			break;
		}
		if (now >= kill_at) {
			if (!signalled) {
				kill(pid, SIGKILL);
				while (cmn_proc_poll(pid, &code) == 0)
					usleep(10000);
			}
			code = -1;
			break;
		}
		if (now - last_beat >= a->cfg.loop_wait_ms) {
			int64_t lease = a->lease_id;

			last_beat = now;
			/* A new lease (the old one expired) carries no leader key: fence stays. */
			if (holds_leader(a) && lease_maintain(a, false) && a->lease_id == lease &&
			    a->fence_armed &&
			    agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir,
					    a->lease_deadline_ms - CLUSTER_DEMOTE_MARGIN_MS / 2) !=
				PGW_OK)
				log_warning("could not move the fence's deadline");
			pthread_mutex_lock(&a->api.lock);
			a->api.last_loop_ms = now;
			pthread_mutex_unlock(&a->api.lock);
		}
		usleep(20000);
	}
	if (code != 0)
		log_warning("stopping PostgreSQL (-m %s) failed with %d after %lld ms (see the "
			    "PostgreSQL log)",
			    mode, code, (long long)(cmn_now_ms() - started));
	return code;
}

/*
 * Planned switchover, on the leader: checkpoint (a short shutdown checkpoint)
 * while the proxies drain, wait until every registered proxy reports its primary
 * pools drained for this request (bounded by switchover_proxy_wait; the loop runs
 * and renews the lease meanwhile, a proxy's report wakes it), stop cleanly (the
 * walsenders send everything, the shutdown checkpoint included, before they exit),
 * then hand the key over. Our data ends before the candidate's new timeline starts,
 * so we rejoin as its replica without pg_rewind.
 */
static void do_switchover(struct agent *a, const char *candidate)
{
	char waiting[512];
	int64_t now;

	if (candidate[0]) {
		const struct dcs_member *m = member_of(a, candidate);

		bool barred = a->cluster.has_sync && !dcs_sync_has(&a->cluster, candidate);

		if (!m || strcmp(m->role, "replica") != 0 || strcmp(m->state, "streaming") != 0 ||
		    barred) {
			log_warning("switchover to %s cancelled: it is not a streaming %sreplica",
				    candidate, barred ? "synchronous " : "");
			if (dcs_clear_switchover(&a->dcs) != PGW_OK)
				log_error("could not clear the switchover request");
			a->so_started_ms = 0;
			a->so_waiting = false;
			return;
		}
	}
	if (!a->cluster.switchover_drain) {
		/* A new request: checkpoint first, while clients still run (not held). */
		if (a->so_revision != a->cluster.switchover_revision || !a->so_started_ms) {
			a->so_revision = a->cluster.switchover_revision;
			log_info(
			    "switchover: checkpoint, %sclean stop, then the leader key goes to "
			    "%s",
			    a->cluster.n_proxies ? "proxies drain, " : "",
			    candidate[0] ? candidate : "the healthiest replica");
			if (pgctl_exec(&a->pg, "CHECKPOINT") != PGW_OK)
				log_warning(
				    "CHECKPOINT before the switchover failed; stopping anyway");
			a->so_started_ms = cmn_now_ms();
		}
		now = cmn_now_ms();
		if (a->cluster.n_proxies &&
		    now - a->so_started_ms < a->cfg.switchover_proxy_wait_ms) {
			bool ok = false;

			/* The proxies hold and drain from now on; the new revision wakes us. */
			if (dcs_mark_switchover_drain(&a->dcs, &a->cluster, &ok) == PGW_OK && ok)
				log_info("switchover: %zu prox%s asked to drain",
					 a->cluster.n_proxies,
					 a->cluster.n_proxies == 1 ? "y" : "ies");
			a->so_waiting = true;
			return;
		}
	} else {
		/* Marked (by us, normally): wait for the proxies' reports on this revision. */
		if (!a->so_started_ms)
			a->so_started_ms = cmn_now_ms(); /* marked before this agent started */
		now = cmn_now_ms();
		if (!dcs_proxies_drained(&a->cluster, a->cluster.switchover_revision, waiting,
					 sizeof(waiting)) &&
		    now - a->so_started_ms < a->cfg.switchover_proxy_wait_ms) {
			if (a->so_revision != a->cluster.switchover_revision)
				log_info("switchover: waiting for proxies to drain: %s", waiting);
			a->so_revision = a->cluster.switchover_revision;
			a->so_waiting = true;
			return; /* a proxy's report wakes the loop */
		}
		a->so_revision = a->cluster.switchover_revision;
	}
	now = cmn_now_ms();
	if (!dcs_proxies_drained(&a->cluster, a->so_revision, waiting, sizeof(waiting))) {
		log_warning("switchover: proxies %s did not report drained within %d ms: stopping "
			    "anyway",
			    waiting, a->cfg.switchover_proxy_wait_ms);
	} else if (a->cluster.n_proxies) {
		log_info("switchover: %zu prox%s drained after %lld ms", a->cluster.n_proxies,
			 a->cluster.n_proxies == 1 ? "y" : "ies",
			 (long long)(now - a->so_started_ms));
	}
	a->so_waiting = false;
	pgctl_close(&a->pg);
	if (stop_postgres(a, "fast") != 0) {
		log_error("switchover: PostgreSQL did not stop cleanly; stopping it at once");
		if (stop_postgres(a, "immediate") != 0) {
			log_error("switchover: cannot stop PostgreSQL; keeping the leader key");
			return;
		}
	}
	if (agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir, 0) == PGW_OK)
		a->fence_armed = false;
	/* The candidate asks our REST API before it takes the key: say we stopped. */
	pgctl_probe(&a->pg, &a->probe);
	publish_api(a);
	if (dcs_release_leader(&a->dcs, a->cfg.member_name) != PGW_OK)
		log_error(
		    "switchover: could not release the leader key (it expires with our lease)");
	else
		a->cluster.has_leader = false; /* until the next read shows the new leader */
	a->configured_upstream[0] = '?';
	a->configured_upstream[1] = '\0';
	a->last_full_read_ms = 0;
}

static void execute(struct agent *a, const struct ha_decision *d)
{
	const struct dcs_member *m = member_of(a, d->member);

	if (d->action != HA_RACE)
		a->race_wait_since_ms = 0; /* a race's wait is for one leaderless spell */

	switch (d->action) {
	case HA_WAIT:
		break;
	case HA_BOOTSTRAP:
		do_bootstrap(a);
		break;
	case HA_CLONE:
		do_clone(a, d->member);
		break;
	case HA_START_STANDBY:
		start_standby(a, m ? m->host : NULL, m ? m->port : 0);
		break;
	case HA_START_PRIMARY:
		if (write_primary_config(a) == PGW_OK &&
		    job_spawn(a, JOB_START, pgctl_argv_start(&a->pg)) != PGW_OK)
			log_error("cannot start PostgreSQL");
		break;
	case HA_REWIND:
		do_rewind(a, d->member);
		break;
	case HA_RACE:
		do_race(a);
		break;
	case HA_PROMOTE:
		if (claim_sync(a))
			do_promote(a);
		break;
	case HA_KEEP_LEADER:
		keep_leader(a);
		break;
	case HA_DEMOTE:
		do_demote(a, d->reason);
		break;
	case HA_FOLLOW:
		if (!m)
			break;
		if (write_standby_config(a, m->host, m->port) == PGW_OK &&
		    pgctl_reload(&a->pg) != PGW_OK)
			a->configured_upstream[0] = '\0';
		break;
	case HA_RELEASE:
		log_warning("%s", d->reason);
		/* Stop first: never a primary that could come back without the key. */
		if (a->probe.postmaster_pid &&
		    run_now(a, pgctl_argv_stop(&a->pg, "immediate"), 30000) != 0) {
			log_error("cannot stop PostgreSQL: keeping the leader key");
			break;
		}
		if (dcs_release_leader(&a->dcs, a->cfg.member_name) != PGW_OK)
			log_error("could not release the leader key");
		a->last_full_read_ms = 0;
		a->primary_down_since_ms = 0;
		break;
	case HA_SWITCHOVER:
		do_switchover(a, d->member);
		break;
	case HA_STOP_STUCK:
		log_warning("%s", d->reason);
		(void)run_now(a, pgctl_argv_stop(&a->pg, "fast"), 60000);
		break;
	}
}

/* ---- operations asked for through the REST API ---- */

enum req_kind { REQ_RESTART, REQ_RELOAD, REQ_REINIT };

/* A restart / reload / reinitialize handed from the HTTP thread to the HA loop. */
struct agent_req {
	enum req_kind kind;
	bool pending_only; /* restart only with a pending parameter change */
	bool done, abandoned;
	unsigned int code;
	char message[400];
};

static void req_finish(struct agent *a, unsigned int code, const char *fmt, ...)
{
	struct agent_req *r;
	va_list ap;

	pthread_mutex_lock(&a->req_lock);
	r = a->req;
	a->req = NULL;
	a->req_waits_job = false;
	if (r) {
		r->code = code;
		va_start(ap, fmt);
		vsnprintf(r->message, sizeof(r->message), fmt, ap);
		va_end(ap);
		r->done = true;
		if (r->abandoned)
			free(r);
		else
			pthread_cond_broadcast(&a->req_cond);
	}
	pthread_mutex_unlock(&a->req_lock);
}

/* Re-reads the node file: parameters, tags and pg_hba lines take effect now. */
static int reload_node_config(struct agent *a, char *err, size_t err_size)
{
	struct agent_config fresh;

	if (agent_config_load(a->config_path, &fresh, err, err_size) != PGW_OK)
		return PGW_EINVAL;
	if (pgconf_check_parameters(&fresh, err, err_size) != PGW_OK) {
		agent_config_free(&fresh);
		return PGW_EINVAL;
	}
	struct cmn_kvlist tmp = a->cfg.parameters;

	a->cfg.parameters = fresh.parameters;
	fresh.parameters = tmp;
	tmp = a->cfg.tags;
	a->cfg.tags = fresh.tags;
	fresh.tags = tmp;
	char *hba = a->cfg.pg_hba_extra;

	a->cfg.pg_hba_extra = fresh.pg_hba_extra;
	fresh.pg_hba_extra = hba;
	a->cfg.nofailover = fresh.nofailover;
	a->cfg.noloadbalance = fresh.noloadbalance;
	a->cfg.nosync = fresh.nosync;
	a->cfg.clonefrom = fresh.clonefrom;
	agent_config_free(&fresh);
	if (a->probe.data_valid &&
	    (pgconf_write_hba(&a->cfg) != PGW_OK || rewrite_conf_and_reload(a) != PGW_OK)) {
		snprintf(err, err_size, "cannot rewrite the PostgreSQL configuration files");
		return PGW_ERR;
	}
	log_info("reloaded %s", a->config_path);
	return PGW_OK;
}

static void upstream_of(const struct agent *a, char *host, size_t size, int *port)
{
	host[0] = '\0';
	*port = 0;
	if (a->configured_upstream[0] && a->configured_upstream[0] != '?' &&
	    cmn_split_hostport(a->configured_upstream, host, size, port) != PGW_OK)
		host[0] = '\0';
}

static void do_request(struct agent *a)
{
	struct agent_req *r;
	char err[600];

	pthread_mutex_lock(&a->req_lock);
	r = a->req && !a->req_waits_job ? a->req : NULL;
	pthread_mutex_unlock(&a->req_lock);
	if (!r)
		return;
	if (r->kind == REQ_RELOAD) {
		if (reload_node_config(a, err, sizeof(err)) != PGW_OK)
			req_finish(a, 500, "reload failed: %s", err);
		else
			req_finish(a, 200, "reloaded configuration");
		return;
	}
	if (a->job.kind != JOB_NONE || a->bootstrapping) {
		req_finish(a, 503, "busy: %s",
			   a->bootstrapping ? "bootstrapping" : job_state[a->job.kind]);
		return;
	}
	if (r->kind == REQ_RESTART) {
		bool leader = holds_leader(a) && a->probe.accepting && !a->probe.in_recovery;
		char host[256];
		int port;

		if (!a->probe.postmaster_pid) {
			req_finish(a, 503, "PostgreSQL is not running");
			return;
		}
		if (r->pending_only && !a->probe.pending_restart) {
			req_finish(a, 200, "no restart needed: no parameter change is pending");
			return;
		}
		log_info("restart requested through the REST API");
		pgctl_close(&a->pg);
		if (run_now(a, pgctl_argv_stop(&a->pg, "fast"), AGENT_PG_STOP_TIMEOUT_S * 1000) !=
		    0) {
			req_finish(a, 503, "PostgreSQL did not stop (see the PostgreSQL log)");
			return;
		}
		/* A long shutdown checkpoint may have outlived the lease: still the leader? */
		if (leader) {
			int64_t id = a->lease_id;

			leader = lease_maintain(a, true) && a->lease_id == id &&
				 cmn_now_ms() < a->lease_deadline_ms - CLUSTER_DEMOTE_MARGIN_MS;
			if (!leader)
				log_warning("lost the leader lease while stopping: starting as a "
					    "replica");
		}
		if (leader) {
			if (write_primary_config(a) == PGW_OK)
				(void)job_spawn(a, JOB_START, pgctl_argv_start(&a->pg));
		} else {
			upstream_of(a, host, sizeof(host), &port);
			start_standby(a, host, port);
		}
		if (a->job.kind != JOB_START) {
			req_finish(a, 503, "cannot start PostgreSQL again (see the agent log)");
			return;
		}
		pthread_mutex_lock(&a->req_lock);
		a->req_waits_job = true; /* answered when pg_ctl start returns */
		pthread_mutex_unlock(&a->req_lock);
		return;
	}
	/* REQ_REINIT */
	const struct dcs_member *src = ha_clone_source(&a->cluster, a->cfg.member_name);

	if (holds_leader(a)) {
		req_finish(a, 503, "I am the leader: cannot reinitialize");
		return;
	}
	if (!a->cluster.has_leader || !src) {
		req_finish(a, 503, "no leader to clone from");
		return;
	}
	log_warning("reinitialize requested through the REST API: cloning again from %s",
		    src->name);
	pgctl_close(&a->pg);
	if (a->probe.postmaster_pid &&
	    run_now(a, pgctl_argv_stop(&a->pg, "immediate"), 30000) != 0) {
		req_finish(a, 503, "cannot stop PostgreSQL");
		return;
	}
	do_clone(a, src->name);
	if (a->job.kind != JOB_CLONE) {
		req_finish(a, 503, "cannot start the clone (see the agent log)");
		return;
	}
	publish_api(a); /* no longer "streaming" for whoever waits for the clone */
	req_finish(a, 200, "reinitialize started: cloning from %s", src->name);
}

/* The HTTP thread's side: hand a request to the loop and wait for its answer. */
static void post_request(struct agent *a, enum req_kind kind, bool pending_only,
			 struct api_answer *ans)
{
	struct agent_req *r = calloc(1, sizeof(*r));
	int64_t deadline = cmn_now_ms() + 150000;

	if (!r) {
		ans->code = 500;
		snprintf(ans->message, sizeof(ans->message), "out of memory");
		return;
	}
	r->kind = kind;
	r->pending_only = pending_only;
	pthread_mutex_lock(&a->req_lock);
	if (a->req || a->req_stopping) {
		bool stopping = a->req_stopping;

		pthread_mutex_unlock(&a->req_lock);
		free(r);
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message), "%s",
			 stopping ? "the agent is shutting down"
				  : "another operation is in progress on this member");
		return;
	}
	a->req = r;
	pthread_mutex_unlock(&a->req_lock);
	agent_wake(a);
	pthread_mutex_lock(&a->req_lock);
	while (!r->done && !a->req_stopping && cmn_now_ms() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&a->req_cond, &a->req_lock, &ts);
	}
	if (r->done) {
		ans->code = r->code;
		snprintf(ans->message, sizeof(ans->message), "%s", r->message);
		free(r);
	} else if (a->req_stopping) {
		if (a->req == r)
			a->req = NULL; /* the loop is gone: nobody else frees it */
		free(r);
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message), "the agent is shutting down");
	} else {
		r->abandoned = true; /* the loop frees it when it is done */
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message),
			 "still in progress: see the agent log");
	}
	pthread_mutex_unlock(&a->req_lock);
}

static int merge_patch(json_object *root, void *arg, char *err, size_t err_size)
{
	(void)err;
	(void)err_size;
	dyncfg_merge_patch(root, arg);
	return PGW_OK;
}

/* A connection of our own to etcd for the HTTP thread (the loop's is not shared). */
static int api_session(struct agent *a, struct etcd_client **etcd, struct dcs *d)
{
	struct etcd_client_opts o;

	cluster_etcd_opts(&a->cfg.etcd, 3000, &o);
	if (etcd_client_new(&o, etcd) != PGW_OK)
		return PGW_ERR;
	dcs_init(d, *etcd, a->cfg.namespace, a->cfg.cluster_name);
	d->allowed_networks = a->cfg.allowed_networks;
	return PGW_OK;
}

static void api_change_leader(struct agent *a, json_object *body, bool failover,
			      struct api_answer *ans)
{
	struct etcd_client *etcd = NULL;
	struct dcs d;
	struct dcs_cluster cl;
	json_object *v;
	const char *leader = NULL, *candidate = NULL, *when = NULL;
	char why[400], new_leader[DCS_NAME_MAX];
	bool bad_request;
	int64_t at = 0;

	if (json_object_object_get_ex(body, "leader", &v) &&
	    json_object_is_type(v, json_type_string))
		leader = json_object_get_string(v);
	if (json_object_object_get_ex(body, "candidate", &v) &&
	    json_object_is_type(v, json_type_string))
		candidate = json_object_get_string(v);
	if (json_object_object_get_ex(body, "scheduled_at", &v) &&
	    json_object_is_type(v, json_type_string))
		when = json_object_get_string(v);
	if (leader && !*leader)
		leader = NULL;
	if (candidate && !*candidate)
		candidate = NULL;
	if (when && (at = switchover_parse_time(when)) < 0) {
		ans->code = 400;
		snprintf(ans->message, sizeof(ans->message),
			 "bad scheduled_at '%s': use YYYY-MM-DDTHH:MM[:SS]Z (UTC)", when);
		return;
	}
	if (!failover && !leader && !candidate) {
		ans->code = 400;
		snprintf(ans->message, sizeof(ans->message),
			 "a switchover needs a leader or a candidate");
		return;
	}
	struct switchover_policy policy = agent_config_switchover_policy(&a->cfg);

	if (api_session(a, &etcd, &d) != PGW_OK || dcs_read(&d, &cl) != PGW_OK) {
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message), "cannot read the cluster from etcd");
		if (etcd)
			etcd_client_free(etcd);
		return;
	}
	if (switchover_refusal(&policy, &cl, leader, candidate, failover, why, sizeof(why),
			       &bad_request)) {
		ans->code = bad_request ? 400 : 412;
		snprintf(ans->message, sizeof(ans->message), "%s", why);
		goto out;
	}
	static const unsigned int codes[] = {
	    [SWITCHOVER_DONE] = 200, [SWITCHOVER_SCHEDULED] = 202, [SWITCHOVER_PENDING] = 412,
	    [SWITCHOVER_ETCD] = 503, [SWITCHOVER_TIMEOUT] = 503,
	};
	enum switchover_result res =
	    switchover_request(&d, &cl, candidate, failover, at, 60000, ans->message,
			       sizeof(ans->message), new_leader, sizeof(new_leader));

	ans->code = codes[res];
out:
	dcs_cluster_free(&cl);
	etcd_client_free(etcd);
}

static void api_patch_config(struct agent *a, json_object *patch, struct api_answer *ans)
{
	struct etcd_client *etcd = NULL;
	struct dcs d;
	struct pgctl pg;
	struct confedit_result res;
	char err[600];
	int rc;

	if (api_session(a, &etcd, &d) != PGW_OK) {
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message), "cannot connect to etcd");
		return;
	}
	pgctl_init(&pg, &a->cfg);
	struct confedit_checks checks = pgctl_confedit_checks(&pg);

	rc = confedit_run(&d, &checks, merge_patch, patch, -1, false, &res, err, sizeof(err));
	pgctl_close(&pg);
	etcd_client_free(etcd);
	if (rc != PGW_OK) {
		ans->code = rc == PGW_EINVAL ? 400 : rc == PGW_EUNAVAIL ? 409 : 503;
		snprintf(ans->message, sizeof(ans->message), "%s", err);
		confedit_result_free(&res);
		return;
	}
	ans->code = 200;
	ans->body = res.new_text;
	res.new_text = NULL;
	confedit_result_free(&res);
}

/* Called from the HTTP server's threads for authenticated mutating requests. */
static void api_op(void *arg, const struct api_call *call, struct api_answer *ans)
{
	struct agent *a = arg;
	json_object *body = NULL, *v;

	if (*call->body) {
		body = json_tokener_parse(call->body);
		if (!body || !json_object_is_type(body, json_type_object)) {
			json_object_put(body);
			ans->code = 400;
			snprintf(ans->message, sizeof(ans->message),
				 "the request body must be a JSON object");
			return;
		}
	} else {
		body = json_object_new_object();
	}
	log_info("REST API: %s %s", call->method, call->path);
	if (strcmp(call->path, "/restart") == 0) {
		bool pending = json_object_object_get_ex(body, "restart_pending", &v) &&
			       json_object_get_boolean(v);

		post_request(a, REQ_RESTART, pending, ans);
	} else if (strcmp(call->path, "/reload") == 0) {
		post_request(a, REQ_RELOAD, false, ans);
	} else if (strcmp(call->path, "/reinitialize") == 0) {
		post_request(a, REQ_REINIT, false, ans);
	} else if (strcmp(call->path, "/switchover") == 0) {
		api_change_leader(a, body, false, ans);
	} else if (strcmp(call->path, "/failover") == 0) {
		api_change_leader(a, body, true, ans);
	} else if (strcmp(call->path, "/config") == 0) {
		if (!*call->body) {
			ans->code = 400;
			snprintf(ans->message, sizeof(ans->message),
				 "PATCH /config needs a JSON object (a merge patch)");
		} else {
			api_patch_config(a, body, ans);
		}
	} else {
		ans->code = 404;
		snprintf(ans->message, sizeof(ans->message), "no such endpoint");
	}
	json_object_put(body);
}

/* ---- the loop ---- */

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
	atomic_store(&a->no_data, !a->probe.data_valid);
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
 * Armed while we lead and a server that may take writes runs; an etcd read that
 * failed changes nothing (the deadline only moves on a successful renewal).
 */
static void update_fence(struct agent *a)
{
	bool leading = a->dcs_ok ? holds_leader(a) && !a->cluster.paused : a->fence_armed;
	bool arm = leading && pgctl_maybe_primary(&a->probe) && a->lease_deadline_ms > 0;

	agent_fence_reap();
	if (!arm && !a->fence_armed)
		return;
	if (agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir,
			    arm ? a->lease_deadline_ms - CLUSTER_DEMOTE_MARGIN_MS / 2 : 0) ==
	    PGW_OK)
		a->fence_armed = arm;
}

static void handover_filter(struct agent *a, struct ha_decision *d);

static void run_once(struct agent *a)
{
	struct ha_decision d;
	int code;

	/* Before any I/O: a primary past its lease deadline stops now (SIGSTOP, stalls). */
	if (!(a->dcs_ok && a->cluster.paused) && pgctl_maybe_primary(&a->probe) &&
	    a->lease_deadline_ms &&
	    cmn_now_ms() >= a->lease_deadline_ms - CLUSTER_DEMOTE_MARGIN_MS &&
	    a->job.kind == JOB_NONE) {
		pgctl_probe(&a->pg, &a->probe);
		if (pgctl_maybe_primary(&a->probe))
			do_demote(a,
				  "the leader lease may have expired while the agent was stalled");
	}
	(void)lease_maintain(a, false);
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
		handover_filter(a, &d);
		if (d.action != a->last_action || strcmp(d.reason, a->last_reason) != 0)
			log_info("%s: %s", ha_action_name(d.action), d.reason);
		a->last_action = d.action;
		snprintf(a->last_reason, sizeof(a->last_reason), "%s", d.reason);
		execute(a, &d);
		if (d.action != HA_WAIT && d.action != HA_KEEP_LEADER)
			observe(a);
	}
	update_fence(a);
	publish_member(a);
	publish_api(a);
}

/* ---- shutting down ---- */

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

int agent_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	char err[1024];
	struct agent *a;
	int c;

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
	if (agent_config_load(path, &a->cfg, err, sizeof(err)) != PGW_OK ||
	    pgconf_check_parameters(&a->cfg, err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden agent: %s\n", err);
		agent_config_free(&a->cfg);
		free(a);
		return 2;
	}
	if (geteuid() == 0) {
		fprintf(stderr,
			"pgwarden agent: refusing to run as root (PostgreSQL cannot); run "
			"it as the postgres user, e.g. runuser -u postgres -- pgwarden agent "
			"...\n");
		agent_config_free(&a->cfg);
		free(a);
		return 2;
	}
	{
		enum cmn_log_level lvl;

		if (cmn_log_parse_level(a->cfg.log_level, &lvl) == PGW_OK)
			cmn_log_set_level(lvl);
	}
	/*
	 * The configuration is loaded: the PGWARDEN_* variables (passwords among them)
	 * must not be inherited by PostgreSQL and the tools we run.
	 */
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
	char ident[128];

	snprintf(ident, sizeof(ident), "agent[%s]", a->cfg.member_name);
	cmn_log_set_ident(ident);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGHUP, on_signal);
	pthread_condattr_t cattr;

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
	a->dyn_revision = -1;
	a->sync_count = 1;
	a->node_ttl_ms = a->cfg.ttl_ms;
	a->node_loop_wait_ms = a->cfg.loop_wait_ms;
	a->node_retry_timeout_ms = a->cfg.retry_timeout_ms;
	a->node_max_lag = a->cfg.maximum_lag_on_failover;
	if (agent_config_backup_snapshot(&a->cfg, &a->node_backup) != PGW_OK) {
		log_fatal("out of memory");
		agent_config_free(&a->cfg);
		return 1;
	}
	/* A restarted agent must not loosen what a running primary waits for. */
	pgconf_read_ssn(&a->cfg, a->cfg.synchronous_standby_names,
			sizeof(a->cfg.synchronous_standby_names));

	struct etcd_client_opts eo;
	int rc = 1;

	cluster_etcd_opts(&a->cfg.etcd, a->cfg.retry_timeout_ms, &eo);
	if (etcd_client_new(&eo, &a->etcd) != PGW_OK) {
		fprintf(stderr, "pgwarden agent: bad etcd endpoints '%s'\n", a->cfg.etcd.endpoints);
		goto out;
	}
	dcs_init(&a->dcs, a->etcd, a->cfg.namespace, a->cfg.cluster_name);
	a->dcs.allowed_networks = a->cfg.allowed_networks;
	pgctl_init(&a->pg, &a->cfg);
	if (cmn_mkdir_p(a->cfg.socket_dir, 0700) != PGW_OK) {
		log_fatal("cannot create the socket directory %s: %s", a->cfg.socket_dir,
			  strerror(errno));
		goto out;
	}
	if (pgconf_write_pgpass(&a->cfg) != PGW_OK)
		goto out;
	if (backup_enabled(&a->cfg) && access(a->cfg.backup_pgbackrest, X_OK) != 0) {
		log_fatal("[backup] is set but %s cannot be run (%s): install pgBackRest (apt "
			  "install pgbackrest) or set [backup] pgbackrest",
			  a->cfg.backup_pgbackrest, strerror(errno));
		goto out;
	}
	if (backup_enabled(&a->cfg) && backup_write_config(&a->cfg) != PGW_OK)
		goto out;
	api_state_init(&a->api, a->cfg.ttl_ms);
	struct api_ops ops = {.fn = api_op,
			      .arg = a,
			      .username = a->cfg.api_username,
			      .password = a->cfg.api_password};

	cmn_http_set_cafile(a->cfg.api_cafile);
	if (api_start(a->cfg.api_host, a->cfg.api_port, a->cfg.api_certfile, a->cfg.api_keyfile,
		      &a->api, &ops, &a->api_srv) != PGW_OK)
		goto out_api;
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
		if (a->job.kind != JOB_NONE || a->bootstrapping)
			until = started + 100;
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
	rc = 0;
	dcs_follow_stop(&a->follow);
	api_stop(a->api_srv);
out_api:
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

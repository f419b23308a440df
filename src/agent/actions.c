/*
 * The actions the HA decision (ha.c) names: bootstrap, clone, rewind, promote,
 * the leader race, demote, keep the leader, a planned switchover.
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
#include "node/pgcontrol.h"
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
	a->bootstrap_deadline_ms = cmn_now_ms() + AGENT_BOOTSTRAP_TIMEOUT_MS;
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
void finish_bootstrap(struct agent *a)
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

void do_clone(struct agent *a, const char *source)
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

bool switchover_may_promote_us(const struct agent *a)
{
	/* Named (the CLI's --candidate, the agent's SIGTERM hand-over), due, acted on. */
	return a->dcs_ok && a->cluster.has_switchover && a->probe.in_recovery &&
	       !a->cluster.paused && cmn_wall_ms() / 1000 >= a->cluster.switchover_at &&
	       strcmp(a->cluster.switchover_candidate, a->cfg.member_name) == 0;
}

int switchover_next_timeline(const struct agent *a)
{
	int tl = a->probe.timeline;

	/* pg_control can lag the timeline replayed; the leader's is where we stream. */
	if (a->cluster.leader_timeline > tl)
		tl = a->cluster.leader_timeline;
	return tl > 0 ? tl + 1 : 0;
}

/*
 * A planned promotion need not ask the archive anything. With restore_command set, a
 * replica whose primary stopped runs it for the next segment and timeline (each a
 * pgbackrest process it waits for, and the promote signal is noticed only after the one
 * it is in); the promotion runs it for the next timeline's history file (to choose a
 * timeline no other member used) and the parents' ones. When a switchover names this
 * replica and the agent looked for that history file itself (backup_history_tick, again
 * every BACKUP_HISTORY_LOOK_MS while the request stands) and found it neither in the
 * archive nor in pg_wal, PostgreSQL runs with restore_command '' until the promotion: it
 * takes the same timeline, a few hundred ms sooner. Nothing but the leader key's holder
 * can promote meanwhile, and the leader key is held until the switchover.
 */
static bool planned_promotion_without_archive(const struct agent *a)
{
	char local[4200];
	int next = switchover_next_timeline(a);

	if (!backup_enabled(&a->cfg) || !switchover_may_promote_us(a) || !next ||
	    !backup_next_timeline_free(&a->backup, next, 2 * BACKUP_HISTORY_LOOK_MS))
		return false;
	snprintf(local, sizeof(local), "%s/pg_wal/%08X.history", a->cfg.data_dir, (unsigned)next);
	return access(local, F_OK) != 0;
}

void switchover_archive_lookups(struct agent *a)
{
	bool off = planned_promotion_without_archive(a);

	/* A promotion on its way, after the reload it asked for: as do_promote wrote it. */
	if (a->job.kind != JOB_NONE || !a->probe.accepting || off == a->archive_lookups_off ||
	    a->promote_reloaded)
		return;
	a->archive_lookups_off = off;
	if (!off) /* a promotion's flag, if it did not happen */
		backup_repo_down(&a->cfg, false);
	if (rewrite_conf_and_reload(a) != PGW_OK) {
		a->archive_lookups_off = !off; /* as the file still is: tried again next loop */
		log_warning("cannot rewrite postgresql.conf (restore_command %s)",
			    off ? "off for the switchover" : "back");
		return;
	}
	if (off)
		log_info("switchover: restore_command off until the promotion (timeline %d is not "
			 "in the archive)",
			 switchover_next_timeline(a));
	else
		log_info("restore_command back (the switchover request is gone, or the archive "
			 "could not say)");
}

/* A repository host (pgBackRest's TLS server) is configured and does not answer now. */
static bool repo_host_down(const struct agent *a)
{
	return backup_remote(&a->cfg) &&
	       !cmn_tcp_answers(a->cfg.repo_host, a->cfg.repo_port, BACKUP_REPO_ANSWER_MS);
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
	if (!a->cluster.has_switchover)
		snprintf(a->promote_reason, sizeof(a->promote_reason), "failover");
	else if (a->cluster.switchover_leader[0])
		snprintf(a->promote_reason, sizeof(a->promote_reason), "switchover from %s",
			 a->cluster.switchover_leader);
	else
		snprintf(a->promote_reason, sizeof(a->promote_reason), "manual failover");
	if (planned_promotion_without_archive(a)) {
		/* No upstream either: no stream to start again before the signal is seen. */
		a->archive_lookups_off = true;
		a->configured_upstream[0] = '\0';
		if (rewrite_conf_and_reload(a) != PGW_OK)
			a->archive_lookups_off = false;
	} else if (!a->promote_reloaded && !a->archive_lookups_off && repo_host_down(a)) {
		/* The repository host is down (on the old leader's lost host, say): PostgreSQL
		 * could not ask it for the next timeline either, only wait for each try. The
		 * promotion follows the reload, at the next loop. */
		log_warning("the repository host %s:%d does not answer: promoting without "
			    "archive lookups",
			    a->cfg.repo_host, a->cfg.repo_port);
		backup_repo_down(&a->cfg, true); /* at once, even in the fetch's next try */
		if (backup_stop_fetches(&a->cfg) > 0)
			log_info(
			    "stopped the archive fetch in flight (the promotion waits for it)");
		a->archive_lookups_off = true;
		a->configured_upstream[0] = '\0';
		if (rewrite_conf_and_reload(a) != PGW_OK) {
			a->archive_lookups_off = false;
			backup_repo_down(&a->cfg, false);
		}
		a->promote_after_reload = true;
		return;
	} else if (backup_enabled(&a->cfg) && !a->promote_reloaded &&
		   (a->archive_lookups_off || !a->conf_written)) {
		/* restore_command back first (or a file of an earlier agent without it): the
		 * promotion follows at the next loop (once: whatever the write did), after the
		 * reload. */
		a->archive_lookups_off = false;
		backup_repo_down(&a->cfg, false);
		if (rewrite_conf_and_reload(a) != PGW_OK)
			log_warning("cannot write postgresql.conf before the promotion");
		a->promote_after_reload = true;
		return;
	}
	log_info("promoting (timeline %d, position %llx%s)", a->probe.timeline,
		 (unsigned long long)a->probe.lsn,
		 a->archive_lookups_off ? ", without archive lookups" : "");
	a->counters.promotions++;
	/* Before the promotion's checkpoint can remove what the old primary did not archive. */
	(void)backup_requeue_timeline(&a->cfg, a->promote_from_timeline);
	/* The fence first: the server may take writes before the loop sees it promoted, and
	 * a loop slowed down meanwhile (etcd timing out, a loaded host) must not leave it
	 * writable past our lease (update_fence keeps it armed through the promotion). */
	if (a->lease_deadline_ms > 0 &&
	    agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir,
			    ha_fence_deadline(a->lease_deadline_ms, CLUSTER_DEMOTE_MARGIN_MS)) ==
		PGW_OK)
		a->fence_armed = true;
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
int promote_poll(struct agent *a, int *code)
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

/*
 * A switchover's old leader gives the key up as soon as its shutdown checkpoint is
 * written (the failover key then says where: stopped_at), before its walsenders have
 * sent that last WAL and its postmaster has exited. A replica takes the key only once
 * it has replayed that checkpoint record (its replay position, the end of the last record
 * replayed, is past the record's start: the whole record arrived, which a received
 * position does not prove for a record that straddles a page): it then has every commit
 * of the old leader, and its new timeline starts after the old leader's last record,
 * which lets the old leader rejoin without pg_rewind. Looked for every
 * AGENT_STOPPED_AT_POLL_MS, up to AGENT_STOPPED_AT_WAIT_MS a loop. The old leader's
 * walsenders may take long with a replica far behind: waited for while its member key
 * lives (its agent renews it through the stop), up to its stop's own bound; once that
 * key is gone (its host lost), after ttl the race goes on with what we have, as a
 * failover would.
 */
static bool has_old_leaders_last_wal(struct agent *a)
{
	const struct dcs_cluster *c = &a->cluster;
	uint64_t want = c->has_switchover ? c->switchover_stopped_at : 0, got = 0;
	int64_t start = cmn_now_ms(), now = start, bound;
	bool old_alive = c->switchover_leader[0] && dcs_find_member(c, c->switchover_leader);
	char at[32], have[32];

	if (!want || !a->probe.in_recovery)
		return true;
	for (;;) {
		char *v = pgctl_query_value(&a->pg, "SELECT pg_last_wal_replay_lsn()");

		if (!v || cmn_parse_lsn(v, &got) != PGW_OK)
			got = 0;
		free(v);
		now = cmn_now_ms();
		if (got > want || now - start >= AGENT_STOPPED_AT_WAIT_MS)
			break;
		usleep(AGENT_STOPPED_AT_POLL_MS * 1000);
	}
	cmn_format_lsn(want, at, sizeof(at));
	cmn_format_lsn(got, have, sizeof(have));
	if (got > want) {
		log_info(
		    "replayed the old leader's shutdown checkpoint (%s) after %lld ms", at,
		    (long long)(now - (a->stopped_at_wait_since_ms ? a->stopped_at_wait_since_ms
								   : start)));
		a->stopped_at_wait_since_ms = 0;
		return true;
	}
	if (!a->stopped_at_wait_since_ms)
		a->stopped_at_wait_since_ms = start;
	bound = old_alive ? AGENT_PG_STOP_TIMEOUT_S * 1000LL : a->cfg.ttl_ms;
	if (now - a->stopped_at_wait_since_ms < bound) {
		log_info("not taking the leader key yet: waiting for the old leader's shutdown "
			 "checkpoint at %s (replayed up to %s; %s)",
			 at, have, old_alive ? "its agent is alive" : "its member key is gone");
		return false;
	}
	log_warning("the old leader's shutdown checkpoint at %s has not arrived in %lld ms "
		    "(replayed up to %s): racing with what we have, as in a failover",
		    at, (long long)(now - a->stopped_at_wait_since_ms), have);
	return true;
}

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
	if (!has_old_leaders_last_wal(a))
		return;
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

void do_demote(struct agent *a, const char *why)
{
	log_warning("demoting: %s", why);
	if (run_now(a, pgctl_argv_stop(&a->pg, "immediate"), AGENT_PG_IMMEDIATE_STOP_MS) != 0) {
		log_error("pg_ctl stop -m immediate failed: the fence stays armed");
	} else if (agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir, 0) == PGW_OK) {
		a->fence_armed = false;
	}
	a->configured_upstream[0] = '?';
	a->configured_upstream[1] = '\0';
	pgctl_close(&a->pg);
}

/*
 * Where our promotion forked off the old timeline, as PostgreSQL wrote it in the new
 * timeline's history file: the end of the last record replayed, which the position we
 * saw before promoting can miss either way (a switchover's candidate replays the old
 * leader's shutdown checkpoint after its last probe; a record received only in part
 * counts in the received position but not in the fork). Members compare their positions
 * with it (rejoin without pg_rewind, "diverged"); our earlier position when the file
 * says nothing.
 */
static uint64_t promoted_fork_lsn(const struct agent *a)
{
	uint64_t lsn = 0;

	if (pgcontrol_fork_lsn(a->cfg.data_dir, a->probe.timeline, a->promote_from_timeline,
			       &lsn) == PGW_OK)
		return lsn;
	log_warning("no switch point for timeline %d in timeline %d's history file: recording "
		    "our position before the promotion",
		    a->promote_from_timeline, a->probe.timeline);
	return a->promote_from_lsn;
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
		/* The segment the timeline switch fell in, archived now and not at the next
		 * archive_timeout: when an earlier switch fell in it too, a replica made from
		 * an older backup cannot stream the older timeline's part of it (the walsender
		 * reads it from the next timeline's file, which here is only a .partial) and
		 * can only take the segment from the archive. */
		if (backup_enabled(&a->cfg) &&
		    pgctl_exec(&a->pg, "SELECT pg_switch_wal()") != PGW_OK)
			log_warning("could not switch to a new WAL segment after promotion");
		if (dcs_append_history(&a->dcs, a->cluster.history, a->promote_from_timeline,
				       promoted_fork_lsn(a),
				       a->promote_reason[0] ? a->promote_reason : "promoted",
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
 * A stop that failed, PostgreSQL still running: archiving back (a caller that gives up
 * on stopping it keeps it running; one that stops it at once next costs a reload).
 */
static void archiving_back_if_running(struct agent *a, const char *pidfile)
{
	if (!a->archiving_off || access(pidfile, F_OK) != 0)
		return;
	a->archiving_off = false;
	if (rewrite_conf_and_reload(a) != PGW_OK)
		log_warning("cannot rewrite postgresql.conf (archive_command back)");
}

/*
 * A switchover's fast stop, looked at every 20 ms: once pg_control says "shut down" the
 * shutdown checkpoint is written and nothing can be committed here any more (the
 * backends are gone). The key goes now, with the checkpoint's position in the failover
 * key, instead of after the walsenders' last sends, the archiver's last push and the
 * postmaster's exit: the candidate takes it once it has replayed that checkpoint
 * (has_old_leaders_last_wal). If etcd refuses (the request changed) or does not answer,
 * the key goes after the stop, as before.
 */
static void release_at_shutdown_checkpoint(struct agent *a)
{
	struct pgcontrol pc;
	char at[32];
	bool ok = false;
	int rc;

	if (pgcontrol_read(a->cfg.data_dir, &pc) != PGW_OK || pc.state != PGCTL_CD_SHUT_DOWN)
		return;
	/* The candidate's race asks our REST API first: not a primary any more. */
	a->probe.accepting = false;
	publish_api(a);
	/* Nothing can commit here any more: the fence must not cut the walsenders short. */
	if (agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir, 0) == PGW_OK)
		a->fence_armed = false;
	cmn_format_lsn(pc.checkpoint_lsn, at, sizeof(at));
	rc = dcs_release_leader_stopped(&a->dcs, &a->cluster, a->cfg.member_name, pc.checkpoint_lsn,
					&ok);
	if (rc != PGW_OK || !ok) {
		log_info("switchover: shutdown checkpoint at %s written; the leader key goes "
			 "once PostgreSQL is down (%s)",
			 at,
			 rc != PGW_OK ? "etcd did not answer" : "the request changed meanwhile");
		a->so_release_early = false;
		return;
	}
	a->so_released = true;
	a->cluster.has_leader = false;
	log_info("switchover: shutdown checkpoint at %s written: leader key released, the "
		 "candidate takes it once it has replayed that checkpoint",
		 at);
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
int stop_postgres(struct agent *a, const char *mode)
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
	if (strcmp(mode, "immediate") != 0 && a->probe.accepting && !a->probe.in_recovery &&
	    !a->archiving_off && repo_host_down(a)) {
		/* Its archiver would retry each ready segment first (the push in flight ends
		 * within its io-timeout). */
		log_warning("the repository host %s:%d does not answer: archiving off for the stop "
			    "(the ready segments are pushed after the next start as primary, or "
			    "by the next leader)",
			    a->cfg.repo_host, a->cfg.repo_port);
		a->archiving_off = true;
		if (rewrite_conf_and_reload(a) != PGW_OK)
			log_warning("cannot rewrite postgresql.conf (archive_command off)");
	}
	snprintf(pidfile, sizeof(pidfile), "%s/postmaster.pid", a->cfg.data_dir);
	running = access(pidfile, F_OK) == 0;
	pm_pid = running ? a->probe.postmaster_pid : 0;
	signalled = running && pgctl_signal_stop(&a->pg, mode) == PGW_OK;
	if (signalled)
		kill_at = started + AGENT_PG_STOP_TIMEOUT_S * 1000LL; /* pg_ctl's -t */
	else if (cmn_proc_spawn(&o, &pid) != PGW_OK) {
		log_error("cannot run pg_ctl stop -m %s", mode);
		archiving_back_if_running(a, pidfile);
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
		if (a->so_release_early && !a->so_released)
			release_at_shutdown_checkpoint(a);
		if (now - last_beat >= a->cfg.loop_wait_ms) {
			int64_t lease = a->lease_id;

			last_beat = now;
			bool leads = holds_leader(a);

			/* A new lease (the old one expired) carries no leader key: fence stays.
			 * A key given up at the shutdown checkpoint (the fence disarmed: nothing
			 * can commit here any more) leaves our member key on the lease, which
			 * tells the candidate we are still sending our last WAL. */
			if ((leads || a->so_released) && lease_maintain(a, false) && leads &&
			    a->lease_id == lease && a->fence_armed &&
			    agent_fence_set(a->cfg.socket_dir, a->cfg.data_dir,
					    ha_fence_deadline(a->lease_deadline_ms,
							      CLUSTER_DEMOTE_MARGIN_MS)) != PGW_OK)
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
	if (code != 0)
		archiving_back_if_running(a, pidfile);
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
	int code;

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
	/* With archiving on, PostgreSQL's shutdown switches to a new WAL segment before its
	 * checkpoint: the rest of the segment is written as zeros, which every replica
	 * receives before the checkpoint record can reach the candidate. Switched here
	 * instead (the proxies hold: nothing is written meanwhile), those zeros stream while
	 * the backends stop, and the shutdown, on a fresh segment, does not switch. */
	if (pgctl_exec(&a->pg, "SELECT pg_switch_wal() WHERE current_setting('archive_mode') <> "
			       "'off'") != PGW_OK)
		log_warning("switchover: could not switch to a new WAL segment before the stop");
	pgctl_close(&a->pg);
	a->so_release_early = a->cluster.has_switchover;
	a->so_released = false;
	code = stop_postgres(a, "fast");
	a->so_release_early = false;
	if (code != 0) {
		log_error("switchover: PostgreSQL did not stop cleanly%s; stopping it at once",
			  a->so_released ? " after its shutdown checkpoint" : "");
		if (stop_postgres(a, "immediate") != 0) {
			log_error("switchover: cannot stop PostgreSQL; %s",
				  a->so_released ? "it stays in its shutdown (the key is gone "
						   "already, nothing can commit there)"
						 : "keeping the leader key");
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

void execute(struct agent *a, const struct ha_decision *d)
{
	const struct dcs_member *m = member_of(a, d->member);

	if (d->action != HA_RACE) {
		a->race_wait_since_ms = 0; /* a race's wait is for one leaderless spell */
		a->stopped_at_wait_since_ms = 0;
	}

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
		if (a->probe.postmaster_pid && run_now(a, pgctl_argv_stop(&a->pg, "immediate"),
						       AGENT_PG_IMMEDIATE_STOP_MS) != 0) {
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
		(void)run_now(a, pgctl_argv_stop(&a->pg, "fast"), AGENT_PG_STOP_TIMEOUT_S * 1000);
		break;
	}
}

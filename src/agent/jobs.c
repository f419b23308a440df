/*
 * Long-running commands the loop watches without blocking on them (initdb, clone,
 * start, rewind, promote), and what follows each one's end.
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

const char *const job_state[] = {
    [JOB_NONE] = "",
    [JOB_INITDB] = "initializing new cluster",
    [JOB_CLONE] = "creating replica",
    [JOB_START] = "starting",
    [JOB_REWIND] = "rewinding",
    [JOB_PROMOTE] = "promoting",
};

int job_spawn(struct agent *a, enum job_kind kind, const char *const *argv)
{
	char log[4200];
	struct cmn_proc_opts o = {
	    .argv = argv,
	    .env_extra = pgctl_env(&a->pg),
	    .new_session = true,
	};
	pid_t pid;

	if ((kind == JOB_START || kind == JOB_REWIND) &&
	    pgctl_remove_stale_pidfile(a->cfg.data_dir) != PGW_OK)
		log_warning("postmaster.pid names a postgres still working in %s", a->cfg.data_dir);
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
int run_now(struct agent *a, const char *const *argv, int timeout_ms)
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

int write_standby_config(struct agent *a, const char *host, int port)
{
	struct pgconf_upstream up = {.host = host && *host ? host : NULL, .port = port};

	/* Ignored by a standby; what a promoted one starts with (strict: no write yet). */
	snprintf(a->cfg.synchronous_standby_names, sizeof(a->cfg.synchronous_standby_names), "%s",
		 a->sync_mode && a->sync_strict ? "*" : "");
	a->archive_lookups_off = false;
	a->archiving_off = false;
	backup_repo_down(&a->cfg, false); /* a promotion's, if it did not happen */
	if (pgconf_write_conf(&a->cfg, &up) != PGW_OK || pgconf_write_hba(&a->cfg) != PGW_OK ||
	    pgconf_set_standby_signal(&a->cfg, true) != PGW_OK)
		return PGW_ERR;
	a->conf_written = true;
	if (up.host)
		snprintf(a->configured_upstream, sizeof(a->configured_upstream), "%s:%d", host,
			 port);
	else
		a->configured_upstream[0] = '\0';
	return PGW_OK;
}

int write_primary_config(struct agent *a)
{
	a->archive_lookups_off = false;
	a->archiving_off = false;
	backup_repo_down(&a->cfg, false);
	if (pgconf_write_conf(&a->cfg, NULL) != PGW_OK || pgconf_write_hba(&a->cfg) != PGW_OK ||
	    pgconf_set_standby_signal(&a->cfg, false) != PGW_OK)
		return PGW_ERR;
	a->conf_written = true;
	a->configured_upstream[0] = '\0';
	return PGW_OK;
}

void start_standby(struct agent *a, const char *host, int port)
{
	if (write_standby_config(a, host, port) != PGW_OK)
		return;
	if (job_spawn(a, JOB_START, pgctl_argv_start(&a->pg)) != PGW_OK)
		log_error("cannot start PostgreSQL");
}

void clone_dir(const struct agent *a, char *out, size_t size)
{
	snprintf(out, size, "%s.clone", a->cfg.data_dir);
}

void bootstrap_failed(struct agent *a, const char *why)
{
	log_error("bootstrap failed: %s; giving the initialize key back", why);
	if (a->probe.postmaster_pid)
		(void)run_now(a, pgctl_argv_stop(&a->pg, "immediate"), AGENT_PG_IMMEDIATE_STOP_MS);
	if (dcs_delete_initialize(&a->dcs) != PGW_OK)
		log_error("could not delete the initialize key: delete it by hand");
	if (cmn_rm_rf(a->cfg.data_dir) != PGW_OK)
		log_error("cannot remove %s", a->cfg.data_dir);
	a->bootstrapping = false;
}

void job_finished(struct agent *a, int code)
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
	case JOB_PROMOTE: {
		bool lookups_were_off = a->archive_lookups_off;

		if (code != 0) {
			log_error("promotion failed (exit %d)", code);
			if (backup_remote(&a->cfg))
				backup_repo_down(&a->cfg, false);
			if (lookups_were_off) { /* a replica's configuration again */
				a->configured_upstream[0] = '?';
				a->configured_upstream[1] = '\0';
			}
			return;
		}
		/* First: the proxies route to us from now on (the files below cost an fsync
		 * each); the others wait for the checkpoint (keep_leader) before they rewind
		 * against us. */
		a->after_promote = true;
		publish_member(a);
		if (write_primary_config(a) != PGW_OK)
			log_error("cannot rewrite the configuration after promotion");
		else if (lookups_were_off && pgctl_reload(&a->pg) != PGW_OK)
			log_warning("restore_command is back in postgresql.conf: it applies at "
				    "the next reload or start");
		(void)backup_requeue_timeline(&a->cfg, a->promote_from_timeline);
		if (backup_remote(&a->cfg))
			backup_repo_down(&a->cfg, false);
		/* Slots before the others connect: a missing slot makes them retry later. */
		manage_slots(a);
		return;
	}
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

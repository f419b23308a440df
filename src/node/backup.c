#include "node/backup.h"
#include "node/defaults.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool backup_enabled(const struct agent_config *cfg)
{
	return cfg->backup_repo_path != NULL;
}

bool backup_remote(const struct agent_config *cfg)
{
	return cfg->backup_repo_host != NULL;
}

bool backup_scheduled(const struct agent_config *cfg)
{
	const char *s[] = {cfg->backup_schedule_full, cfg->backup_schedule_diff,
			   cfg->backup_schedule_incr};

	/* With a repository host, that host runs the schedule (pgwarden repo-server). */
	if (!backup_enabled(cfg) || backup_remote(cfg))
		return false;
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		if (s[i] && s[i][0])
			return true;
	return false;
}

static void sub_path(const struct agent_config *cfg, const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/pgbackrest%s%s", cfg->node_dir, name[0] ? "/" : "", name);
}

void backup_conf_path(const struct agent_config *cfg, char *out, size_t size)
{
	sub_path(cfg, "pgbackrest.conf", out, size);
}

char *backup_config_text(const struct agent_config *cfg)
{
	struct cmn_buf b = {0};
	char dir[4200];

	bool repository = agent_config_is_repository(cfg);

	cmn_buf_printf(&b,
		       "# Written by pgwarden for %s %s from [backup]: edits here are "
		       "overwritten.\n"
		       "[global]\n"
		       "repo1-path=%s\n"
		       "repo1-retention-full=%d\n",
		       repository ? "the repository host of cluster" : "member",
		       repository ? cfg->cluster_name : cfg->member_name, cfg->backup_repo_path,
		       cfg->backup_retention_full);
	if (backup_remote(cfg))
		cmn_buf_printf(&b,
			       "repo1-host=%s\n"
			       "repo1-host-port=%d\n"
			       "repo1-host-type=tls\n"
			       "repo1-host-ca-file=%s\n"
			       "repo1-host-cert-file=%s\n"
			       "repo1-host-key-file=%s\n",
			       cfg->repo_host, cfg->repo_port, cfg->backup_tls_ca_file,
			       cfg->backup_tls_cert_file, cfg->backup_tls_key_file);
	/* Its own TLS server: the repository host's for archiving and restores, a
	 * member's for the backups the repository host takes from it. */
	if ((backup_remote(cfg) || repository) && agent_config_has_tls(cfg))
		cmn_buf_printf(&b,
			       "tls-server-address=%s\n"
			       "tls-server-port=%d\n"
			       "tls-server-ca-file=%s\n"
			       "tls-server-cert-file=%s\n"
			       "tls-server-key-file=%s\n"
			       "tls-server-auth=%s=%s\n",
			       strcmp(cfg->tls_host, "0.0.0.0") == 0 ? "*" : cfg->tls_host,
			       cfg->tls_port, cfg->backup_tls_ca_file, cfg->backup_tls_cert_file,
			       cfg->backup_tls_key_file, cfg->backup_tls_client_cn,
			       cfg->backup_stanza);
	if (cfg->backup_retention_diff > 0)
		cmn_buf_printf(&b, "repo1-retention-diff=%d\n", cfg->backup_retention_diff);
	if (cfg->backup_cipher_pass && cfg->backup_cipher_pass[0])
		cmn_buf_printf(&b, "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=%s\n",
			       cfg->backup_cipher_pass);
	cmn_buf_printf(&b, "compress-type=%s\nprocess-max=%d\nstart-fast=y\n", cfg->backup_compress,
		       cfg->backup_process_max);
	sub_path(cfg, "log", dir, sizeof(dir));
	cmn_buf_printf(&b, "log-path=%s\nlog-level-console=warn\nlog-level-file=info\n", dir);
	sub_path(cfg, "lock", dir, sizeof(dir));
	cmn_buf_printf(&b, "lock-path=%s\n", dir);
	sub_path(cfg, "spool", dir, sizeof(dir));
	cmn_buf_printf(&b, "spool-path=%s\n", dir);
	/*
	 * Asynchronous push only, when asked: 2.45's asynchronous archive-get takes the same
	 * archive lock, and a get still running when the replica was promoted made the
	 * first push (the new timeline's history file) wait archive-timeout (60 s). The
	 * asynchronous push itself hits the same lock when a push starts while the
	 * background process still works on earlier segments (after a promotion, with the
	 * old timeline queued again): hence off by default.
	 */
	cmn_buf_printf(&b, "\n[global:archive-push]\narchive-async=%s\n",
		       cfg->backup_archive_async ? "y" : "n");
	if (repository) /* the members, from etcd, on each command's line */
		return b.data;
	cmn_buf_printf(&b,
		       "\n[%s]\n"
		       "pg1-path=%s\n"
		       "pg1-port=%d\n"
		       "pg1-socket-path=%s\n"
		       "pg1-user=%s\n",
		       cfg->backup_stanza, cfg->data_dir, cfg->pg_port, cfg->socket_dir,
		       cfg->superuser);
	return b.data;
}

int backup_write_config(const struct agent_config *cfg)
{
	static const char *const dirs[] = {"", "log", "lock", "spool"};
	char path[4200], *text;
	int rc;

	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		sub_path(cfg, dirs[i], path, sizeof(path));
		if (cmn_mkdir_p(path, 0750) != PGW_OK) {
			log_error("cannot create %s: %s", path, strerror(errno));
			return PGW_ERR;
		}
	}
	text = backup_config_text(cfg);
	if (!text)
		return PGW_ENOMEM;
	backup_conf_path(cfg, path, sizeof(path));
	rc = cmn_write_file_atomic(path, text, strlen(text), 0600);
	free(text);
	if (rc != PGW_OK) {
		log_error("cannot write %s: %s", path, strerror(errno));
		return PGW_ERR;
	}
	return PGW_OK;
}

/*
 * Appends word for /bin/sh, single-quoted (a ' as '\''), in a PostgreSQL
 * archive_command / restore_command: a % as %% (PostgreSQL replaces %p, %f, ...).
 */
static void sh_quote(struct cmn_buf *b, const char *word)
{
	cmn_buf_printf(b, "'");
	for (const char *p = word; *p; p++) {
		if (*p == '\'')
			cmn_buf_printf(b, "'\\''");
		else if (*p == '%')
			cmn_buf_printf(b, "%%%%");
		else
			cmn_buf_printf(b, "%c", *p);
	}
	cmn_buf_printf(b, "'");
}

/* "pgbackrest --config=X --stanza=S " for a shell command line. */
static void sh_prefix(const struct agent_config *cfg, struct cmn_buf *b)
{
	char conf[4200], opt[4300];

	backup_conf_path(cfg, conf, sizeof(conf));
	sh_quote(b, cfg->backup_pgbackrest);
	snprintf(opt, sizeof(opt), "--config=%s", conf);
	cmn_buf_printf(b, " ");
	sh_quote(b, opt);
	snprintf(opt, sizeof(opt), "--stanza=%s", cfg->backup_stanza);
	cmn_buf_printf(b, " ");
	sh_quote(b, opt);
}

void backup_repo_down_path(const struct agent_config *cfg, char *out, size_t size)
{
	snprintf(out, size, "%s/pgbackrest/repo-down", cfg->node_dir);
}

struct fetches {
	char want[4300]; /* --config=<this node's pgbackrest.conf> */
	int stopped;
};

/* SIGTERM to pid if it runs pgBackRest's archive-get with this node's configuration. */
static bool stop_if_fetch(pid_t pid, void *arg)
{
	struct fetches *f = arg;
	char args[8192];
	size_t len = cmn_proc_cmdline(pid, args, sizeof(args));
	const char *slash = strrchr(args, '/');
	bool config = false, get = false;

	if (len == 0 || strcmp(slash ? slash + 1 : args, "pgbackrest") != 0)
		return true;
	for (size_t at = 0; at < len; at += strlen(args + at) + 1) {
		config = config || strcmp(args + at, f->want) == 0;
		get = get || strcmp(args + at, "archive-get") == 0;
	}
	if (config && get && kill(pid, SIGTERM) == 0)
		f->stopped++;
	return true;
}

int backup_stop_fetches(const struct agent_config *cfg)
{
	struct fetches f = {.stopped = 0};
	char conf[4200];

	if (!backup_enabled(cfg))
		return 0;
	backup_conf_path(cfg, conf, sizeof(conf));
	snprintf(f.want, sizeof(f.want), "--config=%s", conf);
	(void)cmn_proc_each(stop_if_fetch, &f);
	return f.stopped;
}

void backup_repo_down(const struct agent_config *cfg, bool down)
{
	char flag[4200];
	FILE *f;

	if (!backup_remote(cfg))
		return; /* only a repository host's restore_command looks for it */
	backup_repo_down_path(cfg, flag, sizeof(flag));
	if (!down) {
		if (unlink(flag) != 0 && errno != ENOENT)
			log_warning("cannot remove %s: %s", flag, strerror(errno));
		return;
	}
	f = fopen(flag, "w");
	if (!f || fclose(f) != 0)
		log_warning("cannot create %s: %s", flag, strerror(errno));
}

int backup_pg_parameters(const struct agent_config *cfg, struct cmn_kvlist *out)
{
	struct cmn_buf push = {0}, get = {0};
	int rc;

	if (!backup_enabled(cfg))
		return PGW_OK;
	sh_prefix(cfg, &push);
	cmn_buf_printf(&push, " " BACKUP_ARCHIVE_PUSH_IO_TIMEOUT " archive-push %%p");
	if (backup_remote(cfg)) {
		/* Not while the agent found the repository host down (backup_repo_down):
		 * PostgreSQL re-reads restore_command only while it waits for WAL, not on a
		 * promotion's path. */
		char flag[4200];

		backup_repo_down_path(cfg, flag, sizeof(flag));
		cmn_buf_printf(&get, "[ ! -e ");
		sh_quote(&get, flag);
		cmn_buf_printf(&get, " ] && ");
	}
	sh_prefix(cfg, &get);
	cmn_buf_printf(&get, " " BACKUP_ARCHIVE_GET_IO_TIMEOUT " archive-get %%f \"%%p\"");
	if (!push.data || !get.data) {
		cmn_buf_free(&push);
		cmn_buf_free(&get);
		return PGW_ENOMEM;
	}
	rc = cmn_kvlist_set(out, "archive_mode", "on", "pgwarden [backup]");
	if (rc == PGW_OK) /* PostgreSQL 15 would use a library instead of the command */
		rc = cmn_kvlist_set(out, "archive_library", "", "pgwarden [backup]");
	if (rc == PGW_OK)
		rc = cmn_kvlist_set(out, "archive_command", push.data, "pgwarden [backup]");
	if (rc == PGW_OK)
		rc = cmn_kvlist_set(out, "restore_command", get.data, "pgwarden [backup]");
	cmn_buf_free(&push);
	cmn_buf_free(&get);
	return rc;
}

void backup_argv(const struct agent_config *cfg, const char *command, const char *const *extra,
		 char store[][4200], const char **argv, size_t max)
{
	char conf[4096];
	size_t n = 0;

	if (max < 5)
		return;
	backup_conf_path(cfg, conf, sizeof(conf));
	snprintf(store[n], 4200, "%s", cfg->backup_pgbackrest);
	argv[n] = store[n], n++;
	snprintf(store[n], 4200, "--config=%s", conf);
	argv[n] = store[n], n++;
	snprintf(store[n], 4200, "--stanza=%s", cfg->backup_stanza);
	argv[n] = store[n], n++;
	snprintf(store[n], 4200, "%s", command);
	argv[n] = store[n], n++;
	for (size_t i = 0; extra && extra[i] && n + 1 < max; i++) {
		snprintf(store[n], 4200, "%s", extra[i]);
		argv[n] = store[n], n++;
	}
	argv[n] = NULL;
}

const char *backup_managed_reason(const struct agent_config *cfg, const char *name)
{
	if (!backup_enabled(cfg))
		return NULL;
	if (strcmp(name, "archive_mode") == 0 || strcmp(name, "archive_command") == 0 ||
	    strcmp(name, "restore_command") == 0 || strcmp(name, "archive_library") == 0)
		return "[backup] is set: pgwarden archives WAL with pgBackRest";
	return NULL;
}

#define STANZA_RETRY_MS	  30000
#define SCHEDULE_CHECK_MS 60000
#define SCHEDULE_FIRST_MS 20000
#define EXIT_NOTHING_DUE  4 /* CLI_EXIT_NOTHING_DUE */

/*
 * `pgwarden backup --scheduled -c node.ini`, with --dir D too when node.ini is
 * D/<member>/node.ini in pgwarden up's layout (the backup can then run from a replica).
 */
static void schedule_tick(struct backup_state *st, const struct agent_config *cfg,
			  const char *const *env)
{
	char self[4200], dir[4200], probe[4300], log[4200];
	const char *argv[9];
	size_t n = 0;
	int code;

	if (st->sched_pid) {
		if (cmn_proc_poll(st->sched_pid, &code) == 0)
			return;
		st->sched_pid = 0;
		st->sched_next_ms = cmn_now_ms() + SCHEDULE_CHECK_MS;
		snprintf(log, sizeof(log), "%s/backup.log", cfg->node_dir);
		if (code == 0)
			log_info("scheduled backup done (%s)", log);
		else if (code != EXIT_NOTHING_DUE)
			log_error("scheduled backup failed (exit %d): see %s", code, log);
		return;
	}
	if (!backup_schedule_due(st))
		return;
	st->sched_first = false;
	st->sched_next_ms = cmn_now_ms() + SCHEDULE_CHECK_MS;
	if (cmn_self_exe(self, sizeof(self)) != 0)
		return;
	argv[n++] = self;
	argv[n++] = "backup";
	argv[n++] = "--scheduled";
	if (st->config_path) {
		argv[n++] = "-c";
		argv[n++] = st->config_path;
		snprintf(dir, sizeof(dir), "%s", cfg->node_dir);
		char *slash = strrchr(dir, '/');

		if (slash && slash != dir) {
			*slash = '\0';
			snprintf(probe, sizeof(probe), "%s/node1/node.ini", dir);
			if (access(probe, R_OK) == 0) {
				argv[n++] = "--dir";
				argv[n++] = dir;
			}
		}
	}
	argv[n] = NULL;
	snprintf(log, sizeof(log), "%s/backup.log", cfg->node_dir);
	struct cmn_proc_opts o = {
	    .argv = argv, .env_extra = env, .log_path = log, .new_session = true};

	if (cmn_proc_spawn(&o, &st->sched_pid) != PGW_OK) {
		st->sched_pid = 0;
		log_error("cannot run %s backup --scheduled: %s", self, strerror(errno));
	}
}

#define SERVER_RESTART_MS 2000

bool backup_schedule_due(const struct backup_state *st)
{
	return cmn_now_ms() >= st->sched_next_ms || (st->sched_first && st->replicas_ready);
}

void backup_schedule_first(struct backup_state *st)
{
	st->sched_first = true;
	st->sched_next_ms = cmn_now_ms() + SCHEDULE_FIRST_MS;
}

bool backup_replicas_ready(const struct dcs_cluster *c)
{
	size_t streaming = 0;

	if (!c->has_leader)
		return false;
	for (size_t i = 0; i < c->n_members; i++) {
		if (strcmp(c->members[i].name, c->leader) == 0)
			continue;
		if (strcmp(c->members[i].state, "streaming") != 0)
			return false;
		streaming++;
	}
	return streaming > 0;
}

void backup_server_tick(struct backup_state *st, const struct agent_config *cfg,
			const char *const *env, const char *log_path)
{
	char conf[4200], opt[4300];
	const char *argv[4];
	int code;

	if (st->server_pid) {
		if (cmn_proc_poll(st->server_pid, &code) == 0)
			return;
		log_error("pgbackrest server (TLS on %s:%d) stopped (exit %d, see %s); starting it "
			  "again in %d s",
			  cfg->tls_host, cfg->tls_port, code, log_path, SERVER_RESTART_MS / 1000);
		st->server_pid = 0;
		st->server_next_ms = cmn_now_ms() + SERVER_RESTART_MS;
		return;
	}
	if (cmn_now_ms() < st->server_next_ms)
		return;
	backup_conf_path(cfg, conf, sizeof(conf));
	snprintf(opt, sizeof(opt), "--config=%s", conf);
	argv[0] = cfg->backup_pgbackrest;
	argv[1] = opt;
	argv[2] = "server";
	argv[3] = NULL;
	/* It goes with us, even when we are killed: a server left behind would hold the
	 * port, and the next one of ours could not listen. */
	struct cmn_proc_opts o = {.argv = argv,
				  .env_extra = env,
				  .log_path = log_path,
				  .new_session = true,
				  .die_with_parent = true};

	if (cmn_proc_spawn(&o, &st->server_pid) != PGW_OK) {
		st->server_pid = 0;
		st->server_next_ms = cmn_now_ms() + SERVER_RESTART_MS;
		log_error("cannot run %s server: %s", argv[0], strerror(errno));
		return;
	}
	log_info("pgbackrest server (TLS) on %s:%d (pid %d)", cfg->tls_host, cfg->tls_port,
		 (int)st->server_pid);
}

void backup_tick(struct backup_state *st, const struct agent_config *cfg, bool primary,
		 const char *const *env, const char *log_path)
{
	char store[6][4200];
	const char *argv[7];
	int code;

	/* A repository host creates the stanza and runs the schedule: this member only
	 * serves its data to it. */
	if (backup_remote(cfg)) {
		char out[4200];

		snprintf(out, sizeof(out), "%s/pgbackrest/server.log", cfg->node_dir);
		backup_server_tick(st, cfg, env, out);
		return;
	}

	if (st->stanza_pid) {
		if (cmn_proc_poll(st->stanza_pid, &code) == 0)
			return;
		st->stanza_pid = 0;
		if (code == 0) {
			st->stanza_ok = true;
			backup_schedule_first(st);
			log_info("pgBackRest stanza '%s' ready in %s", cfg->backup_stanza,
				 cfg->backup_repo_path);
		} else {
			st->stanza_next_ms = cmn_now_ms() + STANZA_RETRY_MS;
			log_error("pgbackrest stanza-create failed (exit %d, see %s); WAL is not "
				  "archived until it succeeds; trying again in %d s",
				  code, log_path, STANZA_RETRY_MS / 1000);
		}
		return;
	}
	/* A scheduled backup that runs finishes even when we are no longer the leader. */
	if (st->sched_pid || (primary && st->stanza_ok && backup_scheduled(cfg)))
		schedule_tick(st, cfg, env);
	if (!backup_enabled(cfg) || !primary || st->stanza_ok || cmn_now_ms() < st->stanza_next_ms)
		return;
	backup_argv(cfg, "stanza-create", NULL, store, argv, 7);
	struct cmn_proc_opts o = {
	    .argv = argv,
	    .env_extra = env,
	    .log_path = log_path,
	    .new_session = true,
	};
	if (cmn_proc_spawn(&o, &st->stanza_pid) != PGW_OK) {
		st->stanza_pid = 0;
		st->stanza_next_ms = cmn_now_ms() + STANZA_RETRY_MS;
		log_error("cannot run %s: %s", argv[0], strerror(errno));
		return;
	}
	log_info("creating the pgBackRest stanza '%s' (pid %d)", cfg->backup_stanza,
		 (int)st->stanza_pid);
}

static bool is_segment_done(const char *name, int tl)
{
	char prefix[9];

	if (strlen(name) != 24 + 5 || strcmp(name + 24, ".done") != 0)
		return false;
	for (int i = 0; i < 24; i++)
		if (!strchr("0123456789ABCDEF", name[i]))
			return false;
	snprintf(prefix, sizeof(prefix), "%08X", (unsigned)tl);
	return strncmp(name, prefix, 8) == 0;
}

int backup_requeue_timeline(const struct agent_config *cfg, int old_tl)
{
	char dir[4200], from[4600], to[4600];
	struct dirent *e;
	DIR *d;
	int n = 0;

	if (!backup_enabled(cfg) || old_tl <= 0)
		return 0;
	snprintf(dir, sizeof(dir), "%s/pg_wal/archive_status", cfg->data_dir);
	d = opendir(dir);
	if (!d) {
		log_warning("cannot read %s: %s", dir, strerror(errno));
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		if (!is_segment_done(e->d_name, old_tl))
			continue;
		snprintf(from, sizeof(from), "%s/%s", dir, e->d_name);
		snprintf(to, sizeof(to), "%s/%.24s.ready", dir, e->d_name);
		if (rename(from, to) == 0)
			n++;
		else
			log_warning("cannot rename %s: %s", from, strerror(errno));
	}
	closedir(d);
	if (n)
		log_info("queued %d segment(s) of timeline %d for archiving again: the old "
			 "primary may not have archived them",
			 n, old_tl);
	return n;
}

/* archive-get's exit code when the file is not in the archive (its errors have others). */
#define ARCHIVE_GET_NOT_FOUND 1

void backup_history_tick(struct backup_state *st, const struct agent_config *cfg, int next_tl,
			 bool wanted, const char *const *env, const char *log_path)
{
	char store[7][4200], name[32], out[4200];
	const char *argv[8], *extra[4];
	int code;

	snprintf(out, sizeof(out), "%s/pgbackrest/next-timeline.history", cfg->node_dir);
	if (st->history_pid) {
		if (cmn_proc_poll(st->history_pid, &code) == 0)
			return;
		int found = code == 0 ? 1 : code == ARCHIVE_GET_NOT_FOUND ? 0 : -1;

		st->history_pid = 0;
		unlink(out);
		if (st->history_done_tl != st->history_tl || st->history_done_found != found)
			log_info("timeline %d %s", st->history_tl,
				 found == 1   ? "is in the archive already"
				 : found == 0 ? "is not in the archive: a planned promotion can "
						"skip its archive lookups"
					      : "could not be looked up in the archive");
		st->history_done_tl = st->history_tl;
		st->history_done_found = found;
		st->history_done_at_ms = cmn_now_ms(); /* the archive as it was just now */
		return;
	}
	/* Again every BACKUP_HISTORY_LOOK_MS while wanted: a result is trusted while fresh. */
	if (!wanted || !backup_enabled(cfg) || next_tl < 2 ||
	    (st->history_tl == next_tl &&
	     cmn_now_ms() - st->history_at_ms < BACKUP_HISTORY_LOOK_MS))
		return;
	snprintf(name, sizeof(name), "%08X.history", (unsigned)next_tl);
	extra[0] = BACKUP_ARCHIVE_GET_IO_TIMEOUT;
	extra[1] = name;
	extra[2] = out;
	extra[3] = NULL;
	backup_argv(cfg, "archive-get", extra, store, argv, 8);
	struct cmn_proc_opts o = {.argv = argv, .env_extra = env, .log_path = log_path};

	st->history_tl = next_tl;
	st->history_at_ms = cmn_now_ms();
	if (cmn_proc_spawn(&o, &st->history_pid) != PGW_OK) {
		st->history_pid = 0;
		log_warning("cannot run %s archive-get: %s", argv[0], strerror(errno));
	}
}

bool backup_next_timeline_free(const struct backup_state *st, int next_tl, int64_t max_age_ms)
{
	return st->history_done_tl == next_tl && st->history_done_found == 0 &&
	       cmn_now_ms() - st->history_done_at_ms <= max_age_ms;
}

void backup_stop(struct backup_state *st)
{
	int code;

	if (st->history_pid) {
		kill(st->history_pid, SIGTERM);
		cmn_proc_stop(st->history_pid, &code);
		st->history_pid = 0;
	}

	/* The scheduled backup's group: the CLI and its pgbackrest. The next leader's
	 * schedule finds the backup still due and takes it. */
	if (st->sched_pid) {
		kill(-st->sched_pid, SIGTERM);
		for (int i = 0; i < 100 && cmn_proc_poll(st->sched_pid, &code) == 0; i++)
			usleep(100000);
		st->sched_pid = 0;
	}
	/* The server and the children it forked for open connections: its group. */
	if (st->server_pid) {
		kill(-st->server_pid, SIGTERM);
		for (int i = 0; i < 50 && cmn_proc_poll(st->server_pid, &code) == 0; i++)
			usleep(100000);
		if (cmn_proc_poll(st->server_pid, &code) == 0) {
			kill(-st->server_pid, SIGKILL);
			cmn_proc_stop(st->server_pid, &code);
		}
		st->server_pid = 0;
	}
	if (!st->stanza_pid)
		return;
	kill(st->stanza_pid, SIGTERM);
	for (int i = 0; i < 50 && cmn_proc_poll(st->stanza_pid, &code) == 0; i++)
		usleep(100000);
	st->stanza_pid = 0;
}

bool backup_apply_dynamic(struct agent_config *cfg, const struct cmn_kvlist *dyn,
			  const struct cmn_kvlist *node)
{
	char why[512];
	bool changed = false;
	int rc = agent_config_apply_dynamic_backup(cfg, dyn, node, &changed, why, sizeof(why));

	if (rc != PGW_OK)
		log_error("dynamic configuration: %s", rc == PGW_ENOMEM ? "out of memory" : why);
	if (!changed)
		return false;
	log_info("backup settings now: schedule full '%s' diff '%s' incr '%s', retention full %d "
		 "diff %d, compress %s, process_max %d, archive_async %s",
		 cfg->backup_schedule_full ? cfg->backup_schedule_full : "",
		 cfg->backup_schedule_diff ? cfg->backup_schedule_diff : "",
		 cfg->backup_schedule_incr ? cfg->backup_schedule_incr : "",
		 cfg->backup_retention_full, cfg->backup_retention_diff,
		 cfg->backup_compress ? cfg->backup_compress : "", cfg->backup_process_max,
		 cfg->backup_archive_async ? "on" : "off");
	if (backup_enabled(cfg) && backup_write_config(cfg) != PGW_OK)
		log_error("pgbackrest.conf keeps its previous settings");
	return true;
}

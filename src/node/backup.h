/*
 * pgBackRest on one member: its configuration file (written from [backup]), the
 * archiving parameters PostgreSQL gets, and the command lines the agent runs.
 * pgwarden orchestrates pgBackRest; it does not reimplement any of it.
 */
#ifndef PGW_BACKUP_H
#define PGW_BACKUP_H

#include "node/agentcfg.h"
#include "cluster/dcs.h"
#include "common/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What the agent runs of pgBackRest in the background (never in the HA loop itself). */
struct backup_state {
	pid_t stanza_pid;	 /* stanza-create running */
	bool stanza_ok;		 /* created or found valid by this agent */
	int64_t stanza_next_ms;	 /* next try after a failure */
	pid_t sched_pid;	 /* `pgwarden backup --scheduled` running (its own process group) */
	int64_t sched_next_ms;	 /* next look at the schedule */
	bool sched_first;	 /* the first look is still to come (backup_schedule_due) */
	const char *config_path; /* the agent's node.ini (NULL: environment only) */
	bool replicas_ready;	 /* set by the caller: every other member streams */
	pid_t server_pid;	 /* `pgbackrest server` (TLS), with a repository host */
	int64_t server_next_ms;	 /* its next start after it stopped */
	pid_t history_pid;	 /* archive-get of the next timeline's history file */
	int history_tl;		 /* ... that timeline */
	int64_t history_at_ms;	 /* when that look started */
	/* The last look that finished: its timeline, result (1 there, 0 not there, -1
	 * unknown) and start. */
	int history_done_tl;
	int history_done_found;
	int64_t history_done_at_ms;
};

/* Backups and WAL archiving are on when [backup] repo_path is set. */
bool backup_enabled(const struct agent_config *cfg);
/* The repository is on a repository host ([backup] repo_host), over TLS. */
bool backup_remote(const struct agent_config *cfg);
/* ... and scheduled when one of [backup] schedule_full / _diff / _incr is set too. */
bool backup_scheduled(const struct agent_config *cfg);

/* <node_dir>/pgbackrest/pgbackrest.conf: the file every pgbackrest command of this member reads. */
void backup_conf_path(const struct agent_config *cfg, char *out, size_t size);

/*
 * Writes pgbackrest.conf (mode 0600: it may hold the passphrase) and creates its log,
 * lock and spool folders. PGW_ERR (logged) when it cannot.
 */
int backup_write_config(const struct agent_config *cfg);

/* The text of pgbackrest.conf (malloc'd; NULL on ENOMEM). */
char *backup_config_text(const struct agent_config *cfg);

/*
 * archive_mode, archive_command and restore_command for PostgreSQL, added to out
 * (origin "pgwarden [backup]"). archive_mode is 'on', never 'always': a standby
 * archives nothing until it is promoted, and pgBackRest refuses 'always'.
 */
int backup_pg_parameters(const struct agent_config *cfg, struct cmn_kvlist *out);
/*
 * A flag file in the node folder: while it exists, the members' restore_command (with a
 * repository host) fails at once, as "not in the archive", instead of waiting on a host
 * the agent found down.
 */
void backup_repo_down_path(const struct agent_config *cfg, char *out, size_t size);
/* Creates or removes it (nothing without a repository host). */
void backup_repo_down(const struct agent_config *cfg, bool down);
/*
 * SIGTERM to this node's archive-get processes in flight (PostgreSQL's restore_command):
 * one that tries a host that is down takes seconds, and a promotion is noticed only after
 * it. pgBackRest exits 63 on the signal, which PostgreSQL takes as "no such file" (a
 * restore_command killed by a signal would stop the recovery). Returns how many.
 */
int backup_stop_fetches(const struct agent_config *cfg);

/*
 * argv of "pgbackrest --config=... --stanza=... <command> [extra...]" in caller storage:
 * store holds the strings, argv up to max entries (NULL-terminated).
 */
void backup_argv(const struct agent_config *cfg, const char *command, const char *const *extra,
		 char store[][4200], const char **argv, size_t max);

/* The PostgreSQL parameters [backup] manages, and why (NULL: not one of them). */
const char *backup_managed_reason(const struct agent_config *cfg, const char *name);

/*
 * Once per loop. On the leader with PostgreSQL up as primary (primary true), makes
 * sure the stanza exists: pgbackrest stanza-create in the background (it is
 * idempotent: an existing stanza of this cluster is fine), again every 30 s after a
 * failure, whose output goes to log_path. env: the pgctl environment (PGPASSFILE).
 * Then, with a schedule in [backup], once a minute: `pgwarden backup --scheduled`
 * (this binary, the agent's configuration) in the background, which takes the backup
 * the schedule makes due, under the cluster-wide backup key; its output goes to
 * <node folder>/backup.log.
 */
void backup_tick(struct backup_state *st, const struct agent_config *cfg, bool primary,
		 const char *const *env, const char *log_path);
/*
 * Right after a promotion from timeline old_tl: every complete segment of old_tl still in
 * pg_wal that PostgreSQL marked archived (.done: a standby streamed it, it archives
 * nothing) is queued for archiving again (.ready). The old primary may have died with
 * segments it had not archived yet; pgBackRest accepts a segment it already has with the
 * same content, so the others cost a checksum. Returns how many were queued.
 */
int backup_requeue_timeline(const struct agent_config *cfg, int old_tl);
/*
 * Keeps `pgbackrest server` running (TLS, [backup] tls_listen): on a member with a
 * repository host, so that host reaches the member's data for backups; on the
 * repository host, so members reach the repository. Started again 2 s after it stops.
 * Its output goes to log_path.
 */
void backup_server_tick(struct backup_state *st, const struct agent_config *cfg,
			const char *const *env, const char *log_path);
/*
 * The first scheduled look after the stanza is ready waits SCHEDULE_FIRST_MS for the
 * replicas of a cluster that just formed to clone (a backup runs from one of them), or
 * less: until they all stream (replicas_ready). True when a look is due now.
 */
bool backup_schedule_due(const struct backup_state *st);
/* After the stanza became ready: the first look, as backup_schedule_due says. */
void backup_schedule_first(struct backup_state *st);
/* true when cluster c has a leader and every other member streams (at least one). */
bool backup_replicas_ready(const struct dcs_cluster *c);
/*
 * The dynamic configuration's "backup" (dyn) over cfg, node's own values where dyn has
 * none (agent_config_apply_dynamic_backup); when a value changed it says so in the log and
 * writes pgbackrest.conf again. true: a value changed.
 */
bool backup_apply_dynamic(struct agent_config *cfg, const struct cmn_kvlist *dyn,
			  const struct cmn_kvlist *node);
/*
 * Before a planned promotion (a switchover request this replica may serve, wanted):
 * looks in the archive (in the background, every BACKUP_HISTORY_LOOK_MS while wanted) for
 * the history file of timeline
 * next_tl (pgbackrest archive-get), so that the promotion itself need not (see
 * backup_next_timeline_free). Its output goes to log_path.
 */
void backup_history_tick(struct backup_state *st, const struct agent_config *cfg, int next_tl,
			 bool wanted, const char *const *env, const char *log_path);
/*
 * true when the last finished look of backup_history_tick, started at most max_age_ms
 * ago, found no history file of timeline next_tl in the archive: PostgreSQL's promotion
 * would find none either and take next_tl, so it can run without restore_command (whose
 * archive lookups cost a few hundred ms on a loaded host: the promotion waits for each).
 */
bool backup_next_timeline_free(const struct backup_state *st, int next_tl, int64_t max_age_ms);
/* Stops what backup_tick started (the agent is exiting). */
void backup_stop(struct backup_state *st);

#endif

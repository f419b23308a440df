/*
 * Control of the local PostgreSQL: probe its state over libpq, read
 * pg_controldata, and build the command lines of initdb, pg_ctl, pg_basebackup
 * and pg_rewind (run as jobs by the agent). Passwords never reach a command line:
 * every tool reads them from the agent's passfile (PGPASSFILE).
 */
#ifndef PGW_PGCTL_H
#define PGW_PGCTL_H

#include "cluster/confedit.h"
#include "node/agentcfg.h"
#include "node/pgcontrol.h"
#include "common/err.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct pgctl_controldata {
	char sysid[32];
	enum pgctl_cd_state state;
	uint64_t checkpoint_lsn;
	int checkpoint_tli;
	uint64_t min_recovery_lsn;
	int min_recovery_tli;
	bool backup_label; /* a base backup not yet started: its pg_control says nothing */
};

/* What the agent sees of its PostgreSQL at the start of a loop. */
struct pgctl_probe {
	bool data_valid;      /* PG_VERSION exists */
	bool standby_signal;  /* standby.signal exists: it runs (or will) as a replica */
	pid_t postmaster_pid; /* 0 when not running */
	bool accepting;	      /* a query succeeded */
	bool in_recovery;
	int timeline;
	uint64_t lsn;	      /* primary: current write LSN; replica: max(receive, replay) */
	uint64_t receive_lsn; /* replica only */
	uint64_t replay_lsn;  /* replica only */
	bool streaming;	      /* replica: a WAL receiver streams */
	char upstream[300];   /* replica: host:port of the WAL receiver's sender */
	int server_version;
	int64_t start_time;   /* postmaster start, unix seconds */
	bool pending_restart; /* a changed parameter waits for a restart */
	bool replay_paused;   /* replica: pg_is_wal_replay_paused() */
	double replayed_at;   /* replica: unix seconds of the last replayed commit (0: none) */
};

struct pgctl {
	const struct agent_config *cfg;
	PGconn *conn; /* kept open between loops */
	char pgpass_env[4200];
	char lcall_env[16];
};

void pgctl_init(struct pgctl *p, const struct agent_config *cfg);
void pgctl_close(struct pgctl *p);

/* Never fails: unknown things stay false/0. */
void pgctl_probe(struct pgctl *p, struct pgctl_probe *out);
/* Could it take writes? A running server that answered "not in recovery", or one we
 * cannot query that was not started as a standby. */
bool pgctl_maybe_primary(const struct pgctl_probe *pg);
int pgctl_controldata(struct pgctl *p, struct pgctl_controldata *out) PGW_WUR;
const char *pgctl_cd_state_name(enum pgctl_cd_state s);

/* Runs one statement on the local server (superuser); logs and returns on error. */
int pgctl_exec(struct pgctl *p, const char *sql) PGW_WUR;
/* Runs a query and returns the first column of the first row (heap copy) or NULL. */
char *pgctl_query_value(struct pgctl *p, const char *sql);
/* Same against a remote member (superuser), e.g. the leader, with a short timeout. */
char *pgctl_query_remote(struct pgctl *p, const char *host, int port, const char *sql);

/*
 * Checks PostgreSQL parameters against pg_settings of the server at host:port:
 * PGW_EINVAL with the reason for an unknown name or a value the server would
 * refuse, PGW_ENET when the server cannot be asked.
 */
int pgctl_check_parameters(struct pgctl *p, const char *host, int port,
			   const struct cmn_kvlist *params, char *err, size_t err_size) PGW_WUR;
/* An edit of the dynamic configuration checked by this node's rules, its parameters
 * by pgctl_check_parameters through p. */
struct confedit_checks pgctl_confedit_checks(struct pgctl *p);

/* Command lines (NULL-terminated, static storage reused per call; not thread-safe). */
const char *const *pgctl_argv_initdb(struct pgctl *p, const char *pwfile);
const char *const *pgctl_argv_start(struct pgctl *p);
const char *const *pgctl_argv_stop(struct pgctl *p, const char *mode);
const char *const *pgctl_argv_promote(struct pgctl *p);
/*
 * What pg_ctl stop / promote do, without the pg_ctl process (its start costs 50-150 ms
 * on a loaded host, on a hand-over's path): signal the postmaster named in
 * postmaster.pid (smart SIGTERM, fast SIGINT, immediate SIGQUIT), or write the
 * promote file and send SIGUSR1. PGW_ERR when no postmaster could be signalled.
 */
int pgctl_signal_stop(struct pgctl *p, const char *mode);
int pgctl_signal_promote(struct pgctl *p);
const char *const *pgctl_argv_basebackup(struct pgctl *p, const char *target_dir, const char *host,
					 int port);
const char *const *pgctl_argv_rewind(struct pgctl *p, const char *host, int port);
/* Environment entries for those commands (PGPASSFILE, LC_ALL=C). */
const char *const *pgctl_env(struct pgctl *p);

/*
 * The postmaster named in DATA_DIR/postmaster.pid if it is a live postgres working in
 * that directory, 0 otherwise (a stale file may name any reused pid).
 */
pid_t pgctl_live_postmaster(const char *data_dir);
/*
 * Removes a postmaster.pid that no live postgres in the directory answers for: PostgreSQL
 * (its postmaster, pg_rewind's single-user run) refuses to start while the pid the file
 * names is alive, whoever has it now. PGW_ERR (file kept) while any postgres works there.
 */
int pgctl_remove_stale_pidfile(const char *data_dir);
/* Sends SIGHUP to the postmaster. */
int pgctl_reload(struct pgctl *p) PGW_WUR;
/* Path of the server log the agent passes to pg_ctl -l. */
void pgctl_log_path(const struct pgctl *p, char *out, size_t size);

#endif

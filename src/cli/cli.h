/*
 * Operator commands (patronictl's role) and the local cluster manager.
 * Exit codes (stable, documented in README): 0 ok, 1 operation failed,
 * 2 usage or configuration error, 3 cluster unreachable (etcd down), 4 (backup
 * --scheduled) nothing due.
 */
#ifndef PGW_CLI_H
#define PGW_CLI_H

#include "node/agentcfg.h"
#include "cluster/dcs.h"
#include "common/err.h"
#include "etcd/etcd.h"

#define CLI_EXIT_OK	     0
#define CLI_EXIT_FAILED	     1
#define CLI_EXIT_USAGE	     2
#define CLI_EXIT_UNREACHABLE 3
/* backup --scheduled only: no backup is due now (or another one runs) */
#define CLI_EXIT_NOTHING_DUE 4

/* Where `pgwarden up` run as root puts its cluster when ./cluster is out of postgres's reach. */
#define CLI_ROOT_DIR "/var/lib/pgwarden/cluster"

/* Where the CLI finds the cluster: -c FILE, --dir DIR (DIR/node1/node.ini), env. */
struct cli_target {
	const char *config_path;
	const char *dir;
	bool json;
};

/*
 * Loads the node configuration the CLI needs ([cluster] name/namespace, [etcd],
 * [api]) without requiring the agent-only keys. Prints the error and returns
 * CLI_EXIT_USAGE on failure.
 */
int cli_load_config(const struct cli_target *t, struct agent_config *cfg);
int cli_etcd_connect(const struct agent_config *cfg, struct etcd_client **out);

/* What a cluster command works with: configuration, etcd, and the cluster as read. */
struct cli_session {
	struct agent_config cfg;
	struct etcd_client *etcd;
	struct dcs dcs;
	struct dcs_cluster cluster;
};

/* Parses -c / --dir / --json; prints usage and returns -1 on anything else. */
int cli_parse_target(int argc, char **argv, const char *usage, struct cli_target *t);
/*
 * Loads the configuration, connects to etcd and reads the cluster; the dynamic
 * configuration's backup settings apply to s->cfg. On failure it prints why and
 * returns the exit code (nothing to close then).
 */
int cli_session_open(const struct cli_target *t, struct cli_session *s);
/*
 * Asks question ("[y/N]" is added) unless force: CLI_EXIT_OK for yes, CLI_EXIT_FAILED for
 * no ("Aborted"), CLI_EXIT_USAGE when stdin is not a terminal (says to add --force to
 * what).
 */
int cli_confirm(bool force, const char *question, const char *what);
/* The dynamic configuration's "backup" of c over cfg's [backup] (as the agents do). */
void cli_apply_dynamic_backup(const struct dcs_cluster *c, struct agent_config *cfg);
void cli_session_close(struct cli_session *s);

int cli_list(int argc, char **argv);
int cli_backup(int argc, char **argv);
int cli_backup_list(int argc, char **argv);
int cli_backup_check(int argc, char **argv);
int cli_backup_verify(int argc, char **argv);
int cli_pause(int argc, char **argv);
int cli_resume(int argc, char **argv);
int cli_switchover(int argc, char **argv);
int cli_failover(int argc, char **argv);
int cli_history(int argc, char **argv);
int cli_show_config(int argc, char **argv);
int cli_edit_config(int argc, char **argv);
int cli_restart(int argc, char **argv);
int cli_reload(int argc, char **argv);
int cli_reinit(int argc, char **argv);
int cli_up(int argc, char **argv);
/*
 * pgwarden up with a step between etcd's start and the agents' (restore puts the
 * restored data in place there): before_agents(dir, arg) gets the cluster folder, and
 * runs as postgres when we are root (in a child process: what it changes in arg stays
 * there); non-zero stops up with CLI_EXIT_FAILED and sets *hook_failed.
 */
typedef int (*cli_up_hook)(const char *dir, void *arg);
int cli_up_run(int argc, char **argv, cli_up_hook before_agents, void *arg, bool *hook_failed);
/*
 * Runs fn(arg) as the postgres user when we are root (in a child process that drops
 * root for good; its exit code is fn's), else in this process. Root never writes in
 * a folder another user owns: that user could have put a link there.
 */
int cli_as_postgres(int (*fn)(void *arg), void *arg);
int cli_restore(int argc, char **argv);
int cli_repo_server(int argc, char **argv);
int cli_down(int argc, char **argv);
int cli_status(int argc, char **argv);

/* The member of that name in c, or NULL. */
const struct dcs_member *cli_member(const struct dcs_cluster *c, const char *name);

/* Prints the cluster table (used by list, up and switchover). */
void cli_print_list(const struct cli_session *s, bool json);

#endif

/*
 * Operator commands (patronictl's role) and the local cluster manager.
 * Exit codes (stable, documented in README): 0 ok, 1 operation failed,
 * 2 usage or configuration error, 3 cluster unreachable (etcd down).
 */
#ifndef PGW_CLI_H
#define PGW_CLI_H

#include "agent/agentcfg.h"
#include "common/err.h"
#include "etcd/etcd.h"

#define CLI_EXIT_OK	     0
#define CLI_EXIT_FAILED	     1
#define CLI_EXIT_USAGE	     2
#define CLI_EXIT_UNREACHABLE 3

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

int cli_list(int argc, char **argv);
int cli_pause(int argc, char **argv);
int cli_resume(int argc, char **argv);
int cli_switchover(int argc, char **argv);
int cli_history(int argc, char **argv);
int cli_up(int argc, char **argv);
int cli_down(int argc, char **argv);
int cli_status(int argc, char **argv);

/* Prints the cluster table (used by list and up). */
int cli_print_list(const struct agent_config *cfg, bool json);

#endif

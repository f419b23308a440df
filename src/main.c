/* pgwarden: one binary, several roles. */
#include "agent/agent.h"
#include "agent/fence.h"
#include "cli/cli.h"
#include "proxy/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "pgwarden %s - PostgreSQL high availability on etcd\n"
	    "\n"
	    "usage: pgwarden <command> [options]\n"
	    "\n"
	    "daemons:\n"
	    "  agent -c node.ini        manage one PostgreSQL member (Patroni's role)\n"
	    "  proxy -c proxy.ini       pooler and router following the leader (PgBouncer's\n"
	    "                           and HAProxy's role)\n"
	    "\n"
	    "cluster operations (-c node.ini, --dir DIR, or --cluster NAME --etcd URLS):\n"
	    "  list [--json]            members, roles, states, timelines, lag\n"
	    "  pause / resume           maintenance mode: no automatic action at all\n"
	    "  switchover [--leader A] [--candidate B] [--scheduled T] [--force]\n"
	    "                           planned change of primary, no data loss\n"
	    "  failover --candidate B [--force]\n"
	    "                           promote B, also when there is no healthy leader\n"
	    "  history [--json]         timeline switches: LSN, reason, time, new leader\n"
	    "  show-config              the dynamic configuration kept in etcd\n"
	    "  edit-config [--set K=V] [--pg NAME=V] [--apply FILE] [--force]\n"
	    "                           change it (checked first; agents apply it at once)\n"
	    "  restart [MEMBER...] [--pending] [--switchover] [--force]\n"
	    "                           rolling restart: replicas first, the leader last\n"
	    "  reload [MEMBER...]       re-read node.ini ([parameters], [tags]), reload "
	    "PostgreSQL\n"
	    "  reinit MEMBER [--force]  wipe a replica and clone it again from the leader\n"
	    "  backup [--type full|diff|incr] [--from-leader]\n"
	    "                           pgBackRest backup, from a streaming replica\n"
	    "  backup list [--json]     the backups in the repository, the restorable window\n"
	    "  backup check             pgbackrest check, and the archive continuous from the\n"
	    "                           oldest backup over every timeline\n"
	    "  backup verify            every backup and WAL file's checksum (pgbackrest verify)\n"
	    "  repo-server [-c repo.ini]\n"
	    "                           the repository host: pgBackRest's TLS server, the stanza,\n"
	    "                           the backup schedule (members set [backup] repo_host)\n"
	    "\n"
	    "local cluster in a folder (3 etcd, 3 PostgreSQL + agents):\n"
	    "  up [--dir DIR]           start what is not running, print how to connect\n"
	    "  down [--dir DIR]         stop everything up started\n"
	    "  status [--dir DIR]       say what runs\n"
	    "  restore (--time T | --lsn L | --xid X | --latest) [--backup LABEL] --to NEWDIR\n"
	    "                           a new cluster in NEWDIR from a backup, recovered to\n"
	    "                           that point (the source is only read)\n"
	    "\n"
	    "  version                  print the version\n",
	    PGW_VERSION);
}

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} commands[] = {
    {"agent", agent_main},
    {"fence", agent_fence_main},
    {"proxy", proxy_main},
    {"list", cli_list},
    {"backup", cli_backup},
    {"pause", cli_pause},
    {"resume", cli_resume},
    {"history", cli_history},
    {"show-config", cli_show_config},
    {"edit-config", cli_edit_config},
    {"restart", cli_restart},
    {"reload", cli_reload},
    {"reinit", cli_reinit},
    {"switchover", cli_switchover},
    {"failover", cli_failover},
    {"up", cli_up},
    {"down", cli_down},
    {"status", cli_status},
    {"restore", cli_restore},
    {"repo-server", cli_repo_server},
};

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "help") == 0) {
		usage(cmd ? stdout : stderr);
		return cmd ? 0 : 2;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("pgwarden %s\n", PGW_VERSION);
		return 0;
	}
	/*
	 * Cluster commands also take --cluster NAME and --etcd ENDPOINTS (as
	 * PGWARDEN_CLUSTER_NAME and PGWARDEN_ETCD_ENDPOINTS, which they override);
	 * up / down / status / restore have a --cluster of their own (the name of a new
	 * cluster).
	 */
	if (strcmp(cmd, "agent") != 0 && strcmp(cmd, "fence") != 0 && strcmp(cmd, "proxy") != 0 &&
	    strcmp(cmd, "up") != 0 && strcmp(cmd, "down") != 0 && strcmp(cmd, "status") != 0 &&
	    strcmp(cmd, "restore") != 0) {
		int j = 1;

		for (int i = 1; i < argc; i++) {
			const char *env = NULL, *val = NULL;

			if (strcmp(argv[i], "--cluster") == 0 || strcmp(argv[i], "--etcd") == 0) {
				if (i + 1 >= argc) {
					fprintf(stderr, "pgwarden: %s needs a value\n", argv[i]);
					return 2;
				}
				env = argv[i][2] == 'c' ? "PGWARDEN_CLUSTER_NAME"
							: "PGWARDEN_ETCD_ENDPOINTS";
				val = argv[++i];
			} else if (strncmp(argv[i], "--cluster=", 10) == 0) {
				env = "PGWARDEN_CLUSTER_NAME";
				val = argv[i] + 10;
			} else if (strncmp(argv[i], "--etcd=", 7) == 0) {
				env = "PGWARDEN_ETCD_ENDPOINTS";
				val = argv[i] + 7;
			}
			if (env)
				setenv(env, val, 1);
			else
				argv[j++] = argv[i];
		}
		argc = j;
		argv[argc] = NULL;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(cmd, commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "pgwarden: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}

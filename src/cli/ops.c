/* Cluster operations that change what the agents do: pause, resume. */
#include "agent/dcs.h"
#include "cli/cli.h"
#include "common/log.h"

#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* -c / --dir / --json, shared by the operation commands. Returns optind or -1. */
static int parse_target(int argc, char **argv, const char *usage, struct cli_target *t)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"dir", required_argument, NULL, 'd'},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(t, 0, sizeof(*t));
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:j", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			t->config_path = optarg;
			break;
		case 'd':
			t->dir = optarg;
			break;
		case 'j':
			t->json = true;
			break;
		default:
			fprintf(stderr, "usage: %s\n", usage);
			return -1;
		}
	}
	return optind;
}

static int set_pause(int argc, char **argv, bool pause)
{
	struct cli_target t;
	struct agent_config cfg;
	struct etcd_client *etcd = NULL;
	struct dcs d;
	int rc;

	if (parse_target(argc, argv,
			 pause ? "pgwarden pause [-c node.ini | --dir DIR]"
			       : "pgwarden resume [-c node.ini | --dir DIR]",
			 &t) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_load_config(&t, &cfg);
	if (rc != CLI_EXIT_OK)
		return rc;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	cmn_log_set_level(CMN_LOG_ERROR);
	rc = cli_etcd_connect(&cfg, &etcd);
	if (rc == CLI_EXIT_OK) {
		dcs_init(&d, etcd, cfg.namespace, cfg.cluster_name);
		if (dcs_set_pause(&d, pause) != PGW_OK) {
			fprintf(stderr,
				"pgwarden: cannot change the configuration of cluster %s in "
				"etcd (%s)\n",
				cfg.cluster_name, cfg.etcd_endpoints);
			rc = CLI_EXIT_UNREACHABLE;
		} else {
			printf("Success: cluster management is %s\n", pause ? "paused" : "resumed");
		}
		etcd_client_free(etcd);
	}
	agent_config_free(&cfg);
	curl_global_cleanup();
	return rc;
}

int cli_pause(int argc, char **argv)
{
	return set_pause(argc, argv, true);
}

int cli_resume(int argc, char **argv)
{
	return set_pause(argc, argv, false);
}

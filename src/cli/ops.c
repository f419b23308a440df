/* Cluster operations that change what the agents do: pause, resume, switchover. */
#include "cluster/dcs.h"
#include "cluster/switchover.h"
#include "cli/cli.h"
#include "common/http.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <curl/curl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int set_pause(int argc, char **argv, bool pause)
{
	struct cli_target t;
	struct cli_session s;
	int rc;

	if (cli_parse_target(argc, argv,
			     pause ? "pgwarden pause [-c node.ini | --dir DIR]"
				   : "pgwarden resume [-c node.ini | --dir DIR]",
			     &t) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_session_open(&t, &s);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (dcs_set_pause(&s.dcs, pause) != PGW_OK) {
		fprintf(stderr,
			"pgwarden: cannot change the configuration of cluster %s in etcd (%s)\n",
			s.cfg.cluster_name, s.cfg.etcd.endpoints);
		rc = CLI_EXIT_UNREACHABLE;
	} else {
		printf("Success: cluster management is %s\n", pause ? "paused" : "resumed");
	}
	cli_session_close(&s);
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

/*
 * switchover: planned, from a healthy leader. failover: to a named candidate, also
 * when there is no healthy leader (as patronictl). Both write the failover key; the
 * leader (if any) hands over, the candidate takes the key.
 */
static int change_leader(int argc, char **argv, bool failover)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"dir", required_argument, NULL, 'd'},
	    {"leader", required_argument, NULL, 'l'},
	    {"master", required_argument, NULL, 'l'},
	    {"candidate", required_argument, NULL, 'n'},
	    {"scheduled", required_argument, NULL, 's'},
	    {"force", no_argument, NULL, 'f'},
	    {"timeout", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	const char *usage =
	    failover ? "pgwarden failover [-c node.ini | --dir DIR] --candidate NAME [--force] "
		       "[--timeout S]"
		     : "pgwarden switchover [-c node.ini | --dir DIR] [--leader NAME] "
		       "[--candidate NAME] [--scheduled now|YYYY-MM-DDTHH:MM[:SS]Z] "
		       "[--force] [--timeout S]";
	const char *what = failover ? "fail over" : "switch over";
	struct cli_target t = {0};
	const char *leader_arg = NULL, *candidate = NULL;
	int64_t at = 0;
	bool force = false;
	int timeout_s = 60, c, rc;
	struct cli_session ses;
	char why[300];

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			t.config_path = optarg;
			break;
		case 'd':
			t.dir = optarg;
			break;
		case 'l':
			leader_arg = optarg;
			break;
		case 'n':
			candidate = optarg;
			break;
		case 's':
			at = switchover_parse_time(optarg);
			if (at < 0) {
				fprintf(stderr,
					"pgwarden: bad --scheduled '%s': use now or "
					"YYYY-MM-DDTHH:MM[:SS]Z (UTC)\n",
					optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		case 'f':
			force = true;
			break;
		case 't':
			timeout_s = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s\n", usage);
			return CLI_EXIT_USAGE;
		}
	}
	if (failover && !candidate) {
		fprintf(stderr, "pgwarden: failover needs --candidate\nusage: %s\n", usage);
		return CLI_EXIT_USAGE;
	}
	rc = cli_session_open(&t, &ses);
	if (rc != CLI_EXIT_OK)
		return rc;
	struct agent_config *cfg = &ses.cfg;
	struct dcs *d = &ses.dcs;
	const struct dcs_cluster *cl = &ses.cluster;

	rc = CLI_EXIT_FAILED;
	bool bad_request;
	struct switchover_policy policy = agent_config_switchover_policy(cfg);

	if (switchover_refusal(&policy, cl, leader_arg, candidate, failover, why, sizeof(why),
			       &bad_request)) {
		fprintf(stderr, "pgwarden: %s\n", why);
		goto out_cluster;
	}
	char question[400];

	snprintf(question, sizeof(question), "%s cluster %s from %s to %s?",
		 failover ? "Fail over" : "Switch over", cfg->cluster_name,
		 cl->has_leader ? cl->leader : "(no leader)",
		 candidate ? candidate : "the healthiest replica");
	rc = cli_confirm(force, question, what);
	if (rc != CLI_EXIT_OK)
		goto out_cluster;
	char msg[400], new_leader[DCS_NAME_MAX];
	enum switchover_result res =
	    switchover_request(d, cl, candidate, failover, at, timeout_s * 1000, msg, sizeof(msg),
			       new_leader, sizeof(new_leader));

	if (res == SWITCHOVER_DONE || res == SWITCHOVER_SCHEDULED) {
		printf("%s\n", msg);
		rc = CLI_EXIT_OK;
	} else {
		fprintf(stderr, "pgwarden: %s\n", msg);
		rc = res == SWITCHOVER_ETCD ? CLI_EXIT_UNREACHABLE : CLI_EXIT_FAILED;
	}
	if (res == SWITCHOVER_DONE) {
		dcs_cluster_free(&ses.cluster);
		if (dcs_read(d, &ses.cluster) == PGW_OK)
			cli_print_list(&ses, false);
	}
out_cluster:
	cli_session_close(&ses);
	return rc;
}

int cli_switchover(int argc, char **argv)
{
	return change_leader(argc, argv, false);
}

int cli_failover(int argc, char **argv)
{
	return change_leader(argc, argv, true);
}

/* pgwarden history: the timeline switches, like patronictl history. */
int cli_history(int argc, char **argv)
{
	struct cli_target t;
	struct cli_session s;
	int rc;

	if (cli_parse_target(argc, argv, "pgwarden history [-c node.ini | --dir DIR] [--json]",
			     &t) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_session_open(&t, &s);
	if (rc != CLI_EXIT_OK)
		return rc;
	json_object *list = s.cluster.history ? json_tokener_parse(s.cluster.history) : NULL;

	if (!list || !json_object_is_type(list, json_type_array)) {
		json_object_put(list);
		list = json_object_new_array();
	}
	if (t.json) {
		printf("%s\n", json_object_to_json_string_ext(list, JSON_C_TO_STRING_PRETTY));
	} else {
		printf("+----+------------+------------+----------------------+-----------+\n");
		printf("| TL |        LSN | Reason     | Timestamp            | New Leader|\n");
		printf("+----+------------+------------+----------------------+-----------+\n");
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			json_object *e = json_object_array_get_idx(list, i);
			char lsn[32];

			if (!json_object_is_type(e, json_type_array) ||
			    json_object_array_length(e) < 5)
				continue;
			cmn_format_lsn(
			    (uint64_t)json_object_get_int64(json_object_array_get_idx(e, 1)), lsn,
			    sizeof(lsn));
			printf("| %2d | %10s | %-10s | %-20s | %-10s|\n",
			       json_object_get_int(json_object_array_get_idx(e, 0)), lsn,
			       json_object_get_string(json_object_array_get_idx(e, 2)),
			       json_object_get_string(json_object_array_get_idx(e, 3)),
			       json_object_get_string(json_object_array_get_idx(e, 4)));
		}
		printf("+----+------------+------------+----------------------+-----------+\n");
	}
	json_object_put(list);
	cli_session_close(&s);
	return CLI_EXIT_OK;
}

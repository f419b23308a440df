/* pgwarden show-config / edit-config: the dynamic configuration in etcd. */
#include "cluster/confedit.h"
#include "cluster/dyncfg.h"
#include "node/pgctl.h"
#include "cli/cli.h"
#include "common/util.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_show_config(int argc, char **argv)
{
	struct cli_target t;
	struct cli_session s;
	json_object *o;
	int rc;

	if (cli_parse_target(argc, argv, "pgwarden show-config [-c node.ini | --dir DIR]", &t) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_session_open(&t, &s);
	if (rc != CLI_EXIT_OK)
		return rc;
	o = s.cluster.config ? json_tokener_parse(s.cluster.config) : NULL;
	if (!o)
		o = json_object_new_object();
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							     JSON_C_TO_STRING_SPACED));
	json_object_put(o);
	cli_session_close(&s);
	return CLI_EXIT_OK;
}

#define MAX_EDITS 64

struct edits {
	const char *set[MAX_EDITS];
	size_t n_set;
	const char *pg[MAX_EDITS];
	size_t n_pg;
	json_object *patch; /* --apply FILE */
};

static int apply_edits(json_object *root, void *arg, char *err, size_t err_size)
{
	const struct edits *e = arg;

	if (e->patch)
		dyncfg_merge_patch(root, e->patch);
	for (size_t i = 0; i < e->n_set; i++)
		if (dyncfg_set(root, &agent_config_dyncfg_rules, e->set[i], err, err_size) !=
		    PGW_OK)
			return PGW_EINVAL;
	for (size_t i = 0; i < e->n_pg; i++)
		if (dyncfg_set_pg(root, &agent_config_dyncfg_rules, e->pg[i], err, err_size) !=
		    PGW_OK)
			return PGW_EINVAL;
	return PGW_OK;
}

/* Prints the settings that differ, as "- old" / "+ new" lines. */
static void print_diff(const char *old_json, const char *new_json)
{
	char *a = confedit_flatten(old_json), *b = confedit_flatten(new_json);
	char *save = NULL;

	for (char *l = strtok_r(a, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char needle[1100];

		snprintf(needle, sizeof(needle), "%s\n", l);
		if (!strstr(b, needle))
			printf("-%s\n", l);
	}
	free(a);
	a = confedit_flatten(old_json);
	save = NULL;
	for (char *l = strtok_r(b, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char needle[1100];

		snprintf(needle, sizeof(needle), "%s\n", l);
		if (!strstr(a, needle))
			printf("+%s\n", l);
	}
	free(a);
	free(b);
}

static int refuse(int rc, const char *err)
{
	fprintf(stderr, "pgwarden: %s: %s\n",
		rc == PGW_EINVAL ? "configuration refused" : "cannot change the configuration",
		err);
	return rc == PGW_EINVAL || rc == PGW_EUNAVAIL ? CLI_EXIT_FAILED : CLI_EXIT_UNREACHABLE;
}

/* edit-config's command line into t and e (the patch of --apply read and parsed). */
static int parse_edits(int argc, char **argv, struct cli_target *t, struct edits *e, bool *force,
		       bool *dry_run)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"dir", required_argument, NULL, 'd'},
	    {"set", required_argument, NULL, 's'},    {"pg", required_argument, NULL, 'p'},
	    {"apply", required_argument, NULL, 'a'},  {"force", no_argument, NULL, 'f'},
	    {"dry-run", no_argument, NULL, 'n'},      {NULL, 0, NULL, 0},
	};
	const char *usage = "pgwarden edit-config [-c node.ini | --dir DIR] [--set KEY=VALUE ...] "
			    "[--pg NAME=VALUE ...] [--apply FILE.json] [--dry-run] [--force]";
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:s:p:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			t->config_path = optarg;
			break;
		case 'd':
			t->dir = optarg;
			break;
		case 's':
		case 'p':
			if ((c == 's' ? e->n_set : e->n_pg) >= MAX_EDITS) {
				fprintf(stderr, "pgwarden: at most %d --set and %d --pg\n",
					MAX_EDITS, MAX_EDITS);
				return CLI_EXIT_USAGE;
			}
			if (c == 's')
				e->set[e->n_set++] = optarg;
			else
				e->pg[e->n_pg++] = optarg;
			break;
		case 'a': {
			size_t len = 0;
			char *text = cmn_read_file(optarg, &len);

			if (!text) {
				fprintf(stderr, "pgwarden: cannot read %s\n", optarg);
				return CLI_EXIT_USAGE;
			}
			json_object_put(e->patch);
			e->patch = json_tokener_parse(text);
			free(text);
			if (!e->patch || !json_object_is_type(e->patch, json_type_object)) {
				fprintf(stderr, "pgwarden: %s is not a JSON object\n", optarg);
				json_object_put(e->patch);
				return CLI_EXIT_USAGE;
			}
			break;
		}
		case 'f':
			*force = true;
			break;
		case 'n':
			*dry_run = true;
			break;
		default:
			fprintf(stderr, "usage: %s\n", usage);
			json_object_put(e->patch);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc || (!e->n_set && !e->n_pg && !e->patch)) {
		fprintf(stderr, "pgwarden: nothing to change\nusage: %s\n", usage);
		json_object_put(e->patch);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

int cli_edit_config(int argc, char **argv)
{
	struct cli_target t = {0};
	struct edits e = {0};
	bool force = false, dry_run = false;
	int rc;
	char err[1024];

	rc = parse_edits(argc, argv, &t, &e, &force, &dry_run);
	if (rc != CLI_EXIT_OK)
		return rc;
	struct cli_session s;
	struct pgctl pg;
	struct confedit_result res;

	rc = cli_session_open(&t, &s);
	if (rc != CLI_EXIT_OK) {
		json_object_put(e.patch);
		return rc;
	}
	pgctl_init(&pg, &s.cfg);
	struct confedit_checks checks = pgctl_confedit_checks(&pg);

	rc = confedit_run(&s.dcs, &checks, apply_edits, &e, -1, true, &res, err, sizeof(err));
	if (rc != PGW_OK) {
		rc = refuse(rc, err);
		goto out_res; /* partly filled on failure too */
	}
	if (!res.changed) {
		printf("Not changed\n");
		rc = CLI_EXIT_OK;
		goto out_res;
	}
	print_diff(res.old_text, res.new_text);
	if (dry_run) {
		rc = CLI_EXIT_OK;
		goto out_res;
	}
	rc = cli_confirm(force, "Apply these changes?", "apply");
	if (rc != CLI_EXIT_OK)
		goto out_res;
	int64_t revision = res.revision;

	confedit_result_free(&res);
	rc =
	    confedit_run(&s.dcs, &checks, apply_edits, &e, revision, false, &res, err, sizeof(err));
	if (rc != PGW_OK) {
		rc = refuse(rc, err);
		goto out_res; /* partly filled on failure too */
	}
	printf("Configuration changed\n");
	rc = CLI_EXIT_OK;
out_res:
	confedit_result_free(&res);
	pgctl_close(&pg);
	json_object_put(e.patch);
	cli_session_close(&s);
	return rc;
}

#include "cli/cli.h"
#include "cluster/dyncfg.h"
#include "common/config.h"
#include "common/http.h"
#include "common/log.h"

#include <curl/curl.h>
#include <getopt.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int cli_as_postgres(int (*fn)(void *arg), void *arg)
{
	struct passwd *pw;
	int status = 0;
	pid_t pid;

	if (geteuid() != 0)
		return fn(arg);
	pw = getpwnam("postgres");
	if (!pw) {
		fprintf(stderr, "pgwarden: running as root needs the postgres user (install "
				"postgresql-15)\n");
		return CLI_EXIT_FAILED;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "pgwarden: fork failed: %s\n", strerror(errno));
		return CLI_EXIT_FAILED;
	}
	if (pid == 0) {
		int rc;

		if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
		    setuid(pw->pw_uid) != 0 || setuid(0) == 0) {
			fprintf(stderr, "pgwarden: cannot become the postgres user: %s\n",
				strerror(errno));
			_exit(CLI_EXIT_FAILED);
		}
		rc = fn(arg);
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return CLI_EXIT_FAILED;
	return WIFEXITED(status) ? WEXITSTATUS(status) : CLI_EXIT_FAILED;
}

int cli_load_config(const struct cli_target *t, struct agent_config *cfg)
{
	struct cmn_cfg_key keys[128];
	struct cmn_cfg_schema schema = agent_config_schema;
	char path[4200], err[1024];
	const char *p = t->config_path;
	struct stat st;

	if (!p && t->dir) {
		snprintf(path, sizeof(path), "%s/node1/node.ini", t->dir);
		p = path;
	}
	if (!p && getenv("PGWARDEN_CONFIG"))
		p = getenv("PGWARDEN_CONFIG");
	if (!p && !getenv("PGWARDEN_ETCD_ENDPOINTS")) {
		if (stat("cluster/node1/node.ini", &st) == 0)
			p = "cluster/node1/node.ini";
		else if (stat(CLI_ROOT_DIR "/node1/node.ini", &st) == 0)
			p = CLI_ROOT_DIR "/node1/node.ini";
	}
	if (schema.n_keys > sizeof(keys) / sizeof(keys[0])) {
		fprintf(stderr, "pgwarden: internal: too many configuration keys\n");
		return CLI_EXIT_USAGE;
	}
	/* The CLI needs only [cluster], [etcd] and [api]: nothing else is required. */
	memcpy(keys, schema.keys, sizeof(keys[0]) * schema.n_keys);
	for (size_t i = 0; i < schema.n_keys; i++)
		keys[i].required = false;
	schema.keys = keys;
	memset(cfg, 0, sizeof(*cfg));
	if (cmn_config_load(&schema, cfg, p, err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden: %s\n", err);
		agent_config_free(cfg); /* what was read before the error */
		return CLI_EXIT_USAGE;
	}
	if (!cfg->cluster_name || !*cfg->cluster_name) {
		fprintf(stderr, "pgwarden: no cluster given: use -c node.ini, --dir DIR, or set "
				"PGWARDEN_CLUSTER_NAME and PGWARDEN_ETCD_ENDPOINTS\n");
		agent_config_free(cfg);
		return CLI_EXIT_USAGE;
	}
	/* The repository host's own configuration (pgwarden repo-server's). */
	if (agent_config_is_repository(cfg) &&
	    agent_config_repository(cfg, p ? p : "configuration", err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden: %s\n", err);
		agent_config_free(cfg);
		return CLI_EXIT_USAGE;
	}
	cmn_http_set_cafile(cfg->api_cafile); /* the members' REST APIs over https */
	return CLI_EXIT_OK;
}

int cli_etcd_connect(const struct agent_config *cfg, struct etcd_client **out)
{
	struct etcd_client_opts o;

	cluster_etcd_opts(&cfg->etcd, 3000, &o);
	if (etcd_client_new(&o, out) != PGW_OK) {
		fprintf(stderr, "pgwarden: bad etcd endpoints '%s'\n", cfg->etcd.endpoints);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

int cli_session_open(const struct cli_target *t, struct cli_session *s)
{
	int rc;

	memset(s, 0, sizeof(*s));
	rc = cli_load_config(t, &s->cfg);
	if (rc != CLI_EXIT_OK)
		return rc;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	cmn_log_set_level(CMN_LOG_ERROR);
	rc = cli_etcd_connect(&s->cfg, &s->etcd);
	if (rc == CLI_EXIT_OK) {
		dcs_init(&s->dcs, s->etcd, s->cfg.namespace, s->cfg.cluster_name);
		s->dcs.allowed_networks = s->cfg.allowed_networks;
		if (dcs_read(&s->dcs, &s->cluster) == PGW_OK) {
			cli_apply_dynamic_backup(&s->cluster, &s->cfg);
			return CLI_EXIT_OK;
		}
		fprintf(stderr, "pgwarden: cannot read cluster %s from etcd (%s)\n",
			s->cfg.cluster_name, s->cfg.etcd.endpoints);
		rc = CLI_EXIT_UNREACHABLE;
	}
	cli_session_close(s);
	return rc;
}

void cli_apply_dynamic_backup(const struct dcs_cluster *c, struct agent_config *cfg)
{
	struct dyncfg d;
	char err[512];
	bool changed;

	if (!c->config ||
	    dyncfg_parse(c->config, &agent_config_dyncfg_rules, &d, err, sizeof(err)) != PGW_OK)
		return; /* the agents ignore a bad document too */
	if (agent_config_apply_dynamic_backup(cfg, &d.backup, NULL, &changed, err, sizeof(err)) !=
	    PGW_OK)
		fprintf(stderr, "pgwarden: warning: dynamic configuration: %s\n", err);
	dyncfg_free(&d);
}

void cli_session_close(struct cli_session *s)
{
	dcs_cluster_free(&s->cluster);
	if (s->etcd)
		etcd_client_free(s->etcd);
	s->etcd = NULL;
	agent_config_free(&s->cfg);
	curl_global_cleanup();
}

/* -c / --dir / --json, shared by the cluster commands. Returns optind or -1. */
int cli_parse_target(int argc, char **argv, const char *usage, struct cli_target *t)
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

int cli_confirm(bool force, const char *question, const char *what)
{
	char answer[16] = "";

	if (force)
		return CLI_EXIT_OK;
	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr, "pgwarden: not a terminal: add --force to %s\n", what);
		return CLI_EXIT_USAGE;
	}
	printf("%s [y/N] ", question);
	fflush(stdout);
	if (fgets(answer, sizeof(answer), stdin) && (answer[0] == 'y' || answer[0] == 'Y'))
		return CLI_EXIT_OK;
	printf("Aborted\n");
	return CLI_EXIT_FAILED;
}

/*
 * pgwarden repo-server: the repository host (pgBackRest's "dedicated repository host").
 * It keeps `pgbackrest server` running (TLS: the members archive WAL and restore through
 * it), creates the stanza from the leader once there is one, and runs the schedule of
 * [backup] schedule_full / _diff / _incr: `pgwarden backup --scheduled` every minute,
 * which reaches the members' data over TLS (their own `pgbackrest server`, published in
 * their etcd records) under the cluster-wide backup key. It holds no lease of its own:
 * the backup key keeps two backups from ever running together, wherever they start.
 */
#include "node/backup.h"
#include "cluster/dyncfg.h"
#include "cli/cli.h"
#include "cli/repo.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REPO_SERVER_USAGE "pgwarden repo-server [-c repo.ini]"
#define STANZA_RETRY_MS	  10000
#define SCHEDULE_CHECK_MS 60000
#define LOOP_MS		  1000
/* pgbackrest --config --stanza stanza-create and the leader's --pg1-host... options */
#define STANZA_ARGV (5 + CLI_PG_HOST_OPTS)

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

struct repo_server {
	struct agent_config *cfg;
	const char *config_path;
	struct backup_state st;
	char leader_seen[DCS_NAME_MAX]; /* the leader the stanza was created from */
	char stanza_log[4200];
	struct cmn_kvlist node_backup; /* its own [backup] values the dynamic config overrides */
	int64_t dyn_revision;	       /* of the config key last applied */
};

/* The dynamic configuration's "backup" over repo.ini's, and pgbackrest.conf after it. */
static void dynamic_tick(struct repo_server *r, const struct dcs_cluster *c)
{
	struct dyncfg d;
	char err[512];

	if (c->config_mod_revision == r->dyn_revision)
		return;
	r->dyn_revision = c->config_mod_revision;
	if (dyncfg_parse(c->config, &agent_config_dyncfg_rules, &d, err, sizeof(err)) != PGW_OK) {
		log_error("ignoring the dynamic configuration in etcd: %s", err);
		return;
	}
	(void)backup_apply_dynamic(r->cfg, &d.backup, &r->node_backup);
	dyncfg_free(&d);
}

/* stanza-create with the leader as pg1 (pgBackRest reads its system identifier). */
static void stanza_tick(struct repo_server *r, const struct dcs_cluster *c)
{
	const struct dcs_member *leader;
	char store[STANZA_ARGV][4200], opt[CLI_PG_HOST_OPTS][4200];
	const char *argv[STANZA_ARGV], *extra[CLI_PG_HOST_OPTS + 1];
	int code;

	if (r->st.stanza_pid) {
		if (cmn_proc_poll(r->st.stanza_pid, &code) == 0)
			return;
		r->st.stanza_pid = 0;
		if (code == 0) {
			r->st.stanza_ok = true;
			backup_schedule_first(&r->st); /* replicas may still be cloning */
			log_info("pgBackRest stanza '%s' ready in %s (from the leader %s)",
				 r->cfg->backup_stanza, r->cfg->backup_repo_path, r->leader_seen);
		} else {
			r->st.stanza_next_ms = cmn_now_ms() + STANZA_RETRY_MS;
			log_error("pgbackrest stanza-create failed (exit %d, see %s); the members "
				  "cannot archive WAL until it succeeds; trying again in %d s",
				  code, r->stanza_log, STANZA_RETRY_MS / 1000);
		}
		return;
	}
	if (r->st.stanza_ok || cmn_now_ms() < r->st.stanza_next_ms || !c->has_leader)
		return;
	leader = cli_member(c, c->leader);
	if (!leader || !leader->pgbackrest.port) {
		r->st.stanza_next_ms = cmn_now_ms() + STANZA_RETRY_MS;
		log_warning("the leader %s publishes no pgBackRest TLS server yet (is [backup] "
			    "repo_host set on the members?)",
			    c->leader);
		return;
	}
	extra[cli_pg_host_opts(r->cfg, 1, leader, opt, extra)] = NULL;
	backup_argv(r->cfg, "stanza-create", extra, store, argv, STANZA_ARGV);
	snprintf(r->leader_seen, sizeof(r->leader_seen), "%s", c->leader);
	struct cmn_proc_opts o = {.argv = argv, .log_path = r->stanza_log, .new_session = true};

	if (cmn_proc_spawn(&o, &r->st.stanza_pid) != PGW_OK) {
		r->st.stanza_pid = 0;
		r->st.stanza_next_ms = cmn_now_ms() + STANZA_RETRY_MS;
		log_error("cannot run %s: %s", argv[0], strerror(errno));
		return;
	}
	log_info("creating the pgBackRest stanza '%s' from the leader %s (%s:%d)",
		 r->cfg->backup_stanza, c->leader, leader->pgbackrest.host,
		 leader->pgbackrest.port);
}

/* `pgwarden backup --scheduled` (this binary, this configuration), output to ours. */
static void schedule_tick(struct repo_server *r)
{
	char self[4200];
	const char *argv[6];
	int code, n = 0;

	if (r->st.sched_pid) {
		if (cmn_proc_poll(r->st.sched_pid, &code) == 0)
			return;
		r->st.sched_pid = 0;
		/* The next look a minute after this one ended (a long or failing backup is
		 * not started again at once). */
		r->st.sched_next_ms = cmn_now_ms() + SCHEDULE_CHECK_MS;
		if (code == 0)
			log_info("scheduled backup done");
		else if (code != CLI_EXIT_NOTHING_DUE)
			log_error("scheduled backup failed (exit %d)", code);
		return;
	}
	if (!r->st.stanza_ok || !backup_scheduled(r->cfg) || !backup_schedule_due(&r->st))
		return;
	r->st.sched_first = false;
	r->st.sched_next_ms = cmn_now_ms() + SCHEDULE_CHECK_MS;
	if (cmn_self_exe(self, sizeof(self)) != 0)
		return;
	argv[n++] = self;
	argv[n++] = "backup";
	argv[n++] = "--scheduled";
	if (r->config_path) {
		argv[n++] = "-c";
		argv[n++] = r->config_path;
	}
	argv[n] = NULL;
	struct cmn_proc_opts o = {.argv = argv, .inherit_output = true, .new_session = true};

	if (cmn_proc_spawn(&o, &r->st.sched_pid) != PGW_OK) {
		r->st.sched_pid = 0;
		log_error("cannot run %s backup --scheduled: %s", self, strerror(errno));
	}
}

int cli_repo_server(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	struct cli_target t = {0};
	struct agent_config cfg;
	struct repo_server r;
	struct etcd_client *etcd = NULL;
	struct dcs dcs;
	char server_log[4200];
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (c != 'c') {
			fprintf(stderr, "usage: %s\n", REPO_SERVER_USAGE);
			return CLI_EXIT_USAGE;
		}
		t.config_path = optarg;
	}
	if (optind < argc) {
		fprintf(stderr, "pgwarden: unexpected argument '%s'\nusage: %s\n", argv[optind],
			REPO_SERVER_USAGE);
		return CLI_EXIT_USAGE;
	}
	if (geteuid() == 0) {
		fprintf(stderr, "pgwarden repo-server: refusing to run as root: run it as the "
				"repository's owner (e.g. runuser -u postgres --)\n");
		return CLI_EXIT_USAGE;
	}
	rc = cli_load_config(&t, &cfg);
	if (rc != CLI_EXIT_OK)
		return rc;
	memset(&r, 0, sizeof(r));
	r.cfg = &cfg;
	r.config_path = t.config_path ? t.config_path : getenv("PGWARDEN_CONFIG");
	rc = CLI_EXIT_USAGE;
	if (!agent_config_is_repository(&cfg)) {
		fprintf(stderr,
			"pgwarden repo-server: not a repository host's configuration: it "
			"needs [backup] repo_path, the TLS files, and no [cluster] member\n");
		goto out;
	}
	if (!agent_config_has_tls(&cfg)) {
		fprintf(stderr, "pgwarden repo-server: [backup] tls_ca_file, tls_cert_file and "
				"tls_key_file are needed (the members reach the repository over "
				"pgBackRest's TLS protocol)\n");
		goto out;
	}
	if (access(cfg.backup_pgbackrest, X_OK) != 0) {
		fprintf(stderr, "pgwarden repo-server: %s cannot be run (%s): install pgBackRest\n",
			cfg.backup_pgbackrest, strerror(errno));
		rc = CLI_EXIT_FAILED;
		goto out;
	}
	rc = CLI_EXIT_FAILED;
	if (cmn_mkdir_p(cfg.backup_repo_path, 0750) != PGW_OK) {
		fprintf(stderr, "pgwarden repo-server: cannot create %s: %s\n",
			cfg.backup_repo_path, strerror(errno));
		goto out;
	}
	if (cfg.log_level) {
		enum cmn_log_level lvl;

		if (cmn_log_parse_level(cfg.log_level, &lvl) == PGW_OK)
			cmn_log_set_level(lvl);
	}
	cmn_log_set_ident("repo-server");
	if (backup_write_config(&cfg) != PGW_OK)
		goto out;
	r.dyn_revision = -1;
	if (agent_config_backup_snapshot(&cfg, &r.node_backup) != PGW_OK) {
		fprintf(stderr, "pgwarden repo-server: out of memory\n");
		goto out;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rc = cli_etcd_connect(&cfg, &etcd);
	if (rc != CLI_EXIT_OK)
		goto out;
	dcs_init(&dcs, etcd, cfg.namespace, cfg.cluster_name);
	snprintf(server_log, sizeof(server_log), "%s/pgbackrest/server.log", cfg.node_dir);
	snprintf(r.stanza_log, sizeof(r.stanza_log), "%s/pgbackrest/stanza-create.log",
		 cfg.node_dir);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	log_info("repository host of cluster %s: %s, stanza %s, TLS on %s:%d, etcd %s",
		 cfg.cluster_name, cfg.backup_repo_path, cfg.backup_stanza, cfg.tls_host,
		 cfg.tls_port, cfg.etcd.endpoints);
	while (!stopping) {
		struct dcs_cluster cl;

		backup_server_tick(&r.st, &cfg, NULL, server_log);
		memset(&cl, 0, sizeof(cl));
		r.st.replicas_ready = false;
		if (dcs_read(&dcs, &cl) == PGW_OK) {
			r.st.replicas_ready = backup_replicas_ready(&cl);
			dynamic_tick(&r, &cl);
			stanza_tick(&r, &cl);
		}
		schedule_tick(&r);
		dcs_cluster_free(&cl);
		for (int i = 0; i < LOOP_MS / 100 && !stopping; i++)
			usleep(100000);
	}
	log_info("stopping");
	backup_stop(&r.st);
	rc = CLI_EXIT_OK;
out:
	if (etcd) {
		etcd_client_free(etcd);
		curl_global_cleanup();
	}
	cmn_kvlist_free(&r.node_backup);
	agent_config_free(&cfg);
	return rc;
}

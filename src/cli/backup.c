/*
 * pgwarden backup: a pgBackRest backup of the cluster, taken from a streaming replica
 * (pgBackRest's backup-standby: the bulk of the files comes from the replica, the primary
 * only starts and stops the backup) and from the leader when no replica qualifies. One
 * backup at a time cluster-wide: the runner holds the backup key in etcd on a lease.
 */
#include "node/backup.h"
#include "node/schedule.h"
#include "cli/cli.h"
#include "cli/repo.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define BACKUP_USAGE                                                                         \
	"pgwarden backup [--type full|diff|incr] [-c node.ini | --dir DIR] [--from-leader] " \
	"[--timeout S] [--scheduled]"
#define BACKUP_LEASE_TTL_S 10
#define PG_HOST_OPTS	   CLI_PG_HOST_OPTS
#define BACKUP_ARGV_MAX	   (8 + 4 + 2 * PG_HOST_OPTS)

struct backup_opts {
	struct cli_target t;
	const char *type;
	bool from_leader;
	bool scheduled; /* the type is what [backup] schedule_* makes due now (the agent) */
	int timeout_s;	/* 0: none */
};

static int parse_opts(int argc, char **argv, struct backup_opts *o)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"dir", required_argument, NULL, 'd'},
	    {"type", required_argument, NULL, 'T'},
	    {"from-leader", no_argument, NULL, 'L'},
	    {"timeout", required_argument, NULL, 't'},
	    {"scheduled", no_argument, NULL, 'S'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->type = "incr";
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->t.config_path = optarg;
			break;
		case 'd':
			o->t.dir = optarg;
			break;
		case 'T':
			if (strcmp(optarg, "full") != 0 && strcmp(optarg, "diff") != 0 &&
			    strcmp(optarg, "incr") != 0) {
				fprintf(stderr,
					"pgwarden: bad --type '%s': expected full, diff or incr\n",
					optarg);
				return -1;
			}
			o->type = optarg;
			break;
		case 'L':
			o->from_leader = true;
			break;
		case 'S':
			o->scheduled = true;
			break;
		case 't':
			o->timeout_s = atoi(optarg);
			if (o->timeout_s <= 0) {
				fprintf(stderr, "pgwarden: bad --timeout '%s'\n", optarg);
				return -1;
			}
			break;
		default:
			fprintf(stderr, "usage: %s\n", BACKUP_USAGE);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pgwarden: unexpected '%s'\nusage: %s\n", argv[optind],
			BACKUP_USAGE);
		return -1;
	}
	return 0;
}

bool cli_load_member(const struct cli_target *t, const struct agent_config *own, const char *member,
		     struct agent_config *out)
{
	char path[4200], err[1024];
	const char *p = t->config_path ? t->config_path : getenv("PGWARDEN_CONFIG");

	if (t->dir)
		snprintf(path, sizeof(path), "%s/%s/node.ini", t->dir, member);
	else if (own->member_name && strcmp(own->member_name, member) == 0)
		snprintf(path, sizeof(path), "%s", p ? p : "");
	else
		return false;
	if (agent_config_load(path[0] ? path : NULL, out, err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden: %s\n", err);
		agent_config_free(out);
		return false;
	}
	return true;
}

static void now_iso(char *out, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int cli_run_as_postgres(struct cmn_proc_opts *po)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	pw = getpwnam("postgres");
	if (!pw)
		return -1;
	po->run_as = true;
	po->uid = pw->pw_uid;
	po->gid = pw->pw_gid;
	return 0;
}

const struct dcs_member *cli_member(const struct dcs_cluster *c, const char *name)
{
	for (size_t i = 0; name && i < c->n_members; i++)
		if (strcmp(c->members[i].name, name) == 0)
			return &c->members[i];
	return NULL;
}

int cli_pg_host_opts(const struct agent_config *repo, int index, const struct dcs_member *m,
		     char (*opt)[4200], const char **out)
{
	int n = 0;

#define PG_OPT(...) (snprintf(opt[n], 4200, __VA_ARGS__), out[n] = opt[n], n++)
	PG_OPT("--pg%d-host=%s", index, m->pgbackrest.host);
	PG_OPT("--pg%d-host-port=%d", index, m->pgbackrest.port);
	PG_OPT("--pg%d-host-type=tls", index);
	PG_OPT("--pg%d-host-ca-file=%s", index, repo->backup_tls_ca_file);
	PG_OPT("--pg%d-host-cert-file=%s", index, repo->backup_tls_cert_file);
	PG_OPT("--pg%d-host-key-file=%s", index, repo->backup_tls_key_file);
	PG_OPT("--pg%d-path=%s", index, m->pgbackrest.pg_path);
	PG_OPT("--pg%d-port=%d", index, m->pgbackrest.pg_port);
	PG_OPT("--pg%d-socket-path=%s", index, m->pgbackrest.pg_socket);
	PG_OPT("--pg%d-user=%s", index,
	       m->pgbackrest.pg_user[0] ? m->pgbackrest.pg_user : "postgres");
#undef PG_OPT
	return n;
}

/* Runs argv as postgres (we may be root) until it exits; keeps the lease meanwhile. */
static int run_backup(struct cli_session *s, const struct agent_config *runner,
		      const char *const *argv, int64_t lease, int timeout_s)
{
	char env_pass[4200];
	const char *env[] = {env_pass, "LC_ALL=C", NULL};
	struct cmn_proc_opts po = {.argv = argv, .env_extra = env, .inherit_output = true};
	int64_t started = cmn_now_ms(), last_beat = started, last_ok = started;
	pid_t pid;
	int code = -1, ttl;

	snprintf(env_pass, sizeof(env_pass), "PGPASSFILE=%s", runner->pgpass ?: "/dev/null");
	if (cli_run_as_postgres(&po) != 0) {
		fprintf(stderr, "pgwarden: no postgres user to run pgbackrest as\n");
		return -1;
	}
	if (cmn_proc_spawn(&po, &pid) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot run %s: %s\n", argv[0], strerror(errno));
		return -1;
	}
	while (cmn_proc_poll(pid, &code) == 0) {
		int64_t now = cmn_now_ms();

		if (timeout_s && now - started >= timeout_s * 1000LL) {
			fprintf(stderr,
				"pgwarden: the backup runs longer than --timeout %d s: "
				"stopping it\n",
				timeout_s);
			cmn_proc_stop(pid, &code);
			return -1;
		}
		if (now - last_beat >= BACKUP_LEASE_TTL_S * 1000 / 4) {
			last_beat = now;
			if (etcd_lease_keepalive(s->etcd, lease, &ttl) == PGW_OK && ttl > 0)
				last_ok = now;
			else
				fprintf(stderr, "pgwarden: warning: cannot renew the backup key's "
						"lease in etcd\n");
		}
		/* The key may be gone: another backup could start. Stop before that. */
		if (now - last_ok >= (BACKUP_LEASE_TTL_S - 2) * 1000LL) {
			fprintf(stderr,
				"pgwarden: lost the backup key in etcd (lease not renewed "
				"for %d s): stopping the backup\n",
				BACKUP_LEASE_TTL_S - 2);
			cmn_proc_stop(pid, &code);
			return -1;
		}
		usleep(100000);
	}
	return code;
}

void cli_default_dir(struct cli_target *t)
{
	struct stat st;

	if (t->dir || t->config_path || getenv("PGWARDEN_CONFIG") ||
	    getenv("PGWARDEN_ETCD_ENDPOINTS"))
		return;
	if (stat("cluster/node1/node.ini", &st) == 0)
		t->dir = "cluster";
	else if (stat(CLI_ROOT_DIR "/node1/node.ini", &st) == 0)
		t->dir = CLI_ROOT_DIR;
}

/*
 * --scheduled: the type [backup] schedule_full / _diff / _incr of member m makes due now,
 * from the repository's backups (a full one counts for all three, a differential one for
 * incr too); the strongest wins. No backup at all: a full one. NULL: nothing due.
 */
static const char *due_type(const struct agent_config *m)
{
	const char *texts[3] = {m->backup_schedule_full, m->backup_schedule_diff,
				m->backup_schedule_incr};
	static const char *const types[3] = {"full", "diff", "incr"};
	struct schedule sched[3];
	int64_t last[3] = {0, 0, 0}, now = (int64_t)time(NULL);
	bool any = false;
	char err[2048];
	json_object *st, *arr;

	for (int i = 0; i < 3; i++) {
		if (schedule_parse(texts[i], &sched[i], err, sizeof(err)) != 0)
			sched[i].set = false; /* the configuration check refused it already */
		any |= sched[i].set;
	}
	if (!any)
		return NULL;
	st = cli_repo_info(m, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "pgwarden: %s\n", err);
		return NULL;
	}
	if (json_object_object_get_ex(st, "backup", &arr) &&
	    json_object_is_type(arr, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *b = json_object_array_get_idx(arr, i);
			const char *type = cli_jstr(b, "type", NULL) ?: "";
			int64_t stop = cli_jint(b, "timestamp", "stop", NULL);
			int rank = strcmp(type, "full") == 0   ? 0
				   : strcmp(type, "diff") == 0 ? 1
							       : 2;

			for (int k = rank; k < 3; k++)
				if (stop > last[k])
					last[k] = stop;
		}
	}
	json_object_put(st);
	if (last[2] == 0)
		return "full";
	for (int i = 0; i < 3; i++)
		if (schedule_due(&sched[i], last[i], now))
			return types[i];
	return NULL;
}

/* The last backup in etcd (last_backup): new replicas restore from the repository then. */
static void record_last_backup(struct cli_session *s, const struct agent_config *runner)
{
	char err[2048];
	json_object *st = cli_repo_info(runner, err, sizeof(err)), *arr, *b, *v;
	size_t n;

	if (!st)
		return;
	if (json_object_object_get_ex(st, "backup", &arr) &&
	    json_object_is_type(arr, json_type_array) && (n = json_object_array_length(arr))) {
		b = json_object_array_get_idx(arr, n - 1);
		v = json_object_new_object();
		json_object_object_add(v, "label",
				       json_object_new_string(cli_jstr(b, "label", NULL) ?: ""));
		json_object_object_add(v, "type",
				       json_object_new_string(cli_jstr(b, "type", NULL) ?: ""));
		json_object_object_add(
		    v, "stop", json_object_new_int64(cli_jint(b, "timestamp", "stop", NULL)));
		json_object_object_add(v, "member",
				       json_object_new_string(runner->member_name ?: "repository"));
		if (dcs_set_last_backup(&s->dcs, json_object_to_json_string_ext(
						     v, JSON_C_TO_STRING_PLAIN)) != PGW_OK)
			fprintf(stderr, "pgwarden: warning: could not record the backup in etcd\n");
		json_object_put(v);
	}
	json_object_put(st);
}

/* One backup being taken: what runs it, from which member, under which lease. */
struct backup_run {
	struct backup_opts o;
	struct cli_session s;
	bool repo; /* on the repository host: pgBackRest reaches the members over TLS */
	struct agent_config runner, leader_cfg;
	bool have_runner, have_leader;
	const struct dcs_member *pg_leader, *pg_standby; /* repo: the members reached */
	bool standby;					 /* from a streaming replica */
	const struct agent_config *rcfg;		 /* what pgbackrest runs with */
	int64_t lease;
	int ttl;
};

/* The name of the member the backup is taken from. */
static const char *source_name(const struct backup_run *r)
{
	return r->repo ? (r->standby ? r->pg_standby : r->pg_leader)->name : r->runner.member_name;
}

/* On the repository host: its TLS files, its pgbackrest.conf, the leader's TLS server. */
static int repo_leader(struct backup_run *r)
{
	int rc;

	if (!agent_config_has_tls(&r->s.cfg)) {
		fprintf(stderr, "pgwarden: a backup from the repository host needs [backup] "
				"tls_ca_file, tls_cert_file and tls_key_file\n");
		return CLI_EXIT_USAGE;
	}
	rc = cli_repository_conf(&r->s.cfg);
	if (rc != CLI_EXIT_OK)
		return rc;
	r->pg_leader = cli_member(&r->s.cluster, r->s.cluster.leader);
	if (!r->pg_leader || !r->pg_leader->pgbackrest.port) {
		fprintf(stderr,
			"pgwarden: the leader %s publishes no pgBackRest TLS server: is "
			"[backup] repo_host set on the members?\n",
			r->s.cluster.leader);
		return CLI_EXIT_FAILED;
	}
	return CLI_EXIT_OK;
}

/* --scheduled: the type the schedule makes due now (CLI_EXIT_NOTHING_DUE: none). */
static int scheduled_type(struct backup_run *r)
{
	if (r->repo) {
		r->o.type = due_type(&r->s.cfg);
	} else {
		struct agent_config me;

		if (!r->s.cfg.member_name ||
		    !cli_load_member(&r->o.t, &r->s.cfg, r->s.cfg.member_name, &me)) {
			fprintf(stderr, "pgwarden: --scheduled needs the member's configuration\n");
			return CLI_EXIT_USAGE;
		}
		cli_apply_dynamic_backup(&r->s.cluster, &me);
		r->o.type = due_type(&me);
		agent_config_free(&me);
	}
	if (!r->o.type)
		return CLI_EXIT_NOTHING_DUE;
	printf("scheduled backup due: %s\n", r->o.type);
	return CLI_EXIT_OK;
}

/*
 * Who runs pgbackrest: the most advanced streaming replica when its files are here
 * too (or, from the repository host, when it serves them over TLS), else the leader.
 */
static int choose_runner(struct backup_run *r)
{
	const struct dcs_cluster *c = &r->s.cluster;

	if (!r->o.from_leader && (r->have_leader || r->repo)) {
		const struct dcs_member *best = NULL;

		for (size_t i = 0; i < c->n_members; i++) {
			const struct dcs_member *m = &c->members[i];

			if (strcmp(m->name, c->leader) == 0 || strcmp(m->state, "streaming") != 0 ||
			    (r->repo && !m->pgbackrest.port))
				continue;
			if (!best || m->lsn > best->lsn)
				best = m;
		}
		if (best && r->repo)
			r->pg_standby = best, r->standby = true;
		else if (best && cli_load_member(&r->o.t, &r->s.cfg, best->name, &r->runner))
			r->have_runner = r->standby = true;
	}
	if (r->repo) {
		r->rcfg = &r->s.cfg;
		return CLI_EXIT_OK;
	}
	if (!r->have_runner && r->have_leader) {
		r->runner = r->leader_cfg;
		memset(&r->leader_cfg, 0, sizeof(r->leader_cfg));
		r->have_leader = false;
		r->have_runner = true;
	}
	if (!r->have_runner) {
		fprintf(stderr,
			"pgwarden: the leader %s's configuration is not here: run the backup "
			"where it is (in its container, or with -c its node.ini), or with --dir "
			"on a local cluster\n",
			c->leader);
		return CLI_EXIT_FAILED;
	}
	if (!backup_enabled(&r->runner)) {
		fprintf(stderr,
			"pgwarden: backups are off: no [backup] repo_path in %s's "
			"configuration\n",
			r->runner.member_name);
		return CLI_EXIT_USAGE;
	}
	if (backup_remote(&r->runner)) {
		fprintf(stderr,
			"pgwarden: the repository is on a repository host (%s): run the backup "
			"there (pgwarden backup in its container)\n",
			r->runner.backup_repo_host);
		return CLI_EXIT_USAGE;
	}
	r->rcfg = &r->runner;
	return CLI_EXIT_OK;
}

/* The cluster-wide backup key, on a lease of our own: one backup at a time. */
static int take_backup_key(struct backup_run *r)
{
	char started[32], host[256] = "";
	bool won = false;
	int rc;

	if (etcd_lease_grant(r->s.etcd, BACKUP_LEASE_TTL_S, &r->lease, &r->ttl) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot get a lease from etcd\n");
		return CLI_EXIT_UNREACHABLE;
	}
	json_object *v = json_object_new_object();

	gethostname(host, sizeof(host) - 1);
	now_iso(started, sizeof(started));
	json_object_object_add(v, "member", json_object_new_string(source_name(r)));
	json_object_object_add(v, "type", json_object_new_string(r->o.type));
	json_object_object_add(v, "standby", json_object_new_boolean(r->standby));
	json_object_object_add(v, "started", json_object_new_string(started));
	json_object_object_add(v, "host", json_object_new_string(host));
	json_object_object_add(v, "pid", json_object_new_int((int)getpid()));
	rc = dcs_take_backup(&r->s.dcs, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN),
			     r->lease, &won);
	json_object_put(v);
	if (rc == PGW_OK && won)
		return CLI_EXIT_OK;
	char *holder = rc == PGW_OK ? dcs_read_backup(&r->s.dcs) : NULL;

	if (rc != PGW_OK)
		fprintf(stderr, "pgwarden: cannot write the backup key in etcd\n");
	else
		fprintf(stderr, "pgwarden: a backup is already running: %s\n",
			holder ? holder : "(it just ended: try again)");
	free(holder);
	if (etcd_lease_revoke(r->s.etcd, r->lease) != PGW_OK)
		(void)0; /* it expires in BACKUP_LEASE_TTL_S anyway */
	return rc != PGW_OK	? CLI_EXIT_UNREACHABLE
	       : r->o.scheduled ? CLI_EXIT_NOTHING_DUE /* the next check tries again */
				: CLI_EXIT_FAILED;
}

/* pgbackrest backup's options beyond the configuration: the type, and where the
 * members' files are (opt holds the strings). Returns how many, NULL-terminated. */
static size_t backup_options(const struct backup_run *r, char opt[][4200], const char **extra)
{
	size_t n_extra = 0;

	snprintf(opt[0], 4200, "--type=%s", r->o.type);
	extra[n_extra++] = opt[0];
	extra[n_extra++] = "--log-level-console=info";
	if (r->repo) {
		if (r->standby)
			extra[n_extra++] = "--backup-standby";
		n_extra += cli_pg_host_opts(&r->s.cfg, 1, r->standby ? r->pg_standby : r->pg_leader,
					    opt + 1, extra + n_extra);
		if (r->standby)
			n_extra += cli_pg_host_opts(&r->s.cfg, 2, r->pg_leader,
						    opt + 1 + PG_HOST_OPTS, extra + n_extra);
	} else if (r->standby) {
		extra[n_extra++] = "--backup-standby";
		snprintf(opt[1], 4200, "--pg2-path=%s", r->leader_cfg.data_dir);
		snprintf(opt[2], 4200, "--pg2-port=%d", r->leader_cfg.pg_port);
		snprintf(opt[3], 4200, "--pg2-socket-path=%s", r->leader_cfg.socket_dir);
		snprintf(opt[4], 4200, "--pg2-user=%s", r->leader_cfg.superuser);
		for (int i = 1; i <= 4; i++)
			extra[n_extra++] = opt[i];
	}
	extra[n_extra] = NULL;
	return n_extra;
}

/* Why pgbackrest backup failed (exit code), as far as we can tell. */
static void explain_failure(const struct agent_config *rcfg, int code)
{
	struct statvfs vfs;

	fprintf(stderr,
		"pgwarden: pgbackrest backup failed (exit %d): its log is in "
		"%s/pgbackrest/log\n",
		code, rcfg->node_dir);
	/* pgBackRest says "unable to write": say why when it is a full disk. */
	if (statvfs(rcfg->backup_repo_path, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < 64ULL * 1024 * 1024)
		fprintf(stderr,
			"pgwarden: the repository is full: %llu kB free in %s (expire old "
			"backups, lower retention_full, or give it room)\n",
			(unsigned long long)vfs.f_bavail * vfs.f_frsize / 1024,
			rcfg->backup_repo_path);
	if (code == 82) /* ArchiveTimeoutError */
		fprintf(stderr, "pgwarden: WAL archiving does not work: the archive_command "
				"errors are in PostgreSQL's log (a full or unreachable "
				"repository?)\n");
}

/* Takes the backup with r's choices, under the backup key; CLI_EXIT_*. */
static int take_backup(struct backup_run *r)
{
	char store[BACKUP_ARGV_MAX][4200], opt[1 + 2 * PG_HOST_OPTS][4200];
	const char *argv_pg[BACKUP_ARGV_MAX], *extra[4 + 2 * PG_HOST_OPTS];
	const struct agent_config *rcfg = r->rcfg;
	int64_t t0;
	int rc, code;

	rc = take_backup_key(r);
	if (rc != CLI_EXIT_OK)
		return rc;
	(void)backup_options(r, opt, extra);
	backup_argv(rcfg, "backup", extra, store, argv_pg, BACKUP_ARGV_MAX);
	printf("backup (%s) of cluster %s from %s (%s), stanza %s, repository %s\n", r->o.type,
	       r->s.cfg.cluster_name, source_name(r),
	       r->standby ? "a streaming replica: pgBackRest backup-standby" : "the leader",
	       rcfg->backup_stanza, rcfg->backup_repo_path);
	fflush(stdout);
	t0 = cmn_now_ms();
	code = run_backup(&r->s, rcfg, argv_pg, r->lease, r->o.timeout_s);
	if (etcd_lease_revoke(r->s.etcd, r->lease) != PGW_OK)
		fprintf(stderr,
			"pgwarden: warning: could not revoke the backup key's lease (it "
			"expires in %d s)\n",
			r->ttl);
	if (code != 0) {
		explain_failure(rcfg, code);
		return CLI_EXIT_FAILED;
	}
	printf("backup done in %.1f s\n", (double)(cmn_now_ms() - t0) / 1000.0);
	record_last_backup(&r->s, rcfg);
	return CLI_EXIT_OK;
}

int cli_backup(int argc, char **argv)
{
	struct backup_run r;
	int rc;

	if (argc > 1 && strcmp(argv[1], "list") == 0)
		return cli_backup_list(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return cli_backup_check(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "verify") == 0)
		return cli_backup_verify(argc - 1, argv + 1);
	memset(&r, 0, sizeof(r));
	if (parse_opts(argc, argv, &r.o) != 0)
		return CLI_EXIT_USAGE;
	cli_default_dir(&r.o.t);
	rc = cli_session_open(&r.o.t, &r.s);
	if (rc != CLI_EXIT_OK)
		return rc;
	r.repo = agent_config_is_repository(&r.s.cfg);
	if (!r.s.cluster.has_leader) {
		fprintf(stderr, "pgwarden: cluster %s has no leader: no backup now\n",
			r.s.cfg.cluster_name);
		rc = CLI_EXIT_FAILED;
	} else if (r.repo) {
		rc = repo_leader(&r);
	} else {
		r.have_leader =
		    cli_load_member(&r.o.t, &r.s.cfg, r.s.cluster.leader, &r.leader_cfg);
	}
	if (rc == CLI_EXIT_OK && r.o.scheduled)
		rc = scheduled_type(&r);
	if (rc == CLI_EXIT_OK)
		rc = choose_runner(&r);
	if (rc == CLI_EXIT_OK)
		rc = take_backup(&r);
	if (r.have_runner)
		agent_config_free(&r.runner);
	if (r.have_leader)
		agent_config_free(&r.leader_cfg);
	cli_session_close(&r.s);
	return rc;
}

/* ---- pgwarden backup list ---- */

const char *cli_jstr(json_object *o, const char *k1, const char *k2)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k1, &v))
		return NULL;
	if (k2 && !json_object_object_get_ex(v, k2, &v))
		return NULL;
	return json_object_get_string(v);
}

int64_t cli_jint(json_object *o, const char *k1, const char *k2, const char *k3)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k1, &v) ||
	    (k2 && !json_object_object_get_ex(v, k2, &v)) ||
	    (k3 && !json_object_object_get_ex(v, k3, &v)))
		return 0;
	return json_object_get_int64(v);
}

static void fmt_time(int64_t epoch, char *out, size_t size)
{
	time_t t = (time_t)epoch;
	struct tm tm;

	if (!epoch) {
		snprintf(out, size, "-");
		return;
	}
	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%d %H:%M:%S+00", &tm);
}

static void fmt_size(int64_t bytes, char *out, size_t size)
{
	if (bytes >= 10LL * 1024 * 1024 * 1024)
		snprintf(out, size, "%.1f GB", (double)bytes / (1024.0 * 1024 * 1024));
	else if (bytes >= 10LL * 1024 * 1024)
		snprintf(out, size, "%.1f MB", (double)bytes / (1024.0 * 1024));
	else
		snprintf(out, size, "%.1f kB", (double)bytes / 1024.0);
}

/* pgbackrest info --output=json as the member runs it; the stanza's object or NULL. */
int cli_pgbackrest(const struct agent_config *m, const char *command, const char *const *extra,
		   int timeout_ms, struct cmn_buf *out)
{
	char store[24][4200], env_pass[4200];
	const char *argv[25], *env[] = {env_pass, "LC_ALL=C", NULL};
	struct cmn_proc_opts po = {.argv = argv, .env_extra = env};
	int code = -1;

	snprintf(env_pass, sizeof(env_pass), "PGPASSFILE=%s", m->pgpass ?: "/dev/null");
	backup_argv(m, command, extra, store, argv, 25);
	if (cli_run_as_postgres(&po) != 0) {
		cmn_buf_printf(out, "no postgres user to run pgbackrest as");
		return -1;
	}
	if (cmn_proc_run_opts(&po, timeout_ms, out, &code) != PGW_OK)
		return -1;
	return code;
}

json_object *cli_repo_info(const struct agent_config *m, char *err, size_t err_size)
{
	const char *extra[] = {"--output=json", NULL};
	struct cmn_buf out = {0};
	json_object *all, *st = NULL;
	int code = cli_pgbackrest(m, "info", extra, 60000, &out);

	if (code != 0) {
		snprintf(err, err_size, "pgbackrest info failed (exit %d): %s", code,
			 out.data ? out.data : "");
		cmn_buf_free(&out);
		return NULL;
	}
	all = json_tokener_parse(out.data ? out.data : "");
	cmn_buf_free(&out);
	if (all && json_object_is_type(all, json_type_array) && json_object_array_length(all) > 0)
		st = json_object_get(json_object_array_get_idx(all, 0));
	json_object_put(all);
	if (!st)
		snprintf(err, err_size, "pgbackrest info gave no stanza");
	return st;
}

void cli_repo_problem(json_object *st, char *out, size_t size)
{
	json_object *repos;
	const char *msg = cli_jstr(st, "status", "message") ?: "error", *cipher;

	/* The repository's own message says more than the stanza's ("other"). */
	if (json_object_object_get_ex(st, "repo", &repos) &&
	    json_object_is_type(repos, json_type_array) && json_object_array_length(repos)) {
		const char *m = cli_jstr(json_object_array_get_idx(repos, 0), "status", "message");

		if (m && *m)
			msg = m;
	}
	snprintf(out, size, "%.*s", (int)strcspn(msg, "\n"), msg);
	cipher = cli_jstr(st, "cipher", NULL);
	if (cipher && strcmp(cipher, "none") != 0 && strstr(msg, "FormatError")) {
		size_t len = strlen(out);

		snprintf(out + len, size - len,
			 " (the repository is encrypted: is [backup] cipher_pass the one it was "
			 "made with?)");
	}
}

static int write_repository_conf(void *arg)
{
	const struct agent_config *r = arg;
	char path[4200];

	if (backup_write_config(r) != PGW_OK) {
		backup_conf_path(r, path, sizeof(path));
		fprintf(stderr, "pgwarden: cannot write %s: %s\n", path, strerror(errno));
		return CLI_EXIT_FAILED;
	}
	return CLI_EXIT_OK;
}

/*
 * A repository configuration's pgbackrest.conf, written when missing or different (the
 * file names the repository: a stale one would read another). When we are root it is
 * written as postgres (who runs pgbackrest then): root makes only the folder that
 * holds it, when missing, in a folder postgres cannot change, and gives it to postgres.
 */
int cli_repository_conf(const struct agent_config *r)
{
	struct cmn_proc_opts po = {0};
	char path[4200], *want, *have;
	bool same;

	backup_conf_path(r, path, sizeof(path));
	want = backup_config_text(r);
	have = cmn_read_file(path, NULL);
	same = want && have && strcmp(want, have) == 0;
	free(want);
	free(have);
	if (same)
		return CLI_EXIT_OK;
	if (cli_run_as_postgres(&po) == 0 && po.run_as) {
		const char *dirs[] = {r->node_dir, path};
		struct stat st;

		snprintf(path, sizeof(path), "%s/pgbackrest", r->node_dir);
		for (size_t i = 0; i < 2; i++) {
			if (lstat(dirs[i], &st) == 0) {
				if (st.st_uid == po.uid)
					break; /* postgres's from here on */
				if (!S_ISDIR(st.st_mode) || st.st_uid != 0) {
					fprintf(
					    stderr,
					    "pgwarden: %s is not a folder of root or postgres\n",
					    dirs[i]);
					return CLI_EXIT_FAILED;
				}
				continue; /* root's: postgres cannot change what is in it */
			}
			if (cmn_mkdir_p(dirs[i], 0750) != PGW_OK ||
			    lchown(dirs[i], po.uid, po.gid) != 0) {
				fprintf(stderr, "pgwarden: cannot make %s for postgres: %s\n",
					dirs[i], strerror(errno));
				return CLI_EXIT_FAILED;
			}
			break;
		}
	}
	return cli_as_postgres(write_repository_conf, (void *)r);
}

int cli_repo_member(struct cli_target *t, const char *member, struct agent_config *m)
{
	struct agent_config own;
	char name[256];
	int rc;

	cli_default_dir(t);
	if (!member) {
		/* Any member reads the same repository: the one configured, or node1 in DIR. */
		rc = cli_load_config(t, &own);
		if (rc != CLI_EXIT_OK)
			return rc;
		if (agent_config_is_repository(&own)) {
			/* The repository host reads its own repository; so does a file naming a
			 * repository folder alone (its pgbackrest.conf is written when missing). */
			rc = cli_repository_conf(&own);
			if (rc != CLI_EXIT_OK) {
				agent_config_free(&own);
				return rc;
			}
			*m = own;
			return CLI_EXIT_OK;
		}
		snprintf(name, sizeof(name), "%s", own.member_name ? own.member_name : "node1");
		agent_config_free(&own);
	} else {
		snprintf(name, sizeof(name), "%s", member);
	}
	memset(&own, 0, sizeof(own));
	own.member_name = name;
	if (!cli_load_member(t, &own, name, m)) {
		fprintf(stderr, "pgwarden: cannot load %s's configuration\n", name);
		return CLI_EXIT_USAGE;
	}
	if (!backup_enabled(m)) {
		fprintf(stderr,
			"pgwarden: backups are off: no [backup] repo_path in %s's "
			"configuration\n",
			name);
		agent_config_free(m);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

/* backup list --json: the backups (newest last, as pgBackRest lists them), the WAL
 * archived and the earliest time one can restore to. */
static void list_json(const struct agent_config *m, json_object *backups, size_t n,
		      json_object *archive)
{
	json_object *doc = json_object_new_object(), *list = json_object_new_array();

	json_object_object_add(doc, "stanza", json_object_new_string(m->backup_stanza));
	json_object_object_add(doc, "repository", json_object_new_string(m->backup_repo_path));
	for (size_t i = 0; i < n; i++) {
		json_object *b = json_object_array_get_idx(backups, i),
			    *e = json_object_new_object();

		json_object_object_add(e, "label",
				       json_object_new_string(cli_jstr(b, "label", NULL) ?: ""));
		json_object_object_add(e, "type",
				       json_object_new_string(cli_jstr(b, "type", NULL) ?: ""));
		json_object_object_add(
		    e, "start", json_object_new_int64(cli_jint(b, "timestamp", "start", NULL)));
		json_object_object_add(
		    e, "stop", json_object_new_int64(cli_jint(b, "timestamp", "stop", NULL)));
		json_object_object_add(e, "start_lsn",
				       json_object_new_string(cli_jstr(b, "lsn", "start") ?: ""));
		json_object_object_add(e, "stop_lsn",
				       json_object_new_string(cli_jstr(b, "lsn", "stop") ?: ""));
		json_object_object_add(e, "size",
				       json_object_new_int64(cli_jint(b, "info", "size", NULL)));
		json_object_object_add(
		    e, "repository_size",
		    json_object_new_int64(cli_jint(b, "info", "repository", "size")));
		json_object_object_add(
		    e, "repository_delta",
		    json_object_new_int64(cli_jint(b, "info", "repository", "delta")));
		json_object_array_add(list, e);
	}
	json_object_object_add(doc, "backups", list);
	if (archive) {
		json_object_object_add(
		    doc, "wal_min", json_object_new_string(cli_jstr(archive, "min", NULL) ?: ""));
		json_object_object_add(
		    doc, "wal_max", json_object_new_string(cli_jstr(archive, "max", NULL) ?: ""));
	}
	json_object_object_add(
	    doc, "restore_from",
	    n ? json_object_new_int64(
		    cli_jint(json_object_array_get_idx(backups, 0), "timestamp", "stop", NULL))
	      : NULL);
	printf("%s\n", json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
							       JSON_C_TO_STRING_SPACED));
	json_object_put(doc);
}

/* backup list: the same as a table. */
static void list_table(const struct agent_config *m, json_object *backups, size_t n,
		       json_object *archive)
{
	char t1[40], t2[40], sz[32], rs[32];

	printf("Stanza %s, repository %s\n", m->backup_stanza, m->backup_repo_path);
	printf("%-33s %-5s %-22s %-22s %-21s %10s %10s\n", "Backup", "Type", "Start", "Stop",
	       "LSN start - stop", "Size", "Repo size");
	for (size_t i = 0; i < n; i++) {
		json_object *b = json_object_array_get_idx(backups, i);
		char lsn[64];

		fmt_time(cli_jint(b, "timestamp", "start", NULL), t1, sizeof(t1));
		fmt_time(cli_jint(b, "timestamp", "stop", NULL), t2, sizeof(t2));
		fmt_size(cli_jint(b, "info", "size", NULL), sz, sizeof(sz));
		fmt_size(cli_jint(b, "info", "repository", "delta"), rs, sizeof(rs));
		snprintf(lsn, sizeof(lsn), "%s - %s", cli_jstr(b, "lsn", "start") ?: "?",
			 cli_jstr(b, "lsn", "stop") ?: "?");
		printf("%-33s %-5s %-22s %-22s %-21s %10s %10s\n",
		       cli_jstr(b, "label", NULL) ?: "?", cli_jstr(b, "type", NULL) ?: "?", t1, t2,
		       lsn, sz, rs);
	}
	if (!n)
		printf("(no backups yet: pgwarden backup --type full)\n");
	if (archive)
		printf("WAL archived: %s .. %s\n", cli_jstr(archive, "min", NULL) ?: "?",
		       cli_jstr(archive, "max", NULL) ?: "?");
	if (n) {
		fmt_time(cli_jint(json_object_array_get_idx(backups, 0), "timestamp", "stop", NULL),
			 t1, sizeof(t1));
		printf("Restorable: from %s to the last archived WAL\n", t1);
	}
}

int cli_backup_list(int argc, char **argv)
{
	struct backup_opts o;
	struct agent_config m;
	json_object *st, *backups, *archive;
	char err[2048];
	int rc;

	memset(&o, 0, sizeof(o));
	if (cli_parse_target(argc, argv, "pgwarden backup list [--json] [-c node.ini | --dir DIR]",
			     &o.t) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_repo_member(&o.t, NULL, &m);
	if (rc != CLI_EXIT_OK)
		return rc;
	st = cli_repo_info(&m, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "pgwarden: %s\n", err);
		agent_config_free(&m);
		return CLI_EXIT_FAILED;
	}
	if (cli_jint(st, "status", "code", NULL) != 0 &&
	    cli_jint(st, "status", "code", NULL) != 2) {
		char problem[1024];

		cli_repo_problem(st, problem, sizeof(problem));
		fprintf(stderr, "pgwarden: repository %s, stanza %s: %s\n", m.backup_repo_path,
			m.backup_stanza, problem);
		json_object_put(st);
		agent_config_free(&m);
		return CLI_EXIT_FAILED;
	}
	if (!json_object_object_get_ex(st, "backup", &backups) ||
	    !json_object_is_type(backups, json_type_array))
		backups = NULL;
	if (json_object_object_get_ex(st, "archive", &archive) &&
	    json_object_is_type(archive, json_type_array) && json_object_array_length(archive))
		archive = json_object_array_get_idx(archive, json_object_array_length(archive) - 1);
	else
		archive = NULL;
	size_t n = backups ? json_object_array_length(backups) : 0;

	if (o.t.json)
		list_json(&m, backups, n, archive);
	else
		list_table(&m, backups, n, archive);
	json_object_put(st);
	agent_config_free(&m);
	return CLI_EXIT_OK;
}

/*
 * pgwarden restore: a new cluster made from a pgBackRest backup, recovered to a point
 * in time. The steps, each checked before the next:
 *   1. the target is parsed and the backup chosen from the repository's description:
 *      a target outside the restorable window is refused before anything is touched;
 *   2. `pgwarden up`'s folder and etcd are made for the new cluster;
 *   3. pgbackrest restore puts the backup into the new node1's data directory;
 *   4. PostgreSQL recovers it there, alone, on a private socket: WAL from the
 *      repository up to the target, then promotion to a new timeline; the roles the
 *      new cluster's configuration names get its passwords; a clean stop;
 *   5. the initialize key of the new cluster names that system, and the agents start:
 *      node1 leads, the others clone from it.
 * The source cluster and the repository are only read.
 */
#include "node/backup.h"
#include "node/pgctl.h"
#include "cli/cli.h"
#include "cli/pitr.h"
#include "cli/repo.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RESTORE_USAGE                                                                        \
	"pgwarden restore (--time 'YYYY-MM-DD HH:MM:SS+TZ' | --lsn L | --xid X | --latest) " \
	"[--backup LABEL] (--to NEWDIR | --in-place --yes) [-c node.ini | --dir DIR] "       \
	"[--no-verify] [--cluster NAME] [--etcd-port P] [--pg-port P] [--api-port P] "       \
	"[--proxy-port P] "                                                                  \
	"[--memory SIZE] "                                                                   \
	"[--timeout S]"

struct restore_ctx {
	struct cli_target src_target;
	struct agent_config src; /* a member of the source cluster: its repository settings */
	struct pitr_target target;
	char label[128];
	int timeout_s;
	char history_reason[512];
};

/*
 * What follows runs as postgres when we are root (in cli_as_postgres: the restore in
 * place, and pgwarden up's step before the agents): it writes only in the cluster's
 * folders, which postgres owns.
 */

/* Runs argv to completion with its output shown. */
static int run_visible(const char *const *argv, const char *const *env, int timeout_s)
{
	struct cmn_proc_opts po = {.argv = argv, .env_extra = env, .inherit_output = true};
	int64_t deadline = cmn_now_ms() + (int64_t)timeout_s * 1000;
	pid_t pid;
	int code = -1;

	fflush(stdout);
	if (cmn_proc_spawn(&po, &pid) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot run %s: %s\n", argv[0], strerror(errno));
		return -1;
	}
	while (cmn_proc_poll(pid, &code) == 0) {
		if (cmn_now_ms() > deadline) {
			fprintf(stderr, "pgwarden: %s runs longer than %d s: stopping it\n",
				argv[0], timeout_s);
			cmn_proc_stop(pid, &code);
			return -1;
		}
		usleep(100000);
	}
	return code;
}

static int write_conf(const char *path, const char *text)
{
	if (cmn_write_file_atomic(path, text, strlen(text), 0600) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The end of a log file, for an error message. */
static void print_tail(const char *path)
{
	char *text = cmn_read_file(path, NULL);
	size_t len = text ? strlen(text) : 0;

	fprintf(stderr, "the end of %s:\n%s\n", path,
		text ? text + (len > 3000 ? len - 3000 : 0) : "(empty)");
	free(text);
}

/* Step 3: pgbackrest restore into the new node1's (empty) data directory. */
static int restore_files(struct restore_ctx *c, const struct agent_config *n)
{
	char store[16][4200], opt[6][4200], env_pass[4200];
	const char *argv[17], *extra[8], *env[] = {env_pass, "LC_ALL=C", NULL};
	static const char *const types[] = {[PITR_LATEST] = "default",
					    [PITR_TIME] = "time",
					    [PITR_LSN] = "lsn",
					    [PITR_XID] = "xid"};
	size_t k = 0;
	int code;

	if (cmn_mkdir_p(n->data_dir, 0700) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot create %s: %s\n", n->data_dir, strerror(errno));
		return -1;
	}
	snprintf(env_pass, sizeof(env_pass), "PGPASSFILE=%s", c->src.pgpass ?: "/dev/null");
	snprintf(opt[0], sizeof(opt[0]), "--pg1-path=%s", n->data_dir);
	snprintf(opt[1], sizeof(opt[1]), "--set=%s", c->label);
	snprintf(opt[2], sizeof(opt[2]), "--type=%s", types[c->target.kind]);
	extra[k++] = opt[0];
	extra[k++] = opt[1];
	extra[k++] = opt[2];
	if (c->target.kind != PITR_LATEST) {
		snprintf(opt[3], sizeof(opt[3]), "--target=%s", c->target.text);
		extra[k++] = opt[3];
		extra[k++] = "--target-action=promote";
	}
	extra[k++] = "--log-level-console=info";
	extra[k] = NULL;
	backup_argv(&c->src, "restore", extra, store, argv, 17);
	printf("restoring backup %s of stanza %s from %s into %s\n", c->label, c->src.backup_stanza,
	       c->src.backup_repo_path, n->data_dir);
	code = run_visible(argv, env, c->timeout_s);
	if (code != 0) {
		fprintf(stderr,
			"pgwarden: pgbackrest restore failed (exit %d): its log is in "
			"%s/pgbackrest/log\n",
			code, c->src.node_dir);
		return -1;
	}
	return 0;
}

/*
 * The restored postgresql.conf is the source member's (its ports, paths, archiving):
 * recovery runs on a file of our own instead, socket only, archiving off (the new
 * cluster archives to its own repository once it runs). pgBackRest's recovery
 * settings are in postgresql.auto.conf; the agent rewrites all three files later.
 */
static int recovery_files(const struct agent_config *n, const char *sock)
{
	char path[4300], text[5000];
	struct stat st;

	snprintf(text, sizeof(text),
		 "# Written by pgwarden restore for the recovery only: the agent rewrites it.\n"
		 "listen_addresses = ''\n"
		 "port = %d\n"
		 "unix_socket_directories = '%s'\n"
		 "archive_mode = off\n"
		 /* no hot standby: its checks of max_connections & co. do not apply then */
		 "hot_standby = off\n"
		 "logging_collector = off\n"
		 "log_min_messages = info\n",
		 n->pg_port, sock);
	snprintf(path, sizeof(path), "%s/postgresql.conf", n->data_dir);
	if (write_conf(path, text) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/pg_hba.conf", n->data_dir);
	/* trust only on a socket in a folder only postgres can enter */
	if (write_conf(path, "local all all trust\n") != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/standby.signal", n->data_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/recovery.signal", n->data_dir);
	if (stat(path, &st) != 0 && write_conf(path, "") != 0)
		return -1;
	return 0;
}

/* The roles the new cluster's agents log in with, with its passwords. */
static int set_roles(PGconn *conn, const struct agent_config *n)
{
	const struct {
		const char *user, *password, *attrs;
	} roles[] = {
	    {n->superuser, n->superuser_password, "SUPERUSER LOGIN"},
	    {n->replication_user, n->replication_password, "LOGIN REPLICATION"},
	};

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		const char *u = roles[i].user;
		char *verifier = PQencryptPasswordConn(conn, roles[i].password, u, "scram-sha-256");
		char *ident = PQescapeIdentifier(conn, u, strlen(u));
		char *name = PQescapeLiteral(conn, u, strlen(u));
		char *pw = verifier ? PQescapeLiteral(conn, verifier, strlen(verifier)) : NULL;
		char sql[4096];
		int ok = 0;

		if (ident && name && pw) {
			snprintf(sql, sizeof(sql),
				 "DO $$BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) "
				 "THEN ALTER ROLE %s WITH %s PASSWORD %s; ELSE CREATE ROLE %s WITH "
				 "%s PASSWORD %s; END IF; END$$",
				 name, ident, roles[i].attrs, pw, ident, roles[i].attrs, pw);
			PGresult *r = PQexec(conn, sql);

			ok = PQresultStatus(r) == PGRES_COMMAND_OK;
			if (!ok)
				fprintf(stderr, "pgwarden: cannot set role %s: %s", u,
					PQerrorMessage(conn));
			PQclear(r);
		}
		PQfreemem(verifier);
		PQfreemem(ident);
		PQfreemem(name);
		PQfreemem(pw);
		if (!ok)
			return -1;
	}
	PGresult *r = PQexec(conn, "CHECKPOINT");
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

	PQclear(r);
	return ok ? 0 : -1;
}

/* Step 4: recovery to the target, alone, then a clean stop. */
static int recover(struct restore_ctx *c, const struct agent_config *n)
{
	char sock[4200], log[4200], bin[4200], conninfo[4600], dd[4300];
	const char *argv[] = {bin, "-D", dd, NULL};
	struct cmn_proc_opts po = {.argv = argv, .log_path = log, .new_session = true};
	struct pgctl pg;
	struct pgctl_controldata cd;
	int64_t deadline = cmn_now_ms() + (int64_t)c->timeout_s * 1000;
	PGconn *conn = NULL;
	pid_t pid;
	int code, rc = -1;

	snprintf(sock, sizeof(sock), "%s/restore-socket", n->node_dir);
	snprintf(log, sizeof(log), "%s/restore.log", n->node_dir);
	snprintf(bin, sizeof(bin), "%s/postgres", n->bin_dir);
	snprintf(dd, sizeof(dd), "%s", n->data_dir);
	if (cmn_mkdir_p(sock, 0700) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot create %s: %s\n", sock, strerror(errno));
		return -1;
	}
	if (recovery_files(n, sock) != 0)
		return -1;
	printf("recovering to %s%s (log: %s)\n",
	       c->target.kind == PITR_LATEST ? "the end of the archived WAL" : "target ",
	       c->target.kind == PITR_LATEST ? "" : c->target.text, log);
	fflush(stdout);
	if (cmn_proc_spawn(&po, &pid) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot run %s: %s\n", bin, strerror(errno));
		return -1;
	}
	pgctl_init(&pg, n);
	snprintf(conninfo, sizeof(conninfo),
		 "host=%s port=%d user=%s dbname=postgres connect_timeout=5", sock, n->pg_port,
		 c->src.superuser);
	/* Promoted when pg_control says "in production" and a session sees no recovery. */
	for (;;) {
		if (cmn_proc_poll(pid, &code) != 0) {
			fprintf(stderr,
				"pgwarden: PostgreSQL stopped during the recovery (exit %d): the "
				"target may be past the archived WAL, or the WAL is incomplete\n",
				code);
			print_tail(log);
			goto out;
		}
		if (cmn_now_ms() > deadline) {
			fprintf(stderr, "pgwarden: the recovery did not end within %d s\n",
				c->timeout_s);
			print_tail(log);
			break;
		}
		if (pgctl_controldata(&pg, &cd) == PGW_OK && cd.state == PGCTL_CD_IN_PRODUCTION) {
			if (!conn)
				conn = PQconnectdb(conninfo);
			if (PQstatus(conn) == CONNECTION_OK) {
				PGresult *r = PQexec(conn, "SELECT pg_is_in_recovery()");
				bool done = PQresultStatus(r) == PGRES_TUPLES_OK &&
					    strcmp(PQgetvalue(r, 0, 0), "f") == 0;

				PQclear(r);
				if (done) {
					rc = set_roles(conn, n);
					break;
				}
			} else {
				PQfinish(conn);
				conn = NULL;
			}
		}
		usleep(200000);
	}
	if (conn)
		PQfinish(conn);
	/* A clean (fast) stop: the agent then finds a primary shut down at a checkpoint. */
	kill(pid, SIGINT);
	for (int i = 0; i < 1200 && cmn_proc_poll(pid, &code) == 0; i++)
		usleep(100000);
	if (cmn_pid_alive(pid)) {
		fprintf(stderr, "pgwarden: PostgreSQL did not stop after the recovery\n");
		kill(pid, SIGQUIT);
		rc = -1;
	}
	if (rc == 0 && (pgctl_controldata(&pg, &cd) != PGW_OK || cd.state != PGCTL_CD_SHUT_DOWN)) {
		fprintf(stderr, "pgwarden: the restored cluster did not shut down cleanly (%s)\n",
			pgctl_cd_state_name(cd.state));
		rc = -1;
	}
	if (rc == 0)
		printf("recovered: system %s, timeline %d, checkpoint at %X/%X\n", cd.sysid,
		       cd.checkpoint_tli, (unsigned)(cd.checkpoint_lsn >> 32),
		       (unsigned)cd.checkpoint_lsn);
out:
	pgctl_close(&pg);
	rmdir(sock);
	return rc;
}

/* Step 5: the new cluster's etcd learns which system it runs, and why. */
static int mark_initialized(struct restore_ctx *c, const char *ini, const struct agent_config *n)
{
	struct cli_target t = {.config_path = ini};
	struct cli_session s;
	struct pgctl pg;
	struct pgctl_controldata cd;
	bool won = false;
	int rc = -1;

	pgctl_init(&pg, n);
	if (pgctl_controldata(&pg, &cd) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot read the restored pg_control\n");
		return -1;
	}
	if (cli_session_open(&t, &s) != CLI_EXIT_OK)
		return -1;
	if (s.cluster.has_initialize) {
		fprintf(stderr, "pgwarden: cluster %s in the new etcd is already initialized\n",
			s.cfg.cluster_name);
	} else if (dcs_take_initialize(&s.dcs, &won) != PGW_OK || !won ||
		   dcs_set_initialize(&s.dcs, cd.sysid) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot write the initialize key in etcd\n");
	} else {
		if (dcs_append_history(&s.dcs, NULL, cd.checkpoint_tli, cd.checkpoint_lsn,
				       c->history_reason, n->member_name) != PGW_OK)
			fprintf(stderr, "pgwarden: warning: could not start the history\n");
		rc = 0;
	}
	cli_session_close(&s);
	return rc;
}

static int before_agents(const char *dir, void *arg)
{
	struct restore_ctx *c = arg;
	struct agent_config n;
	char ini[PATH_MAX + 32], err[1024];
	int rc = -1;

	snprintf(ini, sizeof(ini), "%s/node1/node.ini", dir);
	if (agent_config_load(ini, &n, err, sizeof(err)) != PGW_OK) {
		fprintf(stderr, "pgwarden: %s\n", err);
		return -1;
	}
	if (restore_files(c, &n) == 0 && recover(c, &n) == 0 && mark_initialized(c, ini, &n) == 0)
		rc = 0;
	agent_config_free(&n);
	if (rc == 0)
		printf("starting the restored cluster\n");
	fflush(stdout);
	return rc;
}

/*
 * In place, the new timeline's history file goes to the repository now: the recovery ran
 * with archiving off, and a later restore or a replica needs it.
 */
static int push_history(const struct restore_ctx *c, const struct agent_config *n)
{
	char wal[4300], file[4400], opt[4300];
	const char *extra[] = {opt, file, NULL};
	struct cmn_buf out = {0};
	unsigned int best = 0, tl;
	struct dirent *e;
	DIR *d;
	int code;

	snprintf(wal, sizeof(wal), "%s/pg_wal", n->data_dir);
	d = opendir(wal);
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strlen(e->d_name) == 16 && strcmp(e->d_name + 8, ".history") == 0 &&
		    sscanf(e->d_name, "%8X", &tl) == 1 && tl > best)
			best = tl;
	closedir(d);
	if (!best)
		return 0;
	snprintf(file, sizeof(file), "%s/%08X.history", wal, best);
	snprintf(opt, sizeof(opt), "--pg1-path=%s", n->data_dir);
	code = cli_pgbackrest(&c->src, "archive-push", extra, 120000, &out);
	if (code != 0)
		fprintf(stderr, "pgwarden: cannot archive %s (exit %d): %s\n", file, code,
			out.data ? out.data : "");
	cmn_buf_free(&out);
	return code == 0 ? 0 : -1;
}

/* In place, between etcd's start and the agents': the cluster's old state goes. */
static int before_agents_in_place(const char *dir, void *arg)
{
	struct restore_ctx *c = arg;
	struct cli_target t = {.dir = dir};
	struct cli_session s;
	struct agent_config n = c->src;
	struct pgctl pg;
	struct pgctl_controldata cd;
	int rc = -1;

	pgctl_init(&pg, &n);
	if (pgctl_controldata(&pg, &cd) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot read the restored pg_control\n");
		return -1;
	}
	if (cli_session_open(&t, &s) != CLI_EXIT_OK)
		return -1;
	if (dcs_forget_state(&s.dcs) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot clear the cluster's state in etcd\n");
	} else if (strcmp(s.cluster.sysid, cd.sysid) != 0 &&
		   dcs_set_initialize(&s.dcs, cd.sysid) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot write the initialize key in etcd\n");
	} else {
		if (dcs_append_history(&s.dcs, s.cluster.history, cd.checkpoint_tli,
				       cd.checkpoint_lsn, c->history_reason,
				       n.member_name) != PGW_OK)
			fprintf(stderr, "pgwarden: warning: could not record the restore in the "
					"history\n");
		rc = 0;
	}
	cli_session_close(&s);
	return rc;
}

/*
 * The restore in place of the cluster in dir (pgwarden up's layout), node1 the member
 * restored: the backup is recovered beside node1's data while the cluster still runs
 * (nothing is touched if that fails); then the cluster stops, node1's data is set aside
 * (<data>.pre-restore), the restored data takes its place, the other members' data goes
 * (they clone again), etcd forgets the old leader and positions, and the cluster starts.
 */
static int restore_in_place(struct restore_ctx *c, const char *dir, const char *timeout_arg)
{
	struct agent_config side = c->src;
	char side_dir[4300], old_dir[4300], ini[PATH_MAX + 32];
	const char *down_argv[] = {"down", "--dir", dir, NULL};
	const char *up_argv[] = {"up", "--dir", dir, "--timeout", timeout_arg, NULL};
	struct stat sb;
	int rc;

	snprintf(side_dir, sizeof(side_dir), "%s.restore", c->src.data_dir);
	snprintf(old_dir, sizeof(old_dir), "%s.pre-restore", c->src.data_dir);
	side.data_dir = side_dir;
	if (stat(side_dir, &sb) == 0 && cmn_rm_rf(side_dir) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot remove %s (an earlier attempt)\n", side_dir);
		return CLI_EXIT_FAILED;
	}
	if (restore_files(c, &side) != 0 || recover(c, &side) != 0 || push_history(c, &side) != 0) {
		if (cmn_rm_rf(side_dir) != PGW_OK)
			fprintf(stderr, "pgwarden: could not remove %s\n", side_dir);
		fprintf(stderr, "pgwarden: the cluster in %s was not touched\n", dir);
		return CLI_EXIT_FAILED;
	}
	printf("stopping cluster %s to put the restored data in place\n", c->src.cluster_name);
	fflush(stdout);
	rc = cli_down(3, (char **)down_argv);
	if (rc != CLI_EXIT_OK) {
		fprintf(stderr,
			"pgwarden: could not stop the cluster; the restored data waits in "
			"%s\n",
			side_dir);
		return CLI_EXIT_FAILED;
	}
	if ((stat(old_dir, &sb) == 0 && cmn_rm_rf(old_dir) != PGW_OK) ||
	    rename(c->src.data_dir, old_dir) != 0 || rename(side_dir, c->src.data_dir) != 0) {
		fprintf(stderr, "pgwarden: cannot swap %s and %s: %s\n", c->src.data_dir, side_dir,
			strerror(errno));
		return CLI_EXIT_FAILED;
	}
	printf("node1's data before the restore: %s (remove it when satisfied)\n", old_dir);
	/* The other members clone again from the restored one. */
	for (int i = 2; i < 100; i++) {
		struct agent_config m;
		char member[16];

		snprintf(member, sizeof(member), "node%d", i);
		snprintf(ini, sizeof(ini), "%s/%s/node.ini", dir, member);
		if (stat(ini, &sb) != 0)
			break;
		if (!cli_load_member(&c->src_target, &c->src, member, &m))
			return CLI_EXIT_FAILED;
		if (cmn_rm_rf(m.data_dir) != PGW_OK)
			fprintf(stderr, "pgwarden: cannot remove %s: %s\n", m.data_dir,
				strerror(errno));
		agent_config_free(&m);
	}
	printf("starting the restored cluster\n");
	fflush(stdout);
	return cli_up_run(5, (char **)up_argv, before_agents_in_place, c, NULL);
}

/* Options restore passes on to `pgwarden up` for the new cluster. */
static bool is_up_option(int c)
{
	return c == 'n' || c == 'e' || c == 'p' || c == 'a' || c == 'x' || c == 'm';
}

struct in_place_job {
	struct restore_ctx *c;
	const char *dir;
	const char *timeout_arg;
};

static int in_place_run(void *arg)
{
	struct in_place_job *job = arg;

	return restore_in_place(job->c, job->dir, job->timeout_arg);
}

/* Empties a folder: 0 when nothing is left in it (or the folder is gone too). */
static int remove_content(void *arg)
{
	const char *dir = arg;
	struct dirent *e;
	int left = 0;
	DIR *d;

	if (cmn_rm_rf(dir) == PGW_OK)
		return 0;
	d = opendir(dir); /* the folder itself stays when its parent is not ours */
	if (!d)
		return errno == ENOENT ? 0 : 1;
	while ((e = readdir(d)) != NULL)
		left += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return left ? 1 : 0;
}

/* What pgwarden restore was asked for, beyond the context. */
struct restore_args {
	const char *to, *label, *target_text;
	const char *up_argv[24]; /* pgwarden up's options for a new cluster */
	int up_argc;
	bool in_place, yes, verify;
};

/* The command line into c and a; CLI_EXIT_USAGE (said) when it does not do. */
static int parse_restore(int argc, char **argv, struct restore_ctx *c, struct restore_args *a)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"dir", required_argument, NULL, 'd'},
	    {"time", required_argument, NULL, 'T'},
	    {"lsn", required_argument, NULL, 'L'},
	    {"xid", required_argument, NULL, 'X'},
	    {"latest", no_argument, NULL, 'A'},
	    {"backup", required_argument, NULL, 'b'},
	    {"to", required_argument, NULL, 'o'},
	    {"cluster", required_argument, NULL, 'n'},
	    {"etcd-port", required_argument, NULL, 'e'},
	    {"pg-port", required_argument, NULL, 'p'},
	    {"api-port", required_argument, NULL, 'a'},
	    {"proxy-port", required_argument, NULL, 'x'},
	    {"memory", required_argument, NULL, 'm'},
	    {"timeout", required_argument, NULL, 't'},
	    {"in-place", no_argument, NULL, 'I'},
	    {"yes", no_argument, NULL, 'y'},
	    {"no-verify", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const up_names[128] = {
	    ['n'] = "--cluster",  ['e'] = "--etcd-port",  ['p'] = "--pg-port",
	    ['a'] = "--api-port", ['x'] = "--proxy-port", ['m'] = "--memory"};
	enum pitr_kind kind = PITR_LATEST;
	char err[2048];
	int kinds = 0, opt;

	c->timeout_s = 3600;
	a->verify = true;
	a->up_argv[a->up_argc++] = "up";
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:d:", opts, NULL)) != -1) {
		if (is_up_option(opt)) {
			/* Room for this option, the 4 restore_into_new adds and the NULL. */
			if (a->up_argc + 2 + 5 >
			    (int)(sizeof(a->up_argv) / sizeof(a->up_argv[0]))) {
				fprintf(stderr, "pgwarden: too many options\nusage: %s\n",
					RESTORE_USAGE);
				return CLI_EXIT_USAGE;
			}
			a->up_argv[a->up_argc++] = up_names[opt];
			a->up_argv[a->up_argc++] = optarg;
			continue;
		}
		switch (opt) {
		case 'c':
			c->src_target.config_path = optarg;
			break;
		case 'd':
			c->src_target.dir = optarg;
			break;
		case 'T':
		case 'L':
		case 'X':
		case 'A':
			kinds++;
			kind = opt == 'T'   ? PITR_TIME
			       : opt == 'L' ? PITR_LSN
			       : opt == 'X' ? PITR_XID
					    : PITR_LATEST;
			a->target_text = optarg;
			break;
		case 'b':
			a->label = optarg;
			break;
		case 'o':
			a->to = optarg;
			break;
		case 'I':
			a->in_place = true;
			break;
		case 'y':
			a->yes = true;
			break;
		case 'V':
			a->verify = false;
			break;
		case 't':
			c->timeout_s = atoi(optarg);
			if (c->timeout_s <= 0) {
				fprintf(stderr, "pgwarden: bad --timeout '%s'\n", optarg);
				return CLI_EXIT_USAGE;
			}
			break;
		default:
			fprintf(stderr, "usage: %s\n", RESTORE_USAGE);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind < argc || kinds != 1 || !a->to == !a->in_place ||
	    (a->in_place && a->up_argc > 1)) {
		if (optind < argc)
			fprintf(stderr, "pgwarden: unexpected '%s'\n", argv[optind]);
		else if (kinds != 1)
			fprintf(stderr, "pgwarden: give exactly one of --time, --lsn, --xid, "
					"--latest\n");
		else if (a->in_place && a->to)
			fprintf(stderr, "pgwarden: --to and --in-place exclude each other\n");
		else if (a->in_place)
			fprintf(stderr, "pgwarden: --in-place keeps the cluster's name and ports: "
					"no --cluster or ports\n");
		else
			fprintf(stderr, "pgwarden: --to NEWDIR (a new cluster, the source left "
					"untouched) or --in-place --yes (the cluster itself)\n");
		fprintf(stderr, "usage: %s\n", RESTORE_USAGE);
		return CLI_EXIT_USAGE;
	}
	if (pitr_parse(kind, a->target_text, &c->target, err, sizeof(err)) != 0) {
		fprintf(stderr, "pgwarden: %s\n", err);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

/* The destination can take the restore: a folder made by pgwarden up in place, else a
 * new folder that holds no cluster and is not the source's. */
static int check_destination(const struct restore_ctx *c, const struct restore_args *a)
{
	char path[PATH_MAX + 32], to_abs[PATH_MAX], src_abs[PATH_MAX];
	struct stat sb;

	if (a->in_place) {
		if (c->src_target.dir)
			return CLI_EXIT_OK;
		fprintf(stderr, "pgwarden: --in-place works on a folder made by pgwarden up "
				"(--dir DIR)\n");
		return CLI_EXIT_USAGE;
	}
	/* The new folder must not hold a cluster: restore never overwrites one. */
	to_abs[0] = '\0';
	if (realpath(a->to, to_abs) &&
	    ((snprintf(path, sizeof(path), "%s/node1/node.ini", to_abs), stat(path, &sb) == 0) ||
	     (snprintf(path, sizeof(path), "%s/ports", to_abs), stat(path, &sb) == 0))) {
		fprintf(stderr,
			"pgwarden: %s already holds a cluster: restore makes a new one, "
			"give a new folder\n",
			to_abs);
		return CLI_EXIT_USAGE;
	}
	if (realpath(c->src.node_dir, src_abs) && strncmp(src_abs, to_abs, strlen(to_abs)) == 0 &&
	    to_abs[0]) {
		fprintf(stderr, "pgwarden: %s is the source cluster's folder\n", to_abs);
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

/* The backup to restore (label, or the one pitr_choose finds for the target). */
static int choose_backup(struct restore_ctx *c, const char *label)
{
	char err[2048];
	json_object *st = cli_repo_info(&c->src, err, sizeof(err));
	int rc;

	if (!st) {
		fprintf(stderr, "pgwarden: %s\n", err);
		return CLI_EXIT_FAILED;
	}
	/* 2: no valid backup yet (pitr_choose says it) */
	if (cli_jint(st, "status", "code", NULL) != 0 &&
	    cli_jint(st, "status", "code", NULL) != 2) {
		cli_repo_problem(st, err, sizeof(err));
		fprintf(stderr, "pgwarden: repository %s, stanza %s: %s\n", c->src.backup_repo_path,
			c->src.backup_stanza, err);
		json_object_put(st);
		return CLI_EXIT_FAILED;
	}
	rc = pitr_choose(st, &c->target, label, (double)time(NULL), c->label, sizeof(c->label), err,
			 sizeof(err));
	json_object_put(st);
	if (rc != 0) {
		fprintf(stderr, "pgwarden: %s; nothing was changed\n", err);
		return CLI_EXIT_FAILED;
	}
	return CLI_EXIT_OK;
}

/* pgbackrest verify: the chosen backup must be valid; damaged WAL is a warning. */
static int verify_backup(const struct restore_ctx *c)
{
	struct pitr_verify *v = calloc(1, sizeof(*v));
	char err[2048];
	int rc = CLI_EXIT_OK;

	printf("verifying the repository (pgbackrest verify; --no-verify skips it)\n");
	fflush(stdout);
	if (!v || cli_repo_verify(&c->src, v, err, sizeof(err)) != 0) {
		fprintf(stderr, "pgwarden: %s; nothing was changed\n", v ? err : "no memory");
		free(v);
		return CLI_EXIT_FAILED;
	}
	for (size_t i = 0; i < v->n_backup && rc == CLI_EXIT_OK; i++) {
		if (strcmp(v->backup[i].label, c->label) != 0 || v->backup[i].valid)
			continue;
		fprintf(stderr,
			"pgwarden: backup %s is damaged (pgbackrest verify: %s): choose "
			"another "
			"one with --backup LABEL (pgwarden backup list); nothing was changed\n",
			c->label, v->backup[i].problems[0] ? v->backup[i].problems : "invalid");
		rc = CLI_EXIT_FAILED;
	}
	if (rc == CLI_EXIT_OK && !v->archive_ok)
		fprintf(stderr,
			"pgwarden: warning: pgbackrest verify finds damaged WAL in the archive "
			"(%s): the recovery stops there if it needs it\n",
			v->archive_problems);
	free(v);
	return rc;
}

/* A new cluster in a->to (pgwarden up, the restore before its agents start); what it
 * made goes again when the restore failed. */
static int restore_into_new(struct restore_ctx *c, struct restore_args *a, const char *timeout_arg)
{
	const char *to = a->to;
	bool existed, hook_failed;
	struct stat sb;
	int rc;

	a->up_argv[a->up_argc++] = "--dir";
	a->up_argv[a->up_argc++] = to;
	a->up_argv[a->up_argc++] = "--timeout";
	a->up_argv[a->up_argc++] = timeout_arg;
	a->up_argv[a->up_argc] = NULL;
	existed = stat(to, &sb) == 0;
	rc = cli_up_run(a->up_argc, (char **)a->up_argv, before_agents, c, &hook_failed);
	if (rc != CLI_EXIT_OK && hook_failed) {
		/* Nothing of use in the new folder: stop its etcd, and remove what we made
		 * (its content as postgres, who owns it; then the folder itself). */
		const char *down_argv[] = {"down", "--dir", to, NULL};

		if (cli_down(3, (char **)down_argv) == CLI_EXIT_OK && !existed &&
		    cli_as_postgres(remove_content, (void *)to) == 0 &&
		    (rmdir(to) == 0 || errno == ENOENT))
			fprintf(stderr, "pgwarden: removed %s again; the source is unchanged\n",
				to);
		else
			fprintf(stderr,
				"pgwarden: %s holds the failed attempt: pgwarden down --dir "
				"%s, then remove it\n",
				to, to);
	}
	if (rc == CLI_EXIT_OK)
		printf("restored into %s; its backups go to %s/backup: take a first one with "
		       "pgwarden backup --dir %s --type full\n",
		       to, to, to);
	return rc;
}

int cli_restore(int argc, char **argv)
{
	struct restore_ctx c;
	struct restore_args a;
	char timeout_arg[16];
	int rc;

	memset(&c, 0, sizeof(c));
	memset(&a, 0, sizeof(a));
	rc = parse_restore(argc, argv, &c, &a);
	if (rc != CLI_EXIT_OK)
		return rc;
	/* The source: any member's configuration names the repository. */
	rc = cli_repo_member(&c.src_target, NULL, &c.src);
	if (rc != CLI_EXIT_OK)
		return rc;
	rc = check_destination(&c, &a);
	if (rc == CLI_EXIT_OK)
		rc = choose_backup(&c, a.label);
	if (rc == CLI_EXIT_OK && a.verify)
		rc = verify_backup(&c);
	if (rc != CLI_EXIT_OK)
		goto out;
	snprintf(c.history_reason, sizeof(c.history_reason),
		 "restored%s from backup %s of cluster %s to %s%s", a.in_place ? " in place" : "",
		 c.label, c.src.cluster_name,
		 c.target.kind == PITR_LATEST ? "the end of the archive" : "target ",
		 c.target.kind == PITR_LATEST ? "" : c.target.text);
	snprintf(timeout_arg, sizeof(timeout_arg), "%d", c.timeout_s < 600 ? 600 : c.timeout_s);
	if (a.in_place && !a.yes) {
		fprintf(stderr,
			"pgwarden: restoring backup %s to %s in place replaces the data of every "
			"member of cluster %s in %s (node1's is kept aside, the others clone "
			"again) and stops the cluster meanwhile: add --yes to go on; nothing "
			"was changed\n",
			c.label,
			c.target.kind == PITR_LATEST ? "the end of the archive" : c.target.text,
			c.src.cluster_name, c.src_target.dir);
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	printf("restore of cluster %s%s: backup %s, target %s\n", c.src.cluster_name,
	       a.in_place ? " in place" : "", c.label,
	       c.target.kind == PITR_LATEST ? "latest" : c.target.text);
	if (a.in_place) {
		struct in_place_job job = {&c, c.src_target.dir, timeout_arg};

		rc = cli_as_postgres(in_place_run, &job);
		if (rc == CLI_EXIT_OK)
			printf("cluster %s restored in place in %s\n", c.src.cluster_name,
			       c.src_target.dir);
		goto out;
	}
	rc = restore_into_new(&c, &a, timeout_arg);
out:
	agent_config_free(&c.src);
	return rc;
}

/*
 * Unit tests of the files the agent writes (src/node/pgconf.c): tuned
 * parameters, postgresql.conf, pg_hba.conf, the passfile and standby.signal.
 */
#include "node/backup.h"
#include "node/pgconf.h"
#include "common/util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define MB (1024LL * 1024)
#define GB (1024LL * MB)

#define SU_PW	"su:pa\\ss-Secr3t"
#define REPL_PW "repl-Secr3t"

struct fx {
	char root[64];
	char data_dir[128];
	char socket_dir[128];
	char pgpass[128];
	char member[64];
	char superuser[32];
	char su_pw[64];
	char repl_user[32];
	char repl_pw[64];
	struct agent_config cfg;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/pgw-test-pgconf-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->data_dir, sizeof(f->data_dir), "%s/data", f->root);
	assert_int_equal(mkdir(f->data_dir, 0700), 0);
	snprintf(f->socket_dir, sizeof(f->socket_dir), "%s/run", f->root);
	snprintf(f->pgpass, sizeof(f->pgpass), "%s/pgpass", f->root);
	snprintf(f->member, sizeof(f->member), "node-1");
	snprintf(f->superuser, sizeof(f->superuser), "postgres");
	snprintf(f->su_pw, sizeof(f->su_pw), "%s", SU_PW);
	snprintf(f->repl_user, sizeof(f->repl_user), "replicator");
	snprintf(f->repl_pw, sizeof(f->repl_pw), "%s", REPL_PW);

	f->cfg.member_name = f->member;
	f->cfg.data_dir = f->data_dir;
	f->cfg.socket_dir = f->socket_dir;
	f->cfg.pgpass = f->pgpass;
	f->cfg.superuser = f->superuser;
	f->cfg.superuser_password = f->su_pw;
	f->cfg.replication_user = f->repl_user;
	f->cfg.replication_password = f->repl_pw;
	f->cfg.memory = 16 * GB;
	snprintf(f->cfg.pg_host, sizeof(f->cfg.pg_host), "10.0.0.1");
	f->cfg.pg_port = 5433;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	cmn_kvlist_free(&f->cfg.parameters);
	assert_int_equal(cmn_rm_rf(f->root), 0);
	free(f);
	return 0;
}

static char *read_data_file(struct fx *f, const char *name)
{
	char path[256];
	char *text;

	snprintf(path, sizeof(path), "%s/%s", f->data_dir, name);
	text = cmn_read_file(path, NULL);
	if (!text)
		fail_msg("cannot read %s", path);
	return text;
}

static int file_mode(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (int)(st.st_mode & 07777);
}

static void assert_has_line(const char *text, const char *line)
{
	size_t len = strlen(line);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, line, len) == 0 && (p[len] == '\n' || p[len] == '\0'))
			return;
	fail_msg("no line \"%s\" in:\n%s", line, text);
}

/* ---- tuned parameters --------------------------------------------------------- */

static const char *param(const struct cmn_kvlist *l, const char *key)
{
	const char *v = cmn_kvlist_get(l, key);

	if (!v)
		fail_msg("no parameter %s", key);
	return v;
}

static void test_parameters_16gb(void **state)
{
	struct fx *f = *state;
	struct cmn_kvlist p;

	assert_int_equal(pgconf_parameters(&f->cfg, &p), PGW_OK);
	assert_string_equal(param(&p, "shared_buffers"), "4GB");	/* 25% */
	assert_string_equal(param(&p, "effective_cache_size"), "12GB"); /* 75% */
	assert_string_equal(param(&p, "maintenance_work_mem"), "1GB");	/* memory / 16 */
	assert_string_equal(param(&p, "max_connections"), "500");
	assert_string_equal(param(&p, "work_mem"), "10MB"); /* 16GB / (500 x 3) */
	assert_string_equal(param(&p, "wal_level"), "replica");
	assert_string_equal(param(&p, "hot_standby"), "on");
	assert_string_equal(param(&p, "wal_log_hints"), "on");
	assert_string_equal(param(&p, "max_wal_senders"), "10");
	assert_string_equal(param(&p, "max_replication_slots"), "10");
	assert_string_equal(param(&p, "wal_keep_size"), "1GB");
	assert_string_equal(param(&p, "password_encryption"), "scram-sha-256");
	for (size_t i = 0; i < p.n; i++)
		assert_string_equal(p.items[i].origin, "pgwarden");
	cmn_kvlist_free(&p);
}

static void test_parameters_scaling(void **state)
{
	struct fx *f = *state;
	struct cmn_kvlist p;

	/* maintenance_work_mem is capped at 2GB */
	f->cfg.memory = 64 * GB;
	assert_int_equal(pgconf_parameters(&f->cfg, &p), PGW_OK);
	assert_string_equal(param(&p, "shared_buffers"), "16GB");
	assert_string_equal(param(&p, "effective_cache_size"), "48GB");
	assert_string_equal(param(&p, "maintenance_work_mem"), "2GB");
	assert_string_equal(param(&p, "max_connections"), "500");
	assert_string_equal(param(&p, "wal_keep_size"), "4GB");
	cmn_kvlist_free(&p);

	/* a small node: floors */
	f->cfg.memory = 1 * GB;
	assert_int_equal(pgconf_parameters(&f->cfg, &p), PGW_OK);
	assert_string_equal(param(&p, "shared_buffers"), "256MB");
	assert_string_equal(param(&p, "effective_cache_size"), "768MB");
	assert_string_equal(param(&p, "maintenance_work_mem"), "64MB");
	assert_string_equal(param(&p, "max_connections"), "100");
	assert_string_equal(param(&p, "work_mem"), "4MB");
	assert_string_equal(param(&p, "wal_keep_size"), "128MB");
	cmn_kvlist_free(&p);

	/* in between: 4GB / 32MB = 128 connections */
	f->cfg.memory = 4 * GB;
	assert_int_equal(pgconf_parameters(&f->cfg, &p), PGW_OK);
	assert_string_equal(param(&p, "shared_buffers"), "1GB");
	assert_string_equal(param(&p, "max_connections"), "128");
	assert_string_equal(param(&p, "maintenance_work_mem"), "256MB");
	cmn_kvlist_free(&p);
}

static void test_parameters_override(void **state)
{
	struct fx *f = *state;
	struct cmn_kvlist p;

	assert_int_equal(
	    cmn_kvlist_set(&f->cfg.parameters, "shared_buffers", "2GB", "/etc/pgw.ini:12"), PGW_OK);
	assert_int_equal(
	    cmn_kvlist_set(&f->cfg.parameters, "log_min_duration_statement", "250ms",
			   "environment PGWARDEN_PARAMETERS_LOG_MIN_DURATION_STATEMENT"),
	    PGW_OK);
	assert_int_equal(pgconf_parameters(&f->cfg, &p), PGW_OK);
	assert_string_equal(param(&p, "shared_buffers"), "2GB");
	assert_string_equal(param(&p, "log_min_duration_statement"), "250ms");
	assert_string_equal(param(&p, "effective_cache_size"), "12GB");
	for (size_t i = 0; i < p.n; i++)
		if (strcmp(p.items[i].key, "shared_buffers") == 0)
			assert_string_equal(p.items[i].origin, "/etc/pgw.ini:12");
	cmn_kvlist_free(&p);
}

/* ---- managed parameters ---------------------------------------------------------- */

static void test_managed_reason(void **state)
{
	static const char *const managed[] = {
	    "port",
	    "listen_addresses",
	    "primary_conninfo",
	    "primary_slot_name",
	    "unix_socket_directories",
	    "hba_file",
	    "data_directory",
	    "config_file",
	    "cluster_name",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++) {
		const char *why = pgconf_managed_reason(managed[i]);

		assert_non_null(why);
		assert_true(why[0] != '\0');
	}
	assert_string_equal(pgconf_managed_reason("port"), "set [postgresql] listen");
	assert_string_equal(pgconf_managed_reason("listen_addresses"), "set [postgresql] listen");
	assert_null(pgconf_managed_reason("shared_buffers"));
	assert_null(pgconf_managed_reason("work_mem"));
	assert_null(pgconf_managed_reason("PORT_x"));
}

static void test_check_parameters(void **state)
{
	struct fx *f = *state;
	char err[512];

	assert_int_equal(pgconf_check_parameters(&f->cfg, err, sizeof(err)), PGW_OK);
	assert_int_equal(cmn_kvlist_set(&f->cfg.parameters, "work_mem", "64MB", "/etc/pgw.ini:20"),
			 PGW_OK);
	assert_int_equal(pgconf_check_parameters(&f->cfg, err, sizeof(err)), PGW_OK);

	assert_int_equal(cmn_kvlist_set(&f->cfg.parameters, "port", "6000", "/etc/pgw.ini:21"),
			 PGW_OK);
	assert_int_equal(pgconf_check_parameters(&f->cfg, err, sizeof(err)), PGW_EINVAL);
	assert_string_equal(err, "/etc/pgw.ini:21: 'port' in [parameters] is managed by pgwarden "
				 "(set [postgresql] listen)");
	cmn_kvlist_free(&f->cfg.parameters);

	assert_int_equal(cmn_kvlist_set(&f->cfg.parameters, "primary_conninfo", "host=x",
					"environment PGWARDEN_PARAMETERS_PRIMARY_CONNINFO"),
			 PGW_OK);
	assert_int_equal(pgconf_check_parameters(&f->cfg, err, sizeof(err)), PGW_EINVAL);
	assert_string_equal(err, "environment PGWARDEN_PARAMETERS_PRIMARY_CONNINFO: "
				 "'primary_conninfo' in [parameters] is managed by pgwarden "
				 "(pgwarden points replicas at the leader)");
	cmn_kvlist_free(&f->cfg.parameters);

	/* a value that would inject a second line */
	assert_int_equal(
	    cmn_kvlist_set(&f->cfg.parameters, "work_mem", "4MB\nport = 1", "/etc/pgw.ini:22"),
	    PGW_OK);
	assert_int_equal(pgconf_check_parameters(&f->cfg, err, sizeof(err)), PGW_EINVAL);
	assert_string_equal(err, "/etc/pgw.ini:22: bad value for 'work_mem' in [parameters]");
}

/* ---- postgresql.conf ------------------------------------------------------------ */

static void test_write_conf_replica(void **state)
{
	struct fx *f = *state;
	struct pgconf_upstream up = {"node2.example", 5432};
	char *conf, *autoconf, line[600], path[256];

	assert_int_equal(cmn_kvlist_set(&f->cfg.parameters, "work_mem", "64MB", "/etc/pgw.ini:20"),
			 PGW_OK);
	assert_int_equal(pgconf_write_conf(&f->cfg, &up), PGW_OK);
	conf = read_data_file(f, "postgresql.conf");
	assert_has_line(conf, "listen_addresses = '10.0.0.1'");
	assert_has_line(conf, "port = 5433");
	snprintf(line, sizeof(line), "unix_socket_directories = '%s'", f->socket_dir);
	assert_has_line(conf, line);
	assert_has_line(conf, "cluster_name = 'node-1'");
	assert_has_line(conf, "shared_buffers = '4GB'");
	assert_has_line(conf, "wal_level = 'replica'");
	assert_has_line(conf, "hot_standby = 'on'");
	assert_has_line(conf, "work_mem = '64MB'");
	snprintf(line, sizeof(line),
		 "primary_conninfo = 'host=''node2.example'' port=5432 user=''replicator'' "
		 "passfile=''%s'' application_name=''node-1'' connect_timeout=2 keepalives_idle=5 "
		 "keepalives_interval=2 keepalives_count=3 sslmode=prefer'",
		 f->pgpass);
	assert_has_line(conf, line);
	assert_has_line(conf, "primary_slot_name = 'node_1'");
	assert_has_line(conf, "recovery_target_timeline = 'latest'");
	/* no password, neither literally nor as a conninfo keyword */
	assert_null(strstr(conf, SU_PW));
	assert_null(strstr(conf, REPL_PW));
	assert_null(strstr(conf, "password="));
	free(conf);

	snprintf(path, sizeof(path), "%s/postgresql.conf", f->data_dir);
	assert_int_equal(file_mode(path), 0600);
	/* leftovers of ALTER SYSTEM / pg_basebackup -R are neutralised */
	autoconf = read_data_file(f, "postgresql.auto.conf");
	assert_null(strstr(autoconf, "primary_conninfo"));
	assert_non_null(strstr(autoconf, "pgwarden"));
	free(autoconf);
}

static void test_write_conf_primary(void **state)
{
	struct fx *f = *state;
	struct pgconf_upstream none = {NULL, 0};
	char *conf;

	/* an old replica configuration is replaced */
	{
		struct pgconf_upstream up = {"node2.example", 5432};

		assert_int_equal(pgconf_write_conf(&f->cfg, &up), PGW_OK);
	}
	assert_int_equal(pgconf_write_conf(&f->cfg, NULL), PGW_OK);
	conf = read_data_file(f, "postgresql.conf");
	assert_has_line(conf, "primary_conninfo = ''");
	assert_has_line(conf, "primary_slot_name = ''");
	assert_has_line(conf, "port = 5433");
	assert_null(strstr(conf, "node2.example"));
	assert_null(strstr(conf, SU_PW));
	free(conf);

	/* an upstream without a host is no upstream */
	assert_int_equal(pgconf_write_conf(&f->cfg, &none), PGW_OK);
	conf = read_data_file(f, "postgresql.conf");
	assert_has_line(conf, "primary_conninfo = ''");
	free(conf);
}

static void test_primary_conninfo_quoting(void **state)
{
	struct fx *f = *state;
	struct pgconf_upstream up = {"db'2", 6432};
	char ci[1024];

	snprintf(f->pgpass, sizeof(f->pgpass), "/srv/a b\\c/pgpass");
	pgconf_primary_conninfo(&f->cfg, &up, ci, sizeof(ci));
	assert_string_equal(ci, "host='db\\'2' port=6432 user='replicator' "
				"passfile='/srv/a b\\\\c/pgpass' application_name='node-1' "
				"connect_timeout=2 keepalives_idle=5 keepalives_interval=2 "
				"keepalives_count=3 sslmode=prefer");
	assert_null(strstr(ci, "password"));
	/* [postgresql] connect_sslmode / connect_sslrootcert: checked TLS to the leader */
	f->cfg.connect_sslmode = "verify-full";
	f->cfg.connect_sslrootcert = "/etc/pg/ca.crt";
	pgconf_primary_conninfo(&f->cfg, &up, ci, sizeof(ci));
	assert_non_null(strstr(ci, " sslmode=verify-full sslrootcert='/etc/pg/ca.crt'"));
	f->cfg.connect_sslmode = NULL;
	f->cfg.connect_sslrootcert = NULL;
}

/*
 * BUG: src/node/pgconf.c, conf_quote() doubles single quotes but not backslashes.
 * PostgreSQL's postgresql.conf lexer treats '\' in a quoted value as an escape
 * (ALTER SYSTEM writes '\\'), so a [parameters] value with a backslash changes
 * meaning, and a primary_conninfo that conninfo_quote() escaped (a ' or \ in the
 * host, member name or passfile path) ends the string early: a syntax error.
 * Input: [parameters] log_line_prefix = "%m \ %p" (one backslash).
 * Expected line: log_line_prefix = '%m \\ %p'. Actual: log_line_prefix = '%m \ %p',
 * which PostgreSQL reads as "%m  %p".
 */
static void test_write_conf_backslash(void **state)
{
	struct fx *f = *state;
	char *conf;

	assert_int_equal(
	    cmn_kvlist_set(&f->cfg.parameters, "log_line_prefix", "%m \\ %p", "/etc/pgw.ini:30"),
	    PGW_OK);
	assert_int_equal(pgconf_write_conf(&f->cfg, NULL), PGW_OK);
	conf = read_data_file(f, "postgresql.conf");
	assert_has_line(conf, "log_line_prefix = '%m \\\\ %p'");
	free(conf);
}

static void test_write_conf_quotes(void **state)
{
	struct fx *f = *state;
	char *conf;

	assert_int_equal(
	    cmn_kvlist_set(&f->cfg.parameters, "log_line_prefix", "it's %m ", "/etc/pgw.ini:30"),
	    PGW_OK);
	assert_int_equal(pgconf_write_conf(&f->cfg, NULL), PGW_OK);
	conf = read_data_file(f, "postgresql.conf");
	assert_has_line(conf, "log_line_prefix = 'it''s %m '");
	free(conf);
}

/* ---- passfile --------------------------------------------------------------------- */

static void test_write_pgpass(void **state)
{
	struct fx *f = *state;
	char *text;

	assert_int_equal(pgconf_write_pgpass(&f->cfg), PGW_OK);
	text = cmn_read_file(f->pgpass, NULL);
	assert_non_null(text);
	assert_string_equal(text, "*:*:*:postgres:su\\:pa\\\\ss-Secr3t\n"
				  "*:*:*:replicator:repl-Secr3t\n");
	free(text);
	assert_int_equal(file_mode(f->pgpass), 0600);

	/* rewritten, still 0600, when it was left wider */
	assert_int_equal(chmod(f->pgpass, 0644), 0);
	snprintf(f->repl_user, sizeof(f->repl_user), "rep:l");
	assert_int_equal(pgconf_write_pgpass(&f->cfg), PGW_OK);
	assert_int_equal(file_mode(f->pgpass), 0600);
	text = cmn_read_file(f->pgpass, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "\n*:*:*:rep\\:l:repl-Secr3t\n"));
	free(text);
}

/* ---- pg_hba.conf -------------------------------------------------------------------- */

static void test_write_hba(void **state)
{
	struct fx *f = *state;
	char extra[] = "hostssl all all 10.0.0.0/8 scram-sha-256;host app app 192.168.1.0/24 md5";
	char *hba;
	const char *a, *b, *dflt;

	/* defaults only */
	assert_int_equal(pgconf_write_hba(&f->cfg), PGW_OK);
	hba = read_data_file(f, "pg_hba.conf");
	assert_has_line(hba, "local   all          all            scram-sha-256");
	assert_has_line(hba, "host    replication  replicator    all      scram-sha-256");
	assert_has_line(hba, "host    all          all   all      scram-sha-256");
	free(hba);

	f->cfg.pg_hba_extra = extra;
	assert_int_equal(pgconf_write_hba(&f->cfg), PGW_OK);
	hba = read_data_file(f, "pg_hba.conf");
	assert_has_line(hba, "hostssl all all 10.0.0.0/8 scram-sha-256");
	assert_has_line(hba, "host app app 192.168.1.0/24 md5");
	a = strstr(hba, "hostssl all all 10.0.0.0/8");
	b = strstr(hba, "host app app 192.168.1.0/24");
	dflt = strstr(hba, "local   all");
	assert_non_null(dflt);
	/* first match wins: the operator's lines come first, in order */
	assert_true(a < b);
	assert_true(b < dflt);
	assert_null(strchr(hba, ';'));
	free(hba);
	f->cfg.pg_hba_extra = NULL;
}

/* ---- standby.signal ----------------------------------------------------------------- */

static void test_standby_signal(void **state)
{
	struct fx *f = *state;
	char path[256];

	snprintf(path, sizeof(path), "%s/standby.signal", f->data_dir);
	assert_false(pgconf_has_standby_signal(&f->cfg));
	assert_int_equal(access(path, F_OK), -1);

	assert_int_equal(pgconf_set_standby_signal(&f->cfg, true), PGW_OK);
	assert_int_equal(access(path, F_OK), 0);
	assert_true(pgconf_has_standby_signal(&f->cfg));
	/* idempotent */
	assert_int_equal(pgconf_set_standby_signal(&f->cfg, true), PGW_OK);

	assert_int_equal(pgconf_set_standby_signal(&f->cfg, false), PGW_OK);
	assert_int_equal(access(path, F_OK), -1);
	assert_false(pgconf_has_standby_signal(&f->cfg));
	/* removing a missing file is fine */
	assert_int_equal(pgconf_set_standby_signal(&f->cfg, false), PGW_OK);
}

/* synchronous_standby_names: written quoted, read back as it was (agent restart). */
static void test_sync_standby_names_round_trip(void **state)
{
	struct fx *f = *state;
	char back[1024], *conf;

	pgconf_read_ssn(&f->cfg, back, sizeof(back));
	assert_string_equal(back, "");
	snprintf(f->cfg.synchronous_standby_names, sizeof(f->cfg.synchronous_standby_names),
		 "FIRST 2 (\"node2\", \"o'k\\x\")");
	assert_int_equal(pgconf_write_conf(&f->cfg, NULL), PGW_OK);
	conf = read_data_file(f, "postgresql.conf");
	assert_has_line(conf, "synchronous_standby_names = 'FIRST 2 (\"node2\", \"o''k\\\\x\")'");
	free(conf);
	pgconf_read_ssn(&f->cfg, back, sizeof(back));
	assert_string_equal(back, f->cfg.synchronous_standby_names);
	f->cfg.synchronous_standby_names[0] = '\0';
	assert_int_equal(pgconf_write_conf(&f->cfg, NULL), PGW_OK);
	pgconf_read_ssn(&f->cfg, back, sizeof(back));
	assert_string_equal(back, "");
}

/* ---- [backup]: pgBackRest ------------------------------------------------------- */

static void backup_on(struct fx *f, const char *repo)
{
	static char stanza[] = "demo", compress[] = "zst", prog[] = "/usr/bin/pgbackrest";

	f->cfg.backup_repo_path = (char *)repo;
	f->cfg.backup_stanza = stanza;
	f->cfg.backup_compress = compress;
	f->cfg.backup_pgbackrest = prog;
	f->cfg.backup_retention_full = 3;
	f->cfg.backup_process_max = 2;
	f->cfg.backup_archive_async = true;
	snprintf(f->cfg.node_dir, sizeof(f->cfg.node_dir), "%s/it's", f->root);
}

static void test_backup_parameters(void **state)
{
	struct fx *f = *state;
	struct cmn_kvlist p;
	char want[512], err[512];

	/* Off: nothing about archiving, and [parameters] may set archive_command. */
	assert_int_equal(pgconf_parameters(&f->cfg, &p), PGW_OK);
	assert_null(cmn_kvlist_get(&p, "archive_mode"));
	cmn_kvlist_free(&p);
	assert_null(backup_managed_reason(&f->cfg, "archive_command"));

	backup_on(f, "/srv/repo");
	/* etcd's dynamic configuration cannot point archiving elsewhere. */
	assert_int_equal(
	    cmn_kvlist_set(&f->cfg.dyn_parameters, "archive_command", "cp %p /x", "etcd"), PGW_OK);
	assert_int_equal(pgconf_parameters(&f->cfg, &p), PGW_OK);
	assert_string_equal(param(&p, "archive_mode"), "on");
	assert_string_equal(param(&p, "archive_timeout"), "60s");
	/* The node folder has a quote: the shell sees one word per option. */
	snprintf(want, sizeof(want),
		 "'/usr/bin/pgbackrest' '--config=%s/it'\\''s/pgbackrest/pgbackrest.conf' "
		 "'--stanza=demo' --io-timeout=5 archive-push %%p",
		 f->root);
	assert_string_equal(param(&p, "archive_command"), want);
	snprintf(want, sizeof(want),
		 "'/usr/bin/pgbackrest' '--config=%s/it'\\''s/pgbackrest/pgbackrest.conf' "
		 "'--stanza=demo' --io-timeout=2 archive-get %%f \"%%p\"",
		 f->root);
	assert_string_equal(param(&p, "restore_command"), want);
	cmn_kvlist_free(&p);

	/* With a repository host, the fetch first looks for the agent's "host down" flag
	 * (PostgreSQL does not re-read restore_command on a promotion's path). */
	static char host[] = "repo.example";

	f->cfg.backup_repo_host = host;
	assert_int_equal(pgconf_parameters(&f->cfg, &p), PGW_OK);
	snprintf(want, sizeof(want),
		 "[ ! -e '%s/it'\\''s/pgbackrest/repo-down' ] && '/usr/bin/pgbackrest' "
		 "'--config=%s/it'\\''s/pgbackrest/pgbackrest.conf' '--stanza=demo' --io-timeout=2 "
		 "archive-get %%f \"%%p\"",
		 f->root, f->root);
	assert_string_equal(param(&p, "restore_command"), want);
	f->cfg.backup_repo_host = NULL;
	cmn_kvlist_free(&p);
	cmn_kvlist_free(&f->cfg.dyn_parameters);

	/* ... nor can the node's [parameters]: refused with the line. */
	assert_int_equal(
	    cmn_kvlist_set(&f->cfg.parameters, "restore_command", "cp x %p", "n.ini:7"), PGW_OK);
	assert_int_equal(pgconf_check_parameters(&f->cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "n.ini:7: 'restore_command' in [parameters] is managed by "
				    "pgwarden ([backup] is set"));
}

static void test_backup_config_text(void **state)
{
	struct fx *f = *state;
	char *text, line[512];

	backup_on(f, "/srv/repo");
	text = backup_config_text(&f->cfg);
	assert_non_null(text);
	assert_has_line(text, "[global]");
	assert_has_line(text, "repo1-path=/srv/repo");
	assert_has_line(text, "repo1-retention-full=3");
	assert_has_line(text, "compress-type=zst");
	assert_has_line(text, "process-max=2");
	assert_has_line(text, "[global:archive-push]");
	assert_has_line(text, "archive-async=y");
	assert_has_line(text, "[demo]");
	snprintf(line, sizeof(line), "pg1-path=%s", f->data_dir);
	assert_has_line(text, line);
	assert_has_line(text, "pg1-port=5433");
	assert_has_line(text, "pg1-user=postgres");
	assert_null(strstr(text, "retention-diff"));
	assert_null(strstr(text, "cipher"));
	free(text);

	f->cfg.backup_retention_diff = 4;
	f->cfg.backup_cipher_pass = (char *)"pass phrase";
	text = backup_config_text(&f->cfg);
	assert_non_null(text);
	assert_has_line(text, "repo1-retention-diff=4");
	assert_has_line(text, "repo1-cipher-type=aes-256-cbc");
	assert_has_line(text, "repo1-cipher-pass=pass phrase");
	free(text);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_sync_standby_names_round_trip),
	    T(test_parameters_16gb),
	    T(test_parameters_scaling),
	    T(test_parameters_override),
	    T(test_managed_reason),
	    T(test_check_parameters),
	    T(test_write_conf_replica),
	    T(test_write_conf_primary),
	    T(test_primary_conninfo_quoting),
	    T(test_write_conf_backslash),
	    T(test_write_conf_quotes),
	    T(test_write_pgpass),
	    T(test_write_hba),
	    T(test_standby_signal),
	    T(test_backup_parameters),
	    T(test_backup_config_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

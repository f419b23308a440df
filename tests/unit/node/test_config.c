/*
 * Unit tests of the table-driven INI loader (src/common/config.c) and of the
 * agent's schema and cross-checks (src/node/agentcfg.c).
 */
#include "node/agentcfg.h"
#include "node/backup.h"
#include "node/defaults.h"
#include "common/config.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

#define SU_PW	"Sup3r-Secr3t-pw"
#define REPL_PW "R3pl-Secr3t-pw"

/* 3 lines each. */
#define CLUSTER_OK "[cluster]\nname = demo\nmember = node1\n"
#define PG_OK                                                                       \
	"[postgresql]\ndata_dir = /srv/pgw/node1/data\nsuperuser_password = " SU_PW \
	"\nreplication_password = " REPL_PW "\n"

static char tmp_path[64];

/* ---- fixtures ------------------------------------------------------------ */

/* Removes every PGWARDEN_* variable so the host environment cannot leak in. */
static void clear_pgwarden_env(void)
{
	for (;;) {
		char name[256] = "";

		for (char **e = environ; *e; e++) {
			const char *eq = strchr(*e, '=');

			if (strncmp(*e, "PGWARDEN_", 9) == 0 && eq) {
				snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
				break;
			}
		}
		if (!name[0])
			return;
		unsetenv(name);
	}
}

static int setup(void **state)
{
	(void)state;
	clear_pgwarden_env();
	tmp_path[0] = '\0';
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	clear_pgwarden_env();
	if (tmp_path[0])
		unlink(tmp_path);
	tmp_path[0] = '\0';
	return 0;
}

static void write_cfg(const char *text)
{
	size_t len = strlen(text);
	int fd;

	if (tmp_path[0])
		unlink(tmp_path);
	snprintf(tmp_path, sizeof(tmp_path), "/tmp/pgw-test-cfg-XXXXXX");
	fd = mkstemp(tmp_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static int load(const char *text, struct agent_config *cfg, char *err, size_t err_size)
{
	write_cfg(text);
	return agent_config_load(tmp_path, cfg, err, err_size);
}

/* Loads text, expects failure with exactly "<tmp_path><suffix>". */
static void expect_error(const char *text, const char *suffix)
{
	struct agent_config cfg;
	char err[1024], want[1024];

	assert_int_equal(load(text, &cfg, err, sizeof(err)), PGW_EINVAL);
	snprintf(want, sizeof(want), "%s%s", tmp_path, suffix);
	assert_string_equal(err, want);
	agent_config_free(&cfg);
}

/* Loads text, expects failure with a message containing every non-NULL needle. */
static void expect_error_has(const char *text, const char *n1, const char *n2, const char *n3)
{
	struct agent_config cfg;
	char err[1024];

	assert_int_equal(load(text, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, tmp_path));
	if (n1)
		assert_non_null(strstr(err, n1));
	if (n2)
		assert_non_null(strstr(err, n2));
	if (n3)
		assert_non_null(strstr(err, n3));
	agent_config_free(&cfg);
}

/* ---- value parsers ------------------------------------------------------- */

static void test_parse_duration(void **state)
{
	static const struct {
		const char *in;
		int64_t ms;
	} good[] = {
	    {"3", 3000},      {"3s", 3000},    {"500ms", 500}, {"1.5s", 1500},	{"2min", 120000},
	    {"2m", 120000},   {"1h", 3600000}, {" 4s ", 4000}, {"10 s", 10000}, {"0", 0},
	    {"1500MS", 1500}, {"2sec", 2000},  {"0.25", 250},
	};
	static const char *const bad[] = {"",  "  ",	"-1",	  "-1s", "soon", "3x",
					  "s", "3 s s", "1.5.2s", "inf", "nan",	 "3msx"};
	int64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = -42;
		assert_int_equal(cmn_parse_duration_ms(good[i].in, &v), PGW_OK);
		assert_int_equal(v, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = -42;
		assert_int_equal(cmn_parse_duration_ms(bad[i], &v), PGW_EINVAL);
		assert_int_equal(v, -42); /* untouched on error */
	}
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *in;
		int64_t bytes;
	} good[] = {
	    {"1MB", 1048576},	      {"16kB", 16384}, {"16KB", 16384}, {"4GB", 4294967296LL},
	    {"1048576", 1048576},     {"512B", 512},   {"2M", 2097152}, {"1G", 1073741824},
	    {"1TB", 1099511627776LL}, {"1.5kB", 1536}, {"0", 0},	{" 64 MB ", 67108864},
	};
	static const char *const bad[] = {"",	 "-1",	 "-1MB", "lots",
					  "1XB", "1MBB", "MB",	 "99999999999TB"};
	int64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = -42;
		assert_int_equal(cmn_parse_size(good[i].in, &v), PGW_OK);
		assert_int_equal(v, good[i].bytes);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = -42;
		assert_int_equal(cmn_parse_size(bad[i], &v), PGW_EINVAL);
		assert_int_equal(v, -42);
	}
}

static void test_parse_bool(void **state)
{
	static const char *const yes[] = {"on", "ON", "true", "True", "yes", "YES", "1"};
	static const char *const no[] = {"off", "Off", "false", "FALSE", "no", "No", "0"};
	static const char *const bad[] = {"", "maybe", "2", "onn", "y", "n", "t", " on"};
	bool b;

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		b = false;
		assert_int_equal(cmn_parse_bool(yes[i], &b), PGW_OK);
		assert_true(b);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		b = true;
		assert_int_equal(cmn_parse_bool(no[i], &b), PGW_OK);
		assert_false(b);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cmn_parse_bool(bad[i], &b), PGW_EINVAL);
}

static void test_parse_int64(void **state)
{
	int64_t v = 0;

	(void)state;
	assert_int_equal(cmn_parse_int64("42", &v), PGW_OK);
	assert_int_equal(v, 42);
	assert_int_equal(cmn_parse_int64(" -7 ", &v), PGW_OK);
	assert_int_equal(v, -7);
	assert_int_equal(cmn_parse_int64("9223372036854775807", &v), PGW_OK);
	assert_true(v == INT64_MAX);
	assert_int_equal(cmn_parse_int64("9223372036854775808", &v), PGW_EINVAL);
	assert_int_equal(cmn_parse_int64("", &v), PGW_EINVAL);
	assert_int_equal(cmn_parse_int64("12abc", &v), PGW_EINVAL);
	assert_int_equal(cmn_parse_int64("1.5", &v), PGW_EINVAL);
	assert_int_equal(cmn_parse_int64("abc", &v), PGW_EINVAL);
}

static void test_levenshtein(void **state)
{
	(void)state;
	assert_int_equal(cmn_levenshtein("ttl", "ttl"), 0);
	assert_int_equal(cmn_levenshtein("ttll", "ttl"), 1);
	assert_int_equal(cmn_levenshtein("TTL", "ttl"), 0);
	assert_int_equal(cmn_levenshtein("", "abc"), 3);
	assert_int_equal(cmn_levenshtein("kitten", "sitting"), 3);
}

static void test_kvlist(void **state)
{
	struct cmn_kvlist l = {0};

	(void)state;
	assert_null(cmn_kvlist_get(&l, "a"));
	assert_int_equal(cmn_kvlist_set(&l, "a", "1", "f:1"), PGW_OK);
	assert_int_equal(cmn_kvlist_set(&l, "b", "2", NULL), PGW_OK);
	assert_int_equal(cmn_kvlist_set(&l, "a", "3", "f:9"), PGW_OK);
	assert_int_equal(l.n, 2);
	assert_string_equal(cmn_kvlist_get(&l, "a"), "3");
	assert_string_equal(cmn_kvlist_get(&l, "b"), "2");
	assert_string_equal(l.items[0].key, "a"); /* replaced in place */
	assert_string_equal(l.items[0].origin, "f:9");
	assert_string_equal(l.items[1].origin, "");
	cmn_kvlist_free(&l);
	assert_int_equal(l.n, 0);
	assert_null(l.items);
}

/* ---- the generic loader with a small schema of every type ----------------- */

struct demo {
	char *s;
	char *pw;
	int n;
	int req;
	bool b;
	int d_ms;
	int64_t sz;
	struct cmn_kvlist extra;
};

static const struct cmn_cfg_section demo_sections[] = {
    {"main", false, 0},
    {"extra", true, offsetof(struct demo, extra)},
};

static const struct cmn_cfg_key demo_keys[] = {
    {"main", "s", CMN_CFG_STRING, offsetof(struct demo, s), "dflt", false, 0, 0, NULL},
    {"main", "pw", CMN_CFG_SECRET, offsetof(struct demo, pw), NULL, false, 0, 0, NULL},
    {"main", "n", CMN_CFG_INT, offsetof(struct demo, n), "5", false, 1, 10, NULL},
    {"main", "req", CMN_CFG_INT, offsetof(struct demo, req), NULL, true, 0, 0, NULL},
    {"main", "b", CMN_CFG_BOOL, offsetof(struct demo, b), "off", false, 0, 0, NULL},
    {"main", "d", CMN_CFG_DURATION, offsetof(struct demo, d_ms), "1s", false, 0, 0, NULL},
    {"main", "sz", CMN_CFG_SIZE, offsetof(struct demo, sz), "1MB", false, 0, 0, NULL},
};

static const struct cmn_cfg_schema demo_schema = {
    .sections = demo_sections,
    .n_sections = sizeof(demo_sections) / sizeof(demo_sections[0]),
    .keys = demo_keys,
    .n_keys = sizeof(demo_keys) / sizeof(demo_keys[0]),
};

static int demo_load(const char *text, struct demo *d, char *err, size_t err_size)
{
	memset(d, 0, sizeof(*d));
	if (text)
		write_cfg(text);
	return cmn_config_load(&demo_schema, d, text ? tmp_path : NULL, err, err_size);
}

static void test_generic_types(void **state)
{
	struct demo d;
	char err[512];

	(void)state;
	assert_int_equal(demo_load("[main]\nreq = 0\n", &d, err, sizeof(err)), PGW_OK);
	assert_string_equal(err, "");
	assert_string_equal(d.s, "dflt");
	assert_null(d.pw);
	assert_int_equal(d.n, 5);
	assert_int_equal(d.req, 0);
	assert_false(d.b);
	assert_int_equal(d.d_ms, 1000);
	assert_int_equal(d.sz, 1048576);
	assert_int_equal(d.extra.n, 0);
	cmn_config_free(&demo_schema, &d);
	assert_null(d.s);

	assert_int_equal(demo_load("[main]\nreq = -3\ns = hello world\npw = x\nn = 10\nB = Yes\n"
				   "d = 250ms\nsz = 16kB\n[Extra]\nsome.key = v1\nsome.key = v2\n",
				   &d, err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(d.req, -3);
	assert_string_equal(d.s, "hello world");
	assert_string_equal(d.pw, "x");
	assert_int_equal(d.n, 10);
	assert_true(d.b); /* key names are case-insensitive */
	assert_int_equal(d.d_ms, 250);
	assert_int_equal(d.sz, 16384);
	assert_int_equal(d.extra.n, 1); /* the second value replaces the first */
	assert_string_equal(cmn_kvlist_get(&d.extra, "some.key"), "v2");
	{
		char want[128];

		snprintf(want, sizeof(want), "%s:11", tmp_path);
		assert_string_equal(d.extra.items[0].origin, want);
	}
	cmn_config_free(&demo_schema, &d);
	assert_int_equal(d.extra.n, 0);
}

static void test_generic_bad_int(void **state)
{
	struct demo d;
	char err[512], want[512];

	(void)state;
	assert_int_equal(demo_load("[main]\nreq = 1\nn = three\n", &d, err, sizeof(err)),
			 PGW_EINVAL);
	snprintf(want, sizeof(want),
		 "%s:3: bad value 'three' for 'n' in [main]: expected an integer", tmp_path);
	assert_string_equal(err, want);
	cmn_config_free(&demo_schema, &d);

	assert_int_equal(demo_load("[main]\nreq = 1\nn = 11\n", &d, err, sizeof(err)), PGW_EINVAL);
	snprintf(want, sizeof(want),
		 "%s:3: bad value '11' for 'n' in [main]: out of range (1 .. 10)", tmp_path);
	assert_string_equal(err, want);
	cmn_config_free(&demo_schema, &d);

	assert_int_equal(demo_load("[main]\nreq = 3000000000\n", &d, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "out of range"));
	assert_non_null(strstr(err, "'req'"));
	cmn_config_free(&demo_schema, &d);
}

static void test_generic_required_int(void **state)
{
	struct demo d;
	char err[512], want[512];

	(void)state;
	assert_int_equal(demo_load("[main]\nn = 2\n", &d, err, sizeof(err)), PGW_EINVAL);
	snprintf(want, sizeof(want),
		 "%s: missing required key 'req' in [main] (or environment PGWARDEN_MAIN_REQ)",
		 tmp_path);
	assert_string_equal(err, want);
	cmn_config_free(&demo_schema, &d);

	/* the environment alone satisfies it, and without a file */
	assert_int_equal(setenv("PGWARDEN_MAIN_REQ", "9", 1), 0);
	assert_int_equal(setenv("PGWARDEN_EXTRA_FOO", "bar", 1), 0);
	assert_int_equal(demo_load(NULL, &d, err, sizeof(err)), PGW_OK);
	assert_int_equal(d.req, 9);
	assert_string_equal(cmn_kvlist_get(&d.extra, "foo"), "bar");
	assert_string_equal(d.extra.items[0].origin, "environment PGWARDEN_EXTRA_FOO");
	cmn_config_free(&demo_schema, &d);
}

static void test_generic_invalid_free_key(void **state)
{
	struct demo d;
	char err[512], want[512];

	(void)state;
	assert_int_equal(demo_load("[main]\nreq = 1\n[extra]\nbad key = 1\n", &d, err, sizeof(err)),
			 PGW_EINVAL);
	snprintf(want, sizeof(want), "%s:4: invalid key 'bad key' in [extra]", tmp_path);
	assert_string_equal(err, want);
	cmn_config_free(&demo_schema, &d);
}

static void test_generic_missing_file(void **state)
{
	struct demo d;
	char err[512];

	(void)state;
	memset(&d, 0, sizeof(d));
	assert_int_equal(
	    cmn_config_load(&demo_schema, &d, "/nonexistent/pgw.ini", err, sizeof(err)),
	    PGW_EINVAL);
	assert_non_null(strstr(err, "/nonexistent/pgw.ini: cannot open"));
	cmn_config_free(&demo_schema, &d);
}

/* ---- the agent's configuration -------------------------------------------- */

static void test_good_file_defaults(void **state)
{
	struct agent_config cfg;
	char err[1024];

	(void)state;
	assert_int_equal(load(CLUSTER_OK PG_OK, &cfg, err, sizeof(err)), PGW_OK);
	assert_string_equal(err, "");
	assert_string_equal(cfg.cluster_name, "demo");
	assert_string_equal(cfg.member_name, "node1");
	assert_string_equal(cfg.namespace, "/service");
	assert_int_equal(cfg.ttl_ms, 4000);
	assert_int_equal(cfg.loop_wait_ms, 1000);
	assert_int_equal(cfg.retry_timeout_ms, 1500);
	assert_int_equal(cfg.maximum_lag_on_failover, 1048576);
	assert_int_equal(cfg.primary_start_timeout_ms, 10000);
	assert_string_equal(cfg.log_level, "info");
	assert_string_equal(cfg.etcd.endpoints, "http://127.0.0.1:2379");
	assert_null(cfg.etcd.username);
	assert_null(cfg.etcd.password);
	assert_string_equal(cfg.data_dir, "/srv/pgw/node1/data");
	assert_string_equal(cfg.bin_dir, "/usr/lib/postgresql/15/bin");
	assert_string_equal(cfg.pg_listen, "127.0.0.1:5432");
	assert_string_equal(cfg.superuser, "postgres");
	assert_string_equal(cfg.superuser_password, SU_PW);
	assert_string_equal(cfg.replication_user, "replicator");
	assert_string_equal(cfg.replication_password, REPL_PW);
	assert_true(cfg.use_pg_rewind);
	assert_true(cfg.remove_data_on_rewind_failure);
	assert_null(cfg.pg_hba_extra);
	assert_string_equal(cfg.api_listen, "127.0.0.1:8008");
	assert_null(cfg.api_username);
	assert_int_equal(cfg.parameters.n, 0);
	assert_int_equal(cfg.tags.n, 0);
	assert_false(cfg.nofailover);
	assert_false(cfg.noloadbalance);
	assert_false(cfg.nosync);
	assert_false(cfg.clonefrom);
	/* memory = 0 means the whole machine */
	assert_true(cfg.memory > 0);
	agent_config_free(&cfg);
	assert_null(cfg.cluster_name);
	assert_null(cfg.socket_dir);
}

static void test_derived_values(void **state)
{
	struct agent_config cfg;
	char err[1024];

	(void)state;
	assert_int_equal(load(CLUSTER_OK PG_OK, &cfg, err, sizeof(err)), PGW_OK);
	assert_string_equal(cfg.pg_host, "127.0.0.1");
	assert_int_equal(cfg.pg_port, 5432);
	assert_string_equal(cfg.pg_connect_host, "127.0.0.1");
	assert_int_equal(cfg.pg_connect_port, 5432);
	assert_string_equal(cfg.api_host, "127.0.0.1");
	assert_int_equal(cfg.api_port, 8008);
	assert_string_equal(cfg.api_connect, "http://127.0.0.1:8008");
	assert_string_equal(cfg.socket_dir, "/srv/pgw/node1/run");
	assert_string_equal(cfg.pgpass, "/srv/pgw/node1/pgpass");
	agent_config_free(&cfg);

	/* explicit addresses, trailing slash on data_dir, memory given */
	assert_int_equal(load("[cluster]\nname = demo\nmember = node2\n"
			      "[postgresql]\ndata_dir = /srv/pgw/node2/data/\n"
			      "superuser_password = a\nreplication_password = b\n"
			      "listen = 0.0.0.0:5433\nconnect_address = db2.example:6432\n"
			      "memory = 8GB\n"
			      "[api]\nlisten = [::]:8009\nconnect_address = db2.example:8009\n",
			      &cfg, err, sizeof(err)),
			 PGW_OK);
	assert_string_equal(cfg.pg_host, "0.0.0.0");
	assert_int_equal(cfg.pg_port, 5433);
	assert_string_equal(cfg.pg_connect_host, "db2.example");
	assert_int_equal(cfg.pg_connect_port, 6432);
	assert_string_equal(cfg.api_host, "::");
	assert_int_equal(cfg.api_port, 8009);
	assert_string_equal(cfg.api_connect, "http://db2.example:8009");
	assert_string_equal(cfg.socket_dir, "/srv/pgw/node2/run");
	assert_string_equal(cfg.pgpass, "/srv/pgw/node2/pgpass");
	assert_int_equal(cfg.memory, 8LL * 1024 * 1024 * 1024);
	agent_config_free(&cfg);

	/* data_dir directly under / falls back to /tmp */
	assert_int_equal(load(CLUSTER_OK "[postgresql]\ndata_dir = /data\nsuperuser_password = a\n"
					 "replication_password = b\n",
			      &cfg, err, sizeof(err)),
			 PGW_OK);
	assert_string_equal(cfg.socket_dir, "/tmp/run");
	assert_string_equal(cfg.pgpass, "/tmp/pgpass");
	agent_config_free(&cfg);

	/* explicit socket_dir / pgpass are kept */
	assert_int_equal(load(CLUSTER_OK PG_OK "socket_dir = /run/pgw\npgpass = /etc/pgw/pass\n",
			      &cfg, err, sizeof(err)),
			 PGW_OK);
	assert_string_equal(cfg.socket_dir, "/run/pgw");
	assert_string_equal(cfg.pgpass, "/etc/pgw/pass");
	agent_config_free(&cfg);
}

static void test_unknown_key(void **state)
{
	(void)state;
	expect_error(CLUSTER_OK "ttll = 5s\n" PG_OK,
		     ":4: unknown key 'ttll' in [cluster] (did you mean 'ttl'?)");
	expect_error(CLUSTER_OK "\n; comment\n\nloop_waitt = 1s\n" PG_OK,
		     ":7: unknown key 'loop_waitt' in [cluster] (did you mean 'loop_wait'?)");
	/* nothing close: no hint */
	expect_error(CLUSTER_OK PG_OK "frobnicate = 1\n",
		     ":8: unknown key 'frobnicate' in [postgresql]");
	/* a key of another section is unknown here */
	expect_error(CLUSTER_OK "data_dir = /x\n" PG_OK, ":4: unknown key 'data_dir' in [cluster]");
}

static void test_unknown_section(void **state)
{
	(void)state;
	expect_error(CLUSTER_OK PG_OK "[clusterr]\nttl = 4s\n", ":8: unknown section [clusterr]");
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_error(CLUSTER_OK "ttl = soon\n" PG_OK,
		     ":4: bad value 'soon' for 'ttl' in [cluster]: expected a duration such as 10, "
		     "10s or 500ms");
	expect_error(CLUSTER_OK "maximum_lag_on_failover = lots\n" PG_OK,
		     ":4: bad value 'lots' for 'maximum_lag_on_failover' in [cluster]: expected a "
		     "size such as 1048576, 16MB or 4GB");
	expect_error(
	    CLUSTER_OK PG_OK "use_pg_rewind = maybe\n",
	    ":8: bad value 'maybe' for 'use_pg_rewind' in [postgresql]: expected on or off");
	expect_error(CLUSTER_OK "ttl = 1s\n" PG_OK,
		     ":4: bad value '1s' for 'ttl' in [cluster]: out of range (2s .. 3600s)");
	expect_error(CLUSTER_OK "loop_wait = 50ms\n" PG_OK,
		     ":4: bad value '50ms' for 'loop_wait' in [cluster]: out of range (100ms .. "
		     "600s)");
	expect_error(CLUSTER_OK PG_OK "memory = -1GB\n",
		     ":8: bad value '-1GB' for 'memory' in [postgresql]: expected a size such as "
		     "1048576, 16MB or 4GB");
}

static void test_missing_required(void **state)
{
	(void)state;
	expect_error("[cluster]\nmember = node1\n" PG_OK,
		     ": missing required key 'name' in [cluster] (or environment "
		     "PGWARDEN_CLUSTER_NAME)");
	expect_error("[cluster]\nname = demo\n" PG_OK,
		     ": missing required key 'member' in [cluster] (or environment "
		     "PGWARDEN_CLUSTER_MEMBER)");
	/* an empty value counts as missing */
	expect_error(CLUSTER_OK "[postgresql]\ndata_dir =\nsuperuser_password = a\n"
				"replication_password = b\n",
		     ": missing required key 'data_dir' in [postgresql] (or environment "
		     "PGWARDEN_POSTGRESQL_DATA_DIR)");
	expect_error(CLUSTER_OK "[postgresql]\ndata_dir = /d/data\nsuperuser_password = a\n",
		     ": missing required key 'replication_password' in [postgresql] (or "
		     "environment PGWARDEN_POSTGRESQL_REPLICATION_PASSWORD)");
}

static void test_key_outside_section(void **state)
{
	(void)state;
	expect_error("name = demo\n" CLUSTER_OK PG_OK, ":1: key 'name' outside of any section");
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_error(CLUSTER_OK "this line has no separator\n" PG_OK,
		     ":4: syntax error (expected 'key = value' or '[section]')");
	expect_error(CLUSTER_OK PG_OK "[api\n",
		     ":8: syntax error (expected 'key = value' or '[section]')");
}

/* A bad key after a syntax error is reported at a line that matches its message. */
static void test_syntax_error_then_bad_key(void **state)
{
	struct agent_config cfg;
	char err[1024], at4[300], at5[300];

	(void)state;
	assert_int_equal(load(CLUSTER_OK "garbage\nttll = 5s\n" PG_OK, &cfg, err, sizeof(err)),
			 PGW_EINVAL);
	snprintf(at4, sizeof(at4), "%s:4: syntax error", tmp_path);
	snprintf(at5, sizeof(at5), "%s:5: unknown key 'ttll'", tmp_path);
	assert_true(strncmp(err, at4, strlen(at4)) == 0 || strncmp(err, at5, strlen(at5)) == 0);
	agent_config_free(&cfg);
}

/*
 * BUG: src/common/config.c, cmn_config_load(): inih's INI_ALLOW_MULTILINE makes an
 * indented line after a key a continuation that REPLACES that key's value.
 * Input "[cluster]\n  name = demo\n  member = node1\n  ttl = 6s\n" + [postgresql].
 * Expected: name "demo", member "node1", ttl 6000 (or an error naming line 3).
 * Actual: name becomes "ttl = 6s" and the error is "missing required key 'member'";
 * with "name = demo\nmember = node1\n  ttl = 6s" the error is "bad value 'ttl = 6s'
 * for 'member'"; an indented optional key after an optional key is lost silently.
 */
static void test_indented_keys(void **state)
{
	struct agent_config cfg;
	char err[1024];

	(void)state;

	assert_int_equal(load("[cluster]\n  name = demo\n  member = node1\n  ttl = 6s\n" PG_OK,
			      &cfg, err, sizeof(err)),
			 PGW_OK);
	assert_string_equal(cfg.cluster_name, "demo");
	assert_string_equal(cfg.member_name, "node1");
	assert_int_equal(cfg.ttl_ms, 6000);
	agent_config_free(&cfg);
}

/*
 * BUG: src/common/config.c, cmn_config_load(): inih (libinih 55, INI_MAX_LINE 200,
 * no realloc) reads lines in chunks of 199 bytes and parses the rest as a new line.
 * Input: a [postgresql] pg_hba value of ~230 bytes at line 8 of an 8-line file.
 * Expected: loads with the whole value (or a "line too long" error at line 8).
 * Actual: "<file>:9: syntax error (expected 'key = value' or '[section]')". When
 * the cut falls on a space the rest is a continuation line and silently REPLACES
 * the value: 5 x "hostssl all all 10.0.0.0/8 scram-sha-256;" + "host all all
 * ::1/128 md5" loads as pg_hba = "scram-sha-256;host all all ::1/128 md5".
 */
static void test_long_line(void **state)
{
	struct agent_config cfg;
	char err[1024], text[2048], hba2[400] = "";
	const char *hba = "hostssl all all 10.0.0.0/8 scram-sha-256;"
			  "hostssl replication replicator 10.0.0.0/8 scram-sha-256;"
			  "hostssl all all 192.168.0.0/16 scram-sha-256;"
			  "hostssl replication replicator 192.168.0.0/16 scram-sha-256";

	(void)state;

	snprintf(text, sizeof(text), CLUSTER_OK PG_OK "pg_hba = %s\n", hba);
	assert_true(strlen(hba) > 200);
	assert_int_equal(load(text, &cfg, err, sizeof(err)), PGW_OK);
	assert_string_equal(cfg.pg_hba_extra, hba);
	agent_config_free(&cfg);

	for (int i = 0; i < 5; i++)
		strcat(hba2, "hostssl all all 10.0.0.0/8 scram-sha-256;");
	strcat(hba2, "host all all ::1/128 md5");
	snprintf(text, sizeof(text), CLUSTER_OK PG_OK "pg_hba = %s\n", hba2);
	assert_int_equal(load(text, &cfg, err, sizeof(err)), PGW_OK);
	assert_string_equal(cfg.pg_hba_extra, hba2);
	agent_config_free(&cfg);
}

/*
 * BUG: src/node/agentcfg.c documents [postgresql] pg_hba as "extra pg_hba.conf
 * lines, separated by ';'", but ';' after whitespace starts an inline comment for
 * inih (INI_ALLOW_INLINE_COMMENTS), so the natural spelling loses lines silently.
 * Input: "pg_hba = host all all 10.0.0.0/8 md5 ; host all all ::1/128 md5".
 * Expected: both lines kept (or an error). Actual: pg_hba_extra = "host all all
 * 10.0.0.0/8 md5", the second line is dropped without a word.
 */
static void test_hba_separator_with_spaces(void **state)
{
	struct agent_config cfg;
	char err[1024];

	(void)state;
	/* without spaces both lines survive */
	assert_int_equal(load(CLUSTER_OK PG_OK "pg_hba = host all all 10.0.0.0/8 md5;host all all "
					       "::1/128 md5\n",
			      &cfg, err, sizeof(err)),
			 PGW_OK);
	assert_string_equal(cfg.pg_hba_extra,
			    "host all all 10.0.0.0/8 md5;host all all ::1/128 md5");
	agent_config_free(&cfg);

	assert_int_equal(load(CLUSTER_OK PG_OK
			      "pg_hba = host all all 10.0.0.0/8 md5 ; host all all "
			      "::1/128 md5\n",
			      &cfg, err, sizeof(err)),
			 PGW_OK);
	assert_non_null(strstr(cfg.pg_hba_extra, "::1/128"));
	agent_config_free(&cfg);
}

static void test_env_override(void **state)
{
	struct agent_config cfg;
	char err[1024];

	(void)state;
	assert_int_equal(setenv("PGWARDEN_CLUSTER_TTL", "10s", 1), 0);
	assert_int_equal(setenv("PGWARDEN_CLUSTER_LOOP_WAIT", "2s", 1), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_LISTEN", "10.1.2.3:5999", 1), 0);
	assert_int_equal(setenv("PGWARDEN_DIR", "/not/a/config/key", 1), 0); /* ignored */
	assert_int_equal(
	    load(CLUSTER_OK "ttl = 6s\nloop_wait = 1s\n" PG_OK, &cfg, err, sizeof(err)), PGW_OK);
	assert_int_equal(cfg.ttl_ms, 10000);
	assert_int_equal(cfg.loop_wait_ms, 2000);
	assert_string_equal(cfg.pg_listen, "10.1.2.3:5999");
	assert_string_equal(cfg.pg_host, "10.1.2.3");
	assert_int_equal(cfg.pg_port, 5999);
	agent_config_free(&cfg);
}

static void test_env_bad_value(void **state)
{
	struct agent_config cfg;
	char err[1024];

	(void)state;
	assert_int_equal(setenv("PGWARDEN_CLUSTER_TTL", "forever", 1), 0);
	assert_int_equal(load(CLUSTER_OK PG_OK, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_string_equal(err, "environment PGWARDEN_CLUSTER_TTL: bad value 'forever' for 'ttl' "
				 "in [cluster]: expected a duration such as 10, 10s or 500ms");
	agent_config_free(&cfg);

	assert_int_equal(unsetenv("PGWARDEN_CLUSTER_TTL"), 0);
	assert_int_equal(setenv("PGWARDEN_CLUSTER_TTLL", "4s", 1), 0);
	assert_int_equal(load(CLUSTER_OK PG_OK, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_string_equal(err, "environment PGWARDEN_CLUSTER_TTLL: unknown key 'ttll' in "
				 "[cluster] (did you mean 'ttl'?)");
	agent_config_free(&cfg);
}

static void test_env_only(void **state)
{
	struct agent_config cfg;
	char err[1024];

	(void)state;
	assert_int_equal(agent_config_load(NULL, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_string_equal(err, "configuration: missing required key 'name' in [cluster] (or "
				 "environment PGWARDEN_CLUSTER_NAME)");
	agent_config_free(&cfg);

	assert_int_equal(setenv("PGWARDEN_CLUSTER_NAME", "envdemo", 1), 0);
	assert_int_equal(setenv("PGWARDEN_CLUSTER_MEMBER", "envnode", 1), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_DATA_DIR", "/var/lib/pgw/data", 1), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD", SU_PW, 1), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_REPLICATION_PASSWORD", REPL_PW, 1), 0);
	assert_int_equal(setenv("PGWARDEN_TAGS_NOFAILOVER", "on", 1), 0);
	assert_int_equal(agent_config_load(NULL, &cfg, err, sizeof(err)), PGW_OK);
	assert_string_equal(cfg.cluster_name, "envdemo");
	assert_string_equal(cfg.member_name, "envnode");
	assert_string_equal(cfg.data_dir, "/var/lib/pgw/data");
	assert_string_equal(cfg.superuser_password, SU_PW);
	assert_int_equal(cfg.ttl_ms, 4000);
	assert_true(cfg.nofailover);
	assert_string_equal(cfg.tags.items[0].origin, "environment PGWARDEN_TAGS_NOFAILOVER");
	assert_string_equal(cfg.socket_dir, "/var/lib/pgw/run");
	agent_config_free(&cfg);

	/* errors after an env-only load name "configuration" */
	assert_int_equal(setenv("PGWARDEN_CLUSTER_TTL", "3s", 1), 0);
	assert_int_equal(agent_config_load(NULL, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_true(strncmp(err, "configuration: [cluster] timing:", 32) == 0);
	agent_config_free(&cfg);
}

/* PGWARDEN_<SECTION>_<KEY>_FILE: the value comes from a file (a Docker secret). */
static void test_env_file(void **state)
{
	struct agent_config cfg;
	char err[1024], secret[] = "/tmp/pgw-test-secret-XXXXXX";
	int fd = mkstemp(secret);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "fr0m-a-f1le\n", 12), 12);
	close(fd);
	assert_int_equal(setenv("PGWARDEN_CLUSTER_NAME", "envdemo", 1), 0);
	assert_int_equal(setenv("PGWARDEN_CLUSTER_MEMBER", "envnode", 1), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_DATA_DIR", "/var/lib/pgw/data", 1), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD_FILE", secret, 1), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_REPLICATION_PASSWORD", REPL_PW, 1), 0);
	assert_int_equal(setenv("PGWARDEN_CLUSTER_TTL_FILE", secret, 1), 0);
	/* a bad value read from a file is reported without the file's content */
	assert_int_equal(agent_config_load(NULL, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_string_equal(err, "environment PGWARDEN_CLUSTER_TTL_FILE: bad value 'fr0m-a-f1le' "
				 "for 'ttl' in [cluster]: expected a duration such as 10, 10s or "
				 "500ms");
	agent_config_free(&cfg);
	assert_int_equal(unsetenv("PGWARDEN_CLUSTER_TTL_FILE"), 0);

	assert_int_equal(agent_config_load(NULL, &cfg, err, sizeof(err)), PGW_OK);
	assert_string_equal(cfg.superuser_password, "fr0m-a-f1le"); /* newline dropped */
	agent_config_free(&cfg);

	/* a missing file */
	assert_int_equal(
	    setenv("PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD_FILE", "/nonexistent/pw", 1), 0);
	assert_int_equal(agent_config_load(NULL, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_string_equal(err, "environment PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD_FILE: cannot "
				 "read /nonexistent/pw: No such file or directory");
	agent_config_free(&cfg);

	/* two lines are refused */
	fd = open(secret, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "a\nb\n", 4), 4);
	close(fd);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD_FILE", secret, 1), 0);
	assert_int_equal(agent_config_load(NULL, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "must hold one line of text"));
	agent_config_free(&cfg);

	/* a key of its own that ends in _file is not a file variable; an unknown base is */
	assert_int_equal(unsetenv("PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD_FILE"), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD", SU_PW, 1), 0);
	assert_int_equal(setenv("PGWARDEN_CLUSTER_TTLL_FILE", secret, 1), 0);
	assert_int_equal(agent_config_load(NULL, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "unknown key 'ttll_file' in [cluster]"));
	agent_config_free(&cfg);
	unlink(secret);
}

static void test_free_form_sections(void **state)
{
	struct agent_config cfg;
	char err[1024], want[300];

	(void)state;
	assert_int_equal(setenv("PGWARDEN_PARAMETERS_WORK_MEM", "64MB", 1), 0);
	assert_int_equal(load(CLUSTER_OK PG_OK
			      "[parameters]\nshared_buffers = 2GB\n"
			      "work_mem = 8MB\nauto_explain.log_min_duration = 1s\n"
			      "[tags]\nnofailover = on\nclonefrom = yes\n"
			      "datacenter = eu-west-1\n",
			      &cfg, err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(cfg.parameters.n, 3);
	assert_string_equal(cmn_kvlist_get(&cfg.parameters, "shared_buffers"), "2GB");
	assert_string_equal(cmn_kvlist_get(&cfg.parameters, "auto_explain.log_min_duration"), "1s");
	snprintf(want, sizeof(want), "%s:9", tmp_path);
	assert_string_equal(cfg.parameters.items[0].key, "shared_buffers");
	assert_string_equal(cfg.parameters.items[0].origin, want);
	/* the environment beats the file here too, and says where it came from */
	assert_string_equal(cmn_kvlist_get(&cfg.parameters, "work_mem"), "64MB");
	assert_string_equal(cfg.parameters.items[1].origin,
			    "environment PGWARDEN_PARAMETERS_WORK_MEM");
	snprintf(want, sizeof(want), "%s:11", tmp_path);
	assert_string_equal(cfg.parameters.items[2].origin, want);

	assert_int_equal(cfg.tags.n, 3);
	assert_string_equal(cmn_kvlist_get(&cfg.tags, "datacenter"), "eu-west-1");
	snprintf(want, sizeof(want), "%s:15", tmp_path);
	assert_string_equal(cfg.tags.items[2].origin, want);
	assert_true(cfg.nofailover);
	assert_true(cfg.clonefrom);
	assert_false(cfg.noloadbalance);
	assert_false(cfg.nosync);
	agent_config_free(&cfg);
	assert_int_equal(cfg.parameters.n, 0);
	assert_int_equal(cfg.tags.n, 0);
}

static void test_timing_check(void **state)
{
	char err[512];

	(void)state;
	/* the defaults */
	err[0] = '\0';
	assert_int_equal(cluster_check_timing(4000, 1000, 1500, err, sizeof(err)), PGW_OK);
	assert_int_equal(cluster_check_timing(30000, 10000, 10000, err, sizeof(err)), PGW_OK);
	/* loop_wait + 2 x retry_timeout > ttl */
	assert_int_equal(cluster_check_timing(4000, 1000, 1600, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "loop_wait (1000 ms) + 2 x retry_timeout (1600 ms)"));
	assert_non_null(strstr(err, "ttl (4000 ms)"));
	assert_int_equal(cluster_check_timing(10000, 9000, 600, err, sizeof(err)), PGW_EINVAL);
	/* ttl not a whole second */
	assert_int_equal(cluster_check_timing(4500, 1000, 1000, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "whole number of seconds"));
	/* ttl must leave more than the demote margin after loop_wait */
	assert_int_equal(cluster_check_timing(2000, 1000, 500, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "demote margin"));
	assert_int_equal(cluster_check_timing(3000, 1000, 500, err, sizeof(err)), PGW_OK);
}

static void test_timing_in_file(void **state)
{
	(void)state;
	expect_error(CLUSTER_OK "ttl = 3s\n" PG_OK,
		     ": [cluster] timing: loop_wait (1000 ms) + 2 x retry_timeout (1500 ms) must "
		     "not exceed ttl (3000 ms), or a leader could lose its lease between two "
		     "renewals");
	expect_error(CLUSTER_OK "ttl = 4500ms\n" PG_OK,
		     ": [cluster] ttl must be a whole number of seconds (etcd leases)");
}

static void test_secrets_never_shown(void **state)
{
	static const char *const bad_files[] = {
	    /* bad value elsewhere in the file */
	    CLUSTER_OK "ttl = bogus\n" PG_OK,
	    CLUSTER_OK PG_OK "memory = lots\n",
	    /* a mistyped secret key */
	    CLUSTER_OK "[postgresql]\ndata_dir = /d/data\nsuperuser_pasword = " SU_PW "\n",
	    /* a secret key in the wrong section */
	    CLUSTER_OK "superuser_password = " SU_PW "\n" PG_OK,
	    "superuser_password = " SU_PW "\n" CLUSTER_OK PG_OK,
	    "[secrets]\nsuperuser_password = " SU_PW "\n" CLUSTER_OK PG_OK,
	    /* a line missing its '=' */
	    CLUSTER_OK "[postgresql]\nsuperuser_password " SU_PW "\n",
	    /* cross-checks after a successful parse */
	    CLUSTER_OK "ttl = 3s\n" PG_OK,
	    CLUSTER_OK PG_OK "listen = nowhere\n",
	    "[cluster]\nname = demo\nmember = a/b\n" PG_OK,
	    CLUSTER_OK PG_OK "[tags]\nnofailover = maybe\n",
	    CLUSTER_OK "[postgresql]\ndata_dir = rel/data\nsuperuser_password = " SU_PW
		       "\nreplication_password = " REPL_PW "\n",
	    /* required key missing */
	    CLUSTER_OK "[postgresql]\nsuperuser_password = " SU_PW "\nreplication_password = x\n",
	    CLUSTER_OK "[etcd]\npassword = " SU_PW "\nendpoints = http://h:2379\nfoo = 1\n" PG_OK,
	};
	struct agent_config cfg;
	char err[1024];

	(void)state;
	for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		err[0] = '\0';
		assert_int_equal(load(bad_files[i], &cfg, err, sizeof(err)), PGW_EINVAL);
		assert_true(err[0] != '\0');
		if (strstr(err, SU_PW) || strstr(err, REPL_PW))
			fail_msg("case %zu leaks a password: %s", i, err);
		agent_config_free(&cfg);
	}
	/* a secret set in the environment next to a bad value there */
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD", SU_PW, 1), 0);
	assert_int_equal(setenv("PGWARDEN_POSTGRESQL_SUPERUSER_PASSWD", SU_PW, 1), 0);
	assert_int_equal(load(CLUSTER_OK PG_OK, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "PGWARDEN_POSTGRESQL_SUPERUSER_PASSWD"));
	assert_null(strstr(err, SU_PW));
	agent_config_free(&cfg);
}

static void test_bad_listen(void **state)
{
	(void)state;
	expect_error(CLUSTER_OK PG_OK "listen = localhost\n",
		     ": bad value 'localhost' for 'listen' in [postgresql]: expected host:port");
	expect_error(CLUSTER_OK PG_OK "listen = localhost:99999\n",
		     ": bad value 'localhost:99999' for 'listen' in [postgresql]: expected "
		     "host:port");
	expect_error(CLUSTER_OK PG_OK "listen = localhost:\n",
		     ": bad value 'localhost:' for 'listen' in [postgresql]: expected host:port");
	expect_error(CLUSTER_OK PG_OK "connect_address = db1\n",
		     ": bad value 'db1' for 'connect_address' in [postgresql]: expected host:port");
	expect_error(CLUSTER_OK PG_OK "[api]\nlisten = 8008\n",
		     ": bad value '8008' for 'listen' in [api]: expected host:port");
}

static void test_relative_data_dir(void **state)
{
	(void)state;
	expect_error(CLUSTER_OK "[postgresql]\ndata_dir = pgdata\nsuperuser_password = a\n"
				"replication_password = b\n",
		     ": 'data_dir' in [postgresql] must be an absolute path");
}

static void test_bad_member_name(void **state)
{
	(void)state;
	expect_error("[cluster]\nname = demo\nmember = a/b\n" PG_OK,
		     ": bad value 'a/b' for 'member' in [cluster]: no '/' or spaces");
	expect_error_has("[cluster]\nname = demo\nmember = node 1\n" PG_OK, "'member'", "[cluster]",
			 NULL);
}

static void test_bad_tag(void **state)
{
	(void)state;
	expect_error(CLUSTER_OK PG_OK "[tags]\nnoloadbalance = off\nnofailover = maybe\n",
		     ":10: bad value 'maybe' for 'nofailover' in [tags]: expected on or off");
	expect_error(CLUSTER_OK PG_OK "[tags]\nclonefrom = 2\n",
		     ":9: bad value '2' for 'clonefrom' in [tags]: expected on or off");
}

#define TLS_OK                                                                              \
	"tls_ca_file = /run/secrets/ca\ntls_cert_file = /run/secrets/cert\ntls_key_file = " \
	"/run/secrets/key\n"

/* [backup] repo_host: the TLS files required, the addresses split, pgbackrest.conf. */
static void test_repo_host(void **state)
{
	struct agent_config cfg;
	char err[1024], *text;

	(void)state;
	expect_error_has(CLUSTER_OK PG_OK "[backup]\nrepo_host = backup\n",
			 "[backup] repo_host needs tls_ca_file, tls_cert_file and tls_key_file",
			 NULL, NULL);
	expect_error_has(CLUSTER_OK PG_OK "[backup]\nrepo_host = backup:x\n" TLS_OK, "'repo_host'",
			 "expected host or host:port", NULL);
	expect_error_has(CLUSTER_OK PG_OK "[backup]\nrepo_host = backup\ntls_ca_file = ca.crt\n",
			 ":10: bad value 'ca.crt' for 'tls_ca_file' in [backup]",
			 "expected an absolute path", NULL);
	assert_int_equal(
	    load(CLUSTER_OK PG_OK "[backup]\nrepo_host = backup\n" TLS_OK, &cfg, err, sizeof(err)),
	    PGW_OK);
	assert_string_equal(cfg.repo_host, "backup");
	assert_int_equal(cfg.repo_port, 8432);
	assert_string_equal(cfg.backup_repo_path, "/var/lib/pgbackrest");
	assert_string_equal(cfg.tls_host, "0.0.0.0");
	assert_int_equal(cfg.tls_port, 8432);
	/* the repository host reaches the member by PostgreSQL's connect host */
	assert_string_equal(cfg.tls_connect_host, "127.0.0.1");
	assert_int_equal(cfg.tls_connect_port, 8432);
	assert_true(backup_enabled(&cfg) && backup_remote(&cfg));
	assert_false(backup_scheduled(&cfg));
	text = backup_config_text(&cfg);
	assert_non_null(
	    strstr(text, "repo1-host=backup\nrepo1-host-port=8432\nrepo1-host-type=tls\n"));
	assert_non_null(strstr(text, "tls-server-address=*\ntls-server-port=8432\n"));
	assert_non_null(strstr(text, "tls-server-auth=pgwarden=demo\n"));
	assert_non_null(strstr(text, "[demo]\npg1-path=/srv/pgw/node1/data\n"));
	free(text);
	agent_config_free(&cfg);
	assert_int_equal(load(CLUSTER_OK PG_OK "[backup]\nrepo_host = 10.0.0.9:9000\n" TLS_OK
					       "tls_listen = 10.0.0.5:8500\ntls_connect_address = "
					       "node1.example:8501\n",
			      &cfg, err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(cfg.repo_port, 9000);
	assert_string_equal(cfg.tls_connect_host, "node1.example");
	assert_int_equal(cfg.tls_connect_port, 8501);
	text = backup_config_text(&cfg);
	assert_non_null(strstr(text, "tls-server-address=10.0.0.5\ntls-server-port=8500\n"));
	free(text);
	agent_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_duration),
	    cmocka_unit_test(test_parse_size),
	    cmocka_unit_test(test_parse_bool),
	    cmocka_unit_test(test_parse_int64),
	    cmocka_unit_test(test_levenshtein),
	    cmocka_unit_test(test_kvlist),
	    cmocka_unit_test_setup_teardown(test_generic_types, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_generic_bad_int, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_generic_required_int, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_generic_invalid_free_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_generic_missing_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_good_file_defaults, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_derived_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_section, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_key_outside_section, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_syntax_error_then_bad_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indented_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hba_separator_with_spaces, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_override, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_bad_value, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_only, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_env_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_form_sections, setup, teardown),
	    cmocka_unit_test(test_timing_check),
	    cmocka_unit_test_setup_teardown(test_timing_in_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_secrets_never_shown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_listen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_relative_data_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_member_name, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_tag, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_repo_host, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests of the dynamic configuration (src/cluster/dyncfg.c): parsing and
 * validation of the document, --set / --pg edits, merge patches, and the check
 * of PostgreSQL values against pg_settings rows.
 */
#include "node/agentcfg.h"
#include "cluster/dyncfg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void test_parse_full_document(void **state)
{
	struct dyncfg c;
	char err[512];

	(void)state;
	assert_int_equal(dyncfg_parse("{\"ttl\": 6, \"loop_wait\": 1, \"retry_timeout\": 1.5,"
				      " \"maximum_lag_on_failover\": \"2MB\","
				      " \"synchronous_mode\": true, \"synchronous_node_count\": 2,"
				      " \"postgresql\": {\"parameters\": {\"work_mem\": \"8MB\","
				      " \"max_connections\": 300}}, \"pause\": false}",
				      &agent_config_dyncfg_rules, &c, err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(c.ttl_ms, 6000);
	assert_int_equal(c.loop_wait_ms, 1000);
	assert_int_equal(c.retry_timeout_ms, 1500);
	assert_int_equal(c.maximum_lag, 2 * 1024 * 1024);
	assert_true(c.sync_mode);
	assert_false(c.sync_strict);
	assert_int_equal(c.sync_count, 2);
	assert_string_equal(cmn_kvlist_get(&c.parameters, "work_mem"), "8MB");
	assert_string_equal(cmn_kvlist_get(&c.parameters, "max_connections"), "300");
	dyncfg_free(&c);

	assert_int_equal(dyncfg_parse(NULL, &agent_config_dyncfg_rules, &c, err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(c.ttl_ms, 0);
	assert_int_equal(c.maximum_lag, -1);
	assert_int_equal(c.sync_count, 1);
	dyncfg_free(&c);
}

static void expect_bad(const char *json, const char *words)
{
	struct dyncfg c;
	char err[512] = "";

	assert_int_equal(dyncfg_parse(json, &agent_config_dyncfg_rules, &c, err, sizeof(err)),
			 PGW_EINVAL);
	if (!strstr(err, words))
		fail_msg("for %s: expected '%s' in '%s'", json, words, err);
}

static void test_parse_refusals(void **state)
{
	(void)state;
	expect_bad("[1]", "JSON object");
	expect_bad("{", "not valid JSON");
	expect_bad("{\"tll\": 4}", "did you mean 'ttl'");
	expect_bad("{\"ttl\": \"soon\"}", "expected a duration");
	expect_bad("{\"ttl\": 1}", "between");
	expect_bad("{\"ttl\": 2}", "must not exceed ttl");
	expect_bad("{\"ttl\": 4.5}", "whole number of seconds");
	expect_bad("{\"synchronous_node_count\": 0}", "synchronous_node_count");
	expect_bad("{\"synchronous_mode\": \"perhaps\"}", "true or false");
	expect_bad("{\"postgresql\": {\"use_slots\": true}}", "postgresql.use_slots");
	expect_bad("{\"postgresql\": {\"parameters\": {\"port\": 1}}}", "managed by pgwarden");
	/* code run as postgres on every member by whoever can write etcd (issue 14 item 3) */
	expect_bad("{\"postgresql\": {\"parameters\": {\"archive_command\": \"sh -c x\"}}}",
		   "cannot come from the dynamic configuration");
	expect_bad("{\"postgresql\": {\"parameters\": {\"ssl_passphrase_command\": \"x\"}}}",
		   "runs a command");
	expect_bad("{\"postgresql\": {\"parameters\": {\"shared_preload_libraries\": \"x\"}}}",
		   "loads code");
	expect_bad("{\"postgresql\": {\"parameters\": {\"Bad Name\": 1}}}", "bad PostgreSQL");
	expect_bad("{\"postgresql\": {\"parameters\": {\"work_mem\": [1]}}}", "must be a string");
	expect_bad("{\"postgresql\": {\"parameters\": {\"x.y\": \"a\\nb\"}}}", "control");
}

static void test_set_and_patch(void **state)
{
	json_object *root = json_object_new_object(), *patch;
	char err[512];

	(void)state;
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "ttl=6s", err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(
	    dyncfg_set(root, &agent_config_dyncfg_rules, "retry_timeout=1500ms", err, sizeof(err)),
	    PGW_OK);
	assert_int_equal(
	    dyncfg_set(root, &agent_config_dyncfg_rules, "synchronous_mode=on", err, sizeof(err)),
	    PGW_OK);
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "maximum_lag_on_failover=1MB",
				    err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(
	    dyncfg_set_pg(root, &agent_config_dyncfg_rules, "work_mem=4MB", err, sizeof(err)),
	    PGW_OK);
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules,
				    "postgresql.parameters.max_wal_size=2GB", err, sizeof(err)),
			 PGW_OK);
	assert_string_equal(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN),
			    "{\"ttl\":6,\"retry_timeout\":1.5,\"synchronous_mode\":true,"
			    "\"maximum_lag_on_failover\":1048576,\"postgresql\":{\"parameters\":"
			    "{\"work_mem\":\"4MB\",\"max_wal_size\":\"2GB\"}}}");
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "ttl=null", err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(
	    dyncfg_set_pg(root, &agent_config_dyncfg_rules, "work_mem=null", err, sizeof(err)),
	    PGW_OK);
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "ttl", err, sizeof(err)),
			 PGW_EINVAL);
	assert_int_equal(
	    dyncfg_set(root, &agent_config_dyncfg_rules, "loop_wait=x", err, sizeof(err)),
	    PGW_EINVAL);
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "nope=1", err, sizeof(err)),
			 PGW_EINVAL);
	assert_int_equal(
	    dyncfg_set_pg(root, &agent_config_dyncfg_rules, "port=1", err, sizeof(err)),
	    PGW_EINVAL);
	patch = json_tokener_parse("{\"synchronous_mode\": null, \"postgresql\": {\"parameters\":"
				   " {\"max_wal_size\": null, \"work_mem\": \"1MB\"}}}");
	dyncfg_merge_patch(root, patch);
	assert_string_equal(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN),
			    "{\"retry_timeout\":1.5,\"maximum_lag_on_failover\":1048576,"
			    "\"postgresql\":{\"parameters\":{\"work_mem\":\"1MB\"}}}");
	json_object_put(patch);
	json_object_put(root);
}

/* "backup": the cluster-wide [backup] settings, checked as the node file checks them. */
static void test_backup_settings(void **state)
{
	json_object *root = json_object_new_object();
	struct dyncfg c;
	char err[512];

	(void)state;
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "backup.schedule_full=1d",
				    err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules,
				    "backup.schedule_incr=0 */6 * * *", err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "backup.retention_full=4",
				    err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "backup.archive_async=on",
				    err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(
	    dyncfg_set(root, &agent_config_dyncfg_rules, "backup.compress=lz4", err, sizeof(err)),
	    PGW_OK);
	assert_string_equal(
	    json_object_to_json_string_ext(root,
					   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
	    "{\"backup\":{\"schedule_full\":\"1d\",\"schedule_incr\":\"0 */6 * * "
	    "*\",\"retention_full\":4,\"archive_async\":true,\"compress\":\"lz4\"}}");
	assert_int_equal(dyncfg_parse(json_object_to_json_string(root), &agent_config_dyncfg_rules,
				      &c, err, sizeof(err)),
			 PGW_OK);
	assert_string_equal(cmn_kvlist_get(&c.backup, "schedule_full"), "1d");
	assert_string_equal(cmn_kvlist_get(&c.backup, "retention_full"), "4");
	assert_string_equal(cmn_kvlist_get(&c.backup, "archive_async"), "true");

	/* Over a node's own values; without them again when the document drops them. */
	struct agent_config cfg;
	struct cmn_kvlist node = {0};
	bool changed = false;

	memset(&cfg, 0, sizeof(cfg));
	assert_int_equal(cmn_config_set(&agent_config_schema, &cfg, "backup", "retention_full", "2",
					err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(cmn_config_set(&agent_config_schema, &cfg, "backup", "schedule_diff",
					"12h", err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(cmn_config_set(&agent_config_schema, &cfg, "backup", "process_max", "2",
					err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(agent_config_backup_snapshot(&cfg, &node), PGW_OK);
	assert_int_equal(
	    agent_config_apply_dynamic_backup(&cfg, &c.backup, &node, &changed, err, sizeof(err)),
	    PGW_OK);
	assert_true(changed);
	assert_int_equal(cfg.backup_retention_full, 4);
	assert_string_equal(cfg.backup_schedule_full, "1d");
	assert_string_equal(cfg.backup_schedule_diff, "12h");
	assert_true(cfg.backup_archive_async);
	assert_int_equal(
	    agent_config_apply_dynamic_backup(&cfg, &c.backup, &node, &changed, err, sizeof(err)),
	    PGW_OK);
	assert_false(changed);
	dyncfg_free(&c);
	assert_int_equal(dyncfg_parse("{}", &agent_config_dyncfg_rules, &c, err, sizeof(err)),
			 PGW_OK);
	assert_int_equal(
	    agent_config_apply_dynamic_backup(&cfg, &c.backup, &node, &changed, err, sizeof(err)),
	    PGW_OK);
	assert_true(changed);
	assert_int_equal(cfg.backup_retention_full, 2);
	assert_null(cfg.backup_schedule_full);
	assert_false(cfg.backup_archive_async);
	dyncfg_free(&c);
	cmn_kvlist_free(&node);
	agent_config_free(&cfg);

	/* Removing the last one removes the object. */
	for (const char *k = "schedule_full\0schedule_incr\0retention_full\0archive_async\0"
			     "compress\0";
	     *k; k += strlen(k) + 1) {
		char a[64];

		snprintf(a, sizeof(a), "backup.%s=null", k);
		assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, a, err, sizeof(err)),
				 PGW_OK);
	}
	assert_string_equal(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN), "{}");

	/* A secret, a place or a program never comes from etcd; values are checked. */
	assert_int_equal(
	    dyncfg_set(root, &agent_config_dyncfg_rules, "backup.cipher_pass=x", err, sizeof(err)),
	    PGW_EINVAL);
	assert_non_null(strstr(err, "a node's own setting"));
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "backup.pgbackrest=/bin/sh",
				    err, sizeof(err)),
			 PGW_EINVAL);
	assert_int_equal(
	    dyncfg_set(root, &agent_config_dyncfg_rules, "backup.repo_path=/tmp", err, sizeof(err)),
	    PGW_EINVAL);
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules, "backup.retention_full=0",
				    err, sizeof(err)),
			 PGW_EINVAL);
	assert_non_null(strstr(err, "out of range"));
	assert_int_equal(dyncfg_set(root, &agent_config_dyncfg_rules,
				    "backup.schedule_full=sometimes", err, sizeof(err)),
			 PGW_EINVAL);
	assert_int_equal(
	    dyncfg_set(root, &agent_config_dyncfg_rules, "backup.compress=rar", err, sizeof(err)),
	    PGW_EINVAL);
	assert_non_null(strstr(err, "zst"));
	json_object_put(root);
	expect_bad("{\"backup\": {\"cipher_pass\": \"x\"}}", "cannot be set in the dynamic");
	expect_bad("{\"backup\": {\"process_max\": 0}}", "out of range");
	expect_bad("{\"backup\": {\"archive_async\": [1]}}", "expected a string");
	expect_bad("{\"backup\": 3}", "'backup' must be an object");
}

static int check(const char *vartype, const char *unit, const char *min, const char *max,
		 const char *enumvals, const char *context, const char *value)
{
	struct dyncfg_pg_setting s = {"p", vartype, unit, min, max, enumvals, context};
	char err[512];

	return dyncfg_check_pg_value(&s, value, err, sizeof(err));
}

static void test_pg_values(void **state)
{
	(void)state;
	/* bool */
	assert_int_equal(check("bool", "", "", "", "", "sighup", "on"), PGW_OK);
	assert_int_equal(check("bool", "", "", "", "", "sighup", "FALSE"), PGW_OK);
	assert_int_equal(check("bool", "", "", "", "", "sighup", "t"), PGW_OK);
	assert_int_equal(check("bool", "", "", "", "", "sighup", "o"), PGW_EINVAL);
	assert_int_equal(check("bool", "", "", "", "", "sighup", "maybe"), PGW_EINVAL);
	/* integer with a memory unit: work_mem is in kB, 64 .. 2147483647 */
	assert_int_equal(check("integer", "kB", "64", "2147483647", "", "user", "4MB"), PGW_OK);
	assert_int_equal(check("integer", "kB", "64", "2147483647", "", "user", "1.5MB"), PGW_OK);
	assert_int_equal(check("integer", "kB", "64", "2147483647", "", "user", "4096"), PGW_OK);
	assert_int_equal(check("integer", "kB", "64", "2147483647", "", "user", "32kB"),
			 PGW_EINVAL);
	assert_int_equal(check("integer", "kB", "64", "2147483647", "", "user", "4 XB"),
			 PGW_EINVAL);
	assert_int_equal(check("integer", "kB", "64", "2147483647", "", "user", "4s"), PGW_EINVAL);
	/* shared_buffers in 8kB pages: 16 .. 1073741823 */
	assert_int_equal(check("integer", "8kB", "16", "1073741823", "", "postmaster", "64MB"),
			 PGW_OK);
	assert_int_equal(check("integer", "8kB", "16", "1073741823", "", "postmaster", "64kB"),
			 PGW_EINVAL);
	/* time: ms */
	assert_int_equal(check("integer", "ms", "-1", "2147483647", "", "superuser", "250ms"),
			 PGW_OK);
	assert_int_equal(check("integer", "ms", "-1", "2147483647", "", "superuser", "2min"),
			 PGW_OK);
	assert_int_equal(check("integer", "ms", "-1", "2147483647", "", "superuser", "2MB"),
			 PGW_EINVAL);
	/* no unit */
	assert_int_equal(check("integer", "", "1", "262143", "", "postmaster", "300"), PGW_OK);
	assert_int_equal(check("integer", "", "1", "262143", "", "postmaster", "300MB"),
			 PGW_EINVAL);
	assert_int_equal(check("integer", "", "1", "262143", "", "postmaster", "lots"), PGW_EINVAL);
	/* real */
	assert_int_equal(check("real", "", "0", "1", "", "sighup", "0.9"), PGW_OK);
	assert_int_equal(check("real", "", "0", "1", "", "sighup", "1.1"), PGW_EINVAL);
	/* enum, case-insensitive */
	assert_int_equal(
	    check("enum", "", "", "", "minimal\x1freplica\x1flogical", "postmaster", "LOGICAL"),
	    PGW_OK);
	assert_int_equal(
	    check("enum", "", "", "", "minimal\x1freplica\x1flogical", "postmaster", "archive"),
	    PGW_EINVAL);
	/* string, internal */
	assert_int_equal(check("string", "", "", "", "", "sighup", "anything"), PGW_OK);
	assert_int_equal(check("integer", "", "", "", "", "internal", "1"), PGW_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_full_document), cmocka_unit_test(test_parse_refusals),
	    cmocka_unit_test(test_set_and_patch),	cmocka_unit_test(test_pg_values),
	    cmocka_unit_test(test_backup_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

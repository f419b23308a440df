/*
 * Unit tests of the cluster layer's pure parts: a member's /status document
 * (cluster/member.c), the flattened view of the dynamic configuration
 * (cluster/confedit.c), the switchover checks that need no member's answer and the
 * scheduled time (cluster/switchover.c), and the lease timing (cluster/clustercfg.c).
 */
#include "cluster/clustercfg.h"
#include "cluster/confedit.h"
#include "cluster/keys.h"
#include "cluster/member.h"
#include "cluster/switchover.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_member_status_document(void **state)
{
	struct member_status st;

	(void)state;
	assert_true(member_parse_status("{\"role\": \"replica\", \"state\": \"streaming\", "
					"\"timeline\": 3, \"lsn\": 50331648, \"lag\": 16, "
					"\"lag_seconds\": 2.5}",
					&st));
	assert_string_equal(st.role, "replica");
	assert_string_equal(st.state, "streaming");
	assert_int_equal(st.timeline, 3);
	assert_int_equal(st.lsn, 50331648);
	assert_int_equal(st.lag, 16);
	assert_true(st.lag_seconds == 2.5);
	/* Absent fields are empty, not stale. */
	assert_true(member_parse_status("{}", &st));
	assert_string_equal(st.role, "");
	assert_int_equal(st.timeline, 0);
	assert_true(st.lag_seconds == 0);
	assert_true(member_parse_status("{\"lag_seconds\": null}", &st));
	assert_true(st.lag_seconds == -1);
	/* Too long a role is cut, never overflows. */
	assert_true(member_parse_status("{\"role\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", &st));
	assert_int_equal(strlen(st.role), sizeof(st.role) - 1);
	assert_false(member_parse_status("[1, 2]", &st));
	assert_false(member_parse_status("not json", &st));
	assert_false(member_parse_status(NULL, &st));
}

static void test_flattened_configuration(void **state)
{
	char *text;

	(void)state;
	text = confedit_flatten("{\"ttl\": 4, \"postgresql\": {\"parameters\": "
				"{\"work_mem\": \"8MB\"}}, \"pause\": false}");
	assert_non_null(text);
	assert_string_equal(text, "ttl = 4\npostgresql.parameters.work_mem = \"8MB\"\n"
				  "pause = false\n");
	free(text);
	text = confedit_flatten("");
	assert_string_equal(text, "");
	free(text);
	text = confedit_flatten("[1]");
	assert_string_equal(text, "");
	free(text);
}

static struct dcs_cluster cl;
static const struct switchover_policy policy = {.cluster_name = "demo", .maximum_lag = 1024};

static int setup(void **state)
{
	(void)state;
	memset(&cl, 0, sizeof(cl));
	cl.has_leader = true;
	snprintf(cl.leader, sizeof(cl.leader), "n1");
	for (int i = 0; i < 3; i++) {
		struct dcs_member *m = &cl.members[cl.n_members++];

		snprintf(m->name, sizeof(m->name), "n%d", i + 1);
		/* No REST API to ask: every check that would need one is left alone here. */
		snprintf(m->api_url, sizeof(m->api_url), "http://127.0.0.1:1");
	}
	return 0;
}

static const char *refusal(const char *leader, const char *candidate, bool failover, bool *bad)
{
	static char why[400];

	return switchover_refusal(&policy, &cl, leader, candidate, failover, why, sizeof(why), bad);
}

static void test_switchover_refusals(void **state)
{
	bool bad;
	const char *why;

	(void)state;
	/* Wrong requests: 400. */
	why = refusal("n2", NULL, false, &bad);
	assert_true(bad);
	assert_string_equal(why, "n2 is not the leader (n1 is)");
	why = refusal("n1", "n9", false, &bad);
	assert_true(bad);
	assert_string_equal(why, "no member named n9 in cluster demo");
	why = refusal("n1", "n1", false, &bad);
	assert_true(bad);
	assert_string_equal(why, "n1 is already the leader");
	why = refusal(NULL, NULL, true, &bad);
	assert_true(bad);
	assert_string_equal(why, "a failover needs a candidate");
	/* The cluster's state: 412. */
	cl.members[1].nofailover = true;
	why = refusal("n1", "n2", false, &bad);
	assert_false(bad);
	assert_string_equal(why, "cannot switch over to n2: n2 is tagged nofailover");
	cl.has_sync = true;
	snprintf(cl.sync_standby, sizeof(cl.sync_standby), "n2");
	why = refusal("n1", "n3", true, &bad);
	assert_string_equal(why, "cannot fail over to n3: n3 is not a synchronous standby "
				 "(synchronous set: n2)");
	cl.has_switchover = true;
	snprintf(cl.switchover_candidate, sizeof(cl.switchover_candidate), "n3");
	why = refusal("n1", "n3", false, &bad);
	assert_string_equal(why, "a switchover is already pending (to n3)");
	cl.paused = true;
	why = refusal("n1", "n3", false, &bad);
	assert_false(bad);
	assert_string_equal(why, "cluster demo is in maintenance mode: 'pgwarden resume' first");
	cl.paused = cl.has_switchover = cl.has_leader = false;
	why = refusal(NULL, "n3", false, &bad);
	assert_string_equal(why, "cluster demo has no leader to switch over from: use "
				 "'pgwarden failover --candidate NAME'");
}

static void test_scheduled_time(void **state)
{
	(void)state;
	assert_int_equal(switchover_parse_time("now"), 0);
	assert_int_equal(switchover_parse_time(""), 0);
	assert_int_equal(switchover_parse_time("1800000000"), 1800000000);
	assert_int_equal(switchover_parse_time("2027-01-15T10:30:00Z"), 1800009000);
	assert_int_equal(switchover_parse_time("2027-01-15T10:30"), 1800009000);
	assert_int_equal(switchover_parse_time("2027-01-15T10:30:00+00:00"), 1800009000);
	assert_int_equal(switchover_parse_time("2027-01-15T10:30:00+02:00"), -1);
	assert_int_equal(switchover_parse_time("tomorrow"), -1);
	assert_int_equal(switchover_parse_time("-5"), -1);
}

static void test_lease_timing(void **state)
{
	char err[300];

	(void)state;
	assert_int_equal(cluster_check_timing(4000, 1000, 1500, err, sizeof(err)), PGW_OK);
	assert_int_equal(cluster_check_timing(4500, 1000, 1000, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "whole number of seconds"));
	assert_int_equal(cluster_check_timing(4000, 1000, 1600, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "must not exceed ttl"));
	assert_int_equal(cluster_check_timing(2000, 1000, 500, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "demote margin"));
}

static void test_key_names_are_patronis(void **state)
{
	(void)state;
	/* Patroni's names: its tools (and ours) find the same keys. */
	assert_string_equal(DCS_KEY_LEADER, "leader");
	assert_string_equal(DCS_KEY_CONFIG, "config");
	assert_string_equal(DCS_KEY_FAILOVER, "failover");
	assert_string_equal(DCS_KEY_SYNC, "sync");
	assert_string_equal(DCS_KEY_INITIALIZE, "initialize");
	assert_string_equal(DCS_KEY_HISTORY, "history");
	assert_string_equal(DCS_PREFIX_MEMBERS, "members/");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_member_status_document),
	    cmocka_unit_test(test_flattened_configuration),
	    cmocka_unit_test_setup(test_switchover_refusals, setup),
	    cmocka_unit_test(test_scheduled_time),
	    cmocka_unit_test(test_lease_timing),
	    cmocka_unit_test(test_key_names_are_patronis),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

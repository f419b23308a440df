/*
 * Unit tests of the agent's GET /metrics text (src/agent/metrics.c): Patroni's names
 * with their labels, label values escaped, the leader's per-replica lag, and every
 * sample after its family's HELP and TYPE.
 */
#include "agent/metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char *render(const struct metrics_view *v)
{
	struct doc d = {0};
	char *s;

	metrics_render(&d, v);
	assert_false(d.failed);
	assert_non_null(d.b.data);
	s = strndup(d.b.data, d.b.len);
	cmn_buf_free(&d.b);
	return s;
}

/* The line that starts with prefix (a sample's name and labels), or NULL. */
static const char *line_of(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (strncmp(l, prefix, n) == 0)
			return l + n;
	return NULL;
}

static void assert_sample(const char *text, const char *series, const char *value)
{
	const char *v = line_of(text, series);
	char want[64];

	if (!v) {
		fputs(text, stderr);
		fail_msg("no sample %s (the text is above)", series);
	}
	snprintf(want, sizeof(want), " %s\n", value);
	if (strncmp(v, want, strlen(want)) != 0)
		fail_msg("%s: %.30s, want%s", series, v, want);
}

static void test_leader(void **state)
{
	struct agent_counters c = {
	    .loops = 7, .renewals_ok = 5, .renewals_failed = 1, .promotions = 2};
	struct metrics_standby sb[2] = {{.name = "node2", .state = "streaming", .lag_bytes = 42},
					{.name = "node3", .state = "catchup", .lag_seconds = 1.5}};
	struct metrics_view v = {.scope = "demo",
				 .name = "node1",
				 .version = "1.2.3",
				 .pg_running = true,
				 .primary = true,
				 .xlog_location = 123456789,
				 .received_location = 5,
				 .server_version = 150010,
				 .timeline = 3,
				 .dcs_ok = true,
				 .counters = &c,
				 .standbys = sb,
				 .n_standbys = 2};
	char *t;

	(void)state;
	c.decisions[HA_KEEP_LEADER] = 6;
	t = render(&v);
	assert_sample(t, "patroni_version{scope=\"demo\",name=\"node1\"}", "10203");
	assert_sample(t, "patroni_primary{scope=\"demo\",name=\"node1\"}", "1");
	assert_sample(t, "patroni_master{scope=\"demo\",name=\"node1\"}", "1");
	assert_sample(t, "patroni_replica{scope=\"demo\",name=\"node1\"}", "0");
	assert_sample(t, "patroni_xlog_location{scope=\"demo\",name=\"node1\"}", "123456789");
	/* Not a replica: its received position is not reported. */
	assert_sample(t, "patroni_xlog_received_location{scope=\"demo\",name=\"node1\"}", "0");
	assert_sample(t, "patroni_postgres_timeline{scope=\"demo\",name=\"node1\"}", "3");
	assert_sample(t, "patroni_postgres_server_version{scope=\"demo\",name=\"node1\"}",
		      "150010");
	assert_sample(t, "pgwarden_ha_loop_seconds_count{scope=\"demo\",name=\"node1\"}", "7");
	assert_sample(t, "pgwarden_promotions_total{scope=\"demo\",name=\"node1\"}", "2");
	assert_sample(
	    t, "pgwarden_lease_renewals_total{scope=\"demo\",name=\"node1\",result=\"ok\"}", "5");
	assert_sample(
	    t, "pgwarden_lease_renewals_total{scope=\"demo\",name=\"node1\",result=\"failed\"}",
	    "1");
	assert_sample(
	    t, "pgwarden_ha_decisions_total{scope=\"demo\",name=\"node1\",action=\"keep_leader\"}",
	    "6");
	assert_sample(
	    t,
	    "pgwarden_replication_lag_bytes{scope=\"demo\",name=\"node1\",replica=\"node2\","
	    "state=\"streaming\"}",
	    "42");
	assert_sample(t,
		      "pgwarden_replication_lag_seconds{scope=\"demo\",name=\"node1\","
		      "replica=\"node3\",state=\"catchup\"}",
		      "1.500000");
	/* Every family: HELP then TYPE, before its first sample. */
	assert_non_null(strstr(t, "# HELP patroni_xlog_location Current location of the Postgres "
				  "transaction log, 0 if this node is not the leader.\n"
				  "# TYPE patroni_xlog_location counter\npatroni_xlog_location{"));
	assert_non_null(strstr(t, "# TYPE pgwarden_ha_loop_seconds summary\n"
				  "pgwarden_ha_loop_seconds_sum{"));
	free(t);
}

static void test_replica_and_escaping(void **state)
{
	struct agent_counters c = {0};
	struct metrics_view v = {.scope = "a\"b\\c\nd",
				 .name = "n",
				 .version = "0.1",
				 .pg_running = true,
				 .replica = true,
				 .streaming = true,
				 .xlog_location = 99,
				 .received_location = 10,
				 .replayed_location = 9,
				 .counters = &c};
	char *t;

	(void)state;
	t = render(&v);
	/* A replica: no xlog_location (the leader's), its own positions. */
	assert_sample(t, "patroni_xlog_location{scope=\"a\\\"b\\\\c\\nd\",name=\"n\"}", "0");
	assert_sample(t, "patroni_xlog_received_location{scope=\"a\\\"b\\\\c\\nd\",name=\"n\"}",
		      "10");
	assert_sample(t, "patroni_postgres_streaming{scope=\"a\\\"b\\\\c\\nd\",name=\"n\"}", "1");
	assert_null(strstr(t, "pgwarden_replication_lag_bytes{"));
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_leader),
	    cmocka_unit_test(test_replica_and_escaping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

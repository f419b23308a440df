/* Unit tests of backup schedules (src/node/schedule.c): intervals and cron in UTC. */
#include "node/backup.h"
#include "node/schedule.h"
#include "common/timeutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* 2026-12-06 03:06:00 UTC is a Sunday. */
#define SUN_0306 1796526360LL

static int64_t next_of(const char *text, int64_t after)
{
	struct schedule s;
	char why[256];

	assert_int_equal(schedule_parse(text, &s, why, sizeof(why)), 0);
	return schedule_next(&s, after);
}

static void test_parse(void **state)
{
	struct schedule s;
	char why[256];

	(void)state;
	assert_int_equal(schedule_parse("", &s, why, sizeof(why)), 0);
	assert_false(s.set);
	assert_int_equal(schedule_parse(NULL, &s, why, sizeof(why)), 0);
	assert_int_equal(schedule_parse("6h", &s, why, sizeof(why)), 0);
	assert_true(s.set && s.interval_s == 6 * 3600);
	assert_int_equal(schedule_parse("30min", &s, why, sizeof(why)), 0);
	assert_true(s.interval_s == 1800);
	assert_int_equal(schedule_parse("1w", &s, why, sizeof(why)), 0);
	assert_int_equal(schedule_parse("0 1 * * 0", &s, why, sizeof(why)), 0);
	assert_int_equal(schedule_parse("*/15 0-6,22 1,15 */2 1-5", &s, why, sizeof(why)), 0);
	assert_true(s.minute == ((1ULL << 0) | (1ULL << 15) | (1ULL << 30) | (1ULL << 45)));

	assert_int_equal(schedule_parse("30s", &s, why, sizeof(why)), -1); /* under a minute */
	assert_int_equal(schedule_parse("daily", &s, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "interval"));
	assert_int_equal(schedule_parse("0 1 * *", &s, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "five cron fields"));
	assert_int_equal(schedule_parse("60 1 * * 0", &s, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "minute"));
	assert_int_equal(schedule_parse("0 24 * * 0", &s, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "hour"));
	assert_int_equal(schedule_parse("0 1 0 * 0", &s, why, sizeof(why)), -1);
	assert_int_equal(schedule_parse("0 1 * 13 0", &s, why, sizeof(why)), -1);
	assert_int_equal(schedule_parse("0 1 * * 8", &s, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "day of week"));
	assert_int_equal(schedule_parse("0 1 * * 5-2", &s, why, sizeof(why)), -1);
	assert_int_equal(schedule_parse("*/0 1 * * *", &s, why, sizeof(why)), -1);
	assert_int_equal(schedule_parse("a 1 * * *", &s, why, sizeof(why)), -1);
}

static void test_next(void **state)
{
	(void)state;
	assert_true(next_of("6h", SUN_0306) == SUN_0306 + 6 * 3600);
	/* every hour on the hour: 04:00 */
	assert_true(next_of("0 * * * *", SUN_0306) == SUN_0306 + 54 * 60);
	/* Sundays at 01:00: next week */
	assert_true(next_of("0 1 * * 0", SUN_0306) == SUN_0306 - 2 * 3600 - 6 * 60 + 7 * 86400);
	/* 7 is Sunday too */
	assert_true(next_of("0 1 * * 7", SUN_0306) == next_of("0 1 * * 0", SUN_0306));
	/* Monday to Saturday at 01:00: tomorrow */
	assert_true(next_of("0 1 * * 1-6", SUN_0306) == SUN_0306 - 2 * 3600 - 6 * 60 + 86400);
	/* the same minute does not fire again */
	assert_true(next_of("6 3 * * *", SUN_0306) == SUN_0306 + 86400);
	/* 1 January 00:00 */
	assert_true(next_of("0 0 1 1 *", SUN_0306) == 1798761600LL);
	/* day of month OR day of week when both are set: the 7th (Monday) */
	assert_true(next_of("0 0 7 * 3", SUN_0306) == SUN_0306 - 3 * 3600 - 6 * 60 + 86400);
	/* 31 February never comes */
	assert_true(next_of("0 0 31 2 *", SUN_0306) == -1);
}

static void test_due(void **state)
{
	struct schedule s, none;
	char why[256];

	(void)state;
	assert_int_equal(schedule_parse("0 1 * * 0", &s, why, sizeof(why)), 0);
	assert_int_equal(schedule_parse("", &none, why, sizeof(why)), 0);
	assert_true(schedule_due(&s, 0, SUN_0306)); /* never run: at once */
	assert_false(schedule_due(&none, 0, SUN_0306));
	/* last at 00:30 today: 01:00 passed, due */
	assert_true(schedule_due(&s, SUN_0306 - 2 * 3600 - 36 * 60, SUN_0306));
	/* last at 01:10 today: not before next Sunday */
	assert_false(schedule_due(&s, SUN_0306 - 2 * 3600 + 4 * 60, SUN_0306));
	assert_true(schedule_due(&s, SUN_0306 - 2 * 3600 + 4 * 60, SUN_0306 + 7 * 86400));
}

static void add_member(struct dcs_cluster *c, const char *name, const char *state)
{
	struct dcs_member *m = &c->members[c->n_members++];

	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->state, sizeof(m->state), "%s", state);
}

/* The first scheduled look: as soon as every replica streams, else after the wait. */
static void test_first_look(void **state)
{
	struct dcs_cluster c;
	struct backup_state st;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_false(backup_replicas_ready(&c)); /* no leader */
	c.has_leader = true;
	snprintf(c.leader, sizeof(c.leader), "node1");
	add_member(&c, "node1", "running");
	assert_false(backup_replicas_ready(&c)); /* no replica at all */
	add_member(&c, "node2", "streaming");
	add_member(&c, "node3", "starting");
	assert_false(backup_replicas_ready(&c)); /* node3 still cloning */
	snprintf(c.members[2].state, sizeof(c.members[2].state), "streaming");
	assert_true(backup_replicas_ready(&c));

	memset(&st, 0, sizeof(st));
	backup_schedule_first(&st);
	assert_true(st.sched_next_ms > cmn_now_ms() + 10000);
	assert_false(backup_schedule_due(&st));
	st.replicas_ready = true;
	assert_true(backup_schedule_due(&st));
	/* After the first look, only the minute counts. */
	st.sched_first = false;
	assert_false(backup_schedule_due(&st));
	st.sched_next_ms = cmn_now_ms() - 1;
	assert_true(backup_schedule_due(&st));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_next),
	    cmocka_unit_test(test_due),
	    cmocka_unit_test(test_first_look),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

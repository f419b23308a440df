/*
 * Unit tests of point-in-time recovery targets (src/cli/pitr.c): what the operator types,
 * and the choice of backup, or the refusal, from pgBackRest's description of the repository.
 */
#include "cli/pitr.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void test_parse_time(void **state)
{
	struct pitr_target t;
	char err[256];

	(void)state;
	assert_int_equal(pitr_parse(PITR_TIME, "2026-12-06 03:06:09+00", &t, err, sizeof(err)), 0);
	assert_string_equal(t.text, "2026-12-06 03:06:09+00");
	assert_true(t.epoch == 1796526369.0);
	/* other zones become UTC; the fraction is kept */
	assert_int_equal(
	    pitr_parse(PITR_TIME, "2026-12-06T04:36:09.25+01:30", &t, err, sizeof(err)), 0);
	assert_string_equal(t.text, "2026-12-06 03:06:09.25+00");
	assert_true(t.epoch == 1796526369.25);
	assert_int_equal(pitr_parse(PITR_TIME, "2026-12-05 22:06:09-0500", &t, err, sizeof(err)),
			 0);
	assert_string_equal(t.text, "2026-12-06 03:06:09+00");
	assert_int_equal(pitr_parse(PITR_TIME, "2026-12-06 03:06:09Z", &t, err, sizeof(err)), 0);
	assert_int_equal(pitr_parse(PITR_TIME, "2026-12-06 03:06:09 UTC", &t, err, sizeof(err)), 0);
	assert_string_equal(t.text, "2026-12-06 03:06:09+00");

	assert_int_equal(pitr_parse(PITR_TIME, "2026-12-06 03:06:09", &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no time zone"));
	assert_int_equal(pitr_parse(PITR_TIME, "2026-02-31 03:06:09+00", &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no such date"));
	assert_int_equal(pitr_parse(PITR_TIME, "2026-12-06 25:06:09+00", &t, err, sizeof(err)), -1);
	assert_int_equal(pitr_parse(PITR_TIME, "2026-12-06 03:06:09+0x", &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad time zone"));
	assert_int_equal(pitr_parse(PITR_TIME, "yesterday", &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad time 'yesterday'"));
	assert_int_equal(pitr_parse(PITR_TIME, "2026-12-06 03:06:09.+00", &t, err, sizeof(err)),
			 -1);
}

static void test_parse_lsn_xid(void **state)
{
	struct pitr_target t;
	char err[256];

	(void)state;
	assert_int_equal(pitr_parse(PITR_LSN, "0/6004c10", &t, err, sizeof(err)), 0);
	assert_true(t.lsn == 0x6004C10ULL);
	assert_string_equal(t.text, "0/6004C10");
	assert_int_equal(pitr_parse(PITR_LSN, "6004C10", &t, err, sizeof(err)), -1);
	assert_int_equal(pitr_parse(PITR_LSN, "0/6004C10 ", &t, err, sizeof(err)), -1);
	assert_int_equal(pitr_parse(PITR_XID, "728", &t, err, sizeof(err)), 0);
	assert_true(t.xid == 728);
	assert_int_equal(pitr_parse(PITR_XID, "2", &t, err, sizeof(err)), -1);
	assert_int_equal(pitr_parse(PITR_XID, "-5", &t, err, sizeof(err)), -1);
	assert_int_equal(pitr_parse(PITR_XID, "99999999999", &t, err, sizeof(err)), -1);
	assert_int_equal(pitr_parse(PITR_XID, "12a", &t, err, sizeof(err)), -1);
	assert_int_equal(pitr_parse(PITR_LATEST, NULL, &t, err, sizeof(err)), 0);
}

static void test_segment_end(void **state)
{
	(void)state;
	assert_true(pitr_segment_end("000000010000000000000006") == 0x7000000ULL);
	assert_true(pitr_segment_end("0000000300000001000000FF") == 0x200000000ULL);
	assert_true(pitr_segment_end("00000001000000000000006") == 0);
	assert_true(pitr_segment_end(NULL) == 0);
}

/* Two backups: F ends at 1000 (LSN 0/5000100), I at 2000 (0/8000050); WAL up to seg 0A. */
static const char *repo_json =
    "{\"backup\": ["
    "{\"label\": \"F\", \"timestamp\": {\"start\": 990, \"stop\": 1000},"
    " \"lsn\": {\"start\": \"0/5000028\", \"stop\": \"0/5000100\"}},"
    "{\"label\": \"I\", \"timestamp\": {\"start\": 1990, \"stop\": 2000},"
    " \"lsn\": {\"start\": \"0/8000028\", \"stop\": \"0/8000050\"}}],"
    " \"archive\": [{\"min\": \"000000010000000000000005\","
    " \"max\": \"00000002000000000000000A\"}]}";

static int choose(enum pitr_kind kind, const char *text, const char *label, char *out, char *err)
{
	struct pitr_target t;
	json_object *repo = json_tokener_parse(repo_json);
	int rc;

	assert_non_null(repo);
	if (pitr_parse(kind, text, &t, err, 256) != 0)
		return -2;
	rc = pitr_choose(repo, &t, label, 5000.0, out, 64, err, 256);
	json_object_put(repo);
	return rc;
}

static void test_choose(void **state)
{
	char out[64], err[256];

	(void)state;
	assert_int_equal(choose(PITR_LATEST, NULL, NULL, out, err), 0);
	assert_string_equal(out, "I");
	assert_int_equal(choose(PITR_XID, "900", NULL, out, err), 0);
	assert_string_equal(out, "F");
	assert_int_equal(choose(PITR_LSN, "0/7000000", NULL, out, err), 0);
	assert_string_equal(out, "F");
	assert_int_equal(choose(PITR_LSN, "0/8000050", NULL, out, err), 0);
	assert_string_equal(out, "I");
	assert_int_equal(choose(PITR_LSN, "0/5000000", NULL, out, err), -1);
	assert_non_null(strstr(err, "before the restorable window"));
	assert_non_null(strstr(err, "oldest backup, F"));
	assert_int_equal(choose(PITR_LSN, "0/B000001", NULL, out, err), -1);
	assert_non_null(strstr(err, "past the archived WAL"));
	assert_int_equal(choose(PITR_LSN, "0/B000000", NULL, out, err), 0);
	/* a named backup must exist and reach the target */
	assert_int_equal(choose(PITR_LSN, "0/7000000", "I", out, err), -1);
	assert_non_null(strstr(err, "backup I ends at"));
	assert_int_equal(choose(PITR_LATEST, NULL, "F", out, err), 0);
	assert_string_equal(out, "F");
	assert_int_equal(choose(PITR_LATEST, NULL, "X", out, err), -1);
	assert_non_null(strstr(err, "no backup 'X'"));
}

static void test_choose_time(void **state)
{
	struct pitr_target t = {.kind = PITR_TIME};
	json_object *repo = json_tokener_parse(repo_json), *empty = json_tokener_parse("{}");
	char out[64], err[256];

	(void)state;
	snprintf(t.text, sizeof(t.text), "T");
	t.epoch = 1500.0;
	assert_int_equal(pitr_choose(repo, &t, NULL, 5000.0, out, 64, err, 256), 0);
	assert_string_equal(out, "F");
	t.epoch = 2001.0;
	assert_int_equal(pitr_choose(repo, &t, NULL, 5000.0, out, 64, err, 256), 0);
	assert_string_equal(out, "I");
	t.epoch = 2000.5; /* within I's last second: I may not be consistent yet */
	assert_int_equal(pitr_choose(repo, &t, NULL, 5000.0, out, 64, err, 256), 0);
	assert_string_equal(out, "F");
	t.epoch = 1000.5;
	assert_int_equal(pitr_choose(repo, &t, NULL, 5000.0, out, 64, err, 256), -1);
	assert_non_null(strstr(err, "before the restorable window"));
	t.epoch = 6000.0;
	assert_int_equal(pitr_choose(repo, &t, NULL, 5000.0, out, 64, err, 256), -1);
	assert_non_null(strstr(err, "in the future"));
	t.epoch = 1500.0;
	assert_int_equal(pitr_choose(empty, &t, NULL, 5000.0, out, 64, err, 256), -1);
	assert_non_null(strstr(err, "no backup"));
	json_object_put(repo);
	json_object_put(empty);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_time),	cmocka_unit_test(test_parse_lsn_xid),
	    cmocka_unit_test(test_segment_end), cmocka_unit_test(test_choose),
	    cmocka_unit_test(test_choose_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

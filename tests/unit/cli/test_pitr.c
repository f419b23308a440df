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

static void test_history_and_names(void **state)
{
	struct tl_switch h[4];
	struct pitr_segment seg;

	(void)state;
	assert_int_equal(pgcontrol_parse_history("1\t0/B0000A0\tno recovery target specified\n\n"
						 "2\t0/D000000\tat restore point\n",
						 h, 4),
			 2);
	assert_int_equal(h[0].tl, 1);
	assert_true(h[0].switch_lsn == 0xB0000A0ULL);
	assert_int_equal(h[1].tl, 2);
	assert_int_equal(pgcontrol_parse_history("", h, 4), 0);
	assert_int_equal(pgcontrol_parse_history("x\t0/1\n", h, 4), -1);
	assert_int_equal(pgcontrol_parse_history("1\tzz\n", h, 4), -1);
	assert_int_equal(pgcontrol_parse_history("1\t0/1\n2\t0/2\n", h, 1), -1);

	assert_int_equal(pitr_parse_segment_name("000000020000000100000003-ab12.zst", &seg), 1);
	assert_int_equal(seg.tl, 2);
	assert_true(seg.segno == 256 + 3);
	assert_int_equal(pitr_parse_segment_name("000000020000000100000003", &seg), 1);
	assert_int_equal(pitr_parse_segment_name("000000020000000100000003.partial-ab.zst", &seg),
			 0);
	assert_int_equal(pitr_parse_segment_name("000000010000000000000002.00000028.backup", &seg),
			 0);
	assert_int_equal(pitr_parse_segment_name("00000002.history", &seg), 0);
	assert_int_equal(pitr_parse_segment_name("0000000200000001000000zz-ab", &seg), 0);
}

static void test_continuity(void **state)
{
	/* TL1: 5..0A (0B only partial: failover at 0/B0000A0); TL2: 0B..0C, switchover at
	 * the start of 0D; TL3: 0D..0F */
	struct pitr_segment segs[] = {{1, 5},  {1, 6},	{1, 7},	 {1, 8},  {1, 9}, {1, 10},
				      {2, 11}, {2, 12}, {3, 13}, {3, 14}, {3, 15}};
	struct tl_switch h[] = {{1, 0xB0000A0ULL}, {2, 0xD000000ULL}};
	struct pitr_segment start = {1, 5};
	char report[512];
	size_t checked;

	(void)state;
	assert_int_equal(
	    pitr_check_continuity(segs, 11, h, 2, 3, start, report, sizeof(report), &checked), 0);
	assert_int_equal((int)checked, 11);
	/* a hole on timeline 2 */
	segs[6].segno = 99;
	assert_int_equal(
	    pitr_check_continuity(segs, 11, h, 2, 3, start, report, sizeof(report), &checked), 1);
	assert_non_null(strstr(report, "missing 00000002000000000000000B (timeline 2)"));
	segs[6].segno = 11;
	/* the oldest backup on timeline 2 */
	start.tl = 2, start.segno = 12;
	assert_int_equal(
	    pitr_check_continuity(segs, 11, h, 2, 3, start, report, sizeof(report), &checked), 0);
	assert_int_equal((int)checked, 4);
	/* a backup on a timeline that is not in the history */
	start.tl = 4;
	assert_int_equal(
	    pitr_check_continuity(segs, 11, h, 2, 3, start, report, sizeof(report), &checked), 1);
	assert_non_null(strstr(report, "not in timeline 3's history"));
	/* one timeline, the last segment missing in the middle */
	start.tl = 1, start.segno = 5;
	segs[2].tl = 7;
	assert_int_equal(
	    pitr_check_continuity(segs, 6, NULL, 0, 1, start, report, sizeof(report), &checked), 1);
	assert_non_null(strstr(report, "missing 000000010000000000000007"));
	/* nothing on the latest timeline yet: nothing missing there */
	segs[2].tl = 1;
	assert_int_equal(
	    pitr_check_continuity(segs, 6, h, 1, 2, start, report, sizeof(report), &checked), 0);
	assert_int_equal((int)checked, 6);
}

static const char *verify_damaged =
    "2026-12-06 03:27:54.252 P00   INFO: verify command begin 2.45: "
    "--config=/tmp/rt/s2/node1/pgbackrest/pgbackrest.conf --exec-id=23450-593bdb48 "
    "--log-level-console=info --log-level-file=info --log-path=/tmp/rt/s2/node1/pgbackrest/log "
    "--output=text --process-max=2 --repo1-path=/tmp/rt/s2/backup --stanza=s2 --verbose\n"
    "2026-12-06 03:27:54.950 P01   INFO: invalid checksum "
    "'20261206-032022F/pg_data/base/5/1255.zst'\n"
    "2026-12-06 03:27:55.178 P00   INFO: stanza: s2\n"
    "                                    status: error\n"
    "                                      archiveId: 15-1, total WAL checked: 14, total valid "
    "WAL: 14\n"
    "                                        missing: 0, checksum invalid: 0, size invalid: 0, "
    "other: 0\n"
    "                                      backup: 20261206-032022F, status: invalid, total files "
    "checked: 964, total valid files: 963\n"
    "                                        missing: 0, checksum invalid: 1, size invalid: 0, "
    "other: 0\n"
    "stanza: s2\n"
    "status: error\n"
    "  archiveId: 15-1, total WAL checked: 14, total valid WAL: 14\n"
    "    missing: 0, checksum invalid: 0, size invalid: 0, other: 0\n"
    "  backup: 20261206-032022F, status: invalid, total files checked: 964, total valid files: "
    "963\n"
    "    missing: 0, checksum invalid: 1, size invalid: 0, other: 0\n"
    "2026-12-06 03:27:55.179 P00   INFO: verify command end: completed successfully (946ms)\n"
    "";

static void test_verify(void **state)
{
	struct pitr_verify v;

	(void)state;
	assert_int_equal(pitr_parse_verify(verify_damaged, &v), 0);
	assert_int_equal((int)v.n_backup, 1);
	assert_string_equal(v.backup[0].label, "20261206-032022F");
	assert_false(v.backup[0].valid);
	assert_string_equal(v.backup[0].problems, "invalid checksum 'pg_data/base/5/1255.zst'");
	assert_true(v.archive_ok);
	assert_false(v.stanza_ok);
	assert_int_equal(pitr_parse_verify("stanza: s\nstatus: ok\n  archiveId: 15-1, total WAL "
					   "checked: 3, total valid WAL: 2\n  backup: "
					   "A, status: valid, total files checked: 9\n",
					   &v),
			 0);
	assert_true(v.stanza_ok);
	assert_false(v.archive_ok);
	assert_true(v.backup[0].valid);
	assert_int_equal(pitr_parse_verify("P00 ERROR: [055]: unable to load info file\n", &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_time),	cmocka_unit_test(test_parse_lsn_xid),
	    cmocka_unit_test(test_segment_end), cmocka_unit_test(test_choose),
	    cmocka_unit_test(test_choose_time), cmocka_unit_test(test_history_and_names),
	    cmocka_unit_test(test_continuity),	cmocka_unit_test(test_verify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests of the pg_control reader (src/node/pgcontrol.c) on a real PostgreSQL 15 file. */
#include "node/pgcontrol.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/*
 * The first 292 bytes of global/pg_control of a cluster initdb of PostgreSQL 15.x made
 * and left shut down. pg_controldata said: system identifier 7716758286601097329, state
 * "shut down", latest checkpoint location 0/1500718, its TimeLineID 1.
 */
static const unsigned char real_control[] =
    "\x71\x10\x69\xca\xc6\x6e\x17\x6b\x14\x05\x00\x00\x25\x77\x0d\x0c"
    "\x01\x00\x00\x00\x00\x00\x00\x00\xc7\x6e\x17\x6b\x00\x00\x00\x00"
    "\x18\x07\x50\x01\x00\x00\x00\x00\x18\x07\x50\x01\x00\x00\x00\x00"
    "\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"
    "\xd4\x02\x00\x00\x00\x00\x00\x00\x04\x35\x00\x00\x01\x00\x00\x00"
    "\x00\x00\x00\x00\xcc\x02\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00"
    "\x01\x00\x00\x00\x00\x00\x00\x00\xc7\x6e\x17\x6b\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\xe8\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00"
    "\x00\x00\x00\x00\x64\x00\x00\x00\x08\x00\x00\x00\x0a\x00\x00\x00"
    "\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x00"
    "\x00\x00\x00\x00\x87\xd6\x32\x41\x00\x20\x00\x00\x00\x00\x02\x00"
    "\x00\x20\x00\x00\x00\x00\x00\x01\x40\x00\x00\x00\x20\x00\x00\x00"
    "\xcc\x07\x00\x00\x00\x08\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"
    "\x29\x20\x59\x6e\x14\xc5\x79\x95\xc2\xc3\xf0\xfa\x6a\xe4\xf6\x70"
    "\xd0\x60\x44\xfe\x23\x49\x85\xc5\x53\xc4\x8e\xca\x8c\x07\xc2\xc9"
    "\x5a\x45\x76\xe5";

static void test_real_file(void **state)
{
	struct pgcontrol pc;

	(void)state;
	assert_int_equal(pgcontrol_parse(real_control, 292, &pc), PGW_OK);
	assert_true(pc.sysid == 7716758286601097329ULL);
	assert_int_equal(pc.state, PGCTL_CD_SHUT_DOWN);
	assert_true(pc.checkpoint_lsn == 0x1500718ULL);
	assert_int_equal(pc.checkpoint_tli, 1);
}

static void test_crc32c(void **state)
{
	(void)state;
	/* The check value of CRC-32C. */
	assert_true(pgcontrol_crc32c("123456789", 9) == 0xE3069283u);
	assert_true(pgcontrol_crc32c("", 0) == 0);
}

/* A byte changed anywhere in the covered part (a read that met a rewrite), a short read or
 * another major version: an error, never a value. */
static void test_refused(void **state)
{
	unsigned char b[292];
	struct pgcontrol pc;

	(void)state;
	for (size_t at = 0; at < 288; at += 7) {
		memcpy(b, real_control, sizeof(b));
		b[at] ^= 0x10;
		assert_int_equal(pgcontrol_parse(b, sizeof(b), &pc), PGW_EPROTO);
		assert_int_equal(pc.state, PGCTL_CD_UNKNOWN);
		assert_true(pc.checkpoint_lsn == 0);
	}
	assert_int_equal(pgcontrol_parse(real_control, 291, &pc), PGW_EPROTO);
	assert_int_equal(pgcontrol_parse(real_control, 0, &pc), PGW_EPROTO);
	memcpy(b, real_control, sizeof(b));
	b[8] = 0xb1; /* 1201: PostgreSQL 12's, fixed up to pass the CRC */
	b[9] = 0x04;
	memcpy(b + 288, &(uint32_t){pgcontrol_crc32c(b, 288)}, 4);
	assert_int_equal(pgcontrol_parse(b, sizeof(b), &pc), PGW_EPROTO);
}

static void test_read_file(void **state)
{
	char dir[] = "/tmp/pgw-unit-pgcontrol-XXXXXX", sub[256], path[300];
	struct pgcontrol pc;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(pgcontrol_read(dir, &pc), PGW_ERR); /* no global/ */
	snprintf(sub, sizeof(sub), "%s/global", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/pg_control", sub);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(real_control, 1, 292, f), 292);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(pgcontrol_read(dir, &pc), PGW_OK);
	assert_true(pc.checkpoint_lsn == 0x1500718ULL);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(sub), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void test_fork_lsn(void **state)
{
	char dir[] = "/tmp/pgw-unit-history-XXXXXX", sub[256], path[300];
	uint64_t lsn = 0;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(pgcontrol_fork_lsn(dir, 3, 2, &lsn), PGW_ERR); /* no pg_wal */
	snprintf(sub, sizeof(sub), "%s/pg_wal", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/00000003.history", sub);
	f = fopen(path, "w");
	assert_non_null(f);
	/* As PostgreSQL writes it: each parent, where it ended, and why. */
	fputs("1\t0/50000A0\tno recovery target specified\n\n"
	      "2\t1/D0001C8\tno recovery target specified\n",
	      f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(pgcontrol_fork_lsn(dir, 3, 2, &lsn), PGW_OK);
	assert_true(lsn == 0x10D0001C8ULL); /* past 32 bits */
	assert_int_equal(pgcontrol_fork_lsn(dir, 3, 1, &lsn), PGW_OK);
	assert_true(lsn == 0x50000A0ULL);
	assert_int_equal(pgcontrol_fork_lsn(dir, 3, 4, &lsn), PGW_ENOTFOUND);
	assert_int_equal(pgcontrol_fork_lsn(dir, 4, 3, &lsn), PGW_ERR); /* no such file */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("1\tnot-an-lsn\tx\n", f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(pgcontrol_fork_lsn(dir, 3, 1, &lsn), PGW_EPROTO);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(sub), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_real_file), cmocka_unit_test(test_crc32c),
	    cmocka_unit_test(test_refused),   cmocka_unit_test(test_read_file),
	    cmocka_unit_test(test_fork_lsn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

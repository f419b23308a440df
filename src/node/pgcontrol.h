/*
 * PostgreSQL 15's pg_control read directly (global/pg_control), for what must be
 * watched more often than pg_controldata can be run: the state and the latest
 * checkpoint while a server shuts down. Only a file whose control version is 15's
 * (1300) and whose CRC-32C checks out is believed: a file being rewritten as it is
 * read, or another major version's layout, gives an error, never a wrong value.
 */
#ifndef PGW_PGCONTROL_H
#define PGW_PGCONTROL_H

#include "common/err.h"

#include <stddef.h>
#include <stdint.h>

/* PostgreSQL's DBState, by value. */
enum pgcontrol_state {
	PGCONTROL_STARTING_UP = 0,
	PGCONTROL_SHUT_DOWN = 1,
	PGCONTROL_SHUT_DOWN_IN_RECOVERY = 2,
	PGCONTROL_SHUTTING_DOWN = 3,
	PGCONTROL_IN_CRASH_RECOVERY = 4,
	PGCONTROL_IN_ARCHIVE_RECOVERY = 5,
	PGCONTROL_IN_PRODUCTION = 6,
};

struct pgcontrol {
	uint64_t sysid;
	enum pgcontrol_state state;
	uint64_t checkpoint_lsn; /* where the latest checkpoint record starts */
	int checkpoint_tli;
};

/* CRC-32C (Castagnoli), as PostgreSQL computes it over pg_control. */
uint32_t pgcontrol_crc32c(const void *data, size_t len);

/* The file's bytes (pure): PGW_OK, or PGW_EPROTO for a short, foreign or torn file. */
int pgcontrol_parse(const unsigned char *buf, size_t len, struct pgcontrol *out) PGW_WUR;

/* <data_dir>/global/pg_control: PGW_OK, PGW_ERR (cannot read) or PGW_EPROTO. */
int pgcontrol_read(const char *data_dir, struct pgcontrol *out) PGW_WUR;

#endif

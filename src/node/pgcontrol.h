/*
 * PostgreSQL's own files read directly. global/pg_control, for what must be
 * watched more often than pg_controldata can be run: the state and the latest
 * checkpoint while a server shuts down. Only a file whose control version is 1300
 * (PostgreSQL 13 to 16) and whose CRC-32C checks out is believed: a file being rewritten as it is
 * read, or another major version's layout, gives an error, never a wrong value.
 */
#ifndef PGW_PGCONTROL_H
#define PGW_PGCONTROL_H

#include "common/err.h"

#include <stddef.h>
#include <stdint.h>

/* A cluster's state as pg_control records it: PostgreSQL's DBState plus one (0: unknown). */
enum pgctl_cd_state {
	PGCTL_CD_UNKNOWN = 0,
	PGCTL_CD_STARTING_UP,
	PGCTL_CD_SHUT_DOWN,
	PGCTL_CD_SHUT_DOWN_IN_RECOVERY,
	PGCTL_CD_SHUTTING_DOWN,
	PGCTL_CD_IN_CRASH_RECOVERY,
	PGCTL_CD_IN_ARCHIVE_RECOVERY,
	PGCTL_CD_IN_PRODUCTION,
};

struct pgcontrol {
	uint64_t sysid;
	enum pgctl_cd_state state;
	uint64_t checkpoint_lsn; /* where the latest checkpoint record starts */
	int checkpoint_tli;
};

/* CRC-32C (Castagnoli), as PostgreSQL computes it over pg_control. */
uint32_t pgcontrol_crc32c(const void *data, size_t len);

/* The file's bytes (pure): PGW_OK, or PGW_EPROTO for a short, foreign or torn file. */
int pgcontrol_parse(const unsigned char *buf, size_t len, struct pgcontrol *out) PGW_WUR;

/* <data_dir>/global/pg_control: PGW_OK, PGW_ERR (cannot read) or PGW_EPROTO. */
int pgcontrol_read(const char *data_dir, struct pgcontrol *out) PGW_WUR;

/* One line of a timeline history file: timeline tl ended at switch_lsn. */
struct tl_switch {
	int tl;
	uint64_t switch_lsn;
};

/*
 * Parses a timeline history file's text ("parent_tli<TAB>X/X<TAB>reason" lines, comments
 * and blank lines skipped) into out; returns how many, or -1 when a line is malformed.
 */
int pgcontrol_parse_history(const char *text, struct tl_switch *out, size_t max);

/*
 * Where timeline parent ended, from <data_dir>/pg_wal/<tli>.history (the end of its last
 * record: where tli forked off). PGW_OK, PGW_ERR (no file), PGW_EPROTO (malformed) or
 * PGW_ENOTFOUND (parent not in it).
 */
int pgcontrol_fork_lsn(const char *data_dir, int tli, int parent, uint64_t *lsn) PGW_WUR;

#endif

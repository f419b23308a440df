/*
 * Point-in-time recovery targets: parsing what the operator typed, and choosing the
 * backup to restore from pgBackRest's description of the repository, so that a target
 * outside the restorable window is refused before anything is touched. Pure logic.
 */
#ifndef PGW_CLI_PITR_H
#define PGW_CLI_PITR_H

#include "node/pgcontrol.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pitr_kind { PITR_LATEST, PITR_TIME, PITR_LSN, PITR_XID };

struct pitr_target {
	enum pitr_kind kind;
	char text[96]; /* as pgBackRest's --target gets it (time: normalised to UTC) */
	double epoch;  /* PITR_TIME */
	uint64_t lsn;  /* PITR_LSN */
	uint64_t xid;  /* PITR_XID */
};

/*
 * Parses text for kind. A time needs its zone: 'YYYY-MM-DD HH:MM:SS[.frac]' then
 * +HH, +HHMM, +HH:MM, -..., Z or UTC ('T' may separate date and time). 0, or -1
 * with the reason in err.
 */
int pitr_parse(enum pitr_kind kind, const char *text, struct pitr_target *out, char *err,
	       size_t err_size);

/*
 * The backup to restore for t, from `pgbackrest info --output=json`'s stanza object:
 * label (NULL: choose) when given must exist and be usable for t. Time: the newest
 * backup that ended before the target; LSN: the newest whose stop LSN is at or before
 * it; xid: the oldest (transaction ids do not compare with backups); latest: the newest.
 * A target before the oldest usable backup, after now_epoch, or past the last archived
 * WAL segment is refused. 0 with the label in out, or -1 with the reason in err.
 */
int pitr_choose(json_object *stanza, const struct pitr_target *t, const char *label,
		double now_epoch, char *out, size_t out_size, char *err, size_t err_size);

/* The LSN where WAL segment name (24 hex digits, 16 MB segments) ends; 0 when malformed. */
uint64_t pitr_segment_end(const char *name);

#endif

/* ---- archive continuity (pgwarden backup check) ---- */

/* One WAL segment in the repository (complete ones only: a .partial never counts). */
struct pitr_segment {
	int tl;
	uint64_t segno; /* LSN / 16 MB */
};

/*
 * Parses a file name of the archive ("000000010000000000000005-<sha1>.zst", no folder):
 * 1 and *seg for a complete segment, 0 for anything else (.partial, .backup, .history).
 */
int pitr_parse_segment_name(const char *name, struct pitr_segment *seg);

/*
 * Is every segment recovery needs there, from start (the oldest backup's first segment)
 * to the newest segment of timeline latest_tl, following history (latest_tl's history
 * file: its ancestors and where each ended)? A timeline is needed up to the segment
 * before the one holding its switch point; the next one from there. Each missing
 * segment (or a start off the history) is described in report, one line each. Returns
 * the number of problems (0: continuous); *checked gets the number of segments checked.
 */
int pitr_check_continuity(const struct pitr_segment *segs, size_t n_segs,
			  const struct tl_switch *history, size_t n_history, int latest_tl,
			  struct pitr_segment start, char *report, size_t report_size,
			  size_t *checked);

/* ---- pgbackrest verify (2.45: exit 0 whatever it finds; its text says) ---- */

#define PITR_VERIFY_MAX 64

struct pitr_verify {
	struct {
		char label[64];
		bool valid;
		char problems[512]; /* "invalid checksum 'pg_data/base/5/1255.zst'; ..." */
	} backup[PITR_VERIFY_MAX];
	size_t n_backup;
	bool archive_ok;
	char archive_problems[512];
	bool stanza_ok; /* "status: ok" */
};

/*
 * Parses the output of `pgbackrest verify --output=text --verbose --log-level-console=info`
 * (the INFO lines name each damaged file, the summary each backup's status). -1 when it
 * has no summary at all.
 */
int pitr_parse_verify(const char *text, struct pitr_verify *out);

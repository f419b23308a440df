/*
 * Synchronous replication's choices, as pure functions (unit tests in
 * tests/unit/agent/test_syncrep.c): which standbys the leader waits for, the
 * synchronous_standby_names that says so, and which names stay in the sync key. The
 * agent (sync.c) reads pg_stat_replication, calls these, and writes the results in
 * the order that keeps every listed standby holding every acknowledged commit.
 */
#ifndef PGW_SYNCREP_H
#define PGW_SYNCREP_H

#include "cluster/dcs.h"
#include "common/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A row of pg_stat_replication, as the leader sees it. */
struct walsender {
	char name[DCS_NAME_MAX]; /* application_name: the member's name */
	bool streaming;		 /* streaming, and replying */
	uint64_t flush;		 /* flush_lsn */
};

/*
 * The standbys to wait for (pointers into ws, in pick, at most count): streaming
 * members of c fit to take over (not nosync, not nofailover, not me), current ones
 * first (in c's sync key or named in ssn, the synchronous_standby_names in force: no
 * flip-flop between standbys while the key is empty), then the most advanced.
 * Returns how many.
 */
size_t syncrep_pick(const struct dcs_cluster *c, const char *me, const char *ssn,
		    const struct walsender *ws, size_t n_ws, int count,
		    const struct walsender **pick);

/* ssn names member name ('FIRST n ("a", "b")'). */
bool syncrep_ssn_names(const char *ssn, const char *name);

/* The synchronous_standby_names for the picked standbys: 'FIRST n ("a", ...)'; with
 * none, "*" in strict mode (any standby) and "" otherwise. */
int syncrep_ssn(const struct walsender *const *pick, size_t n, bool strict,
		struct cmn_buf *out) PGW_WUR;

/* The names of the sync key set (comma-separated) that are also in want, into keep;
 * true when some name leaves. */
bool syncrep_keep(const char *set, const char *want, struct cmn_buf *keep);

#endif

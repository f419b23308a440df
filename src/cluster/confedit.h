/*
 * Changing the dynamic configuration (etcd's config key), shared by
 * `pgwarden edit-config` and the REST API's PATCH /config: read the key, edit
 * the document, check it as a whole (dyncfg) and check changed PostgreSQL
 * parameters against the leader's pg_settings, then write it back with a
 * compare-and-swap on the revision that was read. Nothing is written when any
 * check fails.
 */
#ifndef PGW_CONFEDIT_H
#define PGW_CONFEDIT_H

#include "cluster/dcs.h"
#include "cluster/dyncfg.h"
#include "common/config.h"
#include "common/err.h"

#include <json-c/json.h>
#include <stdbool.h>

/* Edits root in place; PGW_EINVAL with err filled when the edit itself is bad. */
typedef int (*confedit_fn)(json_object *root, void *arg, char *err, size_t err_size);

/* How an edit is checked beyond the document's own shape. */
struct confedit_checks {
	const struct dyncfg_rules *rules;
	/* Checks the changed PostgreSQL parameters against the running member at
	 * host:port (its pg_settings): PGW_OK, PGW_EINVAL (err: which and why), PGW_ENET. */
	int (*check_params)(void *arg, const char *host, int port, const struct cmn_kvlist *changed,
			    char *err, size_t err_size);
	void *arg;
};

struct confedit_result {
	char *old_text; /* pretty JSON before (owned) */
	char *new_text; /* pretty JSON after (owned) */
	bool changed;
	int64_t revision; /* mod_revision the edit was based on (0: no key) */
};

/*
 * Runs the edit. expect_revision >= 0: fail with PGW_EUNAVAIL if the key has
 * changed since. dry_run: check only. checks validate the document and the
 * parameters it changes. Returns PGW_EINVAL (err: why the document is refused),
 * PGW_ENET (etcd or PostgreSQL could not be asked), PGW_EUNAVAIL (changed meanwhile).
 */
int confedit_run(struct dcs *d, const struct confedit_checks *checks, confedit_fn edit, void *arg,
		 int64_t expect_revision, bool dry_run, struct confedit_result *out, char *err,
		 size_t err_size) PGW_WUR;
void confedit_result_free(struct confedit_result *r);

/* Flattened "key = value" lines of a document, one per setting (for a diff). */
char *confedit_flatten(const char *json);

#endif

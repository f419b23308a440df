/*
 * The dynamic configuration: the cluster-wide settings kept in etcd's config key,
 * which every agent applies within a loop (Patroni's layout):
 *
 *   {"ttl": 4, "loop_wait": 1, "retry_timeout": 1.5,
 *    "maximum_lag_on_failover": 1048576,
 *    "synchronous_mode": false, "synchronous_mode_strict": false,
 *    "synchronous_node_count": 1,
 *    "postgresql": {"parameters": {"max_connections": "300"}},
 *    "backup": {"schedule_full": "1d", "retention_full": 4},
 *    "pause": false}
 *
 * Durations are seconds (fractions allowed) or strings with a unit ("1500ms");
 * sizes are bytes or strings with a unit ("1MB"). An absent key leaves the node's
 * own value. Precedence of PostgreSQL parameters: pgwarden's tuned values, then
 * this document, then the node file's [parameters]. "backup" holds the [backup]
 * settings that are cluster-wide (the rules' backup_key): there, as for the timing,
 * this document wins over the node file.
 *
 * What may sit under "postgresql" and "backup" is the members' business (which
 * parameters pgwarden manages itself, which [backup] keys a cluster shares): the
 * caller gives those rules (node/agentcfg.h: agent_config_dyncfg_rules).
 */
#ifndef PGW_DYNCFG_H
#define PGW_DYNCFG_H

#include "common/config.h"
#include "common/err.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

struct dyncfg_rules {
	/* Why pgwarden sets parameter name itself, or NULL. */
	const char *(*param_managed)(const char *name);
	/* Why parameter name may come only from a node's own file, or NULL. */
	const char *(*param_node_only)(const char *name);
	/* The configuration row of [backup] key name when the cluster may share it (it
	 * gives the value's type), else NULL. */
	const struct cmn_cfg_key *(*backup_key)(const char *name);
	/* Checks a value of such a key: PGW_OK, PGW_EINVAL (why says), PGW_ENOMEM. */
	int (*backup_check)(const char *name, const char *value, char *why, size_t why_size);
};

struct dyncfg {
	bool pause;
	int ttl_ms, loop_wait_ms, retry_timeout_ms; /* 0: not set */
	int64_t maximum_lag;			    /* -1: not set */
	bool sync_mode, sync_strict;
	int sync_count;		      /* >= 1 */
	struct cmn_kvlist parameters; /* postgresql.parameters, values as text */
	struct cmn_kvlist backup;     /* backup.*, values as text */
};

/* Parses and validates a document (NULL or "" = empty). err says what is wrong. */
int dyncfg_parse(const char *json, const struct dyncfg_rules *rules, struct dyncfg *out, char *err,
		 size_t err_size) PGW_WUR;
int dyncfg_parse_obj(json_object *root, const struct dyncfg_rules *rules, struct dyncfg *out,
		     char *err, size_t err_size) PGW_WUR;
void dyncfg_free(struct dyncfg *c);

/*
 * Edits a document: "key=value" for a setting (`edit-config --set`; also
 * "postgresql.parameters.NAME=value" and "backup.NAME=value"), or "NAME=value" for a PostgreSQL
 * parameter (`--pg`). The value "null" removes the key. Checks the key and the
 * value's syntax; the whole document is checked by dyncfg_parse_obj afterwards.
 */
int dyncfg_set(json_object *root, const struct dyncfg_rules *rules, const char *assignment,
	       char *err, size_t err_size) PGW_WUR;
int dyncfg_set_pg(json_object *root, const struct dyncfg_rules *rules, const char *assignment,
		  char *err, size_t err_size) PGW_WUR;
/* RFC 7386 JSON merge patch: patch's members replace target's, null removes. */
void dyncfg_merge_patch(json_object *target, json_object *patch);

/* A row of pg_settings, to check a value before it reaches postgresql.conf. */
struct dyncfg_pg_setting {
	const char *name;
	const char *vartype;  /* bool, integer, real, string, enum */
	const char *unit;     /* "" or kB, 8kB, MB, B, ms, s, min, ... */
	const char *min_val;  /* "" when none */
	const char *max_val;  /* "" when none */
	const char *enumvals; /* enum values separated by '\x1f' */
	const char *context;  /* postmaster, sighup, user, internal, ... */
};

/* PGW_EINVAL with a reason when PostgreSQL would refuse value for s. */
int dyncfg_check_pg_value(const struct dyncfg_pg_setting *s, const char *value, char *err,
			  size_t err_size) PGW_WUR;

#endif

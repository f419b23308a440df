/*
 * Table-driven INI configuration with environment overrides.
 *
 * A schema lists every known key of every section with its type, default and
 * bounds, and where the parsed value goes in a caller's struct. Sections marked
 * free-form (such as [parameters] or [tags]) take any key and collect it into a
 * struct cmn_kvlist. Every key can be overridden by an environment variable
 * PGWARDEN_<SECTION>_<KEY> (upper case). Errors name the file and line (or the
 * environment variable) and the key, and suggest the closest known key.
 *
 * Strings in the target struct are heap copies owned by the struct; release them
 * with cmn_config_free().
 */
#ifndef PGW_CONFIG_H
#define PGW_CONFIG_H

#include "common/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cmn_cfg_type {
	CMN_CFG_STRING,
	CMN_CFG_SECRET,	  /* a string never shown in logs or SHOW CONFIG */
	CMN_CFG_INT,	  /* int */
	CMN_CFG_BOOL,	  /* bool: on/off, true/false, yes/no, 1/0 */
	CMN_CFG_DURATION, /* int milliseconds; "3", "3s", "500ms", "1.5s", "2min" (default unit s)
			   */
	CMN_CFG_SIZE,	  /* int64_t bytes; "1048576", "16kB", "64MB", "4GB" */
};

struct cmn_cfg_key {
	const char *section;
	const char *name;
	enum cmn_cfg_type type;
	size_t offset;		   /* into the target struct */
	const char *default_value; /* NULL: no default */
	bool required;
	int64_t min, max; /* for numbers (ms for durations, bytes for sizes); 0,0 = unbounded */
	const char *help;
};

struct cmn_kv {
	char *key;
	char *value;
	char *origin; /* "file:line" or "env NAME" */
};

struct cmn_kvlist {
	struct cmn_kv *items;
	size_t n;
};

struct cmn_cfg_section {
	const char *name;
	bool free_form;
	size_t list_offset; /* free-form only: offset of a struct cmn_kvlist */
};

struct cmn_cfg_schema {
	const struct cmn_cfg_section *sections;
	size_t n_sections;
	const struct cmn_cfg_key *keys;
	size_t n_keys;
	/*
	 * Optional: a further check of a value read from the file or the environment
	 * (a choice among names, an absolute path); PGW_EINVAL with why filled makes it
	 * a "file:line: bad value" error.
	 */
	int (*check)(const struct cmn_cfg_key *k, const char *value, char *why, size_t why_size);
};

/*
 * Loads defaults, then path (may be NULL for environment-only configuration), then
 * the environment. On error fills err with a one-line message and returns PGW_EINVAL
 * (nothing is logged: the caller decides how to report it).
 */
int cmn_config_load(const struct cmn_cfg_schema *schema, void *target, const char *path, char *err,
		    size_t err_size) PGW_WUR;
void cmn_config_free(const struct cmn_cfg_schema *schema, void *target);

/*
 * One known key set after loading (a setting from another source, such as the
 * dynamic configuration): the same parsing, bounds and check as the file's. value
 * NULL unsets a string and gives a number its default. PGW_EINVAL with why filled
 * ("bad value ..." or "unknown key ...").
 */
int cmn_config_set(const struct cmn_cfg_schema *schema, void *target, const char *section,
		   const char *name, const char *value, char *why, size_t why_size) PGW_WUR;
/* A key's value as text, as the file would give it; false when unset or unknown. */
bool cmn_config_format(const struct cmn_cfg_schema *schema, const void *target, const char *section,
		       const char *name, char *buf, size_t size);

/* Value parsers, shared with other inputs (REST, CLI flags). */
int cmn_parse_bool(const char *s, bool *out) PGW_WUR;
int cmn_parse_duration_ms(const char *s, int64_t *out) PGW_WUR;
int cmn_parse_size(const char *s, int64_t *out) PGW_WUR;
int cmn_parse_int64(const char *s, int64_t *out) PGW_WUR;

const char *cmn_kvlist_get(const struct cmn_kvlist *l, const char *key);
/* Adds or replaces key (copying both strings). */
int cmn_kvlist_set(struct cmn_kvlist *l, const char *key, const char *value,
		   const char *origin) PGW_WUR;
void cmn_kvlist_free(struct cmn_kvlist *l);

/* Edit distance, for "did you mean" hints. */
int cmn_levenshtein(const char *a, const char *b);

#endif

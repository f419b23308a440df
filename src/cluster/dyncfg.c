#include "cluster/dyncfg.h"
#include "cluster/clustercfg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum kind { K_DURATION, K_SIZE, K_BOOL, K_INT };

static const struct setting {
	const char *name;
	enum kind kind;
	int64_t min, max; /* ms for durations, bytes for sizes */
} settings[] = {
    {"ttl", K_DURATION, 2000, 3600000},		{"loop_wait", K_DURATION, 100, 600000},
    {"retry_timeout", K_DURATION, 100, 600000}, {"maximum_lag_on_failover", K_SIZE, 0, INT64_MAX},
    {"synchronous_mode", K_BOOL, 0, 0},		{"synchronous_mode_strict", K_BOOL, 0, 0},
    {"synchronous_node_count", K_INT, 1, 31},	{"pause", K_BOOL, 0, 0},
};
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting *find_setting(const char *name)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

static void unknown_key(const char *name, char *err, size_t err_size)
{
	const char *best = "postgresql";
	int best_d = cmn_levenshtein(name, best);

	for (size_t i = 0; i < N_SETTINGS; i++) {
		int d = cmn_levenshtein(name, settings[i].name);

		if (d < best_d) {
			best_d = d;
			best = settings[i].name;
		}
	}
	if (best_d <= 3)
		snprintf(err, err_size, "unknown setting '%s' (did you mean '%s'?)", name, best);
	else
		snprintf(err, err_size, "unknown setting '%s'", name);
}

/* A JSON value of a setting as an integer (ms, bytes, 0/1, count). */
static int value_of(const struct setting *s, json_object *v, int64_t *out, char *err,
		    size_t err_size)
{
	const char *text = json_object_get_string(v);
	int rc = PGW_EINVAL;

	switch (s->kind) {
	case K_DURATION:
		if (json_object_is_type(v, json_type_int) ||
		    json_object_is_type(v, json_type_double)) {
			double sec = json_object_get_double(v);

			if (isfinite(sec) && sec >= 0 && sec < 1e9) {
				*out = (int64_t)llround(sec * 1000);
				rc = PGW_OK;
			}
		} else if (json_object_is_type(v, json_type_string)) {
			rc = cmn_parse_duration_ms(text, out);
		}
		break;
	case K_SIZE:
		if (json_object_is_type(v, json_type_int)) {
			*out = json_object_get_int64(v);
			rc = PGW_OK;
		} else if (json_object_is_type(v, json_type_string)) {
			rc = cmn_parse_size(text, out);
		}
		break;
	case K_BOOL:
		if (json_object_is_type(v, json_type_boolean)) {
			*out = json_object_get_boolean(v);
			rc = PGW_OK;
		} else if (json_object_is_type(v, json_type_string)) {
			bool b = false;

			rc = cmn_parse_bool(text, &b);
			*out = b;
		}
		break;
	case K_INT:
		if (json_object_is_type(v, json_type_int)) {
			*out = json_object_get_int64(v);
			rc = PGW_OK;
		} else if (json_object_is_type(v, json_type_string)) {
			rc = cmn_parse_int64(text, out);
		}
		break;
	}
	if (rc != PGW_OK) {
		static const char *const expect[] = {
		    [K_DURATION] = "a duration (seconds, or with a unit: 1500ms, 4s)",
		    [K_SIZE] = "a size (bytes, or with a unit: 1MB)",
		    [K_BOOL] = "true or false",
		    [K_INT] = "an integer",
		};
		snprintf(err, err_size, "bad value %s for '%s': expected %s",
			 json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), s->name,
			 expect[s->kind]);
		return PGW_EINVAL;
	}
	if (s->kind != K_BOOL && (*out < s->min || *out > s->max)) {
		if (s->kind == K_DURATION)
			snprintf(err, err_size, "'%s' must be between %lld ms and %lld ms", s->name,
				 (long long)s->min, (long long)s->max);
		else
			snprintf(err, err_size, "'%s' must be between %lld and %lld", s->name,
				 (long long)s->min, (long long)s->max);
		return PGW_EINVAL;
	}
	return PGW_OK;
}

/* A PostgreSQL parameter name: lower-case identifier, dots for extensions' settings. */
static bool pg_name_ok(const char *name)
{
	if (!*name || strlen(name) > 63 || !(islower((unsigned char)*name) || *name == '_'))
		return false;
	for (const char *p = name; *p; p++)
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '_' &&
		    *p != '.')
			return false;
	return true;
}

static int check_pg_param(const struct dyncfg_rules *rules, const char *name, json_object *v,
			  char *err, size_t err_size)
{
	const char *why = rules->param_managed(name);

	if (!pg_name_ok(name)) {
		snprintf(err, err_size, "bad PostgreSQL parameter name '%s'", name);
		return PGW_EINVAL;
	}
	if (why) {
		snprintf(err, err_size, "PostgreSQL parameter '%s' is managed by pgwarden (%s)",
			 name, why);
		return PGW_EINVAL;
	}
	why = rules->param_node_only(name);
	if (why) {
		snprintf(
		    err, err_size,
		    "PostgreSQL parameter '%s' cannot come from the dynamic configuration (%s)",
		    name, why);
		return PGW_EINVAL;
	}
	if (!json_object_is_type(v, json_type_string) && !json_object_is_type(v, json_type_int) &&
	    !json_object_is_type(v, json_type_double) &&
	    !json_object_is_type(v, json_type_boolean)) {
		snprintf(err, err_size, "PostgreSQL parameter '%s': the value must be a string",
			 name);
		return PGW_EINVAL;
	}
	const char *text = json_object_get_string(v);

	if (strlen(text) > 4096) {
		snprintf(err, err_size, "PostgreSQL parameter '%s': value too long", name);
		return PGW_EINVAL;
	}
	for (const char *p = text; *p; p++) {
		if ((unsigned char)*p < 0x20) {
			snprintf(err, err_size,
				 "PostgreSQL parameter '%s': control characters are not allowed",
				 name);
			return PGW_EINVAL;
		}
	}
	return PGW_OK;
}

static int parse_postgresql(const struct dyncfg_rules *rules, json_object *pg, struct dyncfg *out,
			    char *err, size_t err_size)
{
	if (!json_object_is_type(pg, json_type_object)) {
		snprintf(err, err_size, "'postgresql' must be an object");
		return PGW_EINVAL;
	}
	json_object_object_foreach(pg, key, val)
	{
		if (strcmp(key, "parameters") != 0) {
			snprintf(err, err_size,
				 "unknown setting 'postgresql.%s' (only postgresql.parameters)",
				 key);
			return PGW_EINVAL;
		}
		if (json_object_is_type(val, json_type_null))
			continue;
		if (!json_object_is_type(val, json_type_object)) {
			snprintf(err, err_size, "'postgresql.parameters' must be an object");
			return PGW_EINVAL;
		}
		json_object_object_foreach(val, name, v)
		{
			if (check_pg_param(rules, name, v, err, err_size) != PGW_OK)
				return PGW_EINVAL;
			if (cmn_kvlist_set(&out->parameters, name, json_object_get_string(v),
					   "etcd") != PGW_OK) {
				snprintf(err, err_size, "out of memory");
				return PGW_ENOMEM;
			}
		}
	}
	return PGW_OK;
}

static int check_backup(const struct dyncfg_rules *rules, const char *name, json_object *v,
			char *err, size_t err_size)
{
	char why[400];
	int rc;

	if (!json_object_is_type(v, json_type_string) && !json_object_is_type(v, json_type_int) &&
	    !json_object_is_type(v, json_type_boolean)) {
		snprintf(err, err_size, "'backup.%s': expected a string, a number or true/false",
			 name);
		return PGW_EINVAL;
	}
	rc = rules->backup_check(name, json_object_get_string(v), why, sizeof(why));
	if (rc != PGW_OK)
		snprintf(err, err_size, "%s", rc == PGW_ENOMEM ? "out of memory" : why);
	return rc;
}

static int parse_backup(const struct dyncfg_rules *rules, json_object *b, struct dyncfg *out,
			char *err, size_t err_size)
{
	if (!json_object_is_type(b, json_type_object)) {
		snprintf(err, err_size, "'backup' must be an object");
		return PGW_EINVAL;
	}
	json_object_object_foreach(b, name, v)
	{
		if (json_object_is_type(v, json_type_null))
			continue;
		if (check_backup(rules, name, v, err, err_size) != PGW_OK)
			return PGW_EINVAL;
		if (cmn_kvlist_set(&out->backup, name, json_object_get_string(v), "etcd") !=
		    PGW_OK) {
			snprintf(err, err_size, "out of memory");
			return PGW_ENOMEM;
		}
	}
	return PGW_OK;
}

int dyncfg_parse_obj(json_object *root, const struct dyncfg_rules *rules, struct dyncfg *out,
		     char *err, size_t err_size)
{
	memset(out, 0, sizeof(*out));
	out->maximum_lag = -1;
	out->sync_count = 1;
	if (!root)
		return PGW_OK;
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(err, err_size, "the configuration must be a JSON object");
		return PGW_EINVAL;
	}
	json_object_object_foreach(root, key, val)
	{
		const struct setting *s = find_setting(key);
		int64_t v = 0;

		if (strcmp(key, "postgresql") == 0) {
			if (parse_postgresql(rules, val, out, err, err_size) != PGW_OK)
				goto fail;
			continue;
		}
		if (strcmp(key, "backup") == 0) {
			if (!json_object_is_type(val, json_type_null) &&
			    parse_backup(rules, val, out, err, err_size) != PGW_OK)
				goto fail;
			continue;
		}
		if (!s) {
			unknown_key(key, err, err_size);
			goto fail;
		}
		if (json_object_is_type(val, json_type_null))
			continue;
		if (value_of(s, val, &v, err, err_size) != PGW_OK)
			goto fail;
		if (strcmp(key, "ttl") == 0)
			out->ttl_ms = (int)v;
		else if (strcmp(key, "loop_wait") == 0)
			out->loop_wait_ms = (int)v;
		else if (strcmp(key, "retry_timeout") == 0)
			out->retry_timeout_ms = (int)v;
		else if (strcmp(key, "maximum_lag_on_failover") == 0)
			out->maximum_lag = v;
		else if (strcmp(key, "synchronous_mode") == 0)
			out->sync_mode = v;
		else if (strcmp(key, "synchronous_mode_strict") == 0)
			out->sync_strict = v;
		else if (strcmp(key, "synchronous_node_count") == 0)
			out->sync_count = (int)v;
		else if (strcmp(key, "pause") == 0)
			out->pause = v;
	}
	if (out->ttl_ms || out->loop_wait_ms || out->retry_timeout_ms) {
		int64_t ttl, lw, rt;
		char why[400];

		/* Unset values are checked at pgwarden's defaults. */
		if (cmn_parse_duration_ms(CLUSTER_DEFAULT_TTL, &ttl) != PGW_OK ||
		    cmn_parse_duration_ms(CLUSTER_DEFAULT_LOOP_WAIT, &lw) != PGW_OK ||
		    cmn_parse_duration_ms(CLUSTER_DEFAULT_RETRY_TIMEOUT, &rt) != PGW_OK)
			goto fail;
		if (cluster_check_timing(out->ttl_ms ? out->ttl_ms : (int)ttl,
					 out->loop_wait_ms ? out->loop_wait_ms : (int)lw,
					 out->retry_timeout_ms ? out->retry_timeout_ms : (int)rt,
					 why, sizeof(why)) != PGW_OK) {
			snprintf(err, err_size, "%s", why);
			goto fail;
		}
	}
	return PGW_OK;
fail:
	dyncfg_free(out);
	return PGW_EINVAL;
}

int dyncfg_parse(const char *json, const struct dyncfg_rules *rules, struct dyncfg *out, char *err,
		 size_t err_size)
{
	json_object *root;
	int rc;

	if (!json || !*json)
		return dyncfg_parse_obj(NULL, rules, out, err, err_size);
	root = json_tokener_parse(json);
	if (!root) {
		memset(out, 0, sizeof(*out));
		snprintf(err, err_size, "the configuration is not valid JSON");
		return PGW_EINVAL;
	}
	rc = dyncfg_parse_obj(root, rules, out, err, err_size);
	json_object_put(root);
	return rc;
}

void dyncfg_free(struct dyncfg *c)
{
	cmn_kvlist_free(&c->parameters);
	memset(&c->parameters, 0, sizeof(c->parameters));
	cmn_kvlist_free(&c->backup);
	memset(&c->backup, 0, sizeof(c->backup));
}

/* Splits "key=value"; false when there is no '=' or no key. */
static bool split_assignment(const char *a, char *key, size_t key_size, const char **value)
{
	const char *eq = strchr(a, '=');

	if (!eq || eq == a || (size_t)(eq - a) >= key_size)
		return false;
	memcpy(key, a, (size_t)(eq - a));
	key[eq - a] = '\0';
	*value = eq + 1;
	return true;
}

static json_object *params_of(json_object *root, bool create)
{
	json_object *pg = NULL, *params = NULL;

	if (!json_object_object_get_ex(root, "postgresql", &pg) ||
	    !json_object_is_type(pg, json_type_object)) {
		if (!create)
			return NULL;
		pg = json_object_new_object();
		json_object_object_add(root, "postgresql", pg);
	}
	if (!json_object_object_get_ex(pg, "parameters", &params) ||
	    !json_object_is_type(params, json_type_object)) {
		if (!create)
			return NULL;
		params = json_object_new_object();
		json_object_object_add(pg, "parameters", params);
	}
	return params;
}

int dyncfg_set_pg(json_object *root, const struct dyncfg_rules *rules, const char *assignment,
		  char *err, size_t err_size)
{
	char name[128];
	const char *value;
	json_object *v, *params;

	if (!split_assignment(assignment, name, sizeof(name), &value)) {
		snprintf(err, err_size, "expected NAME=VALUE, got '%s'", assignment);
		return PGW_EINVAL;
	}
	if (strcmp(value, "null") == 0) {
		params = params_of(root, false);
		if (params)
			json_object_object_del(params, name);
		return PGW_OK;
	}
	v = json_object_new_string(value);
	if (check_pg_param(rules, name, v, err, err_size) != PGW_OK) {
		json_object_put(v);
		return PGW_EINVAL;
	}
	json_object_object_add(params_of(root, true), name, v);
	return PGW_OK;
}

/* backup.NAME=value: stored with the setting's JSON type (number, true/false, string). */
static int set_backup(json_object *root, const struct dyncfg_rules *rules, const char *name,
		      const char *value, char *err, size_t err_size)
{
	const struct cmn_cfg_key *k = rules->backup_key(name);
	json_object *b = NULL, *v;
	int64_t n;
	bool on;

	if (!k) {
		snprintf(err, err_size, "'backup.%s' cannot be set in the dynamic configuration%s",
			 name,
			 strcmp(name, "cipher_pass") == 0 || strcmp(name, "pgbackrest") == 0 ||
				 strncmp(name, "repo_", 5) == 0 || strncmp(name, "tls_", 4) == 0
			     ? " (a node's own setting: its [backup] section)"
			     : "");
		return PGW_EINVAL;
	}
	if (!json_object_object_get_ex(root, "backup", &b) ||
	    !json_object_is_type(b, json_type_object)) {
		if (strcmp(value, "null") == 0)
			return PGW_OK;
		b = json_object_new_object();
		json_object_object_add(root, "backup", b);
	}
	if (strcmp(value, "null") == 0) {
		json_object_object_del(b, name);
		if (json_object_object_length(b) == 0)
			json_object_object_del(root, "backup");
		return PGW_OK;
	}
	if (k->type == CMN_CFG_INT && cmn_parse_int64(value, &n) == PGW_OK)
		v = json_object_new_int64(n);
	else if (k->type == CMN_CFG_BOOL && cmn_parse_bool(value, &on) == PGW_OK)
		v = json_object_new_boolean(on);
	else
		v = json_object_new_string(value);
	if (check_backup(rules, name, v, err, err_size) != PGW_OK) {
		json_object_put(v);
		return PGW_EINVAL;
	}
	json_object_object_add(b, name, v);
	return PGW_OK;
}

int dyncfg_set(json_object *root, const struct dyncfg_rules *rules, const char *assignment,
	       char *err, size_t err_size)
{
	char key[128];
	const char *value;
	const struct setting *s;
	json_object *v;
	int64_t n;

	if (!split_assignment(assignment, key, sizeof(key), &value)) {
		snprintf(err, err_size, "expected KEY=VALUE, got '%s'", assignment);
		return PGW_EINVAL;
	}
	if (strncmp(key, "postgresql.parameters.", 22) == 0)
		return dyncfg_set_pg(root, rules, assignment + 22, err, err_size);
	if (strncmp(key, "backup.", 7) == 0)
		return set_backup(root, rules, key + 7, value, err, err_size);
	s = find_setting(key);
	if (!s) {
		unknown_key(key, err, err_size);
		return PGW_EINVAL;
	}
	if (strcmp(value, "null") == 0) {
		json_object_object_del(root, key);
		return PGW_OK;
	}
	v = json_object_new_string(value);
	if (value_of(s, v, &n, err, err_size) != PGW_OK) {
		json_object_put(v);
		return PGW_EINVAL;
	}
	json_object_put(v);
	switch (s->kind) {
	case K_DURATION:
		v = n % 1000 == 0 ? json_object_new_int64(n / 1000)
				  : json_object_new_double((double)n / 1000);
		break;
	case K_BOOL:
		v = json_object_new_boolean(n != 0);
		break;
	case K_SIZE:
	case K_INT:
		v = json_object_new_int64(n);
		break;
	}
	json_object_object_add(root, key, v);
	return PGW_OK;
}

void dyncfg_merge_patch(json_object *target, json_object *patch)
{
	json_object_object_foreach(patch, key, val)
	{
		json_object *cur = NULL;

		if (json_object_is_type(val, json_type_null)) {
			json_object_object_del(target, key);
		} else if (json_object_is_type(val, json_type_object)) {
			if (!json_object_object_get_ex(target, key, &cur) ||
			    !json_object_is_type(cur, json_type_object)) {
				cur = json_object_new_object();
				json_object_object_add(target, key, cur);
			}
			dyncfg_merge_patch(cur, val);
		} else {
			json_object_object_add(target, key, json_object_get(val));
		}
	}
}

/* ---- PostgreSQL values, checked as the server's GUC code would ---- */

static bool prefix_ci(const char *s, const char *word)
{
	size_t n = strlen(s);

	return n > 0 && n <= strlen(word) && strncasecmp(s, word, n) == 0;
}

static bool pg_bool_ok(const char *v)
{
	while (isspace((unsigned char)*v))
		v++;
	return prefix_ci(v, "true") || prefix_ci(v, "false") || prefix_ci(v, "yes") ||
	       prefix_ci(v, "no") || strcasecmp(v, "on") == 0 || strcasecmp(v, "of") == 0 ||
	       strcasecmp(v, "off") == 0 || strcmp(v, "1") == 0 || strcmp(v, "0") == 0;
}

/* A unit in bytes (memory) or microseconds (time); 0 when unknown. */
static double unit_size(const char *u, bool *memory)
{
	static const struct {
		const char *name;
		double size;
		bool memory;
	} units[] = {
	    {"B", 1, true},
	    {"kB", 1024, true},
	    {"MB", 1024.0 * 1024, true},
	    {"GB", 1024.0 * 1024 * 1024, true},
	    {"TB", 1024.0 * 1024 * 1024 * 1024, true},
	    {"us", 1, false},
	    {"ms", 1000, false},
	    {"s", 1e6, false},
	    {"min", 60e6, false},
	    {"h", 3600e6, false},
	    {"d", 86400e6, false},
	};
	double mult = 1;

	/* pg_settings shows units such as "8kB" or "16MB". */
	if (isdigit((unsigned char)*u)) {
		char *end;

		mult = strtod(u, &end);
		u = end;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(units[i].name, u) == 0) {
			*memory = units[i].memory;
			return mult * units[i].size;
		}
	}
	return 0;
}

static int check_number(const struct dyncfg_pg_setting *s, const char *value, char *err,
			size_t err_size)
{
	bool integer = strcmp(s->vartype, "integer") == 0;
	char *end;
	double v;

	errno = 0;
	v = strtod(value, &end);
	if (end == value || errno == ERANGE || !isfinite(v)) {
		snprintf(err, err_size, "invalid value for parameter \"%s\": \"%s\"", s->name,
			 value);
		return PGW_EINVAL;
	}
	while (isspace((unsigned char)*end))
		end++;
	if (*end) {
		bool mem_unit = false, mem_param = false;
		double us = unit_size(end, &mem_unit), ps = 0;

		if (*s->unit)
			ps = unit_size(s->unit, &mem_param);
		if (!*s->unit || ps == 0 || us == 0 || mem_unit != mem_param) {
			snprintf(err, err_size, "invalid value for parameter \"%s\": \"%s\"%s",
				 s->name, value,
				 *s->unit ? (mem_param ? " (valid units: B, kB, MB, GB, TB)"
						       : " (valid units: us, ms, s, min, h, d)")
					  : " (this parameter takes no unit)");
			return PGW_EINVAL;
		}
		v = v * us / ps;
	}
	if (integer)
		v = rint(v);
	if ((*s->min_val && v < strtod(s->min_val, NULL)) ||
	    (*s->max_val && v > strtod(s->max_val, NULL))) {
		snprintf(err, err_size,
			 "%s is outside the valid range for parameter \"%s\" (%s .. %s%s%s)", value,
			 s->name, s->min_val, s->max_val, *s->unit ? " " : "", s->unit);
		return PGW_EINVAL;
	}
	return PGW_OK;
}

int dyncfg_check_pg_value(const struct dyncfg_pg_setting *s, const char *value, char *err,
			  size_t err_size)
{
	if (strcmp(s->context, "internal") == 0) {
		snprintf(err, err_size, "parameter \"%s\" cannot be changed", s->name);
		return PGW_EINVAL;
	}
	if (strcmp(s->vartype, "bool") == 0) {
		if (!pg_bool_ok(value)) {
			snprintf(err, err_size, "parameter \"%s\" requires a Boolean value",
				 s->name);
			return PGW_EINVAL;
		}
		return PGW_OK;
	}
	if (strcmp(s->vartype, "integer") == 0 || strcmp(s->vartype, "real") == 0)
		return check_number(s, value, err, err_size);
	if (strcmp(s->vartype, "enum") == 0) {
		const char *p = s->enumvals;
		size_t n = strlen(value);

		while (*p) {
			const char *sep = strchr(p, '\x1f');
			size_t len = sep ? (size_t)(sep - p) : strlen(p);

			if (len == n && strncasecmp(p, value, n) == 0)
				return PGW_OK;
			p += len + (sep ? 1 : 0);
		}
		char list[1024];
		size_t j = 0;

		for (p = s->enumvals; *p && j + 3 < sizeof(list); p++)
			list[j++] = *p == '\x1f' ? ',' : *p;
		list[j] = '\0';
		snprintf(err, err_size, "invalid value for parameter \"%s\": \"%s\" (one of: %s)",
			 s->name, value, list);
		return PGW_EINVAL;
	}
	return PGW_OK; /* string */
}

#include "common/config.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

#define CMN_CFG_MAX_VALUES 1024

struct load_ctx {
	const struct cmn_cfg_schema *schema;
	void *target;
	const char *path;
	char *err;
	size_t err_size;
	bool failed;
	bool *seen; /* per key: set explicitly (file or env) */
	FILE *file;
	int line;	  /* current line of the file */
	int section_line; /* line of the current section's header */
	char *values[CMN_CFG_MAX_VALUES];
	int n_values;
};

int cmn_parse_int64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0')
		return PGW_EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s)
		return PGW_EINVAL;
	while (isspace((unsigned char)*end))
		end++;
	if (*end != '\0')
		return PGW_EINVAL;
	*out = v;
	return PGW_OK;
}

int cmn_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return PGW_OK;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return PGW_OK;
		}
	}
	return PGW_EINVAL;
}

/* Number with an optional unit suffix; scale maps unit -> multiplier. */
struct unit {
	const char *name;
	double mult;
};

static int parse_with_units(const char *s, const struct unit *units, size_t n_units,
			    double default_mult, int64_t *out)
{
	char *end;
	double v, mult = default_mult;

	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0' || *s == '-')
		return PGW_EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || !isfinite(v))
		return PGW_EINVAL;
	while (isspace((unsigned char)*end))
		end++;
	if (*end != '\0') {
		size_t len = strlen(end);
		bool found = false;

		while (len > 0 && isspace((unsigned char)end[len - 1]))
			len--;
		for (size_t i = 0; i < n_units; i++) {
			if (strlen(units[i].name) == len &&
			    strncasecmp(end, units[i].name, len) == 0) {
				mult = units[i].mult;
				found = true;
				break;
			}
		}
		if (!found)
			return PGW_EINVAL;
	}
	v *= mult;
	if (v > 9.2e18)
		return PGW_EINVAL;
	*out = (int64_t)llround(v);
	return PGW_OK;
}

int cmn_parse_duration_ms(const char *s, int64_t *out)
{
	static const struct unit units[] = {
	    {"ms", 1}, {"s", 1000}, {"sec", 1000}, {"min", 60000}, {"m", 60000}, {"h", 3600000},
	};
	return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), 1000, out);
}

int cmn_parse_size(const char *s, int64_t *out)
{
	static const struct unit units[] = {
	    {"B", 1},
	    {"kB", 1024},
	    {"KB", 1024},
	    {"K", 1024},
	    {"MB", 1024.0 * 1024},
	    {"M", 1024.0 * 1024},
	    {"GB", 1024.0 * 1024 * 1024},
	    {"G", 1024.0 * 1024 * 1024},
	    {"TB", 1024.0 * 1024 * 1024 * 1024},
	};
	return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), 1, out);
}

int cmn_levenshtein(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int prev[64], cur[64];

	if (lb >= 64 || la >= 64)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int cost =
			    tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1])
				? 0
				: 1;
			int best = prev[j] + 1;

			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			if (prev[j - 1] + cost < best)
				best = prev[j - 1] + cost;
			cur[j] = best;
		}
		memcpy(prev, cur, sizeof(int) * (lb + 1));
	}
	return prev[lb];
}

const char *cmn_kvlist_get(const struct cmn_kvlist *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i].key, key) == 0)
			return l->items[i].value;
	return NULL;
}

int cmn_kvlist_set(struct cmn_kvlist *l, const char *key, const char *value, const char *origin)
{
	char *v = strdup(value), *o = strdup(origin ? origin : "");

	if (!v || !o) {
		free(v);
		free(o);
		return PGW_ENOMEM;
	}
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->items[i].key, key) == 0) {
			free(l->items[i].value);
			free(l->items[i].origin);
			l->items[i].value = v;
			l->items[i].origin = o;
			return PGW_OK;
		}
	}
	struct cmn_kv *items = realloc(l->items, sizeof(*items) * (l->n + 1));
	char *k = strdup(key);

	if (!items || !k) {
		if (items)
			l->items = items;
		free(k);
		free(v);
		free(o);
		return PGW_ENOMEM;
	}
	l->items = items;
	l->items[l->n].key = k;
	l->items[l->n].value = v;
	l->items[l->n].origin = o;
	l->n++;
	return PGW_OK;
}

void cmn_kvlist_free(struct cmn_kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].key);
		free(l->items[i].value);
		free(l->items[i].origin);
	}
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

static const char *type_hint(enum cmn_cfg_type t)
{
	switch (t) {
	case CMN_CFG_INT:
		return "an integer";
	case CMN_CFG_BOOL:
		return "on or off";
	case CMN_CFG_DURATION:
		return "a duration such as 10, 10s or 500ms";
	case CMN_CFG_SIZE:
		return "a size such as 1048576, 16MB or 4GB";
	default:
		return "a string";
	}
}

static void fmt_bound(const struct cmn_cfg_key *k, int64_t v, char *buf, size_t size)
{
	if (k->type == CMN_CFG_DURATION) {
		if (v % 1000 == 0)
			snprintf(buf, size, "%llds", (long long)(v / 1000));
		else
			snprintf(buf, size, "%lldms", (long long)v);
	} else {
		snprintf(buf, size, "%lld", (long long)v);
	}
}

/* Stores value into the target according to k; on error writes a reason. */
static int store_value(const struct cmn_cfg_key *k, void *target, const char *value, char *why,
		       size_t why_size)
{
	char *base = (char *)target + k->offset;
	int64_t v = 0;
	int rc = PGW_OK;

	switch (k->type) {
	case CMN_CFG_STRING:
	case CMN_CFG_SECRET: {
		char *copy = strdup(value);

		if (!copy)
			return PGW_ENOMEM;
		free(*(char **)base);
		*(char **)base = copy;
		return PGW_OK;
	}
	case CMN_CFG_BOOL:
		if (cmn_parse_bool(value, (bool *)base) != PGW_OK) {
			snprintf(why, why_size, "expected %s", type_hint(k->type));
			return PGW_EINVAL;
		}
		return PGW_OK;
	case CMN_CFG_INT:
		rc = cmn_parse_int64(value, &v);
		break;
	case CMN_CFG_DURATION:
		rc = cmn_parse_duration_ms(value, &v);
		break;
	case CMN_CFG_SIZE:
		rc = cmn_parse_size(value, &v);
		break;
	}
	if (rc != PGW_OK) {
		snprintf(why, why_size, "expected %s", type_hint(k->type));
		return PGW_EINVAL;
	}
	if ((k->min != 0 || k->max != 0) && (v < k->min || v > k->max)) {
		char lo[32], hi[32];

		fmt_bound(k, k->min, lo, sizeof(lo));
		fmt_bound(k, k->max, hi, sizeof(hi));
		snprintf(why, why_size, "out of range (%s .. %s)", lo, hi);
		return PGW_EINVAL;
	}
	if (k->type == CMN_CFG_SIZE)
		*(int64_t *)base = v;
	else if (v > 2147483647 || v < -2147483647) {
		snprintf(why, why_size, "out of range");
		return PGW_EINVAL;
	} else
		*(int *)base = (int)v;
	return PGW_OK;
}

static const struct cmn_cfg_section *find_section(const struct cmn_cfg_schema *s, const char *name)
{
	for (size_t i = 0; i < s->n_sections; i++)
		if (strcasecmp(s->sections[i].name, name) == 0)
			return &s->sections[i];
	return NULL;
}

static ssize_t find_key(const struct cmn_cfg_schema *s, const char *section, const char *name)
{
	for (size_t i = 0; i < s->n_keys; i++)
		if (strcasecmp(s->keys[i].section, section) == 0 &&
		    strcasecmp(s->keys[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static void suggest_key(const struct cmn_cfg_schema *s, const char *section, const char *name,
			char *buf, size_t size)
{
	int best = 4;
	const char *hit = NULL;

	buf[0] = '\0';
	for (size_t i = 0; i < s->n_keys; i++) {
		if (strcasecmp(s->keys[i].section, section) != 0)
			continue;
		int d = cmn_levenshtein(name, s->keys[i].name);

		if (d < best) {
			best = d;
			hit = s->keys[i].name;
		}
	}
	if (hit)
		snprintf(buf, size, " (did you mean '%s'?)", hit);
}

static bool valid_free_key(const char *name)
{
	if (*name == '\0')
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
			return false;
	return true;
}

/* Applies one (section, key, value); origin is "file:line" or "environment NAME". */
static int apply(struct load_ctx *ctx, const char *section, const char *name, const char *value,
		 const char *origin)
{
	const struct cmn_cfg_section *sec = find_section(ctx->schema, section);
	char why[200], hint[80];

	if (!sec) {
		if (ctx->file)
			snprintf(ctx->err, ctx->err_size, "%s:%d: unknown section [%s]", ctx->path,
				 ctx->section_line, section);
		else
			snprintf(ctx->err, ctx->err_size, "%s: unknown section [%s]", origin,
				 section);
		return PGW_EINVAL;
	}
	if (sec->free_form) {
		if (!valid_free_key(name)) {
			snprintf(ctx->err, ctx->err_size, "%s: invalid key '%s' in [%s]", origin,
				 name, sec->name);
			return PGW_EINVAL;
		}
		return cmn_kvlist_set((struct cmn_kvlist *)((char *)ctx->target + sec->list_offset),
				      name, value, origin);
	}
	ssize_t idx = find_key(ctx->schema, sec->name, name);

	if (idx < 0) {
		suggest_key(ctx->schema, sec->name, name, hint, sizeof(hint));
		snprintf(ctx->err, ctx->err_size, "%s: unknown key '%s' in [%s]%s", origin, name,
			 sec->name, hint);
		return PGW_EINVAL;
	}
	const struct cmn_cfg_key *k = &ctx->schema->keys[idx];
	int rc = store_value(k, ctx->target, value, why, sizeof(why));

	if (rc == PGW_OK && ctx->schema->check)
		rc = ctx->schema->check(k, value, why, sizeof(why));
	if (rc == PGW_EINVAL) {
		if (k->type == CMN_CFG_SECRET)
			snprintf(ctx->err, ctx->err_size, "%s: bad value for '%s' in [%s]: %s",
				 origin, k->name, k->section, why);
		else
			snprintf(ctx->err, ctx->err_size, "%s: bad value '%s' for '%s' in [%s]: %s",
				 origin, value, k->name, k->section, why);
	}
	if (rc == PGW_OK)
		ctx->seen[idx] = true;
	return rc;
}

static const char *real_value(const struct load_ctx *ctx, const char *value);

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *ctx = user;
	char origin[4200];

	if (ctx->failed)
		return 0;
	if (name == NULL)
		return 1; /* section header alone */
	snprintf(origin, sizeof(origin), "%s:%d", ctx->path, ctx->line);
	if (*section == '\0') {
		snprintf(ctx->err, ctx->err_size, "%s: key '%s' outside of any section", origin,
			 name);
		ctx->failed = true;
		return 0;
	}
	if (apply(ctx, section, name, real_value(ctx, value), origin) != PGW_OK) {
		ctx->failed = true;
		return 0;
	}
	return 1;
}

/*
 * inih reads the file line by line through us. We hand it each line with the
 * leading blanks removed (no continuation lines) and, for "key = value" lines, the
 * value replaced by a reference to our own copy: so values may be longer than
 * inih's 200-byte line buffer and may contain ';' (comments are whole lines that
 * start with ';' or '#').
 */
#define VALUE_REF '\x1e'

static char *read_line(char *str, int num, void *stream)
{
	struct load_ctx *ctx = stream;
	char *line = NULL, *p, *eq;
	size_t cap = 0;
	ssize_t len = getline(&line, &cap, ctx->file);

	if (len < 0) {
		free(line);
		return NULL;
	}
	ctx->line++;
	p = line;
	while (isspace((unsigned char)*p))
		p++;
	while (len > 0 && isspace((unsigned char)line[len - 1]))
		line[--len] = '\0';
	if (*p == '[')
		ctx->section_line = ctx->line;
	eq = (*p == '[' || *p == ';' || *p == '#') ? NULL : strchr(p, '=');
	if (eq && ctx->n_values < CMN_CFG_MAX_VALUES) {
		char *v = eq + 1;

		while (isspace((unsigned char)*v))
			v++;
		ctx->values[ctx->n_values] = strdup(v);
		snprintf(str, (size_t)num, "%.*s= %c%d",
			 (int)(eq - p) < num - 16 ? (int)(eq - p) : 0, p, VALUE_REF, ctx->n_values);
		ctx->n_values++;
	} else {
		snprintf(str, (size_t)num, "%s", p);
	}
	free(line);
	return str;
}

/* The value inih hands us: ours when it is a reference. */
static const char *real_value(const struct load_ctx *ctx, const char *value)
{
	if (value[0] == VALUE_REF) {
		int i = atoi(value + 1);

		if (i >= 0 && i < ctx->n_values && ctx->values[i])
			return ctx->values[i];
	}
	return value;
}

/*
 * True when key (lower case) names "<a key of sec>_file" and is not itself a key of
 * sec (auth_file is a key; superuser_password_file is the secret read from a file).
 */
static bool file_variable(const struct load_ctx *ctx, const struct cmn_cfg_section *sec,
			  const char *key)
{
	size_t len = strlen(key);
	char base[192];

	if (sec->free_form || len <= 5 || strcmp(key + len - 5, "_file") != 0 ||
	    find_key(ctx->schema, sec->name, key) >= 0)
		return false;
	snprintf(base, sizeof(base), "%.*s", (int)(len - 5), key);
	return find_key(ctx->schema, sec->name, base) >= 0;
}

/*
 * Reads a value from a file (a Docker secret under /run/secrets, say): the whole
 * content, without its trailing newlines, at most 64 KiB, in one line.
 */
static int read_value_file(const char *path, char **out, char *err, size_t err_size,
			   const char *origin)
{
	size_t len = 0;
	char *s;

	if (*path == '\0') {
		snprintf(err, err_size, "%s: empty file name", origin);
		return PGW_EINVAL;
	}
	s = cmn_read_file(path, &len);
	if (!s) {
		snprintf(err, err_size, "%s: cannot read %s: %s", origin, path, strerror(errno));
		return PGW_EINVAL;
	}
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		s[--len] = '\0';
	if (len > 65536 || strlen(s) != len || strpbrk(s, "\r\n")) {
		snprintf(err, err_size,
			 "%s: %s must hold one line of text (at most 64 KiB, no NUL byte)", origin,
			 path);
		explicit_bzero(s, len);
		free(s);
		return PGW_EINVAL;
	}
	*out = s;
	return PGW_OK;
}

static int apply_env(struct load_ctx *ctx)
{
	for (char **e = environ; *e; e++) {
		const char *var = *e;
		const char *eq = strchr(var, '=');
		char name[256], section[64], key[192], origin[300];

		if (strncmp(var, "PGWARDEN_", 9) != 0 || !eq)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(eq - var), var);
		const char *rest = name + 9;
		const struct cmn_cfg_section *sec = NULL;

		for (size_t i = 0; i < ctx->schema->n_sections; i++) {
			size_t l = strlen(ctx->schema->sections[i].name);

			if (strncasecmp(rest, ctx->schema->sections[i].name, l) == 0 &&
			    rest[l] == '_') {
				sec = &ctx->schema->sections[i];
				break;
			}
		}
		if (!sec)
			continue; /* not a configuration variable (PGWARDEN_DIR, ...) */
		snprintf(section, sizeof(section), "%s", sec->name);
		snprintf(key, sizeof(key), "%s", rest + strlen(sec->name) + 1);
		for (char *p = key; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		snprintf(origin, sizeof(origin), "environment %s", name);
		if (file_variable(ctx, sec, key)) {
			/* PGWARDEN_<SECTION>_<KEY>_FILE: the value is that file's content. */
			char *content = NULL;
			int rc;

			key[strlen(key) - 5] = '\0';
			if (read_value_file(eq + 1, &content, ctx->err, ctx->err_size, origin) !=
			    PGW_OK)
				return PGW_EINVAL;
			rc = apply(ctx, section, key, content, origin);
			explicit_bzero(content, strlen(content));
			free(content);
			if (rc != PGW_OK)
				return PGW_EINVAL;
			continue;
		}
		if (apply(ctx, section, key, eq + 1, origin) != PGW_OK)
			return PGW_EINVAL;
	}
	return PGW_OK;
}

int cmn_config_load(const struct cmn_cfg_schema *schema, void *target, const char *path, char *err,
		    size_t err_size)
{
	struct load_ctx ctx = {
	    .schema = schema,
	    .target = target,
	    .path = path,
	    .err = err,
	    .err_size = err_size,
	};
	char why[200];
	int rc = PGW_OK;

	err[0] = '\0';
	ctx.seen = calloc(schema->n_keys + 1, sizeof(bool));
	if (!ctx.seen) {
		snprintf(err, err_size, "out of memory");
		return PGW_ENOMEM;
	}
	for (size_t i = 0; i < schema->n_keys; i++) {
		const struct cmn_cfg_key *k = &schema->keys[i];

		if (k->default_value &&
		    store_value(k, target, k->default_value, why, sizeof(why)) != PGW_OK) {
			snprintf(err, err_size, "internal: bad default for %s.%s", k->section,
				 k->name);
			rc = PGW_EINVAL;
			goto out;
		}
	}
	if (path) {
		ctx.file = fopen(path, "r");
		if (!ctx.file) {
			snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
			rc = PGW_EINVAL;
			goto out;
		}
		int line = ini_parse_stream(read_line, &ctx, on_ini_entry, &ctx);

		fclose(ctx.file);
		ctx.file = NULL;
		if (line != 0) {
			if (!ctx.failed)
				snprintf(
				    err, err_size,
				    "%s:%d: syntax error (expected 'key = value' or '[section]')",
				    path, line);
			rc = PGW_EINVAL;
			goto out;
		}
	}
	rc = apply_env(&ctx);
	if (rc != PGW_OK)
		goto out;
	for (size_t i = 0; i < schema->n_keys; i++) {
		const struct cmn_cfg_key *k = &schema->keys[i];
		bool empty = false;

		if (!k->required)
			continue;
		if (k->type == CMN_CFG_STRING || k->type == CMN_CFG_SECRET) {
			const char *s = *(char **)((char *)target + k->offset);

			empty = s == NULL || *s == '\0';
		} else {
			empty = !ctx.seen[i] && k->default_value == NULL;
		}
		if (empty) {
			snprintf(err, err_size,
				 "%s: missing required key '%s' in [%s] (or environment "
				 "PGWARDEN_%s_%s)",
				 path ? path : "configuration", k->name, k->section, k->section,
				 k->name);
			for (char *p = strstr(err, "PGWARDEN_"); p && *p && *p != ')'; p++)
				*p = (char)toupper((unsigned char)*p);
			rc = PGW_EINVAL;
			goto out;
		}
	}
out:
	for (int i = 0; i < ctx.n_values; i++)
		free(ctx.values[i]);
	free(ctx.seen);
	if (rc != PGW_OK)
		cmn_config_free(schema, target); /* nothing half-loaded is left to the caller */
	return rc;
}

void cmn_config_free(const struct cmn_cfg_schema *schema, void *target)
{
	for (size_t i = 0; i < schema->n_keys; i++) {
		const struct cmn_cfg_key *k = &schema->keys[i];

		if (k->type == CMN_CFG_STRING || k->type == CMN_CFG_SECRET) {
			char **p = (char **)((char *)target + k->offset);

			free(*p);
			*p = NULL;
		}
	}
	for (size_t i = 0; i < schema->n_sections; i++)
		if (schema->sections[i].free_form)
			cmn_kvlist_free((struct cmn_kvlist *)((char *)target +
							      schema->sections[i].list_offset));
}

int cmn_config_set(const struct cmn_cfg_schema *schema, void *target, const char *section,
		   const char *name, const char *value, char *why, size_t why_size)
{
	ssize_t idx = find_key(schema, section, name);
	const struct cmn_cfg_key *k;
	char reason[200];
	int rc;

	if (idx < 0) {
		snprintf(why, why_size, "unknown key '%s' in [%s]", name, section);
		return PGW_EINVAL;
	}
	k = &schema->keys[idx];
	if (!value && (k->type == CMN_CFG_STRING || k->type == CMN_CFG_SECRET)) {
		char **p = (char **)((char *)target + k->offset);

		free(*p);
		*p = NULL;
		return PGW_OK;
	}
	if (!value)
		value = k->default_value ? k->default_value : "0";
	rc = store_value(k, target, value, reason, sizeof(reason));
	if (rc == PGW_OK && schema->check)
		rc = schema->check(k, value, reason, sizeof(reason));
	if (rc == PGW_EINVAL)
		snprintf(why, why_size, "bad value '%s' for '%s' in [%s]: %s",
			 k->type == CMN_CFG_SECRET ? "(secret)" : value, k->name, k->section,
			 reason);
	else if (rc != PGW_OK)
		snprintf(why, why_size, "out of memory");
	return rc;
}

bool cmn_config_format(const struct cmn_cfg_schema *schema, const void *target, const char *section,
		       const char *name, char *buf, size_t size)
{
	ssize_t idx = find_key(schema, section, name);
	const struct cmn_cfg_key *k;
	const char *base;

	if (idx < 0)
		return false;
	k = &schema->keys[idx];
	base = (const char *)target + k->offset;
	switch (k->type) {
	case CMN_CFG_STRING:
	case CMN_CFG_SECRET:
		if (!*(char *const *)base)
			return false;
		snprintf(buf, size, "%s", *(char *const *)base);
		return true;
	case CMN_CFG_BOOL:
		snprintf(buf, size, "%s", *(const bool *)base ? "on" : "off");
		return true;
	case CMN_CFG_SIZE:
		snprintf(buf, size, "%lld", (long long)*(const int64_t *)base);
		return true;
	case CMN_CFG_DURATION:
		snprintf(buf, size, "%dms", *(const int *)base);
		return true;
	case CMN_CFG_INT:
		snprintf(buf, size, "%d", *(const int *)base);
		return true;
	}
	return false;
}

/*
 * Session parameters and startup settings: what a client set, restored on
 * whichever server runs its next transaction.
 */
#include "proxy/conn.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "pgproto/sqlstate.h"
#include "proxy/admin.h"
#include "proxy/authq.h"
#include "proxy/defaults.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

const char *const proxy_param_names[PROXY_N_PARAMS] = {
    "application_name", "client_encoding", "DateStyle",
    "IntervalStyle",	"TimeZone",	   "standard_conforming_strings",
};

int param_index(const char *name)
{
	for (int k = 0; k < PROXY_N_PARAMS; k++)
		if (strcasecmp(proxy_param_names[k], name) == 0)
			return k;
	return -1;
}

const char *client_param(const struct proxy_client *c, int k)
{
	if (c->params && c->params[k])
		return c->params[k];
	return c->pool ? c->pool->defaults[k] : NULL;
}

/* Values the proxy puts into its own SQL are printable ASCII only: in a multibyte
 * client encoding another byte could swallow an escape. */
static bool printable_ascii(const char *value)
{
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return false;
	return true;
}

/* Appends value as the body of an E'' literal (' and \ escaped). */
void append_literal(struct cmn_buf *b, const char *value)
{
	for (const char *p = value; *p; p++)
		(void)cmn_buf_printf(b, "%s%c", *p == '\'' || *p == '\\' ? "\\" : "", *p);
}

/* The client's session has this value now (kept only where it differs from a fresh
 * server session's: idle clients cost little). */
void client_param_set(struct proxy_client *c, int k, const char *value)
{
	char *v;

	/* The values PostgreSQL reports are printable ASCII; anything else is refused. */
	if (!printable_ascii(value)) {
		log_info("C-%llu: %s value with non-printable or non-ASCII bytes ignored",
			 (unsigned long long)c->id, proxy_param_names[k]);
		return;
	}
	if (c->pool && c->pool->defaults[k] && strcmp(c->pool->defaults[k], value) == 0) {
		if (c->params) {
			free(c->params[k]);
			c->params[k] = NULL;
		}
		return;
	}
	if (c->params && c->params[k] && strcmp(c->params[k], value) == 0)
		return;
	if (!c->params && !(c->params = calloc(PROXY_N_PARAMS, sizeof(char *))))
		return;
	if (!(v = strdup(value)))
		return;
	free(c->params[k]);
	c->params[k] = v;
}

static void server_param_set(struct proxy_server *s, int k, const char *value)
{
	char *v;

	if (s->params[k] && strcmp(s->params[k], value) == 0)
		return;
	if (!(v = strdup(value)))
		return;
	free(s->params[k]);
	s->params[k] = v;
}

void params_free(char **v)
{
	for (int k = 0; v && k < PROXY_N_PARAMS; k++) {
		free(v[k]);
		v[k] = NULL;
	}
}

bool streq_null(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

struct settings_build {
	struct proxy_client *c;
	struct cmn_buf sets, resets;
	const char *sqlstate;
	char err[200];
};

static int settings_add(void *arg, const char *name, const char *value)
{
	struct settings_build *sb = arg;
	int k = param_index(name);
	size_t n = strlen(name);

	if (k >= 0) {
		client_param_set(sb->c, k, value);
		return PGW_OK;
	}
	for (size_t i = 0; i < n; i++)
		if (!(isalpha((unsigned char)name[i]) || name[i] == '_' ||
		      (i > 0 && (isdigit((unsigned char)name[i]) || name[i] == '.')))) {
			n = 0;
			break;
		}
	if (n == 0 || n > 63) {
		sb->sqlstate = SQLSTATE_INVALID_NAME;
		snprintf(sb->err, sizeof(sb->err), "invalid configuration parameter name \"%.64s\"",
			 name);
		return PGW_EINVAL;
	}
	if (!printable_ascii(value)) {
		sb->sqlstate = SQLSTATE_INVALID_PARAMETER_VALUE;
		snprintf(sb->err, sizeof(sb->err),
			 "startup parameter \"%s\": the proxy takes printable ASCII values only",
			 name);
		return PGW_EINVAL;
	}
	/* set_config takes the value as a startup setting does (SET would read a quoted
	 * "a,b" as one search_path entry); a quoted name may be a keyword (my.user). */
	(void)cmn_buf_printf(&sb->sets, "SELECT pg_catalog.set_config('%s', E'", name);
	append_literal(&sb->sets, value);
	(void)cmn_buf_printf(&sb->sets, "', false);");
	(void)cmn_buf_printf(&sb->resets, "RESET \"%s\";", name);
	return sb->sets.data && sb->resets.data ? PGW_OK : PGW_ENOMEM;
}

/* The client's startup settings: "options" first, then the other parameters (the
 * order PostgreSQL applies them in). False when the client was refused. */
bool client_settings(struct proxy_client *c, const struct pgp_startup *st)
{
	static const char *const skip[] = {"user", "database", "replication", "options"};
	struct settings_build sb = {.c = c, .sqlstate = SQLSTATE_SYNTAX_ERROR};
	int rc = PGW_OK;

	if (st->options)
		rc = pgp_parse_options(st->options, settings_add, &sb, sb.err, sizeof(sb.err));
	for (size_t i = 0; rc == PGW_OK && i < st->n_params; i++) {
		const char *name = st->params[i].name;
		bool known = strncmp(name, "_pq_.", 5) == 0;

		for (size_t j = 0; j < sizeof(skip) / sizeof(skip[0]); j++)
			known = known || strcmp(name, skip[j]) == 0;
		if (!known)
			rc = settings_add(&sb, name, st->params[i].value);
	}
	if (rc == PGW_OK && sb.sets.len &&
	    (!(c->sets = strdup(sb.sets.data)) || !(c->resets = strdup(sb.resets.data))))
		rc = PGW_ENOMEM;
	/* Its startup values of the tracked parameters: what a RESET brings back. */
	for (int k = 0; rc == PGW_OK && c->params && k < PROXY_N_PARAMS; k++) {
		if (!c->params[k])
			continue;
		if ((!c->startup && !(c->startup = calloc(PROXY_N_PARAMS, sizeof(char *)))) ||
		    !(c->startup[k] = strdup(c->params[k])))
			rc = PGW_ENOMEM;
	}
	cmn_buf_free(&sb.sets);
	cmn_buf_free(&sb.resets);
	if (rc == PGW_ENOMEM)
		client_fatal(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
	else if (rc != PGW_OK)
		client_fatal(c, sb.sqlstate, "%s", sb.err);
	return rc == PGW_OK;
}

/* A server of the pool accepted these settings recently. */
bool pool_settings_ok(const struct proxy_pool *pool, const char *sets)
{
	if (!sets)
		return true;
	for (size_t i = 0; i < sizeof(pool->sets_ok) / sizeof(pool->sets_ok[0]); i++)
		if (pool->sets_ok[i] && strcmp(pool->sets_ok[i], sets) == 0)
			return true;
	return false;
}

void pool_settings_accepted(struct proxy_pool *pool, const char *sets)
{
	unsigned n = sizeof(pool->sets_ok) / sizeof(pool->sets_ok[0]);
	char *copy;

	if (pool_settings_ok(pool, sets) || !(copy = strdup(sets)))
		return;
	free(pool->sets_ok[pool->sets_ok_next % n]);
	pool->sets_ok[pool->sets_ok_next++ % n] = copy;
}

/* The server runs with a client's settings now (NULL: its own). */
void server_settings_set(struct proxy_server *s, const char *sets, const char *resets)
{
	free(s->sets);
	free(s->resets);
	s->sets = sets ? strdup(sets) : NULL;
	s->resets = resets ? strdup(resets) : NULL;
	if (sets && (!s->sets || !s->resets)) {
		/* Out of memory: what it runs with is unknown; it leaves the pool. */
		s->close_after = true;
		free(s->sets);
		s->sets = NULL;
	}
	s->pq.has_settings = s->sets != NULL;
}

/*
 * A ParameterStatus from a server: its session, and its client's, have that value.
 * Except after the client's RESET / DISCARD ALL brought the server's own startup value
 * back where the client had given one of its own: PostgreSQL would have brought the
 * client's back, so the client keeps it (set on the server before its next request)
 * and the index of the parameter is returned, for the client to be told that value
 * instead; else -1.
 */
int server_param_status(struct proxy_server *s, const uint8_t *body, size_t len)
{
	struct proxy_client *c = s->client;
	struct pgp_reader r;
	const char *name, *value;
	int k;

	pgp_reader_init(&r, body, len);
	name = pgp_get_str(&r);
	value = pgp_get_str(&r);
	if (r.bad || !name || !value || (k = param_index(name)) < 0)
		return -1;
	server_param_set(s, k, value);
	if (!c)
		return -1;
	/* Not the encoding's two: a client must never decode with a value the server does
	 * not use yet (it is set again only before the next request). */
	if (s->pq.reset_seen && c->startup && c->startup[k] && c->pool &&
	    strcmp(proxy_param_names[k], "client_encoding") != 0 &&
	    strcmp(proxy_param_names[k], "standard_conforming_strings") != 0 &&
	    streq_null(c->pool->defaults[k], value) && strcmp(c->startup[k], value) != 0) {
		client_param_set(c, k, c->startup[k]);
		return k;
	}
	client_param_set(c, k, value);
	return -1;
}

/*
 * The admin console's connection side: its login, its input, and PAUSE answered
 * once the transactions in flight have ended (proxy/admin.c answers the commands).
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

/* The admin console's fixed welcome (PgBouncer's). */
void admin_logged_in(struct proxy_client *c)
{
	struct proxy *px = c->proxy;

	static const char *const params[][2] = {
	    {"server_version", "15.0/pgwarden"},
	    {"client_encoding", "UTF8"},
	    {"server_encoding", "UTF8"},
	    {"DateStyle", "ISO"},
	    {"TimeZone", "GMT"},
	    {"standard_conforming_strings", "on"},
	    {"is_superuser", "on"},
	    {"integer_datetimes", "on"},
	};
	struct cmn_buf b = {0};
	int rc = pgp_put_auth(&b, PGP_AUTH_OK, NULL, 0);

	for (size_t i = 0; rc == PGW_OK && i < sizeof(params) / sizeof(params[0]); i++)
		rc = pgp_put_parameter_status(&b, params[i][0], params[i][1]);
	if (rc == PGW_OK)
		rc = pgp_put_backend_key(&b, 0, 0);
	if (rc == PGW_OK)
		rc = pgp_put_ready(&b, 'I');
	free(c->scram);
	c->scram = NULL;
	TAILQ_REMOVE(&px->login_clients, c, entry);
	c->state = PROXY_CL_IDLE;
	c->welcomed = true;
	TAILQ_INSERT_TAIL(&px->admin_clients, c, entry);
	if (rc == PGW_OK)
		(void)client_send(c, &b);
	else
		client_close(c, "out of memory");
	cmn_buf_free(&b);
}

/* Admin console input: simple queries only. */
static bool is_pause(const char *sql)
{
	while (isspace((unsigned char)*sql))
		sql++;
	if (strncasecmp(sql, "pause", 5) != 0)
		return false;
	for (sql += 5; *sql; sql++)
		if (!isspace((unsigned char)*sql) && *sql != ';')
			return false;
	return true;
}

/* Answers the PAUSEs waiting for the transactions in flight, once none is left (or
 * once RESUME came). */
void pause_check(struct proxy *p)
{
	struct proxy_client *c, *tmp;

	if (!p->pause_waiters || (p->paused && proxy_active_servers(p) > 0))
		return;
	TAILQ_FOREACH_SAFE(c, &p->admin_clients, entry, tmp)
	{
		struct cmn_buf *reply = c->pause_reply;

		if (!reply)
			continue;
		c->pause_reply = NULL;
		p->pause_waiters--;
		(void)client_send(c, reply);
		cmn_buf_free(reply);
		free(reply);
		if (c->state != PROXY_CL_DEAD)
			admin_input(c);
	}
}

void admin_input(struct proxy_client *c)
{
	struct proxy *px = c->proxy;
	const struct proxy_admin_ops ops = {.pause = proxy_pause, .reload = px->reload};

	if (c->pause_reply)
		return; /* its PAUSE has not answered yet */
	while (c->state != PROXY_CL_DEAD && buf_used(&c->in)) {
		const uint8_t *d = c->in.data + c->in.off;
		uint8_t type;
		size_t total;
		int rc = pgp_frame(d, buf_used(&c->in), 1 << 16, &type, &total);

		if (rc < 0) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "invalid message on the admin console");
			return;
		}
		if (rc == 0)
			return;
		if (type == PGP_FE_TERMINATE) {
			client_close(c, NULL);
			return;
		}
		if (type != PGP_FE_QUERY || d[total - 1] != '\0') {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "extended query protocol not supported by admin console");
			return;
		}
		struct cmn_buf out = {0};
		bool shutdown = false;
		char *sql = strndup((const char *)d + 5, total - 6);

		rc = sql ? proxy_admin_query(px, &ops, c, sql, &out, &shutdown) : PGW_ENOMEM;
		buf_consume(&c->in, total);
		if (rc == PGW_OK && px->paused && is_pause(sql) && out.len &&
		    out.data[0] == PGP_BE_COMMAND_COMPLETE && proxy_active_servers(px) > 0) {
			/* As PgBouncer's: PAUSE answers once the transactions in flight ended. */
			c->pause_reply = malloc(sizeof(*c->pause_reply));
			if (c->pause_reply) {
				*c->pause_reply = out;
				px->pause_waiters++;
				free(sql);
				return;
			}
		}
		free(sql);
		if (rc == PGW_OK)
			(void)client_send(c, &out);
		else
			client_close(c, "out of memory");
		cmn_buf_free(&out);
		if (shutdown) {
			log_info("SHUTDOWN from the admin console (%s)", c->user);
			cmn_loop_stop(px->loop);
			return;
		}
	}
}

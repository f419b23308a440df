/*
 * Client authentication: SCRAM-SHA-256 or MD5 against the auth file, or a
 * secret looked up with auth_query (cached when missing, rate-limited per address).
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

/* The password step of the client's login. */
void client_password(struct proxy_client *c, const uint8_t *body, size_t len)
{
	struct proxy *px = c->proxy;

	struct proxy_user *u = proxy_userlist_find(&px->users, c->user);
	struct cmn_buf b = {0};
	char msg[PGP_SCRAM_MAX_MSG];

	if (!u)
		goto bad;
	if (c->auth_md5) {
		char want[36];

		if (!u->has_md5 || len < 1 || body[len - 1] != '\0')
			goto bad;
		pgp_md5_response(u->md5, c->md5_salt, want);
		if (strcmp((const char *)body, want) != 0)
			goto bad;
		client_logged_in(c);
		return;
	}
	if (c->auth_step == 1) { /* SASLInitialResponse */
		struct pgp_reader r;
		const char *mech;
		uint32_t dlen;
		const uint8_t *data;

		pgp_reader_init(&r, body, len);
		mech = pgp_get_str(&r);
		dlen = pgp_get_u32(&r);
		data = r.bad || dlen > PGP_SCRAM_MAX_MSG ? NULL : pgp_get_bytes(&r, dlen);
		if (!mech || strcmp(mech, PGP_SCRAM_MECHANISM) != 0 || !data) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
				     "malformed SASL initial response");
			return;
		}
		c->scram = calloc(1, sizeof(*c->scram));
		if (!c->scram || pgp_scram_server_first(c->scram, &u->scram, (const char *)data,
							dlen, msg, sizeof(msg)) != PGW_OK)
			goto bad;
		if (pgp_put_auth(&b, PGP_AUTH_SASL_CONTINUE, msg, strlen(msg)) == PGW_OK)
			(void)client_send(c, &b);
		cmn_buf_free(&b);
		c->auth_step = 2;
		return;
	}
	if (c->auth_step == 2 && c->scram) {
		uint8_t key[PGP_SCRAM_KEY_LEN];
		int rc = pgp_scram_server_final(c->scram, (const char *)body, len, msg, sizeof(msg),
						key);

		if (rc != PGW_OK)
			goto bad;
		if (!u->password && !u->has_client_key) {
			memcpy(u->client_key, key, sizeof(key));
			u->has_client_key = true;
		}
		if (pgp_put_auth(&b, PGP_AUTH_SASL_FINAL, msg, strlen(msg)) != PGW_OK ||
		    !client_send(c, &b)) {
			cmn_buf_free(&b);
			return;
		}
		cmn_buf_free(&b);
		client_logged_in(c);
		return;
	}
bad:
	client_fatal(c, SQLSTATE_INVALID_PASSWORD, "password authentication failed for user \"%s\"",
		     c->user);
}

/* Asks the client for its password: SCRAM, or MD5 when that is all we know (or want). */
void client_challenge(struct proxy_client *c)
{
	struct proxy *px = c->proxy;

	struct proxy_user *u = proxy_userlist_find(&px->users, c->user);
	struct cmn_buf b = {0};

	bool md5_allowed = strcasecmp(px->cfg.auth_type, "md5") == 0;

	c->auth_step = 1;
	if (u && !u->has_scram && !md5_allowed) {
		/* MD5 only where asked for: its hash is as good as the password to replay. */
		log_warning("user \"%s\" has only an MD5 secret and auth_type is %s: login refused "
			    "(give it a SCRAM secret, or set auth_type = md5)",
			    c->user, px->cfg.auth_type);
		client_fatal(c, SQLSTATE_INVALID_PASSWORD,
			     "password authentication failed for user \"%s\"", c->user);
		return;
	}
	c->auth_md5 = u && (!u->has_scram || (md5_allowed && u->has_md5));
	if (c->auth_md5) {
		if (pgp_random(c->md5_salt, sizeof(c->md5_salt)) == PGW_OK &&
		    pgp_put_auth(&b, PGP_AUTH_MD5, c->md5_salt, 4) == PGW_OK)
			(void)client_send(c, &b);
	} else if (pgp_put_auth_sasl(&b, PGP_SCRAM_MECHANISM) == PGW_OK) {
		(void)client_send(c, &b);
	}
	cmn_buf_free(&b);
}

/*
 * Users auth_query did not find, remembered AUTHQ_NEGATIVE_MS, and a bound on lookups
 * per second: made-up user names must not each open a connection to the primary.
 */

static struct {
	char user[64];
	int64_t until_ms;
} authq_missing[AUTHQ_NEGATIVE_N];
static unsigned authq_missing_next;

static bool authq_known_missing(const char *user)
{
	int64_t now = cmn_now_ms();

	for (size_t i = 0; i < AUTHQ_NEGATIVE_N; i++)
		if (authq_missing[i].until_ms > now && strcmp(authq_missing[i].user, user) == 0)
			return true;
	return false;
}

static void authq_remember_missing(const char *user)
{
	unsigned i = authq_missing_next++ % AUTHQ_NEGATIVE_N;

	snprintf(authq_missing[i].user, sizeof(authq_missing[i].user), "%s", user);
	authq_missing[i].until_ms = cmn_now_ms() + AUTHQ_NEGATIVE_MS;
}

/*
 * false once AUTHQ_LOOKUPS_PER_SEC lookups started this second for addr (per address:
 * one flooding host must not lock every auth_query user out).
 */
static bool authq_lookup_allowed(const char *addr)
{
	static struct {
		char addr[64];
		int64_t window_ms;
		int n;
	} seen[64];
	int64_t now = cmn_now_ms();
	size_t pick = 0;

	for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
		if (strcmp(seen[i].addr, addr) == 0) {
			pick = i;
			break;
		}
		if (seen[i].window_ms < seen[pick].window_ms)
			pick = i; /* the stalest slot, if addr has none */
	}
	if (strcmp(seen[pick].addr, addr) != 0 || now - seen[pick].window_ms >= 1000) {
		snprintf(seen[pick].addr, sizeof(seen[pick].addr), "%s", addr);
		seen[pick].window_ms = now;
		seen[pick].n = 0;
	}
	return seen[pick].n++ < AUTHQ_LOOKUPS_PER_SEC;
}

/* The user is not in the auth file: ask the primary (auth_user, auth_query). */
void auth_query_start(struct proxy_client *c)
{
	struct proxy *px = c->proxy;

	struct proxy_user *au = proxy_userlist_find(&px->users, px->cfg.auth_user);

	if (authq_known_missing(c->user)) {
		client_fatal(c, SQLSTATE_INVALID_PASSWORD,
			     "password authentication failed for user \"%s\"", c->user);
		return;
	}

	if (!au || !au->password) {
		log_error("auth_user %s needs a plaintext password in the auth file",
			  px->cfg.auth_user);
		client_fatal(c, SQLSTATE_INVALID_PASSWORD,
			     "password authentication failed for user \"%s\"", c->user);
		return;
	}
	if (!px->routing_writes) {
		/* No primary yet (start-up, failover): wait for one, within the login timeout. */
		c->auth_step = 8;
		return;
	}
	if (!px->authq && proxy_authq_start(px->loop, &px->authq) != PGW_OK) {
		client_fatal(c, SQLSTATE_SYSTEM_ERROR, "cannot start the auth_query worker");
		return;
	}
	if (!authq_lookup_allowed(c->addr)) {
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "too many user lookups this second from %s (auth_query)", c->addr);
		return;
	}
	if (proxy_authq_request(px->authq, c->id, c->user,
				px->cfg.auth_dbname ? px->cfg.auth_dbname : c->database,
				px->leader_host, px->leader_port, au->name, au->password,
				px->cfg.auth_query) != PGW_OK) {
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "too many user lookups waiting for the primary (auth_query)");
		return;
	}
	c->auth_step = 9; /* waiting for the answer */
}

/* Clients that waited for a primary to ask. */
void auth_query_retry(struct proxy *p)
{
	struct proxy_client *c, *tmp;

	if (!p->routing_writes)
		return;
	TAILQ_FOREACH_SAFE(c, &p->login_clients, entry, tmp)
	if (c->auth_step == 8)
		auth_query_start(c);
}

/* Answers of auth_query (loop thread, after a wake-up). */
void auth_query_answers(struct proxy *p)
{
	struct proxy_authq_result r;

	while (p->authq && proxy_authq_take(p->authq, &r)) {
		struct proxy_client *c;

		TAILQ_FOREACH(c, &p->login_clients, entry)
		if (c->id == r.client_id)
			break;
		if (!c || c->auth_step != 9)
			continue; /* the client left meanwhile */
		if (r.error[0]) {
			log_warning("%s", r.error);
			client_fatal(c, SQLSTATE_CONNECTION_FAILURE,
				     "cannot look up user \"%s\": auth_query failed", c->user);
			continue;
		}
		if (!r.found) {
			log_info("auth_query: no user \"%s\" on the primary (remembered for %d s)",
				 r.user, AUTHQ_NEGATIVE_MS / 1000);
			authq_remember_missing(r.user);
		}
		if (!r.found || proxy_userlist_set(&p->users, r.user, r.secret) != PGW_OK) {
			client_fatal(c, SQLSTATE_INVALID_PASSWORD,
				     "password authentication failed for user \"%s\"", c->user);
			continue;
		}
		client_challenge(c);
	}
}

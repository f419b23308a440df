/*
 * A client whose server was lost in the middle of a transaction (transaction
 * pooling): the proxy answers it, as PostgreSQL would a failed transaction, until the
 * client ends its transaction.
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

static bool orphan_send(struct proxy_client *c, struct cmn_buf *b, int rc)
{
	bool ok = rc == PGW_OK && client_send(c, b);

	cmn_buf_reset(b);
	if (rc != PGW_OK && c->state != PROXY_CL_DEAD)
		client_close(c, "out of memory");
	return ok;
}

/*
 * The server running a client's transaction is gone (it died, or the leader
 * changed): the client keeps its connection. What it waits for is answered with
 * an error (08006: the outcome is unknown); inside a transaction block it is left
 * in a failed transaction, which the proxy plays until the client ends it, and
 * its next transaction runs on a server again (the new primary's, after a
 * failover).
 */
/* The rest of a message the lost server got only part of is never parsed. */
void discard_partial(struct proxy_client *c)
{
	size_t k = c->fe.left < buf_used(&c->in) ? c->fe.left : buf_used(&c->in);

	c->fe.left -= k;
	if (k)
		buf_consume(&c->in, k);
}

void client_lost_server(struct proxy_client *c, struct proxy_server *s, const char *why)
{
	struct cmn_buf b = {0};
	char msg[300];
	int units = 0, rc = PGW_OK;
	bool tail = false; /* answers owed after the last ReadyForQuery owed */
	char status;

	if (s->be.left && !s->be_drop) {
		/* Part of a message reached the client: nothing more can be said cleanly. */
		client_close(c, "server connection lost in the middle of a message");
		return;
	}
	extq_owed(&s->pq, &units, &tail);
	/* Inside a transaction block the client must roll back, unless what was lost
	 * was the command ending it (a failed COMMIT ends the transaction too). */
	status = c->txn == 'I' || (units && c->ending) ? 'I' : 'E';
	if (c->state == PROXY_CL_ACTIVE)
		client_set_state(c, PROXY_CL_IDLE);
	c->in_copy = false;
	snprintf(msg, sizeof(msg), "server connection lost (%s): %s", why,
		 units || tail ? "the outcome of the command in flight is unknown"
			       : "the transaction is rolled back");
	log_info("C-%llu: %s", (unsigned long long)c->id, msg);
	if (units || tail || status == 'E') /* told now, or at its next command */
		c->proxy->rings.errors++;
	for (int u = 0; u < units && rc == PGW_OK; u++) {
		rc = pgp_put_error(&b, "ERROR", SQLSTATE_CONNECTION_FAILURE, msg, NULL);
		if (rc == PGW_OK)
			rc = pgp_put_ready(&b, status);
	}
	/* Extended-protocol messages not yet synced (a COPY IN by Execute included): an
	 * error now (unless the server already sent one), then nothing up to the Sync. */
	c->orphan_skip = tail || s->ext_open;
	if (c->orphan_skip && !s->pq.skipping && rc == PGW_OK)
		rc = pgp_put_error(&b, "ERROR", SQLSTATE_CONNECTION_FAILURE, msg, NULL);
	c->txn = status;
	c->orphan = status == 'E' || c->orphan_skip;
	c->orphan_untold = c->orphan && units == 0 && !c->orphan_skip;
	c->orphan_unnamed_end = c->orphan_portal_end = 0;
	if ((b.len || rc != PGW_OK) && !orphan_send(c, &b, rc)) {
		cmn_buf_free(&b);
		return;
	}
	cmn_buf_free(&b);
	/* What the client sent that the server never got is answered now; a request
	 * after the end of the failed transaction waits for a server (the pool's
	 * dispatch runs after this). */
	if (c->orphan && buf_used(&c->in))
		orphan_input(c);
	if (c->state == PROXY_CL_DEAD)
		return;
	if (!c->orphan)
		discard_partial(c);
	if (!c->orphan && c->state == PROXY_CL_IDLE && buf_used(&c->in) && !c->fe.left) {
		client_set_state(c, PROXY_CL_WAITING);
		c->wait_since_ms = cmn_now_ms();
		c->wait_since_us = cmn_now_us();
	}
}

/* A statement that ends a transaction block (answered "ROLLBACK" in a failed one):
 * END_ROLLBACK (ROLLBACK, ABORT) or END_COMMIT (COMMIT, END), else 0. */
enum { END_ROLLBACK = 1, END_COMMIT = 2 };

int ends_transaction(const char *q, size_t n)
{
	static const char *const words[] = {"rollback", "abort", "commit", "end"};
	size_t i = 0, w;

	while (i < n && (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r'))
		i++;
	for (w = 0; w < 4; w++) {
		size_t l = strlen(words[w]);

		if (n - i >= l && strncasecmp(q + i, words[w], l) == 0 &&
		    (n - i == l || (!isalnum((unsigned char)q[i + l]) && q[i + l] != '_')))
			break;
	}
	if (w == 4)
		return 0;
	int kind = w < 2 ? END_ROLLBACK : END_COMMIT;

	i += strlen(words[w]);
	/* Only optional WORK / TRANSACTION, then spaces and semicolons. */
	while (i < n && q[i]) {
		if (isspace((unsigned char)q[i]) || q[i] == ';') {
			i++;
			continue;
		}
		if (n - i >= 4 && strncasecmp(q + i, "work", 4) == 0) {
			i += 4;
			continue;
		}
		if (n - i >= 11 && strncasecmp(q + i, "transaction", 11) == 0) {
			i += 11;
			continue;
		}
		return 0;
	}
	return kind;
}

/* The query text of a Bind / Describe target in the failed transaction. */
static int orphan_stmt_ends(struct proxy_client *c, const char *name)
{
	const struct extq_stmt *st;

	if (!name[0])
		return c->orphan_unnamed_end;
	st = extq_names_get(&c->stmts, name);
	return st ? ends_transaction((const char *)st->body,
				     strnlen((const char *)st->body, st->len))
		  : 0;
}

/* Answers the client's messages while it has no server (see client_lost_server). */
/*
 * The proxy's answer, into b, to one whole message (type, body of len bytes) of a client
 * whose server was lost: what PostgreSQL answers in a failed transaction, except that
 * what ends the transaction (ROLLBACK, COMMIT, ... by Query or by the unnamed statement
 * and portal) ends it. *query: a Query's text (for the log). PGW_OK or PGW_ENOMEM.
 */
static int orphan_answer(struct proxy_client *c, uint8_t type, const uint8_t *body, size_t len,
			 struct cmn_buf *b, const char **query)
{
	static const char aborted[] =
	    "current transaction is aborted, commands ignored until end of transaction block";
	const char *state =
	    c->orphan_untold ? SQLSTATE_CONNECTION_FAILURE : SQLSTATE_IN_FAILED_SQL_TRANSACTION;
	const char *text = c->orphan_untold ? "server connection lost while idle in a "
					      "transaction: the transaction is rolled back"
					    : aborted;
	struct pgp_reader r;
	const char *s1 = NULL, *s2 = NULL;
	uint8_t kind = 0;
	int end, rc = PGW_OK;

	pgp_reader_init(&r, body, len);
	switch (type) {
	case PGP_FE_SYNC:
		c->orphan_skip = false;
		rc = pgp_put_ready(b, c->txn);
		break;
	case PGP_FE_QUERY:
		s1 = pgp_get_str(&r);
		end = s1 ? ends_transaction(s1, strlen(s1)) : 0;
		if (end == END_COMMIT && c->orphan_untold) {
			/* Never a quiet "ROLLBACK" for a COMMIT that did not see the loss.
			 */
			c->txn = 'I';
			rc = pgp_put_error(b, "ERROR", state, text, NULL);
		} else if (end) {
			c->txn = 'I';
			rc = pgp_put_command_complete(b, "ROLLBACK");
		} else {
			rc = pgp_put_error(b, "ERROR", state, text, NULL);
		}
		if (rc == PGW_OK)
			rc = pgp_put_ready(b, c->txn);
		break;
	case PGP_FE_PARSE:
		s1 = pgp_get_str(&r);
		s2 = pgp_get_str(&r);
		end = s1 && s2 ? ends_transaction(s2, strlen(s2)) : 0;
		if (end) {
			if (!s1[0])
				c->orphan_unnamed_end = (uint8_t)end;
			rc = extq_put_synth(b, PGP_BE_PARSE_COMPLETE);
			break;
		}
		goto fail;
	case PGP_FE_BIND:
		s1 = pgp_get_str(&r);
		s2 = pgp_get_str(&r);
		end = s1 && s2 && !s1[0] ? orphan_stmt_ends(c, s2) : 0;
		if (end) {
			c->orphan_portal_end = (uint8_t)end;
			rc = extq_put_synth(b, PGP_BE_BIND_COMPLETE);
			break;
		}
		goto fail;
	case PGP_FE_DESCRIBE:
		kind = pgp_get_u8(&r);
		s1 = pgp_get_str(&r);
		if (s1 && kind == 'S' && orphan_stmt_ends(c, s1)) {
			static const uint8_t none[7] = {'t', 0, 0, 0, 6, 0, 0};

			rc = cmn_buf_append(b, none, sizeof(none));
			if (rc == PGW_OK)
				rc = extq_put_synth(b, PGP_BE_NO_DATA);
			break;
		}
		if (s1 && kind == 'P' && !s1[0] && c->orphan_portal_end) {
			rc = extq_put_synth(b, PGP_BE_NO_DATA);
			break;
		}
		goto fail;
	case PGP_FE_EXECUTE:
		s1 = pgp_get_str(&r);
		if (s1 && !s1[0] && c->orphan_portal_end) {
			c->txn = 'I';
			end = c->orphan_portal_end;
			c->orphan_portal_end = 0;
			if (end == END_COMMIT && c->orphan_untold) {
				rc = pgp_put_error(b, "ERROR", state, text, NULL);
				c->orphan_skip = true;
			} else {
				rc = pgp_put_command_complete(b, "ROLLBACK");
			}
			break;
		}
		goto fail;
	case PGP_FE_CLOSE:
		rc = extq_put_synth(b, PGP_BE_CLOSE_COMPLETE);
		break;
	case PGP_FE_FLUSH:
	case PGP_FE_COPY_DATA:
	case PGP_FE_COPY_DONE:
	case PGP_FE_COPY_FAIL:
		break;
	case PGP_FE_FUNCTION_CALL:
		rc = pgp_put_error(b, "ERROR", state, text, NULL);
		if (rc == PGW_OK)
			rc = pgp_put_ready(b, c->txn);
		break;
	default:
	fail:
		rc = pgp_put_error(b, "ERROR", state, text, NULL);
		c->orphan_skip = true;
		break;
	}
	*query = type == PGP_FE_QUERY ? s1 : NULL;
	return rc;
}

void orphan_input(struct proxy_client *c)
{
	struct proxy *px = c->proxy;

	struct cmn_buf b = {0};

	while (c->orphan && c->state != PROXY_CL_DEAD) {
		if (buf_used(&c->out) > BACKLOG_LIMIT) {
			/* It does not read its answers: stop reading until it does. */
			pause_reading(c->proxy->loop, &c->io, &c->reading_paused, true);
			break;
		}
		const uint8_t *d = c->in.data + c->in.off;
		size_t n = buf_used(&c->in), total;
		int rc = PGW_OK;
		uint8_t type;

		if (c->fe.left) { /* the rest of a message the server never got */
			size_t k = c->fe.left < n ? c->fe.left : n;

			c->fe.left -= k;
			buf_consume(&c->in, k);
			if (c->fe.left)
				break;
			continue;
		}
		if (n < 5)
			break;
		type = d[0];
		total =
		    1 + (((size_t)d[1] << 24) | ((size_t)d[2] << 16) | ((size_t)d[3] << 8) | d[4]);
		if (total < 5 || total - 1 > PGP_MAX_MESSAGE) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid message length");
			break;
		}
		/* Too long to hold, or to wait for (reading pauses past BACKLOG_LIMIT), and so
		 * no COMMIT or ROLLBACK: answered from its type, skipped as it arrives. */
		bool skim = ((int64_t)total > px->cfg.max_packet_size || total > BACKLOG_LIMIT) &&
			    type != PGP_FE_COPY_DATA;
		size_t have = n < total ? n : total;

		if (n < total && !skim) {
			if (type == PGP_FE_COPY_DATA) { /* skipped as it arrives */
				c->fe.left = total - n;
				buf_consume(&c->in, n);
			}
			break;
		}
		const char *query = NULL;

		if (type == PGP_FE_TERMINATE) {
			client_close(c, NULL);
			break;
		}
		c->fe.left = total - have;
		if (c->orphan_skip && type != PGP_FE_SYNC) {
			buf_consume(&c->in, have);
			continue;
		}
		rc = orphan_answer(c, type, d + 5, skim ? 0 : total - 5, &b, &query);
		log_debug("C-%llu: no server: '%c' %.40s answered by the proxy (transaction %c%s)",
			  (unsigned long long)c->id, type, query ? query : "", c->txn,
			  c->orphan_skip ? ", skipping" : "");
		buf_consume(&c->in, have);
		if (b.len && ((const uint8_t *)b.data)[0] == 'E')
			c->orphan_untold = false;
		if (!orphan_send(c, &b, rc))
			break;
		if (c->txn == 'I' && !c->orphan_skip)
			c->orphan = false; /* the next transaction gets a server again */
	}
	cmn_buf_free(&b);
}

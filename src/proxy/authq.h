/*
 * auth_query: the secret of a user missing from the auth file, asked from the
 * primary (as auth_user) by a worker thread, so the event loop never waits on it.
 * Answers come back through a queue; the loop is woken for each.
 */
#ifndef PGW_AUTHQ_H
#define PGW_AUTHQ_H

#include "common/err.h"

#include <stdbool.h>
#include <stdint.h>

struct cmn_loop;
struct proxy_authq;

struct proxy_authq_result {
	uint64_t client_id;
	char user[64];
	bool found;	  /* the query returned a row with a secret */
	char secret[512]; /* SCRAM verifier or md5 hash */
	char error[256];  /* set when the primary could not be asked */
};

int proxy_authq_start(struct cmn_loop *loop, struct proxy_authq **out) PGW_WUR;
void proxy_authq_stop(struct proxy_authq *q);
/* Queues a lookup; strings are copied. */
int proxy_authq_request(struct proxy_authq *q, uint64_t client_id, const char *user,
			const char *dbname, const char *host, int port, const char *auth_user,
			const char *auth_password, const char *query) PGW_WUR;
/* Takes one finished lookup (loop thread); false when none is ready. */
bool proxy_authq_take(struct proxy_authq *q, struct proxy_authq_result *out);

#endif

/*
 * The proxy's users (PgBouncer's auth_file format): one user per line,
 * "name" "secret", each in double quotes ("" for a quote inside), where the
 * secret is a plaintext password, an MD5 hash ("md5" + 32 hex) or a SCRAM
 * verifier. Blank lines and lines starting with ';' or '#' are ignored.
 */
#ifndef PGW_USERLIST_H
#define PGW_USERLIST_H

#include "common/err.h"
#include "pgproto/scram.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proxy_user {
	char name[64];
	char *password; /* plaintext, or NULL when only a hash is known */
	bool has_md5;
	char md5[36]; /* "md5" + hex */
	bool has_scram;
	struct pgp_scram_secret scram;
	/* ClientKey learned from a client's SCRAM login: logs in to the servers when
	 * there is no plaintext password (the verifier must be the server's). */
	bool dynamic; /* from auth_query: asked again at each login */
	bool has_client_key;
	uint8_t client_key[PGP_SCRAM_KEY_LEN];
};

struct proxy_userlist {
	struct proxy_user *users;
	size_t n;
};

/* err gets "file:line: ..." on failure. */
int proxy_userlist_load(const char *path, struct proxy_userlist *out, char *err,
			size_t err_size) PGW_WUR;
struct proxy_user *proxy_userlist_find(struct proxy_userlist *l, const char *name);
/* Adds name, or replaces its secret (auth_query answers). */
int proxy_userlist_set(struct proxy_userlist *l, const char *name, const char *secret) PGW_WUR;
void proxy_userlist_free(struct proxy_userlist *l);

#endif

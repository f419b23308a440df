/* The proxy's admin console (PgBouncer's SHOW / PAUSE / RESUME / RELOAD / SHUTDOWN). */
#ifndef PGW_PROXY_ADMIN_H
#define PGW_PROXY_ADMIN_H

#include "proxy/conn.h"

#include <stdbool.h>

/*
 * Answers one simple-protocol query of an admin client: the result messages and
 * a ReadyForQuery are appended to out. *shutdown is set by SHUTDOWN.
 */
int proxy_admin_query(struct proxy *p, const struct proxy_client *c, const char *sql,
		      struct cmn_buf *out, bool *shutdown) PGW_WUR;
/* Is user in admin_users (may act, not only look)? */
bool proxy_admin_is_admin(const struct proxy *p, const char *user);

#endif

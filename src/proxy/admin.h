/* The proxy's admin console (PgBouncer's SHOW / PAUSE / RESUME / RELOAD / SHUTDOWN). */
#ifndef PGW_PROXY_ADMIN_H
#define PGW_PROXY_ADMIN_H

#include "common/util.h"
#include "proxy/types.h"

#include <stdbool.h>

/* What the console's commands do: the caller's (the console only parses and answers). */
struct proxy_admin_ops {
	void (*pause)(struct proxy *p, bool pause); /* PAUSE, RESUME */
	int (*reload)(struct proxy *p);		    /* RELOAD: PGW_OK or failed */
};

/*
 * Answers one simple-protocol query of admin client c: the result messages and a
 * ReadyForQuery are appended to out. *shutdown is set by SHUTDOWN.
 */
int proxy_admin_query(struct proxy *p, const struct proxy_admin_ops *ops,
		      const struct proxy_client *c, const char *sql, struct cmn_buf *out,
		      bool *shutdown) PGW_WUR;
/* Is user in admin_users (may act, not only look)? */
bool proxy_admin_is_admin(const struct proxy *p, const char *user);

#endif

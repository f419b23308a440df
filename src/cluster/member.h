#ifndef PGW_MEMBER_H
#define PGW_MEMBER_H

/*
 * A member's own account of itself: the GET /status document of its REST API, the
 * fields other agents, the proxy and the CLI read from it.
 */

#include "cluster/dcs.h"

#include <stdbool.h>
#include <stdint.h>

struct member_status {
	char role[16];	/* primary, replica, uninitialized ("" when absent) */
	char state[32]; /* running, streaming, ... ("" when absent) */
	int timeline;
	uint64_t lsn;
	int64_t lag;	    /* bytes behind the leader's last published position */
	double lag_seconds; /* while behind (0: caught up, -1: the member cannot tell) */
};

/* Parses a /status body (pure); false when it is not a JSON object. */
bool member_parse_status(const char *body, struct member_status *out);

/* GET <m's api_url>/status (2 s) and its parse; false when it does not answer 200. */
bool member_fetch_status(const struct dcs_member *m, struct member_status *st);

#endif

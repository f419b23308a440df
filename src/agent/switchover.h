/*
 * Checks and follow-up of a requested change of leader (switchover / failover),
 * shared by the CLI and the REST API: both refuse the same things with the same
 * words, then write the failover key and wait for the new leader.
 */
#ifndef PGW_SWITCHOVER_H
#define PGW_SWITCHOVER_H

#include "agent/agentcfg.h"
#include "agent/api.h"
#include "agent/dcs.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * Why the cluster cannot change leader as asked; NULL when it can. leader and
 * candidate may be NULL. *bad_request: the request itself is wrong (unknown
 * member, ...) rather than the cluster's state.
 */
const char *switchover_refusal(const struct agent_config *cfg, const struct dcs_cluster *cl,
			       const char *leader, const char *candidate, bool failover, char *why,
			       size_t why_size, bool *bad_request);

/* Polls etcd until a member other than old_leader (candidate, if given) leads and
 * runs as primary. true with its name in new_leader; false after timeout_ms. */
bool switchover_wait(struct dcs *d, const char *old_leader, const char *candidate, int timeout_ms,
		     char *new_leader, size_t size);

/* A member's live GET /status (2 s bound); false when it did not answer. */
bool switchover_member_status(const struct dcs_member *m, struct api_member_status *st);

/* "now", a unix time, or YYYY-MM-DDTHH:MM[:SS][Z] (UTC) -> unix seconds (0 = now); -1 bad. */
int64_t switchover_parse_time(const char *s);

#endif

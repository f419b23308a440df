/*
 * Checks and follow-up of a requested change of leader (switchover / failover),
 * shared by the CLI and the REST API: both refuse the same things with the same
 * words, then write the failover key and wait for the new leader.
 */
#ifndef PGW_SWITCHOVER_H
#define PGW_SWITCHOVER_H

#include "cluster/dcs.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a candidate is held to, from the members' configuration. */
struct switchover_policy {
	const char *cluster_name;
	int64_t maximum_lag; /* maximum_lag_on_failover, bytes */
};

/*
 * Why the cluster cannot change leader as asked; NULL when it can. leader and
 * candidate may be NULL. *bad_request: the request itself is wrong (unknown
 * member, ...) rather than the cluster's state.
 */
const char *switchover_refusal(const struct switchover_policy *pol, const struct dcs_cluster *cl,
			       const char *leader, const char *candidate, bool failover, char *why,
			       size_t why_size, bool *bad_request);

/* Polls etcd until a member other than old_leader (candidate, if given) leads and
 * runs as primary. true with its name in new_leader; false after timeout_ms. */
bool switchover_wait(struct dcs *d, const char *old_leader, const char *candidate, int timeout_ms,
		     char *new_leader, size_t size);

/* "now", a unix time, or YYYY-MM-DDTHH:MM[:SS][Z] (UTC) -> unix seconds (0 = now); -1 bad. */
int64_t switchover_parse_time(const char *s);

#endif

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

enum switchover_result {
	SWITCHOVER_DONE,      /* the new leader runs as primary */
	SWITCHOVER_SCHEDULED, /* requested for a later time */
	SWITCHOVER_PENDING,   /* another request was there first */
	SWITCHOVER_ETCD,      /* the request could not be written */
	SWITCHOVER_TIMEOUT,   /* requested, but no new leader within the timeout */
};

/*
 * Once switchover_refusal found nothing against it (and the user agreed): writes the
 * request to leave cl's leader (for candidate, or the healthiest replica when NULL),
 * and unless at (unix seconds, 0 = now) is still to come, waits up to timeout_ms for
 * the new leader. msg: one sentence for the user ("Successfully switched over to
 * node2", ...); new_leader: its name when SWITCHOVER_DONE.
 */
enum switchover_result switchover_request(struct dcs *d, const struct dcs_cluster *cl,
					  const char *candidate, bool failover, int64_t at,
					  int timeout_ms, char *msg, size_t msg_size,
					  char *new_leader, size_t new_leader_size);

/* Polls etcd until a member other than old_leader (candidate, if given) leads and
 * runs as primary. true with its name in new_leader; false after timeout_ms. */
bool switchover_wait(struct dcs *d, const char *old_leader, const char *candidate, int timeout_ms,
		     char *new_leader, size_t size);

/* "now", a unix time, or YYYY-MM-DDTHH:MM[:SS][Z] (UTC) -> unix seconds (0 = now); -1 bad. */
int64_t switchover_parse_time(const char *s);

#endif

#include "cluster/switchover.h"
#include "cluster/member.h"
#include "common/http.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Why member m cannot take over (NULL: it can). */
static const char *unfit_candidate(const struct switchover_policy *pol,
				   const struct dcs_cluster *cl, const struct dcs_member *m,
				   bool leader_down, char *why, size_t size)
{
	struct member_status st;

	if (m->nofailover) {
		snprintf(why, size, "%s is tagged nofailover", m->name);
		return why;
	}
	if (cl->has_sync && !dcs_sync_has(cl, m->name) && strcmp(cl->sync_leader, m->name) != 0) {
		snprintf(why, size, "%s is not a synchronous standby (synchronous set: %s)",
			 m->name, cl->sync_standby[0] ? cl->sync_standby : "empty");
		return why;
	}
	if (!member_fetch_status(m, &st)) {
		snprintf(why, size, "%s does not answer on its REST API (%s)", m->name, m->api_url);
		return why;
	}
	/* Without a running leader nobody streams: a running replica will do. */
	if (strcmp(st.role, "replica") != 0 ||
	    (strcmp(st.state, "streaming") != 0 &&
	     !(leader_down && strcmp(st.state, "running") == 0))) {
		snprintf(why, size, "%s is not a healthy replica (role %s, state %s)", m->name,
			 st.role, st.state);
		return why;
	}
	if (st.lag > pol->maximum_lag) {
		snprintf(why, size, "%s lags %lld bytes behind, more than maximum_lag_on_failover",
			 m->name, (long long)st.lag);
		return why;
	}
	return NULL;
}

/*
 * Whether the cluster has no running primary: no leader key, or (for a failover, which is
 * asked for when the leader is lost) a leader key whose holder does not answer as a primary
 * on its REST API: its key outlives it by up to ttl and its replicas stopped streaming.
 */
static bool leader_is_down(const struct dcs_cluster *cl, bool failover)
{
	const struct dcs_member *m;
	struct member_status st;

	if (!cl->has_leader)
		return true;
	if (!failover)
		return false;
	m = dcs_find_member(cl, cl->leader);
	return !m || !member_fetch_status(m, &st) || strcmp(st.role, "primary") != 0;
}

const char *switchover_refusal(const struct switchover_policy *pol, const struct dcs_cluster *cl,
			       const char *leader, const char *candidate, bool failover, char *why,
			       size_t why_size, bool *bad_request)
{
	char tmp[300];
	bool leader_down;

	*bad_request = false;
	if (cl->paused) {
		snprintf(why, why_size,
			 "cluster %s is in maintenance mode: 'pgwarden resume' first",
			 pol->cluster_name);
		return why;
	}
	if (!cl->has_leader && !failover) {
		snprintf(why, why_size,
			 "cluster %s has no leader to switch over from: use 'pgwarden failover "
			 "--candidate NAME'",
			 pol->cluster_name);
		return why;
	}
	if (failover && !candidate) {
		*bad_request = true;
		snprintf(why, why_size, "a failover needs a candidate");
		return why;
	}
	if (leader && (!cl->has_leader || strcmp(leader, cl->leader) != 0)) {
		*bad_request = true;
		snprintf(why, why_size, "%s is not the leader (%s is)", leader,
			 cl->has_leader ? cl->leader : "nobody");
		return why;
	}
	if (cl->has_switchover) {
		snprintf(why, why_size, "a switchover is already pending (to %s)",
			 cl->switchover_candidate[0] ? cl->switchover_candidate : "any replica");
		return why;
	}
	leader_down = leader_is_down(cl, failover);
	if (candidate) {
		const struct dcs_member *m = dcs_find_member(cl, candidate);

		if (!m) {
			*bad_request = true;
			snprintf(why, why_size, "no member named %s in cluster %s", candidate,
				 pol->cluster_name);
			return why;
		}
		if (cl->has_leader && strcmp(candidate, cl->leader) == 0) {
			*bad_request = true;
			snprintf(why, why_size, "%s is already the leader", candidate);
			return why;
		}
		if (unfit_candidate(pol, cl, m, leader_down, tmp, sizeof(tmp))) {
			snprintf(why, why_size, "cannot %s to %s: %s",
				 failover ? "fail over" : "switch over", candidate, tmp);
			return why;
		}
		return NULL;
	}
	for (size_t i = 0; i < cl->n_members; i++)
		if (strcmp(cl->members[i].name, cl->leader) != 0 &&
		    !unfit_candidate(pol, cl, &cl->members[i], leader_down, tmp, sizeof(tmp)))
			return NULL;
	snprintf(why, why_size, "no healthy replica to switch over to");
	return why;
}

bool switchover_wait(struct dcs *d, const char *old_leader, const char *candidate, int timeout_ms,
		     char *new_leader, size_t size)
{
	int64_t deadline = cmn_now_ms() + timeout_ms;

	while (cmn_now_ms() < deadline) {
		struct dcs_cluster now;

		if (dcs_read(d, &now) == PGW_OK) {
			const struct dcs_member *m =
			    now.has_leader ? dcs_find_member(&now, now.leader) : NULL;
			struct member_status st;
			bool done =
			    m && strcmp(now.leader, old_leader) != 0 &&
			    (!candidate || !*candidate || strcmp(now.leader, candidate) == 0) &&
			    member_fetch_status(m, &st) && strcmp(st.role, "primary") == 0;

			if (done)
				snprintf(new_leader, size, "%s", now.leader);
			dcs_cluster_free(&now);
			if (done)
				return true;
		}
		usleep(200000);
	}
	return false;
}

enum switchover_result switchover_request(struct dcs *d, const struct dcs_cluster *cl,
					  const char *candidate, bool failover, int64_t at,
					  int timeout_ms, char *msg, size_t msg_size,
					  char *new_leader, size_t new_leader_size)
{
	const char *what = failover ? "failover" : "switchover";
	char old_leader[DCS_NAME_MAX];
	bool created = false;

	snprintf(old_leader, sizeof(old_leader), "%s", cl->has_leader ? cl->leader : "");
	if (candidate && !*candidate)
		candidate = NULL;
	if (dcs_request_switchover(d, old_leader, candidate ? candidate : "", at, &created) !=
	    PGW_OK) {
		snprintf(msg, msg_size, "cannot write the %s request to etcd", what);
		return SWITCHOVER_ETCD;
	}
	if (!created) {
		snprintf(msg, msg_size, "a switchover is already pending");
		return SWITCHOVER_PENDING;
	}
	if (at > 0 && at > (int64_t)time(NULL)) {
		time_t t = (time_t)at;
		struct tm tm;
		char when[32];

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		snprintf(msg, msg_size, "%c%s scheduled at %s", failover ? 'F' : 'S', what + 1,
			 when);
		return SWITCHOVER_SCHEDULED;
	}
	if (switchover_wait(d, old_leader, candidate, timeout_ms, new_leader, new_leader_size)) {
		snprintf(msg, msg_size, "Successfully %s to %s",
			 failover ? "failed over" : "switched over", new_leader);
		return SWITCHOVER_DONE;
	}
	snprintf(msg, msg_size,
		 "the %s did not complete within %d s: see 'pgwarden list' and the agents' logs",
		 what, timeout_ms / 1000);
	return SWITCHOVER_TIMEOUT;
}

int64_t switchover_parse_time(const char *s)
{
	struct tm tm;
	const char *end;
	char *num_end;
	long long n;

	if (strcmp(s, "now") == 0 || !*s)
		return 0;
	n = strtoll(s, &num_end, 10);
	if (*num_end == '\0' && n > 0)
		return n;
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%dT%H:%M", &tm);
	}
	if (!end || (*end && strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0))
		return -1;
	return (int64_t)timegm(&tm);
}

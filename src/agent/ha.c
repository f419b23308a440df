#include "agent/ha.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const action_names[] = {
    [HA_WAIT] = "wait",
    [HA_BOOTSTRAP] = "bootstrap",
    [HA_CLONE] = "clone",
    [HA_START_STANDBY] = "start as replica",
    [HA_START_PRIMARY] = "restart primary",
    [HA_REWIND] = "rewind",
    [HA_RACE] = "leader race",
    [HA_PROMOTE] = "promote",
    [HA_KEEP_LEADER] = "keep leader",
    [HA_DEMOTE] = "demote",
    [HA_FOLLOW] = "follow",
    [HA_RELEASE] = "release leader key",
    [HA_STOP_STUCK] = "stop stuck replica",
    [HA_SWITCHOVER] = "switchover",
};

/* Every action has a name (a missing one would be a NULL string in JSON and logs). */
_Static_assert(sizeof(action_names) / sizeof(action_names[0]) == HA_SWITCHOVER + 1,
	       "ha action names");

const char *ha_action_name(enum ha_action a)
{
	if ((unsigned)a >= sizeof(action_names) / sizeof(action_names[0]) || !action_names[a])
		return "unknown";
	return action_names[a];
}

static void set(struct ha_decision *d, enum ha_action a, const char *member, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set(struct ha_decision *d, enum ha_action a, const char *member, const char *fmt, ...)
{
	va_list ap;

	d->action = a;
	snprintf(d->member, sizeof(d->member), "%s", member ? member : "");
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
}

const struct dcs_member *ha_clone_source(const struct dcs_cluster *c, const char *me)
{
	const struct dcs_member *leader = NULL;

	for (size_t i = 0; i < c->n_members; i++) {
		const struct dcs_member *m = &c->members[i];

		if (strcmp(m->name, me) == 0 || !m->host[0])
			continue;
		if (m->clonefrom && strcmp(m->role, "replica") == 0 &&
		    strcmp(m->state, "streaming") == 0)
			return m;
		if (c->has_leader && strcmp(m->name, c->leader) == 0 &&
		    strcmp(m->state, "running") == 0)
			leader = m;
	}
	return leader;
}

static bool held_by_me(const struct ha_input *in)
{
	return in->cluster->has_leader && strcmp(in->cluster->leader, in->me) == 0;
}

bool ha_lease_expiring(int64_t now_ms, int64_t deadline_ms, int margin_ms)
{
	return now_ms >= deadline_ms - margin_ms;
}

int64_t ha_fence_deadline(int64_t deadline_ms, int margin_ms)
{
	return deadline_ms - margin_ms / 2;
}

static bool lease_expiring(const struct ha_input *in)
{
	return ha_lease_expiring(in->now_ms, in->lease_deadline_ms, in->demote_margin_ms);
}

/* Timeline the stopped local data ends on, from pg_controldata. */
static int local_timeline(const struct ha_input *in)
{
	int tli = in->cd.checkpoint_tli;

	if (in->cd.min_recovery_tli > tli)
		tli = in->cd.min_recovery_tli;
	return tli;
}

static int leader_timeline(const struct dcs_cluster *c)
{
	const struct dcs_member *l = c->has_leader ? dcs_find_member(c, c->leader) : NULL;

	if (l && l->timeline > 0)
		return l->timeline;
	return c->leader_timeline;
}

/* A pending switchover keeps us from racing: we are its old leader, or not its candidate. */
static bool switchover_holds_us(const struct ha_input *in)
{
	const struct dcs_cluster *c = in->cluster;

	if (!c->has_switchover)
		return false;
	/*
	 * A named candidate whose member key is gone (its agent stopped: a node restarted
	 * in the middle of a rolling update) will never take over: nobody waits for it.
	 */
	if (c->switchover_candidate[0] && !dcs_find_member(c, c->switchover_candidate))
		return false;
	/* The old leader yields longest, but not for ever (a candidate that died). */
	if (c->switchover_leader[0] && strcmp(c->switchover_leader, in->me) == 0)
		return in->switchover_waiting_ms < 4 * in->switchover_grace_ms;
	return c->switchover_candidate[0] && strcmp(c->switchover_candidate, in->me) != 0 &&
	       in->switchover_waiting_ms < in->switchover_grace_ms;
}

/*
 * Synchronous mode: the sync key names the members that have every commit the
 * last leader acknowledged; nobody else may take over (nor the last leader itself
 * is barred: its own commits are all there).
 */
static bool sync_bars_me(const struct ha_input *in)
{
	const struct dcs_cluster *c = in->cluster;

	return c->has_sync && strcmp(c->sync_leader, in->me) != 0 && !dcs_sync_has(c, in->me);
}

static void decide_no_data(const struct ha_input *in, struct ha_decision *d)
{
	const struct dcs_cluster *c = in->cluster;
	const struct dcs_member *src;

	if (!in->dcs_ok) {
		set(d, HA_WAIT, NULL, "no data directory and etcd is unreachable");
		return;
	}
	if (!c->has_initialize) {
		if (in->nofailover) {
			set(d, HA_WAIT, NULL,
			    "cluster not initialized; a nofailover member does not bootstrap");
			return;
		}
		set(d, HA_BOOTSTRAP, NULL, "cluster not initialized");
		return;
	}
	if (!c->sysid[0]) {
		set(d, HA_WAIT, NULL, "another member is bootstrapping the cluster");
		return;
	}
	src = ha_clone_source(c, in->me);
	if (!src) {
		set(d, HA_WAIT, NULL, "no running leader to clone from");
		return;
	}
	set(d, HA_CLONE, src->name, "no data directory: cloning from %s", src->name);
}

static void decide_stopped(const struct ha_input *in, struct ha_decision *d)
{
	const struct dcs_cluster *c = in->cluster;

	if (!in->dcs_ok) {
		set(d, HA_WAIT, NULL,
		    "PostgreSQL is stopped and etcd is unreachable: not starting it");
		return;
	}
	if (held_by_me(in)) {
		/* Never start a primary on a lease we cannot be sure of. */
		if (!in->lease_id || in->cluster->leader_lease != in->lease_id ||
		    lease_expiring(in)) {
			set(d, HA_WAIT, NULL,
			    "holding the leader key, but not on a lease renewed in time");
			return;
		}
		bool was_primary =
		    in->cd_valid && !in->cd.backup_label &&
		    (in->cd.state == PGCTL_CD_IN_PRODUCTION || in->cd.state == PGCTL_CD_SHUT_DOWN);

		if (in->primary_down_since_ms &&
		    in->now_ms - in->primary_down_since_ms > in->primary_start_timeout_ms) {
			set(d, HA_RELEASE, NULL,
			    "primary did not come back within %d ms: releasing the leader key",
			    in->primary_start_timeout_ms);
			return;
		}
		if (was_primary) {
			set(d, HA_START_PRIMARY, NULL,
			    "PostgreSQL is down and we hold the leader key");
			return;
		}
		set(d, HA_START_STANDBY, NULL, "holding the leader key: start, then promote");
		return;
	}
	if (c->has_leader) {
		const struct dcs_member *l = dcs_find_member(c, c->leader);
		int ltl = leader_timeline(c);

		if (!l || !l->host[0]) {
			set(d, HA_WAIT, NULL, "leader %s has not published its address yet",
			    c->leader);
			d->wait_leader_record = true;
			return;
		}
		if (l->checkpoint_pending) {
			set(d, HA_WAIT, NULL,
			    "leader %s has not checkpointed since its promotion yet", c->leader);
			d->wait_leader_record = true;
			return;
		}
		/* Only a primary's clean stop ends its WAL at its checkpoint; a standby's may
		 * hold WAL past its last restartpoint. */
		if (in->cd_valid && ltl > 0 && local_timeline(in) != ltl && in->fork_lsn &&
		    in->cd.state == PGCTL_CD_SHUT_DOWN && !in->cd.backup_label &&
		    in->cd.checkpoint_lsn < in->fork_lsn &&
		    in->cd.min_recovery_lsn < in->fork_lsn) {
			/* Stopped cleanly before our timeline ended (a switchover): no rewind. */
			set(d, HA_START_STANDBY, l->name,
			    "stopped cleanly before timeline %d ended: replica of %s, no rewind",
			    local_timeline(in), l->name);
			return;
		}
		if (in->cd_valid && ltl > 0 && local_timeline(in) != ltl) {
			set(d, HA_REWIND, l->name,
			    "local timeline %d differs from leader %s's timeline %d",
			    local_timeline(in), l->name, ltl);
			return;
		}
		if (in->cd_valid && in->cd.state == PGCTL_CD_IN_PRODUCTION &&
		    !in->cd.backup_label) {
			/* A crashed former primary on the leader's timeline: let pg_rewind judge.
			 */
			set(d, HA_REWIND, l->name, "former primary rejoining leader %s", l->name);
			return;
		}
		set(d, HA_START_STANDBY, l->name, "starting as a replica of %s", l->name);
		return;
	}
	if (switchover_holds_us(in)) {
		set(d, HA_WAIT, NULL, "switchover in progress: waiting for the new leader");
		return;
	}
	set(d, HA_START_STANDBY, NULL, "no leader: starting as a replica, then racing");
}

static void decide_replica(const struct ha_input *in, struct ha_decision *d)
{
	const struct dcs_cluster *c = in->cluster;
	const struct dcs_member *l;

	if (held_by_me(in)) {
		if (lease_expiring(in)) {
			set(d, HA_WAIT, NULL,
			    "holding the leader key but the lease is about to expire");
			return;
		}
		set(d, HA_PROMOTE, in->me, "we hold the leader key");
		return;
	}
	if (!c->has_leader) {
		if (in->nofailover) {
			set(d, HA_WAIT, NULL, "no leader; tagged nofailover, not racing");
			return;
		}
		/* Positions on different timelines do not compare: an older one never wins. */
		if (c->leader_timeline > 0 && in->pg->timeline < c->leader_timeline) {
			set(d, HA_WAIT, NULL,
			    "no leader; our timeline %d is older than the last leader's %d",
			    in->pg->timeline, c->leader_timeline);
			return;
		}
		if (c->optime > 0 && c->optime > in->pg->lsn &&
		    (int64_t)(c->optime - in->pg->lsn) > in->maximum_lag) {
			set(d, HA_WAIT, NULL,
			    "no leader; lagging %llu bytes behind the last leader position, more "
			    "than maximum_lag_on_failover",
			    (unsigned long long)(c->optime - in->pg->lsn));
			return;
		}
		if (sync_bars_me(in)) {
			set(d, HA_WAIT, NULL,
			    "no leader; not in the synchronous set of %s (%s): not racing",
			    c->sync_leader, c->sync_standby[0] ? c->sync_standby : "empty");
			return;
		}
		if (switchover_holds_us(in)) {
			set(d, HA_WAIT, NULL, "switchover to %s in progress: not racing",
			    c->switchover_candidate[0] ? c->switchover_candidate
						       : "another member");
			return;
		}
		set(d, HA_RACE, NULL, "no leader: racing for the key");
		return;
	}
	l = dcs_find_member(c, c->leader);
	if (!l || !l->host[0]) {
		set(d, HA_WAIT, NULL, "leader %s has not published its address yet", c->leader);
		return;
	}
	char want[300];

	snprintf(want, sizeof(want), "%s:%d", l->host, l->port);
	if (strcmp(in->configured_upstream, want) != 0) {
		set(d, HA_FOLLOW, l->name, "following leader %s at %s", l->name, want);
		return;
	}
	/* Past the point where our timeline ended (history): we replayed WAL the new
	 * leader never had, streaming cannot resume; stop now so it can be rewound. */
	if (!in->pg->streaming && in->fork_lsn && leader_timeline(c) > in->pg->timeline &&
	    in->pg->lsn > in->fork_lsn) {
		set(d, HA_STOP_STUCK, l->name,
		    "diverged: our position %llx is past the end %llx of timeline %d; stopping "
		    "to rewind",
		    (unsigned long long)in->pg->lsn, (unsigned long long)in->fork_lsn,
		    in->pg->timeline);
		return;
	}
	if (!in->pg->streaming && in->not_streaming_since_ms &&
	    in->now_ms - in->not_streaming_since_ms > in->stuck_replica_ms &&
	    leader_timeline(c) > in->pg->timeline) {
		set(d, HA_STOP_STUCK, l->name,
		    "not streaming from %s for %lld ms and behind its timeline %d", l->name,
		    (long long)(in->now_ms - in->not_streaming_since_ms), leader_timeline(c));
		return;
	}
	set(d, HA_WAIT, l->name, "replica of %s", l->name);
}

static void decide_primary(const struct ha_input *in, struct ha_decision *d)
{
	const struct dcs_cluster *c = in->cluster;

	if (held_by_me(in)) {
		if (lease_expiring(in)) {
			set(d, HA_DEMOTE, NULL, "leader lease could not be renewed in time");
			return;
		}
		if (c->has_switchover &&
		    (!c->switchover_leader[0] || strcmp(c->switchover_leader, in->me) == 0) &&
		    in->now_wall_s >= c->switchover_at &&
		    strcmp(c->switchover_candidate, in->me) != 0) {
			set(d, HA_SWITCHOVER, c->switchover_candidate, "switchover requested to %s",
			    c->switchover_candidate[0] ? c->switchover_candidate
						       : "the healthiest replica");
			return;
		}
		set(d, HA_KEEP_LEADER, in->me, "holding the leader key");
		return;
	}
	if (c->has_leader) {
		set(d, HA_DEMOTE, c->leader, "%s holds the leader key: demoting", c->leader);
		return;
	}
	if (sync_bars_me(in)) {
		set(d, HA_DEMOTE, NULL,
		    "running as primary without the leader key and not in the synchronous set");
		return;
	}
	set(d, HA_RACE, NULL, "running as primary without the leader key: racing for it");
}

static void decide(const struct ha_input *in, struct ha_decision *d);

/*
 * Maintenance mode (cluster paused): the leader keeps its key, and nothing is
 * started, stopped, promoted, demoted or rewound; PostgreSQL may be handled by hand.
 */
void ha_decide(const struct ha_input *in, struct ha_decision *d)
{
	decide(in, d);
	if (in->dcs_ok && in->cluster->paused && d->action != HA_WAIT &&
	    d->action != HA_KEEP_LEADER) {
		char reason[sizeof(d->reason)], member[sizeof(d->member)];

		snprintf(reason, sizeof(reason), "%s", d->reason);
		snprintf(member, sizeof(member), "%s", d->member);
		set(d, HA_WAIT, member, "maintenance mode: not acting (would %s: %s)",
		    ha_action_name(d->action), reason);
	}
}

/* The local data belongs to another system than the cluster's: hands off. */
static void decide_foreign(const struct ha_input *in, struct ha_decision *d)
{
	set(d, HA_WAIT, NULL,
	    "data directory belongs to system %s, the cluster is %s: not touching it",
	    in->local_sysid, in->cluster->sysid);
}

/* PostgreSQL runs but does not accept connections yet. */
static void decide_starting(const struct ha_input *in, struct ha_decision *d)
{
	if (in->dcs_ok && held_by_me(in) && in->primary_down_since_ms &&
	    in->now_ms - in->primary_down_since_ms > in->primary_start_timeout_ms) {
		set(d, HA_RELEASE, NULL,
		    "primary still not accepting connections after %d ms: releasing the "
		    "leader key",
		    in->primary_start_timeout_ms);
		return;
	}
	set(d, HA_WAIT, NULL, "PostgreSQL is starting");
}

/* PostgreSQL runs and etcd did not answer: a primary lasts as long as its lease. */
static void decide_without_etcd(const struct ha_input *in, struct ha_decision *d)
{
	const struct pgctl_probe *pg = in->pg;

	if (!(pg->accepting && !pg->in_recovery)) {
		set(d, HA_WAIT, NULL, "etcd is unreachable");
		return;
	}
	if (!in->lease_deadline_ms || lease_expiring(in)) {
		set(d, HA_DEMOTE, NULL, "etcd is unreachable and the lease expires");
		return;
	}
	set(d, HA_WAIT, NULL, "etcd is unreachable; primary kept until %lld ms",
	    (long long)(in->lease_deadline_ms - in->demote_margin_ms - in->now_ms));
}

/* Where the member stands, in the order the rules look at it. */
enum local_state {
	LS_NO_DATA,  /* no valid data directory */
	LS_FOREIGN,  /* data of another system */
	LS_STOPPED,  /* no postmaster */
	LS_STARTING, /* a postmaster, not accepting yet */
	LS_NO_ETCD,  /* running, etcd did not answer this loop */
	LS_REPLICA,  /* running in recovery */
	LS_PRIMARY,  /* running as a primary */
};

static enum local_state local_state(const struct ha_input *in)
{
	const struct pgctl_probe *pg = in->pg;

	if (!pg->data_valid)
		return LS_NO_DATA;
	if (in->dcs_ok && in->cluster->sysid[0] && in->local_sysid[0] &&
	    strcmp(in->cluster->sysid, in->local_sysid) != 0)
		return LS_FOREIGN;
	if (!pg->postmaster_pid)
		return LS_STOPPED;
	if (!pg->accepting)
		return LS_STARTING;
	if (!in->dcs_ok)
		return LS_NO_ETCD;
	return pg->in_recovery ? LS_REPLICA : LS_PRIMARY;
}

/* The rules for each state. */
static void (*const decide_in[])(const struct ha_input *, struct ha_decision *) = {
    [LS_NO_DATA] = decide_no_data,	[LS_FOREIGN] = decide_foreign,
    [LS_STOPPED] = decide_stopped,	[LS_STARTING] = decide_starting,
    [LS_NO_ETCD] = decide_without_etcd, [LS_REPLICA] = decide_replica,
    [LS_PRIMARY] = decide_primary,
};

static void decide(const struct ha_input *in, struct ha_decision *d)
{
	memset(d, 0, sizeof(*d));
	/*
	 * Safety first: a server that may take writes stops when the lease is about to
	 * expire, whatever etcd says, even when we cannot query it.
	 */
	if (pgctl_maybe_primary(in->pg) && in->lease_deadline_ms && lease_expiring(in)) {
		set(d, HA_DEMOTE, NULL, "leader lease expires in less than %d ms: demoting",
		    in->demote_margin_ms);
		return;
	}
	decide_in[local_state(in)](in, d);
}

bool ha_healthiest(const struct ha_input *in, const struct ha_peer *peers, size_t n_peers,
		   char *reason, size_t reason_size)
{
	for (size_t i = 0; i < n_peers; i++) {
		const struct ha_peer *p = &peers[i];

		if (strcmp(p->name, in->me) == 0)
			continue;
		if (p->reachable && p->is_primary) {
			snprintf(reason, reason_size, "%s is still running as a primary", p->name);
			return false;
		}
		if (p->nofailover)
			continue;
		/* (timeline, position): a newer timeline is ahead whatever the positions. */
		if (p->timeline > in->pg->timeline ||
		    (p->timeline == in->pg->timeline && p->lsn > in->pg->lsn)) {
			snprintf(reason, reason_size,
				 "%s is ahead (timeline %d at %llu, we are on %d at %llu)%s",
				 p->name, p->timeline, (unsigned long long)p->lsn, in->pg->timeline,
				 (unsigned long long)in->pg->lsn,
				 p->reachable ? ""
					      : ", as it last published in etcd (no answer now)");
			return false;
		}
	}
	snprintf(reason, reason_size, "healthiest of the reachable members");
	return true;
}

const char *ha_handover_candidate(const struct dcs_cluster *c, const char *me,
				  const struct ha_standby *ws, size_t n_ws, uint64_t leader_lsn,
				  int64_t max_lag, char *why, size_t why_size)
{
	const struct dcs_member *best = NULL;
	uint64_t best_flush = 0;
	size_t off = 0;

	why[0] = '\0';
	for (size_t i = 0; i < c->n_members; i++) {
		const struct dcs_member *m = &c->members[i];
		const struct ha_standby *w = NULL;
		char unfit[160] = "";

		if (strcmp(m->name, me) == 0)
			continue;
		for (size_t j = 0; j < n_ws && !w; j++)
			if (strcmp(ws[j].name, m->name) == 0 && ws[j].streaming)
				w = &ws[j];
		if (m->nofailover)
			snprintf(unfit, sizeof(unfit), "tagged nofailover");
		else if (strcmp(m->role, "replica") != 0 || strcmp(m->state, "streaming") != 0)
			snprintf(unfit, sizeof(unfit), "%s %s, not a streaming replica", m->role,
				 m->state);
		else if (!w)
			snprintf(unfit, sizeof(unfit), "not streaming from us");
		else if (c->has_sync && !dcs_sync_has(c, m->name))
			snprintf(unfit, sizeof(unfit), "not in the synchronous set");
		else if (w->flush < leader_lsn && (int64_t)(leader_lsn - w->flush) > max_lag)
			snprintf(unfit, sizeof(unfit),
				 "%llu bytes behind, more than "
				 "maximum_lag_on_failover",
				 (unsigned long long)(leader_lsn - w->flush));
		if (unfit[0]) {
			if (off < why_size)
				off += (size_t)snprintf(why + off, why_size - off, "%s%s: %s",
							off ? "; " : "", m->name, unfit);
			continue;
		}
		if (!best || w->flush > best_flush) {
			best = m;
			best_flush = w->flush;
		}
	}
	if (!best && !why[0])
		snprintf(why, why_size, "no other member");
	return best ? best->name : NULL;
}

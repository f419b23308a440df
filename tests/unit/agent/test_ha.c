/*
 * Unit tests of the pure HA decision (src/agent/ha.c): one test per rule, with the
 * cluster view, the local probe and pg_controldata built by hand.
 */
#include "agent/ha.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ME    "node1"
#define SYSID "7234567890123456789"
#define NOW   1000000000LL
#define MB    (1024ULL * 1024)

struct fx {
	struct dcs_cluster c;
	struct pgctl_probe pg;
	struct ha_input in;
	struct ha_decision d;
};

/* ---- constructors ---------------------------------------------------------- */

static struct dcs_member *add_member(struct fx *f, const char *name, const char *role,
				     const char *state, int timeline, uint64_t lsn)
{
	struct dcs_member *m;

	assert_true(f->c.n_members < DCS_MAX_MEMBERS);
	m = &f->c.members[f->c.n_members++];
	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->host, sizeof(m->host), "%s.example", name);
	m->port = 5432;
	snprintf(m->api_url, sizeof(m->api_url), "http://%s.example:8008", name);
	snprintf(m->role, sizeof(m->role), "%s", role);
	snprintf(m->state, sizeof(m->state), "%s", state);
	m->timeline = timeline;
	m->lsn = lsn;
	m->lease = 100;
	return m;
}

static struct dcs_member *find(struct fx *f, const char *name)
{
	for (size_t i = 0; i < f->c.n_members; i++)
		if (strcmp(f->c.members[i].name, name) == 0)
			return &f->c.members[i];
	fail_msg("no member %s", name);
	return NULL;
}

/* name holds the leader key; its member says primary/running on timeline. */
static void set_leader(struct fx *f, const char *name, int timeline)
{
	struct dcs_member *m = find(f, name);

	f->c.has_leader = true;
	snprintf(f->c.leader, sizeof(f->c.leader), "%s", name);
	f->c.leader_lease = m->lease;
	f->c.leader_timeline = timeline;
	snprintf(m->role, sizeof(m->role), "primary");
	snprintf(m->state, sizeof(m->state), "running");
	m->timeline = timeline;
}

/* We hold the key, on a lease valid for another 3 s. */
static void hold_key(struct fx *f, int timeline)
{
	set_leader(f, ME, timeline);
	f->in.lease_id = 100;
	f->in.lease_deadline_ms = NOW + 3000;
}

static void pg_no_data(struct fx *f)
{
	memset(&f->pg, 0, sizeof(f->pg));
	f->in.local_sysid[0] = '\0';
	f->in.cd_valid = false;
}

static void pg_stopped(struct fx *f, enum pgctl_cd_state st, int tli)
{
	memset(&f->pg, 0, sizeof(f->pg));
	f->pg.data_valid = true;
	f->in.cd_valid = true;
	memset(&f->in.cd, 0, sizeof(f->in.cd));
	snprintf(f->in.cd.sysid, sizeof(f->in.cd.sysid), "%s", SYSID);
	f->in.cd.state = st;
	f->in.cd.checkpoint_tli = tli;
	f->in.cd.checkpoint_lsn = 0x3000000;
}

static void pg_running(struct fx *f, bool in_recovery, int tli, uint64_t lsn)
{
	memset(&f->pg, 0, sizeof(f->pg));
	f->pg.data_valid = true;
	f->pg.postmaster_pid = 4242;
	f->pg.accepting = true;
	f->pg.in_recovery = in_recovery;
	f->pg.timeline = tli;
	f->pg.lsn = lsn;
	f->pg.server_version = 150004;
	f->in.cd_valid = false;
}

/* A replica streaming from the leader's address (if there is a leader). */
static void pg_replica(struct fx *f, int tli, uint64_t lsn)
{
	pg_running(f, true, tli, lsn);
	f->pg.streaming = true;
	f->pg.receive_lsn = lsn;
	f->pg.replay_lsn = lsn;
	if (f->c.has_leader) {
		const struct dcs_member *l = find(f, f->c.leader);

		snprintf(f->pg.upstream, sizeof(f->pg.upstream), "%s:%d", l->host, l->port);
		snprintf(f->in.configured_upstream, sizeof(f->in.configured_upstream), "%s:%d",
			 l->host, l->port);
	}
}

static void pg_primary(struct fx *f, int tli, uint64_t lsn)
{
	pg_running(f, false, tli, lsn);
	f->in.configured_upstream[0] = '\0';
}

static void etcd_down(struct fx *f)
{
	f->in.dcs_ok = false;
	memset(&f->c, 0, sizeof(f->c)); /* what the agent passes after a failed read */
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->c.revision = 10;
	f->c.has_initialize = true;
	snprintf(f->c.sysid, sizeof(f->c.sysid), "%s", SYSID);
	add_member(f, ME, "replica", "streaming", 1, 0x3000000);
	add_member(f, "node2", "replica", "streaming", 1, 0x3000000);
	add_member(f, "node3", "replica", "streaming", 1, 0x3000000);

	f->in.now_ms = NOW;
	f->in.me = ME;
	f->in.maximum_lag = (int64_t)MB;
	f->in.dcs_ok = true;
	f->in.cluster = &f->c;
	f->in.demote_margin_ms = 1000;
	f->in.pg = &f->pg;
	snprintf(f->in.local_sysid, sizeof(f->in.local_sysid), "%s", SYSID);
	f->in.primary_start_timeout_ms = 10000;
	f->in.stuck_replica_ms = 15000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static enum ha_action decide(struct fx *f)
{
	memset(&f->d, 0x55, sizeof(f->d));
	ha_decide(&f->in, &f->d);
	assert_true(f->d.reason[0] != '\0');
	return f->d.action;
}

#define assert_action(f, act, mem)                                                \
	do {                                                                      \
		enum ha_action got_ = decide(f);                                  \
		if (got_ != (act))                                                \
			fail_msg("expected %s, got %s (%s)", ha_action_name(act), \
				 ha_action_name(got_), (f)->d.reason);            \
		assert_string_equal((f)->d.member, (mem));                        \
	} while (0)

/* ---- no data directory ------------------------------------------------------- */

static void test_no_data_bootstrap(void **state)
{
	struct fx *f = *state;

	f->c.has_initialize = false;
	f->c.sysid[0] = '\0';
	pg_no_data(f);
	assert_action(f, HA_BOOTSTRAP, "");
}

static void test_no_data_nofailover_waits(void **state)
{
	struct fx *f = *state;

	f->c.has_initialize = false;
	f->c.sysid[0] = '\0';
	f->in.nofailover = true;
	pg_no_data(f);
	assert_action(f, HA_WAIT, "");
}

static void test_no_data_someone_bootstrapping(void **state)
{
	struct fx *f = *state;

	f->c.sysid[0] = '\0'; /* initialize = "" */
	pg_no_data(f);
	assert_action(f, HA_WAIT, "");
}

static void test_no_data_clone_from_leader(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	pg_no_data(f);
	assert_action(f, HA_CLONE, "node2");
}

static void test_no_data_leader_not_running(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	snprintf(find(f, "node2")->state, sizeof(find(f, "node2")->state), "starting");
	pg_no_data(f);
	assert_action(f, HA_WAIT, "");
}

static void test_no_data_clonefrom_preferred(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	find(f, "node3")->clonefrom = true;
	pg_no_data(f);
	assert_action(f, HA_CLONE, "node3");

	/* a clonefrom replica that is not streaming is no source: back to the leader */
	snprintf(find(f, "node3")->state, sizeof(find(f, "node3")->state), "stopped");
	assert_action(f, HA_CLONE, "node2");
}

static void test_no_data_etcd_down(void **state)
{
	struct fx *f = *state;

	pg_no_data(f);
	etcd_down(f);
	assert_action(f, HA_WAIT, "");
}

/* ---- system identifier ------------------------------------------------------ */

static void test_sysid_mismatch_never_touched(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 2);
	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1); /* would otherwise be rewound */
	snprintf(f->in.local_sysid, sizeof(f->in.local_sysid), "7000000000000000001");
	assert_action(f, HA_WAIT, "");
	assert_non_null(strstr(f->d.reason, "7000000000000000001"));

	/* same data on a running replica without a leader: no race either */
	f->c.has_leader = false;
	pg_replica(f, 2, 0x3000000);
	assert_action(f, HA_WAIT, "");

	/* the identifiers match: rules apply again */
	snprintf(f->in.local_sysid, sizeof(f->in.local_sysid), "%s", SYSID);
	assert_action(f, HA_RACE, "");
}

/* ---- PostgreSQL stopped --------------------------------------------------- */

static void test_stopped_holding_key_start_primary(void **state)
{
	struct fx *f = *state;

	hold_key(f, 1);
	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	f->in.primary_down_since_ms = NOW - 2000;
	assert_action(f, HA_START_PRIMARY, "");

	/* a clean shutdown of our primary too */
	f->in.cd.state = PGCTL_CD_SHUT_DOWN;
	assert_action(f, HA_START_PRIMARY, "");

	/* data of a replica (we won the race, then it stopped): start, then promote */
	f->in.cd.state = PGCTL_CD_SHUT_DOWN_IN_RECOVERY;
	assert_action(f, HA_START_STANDBY, "");
}

static void test_stopped_holding_key_release(void **state)
{
	struct fx *f = *state;

	hold_key(f, 1);
	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	f->in.primary_down_since_ms = NOW - 10001;
	assert_action(f, HA_RELEASE, "");

	/* exactly at the timeout: still waiting for it */
	f->in.primary_down_since_ms = NOW - 10000;
	assert_action(f, HA_START_PRIMARY, "");
}

static void test_stopped_leader_higher_timeline_rewind(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 2);
	pg_stopped(f, PGCTL_CD_SHUT_DOWN_IN_RECOVERY, 1);
	assert_action(f, HA_REWIND, "node2");

	/* min recovery timeline counts as the local timeline */
	f->in.cd.min_recovery_tli = 2;
	assert_action(f, HA_START_STANDBY, "node2");
}

static void test_stopped_leader_timeline_from_status(void **state)
{
	struct fx *f = *state;

	/* the leader's member has not published a timeline: use the status key's */
	set_leader(f, "node2", 3);
	find(f, "node2")->timeline = 0;
	pg_stopped(f, PGCTL_CD_SHUT_DOWN_IN_RECOVERY, 1);
	assert_action(f, HA_REWIND, "node2");
	f->in.cd.checkpoint_tli = 3;
	assert_action(f, HA_START_STANDBY, "node2");
}

static void test_stopped_crashed_former_primary_rewind(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	assert_action(f, HA_REWIND, "node2");
}

/* A leader that promoted moments ago still names its old timeline in pg_control until
 * its first checkpoint: pg_rewind against it would find nothing to do. Wait for it. */
static void test_stopped_waits_for_the_leaders_checkpoint(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	find(f, "node2")->checkpoint_pending = true;
	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	assert_action(f, HA_WAIT, "");
	assert_true(f->d.wait_leader_record); /* the record's change wakes the loop */
	pg_stopped(f, PGCTL_CD_SHUT_DOWN, 1);
	assert_action(f, HA_WAIT, "");
	find(f, "node2")->checkpoint_pending = false;
	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	assert_action(f, HA_REWIND, "node2");
	assert_false(f->d.wait_leader_record);
}

/* Holding the key on an old or expiring lease: never start a primary. */
static void test_stopped_holding_key_unsure_lease_waits(void **state)
{
	struct fx *f = *state;

	hold_key(f, 1);
	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	assert_action(f, HA_START_PRIMARY, "");
	f->c.leader_lease = 99; /* the key still sits on a previous lease */
	assert_action(f, HA_WAIT, "");
	f->c.leader_lease = 100;
	f->in.lease_deadline_ms = NOW + 500; /* less than the demote margin left */
	assert_action(f, HA_WAIT, "");
}

/* A fresh pg_basebackup copy says "in production" too, but carries a backup_label. */
static void test_stopped_fresh_clone_is_not_a_former_primary(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	f->in.cd.backup_label = true;
	assert_action(f, HA_START_STANDBY, "node2");
}

static void test_stopped_clean_replica_start_standby(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	pg_stopped(f, PGCTL_CD_SHUT_DOWN_IN_RECOVERY, 1);
	assert_action(f, HA_START_STANDBY, "node2");

	/* controldata unreadable: start as a replica anyway */
	f->in.cd_valid = false;
	assert_action(f, HA_START_STANDBY, "node2");
}

static void test_stopped_no_leader(void **state)
{
	struct fx *f = *state;

	pg_stopped(f, PGCTL_CD_SHUT_DOWN_IN_RECOVERY, 1);
	assert_action(f, HA_START_STANDBY, "");
	/* not even after a crash as primary: start as a replica, then race */
	f->in.cd.state = PGCTL_CD_IN_PRODUCTION;
	assert_action(f, HA_START_STANDBY, "");
}

static void test_stopped_leader_without_address(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	find(f, "node2")->host[0] = '\0';
	pg_stopped(f, PGCTL_CD_SHUT_DOWN_IN_RECOVERY, 1);
	assert_action(f, HA_WAIT, "");

	/* a leader key without a member key */
	snprintf(f->c.leader, sizeof(f->c.leader), "node9");
	assert_action(f, HA_WAIT, "");
}

static void test_stopped_etcd_down(void **state)
{
	struct fx *f = *state;

	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	etcd_down(f);
	assert_action(f, HA_WAIT, "");
}

/* ---- running replica ------------------------------------------------------ */

static void test_replica_no_leader_race(void **state)
{
	struct fx *f = *state;

	pg_replica(f, 1, 0x3000000);
	f->c.optime = 0x3000000;
	assert_action(f, HA_RACE, "");
}

/* Maintenance mode: nothing but keeping the key. */
static void test_paused_no_automatic_action(void **state)
{
	struct fx *f = *state;

	f->c.paused = true;
	pg_replica(f, 1, 0x3000000);
	assert_action(f, HA_WAIT, "");
	assert_non_null(strstr(f->d.reason, "maintenance mode"));

	hold_key(f, 1);
	pg_primary(f, 1, 0x3000000);
	assert_action(f, HA_KEEP_LEADER, ME);

	pg_stopped(f, PGCTL_CD_IN_PRODUCTION, 1);
	assert_action(f, HA_WAIT, "");
}

static void test_replica_no_leader_nofailover(void **state)
{
	struct fx *f = *state;

	pg_replica(f, 1, 0x3000000);
	f->in.nofailover = true;
	assert_action(f, HA_WAIT, "");
}

static void test_replica_no_leader_lagging(void **state)
{
	struct fx *f = *state;

	pg_replica(f, 1, 0x3000000);
	f->c.optime = 0x3000000 + 2 * MB; /* last leader position far ahead */
	assert_action(f, HA_WAIT, "");
	assert_non_null(strstr(f->d.reason, "maximum_lag"));

	/* exactly maximum_lag behind still races */
	f->c.optime = 0x3000000 + MB;
	assert_action(f, HA_RACE, "");
	/* ahead of the published optime (stale status) races */
	f->c.optime = 0x1000000;
	assert_action(f, HA_RACE, "");
}

static void test_replica_holding_key_promote(void **state)
{
	struct fx *f = *state;

	hold_key(f, 1);
	pg_replica(f, 1, 0x3000000);
	assert_action(f, HA_PROMOTE, ME);

	/* the lease is about to expire: do not promote */
	f->in.lease_deadline_ms = NOW + 999;
	assert_action(f, HA_WAIT, "");
}

static void test_replica_follow_new_leader(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	pg_replica(f, 1, 0x3000000);
	snprintf(f->in.configured_upstream, sizeof(f->in.configured_upstream),
		 "node3.example:5432");
	assert_action(f, HA_FOLLOW, "node2");

	/* same host, other port */
	snprintf(f->in.configured_upstream, sizeof(f->in.configured_upstream),
		 "node2.example:5433");
	assert_action(f, HA_FOLLOW, "node2");

	/* none, or unknown after an agent restart */
	f->in.configured_upstream[0] = '\0';
	assert_action(f, HA_FOLLOW, "node2");
	snprintf(f->in.configured_upstream, sizeof(f->in.configured_upstream), "?");
	assert_action(f, HA_FOLLOW, "node2");
}

static void test_replica_following_waits(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	pg_replica(f, 1, 0x3000000);
	assert_action(f, HA_WAIT, "node2");
}

static void test_replica_leader_without_address(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	pg_replica(f, 1, 0x3000000);
	find(f, "node2")->host[0] = '\0';
	assert_action(f, HA_WAIT, "");
}

static void test_replica_stuck_on_old_timeline(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 2);
	pg_replica(f, 1, 0x3000000);
	f->pg.streaming = false;
	f->in.not_streaming_since_ms = NOW - 15001;
	assert_action(f, HA_STOP_STUCK, "node2");

	/* not for long enough yet */
	f->in.not_streaming_since_ms = NOW - 15000;
	assert_action(f, HA_WAIT, "node2");

	/* on the leader's timeline: a network problem, not a fork */
	f->in.not_streaming_since_ms = NOW - 60000;
	f->pg.timeline = 2;
	assert_action(f, HA_WAIT, "node2");

	/* streaming after all */
	f->pg.timeline = 1;
	f->pg.streaming = true;
	assert_action(f, HA_WAIT, "node2");
}

static void test_replica_etcd_down(void **state)
{
	struct fx *f = *state;

	pg_replica(f, 1, 0x3000000);
	etcd_down(f);
	assert_action(f, HA_WAIT, "");
}

/* ---- running primary ----------------------------------------------------- */

static void test_primary_keep_leader(void **state)
{
	struct fx *f = *state;

	hold_key(f, 2);
	pg_primary(f, 2, 0x5000000);
	assert_action(f, HA_KEEP_LEADER, ME);

	/* just outside the margin */
	f->in.lease_deadline_ms = NOW + 1001;
	assert_action(f, HA_KEEP_LEADER, ME);
}

static void test_primary_lease_within_margin_demote(void **state)
{
	struct fx *f = *state;

	hold_key(f, 2);
	pg_primary(f, 2, 0x5000000);
	f->in.lease_deadline_ms = NOW + 1000;
	assert_action(f, HA_DEMOTE, "");
	f->in.lease_deadline_ms = NOW - 5000; /* already expired */
	assert_action(f, HA_DEMOTE, "");
}

static void test_primary_other_leader_demote(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 3);
	pg_primary(f, 2, 0x5000000);
	f->in.lease_id = 100;
	f->in.lease_deadline_ms = NOW + 3000;
	assert_action(f, HA_DEMOTE, "node2");
}

static void test_primary_no_leader_race(void **state)
{
	struct fx *f = *state;

	pg_primary(f, 2, 0x5000000);
	f->in.lease_id = 100;
	f->in.lease_deadline_ms = NOW + 3000;
	assert_action(f, HA_RACE, "");
}

static void test_primary_etcd_down(void **state)
{
	struct fx *f = *state;

	hold_key(f, 2);
	pg_primary(f, 2, 0x5000000);
	etcd_down(f);
	/* lease still valid: keep running */
	assert_action(f, HA_WAIT, "");

	/* lease within the margin */
	f->in.lease_deadline_ms = NOW + 500;
	assert_action(f, HA_DEMOTE, "");

	/* no lease at all */
	f->in.lease_id = 0;
	f->in.lease_deadline_ms = 0;
	assert_action(f, HA_DEMOTE, "");
}

/* ---- PostgreSQL starting ---------------------------------------------------- */

static void test_starting_waits(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 1);
	pg_running(f, false, 0, 0);
	f->pg.accepting = false;
	assert_action(f, HA_WAIT, "");
}

static void test_starting_holding_key_release(void **state)
{
	struct fx *f = *state;

	hold_key(f, 1);
	pg_running(f, false, 0, 0);
	f->pg.accepting = false;
	f->in.primary_down_since_ms = NOW - 10001;
	assert_action(f, HA_RELEASE, "");

	/* within the timeout: let it finish recovery */
	f->in.primary_down_since_ms = NOW - 3000;
	assert_action(f, HA_WAIT, "");

	/* etcd down: never release blindly */
	f->in.primary_down_since_ms = NOW - 60000;
	f->in.dcs_ok = false;
	assert_action(f, HA_WAIT, "");
}

static void test_action_names(void **state)
{
	(void)state;
	assert_string_equal(ha_action_name(HA_WAIT), "wait");
	assert_string_equal(ha_action_name(HA_DEMOTE), "demote");
	assert_string_equal(ha_action_name(HA_STOP_STUCK), "stop stuck replica");
	for (int a = HA_WAIT; a <= HA_STOP_STUCK; a++)
		assert_non_null(ha_action_name((enum ha_action)a));
}

/* ---- ha_healthiest ---------------------------------------------------------- */

static struct ha_peer peer(const char *name, bool reachable, bool is_primary, bool nofailover,
			   uint64_t lsn)
{
	struct ha_peer p;

	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "%s", name);
	p.reachable = reachable;
	p.is_primary = is_primary;
	p.nofailover = nofailover;
	p.lsn = lsn;
	p.timeline = 1;
	return p;
}

static void test_healthiest(void **state)
{
	struct fx *f = *state;
	struct ha_peer peers[3];
	char reason[256];

	pg_replica(f, 1, 0x3000000);

	/* a reachable peer still running as primary */
	peers[0] = peer("node2", true, true, false, 0x1000000);
	peers[1] = peer("node3", true, false, false, 0x1000000);
	assert_false(ha_healthiest(&f->in, peers, 2, reason, sizeof(reason)));
	assert_non_null(strstr(reason, "node2"));

	/* a reachable eligible peer ahead */
	peers[0] = peer("node2", true, false, false, 0x3000001);
	assert_false(ha_healthiest(&f->in, peers, 2, reason, sizeof(reason)));
	assert_non_null(strstr(reason, "node2"));

	/* a nofailover peer ahead does not count */
	peers[0] = peer("node2", true, false, true, 0x9000000);
	assert_true(ha_healthiest(&f->in, peers, 2, reason, sizeof(reason)));

	/* an unreachable peer counts with the position it last published: not answering is
	 * not being behind (a flooded REST API, issue 14 item 6) */
	peers[0] = peer("node2", false, true, false, 0x1000000);
	peers[1] = peer("node3", false, false, false, 0x9000000);
	assert_false(ha_healthiest(&f->in, peers, 2, reason, sizeof(reason)));
	assert_non_null(strstr(reason, "node3"));
	assert_non_null(strstr(reason, "last published"));
	/* ... and behind by that position, it does not stop us (nor does "primary", which
	 * only an answer can tell) */
	peers[1] = peer("node3", false, false, false, 0x1000000);
	assert_true(ha_healthiest(&f->in, peers, 2, reason, sizeof(reason)));

	/* equal LSN: we may take the key (the etcd transaction picks one winner) */
	peers[0] = peer("node2", true, false, false, 0x3000000);
	peers[1] = peer("node3", true, false, false, 0x2000000);
	assert_true(ha_healthiest(&f->in, peers, 2, reason, sizeof(reason)));

	/* our own entry is skipped */
	peers[2] = peer(ME, true, true, false, 0x9000000);
	assert_true(ha_healthiest(&f->in, peers, 3, reason, sizeof(reason)));

	/* nobody else */
	assert_true(ha_healthiest(&f->in, peers, 0, reason, sizeof(reason)));
	assert_true(reason[0] != '\0');

	/* a peer on a newer timeline is ahead even at a lower position */
	peers[0] = peer("node2", true, false, false, 0x1000000);
	peers[0].timeline = 2;
	assert_false(ha_healthiest(&f->in, peers, 1, reason, sizeof(reason)));
	/* and one on an older timeline is behind even at a higher position */
	f->pg.timeline = 3;
	peers[0].lsn = 0x9000000;
	assert_true(ha_healthiest(&f->in, peers, 1, reason, sizeof(reason)));
}

/* Planned switchover: the leader hands over; only the candidate races; no rewind after. */
static void test_switchover_rules(void **state)
{
	struct fx *f = *state;

	hold_key(f, 1);
	pg_primary(f, 1, 0x3000000);
	f->c.has_switchover = true;
	snprintf(f->c.switchover_leader, sizeof(f->c.switchover_leader), "%s", ME);
	snprintf(f->c.switchover_candidate, sizeof(f->c.switchover_candidate), "node2");
	assert_action(f, HA_SWITCHOVER, "node2");
	/* scheduled later: not yet */
	f->c.switchover_at = f->in.now_wall_s + 60;
	assert_action(f, HA_KEEP_LEADER, ME);
	f->c.switchover_at = 0;

	/* a replica that is not the candidate waits, for a while */
	f->c.has_leader = false;
	snprintf(f->c.switchover_leader, sizeof(f->c.switchover_leader), "node2");
	snprintf(f->c.switchover_candidate, sizeof(f->c.switchover_candidate), "node3");
	f->in.switchover_grace_ms = 8000;
	pg_replica(f, 1, 0x3000000);
	assert_action(f, HA_WAIT, "");
	f->in.switchover_waiting_ms = 9000;
	assert_action(f, HA_RACE, "");
	/* the candidate races at once */
	f->in.switchover_waiting_ms = 0;
	snprintf(f->c.switchover_candidate, sizeof(f->c.switchover_candidate), "%s", ME);
	assert_action(f, HA_RACE, "");
	/* the old leader does not race for its own switchover... */
	snprintf(f->c.switchover_leader, sizeof(f->c.switchover_leader), "%s", ME);
	snprintf(f->c.switchover_candidate, sizeof(f->c.switchover_candidate), "node3");
	f->in.switchover_waiting_ms = 20000;
	assert_action(f, HA_WAIT, "");
	/* ...unless the candidate never took over */
	f->in.switchover_waiting_ms = 40000;
	assert_action(f, HA_RACE, "");
	/* nor for a candidate whose member key is gone (its agent stopped): nobody waits */
	f->in.switchover_waiting_ms = 0;
	snprintf(f->c.switchover_leader, sizeof(f->c.switchover_leader), "node2");
	snprintf(f->c.switchover_candidate, sizeof(f->c.switchover_candidate), "node9");
	assert_action(f, HA_RACE, "");
}

/* A cleanly stopped old leader whose data ends before the new timeline: no rewind. */
static void test_clean_stop_before_fork_needs_no_rewind(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 2);
	pg_stopped(f, PGCTL_CD_SHUT_DOWN, 1);
	f->in.cd.checkpoint_lsn = 0x4000000;
	f->in.fork_lsn = 0x4000100;
	assert_action(f, HA_START_STANDBY, "node2");
	f->in.fork_lsn = 0x3000000; /* we went past the fork point: rewind */
	assert_action(f, HA_REWIND, "node2");
	f->in.fork_lsn = 0; /* history unknown: rewind decides */
	assert_action(f, HA_REWIND, "node2");
}

/* A replica left on an older timeline never races, whatever its position. */
static void test_replica_old_timeline_does_not_race(void **state)
{
	struct fx *f = *state;

	pg_replica(f, 1, 0x9000000);
	f->c.optime = 0x1000000;
	f->c.leader_timeline = 2;
	assert_action(f, HA_WAIT, "");
	f->c.leader_timeline = 1;
	assert_action(f, HA_RACE, "");
}

/* ---- ha_clone_source -------------------------------------------------------- */

static void test_clone_source(void **state)
{
	struct fx *f = *state;
	const struct dcs_member *m;

	/* no leader, no clonefrom member */
	assert_null(ha_clone_source(&f->c, ME));

	set_leader(f, "node2", 1);
	m = ha_clone_source(&f->c, ME);
	assert_non_null(m);
	assert_string_equal(m->name, "node2");

	/* a streaming clonefrom replica wins over the leader */
	find(f, "node3")->clonefrom = true;
	m = ha_clone_source(&f->c, ME);
	assert_non_null(m);
	assert_string_equal(m->name, "node3");

	/* ... but not without an address */
	find(f, "node3")->host[0] = '\0';
	m = ha_clone_source(&f->c, ME);
	assert_non_null(m);
	assert_string_equal(m->name, "node2");

	/* never ourselves */
	find(f, ME)->clonefrom = true;
	m = ha_clone_source(&f->c, ME);
	assert_non_null(m);
	assert_string_equal(m->name, "node2");

	/* a leader that is not running is no source */
	snprintf(find(f, "node2")->state, sizeof(find(f, "node2")->state), "crashed");
	assert_null(ha_clone_source(&f->c, ME));

	/* a clonefrom primary is not a clonefrom replica */
	find(f, "node2")->clonefrom = true;
	assert_null(ha_clone_source(&f->c, ME));
}

/* ---- synchronous mode ------------------------------------------------------ */

static void set_sync(struct fx *f, const char *leader, const char *standbys)
{
	f->c.has_sync = true;
	f->c.sync_mod_revision = 42;
	snprintf(f->c.sync_leader, sizeof(f->c.sync_leader), "%s", leader);
	snprintf(f->c.sync_standby, sizeof(f->c.sync_standby), "%s", standbys);
}

/* Only a member of the synchronous set may race; the last leader may too. */
static void test_sync_only_the_set_races(void **state)
{
	struct fx *f = *state;

	pg_replica(f, 1, 0x3000000);
	f->c.optime = 0x3000000;
	set_sync(f, "node2", "node3");
	assert_action(f, HA_WAIT, "");
	assert_non_null(strstr(f->d.reason, "synchronous set"));
	set_sync(f, "node2", "node3,node1");
	assert_action(f, HA_RACE, "");
	set_sync(f, "node2", "");
	assert_action(f, HA_WAIT, "");
	set_sync(f, ME, "");
	assert_action(f, HA_RACE, "");
	/* No sync key: asynchronous rules. */
	f->c.has_sync = false;
	assert_action(f, HA_RACE, "");
}

/* A primary without the key that is not in the set must not race: it demotes. */
static void test_sync_primary_outside_the_set_demotes(void **state)
{
	struct fx *f = *state;

	pg_primary(f, 2, 0x5000000);
	f->in.lease_id = 100;
	f->in.lease_deadline_ms = NOW + 3000;
	set_sync(f, "node2", "node3");
	assert_action(f, HA_DEMOTE, "");
	set_sync(f, "node2", "node1");
	assert_action(f, HA_RACE, "");
}

/* A replica that replayed past the end of its timeline stops at once to be rewound. */
static void test_replica_diverged_stops_at_once(void **state)
{
	struct fx *f = *state;

	set_leader(f, "node2", 3);
	pg_replica(f, 2, 0x5000000);
	f->pg.streaming = false;
	f->in.not_streaming_since_ms = NOW - 1000;
	f->in.fork_lsn = 0x4000000;
	assert_action(f, HA_STOP_STUCK, "node2");
	assert_non_null(strstr(f->d.reason, "diverged"));
	/* At or before the fork point: it can stream on, keep waiting. */
	f->pg.lsn = 0x4000000;
	assert_action(f, HA_WAIT, "node2");
}

/* ---- hand-over at shutdown ------------------------------------------------- */

static void add_standby(struct ha_standby *ws, size_t *n, const char *name, bool streaming,
			uint64_t flush)
{
	memset(&ws[*n], 0, sizeof(ws[*n]));
	snprintf(ws[*n].name, sizeof(ws[*n].name), "%s", name);
	ws[*n].streaming = streaming;
	ws[*n].flush = flush;
	(*n)++;
}

/* The leader that shuts down picks the most advanced replica fit to take over. */
static void test_handover_candidate(void **state)
{
	struct fx *f = *state;
	struct ha_standby ws[DCS_MAX_MEMBERS];
	size_t n = 0;
	char why[512];
	const char *c;
	uint64_t at = 0x5000000;

	hold_key(f, 1);
	add_standby(ws, &n, "node2", true, at - 100);
	add_standby(ws, &n, "node3", true, at - 10);
	c = ha_handover_candidate(&f->c, ME, ws, n, at, (int64_t)MB, why, sizeof(why));
	assert_non_null(c);
	assert_string_equal(c, "node3");
	/* Too far behind: the other one. */
	ws[1].flush = at - 2 * MB;
	c = ha_handover_candidate(&f->c, ME, ws, n, at, (int64_t)MB, why, sizeof(why));
	assert_non_null(c);
	assert_string_equal(c, "node2");
	/* Tagged nofailover, or its member key not streaming: not it either. */
	find(f, "node2")->nofailover = true;
	assert_null(ha_handover_candidate(&f->c, ME, ws, n, at, (int64_t)MB, why, sizeof(why)));
	assert_non_null(strstr(why, "node2: tagged nofailover"));
	assert_non_null(strstr(why, "node3: 2097152 bytes behind"));
	find(f, "node2")->nofailover = false;
	snprintf(find(f, "node2")->state, sizeof(find(f, "node2")->state), "running");
	assert_null(ha_handover_candidate(&f->c, ME, ws, n, at, (int64_t)MB, why, sizeof(why)));
	assert_non_null(strstr(why, "node2: replica running, not a streaming replica"));
	snprintf(find(f, "node2")->state, sizeof(find(f, "node2")->state), "streaming");
	/* Its member key says streaming but no walsender of ours streams to it. */
	ws[0].streaming = false;
	assert_null(ha_handover_candidate(&f->c, ME, ws, n, at, (int64_t)MB, why, sizeof(why)));
	assert_non_null(strstr(why, "node2: not streaming from us"));
	ws[0].streaming = true;
	/* Synchronous mode: only a member of the set. */
	ws[1].flush = at;
	set_sync(f, ME, "node2");
	c = ha_handover_candidate(&f->c, ME, ws, n, at, (int64_t)MB, why, sizeof(why));
	assert_non_null(c);
	assert_string_equal(c, "node2");
	set_sync(f, ME, "");
	assert_null(ha_handover_candidate(&f->c, ME, ws, n, at, (int64_t)MB, why, sizeof(why)));
	assert_non_null(strstr(why, "node3: not in the synchronous set"));
	/* Nobody else. */
	f->c.has_sync = false;
	f->c.n_members = 1;
	assert_null(ha_handover_candidate(&f->c, ME, ws, n, at, (int64_t)MB, why, sizeof(why)));
	assert_string_equal(why, "no other member");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_no_data_bootstrap),
	    T(test_sync_only_the_set_races),
	    T(test_sync_primary_outside_the_set_demotes),
	    T(test_replica_diverged_stops_at_once),
	    T(test_no_data_nofailover_waits),
	    T(test_no_data_someone_bootstrapping),
	    T(test_no_data_clone_from_leader),
	    T(test_no_data_leader_not_running),
	    T(test_no_data_clonefrom_preferred),
	    T(test_no_data_etcd_down),
	    T(test_sysid_mismatch_never_touched),
	    T(test_stopped_holding_key_start_primary),
	    T(test_stopped_holding_key_release),
	    T(test_stopped_leader_higher_timeline_rewind),
	    T(test_stopped_leader_timeline_from_status),
	    T(test_stopped_crashed_former_primary_rewind),
	    T(test_stopped_fresh_clone_is_not_a_former_primary),
	    T(test_stopped_clean_replica_start_standby),
	    T(test_stopped_no_leader),
	    T(test_stopped_leader_without_address),
	    T(test_stopped_etcd_down),
	    T(test_replica_no_leader_race),
	    T(test_paused_no_automatic_action),
	    T(test_replica_old_timeline_does_not_race),
	    T(test_switchover_rules),
	    T(test_clean_stop_before_fork_needs_no_rewind),
	    T(test_stopped_waits_for_the_leaders_checkpoint),
	    T(test_stopped_holding_key_unsure_lease_waits),
	    T(test_replica_no_leader_nofailover),
	    T(test_replica_no_leader_lagging),
	    T(test_replica_holding_key_promote),
	    T(test_replica_follow_new_leader),
	    T(test_replica_following_waits),
	    T(test_replica_leader_without_address),
	    T(test_replica_stuck_on_old_timeline),
	    T(test_replica_etcd_down),
	    T(test_primary_keep_leader),
	    T(test_primary_lease_within_margin_demote),
	    T(test_primary_other_leader_demote),
	    T(test_primary_no_leader_race),
	    T(test_primary_etcd_down),
	    T(test_starting_waits),
	    T(test_starting_holding_key_release),
	    T(test_action_names),
	    T(test_healthiest),
	    T(test_clone_source),
	    T(test_handover_candidate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

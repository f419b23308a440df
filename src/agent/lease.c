/*
 * The leader lease: granting and renewing it within retry_timeout, and what an
 * etcd outage means for it.
 */
#include "agent/parts.h"
#include "agent/agent.h"
#include "node/agentcfg.h"
#include "agent/api.h"
#include "cluster/member.h"
#include "node/backup.h"
#include "cluster/dcs.h"
#include "cluster/follow.h"
#include "node/defaults.h"
#include "cluster/confedit.h"
#include "cluster/dyncfg.h"
#include "cluster/switchover.h"
#include "agent/fence.h"
#include "agent/ha.h"
#include "agent/syncrep.h"
#include "node/pgconf.h"
#include "node/pgctl.h"
#include "common/http.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "etcd/etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void etcd_trouble(struct agent *a, const char *what, int rc)
{
	int64_t now = cmn_now_ms();

	a->counters.etcd_errors++;
	if (now - a->last_etcd_error_log_ms >= AGENT_ETCD_ERROR_LOG_MS) {
		log_warning("etcd: %s failed: %s (endpoint %s)", what, pgw_strerror(rc),
			    etcd_client_endpoint(a->etcd));
		a->last_etcd_error_log_ms = now;
	}
}

/*
 * Renews our lease: every loop while we hold the leader key, otherwise only once
 * half of it has run out (member keys tolerate that; it halves the keepalives).
 * force: renew now (before taking the leader key).
 */
/* A renewal (keepalive or grant) sent at sent_us came back: ok or not. */
static void renewal_done(struct agent *a, int64_t sent_us, bool ok)
{
	if (!ok) {
		a->counters.renewals_failed++;
		return;
	}
	a->counters.renewals_ok++;
	a->counters.renewal_seconds_last = (double)(cmn_now_us() - sent_us) / 1e6;
	a->counters.renewal_seconds_sum += a->counters.renewal_seconds_last;
}

bool lease_maintain(struct agent *a, bool force)
{
	int64_t sent = cmn_now_ms();
	int ttl = 0;
	int rc;

	if (a->lease_id && a->lease_ttl_ms != a->cfg.ttl_ms) {
		/*
		 * ttl changed: a new lease. The leader moves its key over at once, and
		 * keeps the old lease (and its deadline) if that fails, so its deadline
		 * never runs past the lease the key is really on.
		 */
		int64_t old = a->lease_id, old_deadline = a->lease_deadline_ms;
		int old_ttl = a->lease_ttl_ms;
		bool leader = holds_leader(a), moved = false;

		log_info("ttl is now %d ms: granting a new lease", a->cfg.ttl_ms);
		a->lease_id = 0;
		if (lease_maintain(a, true)) {
			if (!leader || (dcs_move_leader(&a->dcs, a->cfg.member_name, a->lease_id,
							&moved) == PGW_OK &&
					moved)) {
				if (leader)
					a->cluster.leader_lease = a->lease_id;
				if (etcd_lease_revoke(a->etcd, old) != PGW_OK)
					log_debug("could not revoke the old lease");
				return true;
			}
			log_warning("could not move the leader key to the new lease: keeping the "
				    "old one");
			if (etcd_lease_revoke(a->etcd, a->lease_id) != PGW_OK)
				log_debug("could not revoke the new lease");
		}
		a->lease_id = old;
		a->lease_deadline_ms = old_deadline;
		a->lease_ttl_ms = old_ttl;
		free(a->published_member);
		a->published_member = NULL;
		force = true; /* renew the old one now */
	}
	if (a->lease_id && !force) {
		if (sent - a->last_renew_try_ms < a->cfg.loop_wait_ms - 100)
			return false; /* a job makes the loop tick faster: not the keepalives */
		if (!holds_leader(a) && a->lease_deadline_ms - sent > a->cfg.ttl_ms / 2)
			return false;
	}
	a->last_renew_try_ms = sent;
	if (a->lease_id) {
		int64_t sent_us = cmn_now_us();

		rc = etcd_lease_keepalive(a->etcd, a->lease_id, &ttl);
		renewal_done(a, sent_us, rc == PGW_OK && ttl > 0);
		if (rc == PGW_OK && ttl > 0) {
			a->lease_deadline_ms = sent + (int64_t)ttl * 1000;
			a->last_renew_ok_ms = sent;
			return true;
		}
		if (rc != PGW_ENOTFOUND && !(rc == PGW_OK && ttl <= 0)) {
			etcd_trouble(a, "lease keepalive", rc);
			return false;
		}
		log_warning("lease %llx expired in etcd: granting a new one",
			    (unsigned long long)a->lease_id);
		a->lease_id = 0;
		a->lease_deadline_ms = 0;
	}
	sent = cmn_now_ms();
	int64_t sent_us = cmn_now_us();

	rc = etcd_lease_grant(a->etcd, a->cfg.ttl_ms / 1000, &a->lease_id, &ttl);
	renewal_done(a, sent_us, rc == PGW_OK);
	if (rc != PGW_OK) {
		a->lease_id = 0;
		etcd_trouble(a, "lease grant", rc);
		return false;
	}
	a->lease_deadline_ms = sent + (int64_t)ttl * 1000;
	a->last_renew_ok_ms = sent;
	a->lease_ttl_ms = a->cfg.ttl_ms;
	free(a->published_member);
	a->published_member = NULL; /* re-put the member key on the new lease */
	return true;
}

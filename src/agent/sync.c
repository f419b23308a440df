/*
 * Synchronous replication on the leader (the choices are syncrep.c's) and the
 * members' replication slots.
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

/* One line of pg_stat_replication as manage_sync needs it. */

/*
 * Whether a standby still answers: the reply_time of its walsender (the standby's
 * own clock, so only compared with its earlier value) changed within max_age_ms of
 * our clock (now: read before the query, so a slow query cannot make a standby look
 * silent). A standby replies at least every wal_receiver_status_interval; one whose
 * postgres hangs, or that is cut off from us while its agent still reaches etcd,
 * keeps a "streaming" walsender until wal_sender_timeout (60 s) while every commit
 * waits for it.
 */
static bool standby_replies(struct agent *a, const char *name, int pid, const char *reply,
			    int64_t now, int64_t max_age_ms)
{
	size_t n = sizeof(a->replies) / sizeof(a->replies[0]), slot = n, oldest = 0;

	for (size_t i = 0; i < n; i++) {
		if (a->replies[i].pid == pid) {
			slot = i;
			break;
		}
		/* A new walsender takes the oldest entry, a silent one last. */
		if (a->replies[i].silent < a->replies[oldest].silent ||
		    (a->replies[i].silent == a->replies[oldest].silent &&
		     a->replies[i].changed_ms < a->replies[oldest].changed_ms))
			oldest = i;
	}
	if (slot == n) {
		slot = oldest;
		a->replies[slot].pid = pid;
		a->replies[slot].reply[0] = '\0';
		a->replies[slot].silent = false;
	}
	if (strcmp(a->replies[slot].reply, reply) != 0) {
		snprintf(a->replies[slot].reply, sizeof(a->replies[slot].reply), "%s", reply);
		a->replies[slot].changed_ms = now;
		if (a->replies[slot].silent)
			log_info("standby %s replies again", name);
		a->replies[slot].silent = false;
		return true;
	}
	if (max_age_ms <= 0 || now - a->replies[slot].changed_ms <= max_age_ms)
		return true;
	if (!a->replies[slot].silent)
		log_warning("standby %s sent no reply for %lld ms: not fit to be synchronous", name,
			    (long long)(now - a->replies[slot].changed_ms));
	a->replies[slot].silent = true;
	return false;
}

static int write_sync(struct agent *a, const char *set)
{
	bool ok = false;

	a->last_full_read_ms = 0; /* see our own write (or someone else's) next loop */
	if (dcs_write_sync(&a->dcs, a->cfg.member_name, set, a->cluster.sync_mod_revision, &ok) !=
	    PGW_OK) {
		/* It may have been written all the same: change nothing until a full read. */
		a->sync_unsure = true;
		return PGW_ERR;
	}
	if (!ok)
		return PGW_ERR;
	log_info("synchronous set recorded in etcd: [%s]", set);
	a->cluster.has_sync = true;
	snprintf(a->cluster.sync_leader, sizeof(a->cluster.sync_leader), "%s", a->cfg.member_name);
	snprintf(a->cluster.sync_standby, sizeof(a->cluster.sync_standby), "%s", set);
	return PGW_OK;
}

/*
 * Before a promotion in synchronous mode: the sync key must name us, with nobody
 * synchronous yet, so that none of the old set (nor the old leader) can take over
 * from commits we will acknowledge. No promotion until that is written.
 */
bool claim_sync(struct agent *a)
{
	const struct dcs_cluster *c = &a->cluster;

	if (!c->has_sync ||
	    (strcmp(c->sync_leader, a->cfg.member_name) == 0 && !c->sync_standby[0]))
		return true;
	if (!a->sync_unsure && write_sync(a, "") == PGW_OK)
		return true;
	log_warning("not promoting yet: could not record ourselves in the sync key");
	return false;
}

static void set_ssn(struct agent *a, const char *ssn)
{
	snprintf(a->cfg.synchronous_standby_names, sizeof(a->cfg.synchronous_standby_names), "%s",
		 ssn);
	if (rewrite_conf_and_reload(a) != PGW_OK) {
		log_warning("could not apply synchronous_standby_names = '%s'", ssn);
		a->conf_dirty = true;
		return;
	}
	log_info("synchronous_standby_names = '%s'", ssn);
	a->sync_changed_ms = cmn_now_ms();
	a->sync_confirm_lsn = 0;
}

/*
 * Synchronous replication, on the leader. Invariant: every member listed in the
 * sync key has every commit acknowledged to a client, so any of them may take
 * over without losing one. Hence the order of steps, one per loop (except that 3
 * follows 2 at once, etcd having confirmed the write):
 *   1. the key names us as leader (a new leader first empties it);
 *   2. a standby leaves the key before synchronous_standby_names stops waiting
 *      for it;
 *   3. synchronous_standby_names waits for all of the wanted standbys
 *      ("FIRST n (all n)"), or for any standby in strict mode when none is;
 *   4. a standby joins the key only after commits wait for it and it has flushed
 *      everything written before that.
 */
void manage_sync(struct agent *a)
{
	const struct dcs_cluster *c = &a->cluster;
	const char *me = a->cfg.member_name;
	struct walsender ws[DCS_MAX_MEMBERS];
	size_t n_ws = 0;
	uint64_t flushed = 0;
	char *rows;

	if (a->sync_unsure)
		return; /* a sync key write of unknown outcome: wait for a full read */
	if (!a->sync_mode) {
		/* Off: nobody is listed any more before commits stop waiting. */
		if (c->has_sync && (strcmp(c->sync_leader, me) != 0 || c->sync_standby[0]))
			(void)write_sync(a, "");
		else if (a->cfg.synchronous_standby_names[0])
			set_ssn(a, "");
		else if (c->has_sync) {
			char key[600];

			dcs_key(&a->dcs, DCS_KEY_SYNC, key, sizeof(key));
			if (etcd_delete(a->etcd, key, NULL, NULL) == PGW_OK)
				log_info("synchronous mode off: sync key removed");
			a->last_full_read_ms = 0;
		}
		return;
	}
	if (!c->has_sync || strcmp(c->sync_leader, me) != 0) {
		(void)write_sync(a, "");
		return;
	}
	int64_t asked_ms = cmn_now_ms();

	rows = pgctl_query_value(
	    &a->pg, "SELECT '=' || current_setting('synchronous_standby_names') || E'\\n' ||"
		    " pg_current_wal_flush_lsn()::text || ' ' || (SELECT setting FROM pg_settings"
		    " WHERE name = 'wal_receiver_status_interval') || coalesce((SELECT"
		    " string_agg(E'\\n' || application_name || ' ' || state || ' ' ||"
		    " coalesce(flush_lsn, '0/0')::text || ' ' || pid || ' ' || coalesce(extract("
		    "epoch FROM reply_time)::text, '-'), '') FROM pg_stat_replication), '')");
	if (!rows)
		return;
	char *save = NULL, *line = strtok_r(rows, "\n", &save);
	/* "=" + the setting as this session sees it (it may be empty). */
	bool ssn_live = line && strcmp(line + 1, a->cfg.synchronous_standby_names) == 0;

	char flush_s[32];
	int interval_s = 0;

	line = line ? strtok_r(NULL, "\n", &save) : NULL;
	if (!line || sscanf(line, "%31s %d", flush_s, &interval_s) != 2 ||
	    cmn_parse_lsn(flush_s, &flushed) != PGW_OK) {
		free(rows);
		return;
	}
	/* Three status intervals without a reply (at least 3 s; none when standbys send
	 * no periodic status): the standby is not fit to be synchronous. */
	int64_t reply_max_ms = interval_s > 0 ? (int64_t)interval_s * 3000 : 0;

	while ((line = strtok_r(NULL, "\n", &save)) && n_ws < DCS_MAX_MEMBERS) {
		char name[DCS_NAME_MAX], state[32], lsn[32], reply[40];
		int pid;

		if (sscanf(line, "%63s %31s %31s %d %39s", name, state, lsn, &pid, reply) != 5)
			continue;
		snprintf(ws[n_ws].name, sizeof(ws[n_ws].name), "%s", name);
		ws[n_ws].streaming = strcmp(state, "streaming") == 0;
		if (ws[n_ws].streaming && strcmp(reply, "-") != 0 &&
		    !standby_replies(a, name, pid, reply, asked_ms, reply_max_ms))
			ws[n_ws].streaming = false;
		if (cmn_parse_lsn(lsn, &ws[n_ws].flush) != PGW_OK)
			ws[n_ws].flush = 0;
		n_ws++;
	}
	free(rows);

	/* Wanted: streaming members fit to take over, current ones first, then the most
	 * advanced, up to synchronous_node_count (syncrep_pick). */
	const struct walsender *pick[DCS_MAX_MEMBERS];
	size_t n_pick =
	    syncrep_pick(c, me, a->cfg.synchronous_standby_names, ws, n_ws, a->sync_count, pick);
	struct cmn_buf want = {0}, ssn = {0}, keep = {0};

	for (size_t i = 0; i < n_pick; i++)
		cmn_buf_printf(&want, "%s%s", i ? "," : "", pick[i]->name);
	const char *want_s = want.data ? want.data : "";

	/* Step 2: a member we no longer want leaves the key first. */
	if (syncrep_keep(c->sync_standby, want_s, &keep) &&
	    write_sync(a, keep.data ? keep.data : "") != PGW_OK)
		goto out;
	/* Step 3 (after a confirmed step 2: commits stop waiting for it in this loop). */
	if (syncrep_ssn(pick, n_pick, a->sync_strict, &ssn) != PGW_OK)
		goto out;
	if (strcmp(ssn.data ? ssn.data : "", a->cfg.synchronous_standby_names) != 0) {
		set_ssn(a, ssn.data ? ssn.data : "");
		goto out;
	}
	/* Step 4. */
	if (strcmp(want_s, c->sync_standby) == 0 || !ssn_live)
		goto out;
	if (cmn_now_ms() - a->sync_changed_ms < a->cfg.loop_wait_ms)
		goto out; /* let every walsender see the new setting */
	if (!a->sync_confirm_lsn) {
		a->sync_confirm_lsn = flushed;
		goto out;
	}
	for (size_t i = 0; i < n_pick; i++)
		if (!dcs_sync_has(c, pick[i]->name) && pick[i]->flush < a->sync_confirm_lsn)
			goto out;
	(void)write_sync(a, want_s);
out:
	cmn_buf_free(&want);
	cmn_buf_free(&ssn);
	cmn_buf_free(&keep);
}

void manage_slots(struct agent *a)
{
	struct cmn_buf sql = {0};
	char slot[64];
	bool first = true;

	/* Create a slot per other member, drop inactive ones of members that left. */
	cmn_buf_printf(&sql, "WITH want(name) AS (VALUES ");
	for (size_t i = 0; i < a->cluster.n_members; i++) {
		if (strcmp(a->cluster.members[i].name, a->cfg.member_name) == 0)
			continue;
		cmn_slot_name(a->cluster.members[i].name, slot, sizeof(slot));
		cmn_buf_printf(&sql, "%s('%s')", first ? "" : ",", slot);
		first = false;
	}
	if (first)
		cmn_buf_printf(&sql, "(NULL::text)");
	cmn_buf_printf(
	    &sql,
	    "), created AS (SELECT pg_create_physical_replication_slot(w.name, true) FROM want w"
	    " WHERE w.name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s"
	    " WHERE s.slot_name = w.name)),"
	    " dropped AS (SELECT pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s"
	    " WHERE s.slot_type = 'physical' AND NOT s.active AND NOT s.temporary"
	    " AND s.slot_name NOT IN (SELECT name FROM want WHERE name IS NOT NULL))"
	    " SELECT (SELECT count(*) FROM created), (SELECT count(*) FROM dropped)");
	if (sql.data && pgctl_exec(&a->pg, sql.data) != PGW_OK)
		log_warning("could not manage replication slots");
	cmn_buf_free(&sql);
}

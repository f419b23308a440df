/*
 * Applying the dynamic configuration (etcd's config key) and a changed node file:
 * postgresql.conf rewritten and reloaded, timing and backup settings taken over.
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

static bool kvlist_equal(const struct cmn_kvlist *x, const struct cmn_kvlist *y)
{
	if (x->n != y->n)
		return false;
	for (size_t i = 0; i < x->n; i++) {
		const char *v = cmn_kvlist_get(y, x->items[i].key);

		if (!v || strcmp(v, x->items[i].value) != 0)
			return false;
	}
	return true;
}

/* Rewrites postgresql.conf for the role it has now and reloads a running server. */
int rewrite_conf_and_reload(struct agent *a)
{
	struct pgconf_upstream up = {0};
	char host[256];
	int port = 0;

	if (pgconf_has_standby_signal(&a->cfg) && a->configured_upstream[0] &&
	    a->configured_upstream[0] != '?' &&
	    cmn_split_hostport(a->configured_upstream, host, sizeof(host), &port) == PGW_OK) {
		up.host = host;
		up.port = port;
	}
	if (pgconf_write_conf_without(&a->cfg, pgconf_has_standby_signal(&a->cfg) ? &up : NULL,
				      (a->archive_lookups_off ? PGCONF_NO_ARCHIVE_LOOKUPS : 0) |
					  (a->archiving_off ? PGCONF_NO_ARCHIVING : 0)) != PGW_OK)
		return PGW_ERR;
	a->conf_written = true;
	if (!a->probe.postmaster_pid)
		return PGW_OK;
	return pgctl_reload(&a->pg);
}

/*
 * Applies the config key when it changed: timing, maximum lag, synchronous mode
 * and PostgreSQL parameters (written to postgresql.conf and reloaded by the loop).
 * An invalid document is ignored as a whole, with an error in the log.
 */
void apply_dynamic_config(struct agent *a)
{
	struct dyncfg d;
	char err[512];

	if (a->cluster.config_mod_revision == a->dyn_revision)
		return;
	a->dyn_revision = a->cluster.config_mod_revision;
	if (dyncfg_parse(a->cluster.config, &agent_config_dyncfg_rules, &d, err, sizeof(err)) !=
	    PGW_OK) {
		log_error("ignoring the dynamic configuration in etcd: %s", err);
		return;
	}
	int ttl = d.ttl_ms ? d.ttl_ms : a->node_ttl_ms;
	int lw = d.loop_wait_ms ? d.loop_wait_ms : a->node_loop_wait_ms;
	int rt = d.retry_timeout_ms ? d.retry_timeout_ms : a->node_retry_timeout_ms;

	if (cluster_check_timing(ttl, lw, rt, err, sizeof(err)) != PGW_OK) {
		log_error("ignoring the timing of the dynamic configuration: %s", err);
		ttl = a->node_ttl_ms;
		lw = a->node_loop_wait_ms;
		rt = a->node_retry_timeout_ms;
	}
	if (ttl != a->cfg.ttl_ms || lw != a->cfg.loop_wait_ms || rt != a->cfg.retry_timeout_ms)
		log_info("timing now: ttl %d ms, loop_wait %d ms, retry_timeout %d ms", ttl, lw,
			 rt);
	if (rt != a->cfg.retry_timeout_ms)
		etcd_client_set_timeout(a->etcd, rt);
	a->cfg.ttl_ms = ttl;
	a->cfg.loop_wait_ms = lw;
	a->cfg.retry_timeout_ms = rt;
	a->cfg.maximum_lag_on_failover = d.maximum_lag >= 0 ? d.maximum_lag : a->node_max_lag;
	if (d.sync_mode != a->sync_mode || d.sync_strict != a->sync_strict ||
	    d.sync_count != a->sync_count)
		log_info("synchronous_mode %s%s, synchronous_node_count %d",
			 d.sync_mode ? "on" : "off", d.sync_strict ? " (strict)" : "",
			 d.sync_count);
	a->sync_mode = d.sync_mode;
	a->sync_strict = d.sync_strict;
	a->sync_count = d.sync_count;
	if (!holds_leader(a)) {
		const char *want = a->sync_mode && a->sync_strict ? "*" : "";

		if (strcmp(a->cfg.synchronous_standby_names, want) != 0) {
			snprintf(a->cfg.synchronous_standby_names,
				 sizeof(a->cfg.synchronous_standby_names), "%s", want);
			a->conf_dirty = true;
		}
	}
	if (!kvlist_equal(&a->cfg.dyn_parameters, &d.parameters)) {
		cmn_kvlist_free(&a->cfg.dyn_parameters);
		a->cfg.dyn_parameters = d.parameters;
		memset(&d.parameters, 0, sizeof(d.parameters));
		a->conf_dirty = true;
		log_info("PostgreSQL parameters of the dynamic configuration changed");
	}
	/* pgbackrest.conf is written again; archive_command follows (archive_async). */
	if (backup_apply_dynamic(&a->cfg, &d.backup, &a->node_backup))
		a->conf_dirty = true;
	dyncfg_free(&d);
}

/* After the HA action: new parameters reach a running server by a reload. */
void apply_conf_change(struct agent *a)
{
	if (!a->conf_dirty || a->job.kind != JOB_NONE)
		return;
	if (!a->probe.data_valid) {
		a->conf_dirty = false;
		return;
	}
	if (rewrite_conf_and_reload(a) == PGW_OK) {
		if (a->probe.postmaster_pid)
			log_info("postgresql.conf rewritten and reloaded");
		a->conf_dirty = false;
	}
}

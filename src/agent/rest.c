/*
 * The REST API's operations: restart, reload, reinitialize handed to the loop,
 * switchover / failover requests and PATCH /config.
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

void req_finish(struct agent *a, unsigned int code, const char *fmt, ...)
{
	struct agent_req *r;
	va_list ap;

	pthread_mutex_lock(&a->req_lock);
	r = a->req;
	a->req = NULL;
	a->req_waits_job = false;
	if (r) {
		r->code = code;
		va_start(ap, fmt);
		vsnprintf(r->message, sizeof(r->message), fmt, ap);
		va_end(ap);
		r->done = true;
		if (r->abandoned)
			free(r);
		else
			pthread_cond_broadcast(&a->req_cond);
	}
	pthread_mutex_unlock(&a->req_lock);
}

/* Re-reads the node file: parameters, tags and pg_hba lines take effect now. */
int reload_node_config(struct agent *a, char *err, size_t err_size)
{
	struct agent_config fresh;

	if (agent_config_load(a->config_path, &fresh, err, err_size) != PGW_OK)
		return PGW_EINVAL;
	if (pgconf_check_parameters(&fresh, err, err_size) != PGW_OK) {
		agent_config_free(&fresh);
		return PGW_EINVAL;
	}
	struct cmn_kvlist tmp = a->cfg.parameters;

	a->cfg.parameters = fresh.parameters;
	fresh.parameters = tmp;
	tmp = a->cfg.tags;
	a->cfg.tags = fresh.tags;
	fresh.tags = tmp;
	char *hba = a->cfg.pg_hba_extra;

	a->cfg.pg_hba_extra = fresh.pg_hba_extra;
	fresh.pg_hba_extra = hba;
	a->cfg.nofailover = fresh.nofailover;
	a->cfg.noloadbalance = fresh.noloadbalance;
	a->cfg.nosync = fresh.nosync;
	a->cfg.clonefrom = fresh.clonefrom;
	agent_config_free(&fresh);
	if (a->probe.data_valid &&
	    (pgconf_write_hba(&a->cfg) != PGW_OK || rewrite_conf_and_reload(a) != PGW_OK)) {
		snprintf(err, err_size, "cannot rewrite the PostgreSQL configuration files");
		return PGW_ERR;
	}
	log_info("reloaded %s", a->config_path);
	return PGW_OK;
}

static void upstream_of(const struct agent *a, char *host, size_t size, int *port)
{
	host[0] = '\0';
	*port = 0;
	if (a->configured_upstream[0] && a->configured_upstream[0] != '?' &&
	    cmn_split_hostport(a->configured_upstream, host, size, port) != PGW_OK)
		host[0] = '\0';
}

void do_request(struct agent *a)
{
	struct agent_req *r;
	char err[600];

	pthread_mutex_lock(&a->req_lock);
	r = a->req && !a->req_waits_job ? a->req : NULL;
	pthread_mutex_unlock(&a->req_lock);
	if (!r)
		return;
	if (r->kind == REQ_RELOAD) {
		if (reload_node_config(a, err, sizeof(err)) != PGW_OK)
			req_finish(a, 500, "reload failed: %s", err);
		else
			req_finish(a, 200, "reloaded configuration");
		return;
	}
	if (a->job.kind != JOB_NONE || a->bootstrapping) {
		req_finish(a, 503, "busy: %s",
			   a->bootstrapping ? "bootstrapping" : job_state[a->job.kind]);
		return;
	}
	if (r->kind == REQ_RESTART) {
		bool leader = holds_leader(a) && a->probe.accepting && !a->probe.in_recovery;
		char host[256];
		int port;

		if (!a->probe.postmaster_pid) {
			req_finish(a, 503, "PostgreSQL is not running");
			return;
		}
		if (r->pending_only && !a->probe.pending_restart) {
			req_finish(a, 200, "no restart needed: no parameter change is pending");
			return;
		}
		log_info("restart requested through the REST API");
		pgctl_close(&a->pg);
		if (run_now(a, pgctl_argv_stop(&a->pg, "fast"), AGENT_PG_STOP_TIMEOUT_S * 1000) !=
		    0) {
			req_finish(a, 503, "PostgreSQL did not stop (see the PostgreSQL log)");
			return;
		}
		/* A long shutdown checkpoint may have outlived the lease: still the leader? */
		if (leader) {
			int64_t id = a->lease_id;

			leader = lease_maintain(a, true) && a->lease_id == id &&
				 !ha_lease_expiring(cmn_now_ms(), a->lease_deadline_ms,
						    CLUSTER_DEMOTE_MARGIN_MS);
			if (!leader)
				log_warning("lost the leader lease while stopping: starting as a "
					    "replica");
		}
		if (leader) {
			if (write_primary_config(a) == PGW_OK)
				(void)job_spawn(a, JOB_START, pgctl_argv_start(&a->pg));
		} else {
			upstream_of(a, host, sizeof(host), &port);
			start_standby(a, host, port);
		}
		if (a->job.kind != JOB_START) {
			req_finish(a, 503, "cannot start PostgreSQL again (see the agent log)");
			return;
		}
		pthread_mutex_lock(&a->req_lock);
		a->req_waits_job = true; /* answered when pg_ctl start returns */
		pthread_mutex_unlock(&a->req_lock);
		return;
	}
	/* REQ_REINIT */
	const struct dcs_member *src = ha_clone_source(&a->cluster, a->cfg.member_name);

	if (holds_leader(a)) {
		req_finish(a, 503, "I am the leader: cannot reinitialize");
		return;
	}
	if (!a->cluster.has_leader || !src) {
		req_finish(a, 503, "no leader to clone from");
		return;
	}
	log_warning("reinitialize requested through the REST API: cloning again from %s",
		    src->name);
	pgctl_close(&a->pg);
	if (a->probe.postmaster_pid &&
	    run_now(a, pgctl_argv_stop(&a->pg, "immediate"), AGENT_PG_IMMEDIATE_STOP_MS) != 0) {
		req_finish(a, 503, "cannot stop PostgreSQL");
		return;
	}
	do_clone(a, src->name);
	if (a->job.kind != JOB_CLONE) {
		req_finish(a, 503, "cannot start the clone (see the agent log)");
		return;
	}
	publish_api(a); /* no longer "streaming" for whoever waits for the clone */
	req_finish(a, 200, "reinitialize started: cloning from %s", src->name);
}

/* The HTTP thread's side: hand a request to the loop and wait for its answer. */
static void post_request(struct agent *a, enum req_kind kind, bool pending_only,
			 struct api_answer *ans)
{
	struct agent_req *r = calloc(1, sizeof(*r));
	int64_t deadline = cmn_now_ms() + AGENT_API_REQUEST_TIMEOUT_MS;

	if (!r) {
		ans->code = 500;
		snprintf(ans->message, sizeof(ans->message), "out of memory");
		return;
	}
	r->kind = kind;
	r->pending_only = pending_only;
	pthread_mutex_lock(&a->req_lock);
	if (a->req || a->req_stopping) {
		bool stopping = a->req_stopping;

		pthread_mutex_unlock(&a->req_lock);
		free(r);
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message), "%s",
			 stopping ? "the agent is shutting down"
				  : "another operation is in progress on this member");
		return;
	}
	a->req = r;
	pthread_mutex_unlock(&a->req_lock);
	agent_wake(a);
	pthread_mutex_lock(&a->req_lock);
	while (!r->done && !a->req_stopping && cmn_now_ms() < deadline) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&a->req_cond, &a->req_lock, &ts);
	}
	if (r->done) {
		ans->code = r->code;
		snprintf(ans->message, sizeof(ans->message), "%s", r->message);
		free(r);
	} else if (a->req_stopping) {
		if (a->req == r)
			a->req = NULL; /* the loop is gone: nobody else frees it */
		free(r);
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message), "the agent is shutting down");
	} else {
		r->abandoned = true; /* the loop frees it when it is done */
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message),
			 "still in progress: see the agent log");
	}
	pthread_mutex_unlock(&a->req_lock);
}

static int merge_patch(json_object *root, void *arg, char *err, size_t err_size)
{
	(void)err;
	(void)err_size;
	dyncfg_merge_patch(root, arg);
	return PGW_OK;
}

/* A connection of our own to etcd for the HTTP thread (the loop's is not shared). */
static int api_session(struct agent *a, struct etcd_client **etcd, struct dcs *d)
{
	struct etcd_client_opts o;

	cluster_etcd_opts(&a->cfg.etcd, AGENT_API_ETCD_TIMEOUT_MS, &o);
	if (etcd_client_new(&o, etcd) != PGW_OK)
		return PGW_ERR;
	dcs_init(d, *etcd, a->cfg.namespace, a->cfg.cluster_name);
	d->allowed_networks = a->cfg.allowed_networks;
	return PGW_OK;
}

static void api_change_leader(struct agent *a, json_object *body, bool failover,
			      struct api_answer *ans)
{
	struct etcd_client *etcd = NULL;
	struct dcs d;
	struct dcs_cluster cl;
	json_object *v;
	const char *leader = NULL, *candidate = NULL, *when = NULL;
	char why[400], new_leader[DCS_NAME_MAX];
	bool bad_request;
	int64_t at = 0;

	if (json_object_object_get_ex(body, "leader", &v) &&
	    json_object_is_type(v, json_type_string))
		leader = json_object_get_string(v);
	if (json_object_object_get_ex(body, "candidate", &v) &&
	    json_object_is_type(v, json_type_string))
		candidate = json_object_get_string(v);
	if (json_object_object_get_ex(body, "scheduled_at", &v) &&
	    json_object_is_type(v, json_type_string))
		when = json_object_get_string(v);
	if (leader && !*leader)
		leader = NULL;
	if (candidate && !*candidate)
		candidate = NULL;
	if (when && (at = switchover_parse_time(when)) < 0) {
		ans->code = 400;
		snprintf(ans->message, sizeof(ans->message),
			 "bad scheduled_at '%s': use YYYY-MM-DDTHH:MM[:SS]Z (UTC)", when);
		return;
	}
	if (!failover && !leader && !candidate) {
		ans->code = 400;
		snprintf(ans->message, sizeof(ans->message),
			 "a switchover needs a leader or a candidate");
		return;
	}
	struct switchover_policy policy = agent_config_switchover_policy(&a->cfg);

	if (api_session(a, &etcd, &d) != PGW_OK || dcs_read(&d, &cl) != PGW_OK) {
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message), "cannot read the cluster from etcd");
		if (etcd)
			etcd_client_free(etcd);
		return;
	}
	if (switchover_refusal(&policy, &cl, leader, candidate, failover, why, sizeof(why),
			       &bad_request)) {
		ans->code = bad_request ? 400 : 412;
		snprintf(ans->message, sizeof(ans->message), "%s", why);
		goto out;
	}
	static const unsigned int codes[] = {
	    [SWITCHOVER_DONE] = 200, [SWITCHOVER_SCHEDULED] = 202, [SWITCHOVER_PENDING] = 412,
	    [SWITCHOVER_ETCD] = 503, [SWITCHOVER_TIMEOUT] = 503,
	};
	enum switchover_result res =
	    switchover_request(&d, &cl, candidate, failover, at, AGENT_API_SWITCHOVER_WAIT_MS,
			       ans->message, sizeof(ans->message), new_leader, sizeof(new_leader));

	ans->code = codes[res];
out:
	dcs_cluster_free(&cl);
	etcd_client_free(etcd);
}

static void api_patch_config(struct agent *a, json_object *patch, struct api_answer *ans)
{
	struct etcd_client *etcd = NULL;
	struct dcs d;
	struct pgctl pg;
	struct confedit_result res;
	char err[600];
	int rc;

	if (api_session(a, &etcd, &d) != PGW_OK) {
		ans->code = 503;
		snprintf(ans->message, sizeof(ans->message), "cannot connect to etcd");
		return;
	}
	pgctl_init(&pg, &a->cfg);
	struct confedit_checks checks = pgctl_confedit_checks(&pg);

	rc = confedit_run(&d, &checks, merge_patch, patch, -1, false, &res, err, sizeof(err));
	pgctl_close(&pg);
	etcd_client_free(etcd);
	if (rc != PGW_OK) {
		ans->code = rc == PGW_EINVAL ? 400 : rc == PGW_EUNAVAIL ? 409 : 503;
		snprintf(ans->message, sizeof(ans->message), "%s", err);
		confedit_result_free(&res);
		return;
	}
	ans->code = 200;
	ans->body = res.new_text;
	res.new_text = NULL;
	confedit_result_free(&res);
}

/* Called from the HTTP server's threads for authenticated mutating requests. */
void api_op(void *arg, const struct api_call *call, struct api_answer *ans)
{
	struct agent *a = arg;
	json_object *body = NULL, *v;

	if (*call->body) {
		body = json_tokener_parse(call->body);
		if (!body || !json_object_is_type(body, json_type_object)) {
			json_object_put(body);
			ans->code = 400;
			snprintf(ans->message, sizeof(ans->message),
				 "the request body must be a JSON object");
			return;
		}
	} else {
		body = json_object_new_object();
	}
	log_info("REST API: %s %s", call->method, call->path);
	if (strcmp(call->path, "/restart") == 0) {
		bool pending = json_object_object_get_ex(body, "restart_pending", &v) &&
			       json_object_get_boolean(v);

		post_request(a, REQ_RESTART, pending, ans);
	} else if (strcmp(call->path, "/reload") == 0) {
		post_request(a, REQ_RELOAD, false, ans);
	} else if (strcmp(call->path, "/reinitialize") == 0) {
		post_request(a, REQ_REINIT, false, ans);
	} else if (strcmp(call->path, "/switchover") == 0) {
		api_change_leader(a, body, false, ans);
	} else if (strcmp(call->path, "/failover") == 0) {
		api_change_leader(a, body, true, ans);
	} else if (strcmp(call->path, "/config") == 0) {
		if (!*call->body) {
			ans->code = 400;
			snprintf(ans->message, sizeof(ans->message),
				 "PATCH /config needs a JSON object (a merge patch)");
		} else {
			api_patch_config(a, body, ans);
		}
	} else {
		ans->code = 404;
		snprintf(ans->message, sizeof(ans->message), "no such endpoint");
	}
	json_object_put(body);
}

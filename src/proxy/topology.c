#include "proxy/topology.h"
#include "agent/api.h"
#include "common/evloop.h"
#include "common/http.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "etcd/etcd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct proxy_topo_watch {
	const struct proxy_config *cfg;
	struct cmn_loop *loop;
	struct dcs dcs;
	struct dcs_cache cache;
	pthread_t watch_thread, poll_thread;
	bool watch_started, poll_started;
	volatile bool stop;
	volatile bool rewatch; /* the watch looks stale: start it again (also set by stop) */
	pthread_mutex_t lock;  /* guards snap and the wake flag */
	pthread_cond_t cond;
	bool changed; /* the watch saw an event: publish now */
	struct proxy_topology snap;
};

static void etcd_opts(const struct proxy_config *cfg, struct etcd_client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->endpoints = cfg->etcd_endpoints;
	o->timeout_ms = 1500;
	o->username = cfg->etcd_username;
	o->password = cfg->etcd_password;
	o->cacert = cfg->etcd_cacert;
	o->cert = cfg->etcd_cert;
	o->key = cfg->etcd_key;
}

static void poke(struct proxy_topo_watch *w)
{
	pthread_mutex_lock(&w->lock);
	w->changed = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static bool on_watch(void *arg, const struct etcd_header *h, const struct etcd_event *ev, size_t n)
{
	struct proxy_topo_watch *w = arg;

	dcs_cache_apply(&w->cache, h, ev, n);
	poke(w);
	return !w->stop;
}

static void *watch_main(void *arg)
{
	struct proxy_topo_watch *w = arg;
	struct etcd_client_opts o;
	struct etcd_client *c = NULL;

	etcd_opts(w->cfg, &o);
	if (etcd_client_new(&o, &c) != PGW_OK)
		return NULL;
	while (!w->stop) {
		struct etcd_range_result r;
		int64_t compact = 0;

		if (etcd_range_prefix(c, w->dcs.prefix, &r) == PGW_OK) {
			int64_t rev = r.header.revision;

			dcs_cache_load(&w->cache, &r);
			etcd_range_result_free(&r);
			poke(w);
			if (etcd_watch_run(c, w->dcs.prefix, rev + 1, on_watch, w, &w->rewatch,
					   &compact) != PGW_OK)
				log_debug("etcd watch ended; reading the cluster again");
			if (w->rewatch && !w->stop)
				log_info("etcd watch restarted (it missed a change of the leader)");
			w->rewatch = w->stop;
		}
		dcs_cache_invalidate(&w->cache);
		poke(w);
		for (int i = 0; i < 5 && !w->stop; i++)
			usleep(100000);
	}
	etcd_client_free(c);
	return NULL;
}

/* Health of the replicas: GET /replica?lag=N on each member's REST API. */
static void check_replicas(struct proxy_topo_watch *w, const struct dcs_cluster *c,
			   struct proxy_topology *t)
{
	const char *urls[DCS_MAX_MEMBERS];
	char store[DCS_MAX_MEMBERS][400];
	struct cmn_buf bodies[DCS_MAX_MEMBERS];
	long status[DCS_MAX_MEMBERS];
	size_t n = 0;
	size_t idx[DCS_MAX_MEMBERS];

	memset(bodies, 0, sizeof(bodies));
	for (size_t i = 0; i < t->n_members && i < c->n_members; i++) {
		const struct dcs_member *m = dcs_find_member(c, t->members[i].name);

		if (!m || t->members[i].is_leader || !m->api_url[0] || m->noloadbalance)
			continue;
		snprintf(store[n], sizeof(store[n]), "%s/replica?lag=%lld", m->api_url,
			 (long long)w->cfg->max_replica_lag);
		urls[n] = store[n];
		idx[n++] = i;
	}
	cmn_http_get_many(urls, n, 800, bodies, status);
	for (size_t k = 0; k < n; k++) {
		t->members[idx[k]].replica_ok = status[k] == 200;
		cmn_buf_free(&bodies[k]);
	}
}

static void *poll_main(void *arg)
{
	struct proxy_topo_watch *w = arg;
	struct etcd_client_opts o;
	struct etcd_client *c = NULL;
	char leader_key[600];
	int64_t last_check = 0;
	int mismatches = 0;

	etcd_opts(w->cfg, &o);
	if (etcd_client_new(&o, &c) != PGW_OK)
		return NULL;
	dcs_key(&w->dcs, "leader", leader_key, sizeof(leader_key));
	while (!w->stop) {
		struct proxy_topology t;
		struct dcs_cluster cl;
		struct etcd_range_result r;
		int64_t now = cmn_now_ms();
		bool confirm = now - last_check >= 1000;

		pthread_mutex_lock(&w->lock);
		t = w->snap;
		w->changed = false;
		pthread_mutex_unlock(&w->lock);
		if (confirm) {
			/*
			 * A linearizable read: etcd (its majority) still answers, and says the
			 * same leader as our watch-fed cache; otherwise the cache is not
			 * confirmed and the watch starts again.
			 */
			last_check = now;
			if (etcd_range(c, leader_key, NULL, &r) == PGW_OK) {
				struct dcs_cluster now_cl;
				bool same = false;

				if (dcs_cache_snapshot(&w->dcs, &w->cache, &now_cl)) {
					bool has = r.n_kvs == 1;

					same =
					    has == now_cl.has_leader &&
					    (!has || (r.kvs[0].value_len == strlen(now_cl.leader) &&
						      memcmp(r.kvs[0].value, now_cl.leader,
							     r.kvs[0].value_len) == 0));
					dcs_cluster_free(&now_cl);
				}
				etcd_range_result_free(&r);
				t.etcd_ok = true;
				t.etcd_error[0] = '\0';
				if (same) {
					t.confirmed_ms = now;
					mismatches = 0;
				} else if (++mismatches >= 2) {
					/* Twice in a row: not an event still on its way. */
					snprintf(
					    t.etcd_error, sizeof(t.etcd_error),
					    "the watched view differs from etcd: watching again");
					w->rewatch = true;
					mismatches = 0;
				}
			} else {
				t.etcd_ok = false;
				snprintf(t.etcd_error, sizeof(t.etcd_error),
					 "etcd does not answer (%s)", w->cfg->etcd_endpoints);
			}
		}
		if (dcs_cache_snapshot(&w->dcs, &w->cache, &cl)) {
			bool had = t.has_leader;
			char before[DCS_NAME_MAX];

			snprintf(before, sizeof(before), "%s", t.leader);
			t.has_leader = false;
			t.leader[0] = t.leader_host[0] = '\0';
			t.n_members = 0;
			t.switchover_pending = cl.has_switchover;
			for (size_t i = 0; i < cl.n_members && i < DCS_MAX_MEMBERS; i++) {
				const struct dcs_member *m = &cl.members[i];
				struct proxy_member *pm = &t.members[t.n_members++];
				bool prev_ok = false;

				for (size_t j = 0; j < w->snap.n_members; j++)
					if (strcmp(w->snap.members[j].name, m->name) == 0)
						prev_ok = w->snap.members[j].replica_ok;
				memset(pm, 0, sizeof(*pm));
				snprintf(pm->name, sizeof(pm->name), "%s", m->name);
				snprintf(pm->host, sizeof(pm->host), "%s", m->host);
				pm->port = m->port;
				pm->is_leader = cl.has_leader && strcmp(cl.leader, m->name) == 0;
				pm->replica_ok = prev_ok;
				if (pm->is_leader && m->host[0]) {
					t.has_leader = true;
					snprintf(t.leader, sizeof(t.leader), "%s", m->name);
					snprintf(t.leader_host, sizeof(t.leader_host), "%s",
						 m->host);
					t.leader_port = m->port;
				}
			}
			if (confirm && w->cfg->replica_port)
				check_replicas(w, &cl, &t);
			if (had != t.has_leader || strcmp(before, t.leader) != 0)
				log_info("leader: %s", t.has_leader ? t.leader : "none");
			dcs_cluster_free(&cl);
		}
		bool publish = memcmp(&t, &w->snap, sizeof(t)) != 0;

		pthread_mutex_lock(&w->lock);
		if (publish) {
			t.version = w->snap.version + 1;
			w->snap = t;
		}
		/* Sleep until the watch sees something, or the next second. */
		if (!w->changed && !w->stop) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += 250 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		}
		pthread_mutex_unlock(&w->lock);
		if (publish)
			cmn_loop_wake(w->loop);
	}
	etcd_client_free(c);
	return NULL;
}

int proxy_topology_start(const struct proxy_config *cfg, struct cmn_loop *loop,
			 struct proxy_topo_watch **out)
{
	struct proxy_topo_watch *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;

	if (!w)
		return PGW_ENOMEM;
	w->cfg = cfg;
	w->loop = loop;
	dcs_init(&w->dcs, NULL, cfg->namespace, cfg->cluster_name);
	dcs_cache_init(&w->cache);
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	w->watch_started = pthread_create(&w->watch_thread, NULL, watch_main, w) == 0;
	w->poll_started = pthread_create(&w->poll_thread, NULL, poll_main, w) == 0;
	if (!w->watch_started || !w->poll_started) {
		log_error("cannot start the topology threads: %s", strerror(errno));
		proxy_topology_stop(w);
		return PGW_ERR;
	}
	*out = w;
	return PGW_OK;
}

void proxy_topology_get(struct proxy_topo_watch *w, struct proxy_topology *out)
{
	pthread_mutex_lock(&w->lock);
	*out = w->snap;
	pthread_mutex_unlock(&w->lock);
}

void proxy_topology_stop(struct proxy_topo_watch *w)
{
	if (!w)
		return;
	w->stop = true;
	w->rewatch = true;
	poke(w);
	if (w->poll_started)
		pthread_join(w->poll_thread, NULL);
	if (w->watch_started)
		pthread_join(w->watch_thread, NULL);
	dcs_cache_destroy(&w->cache);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

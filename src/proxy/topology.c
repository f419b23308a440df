#include "proxy/topology.h"
#include "cluster/member.h"
#include "proxy/defaults.h"
#include "cluster/follow.h"
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
	struct dcs_follow follow; /* keeps cache current */
	pthread_t poll_thread, presence_thread;
	bool poll_started, presence_started;
	volatile bool stop;
	pthread_mutex_t lock; /* guards snap and the wake flag */
	pthread_cond_t cond;
	bool changed; /* the watch saw an event: publish now */
	struct proxy_topology snap;
	/* Registration (presence thread): guarded by lock, woken by pcond. */
	pthread_cond_t pcond;
	char name[DCS_NAME_MAX]; /* proxies/<name> */
	int64_t drain_wanted;	 /* what the loop wants the key to say */
	int64_t drain_written;	 /* what the key says (-1: not written on this lease) */
	bool registered;
};

static void poke(struct proxy_topo_watch *w)
{
	pthread_mutex_lock(&w->lock);
	w->changed = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void on_cluster_change(void *arg, const struct etcd_event *ev, size_t n)
{
	(void)ev;
	(void)n;
	poke(arg);
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

		if (!m || t->members[i].is_leader || !m->api_url[0] || m->noloadbalance) {
			/* Not a replica to send reads to (a tag set since is obeyed at once). */
			t->members[i].replica_ok = false;
			t->members[i].lag = -1;
			t->members[i].lag_seconds = 0;
			continue;
		}
		snprintf(store[n], sizeof(store[n]), "%s/replica?lag=%lld", m->api_url,
			 (long long)w->cfg->max_replica_lag);
		urls[n] = store[n];
		idx[n++] = i;
	}
	cmn_http_get_many(urls, n, 800, bodies, status);
	for (size_t k = 0; k < n; k++) {
		struct member_status st;

		t->members[idx[k]].replica_ok = status[k] == 200;
		/* The body is the member's status document, its lag in it. */
		bool parsed = (status[k] == 200 || status[k] == 503) && bodies[k].data &&
			      member_parse_status(bodies[k].data, &st) && st.lag >= 0;

		t->members[idx[k]].lag = parsed ? st.lag : -1;
		t->members[idx[k]].lag_seconds = parsed ? st.lag_seconds : 0;
		cmn_buf_free(&bodies[k]);
	}
}

/*
 * A linearizable read: etcd (its majority) still answers, and says the same leader as
 * our watch-fed cache; otherwise the cache is not confirmed, and after two
 * disagreements in a row (not an event still on its way) the watch starts again.
 */
static void confirm_with_etcd(struct proxy_topo_watch *w, struct etcd_client *c,
			      const char *leader_key, int64_t now, int *mismatches,
			      struct proxy_topology *t)
{
	struct etcd_range_result r;
	struct dcs_cluster now_cl;
	bool same = false;

	if (etcd_range(c, leader_key, NULL, &r) != PGW_OK) {
		t->etcd_ok = false;
		snprintf(t->etcd_error, sizeof(t->etcd_error), "etcd does not answer (%s)",
			 w->cfg->etcd.endpoints);
		return;
	}
	if (dcs_cache_snapshot(&w->dcs, &w->cache, &now_cl)) {
		bool has = r.n_kvs == 1;

		same = has == now_cl.has_leader &&
		       (!has || (r.kvs[0].value_len == strlen(now_cl.leader) &&
				 memcmp(r.kvs[0].value, now_cl.leader, r.kvs[0].value_len) == 0));
		dcs_cluster_free(&now_cl);
	}
	etcd_range_result_free(&r);
	t->etcd_ok = true;
	t->etcd_error[0] = '\0';
	if (same) {
		t->confirmed_ms = now;
		*mismatches = 0;
	} else if (++*mismatches >= 2) {
		snprintf(t->etcd_error, sizeof(t->etcd_error),
			 "the watched view differs from etcd: watching again");
		dcs_follow_restart(&w->follow);
		*mismatches = 0;
	}
}

/* The leader, the members and a pending switchover of cl into t (replica health is
 * kept from the last check). */
static void from_cluster(struct proxy_topo_watch *w, const struct dcs_cluster *cl,
			 struct proxy_topology *t)
{
	t->has_leader = false;
	t->leader[0] = t->leader_host[0] = '\0';
	t->n_members = 0;
	t->switchover_pending = cl->has_switchover;
	t->switchover_revision = cl->has_switchover ? cl->switchover_revision : 0;
	snprintf(t->switchover_leader, sizeof(t->switchover_leader), "%s",
		 cl->has_switchover ? cl->switchover_leader : "");
	snprintf(t->switchover_candidate, sizeof(t->switchover_candidate), "%s",
		 cl->has_switchover ? cl->switchover_candidate : "");
	t->switchover_drain = cl->has_switchover && cl->switchover_drain;
	t->leader_primary = false;
	memset(t->history, 0, sizeof(t->history));
	t->n_history = dcs_history_last(cl->history, t->history, TOPO_HISTORY);
	for (size_t i = 0; i < cl->n_members && i < DCS_MAX_MEMBERS; i++) {
		const struct dcs_member *m = &cl->members[i];
		struct proxy_member *pm = &t->members[t->n_members++];
		bool prev_ok = false;
		int64_t prev_lag = -1;
		double prev_lag_s = 0;

		for (size_t j = 0; j < w->snap.n_members; j++)
			if (strcmp(w->snap.members[j].name, m->name) == 0) {
				prev_ok = w->snap.members[j].replica_ok;
				prev_lag = w->snap.members[j].lag;
				prev_lag_s = w->snap.members[j].lag_seconds;
			}
		memset(pm, 0, sizeof(*pm));
		snprintf(pm->name, sizeof(pm->name), "%s", m->name);
		snprintf(pm->host, sizeof(pm->host), "%s", m->host);
		pm->port = m->port;
		snprintf(pm->role, sizeof(pm->role), "%s", m->role);
		snprintf(pm->state, sizeof(pm->state), "%s", m->state);
		pm->timeline = m->timeline;
		pm->lag = prev_lag;
		pm->lag_seconds = prev_lag_s;
		pm->is_leader = cl->has_leader && strcmp(cl->leader, m->name) == 0;
		pm->replica_ok = prev_ok;
		if (pm->is_leader && m->host[0]) {
			t->has_leader = true;
			t->leader_primary = strcmp(m->role, "primary") == 0;
			snprintf(t->leader, sizeof(t->leader), "%s", m->name);
			snprintf(t->leader_host, sizeof(t->leader_host), "%s", m->host);
			t->leader_port = m->port;
		}
	}
}

/* Whether a and b differ in more than the replicas' lag (which changes with every health
 * check and is only shown: the loop reads it at its next look). */
static bool differs_beyond_positions(const struct proxy_topology *a, const struct proxy_topology *b)
{
	static __thread struct proxy_topology x, y;

	x = *a;
	y = *b;
	for (size_t i = 0; i < DCS_MAX_MEMBERS; i++) {
		x.members[i].lag = y.members[i].lag = 0;
		x.members[i].lag_seconds = y.members[i].lag_seconds = 0;
	}
	return memcmp(&x, &y, sizeof(x)) != 0;
}

/* Publishes t when it differs from the last snapshot (the loop is woken unless only the
 * positions changed), then sleeps until the watch sees something, or for 250 ms. */
static void publish_and_wait(struct proxy_topo_watch *w, struct proxy_topology *t)
{
	bool publish;

	pthread_mutex_lock(&w->lock);
	t->registered = w->registered;
	t->drained_reported = w->registered && w->drain_written > 0 ? w->drain_written : 0;
	t->version = w->snap.version;
	publish = differs_beyond_positions(t, &w->snap);
	if (publish)
		t->version = w->snap.version + 1;
	w->snap = *t;
	pthread_mutex_unlock(&w->lock);
	/* Wake the loop before sleeping: a change reaches it at once. */
	if (publish)
		cmn_loop_wake(w->loop);
	pthread_mutex_lock(&w->lock);
	if (!w->changed && !w->stop) {
		struct timespec ts;

		cmn_deadline_ts(CLOCK_MONOTONIC, TOPO_POLL_MS, &ts);
		pthread_cond_timedwait(&w->cond, &w->lock, &ts);
	}
	pthread_mutex_unlock(&w->lock);
}

static void *poll_main(void *arg)
{
	struct proxy_topo_watch *w = arg;
	struct etcd_client_opts o;
	struct etcd_client *c = NULL;
	char leader_key[600];
	int64_t last_check = 0;
	int mismatches = 0;

	cluster_etcd_opts(&w->cfg->etcd, TOPO_ETCD_TIMEOUT_MS, &o);
	if (etcd_client_new(&o, &c) != PGW_OK)
		return NULL;
	dcs_key(&w->dcs, DCS_KEY_LEADER, leader_key, sizeof(leader_key));
	while (!w->stop) {
		struct proxy_topology t;
		struct dcs_cluster cl;
		int64_t now = cmn_now_ms();
		bool confirm, event;

		pthread_mutex_lock(&w->lock);
		t = w->snap;
		event = w->changed;
		w->changed = false;
		pthread_mutex_unlock(&w->lock);
		/*
		 * An event is published first: the confirmation (an etcd read, the replicas'
		 * health checks) could delay a leader change or a switchover request by
		 * hundreds of ms. It runs on the next pass, at most a second late.
		 */
		confirm =
		    now - last_check >= (event ? TOPO_CONFIRM_AFTER_EVENT_MS : TOPO_CONFIRM_MS);
		if (confirm) {
			last_check = now;
			confirm_with_etcd(w, c, leader_key, now, &mismatches, &t);
		}
		if (dcs_cache_snapshot(&w->dcs, &w->cache, &cl)) {
			bool had = t.has_leader;
			char before[DCS_NAME_MAX];

			snprintf(before, sizeof(before), "%s", t.leader);
			from_cluster(w, &cl, &t);
			if (confirm && w->cfg->replica_port)
				check_replicas(w, &cl, &t);
			if (had != t.has_leader || strcmp(before, t.leader) != 0)
				log_info("leader: %s", t.has_leader ? t.leader : "none");
			dcs_cluster_free(&cl);
		}
		publish_and_wait(w, &t);
	}
	etcd_client_free(c);
	return NULL;
}

/* Registration state changed: the poll thread publishes it. Called with lock held. */
static void presence_changed_locked(struct proxy_topo_watch *w)
{
	w->changed = true;
	pthread_cond_signal(&w->cond);
}

/*
 * Sleeps on pcond until the loop wants another report, stop, or ms have passed. After a
 * failure (backoff) a wanted report does not cut the wait short: etcd refusing every
 * connection must not make this thread spin (and flood the log).
 */
static void presence_sleep(struct proxy_topo_watch *w, int ms, bool backoff)
{
	struct timespec ts;

	cmn_deadline_ts(CLOCK_MONOTONIC, ms, &ts);
	pthread_mutex_lock(&w->lock);
	if (!w->stop && (backoff || w->drain_wanted == w->drain_written))
		pthread_cond_timedwait(&w->pcond, &w->lock, &ts);
	pthread_mutex_unlock(&w->lock);
}

/*
 * Keeps proxies/<name> on our own lease (granted with the cluster's ttl, kept alive
 * every ttl/3: a proxy that dies or is cut off from etcd drops out within ttl) and
 * writes the drain reports the event loop asks for at once. On stop the lease is
 * revoked, so the key goes with us.
 */
static void *presence_main(void *arg)
{
	struct proxy_topo_watch *w = arg;
	struct etcd_client_opts o;
	struct etcd_client *c = NULL;
	char key[600], path[600];
	int64_t lease = 0, last_alive = 0;
	int ttl_s = w->cfg->ttl_ms / 1000, every_ms;
	bool warned = false;

	if (ttl_s < 2)
		ttl_s = 2;
	every_ms = ttl_s * 1000 / 3;
	cluster_etcd_opts(&w->cfg->etcd, TOPO_ETCD_TIMEOUT_MS, &o);
	if (etcd_client_new(&o, &c) != PGW_OK)
		return NULL;
	snprintf(path, sizeof(path), DCS_PREFIX_PROXIES "%s", w->name);
	dcs_key(&w->dcs, path, key, sizeof(key));
	while (!w->stop) {
		int64_t now = cmn_now_ms(), want;
		int granted = 0, rc;
		bool same;

		if (lease && now - last_alive >= every_ms) {
			rc = etcd_lease_keepalive(c, lease, &granted);
			if (rc == PGW_OK && granted > 0) {
				last_alive = now;
			} else if (rc == PGW_ENOTFOUND || (rc == PGW_OK && granted <= 0)) {
				log_warning("our etcd lease expired: registering %s again", key);
				lease = 0;
			} else if (now - last_alive >= ttl_s * 1000L) {
				lease = 0; /* etcd did not answer for a whole ttl: start over */
			}
			if (!lease) {
				pthread_mutex_lock(&w->lock);
				w->registered = false;
				w->drain_written = -1;
				presence_changed_locked(w);
				pthread_mutex_unlock(&w->lock);
			}
		}
		if (!lease) {
			if (etcd_lease_grant(c, ttl_s, &lease, &granted) != PGW_OK) {
				lease = 0;
				presence_sleep(w, 500, true);
				continue;
			}
			last_alive = cmn_now_ms();
			pthread_mutex_lock(&w->lock);
			w->drain_written = -1;
			pthread_mutex_unlock(&w->lock);
		}
		pthread_mutex_lock(&w->lock);
		want = w->drain_wanted;
		same = want == w->drain_written;
		pthread_mutex_unlock(&w->lock);
		if (!same) {
			char *json = dcs_proxy_to_json(want);

			rc = json ? etcd_put(c, key, json, strlen(json), lease, NULL) : PGW_ENOMEM;
			free(json);
			if (rc != PGW_OK) {
				if (!warned)
					log_warning("cannot register %s in etcd; retrying", key);
				warned = true;
				presence_sleep(w, 200, true);
				continue;
			}
			pthread_mutex_lock(&w->lock);
			if (!w->registered || warned)
				log_info("registered as %s (lease ttl %d s)", key, ttl_s);
			w->registered = true;
			w->drain_written = want;
			presence_changed_locked(w);
			pthread_mutex_unlock(&w->lock);
			warned = false;
			if (want)
				log_info(
				    "switchover: reported drained in etcd (failover key revision "
				    "%lld)",
				    (long long)want);
		}
		presence_sleep(w,
			       every_ms - (int)(cmn_now_ms() - last_alive) > 10
				   ? every_ms - (int)(cmn_now_ms() - last_alive)
				   : 10,
			       false);
	}
	if (lease && etcd_lease_revoke(c, lease) != PGW_OK)
		log_debug("could not revoke our lease (the key expires with it)");
	etcd_client_free(c);
	return NULL;
}

void proxy_topology_report_drained(struct proxy_topo_watch *w, int64_t revision)
{
	pthread_mutex_lock(&w->lock);
	w->drain_wanted = revision;
	pthread_cond_signal(&w->pcond);
	pthread_mutex_unlock(&w->lock);
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
	w->dcs.allowed_networks = cfg->allowed_networks;
	dcs_cache_init(&w->cache);
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_cond_init(&w->pcond, &ca);
	pthread_condattr_destroy(&ca);
	w->drain_written = -1;
	if (cfg->proxy_name && cfg->proxy_name[0]) {
		snprintf(w->name, sizeof(w->name), "%s", cfg->proxy_name);
	} else {
		char host[256] = "proxy";

		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "proxy");
		host[sizeof(host) - 1] = '\0';
		/* Short enough for a key name: the host's first label if need be. */
		if (strlen(host) + 7 >= sizeof(w->name) && strchr(host, '.'))
			*strchr(host, '.') = '\0';
		snprintf(w->name, sizeof(w->name), "%.*s:%d", (int)sizeof(w->name) - 8, host,
			 cfg->pooled_port);
		for (char *q = w->name; *q; q++)
			if (*q == '/' || (unsigned char)*q <= ' ')
				*q = '_';
	}
	w->follow.dcs = &w->dcs;
	w->follow.cache = &w->cache;
	cluster_etcd_opts(&cfg->etcd, TOPO_ETCD_TIMEOUT_MS, &w->follow.etcd);
	w->follow.changed = on_cluster_change;
	w->follow.arg = w;
	bool following = dcs_follow_start(&w->follow) == PGW_OK;

	w->poll_started = pthread_create(&w->poll_thread, NULL, poll_main, w) == 0;
	w->presence_started = pthread_create(&w->presence_thread, NULL, presence_main, w) == 0;
	if (!following || !w->poll_started || !w->presence_started) {
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
	w->follow.stop = w->follow.restart = true;
	poke(w);
	pthread_mutex_lock(&w->lock);
	pthread_cond_signal(&w->pcond);
	pthread_mutex_unlock(&w->lock);
	if (w->presence_started)
		pthread_join(w->presence_thread, NULL);
	if (w->poll_started)
		pthread_join(w->poll_thread, NULL);
	dcs_follow_stop(&w->follow);
	dcs_cache_destroy(&w->cache);
	pthread_cond_destroy(&w->cond);
	pthread_cond_destroy(&w->pcond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

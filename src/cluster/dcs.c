#include "cluster/dcs.h"
#include "common/config.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The member's addresses within allowed_networks (a warning, at most every 10 s, if not). */
static bool member_allowed(const struct dcs *d, const struct dcs_member *m)
{
	static int64_t last_warning_ms; /* read and written atomically: several threads */
	char api_host[256] = "";
	const char *p = strstr(m->api_url, "://");
	bool ok;

	if (!d->allowed_networks || !*d->allowed_networks)
		return true;
	if (p) {
		int port;

		p += 3;
		char hostport[300];

		snprintf(hostport, sizeof(hostport), "%.*s", (int)strcspn(p, "/"), p);
		if (cmn_split_hostport(hostport, api_host, sizeof(api_host), &port) != PGW_OK)
			api_host[0] = '\0';
	}
	ok = cmn_host_in_networks(m->host, d->allowed_networks) &&
	     (!m->api_url[0] || cmn_host_in_networks(api_host, d->allowed_networks)) &&
	     (!m->pgbackrest.port || cmn_host_in_networks(m->pgbackrest.host, d->allowed_networks));
	int64_t now = cmn_now_ms();

	if (!ok && now - __atomic_load_n(&last_warning_ms, __ATOMIC_RELAXED) >= 10000) {
		__atomic_store_n(&last_warning_ms, now, __ATOMIC_RELAXED);
		log_warning(
		    "ignoring member %s: its addresses (%s, %s, pgBackRest %s) are not within "
		    "allowed_networks (%s)",
		    m->name, m->host, m->api_url[0] ? m->api_url : "no REST API",
		    m->pgbackrest.port ? m->pgbackrest.host : "none", d->allowed_networks);
	}
	return ok;
}

void dcs_init(struct dcs *d, struct etcd_client *etcd, const char *namespace, const char *cluster)
{
	const char *ns = namespace;

	while (*ns == '/')
		ns++;
	d->etcd = etcd;
	d->allowed_networks = NULL;
	if (*ns) {
		size_t l = strlen(ns);

		while (l > 0 && ns[l - 1] == '/')
			l--;
		snprintf(d->prefix, sizeof(d->prefix), "/%.*s/%s/", (int)l, ns, cluster);
	} else {
		snprintf(d->prefix, sizeof(d->prefix), "/%s/", cluster);
	}
}

void dcs_key(const struct dcs *d, const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s%s", d->prefix, name);
}

static void copy_str(json_object *o, const char *field, char *out, size_t size)
{
	json_object *v;

	if (json_object_object_get_ex(o, field, &v) && json_object_is_type(v, json_type_string))
		snprintf(out, size, "%s", json_object_get_string(v));
}

static bool get_bool(json_object *o, const char *field)
{
	json_object *v;

	if (!json_object_object_get_ex(o, field, &v))
		return false;
	if (json_object_is_type(v, json_type_string)) {
		bool b = false;

		return cmn_parse_bool(json_object_get_string(v), &b) == PGW_OK && b;
	}
	return json_object_get_boolean(v);
}

int dcs_member_from_json(const char *name, const char *json, size_t len, struct dcs_member *out)
{
	struct json_tokener *tok = json_tokener_new();
	json_object *o, *v, *tags;

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", name);
	if (!tok)
		return PGW_ENOMEM;
	o = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return PGW_EPROTO;
	}
	copy_str(o, "host", out->host, sizeof(out->host));
	if (json_object_object_get_ex(o, "port", &v))
		out->port = json_object_get_int(v);
	copy_str(o, "api_url", out->api_url, sizeof(out->api_url));
	copy_str(o, "role", out->role, sizeof(out->role));
	copy_str(o, "state", out->state, sizeof(out->state));
	if (json_object_object_get_ex(o, "timeline", &v))
		out->timeline = json_object_get_int(v);
	if (json_object_object_get_ex(o, "lsn", &v))
		out->lsn = (uint64_t)json_object_get_int64(v);
	out->pending_restart = get_bool(o, "pending_restart");
	out->checkpoint_pending = get_bool(o, "checkpoint_pending");
	if (json_object_object_get_ex(o, "pgbackrest", &v) &&
	    json_object_is_type(v, json_type_object)) {
		json_object *p;

		copy_str(v, "host", out->pgbackrest.host, sizeof(out->pgbackrest.host));
		copy_str(v, "pg_path", out->pgbackrest.pg_path, sizeof(out->pgbackrest.pg_path));
		copy_str(v, "pg_socket", out->pgbackrest.pg_socket,
			 sizeof(out->pgbackrest.pg_socket));
		copy_str(v, "pg_user", out->pgbackrest.pg_user, sizeof(out->pgbackrest.pg_user));
		if (json_object_object_get_ex(v, "port", &p))
			out->pgbackrest.port = json_object_get_int(p);
		if (json_object_object_get_ex(v, "pg_port", &p))
			out->pgbackrest.pg_port = json_object_get_int(p);
		if (!out->pgbackrest.host[0] || !out->pgbackrest.pg_path[0] ||
		    out->pgbackrest.port <= 0 || out->pgbackrest.port > 65535)
			out->pgbackrest.port = 0;
	}
	if (json_object_object_get_ex(o, "tags", &tags) &&
	    json_object_is_type(tags, json_type_object)) {
		out->nofailover = get_bool(tags, "nofailover");
		out->noloadbalance = get_bool(tags, "noloadbalance");
		out->nosync = get_bool(tags, "nosync");
		out->clonefrom = get_bool(tags, "clonefrom");
		snprintf(out->tags_json, sizeof(out->tags_json), "%s",
			 json_object_to_json_string_ext(tags, JSON_C_TO_STRING_PLAIN));
	}
	json_object_put(o);
	return PGW_OK;
}

char *dcs_member_to_json(const struct dcs_member *m)
{
	json_object *o = json_object_new_object();
	json_object *tags = NULL;
	char *s;

	json_object_object_add(o, "host", json_object_new_string(m->host));
	json_object_object_add(o, "port", json_object_new_int(m->port));
	json_object_object_add(o, "api_url", json_object_new_string(m->api_url));
	json_object_object_add(o, "role", json_object_new_string(m->role));
	json_object_object_add(o, "state", json_object_new_string(m->state));
	json_object_object_add(o, "timeline", json_object_new_int(m->timeline));
	if (m->lsn)
		json_object_object_add(o, "lsn", json_object_new_int64((int64_t)m->lsn));
	if (m->pending_restart)
		json_object_object_add(o, "pending_restart", json_object_new_boolean(true));
	if (m->checkpoint_pending)
		json_object_object_add(o, "checkpoint_pending", json_object_new_boolean(true));
	if (m->pgbackrest.port) {
		json_object *b = json_object_new_object();

		json_object_object_add(b, "host", json_object_new_string(m->pgbackrest.host));
		json_object_object_add(b, "port", json_object_new_int(m->pgbackrest.port));
		json_object_object_add(b, "pg_path", json_object_new_string(m->pgbackrest.pg_path));
		json_object_object_add(b, "pg_port", json_object_new_int(m->pgbackrest.pg_port));
		json_object_object_add(b, "pg_socket",
				       json_object_new_string(m->pgbackrest.pg_socket));
		json_object_object_add(b, "pg_user", json_object_new_string(m->pgbackrest.pg_user));
		json_object_object_add(o, "pgbackrest", b);
	}
	if (m->tags_json[0])
		tags = json_tokener_parse(m->tags_json);
	json_object_object_add(o, "tags", tags ? tags : json_object_new_object());
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static char *dup_value(const struct etcd_kv *kv)
{
	char *s = malloc(kv->value_len + 1);

	if (s) {
		memcpy(s, kv->value, kv->value_len);
		s[kv->value_len] = '\0';
	}
	return s;
}

void dcs_cluster_from_kvs(const struct dcs *d, const struct etcd_kv *kvs, size_t n,
			  int64_t revision, struct dcs_cluster *out)
{
	size_t plen = strlen(d->prefix);

	memset(out, 0, sizeof(*out));
	out->revision = revision;
	for (size_t i = 0; i < n; i++) {
		const struct etcd_kv *kv = &kvs[i];
		const char *name = kv->key + plen;

		if (kv->key_len < plen || strncmp(kv->key, d->prefix, plen) != 0)
			continue;
		if (strcmp(name, DCS_KEY_INITIALIZE) == 0) {
			out->has_initialize = true;
			snprintf(out->sysid, sizeof(out->sysid), "%.*s", (int)kv->value_len,
				 kv->value);
		} else if (strcmp(name, DCS_KEY_LEADER) == 0) {
			out->has_leader = true;
			out->leader_lease = kv->lease;
			snprintf(out->leader, sizeof(out->leader), "%.*s", (int)kv->value_len,
				 kv->value);
		} else if (strcmp(name, DCS_KEY_STATUS) == 0) {
			json_object *o = json_tokener_parse(kv->value), *v;

			if (o && json_object_object_get_ex(o, "optime", &v))
				out->optime = (uint64_t)json_object_get_int64(v);
			if (o && json_object_object_get_ex(o, "timeline", &v))
				out->leader_timeline = json_object_get_int(v);
			json_object_put(o);
		} else if (strcmp(name, DCS_KEY_FAILOVER) == 0) {
			json_object *o = json_tokener_parse(kv->value), *v;

			out->has_switchover = true;
			out->switchover_revision = kv->mod_revision;
			if (o && json_object_object_get_ex(o, "leader", &v))
				snprintf(out->switchover_leader, sizeof(out->switchover_leader),
					 "%s", json_object_get_string(v));
			if (o && json_object_object_get_ex(o, "candidate", &v))
				snprintf(out->switchover_candidate,
					 sizeof(out->switchover_candidate), "%s",
					 json_object_get_string(v));
			if (o && json_object_object_get_ex(o, "scheduled_at", &v))
				out->switchover_at = json_object_get_int64(v);
			out->switchover_drain = o && json_object_object_get_ex(o, "drain", &v) &&
						json_object_get_boolean(v);
			if (o && json_object_object_get_ex(o, "stopped_at", &v))
				out->switchover_stopped_at = (uint64_t)json_object_get_int64(v);
			json_object_put(o);
		} else if (strcmp(name, DCS_KEY_SYNC) == 0) {
			json_object *o = json_tokener_parse(kv->value), *v;

			out->has_sync = true;
			out->sync_mod_revision = kv->mod_revision;
			if (o && json_object_object_get_ex(o, "leader", &v) &&
			    json_object_is_type(v, json_type_string))
				snprintf(out->sync_leader, sizeof(out->sync_leader), "%s",
					 json_object_get_string(v));
			if (o && json_object_object_get_ex(o, "sync_standby", &v) &&
			    json_object_is_type(v, json_type_string))
				snprintf(out->sync_standby, sizeof(out->sync_standby), "%s",
					 json_object_get_string(v));
			json_object_put(o);
		} else if (strcmp(name, DCS_KEY_LAST_BACKUP) == 0) {
			json_object *o = json_tokener_parse(kv->value), *v;

			out->has_last_backup = true;
			if (o && json_object_object_get_ex(o, "stop", &v) &&
			    json_object_is_type(v, json_type_int))
				out->last_backup_stop = json_object_get_int64(v);
			json_object_put(o);
		} else if (strcmp(name, DCS_KEY_HISTORY) == 0) {
			free(out->history);
			out->history = dup_value(kv);
		} else if (strcmp(name, DCS_KEY_CONFIG) == 0) {
			json_object *o = json_tokener_parse(kv->value), *v;

			free(out->config);
			out->config = dup_value(kv);
			out->config_mod_revision = kv->mod_revision;
			out->paused = o && json_object_object_get_ex(o, "pause", &v) &&
				      json_object_get_boolean(v);
			json_object_put(o);
		} else if (strncmp(name, DCS_PREFIX_PROXIES, strlen(DCS_PREFIX_PROXIES)) == 0) {
			struct dcs_proxy *px = &out->proxies[out->n_proxies];
			json_object *o, *v;

			if (out->n_proxies >= DCS_MAX_PROXIES ||
			    !dcs_proxy_name_ok(name + strlen(DCS_PREFIX_PROXIES))) {
				log_warning("ignoring proxy key %s", kv->key);
				continue;
			}
			memset(px, 0, sizeof(*px));
			snprintf(px->name, sizeof(px->name), "%s",
				 name + strlen(DCS_PREFIX_PROXIES));
			o = json_tokener_parse(kv->value);
			/* Unreadable: a proxy that has drained nothing (it still counts). */
			if (o && json_object_object_get_ex(o, "drained", &v) &&
			    (json_object_is_type(v, json_type_int) ||
			     json_object_is_type(v, json_type_string)))
				px->drained = json_object_get_int64(v);
			json_object_put(o);
			out->n_proxies++;
		} else if (strncmp(name, DCS_PREFIX_MEMBERS, strlen(DCS_PREFIX_MEMBERS)) == 0 &&
			   out->n_members < DCS_MAX_MEMBERS) {
			struct dcs_member *m = &out->members[out->n_members];

			if (strlen(name + strlen(DCS_PREFIX_MEMBERS)) >= DCS_NAME_MAX ||
			    dcs_member_from_json(name + strlen(DCS_PREFIX_MEMBERS), kv->value,
						 kv->value_len, m) != PGW_OK) {
				log_warning("ignoring unreadable member key %s", kv->key);
				continue;
			}
			m->lease = kv->lease;
			if (!member_allowed(d, m))
				continue;
			out->n_members++;
		}
	}
}

int dcs_read(struct dcs *d, struct dcs_cluster *out)
{
	struct etcd_range_result r;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = etcd_range_prefix(d->etcd, d->prefix, &r);
	if (rc != PGW_OK)
		return rc;
	dcs_cluster_from_kvs(d, r.kvs, r.n_kvs, r.header.revision, out);
	etcd_range_result_free(&r);
	return PGW_OK;
}

/* ---- cache fed by a watch ---- */

static void kv_clear(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

static int kv_copy(struct etcd_kv *dst, const struct etcd_kv *src)
{
	*dst = *src;
	dst->key = malloc(src->key_len + 1);
	dst->value = malloc(src->value_len + 1);
	if (!dst->key || !dst->value) {
		kv_clear(dst);
		return PGW_ENOMEM;
	}
	memcpy(dst->key, src->key, src->key_len);
	dst->key[src->key_len] = '\0';
	memcpy(dst->value, src->value, src->value_len);
	dst->value[src->value_len] = '\0';
	return PGW_OK;
}

void dcs_cache_init(struct dcs_cache *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
}

static void cache_clear_locked(struct dcs_cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		kv_clear(&c->kvs[i]);
	c->n = 0;
	c->valid = false;
}

void dcs_cache_destroy(struct dcs_cache *c)
{
	cache_clear_locked(c);
	free(c->kvs);
	pthread_mutex_destroy(&c->lock);
}

void dcs_cache_invalidate(struct dcs_cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->valid = false;
	pthread_mutex_unlock(&c->lock);
}

static int cache_reserve(struct dcs_cache *c, size_t n)
{
	if (n <= c->cap)
		return PGW_OK;
	size_t cap = c->cap ? c->cap : 16;

	while (cap < n)
		cap *= 2;
	struct etcd_kv *kvs = realloc(c->kvs, cap * sizeof(*kvs));

	if (!kvs)
		return PGW_ENOMEM;
	c->kvs = kvs;
	c->cap = cap;
	return PGW_OK;
}

void dcs_cache_load(struct dcs_cache *c, const struct etcd_range_result *r)
{
	pthread_mutex_lock(&c->lock);
	if (c->valid && r->header.revision < c->revision) {
		pthread_mutex_unlock(&c->lock); /* older than what the watch already applied */
		return;
	}
	cache_clear_locked(c);
	if (cache_reserve(c, r->n_kvs) == PGW_OK) {
		for (size_t i = 0; i < r->n_kvs; i++)
			if (kv_copy(&c->kvs[c->n], &r->kvs[i]) == PGW_OK)
				c->n++;
		c->valid = c->n == r->n_kvs;
	}
	c->revision = r->header.revision;
	pthread_mutex_unlock(&c->lock);
}

void dcs_cache_apply(struct dcs_cache *c, const struct etcd_header *h, const struct etcd_event *ev,
		     size_t n)
{
	int64_t newest = 0;

	(void)h; /* a header's revision may run ahead of the events still to come */
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < n && c->valid; i++) {
		size_t j = 0;

		/* Events the cache already holds (a later full read covered them). */
		if (ev[i].kv.mod_revision <= c->revision)
			continue;
		if (ev[i].kv.mod_revision > newest)
			newest = ev[i].kv.mod_revision;
		while (j < c->n && strcmp(c->kvs[j].key, ev[i].kv.key) != 0)
			j++;
		if (ev[i].type == ETCD_EVENT_DELETE) {
			if (j < c->n) {
				kv_clear(&c->kvs[j]);
				c->kvs[j] = c->kvs[--c->n];
			}
			continue;
		}
		if (j == c->n && cache_reserve(c, c->n + 1) != PGW_OK) {
			c->valid = false;
			break;
		}
		if (j < c->n)
			kv_clear(&c->kvs[j]);
		else
			c->n++;
		if (kv_copy(&c->kvs[j], &ev[i].kv) != PGW_OK) {
			c->kvs[j] = c->kvs[--c->n];
			c->valid = false;
		}
	}
	if (newest > c->revision)
		c->revision = newest;
	pthread_mutex_unlock(&c->lock);
}

bool dcs_cache_snapshot(const struct dcs *d, struct dcs_cache *c, struct dcs_cluster *out)
{
	bool ok;

	pthread_mutex_lock(&c->lock);
	ok = c->valid;
	if (ok)
		dcs_cluster_from_kvs(d, c->kvs, c->n, c->revision, out);
	pthread_mutex_unlock(&c->lock);
	return ok;
}

void dcs_cluster_free(struct dcs_cluster *c)
{
	free(c->history);
	free(c->config);
	c->history = c->config = NULL;
}

const struct dcs_member *dcs_find_member(const struct dcs_cluster *c, const char *name)
{
	for (size_t i = 0; i < c->n_members; i++)
		if (strcmp(c->members[i].name, name) == 0)
			return &c->members[i];
	return NULL;
}

/*
 * txn: key absent (create_revision == 0) -> put value with lease; else read it.
 * A txn the client retried on another endpoint after a timeout may have been
 * applied the first time: finding our own value on our own lease is a win.
 */
static int create_if_absent(struct dcs *d, const char *name, const char *value, int64_t lease,
			    bool *won)
{
	char key[600];
	struct etcd_txn_result r;
	int rc;

	dcs_key(d, name, key, sizeof(key));
	struct etcd_compare cmp = {
	    .key = key, .target = ETCD_CMP_CREATE, .result = ETCD_CMP_EQUAL, .number = 0};
	struct etcd_op put = {.type = ETCD_OP_PUT,
			      .key = key,
			      .value = value,
			      .value_len = strlen(value),
			      .lease = lease};
	struct etcd_op get = {.type = ETCD_OP_RANGE, .key = key};

	rc = etcd_txn(d->etcd, &cmp, 1, &put, 1, &get, 1, &r);
	if (rc != PGW_OK)
		return rc;
	*won = r.succeeded;
	if (!r.succeeded && r.n_responses == 1 && r.responses[0].n_kvs == 1 && lease != 0) {
		const struct etcd_kv *kv = &r.responses[0].kvs[0];

		*won = kv->lease == lease && kv->value_len == strlen(value) &&
		       memcmp(kv->value, value, kv->value_len) == 0;
	}
	etcd_txn_result_free(&r);
	return PGW_OK;
}

int dcs_take_initialize(struct dcs *d, bool *won)
{
	return create_if_absent(d, DCS_KEY_INITIALIZE, "", 0, won);
}

int dcs_take_backup(struct dcs *d, const char *value, int64_t lease, bool *won)
{
	return create_if_absent(d, DCS_KEY_BACKUP, value, lease, won);
}

int dcs_set_last_backup(struct dcs *d, const char *value)
{
	char key[600];

	dcs_key(d, DCS_KEY_LAST_BACKUP, key, sizeof(key));
	return etcd_put(d->etcd, key, value, strlen(value), 0, NULL);
}

char *dcs_read_backup(struct dcs *d)
{
	struct etcd_range_result r;
	char key[600], *value = NULL;

	dcs_key(d, DCS_KEY_BACKUP, key, sizeof(key));
	if (etcd_range(d->etcd, key, NULL, &r) != PGW_OK)
		return NULL;
	if (r.n_kvs)
		value = strdup(r.kvs[0].value);
	etcd_range_result_free(&r);
	return value;
}

int dcs_set_initialize(struct dcs *d, const char *sysid)
{
	char key[600];

	dcs_key(d, DCS_KEY_INITIALIZE, key, sizeof(key));
	return etcd_put(d->etcd, key, sysid, strlen(sysid), 0, NULL);
}

int dcs_delete_initialize(struct dcs *d)
{
	char key[600];

	dcs_key(d, DCS_KEY_INITIALIZE, key, sizeof(key));
	return etcd_delete(d->etcd, key, NULL, NULL);
}

int dcs_forget_state(struct dcs *d)
{
	static const char *const keys[] = {DCS_KEY_LEADER,   DCS_KEY_STATUS, DCS_KEY_SYNC,
					   DCS_KEY_FAILOVER, DCS_KEY_BACKUP, DCS_KEY_LAST_BACKUP};
	static const char *const prefixes[] = {DCS_PREFIX_MEMBERS, DCS_PREFIX_PROXIES};
	char key[600], end[600];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		dcs_key(d, keys[i], key, sizeof(key));
		if (etcd_delete(d->etcd, key, NULL, NULL) != PGW_OK)
			return PGW_ERR;
	}
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		dcs_key(d, prefixes[i], key, sizeof(key));
		snprintf(end, sizeof(end), "%s", key);
		end[strlen(end) - 1]++; /* "members/" -> "members0": the whole prefix */
		if (etcd_delete(d->etcd, key, end, NULL) != PGW_OK)
			return PGW_ERR;
	}
	return PGW_OK;
}

int dcs_acquire_leader(struct dcs *d, const char *name, int64_t lease, int64_t sync_revision,
		       bool *won)
{
	char key[600], sync_key[600];
	struct etcd_txn_result r;
	int rc;

	if (sync_revision < 0)
		return create_if_absent(d, DCS_KEY_LEADER, name, lease, won);
	/* Synchronous mode: only while the sync key is what the decision was based on. */
	dcs_key(d, DCS_KEY_LEADER, key, sizeof(key));
	dcs_key(d, DCS_KEY_SYNC, sync_key, sizeof(sync_key));
	struct etcd_compare cmp[2] = {
	    {.key = key, .target = ETCD_CMP_CREATE, .result = ETCD_CMP_EQUAL, .number = 0},
	    {.key = sync_key,
	     .target = ETCD_CMP_MOD,
	     .result = ETCD_CMP_EQUAL,
	     .number = sync_revision},
	};
	struct etcd_op put = {.type = ETCD_OP_PUT,
			      .key = key,
			      .value = name,
			      .value_len = strlen(name),
			      .lease = lease};

	rc = etcd_txn(d->etcd, cmp, 2, &put, 1, NULL, 0, &r);
	if (rc != PGW_OK)
		return rc;
	*won = r.succeeded;
	etcd_txn_result_free(&r);
	return PGW_OK;
}

int dcs_write_sync(struct dcs *d, const char *leader, const char *sync_standby,
		   int64_t mod_revision, bool *ok)
{
	char key[600], leader_key[600];
	struct etcd_txn_result r;
	json_object *o = json_object_new_object();
	int rc;

	json_object_object_add(o, "leader", json_object_new_string(leader));
	json_object_object_add(o, "sync_standby", json_object_new_string(sync_standby));
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

	dcs_key(d, DCS_KEY_SYNC, key, sizeof(key));
	dcs_key(d, DCS_KEY_LEADER, leader_key, sizeof(leader_key));
	/* Only the leader writes it, and only over the version it read. */
	struct etcd_compare cmp[2] = {
	    {.key = key, .target = ETCD_CMP_MOD, .result = ETCD_CMP_EQUAL, .number = mod_revision},
	    {.key = leader_key,
	     .target = ETCD_CMP_VALUE,
	     .result = ETCD_CMP_EQUAL,
	     .value = leader,
	     .value_len = strlen(leader)},
	};
	struct etcd_op put = {
	    .type = ETCD_OP_PUT, .key = key, .value = text, .value_len = strlen(text)};
	struct etcd_op get = {.type = ETCD_OP_RANGE, .key = key};

	rc = etcd_txn(d->etcd, cmp, 2, &put, 1, &get, 1, &r);
	json_object_put(o);
	if (rc != PGW_OK)
		return rc;
	*ok = r.succeeded;
	etcd_txn_result_free(&r);
	return PGW_OK;
}

bool dcs_proxy_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= DCS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] == '/' || (unsigned char)name[i] <= ' ' || name[i] == 0x7f)
			return false;
	return true;
}

bool dcs_proxies_drained(const struct dcs_cluster *c, int64_t revision, char *waiting, size_t size)
{
	bool all = true;
	size_t used = 0;

	if (waiting && size)
		waiting[0] = '\0';
	for (size_t i = 0; i < c->n_proxies; i++) {
		if (c->proxies[i].drained == revision && revision > 0)
			continue;
		if (waiting && used < size) {
			int n = snprintf(waiting + used, size - used, "%s%s", all ? "" : ",",
					 c->proxies[i].name);

			used += n > 0 ? (size_t)n : 0;
		}
		all = false;
	}
	return all;
}

char *dcs_proxy_to_json(int64_t drained)
{
	json_object *o = json_object_new_object();
	char *s;

	json_object_object_add(o, "drained", json_object_new_int64(drained));
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

bool dcs_sync_has(const struct dcs_cluster *c, const char *name)
{
	return cmn_name_in_list(c->sync_standby, name);
}

/* txn: the leader key holds name -> op (a put with a new lease, or a delete). */
static int if_leader_is(struct dcs *d, const char *name, enum etcd_op_type type, int64_t lease,
			bool *succeeded)
{
	char key[600];
	struct etcd_txn_result r;
	int rc;

	dcs_key(d, DCS_KEY_LEADER, key, sizeof(key));
	struct etcd_compare cmp = {.key = key,
				   .target = ETCD_CMP_VALUE,
				   .result = ETCD_CMP_EQUAL,
				   .value = name,
				   .value_len = strlen(name)};
	struct etcd_op op = {.type = type, .key = key, .lease = lease};

	if (type == ETCD_OP_PUT) {
		op.value = name;
		op.value_len = strlen(name);
	}
	rc = etcd_txn(d->etcd, &cmp, 1, &op, 1, NULL, 0, &r);
	if (rc != PGW_OK)
		return rc;
	if (succeeded)
		*succeeded = r.succeeded;
	etcd_txn_result_free(&r);
	return PGW_OK;
}

int dcs_move_leader(struct dcs *d, const char *name, int64_t lease, bool *ok)
{
	return if_leader_is(d, name, ETCD_OP_PUT, lease, ok);
}

int dcs_release_leader(struct dcs *d, const char *name)
{
	return if_leader_is(d, name, ETCD_OP_DELETE, 0, NULL);
}

int dcs_put_member(struct dcs *d, const char *name, const char *json, int64_t lease)
{
	char key[600], sub[300];

	snprintf(sub, sizeof(sub), DCS_PREFIX_MEMBERS "%s", name);
	dcs_key(d, sub, key, sizeof(key));
	return etcd_put(d->etcd, key, json, strlen(json), lease, NULL);
}

int dcs_delete_member(struct dcs *d, const char *name)
{
	char key[600], sub[300];

	snprintf(sub, sizeof(sub), DCS_PREFIX_MEMBERS "%s", name);
	dcs_key(d, sub, key, sizeof(key));
	return etcd_delete(d->etcd, key, NULL, NULL);
}

int dcs_put_status(struct dcs *d, uint64_t optime, int timeline)
{
	char key[600], val[128];

	dcs_key(d, DCS_KEY_STATUS, key, sizeof(key));
	snprintf(val, sizeof(val), "{\"optime\":%llu,\"timeline\":%d}", (unsigned long long)optime,
		 timeline);
	return etcd_put(d->etcd, key, val, strlen(val), 0, NULL);
}

int dcs_put_config(struct dcs *d, const char *text, int64_t mod_revision, bool *ok)
{
	char key[600];
	struct etcd_txn_result r;
	int rc;

	dcs_key(d, DCS_KEY_CONFIG, key, sizeof(key));
	struct etcd_compare cmp = {
	    .key = key, .target = ETCD_CMP_MOD, .result = ETCD_CMP_EQUAL, .number = mod_revision};
	struct etcd_op put = {
	    .type = ETCD_OP_PUT, .key = key, .value = text, .value_len = strlen(text)};

	rc = etcd_txn(d->etcd, &cmp, 1, &put, 1, NULL, 0, &r);
	if (rc != PGW_OK)
		return rc;
	*ok = r.succeeded;
	etcd_txn_result_free(&r);
	return PGW_OK;
}

int dcs_set_pause(struct dcs *d, bool pause)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		struct dcs_cluster c;
		bool ok = false;
		int rc = dcs_read(d, &c);

		if (rc != PGW_OK)
			return rc;
		json_object *o = c.config ? json_tokener_parse(c.config) : NULL;

		if (!o || !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			o = json_object_new_object();
		}
		json_object_object_add(o, "pause", json_object_new_boolean(pause));
		const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		/* Unchanged since we read it (mod_revision 0 = still absent). */
		rc = dcs_put_config(d, text, c.config_mod_revision, &ok);
		json_object_put(o);
		dcs_cluster_free(&c);
		if (rc != PGW_OK)
			return rc;
		if (ok)
			return PGW_OK;
	}
	log_error("the cluster configuration keeps changing: try again");
	return PGW_ERR;
}

static char *switchover_json(const char *leader, const char *candidate, int64_t scheduled_at,
			     bool drain, uint64_t stopped_at)
{
	json_object *o = json_object_new_object();
	char *text;

	json_object_object_add(o, "leader", json_object_new_string(leader ? leader : ""));
	json_object_object_add(o, "candidate", json_object_new_string(candidate ? candidate : ""));
	json_object_object_add(o, "scheduled_at", json_object_new_int64(scheduled_at));
	if (drain)
		json_object_object_add(o, "drain", json_object_new_boolean(true));
	if (stopped_at)
		json_object_object_add(o, "stopped_at", json_object_new_int64((int64_t)stopped_at));
	text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}

/*
 * The failover key of c rewritten (drain, stopped_at), if its mod_revision is still
 * c->switchover_revision; with leader given, also only if the leader key holds it, which
 * then goes in the same transaction.
 */
static int rewrite_switchover(struct dcs *d, const struct dcs_cluster *c, bool drain,
			      uint64_t stopped_at, const char *leader, bool *ok)
{
	char fkey[600], lkey[600];
	char *text = switchover_json(c->switchover_leader, c->switchover_candidate,
				     c->switchover_at, drain, stopped_at);
	struct etcd_txn_result r;
	size_t n = leader ? 2 : 1;
	int rc;

	*ok = false;
	if (!text)
		return PGW_ENOMEM;
	dcs_key(d, DCS_KEY_FAILOVER, fkey, sizeof(fkey));
	dcs_key(d, DCS_KEY_LEADER, lkey, sizeof(lkey));
	struct etcd_compare cmp[2] = {{.key = fkey,
				       .target = ETCD_CMP_MOD,
				       .result = ETCD_CMP_EQUAL,
				       .number = c->switchover_revision},
				      {.key = lkey,
				       .target = ETCD_CMP_VALUE,
				       .result = ETCD_CMP_EQUAL,
				       .value = leader,
				       .value_len = leader ? strlen(leader) : 0}};
	struct etcd_op ops[2] = {
	    {.type = ETCD_OP_PUT, .key = fkey, .value = text, .value_len = strlen(text)},
	    {.type = ETCD_OP_DELETE, .key = lkey}};

	rc = etcd_txn(d->etcd, cmp, n, ops, n, NULL, 0, &r);
	free(text);
	if (rc != PGW_OK)
		return rc;
	*ok = r.succeeded;
	etcd_txn_result_free(&r);
	return PGW_OK;
}

int dcs_mark_switchover_drain(struct dcs *d, const struct dcs_cluster *c, bool *ok)
{
	return rewrite_switchover(d, c, true, 0, NULL, ok);
}

int dcs_release_leader_stopped(struct dcs *d, const struct dcs_cluster *c, const char *name,
			       uint64_t stopped_at, bool *ok)
{
	return rewrite_switchover(d, c, c->switchover_drain, stopped_at, name, ok);
}

int dcs_request_switchover(struct dcs *d, const char *leader, const char *candidate,
			   int64_t scheduled_at, bool *created)
{
	char *text = switchover_json(leader, candidate, scheduled_at, false, 0);
	int rc;

	if (!text)
		return PGW_ENOMEM;
	rc = create_if_absent(d, DCS_KEY_FAILOVER, text, 0, created);
	free(text);
	return rc;
}

int dcs_clear_switchover(struct dcs *d)
{
	char key[600];

	dcs_key(d, DCS_KEY_FAILOVER, key, sizeof(key));
	return etcd_delete(d->etcd, key, NULL, NULL);
}

uint64_t dcs_history_switch_lsn(const char *history, int tli)
{
	json_object *list = history ? json_tokener_parse(history) : NULL;
	uint64_t lsn = 0;

	if (list && json_object_is_type(list, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			json_object *e = json_object_array_get_idx(list, i);

			if (json_object_is_type(e, json_type_array) &&
			    json_object_array_length(e) >= 2 &&
			    json_object_get_int(json_object_array_get_idx(e, 0)) == tli)
				lsn = (uint64_t)json_object_get_int64(
				    json_object_array_get_idx(e, 1));
		}
	}
	json_object_put(list);
	return lsn;
}

static void copy_string(char *dst, size_t size, json_object *o)
{
	snprintf(dst, size, "%s",
		 o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : "");
}

size_t dcs_history_last(const char *history, struct dcs_history_entry *out, size_t max)
{
	json_object *list = history ? json_tokener_parse(history) : NULL;
	size_t n = 0;

	if (list && json_object_is_type(list, json_type_array)) {
		for (size_t i = json_object_array_length(list); i > 0 && n < max; i--) {
			json_object *e = json_object_array_get_idx(list, i - 1);
			struct dcs_history_entry *h = &out[n];

			if (!json_object_is_type(e, json_type_array) ||
			    json_object_array_length(e) < 2)
				continue;
			memset(h, 0, sizeof(*h));
			h->timeline = json_object_get_int(json_object_array_get_idx(e, 0));
			h->lsn = (uint64_t)json_object_get_int64(json_object_array_get_idx(e, 1));
			copy_string(h->reason, sizeof(h->reason), json_object_array_get_idx(e, 2));
			copy_string(h->time, sizeof(h->time), json_object_array_get_idx(e, 3));
			copy_string(h->leader, sizeof(h->leader), json_object_array_get_idx(e, 4));
			n++;
		}
	}
	json_object_put(list);
	return n;
}

int dcs_append_history(struct dcs *d, const char *current_history, int timeline, uint64_t lsn,
		       const char *reason, const char *leader)
{
	json_object *list = current_history ? json_tokener_parse(current_history) : NULL;
	json_object *entry;
	char key[600], stamp[64];
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	if (!list || !json_object_is_type(list, json_type_array)) {
		json_object_put(list);
		list = json_object_new_array();
	}
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	entry = json_object_new_array();
	json_object_array_add(entry, json_object_new_int(timeline));
	json_object_array_add(entry, json_object_new_int64((int64_t)lsn));
	json_object_array_add(entry, json_object_new_string(reason));
	json_object_array_add(entry, json_object_new_string(stamp));
	json_object_array_add(entry, json_object_new_string(leader));
	json_object_array_add(list, entry);
	const char *text = json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN);

	dcs_key(d, DCS_KEY_HISTORY, key, sizeof(key));
	rc = etcd_put(d->etcd, key, text, strlen(text), 0, NULL);
	json_object_put(list);
	return rc;
}

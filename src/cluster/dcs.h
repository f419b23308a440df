/*
 * The cluster's state in etcd (its keys: cluster/keys.h): reads into one view,
 * and every write, decisive ones (take leader, initialize) as transactions with a
 * compare.
 */
#ifndef PGW_DCS_H
#define PGW_DCS_H

#include "cluster/keys.h"
#include "common/err.h"
#include "etcd/etcd.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define DCS_MAX_MEMBERS 32
#define DCS_MAX_PROXIES 32
#define DCS_NAME_MAX	64

/* A registered proxy (proxies/<name>): the key lives only while the proxy's lease does. */
struct dcs_proxy {
	char name[DCS_NAME_MAX];
	int64_t drained; /* mod_revision of the failover key it drained for (0: none) */
};

struct dcs_member {
	char name[DCS_NAME_MAX];
	char host[256]; /* PostgreSQL connect address */
	int port;
	char api_url[300];
	char role[16];	/* primary, replica, uninitialized */
	char state[32]; /* running, streaming, starting, stopped, crashed, ... */
	int timeline;
	uint64_t lsn; /* as last published (may be stale; ask the REST API for live) */
	bool nofailover, noloadbalance, nosync, clonefrom;
	bool pending_restart; /* a parameter change waits for a restart */
	/* A leader promoted moments ago, before its first checkpoint: its pg_control still
	 * names the old timeline, so pg_rewind against it would find nothing to do. */
	bool checkpoint_pending;
	char tags_json[512];
	int64_t lease;
	/* With a repository host: where it reaches this member's data (TLS server). */
	struct {
		char host[256];
		int port; /* 0: not published */
		char pg_path[1024];
		int pg_port;
		char pg_socket[1024];
		char pg_user[64];
	} pgbackrest;
};

struct dcs_cluster {
	int64_t revision;
	bool has_initialize;
	bool has_last_backup;	  /* a backup is in the repository: replicas may restore it */
	int64_t last_backup_stop; /* ... which completed then (unix seconds; 0: not said) */
	char sysid[32];
	bool has_leader;
	char leader[DCS_NAME_MAX];
	int64_t leader_lease;
	uint64_t optime;
	int leader_timeline;
	struct dcs_member members[DCS_MAX_MEMBERS];
	size_t n_members;
	char *history;		     /* JSON text or NULL; owned */
	char *config;		     /* JSON text or NULL; owned */
	int64_t config_mod_revision; /* 0: no config key */
	bool paused;		     /* config "pause": maintenance mode */
	/* A requested switchover (the failover key): from leader (may be ""), to candidate
	 * (may be ""), not before scheduled_at (unix seconds, 0 = now). */
	bool has_switchover;
	char switchover_leader[DCS_NAME_MAX];
	char switchover_candidate[DCS_NAME_MAX];
	int64_t switchover_at;
	int64_t switchover_revision;	/* the failover key's mod_revision */
	bool switchover_drain;		/* the leader asks the proxies to drain now */
	uint64_t switchover_stopped_at; /* the old leader's shutdown checkpoint (0: not yet) */
	/* Proxies registered under proxies/ (at most DCS_MAX_PROXIES). */
	struct dcs_proxy proxies[DCS_MAX_PROXIES];
	size_t n_proxies;
	/* The synchronous set (sync key): members that have every acknowledged commit. */
	bool has_sync;
	int64_t sync_mod_revision; /* 0: no sync key */
	char sync_leader[DCS_NAME_MAX];
	char sync_standby[DCS_MAX_MEMBERS * (DCS_NAME_MAX + 1)]; /* "a,b" */
};

struct dcs {
	struct etcd_client *etcd; /* borrowed */
	char prefix[512];	  /* "/service/demo/" */
	/* [cluster] allowed_networks (borrowed; NULL: any): a member whose PostgreSQL or
	 * REST API address lies outside is left out of every cluster view, as if absent,
	 * so nothing is ever sent to an address someone wrote into etcd. */
	const char *allowed_networks;
};

void dcs_init(struct dcs *d, struct etcd_client *etcd, const char *namespace, const char *cluster);
/* Key of a name under the prefix, e.g. dcs_key(d, DCS_KEY_LEADER, buf, size). */
void dcs_key(const struct dcs *d, const char *name, char *out, size_t size);

int dcs_read(struct dcs *d, struct dcs_cluster *out) PGW_WUR;
/* Builds the cluster view from the keys under the prefix (pure). */
void dcs_cluster_from_kvs(const struct dcs *d, const struct etcd_kv *kvs, size_t n,
			  int64_t revision, struct dcs_cluster *out);

/*
 * A copy of every key under the prefix, kept current by a watch (one writer
 * thread applies events, the HA loop takes snapshots), so the loop need not read
 * the whole prefix from etcd every second. Loads and events older than what the
 * cache holds are ignored.
 */
struct dcs_cache {
	pthread_mutex_t lock;
	struct etcd_kv *kvs; /* owned copies */
	size_t n, cap;
	int64_t revision;
	bool valid;
};

void dcs_cache_init(struct dcs_cache *c);
void dcs_cache_destroy(struct dcs_cache *c);
void dcs_cache_invalidate(struct dcs_cache *c);
void dcs_cache_load(struct dcs_cache *c, const struct etcd_range_result *r);
void dcs_cache_apply(struct dcs_cache *c, const struct etcd_header *h, const struct etcd_event *ev,
		     size_t n);
/* false when the cache is not valid (out untouched then). */
bool dcs_cache_snapshot(const struct dcs *d, struct dcs_cache *c, struct dcs_cluster *out);
void dcs_cluster_free(struct dcs_cluster *c);
const struct dcs_member *dcs_find_member(const struct dcs_cluster *c, const char *name);

int dcs_take_initialize(struct dcs *d, bool *won) PGW_WUR;
int dcs_set_initialize(struct dcs *d, const char *sysid) PGW_WUR;
/*
 * The backup key: held (attached to the runner's lease) while a backup runs, so two
 * never run together anywhere in the cluster. dcs_read_backup: its value (malloc'd),
 * NULL when no backup runs or etcd cannot be read.
 */
int dcs_take_backup(struct dcs *d, const char *value, int64_t lease, bool *won) PGW_WUR;
char *dcs_read_backup(struct dcs *d);
/* The last backup that completed (kept: replicas restore from the repository when set). */
int dcs_set_last_backup(struct dcs *d, const char *value) PGW_WUR;
int dcs_delete_initialize(struct dcs *d) PGW_WUR;
/*
 * A restore in place: forgets what described the cluster before it (leader, members,
 * status with the last optime and timeline, sync, failover, backup, proxies, and
 * last_backup: the repository's backups lie on the history the restore left, and
 * replicas restored from them could not reach the new timeline through the archive, so
 * the members clone from the restored one); keeps initialize, config and history. Only
 * with every agent stopped.
 */
int dcs_forget_state(struct dcs *d) PGW_WUR;

/*
 * Creates the leader key if absent, attached to lease. sync_revision >= 0: only if
 * the sync key's mod_revision is still that (0: absent).
 */
int dcs_acquire_leader(struct dcs *d, const char *name, int64_t lease, int64_t sync_revision,
		       bool *won) PGW_WUR;
/* Writes the sync key if its mod_revision is still mod_revision and leader holds the key. */
int dcs_write_sync(struct dcs *d, const char *leader, const char *sync_standby,
		   int64_t mod_revision, bool *ok) PGW_WUR;
/*
 * Has every registered proxy drained for the switchover whose failover key has
 * mod_revision revision? true with none registered. waiting (may be NULL) gets the
 * names of those that have not, comma-separated.
 */
bool dcs_proxies_drained(const struct dcs_cluster *c, int64_t revision, char *waiting, size_t size);
/* The proxies/<name> value saying drained for revision (0: none); caller frees. */
char *dcs_proxy_to_json(int64_t drained);
/* Is name usable as a proxy key's last part (no '/', printable, not empty)? */
bool dcs_proxy_name_ok(const char *name);
/* Is name in the synchronous set? */
bool dcs_sync_has(const struct dcs_cluster *c, const char *name);
/* Re-attaches the leader key to lease if it still holds name. */
int dcs_move_leader(struct dcs *d, const char *name, int64_t lease, bool *ok) PGW_WUR;
/* Deletes the leader key if it holds name. */
int dcs_release_leader(struct dcs *d, const char *name) PGW_WUR;

int dcs_put_member(struct dcs *d, const char *name, const char *json, int64_t lease) PGW_WUR;
int dcs_delete_member(struct dcs *d, const char *name) PGW_WUR;
int dcs_put_status(struct dcs *d, uint64_t optime, int timeline) PGW_WUR;
/*
 * Writes text to the config key if its mod_revision is still mod_revision (0: the key
 * is still absent); *ok false when someone changed it meanwhile.
 */
int dcs_put_config(struct dcs *d, const char *text, int64_t mod_revision, bool *ok) PGW_WUR;
/*
 * Sets "pause" in the config key, compare-and-swap on the config key's
 * mod_revision (re-reads and retries when someone else changed it meanwhile).
 */
int dcs_set_pause(struct dcs *d, bool pause) PGW_WUR;
/* Creates the failover key (switchover request); *created false if one is pending. */
int dcs_request_switchover(struct dcs *d, const char *leader, const char *candidate,
			   int64_t scheduled_at, bool *created) PGW_WUR;
int dcs_clear_switchover(struct dcs *d) PGW_WUR;
/*
 * Rewrites the failover key of c with "drain": true, if its mod_revision is still
 * c->switchover_revision (*ok false otherwise).
 */
int dcs_mark_switchover_drain(struct dcs *d, const struct dcs_cluster *c, bool *ok) PGW_WUR;
/*
 * A switchover's old leader, once its shutdown checkpoint is written at stopped_at: in
 * one transaction, if the leader key still holds name and the failover key is still at
 * c->switchover_revision, the failover key gets "stopped_at" and the leader key goes
 * (*ok false otherwise, nothing written).
 */
int dcs_release_leader_stopped(struct dcs *d, const struct dcs_cluster *c, const char *name,
			       uint64_t stopped_at, bool *ok) PGW_WUR;
/* Where timeline tli ended, from the history JSON (0 when not recorded). */
uint64_t dcs_history_switch_lsn(const char *history, int tli);
/* One entry of the history key: [old timeline, switch lsn, reason, time, new leader]. */
struct dcs_history_entry {
	int timeline; /* the timeline that ended */
	uint64_t lsn; /* where it ended */
	char reason[160];
	char time[32]; /* UTC, as recorded (ISO 8601) */
	char leader[DCS_NAME_MAX];
};
/* The last (at most max) entries of the history JSON, newest first; 0 when none or bad. */
size_t dcs_history_last(const char *history, struct dcs_history_entry *out, size_t max);
/* Appends [old timeline, switch lsn, reason, time, new leader] to history. */
int dcs_append_history(struct dcs *d, const char *current_history, int timeline, uint64_t lsn,
		       const char *reason, const char *leader) PGW_WUR;

/* Member JSON codec (pure). */
char *dcs_member_to_json(const struct dcs_member *m);
int dcs_member_from_json(const char *name, const char *json, size_t len,
			 struct dcs_member *out) PGW_WUR;

#endif

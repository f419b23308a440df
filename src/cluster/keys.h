/*
 * The cluster's state in etcd, under <namespace>/<cluster>/:
 *   initialize        system identifier ("" while the winner bootstraps); created once
 *   leader            member name, attached to the leader's lease
 *   members/<name>    member JSON, attached to that member's lease
 *   status            {"optime": leader WAL position, "timeline": n}
 *   history           JSON list of [timeline, switch lsn, reason, time, new leader]
 *   config            dynamic configuration JSON ({"pause": true} = maintenance mode)
 *   failover          a requested switchover {"leader", "candidate", "scheduled_at"};
 *                     the leader adds "drain": true once it has checkpointed, the
 *                     signal for the proxies to hold and drain
 *   sync              synchronous mode: {"leader", "sync_standby": "a,b"}, written by the
 *                     leader; only a listed member may take the leader key
 *   backup            the backup running, on its runner's lease (one at a time)
 *   last_backup       the last backup that completed {"label", "type", "stop", "member"}
 *   proxies/<name>    a proxy following the cluster, on the proxy's lease:
 *                     {"drained": R}, R the failover key's mod_revision once the proxy
 *                     has drained its primary pools for that switchover (0: none)
 *
 * Every name below is in this header only; dcs_key(d, DCS_KEY_..., ...) makes the full
 * key. The names are Patroni's where Patroni has the key.
 */
#ifndef PGW_KEYS_H
#define PGW_KEYS_H

#define DCS_KEY_INITIALIZE  "initialize"
#define DCS_KEY_LEADER	    "leader"
#define DCS_KEY_STATUS	    "status"
#define DCS_KEY_HISTORY	    "history"
#define DCS_KEY_CONFIG	    "config"
#define DCS_KEY_FAILOVER    "failover"
#define DCS_KEY_SYNC	    "sync"
#define DCS_KEY_BACKUP	    "backup"
#define DCS_KEY_LAST_BACKUP "last_backup"
/* Prefixes: one key per member or proxy under each. */
#define DCS_PREFIX_MEMBERS "members/"
#define DCS_PREFIX_PROXIES "proxies/"

#endif

/*
 * The files the agent owns in PGDATA: postgresql.conf (tuned parameters computed
 * from the node's memory, [parameters] overrides, and the replication settings),
 * pg_hba.conf, standby.signal; and the agent's passfile outside PGDATA.
 */
#ifndef PGW_PGCONF_H
#define PGW_PGCONF_H

#include "node/agentcfg.h"
#include "common/config.h"
#include "common/err.h"

#include <stdbool.h>

/* Where a replica streams from; host NULL: no upstream (stay in recovery). */
struct pgconf_upstream {
	const char *host;
	int port;
};

/* Tuned values for memory bytes, then cfg's [parameters] on top. Caller frees out. */
int pgconf_parameters(const struct agent_config *cfg, struct cmn_kvlist *out) PGW_WUR;
/* The parameters only the agent may set; NULL when name is not one. */
const char *pgconf_managed_reason(const char *name);
/*
 * Why a parameter may be set only in a node's own file, never from the dynamic
 * configuration in etcd (it runs a command or loads code as postgres: whoever can write
 * etcd would run code on every member), or NULL.
 */
const char *pgconf_node_only_reason(const char *name);
/* Validates [parameters]: err gets "file:line: ..." for a managed or bad name. */
int pgconf_check_parameters(const struct agent_config *cfg, char *err, size_t err_size) PGW_WUR;

/* synchronous_standby_names as the agent last wrote it in postgresql.conf ("" if none). */
void pgconf_read_ssn(const struct agent_config *cfg, char *out, size_t size);
/*
 * What a postgresql.conf may leave out for a while (pgconf_write_conf_without):
 * - PGCONF_NO_ARCHIVE_LOOKUPS: restore_command '', what a replica runs with from the
 *   moment a switchover may promote it and the archive is known to hold no history file
 *   of the next timeline, or a failover's promotion with the repository host down (see
 *   actions.c): neither the end of the old primary's stream nor the promotion waits for
 *   archive lookups;
 * - PGCONF_NO_ARCHIVING: archive_command '', a primary's while it stops with the
 *   repository host down: its archiver would retry each segment before it lets
 *   PostgreSQL stop. The segments stay ready, pushed at its next start as primary; the
 *   next leader queues again those of the old timeline still in its own pg_wal
 *   (backup_requeue_timeline).
 */
enum {
	PGCONF_NO_ARCHIVE_LOOKUPS = 1 << 0,
	PGCONF_NO_ARCHIVING = 1 << 1,
};
/* Writes postgresql.conf; up is NULL for a primary. */
int pgconf_write_conf(const struct agent_config *cfg, const struct pgconf_upstream *up) PGW_WUR;
/* The same without what flags say (PGCONF_NO_*). */
int pgconf_write_conf_without(const struct agent_config *cfg, const struct pgconf_upstream *up,
			      unsigned flags) PGW_WUR;
/* postgresql.conf (as written by an agent) has restore_command ''. */
bool pgconf_restore_command_off(const struct agent_config *cfg);
int pgconf_write_hba(const struct agent_config *cfg) PGW_WUR;
int pgconf_write_pgpass(const struct agent_config *cfg) PGW_WUR;
int pgconf_set_standby_signal(const struct agent_config *cfg, bool on) PGW_WUR;
bool pgconf_has_standby_signal(const struct agent_config *cfg);

/* The primary_conninfo the agent writes for up (no password: passfile). */
void pgconf_primary_conninfo(const struct agent_config *cfg, const struct pgconf_upstream *up,
			     char *out, size_t size);

#endif

/*
 * The functions the agent's files share (loop, jobs, lease, publish, actions, sync,
 * dynconf, rest); each file's own are static. The state is in agent/types.h.
 */
#ifndef PGW_AGENT_PARTS_H
#define PGW_AGENT_PARTS_H

#include "agent/types.h"
#include "cluster/dyncfg.h"
#include "common/config.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* loop.c: the loop */
void agent_wake(struct agent *a);

/* jobs.c: jobs */
int job_spawn(struct agent *a, enum job_kind kind, const char *const *argv);
int run_now(struct agent *a, const char *const *argv, int timeout_ms);
int write_standby_config(struct agent *a, const char *host, int port);
int write_primary_config(struct agent *a);
void start_standby(struct agent *a, const char *host, int port);
void clone_dir(const struct agent *a, char *out, size_t size);
void bootstrap_failed(struct agent *a, const char *why);
void job_finished(struct agent *a, int code);

/* lease.c: the leader lease */
void etcd_trouble(struct agent *a, const char *what, int rc);
bool lease_maintain(struct agent *a, bool force);

/* publish.c: what the agent publishes */
void publish_member(struct agent *a);
bool holds_leader(const struct agent *a);
/* A switchover request that this replica may serve is in etcd (see do_promote). */
bool switchover_may_promote_us(const struct agent *a);
/* The timeline a promotion of this replica would take (0: not known). */
int switchover_next_timeline(const struct agent *a);
/* Once per loop: restore_command off while such a request stands, and back after. */
void switchover_archive_lookups(struct agent *a);
void publish_api(struct agent *a);

/* actions.c: the HA actions */
void finish_bootstrap(struct agent *a);
void do_clone(struct agent *a, const char *source);
int promote_poll(struct agent *a, int *code);
void do_demote(struct agent *a, const char *why);
int stop_postgres(struct agent *a, const char *mode);
void execute(struct agent *a, const struct ha_decision *d);

/* sync.c: synchronous replication and slots */
bool claim_sync(struct agent *a);
void manage_sync(struct agent *a);
void manage_slots(struct agent *a);

/* dynconf.c: the dynamic configuration */
int rewrite_conf_and_reload(struct agent *a);
void apply_dynamic_config(struct agent *a);
void apply_conf_change(struct agent *a);

/* rest.c: REST operations */
void req_finish(struct agent *a, unsigned int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int reload_node_config(struct agent *a, char *err, size_t err_size);
void do_request(struct agent *a);
void api_op(void *arg, const struct api_call *call, struct api_answer *ans);

#endif

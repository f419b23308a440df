/*
 * What backup, backup list and restore share: the members' configurations as the CLI
 * finds them, and the pgBackRest repository's description (pgbackrest info).
 */
#ifndef PGW_CLI_REPO_H
#define PGW_CLI_REPO_H

#include "cli/cli.h"
#include "common/proc.h"
#include "common/util.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * A member's full node configuration: DIR/<member>/node.ini with --dir (the layout
 * `pgwarden up` makes), else the configuration given, when it is that member's.
 */
bool cli_load_member(const struct cli_target *t, const struct agent_config *own, const char *member,
		     struct agent_config *out);
/*
 * For a backup command: the full configuration of member (NULL: the one -c names, or node1
 * of --dir), which must have [backup] on. CLI_EXIT_OK, or the exit code (the reason said).
 */
int cli_repo_member(struct cli_target *t, const char *member, struct agent_config *m);
/* A repository configuration's pgbackrest.conf, written when missing or different. */
int cli_repository_conf(const struct agent_config *r);
/* No -c, --dir or environment: the folder `pgwarden up` made, as the other commands find it. */
void cli_default_dir(struct cli_target *t);
/* As root, po runs as postgres (PostgreSQL's files are its). -1: no such user. */
int cli_run_as_postgres(struct cmn_proc_opts *po);
/*
 * Runs pgbackrest <command> [extra...] as member m does (its pgbackrest.conf; as postgres
 * when we are root), its output (stdout and stderr) in out: the exit code, or -1.
 */
int cli_pgbackrest(const struct agent_config *m, const char *command, const char *const *extra,
		   int timeout_ms, struct cmn_buf *out);
/* The --pgN-host... options with which the repository host repo reaches member m over TLS:
 * CLI_PG_HOST_OPTS strings in opt, pointed to from out. */
#define CLI_PG_HOST_OPTS 10
int cli_pg_host_opts(const struct agent_config *repo, int index, const struct dcs_member *m,
		     char (*opt)[4200], const char **out);
/* pgbackrest info --output=json as member m runs it: the stanza's object, or NULL and err. */
json_object *cli_repo_info(const struct agent_config *m, char *err, size_t err_size);
/* Why pgbackrest info's stanza object st is not usable, in one line (with a hint). */
void cli_repo_problem(json_object *st, char *out, size_t size);
/* o.k1[.k2] as a string / o.k1[.k2[.k3]] as an integer (NULL / 0 when absent). */
const char *cli_jstr(json_object *o, const char *k1, const char *k2);
int64_t cli_jint(json_object *o, const char *k1, const char *k2, const char *k3);

/* pgbackrest verify of member m's repository, parsed (pitr.h). 0, or -1 and err. */
struct pitr_verify;
int cli_repo_verify(const struct agent_config *m, struct pitr_verify *v, char *err,
		    size_t err_size);

#endif

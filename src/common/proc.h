/*
 * Child processes: spawn detached or attached, poll without blocking, run with a
 * deadline. Children never inherit our descriptors beyond stdin/stdout/stderr.
 */
#ifndef PGW_PROC_H
#define PGW_PROC_H

#include "common/err.h"
#include "common/util.h"

#include <stdbool.h>
#include <sys/types.h>

struct cmn_proc_opts {
	const char *const *argv;      /* argv[0] is the program (searched in PATH) */
	const char *const *env_extra; /* "NAME=value" entries added to our environment */
	const char *log_path;	      /* stdout+stderr appended here; NULL = /dev/null */
	bool inherit_output;	      /* keep our stdout/stderr instead (log_path ignored) */
	const char *cwd;	      /* NULL = unchanged */
	bool new_session;	      /* setsid(): survives our process group signals */
	uid_t uid;		      /* switch user when run_as is set (root only) */
	gid_t gid;
	bool run_as;
	bool die_with_parent; /* SIGTERM when we die, even by SIGKILL (a server of ours) */
};

int cmn_proc_spawn(const struct cmn_proc_opts *o, pid_t *pid) PGW_WUR;
/* 1 when the child finished (*exit_code: exit status, or 128+signal), 0 while it runs. */
int cmn_proc_poll(pid_t pid, int *exit_code);
/* Runs to completion, capturing stdout+stderr in out (may be NULL); kills at the deadline. */
int cmn_proc_run(const char *const *argv, const char *const *env_extra, int timeout_ms,
		 struct cmn_buf *out, int *exit_code) PGW_WUR;
/* The same with options: run_as, new_session and cwd apply (log_path and inherit_output not). */
int cmn_proc_run_opts(const struct cmn_proc_opts *o, int timeout_ms, struct cmn_buf *out,
		      int *exit_code) PGW_WUR;
/* SIGTERM to a child of ours, then waits until it is gone (its exit code in *exit_code). */
void cmn_proc_stop(pid_t pid, int *exit_code);
bool cmn_pid_alive(pid_t pid);
/*
 * /proc/PID/cmdline into out (arguments separated by NULs, then a NUL); its length, 0
 * when the process is gone or shows none.
 */
size_t cmn_proc_cmdline(pid_t pid, char *out, size_t size);
/* fn(pid, arg) for every process in /proc until it returns false; PGW_ERR when /proc
 * cannot be read. */
int cmn_proc_each(bool (*fn)(pid_t pid, void *arg), void *arg);
/* Reads a pid from the first line of a file; 0 when missing or bad. */
pid_t cmn_read_pidfile(const char *path);

#endif

/*
 * Self-fencing: a tiny separate process that stops the local primary when the
 * agent stops renewing its lease (agent killed, stalled by SIGSTOP, stuck in I/O).
 * Without it a stalled agent's PostgreSQL would keep taking writes from clients
 * that bypass the proxy after a replica was promoted (Patroni needs a hardware
 * watchdog for this).
 *
 * The agent, while it is the leader, writes into a small file the monotonic time
 * (CLOCK_MONOTONIC, shared by every process) by which it must have renewed its
 * lease again; the fence process polls it every 50 ms and, past that time, sends
 * the postmaster SIGQUIT (immediate shutdown). Writing 0 disarms it and it exits.
 * It survives the agent on purpose: a restarted agent re-arms the same file.
 */
#ifndef PGW_FENCE_H
#define PGW_FENCE_H

#include "common/err.h"

#include <stdint.h>

/* Arms (deadline_ms > 0) or disarms (0); starts the fence process when arming. */
int agent_fence_set(const char *run_dir, const char *data_dir, int64_t deadline_ms) PGW_WUR;
/* Collects the exit status of a fence process we started, once it has ended. */
void agent_fence_reap(void);
/* The fence process: "pgwarden fence RUN_DIR DATA_DIR". */
int agent_fence_main(int argc, char **argv);

#endif

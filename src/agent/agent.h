/*
 * pgwarden agent: manages one local PostgreSQL as a member of an HA cluster
 * whose state lives in etcd (Patroni's role). See ha.h for the decision rules,
 * dcs.h for the keys, pgctl.h for how PostgreSQL is driven.
 *
 * Signals: SIGTERM / SIGINT stop PostgreSQL (fast), hand the leader key over and
 * exit; SIGKILL of the agent leaves PostgreSQL running and a new agent re-adopts it.
 */
#ifndef PGW_AGENT_H
#define PGW_AGENT_H

/* "pgwarden agent -c node.ini": returns the process exit code. */
int agent_main(int argc, char **argv);

#endif

/*
 * The agent's REST API (libmicrohttpd, its own thread). The HA loop renders the
 * JSON documents once per loop into struct api_state; request handlers only copy
 * them under the lock, so a slow client never delays the HA loop.
 *
 * Patroni-compatible health endpoints: GET / /primary /master /leader /read-write
 * (200 on the leader), /replica (200 on a running replica not tagged
 * noloadbalance, ?lag=bytes), /read-only, /health, /liveness, /readiness;
 * documents: /status (alias /patroni), /cluster, /history, /config; /metrics
 * (Prometheus text format, Patroni's metric names: agent/metrics.h).
 * Mutating endpoints (basic auth from [api] username/password, 401 without):
 * POST /switchover /failover /restart /reinitialize /reload, PATCH /config.
 */
#ifndef PGW_API_H
#define PGW_API_H

#include "common/err.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct api_state {
	pthread_mutex_t lock;
	char *status_json;  /* owned; replaced by api_state_set */
	char *cluster_json; /* owned */
	char *history_json; /* owned */
	char *config_json;  /* owned: the dynamic configuration (GET /config) */
	char *metrics_text; /* owned: GET /metrics (Prometheus text format) */
	bool pg_running;    /* postmaster up and accepting */
	bool is_leader;	    /* primary and holder of the leader key */
	bool is_replica;    /* running in recovery */
	bool streaming;
	bool noloadbalance;
	uint64_t lag_bytes; /* replica: leader optime - our position (0 unknown) */
	int64_t last_loop_ms;
	int liveness_ms; /* loop considered dead after this long */
};

struct api_server;

/*
 * A mutating request (POST /switchover /failover /restart /reinitialize /reload,
 * PATCH /config), authenticated, body read; the agent's callback answers it from
 * the HTTP server's thread (one thread per connection: it may take a while).
 */
struct api_call {
	const char *method;
	const char *path;
	const char *body; /* NUL-terminated, "" when none */
};

struct api_answer {
	unsigned int code;
	char *body; /* JSON, heap; NULL: {"message": ...} built from message */
	char message[512];
};

typedef void (*api_op_fn)(void *arg, const struct api_call *call, struct api_answer *ans);

/* Where mutating requests go and who may send them (username NULL: nobody). */
struct api_ops {
	api_op_fn fn;
	void *arg;
	const char *username;
	const char *password;
};

void api_state_init(struct api_state *st, int liveness_ms);
void api_state_destroy(struct api_state *st);
/* Takes ownership of the three strings (any may be NULL to keep the old one). */
void api_state_set_docs(struct api_state *st, char *status_json, char *cluster_json,
			char *history_json);

/* ops may be NULL (read-only API). */
/* certfile/keyfile (PEM, both or neither): https instead of http. */
int api_start(const char *host, int port, const char *certfile, const char *keyfile,
	      struct api_state *st, const struct api_ops *ops, struct api_server **out) PGW_WUR;
void api_stop(struct api_server *srv);

#endif

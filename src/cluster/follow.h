/*
 * Following a cluster's etcd prefix, for the agent and the proxy alike: a thread
 * reads the prefix once into a dcs_cache, then keeps the cache current with a watch.
 * When the stream fails (or dcs_follow_restart says the view looks stale) it drops
 * the cache, and 0.5 s later reads again and watches from there.
 */
#ifndef PGW_FOLLOW_H
#define PGW_FOLLOW_H

#include "cluster/dcs.h"
#include "common/err.h"
#include "etcd/etcd.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Called on the follower's thread after the cache changed: with the events just
 * applied, or (NULL, 0) after a full read or after the cache was dropped.
 */
typedef void (*dcs_follow_fn)(void *arg, const struct etcd_event *ev, size_t n);

struct dcs_follow {
	/* Set by the caller before dcs_follow_start; borrowed until dcs_follow_stop. */
	const struct dcs *dcs;	      /* whose prefix */
	struct dcs_cache *cache;      /* kept current */
	struct etcd_client_opts etcd; /* the follower's own client */
	dcs_follow_fn changed;
	void *arg;
	/* The follower's own. */
	pthread_t thread;
	bool started;
	volatile bool stop;
	volatile bool restart; /* read and watch again (also set by stop) */
};

/* Starts the thread; PGW_ERR (logged) when it cannot. */
int dcs_follow_start(struct dcs_follow *f) PGW_WUR;
/* The view looks stale (it disagrees with a linearizable read): read and watch again. */
void dcs_follow_restart(struct dcs_follow *f);
/* Stops and joins the thread (nothing when it did not start). */
void dcs_follow_stop(struct dcs_follow *f);

#endif

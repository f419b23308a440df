/*
 * The proxy's numbers, counted once per look: the pools with their clients and servers
 * by state, and the totals. The admin console's SHOW POOLS, the status page and
 * /metrics all read this one view.
 */
#ifndef PGW_PROXY_STATS_H
#define PGW_PROXY_STATS_H

#include "proxy/types.h"

#include <stddef.h>
#include <stdint.h>

/* What one publish needs of a pool, counted once. */
struct proxy_pool_row {
	const struct proxy_pool *pool;
	int cl_active, cl_idle, cl_waiting;
	int sv_active, sv_idle, sv_used, sv_login;
	int64_t maxwait_ms; /* the oldest waiting client's wait (0: none) */
	double maxwait_s;
};

/* What one publish needs of the whole proxy. */
struct proxy_view {
	const struct proxy *p;
	int64_t now;
	struct proxy_pool_row *rows;
	size_t n_rows;
	int cl_login, cl_idle, cl_waiting, cl_active; /* admin clients count as active */
	int sv[4];				      /* active, idle, used, login */
	double uptime_s;
	double confirmed_age_s; /* < 0: etcd never confirmed */
};

/* Counts p's pools (v->rows, to free with proxy_view_free); PGW_ENOMEM. */
int proxy_view_build(struct proxy_view *v, const struct proxy *p) PGW_WUR;
void proxy_view_free(struct proxy_view *v);

int proxy_count_clients(const struct proxy_client_list *l);
int proxy_count_servers(const struct proxy_server_list *l);
/* "pooled", "primary" or "replica". */
const char *proxy_port_name(enum proxy_port port);

#endif

/* The proxy's built-in limits and timings (those not in proxy.ini), in one place. */
#ifndef PGW_PROXY_DEFAULTS_H
#define PGW_PROXY_DEFAULTS_H

/* Pause reading a source while its destination holds this much unsent. */
#define BACKLOG_LIMIT (256 * 1024)
/* A connection buffer's first allocation. */
#define BUF_MIN 8192
/* A server connection or login that failed: the pool waits this long before another. */
#define SERVER_RETRY_MS 500
/* Named prepared statements one client may have. */
#define MAX_CLIENT_STATEMENTS 10000
/* A new primary still finishing its promotion: the next connection attempt after. */
#define PROMOTION_RETRY_MS 50
/* A CancelRequest that got no answer from PostgreSQL is dropped after this. */
#define CANCEL_TIMEOUT_MS 5000
/* auth_query: how long a user it did not find is remembered, how many such users, and
 * how many lookups one address may start a second. */
#define AUTHQ_NEGATIVE_MS     10000
#define AUTHQ_NEGATIVE_N      256
#define AUTHQ_LOOKUPS_PER_SEC 50

/* Out of file descriptors: accept() pauses this long. */
#define ACCEPT_PAUSE_MS 1000
/* A client waiting this long may use reserve_pool_size more servers (PgBouncer's
 * reserve_pool_timeout). */
#define RESERVE_POOL_TIMEOUT_MS 5000
/* The topology threads: etcd's timeout for their requests; the watched view is
 * confirmed against etcd every second (two after an event); they look again every
 * 250 ms when nothing wakes them. */
#define TOPO_ETCD_TIMEOUT_MS	    1500
#define TOPO_CONFIRM_MS		    1000
#define TOPO_CONFIRM_AFTER_EVENT_MS 2000
#define TOPO_POLL_MS		    250

#endif

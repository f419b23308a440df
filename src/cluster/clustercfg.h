/*
 * What every part's configuration says about the cluster it belongs to: the [etcd]
 * section, the [cluster] keys agents and proxies share, the lease timing and its
 * defaults. The rows are macros over a configuration struct's own offsets, so the
 * agent's and the proxy's schemas say the same thing in one place.
 */
#ifndef PGW_CLUSTERCFG_H
#define PGW_CLUSTERCFG_H

#include "common/config.h"
#include "common/err.h"
#include "etcd/etcd.h"

#include <stddef.h>

/*
 * Timing, as Patroni's (ttl 30 s, loop_wait 10 s, retry_timeout 10 s) scaled down:
 * loop_wait + 2 x retry_timeout <= ttl keeps two failed renewals from costing the
 * lease, and the primary demotes itself CLUSTER_DEMOTE_MARGIN_MS before the lease can
 * expire.
 */
#define CLUSTER_DEFAULT_TTL	      "4s"
#define CLUSTER_DEFAULT_LOOP_WAIT     "1s"
#define CLUSTER_DEFAULT_RETRY_TIMEOUT "1500ms"
/* A primary demotes when its lease has less than this left. */
#define CLUSTER_DEMOTE_MARGIN_MS 1000

/* The [etcd] section. */
struct cluster_etcd_config {
	char *endpoints;
	char *username;
	char *password;
	char *cacert;
	char *cert;
	char *key;
};

/* etcd client options for e, timeout_ms per request (out's strings are e's). */
void cluster_etcd_opts(const struct cluster_etcd_config *e, int timeout_ms,
		       struct etcd_client_opts *out);

/*
 * PGW_OK when the timing keeps a leader's lease safe; PGW_EINVAL with the reason in
 * err: ttl a whole number of seconds, loop_wait + 2 x retry_timeout <= ttl, ttl more
 * than the demote margin above loop_wait.
 */
int cluster_check_timing(int ttl_ms, int loop_wait_ms, int retry_timeout_ms, char *err,
			 size_t err_size) PGW_WUR;

/* [cluster] name, namespace and allowed_networks of a struct with fields cluster_name,
 * namespace, allowed_networks (OFF: its offsetof macro). */
#define CLUSTER_CFG_NAME_ROWS(OFF, name_help)                                                      \
	{"cluster", "name", CMN_CFG_STRING, OFF(cluster_name), NULL, true, 0, 0, name_help},       \
	    {"cluster",                                                                            \
	     "namespace",                                                                          \
	     CMN_CFG_STRING,                                                                       \
	     OFF(namespace),                                                                       \
	     "/service",                                                                           \
	     false,                                                                                \
	     0,                                                                                    \
	     0,                                                                                    \
	     "etcd key prefix shared by clusters"},                                                \
	{                                                                                          \
		"cluster", "allowed_networks", CMN_CFG_STRING, OFF(allowed_networks), NULL, false, \
		    0, 0,                                                                          \
		    "comma-separated networks (10.0.0.0/8, fd00::/8, an address) the members' "    \
		    "addresses must lie within: a member record in etcd naming another address "   \
		    "is "                                                                          \
		    "ignored"                                                                      \
	}

/* [cluster] ttl of a struct with an int ttl_ms field. */
#define CLUSTER_CFG_TTL_ROW(OFF, help)                                                       \
	{                                                                                    \
		"cluster", "ttl", CMN_CFG_DURATION, OFF(ttl_ms), CLUSTER_DEFAULT_TTL, false, \
		    2000LL, 3600000LL, help                                                  \
	}

/* The [etcd] section of a struct with a struct cluster_etcd_config etcd field. */
#define CLUSTER_CFG_ETCD_ROWS(OFF)                                                             \
	{"etcd",                                                                               \
	 "endpoints",                                                                          \
	 CMN_CFG_STRING,                                                                       \
	 OFF(etcd.endpoints),                                                                  \
	 "http://127.0.0.1:2379",                                                              \
	 false,                                                                                \
	 0,                                                                                    \
	 0,                                                                                    \
	 "comma-separated etcd client URLs"},                                                  \
	    {"etcd", "username", CMN_CFG_STRING, OFF(etcd.username), NULL, false, 0, 0, NULL}, \
	    {"etcd", "password", CMN_CFG_SECRET, OFF(etcd.password), NULL, false, 0, 0, NULL}, \
	    {"etcd", "cacert", CMN_CFG_STRING, OFF(etcd.cacert), NULL, false, 0, 0, NULL},     \
	    {"etcd", "cert", CMN_CFG_STRING, OFF(etcd.cert), NULL, false, 0, 0, NULL},         \
	{                                                                                      \
		"etcd", "key", CMN_CFG_STRING, OFF(etcd.key), NULL, false, 0, 0, NULL          \
	}

#endif

#include "cluster/clustercfg.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

void cluster_etcd_opts(const struct cluster_etcd_config *e, int timeout_ms,
		       struct etcd_client_opts *out)
{
	memset(out, 0, sizeof(*out));
	out->endpoints = e->endpoints;
	out->timeout_ms = timeout_ms;
	out->username = e->username;
	out->password = e->password;
	out->cacert = e->cacert;
	out->cert = e->cert;
	out->key = e->key;
}

int cluster_check_timing(int ttl_ms, int loop_wait_ms, int retry_timeout_ms, char *err,
			 size_t err_size)
{
	if (ttl_ms % 1000 != 0) {
		snprintf(err, err_size, "ttl must be a whole number of seconds (etcd leases)");
		return PGW_EINVAL;
	}
	if ((int64_t)loop_wait_ms + 2LL * retry_timeout_ms > ttl_ms) {
		snprintf(
		    err, err_size,
		    "timing: loop_wait (%d ms) + 2 x retry_timeout (%d ms) must not exceed ttl "
		    "(%d ms), or a leader could lose its lease between two renewals",
		    loop_wait_ms, retry_timeout_ms, ttl_ms);
		return PGW_EINVAL;
	}
	if (ttl_ms - CLUSTER_DEMOTE_MARGIN_MS <= loop_wait_ms) {
		snprintf(
		    err, err_size,
		    "timing: ttl (%d ms) must exceed loop_wait (%d ms) by more than the demote "
		    "margin (%d ms)",
		    ttl_ms, loop_wait_ms, CLUSTER_DEMOTE_MARGIN_MS);
		return PGW_EINVAL;
	}
	return PGW_OK;
}

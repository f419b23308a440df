/*
 * libFuzzer target: everything pgwarden parses from etcd — unary responses (range,
 * txn, keepalive, errors), the watch stream split at every byte, and member JSON.
 */
#include "cluster/dcs.h"
#include "etcd/etcd.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool on_events(void *arg, const struct etcd_header *h, const struct etcd_event *ev, size_t n)
{
	(void)arg;
	(void)h;
	(void)ev;
	(void)n;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct etcd_range_result rr;
	struct etcd_txn_result tr;
	struct dcs_member m;
	char msg[256];
	int64_t id;
	int ttl;

	if (etcd_parse_range_response(body, size, &rr) == PGW_OK)
		etcd_range_result_free(&rr);
	if (etcd_parse_txn_response(body, size, &tr) == PGW_OK)
		etcd_txn_result_free(&tr);
	(void)etcd_parse_keepalive_response(body, size, &id, &ttl);
	(void)etcd_classify_error(body, size, msg, sizeof(msg));
	(void)dcs_member_from_json("m", body, size, &m);

	/* The same bytes as a watch stream, fed in two chunks split in the middle. */
	struct etcd_watch_stream *s = etcd_watch_stream_new(on_events, NULL);

	if (s) {
		size_t half = size / 2;

		if (etcd_watch_stream_feed(s, body, half) == 0)
			(void)etcd_watch_stream_feed(s, body + half, size - half);
		etcd_watch_stream_free(s);
	}
	return 0;
}

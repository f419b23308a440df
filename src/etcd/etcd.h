/*
 * etcd v3 client over the JSON gateway (etcd 3.4, paths under /v3/), through libcurl.
 *
 * One struct etcd_client per thread: it owns a curl easy handle (connections are
 * kept alive between calls) and is not thread-safe. Every call is bounded by the
 * client's timeout; on a network error, HTTP 5xx or an "unavailable" etcd error
 * (no leader, request timed out, not capable) the call moves on to the next
 * endpoint within the same deadline, and that endpoint stays current for the
 * following calls.
 *
 * Keys and values are arbitrary bytes (base64 on the wire). Results handed out
 * by the client are owned by the caller and released with the matching
 * etcd_*_free function.
 */
#ifndef PGW_ETCD_H
#define PGW_ETCD_H

#include "common/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_MAX_ENDPOINTS 16

struct etcd_client;

struct etcd_kv {
	char *key; /* NUL-terminated copy; key_len is the real length */
	size_t key_len;
	char *value; /* NUL-terminated copy; value_len is the real length */
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;
	int64_t lease; /* 0 when none */
};

struct etcd_header {
	uint64_t cluster_id;
	uint64_t member_id;
	int64_t revision;
	uint64_t raft_term;
};

struct etcd_range_result {
	struct etcd_header header;
	struct etcd_kv *kvs;
	size_t n_kvs;
	bool more;
	int64_t count;
};

enum etcd_cmp_target {
	ETCD_CMP_VERSION,
	ETCD_CMP_CREATE,
	ETCD_CMP_MOD,
	ETCD_CMP_VALUE,
	ETCD_CMP_LEASE,
};

enum etcd_cmp_result {
	ETCD_CMP_EQUAL,
	ETCD_CMP_GREATER,
	ETCD_CMP_LESS,
	ETCD_CMP_NOT_EQUAL,
};

struct etcd_compare {
	const char *key;
	enum etcd_cmp_target target;
	enum etcd_cmp_result result;
	int64_t number;	   /* version, create_revision, mod_revision or lease */
	const char *value; /* for ETCD_CMP_VALUE */
	size_t value_len;
};

enum etcd_op_type { ETCD_OP_PUT, ETCD_OP_DELETE, ETCD_OP_RANGE };

struct etcd_op {
	enum etcd_op_type type;
	const char *key;
	const char *range_end; /* NULL: single key (delete/range) */
	const char *value;     /* put */
	size_t value_len;
	int64_t lease; /* put: 0 = none */
};

struct etcd_txn_result {
	struct etcd_header header;
	bool succeeded;
	/*
	 * One entry per op of the branch that ran; only ETCD_OP_RANGE ops fill kvs,
	 * an ETCD_OP_DELETE entry has the number of deleted keys in count.
	 */
	size_t n_responses;
	struct etcd_range_result *responses;
};

/* A watch event: type PUT (absent "type" in JSON) or DELETE. */
enum etcd_event_type { ETCD_EVENT_PUT, ETCD_EVENT_DELETE };

struct etcd_event {
	enum etcd_event_type type;
	struct etcd_kv kv;
};

/*
 * Called from etcd_watch_run for every message of the stream. events may be empty
 * (created / progress notification). Return false to stop the watch.
 */
typedef bool (*etcd_watch_cb)(void *arg, const struct etcd_header *header,
			      const struct etcd_event *events, size_t n_events);

struct etcd_client_opts {
	const char *endpoints; /* comma-separated http(s)://host:port list */
	int timeout_ms;	       /* bound on every unary call, all retries included */
	const char *username;  /* optional etcd auth (NULL: none) */
	const char *password;
	const char *cacert; /* optional TLS files */
	const char *cert;
	const char *key;
};

int etcd_client_new(const struct etcd_client_opts *opts, struct etcd_client **out) PGW_WUR;
void etcd_client_free(struct etcd_client *c);
void etcd_client_set_timeout(struct etcd_client *c, int timeout_ms);
/* Endpoint the client talks to now (for logs). */
const char *etcd_client_endpoint(const struct etcd_client *c);

/*
 * Range [key, range_end); range_end NULL means the single key. Keys are C strings, so
 * the one-byte key "\0" is written "": range_end "" means "every key >= key", and
 * key "" with a range_end means "from the first key" (etcd's "\0" conventions).
 */
int etcd_range(struct etcd_client *c, const char *key, const char *range_end,
	       struct etcd_range_result *out) PGW_WUR;
/* Every key starting with prefix. */
int etcd_range_prefix(struct etcd_client *c, const char *prefix,
		      struct etcd_range_result *out) PGW_WUR;
void etcd_range_result_free(struct etcd_range_result *r);

int etcd_put(struct etcd_client *c, const char *key, const char *value, size_t value_len,
	     int64_t lease, int64_t *revision) PGW_WUR;
/* deleted (may be NULL) receives how many keys went away. */
int etcd_delete(struct etcd_client *c, const char *key, const char *range_end,
		int64_t *deleted) PGW_WUR;

int etcd_txn(struct etcd_client *c, const struct etcd_compare *cmp, size_t n_cmp,
	     const struct etcd_op *success, size_t n_success, const struct etcd_op *failure,
	     size_t n_failure, struct etcd_txn_result *out) PGW_WUR;
void etcd_txn_result_free(struct etcd_txn_result *r);

/* Grants a lease; granted_ttl gets the TTL etcd really granted (minimum ~2 s). */
int etcd_lease_grant(struct etcd_client *c, int ttl, int64_t *id, int *granted_ttl) PGW_WUR;
/* Returns PGW_ENOTFOUND when the lease has expired or never existed. */
int etcd_lease_keepalive(struct etcd_client *c, int64_t id, int *ttl) PGW_WUR;
int etcd_lease_revoke(struct etcd_client *c, int64_t id) PGW_WUR;
/*
 * Turns on etcd's authentication with a root user of that password (etcdctl user add
 * root, user grant-role root root, auth enable). Needs a client without a username.
 */
int etcd_enable_auth(struct etcd_client *c, const char *root_password) PGW_WUR;

/*
 * Watches every key under prefix from start_revision (0: from now), calling cb for
 * each stream message until cb returns false, *stop becomes true (checked at least
 * every 200 ms), or the stream fails. Blocking: run it in its own thread with its
 * own client. Returns 0 when stopped by cb or *stop, PGW_ENOTFOUND when
 * start_revision was compacted (*compact_revision is set), another error when
 * the stream broke (the caller re-reads and re-watches).
 */
int etcd_watch_run(struct etcd_client *c, const char *prefix, int64_t start_revision,
		   etcd_watch_cb cb, void *arg, const volatile bool *stop,
		   int64_t *compact_revision) PGW_WUR;

/* Pure helpers, exposed for unit tests and fuzzing (no I/O). */
/*
 * range_end for a prefix: last byte incremented, trailing 0xff bytes dropped; "" (= "\0",
 * every key) when nothing is left. Strings returned by the builders are freed with free().
 */
char *etcd_prefix_range_end(const char *prefix);
char *etcd_build_range_request(const char *key, const char *range_end);
char *etcd_build_put_request(const char *key, const char *value, size_t value_len, int64_t lease);
char *etcd_build_txn_request(const struct etcd_compare *cmp, size_t n_cmp,
			     const struct etcd_op *success, size_t n_success,
			     const struct etcd_op *failure, size_t n_failure);
int etcd_parse_range_response(const char *body, size_t len, struct etcd_range_result *out) PGW_WUR;
int etcd_parse_txn_response(const char *body, size_t len, struct etcd_txn_result *out) PGW_WUR;
/* ttl = 0 when the result carries no TTL (lease gone). */
int etcd_parse_keepalive_response(const char *body, size_t len, int64_t *id, int *ttl) PGW_WUR;
/*
 * Parses an error body ({"error":..,"code":..} or in-stream {"error":{..}}) into
 * one of PGW_E*: PGW_EUNAVAIL (retry on another endpoint), PGW_ENOTFOUND (also
 * "revision has been compacted"), PGW_EAUTH, PGW_EINVAL, PGW_EPROTO (also for an
 * unparsable body). message (may be NULL) gets etcd's text.
 */
int etcd_classify_error(const char *body, size_t len, char *message, size_t message_size);

/*
 * Incremental splitter for the watch stream (concatenated JSON objects, split at
 * arbitrary chunk boundaries). Feed bytes; for each complete object it calls the
 * parser which fills header/events and invokes cb. Exposed for unit tests.
 */
struct etcd_watch_stream;
struct etcd_watch_stream *etcd_watch_stream_new(etcd_watch_cb cb, void *arg);
void etcd_watch_stream_free(struct etcd_watch_stream *s);
/*
 * Returns 0 while the stream goes on, 1 when cb asked to stop, PGW_ENOTFOUND on a
 * compaction cancel (compact revision via etcd_watch_stream_compact_revision),
 * PGW_EPROTO on unparsable data, the etcd_classify_error code of an in-stream error
 * object, PGW_EAUTH on a cancel for an auth reason (e.g. token expired), PGW_EUNAVAIL
 * on any other cancel. Once non-zero, every later feed returns the same value.
 */
int etcd_watch_stream_feed(struct etcd_watch_stream *s, const char *data, size_t len);
int64_t etcd_watch_stream_compact_revision(const struct etcd_watch_stream *s);

#ifdef PGW_ETCD_INTERNAL
/*
 * Shared by src/etcd/etcd_*.c (and their unit tests) only: other modules must not
 * define PGW_ETCD_INTERNAL.
 */
#include <curl/curl.h>
#include <json-c/json.h>

struct etcd_client {
	CURL *curl;
	char *endpoints[ETCD_MAX_ENDPOINTS];
	size_t n_endpoints;
	size_t cur; /* index of the endpoint in use */
	int timeout_ms;
	char *username;
	char *password;
	char *cacert;
	char *cert;
	char *key;
	char *token; /* auth token, NULL until authenticated */
	struct curl_slist *headers;
	char errbuf[CURL_ERROR_SIZE];
};

/* etcd_client.c */
/* Resets c->curl and sets URL (current endpoint + path), body, headers, TLS, keepalive. */
int etcd_client_prepare(struct etcd_client *c, const char *path, const char *body) PGW_WUR;
/* Gets a token when auth is configured and none is held (force: always). */
int etcd_client_auth(struct etcd_client *c, int64_t deadline_ms, bool force) PGW_WUR;
/* true when an auth error message means "get a new token and retry". */
bool etcd_auth_error_retryable(const char *message);
/* Moves to the next endpoint. */
void etcd_client_next_endpoint(struct etcd_client *c);

/* etcd_json.c */
char *etcd_b64_encode(const void *data, size_t len);
/* Standard alphabet, padding optional; *out is NUL-terminated. */
int etcd_b64_decode(const char *in, size_t in_len, char **out, size_t *out_len) PGW_WUR;
char *etcd_build_delete_request(const char *key, const char *range_end);
char *etcd_build_grant_request(int ttl);
char *etcd_build_lease_id_request(int64_t id);
char *etcd_build_auth_request(const char *name, const char *password);
char *etcd_build_watch_request(const char *key, const char *range_end, int64_t start_revision);
int etcd_parse_put_response(const char *body, size_t len, int64_t *revision) PGW_WUR;
int etcd_parse_delete_response(const char *body, size_t len, int64_t *deleted) PGW_WUR;
int etcd_parse_grant_response(const char *body, size_t len, int64_t *id, int *ttl) PGW_WUR;
int etcd_parse_auth_response(const char *body, size_t len, char **token) PGW_WUR;
/* Classifies etcd's error text alone (as etcd_classify_error); fallback when unknown. */
int etcd_classify_message(const char *text, int fallback);

struct etcd_watch_message {
	struct etcd_header header;
	struct etcd_event *events;
	size_t n_events;
	bool created;
	bool canceled;
	int64_t compact_revision;
	/* 0, or the etcd_classify_error code of an {"error":..} object */
	int error;
	/* error message or cancel reason */
	char message[256];
};
int etcd_parse_watch_object(struct json_object *obj, struct etcd_watch_message *out) PGW_WUR;
void etcd_watch_message_free(struct etcd_watch_message *m);
#endif

#endif

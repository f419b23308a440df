/*
 * Unit tests of the etcd client's pure helpers: request JSON, response parsing,
 * error classification and the watch stream splitter.
 */
#define PGW_ETCD_INTERNAL
#include "etcd/etcd.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define HDR                                                                  \
	"\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":" \
	"\"13668033151171901709\","                                          \
	"\"revision\":\"42\",\"raft_term\":\"2\"}"

/* ---- base64 ------------------------------------------------------------ */

static void check_b64(const char *raw, size_t len, const char *enc)
{
	char *e = etcd_b64_encode(raw, len), *d = NULL;
	size_t dlen = 0;

	assert_non_null(e);
	assert_string_equal(e, enc);
	assert_int_equal(etcd_b64_decode(enc, strlen(enc), &d, &dlen), 0);
	assert_int_equal(dlen, len);
	assert_memory_equal(d, raw, len);
	assert_int_equal(d[dlen], '\0');
	free(e);
	free(d);
}

static void test_base64(void **state)
{
	char *d = NULL;
	size_t dlen = 0;

	(void)state;
	check_b64("", 0, "");
	check_b64("f", 1, "Zg==");
	check_b64("fo", 2, "Zm8=");
	check_b64("foo", 3, "Zm9v");
	check_b64("foob", 4, "Zm9vYg==");
	check_b64("\x00\xff\xfe/+", 5, "AP/+Lys=");
	check_b64("\xfb\xff", 2, "+/8=");

	/* missing padding is accepted */
	assert_int_equal(etcd_b64_decode("Zg", 2, &d, &dlen), 0);
	assert_int_equal(dlen, 1);
	assert_int_equal(d[0], 'f');
	free(d);

	assert_int_equal(etcd_b64_decode("Zm9*", 4, &d, &dlen), PGW_EPROTO);
	assert_null(d);
	assert_int_equal(etcd_b64_decode("Z", 1, &d, &dlen), PGW_EPROTO);
	assert_int_equal(etcd_b64_decode("Zg===", 5, &d, &dlen), PGW_EPROTO);
	assert_int_equal(etcd_b64_decode("Zg=", 3, &d, &dlen), PGW_EPROTO);
	assert_int_equal(etcd_b64_decode("Z=g=", 4, &d, &dlen), PGW_EPROTO);
}

/* ---- prefix range_end --------------------------------------------------- */

static void check_range_end(const char *prefix, const char *expect)
{
	char *end = etcd_prefix_range_end(prefix);

	assert_non_null(end);
	assert_string_equal(end, expect);
	free(end);
}

static void test_prefix_range_end(void **state)
{
	(void)state;
	check_range_end("/service/pg/", "/service/pg0");
	check_range_end("a", "b");
	check_range_end("a\xff", "b");
	check_range_end("a\xff\xff", "b");
	check_range_end("a\xfe", "a\xff");
	check_range_end("ab\xff", "ac");
	check_range_end("\xff", "");
	check_range_end("\xff\xff", "");
	check_range_end("", "");
}

/* ---- request builders --------------------------------------------------- */

static void check_json(char *got, const char *expect)
{
	assert_non_null(got);
	assert_string_equal(got, expect);
	free(got);
}

static void test_build_range(void **state)
{
	(void)state;
	check_json(etcd_build_range_request("foo", NULL), "{\"key\":\"Zm9v\"}");
	/* /service/pg/ .. /service/pg0 */
	check_json(etcd_build_range_request("/service/pg/", "/service/pg0"),
		   "{\"key\":\"L3NlcnZpY2UvcGcv\",\"range_end\":\"L3NlcnZpY2UvcGcw\"}");
	/* "" stands for the byte \0 when a range is involved: every key */
	check_json(etcd_build_range_request("", ""), "{\"key\":\"AA==\",\"range_end\":\"AA==\"}");
	check_json(etcd_build_range_request("a", ""), "{\"key\":\"YQ==\",\"range_end\":\"AA==\"}");
	check_json(etcd_build_delete_request("k", NULL), "{\"key\":\"aw==\"}");
	assert_null(etcd_build_range_request(NULL, NULL));
}

static void test_build_put(void **state)
{
	(void)state;
	check_json(etcd_build_put_request("foo", "bar", 3, 0),
		   "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}");
	/* lease ids above 2^53 travel as exact decimal strings */
	check_json(etcd_build_put_request("foo", "bar", 3, INT64_C(7587862357238392577)),
		   "{\"key\":\"Zm9v\",\"value\":\"YmFy\",\"lease\":\"7587862357238392577\"}");
	check_json(etcd_build_put_request("k", "a\0b", 3, 0),
		   "{\"key\":\"aw==\",\"value\":\"YQBi\"}");
	check_json(etcd_build_put_request("k", NULL, 0, 0), "{\"key\":\"aw==\",\"value\":\"\"}");
	/* base64 '/' is not escaped */
	check_json(etcd_build_put_request("k", "\xff\xff", 2, 0),
		   "{\"key\":\"aw==\",\"value\":\"//8=\"}");
}

static void test_build_txn(void **state)
{
	struct etcd_compare cmp[2] = {
	    {.key = "/l", .target = ETCD_CMP_CREATE, .result = ETCD_CMP_EQUAL, .number = 0},
	    {.key = "/l",
	     .target = ETCD_CMP_VALUE,
	     .result = ETCD_CMP_NOT_EQUAL,
	     .value = "me",
	     .value_len = 2},
	};
	struct etcd_op ok[2] = {
	    {.type = ETCD_OP_PUT,
	     .key = "/l",
	     .value = "me",
	     .value_len = 2,
	     .lease = INT64_C(9007199254740993)},
	    {.type = ETCD_OP_DELETE, .key = "/a", .range_end = "/b"},
	};
	struct etcd_op fail[1] = {{.type = ETCD_OP_RANGE, .key = "/l"}};
	struct etcd_compare others[3] = {
	    {.key = "k", .target = ETCD_CMP_MOD, .result = ETCD_CMP_LESS, .number = 12},
	    {.key = "k", .target = ETCD_CMP_VERSION, .result = ETCD_CMP_GREATER, .number = 1},
	    {.key = "k",
	     .target = ETCD_CMP_LEASE,
	     .result = ETCD_CMP_EQUAL,
	     .number = INT64_C(7587862357238392577)},
	};
	struct etcd_compare bad = {.key = "k", .target = (enum etcd_cmp_target)42};

	(void)state;
	check_json(etcd_build_txn_request(cmp, 2, ok, 2, fail, 1),
		   "{\"compare\":[{\"key\":\"L2w=\",\"target\":\"CREATE\",\"result\":\"EQUAL\","
		   "\"create_revision\":\"0\"},{\"key\":\"L2w=\",\"target\":\"VALUE\","
		   "\"result\":\"NOT_EQUAL\",\"value\":\"bWU=\"}],"
		   "\"success\":[{\"request_put\":{\"key\":\"L2w=\",\"value\":\"bWU=\","
		   "\"lease\":\"9007199254740993\"}},{\"request_delete_range\":{\"key\":\"L2E=\","
		   "\"range_end\":\"L2I=\"}}],"
		   "\"failure\":[{\"request_range\":{\"key\":\"L2w=\"}}]}");
	check_json(
	    etcd_build_txn_request(others, 3, NULL, 0, NULL, 0),
	    "{\"compare\":[{\"key\":\"aw==\",\"target\":\"MOD\",\"result\":\"LESS\","
	    "\"mod_revision\":\"12\"},{\"key\":\"aw==\",\"target\":\"VERSION\","
	    "\"result\":\"GREATER\",\"version\":\"1\"},{\"key\":\"aw==\",\"target\":\"LEASE\","
	    "\"result\":\"EQUAL\",\"lease\":\"7587862357238392577\"}],"
	    "\"success\":[],\"failure\":[]}");
	assert_null(etcd_build_txn_request(&bad, 1, NULL, 0, NULL, 0));
}

static void test_build_misc(void **state)
{
	(void)state;
	check_json(etcd_build_grant_request(30), "{\"TTL\":\"30\",\"ID\":\"0\"}");
	check_json(etcd_build_lease_id_request(INT64_C(7587862357238392577)),
		   "{\"ID\":\"7587862357238392577\"}");
	check_json(etcd_build_watch_request("/p/", "/p0", 17),
		   "{\"create_request\":{\"key\":\"L3Av\",\"range_end\":\"L3Aw\","
		   "\"start_revision\":\"17\",\"progress_notify\":true}}");
	check_json(etcd_build_watch_request("/p/", "/p0", 0),
		   "{\"create_request\":{\"key\":\"L3Av\",\"range_end\":\"L3Aw\","
		   "\"progress_notify\":true}}");
	check_json(etcd_build_auth_request("root", "s\"cret"),
		   "{\"name\":\"root\",\"password\":\"s\\\"cret\"}");
}

/* ---- response parsers --------------------------------------------------- */

static void test_parse_range(void **state)
{
	const char *body =
	    "{" HDR ",\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\","
	    "\"mod_revision\":\"9\",\"version\":\"3\",\"value\":\"YQBi\","
	    "\"lease\":\"7587862357238392577\"},{\"key\":\"YmFy\",\"create_revision\":5,"
	    "\"mod_revision\":\"5\",\"version\":\"1\"}],\"more\":true,\"count\":\"2\"}";
	struct etcd_range_result r;

	(void)state;
	assert_int_equal(etcd_parse_range_response(body, strlen(body), &r), 0);
	assert_true(r.header.cluster_id == UINT64_C(15118495548433857066));
	assert_true(r.header.member_id == UINT64_C(13668033151171901709));
	assert_int_equal(r.header.revision, 42);
	assert_int_equal(r.header.raft_term, 2);
	assert_int_equal(r.n_kvs, 2);
	assert_true(r.more);
	assert_int_equal(r.count, 2);
	assert_string_equal(r.kvs[0].key, "foo");
	assert_int_equal(r.kvs[0].key_len, 3);
	assert_int_equal(r.kvs[0].value_len, 3);
	assert_memory_equal(r.kvs[0].value, "a\0b", 3);
	assert_int_equal(r.kvs[0].create_revision, 2);
	assert_int_equal(r.kvs[0].mod_revision, 9);
	assert_int_equal(r.kvs[0].version, 3);
	assert_true(r.kvs[0].lease == INT64_C(7587862357238392577));
	/* absent value / lease */
	assert_string_equal(r.kvs[1].key, "bar");
	assert_string_equal(r.kvs[1].value, "");
	assert_int_equal(r.kvs[1].value_len, 0);
	assert_int_equal(r.kvs[1].lease, 0);
	assert_int_equal(r.kvs[1].create_revision, 5);
	etcd_range_result_free(&r);
	assert_null(r.kvs);
	assert_int_equal(r.n_kvs, 0);
}

static void test_parse_range_empty(void **state)
{
	const char *body = "{" HDR "}\n";
	struct etcd_range_result r;

	(void)state;
	assert_int_equal(etcd_parse_range_response(body, strlen(body), &r), 0);
	assert_int_equal(r.n_kvs, 0);
	assert_null(r.kvs);
	assert_false(r.more);
	assert_int_equal(r.count, 0);
	assert_int_equal(r.header.revision, 42);
	etcd_range_result_free(&r);
}

static void test_parse_bad(void **state)
{
	static const char *const bodies[] = {
	    "",
	    "{",
	    "[]",
	    "{\"header\":{\"revision\":\"abc\"}}",
	    "{\"header\":{\"revision\":\"99999999999999999999\"}}",
	    "{\"header\":{\"cluster_id\":\"-1\"}}",
	    "{\"header\":{\"revision\":1.5}}",
	    "{\"kvs\":[{\"key\":\"!!!\"}]}",
	    "{\"kvs\":{}}",
	    "{\"kvs\":[1]}",
	    "{\"more\":\"yes\"}",
	    "{\"kvs\":[{\"key\":\"Zm9v\"},{\"key\":\"Zm9v\",\"version\":\"x\"}]}",
	};
	struct etcd_range_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		int rc = etcd_parse_range_response(bodies[i], strlen(bodies[i]), &r);

		assert_int_equal(rc, PGW_EPROTO);
		assert_null(r.kvs);
		assert_int_equal(r.n_kvs, 0);
	}
	assert_int_equal(etcd_parse_range_response(NULL, 0, &r), PGW_EPROTO);
}

static void test_parse_int64_extremes(void **state)
{
	const char *body = "{\"header\":{\"revision\":\"9223372036854775807\","
			   "\"cluster_id\":\"18446744073709551615\"}}";
	struct etcd_range_result r;

	(void)state;
	assert_int_equal(etcd_parse_range_response(body, strlen(body), &r), 0);
	assert_true(r.header.revision == INT64_MAX);
	assert_true(r.header.cluster_id == UINT64_MAX);
	etcd_range_result_free(&r);
}

static void test_parse_txn(void **state)
{
	const char *ok =
	    "{" HDR ",\"succeeded\":true,\"responses\":["
	    "{\"response_put\":{\"header\":{\"revision\":\"43\"}}},"
	    "{\"response_delete_range\":{\"header\":{\"revision\":\"43\"},\"deleted\":\"2\"}},"
	    "{\"response_range\":{\"header\":{\"revision\":\"43\"},\"kvs\":[{\"key\":\"Zm9v\","
	    "\"value\":\"YmFy\",\"create_revision\":\"3\",\"mod_revision\":\"3\","
	    "\"version\":\"1\"}],\"count\":\"1\"}},{}]}";
	/* succeeded absent = false; a failed compare with no failure ops has no responses */
	const char *failed = "{" HDR "}";
	struct etcd_txn_result t;

	(void)state;
	assert_int_equal(etcd_parse_txn_response(ok, strlen(ok), &t), 0);
	assert_true(t.succeeded);
	assert_int_equal(t.header.revision, 42);
	assert_int_equal(t.n_responses, 4);
	assert_int_equal(t.responses[0].header.revision, 43);
	assert_int_equal(t.responses[0].n_kvs, 0);
	assert_int_equal(t.responses[1].count, 2);
	assert_int_equal(t.responses[2].n_kvs, 1);
	assert_string_equal(t.responses[2].kvs[0].key, "foo");
	assert_string_equal(t.responses[2].kvs[0].value, "bar");
	assert_int_equal(t.responses[2].count, 1);
	etcd_txn_result_free(&t);
	assert_null(t.responses);

	assert_int_equal(etcd_parse_txn_response(failed, strlen(failed), &t), 0);
	assert_false(t.succeeded);
	assert_int_equal(t.n_responses, 0);
	etcd_txn_result_free(&t);

	assert_int_equal(etcd_parse_txn_response("{\"succeeded\":1}", 15, &t), PGW_EPROTO);
}

static void test_parse_keepalive(void **state)
{
	const char *alive =
	    "{\"result\":{" HDR ",\"ID\":\"7587862357238392577\",\"TTL\":\"10\"}}\n";
	const char *gone = "{\"result\":{" HDR ",\"ID\":\"7587862357238392577\"}}";
	const char *err =
	    "{\"error\":{\"grpc_code\":14,\"http_code\":503,"
	    "\"message\":\"etcdserver: no leader\",\"http_status\":\"Service Unavailable\"}}";
	int64_t id;
	int ttl;

	(void)state;
	assert_int_equal(etcd_parse_keepalive_response(alive, strlen(alive), &id, &ttl), 0);
	assert_true(id == INT64_C(7587862357238392577));
	assert_int_equal(ttl, 10);
	assert_int_equal(etcd_parse_keepalive_response(gone, strlen(gone), &id, &ttl), 0);
	assert_true(id == INT64_C(7587862357238392577));
	assert_int_equal(ttl, 0);
	assert_int_equal(etcd_parse_keepalive_response(err, strlen(err), &id, &ttl), PGW_EUNAVAIL);
	assert_int_equal(etcd_parse_keepalive_response("{}", 2, &id, &ttl), PGW_EPROTO);
}

static void test_parse_others(void **state)
{
	const char *grant = "{" HDR ",\"ID\":\"7587862357238392577\",\"TTL\":\"2\"}";
	const char *put = "{" HDR "}";
	const char *del = "{" HDR ",\"deleted\":\"3\"}";
	const char *auth = "{" HDR ",\"token\":\"abc.42\"}";
	int64_t id = 0, n = -1;
	char *token;
	int ttl = 0;

	(void)state;
	assert_int_equal(etcd_parse_grant_response(grant, strlen(grant), &id, &ttl), 0);
	assert_true(id == INT64_C(7587862357238392577));
	assert_int_equal(ttl, 2);
	assert_int_equal(etcd_parse_grant_response(put, strlen(put), &id, &ttl), PGW_EPROTO);
	assert_int_equal(etcd_parse_put_response(put, strlen(put), &n), 0);
	assert_int_equal(n, 42);
	assert_int_equal(etcd_parse_delete_response(del, strlen(del), &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(etcd_parse_delete_response(put, strlen(put), &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(etcd_parse_auth_response(auth, strlen(auth), &token), 0);
	assert_string_equal(token, "abc.42");
	free(token);
}

/* ---- errors ------------------------------------------------------------ */

static void check_class(const char *body, int expect, const char *msg)
{
	char m[128];

	assert_int_equal(etcd_classify_error(body, strlen(body), m, sizeof(m)), expect);
	if (msg)
		assert_string_equal(m, msg);
}

#define UNARY(msg, code) "{\"error\":\"" msg "\",\"message\":\"" msg "\",\"code\":" #code "}"
#define STREAM(msg, code)                                                          \
	"{\"error\":{\"grpc_code\":" #code ",\"http_code\":500,\"message\":\"" msg \
	"\",\"http_status\":\"x\"}}"

static void test_classify(void **state)
{
	char small[8];

	(void)state;
	check_class(UNARY("etcdserver: no leader", 14), PGW_EUNAVAIL, "etcdserver: no leader");
	check_class(UNARY("etcdserver: request timed out", 14), PGW_EUNAVAIL, NULL);
	check_class(UNARY("etcdserver: not capable", 14), PGW_EUNAVAIL, NULL);
	/* message first: an Unknown code with a known "unavailable" text */
	check_class(UNARY("etcdserver: not a primary lessor", 2), PGW_EUNAVAIL, NULL);
	check_class(UNARY("etcdserver: requested lease not found", 5), PGW_ENOTFOUND, NULL);
	check_class(UNARY("etcdserver: mvcc: required revision has been compacted", 11),
		    PGW_ENOTFOUND, NULL);
	check_class(UNARY("etcdserver: invalid auth token", 16), PGW_EAUTH, NULL);
	check_class(UNARY("etcdserver: authentication failed, invalid user ID or password", 3),
		    PGW_EAUTH, NULL);
	check_class(UNARY("etcdserver: permission denied", 7), PGW_EAUTH, NULL);
	check_class(UNARY("etcdserver: too large lease TTL", 11), PGW_EINVAL, NULL);
	check_class(UNARY("etcdserver: duplicate key given in txn request", 3), PGW_EINVAL, NULL);
	check_class(UNARY("etcdserver: key is not provided", 3), PGW_EINVAL, NULL);
	/* unknown text: the gRPC code decides */
	check_class(UNARY("something new", 14), PGW_EUNAVAIL, "something new");
	check_class(UNARY("something new", 4), PGW_EUNAVAIL, NULL);
	check_class(UNARY("something new", 5), PGW_ENOTFOUND, NULL);
	check_class(UNARY("something new", 16), PGW_EAUTH, NULL);
	check_class(UNARY("something new", 3), PGW_EINVAL, NULL);
	check_class(UNARY("invalid character 'g' looking for beginning of value", 2), PGW_EPROTO,
		    NULL);
	check_class("{\"error\":\"x\",\"code\":\"14\"}", PGW_EUNAVAIL, "x");
	/* in-stream shape */
	check_class(STREAM("etcdserver: no leader", 14), PGW_EUNAVAIL, "etcdserver: no leader");
	check_class(STREAM("weird", 14), PGW_EUNAVAIL, "weird");
	check_class(STREAM("weird", 13), PGW_EPROTO, "weird");
	/* not an error body at all */
	check_class("<html>Bad Gateway</html>", PGW_EPROTO, "<html>Bad Gateway</html>");
	check_class("{\"header\":{}}", PGW_EPROTO, "");
	check_class("{\"error\":17}", PGW_EPROTO, "");
	assert_int_equal(etcd_classify_error("", 0, NULL, 0), PGW_EPROTO);
	/* message truncated to its buffer */
	assert_int_equal(etcd_classify_error(UNARY("etcdserver: no leader", 14),
					     strlen(UNARY("etcdserver: no leader", 14)), small,
					     sizeof(small)),
			 PGW_EUNAVAIL);
	assert_string_equal(small, "etcdser");
	assert_true(etcd_auth_error_retryable("etcdserver: invalid auth token"));
	assert_false(etcd_auth_error_retryable("etcdserver: authentication failed"));
}

/* ---- watch stream ------------------------------------------------------- */

struct seen {
	int calls;
	int events;
	int puts;
	int deletes;
	int64_t last_revision;
	char keys[8][32];
	int stop_after; /* cb returns false on this call number (0: never) */
};

static bool record(void *arg, const struct etcd_header *h, const struct etcd_event *ev, size_t n)
{
	struct seen *s = arg;

	s->calls++;
	s->last_revision = h->revision;
	for (size_t i = 0; i < n; i++) {
		if (s->events < 8)
			snprintf(s->keys[s->events], sizeof(s->keys[0]), "%s", ev[i].kv.key);
		s->events++;
		if (ev[i].type == ETCD_EVENT_PUT)
			s->puts++;
		else
			s->deletes++;
	}
	return s->stop_after == 0 || s->calls < s->stop_after;
}

#define W_HDR(rev) "\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\",\"revision\":\"" rev "\"}"

static const char watch_text[] = "{\"result\":{" W_HDR(
    "4") ",\"created\":true}}\n"
	 "{\"result\":{" W_HDR(
	     "5") ",\"events\":[{\"kv\":{\"key\":\"L3AvYQ==\",\"create_revision\":"
		  "\"5\",\"mod_revision\":\"5\",\"version\":\"1\",\"value\":\"MQ==\"}}]}}\n"
		  "{\"result\":{" W_HDR(
		      "7") ",\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":\"L3AvYQ==\","
			   "\"mod_revision\":\"6\"}},{\"type\":\"PUT\",\"kv\":{\"key\":\"L3AvYg=="
			   "\",\"mod_revision\":"
			   "\"7\"}}]}}\n";

static void check_watch_seen(const struct seen *s)
{
	assert_int_equal(s->calls, 3);
	assert_int_equal(s->events, 3);
	assert_int_equal(s->puts, 2);
	assert_int_equal(s->deletes, 1);
	assert_int_equal(s->last_revision, 7);
	assert_string_equal(s->keys[0], "/p/a");
	assert_string_equal(s->keys[1], "/p/a");
	assert_string_equal(s->keys[2], "/p/b");
}

/* Top-level objects fully contained in text[0..len) (no braces inside strings here). */
static int complete_objects(const char *text, size_t len)
{
	int depth = 0, n = 0;

	for (size_t i = 0; i < len; i++) {
		if (text[i] == '{')
			depth++;
		else if (text[i] == '}' && --depth == 0)
			n++;
	}
	return n;
}

static void test_watch_split_everywhere(void **state)
{
	size_t len = strlen(watch_text);

	(void)state;
	/* two chunks, split at every position */
	for (size_t cut = 0; cut <= len; cut++) {
		struct seen s = {0};
		struct etcd_watch_stream *w = etcd_watch_stream_new(record, &s);

		assert_non_null(w);
		assert_int_equal(etcd_watch_stream_feed(w, watch_text, cut), 0);
		/* every object complete in the first chunk is delivered at once */
		assert_int_equal(s.calls, complete_objects(watch_text, cut));
		assert_int_equal(etcd_watch_stream_feed(w, watch_text + cut, len - cut), 0);
		check_watch_seen(&s);
		etcd_watch_stream_free(w);
	}
	/* three chunks, split at every pair of positions */
	for (size_t a = 0; a <= len; a += 7) {
		for (size_t b = a; b <= len; b++) {
			struct seen s = {0};
			struct etcd_watch_stream *w = etcd_watch_stream_new(record, &s);

			assert_int_equal(etcd_watch_stream_feed(w, watch_text, a), 0);
			assert_int_equal(etcd_watch_stream_feed(w, watch_text + a, b - a), 0);
			assert_int_equal(etcd_watch_stream_feed(w, watch_text + b, len - b), 0);
			check_watch_seen(&s);
			etcd_watch_stream_free(w);
		}
	}
}

static void test_watch_byte_by_byte(void **state)
{
	struct seen s = {0};
	struct etcd_watch_stream *w = etcd_watch_stream_new(record, &s);

	(void)state;
	for (size_t i = 0; watch_text[i]; i++)
		assert_int_equal(etcd_watch_stream_feed(w, watch_text + i, 1), 0);
	check_watch_seen(&s);
	etcd_watch_stream_free(w);
}

static void test_watch_joined(void **state)
{
	/* objects glued without newlines, all in one chunk */
	static const char glued[] = "{\"result\":{" W_HDR(
	    "4") ",\"created\":true}}"
		 "{\"result\":{" W_HDR("5") ",\"events\":[{\"kv\":{\"key\":\"eA==\"}}]}}"
					    "{\"result\":{" W_HDR("6") "}}";
	struct seen s = {0};
	struct etcd_watch_stream *w = etcd_watch_stream_new(record, &s);

	(void)state;
	assert_int_equal(etcd_watch_stream_feed(w, glued, strlen(glued)), 0);
	assert_int_equal(s.calls, 3);
	assert_int_equal(s.events, 1);
	assert_int_equal(s.puts, 1);
	assert_string_equal(s.keys[0], "x");
	assert_int_equal(s.last_revision, 6);
	etcd_watch_stream_free(w);

	/* the whole sample in one chunk too */
	memset(&s, 0, sizeof(s));
	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, watch_text, strlen(watch_text)), 0);
	check_watch_seen(&s);
	etcd_watch_stream_free(w);
}

static void test_watch_stop_by_cb(void **state)
{
	struct seen s = {.stop_after = 2};
	struct etcd_watch_stream *w = etcd_watch_stream_new(record, &s);

	(void)state;
	assert_int_equal(etcd_watch_stream_feed(w, watch_text, strlen(watch_text)), 1);
	assert_int_equal(s.calls, 2);
	/* sticky: no more callbacks */
	assert_int_equal(etcd_watch_stream_feed(w, watch_text, strlen(watch_text)), 1);
	assert_int_equal(s.calls, 2);
	etcd_watch_stream_free(w);
}

static void test_watch_compacted(void **state)
{
	static const char text[] = "{\"result\":{" W_HDR(
	    "6") ",\"created\":true}}\n"
		 "{\"result\":{\"header\":{\"cluster_id\":\"1\"},\"canceled\":true,"
		 "\"compact_revision\":\"5\",\"cancel_reason\":\"mvcc: required revision has been "
		 "compacted\"}}\n";
	size_t len = strlen(text);

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		struct seen s = {0};
		struct etcd_watch_stream *w = etcd_watch_stream_new(record, &s);
		int rc = etcd_watch_stream_feed(w, text, cut);

		if (rc == 0)
			rc = etcd_watch_stream_feed(w, text + cut, len - cut);
		assert_int_equal(rc, PGW_ENOTFOUND);
		assert_int_equal(etcd_watch_stream_compact_revision(w), 5);
		assert_int_equal(s.calls, 1);
		etcd_watch_stream_free(w);
	}
}

static void test_watch_errors(void **state)
{
	static const char canceled[] = "{\"result\":{\"canceled\":true}}";
	/* what etcd 3.4 sends when the token has expired */
	static const char auth_cancel[] =
	    "{\"result\":{\"header\":{\"revision\":\"39\"},\"watch_id\":\"-1\",\"created\":true,"
	    "\"canceled\":true,\"cancel_reason\":\"rpc error: code = Unauthenticated desc = "
	    "etcdserver: invalid auth token\"}}";
	static const char in_stream[] = "{\"error\":{\"grpc_code\":14,\"message\":\"etcdserver: no "
					"leader\"}}";
	static const char unary[] = "{\"error\":\"etcdserver: invalid auth token\",\"code\":16}";
	static const char garbage[] = "{\"result\":{}}\nnot json";
	static const char bad_type[] = "{\"result\":{\"events\":[{\"type\":\"MOVE\",\"kv\":{}}]}}";
	static const char no_kv[] = "{\"result\":{\"events\":[{}]}}";
	static const char not_object[] = "[1]";
	struct seen s = {0};
	struct etcd_watch_stream *w;

	(void)state;
	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, canceled, strlen(canceled)), PGW_EUNAVAIL);
	assert_int_equal(etcd_watch_stream_compact_revision(w), 0);
	etcd_watch_stream_free(w);

	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, auth_cancel, strlen(auth_cancel)), PGW_EAUTH);
	etcd_watch_stream_free(w);

	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, in_stream, strlen(in_stream)), PGW_EUNAVAIL);
	etcd_watch_stream_free(w);

	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, unary, strlen(unary)), PGW_EAUTH);
	etcd_watch_stream_free(w);

	memset(&s, 0, sizeof(s));
	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, garbage, strlen(garbage)), PGW_EPROTO);
	assert_int_equal(s.calls, 1);
	assert_int_equal(etcd_watch_stream_feed(w, "{}", 2), PGW_EPROTO);
	etcd_watch_stream_free(w);

	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, bad_type, strlen(bad_type)), PGW_EPROTO);
	etcd_watch_stream_free(w);

	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, no_kv, strlen(no_kv)), PGW_EPROTO);
	etcd_watch_stream_free(w);

	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, not_object, strlen(not_object)), PGW_EPROTO);
	etcd_watch_stream_free(w);

	/* whitespace alone is not a message */
	memset(&s, 0, sizeof(s));
	w = etcd_watch_stream_new(record, &s);
	assert_int_equal(etcd_watch_stream_feed(w, "\n\r\n  ", 5), 0);
	assert_int_equal(etcd_watch_stream_feed(w, "", 0), 0);
	assert_int_equal(s.calls, 0);
	etcd_watch_stream_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base64),
	    cmocka_unit_test(test_prefix_range_end),
	    cmocka_unit_test(test_build_range),
	    cmocka_unit_test(test_build_put),
	    cmocka_unit_test(test_build_txn),
	    cmocka_unit_test(test_build_misc),
	    cmocka_unit_test(test_parse_range),
	    cmocka_unit_test(test_parse_range_empty),
	    cmocka_unit_test(test_parse_bad),
	    cmocka_unit_test(test_parse_int64_extremes),
	    cmocka_unit_test(test_parse_txn),
	    cmocka_unit_test(test_parse_keepalive),
	    cmocka_unit_test(test_parse_others),
	    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_watch_split_everywhere),
	    cmocka_unit_test(test_watch_byte_by_byte),
	    cmocka_unit_test(test_watch_joined),
	    cmocka_unit_test(test_watch_stop_by_cb),
	    cmocka_unit_test(test_watch_compacted),
	    cmocka_unit_test(test_watch_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

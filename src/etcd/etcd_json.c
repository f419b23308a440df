/*
 * etcd v3 JSON gateway encoding: request builders and response parsers (no I/O).
 *
 * Wire rules (grpc-gateway jsonpb): bytes fields are standard base64, 64-bit
 * integers come as strings (and may exceed 2^53, so never go through double),
 * zero values are omitted (absent = 0 / false / PUT).
 */
#define PGW_ETCD_INTERNAL
#include "etcd/etcd.h"
#include "common/base64.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- base64 (common/base64.h), in malloc'd strings ----------------------- */

char *etcd_b64_encode(const void *data, size_t len)
{
	size_t size = CMN_B64_LEN(len) + 1;
	char *out = len < SIZE_MAX / 2 ? malloc(size) : NULL;

	if (out && cmn_b64_encode(data, len, out, size) != PGW_OK) {
		free(out);
		out = NULL;
	}
	return out;
}

int etcd_b64_decode(const char *in, size_t in_len, char **out, size_t *out_len)
{
	char *buf = malloc(in_len / 4 * 3 + 3);
	int rc;

	*out = NULL;
	*out_len = 0;
	if (!buf)
		return PGW_ENOMEM;
	rc = cmn_b64_decode(in, in_len, false, buf, in_len / 4 * 3 + 2, out_len);
	if (rc != PGW_OK) {
		free(buf);
		*out_len = 0;
		return rc;
	}
	buf[*out_len] = '\0';
	*out = buf;
	return PGW_OK;
}

/* ---- request builders -------------------------------------------------- */

static char *json_finish(struct json_object *o)
{
	char *s = NULL;

	if (o) {
		const char *text = json_object_to_json_string_ext(
		    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		if (text)
			s = strdup(text);
		json_object_put(o);
	}
	return s;
}

static bool add_bytes(struct json_object *o, const char *name, const void *data, size_t len)
{
	char *enc = etcd_b64_encode(data, len);
	struct json_object *v;

	if (!enc)
		return false;
	v = json_object_new_string(enc);
	free(enc);
	return v && json_object_object_add(o, name, v) == 0;
}

static bool add_int64(struct json_object *o, const char *name, int64_t value)
{
	char text[32];
	struct json_object *v;

	snprintf(text, sizeof(text), "%lld", (long long)value);
	v = json_object_new_string(text);
	return v && json_object_object_add(o, name, v) == 0;
}

static bool add_string(struct json_object *o, const char *name, const char *value)
{
	struct json_object *v = json_object_new_string(value);

	return v && json_object_object_add(o, name, v) == 0;
}

/*
 * Adds key (and range_end): with a range, the empty key stands for the byte "\0";
 * the empty range_end always does.
 */
static bool add_key_range(struct json_object *o, const char *key, const char *range_end)
{
	if (!key)
		return false;
	if (range_end && key[0] == '\0') {
		if (!add_bytes(o, "key", "", 1))
			return false;
	} else if (!add_bytes(o, "key", key, strlen(key))) {
		return false;
	}
	if (range_end) {
		size_t len = range_end[0] == '\0' ? 1 : strlen(range_end);

		if (!add_bytes(o, "range_end", range_end, len))
			return false;
	}
	return true;
}

char *etcd_prefix_range_end(const char *prefix)
{
	size_t len = strlen(prefix);
	char *end = malloc(len + 1);

	if (!end)
		return NULL;
	memcpy(end, prefix, len + 1);
	while (len > 0 && (unsigned char)end[len - 1] == 0xff)
		len--;
	end[len] = '\0';
	if (len > 0)
		end[len - 1] = (char)((unsigned char)end[len - 1] + 1);
	return end;
}

static struct json_object *range_object(const char *key, const char *range_end)
{
	struct json_object *o = json_object_new_object();

	if (o && !add_key_range(o, key, range_end)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

char *etcd_build_range_request(const char *key, const char *range_end)
{
	return json_finish(range_object(key, range_end));
}

char *etcd_build_delete_request(const char *key, const char *range_end)
{
	return json_finish(range_object(key, range_end));
}

static struct json_object *put_object(const char *key, const char *value, size_t value_len,
				      int64_t lease)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if (!key || (!value && value_len > 0) || !add_bytes(o, "key", key, strlen(key)) ||
	    !add_bytes(o, "value", value ? value : "", value_len) ||
	    (lease != 0 && !add_int64(o, "lease", lease))) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

char *etcd_build_put_request(const char *key, const char *value, size_t value_len, int64_t lease)
{
	return json_finish(put_object(key, value, value_len, lease));
}

static struct json_object *compare_object(const struct etcd_compare *cmp)
{
	static const char *const results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
	struct json_object *o;
	bool ok;

	if (!cmp->key || (unsigned int)cmp->result > ETCD_CMP_NOT_EQUAL)
		return NULL;
	o = json_object_new_object();
	if (!o)
		return NULL;
	ok = add_bytes(o, "key", cmp->key, strlen(cmp->key));
	switch (cmp->target) {
	case ETCD_CMP_VERSION:
		ok = ok && add_string(o, "target", "VERSION") &&
		     add_string(o, "result", results[cmp->result]) &&
		     add_int64(o, "version", cmp->number);
		break;
	case ETCD_CMP_CREATE:
		ok = ok && add_string(o, "target", "CREATE") &&
		     add_string(o, "result", results[cmp->result]) &&
		     add_int64(o, "create_revision", cmp->number);
		break;
	case ETCD_CMP_MOD:
		ok = ok && add_string(o, "target", "MOD") &&
		     add_string(o, "result", results[cmp->result]) &&
		     add_int64(o, "mod_revision", cmp->number);
		break;
	case ETCD_CMP_VALUE:
		ok = ok && (cmp->value || cmp->value_len == 0) &&
		     add_string(o, "target", "VALUE") &&
		     add_string(o, "result", results[cmp->result]) &&
		     add_bytes(o, "value", cmp->value ? cmp->value : "", cmp->value_len);
		break;
	case ETCD_CMP_LEASE:
		ok = ok && add_string(o, "target", "LEASE") &&
		     add_string(o, "result", results[cmp->result]) &&
		     add_int64(o, "lease", cmp->number);
		break;
	default:
		ok = false;
		break;
	}
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static struct json_object *op_object(const struct etcd_op *op)
{
	struct json_object *o, *inner;
	const char *name;

	switch (op->type) {
	case ETCD_OP_PUT:
		name = "request_put";
		inner = put_object(op->key, op->value, op->value_len, op->lease);
		break;
	case ETCD_OP_DELETE:
		name = "request_delete_range";
		inner = range_object(op->key, op->range_end);
		break;
	case ETCD_OP_RANGE:
		name = "request_range";
		inner = range_object(op->key, op->range_end);
		break;
	default:
		return NULL;
	}
	if (!inner)
		return NULL;
	o = json_object_new_object();
	if (!o || json_object_object_add(o, name, inner) != 0) {
		json_object_put(inner);
		json_object_put(o);
		return NULL;
	}
	return o;
}

static bool add_ops(struct json_object *o, const char *name, const struct etcd_op *ops, size_t n)
{
	struct json_object *arr = json_object_new_array();

	if (!arr || json_object_object_add(o, name, arr) != 0) {
		json_object_put(arr);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *item = op_object(&ops[i]);

		if (!item || json_object_array_add(arr, item) != 0) {
			json_object_put(item);
			return false;
		}
	}
	return true;
}

char *etcd_build_txn_request(const struct etcd_compare *cmp, size_t n_cmp,
			     const struct etcd_op *success, size_t n_success,
			     const struct etcd_op *failure, size_t n_failure)
{
	struct json_object *o = json_object_new_object();
	struct json_object *arr = json_object_new_array();

	if (!o || !arr || json_object_object_add(o, "compare", arr) != 0) {
		json_object_put(arr);
		json_object_put(o);
		return NULL;
	}
	for (size_t i = 0; i < n_cmp; i++) {
		struct json_object *item = compare_object(&cmp[i]);

		if (!item || json_object_array_add(arr, item) != 0) {
			json_object_put(item);
			json_object_put(o);
			return NULL;
		}
	}
	if (!add_ops(o, "success", success, n_success) ||
	    !add_ops(o, "failure", failure, n_failure)) {
		json_object_put(o);
		return NULL;
	}
	return json_finish(o);
}

char *etcd_build_grant_request(int ttl)
{
	struct json_object *o = json_object_new_object();

	if (o && (!add_int64(o, "TTL", ttl) || !add_int64(o, "ID", 0))) {
		json_object_put(o);
		o = NULL;
	}
	return json_finish(o);
}

char *etcd_build_lease_id_request(int64_t id)
{
	struct json_object *o = json_object_new_object();

	if (o && !add_int64(o, "ID", id)) {
		json_object_put(o);
		o = NULL;
	}
	return json_finish(o);
}

char *etcd_build_auth_request(const char *name, const char *password)
{
	struct json_object *o = json_object_new_object();

	if (o && (!name || !password || !add_string(o, "name", name) ||
		  !add_string(o, "password", password))) {
		json_object_put(o);
		o = NULL;
	}
	return json_finish(o);
}

char *etcd_build_watch_request(const char *key, const char *range_end, int64_t start_revision)
{
	struct json_object *o = json_object_new_object();
	struct json_object *create = range_object(key, range_end);

	if (!o || !create || json_object_object_add(o, "create_request", create) != 0) {
		json_object_put(create);
		json_object_put(o);
		return NULL;
	}
	if ((start_revision > 0 && !add_int64(create, "start_revision", start_revision)) ||
	    json_object_object_add(create, "progress_notify", json_object_new_boolean(1)) != 0) {
		json_object_put(o);
		return NULL;
	}
	return json_finish(o);
}

/* ---- response field readers -------------------------------------------- */

/* Absent fields read as zero; a malformed one is PGW_EPROTO. */
static int get_int64(struct json_object *o, const char *name, int64_t *out)
{
	struct json_object *v;

	*out = 0;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
		return PGW_OK;
	if (json_object_is_type(v, json_type_int)) {
		errno = 0;
		*out = json_object_get_int64(v);
		if (errno != 0)
			return PGW_EPROTO;
		return PGW_OK;
	}
	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);
		char *end;
		long long x;

		errno = 0;
		x = strtoll(s, &end, 10);
		if (errno != 0 || end == s || *end != '\0')
			return PGW_EPROTO;
		*out = x;
		return PGW_OK;
	}
	return PGW_EPROTO;
}

static int get_uint64(struct json_object *o, const char *name, uint64_t *out)
{
	struct json_object *v;

	*out = 0;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
		return PGW_OK;
	if (json_object_is_type(v, json_type_int)) {
		int64_t x = json_object_get_int64(v);

		if (x < 0)
			return PGW_EPROTO;
		*out = json_object_get_uint64(v);
		return PGW_OK;
	}
	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);
		char *end;
		unsigned long long x;

		if (*s < '0' || *s > '9')
			return PGW_EPROTO;
		errno = 0;
		x = strtoull(s, &end, 10);
		if (errno != 0 || *end != '\0')
			return PGW_EPROTO;
		*out = x;
		return PGW_OK;
	}
	return PGW_EPROTO;
}

static int get_bool(struct json_object *o, const char *name, bool *out)
{
	struct json_object *v;

	*out = false;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
		return PGW_OK;
	if (!json_object_is_type(v, json_type_boolean))
		return PGW_EPROTO;
	*out = json_object_get_boolean(v);
	return PGW_OK;
}

/* Optional object member: NULL when absent, PGW_EPROTO when not an object. */
static int get_object(struct json_object *o, const char *name, struct json_object **out)
{
	struct json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
		return PGW_OK;
	if (!json_object_is_type(v, json_type_object))
		return PGW_EPROTO;
	*out = v;
	return PGW_OK;
}

static int get_array(struct json_object *o, const char *name, struct json_object **out)
{
	struct json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null))
		return PGW_OK;
	if (!json_object_is_type(v, json_type_array))
		return PGW_EPROTO;
	*out = v;
	return PGW_OK;
}

/* base64 bytes field; absent gives "" (allocated). */
static int get_bytes(struct json_object *o, const char *name, char **out, size_t *len)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || json_object_is_type(v, json_type_null)) {
		*out = strdup("");
		*len = 0;
		return *out ? PGW_OK : PGW_ENOMEM;
	}
	if (!json_object_is_type(v, json_type_string)) {
		*out = NULL;
		*len = 0;
		return PGW_EPROTO;
	}
	return etcd_b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v),
			       out, len);
}

static const char *get_string(struct json_object *o, const char *name)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static int parse_header(struct json_object *o, struct etcd_header *h)
{
	struct json_object *hdr;
	int rc;

	memset(h, 0, sizeof(*h));
	rc = get_object(o, "header", &hdr);
	if (rc != 0 || !hdr)
		return rc;
	if (get_uint64(hdr, "cluster_id", &h->cluster_id) != 0 ||
	    get_uint64(hdr, "member_id", &h->member_id) != 0 ||
	    get_int64(hdr, "revision", &h->revision) != 0 ||
	    get_uint64(hdr, "raft_term", &h->raft_term) != 0)
		return PGW_EPROTO;
	return PGW_OK;
}

static void kv_free(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

static int parse_kv(struct json_object *o, struct etcd_kv *kv)
{
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!json_object_is_type(o, json_type_object))
		return PGW_EPROTO;
	rc = get_bytes(o, "key", &kv->key, &kv->key_len);
	if (rc == 0)
		rc = get_bytes(o, "value", &kv->value, &kv->value_len);
	if (rc == 0 &&
	    (get_int64(o, "create_revision", &kv->create_revision) != 0 ||
	     get_int64(o, "mod_revision", &kv->mod_revision) != 0 ||
	     get_int64(o, "version", &kv->version) != 0 || get_int64(o, "lease", &kv->lease) != 0))
		rc = PGW_EPROTO;
	if (rc != 0)
		kv_free(kv);
	return rc;
}

/* ---- errors ------------------------------------------------------------ */

static void copy_message(char *dst, size_t size, const char *src, size_t len)
{
	size_t n = 0;

	if (!dst || size == 0)
		return;
	for (size_t i = 0; i < len && n + 1 < size; i++) {
		unsigned char ch = (unsigned char)src[i];

		if (ch == '\0')
			break;
		dst[n++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	dst[n] = '\0';
}

static const struct {
	const char *text;
	int err;
} error_texts[] = {
    {"no leader", PGW_EUNAVAIL},
    {"request timed out", PGW_EUNAVAIL},
    {"not capable", PGW_EUNAVAIL},
    {"leader changed", PGW_EUNAVAIL},
    {"not a primary lessor", PGW_EUNAVAIL},
    {"server stopped", PGW_EUNAVAIL},
    {"too many requests", PGW_EUNAVAIL},
    {"unhealthy cluster", PGW_EUNAVAIL},
    {"corrupt cluster", PGW_EUNAVAIL},
    {"required revision has been compacted", PGW_ENOTFOUND},
    {"requested lease not found", PGW_ENOTFOUND},
    {"not found", PGW_ENOTFOUND},
    {"invalid auth token", PGW_EAUTH},
    {"authentication failed", PGW_EAUTH},
    {"permission denied", PGW_EAUTH},
    {"user name is empty", PGW_EAUTH},
    {"revision of auth store is old", PGW_EAUTH},
    {"auth: ", PGW_EAUTH},
    {"too large lease TTL", PGW_EINVAL},
    {"too many operations in txn", PGW_EINVAL},
    {"duplicate key given in txn", PGW_EINVAL},
    {"request is too large", PGW_EINVAL},
    {"key is not provided", PGW_EINVAL},
    {"is a future revision", PGW_EINVAL},
    {"value is provided", PGW_EINVAL},
    {"lease is provided", PGW_EINVAL},
};

int etcd_classify_message(const char *text, int fallback)
{
	if (text) {
		for (size_t i = 0; i < sizeof(error_texts) / sizeof(error_texts[0]); i++) {
			if (strstr(text, error_texts[i].text))
				return error_texts[i].err;
		}
	}
	return fallback;
}

static int classify_code(int64_t code)
{
	switch (code) {
	case 1:	 /* Canceled */
	case 4:	 /* DeadlineExceeded */
	case 8:	 /* ResourceExhausted */
	case 10: /* Aborted */
	case 14: /* Unavailable */
		return PGW_EUNAVAIL;
	case 5: /* NotFound */
		return PGW_ENOTFOUND;
	case 7:	 /* PermissionDenied */
	case 16: /* Unauthenticated */
		return PGW_EAUTH;
	case 3:	 /* InvalidArgument */
	case 6:	 /* AlreadyExists */
	case 9:	 /* FailedPrecondition */
	case 11: /* OutOfRange */
		return PGW_EINVAL;
	default:
		return PGW_EPROTO;
	}
}

/* Classifies a parsed {"error":..} object (unary or in-stream shape). */
static int classify_object(struct json_object *root, char *message, size_t message_size)
{
	struct json_object *err, *holder;
	const char *text = NULL, *code_name;
	int64_t code = -1;

	if (message && message_size > 0)
		message[0] = '\0';
	if (!json_object_object_get_ex(root, "error", &err))
		return PGW_EPROTO;
	if (json_object_is_type(err, json_type_object)) {
		holder = err;
		code_name = "grpc_code";
		text = get_string(err, "message");
	} else if (json_object_is_type(err, json_type_string)) {
		holder = root;
		code_name = "code";
		text = get_string(root, "message");
		if (!text || !*text)
			text = json_object_get_string(err);
	} else {
		return PGW_EPROTO;
	}
	if (json_object_object_get_ex(holder, code_name, NULL) &&
	    get_int64(holder, code_name, &code) != 0)
		code = -1;
	if (text)
		copy_message(message, message_size, text, strlen(text));
	return etcd_classify_message(text, classify_code(code));
}

static int parse_body(const char *body, size_t len, struct json_object **out)
{
	struct json_tokener *tok;
	struct json_object *o;

	*out = NULL;
	if (!body || len == 0 || len > INT_MAX)
		return PGW_EPROTO;
	tok = json_tokener_new();
	if (!tok)
		return PGW_ENOMEM;
	o = json_tokener_parse_ex(tok, body, (int)len);
	json_tokener_free(tok);
	if (!o)
		return PGW_EPROTO;
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return PGW_EPROTO;
	}
	*out = o;
	return PGW_OK;
}

int etcd_classify_error(const char *body, size_t len, char *message, size_t message_size)
{
	struct json_object *o;
	int rc;

	if (message && message_size > 0)
		message[0] = '\0';
	if (parse_body(body, len, &o) != 0) {
		if (body)
			copy_message(message, message_size, body, len);
		return PGW_EPROTO;
	}
	rc = classify_object(o, message, message_size);
	json_object_put(o);
	return rc;
}

/* Parses body; a body carrying "error" gives its classification. */
static int parse_reply(const char *body, size_t len, struct json_object **out)
{
	int rc = parse_body(body, len, out);

	if (rc == 0 && json_object_object_get_ex(*out, "error", NULL)) {
		rc = classify_object(*out, NULL, 0);
		json_object_put(*out);
		*out = NULL;
	}
	return rc;
}

/* ---- responses --------------------------------------------------------- */

void etcd_range_result_free(struct etcd_range_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_kvs; i++)
		kv_free(&r->kvs[i]);
	free(r->kvs);
	memset(r, 0, sizeof(*r));
}

static int parse_range_object(struct json_object *o, struct etcd_range_result *out)
{
	struct json_object *kvs;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (parse_header(o, &out->header) != 0 || get_bool(o, "more", &out->more) != 0 ||
	    get_int64(o, "count", &out->count) != 0 || get_array(o, "kvs", &kvs) != 0)
		return PGW_EPROTO;
	n = kvs ? json_object_array_length(kvs) : 0;
	if (n == 0)
		return PGW_OK;
	out->kvs = calloc(n, sizeof(*out->kvs));
	if (!out->kvs)
		return PGW_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int rc = parse_kv(json_object_array_get_idx(kvs, i), &out->kvs[i]);

		if (rc != 0) {
			etcd_range_result_free(out);
			return rc;
		}
		out->n_kvs++;
	}
	return PGW_OK;
}

int etcd_parse_range_response(const char *body, size_t len, struct etcd_range_result *out)
{
	struct json_object *o;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = parse_reply(body, len, &o);
	if (rc != 0)
		return rc;
	rc = parse_range_object(o, out);
	json_object_put(o);
	return rc;
}

void etcd_txn_result_free(struct etcd_txn_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_responses; i++)
		etcd_range_result_free(&r->responses[i]);
	free(r->responses);
	memset(r, 0, sizeof(*r));
}

static int parse_txn_response_item(struct json_object *item, struct etcd_range_result *out)
{
	struct json_object *v;

	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(item, json_type_object))
		return PGW_EPROTO;
	if (get_object(item, "response_range", &v) != 0)
		return PGW_EPROTO;
	if (v)
		return parse_range_object(v, out);
	if (get_object(item, "response_delete_range", &v) != 0)
		return PGW_EPROTO;
	if (v) {
		if (parse_header(v, &out->header) != 0 || get_int64(v, "deleted", &out->count) != 0)
			return PGW_EPROTO;
		return PGW_OK;
	}
	if (get_object(item, "response_put", &v) != 0 ||
	    (!v && get_object(item, "response_txn", &v) != 0))
		return PGW_EPROTO;
	if (v)
		return parse_header(v, &out->header);
	return PGW_OK; /* an empty response object (all fields zero) */
}

int etcd_parse_txn_response(const char *body, size_t len, struct etcd_txn_result *out)
{
	struct json_object *o, *arr;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = parse_reply(body, len, &o);
	if (rc != 0)
		return rc;
	if (parse_header(o, &out->header) != 0 || get_bool(o, "succeeded", &out->succeeded) != 0 ||
	    get_array(o, "responses", &arr) != 0) {
		rc = PGW_EPROTO;
		goto out;
	}
	n = arr ? json_object_array_length(arr) : 0;
	if (n > 0) {
		out->responses = calloc(n, sizeof(*out->responses));
		if (!out->responses) {
			rc = PGW_ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		rc = parse_txn_response_item(json_object_array_get_idx(arr, i), &out->responses[i]);
		if (rc != 0)
			goto out;
		out->n_responses++;
	}
out:
	if (rc != 0)
		etcd_txn_result_free(out);
	json_object_put(o);
	return rc;
}

int etcd_parse_put_response(const char *body, size_t len, int64_t *revision)
{
	struct json_object *o;
	struct etcd_header h;
	int rc;

	rc = parse_reply(body, len, &o);
	if (rc != 0)
		return rc;
	rc = parse_header(o, &h);
	json_object_put(o);
	if (rc == 0 && revision)
		*revision = h.revision;
	return rc;
}

int etcd_parse_delete_response(const char *body, size_t len, int64_t *deleted)
{
	struct json_object *o;
	struct etcd_header h;
	int64_t n = 0;
	int rc;

	rc = parse_reply(body, len, &o);
	if (rc != 0)
		return rc;
	if (parse_header(o, &h) != 0 || get_int64(o, "deleted", &n) != 0)
		rc = PGW_EPROTO;
	json_object_put(o);
	if (rc == 0 && deleted)
		*deleted = n;
	return rc;
}

static int ttl_to_int(int64_t ttl, int *out)
{
	if (ttl < INT_MIN || ttl > INT_MAX)
		return PGW_EPROTO;
	*out = (int)ttl;
	return PGW_OK;
}

int etcd_parse_grant_response(const char *body, size_t len, int64_t *id, int *ttl)
{
	struct json_object *o;
	int64_t lid = 0, lttl = 0;
	int rc;

	rc = parse_reply(body, len, &o);
	if (rc != 0)
		return rc;
	if (get_int64(o, "ID", &lid) != 0 || get_int64(o, "TTL", &lttl) != 0 || lid == 0 ||
	    lttl <= 0)
		rc = PGW_EPROTO;
	json_object_put(o);
	if (rc == 0)
		rc = ttl_to_int(lttl, ttl);
	if (rc == 0)
		*id = lid;
	return rc;
}

int etcd_parse_keepalive_response(const char *body, size_t len, int64_t *id, int *ttl)
{
	struct json_object *o, *res;
	int64_t lid = 0, lttl = 0;
	int rc;

	*id = 0;
	*ttl = 0;
	rc = parse_reply(body, len, &o);
	if (rc != 0)
		return rc;
	if (get_object(o, "result", &res) != 0 || !res || get_int64(res, "ID", &lid) != 0 ||
	    get_int64(res, "TTL", &lttl) != 0)
		rc = PGW_EPROTO;
	json_object_put(o);
	if (rc == 0)
		rc = ttl_to_int(lttl < 0 ? 0 : lttl, ttl);
	if (rc == 0)
		*id = lid;
	return rc;
}

int etcd_parse_auth_response(const char *body, size_t len, char **token)
{
	struct json_object *o;
	const char *t;
	int rc;

	*token = NULL;
	rc = parse_reply(body, len, &o);
	if (rc != 0)
		return rc;
	t = get_string(o, "token");
	if (!t || !*t)
		rc = PGW_EPROTO;
	else if (!(*token = strdup(t)))
		rc = PGW_ENOMEM;
	json_object_put(o);
	return rc;
}

/* ---- watch messages ---------------------------------------------------- */

void etcd_watch_message_free(struct etcd_watch_message *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_events; i++)
		kv_free(&m->events[i].kv);
	free(m->events);
	memset(m, 0, sizeof(*m));
}

static int parse_event(struct json_object *o, struct etcd_event *ev)
{
	struct json_object *type, *kv;

	memset(ev, 0, sizeof(*ev));
	if (!json_object_is_type(o, json_type_object))
		return PGW_EPROTO;
	if (json_object_object_get_ex(o, "type", &type) &&
	    !json_object_is_type(type, json_type_null)) {
		if (json_object_is_type(type, json_type_string)) {
			const char *t = json_object_get_string(type);

			if (strcmp(t, "DELETE") == 0)
				ev->type = ETCD_EVENT_DELETE;
			else if (strcmp(t, "PUT") != 0)
				return PGW_EPROTO;
		} else if (json_object_is_type(type, json_type_int)) {
			int64_t t = json_object_get_int64(type);

			if (t == 1)
				ev->type = ETCD_EVENT_DELETE;
			else if (t != 0)
				return PGW_EPROTO;
		} else {
			return PGW_EPROTO;
		}
	}
	if (get_object(o, "kv", &kv) != 0 || !kv)
		return PGW_EPROTO;
	return parse_kv(kv, &ev->kv);
}

int etcd_parse_watch_object(struct json_object *obj, struct etcd_watch_message *out)
{
	struct json_object *res, *events;
	const char *reason;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!obj || !json_object_is_type(obj, json_type_object))
		return PGW_EPROTO;
	if (json_object_object_get_ex(obj, "error", NULL)) {
		out->error = classify_object(obj, out->message, sizeof(out->message));
		return PGW_OK;
	}
	if (get_object(obj, "result", &res) != 0 || !res)
		return PGW_EPROTO;
	if (parse_header(res, &out->header) != 0 || get_bool(res, "created", &out->created) != 0 ||
	    get_bool(res, "canceled", &out->canceled) != 0 ||
	    get_int64(res, "compact_revision", &out->compact_revision) != 0 ||
	    get_array(res, "events", &events) != 0)
		return PGW_EPROTO;
	reason = get_string(res, "cancel_reason");
	if (reason)
		copy_message(out->message, sizeof(out->message), reason, strlen(reason));
	n = events ? json_object_array_length(events) : 0;
	if (n == 0)
		return PGW_OK;
	out->events = calloc(n, sizeof(*out->events));
	if (!out->events)
		return PGW_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		rc = parse_event(json_object_array_get_idx(events, i), &out->events[i]);
		if (rc != 0) {
			etcd_watch_message_free(out);
			return rc;
		}
		out->n_events++;
	}
	return PGW_OK;
}

/*
 * etcd v3 client transport: unary JSON gateway calls over libcurl with a deadline
 * per call, endpoint failover and optional user/password authentication.
 */
#define PGW_ETCD_INTERNAL
#include "etcd/etcd.h"

#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS   5000
#define MAX_RESPONSE_BYTES   (64u * 1024 * 1024)
#define RESPONSE_START_BYTES 4096
#define MIN_ATTEMPT_MS	     100

struct buf {
	struct cmn_buf b;
	bool overflow; /* larger than MAX_RESPONSE_BYTES, or out of memory */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_ALL);
}

static size_t buf_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;
	size_t n = size * nmemb;

	/* 4 kB from the start: most answers (an auth token among them, scrubbed after)
	 * fit, and no smaller copy is left behind in freed memory. */
	if (!b->b.cap && (b->b.data = malloc(RESPONSE_START_BYTES)) != NULL) {
		b->b.cap = RESPONSE_START_BYTES;
		b->b.data[0] = '\0';
	}
	if (n > MAX_RESPONSE_BYTES - b->b.len || cmn_buf_append(&b->b, ptr, n) != PGW_OK) {
		b->overflow = true;
		return 0;
	}
	return n;
}

static void buf_free(struct buf *b)
{
	cmn_buf_free(&b->b);
	b->overflow = false;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static int dup_opt(const char *src, char **dst)
{
	*dst = NULL;
	if (!src || !*src)
		return PGW_OK;
	*dst = strdup(src);
	return *dst ? PGW_OK : PGW_ENOMEM;
}

static int parse_endpoints(struct etcd_client *c, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	int rc = PGW_OK;

	if (!copy)
		return PGW_ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t len;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		len = strlen(tok);
		while (len > 0 &&
		       (tok[len - 1] == ' ' || tok[len - 1] == '\t' || tok[len - 1] == '/'))
			tok[--len] = '\0';
		if (len == 0)
			continue;
		if (strncmp(tok, "http://", 7) != 0 && strncmp(tok, "https://", 8) != 0) {
			log_error("etcd: endpoint \"%s\" must start with http:// or https://", tok);
			rc = PGW_EINVAL;
			break;
		}
		if (c->n_endpoints == ETCD_MAX_ENDPOINTS) {
			log_error("etcd: more than %d endpoints given", ETCD_MAX_ENDPOINTS);
			rc = PGW_EINVAL;
			break;
		}
		c->endpoints[c->n_endpoints] = strdup(tok);
		if (!c->endpoints[c->n_endpoints]) {
			rc = PGW_ENOMEM;
			break;
		}
		c->n_endpoints++;
	}
	free(copy);
	if (rc == 0 && c->n_endpoints == 0) {
		log_error("etcd: no endpoint given");
		rc = PGW_EINVAL;
	}
	return rc;
}

int etcd_client_new(const struct etcd_client_opts *opts, struct etcd_client **out)
{
	struct etcd_client *c;
	int rc;

	*out = NULL;
	if (!opts || !opts->endpoints) {
		log_error("etcd: no endpoints configured");
		return PGW_EINVAL;
	}
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK) {
		log_error("etcd: curl_global_init failed: %s",
			  curl_easy_strerror(curl_init_result));
		return PGW_ERR;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_error("etcd: out of memory creating client");
		return PGW_ENOMEM;
	}
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	rc = parse_endpoints(c, opts->endpoints);
	if (rc == 0)
		rc = dup_opt(opts->username, &c->username);
	if (rc == 0 && c->username) {
		c->password = strdup(opts->password ? opts->password : "");
		if (!c->password)
			rc = PGW_ENOMEM;
	}
	if (rc == 0)
		rc = dup_opt(opts->cacert, &c->cacert);
	if (rc == 0)
		rc = dup_opt(opts->cert, &c->cert);
	if (rc == 0)
		rc = dup_opt(opts->key, &c->key);
	if (rc == 0) {
		c->curl = curl_easy_init();
		if (!c->curl) {
			log_error("etcd: curl_easy_init failed");
			rc = PGW_ERR;
		}
	}
	if (rc != 0) {
		if (rc == PGW_ENOMEM)
			log_error("etcd: out of memory creating client");
		etcd_client_free(c);
		return rc;
	}
	*out = c;
	return PGW_OK;
}

void etcd_client_free(struct etcd_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	curl_slist_free_all(c->headers);
	for (size_t i = 0; i < c->n_endpoints; i++)
		free(c->endpoints[i]);
	free(c->username);
	free_secret(c->password);
	free_secret(c->token);
	free(c->cacert);
	free(c->cert);
	free(c->key);
	free(c);
}

void etcd_client_set_timeout(struct etcd_client *c, int timeout_ms)
{
	if (c && timeout_ms > 0)
		c->timeout_ms = timeout_ms;
}

const char *etcd_client_endpoint(const struct etcd_client *c)
{
	return c->endpoints[c->cur];
}

void etcd_client_next_endpoint(struct etcd_client *c)
{
	c->cur = (c->cur + 1) % c->n_endpoints;
}

bool etcd_auth_error_retryable(const char *message)
{
	return strstr(message, "invalid auth token") || strstr(message, "user name is empty") ||
	       strstr(message, "revision of auth store is old");
}

static bool slist_add(struct curl_slist **list, const char *line)
{
	struct curl_slist *n = curl_slist_append(*list, line);

	if (!n)
		return false;
	*list = n;
	return true;
}

static int build_headers(struct etcd_client *c)
{
	struct curl_slist *h = NULL;
	char *auth = NULL;
	int rc = PGW_ENOMEM;

	curl_slist_free_all(c->headers);
	c->headers = NULL;
	if (c->token) {
		size_t len = strlen(c->token) + sizeof("Authorization: ");

		auth = malloc(len);
		if (!auth)
			return PGW_ENOMEM;
		snprintf(auth, len, "Authorization: %s", c->token);
	}
	/*
	 * hasleader: a member cut off from the etcd leader refuses at once (and cancels
	 * our watch) instead of serving stale data or hanging until the timeout.
	 */
	if (slist_add(&h, "Content-Type: application/json") && slist_add(&h, "Expect:") &&
	    slist_add(&h, "Grpc-Metadata-hasleader: true") && (!auth || slist_add(&h, auth))) {
		c->headers = h;
		h = NULL;
		rc = PGW_OK;
	}
	curl_slist_free_all(h);
	free_secret(auth);
	return rc;
}

int etcd_client_prepare(struct etcd_client *c, const char *path, const char *body)
{
	char url[1024];
	CURL *h = c->curl;
	int n;

	n = snprintf(url, sizeof(url), "%s%s", c->endpoints[c->cur], path);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		log_error("etcd: endpoint URL too long: %s", c->endpoints[c->cur]);
		return PGW_EINVAL;
	}
	if (build_headers(c) != 0) {
		log_error("etcd: out of memory building request headers");
		return PGW_ENOMEM;
	}
	curl_easy_reset(h);
	c->errbuf[0] = '\0';
	if (curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body)) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK) {
		log_error("etcd: cannot set up request to %s", url);
		return PGW_ENOMEM;
	}
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 5L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 3L);
	curl_easy_setopt(h, CURLOPT_PROXY, ""); /* etcd is never reached through a proxy */
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (c->cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
	if (c->cert)
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
	if (c->key)
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->key);
	return PGW_OK;
}

/*
 * One HTTP exchange with the current endpoint. *failover tells whether another
 * endpoint may do better; msg gets a description of the failure.
 */
static int attempt(struct etcd_client *c, const char *path, const char *body, int64_t budget_ms,
		   struct buf *resp, bool *failover, char *msg, size_t msg_size)
{
	char emsg[256];
	long status = 0;
	CURLcode cr;
	int rc;

	*failover = false;
	resp->b.len = 0;
	resp->overflow = false;
	rc = etcd_client_prepare(c, path, body);
	if (rc != 0) {
		snprintf(msg, msg_size, "%s", pgw_strerror(rc));
		return rc;
	}
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)budget_ms);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)budget_ms);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, buf_write);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, resp);
	cr = curl_easy_perform(c->curl);
	if (cr != CURLE_OK) {
		if (resp->overflow) {
			snprintf(msg, msg_size, "response too large or out of memory");
			return PGW_EPROTO;
		}
		snprintf(msg, msg_size, "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(cr));
		*failover = true;
		return cr == CURLE_OPERATION_TIMEDOUT ? PGW_ETIMEOUT : PGW_ENET;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	/* Streaming RPCs (keepalive) answer 200 and carry errors in the body. */
	if (status == 200 && !(resp->b.len >= 8 && memcmp(resp->b.data, "{\"error\"", 8) == 0))
		return PGW_OK;
	rc = etcd_classify_error(resp->b.data, resp->b.len, emsg, sizeof(emsg));
	snprintf(msg, msg_size, "HTTP %ld: %s", status, emsg[0] ? emsg : "(empty body)");
	*failover = status >= 500 || rc == PGW_EUNAVAIL;
	if (rc == PGW_OK)
		rc = PGW_EPROTO;
	return rc;
}

static int request(struct etcd_client *c, const char *path, const char *body, struct buf *resp,
		   int64_t deadline, bool allow_reauth)
{
	char msg[512] = "deadline passed before the request was sent";
	size_t tried = 0;
	bool reauthed = false, failover = true;
	int rc = PGW_ETIMEOUT;

	for (;;) {
		int64_t remaining = deadline - cmn_now_ms();
		int64_t budget;

		if (remaining <= 0) {
			rc = PGW_ETIMEOUT;
			failover = true;
			break;
		}
		budget = remaining / (int64_t)(c->n_endpoints - tried);
		if (budget < MIN_ATTEMPT_MS)
			budget = remaining < MIN_ATTEMPT_MS ? remaining : MIN_ATTEMPT_MS;
		rc = attempt(c, path, body, budget, resp, &failover, msg, sizeof(msg));
		if (rc == 0)
			return PGW_OK;
		if (rc == PGW_EAUTH && allow_reauth && c->username && !reauthed &&
		    etcd_auth_error_retryable(msg)) {
			reauthed = true;
			log_info("etcd: %s rejected our auth token (%s), authenticating again",
				 c->endpoints[c->cur], msg);
			rc = etcd_client_auth(c, deadline, true);
			if (rc != 0)
				return rc;
			continue;
		}
		if (!failover)
			break;
		if (++tried >= c->n_endpoints)
			break;
		log_warning("etcd: %s on %s failed: %s; trying %s", path, c->endpoints[c->cur], msg,
			    c->endpoints[(c->cur + 1) % c->n_endpoints]);
		etcd_client_next_endpoint(c);
	}
	log_warning("etcd: %s on %s failed: %s", path, c->endpoints[c->cur], msg);
	/* Start the next call elsewhere when this endpoint looked unreachable. */
	if (failover)
		etcd_client_next_endpoint(c);
	return rc;
}

int etcd_client_auth(struct etcd_client *c, int64_t deadline_ms, bool force)
{
	struct buf resp = {0};
	char *body, *token = NULL;
	int rc;

	if (!c->username || (c->token && !force))
		return PGW_OK;
	free_secret(c->token);
	c->token = NULL;
	body = etcd_build_auth_request(c->username, c->password);
	if (!body) {
		log_error("etcd: out of memory building the authenticate request");
		return PGW_ENOMEM;
	}
	rc = request(c, "/v3/auth/authenticate", body, &resp, deadline_ms, false);
	free_secret(body);
	if (rc == 0) {
		rc = etcd_parse_auth_response(resp.b.data, resp.b.len, &token);
		if (rc != 0)
			log_warning("etcd: bad authenticate response from %s: %s",
				    c->endpoints[c->cur], pgw_strerror(rc));
	}
	if (resp.b.data)
		explicit_bzero(resp.b.data, resp.b.len);
	buf_free(&resp);
	if (rc == 0) {
		c->token = token;
		log_debug("etcd: authenticated as \"%s\" on %s", c->username, c->endpoints[c->cur]);
	}
	return rc;
}

/* Runs a unary call within the client's timeout; resp holds the 200 body. */
static int call(struct etcd_client *c, const char *path, const char *body, struct buf *resp)
{
	int64_t deadline = cmn_now_ms() + c->timeout_ms;
	int rc = etcd_client_auth(c, deadline, false);

	if (rc != 0)
		return rc;
	return request(c, path, body, resp, deadline, true);
}

int etcd_enable_auth(struct etcd_client *c, const char *root_password)
{
	static const char grant[] = "{\"user\":\"root\",\"role\":\"root\"}";
	struct buf resp = {0};
	char *add = etcd_build_auth_request("root", root_password);
	int rc;

	if (!add)
		return PGW_ENOMEM;
	rc = call(c, "/v3/auth/user/add", add, &resp);
	free_secret(add);
	buf_free(&resp);
	if (rc == PGW_OK)
		rc = call(c, "/v3/auth/user/grant", grant, &resp);
	buf_free(&resp);
	if (rc == PGW_OK)
		rc = call(c, "/v3/auth/enable", "{}", &resp);
	buf_free(&resp);
	if (rc != PGW_OK)
		log_error("etcd: cannot turn authentication on: %s", pgw_strerror(rc));
	return rc;
}

static int bad_response(struct etcd_client *c, const char *path, int rc)
{
	log_warning("etcd: unexpected %s response from %s: %s", path, c->endpoints[c->cur],
		    pgw_strerror(rc));
	return rc;
}

static int no_body(const char *what)
{
	log_error("etcd: cannot build %s request (bad argument or out of memory)", what);
	return PGW_ENOMEM;
}

int etcd_range(struct etcd_client *c, const char *key, const char *range_end,
	       struct etcd_range_result *out)
{
	struct buf resp = {0};
	char *body;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!key) {
		log_error("etcd: range without a key");
		return PGW_EINVAL;
	}
	body = etcd_build_range_request(key, range_end);
	if (!body)
		return no_body("range");
	rc = call(c, "/v3/kv/range", body, &resp);
	free(body);
	if (rc == 0) {
		rc = etcd_parse_range_response(resp.b.data, resp.b.len, out);
		if (rc != 0)
			bad_response(c, "/v3/kv/range", rc);
	}
	buf_free(&resp);
	return rc;
}

int etcd_range_prefix(struct etcd_client *c, const char *prefix, struct etcd_range_result *out)
{
	char *end;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!prefix) {
		log_error("etcd: range_prefix without a prefix");
		return PGW_EINVAL;
	}
	end = etcd_prefix_range_end(prefix);
	if (!end) {
		log_error("etcd: out of memory");
		return PGW_ENOMEM;
	}
	rc = etcd_range(c, prefix, end, out);
	free(end);
	return rc;
}

int etcd_put(struct etcd_client *c, const char *key, const char *value, size_t value_len,
	     int64_t lease, int64_t *revision)
{
	struct buf resp = {0};
	char *body;
	int rc;

	if (!key || !*key || (!value && value_len > 0)) {
		log_error("etcd: put with an empty key or a missing value");
		return PGW_EINVAL;
	}
	body = etcd_build_put_request(key, value, value_len, lease);
	if (!body)
		return no_body("put");
	rc = call(c, "/v3/kv/put", body, &resp);
	free(body);
	if (rc == 0) {
		rc = etcd_parse_put_response(resp.b.data, resp.b.len, revision);
		if (rc != 0)
			bad_response(c, "/v3/kv/put", rc);
	}
	buf_free(&resp);
	return rc;
}

int etcd_delete(struct etcd_client *c, const char *key, const char *range_end, int64_t *deleted)
{
	struct buf resp = {0};
	char *body;
	int rc;

	if (!key) {
		log_error("etcd: delete without a key");
		return PGW_EINVAL;
	}
	body = etcd_build_delete_request(key, range_end);
	if (!body)
		return no_body("delete");
	rc = call(c, "/v3/kv/deleterange", body, &resp);
	free(body);
	if (rc == 0) {
		rc = etcd_parse_delete_response(resp.b.data, resp.b.len, deleted);
		if (rc != 0)
			bad_response(c, "/v3/kv/deleterange", rc);
	}
	buf_free(&resp);
	return rc;
}

static bool ops_valid(const struct etcd_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!ops[i].key || (unsigned int)ops[i].type > ETCD_OP_RANGE ||
		    (ops[i].type == ETCD_OP_PUT && !ops[i].value && ops[i].value_len > 0))
			return false;
	}
	return true;
}

int etcd_txn(struct etcd_client *c, const struct etcd_compare *cmp, size_t n_cmp,
	     const struct etcd_op *success, size_t n_success, const struct etcd_op *failure,
	     size_t n_failure, struct etcd_txn_result *out)
{
	struct buf resp = {0};
	char *body;
	int rc;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n_cmp; i++) {
		if (!cmp[i].key || (unsigned int)cmp[i].target > ETCD_CMP_LEASE ||
		    (unsigned int)cmp[i].result > ETCD_CMP_NOT_EQUAL ||
		    (cmp[i].target == ETCD_CMP_VALUE && !cmp[i].value && cmp[i].value_len > 0)) {
			log_error("etcd: txn compare %zu is invalid", i);
			return PGW_EINVAL;
		}
	}
	if ((n_success && !success) || (n_failure && !failure) || (n_cmp && !cmp) ||
	    !ops_valid(success, n_success) || !ops_valid(failure, n_failure)) {
		log_error("etcd: txn with an invalid operation");
		return PGW_EINVAL;
	}
	body = etcd_build_txn_request(cmp, n_cmp, success, n_success, failure, n_failure);
	if (!body)
		return no_body("txn");
	rc = call(c, "/v3/kv/txn", body, &resp);
	free(body);
	if (rc == 0) {
		rc = etcd_parse_txn_response(resp.b.data, resp.b.len, out);
		if (rc != 0)
			bad_response(c, "/v3/kv/txn", rc);
	}
	buf_free(&resp);
	return rc;
}

int etcd_lease_grant(struct etcd_client *c, int ttl, int64_t *id, int *granted_ttl)
{
	struct buf resp = {0};
	int64_t lid = 0;
	int lttl = 0;
	char *body;
	int rc;

	if (ttl <= 0) {
		log_error("etcd: lease TTL must be positive, got %d", ttl);
		return PGW_EINVAL;
	}
	body = etcd_build_grant_request(ttl);
	if (!body)
		return no_body("lease grant");
	rc = call(c, "/v3/lease/grant", body, &resp);
	free(body);
	if (rc == 0) {
		rc = etcd_parse_grant_response(resp.b.data, resp.b.len, &lid, &lttl);
		if (rc != 0)
			bad_response(c, "/v3/lease/grant", rc);
	}
	buf_free(&resp);
	if (rc == 0) {
		*id = lid;
		if (granted_ttl)
			*granted_ttl = lttl;
	}
	return rc;
}

int etcd_lease_keepalive(struct etcd_client *c, int64_t id, int *ttl)
{
	struct buf resp = {0};
	int64_t rid = 0;
	int rttl = 0;
	char *body;
	int rc;

	body = etcd_build_lease_id_request(id);
	if (!body)
		return no_body("lease keepalive");
	rc = call(c, "/v3/lease/keepalive", body, &resp);
	free(body);
	if (rc == 0) {
		rc = etcd_parse_keepalive_response(resp.b.data, resp.b.len, &rid, &rttl);
		if (rc != 0)
			bad_response(c, "/v3/lease/keepalive", rc);
	}
	buf_free(&resp);
	if (rc == 0 && rttl <= 0) {
		log_warning("etcd: lease %lld has expired or does not exist", (long long)id);
		rc = PGW_ENOTFOUND;
	}
	if (rc == 0 && ttl)
		*ttl = rttl;
	return rc;
}

int etcd_lease_revoke(struct etcd_client *c, int64_t id)
{
	struct buf resp = {0};
	char *body;
	int rc;

	body = etcd_build_lease_id_request(id);
	if (!body)
		return no_body("lease revoke");
	rc = call(c, "/v3/lease/revoke", body, &resp);
	free(body);
	if (rc == 0) {
		rc = etcd_parse_put_response(resp.b.data, resp.b.len, NULL);
		if (rc != 0)
			bad_response(c, "/v3/lease/revoke", rc);
	}
	buf_free(&resp);
	return rc;
}

#include "agent/api.h"
#include "common/httpd.h"
#include "common/httpguard.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <json-c/json.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct api_server {
	struct MHD_Daemon *daemon;
	char *cert, *key;	      /* PEM, kept while the daemon runs (TLS) */
	struct cmn_http_guard *guard; /* a request must arrive whole within API_DEADLINE_MS */
	struct api_state *st;
	struct api_ops ops;
};

#define API_MAX_BODY	(64 * 1024)
#define API_DEADLINE_MS 5000

/* Per request: the body as it arrives. */
struct api_req {
	struct cmn_buf body;
	bool too_large;
};

void api_state_init(struct api_state *st, int liveness_ms)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_init(&st->lock, NULL);
	st->liveness_ms = liveness_ms;
}

void api_state_destroy(struct api_state *st)
{
	free(st->status_json);
	free(st->cluster_json);
	free(st->history_json);
	free(st->config_json);
	free(st->metrics_text);
	pthread_mutex_destroy(&st->lock);
}

void api_state_set_docs(struct api_state *st, char *status_json, char *cluster_json,
			char *history_json)
{
	if (status_json) {
		free(st->status_json);
		st->status_json = status_json;
	}
	if (cluster_json) {
		free(st->cluster_json);
		st->cluster_json = cluster_json;
	}
	if (history_json) {
		free(st->history_json);
		st->history_json = history_json;
	}
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int code, const char *body,
			     const char *allow)
{
	return cmn_httpd_reply(conn, code, "application/json", body, strlen(body), allow, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned int code,
				   const char *reason, const char *allow)
{
	return cmn_httpd_error(conn, code, reason, allow, NULL);
}

enum check {
	CHECK_PRIMARY,
	CHECK_REPLICA,
	CHECK_READ_ONLY,
	CHECK_HEALTH,
	CHECK_LIVENESS,
	CHECK_READINESS,
	CHECK_STATUS,
	CHECK_CLUSTER,
	CHECK_HISTORY,
	CHECK_CONFIG,
	CHECK_METRICS,
};

static const char *const mutating[] = {"/switchover",	"/failover", "/restart",
				       "/reinitialize", "/reload",   "/config"};

/* POST / PATCH endpoints: authenticate, then hand over to the agent. */
static enum MHD_Result handle_mutating(struct api_server *srv, struct MHD_Connection *conn,
				       const char *url, const char *method, struct api_req *req)
{
	bool is_config = strcmp(url, "/config") == 0;
	if (is_config ? strcmp(method, "PATCH") != 0 : strcmp(method, "POST") != 0)
		return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				   "method not allowed on this endpoint",
				   is_config ? "GET, PATCH" : "POST");
	if (!srv->ops.fn || !srv->ops.username || !*srv->ops.username || !srv->ops.password)
		return reply_error(conn, MHD_HTTP_FORBIDDEN,
				   "changes through the REST API are disabled: set [api] username "
				   "and password",
				   NULL);
	if (cmn_httpd_basic_auth(conn, srv->ops.username, srv->ops.password) != CMN_HTTPD_AUTH_OK)
		return cmn_httpd_error(conn, MHD_HTTP_UNAUTHORIZED, "authentication required", NULL,
				       "pgwarden");
	if (req->too_large)
		return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large",
				   NULL);

	struct api_call call = {
	    .method = method, .path = url, .body = req->body.data ? req->body.data : ""};
	struct api_answer ans = {.code = 500};
	enum MHD_Result ret;

	srv->ops.fn(srv->ops.arg, &call, &ans);
	if (ans.body) {
		ret = reply(conn, ans.code, ans.body, NULL);
		free(ans.body);
		return ret;
	}
	if (ans.code >= 400)
		return reply_error(conn, ans.code, ans.message[0] ? ans.message : "failed", NULL);
	json_object *o = json_object_new_object();

	json_object_object_add(o, "message", json_object_new_string(ans.message));
	ret =
	    reply(conn, ans.code, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), NULL);
	json_object_put(o);
	return ret;
}

static const struct {
	const char *path;
	enum check check;
} routes[] = {
    {"/", CHECK_PRIMARY},
    {"/primary", CHECK_PRIMARY},
    {"/master", CHECK_PRIMARY},
    {"/leader", CHECK_PRIMARY},
    {"/read-write", CHECK_PRIMARY},
    {"/replica", CHECK_REPLICA},
    {"/read-only", CHECK_READ_ONLY},
    {"/health", CHECK_HEALTH},
    {"/liveness", CHECK_LIVENESS},
    {"/readiness", CHECK_READINESS},
    {"/status", CHECK_STATUS},
    {"/patroni", CHECK_STATUS},
    {"/cluster", CHECK_CLUSTER},
    {"/history", CHECK_HISTORY},
    {"/config", CHECK_CONFIG},
    {"/metrics", CHECK_METRICS},
};

/* Parses ?lag= as bytes (plain number, or with kB/MB/GB). -1 when bad. */
static int64_t parse_lag(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || !isfinite(v) || v < 0 || v > 1e15)
		return -1;
	if (*end == '\0' || strcasecmp(end, "B") == 0)
		return (int64_t)v;
	if (strcasecmp(end, "kB") == 0)
		return (int64_t)(v * 1024);
	if (strcasecmp(end, "MB") == 0)
		return (int64_t)(v * 1024 * 1024);
	if (strcasecmp(end, "GB") == 0)
		return (int64_t)(v * 1024 * 1024 * 1024);
	return -1;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	struct api_server *srv = cls;
	struct api_state *st = srv->st;
	int route = -1;
	unsigned int code = 200;
	char *body = NULL;
	enum MHD_Result ret;

	struct api_req *req = *req_cls;

	(void)version;
	if (!req) {
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		*req_cls = req; /* headers seen; the body comes next (freed in completed()) */
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (req->body.len + *upload_data_size > API_MAX_BODY ||
		    cmn_buf_append(&req->body, upload_data, *upload_data_size) != PGW_OK)
			req->too_large = true;
		*upload_data_size = 0;
		return MHD_YES;
	}
	cmn_http_guard_begin(srv->guard, conn); /* all of it arrived: no deadline now */
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
	    strcmp(method, "OPTIONS") != 0) {
		for (size_t i = 0; i < sizeof(mutating) / sizeof(mutating[0]); i++)
			if (strcmp(url, mutating[i]) == 0)
				return handle_mutating(srv, conn, url, method, req);
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(url, routes[i].path) == 0)
			route = (int)i;
	if (route < 0)
		return reply_error(conn, MHD_HTTP_NOT_FOUND, "no such endpoint", NULL);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
	    strcmp(method, "OPTIONS") != 0)
		return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				   "method not allowed on this endpoint", "GET, HEAD, OPTIONS");
	const char *lag_arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "lag");
	int64_t max_lag = -1;

	if (lag_arg) {
		max_lag = parse_lag(lag_arg);
		if (max_lag < 0)
			return reply_error(
			    conn, MHD_HTTP_BAD_REQUEST,
			    "bad value for lag: expected bytes, e.g. 1048576 or 16MB", NULL);
	}
	pthread_mutex_lock(&st->lock);
	bool live = st->last_loop_ms && cmn_now_ms() - st->last_loop_ms <= st->liveness_ms;
	bool lag_ok = max_lag < 0 || st->lag_bytes <= (uint64_t)max_lag;

	switch (routes[route].check) {
	case CHECK_PRIMARY:
		code = st->is_leader ? 200 : 503;
		break;
	case CHECK_REPLICA:
		code = st->is_replica && !st->noloadbalance && lag_ok ? 200 : 503;
		break;
	case CHECK_READ_ONLY:
		code = (st->is_leader || st->is_replica) && lag_ok ? 200 : 503;
		break;
	case CHECK_HEALTH:
		code = st->pg_running ? 200 : 503;
		break;
	case CHECK_LIVENESS:
		code = live ? 200 : 503;
		break;
	case CHECK_READINESS:
		code = st->is_leader || (st->is_replica && st->streaming && lag_ok) ? 200 : 503;
		break;
	default:
		code = 200;
		break;
	}
	if (routes[route].check == CHECK_METRICS) {
		body = strdup(st->metrics_text ? st->metrics_text : "");
		pthread_mutex_unlock(&st->lock);
		if (!body)
			return MHD_NO;
		ret = cmn_httpd_reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", body,
				      strlen(body), NULL, NULL);
		free(body);
		return ret;
	}
	const char *doc = routes[route].check == CHECK_CLUSTER	 ? st->cluster_json
			  : routes[route].check == CHECK_HISTORY ? st->history_json
			  : routes[route].check == CHECK_CONFIG	 ? st->config_json
								 : st->status_json;

	body = strdup(doc ? doc : (routes[route].check == CHECK_HISTORY ? "[]" : "{}"));
	pthread_mutex_unlock(&st->lock);
	if (!body)
		return MHD_NO;
	ret = reply(conn, code, body, NULL);
	free(body);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct api_server *srv = cls;
	struct api_req *req = *req_cls;

	(void)toe;
	cmn_http_guard_end(srv->guard, conn);
	if (req) {
		cmn_buf_free(&req->body);
		free(req);
		*req_cls = NULL;
	}
}

static void server_free(struct api_server *srv)
{
	cmn_http_guard_free(srv->guard);
	free(srv->cert);
	if (srv->key) {
		explicit_bzero(srv->key, strlen(srv->key));
		free(srv->key);
	}
	free(srv);
}

int api_start(const char *host, int port, const char *certfile, const char *keyfile,
	      struct api_state *st, const struct api_ops *ops, struct api_server **out)
{
	struct MHD_OptionItem tls[3] = {
	    {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}, {MHD_OPTION_END, 0, NULL}};
	struct api_server *srv = calloc(1, sizeof(*srv));
	int fd;

	if (!srv)
		return PGW_ENOMEM;
	if (certfile) {
		srv->cert = cmn_read_file(certfile, NULL);
		srv->key = keyfile ? cmn_read_file(keyfile, NULL) : NULL;
		if (!srv->cert || !srv->key) {
			log_error("REST API: cannot read %s: %s", srv->cert ? keyfile : certfile,
				  strerror(errno));
			server_free(srv);
			return PGW_EINVAL;
		}
		tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->key};
		tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->cert};
	}
	srv->st = st;
	if (ops)
		srv->ops = *ops;
	fd = cmn_tcp_listen(host, port, 128, false, "REST API");
	if (fd < 0) {
		server_free(srv);
		return PGW_ERR;
	}
	if (cmn_http_guard_new(API_DEADLINE_MS, &srv->guard) != PGW_OK) {
		close(fd);
		server_free(srv);
		return PGW_ENOMEM;
	}
	/* A thread per connection: a restart or a switchover request may take seconds and
	 * must not hold up the health checks. At most CMN_HTTP_PER_ADDRESS_LIMIT from one
	 * address, each request whole within API_DEADLINE_MS (slow clients, issue 14). */
	srv->daemon = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
		MHD_USE_ERROR_LOG | (certfile ? MHD_USE_TLS : 0),
	    0, NULL, NULL, handle, srv, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)200,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_NOTIFY_COMPLETED,
	    completed, srv, MHD_OPTION_NOTIFY_CONNECTION, cmn_http_guard_notify, srv->guard,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)CMN_HTTP_PER_ADDRESS_LIMIT,
	    MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
	if (!srv->daemon) {
		log_error("REST API: cannot start the HTTP server on %s:%d", host, port);
		close(fd);
		server_free(srv);
		return PGW_ERR;
	}
	log_info("REST API listening on %s://%s:%d", certfile ? "https" : "http", host, port);
	*out = srv;
	return PGW_OK;
}

void api_stop(struct api_server *srv)
{
	if (!srv)
		return;
	MHD_stop_daemon(srv->daemon);
	server_free(srv);
}

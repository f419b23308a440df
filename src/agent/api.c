#include "agent/api.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <arpa/inet.h>
#include <json-c/json.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct api_server {
	struct MHD_Daemon *daemon;
	struct api_state *st;
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
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	if (allow)
		MHD_add_response_header(r, "Allow", allow);
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned int code,
				   const char *reason, const char *allow)
{
	char body[512];
	char esc[300];
	size_t j = 0;

	for (const char *p = reason; *p && j + 2 < sizeof(esc); p++) {
		if (*p == '"' || *p == '\\')
			esc[j++] = '\\';
		esc[j++] = (*p >= 32 && *p < 127) ? *p : '?';
	}
	esc[j] = '\0';
	snprintf(body, sizeof(body), "{\"error\":\"%s\"}", esc);
	return reply(conn, code, body, allow);
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
};

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

	(void)version;
	(void)upload_data;
	if (*req_cls == NULL) {
		*req_cls = (void *)1; /* headers seen; wait for the body (ignored here) */
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0; /* read-only endpoints: discard any body */
		return MHD_YES;
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
	const char *doc = routes[route].check == CHECK_CLUSTER	 ? st->cluster_json
			  : routes[route].check == CHECK_HISTORY ? st->history_json
								 : st->status_json;

	body = strdup(doc ? doc : (routes[route].check == CHECK_HISTORY ? "[]" : "{}"));
	pthread_mutex_unlock(&st->lock);
	if (!body)
		return MHD_NO;
	ret = reply(conn, code, body, NULL);
	free(body);
	return ret;
}

int api_start(const char *host, int port, struct api_state *st, struct api_server **out)
{
	struct api_server *srv = calloc(1, sizeof(*srv));
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char portstr[16];
	int fd = -1, one = 1;

	if (!srv)
		return PGW_ENOMEM;
	srv->st = st;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(*host && strcmp(host, "*") != 0 ? host : NULL, portstr, &hints, &ai) != 0 ||
	    !ai) {
		log_error("REST API: cannot resolve listen address %s:%d", host, port);
		free(srv);
		return PGW_EINVAL;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
		log_error("REST API: cannot listen on %s:%d: %s", host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		free(srv);
		return PGW_ERR;
	}
	freeaddrinfo(ai);
	srv->daemon = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
	    handle, srv, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)200,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
	if (!srv->daemon) {
		log_error("REST API: cannot start the HTTP server on %s:%d", host, port);
		close(fd);
		free(srv);
		return PGW_ERR;
	}
	log_info("REST API listening on %s:%d", host, port);
	*out = srv;
	return PGW_OK;
}

void api_stop(struct api_server *srv)
{
	if (!srv)
		return;
	MHD_stop_daemon(srv->daemon);
	free(srv);
}

bool api_parse_status(const char *body, struct api_member_status *out)
{
	json_object *o = body ? json_tokener_parse(body) : NULL, *v;

	memset(out, 0, sizeof(*out));
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return false;
	}
	if (json_object_object_get_ex(o, "role", &v))
		snprintf(out->role, sizeof(out->role), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "state", &v))
		snprintf(out->state, sizeof(out->state), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "timeline", &v))
		out->timeline = json_object_get_int(v);
	if (json_object_object_get_ex(o, "lsn", &v))
		out->lsn = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "lag", &v))
		out->lag = json_object_get_int64(v);
	json_object_put(o);
	return true;
}

/*
 * pgwarden up's readiness checks: etcd healthy, the agents alive, one leader and
 * streaming replicas.
 */
#include "cluster/dcs.h"
#include "cli/local.h"
#include "cli/cli.h"
#include "common/http.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
	return cmn_buf_append(arg, data, size * n) == PGW_OK ? size * n : 0;
}

static bool etcd_healthy(const struct layout *l, int i)
{
	char url[128];
	struct etcd_tls_files f;
	struct cmn_buf b = {0};
	long status = 0;
	bool ok;

	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/health", l->etcd_tls ? "https" : "http",
		 etcd_client_port(l, i));
	if (!l->etcd_tls) {
		ok = cmn_http_request("GET", url, NULL, NULL, 1000, &b, &status) == PGW_OK &&
		     status == 200 && b.data && strstr(b.data, "\"true\"");
		cmn_buf_free(&b);
		return ok;
	}
	CURL *h = curl_easy_init();

	if (!h)
		return false;
	etcd_tls_files(l, &f);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, f.ca);
	curl_easy_setopt(h, CURLOPT_SSLCERT, f.cert);
	curl_easy_setopt(h, CURLOPT_SSLKEY, f.key);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	ok = curl_easy_perform(h) == CURLE_OK &&
	     curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200 &&
	     b.data && memmem(b.data, b.len, "\"true\"", 6);
	curl_easy_cleanup(h);
	cmn_buf_free(&b);
	return ok;
}

/* Waits until one leader runs and every other member streams. */
bool cluster_ready(const struct layout *l, char *leader, size_t size)
{
	int leaders = 0, replicas = 0;

	for (int i = 0; i < N_NODES; i++) {
		char url[128];
		struct cmn_buf b = {0};
		long status = 0;

		snprintf(url, sizeof(url), "%s://127.0.0.1:%d/status", l->api_scheme,
			 l->port[LP_API] + i);
		if (cmn_http_request("GET", url, NULL, NULL, 1000, &b, &status) == PGW_OK &&
		    status == 200 && b.data) {
			json_object *o = json_tokener_parse(b.data), *v;

			if (o && json_object_object_get_ex(o, "leader", &v) &&
			    json_object_get_boolean(v)) {
				leaders++;
				snprintf(leader, size, "node%d", i + 1);
			} else if (o && json_object_object_get_ex(o, "state", &v) &&
				   strcmp(json_object_get_string(v), "streaming") == 0) {
				replicas++;
			}
			json_object_put(o);
		}
		cmn_buf_free(&b);
	}
	return leaders == 1 && replicas == N_NODES - 1;
}

/*
 * The proxy routes on every port: writes to the leader, and the replica port to each
 * healthy replica (its /metrics says so: pgwarden_proxy_routing_writes and
 * pgwarden_proxy_replica_healthy).
 */
bool proxy_routes(const struct layout *l, char *why, size_t size)
{
	char url[128];
	struct cmn_buf b = {0};
	long status = 0;
	int healthy = 0;
	bool writes = false, answered = false;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", l->port[LP_HTTP]);
	if (cmn_http_request("GET", url, NULL, NULL, 1000, &b, &status) == PGW_OK &&
	    status == 200 && b.data) {
		char *save = NULL;

		answered = true;
		for (char *line = strtok_r(b.data, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			size_t n = strlen(line);

			if (strcmp(line, "pgwarden_proxy_routing_writes 1") == 0)
				writes = true;
			else if (strncmp(line, "pgwarden_proxy_replica_healthy{", 31) == 0 &&
				 n > 2 && strcmp(line + n - 2, " 1") == 0)
				healthy++;
		}
	}
	cmn_buf_free(&b);
	if (!answered)
		snprintf(why, size, "its /metrics (%s) did not answer", url);
	else
		snprintf(why, size, "routing writes: %s, healthy replicas: %d of %d",
			 writes ? "yes" : "no", healthy, N_NODES - 1);
	return writes && healthy == N_NODES - 1;
}

/* etcd answers on every member (on two when they were running already); false after
 * 30 s, said on stderr. */
bool wait_etcd(const struct layout *l, bool any_started)
{
	int64_t deadline = cmn_now_ms() + 30000;
	int healthy = 0;

	while (cmn_now_ms() < deadline) {
		healthy = 0;
		for (int i = 0; i < N_NODES; i++)
			healthy += etcd_healthy(l, i);
		if (healthy == N_NODES || (!any_started && healthy >= 2))
			break;
		usleep(200000);
	}
	if (healthy < 2) {
		fprintf(
		    stderr,
		    "pgwarden: etcd did not become healthy within 30 s: see %s/etcd*/etcd.log\n",
		    l->dir);
		return false;
	}
	return true;
}

/* Every agent is still running a moment after its start; else the end of its log. */
bool agents_alive(const struct layout *l)
{
	usleep(300000);
	for (int i = 0; i < N_NODES; i++) {
		char pidf[PATH_MAX + 32], log[PATH_MAX + 32];

		path_of(l, pidf, sizeof(pidf), "node", i, "agent.pid");
		path_of(l, log, sizeof(log), "node", i, "agent.log");
		if (!running_pid(pidf, " agent -c ")) {
			char *text = cmn_read_file(log, NULL);
			size_t len = text ? strlen(text) : 0;

			fprintf(
			    stderr,
			    "pgwarden: the agent of node%d exited at once; the end of %s:\n%s\n",
			    i + 1, log, text ? text + (len > 2000 ? len - 2000 : 0) : "(empty)");
			free(text);
			return false;
		}
	}
	return true;
}

bool is_leader_node(const struct layout *l, int i)
{
	char url[128];
	struct cmn_buf b = {0};
	long status = 0;
	bool leader;

	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/primary", l->api_scheme, l->port[LP_API] + i);
	leader =
	    cmn_http_request("GET", url, NULL, NULL, 1000, &b, &status) == PGW_OK && status == 200;
	cmn_buf_free(&b);
	return leader;
}

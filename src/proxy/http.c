/*
 * The proxy's HTTP port: the status page (GET / and /status, basic auth) and
 * /metrics (Prometheus text format 0.0.4, no auth). See http.h for the threads.
 *
 * /metrics is served without credentials so Prometheus can scrape it as it
 * scrapes node_exporter: it carries counters and the names of databases,
 * users and members, never a password, a conninfo or a client address.
 */
#include "proxy/http.h"
#include "common/httpd.h"
#include "common/doc.h"
#include "proxy/stats.h"
#include "common/httpguard.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "proxy/conn.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTP_REFRESH_S	    5
#define HTTP_CONN_LIMIT	    64
#define HTTP_CONN_TIMEOUT_S 10
#define HTTP_DEADLINE_MS    5000

#define STR_(x) #x
#define STR(x)	STR_(x)

struct proxy_http {
	struct MHD_Daemon *daemon;
	struct cmn_http_guard *guard; /* a request must arrive within HTTP_DEADLINE_MS */
	char *username;		      /* NULL: the status page answers 403 */
	char *password;
	pthread_mutex_t lock; /* guards the two documents */
	char *html;
	size_t html_len;
	char *metrics;
	size_t metrics_len;
};

static const char *const sv_state_names[4] = {"active", "idle", "used", "login"};

/* ---- /metrics ---- */

static void family(struct doc *d, const char *name, const char *type, const char *help)
{
	doc_printf(d, "# HELP pgwarden_proxy_%s %s\n# TYPE pgwarden_proxy_%s %s\n", name, help,
		   name, type);
}

static void pool_labels(struct doc *d, const struct proxy_pool *pool)
{
	DOC_LIT(d, "database=\"");
	doc_label(d, pool->database);
	DOC_LIT(d, "\",user=\"");
	doc_label(d, pool->user);
	doc_printf(d, "\",mode=\"%s\",port=\"%s\",member=\"",
		   pool->transaction_mode ? "transaction" : "session", proxy_port_name(pool->port));
	doc_label(d, pool->member);
	DOC_LIT(d, "\"");
}

enum pool_gauge { G_CL_ACTIVE, G_CL_WAITING, G_SV_ACTIVE, G_SV_IDLE, G_SV_USED, G_SV_LOGIN };

static void pool_gauge(struct doc *d, const struct proxy_view *v, const char *name,
		       enum pool_gauge g, const char *help)
{
	family(d, name, "gauge", help);
	for (size_t i = 0; i < v->n_rows; i++) {
		const struct proxy_pool_row *r = &v->rows[i];
		int val = g == G_CL_ACTIVE    ? r->cl_active + r->cl_idle
			  : g == G_CL_WAITING ? r->cl_waiting
			  : g == G_SV_ACTIVE  ? r->sv_active
			  : g == G_SV_IDLE    ? r->sv_idle
			  : g == G_SV_USED    ? r->sv_used
					      : r->sv_login;

		doc_printf(d, "pgwarden_proxy_%s{", name);
		pool_labels(d, r->pool);
		doc_printf(d, "} %d\n", val);
	}
}

enum pool_counter {
	C_XACTS,
	C_QUERIES,
	C_RECV,
	C_SENT,
	C_XACT_TIME,
	C_QUERY_TIME,
	C_WAIT_TIME,
	C_ASSIGN,
	C_LOGINS
};

static void pool_counter(struct doc *d, const struct proxy_view *v, const char *name,
			 enum pool_counter k, const char *help)
{
	family(d, name, "counter", help);
	for (size_t i = 0; i < v->n_rows; i++) {
		const struct proxy_stats *s = &v->rows[i].pool->stats;

		doc_printf(d, "pgwarden_proxy_%s{", name);
		pool_labels(d, v->rows[i].pool);
		switch (k) {
		case C_XACT_TIME:
			doc_printf(d, "} %.6f\n", (double)s->xact_time_us / 1e6);
			continue;
		case C_QUERY_TIME:
			doc_printf(d, "} %.6f\n", (double)s->query_time_us / 1e6);
			continue;
		case C_WAIT_TIME:
			doc_printf(d, "} %.6f\n", (double)s->wait_time_us / 1e6);
			continue;
		default:
			break;
		}
		uint64_t val = k == C_XACTS	? s->xact_count
			       : k == C_QUERIES ? s->query_count
			       : k == C_RECV	? s->bytes_received
			       : k == C_SENT	? s->bytes_sent
			       : k == C_ASSIGN	? s->server_assignments
						: s->client_logins;

		doc_printf(d, "} %" PRIu64 "\n", val);
	}
}

static void render_metrics(struct doc *d, const struct proxy_view *v)
{
	const struct proxy *p = v->p;
	const struct proxy_topology *t = &p->topo;

	family(d, "up", "gauge", "1 when the proxy answers.");
	doc_printf(d, "pgwarden_proxy_up 1\n");
	family(d, "info", "gauge", "The proxy's version and the cluster it follows.");
	doc_printf(d, "pgwarden_proxy_info{version=\"%s\",cluster=\"", PGW_VERSION);
	doc_label(d, p->cfg.cluster_name ? p->cfg.cluster_name : "");
	doc_printf(d, "\"} 1\n");
	family(d, "uptime_seconds", "gauge", "Seconds since the proxy started.");
	doc_printf(d, "pgwarden_proxy_uptime_seconds %.3f\n", v->uptime_s);
	family(d, "paused", "gauge", "1 while PAUSE holds every client.");
	doc_printf(d, "pgwarden_proxy_paused %d\n", p->paused ? 1 : 0);

	family(d, "clients", "gauge",
	       "Client connections by state (login, idle, waiting for a server, active).");
	doc_printf(d, "pgwarden_proxy_clients{state=\"login\"} %d\n", v->cl_login);
	doc_printf(d, "pgwarden_proxy_clients{state=\"idle\"} %d\n", v->cl_idle);
	doc_printf(d, "pgwarden_proxy_clients{state=\"waiting\"} %d\n", v->cl_waiting);
	doc_printf(d, "pgwarden_proxy_clients{state=\"active\"} %d\n", v->cl_active);
	family(d, "max_client_conn", "gauge", "Client connections accepted at most.");
	doc_printf(d, "pgwarden_proxy_max_client_conn %d\n", p->cfg.max_client_conn);
	family(d, "servers", "gauge", "Server connections by pool and state.");
	for (size_t i = 0; i < v->n_rows; i++) {
		const struct proxy_pool_row *r = &v->rows[i];
		const int n[4] = {r->sv_active, r->sv_idle, r->sv_used, r->sv_login};

		for (int k = 0; k < 4; k++) {
			DOC_LIT(d, "pgwarden_proxy_servers{");
			pool_labels(d, r->pool);
			doc_printf(d, ",state=\"%s\"} %d\n", sv_state_names[k], n[k]);
		}
	}

	pool_gauge(d, v, "pool_cl_active", G_CL_ACTIVE,
		   "Clients of the pool linked to a server or idle between transactions.");
	pool_gauge(d, v, "pool_cl_waiting", G_CL_WAITING,
		   "Clients of the pool waiting for a server.");
	pool_gauge(d, v, "pool_sv_active", G_SV_ACTIVE, "Servers of the pool linked to a client.");
	pool_gauge(d, v, "pool_sv_idle", G_SV_IDLE, "Servers of the pool ready for a client.");
	pool_gauge(d, v, "pool_sv_used", G_SV_USED,
		   "Servers of the pool running server_reset_query.");
	pool_gauge(d, v, "pool_sv_login", G_SV_LOGIN,
		   "Servers of the pool connecting or logging in.");
	family(d, "pool_maxwait_seconds", "gauge",
	       "How long the oldest waiting client of the pool has waited.");
	for (size_t i = 0; i < v->n_rows; i++) {
		DOC_LIT(d, "pgwarden_proxy_pool_maxwait_seconds{");
		pool_labels(d, v->rows[i].pool);
		doc_printf(d, "} %.3f\n", v->rows[i].maxwait_s);
	}
	family(d, "pool_size", "gauge", "Server connections the pool may open.");
	for (size_t i = 0; i < v->n_rows; i++) {
		DOC_LIT(d, "pgwarden_proxy_pool_size{");
		pool_labels(d, v->rows[i].pool);
		doc_printf(d, "} %d\n", v->rows[i].pool->pool_size);
	}

	pool_counter(d, v, "transactions_total", C_XACTS, "Transactions run through the pool.");
	pool_counter(d, v, "queries_total", C_QUERIES, "Queries run through the pool.");
	pool_counter(d, v, "received_bytes_total", C_RECV, "Bytes received from the clients.");
	pool_counter(d, v, "sent_bytes_total", C_SENT, "Bytes sent to the clients.");
	pool_counter(d, v, "transaction_seconds_total", C_XACT_TIME,
		     "Time spent in transactions, linked to a server.");
	pool_counter(d, v, "query_seconds_total", C_QUERY_TIME, "Time spent in queries.");
	pool_counter(d, v, "wait_seconds_total", C_WAIT_TIME,
		     "Time clients spent waiting for a server.");
	pool_counter(d, v, "server_assignments_total", C_ASSIGN,
		     "Times a server was linked to a client.");
	pool_counter(d, v, "client_logins_total", C_LOGINS, "Client logins to the pool.");

	family(d, "leader_changes_total", "counter",
	       "Times the write target changed (a new leader, or writes stopped or resumed).");
	doc_printf(d, "pgwarden_proxy_leader_changes_total %" PRIu64 "\n", p->leader_changes);
	family(d, "leader_info", "gauge", "The member holding the leader key (absent: none).");
	if (t->has_leader) {
		DOC_LIT(d, "pgwarden_proxy_leader_info{member=\"");
		doc_label(d, t->leader);
		doc_printf(d, "\"} 1\n");
	}
	family(d, "routing_writes", "gauge",
	       "1 when writes are routed to the leader; 0 when they wait (no leader, or etcd "
	       "silent for more than ttl: fail-closed).");
	doc_printf(d, "pgwarden_proxy_routing_writes %d\n", p->routing_writes ? 1 : 0);
	family(d, "switchover_pending", "gauge", "1 while a switchover is requested in etcd.");
	doc_printf(d, "pgwarden_proxy_switchover_pending %d\n", t->switchover_pending ? 1 : 0);
	family(d, "switchover_holding", "gauge",
	       "1 while a planned switchover holds new transactions for the primary.");
	doc_printf(d, "pgwarden_proxy_switchover_holding %d\n", p->held ? 1 : 0);
	family(d, "registered", "gauge",
	       "1 while this proxy's key (proxies/<name>) is in etcd on a live lease.");
	doc_printf(d, "pgwarden_proxy_registered %d\n", t->registered ? 1 : 0);
	family(d, "etcd_up", "gauge", "1 when etcd answered the last check (once a second).");
	doc_printf(d, "pgwarden_proxy_etcd_up %d\n", t->etcd_ok ? 1 : 0);
	family(d, "etcd_last_confirmed_seconds", "gauge",
	       "Seconds since etcd last confirmed the view (absent: never).");
	if (v->confirmed_age_s >= 0)
		doc_printf(d, "pgwarden_proxy_etcd_last_confirmed_seconds %.3f\n",
			   v->confirmed_age_s);
	family(d, "members", "gauge", "The cluster's members and their roles.");
	for (size_t i = 0; i < t->n_members; i++) {
		DOC_LIT(d, "pgwarden_proxy_members{member=\"");
		doc_label(d, t->members[i].name);
		doc_printf(d, "\",role=\"%s\"} 1\n",
			   t->members[i].is_leader ? "leader" : "replica");
	}
	family(d, "replica_healthy", "gauge",
	       "1 when the replica passes the health check (running, within max_replica_lag).");
	for (size_t i = 0; i < t->n_members; i++) {
		if (t->members[i].is_leader)
			continue;
		DOC_LIT(d, "pgwarden_proxy_replica_healthy{member=\"");
		doc_label(d, t->members[i].name);
		doc_printf(d, "\"} %d\n", t->members[i].replica_ok ? 1 : 0);
	}
}

/* ---- the status page ---- */

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta http-equiv=\"refresh\" content=\"" STR(
	HTTP_REFRESH_S) "\">\n"
			"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
			"<style>\n"
			"body{font:14px/1.45 system-ui,sans-serif;margin:1.5em 2em;color:#222}\n"
			"h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\n"
			"table{border-collapse:collapse;display:block;max-width:100%;"
			"overflow-x:auto}\n"
			"th,td{border:1px solid #ccc;padding:.25em "
			".6em;"
			"text-align:left}\n"
			"th{background:#f3f3f3;font-weight:600}td.n{text-align:right;"
			"font-variant-numeric:tabular-nums}\n"
			".ok{color:#086d1b}.bad{color:#c00;font-weight:bold}.muted{color:#777}\n"
			".charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min("
			"300px,"
			"100%),1fr));"
			"gap:1em;max-width:1300px}\n"
			".chart{margin:0}.chart svg{width:100%;height:120px;display:block}\n"
			".chart figcaption{font-size:.9em;margin-bottom:.2em}\n"
			".axis{display:flex;justify-content:space-between;font-size:.8em}\n"
			"@media (max-width:600px){body{margin:1em .75em}}\n"
			"</style>\n";

static void put_duration(struct doc *d, double secs)
{
	int64_t s = (int64_t)secs;

	if (s >= 86400)
		doc_printf(d, "%" PRId64 "d ", s / 86400);
	doc_printf(d, "%02" PRId64 ":%02" PRId64 ":%02" PRId64, s % 86400 / 3600, s % 3600 / 60,
		   s % 60);
}

static void render_overview(struct doc *d, const struct proxy_view *v)
{
	const struct proxy *p = v->p;
	const struct proxy_topology *t = &p->topo;

	doc_printf(d, "<table>\n<tr><th>leader</th>");
	if (t->has_leader) {
		doc_printf(d, "<td>");
		doc_html(d, t->leader);
		doc_printf(d, " (");
		doc_html(d, t->leader_host);
		doc_printf(d, ":%d)</td></tr>\n", t->leader_port);
	} else {
		doc_printf(d, "<td class=\"bad\">none</td></tr>\n");
	}
	doc_printf(d, "<tr><th>writes</th>");
	if (p->routing_writes) {
		doc_printf(d, "<td class=\"ok\">routed to ");
		doc_html(d, t->leader);
		doc_printf(d, "</td></tr>\n");
	} else if (t->has_leader) {
		doc_printf(d,
			   "<td class=\"bad\">not routed (fail-closed): etcd has not confirmed the "
			   "leader for more than ttl, writes wait</td></tr>\n");
	} else {
		doc_printf(d, "<td class=\"bad\">not routed: no leader, writes wait</td></tr>\n");
	}
	doc_printf(d, "<tr><th>etcd</th>");
	if (t->etcd_ok)
		doc_printf(d, "<td class=\"ok\">up, confirmed %.1f s ago</td></tr>\n",
			   v->confirmed_age_s);
	else {
		doc_printf(d, "<td class=\"bad\">unreachable");
		if (v->confirmed_age_s >= 0)
			doc_printf(d, ", last confirmed %.1f s ago", v->confirmed_age_s);
		else
			doc_printf(d, ", never confirmed");
		if (t->etcd_error[0]) {
			doc_printf(d, ": ");
			doc_html(d, t->etcd_error);
		}
		doc_printf(d, "</td></tr>\n");
	}
	if (p->held)
		doc_printf(d, "<tr><th>switchover</th><td class=\"bad\">%s</td></tr>\n",
			   t->drained_reported
			       ? "drained: new transactions held for the new primary"
			       : "draining: new transactions held, those in flight run");
	else if (t->switchover_pending)
		doc_printf(d, "<tr><th>switchover</th><td>pending</td></tr>\n");
	doc_printf(d, "<tr><th>registered in etcd</th><td%s>%s</td></tr>\n",
		   t->registered ? " class=\"ok\"" : " class=\"bad\"",
		   t->registered ? "yes" : "no");
	doc_printf(d,
		   "<tr><th>clients</th><td>%zu of max_client_conn %d (active %d, waiting %d, idle "
		   "%d, login %d)</td></tr>\n",
		   p->n_clients, p->cfg.max_client_conn, v->cl_active, v->cl_waiting, v->cl_idle,
		   v->cl_login);
	doc_printf(
	    d, "<tr><th>servers</th><td>%d (active %d, idle %d, used %d, login %d)</td></tr>\n",
	    v->sv[0] + v->sv[1] + v->sv[2] + v->sv[3], v->sv[0], v->sv[1], v->sv[2], v->sv[3]);
	doc_printf(d, "<tr><th>leader changes</th><td>%" PRIu64 "</td></tr>\n", p->leader_changes);
	doc_printf(d, "<tr><th>paused</th><td%s>%s</td></tr>\n", p->paused ? " class=\"bad\"" : "",
		   p->paused ? "yes (PAUSE): clients wait" : "no");
	doc_printf(d, "<tr><th>uptime</th><td>");
	put_duration(d, v->uptime_s);
	doc_printf(d, "</td></tr>\n</table>\n");
}

static void render_members(struct doc *d, const struct proxy_view *v)
{
	const struct proxy_topology *t = &v->p->topo;

	doc_printf(d, "<h2>Members</h2>\n");
	if (!t->n_members) {
		doc_printf(d, "<p class=\"muted\">no member known (etcd not read yet?)</p>\n");
		return;
	}
	doc_printf(d, "<table id=\"members\">\n<tr><th>member</th><th>address</th><th>role</th>"
		      "<th>state</th><th>TL</th><th>lag (bytes)</th><th>lag (s)</th>"
		      "<th>replica healthy</th>"
		      "</tr>\n");
	for (size_t i = 0; i < t->n_members; i++) {
		const struct proxy_member *m = &t->members[i];

		doc_printf(d, "<tr><td>");
		doc_html(d, m->name);
		doc_printf(d, "</td><td>");
		doc_html(d, m->host);
		doc_printf(d, ":%d</td><td>%s</td><td>", m->port,
			   m->is_leader ? "<b>leader</b>" : "replica");
		doc_html(d, m->state[0] ? m->state : "?");
		doc_printf(d, "</td><td class=\"n\">%d</td>", m->timeline);
		/* As the replica's health check answered it (once a second). */
		if (m->is_leader || m->lag < 0)
			doc_printf(d, "<td class=\"n muted\">-</td><td class=\"n muted\">-</td>");
		else if (m->lag_seconds >= 0)
			doc_printf(d, "<td class=\"n\">%" PRId64 "</td><td class=\"n\">%.1f</td>",
				   m->lag, m->lag_seconds);
		else /* the replica cannot tell */
			doc_printf(d,
				   "<td class=\"n\">%" PRId64 "</td><td class=\"n muted\">?</td>",
				   m->lag);
		if (m->is_leader)
			doc_printf(d, "<td class=\"muted\">-</td></tr>\n");
		else
			doc_printf(d, "<td class=\"%s\">%s</td></tr>\n",
				   m->replica_ok ? "ok" : "bad", m->replica_ok ? "y" : "n");
	}
	doc_printf(d, "</table>\n");
}

static void render_history(struct doc *d, const struct proxy_view *v)
{
	const struct proxy_topology *t = &v->p->topo;

	doc_printf(d, "<h2>Leader changes</h2>\n");
	if (!t->n_history) {
		doc_printf(d, "<p class=\"muted\">none recorded since the cluster formed</p>\n");
		return;
	}
	doc_printf(d, "<table id=\"history\">\n<tr><th>when (UTC)</th><th>new leader</th>"
		      "<th>new timeline</th><th>the old one ended at</th><th>reason</th></tr>\n");
	for (size_t i = 0; i < t->n_history; i++) {
		const struct dcs_history_entry *h = &t->history[i];
		bool bootstrap = strcmp(h->reason, "bootstrap") == 0;

		doc_printf(d, "<tr><td>");
		doc_html(d, h->time);
		doc_printf(d, "</td><td>");
		doc_html(d, h->leader[0] ? h->leader : "?");
		if (bootstrap)
			doc_printf(d, "</td><td class=\"n\">%d</td><td>-</td><td>", h->timeline);
		else
			doc_printf(d, "</td><td class=\"n\">%d</td><td>%X/%X</td><td>",
				   h->timeline + 1, (unsigned)(h->lsn >> 32), (unsigned)h->lsn);
		doc_html(d, h->reason);
		doc_printf(d, "</td></tr>\n");
	}
	doc_printf(d, "</table>\n");
}

static void render_pools(struct doc *d, const struct proxy_view *v)
{
	doc_printf(d, "<h2>Pools</h2>\n");
	if (!v->n_rows) {
		doc_printf(d, "<p class=\"muted\">no pool yet: a pool appears with its first "
			      "client</p>\n");
		return;
	}
	doc_printf(d, "<table>\n<tr><th>database</th><th>user</th><th>mode</th><th>cl_active</th>"
		      "<th>cl_waiting</th><th>sv_active</th><th>sv_idle</th><th>sv_used</th>"
		      "<th>sv_login</th><th>maxwait</th><th>xacts</th><th>queries</th>"
		      "<th>avg xact</th><th>avg wait</th></tr>\n");
	for (size_t i = 0; i < v->n_rows; i++) {
		const struct proxy_pool_row *r = &v->rows[i];
		const struct proxy_pool *pool = r->pool;
		const struct proxy_stats *s = &pool->stats;

		/* As SHOW POOLS names them: db, db@primary, db@member. */
		doc_printf(d, "<tr><td>");
		doc_html(d, pool->database);
		if (pool->port == PROXY_PORT_PRIMARY) {
			doc_printf(d, "@primary");
		} else if (pool->port == PROXY_PORT_REPLICA) {
			doc_printf(d, "@");
			doc_html(d, pool->member);
		}
		doc_printf(d, "</td><td>");
		doc_html(d, pool->user);
		doc_printf(
		    d,
		    "</td><td>%s</td><td class=\"n\">%d</td><td class=\"n\">%d</td>"
		    "<td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%d</td>"
		    "<td class=\"n\">%d</td><td class=\"n%s\">%.1f s</td>"
		    "<td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64 "</td>"
		    "<td class=\"n\">%.2f ms</td><td class=\"n\">%.2f ms</td></tr>\n",
		    pool->transaction_mode ? "transaction" : "session", r->cl_active + r->cl_idle,
		    r->cl_waiting, r->sv_active, r->sv_idle, r->sv_used, r->sv_login,
		    r->maxwait_s >= 1 ? " bad" : "", r->maxwait_s, s->xact_count, s->query_count,
		    s->xact_count ? (double)s->xact_time_us / 1000.0 / (double)s->xact_count : 0.0,
		    s->xact_count ? (double)s->wait_time_us / 1000.0 / (double)s->xact_count : 0.0);
	}
	doc_printf(d, "</table>\n");
}

/* ---- the charts: the last 15 minutes from the rings (plain SVG, no script) ---- */

#define CHART_W 600
#define CHART_H 120

/* A series: a double of struct proxy_sample, by its offset. */
struct chart_series {
	const char *name;
	const char *color;
	size_t off;
};

static double series_at(const struct chart_series *ser, const struct proxy_sample *s)
{
	return *(const double *)((const char *)s + ser->off);
}

static double chart_x(int64_t wall_now, int64_t wall)
{
	double x = CHART_W * (1.0 - (double)(wall_now - wall) / (double)RINGS_WINDOW_MS);

	return x < 0 ? 0 : x > CHART_W ? CHART_W : x;
}

/* One chart: its series as polylines, a dashed red line where the leader changed. The
 * figure carries the last values (data-last) for tools and tests. */
static void chart(struct doc *d, const struct proxy_rings *r, int64_t wall_now, const char *id,
		  const char *title, const char *unit, const struct chart_series *ser, size_t n_ser)
{
	const struct proxy_sample *last = r->n ? rings_at(r, r->n - 1) : NULL;
	double top = 0;

	for (size_t i = 0; i < r->n; i++)
		for (size_t k = 0; k < n_ser; k++) {
			double v = series_at(&ser[k], rings_at(r, i));

			if (v > top)
				top = v;
		}
	top = top < 1 ? 1 : top * 1.1;
	doc_printf(d, "<figure class=\"chart\" id=\"chart-%s\" data-last=\"", id);
	for (size_t k = 0; k < n_ser; k++)
		doc_printf(d, "%s%s=%.3f", k ? " " : "", ser[k].name,
			   last ? series_at(&ser[k], last) : 0.0);
	doc_printf(d, "\"><figcaption>%s", title);
	for (size_t k = 0; k < n_ser; k++)
		doc_printf(d, " &middot; <span style=\"color:%s\">%s <b>%.*f</b></span>",
			   ser[k].color, ser[k].name, last && series_at(&ser[k], last) < 10 ? 2 : 0,
			   last ? series_at(&ser[k], last) : 0.0);
	doc_printf(d, " <span class=\"muted\">(%s, top of the chart %.*f)</span></figcaption>\n",
		   unit, top < 10 ? 2 : 0, top);
	doc_printf(d,
		   "<svg viewBox=\"0 0 %d %d\" preserveAspectRatio=\"none\" role=\"img\" "
		   "aria-label=\"%s, last 15 minutes\">\n"
		   "<rect width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#ddd\"/>\n",
		   CHART_W, CHART_H, title, CHART_W, CHART_H);
	for (int g = 1; g < 3; g++)
		doc_printf(d,
			   "<line x1=\"0\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#eee\" "
			   "vector-effect=\"non-scaling-stroke\"/>\n",
			   CHART_W, CHART_H * g / 3, CHART_H * g / 3);
	for (size_t i = 0; i < r->n; i++) {
		const struct proxy_sample *s = rings_at(r, i);

		if (s->leader_changed)
			doc_printf(d,
				   "<line class=\"leader-change\" x1=\"%.1f\" x2=\"%.1f\" y1=\"0\" "
				   "y2=\"%d\" stroke=\"#c00\" stroke-dasharray=\"4,3\" "
				   "vector-effect=\"non-scaling-stroke\"/>\n",
				   chart_x(wall_now, s->wall_ms), chart_x(wall_now, s->wall_ms),
				   CHART_H);
	}
	for (size_t k = 0; k < n_ser && r->n; k++) {
		doc_printf(d,
			   "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
			   "vector-effect=\"non-scaling-stroke\" points=\"",
			   ser[k].color);
		for (size_t i = 0; i < r->n; i++) {
			const struct proxy_sample *s = rings_at(r, i);

			doc_printf(d, "%s%.1f,%.1f", i ? " " : "", chart_x(wall_now, s->wall_ms),
				   CHART_H - 4 - (CHART_H - 8) * series_at(&ser[k], s) / top);
		}
		doc_printf(d, "\"/>\n");
	}
	doc_printf(d, "</svg><div class=\"axis muted\"><span>15 min ago</span><span>now</span>"
		      "</div></figure>\n");
}

static void render_charts(struct doc *d, const struct proxy_view *v)
{
	const struct proxy_rings *r = &v->p->rings;
	int64_t wall_now = cmn_wall_ms();
#define SAMPLE(f) offsetof(struct proxy_sample, f)
	static const struct chart_series rate[] = {{"transactions/s", "#1f5fbf", SAMPLE(xacts_s)},
						   {"queries/s", "#7a9c2a", SAMPLE(queries_s)}};
	static const struct chart_series times[] = {{"avg", "#1f5fbf", SAMPLE(avg_xact_ms)},
						    {"p99", "#b35c00", SAMPLE(p99_xact_ms)}};
	static const struct chart_series waiting[] = {{"waiting", "#6a3d9a", SAMPLE(waiting)}};
	static const struct chart_series errors[] = {{"errors/s", "#c00", SAMPLE(errors_s)}};
#undef SAMPLE

	doc_printf(d, "<h2>Last 15 minutes</h2>\n");
	if (!r->n) {
		doc_printf(d, "<p class=\"muted\">no sample yet: one every %d s</p>\n",
			   RINGS_STEP_MS / 1000);
		return;
	}
	uint64_t xacts = 0, queries = 0, errs = 0, changes = 0;

	for (size_t i = 0; i < r->n; i++) {
		xacts += rings_at(r, i)->xacts;
		queries += rings_at(r, i)->queries;
		errs += rings_at(r, i)->errors;
		changes += rings_at(r, i)->leader_changed;
	}
	/* The window's totals, for tools and tests. */
	doc_printf(d,
		   "<p class=\"muted\" id=\"window\" data-samples=\"%zu\" data-xacts=\"%" PRIu64
		   "\" data-queries=\"%" PRIu64 "\" data-errors=\"%" PRIu64
		   "\" data-leader-changes=\"%" PRIu64 "\">one sample every %d s: %" PRIu64
		   " transactions, %" PRIu64 " errors, %" PRIu64
		   " leader change(s) in the window; a dashed red line marks a leader change</p>\n"
		   "<div class=\"charts\">\n",
		   r->n, xacts, queries, errs, changes, RINGS_STEP_MS / 1000, xacts, errs, changes);
	chart(d, r, wall_now, "rate", "Throughput", "per second", rate, 2);
	chart(d, r, wall_now, "xact-time", "Transaction time", "ms", times, 2);
	chart(d, r, wall_now, "waiting", "Clients waiting for a server", "clients", waiting, 1);
	chart(d, r, wall_now, "errors", "Errors sent to clients (server lost, timeouts, refusals)",
	      "per second", errors, 1);
	doc_printf(d, "</div>\n");
}

static void render_html(struct doc *d, const struct proxy_view *v)
{
	const struct proxy *p = v->p;
	const char *cluster = p->cfg.cluster_name ? p->cfg.cluster_name : "";
	char when[40];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	doc_raw(d, page_head, sizeof(page_head) - 1);
	doc_printf(d, "<title>");
	doc_html(d, cluster);
	doc_printf(d, " - pgwarden proxy</title></head><body>\n<h1>pgwarden proxy: cluster ");
	doc_html(d, cluster);
	doc_printf(d, "</h1>\n");
	render_overview(d, v);
	render_members(d, v);
	render_history(d, v);
	render_charts(d, v);
	render_pools(d, v);
	doc_printf(
	    d,
	    "<p class=\"muted\">pgwarden %s &middot; %s &middot; refreshes every %d s &middot; "
	    "<a href=\"/metrics\">/metrics</a></p>\n</body></html>\n",
	    PGW_VERSION, when, HTTP_REFRESH_S);
}

void proxy_http_publish(struct proxy_http *h, const struct proxy *p)
{
	struct doc html = {0}, metrics = {0};
	struct proxy_view v;
	char *old_html, *old_metrics;

	if (!h)
		return;
	if (proxy_view_build(&v, p) != PGW_OK) {
		log_warning("status page: out of memory, serving the previous one");
		return;
	}
	render_html(&html, &v);
	render_metrics(&metrics, &v);
	proxy_view_free(&v);
	if (html.failed || metrics.failed || !html.b.data || !metrics.b.data) {
		log_warning("status page: out of memory, serving the previous one");
		cmn_buf_free(&html.b);
		cmn_buf_free(&metrics.b);
		return;
	}
	pthread_mutex_lock(&h->lock);
	old_html = h->html;
	old_metrics = h->metrics;
	h->html = html.b.data;
	h->html_len = html.b.len;
	h->metrics = metrics.b.data;
	h->metrics_len = metrics.b.len;
	pthread_mutex_unlock(&h->lock);
	free(old_html);
	free(old_metrics);
}

/* ---- serving ---- */

#define REALM "pgwarden proxy"

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned int code,
				   const char *reason, const char *allow, bool challenge)
{
	return cmn_httpd_error(conn, code, reason, allow, challenge ? REALM : NULL);
}

static enum MHD_Result check_auth(struct proxy_http *h, struct MHD_Connection *conn, bool *ok)
{
	enum cmn_httpd_auth auth;

	*ok = false;
	if (!h->username)
		return reply_error(conn, MHD_HTTP_FORBIDDEN,
				   "the status page is disabled: set http_username and "
				   "http_password in [proxy]",
				   NULL, false);
	auth = cmn_httpd_basic_auth(conn, h->username, h->password);
	if (auth == CMN_HTTPD_AUTH_NONE)
		return reply_error(conn, MHD_HTTP_UNAUTHORIZED,
				   "authentication required (HTTP basic auth: http_username and "
				   "http_password of [proxy])",
				   NULL, true);
	*ok = auth == CMN_HTTPD_AUTH_OK;
	if (!*ok)
		return reply_error(conn, MHD_HTTP_UNAUTHORIZED, "wrong user name or password", NULL,
				   true);
	return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_data_size, void **req_cls)
{
	static int seen; /* marks a request whose headers we have had */
	struct proxy_http *h = cls;
	bool status_page, ok;
	enum MHD_Result ret;

	(void)version;
	(void)upload_data;
	if (!*req_cls) {
		*req_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0; /* no endpoint takes a body */
		return MHD_YES;
	}
	cmn_http_guard_begin(h->guard, conn);
	if (strcmp(url, "/") == 0 || strcmp(url, "/status") == 0)
		status_page = true;
	else if (strcmp(url, "/metrics") == 0)
		status_page = false;
	else
		return reply_error(conn, MHD_HTTP_NOT_FOUND,
				   "no such page: GET / (status page) or /metrics (Prometheus)",
				   NULL, false);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				   "method not allowed: this page answers GET and HEAD",
				   "GET, HEAD", false);
	if (status_page) {
		ret = check_auth(h, conn, &ok);
		if (!ok)
			return ret;
	}
	pthread_mutex_lock(&h->lock);
	if (status_page ? !h->html : !h->metrics)
		ret = reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				  "starting: nothing rendered yet, retry in a second", NULL, false);
	else if (status_page)
		ret = cmn_httpd_reply(conn, MHD_HTTP_OK, "text/html; charset=utf-8", h->html,
				      h->html_len, NULL, NULL);
	else
		ret = cmn_httpd_reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
				      h->metrics, h->metrics_len, NULL, NULL);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			   enum MHD_RequestTerminationCode toe)
{
	struct proxy_http *h = cls;

	(void)req_cls;
	(void)toe;
	cmn_http_guard_end(h->guard, conn);
}

static void http_free(struct proxy_http *h)
{
	cmn_http_guard_free(h->guard);
	free(h->username);
	free(h->password);
	free(h->html);
	free(h->metrics);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

int proxy_http_start(const struct proxy_config *cfg, struct proxy_http **out)
{
	struct proxy_http *h;
	int fd;

	*out = NULL;
	if (!cfg->http_port)
		return PGW_OK;
	h = calloc(1, sizeof(*h));
	if (!h)
		return PGW_ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	if (cmn_http_guard_new(HTTP_DEADLINE_MS, &h->guard) != PGW_OK) {
		http_free(h);
		return PGW_ENOMEM;
	}
	if (cfg->http_username && *cfg->http_username && cfg->http_password &&
	    *cfg->http_password) {
		h->username = strdup(cfg->http_username);
		h->password = strdup(cfg->http_password);
		if (!h->username || !h->password) {
			http_free(h);
			return PGW_ENOMEM;
		}
	} else {
		log_warning("status page: http_username and http_password are not set in [proxy]: "
			    "/ answers 403 (/metrics is served)");
	}
	fd = cmn_tcp_listen(cfg->listen_host, cfg->http_port, 64, false, "status page");
	if (fd < 0) {
		http_free(h);
		return PGW_ERR;
	}
	/* One thread polls every connection: a request only copies a rendered document. */
	h->daemon = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0, NULL, NULL,
	    handle, h, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)HTTP_CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned int)HTTP_CONN_LIMIT, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
	    MHD_OPTION_NOTIFY_COMPLETED, http_completed, h, MHD_OPTION_NOTIFY_CONNECTION,
	    cmn_http_guard_notify, h->guard, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned int)CMN_HTTP_PER_ADDRESS_LIMIT, MHD_OPTION_END);
	if (!h->daemon) {
		log_error("status page: cannot start the HTTP server on %s:%d", cfg->listen_host,
			  cfg->http_port);
		close(fd);
		http_free(h);
		return PGW_ERR;
	}
	log_info("status page and /metrics on http://%s:%d/", cfg->listen_host, cfg->http_port);
	*out = h;
	return PGW_OK;
}

void proxy_http_stop(struct proxy_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	http_free(h);
}

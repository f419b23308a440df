#include "cluster/member.h"
#include "cluster/dcs.h"
#include "cli/cli.h"
#include "common/http.h"
#include "common/log.h"
#include "common/util.h"

#include <curl/curl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct row {
	char member[DCS_NAME_MAX];
	char host[300];
	char role[16];
	char state[32];
	char tl[16];
	char lag[32];
	char tags[512];
	char pending[4]; /* "*": a parameter change waits for a restart */
	bool live;
	uint64_t lsn;
	bool in_recovery;
};

/* Fills rows from member keys, then live data from each member's REST API. */
static size_t collect(const struct dcs_cluster *c, struct row *rows, uint64_t *leader_lsn)
{
	const char *urls[DCS_MAX_MEMBERS] = {NULL};
	char url_store[DCS_MAX_MEMBERS][400];
	struct cmn_buf bodies[DCS_MAX_MEMBERS];
	long status[DCS_MAX_MEMBERS];
	size_t n = c->n_members;

	memset(bodies, 0, sizeof(bodies));
	*leader_lsn = c->optime;
	for (size_t i = 0; i < n; i++) {
		const struct dcs_member *m = &c->members[i];
		struct row *r = &rows[i];
		bool leader = c->has_leader && strcmp(c->leader, m->name) == 0;

		memset(r, 0, sizeof(*r));
		snprintf(r->member, sizeof(r->member), "%s", m->name);
		snprintf(r->host, sizeof(r->host), "%s:%d", m->host, m->port);
		snprintf(r->role, sizeof(r->role), "%s",
			 leader			    ? "Leader"
			 : dcs_sync_has(c, m->name) ? "Sync Standby"
						    : "Replica");
		if (m->pending_restart)
			snprintf(r->pending, sizeof(r->pending), "*");
		snprintf(r->state, sizeof(r->state), "%s", m->state);
		if (m->timeline)
			snprintf(r->tl, sizeof(r->tl), "%d", m->timeline);
		if (m->tags_json[0] && strcmp(m->tags_json, "{}") != 0)
			snprintf(r->tags, sizeof(r->tags), "%s", m->tags_json);
		snprintf(url_store[i], sizeof(url_store[i]), "%s/status", m->api_url);
		urls[i] = url_store[i];
	}
	cmn_http_get_many(urls, n, 1500, bodies, status);
	for (size_t i = 0; i < n; i++) {
		struct member_status st;
		struct row *r = &rows[i];

		if (status[i] == 200 && member_parse_status(bodies[i].data, &st)) {
			r->live = true;
			if (st.state[0])
				snprintf(r->state, sizeof(r->state), "%s", st.state);
			if (st.timeline)
				snprintf(r->tl, sizeof(r->tl), "%d", st.timeline);
			r->lsn = st.lsn;
			r->in_recovery = strcmp(st.role, "primary") != 0;
			if (strcmp(r->role, "Leader") == 0 && !r->in_recovery && r->lsn)
				*leader_lsn = r->lsn;
		}
		cmn_buf_free(&bodies[i]);
	}
	for (size_t i = 0; i < n; i++) {
		struct row *r = &rows[i];

		if (strcmp(r->role, "Leader") == 0 || !r->live || !r->lsn)
			continue;
		uint64_t lag = *leader_lsn > r->lsn ? *leader_lsn - r->lsn : 0;

		snprintf(r->lag, sizeof(r->lag), "%llu", (unsigned long long)(lag / (1024 * 1024)));
	}
	return n;
}

static int cmp_rows(const void *a, const void *b)
{
	return strcmp(((const struct row *)a)->member, ((const struct row *)b)->member);
}

static void line(const int *w, size_t ncol)
{
	putchar('+');
	for (size_t i = 0; i < ncol; i++) {
		for (int j = 0; j < w[i] + 2; j++)
			putchar('-');
		putchar('+');
	}
	putchar('\n');
}

static void print_table(const char *cluster, const char *sysid, struct row *rows, size_t n)
{
	const char *hdr[] = {"Member",		"Host", "Role", "State", "TL", "Lag in MB",
			     "Pending restart", "Tags"};
	enum { NCOL = 8 };
	int w[NCOL];
	char title[300];

	for (size_t c = 0; c < NCOL; c++)
		w[c] = (int)strlen(hdr[c]);
	for (size_t i = 0; i < n; i++) {
		const char *cells[] = {rows[i].member, rows[i].host, rows[i].role,    rows[i].state,
				       rows[i].tl,     rows[i].lag,  rows[i].pending, rows[i].tags};

		for (size_t c = 0; c < NCOL; c++)
			if ((int)strlen(cells[c]) > w[c])
				w[c] = (int)strlen(cells[c]);
	}
	snprintf(title, sizeof(title), "+ Cluster: %s (%s) ", cluster,
		 sysid[0] ? sysid : "uninitialized");
	int total = 1;

	for (size_t c = 0; c < NCOL; c++)
		total += w[c] + 3;
	printf("%s", title);
	for (int j = (int)strlen(title); j < total - 1; j++)
		putchar('-');
	printf("+\n");
	for (size_t c = 0; c < NCOL; c++)
		printf("| %-*s ", w[c], hdr[c]);
	printf("|\n");
	line(w, NCOL);
	for (size_t i = 0; i < n; i++) {
		printf("| %-*s | %-*s | %-*s | %-*s | %*s | %*s | %-*s | %-*s |\n", w[0],
		       rows[i].member, w[1], rows[i].host, w[2], rows[i].role, w[3], rows[i].state,
		       w[4], rows[i].tl, w[5], rows[i].lag, w[6], rows[i].pending, w[7],
		       rows[i].tags);
	}
	line(w, NCOL);
}

static void print_json(const struct dcs_cluster *c, const char *cluster, struct row *rows, size_t n)
{
	json_object *o = json_object_new_object(), *list = json_object_new_array();

	json_object_object_add(o, "cluster", json_object_new_string(cluster));
	json_object_object_add(o, "system_identifier", json_object_new_string(c->sysid));
	json_object_object_add(o, "leader", json_object_new_string(c->has_leader ? c->leader : ""));
	json_object_object_add(o, "pause", json_object_new_boolean(c->paused));
	if (c->has_sync)
		json_object_object_add(o, "synchronous_standbys",
				       json_object_new_string(c->sync_standby));
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_new_object();

		json_object_object_add(e, "member", json_object_new_string(rows[i].member));
		json_object_object_add(e, "host", json_object_new_string(rows[i].host));
		json_object_object_add(e, "role", json_object_new_string(rows[i].role));
		json_object_object_add(e, "state", json_object_new_string(rows[i].state));
		json_object_object_add(e, "timeline", json_object_new_int(atoi(rows[i].tl)));
		if (rows[i].lag[0])
			json_object_object_add(e, "lag_in_mb",
					       json_object_new_int64(atoll(rows[i].lag)));
		json_object_object_add(e, "lsn", json_object_new_int64((int64_t)rows[i].lsn));
		if (rows[i].pending[0])
			json_object_object_add(e, "pending_restart", json_object_new_boolean(true));
		json_object *tags = rows[i].tags[0] ? json_tokener_parse(rows[i].tags) : NULL;

		json_object_object_add(e, "tags", tags ? tags : json_object_new_object());
		json_object_array_add(list, e);
	}
	json_object_object_add(o, "members", list);
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
	json_object_put(o);
}

void cli_print_list(const struct cli_session *s, bool json)
{
	const struct dcs_cluster *c = &s->cluster;
	struct row rows[DCS_MAX_MEMBERS];
	uint64_t leader_lsn;
	size_t n = collect(c, rows, &leader_lsn);

	qsort(rows, n, sizeof(rows[0]), cmp_rows);
	if (json) {
		print_json(c, s->cfg.cluster_name, rows, n);
	} else {
		print_table(s->cfg.cluster_name, c->sysid, rows, n);
		if (c->paused)
			printf(" Maintenance mode: on\n");
		if (c->has_sync)
			printf(" Synchronous standbys: %s\n",
			       c->sync_standby[0] ? c->sync_standby : "(none)");
	}
}

int cli_list(int argc, char **argv)
{
	struct cli_target t;
	struct cli_session s;
	int rc;

	if (cli_parse_target(argc, argv, "pgwarden list [-c node.ini | --dir DIR] [--json]", &t) <
	    0)
		return CLI_EXIT_USAGE;
	rc = cli_session_open(&t, &s);
	if (rc != CLI_EXIT_OK)
		return rc;
	cli_print_list(&s, t.json);
	cli_session_close(&s);
	return CLI_EXIT_OK;
}

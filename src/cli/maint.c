/*
 * pgwarden restart / reload / reinit: ask members' agents over their REST API
 * (POST /restart, /reload, /reinitialize, with the [api] credentials), as
 * patronictl does. restart is rolling: replicas one by one, each streaming again
 * before the next, the leader last (or handed over first with --switchover).
 */
#include "cluster/member.h"
#include "cluster/dcs.h"
#include "cluster/switchover.h"
#include "cli/cli.h"
#include "common/http.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NAMES DCS_MAX_MEMBERS

/* POSTs to a member; prints "name: message"; true on 2xx. */
static bool post(const struct agent_config *cfg, const struct dcs_member *m, const char *path,
		 const char *body, int timeout_ms)
{
	char url[400], userpwd[600], msg[600] = "";
	struct cmn_buf out = {0};
	long code = 0;
	int rc;

	snprintf(url, sizeof(url), "%s%s", m->api_url, path);
	snprintf(userpwd, sizeof(userpwd), "%s:%s", cfg->api_username ? cfg->api_username : "",
		 cfg->api_password ? cfg->api_password : "");
	rc = cmn_http_request("POST", url, body, cfg->api_username ? userpwd : NULL, timeout_ms,
			      &out, &code);
	if (rc != PGW_OK) {
		fprintf(stderr, "%s: no answer from %s\n", m->name, url);
		cmn_buf_free(&out);
		return false;
	}
	json_object *o = out.data ? json_tokener_parse(out.data) : NULL, *v;

	if (o && (json_object_object_get_ex(o, "message", &v) ||
		  json_object_object_get_ex(o, "error", &v)))
		snprintf(msg, sizeof(msg), "%s", json_object_get_string(v));
	json_object_put(o);
	cmn_buf_free(&out);
	if (code == 401 || code == 403)
		fprintf(stderr, "%s: refused (%ld): %s; check [api] username/password\n", m->name,
			code, msg);
	else if (code < 200 || code >= 300)
		fprintf(stderr, "%s: failed (%ld): %s\n", m->name, code, msg);
	else
		printf("%s: %s\n", m->name, msg);
	return code >= 200 && code < 300;
}

/* Waits until m runs as want_role ("primary", or "replica" streaming). */
static bool wait_member(const struct dcs_member *m, const char *want_role, int timeout_s)
{
	int64_t deadline = cmn_now_ms() + (int64_t)timeout_s * 1000;
	struct member_status st;

	while (cmn_now_ms() < deadline) {
		if (member_fetch_status(m, &st) && strcmp(st.role, want_role) == 0 &&
		    (strcmp(want_role, "primary") == 0 || strcmp(st.state, "streaming") == 0))
			return true;
		usleep(250000);
	}
	fprintf(stderr, "%s: not back as a %s within %d s\n", m->name,
		strcmp(want_role, "primary") == 0 ? "primary" : "streaming replica", timeout_s);
	return false;
}

struct maint_opts {
	struct cli_target t;
	const char *names[MAX_NAMES];
	size_t n_names;
	bool force, pending, switchover;
	int timeout_s;
};

static int parse_maint(int argc, char **argv, const char *usage, struct maint_opts *o)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"dir", required_argument, NULL, 'd'},
	    {"force", no_argument, NULL, 'f'},
	    {"pending", no_argument, NULL, 'p'},
	    {"switchover", no_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->timeout_s = 120;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:d:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->t.config_path = optarg;
			break;
		case 'd':
			o->t.dir = optarg;
			break;
		case 'f':
			o->force = true;
			break;
		case 'p':
			o->pending = true;
			break;
		case 's':
			o->switchover = true;
			break;
		case 't':
			o->timeout_s = atoi(optarg);
			if (o->timeout_s <= 0) {
				fprintf(stderr, "pgwarden: bad --timeout '%s'\n", optarg);
				return -1;
			}
			break;
		default:
			fprintf(stderr, "usage: %s\n", usage);
			return -1;
		}
	}
	for (; optind < argc; optind++) {
		if (o->n_names >= MAX_NAMES) {
			fprintf(stderr, "pgwarden: too many members\n");
			return -1;
		}
		o->names[o->n_names++] = argv[optind];
	}
	return 0;
}

/* The members named (all when none), checked; leader last. -1 on an unknown name. */
static int pick_members(const struct cli_session *s, const struct maint_opts *o,
			const struct dcs_member **out)
{
	const struct dcs_cluster *c = &s->cluster;
	size_t n = 0;

	for (size_t i = 0; i < o->n_names; i++) {
		if (!dcs_find_member(c, o->names[i])) {
			fprintf(stderr, "pgwarden: no member named %s in cluster %s\n", o->names[i],
				s->cfg.cluster_name);
			return -1;
		}
	}
	for (int leader_pass = 0; leader_pass < 2; leader_pass++) {
		for (size_t i = 0; i < c->n_members; i++) {
			const struct dcs_member *m = &c->members[i];
			bool is_leader = c->has_leader && strcmp(c->leader, m->name) == 0;
			bool named = o->n_names == 0;

			for (size_t j = 0; j < o->n_names; j++)
				named = named || strcmp(o->names[j], m->name) == 0;
			if (named && is_leader == (leader_pass == 1))
				out[n++] = m;
		}
	}
	return (int)n;
}

int cli_restart(int argc, char **argv)
{
	const char *usage = "pgwarden restart [-c node.ini | --dir DIR] [MEMBER ...] [--pending] "
			    "[--switchover] [--force] [--timeout S]";
	struct maint_opts o;
	struct cli_session s;
	const struct dcs_member *list[DCS_MAX_MEMBERS];
	int n, rc;

	if (parse_maint(argc, argv, usage, &o) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_session_open(&o.t, &s);
	if (rc != CLI_EXIT_OK)
		return rc;
	n = pick_members(&s, &o, list);
	rc = CLI_EXIT_FAILED;
	if (n < 0) {
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	if (o.pending) {
		int k = 0;

		for (int i = 0; i < n; i++) {
			if (list[i]->pending_restart)
				list[k++] = list[i];
			else
				printf("%s: no pending restart, skipped\n", list[i]->name);
		}
		n = k;
	}
	if (n == 0) {
		printf("Nothing to restart\n");
		rc = CLI_EXIT_OK;
		goto out;
	}
	char question[600];
	size_t qlen = (size_t)snprintf(question, sizeof(question), "Restart");

	for (int i = 0; i < n && qlen < sizeof(question); i++)
		qlen += (size_t)snprintf(question + qlen, sizeof(question) - qlen, " %s",
					 list[i]->name);
	if (qlen < sizeof(question))
		snprintf(question + qlen, sizeof(question) - qlen, "?");
	rc = cli_confirm(o.force, question, "restart");
	if (rc != CLI_EXIT_OK)
		goto out;
	rc = CLI_EXIT_FAILED;
	const struct dcs_cluster *c = &s.cluster;
	const char *body = o.pending ? "{\"restart_pending\": true}" : "{}";

	for (int i = 0; i < n; i++) {
		const struct dcs_member *m = list[i];
		bool leader = c->has_leader && strcmp(c->leader, m->name) == 0;

		if (leader && o.switchover) {
			char why[400], new_leader[DCS_NAME_MAX];
			bool bad;
			struct switchover_policy policy = agent_config_switchover_policy(&s.cfg);

			if (switchover_refusal(&policy, c, m->name, NULL, false, why, sizeof(why),
					       &bad)) {
				fprintf(stderr, "pgwarden: cannot hand over from %s first: %s\n",
					m->name, why);
				goto out;
			}
			if (switchover_request(&s.dcs, c, NULL, false, 0, o.timeout_s * 1000, why,
					       sizeof(why), new_leader,
					       sizeof(new_leader)) != SWITCHOVER_DONE) {
				fprintf(stderr, "pgwarden: %s\n", why);
				goto out;
			}
			printf("%s: switched over to %s (restarted as a replica)\n", m->name,
			       new_leader);
			if (!wait_member(m, "replica", o.timeout_s))
				goto out;
			continue;
		}
		if (!post(&s.cfg, m, "/restart", body, (o.timeout_s + 30) * 1000))
			goto out;
		if (!wait_member(m, leader ? "primary" : "replica", o.timeout_s))
			goto out;
	}
	rc = CLI_EXIT_OK;
out:
	cli_session_close(&s);
	return rc;
}

int cli_reload(int argc, char **argv)
{
	const char *usage = "pgwarden reload [-c node.ini | --dir DIR] [MEMBER ...]";
	struct maint_opts o;
	struct cli_session s;
	const struct dcs_member *list[DCS_MAX_MEMBERS];
	int n, rc;

	if (parse_maint(argc, argv, usage, &o) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_session_open(&o.t, &s);
	if (rc != CLI_EXIT_OK)
		return rc;
	n = pick_members(&s, &o, list);
	rc = n < 0 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	for (int i = 0; i < n; i++)
		if (!post(&s.cfg, list[i], "/reload", "{}", 30000))
			rc = CLI_EXIT_FAILED;
	cli_session_close(&s);
	return rc;
}

int cli_reinit(int argc, char **argv)
{
	const char *usage =
	    "pgwarden reinit [-c node.ini | --dir DIR] MEMBER [--force] [--timeout S]";
	struct maint_opts o;
	struct cli_session s;
	const struct dcs_member *m;
	char question[200];
	int rc;

	if (parse_maint(argc, argv, usage, &o) < 0)
		return CLI_EXIT_USAGE;
	if (o.n_names != 1) {
		fprintf(stderr, "pgwarden: reinit needs exactly one member\nusage: %s\n", usage);
		return CLI_EXIT_USAGE;
	}
	rc = cli_session_open(&o.t, &s);
	if (rc != CLI_EXIT_OK)
		return rc;
	rc = CLI_EXIT_FAILED;
	m = dcs_find_member(&s.cluster, o.names[0]);
	if (!m) {
		fprintf(stderr, "pgwarden: no member named %s in cluster %s\n", o.names[0],
			s.cfg.cluster_name);
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	if (s.cluster.has_leader && strcmp(s.cluster.leader, m->name) == 0) {
		fprintf(stderr, "pgwarden: %s is the leader: switch over first\n", m->name);
		goto out;
	}
	snprintf(question, sizeof(question),
		 "Wipe the data of %s and clone it again from the leader?", m->name);
	rc = cli_confirm(o.force, question, "reinitialize");
	if (rc != CLI_EXIT_OK)
		goto out;
	rc = CLI_EXIT_FAILED;
	if (!post(&s.cfg, m, "/reinitialize", "{}", 60000))
		goto out;
	if (!wait_member(m, "replica", o.timeout_s))
		goto out;
	printf("%s: streaming again\n", m->name);
	rc = CLI_EXIT_OK;
out:
	cli_session_close(&s);
	return rc;
}

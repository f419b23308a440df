/*
 * pgwarden backup check: pgBackRest's own check (the leader archives, the repository
 * answers), then the archive's continuity: every WAL segment a restore needs, from the
 * oldest backup's first segment to the newest archived one, across every timeline switch
 * on the current timeline's history.
 */
#include "node/backup.h"
#include "cli/cli.h"
#include "cli/pitr.h"
#include "cli/repo.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_USAGE "pgwarden backup check [-c node.ini | --dir DIR]"
#define MAX_HISTORY 1024

struct archive_files {
	struct pitr_segment *segs;
	size_t n, cap;
	int latest_tl; /* the highest timeline with a segment or a history file */
};

static int add_segment(struct archive_files *a, struct pitr_segment s)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 256;
		struct pitr_segment *p = realloc(a->segs, cap * sizeof(*p));

		if (!p)
			return -1;
		a->segs = p;
		a->cap = cap;
	}
	a->segs[a->n++] = s;
	return 0;
}

/* repo-ls of archive/<stanza>/<id>, recursively: the segments and the latest timeline. */
static int list_archive(const struct agent_config *m, const char *path, struct archive_files *a,
			char *err, size_t err_size)
{
	const char *extra[] = {path, "--recurse", "--output=json", NULL};
	struct cmn_buf out = {0};
	json_object *doc;
	int code = cli_pgbackrest(m, "repo-ls", extra, 120000, &out);

	if (code != 0) {
		snprintf(err, err_size, "pgbackrest repo-ls %s failed (exit %d): %s", path, code,
			 out.data ? out.data : "");
		cmn_buf_free(&out);
		return -1;
	}
	doc = json_tokener_parse(out.data ? out.data : "");
	cmn_buf_free(&out);
	if (!doc || !json_object_is_type(doc, json_type_object)) {
		snprintf(err, err_size, "pgbackrest repo-ls %s: not JSON", path);
		json_object_put(doc);
		return -1;
	}
	json_object_object_foreach(doc, key, val)
	{
		const char *base = strrchr(key, '/') ? strrchr(key, '/') + 1 : key;
		struct pitr_segment s;
		unsigned int tl;
		char extra_c;

		(void)val;
		if (pitr_parse_segment_name(base, &s)) {
			if (add_segment(a, s) != 0) {
				json_object_put(doc);
				snprintf(err, err_size, "out of memory");
				return -1;
			}
			if (s.tl > a->latest_tl)
				a->latest_tl = s.tl;
		} else if (strlen(base) == 16 && sscanf(base, "%8X.histor%c", &tl, &extra_c) == 2 &&
			   strcmp(base + 8, ".history") == 0 && (int)tl > a->latest_tl) {
			a->latest_tl = (int)tl;
		}
	}
	json_object_put(doc);
	return 0;
}

/*
 * Where pgbackrest check runs: where the leader is (it switches WAL there), its member's
 * configuration into m; on the repository host, with the leader reached over TLS (its
 * options in pg_opt / pg_extra, its name in name).
 */
static int check_source(struct cli_target *t, struct agent_config *m, char *name, size_t size,
			char pg_opt[][4200], const char **pg_extra)
{
	struct cli_session s;
	int rc;

	name[0] = '\0';
	if (t->dir && cli_session_open(t, &s) == CLI_EXIT_OK) {
		if (s.cluster.has_leader)
			snprintf(name, size, "%s", s.cluster.leader);
		cli_session_close(&s);
	}
	rc = cli_repo_member(t, name[0] ? name : NULL, m);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (!agent_config_is_repository(m))
		return CLI_EXIT_OK;
	if (!agent_config_has_tls(m)) {
		fprintf(stderr, "pgwarden: a check from the repository host needs [backup] "
				"tls_ca_file, tls_cert_file and tls_key_file\n");
		agent_config_free(m);
		return CLI_EXIT_USAGE;
	}
	if (cli_session_open(t, &s) == CLI_EXIT_OK) {
		const struct dcs_member *l = cli_member(&s.cluster, s.cluster.leader);

		if (l && l->pgbackrest.port) {
			snprintf(name, size, "%s", l->name);
			cli_pg_host_opts(m, 1, l, pg_opt, pg_extra);
			pg_extra[CLI_PG_HOST_OPTS] = NULL;
		}
		cli_session_close(&s);
	}
	if (!pg_extra[0]) {
		fprintf(stderr, "pgwarden: no leader publishes a pgBackRest TLS server: nothing to "
				"check from\n");
		agent_config_free(m);
		return CLI_EXIT_FAILED;
	}
	return CLI_EXIT_OK;
}

/* The timelines' switch points from the newest timeline's history file (path: the
 * archive's folder in the repository); how many, or -1 (said). */
static int read_history(const struct agent_config *m, const char *path, int tl,
			struct tl_switch *history)
{
	struct cmn_buf out = {0};
	char file[600];
	const char *extra[] = {file, NULL};
	int code, n;

	snprintf(file, sizeof(file), "%s/%08X.history", path, (unsigned)tl);
	code = cli_pgbackrest(m, "repo-get", extra, 60000, &out);
	n = code == 0 ? pgcontrol_parse_history(out.data ? out.data : "", history, MAX_HISTORY)
		      : -1;
	if (n < 0)
		printf("archive: FAILED: cannot read %s (exit %d)\n%s", file, code,
		       out.data ? out.data : "");
	cmn_buf_free(&out);
	return n;
}

/*
 * The archive is continuous from the oldest backup's first segment to now, on every
 * timeline: the gaps are added to *problems. -1 (said) when it cannot be checked.
 */
static int check_continuity(const struct agent_config *m, int *problems)
{
	struct archive_files a = {0};
	struct tl_switch history[MAX_HISTORY];
	struct pitr_segment start;
	char err[4096], path[512], report[8192];
	const char *archive_id = NULL, *first_seg;
	json_object *st, *arr, *oldest;
	int n_history = 0, rc = -1;
	size_t checked = 0;

	st = cli_repo_info(m, err, sizeof(err));
	if (!st) {
		fprintf(stderr, "pgwarden: %s\n", err);
		return -1;
	}
	if (!json_object_object_get_ex(st, "backup", &arr) ||
	    !json_object_is_type(arr, json_type_array) || json_object_array_length(arr) == 0) {
		printf("archive: no backup yet, so no restorable window to check\n");
		json_object_put(st);
		return 0;
	}
	oldest = json_object_array_get_idx(arr, 0);
	first_seg = cli_jstr(oldest, "archive", "start");
	if (json_object_object_get_ex(st, "archive", &arr) &&
	    json_object_is_type(arr, json_type_array) && json_object_array_length(arr))
		archive_id = cli_jstr(
		    json_object_array_get_idx(arr, json_object_array_length(arr) - 1), "id", NULL);
	if (!first_seg || !pitr_parse_segment_name(first_seg, &start) || !archive_id) {
		fprintf(stderr, "pgwarden: pgbackrest info: no archive start or id\n");
		goto out;
	}
	snprintf(path, sizeof(path), "archive/%s/%s", m->backup_stanza, archive_id);
	if (list_archive(m, path, &a, err, sizeof(err)) != 0) {
		fprintf(stderr, "pgwarden: %s\n", err);
		goto out;
	}
	if (a.latest_tl > 1 && (n_history = read_history(m, path, a.latest_tl, history)) < 0)
		goto out;
	int gaps = pitr_check_continuity(a.segs, a.n, history, (size_t)n_history, a.latest_tl,
					 start, report, sizeof(report), &checked);

	if (gaps == 0) {
		printf("archive: continuous from %s (backup %s) over timeline%s", first_seg,
		       cli_jstr(oldest, "label", NULL) ?: "?", n_history ? "s " : " ");
		for (int i = 0; i < n_history; i++)
			printf("%d, ", history[i].tl);
		printf("%d: %zu segments checked\n", a.latest_tl, checked);
	} else {
		printf("archive: %d GAP%s from %s (backup %s) to timeline %d:\n%s", gaps,
		       gaps > 1 ? "S" : "", first_seg, cli_jstr(oldest, "label", NULL) ?: "?",
		       a.latest_tl, report);
		*problems += gaps;
	}
	rc = 0;
out:
	json_object_put(st);
	free(a.segs);
	return rc;
}

int cli_backup_check(int argc, char **argv)
{
	struct cli_target t = {0};
	struct agent_config m;
	struct cmn_buf out = {0};
	char name[256], pg_opt[CLI_PG_HOST_OPTS][4200];
	const char *pg_extra[CLI_PG_HOST_OPTS + 1] = {NULL}, *member;
	int problems = 0, rc, code;
	bool repo;

	if (cli_parse_target(argc, argv, CHECK_USAGE, &t) < 0)
		return CLI_EXIT_USAGE;
	cli_default_dir(&t);
	rc = check_source(&t, &m, name, sizeof(name), pg_opt, pg_extra);
	if (rc != CLI_EXIT_OK)
		return rc;
	repo = agent_config_is_repository(&m);
	member = repo ? name : m.member_name;
	printf("Stanza %s, repository %s\n", m.backup_stanza, m.backup_repo_path);
	code = cli_pgbackrest(&m, "check", repo ? pg_extra : NULL, 180000, &out);
	if (code == 0) {
		printf("pgbackrest check (from %s): ok\n", member);
	} else {
		printf("pgbackrest check (from %s): FAILED (exit %d)\n%s", member, code,
		       out.data ? out.data : "");
		problems++;
	}
	cmn_buf_free(&out);
	rc = check_continuity(&m, &problems) != 0 ? CLI_EXIT_FAILED
	     : problems				  ? CLI_EXIT_FAILED
						  : CLI_EXIT_OK;
	agent_config_free(&m);
	return rc;
}

int cli_repo_verify(const struct agent_config *m, struct pitr_verify *v, char *err, size_t err_size)
{
	const char *extra[] = {"--output=text", "--verbose", "--log-level-console=info", NULL};
	struct cmn_buf out = {0};
	int code = cli_pgbackrest(m, "verify", extra, 3600 * 1000, &out);

	if (code != 0 || pitr_parse_verify(out.data ? out.data : "", v) != 0) {
		snprintf(err, err_size, "pgbackrest verify failed (exit %d): %.1500s", code,
			 out.data ? out.data : "");
		cmn_buf_free(&out);
		return -1;
	}
	cmn_buf_free(&out);
	return 0;
}

int cli_backup_verify(int argc, char **argv)
{
	struct cli_target t = {0};
	struct agent_config m;
	struct pitr_verify *v;
	char err[2048];
	int rc, bad = 0;

	if (cli_parse_target(argc, argv, "pgwarden backup verify [-c node.ini | --dir DIR]", &t) <
	    0)
		return CLI_EXIT_USAGE;
	rc = cli_repo_member(&t, NULL, &m);
	if (rc != CLI_EXIT_OK)
		return rc;
	v = calloc(1, sizeof(*v));
	if (!v || cli_repo_verify(&m, v, err, sizeof(err)) != 0) {
		fprintf(stderr, "pgwarden: %s\n", v ? err : "out of memory");
		free(v);
		agent_config_free(&m);
		return CLI_EXIT_FAILED;
	}
	printf("Stanza %s, repository %s (pgbackrest verify: every file's checksum)\n",
	       m.backup_stanza, m.backup_repo_path);
	for (size_t i = 0; i < v->n_backup; i++) {
		printf("%-33s %s%s%s\n", v->backup[i].label,
		       v->backup[i].valid ? "valid" : "DAMAGED",
		       v->backup[i].problems[0] ? ": " : "", v->backup[i].problems);
		bad += !v->backup[i].valid;
	}
	printf("%-33s %s%s%s\n", "WAL archive", v->archive_ok ? "valid" : "DAMAGED",
	       v->archive_problems[0] ? ": " : "", v->archive_problems);
	bad += !v->archive_ok;
	free(v);
	agent_config_free(&m);
	return bad ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

/*
 * Unit tests of the proxy's pure parts: the auth file (proxy/userlist.c), text going
 * into the status page and /metrics (proxy/doc.c), and the admin console's commands
 * (proxy/admin.c), run against a proxy with no connections.
 */
#include "proxy/admin.h"
#include "common/doc.h"
#include "proxy/proxycfg.h"
#include "proxy/rings.h"
#include "proxy/userlist.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char *write_temp(const char *text)
{
	static char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/pgw-unit-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* The charts' rings: buckets within 25 %, the p99, one sample per 5 s, 15 minutes kept. */
static void test_rings(void **state)
{
	static struct proxy_rings r;
	uint32_t hist[RINGS_BUCKETS] = {0};

	(void)state;
	/* Every value lies in its bucket, whose upper bound is at most 25 % above it. */
	for (uint64_t us = 1; us < 100000000; us = us * 3 / 2 + 1) {
		int b = rings_bucket(us);

		assert_true(b >= 0 && b < RINGS_BUCKETS);
		assert_true(rings_bucket_upper_ms(b) * 1000.0 > (double)us);
		assert_true(rings_bucket_upper_ms(b) * 1000.0 <= (double)us * 1.25 + 1);
		assert_true(b == 0 || rings_bucket_upper_ms(b - 1) * 1000.0 <= (double)us);
	}
	assert_int_equal(rings_bucket(UINT64_MAX), RINGS_BUCKETS - 1);
	/* 98 transactions of 1 ms, 2 of 100 ms: the p99 is in the 100 ms bucket. */
	assert_true(rings_quantile_ms(hist, 0.99) == 0);
	hist[rings_bucket(1000)] = 98;
	hist[rings_bucket(100000)] = 2;
	assert_true(rings_quantile_ms(hist, 0.99) >= 100 && rings_quantile_ms(hist, 0.99) <= 125);
	assert_true(rings_quantile_ms(hist, 0.5) >= 1 && rings_quantile_ms(hist, 0.5) <= 1.25);

	/* The first tick starts the interval; a sample only after 5 s. */
	assert_false(rings_tick(&r, 1000, 50000, 0, 7));
	for (int i = 0; i < 100; i++)
		rings_xact(&r, i < 99 ? 2000 : 50000);
	r.queries = 300;
	r.errors = 5;
	assert_false(rings_tick(&r, 5999, 54999, 0, 7));
	assert_true(rings_due(&r, 6000));
	assert_true(rings_tick(&r, 6000, 55000, 3, 8));
	assert_int_equal(r.n, 1);
	const struct proxy_sample *s = rings_at(&r, 0);

	assert_true(s->xacts_s == 20 && s->queries_s == 60 && s->errors_s == 1);
	assert_true(s->avg_xact_ms > 2.47 && s->avg_xact_ms < 2.49);
	assert_true(s->p99_xact_ms >= 2 && s->p99_xact_ms <= 2.5);
	assert_int_equal(s->waiting, 3);
	assert_true(s->leader_changed);
	assert_int_equal((int)s->wall_ms, 55000);
	/* The interval starts empty again; a full ring keeps the last 180, oldest first. */
	for (int i = 1; i <= RINGS_SAMPLES + 10; i++)
		assert_true(rings_tick(&r, 6000 + i * RINGS_STEP_MS, 55000 + i, i, 8));
	assert_int_equal(r.n, RINGS_SAMPLES);
	assert_int_equal(rings_at(&r, 0)->waiting, 11);
	assert_int_equal(rings_at(&r, RINGS_SAMPLES - 1)->waiting, RINGS_SAMPLES + 10);
	assert_true(rings_at(&r, 0)->xacts_s == 0 && !rings_at(&r, 0)->leader_changed);
}

static void test_auth_file(void **state)
{
	struct proxy_userlist l;
	char err[300];
	char *path;

	(void)state;
	path = write_temp("; comment\n# comment\n\n\"alice\" \"s3cret\"\n"
			  "\"bob\" \"md5"
			  "0123456789abcdef0123456789abcdef\"\n"
			  "  \"q\"\"uote\" \"pw\"\n");
	assert_int_equal(proxy_userlist_load(path, &l, err, sizeof(err)), PGW_OK);
	unlink(path);
	assert_int_equal(l.n, 3);
	struct proxy_user *u = proxy_userlist_find(&l, "alice");

	assert_non_null(u);
	assert_string_equal(u->password, "s3cret");
	assert_true(u->has_md5 && u->has_scram);
	u = proxy_userlist_find(&l, "bob");
	assert_non_null(u);
	assert_null(u->password);
	assert_true(u->has_md5);
	assert_false(u->has_scram);
	assert_non_null(proxy_userlist_find(&l, "q\"uote"));
	assert_null(proxy_userlist_find(&l, "carol"));
	/* auth_query's answers add a user or replace its secret. */
	assert_int_equal(proxy_userlist_set(&l, "carol", "pw2"), PGW_OK);
	assert_int_equal(proxy_userlist_set(&l, "alice", "new"), PGW_OK);
	assert_string_equal(proxy_userlist_find(&l, "alice")->password, "new");
	assert_int_equal(l.n, 4);
	proxy_userlist_free(&l);

	/* Errors name the file and the line. */
	path = write_temp("\"alice\" \"pw\"\nalice pw\n");
	assert_int_equal(proxy_userlist_load(path, &l, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, ":2: expected \"user\" \"password\""));
	unlink(path);
	path = write_temp("\"alice\" \"SCRAM-SHA-256$broken\"\n");
	assert_int_equal(proxy_userlist_load(path, &l, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, ":1: bad SCRAM verifier for alice"));
	unlink(path);
	assert_int_equal(proxy_userlist_load("/nonexistent/users", &l, err, sizeof(err)),
			 PGW_EINVAL);
}

static void test_proxy_configuration(void **state)
{
	struct proxy_config cfg;
	char err[512];
	char *path;

	(void)state;
	path = write_temp("[cluster]\nname = demo\n[proxy]\nauth_type = trust\n");
	assert_int_equal(proxy_config_load(path, &cfg, err, sizeof(err)), PGW_OK);
	unlink(path);
	/* The defaults, the [cluster]/[etcd] ones shared with the agent's among them. */
	assert_string_equal(cfg.cluster_name, "demo");
	assert_string_equal(cfg.namespace, "/service");
	assert_int_equal(cfg.ttl_ms, 4000);
	assert_string_equal(cfg.etcd.endpoints, "http://127.0.0.1:2379");
	assert_int_equal(cfg.pooled_port, 6432);
	assert_int_equal(cfg.primary_port, 5000);
	assert_int_equal(cfg.replica_port, 5001);
	assert_false(cfg.server_plain_auth);
	proxy_config_free(&cfg);

	/* Errors name the file and the line, or the key. */
	path = write_temp("[cluster]\nname = demo\n[proxy]\nauth_type = scram-sha-256\n");
	assert_int_equal(proxy_config_load(path, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "needs an auth_file"));
	unlink(path);
	path = write_temp("[cluster]\nname = demo\npoolsize = 3\n");
	assert_int_equal(proxy_config_load(path, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, ":3: unknown key 'poolsize'"));
	unlink(path);
	path = write_temp("[cluster]\nname = demo\n[proxy]\nauth_type = plain\n");
	assert_int_equal(proxy_config_load(path, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "bad value 'plain' for 'auth_type'"));
	unlink(path);
	path = write_temp("[cluster]\nname = demo\n[proxy]\nauth_type = trust\nlisten =\n");
	assert_int_equal(proxy_config_load(path, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "'listen' in [proxy] is empty"));
	unlink(path);
	path = write_temp("[proxy]\npooled_port = 6432\n");
	assert_int_equal(proxy_config_load(path, &cfg, err, sizeof(err)), PGW_EINVAL);
	assert_non_null(strstr(err, "name"));
	unlink(path);
}

static void test_escaping_for_html_and_labels(void **state)
{
	struct doc d = {0};

	(void)state;
	doc_html(&d, "<b a='1'>\"x\" & y</b>\x01\xff caf\xc3\xa9");
	assert_false(d.failed);
	assert_string_equal(d.b.data, "&lt;b a=&#39;1&#39;&gt;&quot;x&quot; &amp; y&lt;/b&gt;?? "
				      "caf\xc3\xa9");
	cmn_buf_reset(&d.b);
	doc_label(&d, "a\"b\\c\nd\x7f\xc0\xaf");
	assert_string_equal(d.b.data, "a\\\"b\\\\c\\nd???");
	cmn_buf_reset(&d.b);
	doc_printf(&d, "%s-%d", "x", 7);
	DOC_LIT(&d, "!");
	assert_string_equal(d.b.data, "x-7!");
	cmn_buf_free(&d.b);
}

static int admin_pause_calls;

static void fake_pause(struct proxy *p, bool pause)
{
	p->paused = pause;
	admin_pause_calls++;
}

static int fake_reload(struct proxy *p)
{
	(void)p;
	return PGW_ERR;
}

/* The message types of an answer, and the text of its first error (if any). */
static void answer(const struct cmn_buf *out, char *types, size_t size, char *sqlstate)
{
	size_t n = 0;

	*sqlstate = '\0';
	for (size_t off = 0; off + 5 <= out->len && n + 1 < size;) {
		const uint8_t *m = (const uint8_t *)out->data + off;
		uint32_t len =
		    (uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 8 | m[4];

		types[n++] = (char)m[0];
		if (m[0] == 'E' && !*sqlstate)
			for (size_t i = 5; i + 6 < len + 1; i++)
				if (m[i] == 'C') {
					memcpy(sqlstate, m + i + 1, 5);
					sqlstate[5] = '\0';
					break;
				}
		off += 1 + len;
	}
	types[n] = '\0';
}

static void test_admin_console_commands(void **state)
{
	static const struct proxy_admin_ops ops = {.pause = fake_pause, .reload = fake_reload};
	struct proxy *p = calloc(1, sizeof(*p));
	struct proxy_client c = {0};
	struct cmn_buf out = {0};
	char types[32], sqlstate[6];
	bool shutdown;

	(void)state;
	assert_non_null(p);
	TAILQ_INIT(&p->pools);
	p->cfg.admin_users = "admin";
	snprintf(c.user, sizeof(c.user), "admin");
	assert_int_equal(proxy_admin_query(p, &ops, &c, "SHOW VERSION;", &out, &shutdown), PGW_OK);
	answer(&out, types, sizeof(types), sqlstate);
	assert_string_equal(types, "TDCZ"); /* RowDescription, DataRow, Complete, Ready */
	assert_non_null(memmem(out.data, out.len, "pgwarden", 8));
	cmn_buf_reset(&out);
	assert_int_equal(proxy_admin_query(p, &ops, &c, "show pools", &out, &shutdown), PGW_OK);
	answer(&out, types, sizeof(types), sqlstate);
	assert_string_equal(types, "TCZ"); /* no pool, no row */
	cmn_buf_reset(&out);
	assert_int_equal(proxy_admin_query(p, &ops, &c, "  PAUSE ; ", &out, &shutdown), PGW_OK);
	assert_int_equal(admin_pause_calls, 1);
	assert_true(p->paused);
	cmn_buf_reset(&out);
	assert_int_equal(proxy_admin_query(p, &ops, &c, "reload", &out, &shutdown), PGW_OK);
	answer(&out, types, sizeof(types), sqlstate);
	assert_string_equal(sqlstate, "F0000");
	cmn_buf_reset(&out);
	assert_int_equal(proxy_admin_query(p, &ops, &c, "SHUTDOWN", &out, &shutdown), PGW_OK);
	assert_true(shutdown);
	cmn_buf_reset(&out);
	assert_int_equal(proxy_admin_query(p, &ops, &c, "SHOW nothing", &out, &shutdown), PGW_OK);
	answer(&out, types, sizeof(types), sqlstate);
	assert_string_equal(sqlstate, "42704");
	cmn_buf_reset(&out);
	assert_int_equal(proxy_admin_query(p, &ops, &c, "DROP TABLE x", &out, &shutdown), PGW_OK);
	answer(&out, types, sizeof(types), sqlstate);
	assert_string_equal(sqlstate, "42601");
	/* stats_users look, admin_users act. */
	snprintf(c.user, sizeof(c.user), "viewer");
	cmn_buf_reset(&out);
	assert_int_equal(proxy_admin_query(p, &ops, &c, "RESUME", &out, &shutdown), PGW_OK);
	answer(&out, types, sizeof(types), sqlstate);
	assert_string_equal(sqlstate, "42501");
	assert_int_equal(admin_pause_calls, 1);
	assert_true(p->paused);
	cmn_buf_free(&out);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_auth_file),
	    cmocka_unit_test(test_rings),
	    cmocka_unit_test(test_proxy_configuration),
	    cmocka_unit_test(test_escaping_for_html_and_labels),
	    cmocka_unit_test(test_admin_console_commands),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

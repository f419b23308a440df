/* Unit tests of src/cluster/dcs.c: the cluster view built from keys, and the watch cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/dcs.h"
#include "common/util.h"

#define PREFIX "/service/demo/"

static struct etcd_kv kv(const char *name, const char *value, int64_t mod, int64_t lease)
{
	static char keys[16][128];
	static int next;
	struct etcd_kv k;
	char *key = keys[next++ % 16];

	snprintf(key, 128, PREFIX "%s", name);
	memset(&k, 0, sizeof(k));
	k.key = key;
	k.key_len = strlen(key);
	k.value = (char *)value;
	k.value_len = strlen(value);
	k.mod_revision = mod;
	k.create_revision = mod;
	k.lease = lease;
	return k;
}

static void test_cluster_from_kvs(void **state)
{
	struct dcs d;
	struct dcs_cluster c;
	struct etcd_kv kvs[6];

	(void)state;
	dcs_init(&d, NULL, "/service", "demo");
	assert_string_equal(d.prefix, PREFIX);
	kvs[0] = kv("initialize", "7312", 2, 0);
	kvs[1] = kv("leader", "node1", 5, 77);
	kvs[2] =
	    kv("members/node1",
	       "{\"host\":\"10.0.0.1\",\"port\":5432,\"role\":\"primary\",\"state\":\"running\","
	       "\"timeline\":3,\"tags\":{\"nofailover\":true}}",
	       6, 77);
	kvs[3] = kv("status", "{\"optime\":1234,\"timeline\":3}", 7, 0);
	kvs[4] = kv("config", "{\"pause\":true}", 8, 0);
	kvs[5] = kv("members/bad", "not json", 9, 0);
	dcs_cluster_from_kvs(&d, kvs, 6, 9, &c);
	assert_true(c.has_initialize);
	assert_string_equal(c.sysid, "7312");
	assert_true(c.has_leader);
	assert_string_equal(c.leader, "node1");
	assert_int_equal(c.leader_lease, 77);
	assert_int_equal(c.n_members, 1); /* the unreadable member is skipped */
	assert_string_equal(c.members[0].host, "10.0.0.1");
	assert_int_equal(c.members[0].timeline, 3);
	assert_true(c.members[0].nofailover);
	assert_int_equal(c.optime, 1234);
	assert_int_equal(c.leader_timeline, 3);
	assert_true(c.paused);
	assert_int_equal(c.config_mod_revision, 8);
	dcs_cluster_free(&c);
}

/* allowed_networks: a member whose addresses lie outside is left out (issue 14 item 3). */
static void test_members_outside_allowed_networks(void **state)
{
	struct dcs d;
	struct dcs_cluster c;
	struct etcd_kv kvs[4];
	char why[200];

	(void)state;
	dcs_init(&d, NULL, "/service", "demo");
	d.allowed_networks = "10.0.0.0/8, fd00::/8,192.168.1.7";
	kvs[0] =
	    kv("members/in", "{\"host\":\"10.9.8.7\",\"api_url\":\"http://10.9.8.7:8008\"}", 2, 0);
	kvs[1] =
	    kv("members/v6", "{\"host\":\"fd00::5\",\"api_url\":\"http://[fd00::5]:8008\"}", 3, 0);
	kvs[2] = kv("members/out", "{\"host\":\"203.0.113.9\",\"port\":5432}", 4, 0);
	kvs[3] = kv("members/api",
		    "{\"host\":\"192.168.1.7\",\"api_url\":\"http://192.168.1.8:8008\"}", 5, 0);
	dcs_cluster_from_kvs(&d, kvs, 4, 5, &c);
	assert_int_equal(c.n_members, 2);
	assert_string_equal(c.members[0].name, "in");
	assert_string_equal(c.members[1].name, "v6");
	dcs_cluster_free(&c);
	d.allowed_networks = NULL; /* any */
	dcs_cluster_from_kvs(&d, kvs, 4, 5, &c);
	assert_int_equal(c.n_members, 4);
	dcs_cluster_free(&c);

	assert_true(cmn_host_in_networks("10.1.2.3", "10.0.0.0/8"));
	assert_false(cmn_host_in_networks("11.1.2.3", "10.0.0.0/8"));
	assert_true(cmn_host_in_networks("10.1.2.3", "10.1.2.0/25"));
	assert_false(cmn_host_in_networks("10.1.2.200", "10.1.2.0/25"));
	assert_true(cmn_host_in_networks("anything", ""));
	assert_false(cmn_host_in_networks("", "10.0.0.0/8"));
	/* a name is not: it could resolve elsewhere by the time it is used */
	assert_false(cmn_host_in_networks("localhost", "127.0.0.0/8, ::1"));
	assert_int_equal(cmn_networks_check("10.0.0.0/8, ::1, 192.168.0.0/16", why, sizeof(why)),
			 PGW_OK);
	assert_int_equal(cmn_networks_check("10.0.0.0/33", why, sizeof(why)), PGW_EINVAL);
	assert_non_null(strstr(why, "10.0.0.0/33"));
	assert_int_equal(cmn_networks_check("example.com", why, sizeof(why)), PGW_EINVAL);
}

static void test_proxies_and_their_drain(void **state)
{
	struct dcs d;
	struct dcs_cluster c;
	struct etcd_kv kvs[6];
	char waiting[200];
	char *json;

	(void)state;
	dcs_init(&d, NULL, "/service", "demo");
	kvs[0] = kv("leader", "node1", 5, 77);
	kvs[1] = kv("failover", "{\"leader\":\"node1\",\"candidate\":\"node2\"}", 40, 0);
	kvs[2] = kv("proxies/px1:6432", "{\"drained\":40}", 41, 90);
	kvs[3] = kv("proxies/px2:6432", "{\"drained\":0}", 12, 91);
	kvs[4] = kv("proxies/px3", "garbage", 13, 92);
	kvs[5] = kv("proxies/", "{\"drained\":40}", 14, 93); /* no name: ignored */
	dcs_cluster_from_kvs(&d, kvs, 6, 41, &c);
	assert_true(c.has_switchover);
	assert_int_equal(c.switchover_revision, 40);
	assert_false(c.switchover_drain);
	assert_int_equal(c.n_proxies, 3);
	assert_string_equal(c.proxies[0].name, "px1:6432");
	assert_int_equal(c.proxies[0].drained, 40);
	assert_int_equal(c.proxies[1].drained, 0);
	assert_int_equal(c.proxies[2].drained, 0); /* unreadable: counts, drained nothing */
	assert_false(dcs_proxies_drained(&c, 40, waiting, sizeof(waiting)));
	assert_string_equal(waiting, "px2:6432,px3");
	/* A drain for an older request does not count for a new one. */
	assert_false(dcs_proxies_drained(&c, 52, waiting, sizeof(waiting)));
	assert_string_equal(waiting, "px1:6432,px2:6432,px3");
	/* A string revision is read too (as the gateway might show it). */
	kvs[3] = kv("proxies/px2:6432", "{\"drained\":\"40\"}", 42, 91);
	kvs[4] = kv("proxies/px3", "{\"drained\":40}", 43, 92);
	kvs[1] = kv("failover",
		    "{\"leader\":\"node1\",\"candidate\":\"node2\",\"scheduled_at\":0,"
		    "\"drain\":true}",
		    40, 0);
	dcs_cluster_free(&c);
	dcs_cluster_from_kvs(&d, kvs, 5, 43, &c);
	assert_true(c.switchover_drain); /* the leader asks the proxies to drain */
	assert_string_equal(c.switchover_candidate, "node2");
	assert_true(c.switchover_stopped_at == 0); /* not stopped yet */
	assert_true(dcs_proxies_drained(&c, 40, waiting, sizeof(waiting)));
	assert_string_equal(waiting, "");
	assert_false(dcs_proxies_drained(&c, 0, NULL, 0)); /* no revision: never drained */
	dcs_cluster_free(&c);
	/* The old leader's shutdown checkpoint, with the leader key gone. */
	kvs[0] = kv("failover",
		    "{\"leader\":\"node1\",\"candidate\":\"node2\",\"scheduled_at\":0,"
		    "\"drain\":true,\"stopped_at\":4311744552}",
		    44, 0);
	dcs_cluster_from_kvs(&d, kvs, 1, 44, &c);
	assert_false(c.has_leader);
	assert_true(c.switchover_drain);
	assert_true(c.switchover_stopped_at == 4311744552ULL); /* past 32 bits */
	dcs_cluster_free(&c);
	kvs[0] = kv("leader", "node1", 5, 77);
	/* No proxy registered: nothing to wait for. */
	dcs_cluster_from_kvs(&d, kvs, 2, 43, &c);
	assert_int_equal(c.n_proxies, 0);
	assert_true(dcs_proxies_drained(&c, 40, waiting, sizeof(waiting)));
	dcs_cluster_free(&c);
	json = dcs_proxy_to_json(40);
	assert_string_equal(json, "{\"drained\":40}");
	free(json);
	assert_true(dcs_proxy_name_ok("db1.example.com:6432"));
	assert_false(dcs_proxy_name_ok(""));
	assert_false(dcs_proxy_name_ok("a/b"));
	assert_false(dcs_proxy_name_ok("a b"));
	assert_false(
	    dcs_proxy_name_ok("0123456789012345678901234567890123456789012345678901234567890123"));
}

static void test_cache_follows_events_in_order(void **state)
{
	struct dcs d;
	struct dcs_cache cache;
	struct dcs_cluster c;
	struct etcd_kv kvs[1];
	struct etcd_range_result r;
	struct etcd_header h = {.revision = 20};
	struct etcd_event ev;

	(void)state;
	dcs_init(&d, NULL, "/service", "demo");
	dcs_cache_init(&cache);
	assert_false(dcs_cache_snapshot(&d, &cache, &c));

	kvs[0] = kv("leader", "node1", 10, 77);
	memset(&r, 0, sizeof(r));
	r.header.revision = 10;
	r.kvs = kvs;
	r.n_kvs = 1;
	dcs_cache_load(&cache, &r);
	assert_true(dcs_cache_snapshot(&d, &cache, &c));
	assert_string_equal(c.leader, "node1");
	dcs_cluster_free(&c);

	/* A "created" message whose header runs ahead must not hide later events. */
	dcs_cache_apply(&cache, &h, NULL, 0);
	memset(&ev, 0, sizeof(ev));
	ev.type = ETCD_EVENT_DELETE;
	ev.kv = kv("leader", "", 15, 0);
	dcs_cache_apply(&cache, &h, &ev, 1);
	assert_true(dcs_cache_snapshot(&d, &cache, &c));
	assert_false(c.has_leader);
	dcs_cluster_free(&c);

	/* An event older than what the cache holds is ignored. */
	ev.type = ETCD_EVENT_PUT;
	ev.kv = kv("leader", "node9", 12, 1);
	dcs_cache_apply(&cache, &h, &ev, 1);
	assert_true(dcs_cache_snapshot(&d, &cache, &c));
	assert_false(c.has_leader);
	dcs_cluster_free(&c);

	/* A newer one is applied. */
	ev.kv = kv("leader", "node2", 21, 88);
	dcs_cache_apply(&cache, &h, &ev, 1);
	assert_true(dcs_cache_snapshot(&d, &cache, &c));
	assert_string_equal(c.leader, "node2");
	assert_int_equal(c.leader_lease, 88);
	dcs_cluster_free(&c);

	/* A full read older than the cache does not roll it back. */
	r.header.revision = 18;
	dcs_cache_load(&cache, &r);
	assert_true(dcs_cache_snapshot(&d, &cache, &c));
	assert_string_equal(c.leader, "node2");
	dcs_cluster_free(&c);

	dcs_cache_invalidate(&cache);
	assert_false(dcs_cache_snapshot(&d, &cache, &c));
	dcs_cache_destroy(&cache);
}

/* The history key's last entries, newest first; malformed entries and text skipped. */
static void test_history_last(void **state)
{
	struct dcs_history_entry h[3];

	(void)state;
	assert_int_equal(dcs_history_last(NULL, h, 3), 0);
	assert_int_equal(dcs_history_last("not json", h, 3), 0);
	assert_int_equal(dcs_history_last("{\"a\": 1}", h, 3), 0);
	const char *text =
	    "[[1, 100, \"switchover\", \"2026-12-07T10:00:00Z\", \"node2\"], \"junk\", [7],"
	    " [2, 200, \"failover: node2 lost\", \"2026-12-07T11:00:00Z\", \"node3\"],"
	    " [3, 50331648, \"x<y\", \"2026-12-07T12:00:00Z\"],"
	    " [4, 400, \"switchover\", \"2026-12-07T13:00:00Z\", \"node1\"]]";

	assert_int_equal(dcs_history_last(text, h, 3), 3);
	assert_int_equal(h[0].timeline, 4);
	assert_string_equal(h[0].leader, "node1");
	assert_int_equal(h[1].timeline, 3);
	assert_int_equal((int)h[1].lsn, 50331648);
	assert_string_equal(h[1].reason, "x<y");
	assert_string_equal(h[1].leader, ""); /* an entry without its new leader */
	assert_int_equal(h[2].timeline, 2);
	assert_string_equal(h[2].reason, "failover: node2 lost");
	assert_string_equal(h[2].time, "2026-12-07T11:00:00Z");
	assert_int_equal(dcs_history_last(text, h, 1), 1);
	assert_int_equal(h[0].timeline, 4);
}

static void test_member_json_round_trip(void **state)
{
	struct dcs_member m, back;
	char *json;

	(void)state;
	memset(&m, 0, sizeof(m));
	snprintf(m.name, sizeof(m.name), "node2");
	snprintf(m.host, sizeof(m.host), "10.0.0.2");
	m.port = 5433;
	snprintf(m.api_url, sizeof(m.api_url), "http://10.0.0.2:8009");
	snprintf(m.role, sizeof(m.role), "replica");
	snprintf(m.state, sizeof(m.state), "streaming");
	m.timeline = 4;
	snprintf(m.tags_json, sizeof(m.tags_json), "{\"clonefrom\":true,\"zone\":\"a\"}");
	json = dcs_member_to_json(&m);
	assert_non_null(json);
	assert_int_equal(dcs_member_from_json("node2", json, strlen(json), &back), PGW_OK);
	assert_string_equal(back.host, "10.0.0.2");
	assert_int_equal(back.port, 5433);
	assert_string_equal(back.state, "streaming");
	assert_int_equal(back.timeline, 4);
	assert_true(back.clonefrom);
	assert_false(back.nofailover);
	free(json);
	assert_int_equal(dcs_member_from_json("x", "[1,2]", 5, &back), PGW_EPROTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cluster_from_kvs),
	    cmocka_unit_test(test_proxies_and_their_drain),
	    cmocka_unit_test(test_members_outside_allowed_networks),
	    cmocka_unit_test(test_cache_follows_events_in_order),
	    cmocka_unit_test(test_member_json_round_trip),
	    cmocka_unit_test(test_history_last),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

"""The agent's GET /metrics (issue 17): Patroni's metric names and labels, so Patroni's
dashboards and alert rules read pgwarden unchanged, plus pgwarden_* of our own; the text
is valid Prometheus exposition format; a scrape answers, with gauges saying what is down,
while etcd is gone."""
import re
import time
import urllib.request

from conftest import wait_for

PATRONI = [
    "patroni_version", "patroni_postgres_running", "patroni_postmaster_start_time",
    "patroni_primary", "patroni_master", "patroni_xlog_location", "patroni_standby_leader",
    "patroni_replica", "patroni_sync_standby", "patroni_quorum_standby",
    "patroni_xlog_received_location", "patroni_xlog_replayed_location",
    "patroni_xlog_replayed_timestamp", "patroni_xlog_paused", "patroni_postgres_streaming",
    "patroni_postgres_in_archive_recovery", "patroni_postgres_server_version",
    "patroni_cluster_unlocked", "patroni_failsafe_mode_is_active",
    "patroni_postgres_timeline", "patroni_dcs_last_seen", "patroni_pending_restart",
    "patroni_is_paused",
]
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')


def parse(text):
    """Strict Prometheus text format 0.0.4: every sample after its family's HELP and
    TYPE, valid names, labels and values, no series twice. {(name, labels): value}."""
    types, samples, family = {}, {}, None
    assert text.endswith("\n"), "no final newline"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            family = line.split(" ", 3)[2]
            assert NAME.match(family) and family not in types, line
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == family, "TYPE without its HELP: " + line
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped"), line
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample: %r" % line
        name, labels = m.group(1), ()
        base = re.sub(r"_(sum|count)$", "", name) if types.get(family) == "summary" else name
        assert base == family, "%s outside its family %s" % (name, family)
        if m.group(3):
            pairs = LABEL.findall(m.group(3))
            assert "".join('%s="%s"%s' % p for p in pairs) == m.group(3), line
            labels = tuple(sorted((k, v) for k, v, _ in pairs))
        value = float(m.group(4))
        assert (name, labels) not in samples, "twice: " + line
        samples[(name, labels)] = value
    return types, samples


def scrape(cluster, i):
    url = "http://127.0.0.1:%d/metrics" % (cluster.api_port + i)
    with urllib.request.urlopen(url, timeout=2) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(resp.read().decode())


def value(samples, name, member, **extra):
    labels = dict(scope="demo", name=member, **extra)
    return samples.get((name, tuple(sorted(labels.items()))))


def test_agent_metrics_use_patronis_names(shared_cluster):
    cluster = shared_cluster
    leader = cluster.leader()
    names = ["node%d" % (i + 1) for i in range(cluster.N)]
    for i in range(cluster.N):
        me = names[i]

        def ready():  # on the leader, with every replica's lag
            t = scrape(cluster, i)
            lags = [k for k in t[1] if k[0] == "pgwarden_replication_lag_bytes"]
            return t if i != leader or len(lags) == cluster.N - 1 else None
        types, s = wait_for("%s's metrics" % me, ready, 30)
        for name in PATRONI:
            assert value(s, name, me) is not None, "%s: no %s" % (me, name)
        assert types["patroni_xlog_location"] == "counter"
        assert value(s, "patroni_postgres_running", me) == 1
        assert 150000 <= value(s, "patroni_postgres_server_version", me) < 160000
        assert value(s, "patroni_cluster_unlocked", me) == 0
        assert value(s, "patroni_postgres_timeline", me) >= 1
        assert abs(time.time() - value(s, "patroni_dcs_last_seen", me)) < 20
        assert value(s, "patroni_postmaster_start_time", me) > 1.6e9
        assert value(s, "pgwarden_dcs_ok", me) == 1
        assert value(s, "pgwarden_lease_renewals_total", me, result="ok") > 0
        assert value(s, "pgwarden_ha_loop_seconds_count", me) > 0
        assert value(s, "pgwarden_ha_loop_seconds_sum", me) > 0
        if i == leader:
            assert value(s, "patroni_primary", me) == value(s, "patroni_master", me) == 1
            assert value(s, "patroni_replica", me) == 0
            assert value(s, "patroni_xlog_location", me) > 0
            assert value(s, "pgwarden_ha_decisions_total", me, action="keep_leader") > 0
            assert value(s, "pgwarden_fence_armed", me) in (0, 1)
            for r in names:
                if r != me:
                    assert value(s, "pgwarden_replication_lag_bytes", me, replica=r,
                                 state="streaming") is not None, (r, sorted(s))
                    assert value(s, "pgwarden_replication_lag_seconds", me, replica=r,
                                 state="streaming") >= 0
        else:
            assert value(s, "patroni_primary", me) == 0
            assert value(s, "patroni_replica", me) == 1
            assert value(s, "patroni_postgres_streaming", me) == 1
            assert value(s, "patroni_xlog_location", me) == 0
            assert value(s, "patroni_xlog_received_location", me) > 0
            assert value(s, "patroni_xlog_replayed_location", me) > 0
            assert not [k for k in s if k[0] == "pgwarden_replication_lag_bytes"]
    # Counters only grow: a later scrape of the leader has more renewals and loops.
    _, before = scrape(cluster, leader)
    me = names[leader]
    wait_for("more lease renewals", lambda: value(
        scrape(cluster, leader)[1], "pgwarden_lease_renewals_total", me, result="ok") >
        value(before, "pgwarden_lease_renewals_total", me, result="ok"), 30)


def test_metrics_answer_while_etcd_is_gone(cluster):
    """Every etcd member killed: each agent's /metrics still answers at once (the text of
    its last loop), its gauges say etcd is gone, and the leader, which cannot renew its
    lease, reports itself no longer primary."""
    leader = cluster.leader()
    me = "node%d" % (leader + 1)
    for i in range(3):
        cluster.kill(cluster.etcd_pid(i))

    def down():
        _, s = scrape(cluster, leader)  # a scrape that does not answer in 2 s fails
        return s if value(s, "pgwarden_dcs_ok", me) == 0 and \
            value(s, "patroni_primary", me) == 0 else None
    s = wait_for("the leader's metrics to say etcd is gone and it is no longer primary",
                 down, 60)
    assert value(s, "pgwarden_etcd_errors_total", me) > 0
    assert value(s, "pgwarden_lease_renewals_total", me, result="failed") > 0
    assert time.time() - value(s, "patroni_dcs_last_seen", me) > 1
    for i in range(cluster.N):
        scrape(cluster, i)

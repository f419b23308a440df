"""Maintenance mode: while paused no agent promotes, demotes or restarts anything;
resume and the cluster heals by itself."""
import time

from conftest import wait_for

TTL = 4


def cluster_leader_key(cluster, i):
    code, body = cluster.api(i, "/cluster")
    return body.get("leader") if code == 200 else None


def test_pause_then_resume(cluster):
    leader = cluster.leader()
    replicas = [i for i in range(cluster.N) if i != leader]
    out = cluster.run("pause", "--dir", cluster.dir).stdout
    assert "Success: cluster management is paused" in out
    wait_for("every agent to see the pause",
             lambda: all((cluster.status(i) or {}).get("pause") for i in range(cluster.N)), 10)
    assert "Maintenance mode: on" in cluster.run("list", "--dir", cluster.dir).stdout

    # Postgres of the leader stopped "by hand": no restart, no promotion, key kept.
    cluster.kill(cluster.postmaster_pid(leader))
    wait_for("the leader's postgres to be gone", lambda: cluster.postmaster_pid(leader) is None, 10)
    end = time.monotonic() + 2 * TTL + 2
    while time.monotonic() < end:
        assert cluster.postmaster_pid(leader) is None, "paused agent restarted postgres"
        assert cluster.writable_nodes() == [], "a replica was promoted while paused"
        assert cluster_leader_key(cluster, replicas[0]) == "node%d" % (leader + 1)
        time.sleep(0.3)

    out = cluster.run("resume", "--dir", cluster.dir).stdout
    assert "Success: cluster management is resumed" in out
    assert "Maintenance mode" not in cluster.run("list", "--dir", cluster.dir).stdout
    new = cluster.wait_healthy()
    wait_for("one writable node", lambda: cluster.writable_nodes() == [new], 20)
    cluster.query(new, "INSERT INTO t (id) VALUES (1)")

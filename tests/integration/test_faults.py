"""Faults under a live agent: postgres crash, agent crash, etcd member loss (the rest is in
the chaos suite, tests/chaos)."""
import os
import time

from conftest import wait_for

TTL = 4


def hold(what, cond, duration, interval=0.2):
    """Asserts cond() stays true for the whole duration."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        assert cond(), "stopped holding: " + what
        time.sleep(interval)


def test_postgres_crash_on_leader_is_restarted(cluster):
    leader = cluster.leader()
    tl = cluster.timeline(leader)
    cluster.kill(cluster.postmaster_pid(leader))
    wait_for("the leader writable again", lambda: cluster.writable(leader), 30)
    assert cluster.wait_healthy() == leader
    assert cluster.timeline(leader) == tl
    assert cluster.writable_nodes() == [leader]


def test_postgres_crash_on_replica_is_restarted(cluster):
    leader = cluster.leader()
    replica = (leader + 1) % cluster.N
    old_pm = cluster.postmaster_pid(replica)
    cluster.kill(old_pm)
    wait_for("a new postmaster", lambda: cluster.postmaster_pid(replica) not in (None, old_pm),
             30)
    assert cluster.wait_healthy() == leader


def test_agent_crash_readopts_running_postgres(cluster):
    leader = cluster.leader()
    tl = cluster.timeline(leader)
    pm = cluster.postmaster_pid(leader)
    history = cluster.api(leader, "/history")[1]
    cluster.kill(cluster.agent_pid(leader))
    cluster.up()
    assert cluster.wait_healthy() == leader
    # Same server process: the new agent adopted it instead of restarting it.
    assert cluster.postmaster_pid(leader) == pm
    assert cluster.timeline(leader) == tl
    assert cluster.api(leader, "/history")[1] == history
    hold("no failover", lambda: cluster.leader() == leader, TTL + 2)


def test_one_etcd_member_lost_changes_nothing(cluster):
    leader = cluster.leader()
    tl = cluster.timeline(leader)
    # etcd1 is etcd's raft leader here: losing it costs an etcd election (1-2 election
    # timeouts of 1 s, twice on a split vote), during which no lease can be renewed. A
    # 4 s ttl cannot cover that on a loaded machine (the agent rightly demotes when it can
    # no longer prove its lease alive), so this test runs with a production-like margin.
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "ttl=10", "--force")
    wait_for("every agent on the new ttl",
             lambda: all("ttl is now 10000 ms" in cluster.log(i) for i in range(3)), 15)
    cluster.kill(cluster.etcd_pid(0))
    hold("same leader, writable", lambda: cluster.leader() == leader and
         cluster.writable(leader), 2 * TTL + 2)
    assert cluster.timeline(leader) == tl
    cluster.up()
    assert cluster.wait_healthy() == leader


# The agent stalled longer than the ttl and the loss of etcd's quorum are in the chaos
# suite (tests/chaos: stop_agent, etcd_quorum_loss), checked against every invariant.


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_proxy_with_etcd_refusing_waits_quietly(cluster):
    """Every etcd member gone (connections refused): the proxy's retries keep a calm pace:
    little CPU and a few log lines, not a spinning thread (issue 14, item 7)."""
    pid = cluster.proxy_pid()
    for i in range(3):
        cluster.kill(cluster.etcd_pid(i))
    wait_for("the proxy to notice", lambda: "etcd" in cluster.proxy_log()[-2000:], 30)
    wait_for("its lease to run out (ttl): a new one asked for",
             lambda: "/v3/lease/grant" in cluster.proxy_log(), 3 * TTL)
    cpu0, lines0 = cpu_seconds(pid), cluster.proxy_log().count("\n")
    window = 4.0
    time.sleep(window)  # a rate over a fixed window: nothing to wait for
    cpu, lines = cpu_seconds(pid) - cpu0, cluster.proxy_log().count("\n") - lines0
    assert cpu < 0.25 * window, "the proxy used %.2f s of CPU in %.0f s" % (cpu, window)
    assert lines < 100, "%d log lines in %.0f s:\n%s" % (
        lines, window, "\n".join(cluster.proxy_log().splitlines()[-10:]))
    assert cluster.proxy_pid() == pid

"""SIGTERM to the leader's agent (what `docker service update --force` or a host shutdown
sends) under load through the proxy: the agent hands the leader role to a replica through
the planned switchover before it stops, so clients of the pooled port see a pause, never an
error, and lose no acknowledged commit. The stopped node rejoins with `up`, without
pg_rewind."""
import os
import re
import signal
import threading
import time

from conftest import http, wait_for
from test_proxy_switchover import TxnClient

# The product target for the longest pause between two commits; this test runs under
# sanitizers on a loaded machine and asserts GAP_BOUND, printing the measured gap.
GAP_TARGET = 1.0
GAP_BOUND = 3.0


class LivenessProbe:
    """Polls an agent's GET /liveness while it runs; remembers every answer's status."""

    def __init__(self, cluster, i):
        self.cluster, self.i = cluster, i
        self.codes = []  # (monotonic time, HTTP status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self):
        while not self._stop.is_set():
            try:
                code, _ = self.cluster.api(self.i, "/liveness", timeout=1.0)
                self.codes.append((time.monotonic(), code))
            except OSError:
                pass  # the agent has exited (or is exiting)
            self._stop.wait(0.1)


def test_sigterm_to_the_leader_under_load_pauses_without_errors(cluster):
    old = cluster.leader()
    tl = cluster.timeline(old)
    metrics = "http://127.0.0.1:%d/metrics" % (cluster.proxy_port + 3)
    wait_for("the proxy registered in etcd",
             lambda: "pgwarden_proxy_registered 1\n" in http("GET", metrics)[1], 30)
    clients = [TxnClient(cluster.proxy_dsn(), 10_000_000 * (k + 1)).start() for k in range(8)]
    probe = None
    try:
        wait_for("commits from every client", lambda: all(len(c.acked) >= 20 for c in clients),
                 30)
        probe = LivenessProbe(cluster, old).start()
        signalled = time.monotonic()
        cluster.kill(cluster.agent_pid(old), signal.SIGTERM)
        wait_for("the old leader's agent to exit", lambda: cluster.agent_pid(old) is None, 40)
        exited = time.monotonic()
        probe.stop()
        new = wait_for("a new leader",
                       lambda: (lambda l: l if l not in (None, old) else None)(cluster.leader()),
                       20)
        wait_for("every client committing on the new leader",
                 lambda: all(any(at > exited for _, at in c.acked) for c in clients), 30)
    finally:
        if probe:
            probe.stop()
        for c in clients:
            c.stop()
    errors = [e for c in clients for e in c.errors]
    times = sorted(at for c in clients for _, at in c.acked)
    gap = max(b - a for a, b in zip(times, times[1:]) if a >= signalled - 1)
    worst = max(max((b - a for (_, a), (_, b) in zip(c.acked, c.acked[1:])
                     if a >= signalled - 1), default=0) for c in clients)
    log = cluster.log(old)
    took = re.search(r"hand-over done in (\d+) ms", log)
    print("\nSIGTERM to the leader's agent, 8 clients through 6432: %d transactions, %d errors, "
          "longest gap between any two commits %.3f s (target <= %.1f s), longest gap of one "
          "client %.3f s, hand-over %s ms, agent exited %.2f s after the signal"
          % (len(times), len(errors), gap, GAP_TARGET, worst, took and took.group(1),
             exited - signalled))
    assert not errors, errors[:5]
    # Handed over through the planned switchover, then stopped for good.
    assert "handing the leader role over to node%d first" % (new + 1) in log, log[-3000:]
    assert "1 proxy asked to drain" in log and "1 proxy drained after" in log
    assert took, log[-3000:]
    # The key went at the shutdown checkpoint, not after the postmaster's exit, and the
    # candidate took it only once it had received that checkpoint.
    early = re.search(r"shutdown checkpoint at (\S+) written: leader key released", log)
    assert early, log[-3000:]
    assert ("replayed the old leader's shutdown checkpoint (%s)" % early.group(1)
            in cluster.log(new)), cluster.log(new)[-3000:]
    # The candidate knew the next timeline was free: no archive lookups on the way.
    assert "timeline %d is not in the archive" % (tl + 1) in cluster.log(new)
    assert "without archive lookups" in cluster.log(new), cluster.log(new)[-3000:]
    assert cluster.postmaster_pid(old) is None
    assert cluster.timeline(new) == tl + 1
    # The REST API answered all along, the loop alive.
    during = [code for at, code in probe.codes if at >= signalled]
    assert during and all(code == 200 for code in during), probe.codes
    # Every acknowledged commit is on the new leader.
    final = {r[0] for r in cluster.query(new, "SELECT id FROM t")}
    acked = {i for c in clients for i, _ in c.acked}
    missing = acked - final
    assert not missing, "%d acknowledged transactions lost" % len(missing)
    assert gap < GAP_BOUND, "commits paused for %.2f s" % gap
    assert worst < 10, "a client waited %.1f s" % worst

    # The stopped node comes back with the cluster's own command, as a streaming replica of
    # the new timeline, without pg_rewind (it stopped cleanly before the timeline began).
    wait_for("the timeline switch in history",
             lambda: any(h[0] == tl for h in cluster.api(new, "/history")[1]), 20)
    cluster.up()
    assert cluster.wait_healthy() == new
    st = cluster.status(old)
    assert st["role"] == "replica" and st["state"] == "streaming" and st["timeline"] == tl + 1
    after = cluster.log(old).split("hand-over done in")[-1]
    assert "started rewinding" not in after and "started creating replica" not in after, after


def stopped_proxy(cluster):
    """The proxy frozen (SIGSTOP) while registered in etcd: a planned switchover waits for
    its drained report until its lease expires (ttl) or switchover_proxy_wait."""
    wait_for("the proxy registered in etcd", lambda: "registered as" in cluster.proxy_log(), 30)
    pid = cluster.proxy_pid()
    os.kill(pid, signal.SIGSTOP)
    return pid


def set_node_option(cluster, i, line):
    """Adds a [cluster] line to node i's node.ini and restarts its agent (kill -9, then
    `up`: the new agent adopts the running PostgreSQL and keeps the leader key)."""
    ini = os.path.join(cluster.dir, "node%d" % (i + 1), "node.ini")
    with open(ini) as f:
        text = f.read()
    with open(ini, "w") as f:
        f.write(text.replace("[cluster]\n", "[cluster]\n%s\n" % line, 1))
    pm = cluster.postmaster_pid(i)
    cluster.kill(cluster.agent_pid(i))
    cluster.up()
    assert cluster.wait_healthy() == i and cluster.postmaster_pid(i) == pm


def assert_stopped_as_before(cluster, old, tl):
    """The old leader's agent gone, its PostgreSQL stopped, its switchover request withdrawn
    and the key released, then taken by a replica as after any loss of the leader."""
    wait_for("the old leader's agent to exit", lambda: cluster.agent_pid(old) is None, 30)
    assert cluster.postmaster_pid(old) is None
    new = wait_for("a new leader",
                   lambda: (lambda l: l if l not in (None, old) else None)(cluster.leader()), 30)
    wait_for("node%d writable" % (new + 1), lambda: cluster.writable_nodes() == [new], 20)
    assert cluster.timeline(new) == tl + 1
    log = cluster.log(old)
    assert "released the leader key" in log and "hand-over done" not in log, log[-3000:]
    assert "could not clear our switchover request" not in log
    return new


def test_second_sigterm_during_the_hand_over_stops_at_once(cluster):
    old = cluster.leader()
    tl = cluster.timeline(old)
    proxy = stopped_proxy(cluster)
    try:
        agent = cluster.agent_pid(old)
        cluster.kill(agent, signal.SIGTERM)
        wait_for("the hand-over waiting for the stopped proxy",
                 lambda: "switchover: waiting for proxies to drain" in cluster.log(old), 15)
        cluster.kill(agent, signal.SIGTERM)
        second = time.monotonic()
        wait_for("the old leader's agent to exit", lambda: cluster.agent_pid(old) is None, 15)
        took = time.monotonic() - second
    finally:
        os.kill(proxy, signal.SIGCONT)
    print("\nagent exited %.2f s after the second SIGTERM" % took)
    assert "second signal after" in cluster.log(old)
    assert took < 5  # not the proxy's lease (4 s) plus the rest of the switchover
    assert_stopped_as_before(cluster, old, tl)
    cluster.up()
    cluster.wait_healthy()


def test_hand_over_out_of_time_stops_as_before(cluster):
    old = cluster.leader()
    tl = cluster.timeline(old)
    set_node_option(cluster, old, "shutdown_handover_timeout = 2s")
    proxy = stopped_proxy(cluster)
    try:
        signalled = time.monotonic()
        cluster.kill(cluster.agent_pid(old), signal.SIGTERM)
        wait_for("the old leader's agent to exit", lambda: cluster.agent_pid(old) is None, 20)
        took = time.monotonic() - signalled
    finally:
        os.kill(proxy, signal.SIGCONT)
    log = cluster.log(old)
    assert "handing the leader role over to node" in log, log[-3000:]
    assert "hand-over did not finish in 2000 ms: stopping now" in log
    assert took < 8, "the agent took %.1f s to exit" % took
    assert_stopped_as_before(cluster, old, tl)
    cluster.up()
    cluster.wait_healthy()
    # A candidate that went without restore_command for the request has it back.
    for i in range(cluster.N):
        wait_for("node%d's restore_command" % (i + 1), lambda i=i: "archive-get %f" in
                 cluster.query(i, "SHOW restore_command")[0][0], 20)


def test_paused_leader_stops_without_hand_over(cluster):
    """Maintenance mode: no switchover; SIGTERM stops PostgreSQL as before (and, paused,
    nobody takes the key)."""
    old = cluster.leader()
    cluster.run("pause", "--dir", cluster.dir)
    wait_for("the leader to see the pause", lambda: (cluster.status(old) or {}).get("pause"), 10)
    cluster.kill(cluster.agent_pid(old), signal.SIGTERM)
    wait_for("the leader's agent to exit", lambda: cluster.agent_pid(old) is None, 30)
    assert cluster.postmaster_pid(old) is None
    log = cluster.log(old)
    assert "maintenance mode, no hand-over" in log and "handing the leader role" not in log
    assert cluster.writable_nodes() == []
    cluster.run("resume", "--dir", cluster.dir)
    cluster.up()
    cluster.wait_healthy()

"""Planned switchover: no committed row lost, the old leader rejoins without pg_rewind;
and the refusals that leave the cluster untouched."""
import json
import subprocess
import time

from conftest import PGWARDEN, Writer, wait_for


def test_switchover_under_load_loses_nothing(cluster):
    old = cluster.leader()
    tl = cluster.timeline(old)
    cand = (old + 1) % cluster.N
    writer = Writer(cluster.multihost_dsn(), interval=0.02).start()
    try:
        wait_for("first commits", lambda: len(writer.acked) >= 20, 20)
        out = cluster.run("switchover", "--dir", cluster.dir, "--candidate",
                          "node%d" % (cand + 1), "--force").stdout
        assert "Successfully switched over to node%d" % (cand + 1) in out
        assert cluster.wait_healthy() == cand
        assert cluster.timeline(cand) == tl + 1
        assert cluster.timeline(old) == tl + 1
        assert cluster.status(old)["role"] == "replica"
        since = time.monotonic()
        wait_for("commits on the new leader", lambda: len(writer.acks_after(since)) >= 10, 20)
    finally:
        writer.stop()
    # The old leader stopped cleanly before the new timeline began: no rewind needed.
    log = cluster.log(old)
    assert "started rewinding" not in log and "started creating replica" not in log.split(
        "switchover requested")[-1]
    final = {r[0] for r in cluster.query(cand, "SELECT id FROM t")}
    missing = writer.acked_ids() - final
    assert not missing, "%d committed rows lost" % len(missing)
    history = cluster.api(cand, "/history")[1]
    assert history[-1][0] == tl and history[-1][4] == "node%d" % (cand + 1)
    # pgwarden history shows the same switch.
    out = cluster.run("history", "--dir", cluster.dir).stdout
    rows = [l for l in out.splitlines() if l.startswith("| ") and "Reason" not in l]
    assert rows[-1].split("|")[5].strip() == "node%d" % (cand + 1), out
    assert json.loads(cluster.run("history", "--dir", cluster.dir, "--json").stdout) == history


def test_switchover_refusals_change_nothing(cluster):
    leader = cluster.leader()
    name = "node%d" % (leader + 1)
    other = "node%d" % ((leader + 1) % cluster.N + 1)
    cases = [
        (["--candidate", name, "--force"], "is already the leader"),
        (["--candidate", "node9", "--force"], "no member named node9"),
        (["--leader", other, "--force"], "%s is not the leader (%s is)" % (other, name)),
        (["--scheduled", "tomorrow", "--force"], "bad --scheduled"),
    ]
    for args, expect in cases:
        proc = cluster.run("switchover", "--dir", cluster.dir, *args, check=False)
        assert proc.returncode in (1, 2), proc
        assert expect in proc.stderr, proc.stderr
    # No terminal and no --force: refused.
    proc = subprocess.run([PGWARDEN, "switchover", "--dir", cluster.dir], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=cluster.env, timeout=60)
    assert proc.returncode == 2 and "--force" in proc.stderr
    # Paused: refused.
    cluster.run("pause", "--dir", cluster.dir)
    proc = cluster.run("switchover", "--dir", cluster.dir, "--force", check=False)
    assert proc.returncode == 1 and "maintenance mode" in proc.stderr
    cluster.run("resume", "--dir", cluster.dir)
    assert cluster.leader() == leader
    assert cluster.writable_nodes() == [leader]


def test_failover_to_named_candidate(cluster):
    """failover --candidate works with a healthy leader and right after losing it."""
    leader = cluster.leader()
    cand = (leader + 1) % cluster.N
    out = cluster.run("failover", "--dir", cluster.dir, "--candidate", "node%d" % (cand + 1),
                      "--force").stdout
    assert "Successfully failed over to node%d" % (cand + 1) in out
    assert cluster.wait_healthy() == cand
    # The leader's host dies; the operator names the member to promote at once.
    other = (cand + 1) % cluster.N
    cluster.kill_host(cand)
    out = cluster.run("failover", "--dir", cluster.dir, "--candidate", "node%d" % (other + 1),
                      "--force", "--timeout", "60").stdout
    assert "Successfully failed over to node%d" % (other + 1) in out
    wait_for("node%d writable" % (other + 1), lambda: cluster.writable_nodes() == [other], 20)
    cluster.up()
    assert cluster.wait_healthy() == other
    proc = cluster.run("failover", "--dir", cluster.dir, "--force", check=False)
    assert proc.returncode == 2 and "--candidate" in proc.stderr


def test_candidate_takes_the_key_only_with_the_old_leaders_last_wal(cluster):
    """The old leader gives its key up at its shutdown checkpoint, before its walsenders
    are done: a candidate that has not replayed that checkpoint yet (its replay paused
    here, with committed rows not replayed) leaves the key alone until it has, then
    promotes with every row, and the old leader rejoins without pg_rewind."""
    old = cluster.leader()
    tl = cluster.timeline(old)
    cand = (old + 1) % cluster.N
    cluster.query(old, "CREATE TABLE lastwal (id int)")
    cluster.query(old, "INSERT INTO lastwal SELECT generate_series(1, 1000)")
    wait_for("the rows replayed on the candidate",
             lambda: cluster.query(cand, "SELECT count(*) FROM lastwal")[0][0] == 1000, 20)
    cluster.query(cand, "SELECT pg_wal_replay_pause()")
    cluster.query(old, "INSERT INTO lastwal SELECT generate_series(1001, 2000)")
    proc = subprocess.Popen([PGWARDEN, "switchover", "--dir", cluster.dir, "--candidate",
                             "node%d" % (cand + 1), "--force", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cluster.env)
    try:
        wait_for("the old leader's key given up at its shutdown checkpoint",
                 lambda: "leader key released, the candidate" in cluster.log(old), 30)
        wait_for("the candidate waiting for that checkpoint",
                 lambda: "waiting for the old leader's shutdown checkpoint" in cluster.log(cand),
                 20)
        assert cluster.leader() is None and cluster.writable_nodes() == []
        cluster.query(cand, "SELECT pg_wal_replay_resume()")
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Successfully switched over" in out, out
    assert cluster.wait_healthy() == cand and cluster.timeline(cand) == tl + 1
    assert "replayed the old leader's shutdown checkpoint" in cluster.log(cand)
    assert cluster.query(cand, "SELECT count(*) FROM lastwal")[0][0] == 2000
    assert cluster.status(old)["role"] == "replica"
    log = cluster.log(old).split("switchover requested")[-1]
    assert "started rewinding" not in log and "started creating replica" not in log, log

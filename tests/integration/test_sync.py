"""Synchronous mode: no commit acknowledged to a client is ever lost on failover (RPO 0),
and strict mode stops writes when no synchronous standby is left."""
import json
import os
import subprocess
import threading
import time

import psycopg2

from conftest import Writer, wait_for
from test_metrics import scrape, value as metric


def cluster_json(cluster):
    return json.loads(cluster.run("list", "--dir", cluster.dir, "--json").stdout)


def sync_set_of(cluster, leader):
    """The synchronous set, once the given leader has recorded a non-empty one."""
    j = cluster_json(cluster)
    names = j.get("synchronous_standbys", "")
    if j["leader"] != "node%d" % (leader + 1) or not names:
        return None
    roles = {m["member"]: m["role"] for m in j["members"]}
    assert all(roles.get(n) == "Sync Standby" for n in names.split(",")), j
    return names.split(",")


def new_writable_leader(cluster, old):
    nodes = cluster.writable_nodes()
    return nodes[0] if len(nodes) == 1 and nodes[0] != old else None


def insert_in_background(cluster, i, row_id):
    """INSERTs row_id into t on member i in a thread of its own: (an Event set when the
    statement returned, a dict with "ok" or "error")."""
    done = threading.Event()
    result = {}

    def insert():
        try:
            conn = psycopg2.connect(cluster.dsn(i))
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("INSERT INTO t (id) VALUES (%s)", (row_id,))
            conn.close()
            result["ok"] = True
        except psycopg2.Error as exc:
            result["error"] = str(exc)
        done.set()

    threading.Thread(target=insert, daemon=True).start()
    return done, result


def test_sync_mode_host_kill_loses_no_acknowledged_commit(cluster):
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "synchronous_mode=on", "--force")
    # 6 host kills in CI (about a minute; the chaos suite kills hosts in synchronous mode
    # too); PGW_SYNC_ROUNDS=100 for a longer hunt.
    rounds = int(os.environ.get("PGW_SYNC_ROUNDS", "6"))
    writer = Writer(cluster.multihost_dsn(), interval=0.01).start()
    try:
        for rnd in range(rounds):
            leader = cluster.wait_healthy(timeout=120)
            sync = wait_for("round %d: a synchronous standby of node%d" % (rnd, leader + 1),
                            lambda: sync_set_of(cluster, leader), 30)
            since = time.monotonic()
            wait_for("round %d: commits under synchronous replication" % rnd,
                     lambda: len(writer.acks_after(since)) >= 20, 30)
            cluster.kill_host(leader)
            new = wait_for("round %d: a new writable leader" % rnd,
                           lambda: new_writable_leader(cluster, leader), 40)
            assert "node%d" % (new + 1) in sync, (rnd, new, sync)
            acked = writer.acked_ids()  # before reading: all of these must be there
            present = {r[0] for r in cluster.query(new, "SELECT id FROM t")}
            missing = acked - present
            assert not missing, "round %d: %d acknowledged commits lost: %s" % (
                rnd, len(missing), sorted(missing)[:10])
            cluster.up()
    finally:
        writer.stop()
    assert len(writer.acked) > 20 * rounds


def test_sync_strict_blocks_writes_without_a_standby(cluster):
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "synchronous_mode=on",
                "--set", "synchronous_mode_strict=on", "--force")
    leader = cluster.leader()
    wait_for("a synchronous standby", lambda: sync_set_of(cluster, leader), 30)
    replicas = [i for i in range(cluster.N) if i != leader]
    for i in replicas:
        cluster.kill_host(i)
    # No synchronous standby left: a commit waits instead of going through async.
    done, result = insert_in_background(cluster, leader, 42)
    assert not done.wait(5), "a commit went through with no synchronous standby: %s" % result
    assert cluster.leader() == leader
    cluster.up()  # the replicas come back: the waiting commit completes
    assert done.wait(60) and result.get("ok"), result
    cluster.wait_healthy()
    assert cluster.query(leader, "SELECT count(*) FROM t WHERE id = 42")[0][0] == 1


def test_sync_node_count_nosync_and_off(cluster):
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "synchronous_mode=on",
                "--set", "synchronous_node_count=2", "--force")
    leader = cluster.leader()
    replicas = ["node%d" % (i + 1) for i in range(cluster.N) if i != leader]
    wait_for("both replicas synchronous",
             lambda: sorted(sync_set_of(cluster, leader) or []) == replicas, 30)
    ssn = cluster.query(leader, "SHOW synchronous_standby_names")[0][0]
    assert ssn.startswith("FIRST 2 (") and all('"%s"' % r in ssn for r in replicas), ssn
    assert cluster.query(leader, "SELECT count(*) FROM pg_stat_replication"
                                 " WHERE sync_state = 'sync'")[0][0] == 2
    # A member tagged nosync leaves the set (the tag is read again by reload).
    with open("%s/%s/node.ini" % (cluster.dir, replicas[0]), "a") as f:
        f.write("nosync = on\n")
    cluster.run("reload", "--dir", cluster.dir, replicas[0])
    wait_for("%s out of the set" % replicas[0],
             lambda: sync_set_of(cluster, leader) == [replicas[1]], 30)
    wait_for("the server waits only for %s" % replicas[1],
             lambda: cluster.query(leader, "SHOW synchronous_standby_names")[0][0]
             == 'FIRST 1 ("%s")' % replicas[1], 15)
    # GET /metrics says so, as Patroni's patroni_sync_standby does.
    def sync_gauges():
        out = {}
        for r in replicas:
            _, samples = scrape(cluster, int(r[4:]) - 1)
            out[r] = metric(samples, "patroni_sync_standby", r)
        return out
    wait_for("patroni_sync_standby 0 on %s, 1 on %s" % tuple(replicas),
             lambda: sync_gauges() == {replicas[0]: 0, replicas[1]: 1}, 15)
    # Off: the set is emptied first, then the server stops waiting, then the key goes.
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "synchronous_mode=off", "--force")
    wait_for("no synchronous set", lambda: "synchronous_standbys" not in cluster_json(cluster), 20)
    assert cluster.query(leader, "SHOW synchronous_standby_names")[0][0] == ""


def test_sync_standby_cut_off_silently_is_replaced(cluster):
    """The replication connection of the synchronous standby goes silent (its packets
    dropped, no reset: a broken link), while its agent still renews its member key:
    commits stop waiting for it within seconds, because its replies stopped, not after
    wal_sender_timeout (60 s); the other replica becomes synchronous."""
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "synchronous_mode=on", "--force")
    leader = cluster.leader()
    sync = wait_for("a synchronous standby", lambda: sync_set_of(cluster, leader), 30)
    stuck = int(sync[0][len("node"):]) - 1
    other = [i for i in range(cluster.N) if i not in (leader, stuck)][0]
    port = cluster.query(leader, "SELECT client_port FROM pg_stat_replication"
                                 " WHERE application_name = %s", (sync[0],))[0][0]
    primary = cluster.pg_port + leader
    table = "pgw_test_sync_%d" % os.getpid()
    # a table left by an interrupted run would drop a port pair a later test may reuse
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            timeout=10, check=True).stdout.split()
    for old in [t for t in listed if t.startswith("pgw_test_sync_")]:
        subprocess.run(["nft", "delete", "table", "inet", old], timeout=10, check=True)
    rules = ("table inet %s {\n chain out {\n  type filter hook output priority 0;\n"
             "  tcp sport %d tcp dport %d drop\n  tcp sport %d tcp dport %d drop\n }\n}\n"
             % (table, port, primary, primary, port))
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, timeout=10)
    try:
        done, result = insert_in_background(cluster, leader, 43)
        assert done.wait(20) and result.get("ok"), \
            "a commit still waits for the cut-off standby after 20 s: %s" % result
        wait_for("node%d synchronous instead" % (other + 1),
                 lambda: sync_set_of(cluster, leader) == ["node%d" % (other + 1)], 20)
        wait_for("the row on node%d" % (other + 1), lambda: cluster.query(
            other, "SELECT count(*) FROM t WHERE id = 43")[0][0] == 1, 10)
        # Its agent still renews its member key: the cut is on the replication link only.
        assert "node%d" % (stuck + 1) in [m["member"] for m in cluster_json(cluster)["members"]]
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], timeout=10)
    assert cluster.wait_healthy() == leader
    wait_for("node%d has the row" % (stuck + 1),
             lambda: cluster.query(stuck, "SELECT count(*) FROM t WHERE id = 43")[0][0] == 1,
             60)

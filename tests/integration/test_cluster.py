"""The cluster forms: one leader, two streaming replicas, data replicates; the
operator surface (up, list, status, down, REST API) behaves as documented."""
import json
import re

from conftest import wait_for


def test_cluster_forms_and_replicates(shared_cluster):
    cluster = shared_cluster
    leader = cluster.leader()
    replicas = [i for i in range(cluster.N) if i != leader]
    cluster.query(leader, "INSERT INTO t (id) SELECT generate_series(1, 100)")
    for r in replicas:
        wait_for("rows on node%d" % (r + 1),
                 lambda r=r: cluster.query(r, "SELECT count(*) FROM t")[0][0] == 100, 20)
        assert cluster.query(r, "SELECT pg_is_in_recovery()")[0][0] is True
    assert cluster.query(leader, "SELECT pg_is_in_recovery()")[0][0] is False
    # Replicas stream through the slots the leader manages, one per member.
    slots = cluster.query(leader, "SELECT slot_name, active FROM pg_replication_slots "
                                  "ORDER BY 1")
    assert slots == [("node%d" % (r + 1), True) for r in replicas]
    # Data checksums are on (bootstrap ran initdb -k).
    assert cluster.query(leader, "SHOW data_checksums")[0][0] == "on"
    # The tuned parameters were applied.
    assert cluster.query(leader, "SHOW wal_log_hints")[0][0] == "on"
    assert cluster.query(leader, "SHOW shared_buffers")[0][0] == "32MB"  # 25% of 128MB


def test_list_shows_members_roles_states(shared_cluster):
    cluster = shared_cluster
    leader = cluster.leader()
    out = cluster.run("list", "--dir", cluster.dir).stdout
    assert re.search(r"\+ Cluster: demo \(\d{10,}\) ", out), out
    for col in ("Member", "Host", "Role", "State", "TL", "Lag in MB", "Tags"):
        assert col in out
    rows = [l for l in out.splitlines() if l.startswith("| node")]
    assert len(rows) == 3, out
    leader_row = [r for r in rows if r.startswith("| node%d " % (leader + 1))][0]
    assert "Leader" in leader_row and "running" in leader_row
    assert sum("Replica" in r and "streaming" in r for r in rows) == 2, out
    data = json.loads(cluster.run("list", "--dir", cluster.dir, "--json").stdout)
    assert data["leader"] == "node%d" % (leader + 1)
    assert sorted(m["member"] for m in data["members"]) == ["node1", "node2", "node3"]
    assert all(m["timeline"] == 1 for m in data["members"])


def test_rest_health_endpoints(shared_cluster):
    cluster = shared_cluster
    leader = cluster.leader()
    replica = (leader + 1) % cluster.N
    expect = {
        "/": (200, 503), "/primary": (200, 503), "/master": (200, 503),
        "/leader": (200, 503), "/read-write": (200, 503),
        "/replica": (503, 200), "/read-only": (200, 200), "/health": (200, 200),
        "/liveness": (200, 200), "/readiness": (200, 200),
    }
    for path, (on_leader, on_replica) in expect.items():
        assert cluster.api(leader, path)[0] == on_leader, path
        assert cluster.api(replica, path)[0] == on_replica, path
    code, body = cluster.api(replica, "/status")
    assert code == 200 and body["role"] == "replica" and body["state"] == "streaming"
    assert body["timeline"] == 1 and body["xlog"]["received_location"] > 0
    code, body = cluster.api(leader, "/cluster")
    assert code == 200 and body["leader"] == "node%d" % (leader + 1)
    assert sorted(m["name"] for m in body["members"]) == ["node1", "node2", "node3"]
    code, body = cluster.api(leader, "/history")
    assert code == 200 and isinstance(body, list) and body[0][2] == "bootstrap"
    # Lag-bounded replica check, Patroni style.
    assert cluster.api(replica, "/replica?lag=1000000000")[0] == 200


def test_replica_lag_in_seconds(shared_cluster):
    """A replica's status document says how far behind it is in seconds: the time since
    the last commit it replayed while WAL waits to be replayed; 0 once caught up."""
    cluster = shared_cluster
    leader = cluster.leader()
    replica = (leader + 1) % cluster.N
    cluster.query(leader, "INSERT INTO t (id) VALUES (-1)")
    wait_for("the row replayed", lambda: cluster.query(
        replica, "SELECT count(*) FROM t WHERE id = -1")[0][0] == 1, 20)
    wait_for("no lag", lambda: cluster.api(replica, "/status")[1]["lag_seconds"] == 0, 20)
    cluster.query(replica, "SELECT pg_wal_replay_pause()")
    try:
        cluster.query(leader, "DELETE FROM t WHERE id = -1")
        lagging = wait_for("a lag of 2 s or more", lambda: (lambda b: b["lag_seconds"] >= 2
                                                            and b)(
            cluster.api(replica, "/status")[1]), 20)
        assert lagging["lag_seconds"] < 30, lagging
    finally:
        cluster.query(replica, "SELECT pg_wal_replay_resume()")
    wait_for("no lag", lambda: cluster.api(replica, "/status")[1]["lag_seconds"] == 0, 20)


def test_rest_bad_requests(shared_cluster):
    cluster = shared_cluster
    leader = cluster.leader()
    code, body = cluster.api(leader, "/no/such/thing")
    assert code == 404 and "error" in body
    code, body = cluster.api(leader, "/primary", method="POST", body=b"{}")
    assert code == 405 and "error" in body
    code, body = cluster.api(leader, "/replica?lag=lots")
    assert code == 400 and "lag" in body["error"]
    code, _ = cluster.api(leader, "/cluster", method="DELETE")
    assert code == 405
    # A garbage request line does not take the agent down.
    import socket
    s = socket.create_connection(("127.0.0.1", cluster.api_port + leader), timeout=2)
    s.sendall(b"\x00\xff GARBAGE\r\n\r\n" + b"A" * 70000 + b"\r\n\r\n")
    try:
        s.recv(1024)
    except OSError:
        pass
    s.close()
    assert cluster.api(leader, "/health")[0] == 200


def test_up_again_starts_nothing_and_status(shared_cluster):
    cluster = shared_cluster
    pids = [(cluster.agent_pid(i), cluster.postmaster_pid(i), cluster.etcd_pid(i))
            for i in range(cluster.N)]
    out = cluster.up().stdout
    assert "started" not in out
    assert pids == [(cluster.agent_pid(i), cluster.postmaster_pid(i), cluster.etcd_pid(i))
                    for i in range(cluster.N)]
    st = cluster.run("status", "--dir", cluster.dir)
    assert st.returncode == 0 and "10 of 10 processes running" in st.stdout


def test_down_stops_everything(cluster):
    down = cluster.down()
    assert down.returncode == 0, down.stderr
    for i in range(cluster.N):
        assert cluster.agent_pid(i) is None
        assert cluster.postmaster_pid(i) is None
        assert cluster.etcd_pid(i) is None
    assert cluster.proxy_pid() is None
    st = cluster.run("status", "--dir", cluster.dir, check=False)
    assert st.returncode == 3 and "0 of 10 processes running" in st.stdout
    # And it comes back with the same command, keeping its data.
    cluster.up()
    leader = cluster.wait_healthy()
    assert cluster.query(leader, "SELECT count(*) FROM t")[0][0] == 0


def test_passwords_never_in_logs_or_ps(shared_cluster):
    cluster = shared_cluster
    import subprocess
    ini = open("%s/node1/node.ini" % cluster.dir).read()
    secrets = re.findall(r"^(?:superuser|replication)_password = (\S+)$", ini, re.M)
    assert len(secrets) == 2
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    logs = "".join(cluster.log(i) for i in range(cluster.N))
    for name in ("postgresql.log",):
        for i in range(cluster.N):
            logs += open("%s/node%d/%s" % (cluster.dir, i + 1, name)).read()
    for s in secrets:
        assert s not in ps
        assert s not in logs

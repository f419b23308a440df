"""Dynamic configuration (show-config / edit-config), restart / reload / reinit, and the
REST API's mutating endpoints with their authentication."""
import base64
import json
import re
import subprocess

from conftest import PGWARDEN, wait_for


def etcd_config(cluster):
    """The config key as stored, with its mod_revision (via etcdctl)."""
    out = subprocess.run(
        ["etcdctl", "--endpoints=http://127.0.0.1:%d" % cluster.etcd_port, "get",
         "/service/demo/config", "-w", "json"],
        capture_output=True, text=True, timeout=10, check=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}).stdout
    kvs = json.loads(out).get("kvs", [])
    if not kvs:
        return None, 0
    return base64.b64decode(kvs[0]["value"]).decode(), int(kvs[0]["mod_revision"])


def api_auth(cluster):
    ini = open("%s/node1/node.ini" % cluster.dir).read()
    user = re.search(r"^username = (\S+)$", ini, re.M).group(1)
    password = re.search(r"^password = (\S+)$", ini, re.M).group(1)
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    return {"Authorization": "Basic " + token, "Content-Type": "application/json"}


def setting(cluster, i, name):
    return cluster.query(i, "SELECT setting, pending_restart FROM pg_settings WHERE name = %s",
                         (name,))[0]


def members(cluster):
    j = json.loads(cluster.run("list", "--dir", cluster.dir, "--json").stdout)
    return {m["member"]: m for m in j["members"]}


def test_edit_config_invalid_values_change_nothing(cluster):
    cluster.run("edit-config", "--dir", cluster.dir, "--pg", "work_mem=5MB", "--force")
    before = etcd_config(cluster)
    bad = [
        (["--set", "ttl=banana"], "bad value"),
        (["--set", "tll=5"], "did you mean 'ttl'"),
        (["--set", "ttl=2"], "must not exceed ttl"),
        (["--set", "synchronous_node_count=0"], "synchronous_node_count"),
        (["--pg", "work_mem=12XB"], "valid units"),
        (["--pg", "work_mem=-1"], "outside the valid range"),
        (["--pg", "no_such_parameter=1"], "unrecognized PostgreSQL parameter"),
        (["--pg", "wal_level=bogus"], "one of: minimal,replica,logical"),
        (["--pg", "autovacuum=maybe"], "Boolean"),
        (["--pg", "port=5555"], "managed by pgwarden"),
        (["--pg", "synchronous_standby_names=*"], "managed by pgwarden"),
        (["--pg", "ssl_passphrase_command=touch /tmp/x"],
         "cannot come from the dynamic configuration"),
        (["--pg", "work_mem"], "expected NAME=VALUE"),
    ]
    for args, expect in bad:
        proc = cluster.run("edit-config", "--dir", cluster.dir, *args, "--force", check=False)
        assert proc.returncode in (1, 2), (args, proc)
        assert expect in proc.stderr, (args, proc.stderr)
        assert etcd_config(cluster) == before, args
    # No terminal and no --force: refused, nothing written.
    proc = subprocess.run([PGWARDEN, "edit-config", "--dir", cluster.dir, "--set", "ttl=5"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=cluster.env, timeout=60)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert etcd_config(cluster) == before


def test_edit_config_applies_within_a_loop_and_restart_pending(cluster):
    leader = cluster.leader()
    out = cluster.run("edit-config", "--dir", cluster.dir, "--pg", "work_mem=7MB",
                      "--pg", "shared_buffers=24MB", "--set", "maximum_lag_on_failover=2MB",
                      "--force").stdout
    assert '+postgresql.parameters.work_mem = "7MB"' in out and "Configuration changed" in out
    shown = json.loads(cluster.run("show-config", "--dir", cluster.dir).stdout)
    assert shown == {"maximum_lag_on_failover": 2097152,
                     "postgresql": {"parameters": {"work_mem": "7MB",
                                                   "shared_buffers": "24MB"}}}
    # Reloaded on every member at once; shared_buffers waits for a restart.
    wait_for("work_mem 7MB everywhere",
             lambda: all(setting(cluster, i, "work_mem")[0] == "7168" for i in range(3)), 15)
    wait_for("pending restart flagged in list",
             lambda: all(m.get("pending_restart") for m in members(cluster).values()), 15)
    assert "Pending restart" in cluster.run("list", "--dir", cluster.dir).stdout
    assert cluster.api(leader, "/config")[1] == shown
    # Rolling restart of the pending members: replicas first, the leader last.
    out = cluster.run("restart", "--dir", cluster.dir, "--pending", "--force").stdout
    order = re.findall(r"^(node\d): restarted PostgreSQL$", out, re.M)
    assert len(order) == 3 and order[-1] == "node%d" % (leader + 1), out
    assert cluster.wait_healthy() == leader
    assert all(setting(cluster, i, "shared_buffers") == ("3072", False) for i in range(3))
    wait_for("no pending restart",
             lambda: not any(m.get("pending_restart") for m in members(cluster).values()), 15)
    out = cluster.run("restart", "--dir", cluster.dir, "--pending", "--force").stdout
    assert "Nothing to restart" in out
    # Removing the parameter again (null) goes back to pgwarden's own value.
    cluster.run("edit-config", "--dir", cluster.dir, "--pg", "work_mem=null", "--force")
    wait_for("work_mem back", lambda: setting(cluster, leader, "work_mem")[0] != "7168", 15)


def test_ttl_change_moves_the_leases(cluster):
    leader = cluster.leader()
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "ttl=6", "--force")
    wait_for("every agent on the new ttl",
             lambda: all("ttl is now 6000 ms" in cluster.log(i) for i in range(3)), 15)
    assert cluster.wait_healthy() == leader  # the leader key moved over, no failover
    # Still fails over: the host dies, the lease (now 6 s) runs out, a replica takes over.
    cluster.kill_host(leader)
    wait_for("a new leader", lambda: cluster.leader() not in (None, leader), 30)


def test_restart_reload_reinit_and_refusals(cluster):
    leader = cluster.leader()
    replica = (leader + 1) % 3
    name = "node%d" % (replica + 1)
    start = cluster.query(replica, "SELECT pg_postmaster_start_time()")[0][0]
    out = cluster.run("restart", "--dir", cluster.dir, name, "--force").stdout
    assert "%s: restarted PostgreSQL" % name in out
    assert cluster.query(replica, "SELECT pg_postmaster_start_time()")[0][0] > start
    assert cluster.leader() == leader
    # reload re-reads node.ini: a new [tags] entry shows up in list.
    ini_path = "%s/node%d/node.ini" % (cluster.dir, replica + 1)
    with open(ini_path, "a") as f:
        f.write("noloadbalance = on\n")
    out = cluster.run("reload", "--dir", cluster.dir, name).stdout
    assert "%s: reloaded configuration" % name in out
    wait_for("the tag in list",
             lambda: members(cluster)[name].get("tags", {}).get("noloadbalance") is True, 15)
    assert cluster.api(replica, "/replica")[0] == 503  # noloadbalance: out of the pool
    # reinit: wiped and cloned again, streaming, with the leader's data.
    cluster.query(leader, "INSERT INTO t (id) VALUES (7)")
    marker = "%s/node%d/data/pgwarden-marker" % (cluster.dir, replica + 1)
    open(marker, "w").close()
    out = cluster.run("reinit", "--dir", cluster.dir, name, "--force").stdout
    assert "%s: streaming again" % name in out
    assert cluster.query(replica, "SELECT count(*) FROM t WHERE id = 7")[0][0] == 1
    import os
    assert not os.path.exists(marker)
    # Refusals.
    lname = "node%d" % (leader + 1)
    proc = cluster.run("reinit", "--dir", cluster.dir, lname, "--force", check=False)
    assert proc.returncode == 1 and "is the leader" in proc.stderr
    proc = cluster.run("reinit", "--dir", cluster.dir, "node9", "--force", check=False)
    assert proc.returncode == 2 and "no member named node9" in proc.stderr
    proc = cluster.run("restart", "--dir", cluster.dir, "node9", "--force", check=False)
    assert proc.returncode == 2
    proc = subprocess.run([PGWARDEN, "restart", "--dir", cluster.dir], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=cluster.env, timeout=60)
    assert proc.returncode == 2 and "--force" in proc.stderr
    # The leader by switchover instead of a restart in place.
    cluster.wait_healthy()
    out = cluster.run("restart", "--dir", cluster.dir, lname, "--switchover", "--force").stdout
    assert "%s: switched over to" % lname in out, out
    new = cluster.wait_healthy()
    assert new != leader and cluster.status(leader)["state"] == "streaming"


def test_rest_mutating_endpoints_need_auth(cluster):
    leader = cluster.leader()
    replica = (leader + 1) % 3
    before = etcd_config(cluster)
    for method, path in [("POST", "/switchover"), ("POST", "/failover"), ("POST", "/restart"),
                         ("POST", "/reinitialize"), ("POST", "/reload"), ("PATCH", "/config")]:
        code, body = cluster.api(leader, path, method=method, body=b"{}")
        assert code == 401 and body["error"], (path, code, body)
        bad = {"Authorization": "Basic " + base64.b64encode(b"pgwarden:wrong").decode()}
        from conftest import http
        code, _ = http(method, "http://127.0.0.1:%d%s" % (cluster.api_port + leader, path),
                       b"{}", headers=bad)
        assert code == 401, path
    assert etcd_config(cluster) == before
    auth = api_auth(cluster)
    from conftest import http

    def call(i, method, path, body):
        return http(method, "http://127.0.0.1:%d%s" % (cluster.api_port + i, path),
                    json.dumps(body).encode() if body is not None else b"", headers=auth,
                    timeout=90)
    # Bad bodies: 400 with a reason, nothing changes.
    code, body = call(leader, "PATCH", "/config", {"loop_wait": "soon"})
    assert code == 400 and "loop_wait" in body["error"]
    code, body = http("PATCH", "http://127.0.0.1:%d/config" % (cluster.api_port + leader),
                      b"not json", headers=auth)
    assert code == 400 and "JSON object" in body["error"]
    code, body = call(leader, "POST", "/switchover", {"candidate": "node9"})
    assert code == 400 and "no member named node9" in body["error"]
    code, body = call(leader, "POST", "/failover", {})
    assert code == 400 and "candidate" in body["error"]
    code, body = call(leader, "POST", "/reinitialize", None)
    assert code == 503 and "leader" in body["error"]
    assert etcd_config(cluster) == before
    # PATCH /config merges; GET /config shows it.
    code, body = call(leader, "PATCH", "/config", {"postgresql": {"parameters":
                                                                  {"work_mem": "9MB"}}})
    assert code == 200 and body["postgresql"]["parameters"]["work_mem"] == "9MB"
    wait_for("GET /config", lambda: cluster.api(replica, "/config")[1] == body, 10)
    wait_for("work_mem 9MB", lambda: setting(cluster, replica, "work_mem")[0] == "9216", 15)
    code, body = call(replica, "POST", "/reload", None)
    assert code == 200
    code, body = call(replica, "POST", "/restart", {})
    assert code == 200 and "restarted" in body["message"]
    cluster.wait_healthy()
    # Switchover through REST, then a failover back.
    code, body = call(replica, "POST", "/switchover",
                      {"leader": "node%d" % (leader + 1), "candidate": "node%d" % (replica + 1)})
    assert code == 200 and body["message"] == "Successfully switched over to node%d" % (
        replica + 1), body
    assert cluster.wait_healthy() == replica
    code, body = call(leader, "POST", "/failover", {"candidate": "node%d" % (leader + 1)})
    assert code == 200 and "failed over to node%d" % (leader + 1) in body["message"], body
    assert cluster.wait_healthy() == leader


def test_cli_finds_the_cluster_by_name_and_etcd(cluster):
    leader = cluster.leader()
    etcd = "http://127.0.0.1:%d" % cluster.etcd_port
    out = json.loads(cluster.run("list", "--cluster", "demo", "--etcd", etcd, "--json").stdout)
    assert out["cluster"] == "demo" and out["leader"] == "node%d" % (leader + 1)
    out = json.loads(cluster.run("list", "--cluster=other", "--etcd=" + etcd, "--json").stdout)
    assert out["cluster"] == "other" and out["leader"] == "" and out["members"] == []
    proc = cluster.run("list", "--cluster", check=False)
    assert proc.returncode == 2 and "--cluster needs a value" in proc.stderr

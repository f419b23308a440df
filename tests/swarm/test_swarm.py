"""pgwarden on a real three-node Docker Swarm, the way a user deploys it.

One swarm (three docker-in-docker hosts, every one a manager) serves the whole file,
in order: setup.sh and deploy.sh run unchanged on a manager, with their
non-interactive options; bad input is refused before anything is deployed; then the
reference stack's verification steps and operations, a rolling update of every
service under writers, the loss of the leader's host, stack rm + deploy, and a
replaced node. Everything is removed afterwards, also after a failure.

Needs root and Debian's docker.io and debootstrap (scripts/test.sh installs them).
PGW_SWARM_KEEP_IMAGES=1 keeps the images between runs (faster when iterating).
"""
import json
import os
import re
import time

import pytest

import swarmlib
from swarmlib import STACK, helpers, log

# as the README asks of applications: a proxy's host lost mid-statement ends the
# connection in seconds (not after TCP's retransmissions, about 15 minutes)
POOLED = ("host=pgbouncer port=6432 user=postgres dbname=postgres connect_timeout=2 "
          "tcp_user_timeout=5000 keepalives_idle=5 keepalives_interval=2 keepalives_count=2")


@pytest.fixture(scope="module")
def sw():
    swarmlib.ensure_engine()
    swarmlib.remove_leftovers()
    s = swarmlib.Swarm()
    try:
        if swarmlib.images_prebuilt():
            swarmlib.log("images built beside the chaos suite")
        else:
            swarmlib.build_images()
        s.start(3)
        yield s
    finally:
        if os.environ.get("PGW_SWARM_KEEP") != "1":
            s.teardown()
            swarmlib.remove_images()
            swarmlib.stop_engine()


def nodes_arg(sw):
    return ",".join(sw.nodes[:3])


def assert_nothing_deployed(sw):
    assert sw.docker("stack ls --format '{{.Name}}'").strip() == "", \
        "a failed deploy.sh left a stack behind"


def test_setup_is_idempotent(sw):
    # without a terminal to ask on, the nodes must be given; .env is written first
    rc, out = sw.script("setup.sh", "< /dev/null", check=False)
    assert rc == 2 and ".env: written from .env.example" in out, out
    assert "give --nodes A,B,C" in out, out
    # this test's image, and small limits for this 2-core machine
    sw.set_env(IMAGE=swarmlib.IMAGE, MEMBER_MEMORY="1G", MEMBER_CPUS="2", ETCD_MEMORY="512M",
               PROXY_MEMORY="512M", PROXY_CPUS="1", DEPLOY_TIMEOUT="400")
    rc, out = sw.script("setup.sh", "--nodes " + nodes_arg(sw) + " --yes")
    assert "docker secret pgwarden_superuser_password: created" in out
    assert "label pgwarden=node1: added to " + sw.nodes[0] in out
    assert re.search(r"folder /var/lib/pgwarden/node2 on \S+: created \(999:999\)", out)
    rc, out = sw.script("setup.sh", "--nodes " + nodes_arg(sw) + " --yes")
    assert "nothing to change" in out, out
    assert "created" not in out and "added" not in out, out
    # the folders belong to 999:999 on their own node
    for i, n in enumerate(sw.nodes[:3], 1):
        assert sw.exec(n, "stat -c %%u:%%g /var/lib/pgwarden/node%d" % i).strip() == "999:999"
    # once labelled, the nodes need not be given again
    rc, out = sw.script("setup.sh", "< /dev/null", check=False)
    assert rc == 0 and "already labelled" in out, out


def test_bad_input_is_refused_before_deploying(sw):
    # a wrong .env value, named by file:line
    sw.set_env(PROXY_REPLICAS="three")
    rc, out = sw.script("deploy.sh", check=False)
    assert rc == 2 and re.search(r"\.env:\d+: PROXY_REPLICAS: bad value 'three'", out), out
    sw.set_env(PROXY_REPLICAS="3", MEMBR_CPUS="2")
    rc, out = sw.script("deploy.sh", check=False)
    assert rc == 2 and "unknown setting 'MEMBR_CPUS'" in out, out
    sw.exec(sw.manager(), "sed -i '/^MEMBR_CPUS=/d' %s/.env" % swarmlib.DEPLOY)
    assert_nothing_deployed(sw)

    # a missing label
    node2 = sw.node_id(sw.nodes[1])
    sw.docker("node update --label-rm etcd %s" % node2)
    rc, out = sw.script("deploy.sh", check=False)
    assert rc == 1 and "no node has the label etcd=node2" in out, out
    sw.docker("node update --label-add etcd=node2 %s" % node2)
    assert_nothing_deployed(sw)

    # a missing secret
    sw.docker("secret rm pgwarden_api_password")
    rc, out = sw.script("deploy.sh", check=False)
    assert rc == 1 and "secret(s) missing: pgwarden_api_password" in out, out
    assert_nothing_deployed(sw)
    rc, out = sw.script("setup.sh", "--nodes " + nodes_arg(sw))
    assert "docker secret pgwarden_api_password: created" in out

    # a port taken on a node: something listens on 7000 there
    sw.exec(sw.nodes[2], "docker run -d --name pgwt-squatter --network host %s python3 -m "
            "http.server 7000 >/dev/null" % swarmlib.CLIENT_IMAGE)
    try:
        helpers.wait_for("the squatter to listen", lambda: sw.exec(
            sw.nodes[2], "curl -s -o /dev/null http://127.0.0.1:7000/", check=False
        ).returncode == 0, 30, interval=0.5)
        rc, out = sw.script("deploy.sh", check=False)
        assert rc == 1 and "port 7000 is taken on node %s" % sw.nodes[2] in out, out
        assert_nothing_deployed(sw)
    finally:
        sw.exec(sw.nodes[2], "docker rm -f pgwt-squatter >/dev/null", check=False)


def test_deploy(sw):
    t0 = time.monotonic()
    rc, out = sw.script("deploy.sh")
    log("deploy.sh took %.0f s" % (time.monotonic() - t0))
    assert "pgwarden is up" in out
    assert "postgresql://postgres@pgbouncer:6432/postgres" in out
    assert re.search(r"\| node\d +\| node\d:5432 \| Leader +\| running", out), out
    assert len(re.findall(r"\| Replica \| streaming", out)) == 2, out
    assert sw.healthy()


def test_verify(sw):
    """The reference stack's Verification section, the pgwarden way."""
    m = sw.manager()
    services = sw.docker("stack services %s --format '{{.Name}} {{.Replicas}}'" % STACK)
    for name in ("etcd1", "etcd2", "etcd3", "node1", "node2", "node3", "backup", "proxy",
                 "edge"):
        assert re.search(r"%s_%s (\d+)/\1" % (STACK, name), services), services
    # etcd member list, in an etcd container
    node = sw.node_of_member("node1")
    cid = sw.exec(node, "docker ps -q -f name=%s_etcd1." % STACK).strip()
    members = sw.exec(node, "docker exec %s etcdctl member list" % cid)
    assert len([ln for ln in members.splitlines() if ", started, " in ln]) == 3, members
    # pgwarden list in a member's container
    table = sw.pgwarden("node2", "list")
    assert "Leader" in table and table.count("streaming") == 2, table
    # psql by service name from the application network: 6432, 5000, 5001
    assert sw.psql(m, "pgbouncer", 6432, "SELECT pg_is_in_recovery()") == "f"
    assert sw.psql(m, "haproxy", 5000, "SELECT pg_is_in_recovery()") == "f"
    assert sw.psql(m, "pgbouncer", 5001, "SELECT pg_is_in_recovery()") == "t"
    # psql in a member's container (PGHOST and PGPASSFILE are set there)
    node, cid = sw.member_container("node1")
    assert sw.exec(node, "docker exec %s psql -Atc 'SELECT 1'" % cid).strip() == "1"
    # the status page on a node's own address, with and without its password
    addr = sw.address(sw.nodes[1])
    pw = sw.secret("http_password")
    assert swarmlib.sh("curl -s -o /dev/null -w '%%{http_code}' http://%s:7000/" % addr) == "401"
    page = swarmlib.sh("curl -sf -u admin:%s http://%s:7000/" % (pw, addr))
    assert "node1" in page and "node3" in page
    # docker service logs: one line per event, with a time and a level
    logs = sw.docker("service logs --raw --tail 50 %s_node1 2>&1" % STACK)
    lines = [ln for ln in logs.splitlines() if ln.strip()]
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ [A-Z]+: ", ln)
                         for ln in lines), logs[-2000:]
    for svc in ("proxy", "edge", "etcd2"):
        assert sw.docker("service logs --raw --tail 5 %s_%s 2>&1" % (STACK, svc)).strip()


def test_no_password_in_inspect_or_logs(sw):
    secrets = [sw.secret(s) for s in ("superuser_password", "replication_password",
                                      "api_password", "http_password")]
    blobs = sw.docker("service inspect $(docker stack services -q %s)" % STACK)
    node, cid = sw.member_container("node1")
    blobs += sw.exec(node, "docker inspect %s" % cid)
    for svc in ("node1", "node2", "node3", "proxy", "edge", "etcd1"):
        blobs += sw.docker("service logs --raw %s_%s 2>&1" % (STACK, svc))
    blobs += swarmlib.sh(["cat", os.path.join(swarmlib.REPO, "deploy/pgwarden-stack.yml")])
    for s in secrets:
        assert s not in blobs, "a password shows in docker inspect, a log or the stack file"
    # the members' environment holds file names, not passwords
    env = sw.exec(node, "docker exec %s env" % cid)
    assert "PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD_FILE=/run/secrets/" in env
    assert not any(s in env for s in secrets)


def test_proxy_scales_to_five_and_back(sw):
    sw.docker("service scale --detach %s_proxy=5 >/dev/null" % STACK)

    def routing():
        out = sw.docker(
            "run --rm --network %s_cluster --entrypoint sh %s -c 'for ip in $(getent "
            "ahostsv4 tasks.proxy | cut -d\" \" -f1 | sort -u); do curl -fsm2 "
            "http://$ip:7000/metrics | grep -c \"^pgwarden_proxy_routing_writes 1\"; done'"
            % (STACK, swarmlib.IMAGE), check=False).stdout
        return out.split().count("1") == 5
    helpers.wait_for("5 proxies routing", routing, 180, interval=2)
    # each registered in etcd under its own name
    node, cid = sw.member_container("node1")
    keys = sw.exec(node, "docker exec %s etcdctl --endpoints=http://etcd1:2379 get "
                   "--prefix --keys-only /service/pgwarden/proxies/" % cid)
    assert len([k for k in keys.split() if "/proxies/proxy-" in k]) == 5, keys
    sw.docker("service scale --detach %s_proxy=3 >/dev/null" % STACK)
    helpers.wait_for("3 proxy tasks", lambda: sw.docker(
        "service ps -q -f desired-state=running %s_proxy" % STACK).split().__len__() == 3,
        120, interval=2)


def test_operations_through_docker_exec(sw):
    c = sw.healthy()
    leader = c["leader"]
    replicas = sorted(m["member"] for m in c["members"] if m["member"] != leader)
    # switchover
    out = sw.pgwarden(replicas[0], "switchover --candidate %s --force" % replicas[0])
    assert replicas[0] in out
    helpers.wait_for("the switchover", lambda: (sw.healthy() or {}).get("leader") ==
                     replicas[0], 120, interval=2)
    # failover to a named candidate
    sw.pgwarden(replicas[1], "failover --candidate %s --force" % replicas[1])
    helpers.wait_for("the failover", lambda: (sw.healthy() or {}).get("leader") ==
                     replicas[1], 120, interval=2)
    # pause / resume
    sw.pgwarden(leader, "pause")
    assert "Maintenance mode: on" in sw.pgwarden(leader, "list")
    sw.pgwarden(leader, "resume")
    assert "Maintenance mode" not in sw.pgwarden(leader, "list")
    # reinit of a replica (its REST API credentials come from the secret)
    c = sw.healthy()
    replica = sorted(m["member"] for m in c["members"] if m["member"] != c["leader"])[0]
    sw.pgwarden(replica, "reinit %s --force" % replica)
    helpers.wait_for("the reinitialised replica to stream", sw.healthy, 180, interval=2)


def test_backups_on_the_repository_host(sw):
    """The reference stack's Backup & Recovery, the pgwarden way: the repository host
    (service backup) created the stanza from the leader and took the first full backup by
    schedule, from a streaming replica over TLS; WAL of every leader so far (the switchover
    and failover above) is in the archive without a gap; a backup by hand; a replica
    restored from the repository host."""
    def backups():
        p = sw.pgwarden("backup", "backup list --json", check=False)
        return json.loads(p.stdout)["backups"] if p.returncode == 0 else None
    helpers.wait_for("the first scheduled full backup", backups, 300, interval=3)
    node, cid = sw.find_container(STACK, "backup")
    logs = sw.exec(node, "docker logs %s 2>&1" % cid)
    assert "stanza 'pgwarden' ready" in logs, logs[-3000:]
    assert "scheduled backup due: full" in logs, logs[-3000:]
    assert "a streaming replica: pgBackRest backup-standby" in logs, logs[-3000:]
    # the repository is encrypted, on the backup node's folder
    head = sw.exec(node, "head -c 8 /var/lib/pgwarden/backup/backup/pgwarden/backup.info")
    assert head == "Salted__", head

    out = sw.pgwarden("backup", "backup --type incr --timeout 600")
    assert "a streaming replica" in out, out
    assert [b["type"] for b in backups()] == ["full", "incr"]

    c = sw.healthy()
    leader = c["leader"]
    for where in (leader, "backup"):  # on the leader, and on the repository host
        out = sw.pgwarden(where, "backup check")
        assert "pgbackrest check (from %s): ok" % leader in out, out
        assert "archive: continuous" in out, out

    replica = sorted(m["member"] for m in c["members"] if m["member"] != leader)[0]
    rnode, rcid = sw.member_container(replica)
    before = len(sw.exec(rnode, "docker logs %s 2>&1" % rcid))
    sw.pgwarden(replica, "reinit %s --force" % replica)
    helpers.wait_for("%s restored from the repository host" % replica, lambda: "replica "
                     "restored from the repository" in sw.exec(
                         rnode, "docker logs %s 2>&1" % rcid)[before:], 240, interval=3)
    helpers.wait_for("the restored replica to stream", sw.healthy, 180, interval=2)

    # Disaster recovery from the repository alone: a new cluster inside the backup
    # container, from which pg_dump would take what was lost.
    out = sw.pgwarden("backup", "restore --latest --to /var/lib/pgwarden/restored "
                      "--memory 128MB --timeout 300")
    assert "restoring backup" in out, out
    rows = sw.exec(node, "docker exec -e PGPASSFILE=/var/lib/pgwarden/restored/pgpass %s psql "
                         "-h 127.0.0.1 -p 5432 -U postgres -Atc 'SELECT pg_is_in_recovery()'"
                         % cid)
    assert rows.strip() == "f", rows
    sw.pgwarden("backup", "down --dir /var/lib/pgwarden/restored")


def test_rolling_update_without_client_errors(sw):
    """The reference stack's Rolling Updates sequence, under 8 writers on 6432."""
    c = sw.healthy()
    client_node = sw.nodes[0]
    wl = sw.start_workload(client_node, POOLED, 8, name="roll")
    steps = []
    try:
        for member in ("node1", "node2", "node3"):
            t0 = time.monotonic()
            # (a 2 s monitor and no delay, not the stack's 10 s and 5 s: docker says
            # "completed" sooner)
            sw.docker("service update --force --detach --update-monitor 2s --update-delay 0s "
                      "%s_%s >/dev/null" % (STACK, member))
            helpers.wait_for("%s's new task" % member, lambda: sw.docker(
                "service inspect -f '{{.UpdateStatus.State}}' %s_%s" % (STACK, member)
            ).strip() == "completed", 240, interval=2)
            helpers.wait_for("%s to rejoin" % member, sw.healthy, 240, interval=2)
            steps.append((member, time.monotonic() - t0))
            log("rolling update: %s back after %.0f s" % steps[-1])
    finally:
        res = sw.stop_workload(wl)
    log("rolling update of the members: %d commits, errors %s, longest gap %.2f s" % (
        res["commits"], res["errors"], res["max_gap"]))
    assert res["errors"] == {}, res["errors"]
    assert res["commits"] > 100
    assert res["max_gap"] < 5.0   # the target is <= 1 s: bench/swarm measures it quietly
    c2 = sw.healthy()
    assert c2["system_identifier"] == c["system_identifier"]
    assert sw.lost_rows(client_node, res) == 0

    # the proxies: with every replica listed, a client sees at most a 57P01 between
    # transactions and reconnects
    wl = sw.start_workload(client_node, POOLED, 8, name="rollproxy")
    try:
        sw.docker("service update --force --detach --update-monitor 2s --update-delay 1s "
                  "%s_proxy >/dev/null" % STACK)
        helpers.wait_for("the proxies' update", lambda: sw.docker(
            "service inspect -f '{{.UpdateStatus.State}}' %s_proxy" % STACK).strip() ==
            "completed", 300, interval=2)
    finally:
        res = sw.stop_workload(wl)
    log("rolling update of the proxies: %d commits, errors %s, longest gap %.2f s" % (
        res["commits"], res["errors"], res["max_gap"]))
    # (libpq reports the drained proxy's 57P01 to an idle connection as a connection
    # closed at the next statement: counted as "closed between transactions")
    assert set(res["errors"]) <= {"57P01", "closed between transactions"}, res["errors"]
    assert all(r["commits"] > 0 for r in res["clients"].values())
    assert sw.lost_rows(client_node, res) == 0


def test_host_loss_of_the_leader(sw):
    """The leader's host is lost, with the repository host (the backup service) on it:
    the promotion does not wait on pgBackRest trying to reach the repository."""
    c = sw.healthy()
    backup_node = sw.find_container(STACK, "backup")[0]
    on_it = next(m["member"] for m in c["members"] if sw.node_of_member(m["member"]) ==
                 backup_node)
    if c["leader"] != on_it:
        sw.pgwarden(on_it, "switchover --candidate %s --force" % on_it)
        helpers.wait_for("the switchover to " + on_it, lambda: (
            sw.healthy() or {}).get("leader") == on_it, 120, interval=2)
    c = sw.healthy()
    leader = c["leader"]
    victim = sw.node_of_member(leader)
    assert victim == backup_node
    client_node = next(n for n in sw.nodes if n != victim and sw.running(n))
    wl = sw.start_workload(client_node, POOLED, 8, name="hostloss")
    try:
        start = sw.workload_commits(wl)
        helpers.wait_for("commits before the kill", lambda: sw.workload_commits(wl) >
                         start + 100, 60, interval=0.5)
        log("killing %s (leader %s's host)" % (victim, leader))
        swarmlib.sh(["docker", "kill", victim])
        new = helpers.wait_for("a new leader", lambda: (
            lambda cl: cl and cl.get("leader") not in ("", leader) and cl["leader"])(
                sw.cluster()), 120, interval=1)
        log("new leader: %s" % new)
        node, cid = sw.member_container(new)
        promoted = sw.exec(node, "docker logs %s 2>&1 | grep -a 'does not answer: promoting "
                           "without archive lookups' || true" % cid)
        assert "without archive lookups" in promoted, "the promotion asked the archive"
        after = sw.workload_commits(wl)
        helpers.wait_for("commits on the new leader", lambda: sw.workload_commits(wl) >
                         after + 100, 120, interval=1)
    finally:
        res = sw.stop_workload(wl)
    log("host loss: write outage (longest gap of a client) %.2f s, errors %s" % (
        res["max_gap"], res["errors"]))
    assert res["max_gap"] < 30
    # asynchronous replication (the default): the last acknowledged commits of a killed
    # host may be lost; reported, not asserted (tests/integration/test_sync.py is the
    # synchronous mode's no-loss test)
    log("host loss: %d acknowledged rows not on the new primary" % sw.lost_rows(client_node, res))
    # the host comes back: its member rejoins as a replica
    swarmlib.sh(["docker", "start", victim])
    helpers.wait_for(victim + "'s engine", lambda: sw.exec(
        victim, "docker info >/dev/null 2>&1", check=False).returncode == 0, 60, interval=1)
    helpers.wait_for("the old leader to rejoin", sw.healthy, 300, interval=3)
    assert sw.healthy()["leader"] == new
    # rewound, not cloned again (a postmaster.pid naming a pid the restarted container
    # reused once made pg_rewind fail)
    node, cid = sw.member_container(leader)
    rejoin = sw.exec(node, "docker logs %s 2>&1 | grep -a -E 'rewind|stale postmaster|"
                     "creating replica' || true" % cid)
    log("host loss: the old leader rejoined: %s" % " | ".join(rejoin.split("\n")[-4:]))
    assert "creating replica" not in rejoin, rejoin


def test_stack_rm_and_deploy_keeps_the_data(sw):
    c = sw.healthy()
    m = sw.manager()
    sw.psql(m, "pgbouncer", 5000, "CREATE TABLE IF NOT EXISTS kept (id int); "
            "INSERT INTO kept SELECT generate_series(1, 1000)")
    before = sw.psql(m, "pgbouncer", 6432, "SELECT count(*) FROM swarm_load")
    # as the README says: deploy.sh right away waits until the old tasks are gone
    sw.docker("stack rm %s >/dev/null" % STACK)
    sw.script("deploy.sh")
    c2 = sw.healthy()
    assert c2["system_identifier"] == c["system_identifier"]
    assert sw.psql(m, "pgbouncer", 6432, "SELECT count(*) FROM kept") == "1000"
    assert sw.psql(m, "pgbouncer", 6432, "SELECT count(*) FROM swarm_load") == before


def test_replaced_node_rejoins(sw):
    """Node Failure Recovery: a replica's host dies for good; a new host gets its
    labels and an empty folder; the member clones itself and streams, and its etcd
    member joins again."""
    c = sw.healthy()
    # not the first node: deploy/ and its .secrets are there, as on a user's manager
    placed = [(m["member"], sw.node_of_member(m["member"])) for m in c["members"]
              if m["member"] != c["leader"]]
    replica, dead = next(p for p in placed if p[1] != sw.nodes[0])
    log("replacing %s (member %s)" % (dead, replica))
    dead_id = sw.node_id(dead)
    swarmlib.sh(["docker", "rm", "-f", "-v", dead])
    swarmlib.sh("docker volume rm -f %s-docker %s-data" % (dead, dead), check=False)
    sw.nodes.remove(dead)
    helpers.wait_for("the swarm to see the node down", lambda: sw.docker(
        "node inspect -f '{{.Status.State}}' %s" % dead_id).strip() == "down", 120,
        interval=2)
    sw.docker("node demote %s >/dev/null" % dead_id)
    sw.docker("node rm --force %s >/dev/null" % dead_id)
    new = sw.add_node()
    sw.load_images([new])
    sw.join(new)
    survivors = [n for n in sw.nodes if n != new]
    order = {}
    for n in survivors:
        for i in (1, 2, 3):
            if sw.docker("node inspect -f '{{index .Spec.Labels \"pgwarden\"}}' %s" % n
                         ).strip() == "node%d" % i:
                order[i] = n
    missing = [i for i in (1, 2, 3) if i not in order][0]
    order[missing] = new
    rc, out = sw.script("setup.sh", "--nodes %s --yes" % ",".join(order[i] for i in (1, 2, 3)))
    assert "label pgwarden=node%d: added to %s" % (missing, new) in out, out
    assert "folder /var/lib/pgwarden/node%d on %s: created" % (missing, new) in out, out
    helpers.wait_for("the new member to stream", sw.healthy, 400, interval=3)
    node, cid = sw.member_container("node1") if replica != "node1" else \
        sw.member_container("node2")
    members = sw.exec(node, "docker exec %s etcdctl --endpoints=http://etcd1:2379,"
                      "http://etcd2:2379,http://etcd3:2379 member list" % cid)
    assert len([ln for ln in members.splitlines() if ", started, " in ln]) == 3, members

"""A dedicated repository host (issue 13): `pgwarden repo-server` runs pgBackRest's TLS
server, creates the stanza from the leader and runs the backup schedule; the members
archive WAL to it and restore from it over TLS ([backup] repo_host), and the backups it
takes read a streaming replica's files through that replica's own TLS server. The same
layout the Swarm stack deploys, on one machine."""
import json
import os
import pwd
import re
import shutil
import signal
import subprocess

from conftest import PGWARDEN, wait_for


def make_certs(folder):
    """A CA and one certificate (CN pgwarden) for every host, as deploy/setup.sh makes
    them; pgBackRest checks the host name against the DNS names only."""
    os.makedirs(folder)
    run = lambda *a: subprocess.run(a, cwd=folder, check=True, capture_output=True,  # noqa
                                    timeout=60)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        "-out", "ca.crt", "-days", "30", "-subj", "/CN=pgwarden-test-ca")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out",
        "tls.csr", "-subj", "/CN=pgwarden")
    with open(os.path.join(folder, "ext"), "w") as f:
        f.write("subjectAltName=DNS:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tls.crt", "-days", "30", "-extfile", "ext")
    pg = pwd.getpwnam("postgres")
    for name in os.listdir(folder):
        os.chown(os.path.join(folder, name), pg.pw_uid, pg.pw_gid)
    os.chown(folder, pg.pw_uid, pg.pw_gid)
    return {k: os.path.join(folder, v) for k, v in
            (("ca", "ca.crt"), ("cert", "tls.crt"), ("key", "tls.key"))}


def test_repository_host_over_tls(cluster_factory):
    c = cluster_factory()
    c.up()
    c.wait_healthy()
    c.down()
    base = os.path.dirname(c.dir)
    tls = make_certs(os.path.join(base, "tls"))
    pg = pwd.getpwnam("postgres")
    host = os.path.join(base, "repohost")
    os.makedirs(host)
    os.chown(host, pg.pw_uid, pg.pw_gid)
    repo = os.path.join(host, "repo")
    repo_port = c.api_port + 5  # the members' TLS servers on +6, +7, +8
    tls_lines = "tls_ca_file = %s\ntls_cert_file = %s\ntls_key_file = %s\n" % (
        tls["ca"], tls["cert"], tls["key"])
    for i in range(c.N):
        ini = os.path.join(c.dir, "node%d/node.ini" % (i + 1))
        with open(ini) as f:
            text = f.read()
        old = re.search(r"^repo_path = .*$", text, re.M).group(0)
        text = text.replace(old, "repo_host = 127.0.0.1:%d\nrepo_path = %s\n%s"
                            "tls_listen = 127.0.0.1:%d" % (repo_port, repo, tls_lines,
                                                           repo_port + 1 + i))
        with open(ini, "w") as f:
            f.write(text)
    repo_ini = os.path.join(host, "repo.ini")
    with open(repo_ini, "w") as f:
        f.write("[cluster]\nname = demo\n\n[etcd]\nendpoints = http://127.0.0.1:%d\n\n"
                "[backup]\nrepo_path = %s\nwork_dir = %s\n%stls_listen = 127.0.0.1:%d\n"
                "schedule_full = 1d\n" % (c.etcd_port, repo, host, tls_lines, repo_port))
    # A member with repo_host but no certificates: a configuration error, said clearly.
    bad = os.path.join(base, "bad.ini")
    with open(os.path.join(c.dir, "node1/node.ini")) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(re.sub(r"^tls_ca_file = .*\n", "", text, flags=re.M))
    proc = c.run("backup", "list", "-c", bad, check=False)
    assert proc.returncode == 2 and "repo_host needs tls_ca_file" in proc.stderr, proc.stderr
    proc = subprocess.run(["runuser", "-u", "postgres", "--", PGWARDEN, "repo-server", "-c",
                           bad], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "not a repository host" in proc.stderr, proc.stderr

    env = {k: v for k, v in c.env.items() if not k.startswith("PGWARDEN_BACKUP_SCHEDULE")}
    log_path = os.path.join(host, "repo-server.log")
    log = open(log_path, "w")
    server = subprocess.Popen([PGWARDEN, "repo-server", "-c", repo_ini], stdout=log,
                              stderr=subprocess.STDOUT, env=env, start_new_session=True,
                              user=pg.pw_uid, group=pg.pw_gid, extra_groups=[], cwd=host)

    def server_log():
        with open(log_path) as f:
            return f.read()
    try:
        c.up()
        leader = c.wait_healthy()
        for i in range(c.N):
            with open(os.path.join(c.dir, "node%d/pgbackrest/pgbackrest.conf" % (i + 1))) as f:
                conf = f.read()
            assert "repo1-host=127.0.0.1\nrepo1-host-port=%d" % repo_port in conf, conf
            assert "tls-server-port=%d" % (repo_port + 1 + i) in conf, conf
        wait_for("the stanza, created by the repository host",
                 lambda: "stanza 'demo' ready" in server_log(), 60)
        assert "from the leader node%d" % (leader + 1) in server_log()
        c.query(leader, "CREATE TABLE t (id bigint PRIMARY KEY)")
        c.query(leader, "INSERT INTO t (id) SELECT generate_series(1, 1000)")

        # The schedule: no backup yet, so a full one, taken from a streaming replica.
        def backups():
            out = c.run("backup", "list", "-c", repo_ini, "--json").stdout
            return json.loads(out)["backups"]
        wait_for("the first scheduled backup", lambda: backups(), 120, interval=2)
        wait_for("the repository host to say so",
                 lambda: "scheduled backup done" in server_log(), 60)
        text = server_log()
        assert "scheduled backup due: full" in text, text[-3000:]
        assert "a streaming replica: pgBackRest backup-standby" in text, text[-3000:]
        assert os.path.isdir(os.path.join(repo, "backup/demo"))

        # WAL reaches the repository host from the leader, and after a failover from the
        # next one; `backup check` (run from the leader) sees a continuous archive.
        c.kill_host(leader)
        # The killed agent's own TLS server goes with it (else it would hold the port).
        conf = os.path.join(c.dir, "node%d/pgbackrest/pgbackrest.conf" % (leader + 1))
        wait_for("the killed agent's pgbackrest server to stop", lambda: subprocess.run(
            ["pgrep", "-f", "%s server" % conf], capture_output=True
        ).returncode == 1, 10)
        new = wait_for("a new leader", lambda: next(
            (i for i in range(c.N) if i != leader and c.writable(i)), None), 60)
        c.query(new, "INSERT INTO t (id) VALUES (1001)")
        c.up()  # the old leader's host back, as a replica
        c.wait_healthy(timeout=120)
        for where in (("--dir", c.dir), ("-c", repo_ini)):  # from the leader; from the host
            check = c.run("backup", "check", *where, timeout=180, check=False)
            assert check.returncode == 0, check.stdout + check.stderr
            assert "pgbackrest check (from node%d): ok" % (new + 1) in check.stdout, check.stdout
            assert "archive: continuous" in check.stdout, check.stdout

        # A backup by hand on the repository host: incremental, from a replica.
        inc = c.run("backup", "-c", repo_ini, "--type", "incr", "--timeout", "300")
        assert "a streaming replica" in inc.stdout, inc.stdout
        assert [b["type"] for b in backups()] == ["full", "incr"]
        verify = c.run("backup", "verify", "-c", repo_ini, timeout=180, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # A member cannot take one itself: the repository is elsewhere.
        proc = c.run("backup", "-c", os.path.join(c.dir, "node%d/node.ini" % (new + 1)),
                     check=False)
        assert proc.returncode == 2 and "run the backup there" in proc.stderr, proc.stderr
        # ... but it lists them (pgbackrest info through the repository host).
        listed = json.loads(c.run("backup", "list", "--dir", c.dir, "--json").stdout)
        assert [b["type"] for b in listed["backups"]] == ["full", "incr"], listed

        # A reinit restores the replica from the repository host, then streams.
        replica = next(i for i in range(c.N) if i != new)
        before = len(c.log(replica))
        c.run("reinit", "--dir", c.dir, "node%d" % (replica + 1), "--force")
        wait_for("node%d restored from the repository" % (replica + 1),
                 lambda: "replica restored from the repository" in c.log(replica)[before:],
                 120)
        c.wait_healthy(timeout=120)
        assert c.query(replica, "SELECT count(*) FROM t")[0][0] == 1001
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
    assert server.returncode == 0, server_log()[-3000:]
    assert "stopping" in server_log()

    # The repository host down (in a swarm, on the old leader's lost host, say): the
    # failover does not wait on pgBackRest trying to reach it (two minutes per fetch
    # with its defaults).
    # The host drops packets (as a lost one does): a fetch waits for its timeouts. One is
    # in flight on each replica, as PostgreSQL's restore_command runs them while the
    # leader is gone: the promoting agent stops its own at once (pgBackRest exits 63 on
    # SIGTERM, "not found" to PostgreSQL) instead of the promotion waiting for it.
    leader = c.wait_healthy(timeout=120)
    before = [len(c.log(i)) for i in range(c.N)]
    drop = ["INPUT", "-p", "tcp", "--dport", str(repo_port), "-j", "DROP"]
    subprocess.run(["iptables", "-I"] + drop, check=True, timeout=10)
    fetches = {}
    try:
        for i in range(c.N):
            if i != leader:
                conf = os.path.join(c.dir, "node%d/pgbackrest/pgbackrest.conf" % (i + 1))
                fetches[i] = subprocess.Popen(
                    ["pgbackrest", "--config=" + conf, "--stanza=demo", "archive-get",
                     "000000010000000000000001", os.path.join(base, "fetched%d" % i)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    preexec_fn=lambda: (os.setgid(pg.pw_gid), os.setuid(pg.pw_uid)))
        c.kill_host(leader)
        new = wait_for("a new leader without the repository host", lambda: next(
            (i for i in range(c.N) if i != leader and c.writable(i)), None), 60)
        assert fetches[new].wait(timeout=10) == 63
        assert all(p.poll() is None for i, p in fetches.items() if i != new)
    finally:
        subprocess.run(["iptables", "-D"] + drop, timeout=10)
        for p in fetches.values():
            p.kill()
            p.wait()
    text = c.log(new)[before[new]:]
    assert "the repository host 127.0.0.1:%d does not answer" % repo_port in text, text[-3000:]
    assert re.search(r"promoting \(timeline \d+, position \w+, without archive lookups\)",
                     text), text[-3000:]
    assert "stopped the archive fetch in flight" in text, text[-3000:]
    wait_for("restore_command back, bounded", lambda: "--io-timeout=2 archive-get %f" in
             c.query(new, "SHOW restore_command")[0][0], 30)

    # ... and the primary stops without its archiver trying the repository host first.
    c.down()
    text = c.log(new)[before[new]:]
    assert "does not answer: archiving off for the stop" in text, text[-3000:]
    assert "-m fast) failed" not in text, text[-3000:]

    # Every database host lost: a new cluster from the repository's folder alone (a file
    # that names it, no member's configuration, no TLS, nothing running).
    alone = os.path.join(base, "alone.ini")
    with open(alone, "w") as f:
        f.write("[cluster]\nname = demo\n\n[backup]\nrepo_path = %s\nwork_dir = %s\n" % (
            repo, os.path.join(base, "alone")))
    r = cluster_factory()
    # Run where the environment names another cluster (a container's): the new cluster
    # must not take its name, etcd or paths from there.
    env = dict(c.env, PGWARDEN_CLUSTER_NAME="demo",
               PGWARDEN_ETCD_ENDPOINTS="http://127.0.0.1:%d" % c.etcd_port,
               PGWARDEN_BACKUP_REPO_PATH=repo)
    proc = subprocess.run([PGWARDEN, "restore", "--latest", "--to", r.dir, "--cluster",
                           "restored", "-c", alone, "--etcd-port", str(r.etcd_port),
                           "--pg-port", str(r.pg_port), "--api-port", str(r.api_port),
                           "--proxy-port", str(r.proxy_port), "--memory", "128MB",
                           "--timeout", "300"], capture_output=True, text=True, env=env,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "restoring backup" in proc.stdout, proc.stdout
    assert "ignoring PGWARDEN_ETCD_ENDPOINTS from the environment" in proc.stderr
    leader = r.wait_healthy()
    assert r.query(leader, "SELECT count(*) FROM t")[0][0] == 1001
    assert "Cluster: restored" in r.run("list", "--dir", r.dir).stdout
    shutil.rmtree(host, ignore_errors=True)

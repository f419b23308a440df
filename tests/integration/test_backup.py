"""Backups with pgBackRest (issue 13): the repository `pgwarden up` sets up, WAL archiving
on every member, what reaches the archive across a switchover and a failover, and the
reference stack's own pg_basebackup command on a member."""
import json
import os
import pwd
import subprocess

from conftest import PG_BIN, PGWARDEN, wait_for


def pgbackrest(cluster, i, *args, timeout=60, stanza="demo"):
    """pgbackrest as member i runs it (its generated configuration), as postgres."""
    conf = os.path.join(cluster.dir, "node%d/pgbackrest/pgbackrest.conf" % (i + 1))
    return subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest",
                           "--config=" + conf, "--stanza=" + stanza, *args],
                          capture_output=True, text=True, timeout=timeout)


def archived(cluster):
    """Names in the repository's archive: WAL segments (without their checksum suffix),
    .partial segments and .history files."""
    root = os.path.join(cluster.dir, "backup/archive/demo/15-1")
    names = set()
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".history"):
                names.add(f)
            elif len(f) > 24 and f[:24].isalnum():
                names.add(f[:24] + (".partial" if f[24:].startswith(".partial") else ""))
    return names


def current_segment(cluster, i):
    """Switches WAL on primary i; returns the name of the segment it just closed."""
    return cluster.query(i, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]


def test_archiving_on_every_member_across_switchover_and_failover(cluster):
    leader = cluster.leader()
    for i in range(cluster.N):
        assert cluster.query(i, "SHOW archive_mode")[0][0] == "on"
        cmd = cluster.query(i, "SHOW archive_command")[0][0]
        assert "archive-push %p" in cmd and "node%d/pgbackrest" % (i + 1) in cmd, cmd
        assert "archive-get %f" in cluster.query(i, "SHOW restore_command")[0][0]

    # The leader created the stanza; what it writes reaches the repository.
    wait_for("the stanza", lambda: pgbackrest(cluster, leader, "info", "--output=json")
             .returncode == 0 and json.loads(pgbackrest(cluster, leader, "info",
                                                        "--output=json").stdout)[0]
             ["status"]["code"] in (0, 2), 60)
    cluster.query(leader, "INSERT INTO t (id) VALUES (1)")
    seg = current_segment(cluster, leader)
    wait_for("%s in the archive" % seg, lambda: seg in archived(cluster), 30)

    # Switchover: the new timeline's history file, and the old timeline's last WAL
    # (the old primary archives everything before its clean stop).
    cand = (leader + 1) % cluster.N
    cluster.run("switchover", "--dir", cluster.dir, "--candidate", "node%d" % (cand + 1),
                "--force")
    wait_for("node%d to lead" % (cand + 1), lambda: cluster.leader() == cand, 60)
    tl = cluster.timeline(cand)
    assert tl and tl >= 2, tl
    wait_for("%08X.history in the archive" % tl,
             lambda: "%08X.history" % tl in archived(cluster), 30)
    seg2 = current_segment(cluster, cand)
    assert seg2.startswith("%08X" % tl), seg2
    wait_for("%s in the archive" % seg2, lambda: seg2 in archived(cluster), 30)

    # Failover (the leader's PostgreSQL and agent killed): the promoted replica archives
    # the next timeline's history and its WAL.
    cluster.wait_healthy()
    cluster.kill(cluster.agent_pid(cand))
    cluster.kill(cluster.postmaster_pid(cand))
    new = wait_for("a new leader", lambda: next(
        (i for i in range(cluster.N) if i != cand and cluster.writable(i)), None), 60)
    tl2 = wait_for("the new timeline", lambda: (cluster.timeline(new) or 0) > tl and
                   cluster.timeline(new), 30)
    wait_for("%08X.history in the archive" % tl2,
             lambda: "%08X.history" % tl2 in archived(cluster), 60)
    cluster.query(new, "INSERT INTO t (id) VALUES (2)")
    seg3 = current_segment(cluster, new)
    wait_for("%s in the archive" % seg3, lambda: seg3 in archived(cluster), 60)


def promotion_line(cluster, i, tl):
    """Member i's log line of its promotion from timeline tl."""
    return next((line for line in cluster.log(i).splitlines()
                 if "promoting (timeline %d," % tl in line), None)


def test_planned_promotion_asks_the_archive_only_when_it_must(cluster):
    """A switchover's candidate looks for the next timeline's history file in the archive
    itself: when it is not there, PostgreSQL runs without restore_command until the
    promotion (faster, same timeline chosen); when it is (another member used that
    timeline number once), the promotion asks the archive as PostgreSQL always does and
    takes the next free timeline."""
    leader = cluster.leader()
    wait_for("the stanza", lambda: pgbackrest(cluster, leader, "info").returncode == 0 and
             "wal archive min/max" in pgbackrest(cluster, leader, "info").stdout, 60)
    tl = cluster.timeline(leader)
    cand = (leader + 1) % cluster.N
    cluster.run("switchover", "--dir", cluster.dir, "--candidate", "node%d" % (cand + 1),
                "--force")
    wait_for("node%d to lead" % (cand + 1), lambda: cluster.leader() == cand, 60)
    assert cluster.timeline(cand) == tl + 1
    line = promotion_line(cluster, cand, tl)
    assert line and "without archive lookups" in line, cluster.log(cand)[-3000:]
    assert "timeline %d is not in the archive" % (tl + 1) in cluster.log(cand)
    # The primary's configuration came back with the promotion; the others kept theirs.
    for i in range(cluster.N):
        if cluster.postmaster_pid(i):
            wait_for("node%d's restore_command" % (i + 1), lambda i=i: "archive-get %f" in
                     cluster.query(i, "SHOW restore_command")[0][0], 20)
    wait_for("%08X.history in the archive" % (tl + 1),
             lambda: "%08X.history" % (tl + 1) in archived(cluster), 30)

    # Timeline tl+2 taken in the archive (as by a member that promoted and vanished).
    cluster.wait_healthy()
    taken = os.path.join(cluster.dir, "taken", "pg_wal", "%08X.history" % (tl + 2))
    os.makedirs(os.path.dirname(taken))
    with open(taken, "w") as f:
        f.write("%d\t0/3000000\tno recovery target specified\n" % tl +
                "%d\t0/4000000\tno recovery target specified\n" % (tl + 1))
    subprocess.run(["chown", "-R", "postgres", os.path.dirname(os.path.dirname(taken))],
                   check=True)
    push = pgbackrest(cluster, cand, "archive-push", taken)
    assert push.returncode == 0, push.stdout + push.stderr
    assert "%08X.history" % (tl + 2) in archived(cluster)
    nxt = (cand + 1) % cluster.N
    cluster.run("switchover", "--dir", cluster.dir, "--candidate", "node%d" % (nxt + 1),
                "--force")
    wait_for("node%d to lead" % (nxt + 1), lambda: cluster.leader() == nxt, 60)
    assert cluster.timeline(nxt) == tl + 3
    line = promotion_line(cluster, nxt, tl + 1)
    assert line and "without archive lookups" not in line, cluster.log(nxt)[-3000:]
    assert "timeline %d is in the archive already" % (tl + 2) in cluster.log(nxt)


def test_reference_stack_pg_basebackup_works_on_a_member(cluster, tmp_path):
    """reference-stack.md: pg_basebackup -h localhost -U postgres -D /tmp/backup -Ft -z -Xs -P,
    run on a member (here: the leader's port, and a replica's)."""
    env = dict(os.environ, PGPASSFILE=os.path.join(cluster.dir, "pgpass"))
    leader = cluster.leader()
    for i in (leader, (leader + 1) % cluster.N):
        target = tmp_path / ("backup%d" % i)
        proc = subprocess.run([os.path.join(PG_BIN, "pg_basebackup"), "-h", "localhost", "-p",
                               str(cluster.pg_port + i), "-U", "postgres", "-D", str(target),
                               "-Ft", "-z", "-Xs", "-P"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert (target / "base.tar.gz").stat().st_size > 0
        assert (target / "pg_wal.tar.gz").exists()


def test_promoted_replica_archives_what_the_dead_primary_did_not(cluster):
    """The leader's archiving is stopped (`pgbackrest stop` on its node: archive-push fails),
    twelve segments are written and switched, then the leader dies. The promoted replica
    streamed them: it must archive them, so the old timeline has no gap."""
    leader = cluster.leader()
    wait_for("the stanza", lambda: pgbackrest(cluster, leader, "info").returncode == 0 and
             "wal archive min/max" in pgbackrest(cluster, leader, "info").stdout, 60)
    first = current_segment(cluster, leader)
    wait_for("%s in the archive" % first, lambda: first in archived(cluster), 30)
    stop = pgbackrest(cluster, leader, "stop")
    assert stop.returncode == 0, stop.stderr
    # More segments than wal_keep_size (128MB here) keeps after the promotion's
    # checkpoint: they must be queued before it.
    unarchived = []
    for n in range(12):
        cluster.query(leader, "INSERT INTO t (id) VALUES (%s)", (100 + n,))
        unarchived.append(current_segment(cluster, leader))
    assert not set(unarchived) & archived(cluster)
    # Every replica has them before the leader dies.
    lsn = cluster.query(leader, "SELECT pg_current_wal_lsn()::text")[0][0]
    for i in range(cluster.N):
        if i != leader:
            wait_for("node%d to replay %s" % (i + 1, lsn), lambda i=i: cluster.query(
                i, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0], 30)

    cluster.kill(cluster.agent_pid(leader))
    cluster.kill(cluster.postmaster_pid(leader))
    new = wait_for("a new leader", lambda: next(
        (i for i in range(cluster.N) if i != leader and cluster.writable(i)), None), 60)
    wait_for("%s in the archive, pushed by node%d" % (unarchived, new + 1),
             lambda: set(unarchived) <= archived(cluster), 90)
    assert "queued" in cluster.log(new) and "for archiving again" in cluster.log(new)
    # The old timeline is continuous from the first archived segment to the last one.
    segs = sorted(s for s in archived(cluster) if s.startswith("00000001") and len(s) == 24)
    numbers = [int(s[8:16], 16) * 256 + int(s[16:], 16) for s in segs]
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), segs


def etcd_backup_key(cluster):
    out = subprocess.run(["etcdctl", "--endpoints=http://127.0.0.1:%d" % cluster.etcd_port,
                          "get", "/service/demo/backup", "--print-value-only"],
                         capture_output=True, text=True, timeout=10,
                         env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    return out.stdout.strip()


def test_backup_from_a_replica_one_at_a_time_and_list(cluster):
    leader = cluster.leader()
    wait_for("the stanza", lambda: "wal archive min/max" in
             pgbackrest(cluster, leader, "info").stdout, 60)
    cluster.query(leader, "INSERT INTO t (id) SELECT g FROM generate_series(1, 1000) g")

    # While another runner holds the backup key (on its lease), a backup is refused and
    # says who runs; nothing is started.
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    ep = "--endpoints=http://127.0.0.1:%d" % cluster.etcd_port
    grant = subprocess.run(["etcdctl", ep, "lease", "grant", "30"], capture_output=True,
                           text=True, timeout=10, env=env, check=True).stdout
    lease = grant.split()[1]
    subprocess.run(["etcdctl", ep, "put", "--lease=" + lease, "/service/demo/backup",
                    '{"member": "elsewhere", "started": "earlier"}'], capture_output=True,
                   timeout=10, env=env, check=True)
    second = cluster.run("backup", "--dir", cluster.dir, "--type", "full", check=False)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "a backup is already running: " in second.stderr and "elsewhere" in second.stderr
    subprocess.run(["etcdctl", ep, "lease", "revoke", lease], capture_output=True, timeout=10,
                   env=env, check=True)
    assert etcd_backup_key(cluster) == ""

    # A full backup, from a streaming replica (pgBackRest's backup-standby); the key is
    # held while it runs and gone afterwards.
    first = subprocess.Popen([PGWARDEN, "backup", "--dir", cluster.dir, "--type", "full",
                              "--timeout", "300"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out + err
    assert "a streaming replica" in out, out
    assert "replay on the standby reached" in out, out
    assert etcd_backup_key(cluster) == ""

    # An incremental one from the leader on request.
    cluster.query(leader, "INSERT INTO t (id) VALUES (5000)")
    inc = cluster.run("backup", "--dir", cluster.dir, "--from-leader", "--timeout", "300")
    assert "from node%d (the leader)" % (leader + 1) in inc.stdout, inc.stdout

    listed = json.loads(cluster.run("backup", "list", "--dir", cluster.dir, "--json").stdout)
    assert [b["type"] for b in listed["backups"]] == ["full", "incr"], listed
    full = listed["backups"][0]
    assert full["size"] > 1000000 and full["repository_size"] > 0, full
    assert full["stop"] >= full["start"] > 0 and full["start_lsn"] and full["stop_lsn"], full
    assert listed["restore_from"] == full["stop"]
    table = cluster.run("backup", "list", "--dir", cluster.dir).stdout
    assert full["label"] in table and "Restorable: from" in table, table

    bad = cluster.run("backup", "--dir", cluster.dir, "--type", "weekly", check=False)
    assert bad.returncode == 2 and "bad --type 'weekly'" in bad.stderr, bad.stderr


def test_schedule_takes_the_first_full_backup_and_survives_a_failover(cluster_factory):
    """pgwarden up schedules backups: the leader takes a first full one as soon as the
    cluster formed (the stanza ready, the replicas streaming). Its leader killed while it
    runs: the next leader takes it again."""
    c = cluster_factory()
    for k in ("PGWARDEN_BACKUP_SCHEDULE_FULL", "PGWARDEN_BACKUP_SCHEDULE_DIFF"):
        c.env.pop(k)
    c.up()
    leader = c.wait_healthy()
    wait_for("the stanza", lambda: "stanza 'demo' ready" in c.log(leader), 60)
    holder = wait_for("the first scheduled backup to start (the backup key)",
                      lambda: etcd_backup_key(c), 30, interval=0.05)
    assert '"type":"full"' in holder, holder
    c.kill_host(leader)
    listed = json.loads(c.run("backup", "list", "--dir", c.dir, "--json").stdout)
    assert listed["backups"] == [], listed
    new = wait_for("a new leader", lambda: next(
        (i for i in range(c.N) if i != leader and c.writable(i)), None), 60)

    def backups():
        return json.loads(c.run("backup", "list", "--dir", c.dir, "--json").stdout)["backups"]
    wait_for("the first scheduled backup", lambda: backups(), 120, interval=2)
    assert [b["type"] for b in backups()] == ["full"]
    wait_for("node%d's log to say so" % (new + 1),
             lambda: "scheduled backup done" in c.log(new), 30)
    with open(os.path.join(c.dir, "node%d/backup.log" % (new + 1))) as f:
        assert "scheduled backup due: full" in f.read()
    # A bad schedule is a configuration error with file:line.
    ini = os.path.join(c.dir, "node%d/node.ini" % (leader + 1))
    with open(ini) as f:
        text = f.read()
    with open(ini, "w") as f:
        f.write(text.replace("schedule_diff = 0 1 * * 1-6", "schedule_diff = 0 25 * * *"))
    proc = c.run("backup", "list", "-c", ini, check=False)
    assert proc.returncode == 2 and "node.ini:" in proc.stderr and "hour" in proc.stderr, \
        proc.stderr


def test_dynamic_configuration_sets_the_backup_settings(cluster):
    """edit-config --set backup.*: the schedule, retention, compression and archiving mode
    cluster-wide, over every node's own [backup]; a removed key gives the node's value back.
    A secret, a place or a program never comes from etcd."""
    leader = cluster.leader()
    wait_for("the stanza", lambda: "stanza 'demo' ready" in cluster.log(leader), 60)
    confs = [os.path.join(cluster.dir, "node%d/pgbackrest/pgbackrest.conf" % (i + 1))
             for i in range(cluster.N)]

    def conf(i):
        with open(confs[i]) as f:
            return f.read()

    def wait_confs(what, *lines):
        for i in range(cluster.N):
            wait_for("%s in node%d's pgbackrest.conf" % (what, i + 1), lambda i=i: all(
                line + "\n" in conf(i) for line in lines), 30)
    assert all("repo1-retention-full=2\n" in conf(i) for i in range(cluster.N))
    for args, expect in [
        (["--set", "backup.cipher_pass=x"], "a node's own setting"),
        (["--set", "backup.pgbackrest=/bin/sh"], "cannot be set in the dynamic"),
        (["--set", "backup.repo_path=/tmp"], "cannot be set in the dynamic"),
        (["--set", "backup.retention_full=0"], "out of range"),
        (["--set", "backup.schedule_full=0 25 * * *"], "hour"),
        (["--set", "backup.compress=rar"], "zst"),
    ]:
        proc = cluster.run("edit-config", "--dir", cluster.dir, *args, "--force", check=False)
        assert proc.returncode in (1, 2) and expect in proc.stderr, (args, proc.stderr)

    # The tests' nodes schedule nothing: a schedule in etcd starts the first full backup.
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "backup.schedule_full=1w",
                "--set", "backup.retention_full=1", "--set", "backup.compress=lz4",
                "--set", "backup.archive_async=on", "--force")
    wait_confs("the settings in etcd", "repo1-retention-full=1", "compress-type=lz4",
               "archive-async=y")
    assert "schedule full '1w'" in cluster.log(leader)
    wait_for("the scheduled full backup", lambda: json.loads(cluster.run(
        "backup", "list", "--dir", cluster.dir, "--json").stdout)["backups"], 120, interval=2)
    listed = json.loads(cluster.run("backup", "list", "--dir", cluster.dir, "--json").stdout)
    assert [b["type"] for b in listed["backups"]] == ["full"], listed
    # Archiving goes on with the new settings.
    cluster.query(leader, "INSERT INTO t (id) SELECT generate_series(1, 10)")
    seg = current_segment(cluster, leader)
    wait_for("segment %s in the repository" % seg, lambda: seg in archived(cluster), 60)

    # The keys removed: every node has its own values again.
    cluster.run("edit-config", "--dir", cluster.dir, "--set", "backup.schedule_full=null",
                "--set", "backup.retention_full=null", "--set", "backup.compress=null",
                "--set", "backup.archive_async=null", "--force")
    wait_confs("the nodes' own values", "repo1-retention-full=2", "compress-type=zst",
               "archive-async=n")
    show = cluster.run("show-config", "--dir", cluster.dir).stdout
    assert "backup" not in show, show


def test_reinit_restores_from_the_repository_then_streams(cluster):
    """Patroni's create_replica_methods: with a backup in the repository a new replica (here
    a reinit) restores it, replays the archive and streams; the leader sends no base
    backup. Without a backup (the cluster formed) the replicas cloned with pg_basebackup."""
    leader = cluster.leader()
    replica = (leader + 1) % cluster.N
    assert "cloning from node%d" % (leader + 1) in cluster.log(replica)
    assert "from the repository" not in cluster.log(replica)
    wait_for("the stanza", lambda: "wal archive min/max" in
             pgbackrest(cluster, leader, "info").stdout, 60)
    cluster.run("backup", "--dir", cluster.dir, "--type", "full", "--timeout", "300")
    # WAL the replica replays from the archive, and some it streams.
    cluster.query(leader, "INSERT INTO t (id) SELECT generate_series(1, 5000)")
    current_segment(cluster, leader)
    cluster.query(leader, "INSERT INTO t (id) SELECT generate_series(5001, 6000)")
    before = len(cluster.log(replica))
    cluster.run("reinit", "--dir", cluster.dir, "node%d" % (replica + 1), "--force")
    cluster.query(leader, "INSERT INTO t (id) VALUES (6001)")
    wait_for("node%d restored from the repository" % (replica + 1),
             lambda: "replica restored from the repository" in cluster.log(replica)[before:],
             120)
    cluster.wait_healthy(timeout=120)
    log = cluster.log(replica)[before:]
    assert "creating a replica from the repository" in log, log[-3000:]
    assert "cloning from" not in log, log[-3000:]
    lsn = cluster.query(leader, "SELECT pg_current_wal_lsn()::text")[0][0]
    wait_for("node%d to stream up to %s" % (replica + 1, lsn), lambda: cluster.query(
        replica, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0], 60)
    assert cluster.query(replica, "SELECT count(*) FROM t")[0][0] == 6001
    assert cluster.status(replica)["state"] == "streaming"
    restore_log = os.path.join(cluster.dir, "node%d/pgbackrest/log/demo-restore.log" %
                               (replica + 1))
    with open(restore_log) as f:
        assert "restore command end: completed successfully" in f.read()
    # The repository unreadable: the reinit falls back to pg_basebackup at once (the old
    # data does not start again meanwhile).
    repo = os.path.join(cluster.dir, "backup")
    os.rename(repo, repo + ".away")
    try:
        marker = os.path.join(cluster.dir, "node%d/data/pgwarden-marker" % (replica + 1))
        open(marker, "w").close()
        before = len(cluster.log(replica))
        out = cluster.run("reinit", "--dir", cluster.dir, "node%d" % (replica + 1),
                          "--force").stdout
        assert "streaming again" in out, out
        log = cluster.log(replica)[before:]
        assert "restore from the repository failed" in log and "cloning from" in log, log
        assert not os.path.exists(marker)
    finally:
        os.rename(repo + ".away", repo)


def test_leader_lost_right_after_a_switchover_rejoins(cluster):
    """A switchover, then the new leader's host lost at once. Every promotion ends its WAL
    segment, so the two timeline switches never share one: when they did, a replica
    made from an older backup could not stream the oldest timeline's part of that
    segment (PostgreSQL's walsender reads it from the next timeline's file, which the
    last leader holds only as a .partial) until archive_timeout. The killed member comes
    back with a postmaster.pid naming a live process (in a container PIDs start again
    from 1) and is rewound, not cloned again."""
    leader = cluster.leader()
    wait_for("the stanza", lambda: "wal archive min/max" in
             pgbackrest(cluster, leader, "info").stdout, 60)
    cluster.run("backup", "--dir", cluster.dir, "--type", "full", "--timeout", "300")
    cluster.query(leader, "INSERT INTO t (id) SELECT generate_series(1, 1000)")
    current_segment(cluster, leader)
    cluster.wait_healthy()
    cand = (leader + 1) % cluster.N
    cluster.run("switchover", "--dir", cluster.dir, "--candidate", "node%d" % (cand + 1),
                "--force")
    wait_for("node%d to lead" % (cand + 1), lambda: cluster.leader() == cand, 60)
    cluster.wait_healthy()
    tl = cluster.timeline(cand)
    # The history entry follows the promotion's checkpoint and segment switch.
    wait_for("the switchover in the history", lambda: (lambda h: h[0] == 200 and h[1][-1][0]
                                                       == tl - 1)(cluster.api(cand, "/history")),
             30)
    cluster.query(cand, "INSERT INTO t (id) SELECT generate_series(1001, 2000)")
    # (replication is asynchronous: the rows reach the others before the kill)
    for i in range(cluster.N):
        if i != cand:
            wait_for("the rows on node%d" % (i + 1), lambda i=i: cluster.query(
                i, "SELECT count(*) FROM t WHERE id BETWEEN 1001 AND 2000")[0][0] == 1000, 20)
    cluster.kill_host(cand)
    new = wait_for("a new leader", lambda: (lambda l: l if l not in (None, cand) else None)(
        cluster.leader()), 60)
    history = wait_for("timeline %d's end in the history" % tl, lambda: (
        lambda h: h[0] == 200 and len(h[1]) >= 3 and h[1][-1][0] == tl and h[1])(
            cluster.api(new, "/history")), 30)
    segs = [cluster.query(new, "SELECT pg_walfile_name(%s::pg_lsn)", ("%X/%X" % (
        h[1] >> 32, h[1] & 0xFFFFFFFF),))[0][0][8:] for h in history[-2:]]
    assert segs[0] != segs[1], (history, segs)
    first = "%08X%s" % (tl + 1, segs[1])
    wait_for(first + " in the archive", lambda: first in archived(cluster), 30)
    cluster.query(new, "INSERT INTO t (id) VALUES (2001)")

    pidfile = os.path.join(cluster.dir, "node%d/data/postmaster.pid" % (cand + 1))
    with open(pidfile) as f:
        lines = f.read().split("\n")
    pw = pwd.getpwnam("postgres")
    other = subprocess.Popen(["sleep", "300"], preexec_fn=lambda: (
        os.setgid(pw.pw_gid), os.setuid(pw.pw_uid)))
    try:
        lines[0] = str(other.pid)
        with open(pidfile, "w") as f:
            f.write("\n".join(lines))
        before = len(cluster.log(cand))
        cluster.up()
        cluster.wait_healthy(timeout=120)
    finally:
        other.kill()
        other.wait()
    log = cluster.log(cand)[before:]
    assert "removed a stale postmaster.pid (pid '%d')" % other.pid in log, log[-3000:]
    assert "rewinding finished with exit code 0" in log, log[-3000:]
    assert "creating replica" not in log, log[-3000:]
    wait_for("node%d to have every row" % (cand + 1), lambda: cluster.query(
        cand, "SELECT count(*) FROM t WHERE id <= 2001")[0][0] >= 2001, 60)

    # A replica made from the backup taken before both switches.
    third = 3 - cand - new
    pglog = os.path.join(cluster.dir, "node%d/postgresql.log" % (third + 1))
    before, pg_before = len(cluster.log(third)), os.path.getsize(pglog)
    cluster.run("reinit", "--dir", cluster.dir, "node%d" % (third + 1), "--force")
    assert "creating a replica from the repository" in cluster.log(third)[before:]
    cluster.wait_healthy(timeout=120)
    assert cluster.query(third, "SELECT count(*) FROM t WHERE id <= 2001")[0][0] >= 2001
    with open(pglog) as f:
        f.seek(pg_before)
        assert "has already been removed" not in f.read()

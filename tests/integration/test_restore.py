"""Restore and point-in-time recovery (issue 13): `pgwarden restore` makes a new cluster
from a pgBackRest backup, recovered exactly to a time, an LSN or a transaction id; targets
outside the restorable window are refused before anything is touched."""
import json
import os
import shutil
import subprocess
import time

from conftest import Writer, wait_for
from test_backup import archived, pgbackrest


def restore(src, dst, *target, check=True):
    return src.run("restore", "--dir", src.dir, "--to", dst.dir, "--cluster", "restored",
                   "--etcd-port", str(dst.etcd_port), "--pg-port", str(dst.pg_port),
                   "--api-port", str(dst.api_port), "--proxy-port", str(dst.proxy_port),
                   "--memory", "128MB", "--timeout", "300", *target, check=check,
                   timeout=400)


def ids(c):
    return [r[0] for r in c.query(c.leader(), "SELECT id FROM t ORDER BY id")]


def full_backup(cluster):
    leader = cluster.leader()
    wait_for("the stanza", lambda: "wal archive min/max" in
             pgbackrest(cluster, leader, "info").stdout, 60)
    cluster.run("backup", "--dir", cluster.dir, "--type", "full", "--timeout", "300")


def archive_all(cluster):
    """Closes the current WAL segment and waits until the repository has it."""
    leader = cluster.leader()
    seg = cluster.query(leader, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    wait_for("%s in the archive" % seg, lambda: seg in archived(cluster), 60)


def test_pitr_exact_by_time_lsn_and_xid(cluster, cluster_factory):
    full_backup(cluster)
    leader = cluster.leader()
    conn = cluster.connect(leader)
    cur = conn.cursor()
    xids = {}

    def insert(lo, hi):
        for i in range(lo, hi + 1):  # one transaction each, in order
            cur.execute("INSERT INTO t (id) VALUES (%s) RETURNING txid_current()", (i,))
            xids[i] = cur.fetchone()[0]

    insert(1, 20)
    cur.execute("DELETE FROM t WHERE id = 3")
    # A quiet second on each side of the time target: no commit near it.
    time.sleep(1.0)
    cur.execute("SELECT clock_timestamp()::text")
    target_time = cur.fetchone()[0]
    time.sleep(1.0)
    insert(21, 40)
    cur.execute("DELETE FROM t WHERE id = 5")
    cur.execute("SELECT pg_current_wal_insert_lsn()::text")
    target_lsn = cur.fetchone()[0]
    insert(41, 60)
    cur.execute("DELETE FROM t WHERE id = 7")
    insert(61, 70)
    conn.close()
    archive_all(cluster)

    expected = {
        ("--time", target_time): [i for i in range(1, 21) if i != 3],
        ("--lsn", target_lsn): [i for i in range(1, 41) if i not in (3, 5)],
        # inclusive: the transaction that inserted 50 is in, 51 on are not; 7 still there
        ("--xid", str(xids[50])): [i for i in range(1, 51) if i not in (3, 5)],
    }
    for target, rows in expected.items():
        dst = cluster_factory()
        out = restore(cluster, dst, *target)
        assert "recovering to target" in out.stdout, out.stdout
        dst.wait_healthy()
        assert ids(dst) == rows, (target, ids(dst))
        # Every member of the restored cluster has the same rows, streaming.
        leader_lsn = dst.query(dst.leader(), "SELECT pg_current_wal_lsn()::text")[0][0]
        for i in range(dst.N):
            wait_for("node%d to replay %s" % (i + 1, leader_lsn), lambda i=i: dst.query(
                i, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn OR NOT pg_is_in_recovery()",
                (leader_lsn,))[0][0], 30)
            assert [r[0] for r in dst.query(i, "SELECT id FROM t ORDER BY id")] == rows
        history = dst.run("history", "--dir", dst.dir).stdout
        assert "restored from backup" in history and target[1] in history, history
        dst.cleanup()
    # The source is untouched and still takes writes.
    assert ids(cluster)[-1] == 70
    cluster.query(cluster.leader(), "INSERT INTO t (id) VALUES (71)")


def test_restore_refusals(cluster, cluster_factory):
    dst = cluster_factory()

    def refused(*target, why):
        proc = restore(cluster, dst, *target, check=False)
        assert proc.returncode != 0, proc.stdout
        assert why in proc.stderr, proc.stderr
        assert not os.path.exists(os.path.join(dst.dir, "node1")), "touched " + dst.dir
        return proc

    refused("--latest", why="the repository has no backup")
    full_backup(cluster)
    cluster.query(cluster.leader(), "INSERT INTO t (id) SELECT generate_series(1, 100)")
    archive_all(cluster)

    refused("--time", "2001-01-01 00:00:00+00", why="is before the restorable window")
    refused("--time", "2999-01-01 00:00:00+00", why="is in the future")
    refused("--time", "2026-01-01 00:00:00", why="has no time zone")
    refused("--time", "yesterday", why="bad time 'yesterday'")
    refused("--lsn", "0/100", why="is before the restorable window")
    refused("--lsn", "FF/0", why="is past the archived WAL")
    refused("--xid", "x1", why="bad transaction id")
    refused("--latest", "--backup", "20000101-000000F", why="no backup '20000101-000000F'")
    refused("--time", "2026-01-01 00:00:00+00", "--latest", why="exactly one of")
    # The repository gone: said so, nothing made.
    repo = os.path.join(cluster.dir, "backup")
    os.rename(repo, repo + ".away")
    try:
        refused("--latest", why="backup, stanza demo: missing stanza path")
    finally:
        os.rename(repo + ".away", repo)
    # A transaction id never reached: the recovery fails in the new folder, which is
    # removed again; the source is untouched.
    proc = refused("--xid", "4000000000", why="PostgreSQL stopped during the recovery")
    assert "recovery ended before configured recovery target was reached" in proc.stderr
    assert "removed %s again" % dst.dir in proc.stderr
    # Into the source's own folder, or one that holds a cluster: refused.
    proc = cluster.run("restore", "--dir", cluster.dir, "--to", cluster.dir, "--latest",
                       check=False)
    assert proc.returncode == 2 and "already holds a cluster" in proc.stderr, proc.stderr



def test_across_failovers_archive_continuous_and_restores_exact(cluster, cluster_factory):
    """A backup, then 5 failovers (the leader's host killed) and 2 switchovers under writers;
    `backup check` finds the archive continuous over every timeline, and restores to the
    end and to a time between two failovers have exactly the rows the cluster has."""
    full_backup(cluster)

    def failover():
        old = cluster.wait_healthy(timeout=120)
        cluster.kill_host(old)
        wait_for("a new leader", lambda: next(
            (i for i in range(cluster.N) if i != old and cluster.writable(i)), None), 60)
        cluster.up()

    def switchover():
        old = cluster.wait_healthy(timeout=120)
        cluster.run("switchover", "--dir", cluster.dir, "--force")
        wait_for("a new leader", lambda: cluster.leader() not in (None, old), 60)

    writer = Writer(cluster.multihost_dsn(), interval=0.02).start()
    try:
        for event in (failover, switchover, failover, failover):
            event()
    finally:
        writer.stop()
    assert writer.acked, "no commit at all"
    # The time target, in a quiet second between two failovers.
    leader = cluster.wait_healthy(timeout=120)
    time.sleep(1.0)
    target_time = cluster.query(leader, "SELECT clock_timestamp()::text")[0][0]
    time.sleep(1.0)
    writer2 = Writer(cluster.multihost_dsn(), interval=0.02)
    writer2._next = 5_000_000
    writer2.start()
    try:
        for event in (failover, switchover, failover):
            event()
    finally:
        writer2.stop()
    leader = cluster.wait_healthy(timeout=120)
    final = ids(cluster)
    tl = cluster.timeline(leader)
    assert tl >= 8, tl
    archive_all(cluster)

    check = wait_for("backup check to pass", lambda: (lambda p: p.returncode == 0 and p)(
        cluster.run("backup", "check", "--dir", cluster.dir, check=False, timeout=300)), 120)
    assert "pgbackrest check (from node%d): ok" % (leader + 1) in check.stdout, check.stdout
    assert "archive: continuous from" in check.stdout, check.stdout
    assert "timelines 1, 2, 3" in check.stdout and ", %d:" % tl in check.stdout, check.stdout

    dst = cluster_factory()
    restore(cluster, dst, "--latest")
    dst.wait_healthy()
    assert ids(dst) == final
    dst.cleanup()
    dst = cluster_factory()
    restore(cluster, dst, "--time", target_time)
    dst.wait_healthy()
    assert ids(dst) == [i for i in final if i < 5_000_000]
    assert ids(dst), "nothing restored"
    # The restored cluster archives to its own repository and takes its own backups.
    wait_for("the restored cluster's stanza", lambda: "wal archive min/max" in
             pgbackrest(dst, dst.leader(), "info", stanza="restored").stdout, 60)
    dst.run("backup", "--dir", dst.dir, "--type", "full", "--timeout", "300")
    listed = dst.run("backup", "list", "--dir", dst.dir).stdout
    assert "Stanza restored" in listed and "full" in listed, listed


def test_restore_in_place(cluster):
    full_backup(cluster)
    leader = cluster.leader()
    old_tl = cluster.timeline(leader)
    cluster.query(leader, "CREATE TABLE u (k text PRIMARY KEY, v int)")
    cluster.query(leader, "INSERT INTO t (id) SELECT generate_series(1, 50)")
    cluster.query(leader, "INSERT INTO u SELECT 'k' || g, g FROM generate_series(1, 20) g")
    time.sleep(1.0)
    target_time = cluster.query(leader, "SELECT clock_timestamp()::text")[0][0]
    time.sleep(1.0)
    cluster.query(leader, "INSERT INTO t (id) SELECT generate_series(51, 100)")
    cluster.query(leader, "UPDATE u SET v = -v")
    archive_all(cluster)

    # Without --yes: refused, says what it would do, touches nothing.
    proc = cluster.run("restore", "--dir", cluster.dir, "--in-place", "--time", target_time,
                       check=False)
    assert proc.returncode == 2 and "add --yes" in proc.stderr, proc.stderr
    assert cluster.leader() == leader and len(ids(cluster)) == 100

    out = cluster.run("restore", "--dir", cluster.dir, "--in-place", "--yes", "--time",
                      target_time, timeout=400).stdout
    assert "restored in place" in out, out
    leader = cluster.wait_healthy(timeout=120)
    assert ids(cluster) == list(range(1, 51))
    new_tl = cluster.timeline(leader)
    assert new_tl > old_tl
    lsn = cluster.query(leader, "SELECT pg_current_wal_lsn()::text")[0][0]
    sums = set()
    for i in range(cluster.N):
        assert cluster.timeline(i) == new_tl, (i, cluster.timeline(i), new_tl)
        if i != leader:
            wait_for("node%d to replay %s" % (i + 1, lsn), lambda i=i: cluster.query(
                i, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0], 30)
        sums.add(tuple(cluster.query(i, q)[0][0] for q in (
            "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM t",
            "SELECT md5(string_agg(k || '=' || v, ',' ORDER BY k)) FROM u")))
    assert len(sums) == 1, sums
    # They cloned from the restored member, not from a backup of the history left behind.
    for i in range(cluster.N):
        assert "creating a replica from the repository" not in cluster.log(i), i
    assert "restored in place from backup" in cluster.run("history", "--dir",
                                                          cluster.dir).stdout
    check = cluster.run("backup", "check", "--dir", cluster.dir, check=False, timeout=300)
    assert check.returncode == 0 and "archive: continuous" in check.stdout, check.stdout
    # The cluster takes writes on its new timeline.
    cluster.query(leader, "INSERT INTO t (id) VALUES (1000)")


def test_damaged_backup_wrong_passphrase_and_full_repository(cluster_factory, tmp_path):
    """An encrypted repository on a small file system: a damaged backup file, a wrong
    passphrase and a full repository are each a clear error, and nothing is destroyed."""
    c = cluster_factory()
    repo = os.path.join(c.dir, "backup")
    os.makedirs(repo)
    shutil.chown(c.dir, "postgres", "postgres")  # root's, up would refuse it
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0750", "tmpfs", repo],
                   check=True, timeout=30)
    try:
        shutil.chown(repo, "postgres", "postgres")
        c.env["PGWARDEN_BACKUP_CIPHER_PASS"] = "correct horse battery staple"
        c.up()
        leader = c.wait_healthy()
        c.query(leader, "CREATE TABLE t (id bigint PRIMARY KEY)")
        c.query(leader, "INSERT INTO t SELECT generate_series(1, 1000)")
        full_backup(c)
        label = json.loads(c.run("backup", "list", "--dir", c.dir, "--json").stdout)[
            "backups"][0]["label"]
        ok = c.run("backup", "verify", "--dir", c.dir)
        assert "%s" % label in ok.stdout and "DAMAGED" not in ok.stdout, ok.stdout
        # The repository is encrypted: no plain page of the database in it.
        out = subprocess.run(["grep", "-rlc", "pg_catalog", repo], capture_output=True,
                             text=True, timeout=60)
        assert out.stdout == "", out.stdout

        # A damaged file in the backup: verify names it; restore refuses that backup.
        pg_data = os.path.join(repo, "backup/demo", label, "pg_data")
        victim = max((os.path.join(d, f) for d, _, fs in os.walk(pg_data) for f in fs),
                     key=os.path.getsize)
        saved = open(victim, "rb").read()
        with open(victim, "r+b") as f:
            f.seek(len(saved) // 2)
            f.write(b"\xffdamage\xff")
        bad = c.run("backup", "verify", "--dir", c.dir, check=False)
        rel = os.path.relpath(victim, os.path.join(repo, "backup/demo", label))
        assert bad.returncode == 1 and "DAMAGED" in bad.stdout and rel in bad.stdout, \
            bad.stdout + bad.stderr
        dst = cluster_factory()
        proc = restore(c, dst, "--latest", check=False)
        assert proc.returncode == 1, proc.stdout
        assert "backup %s is damaged" % label in proc.stderr and rel in proc.stderr, \
            proc.stderr
        assert not os.path.exists(dst.dir)
        with open(victim, "wb") as f:
            f.write(saved)
        assert c.run("backup", "verify", "--dir", c.dir).returncode == 0

        # A wrong passphrase (node1's pgBackRest configuration): said, nothing made.
        conf = os.path.join(c.dir, "node1/pgbackrest/pgbackrest.conf")
        text = open(conf).read()
        with open(conf, "w") as f:
            f.write(text.replace("correct horse battery staple", "wrong passphrase"))
        try:
            for args in (("backup", "list"), ("restore", "--latest", "--to", dst.dir)):
                proc = c.run(*args, "--dir", c.dir, check=False)
                assert proc.returncode == 1, (args, proc.stdout)
                assert "unable to load info file" in proc.stderr and \
                    "is [backup] cipher_pass the one" in proc.stderr, (args, proc.stderr)
            assert not os.path.exists(dst.dir)
        finally:
            with open(conf, "w") as f:
                f.write(text)

        # A full repository (room left for a few WAL segments, not for a backup): the
        # backup fails and says why; the backup already there still restores.
        st = os.statvfs(repo)
        free_mb = st.f_bavail * st.f_frsize // (1024 * 1024)
        filler = os.path.join(repo, "filler")
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=1M",
                        "count=%d" % (free_mb - 1)], capture_output=True, timeout=60)
        c.query(c.leader(), "INSERT INTO t SELECT generate_series(1001, 2000)")
        proc = c.run("backup", "--dir", c.dir, "--type", "full", check=False, timeout=300)
        assert proc.returncode == 1, proc.stdout
        assert "unable to write" in proc.stderr and "the repository is full" in proc.stderr, \
            proc.stdout + proc.stderr
        os.unlink(filler)
        restore(c, dst, "--latest", "--no-verify")
        dst.wait_healthy()
        assert dst.query(dst.leader(), "SELECT count(*) FROM t")[0][0] >= 1000
        dst.cleanup()
    finally:
        c.cleanup()
        subprocess.run(["umount", "-l", repo], timeout=30)

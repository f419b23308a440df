"""The proxy through PAUSE / RESUME, an unplanned failover and a planned switchover:
clients of the pooled port keep their connections; whatever was in flight on the lost primary gets a
clean SQLSTATE, a transaction block is left failed until the client rolls it back, and
the next transactions run on the new primary; pgbench -M prepared runs through a
switchover without a failed transaction."""
import subprocess
import threading
import time

import psycopg2

from conftest import wait_for

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def wait_for_quietly(cond, timeout):
    """True as soon as cond() holds, False if it did not within timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


class LedgerClient(threading.Thread):
    """One connection for the whole test (never reopened): short write transactions in
    a loop; errors are recorded with their SQLSTATE, then the transaction is rolled
    back and the loop goes on over the same connection."""

    def __init__(self, dsn, base):
        super().__init__(daemon=True)
        self.conn = psycopg2.connect(dsn)
        self.next = base
        self.acked = []   # (id, monotonic time)
        self.errors = []  # (monotonic time, sqlstate, text)
        self.stop = threading.Event()

    def run(self):
        cur = self.conn.cursor()
        while not self.stop.is_set() and not self.conn.closed:
            self.next += 1
            try:
                cur.execute("INSERT INTO t (id) VALUES (%s)", (self.next,))
                cur.execute("SELECT 1")
                self.conn.commit()
                self.acked.append((self.next, time.monotonic()))
            except psycopg2.Error as exc:
                self.errors.append((time.monotonic(), exc.pgcode, str(exc).strip()))
                try:
                    self.conn.rollback()
                except psycopg2.Error as exc2:
                    self.errors.append((time.monotonic(), exc2.pgcode, str(exc2).strip()))
                time.sleep(0.05)
            time.sleep(0.01)


def test_host_kill_under_load_clients_keep_their_connections(cluster):
    old = cluster.leader()
    dsn = cluster.proxy_dsn()
    clients = [LedgerClient(dsn, 1_000_000 * (k + 1)) for k in range(8)]
    for c in clients:
        c.start()
    wait_for("every client committing", lambda: all(len(c.acked) >= 3 for c in clients), 20)

    # PAUSE on the admin console answers once the transactions in flight have ended (one
    # held open here), holds new ones, RESUME lets them go: a pause, no error.
    admin = psycopg2.connect(cluster.proxy_dsn(dbname="pgbouncer"))
    admin.autocommit = True
    holder = psycopg2.connect(dsn)
    holder.cursor().execute("INSERT INTO t (id) VALUES (1)")  # open transaction
    paused = threading.Event()

    def pause():
        admin.cursor().execute("PAUSE")
        paused.set()
    th = threading.Thread(target=pause, daemon=True)
    th.start()
    assert not paused.wait(1.0), "PAUSE answered while a transaction was still open"
    holder.commit()
    assert paused.wait(10), "PAUSE did not answer after the last transaction ended"
    counts = [len(c.acked) for c in clients]
    assert not wait_for_quietly(lambda: [len(c.acked) for c in clients] != counts, 1.0), \
        "a transaction committed while paused"
    admin.cursor().execute("RESUME")
    wait_for("commits after RESUME", lambda: all(len(c.acked) > n for c, n in
                                                 zip(clients, counts)), 10)
    assert [e for c in clients for e in c.errors] == []
    admin.close()
    holder.close()

    killed = time.monotonic()
    cluster.kill_host(old)
    new = wait_for("a new leader", lambda: (lambda l: l if l not in (None, old) else None)(
        cluster.leader()), 30)
    try:
        wait_for("every client committing again, over the same connection",
                 lambda: all(len([1 for _, at in c.acked if at > killed]) >= 5
                             for c in clients), 60)
    except AssertionError:
        for k, c in enumerate(clients):
            print("client %d: %d commits after the kill, closed=%s, alive=%s, errors=%r" % (
                k, len([1 for _, at in c.acked if at > killed]), c.conn.closed, c.is_alive(),
                c.errors[-3:]))
        raise
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(30)
        assert not c.is_alive(), "a client hung"
    errors = [e for c in clients for e in c.errors]
    print("errors during the failover:", len(errors), sorted({e[1] for e in errors}))
    for c in clients:
        assert not c.conn.closed, "a client lost its connection to the proxy"
        gaps = [b - a for (_, a), (_, b) in zip(c.acked, c.acked[1:])]
        print("longest gap %.2f s" % max(gaps))
    # Every error is a clean PostgreSQL error: the connection to the lost primary
    # (08006), the failed transaction it left (25P02), a shutdown or a wait that timed
    # out (57P01, 57014); never a reset, never a write sent to a server that is not yet
    # the primary (25006).
    assert all(e[1] in ("08006", "25P02", "57P01", "57014") for e in errors), errors
    rows = {r[0] for r in cluster.query(new, "SELECT id FROM t")}
    after = [i for c in clients for i, at in c.acked if at > killed + 0.5]
    assert set(after) <= rows
    for c in clients:
        c.conn.close()
    cluster.up()


def test_pgbench_prepared_through_a_switchover(cluster):
    leader = cluster.leader()
    env = cluster.pgbench_init(leader)
    wait_for("the replicas to have pgbench's tables",
             lambda: all(cluster.query(i, "SELECT to_regclass('pgbench_branches') IS NOT "
                                          "NULL")[0][0] for i in range(3)), 30)
    bench = subprocess.Popen([PGBENCH, "-n", "-c", "8", "-j", "8", "-T", "12", "-M", "prepared",
                              "-h", "127.0.0.1", "-p", str(cluster.proxy_port), "-U",
                              "postgres", "postgres"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for("pgbench committing through the proxy",
                 lambda: cluster.query(leader, "SELECT count(*) FROM pgbench_history")[0][0]
                 > 200, 30)
        cluster.run("switchover", "--dir", cluster.dir, "--force")
        new = wait_for("a new leader", lambda: (lambda l: l if l not in (None, leader)
                                               else None)(cluster.leader()), 30)
        out, _ = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 0, out
    assert "number of failed transactions: 0" in out, out
    assert new != leader

"""Planned switchover through the proxy: clients see a pause, never an error.

The proxy registers itself in etcd (proxies/<name>), holds new transactions for the
primary when a switchover is requested, reports in etcd once those in flight are done,
and resumes the held ones on the new primary; the leader waits for that report (bounded)
before it stops PostgreSQL. One cluster serves every test of this file (in order), to
keep the file quick.
"""
import os
import re
import shutil
import signal
import tempfile
import threading
import time

import psycopg2
import pytest

import conftest
from conftest import Cluster, http, wait_for


@pytest.fixture(scope="module")
def cl():
    base = tempfile.mkdtemp(prefix="pgw-it-")
    os.chmod(base, 0o755)
    c = Cluster(os.path.join(base, "0"), next(conftest._slot))
    os.makedirs(os.path.dirname(c.dir), exist_ok=True)
    os.chmod(os.path.dirname(c.dir), 0o755)
    reports = []
    try:
        c.up()
        leader = c.wait_healthy()
        c.query(leader, "CREATE TABLE t (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        yield c
    finally:
        try:
            c.cleanup()
        finally:
            reports = c.sanitizer_reports()
            if not os.environ.get("PGW_KEEP_TEST_DIRS"):
                shutil.rmtree(base, ignore_errors=True)
    assert not reports, "sanitizer reports:\n" + "\n----\n".join(r[-4000:] for r in reports)


class TxnClient:
    """Loops on short write transactions (BEGIN; INSERT; COMMIT) through one connection,
    remembering each acknowledged id and when; any error is recorded (and reconnects)."""

    def __init__(self, dsn, first_id):
        self.dsn = dsn
        self.next_id = first_id
        self.acked = []   # (id, monotonic time of the COMMIT's acknowledgement)
        self.errors = []  # (monotonic time, text)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=40)
        assert not self._thread.is_alive(), "client thread hung"

    def _run(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.dsn)
                    conn.autocommit = False  # psycopg2 sends BEGIN before the INSERT
                self.next_id += 1
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO t (id) VALUES (%s)", (self.next_id,))
                conn.commit()
                self.acked.append((self.next_id, time.monotonic()))
            except psycopg2.Error as exc:
                self.errors.append((time.monotonic(), str(exc).strip()))
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            self._stop.wait(0.005)
        if conn is not None:
            conn.close()


def server_port(dsn):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT inet_server_port(), pg_is_in_recovery()")
            return cur.fetchone()
    finally:
        conn.close()


def switchover(cl, cand, *extra):
    out = cl.run("switchover", "--dir", cl.dir, "--candidate", "node%d" % (cand + 1), "--force",
                 *extra).stdout
    assert "Successfully switched over to node%d" % (cand + 1) in out, out
    assert cl.wait_healthy() == cand


def test_switchover_under_load_pauses_without_errors(cl):
    old = cl.leader()
    cand = (old + 1) % cl.N
    metrics = "http://127.0.0.1:%d/metrics" % (cl.proxy_port + 3)
    wait_for("the proxy registered in etcd",
             lambda: "pgwarden_proxy_registered 1\n" in http("GET", metrics)[1], 20)
    clients = [TxnClient(cl.proxy_dsn(), 10_000_000 * (k + 1)).start() for k in range(8)]
    try:
        wait_for("commits from every client", lambda: all(len(c.acked) >= 20 for c in clients),
                 30)
        started = time.monotonic()
        switchover(cl, cand)
        done = time.monotonic()
        wait_for("every client committing on the new leader",
                 lambda: all(any(at > done for _, at in c.acked) for c in clients), 30)
    finally:
        for c in clients:
            c.stop()
    errors = [e for c in clients for e in c.errors]
    times = sorted(at for c in clients for _, at in c.acked)
    gaps = [b - a for a, b in zip(times, times[1:]) if a >= started - 1]
    worst = max(max((b - a for (_, a), (_, b) in zip(c.acked, c.acked[1:]) if a >= started - 1),
                    default=0) for c in clients)
    print("\nswitchover through 6432: %d transactions, %d errors, longest gap between any two "
          "commits %.3f s, longest gap of one client %.3f s (switchover command %.2f s)"
          % (len(times), len(errors), max(gaps), worst, done - started))
    assert not errors, errors[:5]
    assert cl.leader() == cand
    proxy_log = cl.proxy_log()
    assert "primary pools drained" in proxy_log
    assert "runs as primary" in proxy_log
    # Logged in to the candidate while the clients were held, taken into the pools at the
    # promotion: the released clients did not wait for new logins.
    ahead = re.search(r"switchover: (\d+) server connection\(s\) to 127\.0\.0\.1:%d opened "
                      r"ahead of its promotion" % (cl.pg_port + cand), proxy_log)
    taken = re.search(r"switchover: (\d+) server connection\(s\) opened ahead taken into the "
                      r"pools, (\d+) closed", proxy_log)
    assert ahead and taken and int(ahead.group(1)) >= 1, proxy_log[-3000:]
    assert int(taken.group(1)) >= 1, taken.group(0)
    log = cl.log(old).split("switchover requested")[-1]
    assert "1 proxy asked to drain" in log and "1 proxy drained after" in log, log
    final = {r[0] for r in cl.query(cand, "SELECT id FROM t")}
    acked = {i for c in clients for i, _ in c.acked}
    missing = acked - final
    assert not missing, "%d acknowledged transactions lost" % len(missing)
    assert worst < 10, "a client waited %.1f s" % worst


def test_warm_connections_shown_while_a_transaction_holds_the_drain(cl):
    """While a transaction in flight holds the drain, the admin console lists the server
    connections logged in ahead to the candidate (state warm)."""
    old = cl.leader()
    cand = (old + 1) % cl.N
    txn = psycopg2.connect(cl.proxy_dsn())
    with txn.cursor() as cur:  # BEGIN: the transaction holds a server of the pool
        cur.execute("INSERT INTO t (id) VALUES (90000001)")
    done = {}
    worker = threading.Thread(target=lambda: done.update(out=cl.run(
        "switchover", "--dir", cl.dir, "--candidate", "node%d" % (cand + 1), "--force",
        check=False)), daemon=True)
    worker.start()
    admin = psycopg2.connect(cl.proxy_dsn(dbname="pgbouncer"))
    admin.autocommit = True
    try:
        def warm():
            with admin.cursor() as cur:
                cur.execute("SHOW SERVERS")
                cols = [d[0] for d in cur.description]
                return [r for r in (dict(zip(cols, row)) for row in cur.fetchall())
                        if r["state"] == "warm"] or None
        # (within the proxy's drain timeout, 5 s: then the old primary stops anyway)
        rows = wait_for("a warm server connection in SHOW SERVERS", warm, 4, interval=0.1)
        assert all(r["port"] == cl.pg_port + cand for r in rows), rows
        with admin.cursor() as cur:
            cur.execute("SHOW FDS")
            fds = cur.fetchall()
        assert sum(1 for r in fds if r[1] == "server" and r[5] == cl.pg_port + cand) >= 1, fds
        txn.commit()  # the drain ends: the switchover goes on
    finally:
        admin.close()
        txn.close()  # (a failure above: the switchover goes on after the drain timeout)
        worker.join(timeout=60)
    assert not worker.is_alive()
    out = done["out"]
    assert out.returncode == 0 and "Successfully switched over" in out.stdout, out.stdout
    assert cl.wait_healthy() == cand
    assert cl.query(cand, "SELECT count(*) FROM t WHERE id = 90000001")[0][0] == 1


def test_sessions_on_5000_and_5001_end_cleanly_and_reconnect(cl):
    old = cl.leader()
    wait_for("the replicas healthy for 5001",
             lambda: server_port(cl.proxy_dsn(2))[1], 20)
    # A 5001 session on a replica: that member becomes the new primary.
    ro = psycopg2.connect(cl.proxy_dsn(2))
    ro.autocommit = True
    with ro.cursor() as cur:
        cur.execute("SELECT inet_server_port(), pg_is_in_recovery()")
        port, in_recovery = cur.fetchone()
    assert in_recovery
    cand = port - cl.pg_port
    rw = psycopg2.connect(cl.proxy_dsn(1))
    rw.autocommit = True
    with rw.cursor() as cur:
        cur.execute("SELECT inet_server_port(), NOT pg_is_in_recovery()")
        assert cur.fetchone() == (cl.pg_port + old, True)
    switchover(cl, cand)
    for conn, what in ((rw, "5000 session on the old primary"),
                       (ro, "5001 session on the new primary")):
        def ended():
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                return False
            except psycopg2.OperationalError:
                return True
        wait_for("the %s to end with an error" % what, ended, 15)
        conn.close()
    # New sessions: 5000 on the new primary, 5001 on a replica.
    assert wait_for("a 5000 session on the new primary",
                    lambda: server_port(cl.proxy_dsn(1)) == (cl.pg_port + cand, False), 15)
    port, in_recovery = wait_for("a 5001 session on a replica",
                                 lambda: (lambda r: r if r[1] else None)(
                                     server_port(cl.proxy_dsn(2))), 20)
    assert in_recovery and port != cl.pg_port + cand


def test_a_stopped_proxy_does_not_block_the_switchover(cl):
    old = cl.leader()
    cand = (old + 1) % cl.N
    proxy = cl.proxy_pid()
    wait_for("the proxy registered in etcd",
             lambda: "registered as" in cl.proxy_log(), 20)
    os.kill(proxy, signal.SIGSTOP)
    try:
        started = time.monotonic()
        switchover(cl, cand, "--timeout", "40")
        took = time.monotonic() - started
    finally:
        os.kill(proxy, signal.SIGCONT)
    print("\nswitchover with the proxy stopped took %.1f s" % took)
    # Bounded by the proxy's lease (ttl 4 s) or switchover_proxy_wait (8 s), not for ever.
    assert took < 20
    log = cl.log(old).split("switchover requested")[-1]
    assert "waiting for proxies to drain" in log
    # The proxy comes back, registers again and routes to the new primary.
    assert wait_for("writes through the proxy on the new leader",
                    lambda: server_port(cl.proxy_dsn()) == (cl.pg_port + cand, False), 30)

"""Faults, the workload around them, and the invariants checked after each one.

A fault is a function fault(lab, rng) -> Fault: it breaks something at once and says
how long to leave it broken and what heals it. `run_scenario` starts the workload,
lets it commit, applies the fault, heals it, waits for the cluster to converge, stops
the workload and checks every invariant; it returns a Result with the figures.
"""
import json
import os
import signal
import statistics
import subprocess
import time

from chaoslib import (APP, HERE, N, SYS_PY, UNKNOWN, WritableWatch, host_ip, kill, ns_name,
                      sh, wait_for)

SLACK = 0.25  # the leader key is polled every 50 ms; allow for the poll and the HTTP call


class Fault:
    """what: a sentence for the report; hold: seconds before heal() runs; check(): what
    must hold at the end of the hold (a list of violations)."""

    def __init__(self, what, hold, heal=None, check=None):
        self.what = what
        self.hold = hold
        self.heal = heal or (lambda: None)
        self.check = check or (lambda: [])


def _not_primary(lab, i):
    """At the end of the hold, member i (cut off, stalled or without its agent) must no
    longer be a primary: it demoted (or was fenced) before its lease expired."""
    def check():
        return ["node%d is still a primary at the end of the fault" % (i + 1)] \
            if i in lab.writable_now() else []
    return check


def _leader(lab):
    return wait_for("a leader to break", lab.leader, 30)


def _replica(leader, rng):
    return rng.choice([i for i in range(N) if i != leader])


def _mark_killed(lab, what, i):
    p = lab.procs.get((what, i))
    if p is not None:
        p.killed_by_fault = True
        kill(p.pid)
        p.wait(10)


def kill_postgres(lab, rng):
    i = _leader(lab)
    kill(lab.postmaster(i))
    # Held 3 s so that the agents have seen it before convergence is judged.
    return Fault("kill -9 of the primary's postmaster (node%d)" % (i + 1), 3)


def kill_agent(lab, rng):
    i = _leader(lab)
    _mark_killed(lab, "agent", i)
    return Fault("kill -9 of the primary's agent (node%d)" % (i + 1), 8,
                 lambda: lab.start_agent(i), _not_primary(lab, i))


def crash_host(lab, rng):
    i = _leader(lab)
    for what in ("agent", "etcd"):
        p = lab.procs.get((what, i))
        if p is not None:
            p.killed_by_fault = True
    for pid in sh("ip", "netns", "pids", ns_name(i), check=False).stdout.split():
        kill(int(pid))

    def heal():
        lab.start_etcd(i)
        lab.start_agent(i)
    return Fault("crash of the primary's host (node%d: agent, postgres, etcd)" % (i + 1), 8,
                 heal)


def stop_agent(lab, rng):
    i = _leader(lab)
    pid = lab.pid("agent", i)
    kill(pid, signal.SIGSTOP)
    return Fault("SIGSTOP of the primary's agent (node%d) for 10 s" % (i + 1), 10,
                 lambda: kill(pid, signal.SIGCONT), _not_primary(lab, i))


def stop_postgres(lab, rng):
    i = _leader(lab)
    pids = lab.postgres_pids(i)
    for pid in pids:
        kill(pid, signal.SIGSTOP)

    def heal():
        for pid in pids:
            kill(pid, signal.SIGCONT)
    return Fault("SIGSTOP of the primary's postgres (node%d) for 10 s" % (i + 1), 10, heal)


def _others(i):
    return [host_ip(k) for k in range(N) if k != i]


def partition_primary(lab, rng):
    i = _leader(lab)
    lab.net.cut(i, _others(i) + [APP])
    return Fault("full partition of the primary's host (node%d) for 12 s" % (i + 1), 12,
                 lab.net.heal, _not_primary(lab, i))


def partition_replica(lab, rng):
    i = _replica(_leader(lab), rng)
    lab.net.cut(i, _others(i) + [APP])
    return Fault("full partition of a replica's host (node%d) for 8 s" % (i + 1), 8,
                 lab.net.heal)


def split_brain(lab, rng):
    i = _leader(lab)
    lab.net.cut(i, _others(i))
    return Fault("primary (node%d) cut from the etcd majority, still reached by the "
                 "application host, for 12 s" % (i + 1), 12, lab.net.heal,
                 _not_primary(lab, i))


def one_way(lab, rng):
    i = _leader(lab)
    lab.net.cut(i, _others(i), inbound=False)
    return Fault("one-way partition: nothing from the primary (node%d) reaches the other "
                 "hosts, for 12 s" % (i + 1), 12, lab.net.heal, _not_primary(lab, i))


def packet_loss(lab, rng):
    i = _leader(lab)
    lab.net.cut(i, _others(i) + [APP], loss=30)
    return Fault("30%% packet loss both ways on the primary's host (node%d) for 12 s"
                 % (i + 1), 12, lab.net.heal)


def latency(lab, rng):
    i = _leader(lab)
    lab.delay(i, 150)
    return Fault("150 ms of added latency on every packet the primary's host (node%d) "
                 "sends, for 12 s" % (i + 1), 12, lambda: lab.delay(i, 0))


def etcd_member_loss(lab, rng):
    i = _leader(lab)
    # That nothing changes (same leader, same timeline) is asserted by the integration
    # test test_one_etcd_member_lost_changes_nothing, with a ttl that covers an etcd
    # election on a loaded machine; here it is the outage figure.
    _mark_killed(lab, "etcd", i)
    return Fault("kill -9 of the etcd member on the primary's host (node%d)" % (i + 1), 8,
                 lambda: lab.start_etcd(i))


def etcd_quorum_loss(lab, rng):
    i = _leader(lab)
    j = _replica(i, rng)
    _mark_killed(lab, "etcd", i)
    _mark_killed(lab, "etcd", j)

    def heal():
        lab.start_etcd(i)
        lab.start_etcd(j)

    def check():
        # Without etcd nobody can prove a lease: no member may stay a primary.
        w = lab.writable_now()
        return ["node%d is a primary without an etcd quorum" % (k + 1) for k in w]
    return Fault("kill -9 of two etcd members (node%d, node%d): no quorum for 8 s"
                 % (i + 1, j + 1), 8, heal, check)


FAULTS = {f.__name__: f for f in (
    kill_postgres, kill_agent, crash_host, stop_agent, stop_postgres, partition_primary,
    partition_replica, split_brain, one_way, packet_loss, latency, etcd_member_loss,
    etcd_quorum_loss)}


# -- the workload ------------------------------------------------------------------------
class Workload:
    def __init__(self, lab, rnd):
        self.out = lab.path("workload-%d.jsonl" % rnd)
        proxy = "host=127.0.0.1 port=6432 user=postgres dbname=postgres password=%s " \
                "connect_timeout=3" % lab.password
        direct = ("host=%s port=5432,5432,5432 user=postgres dbname=postgres password=%s "
                  "target_session_attrs=read-write connect_timeout=2 keepalives_idle=1 "
                  "keepalives_interval=1 keepalives_count=2 tcp_user_timeout=3000"
                  % (",".join(host_ip(i) for i in range(N)), lab.password))
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns_name(None), SYS_PY, os.path.join(HERE, "workload.py"),
             self.out, proxy, direct, str(rnd)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if line.strip() != "started":
            raise RuntimeError("the workload did not start: %r" % line)
        self._recs, self._read = [], 0  # the records read so far, and up to which byte

    def records(self):
        """Every attempt recorded so far (the file is read on from where it was left)."""
        try:
            with open(self.out, "rb") as f:
                f.seek(self._read)
                data = f.read()
        except OSError:
            return self._recs
        whole = data[:data.rfind(b"\n") + 1]  # a line still being written waits
        self._read += len(whole)
        self._recs.extend(json.loads(line) for line in whole.splitlines())
        return self._recs

    def acked_since(self, t):
        """Clients with an acknowledged commit after t."""
        return {r["c"] for r in self.records() if r["ok"] and r["t1"] > t}

    def stop(self):
        """Stops the clients; returns the names of clients stuck in a call."""
        try:
            self.proc.stdin.close()
            self.proc.wait(40)
            return json.loads(self.proc.stdout.read().strip().splitlines()[-1])["stuck"]
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            kill(self.proc.pid)
            self.proc.wait(10)
            return ["the whole workload"]


CLIENTS = ("ledger-proxy-1", "ledger-proxy-2", "ledger-direct", "bank-proxy", "bank-direct")


# -- invariants --------------------------------------------------------------------------
def checksums(lab, i):
    rows = lab.query(i, """
        SELECT (SELECT md5(coalesce(string_agg(id || ':' || client, ',' ORDER BY id), ''))
                FROM ledger),
               (SELECT md5(string_agg(id || ':' || balance, ',' ORDER BY id)) FROM accounts),
               (SELECT md5(coalesce(string_agg(id::text, ',' ORDER BY id), ''))
                FROM transfers)""")
    return rows[0]


def wait_replicas_caught_up(lab, leader, timeout):
    lsn = lab.query(leader, "SELECT pg_current_wal_lsn()")[0][0]

    def done():
        for i in range(N):
            if i != leader and not lab.query(
                    i, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]:
                return False
        return True
    wait_for("every replica to replay up to %s" % lsn, done, timeout)


def two_primaries(recs, watch):
    """Writes acknowledged by two members at once: a write sent to timeline X after a write
    on a newer timeline was acknowledged; one timeline written on two servers (two
    promotions from the same timeline); a commit on a member that the leader key did not
    name at any moment between the COMMIT (or autocommitted statement) and its answer."""
    found = []
    acked = sorted((r for r in recs if r["ok"]), key=lambda r: r["t1"])
    newest = None  # (timeline, ack time, server) of the newest timeline acknowledged so far
    by_start = sorted(acked, key=lambda r: r["t0"])
    k = 0
    for r in by_start:
        while k < len(acked) and acked[k]["t1"] < r["t0"]:
            a = acked[k]
            if newest is None or int(a["tl"], 16) > int(newest[0], 16):
                newest = (a["tl"], a["t1"], a["srv"])
            k += 1
        if newest and int(r["tl"], 16) < int(newest[0], 16):
            found.append("%s wrote on %s (timeline %s) %.3f s after %s had acknowledged a "
                         "write on timeline %s" % (r["c"], r["srv"], r["tl"],
                                                   r["t0"] - newest[1], newest[2], newest[0]))
    servers = {}
    for r in acked:
        servers.setdefault(r["tl"], set()).add(r["srv"])
    found.extend("timeline %s was written on %s" % (tl, sorted(srv))
                 for tl, srv in servers.items() if len(srv) > 1)
    for r in acked:
        member = "node%d" % (int(r["srv"].split(".")[-1]) - 10)
        start = r.get("tc", r["t0"])
        seen = watch.seen(start - SLACK, r["t1"] + SLACK)
        if member not in seen and UNKNOWN not in seen:
            found.append("%s committed on %s (%s) between %.3f and %.3f while the leader key "
                         "was held by %s" % (r["c"], member, r["srv"], start, r["t1"],
                                             sorted(map(str, seen))))
    return found[:10]


def max_gap(recs, clients, start, end, lead=True):
    """Longest time between two acknowledged commits of one client within [start, end]
    (lead: counting from start to its first commit too)."""
    worst = 0.0
    for c in clients:
        times = sorted(r["t1"] for r in recs if r["c"] == c and r["ok"]
                       and start <= r["t1"] <= end) + [end]
        if lead or len(times) == 1:
            times.insert(0, start)
        worst = max(worst, max(b - a for a, b in zip(times, times[1:])))
    return worst


class Result:
    def __init__(self, fault, what):
        self.fault = fault
        self.what = what
        self.violations = []
        self.notes = []
        self.outage_proxy = self.outage_direct = None
        self.after_heal = None  # longest commit gap after the heal (a second disruption)
        self.failed = self.acked = 0
        self.converge = None
        self.archive = None  # "restored N acknowledged rows" once the archive was checked

    def line(self):
        return ("%-18s outage proxy %5.2f s direct %5.2f s  after heal %5.2f s  failed %3d  "
                "acked %5d  converged %5.1f s after the fault%s  %s" % (
                    self.fault, self.outage_proxy or 0, self.outage_direct or 0,
                    self.after_heal or 0, self.failed, self.acked, self.converge or -1,
                    "  archive: " + self.archive if self.archive else "",
                    "OK" if not self.violations else "VIOLATION: " + "; ".join(self.violations)))


RESTORE_PORTS = ["--etcd-port", "31379", "--pg-port", "31432", "--api-port", "31008",
                 "--proxy-port", "31632"]


def check_archive(lab, leader, recs, res):
    """6. the archive is continuous (pgwarden backup check, which also has pgBackRest switch
    and archive the current WAL) and `restore --latest` has every acknowledged ledger row."""
    deadline = time.monotonic() + 120
    while True:  # archiving catches up after the fault (a requeued old timeline)
        proc = lab.pgwarden("backup", "check", member=leader, check=False)
        if proc.returncode == 0:
            break
        if time.monotonic() > deadline:
            res.violations.append("archive: backup check fails 120 s after convergence: %s"
                                  % (proc.stdout + proc.stderr)[-1500:])
            return
        time.sleep(2)
    res.notes.append("archive: " + proc.stdout.strip().splitlines()[-1])
    dst = os.path.join(lab.base, "restored-%d" % time.monotonic_ns())
    try:
        proc = lab.pgwarden("restore", "--latest", "--no-verify", "--to", dst,
                            "--memory", "96MB", *RESTORE_PORTS, member=leader, check=False,
                            timeout=400)
        if proc.returncode != 0:
            res.violations.append("archive: restore --latest failed: %s" %
                                  (proc.stdout + proc.stderr)[-1500:])
            return
        import psycopg2
        with open(os.path.join(dst, "pgpass")) as f:
            password = f.readline().strip().rsplit(":", 1)[1]
        conn = psycopg2.connect(host="127.0.0.1", port=31633, user="postgres",
                                dbname="postgres", password=password, connect_timeout=5)
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM ledger")
            restored = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT sum(balance) FROM accounts")
            total = cur.fetchone()[0]
        conn.close()
        acked = {r["id"] for r in recs if r["ok"] and r["op"] == "insert" and "id" in r}
        lost = acked - restored
        if lost:
            res.violations.append("archive: %d acknowledged ledger ids missing from restore "
                                  "--latest (e.g. %s)" % (len(lost), sorted(lost)[:3]))
        if total != 10000:
            res.violations.append("archive: the restored bank's total is %s" % total)
        res.archive = "continuous, restore --latest has all %d acked ledger rows" % len(
            acked & restored)
    finally:
        subprocess.run([lab.bin, "down", "--dir", dst], capture_output=True, timeout=300)
        subprocess.run(["rm", "-rf", dst], timeout=120)


def run_scenario(lab, name, rnd, rng, log=print, converge_timeout=90, archive=False):
    leader = lab.wait_healthy(converge_timeout)
    wl = Workload(lab, rnd)
    primaries = WritableWatch(lab)
    res = Result(name, name)
    fault = None
    converged = False
    t_fault = t_heal = t_stop = time.monotonic()
    try:
        t_start = time.monotonic()
        wait_for("every client to commit", lambda: len(wl.acked_since(t_start)) == len(CLIENTS),
                 30)
        time.sleep(1.0)  # a second of steady load before the fault (its baseline)
        primaries.start()
        t_fault = time.monotonic()
        try:
            fault = FAULTS[name](lab, rng)
            res.what = fault.what
            log("  fault: %s" % fault.what)
            deadline = t_fault + fault.hold
            while time.monotonic() < deadline:
                time.sleep(0.1)
            res.violations.extend(fault.check())
        finally:
            if fault is not None:
                fault.heal()  # whatever happened: no fault outlives its round
            t_heal = time.monotonic()
        try:
            leader = lab.wait_healthy(converge_timeout)
            res.converge = time.monotonic() - t_fault
            converged = True
        except TimeoutError as exc:
            res.violations.append("no convergence: %s" % exc)
        if converged:
            t_conv = time.monotonic()
            try:
                wait_for("every client to commit again",
                         lambda: len(wl.acked_since(t_conv)) == len(CLIENTS), 30)
            except TimeoutError:
                res.violations.append("clients without a commit 30 s after convergence: %s"
                                      % sorted(set(CLIENTS) - wl.acked_since(t_conv)))
    except Exception as exc:  # a harness step failed: the round is reported, not lost
        res.violations.append("the round failed: %r" % exc)
    finally:
        t_stop = time.monotonic()
        stuck = wl.stop()
        primaries.stop()
    if stuck:
        res.violations.append("clients stuck in a call: %s" % ", ".join(stuck))
    res.violations.extend(primaries.overlaps())
    recs = wl.records()
    res.failed = sum(1 for r in recs if r["t1"] >= t_fault and not r["ok"])
    res.acked = sum(1 for r in recs if r["ok"])
    res.outage_proxy = max_gap(recs, [c for c in CLIENTS if "proxy" in c], t_fault, t_stop)
    res.outage_direct = max_gap(recs, [c for c in CLIENTS if "direct" in c], t_fault, t_stop)
    # A gap that starts with a commit after the heal is a second disruption, caused by
    # the healing itself (not the rest of the fault's own outage).
    res.after_heal = max_gap(recs, CLIENTS, t_heal, t_stop, lead=False)
    check_invariants(lab, leader if converged else None, recs, res)
    if archive and converged and not res.violations:
        try:
            check_archive(lab, lab.wait_healthy(converge_timeout), recs, res)
        except Exception as exc:
            res.violations.append("archive: the check failed: %r" % exc)
    if res.violations:
        res.notes.append("records: " + wl.out)
        try:
            res.notes.append("state: " + lab.dump("violation-%d" % rnd))
        except Exception as exc:
            res.notes.append("no state dump: %r" % exc)
    return res


def check_invariants(lab, leader, recs, res):
    """Adds every violation to res. leader is None when the cluster did not converge:
    then only the checks that need no primary run."""
    if leader is not None:
        # A member may restart right after convergence (a rejoin finishing): the data
        # checks start again on a connection error, for a bounded time.
        deadline = time.monotonic() + 60
        while True:
            found = Result(res.fault, res.what)
            try:
                check_data(lab, leader, recs, found)
                break
            except Exception as exc:  # psycopg2 errors included: reported, not raised
                if time.monotonic() > deadline:
                    found.violations.append("checking the data failed: %r" % exc)
                    break
                time.sleep(1)
                try:
                    leader = lab.wait_healthy(30)
                except TimeoutError:
                    pass
        res.violations.extend(found.violations)
        res.notes.extend(found.notes)
    # 3. never two writable primaries
    res.violations.extend(two_primaries(recs, lab.watch))
    # 5. no daemon crashed
    res.violations.extend(lab.crashed())
    res.violations.extend("sanitizer: " + r[:300] for r in lab.sanitizer_reports())
    for i in range(N):
        if lab.pid("agent", i) is None or lab.pid("etcd", i) is None:
            res.violations.append("node%d: agent or etcd not running" % (i + 1))
    if lab.pid("proxy", None) is None:
        res.violations.append("the proxy is not running")


def check_data(lab, leader, recs, res):
    # 1. every acknowledged ledger id (and transfer) is on the final primary
    for op, table in (("insert", "ledger"), ("transfer", "transfers")):
        ids = {r["id"] for r in recs if r["ok"] and r["op"] == op and "id" in r}
        if not ids:
            continue
        present = {row[0] for row in lab.query(
            leader, "SELECT id FROM %s WHERE id = ANY(%%s)" % table, (sorted(ids),))}
        lost = ids - present
        if lost:
            msg = "%d acknowledged %s ids missing on the primary (e.g. %s)" % (
                len(lost), table, sorted(lost)[:3])
            (res.violations if lab.sync else res.notes).append(msg)
    # 2. the bank's total never changes and no account goes negative
    total, low = lab.query(leader, "SELECT sum(balance), min(balance) FROM accounts")[0]
    if total != 10000 or low < 0:
        res.violations.append("bank: total %s, lowest balance %s" % (total, low))
    # 4. identical data on every member
    try:
        wait_replicas_caught_up(lab, leader, 60)
        sums = {i: checksums(lab, i) for i in range(N)}
        if len(set(sums.values())) != 1:
            res.violations.append("members differ: %s" % sums)
    except TimeoutError as exc:
        res.violations.append(str(exc))


def summarize(results):
    """Per-fault statistics over a run: rows of text."""
    rows = ["%-18s %4s %13s %13s %13s %12s %7s %10s" % (
        "fault", "n", "proxy p50/max", "direct p50/max", "heal p50/max", "converge p50",
        "failed", "violations")]
    for name in sorted({r.fault for r in results}):
        rs = [r for r in results if r.fault == name]
        px = [r.outage_proxy or 0 for r in rs]
        dx = [r.outage_direct or 0 for r in rs]
        hx = [r.after_heal or 0 for r in rs]
        cv = [r.converge for r in rs if r.converge is not None]
        rows.append("%-18s %4d %6.2f/%6.2f %6.2f/%6.2f %6.2f/%6.2f %12.1f %7d %10d" % (
            name, len(rs), statistics.median(px), max(px), statistics.median(dx), max(dx),
            statistics.median(hx), max(hx), statistics.median(cv) if cv else -1,
            sum(r.failed for r in rs),
            sum(1 for r in rs if r.violations)))
    return rows

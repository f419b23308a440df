"""Shared pieces of the failover benchmark: HTTP polling, process handling,
the writer client and etcd's /metrics counters."""

import json
import os
import pwd
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psycopg2

PG_BIN = "/usr/lib/postgresql/15/bin"


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def now():
    return time.monotonic()


# ---------------------------------------------------------------- HTTP

def http_get(url, timeout=1.0):
    """(status, body) of a GET; status 0 when the server did not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        try:
            body = e.read().decode("utf-8", "replace")
        except Exception:
            body = ""
        return e.code, body
    except Exception:
        return 0, ""


def http_json(url, timeout=1.0):
    status, body = http_get(url, timeout)
    if not status:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def wait_for(what, predicate, timeout, interval=0.25):
    """Polls predicate() until it returns something true or timeout seconds pass.
    Returns the predicate's value, or None on timeout."""
    deadline = now() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if now() >= deadline:
            log("timed out after %.0f s waiting for %s" % (timeout, what))
            return None
        time.sleep(interval)


# ---------------------------------------------------------------- processes

def postgres_ids():
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def chown_postgres(path):
    uid, gid = postgres_ids()
    os.chown(path, uid, gid)


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def read_pidfile(path):
    try:
        with open(path) as f:
            return int(f.readline().strip() or 0)
    except (OSError, ValueError):
        return 0


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def kill_host(agent_pid, postmaster_pid):
    """Simulates the death of the leader's host: SIGKILL to the agent, the
    postmaster and every child of either (backends, walsenders, a running
    pg_rewind...), all in one go (children are collected first). Returns the list of pids signalled."""
    victims = []
    for p in (agent_pid, postmaster_pid):
        if p and pid_alive(p):
            victims += [p] + children_of(p)
    for p in victims:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


def wait_gone(pids, timeout=10.0, reap=None):
    deadline = now() + timeout
    while now() < deadline:
        if reap:
            reap()
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def terminate(pid, timeout=30.0, sig=signal.SIGTERM):
    """Signals pid and waits; SIGKILL when it does not stop in time."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not wait_gone([pid], timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone([pid], 5)


def run(cmd, timeout=None, check=False, **kw):
    return subprocess.run(cmd, timeout=timeout, check=check, **kw)


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(cannot read %s: %s)\n" % (path, e)


# ---------------------------------------------------------------- writer client

class Writer(threading.Thread):
    """A tiny INSERT every `interval` seconds (50 ms unless told) over a
    multi-host read-write connection string, reconnecting on any error
    (connect_timeout=1) at the next tick. Records the time of every successful
    commit (autocommit: one INSERT = one transaction), the id of the row it
    committed and the port of the server that acknowledged it, and the time of
    every error."""

    def __init__(self, dsn, interval=0.05):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.interval = interval
        # appended in this order, so ids and ports are never shorter than commits:
        # a reader takes n = len(commits) and uses the first n of each
        self.ids = []      # id of each committed row
        self.ports = []    # server port of each commit
        self.commits = []  # monotonic times of successful commits
        self.errors = 0
        self.error_times = []
        self.last_error = ""
        self.run_id = 0
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()
        self.join(15)

    def run(self):
        conn = None
        port = None
        tick = now()
        while not self._halt.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.dsn)
                    conn.autocommit = True
                    port = conn.info.port
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO bench_failover(run) VALUES (%s) RETURNING id",
                                (self.run_id,))
                    row_id = cur.fetchone()[0]
                self.ids.append(row_id)
                self.ports.append(port)
                self.commits.append(now())
            except Exception as e:  # any error: drop the connection, retry next tick
                self.errors += 1
                self.error_times.append(now())
                self.last_error = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                conn = None
            tick += self.interval
            t = now()
            if tick < t:  # fell behind (outage): next attempt on the next tick
                tick = t + self.interval - ((t - tick) % self.interval)
            time.sleep(max(0.0, tick - t))
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def committed_since(self, t):
        c = self.commits
        return bool(c) and c[-1] > t

    def longest_gap(self, t0, t1):
        """Longest gap between two consecutive successful commits, looking at
        commits in [t0, t1] plus the last commit before t0 (so a gap that
        starts before t0 counts in full)."""
        c = self.commits
        lo = 0
        while lo < len(c) and c[lo] < t0:
            lo += 1
        window = c[max(lo - 1, 0):]
        window = [x for x in window if x <= t1]
        if len(window) < 2:
            return None
        return max(b - a for a, b in zip(window, window[1:]))


    def errors_between(self, t0, t1):
        return sum(1 for t in list(self.error_times) if t0 <= t <= t1)

    def committed_ids(self):
        """Ids of every row whose commit was acknowledged so far."""
        n = len(self.commits)
        return self.ids[:n]


class PooledWriter(Writer):
    """The client of the pooled series (--via-proxy): one connection to a
    pooler (single host), an autocommit INSERT every `interval` s (20 ms unless
    told). An error does NOT drop the connection: the writer goes on with the
    same one at the next tick, and connects again only when the connection is
    actually closed (by the pooler, or a failed connect). Each commit records
    the port of the PostgreSQL server that ran it (inet_server_port(), so the
    old / new primary can be told apart behind the pooler). Errors are split
    into failed statements (a transaction the client saw fail) and failed
    connects."""

    def __init__(self, dsn, interval=0.02):
        super().__init__(dsn, interval)
        self.connects = 0          # successful connects (the first included)
        self.connect_errors = 0
        self.stmt_errors = 0
        self.stmt_error_times = []
        self.closed_times = []     # when the writer found its connection closed
        self.error_samples = {}    # first line of each distinct error -> count

    def _error(self, e, stmt):
        t = now()
        self.errors += 1
        self.error_times.append(t)
        if stmt:
            self.stmt_errors += 1
            self.stmt_error_times.append(t)
        else:
            self.connect_errors += 1
        msg = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        self.last_error = msg
        key = ("stmt: " if stmt else "connect: ") + msg[:120]
        self.error_samples[key] = self.error_samples.get(key, 0) + 1

    def run(self):
        conn = None
        tick = now()
        while not self._halt.is_set():
            if conn is not None and conn.closed:
                self.closed_times.append(now())
                conn = None
            if conn is None:
                try:
                    conn = psycopg2.connect(self.dsn)
                    conn.autocommit = True
                    self.connects += 1
                except Exception as e:
                    self._error(e, False)
                    conn = None
            if conn is not None:
                try:
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO bench_failover(run) VALUES (%s) "
                                    "RETURNING id, inet_server_port()", (self.run_id,))
                        row_id, port = cur.fetchone()
                    self.ids.append(row_id)
                    self.ports.append(port)
                    self.commits.append(now())
                except Exception as e:  # keep the connection unless it is closed
                    self._error(e, True)
            tick += self.interval
            t = now()
            if tick < t:
                tick = t + self.interval - ((t - tick) % self.interval)
            time.sleep(max(0.0, tick - t))
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def stmt_errors_between(self, t0, t1):
        return sum(1 for t in list(self.stmt_error_times) if t0 <= t <= t1)

    def closes_between(self, t0, t1):
        return sum(1 for t in list(self.closed_times) if t0 <= t <= t1)


def create_writer_table(dsn):
    def attempt():
        try:
            conn = psycopg2.connect(dsn)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS bench_failover("
                            "id bigserial PRIMARY KEY, run int, "
                            "ts timestamptz DEFAULT clock_timestamp())")
            conn.close()
            return True
        except Exception as e:
            log("create table: %s" % str(e).strip())
            return False
    return wait_for("the writer table", attempt, 60, 1.0)


def multihost_dsn(ports, password, extra=""):
    return ("host=%s port=%s dbname=postgres user=postgres password=%s "
            "target_session_attrs=read-write connect_timeout=1 "
            "options='-c statement_timeout=10s' %s" % (
                ",".join("127.0.0.1" for _ in ports),
                ",".join(str(p) for p in ports), password, extra)).strip()


def single_dsn(port, password):
    return ("host=127.0.0.1 port=%d dbname=postgres user=postgres password=%s "
            "connect_timeout=2 options='-c statement_timeout=30s'" % (port, password))


def missing_rows(port, password, ids):
    """Which of `ids` are not in bench_failover on the server at `port`.
    Returns a sorted list, or None when the server cannot be queried."""
    try:
        conn = psycopg2.connect(single_dsn(port, password))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT x FROM unnest(%s::bigint[]) AS x "
                            "WHERE NOT EXISTS (SELECT 1 FROM bench_failover b WHERE b.id = x)",
                            (list(ids),))
                return sorted(r[0] for r in cur.fetchall())
        finally:
            conn.close()
    except Exception as e:
        log("cannot check rows on :%d: %s" % (port, str(e).strip()))
        return None


def multihost_uri(ports):
    return ("postgresql://postgres@%s/postgres?target_session_attrs=read-write"
            "&connect_timeout=1" % ",".join("127.0.0.1:%d" % p for p in ports))


def summarize(values):
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# ---------------------------------------------------------------- etcd

_METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def etcd_metrics(port):
    status, body = http_get("http://127.0.0.1:%d/metrics" % port, timeout=5)
    if status != 200:
        raise RuntimeError("cannot read http://127.0.0.1:%d/metrics" % port)
    out = []
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def etcd_counters(ports):
    """Counters of one etcd cluster, summed over its members:
       requests: unary gRPC calls handled (grpc_server_handled_total, unary)
                 + messages received on streams (grpc_server_msg_received_total,
                 non-unary: lease keepalives, watch create/cancel);
       by_method: the same split by gRPC method;
       proposals: etcd_server_proposals_committed_total, max over members (every
                 member reports the same raft commit count, so summing would
                 count each write three times)."""
    req, proposals, by_method = 0.0, 0.0, {}
    for port in ports:
        for name, labels, v in etcd_metrics(port):
            key = None
            if name == "grpc_server_handled_total" and labels.get("grpc_type") == "unary":
                key = labels.get("grpc_method")
            elif (name == "grpc_server_msg_received_total"
                  and labels.get("grpc_type") != "unary"):
                key = labels.get("grpc_method") + " (stream msgs)"
            elif name == "etcd_server_proposals_committed_total":
                proposals = max(proposals, v)
            if key is not None:
                req += v
                by_method[key] = by_method.get(key, 0.0) + v
    return {"requests": req, "proposals": proposals, "by_method": by_method}


def counter_delta(a, b):
    d = {"requests": b["requests"] - a["requests"], "proposals": b["proposals"] - a["proposals"]}
    d["by_method"] = {k: b["by_method"].get(k, 0) - a["by_method"].get(k, 0)
                      for k in b["by_method"]
                      if b["by_method"].get(k, 0) - a["by_method"].get(k, 0) > 0}
    return d


def start_etcd_member(base, i, client_port, peer_ports, token):
    """One etcd member with the flags `pgwarden up` uses (local.c start_etcd),
    run as postgres in its own session. Returns the Popen."""
    d = os.path.join(base, "etcd%d" % (i + 1))
    os.makedirs(d, exist_ok=True)
    chown_postgres(d)
    client = "http://127.0.0.1:%d" % client_port
    peer = "http://127.0.0.1:%d" % peer_ports[i]
    cluster = ",".join("etcd%d=http://127.0.0.1:%d" % (k + 1, p) for k, p in enumerate(peer_ports))
    logf = open(os.path.join(d, "etcd.log"), "ab")
    uid, gid = postgres_ids()
    p = subprocess.Popen(
        ["etcd", "--name", "etcd%d" % (i + 1), "--data-dir", os.path.join(d, "data"),
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", cluster, "--initial-cluster-state", "new",
         "--initial-cluster-token", token,
         "--heartbeat-interval", "100", "--election-timeout", "1000",
         "--auto-compaction-retention", "1h"],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
        user=uid, group=gid, extra_groups=[], start_new_session=True, cwd=d)
    logf.close()
    return p


def etcd_healthy(port):
    status, body = http_get("http://127.0.0.1:%d/health" % port, timeout=1)
    return status == 200 and '"true"' in body


def port_in_use(port):
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def die(msg):
    print("bench/failover: " + msg, file=sys.stderr, flush=True)
    sys.exit(2)

"""The chaos harness: three hosts and an application host as network namespaces.

    pgwc-h1, pgwc-h2, pgwc-h3   10.213.0.11-13: one etcd member, one PostgreSQL and its agent
    pgwc-app                    10.213.0.10: the proxy and the workload
    the root namespace          10.213.0.254 on the bridge: the observer (this process), which
                                no fault ever cuts off (it only watches and checks)

Faults are small functions (FAULTS) that break something and return what heals it.
Every process runs inside its namespace; `Lab.close()` kills every process of every
namespace, deletes the namespaces and the bridge, whatever happened before.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
import helpers  # noqa: E402
HERE = os.path.dirname(os.path.abspath(__file__))
PG_BIN = "/usr/lib/postgresql/15/bin"
# PGW_CHAOS_NET=k (0..9) gives a run its own names and subnet, so that two can run at once.
NET = int(os.environ.get("PGW_CHAOS_NET", "0"))
PREFIX = "pgwc" if NET == 0 else "pgwc%d" % NET
BRIDGE = PREFIX + "0"
# A Docker engine that ran on this machine (the Swarm tests start one) leaves the
# FORWARD policy at DROP with br_netfilter loaded: frames between two ports of a bridge
# then go through iptables' FORWARD chain and are dropped. Our bridge's own traffic is
# let through, as Docker does for docker0; the rule goes with the bridge.
FORWARD_RULE = ("FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT")
SUBNET = "10.213.%d" % NET
OBSERVER = SUBNET + ".254"
APP = SUBNET + ".10"
N = 3
CLUSTER = "chaos"
SYS_PY = "/usr/bin/python3"


def host_ip(i):
    return "%s.%d" % (SUBNET, 11 + i)


def ns_name(i):
    return "%s-h%d" % (PREFIX, i + 1) if i is not None else PREFIX + "-app"


def sh(*args, check=True, timeout=30, **kw):
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), proc.returncode,
                                                   proc.stderr.strip()))
    return proc


def wait_for(what, cond, timeout, interval=0.1):
    """helpers.wait_for, raising TimeoutError: the harness reports a timeout as a
    finding of its round instead of failing there."""
    return helpers.wait_for(what, cond, timeout, interval, error=TimeoutError)


def alive(pid):
    """True when pid runs and is not a zombie (PID 1 may be slow to reap)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, TypeError):
        pass


def remove_leftovers():
    """Namespaces and the bridge an earlier run (killed, timed out) left behind."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX + "-"):
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                kill(int(pid))
            sh("ip", "netns", "del", name, check=False)
    for i in [None] + list(range(N)):
        sh("ip", "link", "del", ns_name(i) + "v", check=False)
    sh("ip", "link", "del", BRIDGE, check=False)
    while sh("iptables", "-D", *FORWARD_RULE, check=False).returncode == 0:
        pass



class Net:
    """The bridge, the namespaces and the nftables rules that make faults."""

    def __init__(self):
        remove_leftovers()
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", OBSERVER + "/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        sh("iptables", "-I", *FORWARD_RULE)
        for i in [None] + list(range(N)):
            ns = ns_name(i)
            ip = APP if i is None else host_ip(i)
            veth = ns + "v"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", BRIDGE, "up")
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.nft(i, "add table inet chaos")
            self.nft(i, "add chain inet chaos in { type filter hook input priority 0; }")
            self.nft(i, "add chain inet chaos out { type filter hook output priority 0; }")

    def nft(self, i, rule):
        sh("ip", "netns", "exec", ns_name(i), "nft", rule)

    def cut(self, i, peers, inbound=True, outbound=True, loss=None):
        """Drops packets between host i and peers (addresses) in the given directions;
        loss=N drops only N % of them, at random."""
        s = "{ %s }" % ", ".join(peers)
        what = "numgen random mod 100 < %d drop" % loss if loss else "drop"
        if inbound:
            self.nft(i, "add rule inet chaos in ip saddr %s %s" % (s, what))
        if outbound:
            self.nft(i, "add rule inet chaos out ip daddr %s %s" % (s, what))

    def heal(self):
        for i in [None] + list(range(N)):
            self.nft(i, "flush chain inet chaos in")
            self.nft(i, "flush chain inet chaos out")

    def close(self):
        remove_leftovers()


def etcd_get(key, endpoints, timeout=0.5):
    """Linearizable read of one key through the v3 JSON gateway: (found, value, revision
    of the read, endpoint) or None when no endpoint answered. The endpoint that answered
    moves to the front of the list, so that a cut-off member does not cost every later
    read its timeout."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    for ep in list(endpoints):
        req = urllib.request.Request(ep + "/v3/kv/range", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                doc = json.loads(resp.read())
        except (OSError, ValueError):
            continue
        if "header" not in doc:
            continue
        endpoints.remove(ep)
        endpoints.insert(0, ep)
        kvs = doc.get("kvs") or []
        rev = int(doc["header"].get("revision", 0))
        if not kvs:
            return (False, None, rev, ep)
        return (True, base64.b64decode(kvs[0].get("value", "")).decode(), rev, ep)
    return None


UNKNOWN = "?"


class LeaderWatch(threading.Thread):
    """Polls the leader key every 50 ms and keeps its history: [(time, holder, how)],
    holder a member name, None (no leader) or UNKNOWN (no etcd member answered: etcd may
    be electing, or without quorum), how the read's revision and endpoint (for a human
    checking a violation). Only changes are kept."""

    def __init__(self, endpoints):
        super().__init__(daemon=True)
        self.endpoints = list(endpoints)
        self.history = []
        self.stop_ev = threading.Event()

    def run(self):
        key = "/service/%s/leader" % CLUSTER
        while not self.stop_ev.is_set():
            # A change is dated from when the read was sent: the key changed at some
            # moment before the answer, after the previous read.
            now = time.monotonic()
            got = etcd_get(key, self.endpoints)
            holder = UNKNOWN if got is None else (got[1] if got[0] else None)
            if not self.history or self.history[-1][1] != holder:
                self.history.append((now, holder, got[2:] if got else None))
            self.stop_ev.wait(0.05)

    def stop(self):
        self.stop_ev.set()
        self.join(5)

    def seen(self, t0, t1):
        """Holders seen at some moment of [t0, t1] (UNKNOWN among them when etcd did
        not answer for part of it)."""
        held = set()
        for k, (at, who, _) in enumerate(self.history):
            until = self.history[k + 1][0] if k + 1 < len(self.history) else float("inf")
            if at <= t1 and until >= t0:
                held.add(who)
        return held


class WritableWatch(threading.Thread):
    """Asks every member "are you a primary?" (pg_is_in_recovery) every 200 ms, each on its
    own thread, and keeps every answer that came back within 300 ms: [(member, asked,
    answered)] for the members that said yes. A SIGSTOPped or unreachable server just
    gives no answer."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab = lab
        self.writable = []
        self.stop_ev = threading.Event()

    def ask(self, i):
        conn = None
        while not self.stop_ev.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.lab.dsn(i, connect_timeout=1))
                    conn.autocommit = True
                t0 = time.monotonic()
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    recovery = cur.fetchone()[0]
                t1 = time.monotonic()
                if not recovery and t1 - t0 <= 0.3:
                    self.writable.append((i, t0, t1))
            except psycopg2.Error:
                if conn is not None:
                    conn.close()
                conn = None
            self.stop_ev.wait(0.2)
        if conn is not None:
            conn.close()

    def run(self):
        threads = [threading.Thread(target=self.ask, args=(i,), daemon=True) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def stop(self):
        self.stop_ev.set()
        if self.ident is not None:
            self.join(10)

    def overlaps(self, apart=0.1):
        """Two members both primary within `apart` seconds of each other. A correct
        hand-over never has them overlap: after a lost lease the old primary demotes at
        least 1 s (AGENT_DEMOTE_MARGIN) before the lease can expire and the new one
        promotes after it did; when a leader gives the key up, it stops first, and the
        new leader needs the key's deletion, a race and a promotion (over 100 ms) before
        it answers as a primary. Each answer is only known to be true at some moment of
        its 200 ms poll, hence the small window rather than zero."""
        found = []
        last = {}
        for i, t0, t1 in sorted(self.writable, key=lambda w: w[1]):
            for j, (u0, u1) in last.items():
                if j != i and t0 - u1 < apart:
                    found.append("node%d and node%d were both primaries within %.2f s "
                                 "(at %.3f and %.3f)"
                                 % (j + 1, i + 1, max(0, t0 - u1), u0, t0))
            last[i] = (t0, t1)
        return found[:5]


class Lab:
    """The whole cluster in namespaces. `start()` builds it; `close()` removes all of it."""

    def __init__(self, build_dir=None, sync=True):
        self.build = build_dir or os.environ.get("PGW_BUILD_DIR", os.path.join(REPO, "build"))
        self.sync = sync
        self.sync_on = False  # synchronous_mode is on in etcd
        self.base = tempfile.mkdtemp(prefix="pgw-chaos-")
        os.chmod(self.base, 0o755)
        self.bin = os.path.join(self.base, "pgwarden")
        shutil.copy2(os.path.join(self.build, "pgwarden"), self.bin)
        self.password = base64.b32encode(os.urandom(15)).decode().lower()
        self.procs = {}  # (what, i) -> Popen
        self.delayers = {}  # host -> the chaos-nfdelay process adding latency there
        self.reported = set()  # crashes and sanitizer files already reported
        self.log_seen = {}  # log -> length already searched for sanitizer reports
        self.net = None
        self.watch = None
        self.endpoints = ["http://%s:2379" % host_ip(i) for i in range(N)]
        self.env = dict(os.environ)
        # The daemons run as postgres: their sanitizer reports go to a folder of theirs.
        self.env["ASAN_OPTIONS"] = "detect_leaks=1:log_path=%s/asan/asan" % self.base
        self.env.pop("PGPASSFILE", None)

    # -- building ----------------------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.base, *parts)

    def spawn(self, what, i, argv, log):
        """Runs argv as postgres inside host i's namespace (i None: the app host)."""
        cmd = ["ip", "netns", "exec", ns_name(i), "setpriv", "--reuid=postgres",
               "--regid=postgres", "--init-groups", *argv]
        with open(log, "ab") as out:
            self.procs[(what, i)] = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True, cwd=self.base)

    def pid(self, what, i):
        p = self.procs.get((what, i))
        if p is None or p.poll() is not None:
            return None
        return p.pid

    def mkdir(self, *parts):
        d = self.path(*parts)
        os.makedirs(d, exist_ok=True)
        shutil.chown(d, "postgres", "postgres")
        os.chmod(d, 0o700)
        return d

    def write(self, rel, text):
        p = self.path(rel)
        with open(p, "w") as f:
            f.write(text)
        shutil.chown(p, "postgres", "postgres")
        os.chmod(p, 0o600)
        return p

    def start_etcd(self, i, new=True):
        d = self.mkdir("h%d" % (i + 1), "etcd")
        cluster = ",".join("e%d=http://%s:2380" % (k + 1, host_ip(k)) for k in range(N))
        ip = host_ip(i)
        self.spawn("etcd", i, [
            "etcd", "--name", "e%d" % (i + 1), "--data-dir", d,
            "--listen-client-urls", "http://%s:2379" % ip,
            "--advertise-client-urls", "http://%s:2379" % ip,
            "--listen-peer-urls", "http://%s:2380" % ip,
            "--initial-advertise-peer-urls", "http://%s:2380" % ip,
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", "pgw-chaos", "--heartbeat-interval", "100",
            "--election-timeout", "1000",
            # PGW_CHAOS_NO_PREVOTE=1 shows what pre-vote saves (bench/RESULTS.md).
            "--pre-vote=%s" % ("false" if os.environ.get("PGW_CHAOS_NO_PREVOTE") else "true")],
            self.path("h%d" % (i + 1), "etcd.log"))

    def start_agent(self, i):
        self.spawn("agent", i, [self.bin, "agent", "-c", self.path("h%d" % (i + 1), "node.ini")],
                   self.path("h%d" % (i + 1), "agent.log"))

    def start_proxy(self):
        self.spawn("proxy", None, [self.bin, "proxy", "-c", self.path("app", "proxy.ini")],
                   self.path("app", "proxy.log"))

    def start(self):
        self.net = Net()
        eps = ",".join(self.endpoints)
        for i in range(N):
            h = "h%d" % (i + 1)
            self.mkdir(h)
            self.write(h + "/node.ini", """[cluster]
name = %s
member = node%d

[etcd]
endpoints = %s

[postgresql]
data_dir = %s
listen = %s:5432
superuser = postgres
superuser_password = %s
replication_user = replicator
replication_password = %s
memory = 96MB

[parameters]
max_connections = 100

[api]
listen = %s:8008
username = pgwarden
password = %s

[backup]
repo_path = %s
""" % (CLUSTER, i + 1, eps, self.path(h, "data"), host_ip(i), self.password, self.password,
                host_ip(i), self.password, self.path("repo")))
        self.mkdir("app")
        self.mkdir("asan")
        self.mkdir("repo")  # the pgBackRest repository the three hosts share
        self.write("app/userlist.txt", '"postgres" "%s"\n' % self.password)
        self.write("app/proxy.ini", """[cluster]
name = %s

[etcd]
endpoints = %s

[proxy]
listen = 127.0.0.1
pooled_port = 6432
primary_port = 5000
replica_port = 5001
http_port = 7000
auth_type = scram-sha-256
auth_file = %s
admin_users = postgres
default_pool_size = 10
query_wait_timeout = 15s
http_username = admin
http_password = %s
""" % (CLUSTER, eps, self.path("app", "userlist.txt"), self.password))
        for i in range(N):
            self.start_etcd(i)
        wait_for("etcd to elect a leader", lambda: etcd_get("/x", self.endpoints), 30)
        for i in range(N):
            self.start_agent(i)
        self.start_proxy()
        self.watch = LeaderWatch(self.endpoints)
        self.watch.start()
        leader = self.wait_healthy(120)
        if self.sync:
            self.cli("edit-config", "--set", "synchronous_mode=on", "--force")
            self.sync_on = True
            leader = self.wait_healthy(30)
        self.query(leader, """
            CREATE TABLE ledger (id bigint PRIMARY KEY, client text NOT NULL,
                                 at timestamptz NOT NULL DEFAULT clock_timestamp());
            CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
            INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 10) g;
            CREATE TABLE transfers (id bigint PRIMARY KEY);""")
        # A first full backup: the archive property (scenario.check_archive) restores it.
        wait_for("the stanza", lambda: "stanza '%s' ready" % CLUSTER in open(
            self.path("h%d" % (leader + 1), "agent.log")).read(), 60)
        self.pgwarden("backup", "--type", "full", "--timeout", "300", member=leader)
        return leader

    def pgwarden(self, *args, member=0, timeout=300, check=True):
        """A pgwarden command with member's node.ini (run where the tests run)."""
        proc = subprocess.run([self.bin, *args, "-c", self.path("h%d" % (member + 1),
                                                                "node.ini")],
                              capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise RuntimeError("pgwarden %s: %s%s" % (" ".join(args), proc.stdout,
                                                       proc.stderr))
        return proc

    def cli(self, *args):
        proc = subprocess.run([self.bin, *args, "-c", self.path("h1", "node.ini")],
                              capture_output=True, text=True, timeout=60, env=self.env)
        if proc.returncode != 0:
            raise RuntimeError("pgwarden %s: %s%s" % (" ".join(args), proc.stdout, proc.stderr))
        return proc.stdout

    # -- looking -----------------------------------------------------------------------
    def status(self, i):
        try:
            with urllib.request.urlopen("http://%s:8008/status" % host_ip(i), timeout=1) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def healthy(self):
        """The leader's index when one member leads, every other streams and (synchronous
        mode) the sync key names a standby; else None."""
        st = [self.status(i) for i in range(N)]
        if any(s is None for s in st):
            return None
        leaders = [i for i, s in enumerate(st) if s.get("leader")]
        if len(leaders) != 1 or st[leaders[0]].get("state") != "running":
            return None
        if any(s.get("state") != "streaming" for i, s in enumerate(st) if i != leaders[0]):
            return None
        if self.sync_on:
            # In synchronous mode a failover needs a standby recorded in the sync key
            # (a new leader records one a few loops after it promoted).
            got = etcd_get("/service/%s/sync" % CLUSTER, self.endpoints)
            doc = json.loads(got[1]) if got and got[0] else {}
            if doc.get("leader") != "node%d" % (leaders[0] + 1) or not doc.get("sync_standby"):
                return None
        return leaders[0]

    def wait_healthy(self, timeout):
        return wait_for("one leader and every replica streaming", self.healthy, timeout)

    def dsn(self, i, **extra):
        params = dict(host=host_ip(i), port=5432, user="postgres", dbname="postgres",
                      password=self.password, connect_timeout=2)
        params.update(extra)
        return " ".join("%s=%s" % kv for kv in params.items())

    def query(self, i, sql, args=None):
        return helpers.query(self.dsn(i), sql, args)

    def writable_now(self):
        """Members that answer as primaries right now."""
        out = []
        for i in range(N):
            try:
                if not self.query(i, "SELECT pg_is_in_recovery()")[0][0]:
                    out.append(i)
            except psycopg2.Error:
                pass
        return out

    def leader(self):
        found = [i for i in range(N) if (self.status(i) or {}).get("leader")]
        return found[0] if len(found) == 1 else None

    def postmaster(self, i):
        try:
            with open(self.path("h%d" % (i + 1), "data", "postmaster.pid")) as f:
                pid = int(f.readline())
            return pid if alive(pid) else None
        except (OSError, ValueError):
            return None

    def postgres_pids(self, i):
        """The postmaster and its children."""
        pm = self.postmaster(i)
        if not pm:
            return []
        kids = sh("pgrep", "-P", str(pm), check=False).stdout.split()
        return [pm] + [int(k) for k in kids]

    def dump(self, name):
        """What a failed scenario leaves for a human: sessions and locks on every member,
        the proxy's clients and servers, the leader key's history."""
        out = ["# " + name]
        for i in range(N):
            try:
                rows = self.query(i, """SELECT pid, state, wait_event_type, wait_event,
                    now() - xact_start, left(query, 120), client_addr, application_name
                    FROM pg_stat_activity WHERE backend_type = 'client backend'
                    AND pid <> pg_backend_pid()""")
                out.append("node%d sessions:" % (i + 1))
                out.extend("  %r" % (r,) for r in rows)
            except psycopg2.Error as exc:
                out.append("node%d: %s" % (i + 1, exc))
        for cmd in ("SHOW CLIENTS", "SHOW SERVERS"):
            proc = sh("ip", "netns", "exec", ns_name(None), "psql", "-X", "-A", "-c", cmd,
                      "host=127.0.0.1 port=6432 dbname=pgbouncer user=postgres password=%s"
                      % self.password, check=False)
            out.append(cmd + ":\n" + proc.stdout + proc.stderr)
        if self.watch:
            out.append("leader key: %r" % (self.watch.history[-20:],))
        path = self.path(name + ".txt")
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")
        return path

    def delay(self, i, ms):
        """Adds ms of latency to every packet host i sends (but to the observer); 0 removes
        it. Packets go through chaos-nfdelay (NFQUEUE), as this kernel has no netem."""
        rule = ["-o", "eth0", "!", "-d", OBSERVER, "-j", "NFQUEUE", "--queue-num", "0",
                "--queue-bypass"]
        old = self.delayers.pop(i, None)
        if old is not None:
            if old.poll() is not None:
                raise RuntimeError("chaos-nfdelay died during the fault (exit %s): packets "
                                   "went undelayed" % old.returncode)
            sh("ip", "netns", "exec", ns_name(i), "iptables", "-D", "OUTPUT", *rule)
            old.terminate()
            old.wait(10)
        if ms <= 0:
            return
        tool = os.path.join(self.build, "chaos-nfdelay")
        p = subprocess.Popen(["ip", "netns", "exec", ns_name(i), tool, "0", str(ms)],
                             stdout=subprocess.PIPE, text=True)
        if p.stdout.readline().strip() != "ready":
            p.kill()
            raise RuntimeError("%s did not start" % tool)
        self.delayers[i] = p
        sh("ip", "netns", "exec", ns_name(i), "iptables", "-A", "OUTPUT", *rule)

    def logs(self):
        out = {}
        for rel in ["h%d/agent.log" % (i + 1) for i in range(N)] + ["app/proxy.log"]:
            try:
                with open(self.path(rel), errors="replace") as f:
                    out[rel] = f.read()
            except OSError:
                pass
        return out

    def sanitizer_reports(self):
        """Sanitizer reports not reported before (each is reported once)."""
        found = []
        folder = self.path("asan")
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if name not in self.reported:
                self.reported.add(name)
                with open(os.path.join(folder, name), errors="replace") as f:
                    found.append(name + ": " + f.read()[-4000:])
        for rel, text in self.logs().items():
            start = self.log_seen.get(rel, 0)
            self.log_seen[rel] = len(text)
            new = text[start:]
            if any(m in new for m in ("runtime error:", "AddressSanitizer", "Can't open file")):
                found.append(rel + ": " + new[-4000:])
        return found

    def crashed(self):
        """Daemons that died without a fault killing them (their exit codes), each
        reported once."""
        dead = []
        for (what, i), p in self.procs.items():
            rc = p.poll()
            if rc is not None and not getattr(p, "killed_by_fault", False) \
                    and p.pid not in self.reported:
                self.reported.add(p.pid)
                dead.append("%s on %s exited with %s" % (what, ns_name(i), rc))
        return dead

    def close(self, keep=False):
        # A second SIGTERM or Ctrl-C must not stop the cleanup half-way.
        old = [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]
        try:
            self._close(keep)
        finally:
            signal.signal(signal.SIGINT, old[0])
            signal.signal(signal.SIGTERM, old[1])

    def _close(self, keep):
        if self.watch:
            self.watch.stop()
        for p in list(self.procs.values()) + list(self.delayers.values()):
            if p.poll() is None:
                kill(p.pid, signal.SIGCONT)
        remove_leftovers()  # also when Net() failed half-way
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                kill(p.pid)
        # Postgres and fence processes were children of agents: the namespace kill got
        # them; nothing outside the namespaces was ever started.
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)

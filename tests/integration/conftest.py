"""Fixtures for integration tests: real etcd, real PostgreSQL 15, real pgwarden agents.

Every cluster is started with `pgwarden up` in its own temporary folder and its own
ports, and torn down with `pgwarden down` (plus a kill of anything left) whatever
happens. Waits are conditions polled against a deadline, never bare sleeps.
"""
import atexit
import glob
import itertools
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import psycopg2
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
import helpers  # noqa: E402
BUILD = os.environ.get("PGW_BUILD_DIR", os.path.join(REPO, "build"))
PGWARDEN = os.path.join(BUILD, "pgwarden")
# Agents run as postgres, which may not reach a build inside a private folder (CI clones
# into a mode-0700 temporary directory): run a copy from a folder everyone can read.
_BIN_DIR = tempfile.mkdtemp(prefix="pgw-bin-")
os.chmod(_BIN_DIR, 0o755)
shutil.copy2(PGWARDEN, os.path.join(_BIN_DIR, "pgwarden"))
PGWARDEN = os.path.join(_BIN_DIR, "pgwarden")
atexit.register(shutil.rmtree, _BIN_DIR, True)
PG_BIN = "/usr/lib/postgresql/15/bin"

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "abuse: a hostile client, network or etcd (issue 14); scripts/test.sh runs "
        "these first, as a stage of their own")


# Port slots. Under pytest-xdist (scripts/test.sh runs these tests on two workers),
# worker i of n takes the slots i, i + n, i + 2n, ... (wrapping at a multiple of n): two
# live clusters never share a port. PGW_TEST_SLOT shifts the first slot (every run still
# goes round all of them).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
SLOTS = 75 - 75 % _WORKERS
_slot = (int(os.environ.get("PGW_TEST_SLOT", "0")) + _WORKER + _WORKERS * k
         for k in itertools.count())


# Polls a condition until it returns a result; fails the test (AssertionError) after the
# timeout. The tests import it from here.
wait_for = helpers.wait_for


def http(method, url, body=None, timeout=2.0, headers=None):
    """Returns (status, parsed JSON or text) and never raises on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class Cluster:
    """A local 3-node cluster made by `pgwarden up`."""

    N = 3

    def __init__(self, base_dir, slot):
        # Ports stay below the ephemeral range (32768+): slots wrap after 75 (or the
        # multiple of the workers below it; a worker's clusters are torn down before its
        # next one starts).
        slot %= SLOTS
        self.dir = os.path.join(base_dir, "cluster")
        # etcd member i listens on etcd_port + 100 * i (and + 1 for peers): 50 slots
        # interleave in 300 ports, so 75 stay within 10000-10600, clear of the others'
        # ranges (slot * 300 reached 20000 from slot 34 on: a PostgreSQL port of another
        # live cluster).
        self.etcd_port = 10000 + (slot // 50) * 300 + (slot % 50) * 2
        self.pg_port = 20000 + slot * 10
        self.api_port = 21000 + slot * 10
        self.proxy_port = 23000 + slot * 10  # pooled; +1 primary, +2 replica, +3 status
        self.env = dict(os.environ)
        self.env["ASAN_OPTIONS"] = "detect_leaks=1:log_path=%s/asan" % self.dir
        # No scheduled backups (pgwarden up sets them) unless a test wants them: the
        # others count the repository's backups, or need the CPU.
        self.env["PGWARDEN_BACKUP_SCHEDULE_FULL"] = ""
        self.env["PGWARDEN_BACKUP_SCHEDULE_DIFF"] = ""

    # -- processes -------------------------------------------------------------------
    def run(self, *args, check=True, timeout=240):
        proc = subprocess.run([PGWARDEN, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError("pgwarden %s failed (%d):\n%s\n%s" % (
                " ".join(args), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def up(self, timeout=150, check=True, extra=()):
        if not os.path.exists(self.dir) and os.geteuid() == 0:
            # ASan makes the folder of its log_path (in self.dir) at start: as root's, up
            # would refuse it as a folder it did not make. Give it to postgres first.
            os.mkdir(self.dir, 0o755)
            pg = pwd.getpwnam("postgres")
            os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        return self.run("up", "--dir", self.dir, "--etcd-port", str(self.etcd_port),
                        "--pg-port", str(self.pg_port), "--api-port", str(self.api_port),
                        "--proxy-port", str(self.proxy_port),
                        "--memory", "128MB", "--timeout", str(timeout), *extra, check=check,
                        timeout=timeout + 60)

    def down(self):
        return self.run("down", "--dir", self.dir, check=False, timeout=300)

    def pidfile(self, path):
        try:
            with open(os.path.join(self.dir, path)) as f:
                pid = int(f.readline().strip())
            os.kill(pid, 0)
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return None  # a zombie is dead; PID 1 may be slow to reap it
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def agent_pid(self, i):
        return self.pidfile("node%d/agent.pid" % (i + 1))

    def postmaster_pid(self, i):
        return self.pidfile("node%d/data/postmaster.pid" % (i + 1))

    def proxy_pid(self):
        return self.pidfile("proxy/proxy.pid")

    def etcd_pid(self, i):
        return self.pidfile("etcd%d/etcd.pid" % (i + 1))

    def kill(self, pid, sig=signal.SIGKILL):
        if pid:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill_host(self, i):
        """kill -9 of the agent and its postgres together, as a host crash would."""
        agent, pm = self.agent_pid(i), self.postmaster_pid(i)
        self.kill(agent)
        self.kill(pm)
        wait_for("node%d's processes to die" % (i + 1),
                 lambda: self.agent_pid(i) is None and self.postmaster_pid(i) is None, 10)

    # -- looking at the cluster --------------------------------------------------------
    def api(self, i, path="/status", method="GET", body=None, timeout=2.0):
        return http(method, "http://127.0.0.1:%d%s" % (self.api_port + i, path), body,
                    timeout=timeout)

    def status(self, i):
        try:
            code, body = self.api(i, "/status", timeout=1.0)
            return body if code == 200 and isinstance(body, dict) else None
        except OSError:
            return None

    def leaders(self):
        return [i for i in range(self.N) if (self.status(i) or {}).get("leader")]

    def leader(self):
        found = self.leaders()
        return found[0] if len(found) == 1 else None

    def wait_healthy(self, timeout=90, expect_members=None):
        """One leader, every other (expected) member streaming from it."""
        members = list(range(self.N)) if expect_members is None else expect_members

        def ok():
            st = {i: self.status(i) for i in members}
            if any(s is None for s in st.values()):
                return None
            leaders = [i for i, s in st.items() if s.get("leader")]
            if len(leaders) != 1:
                return None
            for i, s in st.items():
                if i != leaders[0] and s.get("state") != "streaming":
                    return None
            return leaders[0]
        return wait_for("a healthy cluster (1 leader, replicas streaming)", ok, timeout)

    def dsn(self, i, **extra):
        params = dict(host="127.0.0.1", port=self.pg_port + i, user="postgres",
                      dbname="postgres", passfile=os.path.join(self.dir, "pgpass"),
                      connect_timeout=2)
        params.update(extra)
        return " ".join("%s=%s" % kv for kv in params.items())

    def multihost_dsn(self, **extra):
        hosts = ",".join(["127.0.0.1"] * self.N)
        ports = ",".join(str(self.pg_port + i) for i in range(self.N))
        params = dict(host=hosts, port=ports, user="postgres", dbname="postgres",
                      passfile=os.path.join(self.dir, "pgpass"), connect_timeout=1,
                      target_session_attrs="read-write")
        params.update(extra)
        return " ".join("%s=%s" % kv for kv in params.items())

    def proxy_dsn(self, offset=0, **extra):
        """The proxy: offset 0 pooled (transaction), 1 primary session, 2 replica session."""
        params = dict(host="127.0.0.1", port=self.proxy_port + offset, user="postgres",
                      dbname="postgres", passfile=os.path.join(self.dir, "pgpass"),
                      connect_timeout=3)
        params.update(extra)
        return " ".join("%s=%s" % kv for kv in params.items())

    def restart_proxy(self, extra_config=""):
        """Appends lines to proxy.ini, stops the proxy (SIGTERM) and starts it again."""
        if extra_config:
            with open(os.path.join(self.dir, "proxy/proxy.ini"), "a") as f:
                f.write(extra_config)
        self.kill(self.proxy_pid(), signal.SIGTERM)
        wait_for("the proxy to stop", lambda: self.proxy_pid() is None, 30)
        self.up()

    def pgbench_init(self, leader):
        """pgbench's tables (scale 1) on the leader; returns the environment pgbench needs
        (the cluster's pgpass)."""
        env = dict(os.environ, PGPASSFILE=os.path.join(self.dir, "pgpass"))
        subprocess.run(["/usr/lib/postgresql/15/bin/pgbench", "-i", "-s", "1", "-q", "-h",
                        "127.0.0.1", "-p", str(self.pg_port + leader), "-U", "postgres",
                        "postgres"], check=True, capture_output=True, env=env, timeout=120)
        return env

    def proxy_log(self):
        with open(os.path.join(self.dir, "proxy/proxy.log")) as f:
            return f.read()

    def connect(self, i, autocommit=True):
        conn = psycopg2.connect(self.dsn(i))
        conn.autocommit = autocommit
        return conn

    def query(self, i, sql, args=None):
        return helpers.query(self.dsn(i), sql, args)

    def writable(self, i):
        try:
            return self.query(i, "SELECT NOT pg_is_in_recovery()")[0][0]
        except psycopg2.Error:
            return False

    def writable_nodes(self):
        return [i for i in range(self.N) if self.writable(i)]

    def timeline(self, i):
        return (self.status(i) or {}).get("timeline")

    def log(self, i):
        with open(os.path.join(self.dir, "node%d/agent.log" % (i + 1))) as f:
            return f.read()

    def sanitizer_reports(self):
        reports = []
        for path in glob.glob(os.path.join(self.dir, "asan*")):
            with open(path) as f:
                reports.append(f.read())
        for i in range(self.N):
            try:
                text = self.log(i)
            except OSError:
                continue
            if "runtime error:" in text or "AddressSanitizer" in text:
                reports.append(text)
        try:
            text = self.proxy_log()
            if "runtime error:" in text or "AddressSanitizer" in text:
                reports.append(text)
        except OSError:
            pass
        return reports

    def cleanup(self):
        self.down()
        # Anything `down` missed (a test may have broken pid files on purpose).
        for i in range(self.N):
            for pid in (self.agent_pid(i), self.postmaster_pid(i), self.etcd_pid(i)):
                self.kill(pid)
        self.kill(self.proxy_pid())


_live = []  # clusters of the running test (and of its module), for a failure's report


def _log_tails(lines=60):
    """The last lines of every log of the live clusters' members, proxies and etcds."""
    out = []
    for c in _live:
        for path in sorted(glob.glob(os.path.join(c.dir, "*", "*.log"))):
            try:
                with open(path, errors="replace") as f:
                    tail = f.readlines()[-(lines // 4 if "/etcd" in path else lines):]
            except OSError as exc:
                tail = ["(%s)\n" % exc]
            out.append("==> %s <==\n%s" % (path, "".join(tail)))
    return "\n".join(out)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the tails of the logs it would otherwise take
    with its folder: a flake in CI can be read afterwards."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call") and _live:
        report.sections.append(("cluster logs (last lines)", _log_tails()))


def _clusters():
    """(make, finish): make() makes a cluster in a folder of its own; finish() tears
    every one down and fails on any sanitizer report."""
    made = []
    base = tempfile.mkdtemp(prefix="pgw-it-")
    os.chmod(base, 0o755)

    def make():
        c = Cluster(os.path.join(base, str(len(made))), next(_slot))
        os.makedirs(os.path.dirname(c.dir), exist_ok=True)
        os.chmod(os.path.dirname(c.dir), 0o755)
        made.append(c)
        _live.append(c)
        return c

    def finish():
        reports = []
        for c in made:
            if c in _live:
                _live.remove(c)
            try:
                c.cleanup()
            finally:
                reports.extend(c.sanitizer_reports())
        keep = os.environ.get("PGW_KEEP_TEST_DIRS")
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
        assert not reports, "sanitizer reports:\n" + "\n----\n".join(
            r[-4000:] for r in reports)
    return make, finish


def _healthy_with_table(c):
    c.up()
    leader = c.wait_healthy()
    c.query(leader, "CREATE TABLE t (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    return c


@pytest.fixture
def cluster_factory():
    """Makes clusters on demand; tears every one of them down afterwards."""
    make, finish = _clusters()
    yield make
    finish()


@pytest.fixture
def cluster(cluster_factory):
    """A running, healthy 3-node cluster with a table t(id bigint primary key)."""
    return _healthy_with_table(cluster_factory())


@pytest.fixture(scope="module")
def _module_cluster():
    make, finish = _clusters()
    yield _healthy_with_table(make())
    finish()


@pytest.fixture
def shared_cluster(_module_cluster):
    """`cluster`, shared by the tests of one module that leave it as they found it
    (healthy, the same leader and configuration; rows in t with ids of their own): it
    saves forming a cluster for each."""
    _module_cluster.wait_healthy(timeout=30)
    return _module_cluster


class Writer:
    """A client that inserts a unique id every `interval` seconds and remembers which
    commits were acknowledged (and when). Reconnects on any error."""

    def __init__(self, dsn, interval=0.05, table="t"):
        import threading
        self.dsn = dsn
        self.interval = interval
        self.table = table
        self.acked = []      # (id, monotonic time of the acknowledgement)
        self.errors = []     # (monotonic time, error text)
        self._next = 1_000_000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "writer thread hung"

    def _run(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg2.connect(self.dsn, options="-c statement_timeout=3000",
                                            keepalives_idle=2, tcp_user_timeout=3000)
                    conn.autocommit = True
                self._next += 1
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO %s (id) VALUES (%%s)" % self.table, (self._next,))
                self.acked.append((self._next, time.monotonic()))
            except psycopg2.Error as exc:
                self.errors.append((time.monotonic(), str(exc).strip()))
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def acked_ids(self):
        return {i for i, _ in self.acked}

    def acks_after(self, t):
        return [at for _, at in self.acked if at > t]

    def max_gap(self, start, end):
        times = [at for _, at in self.acked if start <= at <= end]
        return max((b - a for a, b in zip(times, times[1:])), default=None)

"""The pooled paths of the failover benchmark (--via-proxy):

    pgwarden: the proxy `pgwarden up` starts, its transaction-pooling port
              (the 6432 of a default install; here --proxy-port 24532);
    Patroni:  Debian's PgBouncer (transaction mode) -> HAProxy (health-checks
              Patroni's REST API: GET /primary, 200 = primary) -> the members.

Each object gives `dsn` (a single-host connection string for the pooled
writer), `name` and `describe()`; PgbouncerHaproxy also starts / stops its
two processes."""

import os
import shutil
import signal
import subprocess

from common import (chown_postgres, log, postgres_ids, read_pidfile, pid_alive, tail,
                    wait_for, wait_gone)

import psycopg2

# PgBouncer and HAProxy of the Patroni stack (below the ephemeral range, away
# from other tests and from bench/proxy's 26543)
PGBOUNCER_PORT = 26643
HAPROXY_PORT = 26644
HAPROXY_STATS_PORT = 26645


def pooled_dsn(port, password):
    # no `options` startup parameter: PgBouncer refuses unknown ones
    return ("host=127.0.0.1 port=%d dbname=postgres user=postgres password=%s "
            "connect_timeout=1" % (port, password))


class PgwardenProxy:
    """The proxy of the pgwarden cluster: pooled (transaction) port."""
    name = "pgwarden proxy (transaction pooling)"

    def __init__(self, cluster):
        self.cluster = cluster
        self.port = cluster.proxy_port
        self.dsn = pooled_dsn(self.port, cluster.password)

    def describe(self):
        return "pgwarden proxy :%d (transaction pooling, as `pgwarden up` starts it)" % self.port

    def pid(self):
        return read_pidfile(os.path.join(self.cluster.dir, "proxy", "proxy.pid"))

    def check(self):
        """None while the proxy is the process seen first; else what happened
        (`pgwarden up`, which restarts a killed member, would also start a
        proxy that died, so a crash would otherwise go unseen)."""
        pid = self.pid()
        first = getattr(self, "_pid", None)
        if first is None:
            self._pid = pid
            return None if pid_alive(pid) else "the proxy is not running"
        if pid != first or not pid_alive(pid):
            self._pid = pid
            return "the proxy process changed or died (pid %d -> %d, alive %s): see %s" % (
                first, pid, pid_alive(pid), self.logs()["proxy"])
        return None

    def logs(self):
        return {"proxy": os.path.join(self.cluster.dir, "proxy", "proxy.log")}


HAPROXY_CFG = """\
# bench/failover: HAProxy in front of the Patroni members, the primary found by
# Patroni's REST API (GET /primary answers 200 on the primary only)
global
    maxconn 2000

defaults
    mode tcp
    retries 2
    timeout connect 1s
    timeout client 1h
    timeout server 1h
    timeout check 1s

listen stats
    mode http
    bind 127.0.0.1:%(stats_port)d
    stats enable
    stats uri /

listen primary
    bind 127.0.0.1:%(port)d
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
%(servers)s
"""

PGBOUNCER_INI = """\
;; bench/failover: PgBouncer in transaction mode in front of HAProxy's primary port
[databases]
postgres = host=127.0.0.1 port=%(haproxy_port)d dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %(port)d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %(dir)s/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
logfile = %(dir)s/pgbouncer.log
pidfile = %(dir)s/pgbouncer.pid
;; retry a failed server login after 1 s instead of the default 15 s
server_login_retry = 1
server_connect_timeout = 2
;; no transaction hangs forever
query_timeout = 30
"""


def install_haproxy():
    """Debian's haproxy package, its service neither started (policy-rc.d
    during the install when the machine has none) nor enabled."""
    if shutil.which("haproxy"):
        return
    log("installing Debian's haproxy package")
    policy = "/usr/sbin/policy-rc.d"
    made_policy = False
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# bench/failover: no service starts while haproxy installs\n"
                    "exit 101\n")
        os.chmod(policy, 0o755)
        made_policy = True
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(["apt-get", "install", "-y", "-q", "haproxy"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.STDOUT)
            subprocess.run(["apt-get", "install", "-y", "-q", "haproxy"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    finally:
        if made_policy:
            os.unlink(policy)
    if shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", "haproxy"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT)
    pid = read_pidfile("/run/haproxy.pid")
    if pid_alive(pid):
        log("stopping the haproxy the package started (pid %d)" % pid)
        os.kill(pid, signal.SIGTERM)
        wait_gone([pid], 10)
    if not shutil.which("haproxy"):
        raise RuntimeError("cannot install haproxy (apt-get install -y haproxy)")


def install_pgbouncer():
    if shutil.which("pgbouncer"):
        return
    log("installing Debian's pgbouncer package")
    policy = "/usr/sbin/policy-rc.d"
    made_policy = False
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        made_policy = True
    try:
        subprocess.run(["apt-get", "install", "-y", "-q", "pgbouncer"],
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    finally:
        if made_policy:
            os.unlink(policy)
    if shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", "pgbouncer"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT)
    if not shutil.which("pgbouncer"):
        raise RuntimeError("cannot install pgbouncer (apt-get install -y pgbouncer)")


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).splitlines()[0].strip()
    except Exception:
        return "?"


class PgbouncerHaproxy:
    """PgBouncer (transaction pooling) -> HAProxy (primary by REST health check)
    -> the Patroni members."""
    name = "PgBouncer -> HAProxy -> Patroni"

    def __init__(self, patroni, base):
        self.pat = patroni
        self.dir = os.path.join(base, "pgbouncer-haproxy")
        self.port = PGBOUNCER_PORT
        self.dsn = pooled_dsn(PGBOUNCER_PORT, patroni.password)
        self.haproxy = None
        self.pgbouncer = None

    def describe(self):
        return ("PgBouncer %s :%d (transaction) -> HAProxy %s :%d (GET /primary, inter 1s "
                "fall 2 rise 1, on-marked-down shutdown-sessions)" % (
                    tool_version(["pgbouncer", "--version"]).replace("PgBouncer ", ""),
                    PGBOUNCER_PORT, tool_version(["haproxy", "-v"]).split()[2]
                    if tool_version(["haproxy", "-v"]) != "?" else "?", HAPROXY_PORT))

    def ports(self):
        return [PGBOUNCER_PORT, HAPROXY_PORT, HAPROXY_STATS_PORT]

    def start(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        chown_postgres(self.dir)
        uid, gid = postgres_ids()
        servers = "\n".join(
            "    server %s 127.0.0.1:%d maxconn 100 check port %d" % (n, pg, api)
            for n, pg, api in zip(self.pat.names, self.pat.pg_ports, self.pat.api_ports))
        cfg = os.path.join(self.dir, "haproxy.cfg")
        self._write(cfg, HAPROXY_CFG % {"port": HAPROXY_PORT, "stats_port": HAPROXY_STATS_PORT,
                                        "servers": servers})
        r = subprocess.run(["haproxy", "-c", "-q", "-f", cfg], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("haproxy -c: %s" % (r.stdout + r.stderr).strip())
        self.haproxy = self._spawn(["haproxy", "-db", "-f", cfg], "haproxy.log")
        self._write(os.path.join(self.dir, "userlist.txt"),
                    '"postgres" "%s"\n' % self.pat.password)
        ini = os.path.join(self.dir, "pgbouncer.ini")
        self._write(ini, PGBOUNCER_INI % {"dir": self.dir, "port": PGBOUNCER_PORT,
                                          "haproxy_port": HAPROXY_PORT})
        self.pgbouncer = self._spawn(["pgbouncer", ini], "pgbouncer-stdout.log")
        log("%s started (pgbouncer pid %d, haproxy pid %d)" % (
            self.name, self.pgbouncer.pid, self.haproxy.pid))

    def wait_ready(self, timeout=60):
        """Until a login + SELECT through PgBouncer reaches a primary."""
        def attempt():
            try:
                c = psycopg2.connect(self.dsn)
                try:
                    c.autocommit = True
                    with c.cursor() as cur:
                        cur.execute("SELECT NOT pg_is_in_recovery()")
                        return cur.fetchone()[0]
                finally:
                    c.close()
            except Exception:
                return False
        return wait_for("a primary through PgBouncer -> HAProxy", attempt, timeout, 0.5)

    def _write(self, path, text):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        chown_postgres(path)

    def _spawn(self, argv, logname):
        uid, gid = postgres_ids()
        logf = open(os.path.join(self.dir, logname), "ab")
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, user=uid, group=gid,
                                    extra_groups=[], start_new_session=True, cwd=self.dir)
        finally:
            logf.close()

    def alive(self):
        return all(p is not None and p.poll() is None for p in (self.pgbouncer, self.haproxy))

    def check(self):
        """None while PgBouncer and HAProxy run; else restarts them and says so."""
        if self.alive():
            return None
        why = "PgBouncer exit %s, HAProxy exit %s" % (
            self.pgbouncer and self.pgbouncer.poll(), self.haproxy and self.haproxy.poll())
        self.print_logs()
        self.stop()
        self.start()
        self.wait_ready()
        return why

    def stop(self):
        for p in (self.pgbouncer, self.haproxy):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.pgbouncer = self.haproxy = None

    def logs(self):
        return {"pgbouncer": os.path.join(self.dir, "pgbouncer.log"),
                "haproxy": os.path.join(self.dir, "haproxy.log")}

    def print_logs(self, n=15):
        for k, path in self.logs().items():
            print("---- %s (last lines) ----\n%s" % (path, tail(path, n)), end="")

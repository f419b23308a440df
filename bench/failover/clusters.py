"""The two systems under test, behind one small interface:

    start()              bring the cluster up, wait for 1 leader + 2 streaming replicas
    healthy()            index of the leader when 1 leader + 2 streaming replicas, else None
    leader_info()        (leader name, timeline, number of /history entries) or None
    kill(i)              SIGKILL member i's agent + postmaster (+ their children)
    restart(i)           start member i's agent again
    switchover(l, c, t)  planned switchover from member l to member c with the
                         system's own CLI (--force); (exit code, output)
    stop()               stop everything this object started
    dsn / uri            multi-host read-write connection strings
    etcd_ports           client ports of the cluster's own 3-member etcd
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import urllib.request

import yaml

from common import (PG_BIN, chown_postgres, etcd_healthy, http_json, kill_host, log,
                    multihost_dsn, multihost_uri, pid_alive, postgres_ids,
                    read_pidfile, start_etcd_member, tail, terminate, wait_for, wait_gone)

N = 3


class PgwardenCluster:
    system = "pgwarden"

    def __init__(self, binary, base, etcd_port=22379, pg_port=25432, api_port=28008,
                 proxy_port=24532):
        self.binary = binary
        self.dir = os.path.join(base, "pgwarden")
        self.etcd_port, self.pg_port, self.api_port = etcd_port, pg_port, api_port
        self.proxy_port = proxy_port  # the proxy on 24532..24535, away from 6432 and others
        self.pg_ports = [pg_port + i for i in range(N)]
        self.api_ports = [api_port + i for i in range(N)]
        self.etcd_ports = [etcd_port + 100 * i for i in range(N)]
        self.names = ["node%d" % (i + 1) for i in range(N)]
        self.timing = "default"
        self.loop_wait = 1.0          # agent default (src/cluster/clustercfg.h)
        self.failover_timeout = 60.0  # kill -> first commit on the new leader
        self.rejoin_timeout = 180.0   # restart -> 1 leader + 2 streaming again
        self.started = False
        self.password = None

    # -- lifecycle
    def _up(self, timeout, quiet_log):
        cmd = [self.binary, "up", "--dir", self.dir, "--etcd-port", str(self.etcd_port),
               "--pg-port", str(self.pg_port), "--api-port", str(self.api_port),
               "--proxy-port", str(self.proxy_port),
               "--cluster", "bench", "--timeout", str(int(timeout))]
        with open(quiet_log, "ab") as out:
            return subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout + 120).returncode

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        shutil.chown(self.dir, "postgres", "postgres")  # up keeps to a folder of postgres's
        self.started = True
        log("pgwarden: up --dir %s (etcd :%d, pg :%d, api :%d)" % (
            self.dir, self.etcd_port, self.pg_port, self.api_port))
        rc = self._up(180, os.path.join(self.dir, "up.log"))
        if rc != 0:
            print(tail(os.path.join(self.dir, "up.log"), 40))
            raise RuntimeError("pgwarden up failed (exit %d)" % rc)
        with open(os.path.join(self.dir, "pgpass")) as f:
            self.password = f.readline().rstrip("\n").split(":", 4)[4]
        self.dsn = multihost_dsn(self.pg_ports, self.password)
        self.uri = multihost_uri(self.pg_ports)
        self.pgpassfile = os.path.join(self.dir, "pgpass")
        if wait_for("pgwarden: 1 leader + 2 streaming replicas", self.healthy, 60) is None:
            raise RuntimeError("pgwarden did not become healthy")
        # the agent logs its timing at start: "... ttl 4000 ms, loop_wait 1000 ms"
        try:
            with open(os.path.join(self.dir, "node1", "agent.log"), errors="replace") as f:
                m = re.findall(r"ttl (\d+) ms, loop_wait (\d+) ms", f.read())
            if m:
                ttl, loop = int(m[-1][0]) / 1000.0, int(m[-1][1]) / 1000.0
                self.loop_wait = loop
                self.timing = "default (ttl %g s, loop_wait %g s)" % (ttl, loop)
        except OSError:
            pass

    def stop(self):
        if not self.started:
            return
        log("pgwarden: down --dir %s" % self.dir)
        try:
            subprocess.run([self.binary, "down", "--dir", self.dir], stdout=subprocess.DEVNULL,
                           stderr=subprocess.STDOUT, timeout=300)
        except Exception as e:
            log("pgwarden down: %s" % e)
        # whatever survived (a member killed and not restarted, a stuck agent)
        for i in range(N):
            terminate(read_pidfile(os.path.join(self.dir, self.names[i], "agent.pid")),
                      10, signal.SIGKILL)
            terminate(read_pidfile(os.path.join(self.dir, self.names[i], "data",
                                                "postmaster.pid")), 20, signal.SIGQUIT)
        for i in range(N):
            terminate(read_pidfile(os.path.join(self.dir, "etcd%d" % (i + 1), "etcd.pid")), 20)
        self.started = False

    # -- state
    def statuses(self):
        return [http_json("http://127.0.0.1:%d/status" % p) for p in self.api_ports]

    def healthy(self):
        st = self.statuses()
        leaders = [i for i, s in enumerate(st) if s and s.get("leader") is True]
        streaming = [i for i, s in enumerate(st)
                     if s and not s.get("leader") and s.get("state") == "streaming"]
        if len(leaders) == 1 and len(streaming) == N - 1:
            return leaders[0] + 1  # 1-based so that member 0 is true
        return None

    def leader_index(self):
        h = self.healthy()
        return None if h is None else h - 1

    def leader_info(self):
        for i, s in enumerate(self.statuses()):
            if s and s.get("leader") is True:
                hist = http_json("http://127.0.0.1:%d/history" % self.api_ports[i]) or []
                return {"leader": s.get("name"), "timeline": s.get("timeline"),
                        "history": len(hist)}
        return None

    def current_leader_name(self):
        for s in self.statuses():
            if s and s.get("leader") is True:
                return s.get("name")
        return None

    # -- faults
    def kill(self, i):
        d = os.path.join(self.dir, self.names[i])
        agent = read_pidfile(os.path.join(d, "agent.pid"))
        pm = read_pidfile(os.path.join(d, "data", "postmaster.pid"))
        victims = kill_host(agent if pid_alive(agent) else 0, pm if pid_alive(pm) else 0)
        wait_gone(victims, 10)
        return victims

    def restart(self, i):
        # `pgwarden up` starts only what is not running and waits for the cluster
        # to be ready (REST polling with a deadline); we check again ourselves.
        return self._up(self.rejoin_timeout, os.path.join(self.dir, "up.log"))

    def switchover(self, leader, candidate, timeout):
        """`pgwarden switchover --force`: writes the request to etcd and waits
        (at most `timeout` s) until the candidate leads as a primary."""
        cmd = [self.binary, "switchover", "--dir", self.dir, "--leader", self.names[leader],
               "--candidate", self.names[candidate], "--force", "--timeout", str(int(timeout))]
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout + 30)
            return r.returncode, (r.stdout + r.stderr).strip()
        except subprocess.TimeoutExpired:
            return None, "timed out after %.0f s" % (timeout + 30)

    def member_logs(self):
        return {n: os.path.join(self.dir, n, "agent.log") for n in self.names}

    def set_sync(self, on):
        """synchronous_mode on/off through `pgwarden edit-config`."""
        r = subprocess.run([self.binary, "edit-config", "--dir", self.dir, "--set",
                            "synchronous_mode=%s" % ("on" if on else "off"), "--force"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("pgwarden edit-config: %s" % (r.stdout + r.stderr).strip())


PATRONI_TIMINGS = {
    "default": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
    "aggressive": {"ttl": 5, "loop_wait": 1, "retry_timeout": 2},
}


class PatroniCluster:
    system = "patroni"

    def __init__(self, base, etcd_port=30379, pg_port=26432, api_port=29008):
        self.base = os.path.join(base, "patroni")
        self.etcd_port = etcd_port
        self.etcd_ports = [etcd_port + 100 * i for i in range(N)]
        self.peer_ports = [p + 1 for p in self.etcd_ports]
        self.pg_ports = [pg_port + i for i in range(N)]
        self.api_ports = [api_port + i for i in range(N)]
        self.names = ["pnode%d" % (i + 1) for i in range(N)]
        self.etcd_procs = []
        self.procs = [None] * N
        self.password = secrets.token_hex(12)
        self.repl_password = secrets.token_hex(12)
        self.dsn = multihost_dsn(self.pg_ports, self.password)
        self.uri = multihost_uri(self.pg_ports)
        self.timing = None
        self.generation = 0

    # -- etcd (kept across timings so one etcd serves the Patroni runs)
    def start_etcd(self):
        os.makedirs(self.base, exist_ok=True)
        chown_postgres(self.base)
        log("patroni: starting its etcd on :%s" % ",".join(map(str, self.etcd_ports)))
        for i in range(N):
            self.etcd_procs.append(start_etcd_member(
                self.base, i, self.etcd_ports[i], self.peer_ports, "bench-patroni-%d" % os.getpid()))
        if not wait_for("Patroni's etcd to be healthy",
                        lambda: all(etcd_healthy(p) for p in self.etcd_ports), 30):
            raise RuntimeError("Patroni's etcd did not become healthy: see %s/etcd*/etcd.log"
                               % self.base)

    # -- Patroni members
    def node_dir(self, i):
        return os.path.join(self.base, "g%d" % self.generation, self.names[i])

    def config(self, i, scope, timing):
        d = self.node_dir(i)
        params = {
            "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
            "max_wal_senders": 10, "max_replication_slots": 10, "shared_buffers": "64MB",
            "max_connections": 200, "wal_keep_size": "128MB", "hot_standby_feedback": "on",
            "effective_cache_size": "192MB", "maintenance_work_mem": "16MB", "work_mem": "4MB",
            "password_encryption": "scram-sha-256",
        }
        hba = ["local all all trust",
               "host replication replicator 127.0.0.1/32 scram-sha-256",
               "host all all 127.0.0.1/32 scram-sha-256"]
        t = PATRONI_TIMINGS[timing]
        return {
            "scope": scope,
            "namespace": "/service/",
            "name": self.names[i],
            "log": {"level": "INFO"},
            "restapi": {"listen": "127.0.0.1:%d" % self.api_ports[i],
                        "connect_address": "127.0.0.1:%d" % self.api_ports[i]},
            "etcd3": {"hosts": ["127.0.0.1:%d" % p for p in self.etcd_ports]},
            "bootstrap": {
                "dcs": {"ttl": t["ttl"], "loop_wait": t["loop_wait"],
                        "retry_timeout": t["retry_timeout"],
                        "maximum_lag_on_failover": 1048576,
                        "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                       "parameters": params}},
                "initdb": [{"encoding": "UTF8"}, "data-checksums"],
                "pg_hba": hba,
            },
            "postgresql": {
                "listen": "127.0.0.1:%d" % self.pg_ports[i],
                "connect_address": "127.0.0.1:%d" % self.pg_ports[i],
                "data_dir": os.path.join(d, "data"),
                "bin_dir": PG_BIN,
                "pgpass": os.path.join(d, "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": self.password},
                    "replication": {"username": "replicator", "password": self.repl_password},
                },
                "parameters": {"unix_socket_directories": d},
                "pg_hba": hba,
                "use_pg_rewind": True,
            },
            "watchdog": {"mode": "off"},
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                     "nosync": False},
        }

    def spawn(self, i):
        d = self.node_dir(i)
        uid, gid = postgres_ids()
        logf = open(os.path.join(d, "patroni.log"), "ab")
        env = {"PATH": "/usr/bin:/bin", "HOME": d, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        self.procs[i] = subprocess.Popen(
            ["/usr/bin/patroni", os.path.join(d, "patroni.yml")],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
            user=uid, group=gid, extra_groups=[], start_new_session=True, cwd=d)
        logf.close()

    def start(self, timing):
        """A fresh Patroni cluster (new scope, new data dirs) with the given timing."""
        self.timing = timing
        t = PATRONI_TIMINGS[timing]
        self.loop_wait = float(t["loop_wait"])
        self.failover_timeout = 3.0 * t["ttl"] + 30.0
        self.rejoin_timeout = 180.0
        self.generation += 1
        scope = "bench-%s" % timing
        gdir = os.path.join(self.base, "g%d" % self.generation)
        os.makedirs(gdir, exist_ok=True)
        chown_postgres(gdir)
        log("patroni: starting 3 members, scope %s, ttl %d loop_wait %d retry_timeout %d" % (
            scope, t["ttl"], t["loop_wait"], t["retry_timeout"]))
        for i in range(N):
            d = self.node_dir(i)
            os.makedirs(d, mode=0o700, exist_ok=True)
            chown_postgres(d)
            path = os.path.join(d, "patroni.yml")
            with open(path, "w") as f:
                yaml.safe_dump(self.config(i, scope, timing), f, sort_keys=False)
            os.chmod(path, 0o600)
            chown_postgres(path)
        # the first member bootstraps; the others clone from it
        self.spawn(0)
        if not wait_for("patroni: pnode1 to become leader",
                        lambda: self.leader_index() == 0 or self._role(0) == "master", 120):
            raise RuntimeError("Patroni did not bootstrap: see %s" % self.member_logs()["pnode1"])
        for i in range(1, N):
            self.spawn(i)
        if wait_for("patroni: 1 leader + 2 streaming replicas", self.healthy, 180) is None:
            raise RuntimeError("Patroni did not become healthy: see %s/*/patroni.log" % gdir)

    def stop_members(self):
        # SIGTERM: Patroni stops PostgreSQL and releases the key. Replicas first.
        lead = self.leader_index()
        order = [i for i in range(N) if i != lead] + ([lead] if lead is not None else [])
        for i in order:
            p = self.procs[i]
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(90)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
            self.procs[i] = None
        for i in range(N):
            pm = read_pidfile(os.path.join(self.node_dir(i), "data", "postmaster.pid"))
            terminate(pm, 20, signal.SIGQUIT)

    def stop(self):
        if self.timing is not None:
            log("patroni: stopping the %s-timing cluster" % self.timing)
            self.stop_members()
            self.timing = None

    def stop_etcd(self):
        for p in self.etcd_procs:
            if p.poll() is None:
                p.terminate()
        for p in self.etcd_procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.etcd_procs = []

    # -- state
    def statuses(self):
        return [http_json("http://127.0.0.1:%d/patroni" % p, 3) for p in self.api_ports]

    def _role(self, i):
        s = http_json("http://127.0.0.1:%d/patroni" % self.api_ports[i])
        return s and s.get("state") == "running" and s.get("role")

    def healthy(self):
        """1 leader (role master, holding the key) whose pg_stat_replication shows
        the 2 other members streaming, and those 2 report role replica."""
        st = self.statuses()
        leaders = [i for i, s in enumerate(st) if s and s.get("role") in ("master", "primary")
                   and s.get("state") == "running" and not s.get("cluster_unlocked")]
        if len(leaders) != 1:
            return None
        lead = leaders[0]
        others = {self.names[i] for i in range(N) if i != lead}
        streaming = {r.get("application_name") for r in st[lead].get("replication", [])
                     if r.get("state") == "streaming"}
        replicas_ok = all(st[i] and st[i].get("role") == "replica" and st[i].get("state") == "running"
                          for i in range(N) if i != lead)
        return lead + 1 if others <= streaming and replicas_ok else None

    def leader_index(self):
        h = self.healthy()
        return None if h is None else h - 1

    def leader_info(self):
        for i, s in enumerate(self.statuses()):
            if s and s.get("role") in ("master", "primary"):
                hist = http_json("http://127.0.0.1:%d/history" % self.api_ports[i]) or []
                return {"leader": self.names[i], "timeline": s.get("timeline"),
                        "history": len(hist)}
        return None

    # -- faults
    def kill(self, i):
        p = self.procs[i]
        agent = p.pid if p is not None and p.poll() is None else 0
        pm = read_pidfile(os.path.join(self.node_dir(i), "data", "postmaster.pid"))
        victims = kill_host(agent, pm if pid_alive(pm) else 0)
        wait_gone(victims, 10, reap=lambda: p.poll() if p is not None else None)
        return victims

    def restart(self, i):
        self.spawn(i)
        return 0

    def switchover(self, leader, candidate, timeout):
        """`patronictl switchover --force`: POSTs /switchover to the leader's REST
        API, which writes the failover key, wakes the HA loop and polls the
        result for max(10, loop_wait) x 2 s. patronictl has no timeout of its
        own, hence the one of the subprocess."""
        cmd = ["/usr/bin/patronictl", "-c", os.path.join(self.node_dir(leader), "patroni.yml"),
               "switchover", "--leader", self.names[leader], "--candidate",
               self.names[candidate], "--force"]
        env = {"PATH": "/usr/bin:/bin", "HOME": self.base, "LC_ALL": "C.UTF-8",
               "LANG": "C.UTF-8"}
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout, env=env)
            return r.returncode, (r.stdout + r.stderr).strip()
        except subprocess.TimeoutExpired:
            return None, "timed out after %.0f s" % timeout

    def member_logs(self):
        return {n: os.path.join(self.node_dir(i), "patroni.log") for i, n in enumerate(self.names)}

    def set_sync(self, on):
        """synchronous_mode through Patroni's REST API (PATCH /config), on the
        first member that answers."""
        body = json.dumps({"synchronous_mode": bool(on)}).encode()
        last = None
        for port in self.api_ports:
            req = urllib.request.Request("http://127.0.0.1:%d/config" % port, data=body,
                                         method="PATCH",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = "HTTP %d" % resp.status
            except OSError as e:
                last = str(e)
        raise RuntimeError("Patroni PATCH /config: %s" % last)

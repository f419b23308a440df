"""Issue 14's regression tests: what a hostile local user (postgres) or client must not
get (the proxy's share is in test_proxy*.py and test_faults.py)."""
import json
import os
import pwd
import re
import socket
import struct
import subprocess
import threading
import time

import psycopg2
import pytest

from conftest import PGWARDEN, http, wait_for
from test_proxy_tls import make_certs


def owners(top):
    """{path: uid} of top and everything under it (files that vanish meanwhile skipped)."""
    found = {}
    for root, dirs, files in os.walk(top):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            try:
                found[name] = os.lstat(name).st_uid
            except FileNotFoundError:
                pass
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_up_never_writes_through_a_link_of_postgres(cluster):
    """postgres owns the cluster's folders: a link it puts where `pgwarden up` (run by
    root) writes must not hand it a file of root's. It did: up appended the agent's log
    to the link's target and gave that to postgres (ln -sf /etc/sudoers node1/agent.log)."""
    pg = pwd.getpwnam("postgres")
    victim = os.path.join(os.path.dirname(cluster.dir), "victim")
    with open(victim, "w") as f:
        f.write("root's\n")
    os.chmod(victim, 0o600)
    log = os.path.join(cluster.dir, "node1/agent.log")
    subprocess.run(["runuser", "-u", "postgres", "--", "ln", "-sf", victim, log], check=True,
                   timeout=30)
    cluster.kill(cluster.agent_pid(0))
    wait_for("node1's agent to stop", lambda: cluster.agent_pid(0) is None, 30)

    proc = cluster.up(timeout=30, check=False)
    st = os.stat(victim)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), "up gave root's file away"
    with open(victim) as f:
        assert f.read() == "root's\n", "up wrote into root's file"
    assert proc.returncode != 0, proc.stdout
    assert "agent.log" in proc.stderr and "symbolic link" in proc.stderr, proc.stderr

    # A folder an earlier version made as root (the folder, ports and pgpass root's) is
    # handed to postgres; afterwards nothing in it is root's.
    os.unlink(log)
    for path in (cluster.dir, os.path.join(cluster.dir, "ports"),
                 os.path.join(cluster.dir, "pgpass")):
        os.chown(path, 0, 0)
    cluster.up()
    cluster.wait_healthy()
    root_owned = sorted(p for p, uid in owners(cluster.dir).items() if uid != pg.pw_uid)
    assert not root_owned, "not postgres's: %s" % root_owned[:10]
    assert cluster.run("status", "--dir", cluster.dir).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_refuses_a_folder_of_root_it_did_not_make(shared_cluster):
    """Root hands over to postgres only a folder it made itself: a link postgres made
    to a folder of root's (/etc, say) is refused, and that folder stays root's."""
    target = os.path.join(os.path.dirname(shared_cluster.dir), "roots")
    os.makedirs(target, exist_ok=True)
    link = os.path.join(shared_cluster.dir, "node1", "elsewhere")
    subprocess.run(["runuser", "-u", "postgres", "--", "ln", "-sfn", target, link],
                   check=True, timeout=30)
    try:
        proc = shared_cluster.run("status", "--dir", link, check=False)
        assert proc.returncode != 0 and "symbolic link" in proc.stderr, proc.stderr
        assert os.stat(target).st_uid == 0
        # The folder itself, not made by this run and no cluster's: refused too.
        proc = shared_cluster.run("status", "--dir", target, check=False)
        assert proc.returncode != 0 and "belongs to root" in proc.stderr, proc.stderr
        assert os.stat(target).st_uid == 0
    finally:
        os.unlink(link)


def test_code_from_etcd_is_ignored(shared_cluster):
    """Whoever can write etcd must not run code on the members as postgres: a dynamic
    configuration that sets a command parameter is ignored whole (edit-config refuses
    it; this one is written straight to etcd)."""
    c = shared_cluster
    leader = c.leader()
    doc = {"postgresql": {"parameters": {"ssl_passphrase_command": "touch /tmp/pgw-pwned",
                                         "work_mem": "9MB"}}}
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    endpoint = "--endpoints=http://127.0.0.1:%d" % c.etcd_port
    old = subprocess.run(["etcdctl", endpoint, "get", "--print-value-only",
                          "/service/demo/config"], capture_output=True, text=True,
                         timeout=10, check=True, env=env).stdout.strip()
    subprocess.run(["etcdctl", endpoint, "put", "/service/demo/config", json.dumps(doc)],
                   check=True, timeout=10, env=env, capture_output=True)
    try:
        wait_for("the leader to refuse the configuration", lambda: "ignoring the dynamic "
                 "configuration in etcd" in c.log(leader), 15)
        assert c.query(leader, "SHOW ssl_passphrase_command")[0][0] == ""
        assert c.query(leader, "SHOW work_mem")[0][0] != "9MB"
    finally:
        subprocess.run(["etcdctl", endpoint, "put", "/service/demo/config", old or "{}"],
                       check=True, timeout=10, env=env, capture_output=True)


class FakeServer(threading.Thread):
    """A "PostgreSQL" that asks whoever logs in for a cleartext password, and keeps
    every byte it gets after asking."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.got = b""
        self.logins = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    n, code = struct.unpack("!ii", conn.recv(8, socket.MSG_WAITALL))
                    if code == 80877103:  # SSLRequest: no
                        conn.sendall(b"N")
                        n = struct.unpack("!i", conn.recv(4, socket.MSG_WAITALL))[0]
                        conn.recv(n - 4, socket.MSG_WAITALL)
                    else:
                        conn.recv(n - 8, socket.MSG_WAITALL)
                    self.logins += 1
                    conn.sendall(b"R" + struct.pack("!ii", 8, 3))
                    while True:
                        data = conn.recv(4096)
                        if not data:
                            break
                        self.got += data
                except (OSError, struct.error):
                    pass
        self.sock.close()


@pytest.mark.abuse
def test_proxy_never_shows_a_password_to_a_server_etcd_points_at(shared_cluster):
    """A leader record in etcd can point the proxy at any address: the proxy answers
    only SCRAM there (it sent the plain password to a server asking for cleartext)."""
    c = shared_cluster
    base = c.proxy_port + 5  # the slot's spare ports: pooled, primary, replica, http, fake
    fake = FakeServer(base + 4)
    fake.start()
    work = os.path.join(os.path.dirname(c.dir), "fakeproxy")
    os.makedirs(work, exist_ok=True)
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    endpoint = "--endpoints=http://127.0.0.1:%d" % c.etcd_port
    member = {"host": "127.0.0.1", "port": base + 4, "role": "primary", "state": "running",
              "timeline": 1, "api_url": "http://127.0.0.1:9/"}
    for key, value in (("/service/fakecl/members/node1", json.dumps(member)),
                       ("/service/fakecl/leader", "node1")):
        subprocess.run(["etcdctl", endpoint, "put", key, value], check=True, timeout=10,
                       env=env, capture_output=True)
    with open(os.path.join(c.dir, "proxy/proxy.ini")) as f:
        ini = f.read()
    ini = re.sub(r"(?m)^name = demo$", "name = fakecl", ini)
    for key, port in (("pooled_port", base), ("primary_port", base + 1),
                      ("replica_port", base + 2), ("http_port", base + 3)):
        ini = re.sub(r"(?m)^%s = \d+$" % key, "%s = %d" % (key, port), ini)
    password = re.search(r'"postgres" "([^"]+)"',
                         open(os.path.join(c.dir, "proxy/userlist.txt")).read()).group(1)

    def attempt(extra):
        with open(os.path.join(work, "proxy.ini"), "w") as f:
            f.write(ini + extra)
        log = open(os.path.join(work, "proxy.log"), "w")
        proc = subprocess.Popen([PGWARDEN, "proxy", "-c", os.path.join(work, "proxy.ini")],
                                stdout=log, stderr=subprocess.STDOUT, env=c.env)
        try:
            def tried():
                try:
                    psycopg2.connect(host="127.0.0.1", port=base, user="postgres",
                                     dbname="postgres", password=password,
                                     connect_timeout=3).close()
                except psycopg2.OperationalError:
                    pass
                return fake.logins > 0
            wait_for("the proxy to log in to the fake server", tried, 30)
            time.sleep(0.5)  # what it sends after the request, if anything
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
        with open(os.path.join(work, "proxy.log")) as f:
            return f.read()

    try:
        text = attempt("")
        assert password.encode() not in fake.got, "the proxy sent the password"
        assert "refused (server_plain_auth = off)" in text, text[-2000:]
        # Allowed by configuration, it answers (the fake server is a real test).
        fake.logins = 0
        attempt("server_plain_auth = on\n")
        assert password.encode() in fake.got
        # [cluster] allowed_networks: a member record naming an address outside is
        # ignored, as if absent: nothing is sent there.
        fake.logins = 0
        fake.got = b""
        with open(os.path.join(work, "proxy.ini"), "w") as f:
            f.write(ini.replace("name = fakecl\n",
                                "name = fakecl\nallowed_networks = 10.0.0.0/8\n", 1) +
                    "server_plain_auth = on\n")
        log = open(os.path.join(work, "proxy.log"), "w")
        proc = subprocess.Popen([PGWARDEN, "proxy", "-c", os.path.join(work, "proxy.ini")],
                                stdout=log, stderr=subprocess.STDOUT, env=c.env)
        try:
            wait_for("the proxy to ignore the member", lambda: "not within allowed_networks"
                     in open(os.path.join(work, "proxy.log")).read(), 30)
            with pytest.raises(psycopg2.OperationalError):
                psycopg2.connect(host="127.0.0.1", port=base, user="postgres",
                                 dbname="postgres", password=password,
                                 connect_timeout=3).close()
            assert fake.logins == 0 and password.encode() not in fake.got
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    finally:
        fake.stop.set()
        for key in ("/service/fakecl/members/node1", "/service/fakecl/leader"):
            subprocess.run(["etcdctl", endpoint, "del", key], timeout=10, env=env,
                           capture_output=True)


def test_failed_logins_logged_once_a_line(shared_cluster):
    """A failed login is logged at info (it was at debug only), with the user name a
    client chose escaped: a newline in it cannot forge a log line."""
    c = shared_cluster
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host="127.0.0.1", port=c.proxy_port, user="evil\nFORGED line",
                         dbname="postgres", password="wrong", connect_timeout=5).close()

    def logged():
        lines = c.proxy_log().splitlines()
        return [ln for ln in lines if "failed login from" in ln and "evil" in ln] or None
    lines = wait_for("the failed login in the proxy's log", logged, 10)
    assert "evil\\nFORGED line" in lines[-1], lines
    assert not [ln for ln in c.proxy_log().splitlines() if ln.startswith("FORGED")]


@pytest.mark.abuse
def test_silent_connections_do_not_lock_clients_out(cluster):
    """Connections that never log in (300 from one address, with 256 open files) must
    not lock others out: they made accept() fail for everyone (1,100 idle connections
    at a 1,024 limit). Now logins in progress per address are capped, a connection must
    send its startup packet within client_startup_timeout, and open files are kept for
    servers."""
    c = cluster
    with open(os.path.join(c.dir, "proxy/proxy.ini"), "a") as f:
        f.write("max_logins_per_address = 32\nclient_startup_timeout = 2s\n")
    c.kill(c.proxy_pid(), 15)
    wait_for("the proxy to stop", lambda: c.proxy_pid() is None, 30)
    subprocess.run(["prlimit", "--nofile=256:256", PGWARDEN, "up", "--dir", c.dir],
                   check=True, capture_output=True, env=c.env, timeout=120)
    wait_for("the proxy to serve", lambda: psycopg2.connect(c.proxy_dsn()), 30).close()

    silent = []
    for _ in range(300):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", c.proxy_port))
        silent.append(s)
    for _ in range(5):
        started = time.monotonic()
        conn = psycopg2.connect(c.proxy_dsn())
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        conn.close()
        assert time.monotonic() - started < 3
    refused = 0
    for s in silent:  # refused at once with 53300, or closed after client_startup_timeout
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as err:
            raise AssertionError("a silent connection stayed open: %s" % err)
        refused += b"max_logins_per_address" in data
        s.close()
    assert refused >= 300 - 32, refused
    assert "too many logins in progress from 127.0.0.2" in c.proxy_log()


@pytest.mark.parametrize("server", ["rest-api", "status-page"])
@pytest.mark.abuse
def test_slow_http_clients_do_not_stop_health_checks(shared_cluster, server):
    """Connections that trickle a header line every second (220 from one address) took
    every REST API thread (/health failed, and a failover race skipped the member) or
    every connection of the proxy's status page. Now 32 at most come from one address
    and a request must arrive whole within 5 s."""
    c = shared_cluster
    leader = c.leader()
    if server == "rest-api":
        port = c.api_port + leader

        def healthy():
            return c.api(leader, "/health", timeout=2)[0] == 200
    else:
        port = c.proxy_port + 3

        def healthy():
            return http("GET", "http://127.0.0.1:%d/metrics" % port, timeout=2)[0] == 200
    slow = []
    for _ in range(220):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        except OSError:
            s.close()
    try:
        end = time.monotonic() + 8
        while time.monotonic() < end:
            for s in slow:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
            started = time.monotonic()
            assert healthy()
            assert time.monotonic() - started < 1
            time.sleep(1)  # the attack's pace: a header line a second
        # The server closed every one of them: refused, or cut at the deadline.
        for s in slow:
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("a slow connection is still open after 8 s")
    finally:
        for s in slow:
            s.close()


def test_etcd_with_tls_and_authentication(cluster_factory):
    """pgwarden up --etcd-tls: a throw-away CA, etcd over TLS with client certificates
    for clients and peers, and authentication on (user root). The cluster works through
    it; etcd refuses plain HTTP, TLS without a certificate, and a certificate without the
    password; the folder keeps TLS on the next up."""
    c = cluster_factory()
    c.up(extra=("--etcd-tls",))
    leader = c.wait_healthy()
    conn = psycopg2.connect(c.proxy_dsn())
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()
    assert "Leader" in c.run("list", "--dir", c.dir).stdout
    tls = os.path.join(c.dir, "etcd-tls")
    for f in ("ca.key", "client.key", "etcd.key", "etcd-root-password"):
        assert os.stat(os.path.join(tls, f)).st_uid == pwd.getpwnam("postgres").pw_uid
    assert os.stat(tls).st_mode & 0o077 == 0
    with open(os.path.join(tls, "etcd-root-password")) as f:
        password = f.read().strip()
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    https = "--endpoints=https://127.0.0.1:%d" % c.etcd_port
    cert = ["--cacert", os.path.join(tls, "ca.crt"), "--cert", os.path.join(tls, "client.crt"),
            "--key", os.path.join(tls, "client.key")]
    quick = ["--dial-timeout=2s", "--command-timeout=3s"]

    def etcdctl(*args):
        return subprocess.run(["etcdctl", *quick, *args], capture_output=True, text=True,
                              env=env, timeout=30)
    key = "/service/demo/leader"
    ok = etcdctl(https, *cert, "--user", "root:" + password, "get", "--print-value-only", key)
    assert ok.returncode == 0 and ok.stdout.strip() == "node%d" % (leader + 1), ok
    for args in (["--endpoints=http://127.0.0.1:%d" % c.etcd_port],  # plain HTTP
                 [https, "--cacert", os.path.join(tls, "ca.crt")],  # no client certificate
                 [https, *cert]):  # a certificate, no password
        bad = etcdctl(*args, "get", key)
        assert bad.returncode != 0, (args, bad.stdout)
    assert "permission denied" in bad.stderr, bad.stderr
    # The next up (without the option) keeps TLS; one asking for TLS on a plain folder
    # is refused.
    c.up()
    assert "https://" in open(os.path.join(c.dir, "node1/node.ini")).read()
    plain = cluster_factory()
    plain.up()
    proc = plain.up(extra=("--etcd-tls",), check=False)
    assert proc.returncode != 0 and "was made without --etcd-tls" in proc.stderr, proc.stderr


def test_scram_auth_type_never_offers_md5(shared_cluster):
    """auth_type = scram-sha-256 offered MD5 to a user whose secret in the auth file is
    an MD5 hash; it now refuses that login (auth_type = md5 allows it)."""
    import hashlib
    c = shared_cluster
    userlist = os.path.join(c.dir, "proxy/userlist.txt")
    with open(userlist) as f:
        before = f.read()
    secret = "md5" + hashlib.md5(b"pw-of-oldie" + b"oldie").hexdigest()
    try:
        with open(userlist, "a") as f:
            f.write('"oldie" "%s"\n' % secret)
        reloads = c.proxy_log().count("userlist.txt: ")
        c.kill(c.proxy_pid(), 1)  # SIGHUP: the auth file again
        wait_for("the proxy to reload its users",
                 lambda: c.proxy_log().count("userlist.txt: ") > reloads, 10)
        s = socket.create_connection(("127.0.0.1", c.proxy_port), timeout=5)
        s.sendall(_startup("oldie"))
        kind, body = _read_msg(s)
        s.close()
        # Before: AuthenticationMD5Password (R, code 5). Now: an ErrorResponse.
        assert kind == b"E" and b"28P01" in body, (kind, body)
        assert "has only an MD5 secret and auth_type is scram-sha-256" in c.proxy_log()
    finally:
        with open(userlist, "w") as f:
            f.write(before)
        c.kill(c.proxy_pid(), 1)


def _startup(user):
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0postgres\0\0"
    return struct.pack("!i", len(body) + 4) + body


def _read_msg(s):
    head = s.recv(5, socket.MSG_WAITALL)
    n = struct.unpack("!i", head[1:5])[0]
    return head[:1], s.recv(n - 4, socket.MSG_WAITALL)



def test_cancel_toward_a_silent_server_does_not_stall_the_proxy(shared_cluster):
    """The proxy forwarded a CancelRequest with a blocking connect on its event loop:
    toward a server that does not answer new connections, every client stalled a second
    per cancel. Now the cancel goes on its own, and others are served meanwhile."""
    c = shared_cluster
    leader = c.leader()
    session = dict(host="127.0.0.1", port=c.proxy_port + 1, user="postgres",
                   dbname="postgres", passfile=os.path.join(c.dir, "pgpass"),
                   connect_timeout=5)
    a, b = psycopg2.connect(**session), psycopg2.connect(**session)
    a.autocommit = b.autocommit = True
    rule = ["INPUT", "-i", "lo", "-p", "tcp", "--syn", "--dport", str(c.pg_port + leader),
            "-j", "DROP"]
    done = threading.Event()

    def sleeper():
        try:
            with a.cursor() as cur:
                cur.execute("SELECT pg_sleep(3)")
        except psycopg2.Error:
            pass
        done.set()
    subprocess.run(["iptables", "-I"] + rule, check=True, timeout=30)
    try:
        t = threading.Thread(target=sleeper, daemon=True)
        t.start()
        def sleeping():  # asked on b's own server connection (new ones are dropped)
            with b.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)'")
                return cur.fetchall()
        wait_for("the sleep to run", sleeping, 10)
        worst = worst_cancel = 0.0
        for _ in range(5):
            took = []

            def cancel():  # to the proxy, which forwards it toward the silent port
                started = time.monotonic()
                a.cancel()
                took.append(time.monotonic() - started)
            t = threading.Thread(target=cancel)
            started = time.monotonic()
            t.start()
            with b.cursor() as cur:
                cur.execute("SELECT 1")
            worst = max(worst, time.monotonic() - started)
            t.join(10)
            worst_cancel = max([worst_cancel] + took)
        assert worst < 0.5, "a query waited %.2f s behind a cancel" % worst
        assert worst_cancel < 0.5, "a CancelRequest took %.2f s" % worst_cancel
    finally:
        subprocess.run(["iptables", "-D"] + rule, check=True, timeout=30)
        done.wait(15)
        a.close()
        b.close()


def test_auth_query_remembers_users_it_did_not_find(cluster):
    """Each login as an unknown user opened a connection to the primary for auth_query;
    an unknown name is now remembered for 10 s, and lookups are bounded per second."""
    c = cluster
    c.restart_proxy("auth_user = postgres\n")
    wait_for("the proxy to serve", lambda: psycopg2.connect(c.proxy_dsn()), 30).close()
    for _ in range(30):
        with pytest.raises(psycopg2.OperationalError) as exc:
            psycopg2.connect(host="127.0.0.1", port=c.proxy_port, user="ghost",
                             dbname="postgres", password="x", connect_timeout=5).close()
        assert "password authentication failed" in str(exc.value), exc.value
    assert c.proxy_log().count('auth_query: no user "ghost"') == 1, c.proxy_log()[-3000:]


def test_rest_api_over_tls(cluster_factory):
    """[api] certfile/keyfile: the REST API serves https only; agents (failover races,
    switchover), the CLI, up and the proxy's health checks verify it against [api]
    cafile (the proxy's api_cafile)."""
    c = cluster_factory()
    certs = make_certs(os.path.join(os.path.dirname(c.dir), "api-tls"))
    ca = certs["ca.crt"]
    c.env.update(PGWARDEN_API_CERTFILE=certs["server.crt"],
                 PGWARDEN_API_KEYFILE=certs["server.key"],
                 PGWARDEN_API_CAFILE=ca, PGWARDEN_PROXY_API_CAFILE=ca)
    c.up()  # waits for a leader and two streaming replicas over https
    health = subprocess.run(["curl", "-sS", "--cacert", ca, "https://127.0.0.1:%d/health"
                             % c.api_port], capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stderr
    plain = subprocess.run(["curl", "-sS", "-m", "5", "http://127.0.0.1:%d/health"
                            % c.api_port], capture_output=True, text=True, timeout=30)
    assert plain.returncode != 0 or "HTTP" not in plain.stdout, plain.stdout
    assert c.run("reload", "--dir", c.dir, "node2").returncode == 0
    # The CLI checks the certificate: another CA, and it refuses to talk.
    wrong = dict(c.env, PGWARDEN_API_CAFILE="/etc/ssl/certs/ca-certificates.crt")
    proc = subprocess.run([PGWARDEN, "reload", "--dir", c.dir, "node2"], capture_output=True,
                          text=True, env=wrong, timeout=60)
    assert proc.returncode != 0, proc.stdout
    assert "certificate" in proc.stderr.lower() or "ssl" in proc.stderr.lower(), proc.stderr
    # The proxy's replica port needs its health checks of the members (https).
    conn = wait_for("a session on a replica through the proxy", lambda: psycopg2.connect(
        c.proxy_dsn(2)), 30)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        assert cur.fetchone() == (True,)
    conn.close()

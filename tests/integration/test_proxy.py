"""pgwarden proxy: routing of each port, transaction pooling, authentication, limits,
cancel, COPY, and the leader change closing server connections to the old primary."""
import os
import subprocess
import threading
import time

import psycopg2
import pytest

import pgwire
from conftest import wait_for

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def proxy_conn(cluster, offset=0, autocommit=True, **extra):
    conn = psycopg2.connect(cluster.proxy_dsn(offset, **extra))
    conn.autocommit = autocommit
    return conn


def one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0] if cur.description else None


def proxy_servers(cluster, i):
    """Server connections the proxy holds on member i."""
    return cluster.query(i, "SELECT count(*) FROM pg_stat_activity"
                            " WHERE application_name = 'pgwarden-proxy' AND backend_type = "
                            "'client backend'")[0][0]


def test_each_port_routes_where_it_should(shared_cluster):
    cluster = shared_cluster
    leader = cluster.leader()
    for offset in (0, 1):
        conn = proxy_conn(cluster, offset)
        assert one(conn, "SELECT pg_is_in_recovery()") is False
        assert one(conn, "SELECT inet_server_port()") == cluster.pg_port + leader
        one(conn, "INSERT INTO t (id) VALUES (%s)", (offset + 1,))
        conn.close()
    wait_for("a replica healthy in the proxy's eyes", lambda: _replica_ok(cluster), 20)
    replicas = {cluster.pg_port + i for i in range(cluster.N) if i != leader}
    ports = set()

    def both_replicas_used():
        # A replica counts once its agent reports it healthy (checked once a second).
        conn = proxy_conn(cluster, 2)
        assert one(conn, "SELECT pg_is_in_recovery()") is True
        ports.add(one(conn, "SELECT inet_server_port()"))
        conn.close()
        return ports == replicas
    wait_for("sessions balanced over both replicas", both_replicas_used, 20)
    assert ports == replicas
    conn = proxy_conn(cluster, 2)
    with pytest.raises(psycopg2.Error) as exc:
        one(conn, "INSERT INTO t (id) VALUES (99)")
    assert exc.value.pgcode == "25006"
    conn.close()


def _replica_ok(cluster):
    try:
        conn = proxy_conn(cluster, 2)
    except psycopg2.Error:
        return False
    try:
        return one(conn, "SELECT pg_is_in_recovery()")
    finally:
        conn.close()


def test_transaction_pooling_many_clients_few_servers(cluster):
    leader = cluster.leader()
    clients = [proxy_conn(cluster) for _ in range(60)]
    errors = []

    def work(conn, k):
        try:
            for j in range(10):
                with conn.cursor() as cur:
                    cur.execute("BEGIN")
                    cur.execute("INSERT INTO t (id) VALUES (%s)", (1000 + k * 100 + j,))
                    cur.execute("SELECT pg_sleep(0.005)")
                    cur.execute("COMMIT")
        except psycopg2.Error as exc:
            errors.append(str(exc))
    threads = [threading.Thread(target=work, args=(c, k)) for k, c in enumerate(clients)]
    for th in threads:
        th.start()
    peak = 0
    while any(th.is_alive() for th in threads):
        peak = max(peak, proxy_servers(cluster, leader))
        time.sleep(0.05)
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    assert cluster.query(leader, "SELECT count(*) FROM t WHERE id >= 1000")[0][0] == 600
    assert 1 <= peak <= 20, peak  # default_pool_size
    for c in clients:
        c.close()


def test_authentication(shared_cluster):
    cluster = shared_cluster
    conn = proxy_conn(cluster)
    assert one(conn, "SELECT current_user") == "postgres"
    conn.close()
    for kwargs in ({"password": "wrong", "passfile": "/dev/null"},
                   {"user": "nobody", "password": "x", "passfile": "/dev/null"}):
        with pytest.raises(psycopg2.OperationalError) as exc:
            proxy_conn(cluster, **kwargs)
        assert "password authentication failed" in str(exc.value)
    # On the wire: 28P01 for a wrong password and for an unknown user alike.
    for user, password in (("postgres", "wrong"), ("nobody", "x")):
        s = pgwire.connect(cluster.proxy_port)
        err = pgwire.scram_login(s, user, password)
        s.close()
        assert err and err["C"] == "28P01" and err["S"] == "FATAL", err
    # And the right password works with the same client.
    s = pgwire.connect(cluster.proxy_port)
    assert pgwire.scram_login(s, "postgres", _superuser_password(cluster)) is None
    s.close()


def _superuser_password(cluster):
    import re
    ini = open(os.path.join(cluster.dir, "node1/node.ini")).read()
    return re.search(r"^superuser_password = (\S+)$", ini, re.M).group(1)


def test_malformed_packets_get_08P01_and_others_keep_working(shared_cluster):
    cluster = shared_cluster
    good = proxy_conn(cluster)
    # A startup packet with a length below the minimum.
    s = pgwire.connect(cluster.proxy_port)
    s.sendall(b"\x00\x00\x00\x02garbage")
    t, body = pgwire.read_msg(s)
    assert t == b"E" and pgwire.error_fields(body)["C"] == "08P01"
    s.close()
    # Protocol 2: refused with a reason.
    s = pgwire.connect(cluster.proxy_port)
    s.sendall(b"\x00\x00\x00\x08\x00\x02\x00\x00")
    t, body = pgwire.read_msg(s)
    assert t == b"E" and pgwire.error_fields(body)["C"] == "08P01"
    s.close()
    # A message with a negative length after login.
    s = pgwire.connect(cluster.proxy_port)
    assert pgwire.scram_login(s, "postgres", _superuser_password(cluster)) is None
    s.sendall(b"Q\xff\xff\xff\xf0")
    t, body = pgwire.read_msg(s)
    assert t == b"E" and pgwire.error_fields(body)["C"] == "08P01"
    s.close()
    assert one(good, "SELECT 42") == 42
    good.close()


def test_pgbench_simple_and_extended(shared_cluster):
    cluster = shared_cluster
    leader = cluster.leader()
    env = cluster.pgbench_init(leader)
    for mode in ("simple", "extended"):
        proc = subprocess.run([PGBENCH, "-n", "-c", "8", "-j", "2", "-T", "4", "-M", mode, "-h",
                               "127.0.0.1", "-p", str(cluster.proxy_port), "-U", "postgres",
                               "postgres"], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "number of failed transactions: 0" in proc.stdout, proc.stdout


def test_copy_both_ways_and_cancel(shared_cluster):
    cluster = shared_cluster
    conn = proxy_conn(cluster)
    with conn.cursor() as cur:
        import io
        cur.copy_expert("COPY t (id) FROM STDIN", io.StringIO("".join(
            "%d\n" % i for i in range(5000, 5100))))
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT id FROM t WHERE id BETWEEN 5000 AND 5099 ORDER BY id) "
                        "TO STDOUT", out)
        assert out.getvalue().split() == [str(i) for i in range(5000, 5100)]
    # Cancel reaches the query's server.
    started = time.monotonic()
    timer = threading.Timer(0.5, conn.cancel)
    timer.start()
    with pytest.raises(psycopg2.Error) as exc:
        one(conn, "SELECT pg_sleep(20)")
    assert exc.value.pgcode == "57014"
    assert time.monotonic() - started < 10
    assert one(conn, "SELECT 1") == 1  # the connection still works
    conn.close()


def test_client_killed_mid_query_does_not_poison_the_pool(shared_cluster):
    cluster = shared_cluster
    code = ("import psycopg2,sys; c=psycopg2.connect(sys.argv[1]); c.autocommit=True;"
            "cur=c.cursor(); cur.execute('BEGIN'); cur.execute('INSERT INTO t (id) VALUES (777)');"
            "cur.execute('SELECT pg_sleep(30)')")
    proc = subprocess.Popen(["/usr/bin/python3", "-c", code, cluster.proxy_dsn()])
    leader = cluster.leader()
    wait_for("the query running", lambda: cluster.query(
        leader, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
    )[0][0] == 1, 20)
    proc.kill()
    proc.wait()
    # Its server connection is dropped (not reused mid-transaction): the insert is gone.
    wait_for("the abandoned query gone", lambda: cluster.query(
        leader, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
    )[0][0] == 0, 20)
    conn = proxy_conn(cluster)
    for _ in range(30):
        assert one(conn, "SELECT txid_current_if_assigned() IS NULL") is True
        assert one(conn, "SELECT count(*) FROM t WHERE id = 777") == 0
    conn.close()


def test_limits_answer_with_sqlstates(cluster_factory):
    c = cluster_factory()
    c.up()
    c.wait_healthy()
    ini = os.path.join(c.dir, "proxy/proxy.ini")
    with open(ini, "a") as f:
        f.write("max_client_conn = 3\ndefault_pool_size = 1\nquery_wait_timeout = 1s\n")
    c.kill(c.proxy_pid(), 15)
    wait_for("the proxy to stop", lambda: c.proxy_pid() is None, 20)
    c.up()
    held = [proxy_conn(c) for _ in range(3)]
    with pytest.raises(psycopg2.OperationalError) as exc:
        proxy_conn(c)
    assert "max_client_conn" in str(exc.value)
    # One server: a second transaction waits, then gives up after query_wait_timeout.
    one(held[0], "BEGIN")  # held[0] keeps the server inside its transaction
    one(held[0], "SELECT 1")
    held[1].close()  # room for the raw client below (max_client_conn 3)
    s = pgwire.connect(c.proxy_port)
    assert pgwire.scram_login(s, "postgres", _superuser_password(c)) is None
    started = time.monotonic()
    pgwire.send_msg(s, b"Q", b"SELECT 1\0")
    err = pgwire.read_until_error_or_ready(s)
    s.close()
    assert err and err["C"] == "57014" and "query_wait_timeout" in err["M"], err
    assert 0.8 < time.monotonic() - started < 5
    one(held[0], "ROLLBACK")
    assert one(held[2], "SELECT 2") == 2
    for h in (held[0], held[2]):
        h.close()


def test_leader_change_closes_server_connections_to_the_old_primary(cluster):
    old = cluster.leader()
    conn = proxy_conn(cluster)
    assert one(conn, "SELECT inet_server_port()") == cluster.pg_port + old
    assert proxy_servers(cluster, old) >= 1
    new = (old + 1) % cluster.N
    cluster.run("switchover", "--dir", cluster.dir, "--candidate", "node%d" % (new + 1),
                "--force")
    assert cluster.wait_healthy() == new
    wait_for("no proxy connection left on the old primary",
             lambda: proxy_servers(cluster, old) == 0, 15)

    def on_new():
        try:
            c = proxy_conn(cluster)
            try:
                return one(c, "SELECT inet_server_port()") == cluster.pg_port + new
            finally:
                c.close()
        except psycopg2.Error:
            return False
    wait_for("writes through the proxy on the new leader", on_new, 20)
    assert "routing writes to node%d" % (new + 1) in cluster.proxy_log()


def admin(cluster, sql):
    """Runs sql on the admin console; returns (column names, rows)."""
    conn = psycopg2.connect(cluster.proxy_dsn(dbname="pgbouncer"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            if cur.description is None:
                return None, cur.statusmessage
            return [d.name for d in cur.description], cur.fetchall()
    finally:
        conn.close()


def test_admin_console(shared_cluster):
    cluster = shared_cluster
    conn = proxy_conn(cluster)
    one(conn, "SELECT 1")
    cols, rows = admin(cluster, "SHOW POOLS")
    assert cols[:4] == ["database", "user", "cl_active", "cl_waiting"]
    assert {"sv_active", "sv_idle", "sv_login", "maxwait", "maxwait_us", "pool_mode"} <= set(cols)
    pools = {(r[0], r[1]): dict(zip(cols, r)) for r in rows}
    assert pools[("postgres", "postgres")]["pool_mode"] == "transaction"
    assert pools[("postgres", "postgres")]["cl_active"] >= 1
    cols, rows = admin(cluster, "SHOW STATS")
    assert cols[:3] == ["database", "total_server_assignment_count", "total_xact_count"]
    stats = {r[0]: dict(zip(cols, r)) for r in rows}
    assert stats["postgres"]["total_query_count"] >= 1
    cols, rows = admin(cluster, "SHOW CLIENTS")
    assert cols[:5] == ["type", "user", "database", "replication", "state"]
    assert any(r[0] == "C" and r[2] == "postgres" for r in rows)
    cols, rows = admin(cluster, "SHOW SERVERS")
    assert all(r[0] == "S" for r in rows) and rows
    cols, rows = admin(cluster, "SHOW DATABASES")
    assert cols[:3] == ["name", "host", "port"]
    leader = cluster.leader()
    assert [r for r in rows if r[0] == "postgres"][0][2] == cluster.pg_port + leader
    cols, rows = admin(cluster, "SHOW CONFIG")
    assert cols == ["key", "value", "default", "changeable"]
    config = {r[0]: r[1] for r in rows}
    assert config["default_pool_size"] == "20" and config["auth_type"] == "scram-sha-256"
    cols, rows = admin(cluster, "SHOW LISTS")
    assert dict(rows)["used_clients"] >= 1
    cols, rows = admin(cluster, "SHOW VERSION")
    assert "PgBouncer" in rows[0][0] and "pgwarden" in rows[0][0]
    # PAUSE holds new transactions; RESUME lets them run.
    assert admin(cluster, "PAUSE")[1] == "PAUSE"
    result = {}

    def paused_query():
        result["value"] = one(conn, "SELECT 7")
    th = threading.Thread(target=paused_query)
    th.start()
    th.join(1.5)
    assert th.is_alive() and "value" not in result
    assert admin(cluster, "RESUME")[1] == "RESUME"
    th.join(10)
    assert result.get("value") == 7
    assert admin(cluster, "RELOAD")[1] == "RELOAD"
    with pytest.raises(psycopg2.Error) as exc:
        admin(cluster, "SHOW NONSENSE")
    assert exc.value.pgcode == "42704"
    # The extended protocol is refused with 08P01 (psycopg2 uses the simple protocol:
    # send a Parse by hand).
    s = pgwire.connect(cluster.proxy_port)
    assert pgwire.scram_login(s, "postgres", _superuser_password(cluster),
                              database="pgbouncer") is None
    pgwire.send_msg(s, b"P", b"\0SHOW POOLS\0\0\0")
    err = pgwire.read_until_error_or_ready(s)
    assert err["C"] == "08P01" and "extended query protocol" in err["M"]
    s.close()
    conn.close()


def test_auth_query_for_users_not_in_the_auth_file(cluster):
    leader = cluster.leader()
    cluster.query(leader, "CREATE ROLE app LOGIN PASSWORD 'app-secret'")
    cluster.query(leader, "GRANT ALL ON t TO app")
    cluster.restart_proxy("auth_user = postgres\nlog_level = debug\n")
    conn = proxy_conn(cluster, user="app", password="app-secret", passfile="/dev/null")
    assert one(conn, "SELECT current_user") == "app"
    one(conn, "INSERT INTO t (id) VALUES (4242)")  # the server login went through as app
    conn.close()
    for user, password in (("app", "wrong"), ("ghost", "x")):
        s = pgwire.connect(cluster.proxy_port)
        err = pgwire.scram_login(s, user, password)
        s.close()
        assert err and err["C"] == "28P01", (user, err)
    # A new password on the server is seen at the next login.
    cluster.query(leader, "ALTER ROLE app PASSWORD 'changed'")
    conn = proxy_conn(cluster, user="app", password="changed", passfile="/dev/null")
    assert one(conn, "SELECT count(*) FROM t WHERE id = 4242") == 1
    conn.close()


def test_reload_keeps_clients_and_sigterm_drains(cluster):
    conn = proxy_conn(cluster)
    assert one(conn, "SELECT 1") == 1
    with open(os.path.join(cluster.dir, "proxy/proxy.ini"), "a") as f:
        f.write("default_pool_size = 7\nquery_wait_timeout = 33s\n")
    assert admin(cluster, "RELOAD")[1] == "RELOAD"
    config = {r[0]: r[1] for r in admin(cluster, "SHOW CONFIG")[1]}
    assert config["default_pool_size"] == "7" and config["query_wait_timeout"] == "33000"
    assert one(conn, "SELECT 2") == 2  # the same client connection, still served
    # SIGTERM: a transaction in flight finishes; then the proxy exits.
    one(conn, "BEGIN")
    one(conn, "INSERT INTO t (id) VALUES (9191)")
    pid = cluster.proxy_pid()
    cluster.kill(pid, 15)
    wait_for("the listeners closed", lambda: _refused(cluster), 10)
    assert cluster.proxy_pid() == pid  # still draining
    one(conn, "COMMIT")
    wait_for("the proxy to exit", lambda: cluster.proxy_pid() is None, 15)
    leader = cluster.leader()
    assert cluster.query(leader, "SELECT count(*) FROM t WHERE id = 9191")[0][0] == 1
    assert "SIGTERM: draining" in cluster.proxy_log()


def _refused(cluster):
    try:
        proxy_conn(cluster).close()
        return False
    except psycopg2.OperationalError:
        return True


def _ext(parse_sql):
    """Parse + Bind + Execute of an unnamed statement, without Sync."""
    return [(b"P", b"\0" + parse_sql.encode() + b"\0\0\0"),
            (b"B", b"\0\0\0\0\0\0\0\0"),
            (b"E", b"\0\0\0\0\0")]


def test_pool_boundaries_slow_client_extended_and_copy(cluster):
    cluster.restart_proxy("default_pool_size = 1\n")
    pw = _superuser_password(cluster)
    # 1. A client that reads a large result slowly: its server gets paused, then must be
    #    heard again by the next client.
    s = pgwire.connect(cluster.proxy_port)
    assert pgwire.scram_login(s, "postgres", pw) is None
    pgwire.send_msg(s, b"Q", b"SELECT repeat('x', 1000) FROM generate_series(1, 20000)\0")
    time.sleep(1.0)  # nothing read: the proxy's buffer for us fills, the server is paused
    rows = 0
    while True:
        t, body = pgwire.read_msg(s)
        rows += t == b"D"
        if t == b"Z":
            break
    assert rows == 20000
    done = {}

    def other():
        c = proxy_conn(cluster)
        done["v"] = one(c, "SELECT 1")
        c.close()
    th = threading.Thread(target=other)
    th.start()
    th.join(10)
    assert done.get("v") == 1, "the next client hung on a server left paused"
    # 2. Extended protocol without Sync yet: the server stays with its client.
    for t, body in _ext("INSERT INTO t (id) VALUES (5555)"):
        pgwire.send_msg(s, t, body)

    def server_linked():
        cols, rows = admin(cluster, "SHOW POOLS")
        pool = [dict(zip(cols, r)) for r in rows if r[0] == "postgres"][0]
        return pool["sv_active"] == 1
    wait_for("the unsynced request holding the server", server_linked, 10)
    seen = {}

    def reader():
        c = proxy_conn(cluster)
        seen["v"] = one(c, "SELECT count(*) FROM t WHERE id = 5555")
        c.close()
    th = threading.Thread(target=reader)
    th.start()
    th.join(1.0)
    assert th.is_alive(), "another client got the server in the middle of an unsynced request"
    pgwire.send_msg(s, b"S", b"")
    assert pgwire.read_until_error_or_ready(s) is None
    th.join(10)
    assert seen.get("v") == 1
    # 3. COPY FROM STDIN through the extended protocol (as PQexecParams does) releases
    #    the server afterwards.
    for t, body in _ext("COPY t (id) FROM STDIN"):
        pgwire.send_msg(s, t, body)
    pgwire.send_msg(s, b"S", b"")
    t, body = pgwire.read_msg(s)
    while t != b"G":
        t, body = pgwire.read_msg(s)
    pgwire.send_msg(s, b"d", b"6001\n6002\n")
    pgwire.send_msg(s, b"c", b"")
    pgwire.send_msg(s, b"S", b"")
    assert pgwire.read_until_error_or_ready(s) is None
    c = proxy_conn(cluster)
    assert one(c, "SELECT count(*) FROM t WHERE id IN (6001, 6002)") == 2  # pool size 1
    c.close()
    s.close()


@pytest.mark.abuse
def test_made_up_database_names_leave_no_pool(cluster):
    """Issue 14 item 2: a pool was made for every database name a client logged in with,
    before PostgreSQL said it does not exist, and never freed (30,000 made-up names: the
    proxy grew by 160 MB and logins slowed 400-fold). Now such a pool goes with its last
    client, an unused pool goes after pool_idle_timeout, and max_pools bounds them."""
    cluster.restart_proxy("max_pools = 5\npool_idle_timeout = 1s\nserver_idle_timeout = 1s\n")
    first = wait_for("the proxy to serve", lambda: proxy_conn(cluster), 30)
    for i in range(300):
        with pytest.raises(psycopg2.OperationalError) as exc:
            proxy_conn(cluster, dbname="madeup%d" % i)
        assert "does not exist" in str(exc.value), exc.value
    cols, rows = admin(cluster, "SHOW POOLS")
    dbs = [r[cols.index("database")] for r in rows]
    assert not [d for d in dbs if d.startswith("madeup")], dbs
    assert len(dbs) <= 5, dbs

    # max_pools: five pools in use (postgres's and four more), a sixth database gets
    # 53300 and the others go on.
    leader = cluster.leader()
    for i in range(5):
        cluster.query(leader, "CREATE DATABASE pools%d" % i)
    held = [proxy_conn(cluster, dbname="pools%d" % i) for i in range(4)]
    with pytest.raises(psycopg2.OperationalError) as exc:
        proxy_conn(cluster, dbname="pools4")
    assert "too many pools" in str(exc.value), exc.value
    assert [one(h, "SELECT current_database()") for h in [first] + held] == \
        ["postgres"] + ["pools%d" % i for i in range(4)]
    # postgres's pool unused (its client gone, its server closed when idle): freed, and
    # there is room again.
    first.close()

    def fifth():
        try:
            conn = proxy_conn(cluster, dbname="pools4")
        except psycopg2.OperationalError as err:
            assert "too many pools" in str(err), err
            return None
        try:
            return one(conn, "SELECT current_database()")
        finally:
            conn.close()
    assert wait_for("a pool freed for pools4", fifth, 15) == "pools4"
    for h in held:
        h.close()


def proxy_metric_lines(cluster, prefix):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % (cluster.proxy_port + 3),
                                timeout=2) as r:
        return [line for line in r.read().decode().splitlines() if line.startswith(prefix)]


def test_replica_port_waits_for_a_healthy_replica(cluster):
    """Issue 17 item 4: right after `up` the replica port serves (up waits until the
    proxy routes on every port), and a login to 5001 while no replica is healthy waits
    for one, as 6432 waits for a primary (up to query_wait_timeout), instead of failing
    at once."""
    conn = proxy_conn(cluster, 2)  # the fixture's `up` has just returned
    assert one(conn, "SELECT pg_is_in_recovery()") is True
    conn.close()
    cluster.restart_proxy("query_wait_timeout = 4s\n")
    leader = cluster.leader()
    replicas = [i for i in range(cluster.N) if i != leader]

    def tag(i, on):
        path = os.path.join(cluster.dir, "node%d/node.ini" % (i + 1))
        text = open(path).read().replace("noloadbalance = on\n", "")
        with open(path, "w") as f:
            f.write(text + ("noloadbalance = on\n" if on else ""))
        cluster.run("reload", "--dir", cluster.dir, "node%d" % (i + 1))
    for i in replicas:
        tag(i, True)
    wait_for("no replica healthy in the proxy's view", lambda: proxy_metric_lines(
        cluster, "pgwarden_proxy_replica_healthy{") and not [
        line for line in proxy_metric_lines(cluster, "pgwarden_proxy_replica_healthy{")
        if line.endswith(" 1")], 20)
    # None comes: told so after query_wait_timeout, with the reason.
    with pytest.raises(psycopg2.OperationalError) as exc:
        proxy_conn(cluster, 2, connect_timeout=20)
    assert "no replica is available" in str(exc.value) and \
        "query_wait_timeout" in str(exc.value), exc.value
    # One comes while a login waits: it gets that replica.
    got = {}

    def login():
        try:
            c = proxy_conn(cluster, 2, connect_timeout=20)
            got["recovery"] = one(c, "SELECT pg_is_in_recovery()")
            c.close()
        except psycopg2.Error as err:
            got["error"] = str(err)
    t = threading.Thread(target=login)
    t.start()
    wait_for("the login to wait (logged in, no replica yet)", lambda: proxy_metric_lines(
        cluster, 'pgwarden_proxy_clients{state="login"} 1'), 10)
    tag(replicas[0], False)
    t.join(30)
    assert not t.is_alive()
    assert got == {"recovery": True}, got
    tag(replicas[1], False)


SOCKET_COLUMNS = ["type", "user", "database", "replication", "state", "addr", "port",
                  "local_addr", "local_port", "connect_time", "request_time", "wait",
                  "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
                  "application_name", "prepared_statements", "id", "recv_pos", "pkt_pos",
                  "pkt_remain", "send_pos", "send_remain", "pkt_avail", "send_avail"]


def test_admin_console_has_every_show_of_pgbouncer(shared_cluster):
    """Issue 17 item 3: every SHOW of PgBouncer's admin console, with its column names
    and order, so tools written for PgBouncer (pgbouncer_exporter, ...) read it."""
    cluster = shared_cluster
    conn = proxy_conn(cluster)
    assert one(conn, "SELECT 1") == 1  # a pool, a user with a connection
    one(conn, "BEGIN")  # and a server linked to it (see SHOW ACTIVE_SOCKETS)
    expect = {
        "SHOW USERS": ["name", "pool_size", "reserve_pool_size", "pool_mode",
                       "max_user_connections", "current_connections",
                       "max_user_client_connections", "current_client_connections"],
        "SHOW TOTALS": ["name", "value"],
        "SHOW MEM": ["name", "size", "used", "free", "memtotal"],
        "SHOW STATE": ["key", "value"],
        "SHOW FDS": ["fd", "task", "user", "database", "addr", "port", "cancel", "link"],
        "SHOW SOCKETS": SOCKET_COLUMNS,
        "SHOW ACTIVE_SOCKETS": SOCKET_COLUMNS,
        "SHOW PEERS": ["peer_id", "host", "port", "pool_size"],
        "SHOW PEER_POOLS": ["database", "cl_active_cancel_req", "cl_waiting_cancel_req",
                            "sv_active_cancel", "sv_login"],
        "SHOW DNS_HOSTS": ["hostname", "ttl", "addrs"],
        "SHOW DNS_ZONES": ["zonename", "serial", "count"],
        "SHOW DATABASES": ["name", "host", "port", "database", "force_user", "pool_size",
                           "min_pool_size", "reserve_pool_size", "server_lifetime",
                           "pool_mode", "load_balance_hosts", "max_connections",
                           "current_connections", "max_client_connections",
                           "current_client_connections", "paused", "disabled"],
    }
    results = {}
    for sql, columns in expect.items():
        cols, rows = admin(cluster, sql)
        assert cols == columns, (sql, cols)
        results[sql] = rows
    users = {r[0]: r for r in results["SHOW USERS"]}
    assert users["postgres"][7] >= 1, users  # this test's connection
    totals = dict(results["SHOW TOTALS"])
    assert totals["total_query_count"] >= 1 and "avg_wait_time" in totals, totals
    assert dict(results["SHOW STATE"]) == {"active": "yes", "paused": "no",
                                           "suspended": "no"}
    tasks = [r[1] for r in results["SHOW FDS"]]
    assert tasks.count("pooler") == 3 and "client" in tasks, tasks
    # Every client and server of SHOW CLIENTS / SERVERS, with its buffers. This test's
    # connection is in a transaction: its server is linked, so it
    # shows in ACTIVE_SOCKETS too; nothing idle, waiting or logging in does.
    socks, active = results["SHOW SOCKETS"], results["SHOW ACTIVE_SOCKETS"]
    servers = {r[14] for r in socks if r[0] == "S"}
    assert servers and any(r[0] == "C" and r[2] == "postgres" for r in socks), socks
    linked = [r for r in active if r[0] == "S"]
    assert linked and {r[14] for r in linked} <= servers, (active, socks)
    assert all(r[4] == "active" for r in active), active
    assert len(active) <= len(socks) + 1  # + the asking admin connection itself
    mem = {r[0]: r for r in results["SHOW MEM"]}
    assert mem["client_cache"][2] >= 1, mem
    assert not results["SHOW PEERS"]
    conn.close()
    # SHOW HELP: a notice with the usage, as PgBouncer's.
    admin_conn = psycopg2.connect(cluster.proxy_dsn(dbname="pgbouncer"))
    admin_conn.autocommit = True
    with admin_conn.cursor() as cur:
        cur.execute("SHOW HELP")
    assert any("SHOW HELP|CONFIG" in n for n in admin_conn.notices), admin_conn.notices
    admin_conn.close()

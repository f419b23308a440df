"""Transaction pooling of protocol-level prepared statements and session parameters:
both follow their client onto whichever server connection runs its next transaction."""
import os
import re
import struct
import subprocess

import psycopg2
import pytest

import pgwire
from conftest import wait_for

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def raw_client(cluster):
    ini = open(os.path.join(cluster.dir, "node1/node.ini")).read()
    password = re.search(r"^superuser_password = (\S+)$", ini, re.M).group(1)
    s = pgwire.connect(cluster.proxy_port)
    assert pgwire.scram_login(s, "postgres", password) is None
    return s


def parse(name, sql, types=()):
    return (b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", len(types)) +
            b"".join(struct.pack("!I", t) for t in types))


def bind(stmt, *params):
    body = b"\0" + stmt.encode() + b"\0" + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!I", len(p)) + p.encode()
    return (b"B", body + struct.pack("!H", 0))


EXECUTE = (b"E", b"\0" + struct.pack("!I", 0))
SYNC = (b"S", b"")


def describe_stmt(name):
    return (b"D", b"S" + name.encode() + b"\0")


def close_stmt(name):
    return (b"C", b"S" + name.encode() + b"\0")


def exchange(s, *msgs):
    """Sends the messages at once; returns every answer up to the ReadyForQuery of the
    last Sync or Query as (type, body) pairs, ErrorResponses as (b"E", fields)."""
    s.sendall(b"".join(t + struct.pack("!I", len(b) + 4) + b for t, b in msgs))
    syncs = sum(1 for t, _ in msgs if t in (b"S", b"Q"))
    out = []
    while syncs:
        t, body = pgwire.read_msg(s)
        if t == b"E":
            body = pgwire.error_fields(body)
        if t == b"Z":
            syncs -= 1
        out.append((t, body))
    return out


def types(answers):
    return "".join(t.decode() for t, _ in answers)


def rows(answers):
    vals = []
    for t, body in answers:
        if t == b"D":
            n = struct.unpack("!H", body[:2])[0]
            off, row = 2, []
            for _ in range(n):
                ln = struct.unpack("!i", body[off:off + 4])[0]
                off += 4
                row.append(body[off:off + ln].decode())
                off += ln
            vals.append(tuple(row))
    return vals


def sqlstates(answers):
    return [body["C"] for t, body in answers if t == b"E"]


def test_prepared_statements_and_parameters_follow_their_client(cluster):
    # One server connection for everyone: every client's transaction reuses it.
    cluster.restart_proxy("default_pool_size = 1\n")
    a, b = raw_client(cluster), raw_client(cluster)

    # The same name means different statements for different clients.
    assert types(exchange(a, parse("s1", "SELECT $1::int + 1"), SYNC)) == "1Z"
    assert types(exchange(b, parse("s1", "SELECT 'b:' || $1"), SYNC)) == "1Z"
    assert rows(exchange(a, bind("s1", "41"), EXECUTE, SYNC)) == [("42",)]
    assert rows(exchange(b, bind("s1", "x"), EXECUTE, SYNC)) == [("b:x",)]
    # A client's second identical Parse is answered without a duplicate on the server.
    assert types(exchange(a, parse("s2", "SELECT $1::int + 1"), SYNC)) == "1Z"
    assert rows(exchange(a, bind("s2", "1"), EXECUTE, SYNC)) == [("2",)]
    # Describe of a statement; pipelined Parse/Bind/Execute/Close in one batch.
    got = exchange(b, describe_stmt("s1"), parse("s3", "SELECT 7"), bind("s3"), EXECUTE,
                   close_stmt("s3"), SYNC)
    assert types(got) == "tT1" + "2DC3Z", types(got)
    assert rows(got) == [("7",)]
    # Closed: the name is gone for that client only; the server reports it as PostgreSQL
    # would.
    assert sqlstates(exchange(b, bind("s3"), EXECUTE, SYNC)) == ["26000"]
    assert sqlstates(exchange(a, bind("nosuch"), EXECUTE, SYNC)) == ["26000"]
    assert rows(exchange(b, bind("s1", "y"), EXECUTE, SYNC)) == [("b:y",)]
    # An error inside a batch: the rest is skipped up to the Sync, then all is well again.
    got = exchange(a, parse("bad", "SELECT nosuchcolumn"), bind("s1", "1"), EXECUTE, SYNC,
                   bind("s1", "2"), EXECUTE, SYNC)
    assert sqlstates(got) == ["42703"] and rows(got) == [("3",)], got

    # Session parameters: one client's SET does not leak to another through the server.
    def show(s, name):
        return rows(exchange(s, parse("", "SHOW " + name), bind(""), EXECUTE, SYNC))[0][0]

    tz_default = show(b, "TimeZone")
    exchange(a, parse("", "SET TimeZone TO 'America/New_York'"), bind(""), EXECUTE, SYNC)
    assert show(b, "TimeZone") == tz_default
    assert show(a, "TimeZone") == "America/New_York"
    assert show(b, "TimeZone") == tz_default
    a.close()
    b.close()

    # Startup parameters (libpq sends them in the startup packet) are restored too.
    c = psycopg2.connect(cluster.proxy_dsn(application_name="app_c", client_encoding="LATIN1",
                                           options=""))
    c.autocommit = True
    d = psycopg2.connect(cluster.proxy_dsn())
    d.autocommit = True
    with c.cursor() as cc, d.cursor() as dc:
        dc.execute("SHOW client_encoding")
        d_enc = dc.fetchone()[0]
        for _ in range(3):
            cc.execute("SELECT current_setting('client_encoding'), "
                       "current_setting('application_name')")
            assert cc.fetchone() == ("LATIN1", "app_c")
            dc.execute("SELECT current_setting('client_encoding')")
            assert dc.fetchone()[0] == d_enc
            dc.execute("SET DateStyle TO 'German'")
            cc.execute("SELECT current_setting('DateStyle')")
            assert cc.fetchone()[0] != "German, DMY"
            dc.execute("SELECT current_setting('DateStyle')")
            assert dc.fetchone()[0] == "German, DMY"
            dc.execute("RESET DateStyle")
    c.close()
    d.close()
    # A session on 5000 gets its startup parameters too.
    e = psycopg2.connect(cluster.proxy_dsn(1, client_encoding="LATIN1", application_name="app_e"))
    e.autocommit = True
    with e.cursor() as ec:
        ec.execute("SELECT current_setting('client_encoding'), "
                   "current_setting('application_name')")
        assert ec.fetchone() == ("LATIN1", "app_e")
    e.close()


def test_startup_settings_follow_their_client(cluster):
    """Startup "options" (-c, --) and other startup parameters (JDBC's search_path,
    extra_float_digits): run for their client only, refused ones fail the login with
    PostgreSQL's error, and the proxy goes on serving everyone else."""
    cluster.restart_proxy("default_pool_size = 1\n")
    setup = psycopg2.connect(cluster.dsn(cluster.leader()))
    setup.autocommit = True
    with setup.cursor() as cur:
        for name in ("s_a", "s_b"):
            cur.execute("DROP SCHEMA IF EXISTS %s CASCADE" % name)
            cur.execute("CREATE SCHEMA %s" % name)
            cur.execute("CREATE TABLE %s.t (v text)" % name)
            cur.execute("INSERT INTO %s.t VALUES ('%s')" % (name, name))
    setup.close()

    def connect(offset=0, **extra):
        conn = psycopg2.connect(cluster.proxy_dsn(offset, **extra))
        conn.autocommit = True
        return conn

    def one(conn, sql):
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]

    a = connect(options="'-c search_path=s_a -c statement_timeout=1234'")
    # options "--search-path=s_b -c pgw.note=x\ y": '-' read as '_', an escaped space
    b = connect(options="'--search-path=s_b -c pgw.note=x\\\\ y'")
    c = connect()
    default_path = one(c, "SHOW search_path")
    # One server connection for the three: each transaction runs with its client's own.
    for _ in range(3):
        assert one(a, "SELECT v FROM t") == "s_a"
        assert one(a, "SHOW statement_timeout") == "1234ms"
        assert one(b, "SELECT v FROM t") == "s_b"
        assert one(b, "SHOW statement_timeout") == "0"
        assert one(b, "SELECT current_setting('pgw.note')") == "x y"
        assert one(c, "SHOW search_path") == default_path
        assert one(c, "SELECT coalesce(current_setting('pgw.note', true), '')") == ""
        assert one(c, "SHOW statement_timeout") == "0"
    # A second client with the same settings (already accepted: no check at its login).
    a2 = connect(options="'-c search_path=s_a -c statement_timeout=1234'")
    assert one(a2, "SELECT v FROM t") == "s_a"

    # Refused settings fail the login with PostgreSQL's SQLSTATE and message (psql shows
    # it); nobody else is hurt. Raw logins, to read the SQLSTATE.
    ini = open(os.path.join(cluster.dir, "node1/node.ini")).read()
    password = re.search(r"^superuser_password = (\S+)$", ini, re.M).group(1)

    def login(**params):
        s = pgwire.connect(cluster.proxy_port)
        err = pgwire.scram_login(s, "postgres", password, **params)
        return s, err

    for params, sqlstate, text in (
            ({"options": "-c statement_timeout=soon"}, "22023", "invalid value for parameter"),
            ({"options": "-c no_such_parameter=1"}, "42704",
             "unrecognized configuration parameter"),
            ({"options": "-B 10"}, "42601", "unsupported startup option"),
            ({"options": "-c search_path"}, "42601", "NAME=VALUE"),
            ({"options": "-c bad;name=1"}, "42602", "invalid configuration parameter name"),
            ({"lock_timeout": "never"}, "22023", "invalid value for parameter")):
        s, err = login(**params)
        s.close()
        assert err and err["C"] == sqlstate and text in err["M"], (params, err)
        assert err["S"] == "FATAL", err
    with pytest.raises(psycopg2.OperationalError, match="invalid value for parameter"):
        connect(options="'-c statement_timeout=soon'")
    assert one(a, "SELECT v FROM t") == "s_a"
    assert one(c, "SHOW search_path") == default_path
    assert one(c, "SHOW lock_timeout") == "0"

    # Startup parameters other than options, as JDBC sends search_path and
    # extra_float_digits.
    s, err = login(search_path="s_b", extra_float_digits="3")
    assert err is None, err
    got = exchange(s, parse("", "SELECT v, current_setting('extra_float_digits') FROM t"),
                   bind(""), EXECUTE, SYNC)
    assert rows(got) == [("s_b", "3")], got
    # The client's own RESET ALL undoes them on the server (PostgreSQL would go back to
    # the startup values): its next transaction gets them again.
    exchange(s, parse("", "RESET ALL"), bind(""), EXECUTE, SYNC)
    got = exchange(s, parse("", "SELECT v, current_setting('extra_float_digits') FROM t"),
                   bind(""), EXECUTE, SYNC)
    assert rows(got) == [("s_b", "3")], got
    s.close()
    assert one(a, "SELECT v FROM t") == "s_a"

    for conn in (a, a2, b, c):
        conn.close()

    # A session on 5000 runs with them too, also after its own RESET ALL; the next
    # session on that server (the session pool has one) does not.
    cluster.restart_proxy("session_pool_size = 1\n")
    e = connect(1, options="'-c search_path=s_b'")
    pid = one(e, "SELECT pg_backend_pid()")
    assert one(e, "SELECT v FROM t") == "s_b"
    one(e, "RESET ALL; SELECT 1")
    assert one(e, "SELECT v FROM t") == "s_b"
    e.close()
    f = connect(1)
    assert one(f, "SELECT pg_backend_pid()") == pid
    assert one(f, "SHOW search_path") == default_path
    f.close()


def test_pgbench_prepared_over_few_server_connections(cluster):
    leader = cluster.leader()
    cluster.restart_proxy("default_pool_size = 3\n")
    env = cluster.pgbench_init(leader)
    # -j 8: pgbench prepares synchronously (PQprepare), so one thread serving clients
    # that wait for a server while another of its clients holds one in a transaction
    # would block itself (with PgBouncer too).
    for script in ([], ["-S"]):
        proc = subprocess.run([PGBENCH, "-n", "-c", "8", "-j", "8", "-T", "4", "-M", "prepared",
                               *script, "-h", "127.0.0.1", "-p", str(cluster.proxy_port), "-U",
                               "postgres", "postgres"], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "number of failed transactions: 0" in proc.stdout, proc.stdout
        processed = int(proc.stdout.split("number of transactions actually processed: ")[1]
                        .split()[0])
        assert processed > 100, proc.stdout


def proxy_rss_kb(cluster):
    with open("/proc/%d/status" % cluster.proxy_pid()) as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


@pytest.mark.abuse
def test_statement_memory_is_bounded(cluster):
    """Issue 14 item 4: one client could pin 400 MB with large named statements (400 of
    1 MB). Now a client's statements are bounded (max_client_statement_memory, then
    54000 and the client closed), and so are all clients' together
    (max_statement_memory, then 53200); the others go on."""
    cluster.restart_proxy("max_client_statement_memory = 4MB\nmax_statement_memory = 8MB\n")
    rss0 = proxy_rss_kb(cluster)
    big = "SELECT 1 /* %s */" % ("x" * (1 << 20))  # 1 MB of statement text
    s = raw_client(cluster)
    answers = []
    for i in range(3):  # a little over 1 MB each: the fourth passes 4 MB
        answers = exchange(s, parse("big%d" % i, big.replace("x", "%d" % i, 1)), SYNC)
        assert not sqlstates(answers), answers
    s.sendall(b"".join(t + struct.pack("!I", len(b) + 4) + b
                       for t, b in (parse("big3", big.replace("x", "y", 1)), SYNC)))
    t, body = pgwire.read_msg(s)
    assert t == b"E", t
    err = pgwire.error_fields(body)
    assert err["C"] == "54000" and "max_client_statement_memory" in err["M"], err
    s.close()
    # The statements the proxy keeps (the first client's, still prepared on a server,
    # and these) pass 8 MB proxy-wide.
    a, b = raw_client(cluster), raw_client(cluster)
    for i in range(3):
        assert not sqlstates(exchange(a, parse("a%d" % i, big.replace("x", "a%d" % i, 1)),
                                      SYNC))
    for i in range(8):
        b.sendall(b"".join(t + struct.pack("!I", len(m) + 4) + m
                           for t, m in (parse("b%d" % i, big.replace("x", "b%d" % i, 1)),
                                        SYNC)))
        t, body = pgwire.read_msg(b)
        if t == b"E":
            err = pgwire.error_fields(body)
            assert err["C"] == "53200" and "max_statement_memory" in err["M"], err
            break
        while t != b"Z":
            t, body = pgwire.read_msg(b)
    else:
        raise AssertionError("the proxy kept more than max_statement_memory")
    b.close()
    # The first client still works, and the proxy holds what the bounds allow.
    assert rows(exchange(a, bind("a0"), EXECUTE, SYNC)) == [("1",)]
    a.close()
    assert proxy_rss_kb(cluster) - rss0 < 64 * 1024


def proxy_peak_rss_kb(cluster):
    with open("/proc/%d/status" % cluster.proxy_pid()) as f:
        return int(re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M).group(1))


@pytest.mark.abuse
def test_large_messages_pass_as_they_arrive(cluster):
    """Issue 14 item 4: a Bind (or a Query, when the server holds prepared statements)
    was held whole, up to max_packet_size (then 256 MB) per client. Now a Bind's names
    are renamed as they arrive and the rest passes on, and so does a Query too long to
    hold; max_packet_size (4 MB by default) bounds only what the proxy keeps whole (a
    Parse), with a clear error past it."""
    # A fresh process: its peak memory is this test's (under AddressSanitizer, with no
    # quarantine of freed memory, which would count as memory in use).
    asan = cluster.env["ASAN_OPTIONS"]
    cluster.env["ASAN_OPTIONS"] = asan + ":quarantine_size_mb=0"
    try:
        cluster.restart_proxy()
    finally:
        cluster.env["ASAN_OPTIONS"] = asan
    peak0 = proxy_peak_rss_kb(cluster)
    size = 40 << 20
    s = raw_client(cluster)
    assert not sqlstates(exchange(s, parse("len", "SELECT length($1::text)"), SYNC))
    # In one transaction, so the server that holds "len" also runs the long Query.
    answers = exchange(s, (b"Q", b"BEGIN\0"), bind("len", "x" * size), EXECUTE, SYNC)
    assert not sqlstates(answers) and rows(answers) == [(str(size),)], sqlstates(answers)
    answers = exchange(s, (b"Q", b"SELECT length('" + b"y" * size + b"')\0"),
                       (b"Q", b"COMMIT\0"))
    assert not sqlstates(answers) and rows(answers) == [(str(size),)], sqlstates(answers)
    # The statement still runs (the long Query may have dropped it: the server that ran
    # it is not reused for it).
    assert rows(exchange(s, bind("len", "abc"), EXECUTE, SYNC)) == [("3",)]
    grown = proxy_peak_rss_kb(cluster) - peak0
    assert grown < 16 * 1024, "the proxy's peak memory grew by %d kB" % grown
    # An unnamed Parse is not kept: any size passes (PostgreSQL runs it).
    answers = exchange(s, parse("", "SELECT length('%s')" % ("u" * (5 << 20))), bind(""),
                       EXECUTE, SYNC)
    assert rows(answers) == [(str(5 << 20),)], sqlstates(answers)
    # A client whose server was lost while it sat in a transaction gets its answers from
    # the proxy: a long message is answered too, never left waiting for its end.
    assert not sqlstates(exchange(s, (b"Q", b"BEGIN\0")))
    pid = int(rows(exchange(s, (b"Q", b"SELECT pg_backend_pid()\0")))[0][0])
    cluster.query(cluster.leader(), "SELECT pg_terminate_backend(%d)" % pid)
    wait_for("its server to be gone", lambda: not cluster.query(
        cluster.leader(), "SELECT pid FROM pg_stat_activity WHERE pid = %d" % pid), 15)
    answers = exchange(s, (b"Q", b"SELECT '" + b"v" * (1 << 20) + b"'\0"))
    # (the server's own 57P01 may come first)
    assert sqlstates(answers)[-1] in ("08006", "25P02") and answers[-1][0] == b"Z", answers
    assert not sqlstates(exchange(s, (b"Q", b"ROLLBACK\0")))
    assert rows(exchange(s, bind("len", "abcd"), EXECUTE, SYNC)) == [("4",)]
    # A Parse is kept whole: past max_packet_size the client is told why, at the
    # message's length.
    t, body = parse("huge", "SELECT '%s'" % ("z" * (5 << 20)))
    s.sendall(t + struct.pack("!I", len(body) + 4) + body[:1000])
    t, body = pgwire.read_msg(s)
    assert t == b"E", t
    err = pgwire.error_fields(body)
    assert err["C"] == "54000" and "max_packet_size" in err["M"], err
    s.close()


def test_statement_dropped_behind_the_proxys_back_is_prepared_again(cluster):
    """Issue 14 item 9: a client's SQL that drops the statements the proxy prepared on a
    shared server (here a function's dynamic DEALLOCATE ALL, which the proxy cannot see
    in the query text) left every other client's statement failing with 26000 on that
    server for as long as it lived. Now the proxy notices the 26000, prepares the
    statement again at its next use and closes that server after the transaction."""
    cluster.restart_proxy("default_pool_size = 1\n")  # one server, shared by both
    leader = cluster.leader()
    with cluster.connect(leader) as conn, conn.cursor() as cur:
        cur.execute("CREATE OR REPLACE FUNCTION drop_them() RETURNS int LANGUAGE plpgsql "
                    "AS $$ BEGIN EXECUTE 'DEALLOCATE ALL'; RETURN 1; END $$")
    a = raw_client(cluster)
    assert types(exchange(a, parse("q", "SELECT $1::int * 2"), SYNC)) == "1Z"
    assert rows(exchange(a, bind("q", "21"), EXECUTE, SYNC)) == [("42",)]
    b = psycopg2.connect(cluster.proxy_dsn())
    b.autocommit = True
    with b.cursor() as cur:
        cur.execute("SELECT drop_them()")
    b.close()
    # At most one failure (the Bind that finds the statement gone), then it runs again.
    first = exchange(a, bind("q", "1"), EXECUTE, SYNC)
    assert sqlstates(first) in ([], ["26000"]), first
    for i in range(3):
        assert rows(exchange(a, bind("q", str(i)), EXECUTE, SYNC)) == [(str(2 * i),)]
    a.close()
    assert "a prepared statement of the proxy's is gone" in cluster.proxy_log()

"""TLS on both sides of the proxy: clients with sslmode=require / verify-full, and the
proxy to PostgreSQL with server_tls_sslmode=verify-full."""
import os
import pwd
import subprocess

import psycopg2
import pytest

from conftest import wait_for


def make_certs(folder):
    """A throw-away CA and a certificate for localhost / 127.0.0.1 signed by it."""
    os.makedirs(folder, exist_ok=True)

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder,
                       timeout=60)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=pgwarden test CA", "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
        "server.key", "-out", "server.csr")
    with open(os.path.join(folder, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "san.ext")
    pg = pwd.getpwnam("postgres")
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        os.chown(path, pg.pw_uid, pg.pw_gid)
        os.chmod(path, 0o600 if name.endswith(".key") else 0o644)
    os.chown(folder, pg.pw_uid, pg.pw_gid)
    os.chmod(folder, 0o755)
    return {k: os.path.join(folder, k) for k in ("ca.crt", "server.crt", "server.key")}


def restart_proxy(cluster, extra):  # noqa: kept for readability
    return cluster.restart_proxy(extra)


def _old_restart_proxy(cluster, extra):
    with open(os.path.join(cluster.dir, "proxy/proxy.ini"), "a") as f:
        f.write(extra)
    cluster.kill(cluster.proxy_pid(), 15)
    wait_for("the proxy to stop", lambda: cluster.proxy_pid() is None, 20)
    cluster.up()


def test_client_and_server_tls(cluster):
    certs = make_certs(os.path.join(cluster.dir, "tls"))
    # PostgreSQL itself on TLS, so that the proxy can verify it.
    cluster.run("edit-config", "--dir", cluster.dir, "--pg", "ssl=on",
                "--pg", "ssl_cert_file=" + certs["server.crt"],
                "--pg", "ssl_key_file=" + certs["server.key"], "--force")
    leader = cluster.leader()
    wait_for("PostgreSQL with ssl on",
             lambda: cluster.query(leader, "SHOW ssl")[0][0] == "on", 20)
    restart_proxy(cluster, "client_tls_sslmode = require\n"
                           "client_tls_cert_file = %s\nclient_tls_key_file = %s\n"
                           "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s\n"
                           % (certs["server.crt"], certs["server.key"], certs["ca.crt"]))
    dsn = cluster.proxy_dsn(host="localhost", sslmode="verify-full",
                            sslrootcert=certs["ca.crt"])
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    assert conn.info.ssl_in_use
    with conn.cursor() as cur:
        # Through the proxy's own TLS connection to PostgreSQL.
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone()[0] is True
        cur.execute("INSERT INTO t (id) VALUES (1) RETURNING id")
        assert cur.fetchone()[0] == 1
        # A bigger result than one TLS record, both ways.
        cur.execute("SELECT repeat('x', 200000)")
        assert len(cur.fetchone()[0]) == 200000
    conn.close()
    # sslmode=require also works (no verification); clear text is refused.
    conn = psycopg2.connect(cluster.proxy_dsn(sslmode="require"))
    assert conn.info.ssl_in_use
    conn.close()
    with pytest.raises(psycopg2.OperationalError) as exc:
        psycopg2.connect(cluster.proxy_dsn(sslmode="disable"))
    assert "SSL required" in str(exc.value)
    # A client that does not trust our CA refuses the proxy.
    other = make_certs(os.path.join(cluster.dir, "other"))
    with pytest.raises(psycopg2.OperationalError) as exc:
        psycopg2.connect(cluster.proxy_dsn(host="localhost", sslmode="verify-full",
                                           sslrootcert=other["ca.crt"]))
    assert "certificate verify failed" in str(exc.value)


def test_server_tls_required_but_missing_fails_cleanly(cluster):
    certs = make_certs(os.path.join(cluster.dir, "tls"))
    restart_proxy(cluster, "server_tls_sslmode = verify-ca\nserver_tls_ca_file = %s\n"
                  % certs["ca.crt"])
    with pytest.raises(psycopg2.Error) as exc:
        conn = psycopg2.connect(cluster.proxy_dsn())
        conn.cursor().execute("SELECT 1")
    assert "does not support TLS" in str(exc.value)

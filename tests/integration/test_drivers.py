"""Drivers as applications use them, through 6432 with fewer server connections than
client connections (issue 17): a client's startup settings survive its own RESET ALL /
DISCARD ALL, as they would on a direct connection, and the ParameterStatus messages it
gets say so. asyncpg's pool runs RESET ALL each time a connection goes back to it;
node-postgres (tests/drivers/node, installed by scripts/setup.sh --test) runs the same
checks from Node.js."""
import asyncio
import json
import os
import re
import subprocess

import asyncpg
import psycopg

from conftest import wait_for  # noqa: F401 (the fixtures' module)


def superuser_password(cluster):
    ini = open("%s/node1/node.ini" % cluster.dir).read()
    return re.search(r"^superuser_password = (\S+)$", ini, re.M).group(1)


def test_asyncpg_pool_keeps_its_startup_settings(cluster):
    cluster.restart_proxy("default_pool_size = 2\n")
    password = superuser_password(cluster)

    async def run():
        pool = await asyncpg.create_pool(
            host="127.0.0.1", port=cluster.proxy_port, user="postgres", password=password,
            database="postgres", min_size=4, max_size=4, statement_cache_size=0,
            server_settings={"TimeZone": "Asia/Tokyo", "application_name": "appA"})
        seen = []

        async def use(i):
            async with pool.acquire() as c:
                seen.append((await c.fetchval("SHOW TimeZone"),
                             await c.fetchval("SHOW application_name"),
                             c.get_settings().TimeZone, c.get_settings().application_name))
        for _ in range(5):
            await asyncio.gather(*(use(i) for i in range(4)))
        await pool.close()
        return seen
    seen = asyncio.run(asyncio.wait_for(run(), 120))
    assert len(seen) == 20
    assert set(seen) == {("Asia/Tokyo", "appA", "Asia/Tokyo", "appA")}, set(seen)


def test_psycopg3_reset_all_and_discard_all(cluster):
    cluster.restart_proxy("default_pool_size = 2\n")
    conns = [psycopg.connect(
        host="127.0.0.1", port=cluster.proxy_port, user="postgres", dbname="postgres",
        password=superuser_password(cluster), autocommit=True, application_name="app%d" % i,
        options="-c TimeZone=America/Lima -c DateStyle=SQL,DMY") for i in range(4)]
    try:
        for round_ in range(3):
            for i, conn in enumerate(conns):
                conn.execute("SET TimeZone TO 'Europe/Oslo'")
                assert conn.execute("SHOW TimeZone").fetchone()[0] == "Europe/Oslo"
                conn.execute("RESET ALL" if round_ % 2 == 0 else "DISCARD ALL")
                info = conn.info
                assert info.parameter_status("TimeZone") == "America/Lima", round_
                assert info.parameter_status("application_name") == "app%d" % i
                assert conn.execute("SHOW TimeZone").fetchone()[0] == "America/Lima"
                assert conn.execute("SHOW DateStyle").fetchone()[0] == "SQL, DMY"
                assert conn.execute("SHOW application_name").fetchone()[0] == "app%d" % i
    finally:
        for conn in conns:
            conn.close()


def test_node_postgres_pool_keeps_its_startup_settings(cluster):
    """node-postgres (npm's pg) with a pool of 4 on a proxy pool of 2: after RESET ALL or
    DISCARD ALL its connections have their startup TimeZone and application_name."""
    cluster.restart_proxy("default_pool_size = 2\n")
    script = os.path.join(os.path.dirname(__file__), "..", "drivers", "node", "reset.js")
    proc = subprocess.run(["node", script, str(cluster.proxy_port),
                           superuser_password(cluster)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout)
    assert len(seen) == 20
    assert {tuple(s) for s in seen} == {("Asia/Tokyo", "nodeapp")}, seen


def test_jdbc_keeps_its_startup_settings(cluster):
    """pgJDBC (4 connections on a proxy pool of 2, its statements server-side prepared from
    their fifth use): after RESET ALL, the TimeZone it gave at startup (the JVM's) and its
    ApplicationName."""
    cluster.restart_proxy("default_pool_size = 2\n")
    source = os.path.join(os.path.dirname(__file__), "..", "drivers", "jdbc", "Reset.java")
    proc = subprocess.run(["java", "-Duser.timezone=Asia/Tokyo", "-cp",
                           "/usr/share/java/postgresql.jar", source, str(cluster.proxy_port),
                           superuser_password(cluster)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.split() == ["32", "Asia/Tokyo|jdbcapp"], proc.stdout

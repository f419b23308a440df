"""Bad configuration stops the agent with a message naming file, line and key."""
import os
import subprocess
import tempfile

import pytest

from conftest import PGWARDEN

GOOD = """[cluster]
name = demo
member = node1

[etcd]
endpoints = http://127.0.0.1:1

[postgresql]
data_dir = /tmp/pgw-cfg-test/data
superuser_password = secret-one
replication_password = secret-two
"""


def agent(text, env=None):
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
        f.write(text)
    os.chmod(f.name, 0o644)
    e = {k: v for k, v in os.environ.items() if not k.startswith("PGWARDEN_")}
    e.update(env or {})
    try:
        proc = subprocess.run(["runuser", "-u", "postgres", "--", PGWARDEN, "agent", "-c",
                               f.name], capture_output=True, text=True, env=e, timeout=20)
    finally:
        os.unlink(f.name)
    return proc, f.name


@pytest.mark.parametrize("change,expect", [
    (("[cluster]\n", "[cluster]\nttll = 10\n"),
     ":2: unknown key 'ttll' in [cluster] (did you mean 'ttl'?)"),
    (("[cluster]\n", "[cluster]\nttl = soon\n"),
     ":2: bad value 'soon' for 'ttl' in [cluster]: expected a duration"),
    (("[cluster]\n", "[cluster]\nloop_wait = 3\n"),
     "loop_wait (3000 ms) + 2 x retry_timeout (1500 ms) must not exceed ttl (4000 ms)"),
    (("member = node1\n", ""), "missing required key 'member' in [cluster]"),
    (("[etcd]\n", "[etcdd]\n"), ":5: unknown section [etcdd]"),
    (("[postgresql]\n", "[postgresql]\nmemory = lots\n"),
     ":9: bad value 'lots' for 'memory' in [postgresql]: expected a size"),
    (("[postgresql]\n", "[parameters]\nport = 5433\n[postgresql]\n"),
     ":9: 'port' in [parameters] is managed by pgwarden"),
    (("[postgresql]\n", "[tags]\nnofailover = maybe\n[postgresql]\n"),
     ":9: bad value 'maybe' for 'nofailover' in [tags]"),
    (("data_dir = /tmp/pgw-cfg-test/data", "data_dir = relative/data"),
     "'data_dir' in [postgresql] must be an absolute path"),
    (("[cluster]\n", "[cluster]\nthis line is wrong\n"), ":2: syntax error"),
    (("[cluster]\n", "[backup]\ncompress = fast\n[cluster]\n"),
     ":2: bad value 'fast' for 'compress' in [backup]: expected none, gz, lz4, zst or bz2"),
    (("[cluster]\n", "[backup]\nrepo_path = backups\n[cluster]\n"),
     ":2: bad value 'backups' for 'repo_path' in [backup]: expected an absolute path"),
    (("[cluster]\n", "[backup]\nprocess_max = 0\n[cluster]\n"),
     ":2: bad value '0' for 'process_max' in [backup]: out of range (1 .. 64)"),
    (("[cluster]\n", "[backup]\nstanza = a/b\n[cluster]\n"),
     ":2: bad value 'a/b' for 'stanza' in [backup]"),
    (("[postgresql]\n", "[backup]\nrepo_path = /tmp/r\n[parameters]\narchive_command = cp %p x\n"
      "[postgresql]\n"),
     ":11: 'archive_command' in [parameters] is managed by pgwarden ([backup] is set"),
    (("[cluster]\n", "[api]\nusername = admin\npassword =\n[cluster]\n"),
     "[api] has a username but an empty password"),
    (("[postgresql]\n", "[postgresql]\nconnect_sslmode = verify-full\n"),
     "connect_sslmode verify-full in [postgresql] needs connect_sslrootcert"),
    (("[postgresql]\n", "[postgresql]\nconnect_sslmode = always\n"),
     "bad value 'always' for 'connect_sslmode' in [postgresql]"),
    (("[cluster]\n", "[cluster]\nallowed_networks = 10.0.0.0/33\n"),
     "'allowed_networks' in [cluster]: bad network '10.0.0.0/33'"),
])
def test_bad_config_is_refused_with_file_line_key(change, expect):
    proc, path = agent(GOOD.replace(*change, 1))
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr, proc.stderr
    assert path in proc.stderr or "configuration" in proc.stderr
    assert "secret-one" not in proc.stderr and "secret-two" not in proc.stderr


def test_bad_environment_override_names_the_variable():
    proc, _ = agent(GOOD, {"PGWARDEN_CLUSTER_TTL": "-3"})
    assert proc.returncode == 2
    assert "environment PGWARDEN_CLUSTER_TTL: bad value '-3' for 'ttl'" in proc.stderr


def test_unknown_environment_key_is_refused():
    proc, _ = agent(GOOD, {"PGWARDEN_CLUSTER_TTLL": "10"})
    assert proc.returncode == 2
    assert "unknown key 'ttll' in [cluster]" in proc.stderr


def test_missing_file():
    proc = subprocess.run(["runuser", "-u", "postgres", "--", PGWARDEN, "agent", "-c",
                           "/nonexistent/node.ini"], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2 and "/nonexistent/node.ini: cannot open" in proc.stderr


def test_agent_refuses_root():
    proc = subprocess.run([PGWARDEN, "agent", "-c", "/dev/null"], capture_output=True,
                          text=True, timeout=20,
                          env=dict(os.environ, PGWARDEN_CLUSTER_NAME="x",
                                   PGWARDEN_CLUSTER_MEMBER="x",
                                   PGWARDEN_POSTGRESQL_DATA_DIR="/tmp/x",
                                   PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD="a",
                                   PGWARDEN_POSTGRESQL_REPLICATION_PASSWORD="b"))
    assert proc.returncode == 2 and "refusing to run as root" in proc.stderr


def test_backup_without_pgbackrest_stops_the_agent():
    proc, _ = agent(GOOD, {"PGWARDEN_BACKUP_REPO_PATH": "/tmp/pgw-cfg-test/repo",
                           "PGWARDEN_BACKUP_PGBACKREST": "/nonexistent/pgbackrest"})
    assert proc.returncode != 0
    assert "[backup] is set but /nonexistent/pgbackrest cannot be run" in proc.stderr, \
        proc.stderr

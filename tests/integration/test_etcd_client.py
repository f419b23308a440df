"""Runs the live etcd client tests (build/test_etcd_live) against a private etcd.

Starts a single-member etcd on free loopback ports in a temporary directory,
waits for /health, runs the C test program with PGW_TEST_ETCD pointing at it
and stops etcd afterwards.
"""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("PGW_BUILD_DIR", REPO / "build"))
LIVE_TEST = BUILD_DIR / "test_etcd_live"
ETCD = shutil.which("etcd")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url, proc, deadline_s=30.0):
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("etcd exited early with status %s" % proc.returncode)
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                body = json.loads(resp.read().decode())
                if body.get("health") == "true":
                    return
                last = body
        except (OSError, urllib.error.URLError, ValueError) as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError("etcd at %s not healthy in %ss: %s" % (url, deadline_s, last))


@pytest.fixture
def etcd(tmp_path):
    if ETCD is None:
        pytest.skip("etcd binary not installed")
    client_port, peer_port = free_port(), free_port()
    while peer_port == client_port:
        peer_port = free_port()
    client_url = "http://127.0.0.1:%d" % client_port
    peer_url = "http://127.0.0.1:%d" % peer_port
    log = open(tmp_path / "etcd.log", "wb")
    proc = subprocess.Popen(
        [
            ETCD,
            "--name", "pgw-test",
            "--data-dir", str(tmp_path / "data"),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", "pgw-test=" + peer_url,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        wait_healthy(client_url, proc)
        yield client_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_etcd_client_live(etcd):
    if not LIVE_TEST.exists():
        pytest.fail("%s not built (set PGW_BUILD_DIR)" % LIVE_TEST)
    env = dict(os.environ, PGW_TEST_ETCD=etcd)
    res = subprocess.run(
        [str(LIVE_TEST)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=180,
    )
    out = res.stdout.decode(errors="replace")
    print(out)
    assert res.returncode == 0, out
    assert "SKIPPED" not in out, out
    assert "PASSED" in out, out

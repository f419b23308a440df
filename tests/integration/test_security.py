"""Issue 14's regression tests: what a hostile local user (postgres) or client must not
get (the proxy's share is in test_proxy*.py and test_faults.py)."""
import os
import pwd
import subprocess

import pytest

from conftest import wait_for


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
        assert proc.returncode != 0 and "belongs to root" in proc.stderr, proc.stderr
        assert os.stat(target).st_uid == 0
    finally:
        os.unlink(link)

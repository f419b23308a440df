"""A real three-node Docker Swarm on this machine, for tests/swarm.

Each "host" is a container running Debian's Docker engine (docker-in-docker, vfs
storage; ../shared/reference/docker.md), on a bridge network of its own. The images
(pgwarden's, built by deploy/Dockerfile, and a small client image) are built on the
outer engine and loaded into every node: there is no registry. deploy/ is copied to
the first node, a manager, where setup.sh and deploy.sh run unchanged.

Everything made here is named pgwt-* and removed by remove_leftovers(), which the
test calls before it starts and after it ends, whatever happened.
"""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
import helpers  # noqa: E402

# PGW_SWARM_PREFIX lets a second swarm (bench/swarm) run beside the test's
PREFIX = os.environ.get("PGW_SWARM_PREFIX", "pgwt")
NET = PREFIX + "-net"
IMAGE = "pgwarden:swarmtest"
NODE_IMAGE = "pgwarden-swarm-node:test"
CLIENT_IMAGE = "pgwarden-swarm-client:test"
STACK = "pgwarden"
DEPLOY = "/opt/pgwarden/deploy"       # deploy/ on the manager
WORK = "/opt/pgwarden/work"          # the workload's folder on every node
KEEP_IMAGES = os.environ.get("PGW_SWARM_KEEP_IMAGES") == "1"
ENGINE_LOG = "/tmp/pgwarden-swarm-dockerd.log"
ENGINE_PID = "/tmp/pgwarden-swarm-dockerd.pid"   # the dockerd ensure_engine() started


def log(msg):
    print("[swarm %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def sh(cmd, check=True, timeout=600, input=None):
    """Runs a command (a list, or a string for the shell); its stdout. Raises with
    stdout and stderr when check and it fails."""
    p = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True,
                       timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (
            cmd if isinstance(cmd, str) else " ".join(map(shlex.quote, cmd)),
            p.returncode, p.stdout[-4000:], p.stderr[-4000:]))
    return p.stdout if check else p


# ---- the outer engine ----

def ensure_engine():
    """Starts Debian's dockerd when none answers (there is no systemd here); its pid
    goes to ENGINE_PID so that stop_engine() (also from another process, after a
    timeout killed the test) stops only an engine started here."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return
    log("starting dockerd")
    with open(ENGINE_LOG, "ab") as f:
        proc = subprocess.Popen(["dockerd"], stdout=f, stderr=f, start_new_session=True)
    with open(ENGINE_PID, "w") as f:
        f.write("%d\n" % proc.pid)
    helpers.wait_for("dockerd to answer", lambda: subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0, 60, interval=0.5)


def stop_engine():
    try:
        with open(ENGINE_PID) as f:
            pid = int(f.read())
        os.unlink(ENGINE_PID)
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    try:
        helpers.wait_for("dockerd to stop", lambda: not os.path.exists("/proc/%d" % pid) or
                         open("/proc/%d/stat" % pid).read().split()[2] == "Z", 60)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)


# scripts/test.sh builds the images beside the chaos suite (prebuild below) and says so
# with this file, which holds the images' IDs.
PREBUILT = "/tmp/pgwarden-swarm-prebuilt"


def build_images(background=False):
    """The base image (debootstrap, when no registry gives it), pgwarden's image, the
    node image and the client image, on the outer engine. background: at the lowest CPU
    weight (other tests run meanwhile and keep the CPU)."""
    t0 = time.monotonic()
    nice = ["nice", "-n", "19"] if background else []
    weight = ["--cpu-shares", "2"] if background else []
    sh(nice + [os.path.join(REPO, "deploy/make-base-image.sh")], timeout=900)
    sh(["docker", "build", "-q"] + weight + ["-f", os.path.join(REPO, "deploy/Dockerfile"),
                                              "-t", IMAGE, REPO], timeout=1200)
    here = os.path.dirname(os.path.abspath(__file__))
    for dockerfile, tag in (("node.Dockerfile", NODE_IMAGE), ("client.Dockerfile", CLIENT_IMAGE)):
        sh(["docker", "build", "-q"] + weight + ["-f", os.path.join(here, dockerfile), "-t",
                                                  tag, here], timeout=900)
    log("images built in %.0f s" % (time.monotonic() - t0))


def image_ids():
    return sh(["docker", "image", "inspect", "-f", "{{.Id}}", IMAGE, NODE_IMAGE,
               CLIENT_IMAGE], check=False).stdout.split()


def prebuild():
    """scripts/test.sh, beside the chaos suite: the images, then PREBUILT."""
    if os.path.exists(PREBUILT):
        os.unlink(PREBUILT)
    build_images(background=True)
    with open(PREBUILT, "w") as f:
        f.write(" ".join(image_ids()))


def images_prebuilt():
    """True when prebuild() made the images of this run (scripts/test.sh says so with
    PGW_SWARM_PREBUILT=1: a marker a failed run left behind names older images) and they
    are still there."""
    if os.environ.get("PGW_SWARM_PREBUILT") != "1":
        return False
    try:
        with open(PREBUILT) as f:
            want = f.read().split()
        os.unlink(PREBUILT)
    except OSError:
        return False
    return len(want) == 3 and image_ids() == want


def remove_leftovers():
    """Removes every container, volume and network named pgwt-* (a run killed midway
    leaves them)."""
    ids = sh("docker ps -aq --filter name=%s-" % PREFIX, check=False).stdout.split()
    if ids:
        sh(["docker", "rm", "-f", "-v"] + ids, check=False, timeout=300)
    vols = sh("docker volume ls -q --filter name=%s-" % PREFIX, check=False).stdout.split()
    if vols:
        sh(["docker", "volume", "rm", "-f"] + vols, check=False, timeout=300)
    sh(["docker", "network", "rm", NET], check=False)


def remove_images():
    if not KEEP_IMAGES:
        sh(["docker", "rmi", "-f", IMAGE, NODE_IMAGE, CLIENT_IMAGE], check=False)
        sh(["docker", "image", "prune", "-f"], check=False)


# ---- the swarm's nodes ----

class Swarm:
    def __init__(self):
        self.nodes = []          # container names, pgwt-node1..
        self.next_index = 1
        self.secrets = {}        # read once: deploy/ is on the first node, which may die

    # a node is a container; "host" names below are the container names
    def exec(self, node, cmd, check=True, timeout=600, input=None):
        """Runs a shell command on a node (in its container)."""
        return sh(["docker", "exec", "-i", node, "sh", "-c", cmd], check=check,
                  timeout=timeout, input=input)

    def manager(self):
        """A node that is up and a manager (the first one alive)."""
        live = self.live_nodes()
        if not live:
            raise AssertionError("no node is running")
        return live[0]

    def live_nodes(self):
        return [n for n in self.nodes if self.running(n)]

    def docker(self, args, check=True, timeout=600, node=None):
        """docker ARGS on a manager."""
        return self.exec(node or self.manager(), "docker " + args, check=check,
                         timeout=timeout)

    @staticmethod
    def running(node):
        p = sh(["docker", "inspect", "-f", "{{.State.Running}}", node], check=False)
        return p.returncode == 0 and p.stdout.strip() == "true"

    def add_node(self):
        """A new host: its container, its engine, the images loaded."""
        name = "%s-node%d" % (PREFIX, self.next_index)
        self.next_index += 1
        sh(["docker", "run", "-d", "--name", name, "--hostname", name, "--network", NET,
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined",
            "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs", "/run", "-v", name + "-docker:/var/lib/docker",
            "-v", name + "-data:/var/lib/pgwarden", NODE_IMAGE])
        helpers.wait_for(name + "'s engine", lambda: self.exec(
            name, "docker info >/dev/null 2>&1", check=False).returncode == 0, 60,
            interval=0.5)
        self.nodes.append(name)
        return name

    def images(self):
        """The images every node gets."""
        return [IMAGE, CLIENT_IMAGE]

    def load_images(self, nodes):
        """docker save | docker load into each node, in parallel."""
        procs = []
        for n in nodes:
            procs.append(subprocess.Popen(
                "docker save %s | docker exec -i %s docker load -q" % (
                    " ".join(self.images()), n), shell=True, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE))
        for n, p in zip(nodes, procs):
            out, err = p.communicate(timeout=1200)
            assert p.returncode == 0, "loading images into %s: %s" % (n, err.decode()[-2000:])
        for n in nodes:
            self.exec(n, "mkdir -p %s" % WORK)
            sh(["docker", "cp", os.path.join(REPO, "tests/swarm/workload.py"),
                "%s:%s/workload.py" % (n, WORK)])

    def address(self, node):
        return sh(["docker", "inspect", "-f",
                   "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % NET,
                   node]).strip()

    def start(self, count=3):
        """count nodes, every one a manager (the swarm keeps its control plane when one
        host is lost), deploy/ on the first."""
        t0 = time.monotonic()
        sh(["docker", "network", "create", "--driver", "bridge", NET])
        for _ in range(count):
            self.add_node()
        self.load_images(self.nodes)
        first = self.nodes[0]
        self.exec(first, "docker swarm init --advertise-addr %s >/dev/null" %
                  self.address(first))
        for n in self.nodes[1:]:
            self.join(n)
        self.exec(first, "mkdir -p /opt/pgwarden")
        sh(["docker", "cp", os.path.join(REPO, "deploy"), first + ":/opt/pgwarden/"])
        self.exec(first, "rm -rf %s/.env %s/.secrets" % (DEPLOY, DEPLOY))
        log("swarm of %d nodes up in %.0f s" % (count, time.monotonic() - t0))

    def join(self, node):
        m = self.manager()
        token = self.exec(m, "docker swarm join-token -q manager").strip()
        self.exec(node, "docker swarm join --token %s %s:2377 >/dev/null" % (
            token, self.address(m)))

    def node_id(self, node):
        return self.docker("node inspect -f '{{.ID}}' %s" % node).strip()

    # ---- the deployment ----
    def script(self, name, args="", check=True, timeout=900):
        """Runs deploy/NAME on the manager: (exit code, stdout + stderr)."""
        p = self.exec(self.manager(), "cd %s && ./%s %s 2>&1" % (DEPLOY, name, args),
                      check=False, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("%s %s failed (%d):\n%s" % (name, args, p.returncode,
                                                            p.stdout[-6000:]))
        return p.returncode, p.stdout

    def set_env(self, **values):
        """Sets KEY=VALUE lines in deploy/.env on the manager."""
        for k, v in values.items():
            self.exec(self.manager(), "cd %s && (grep -v '^%s=' .env; echo '%s=%s') "
                      "> .env.new && mv .env.new .env" % (DEPLOY, k, k, v))

    def secret(self, name):
        if name not in self.secrets:
            self.secrets[name] = self.exec(self.nodes[0], "cat %s/.secrets/%s" % (
                DEPLOY, name)).strip()
        return self.secrets[name]

    def cluster(self):
        """pgwarden list --json, from a container on the cluster network."""
        out = self.docker(
            "run --rm --network %s_cluster -e PGWARDEN_CLUSTER_NAME=pgwarden "
            "-e PGWARDEN_ETCD_ENDPOINTS=http://etcd1:2379,http://etcd2:2379,http://etcd3:2379 "
            "--entrypoint pgwarden %s list --json" % (STACK, IMAGE), check=False)
        if out.returncode != 0:
            return None
        return json.loads(out.stdout)

    def healthy(self, want_streaming=2):
        """The cluster document when it has a leader and want_streaming streaming
        replicas, else None."""
        c = self.cluster()
        if not c or not c.get("leader"):
            return None
        streaming = [m for m in c["members"] if m["state"] == "streaming"]
        return c if len(streaming) >= want_streaming else None

    def find_container(self, stack, service):
        """(node, container id) of a running task of STACK_SERVICE, or (None, None)."""
        for n in self.live_nodes():
            p = self.exec(n, "docker ps -q -f name=%s_%s." % (stack, service), check=False)
            ids = p.stdout.split() if p.returncode == 0 else []
            if ids:
                return n, ids[0]
        return None, None

    def member_container(self, member):
        """(node, container id) running the member's task."""
        node, cid = self.find_container(STACK, member)
        if not cid:
            raise AssertionError("no running container for " + member)
        return node, cid

    def node_of_member(self, member):
        return self.member_container(member)[0]

    def pgwarden(self, member, args, check=True):
        """docker exec <member's container> pgwarden ARGS, on the member's node."""
        node, cid = self.member_container(member)
        return self.exec(node, "docker exec %s pgwarden %s" % (cid, args), check=check)

    def psql(self, node, host, port, sql, password=None):
        """psql in a client container on the application network, by service name, as
        postgres (the password: the stack's secret, unless given)."""
        pw = password or self.secret("superuser_password")
        return self.exec(node, (
            "docker run --rm --network pgwarden-app -e PGPASSWORD=%s --entrypoint psql %s "
            "'host=%s port=%d user=postgres dbname=postgres connect_timeout=5' -Atc %s") % (
                shlex.quote(pw), IMAGE, host, port, shlex.quote(sql)), timeout=120).strip()

    # ---- the workload ----
    def start_workload(self, node, dsn, clients=8, name="wl", password=None):
        """Writers in a client container on node (workload.py); returns a handle."""
        pw = shlex.quote(password or self.secret("superuser_password"))
        d = "%s/%s" % (WORK, name)
        self.exec(node, "rm -rf %s && mkdir -p %s" % (d, d))
        self.exec(node, "docker rm -f %s-%s >/dev/null 2>&1; docker run -d --name %s-%s "
                  "--network pgwarden-app -e PGPASSWORD=%s -v %s:/w %s python3 "
                  "/w/workload.py /w/%s %s %d >/dev/null" % (
                      PREFIX, name, PREFIX, name, pw, WORK, CLIENT_IMAGE, name,
                      shlex.quote(dsn), clients))
        helpers.wait_for("the workload to start", lambda: self.exec(
            node, "test -f %s/started" % d, check=False).returncode == 0, 90, interval=0.5)
        return (node, name, d)

    def stop_workload(self, handle):
        node, name, d = handle
        self.exec(node, "touch %s/stop" % d)
        helpers.wait_for("the workload's result", lambda: self.exec(
            node, "test -f %s/result.json" % d, check=False).returncode == 0, 60,
            interval=0.5)
        res = json.loads(self.exec(node, "cat %s/result.json" % d))
        self.exec(node, "docker rm -f %s-%s >/dev/null 2>&1" % (PREFIX, name), check=False)
        return res

    def lost_rows(self, node, res, host="pgbouncer", password=None):
        """Acknowledged (client, seq) pairs of a workload's result missing from the
        table, read through the pooler on 6432."""
        have = set(self.psql(node, host, 6432, "SELECT client || ',' || seq FROM swarm_load",
                             password).split())
        return sum(1 for c, r in res["clients"].items() for seq in r["acked"]
                   if "%s,%s" % (c, seq) not in have)

    def workload_commits(self, handle):
        """Rows the workload has committed so far (read through the proxy)."""
        node = handle[0]
        return int(self.psql(node, "pgbouncer", 6432, "SELECT count(*) FROM swarm_load"))

    def teardown(self):
        remove_leftovers()

"""pgwarden proxy's HTTP port: the status page behind basic auth, and /metrics in
Prometheus text format (served without auth: counters and names only)."""
import base64
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg2

from conftest import wait_for


def get(cluster, path, auth=None, method="GET"):
    """Returns (status, headers, body text); never raises on HTTP errors."""
    headers = {}
    if auth:
        token = base64.b64encode(("%s:%s" % auth).encode()).decode()
        headers["Authorization"] = "Basic " + token
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (cluster.proxy_port + 3, path),
                                 method=method, headers=headers,
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()


def error_reason(body):
    doc = json.loads(body)
    assert isinstance(doc.get("error"), str) and doc["error"], body
    return doc["error"]


# -- a small parser of the text exposition format --------------------------------------
METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % METRIC_NAME)
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse_metrics(text):
    """{(name, frozenset(labels)): value}; asserts the format along the way."""
    types, samples = {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert re.fullmatch(METRIC_NAME, name), line
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, "two # TYPE lines for %s" % name
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, label_text, value = m.groups()
        labels = {}
        pos = 0
        while label_text and pos < len(label_text):
            lm = LABEL.match(label_text, pos)
            assert lm, "bad labels in %r" % line
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1),
                                                                              e.group(1)),
                                         lm.group(2))
            pos = lm.end()
        value = float(value)  # raises on anything that is not a number
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, "%s has no # TYPE line before it" % name
        if types[family] == "counter":
            assert value >= 0, line
        key = (name, frozenset(labels.items()))
        assert key not in samples, "duplicate sample %r" % line
        samples[key] = value
    return samples


def metrics(cluster):
    code, headers, body = get(cluster, "/metrics")
    assert code == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(body)


def sample(samples, name, **labels):
    """The value of the sample whose labels include `labels`; None when absent."""
    found = [v for (n, ls), v in samples.items()
             if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, "several %s samples match %r" % (name, labels)
    return found[0] if found else None


def run_queries(cluster, n):
    conn = psycopg2.connect(cluster.proxy_dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for _ in range(n):
                cur.execute("SELECT 1")
    finally:
        conn.close()


def restart_proxy(cluster, extra_ini):
    """Appends to proxy.ini (its last section is [proxy]) and restarts the proxy."""
    with open(os.path.join(cluster.dir, "proxy", "proxy.ini"), "a") as f:
        f.write(extra_ini)
    cluster.kill(cluster.proxy_pid(), signal.SIGTERM)
    wait_for("the proxy to stop", lambda: cluster.proxy_pid() is None, 20)
    cluster.up()


# -- tests -----------------------------------------------------------------------------
def test_status_page_needs_credentials(cluster):
    leader = "node%d" % (cluster.leader() + 1)
    with open(os.path.join(cluster.dir, "proxy", "proxy.ini")) as f:
        configured = re.search(r"^http_password\s*=", f.read(), re.M)
    code, _, body = get(cluster, "/")
    if configured:  # pgwarden up wrote credentials: never served without them
        assert code == 401
    else:  # without http_username / http_password: never served, and says what to set
        assert code == 403
        assert "http_username" in error_reason(body)
        assert get(cluster, "/", auth=("admin", "x"))[0] == 403

    # Ours, appended: the last value of a key wins.
    password = secrets.token_hex(12)
    restart_proxy(cluster, "http_username = admin\nhttp_password = %s\n" % password)
    wait_for("the proxy's HTTP port", lambda: get(cluster, "/metrics")[0] == 200, 20)
    for auth in (None, ("admin", "wrong"), ("nobody", password), ("admin", "")):
        code, headers, body = get(cluster, "/", auth=auth)
        assert code == 401, (auth, code, body)
        assert headers["WWW-Authenticate"].startswith("Basic realm=")
        error_reason(body)
    assert get(cluster, "/status")[0] == 401

    auth = ("admin", password)
    run_queries(cluster, 3)
    # A database name with markup: the page escapes it. (The database exists: a pool for
    # one that does not goes with its client.)
    cluster.query(cluster.leader(), 'CREATE DATABASE "x<b>""&y"')
    psycopg2.connect(cluster.proxy_dsn(dbname="'x<b>\"&y'")).close()

    def page():
        code, headers, body = get(cluster, "/", auth=auth)
        assert code == 200, body
        assert headers["Content-Type"].startswith("text/html")
        ok = ("<td>postgres</td><td>postgres</td><td>transaction</td>" in body
              and "x&lt;b&gt;&quot;&amp;y" in body)
        return body if ok else None
    body = wait_for("the pools on the status page", page, 10)
    assert "x<b>" not in body
    assert '<meta http-equiv="refresh" content="5">' in body
    assert "routed to %s" % leader in body
    assert "<td>%s (127.0.0.1:" % leader in body
    for i in range(cluster.N):
        assert "<td>node%d</td><td>127.0.0.1:%d</td>" % (i + 1, cluster.pg_port + i) in body
    assert "max_client_conn" in body and "uptime" in body
    code, _, status_body = get(cluster, "/status", auth=auth)
    assert code == 200 and "routed to %s" % leader in status_body
    assert password not in body

    # A history of 1,000 leader changes (the key grows by one entry at each; here 70 kB
    # through the watch): the page shows the last five and keeps its size.
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    ep = "--endpoints=http://127.0.0.1:%d" % cluster.etcd_port
    key = "/service/demo/history"
    etcdctl = lambda *a: subprocess.run(["etcdctl", ep, *a], capture_output=True,  # noqa
                                        text=True, timeout=10, env=env, check=True).stdout
    kept = etcdctl("get", key, "--print-value-only").strip()
    before = len(wait_for("the bootstrap in the history", lambda: (
        lambda b: "<td>bootstrap</td>" in b and b)(get(cluster, "/", auth=auth)[2]), 10))
    long = json.loads(kept) + [
        [1000 + i, 16777216 * (i + 1), "failover", "2026-12-07T%02d:%02d:%02dZ" % (
            i // 3600, i // 60 % 60, i % 60), "node%d" % (i % 3 + 1)] for i in range(1000)]
    try:
        etcdctl("put", key, json.dumps(long))
        after = wait_for("the last leader change on the page", lambda: (
            lambda b: '<td class="n">2000</td><td>3/E8000000</td>' in b and b)(
                get(cluster, "/", auth=auth)[2]), 10)
    finally:
        etcdctl("put", key, kept)
    table = after.split('<table id="history">')[1].split("</table>")[0]
    assert table.count("<td>failover</td>") == 5 and "<td>bootstrap</td>" not in table
    assert '<td class="n">1996</td>' in table and '<td class="n">1995</td>' not in table
    assert len(after) - before < 2000, (before, len(after))
    conn = psycopg2.connect(cluster.proxy_dsn())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")  # still routed to the leader
            assert cur.fetchone()[0] is False
    finally:
        conn.close()


def test_metrics(cluster):
    leader = "node%d" % (cluster.leader() + 1)
    m = wait_for("writes routed in /metrics",
                 lambda: (lambda s: s if sample(s, "pgwarden_proxy_routing_writes") == 1
                          else None)(metrics(cluster)), 20)
    assert sample(m, "pgwarden_proxy_up") == 1
    assert sample(m, "pgwarden_proxy_etcd_up") == 1
    assert 0 <= sample(m, "pgwarden_proxy_etcd_last_confirmed_seconds") < 5
    assert sample(m, "pgwarden_proxy_leader_info", member=leader) == 1
    assert len([k for k in m if k[0] == "pgwarden_proxy_leader_info"]) == 1
    for i in range(cluster.N):
        name = "node%d" % (i + 1)
        role = "leader" if name == leader else "replica"
        assert sample(m, "pgwarden_proxy_members", member=name, role=role) == 1
    assert sample(m, "pgwarden_proxy_replica_healthy", member=leader) is None
    assert sample(m, "pgwarden_proxy_paused") == 0
    assert sample(m, "pgwarden_proxy_max_client_conn") > 0
    assert sample(m, "pgwarden_proxy_uptime_seconds") > 0

    def xacts(s):
        return sample(s, "pgwarden_proxy_transactions_total", database="postgres",
                      user="postgres", mode="transaction") or 0
    before = xacts(m)
    run_queries(cluster, 5)
    m = wait_for("the queries counted in /metrics",
                 lambda: (lambda s: s if xacts(s) >= before + 5 else None)(metrics(cluster)),
                 10)
    pool = dict(database="postgres", user="postgres", mode="transaction", port="pooled")
    assert sample(m, "pgwarden_proxy_queries_total", **pool) >= 5
    assert sample(m, "pgwarden_proxy_client_logins_total", **pool) >= 1
    assert sample(m, "pgwarden_proxy_server_assignments_total", **pool) >= 5
    assert sample(m, "pgwarden_proxy_received_bytes_total", **pool) > 0
    assert sample(m, "pgwarden_proxy_sent_bytes_total", **pool) > 0
    assert sample(m, "pgwarden_proxy_transaction_seconds_total", **pool) >= 0
    assert sample(m, "pgwarden_proxy_pool_sv_idle", **pool) >= 1
    assert sample(m, "pgwarden_proxy_servers", state="idle", **pool) >= 1
    assert sample(m, "pgwarden_proxy_pool_cl_waiting", **pool) == 0
    assert sample(m, "pgwarden_proxy_pool_maxwait_seconds", **pool) == 0
    assert sample(m, "pgwarden_proxy_leader_changes_total") >= 1

    # A label value with a quote and a backslash is escaped, and the document still parses.
    cluster.query(cluster.leader(), 'CREATE DATABASE "q""\\z"')
    psycopg2.connect(cluster.proxy_dsn(dbname="'q\"\\\\z'")).close()
    m = wait_for("the odd pool in /metrics",
                 lambda: (lambda s: s if sample(s, "pgwarden_proxy_client_logins_total",
                                                database='q"\\z') else None)(metrics(cluster)),
                 10)

    code, headers, body = get(cluster, "/nope")
    assert code == 404 and headers["Content-Type"] == "application/json"
    assert "/metrics" in error_reason(body)
    code, headers, body = get(cluster, "/metrics", method="POST")
    assert code == 405 and "GET" in headers["Allow"]
    error_reason(body)
    assert get(cluster, "/", method="DELETE")[0] == 405


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.environ.get("PGW_ARTIFACTS", "/tmp/pgw-artifacts")


def browser(url, *args):
    """Chromium headless on url (basic auth in it): what it prints (--dump-dom: the DOM
    after rendering)."""
    home = os.path.join(ARTIFACTS, "chromium-home")
    os.makedirs(home, exist_ok=True)
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-dev-shm-usage",
                           "--user-data-dir=" + home, *args, url],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, HOME=home))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


# What a phone-sized window shows of the page, measured by the browser itself.
PHONE_METRICS = """JSON.stringify({
  inner: innerWidth,
  scroll: document.documentElement.scrollWidth,
  font: parseFloat(getComputedStyle(document.body).fontSize),
  tables: [...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().right),
  charts: [...document.querySelectorAll('.chart svg')].map(c => c.getBoundingClientRect().width)
})"""


def phone_view(url, auth, shot, width=390, height=844):
    """The page in Chromium headless emulating a phone (width x height CSS pixels, touch,
    the viewport meta honoured), driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: NUL-separated JSON on fds 3 and 4). Returns PHONE_METRICS
    and saves a screenshot to shot."""
    # A profile of its own, never one a browser() run may still hold.
    os.makedirs(ARTIFACTS, exist_ok=True)
    home = tempfile.mkdtemp(prefix="chromium-phone-", dir=ARTIFACTS)
    errors = open(os.path.join(home, "stderr.txt"), "w+")

    def above_4(fd):
        """The pipe's end at a number the child's 3<& / 4>& cannot overwrite (bash, not
        dash: dash takes single-digit fds only, and a pytest-xdist worker's pipes get
        two-digit ones)."""
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return high
    to_r, to_w = map(above_4, os.pipe())
    from_r, from_w = map(above_4, os.pipe())
    proc = subprocess.Popen(
        ["bash", "-c", 'exec "$@" 3<&%d 4>&%d' % (to_r, from_w), "bash", CHROMIUM,
         "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", "--user-data-dir=" + home, "--remote-debugging-pipe",
         "about:blank"],
        pass_fds=(to_r, from_w), stdout=subprocess.DEVNULL, stderr=errors,
        env=dict(os.environ, HOME=home))
    os.close(to_r)
    os.close(from_w)
    out, inp = os.fdopen(to_w, "wb"), os.fdopen(from_r, "rb")
    pending = b""
    ids = iter(range(1, 1000))

    def call(method, session=None, **params):
        nonlocal pending
        n = next(ids)
        msg = {"id": n, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        out.write(json.dumps(msg).encode() + b"\0")
        out.flush()
        while True:
            while b"\0" not in pending:
                chunk = os.read(inp.fileno(), 1 << 16)
                if not chunk:
                    errors.seek(0)
                    raise AssertionError("chromium closed the DevTools pipe: %s"
                                         % errors.read()[-2000:])
                pending += chunk
            raw, pending = pending.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == n:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]

    timer = threading.Timer(60, proc.kill)  # bounded whatever chromium does
    timer.start()
    try:
        target = call("Target.createTarget", url="about:blank")["targetId"]
        s = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        call("Emulation.setDeviceMetricsOverride", s, width=width, height=height,
             deviceScaleFactor=2, mobile=True)
        call("Emulation.setTouchEmulationEnabled", s, enabled=True)
        call("Network.enable", s)
        token = base64.b64encode(("%s:%s" % auth).encode()).decode()
        call("Network.setExtraHTTPHeaders", s, headers={"Authorization": "Basic " + token})
        call("Page.navigate", s, url=url)
        deadline = time.monotonic() + 20
        while True:
            ready = call("Runtime.evaluate", s, expression="document.readyState",
                         returnByValue=True)["result"].get("value")
            if ready == "complete" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert ready == "complete", ready
        metrics = json.loads(call("Runtime.evaluate", s, expression=PHONE_METRICS,
                                  returnByValue=True)["result"]["value"])
        png = base64.b64decode(call("Page.captureScreenshot", s, format="png",
                                    captureBeyondViewport=True)["data"])
        with open(shot, "wb") as f:
            f.write(png)
        call("Browser.close")
    finally:
        timer.cancel()
        out.close()
        inp.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        errors.close()
        shutil.rmtree(home, ignore_errors=True)
    return metrics


def test_status_page_in_a_browser(cluster):
    """The status page as a real browser (Chromium headless) renders it: members with
    state, timeline and lag; the 15-minute charts as SVG, counting the transactions run
    through 6432 as the admin console does; a switchover as a leader-change mark and a
    history row with its reason; a screenshot kept; with etcd down the page says so and
    the charts keep their history."""
    password = secrets.token_hex(12)
    restart_proxy(cluster, "http_username = admin\nhttp_password = %s\n" % password)
    auth = ("admin", password)
    url = "http://admin:%s@127.0.0.1:%d/" % (password, cluster.proxy_port + 3)
    wait_for("the proxy's HTTP port", lambda: get(cluster, "/metrics")[0] == 200, 20)

    def window(body):
        m = re.search(r'id="window" data-samples="(\d+)" data-xacts="(\d+)" '
                      r'data-queries="(\d+)" data-errors="(\d+)" data-leader-changes="(\d+)"',
                      body)
        return tuple(map(int, m.groups())) if m else None

    def page():
        code, _, body = get(cluster, "/", auth=auth)
        assert code == 200, body
        return body
    # The first sample closes 5 s after the proxy started; then 200 transactions.
    wait_for("a first sample", lambda: window(page()), 15)
    run_queries(cluster, 200)

    def counted():
        w = window(page())
        return w if w and w[1] >= 200 else None
    _, xacts, queries, errors, changes = wait_for("the transactions in the window", counted,
                                                  15)
    assert 200 <= xacts < 230 and 200 <= queries < 230, (xacts, queries)
    assert errors == 0 and changes == 0

    dom = browser(url, "--dump-dom")
    for chart in ("rate", "xact-time", "waiting", "errors"):
        assert 'id="chart-%s"' % chart in dom
    assert "<svg" in dom and dom.count("<polyline") == 6, dom[:3000]  # 2 + 2 + 1 + 1
    assert 'class="leader-change"' not in dom
    assert re.search(r'id="chart-xact-time" data-last="avg=[\d.]+ p99=[\d.]+"', dom), dom
    # Members: role, state, timeline, lag as published; the bootstrap in the history.
    leader = cluster.leader()
    tl = cluster.timeline(leader)
    rows = re.findall(r"<tr><td>(node\d)</td><td>[^<]*</td><td>(?:<b>)?(leader|replica)"
                      r"(?:</b>)?</td><td>([^<]*)</td><td class=\"n\">(\d+)</td>"
                      r"<td class=\"n[^\"]*\">([^<]*)</td><td class=\"n[^\"]*\">([^<]*)</td>",
                      dom)
    assert sorted(r[0] for r in rows) == ["node1", "node2", "node3"], dom
    for name, role, state, member_tl, lag, lag_s in rows:
        is_leader = name == "node%d" % (leader + 1)
        assert role == ("leader" if is_leader else "replica")
        assert state in ("running", "streaming") and int(member_tl) == tl
        assert lag == "-" if is_leader else int(lag) >= 0, (name, lag)
        assert lag_s == "-" if is_leader else float(lag_s) >= 0, (name, lag_s)
    assert re.search(r'<td>node\d</td><td class="n">1</td><td>-</td><td>bootstrap</td>', dom)
    # The pool's transactions and queries as the admin console counts them.
    row = re.search(r"<tr><td>postgres</td><td>postgres</td><td>transaction</td>"
                    r"(?:<td class=\"n[^\"]*\">[^<]*</td>){7}<td class=\"n\">(\d+)</td>"
                    r"<td class=\"n\">(\d+)</td>", dom)
    assert row, dom
    conn = psycopg2.connect(cluster.proxy_dsn(dbname="pgbouncer"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SHOW STATS")
        cols = [c[0] for c in cur.description]
        stats = {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}
    conn.close()
    assert int(row.group(1)) == stats["postgres"]["total_xact_count"]
    assert int(row.group(2)) == stats["postgres"]["total_query_count"]

    # A switchover: the next sample carries the leader change, the history its reason.
    old = "node%d" % (leader + 1)
    cluster.run("switchover", "--dir", cluster.dir, "--force")
    new = "node%d" % (cluster.wait_healthy() + 1)
    marked = wait_for("a leader-change mark and the history", lambda: (lambda b: b if
                      'class="leader-change"' in b and "switchover from" in b else None)(
                          page()), 20)
    assert window(marked)[4] == 1
    row = re.search(r'<table id="history">\n<tr>.*?</tr>\n<tr><td>([^<]+)</td><td>([^<]+)'
                    r'</td><td class="n">(\d+)</td><td>[0-9A-F]+/[0-9A-F]+</td><td>([^<]+)</td>',
                    marked)
    assert row, marked
    assert row.group(2) == new and row.group(4) == "switchover from %s" % old
    assert int(row.group(3)) == tl + 1 == cluster.timeline(int(new[4:]) - 1)

    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "status-page.png")
    if os.path.exists(shot):
        os.unlink(shot)
    browser(url, "--screenshot=" + shot, "--window-size=1280,1800", "--hide-scrollbars")
    with open(shot, "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000, len(png)
    print("status page screenshot: %s" % shot)
    # On a phone (390 CSS pixels): the page never scrolls sideways (wide tables scroll
    # within themselves), the text keeps its size, the charts fill the width.
    shot = os.path.join(ARTIFACTS, "status-page-phone.png")
    m = phone_view("http://127.0.0.1:%d/" % (cluster.proxy_port + 3), auth, shot)
    print("status page on a phone: %s, screenshot %s" % (m, shot))
    assert m["inner"] == 390 and m["scroll"] <= m["inner"], m
    assert m["font"] >= 14, m
    assert len(m["tables"]) >= 4 and all(r <= m["inner"] for r in m["tables"]), m
    assert len(m["charts"]) == 4 and all(300 <= w <= m["inner"] for w in m["charts"]), m

    # etcd down: after ttl the page says writes are not routed and etcd is unreachable;
    # the charts still hold their samples.
    for i in range(cluster.N):
        cluster.kill(cluster.etcd_pid(i))
    try:
        def degraded():
            d = browser(url, "--dump-dom")
            return d if "unreachable" in d and "not routed" in d else None
        dom = wait_for("the page to say etcd is down", degraded, 40)
        assert re.search(r'data-samples="[1-9]', dom) and dom.count("<polyline") == 6
    finally:
        cluster.up()
    wait_for("writes routed again", lambda: "routed to" in page(), 60)

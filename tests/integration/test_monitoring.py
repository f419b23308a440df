"""Monitoring checked against the real thing (issue 17): `pgwarden up --with-prometheus`
runs Debian's Prometheus on the cluster; every query of the Grafana dashboard and every
alert rule of deploy/monitoring/ is evaluated through its HTTP API (valid, and the
dashboard's return data); promtool accepts the agents' and the proxy's /metrics; the
leader's host killed, "no leader" and "failover" fire, then resolve."""
import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request

import psycopg2
import yaml

from conftest import REPO, wait_for

MONITORING = os.path.join(REPO, "deploy", "monitoring")
# Patroni's own names for these are counters without the _total suffix: kept as Patroni
# has them, so its dashboards work (promtool's naming advice, not a format error).
PATRONI_COUNTERS = {"patroni_postgres_timeline", "patroni_xlog_location",
                    "patroni_xlog_received_location", "patroni_xlog_replayed_location"}


def prom(port, path, **params):
    url = "http://127.0.0.1:%d%s?%s" % (port, path, urllib.parse.urlencode(params))
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]


def query(port, expr):
    return prom(port, "/api/v1/query", query=expr)["result"]


def dashboard():
    """The panels' queries, and the annotations' (events: data only when they happen)."""
    dash = json.load(open(os.path.join(MONITORING, "grafana-dashboard.json")))
    panels = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(panels) >= 20
    return panels, [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]


def alert_rules():
    rules = yaml.safe_load(open(os.path.join(MONITORING, "alerts.yml")))
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def promtool_metrics(url):
    text = urllib.request.urlopen(url, timeout=5).read()
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          timeout=30)
    problems = [line for line in (proc.stdout + proc.stderr).decode().splitlines()
                if line.strip() and line.split(" ")[0] not in PATRONI_COUNTERS]
    assert not problems, problems


def test_prometheus_dashboard_and_alerts(cluster_factory):
    c = cluster_factory()
    port = c.proxy_port + 5
    out = c.up(extra=("--with-prometheus", "--prometheus-port", str(port))).stdout
    assert "Prometheus:    http://127.0.0.1:%d/" % port in out, out
    leader = c.wait_healthy()
    status = c.run("status", "--dir", c.dir).stdout
    assert re.search(r"^prometheus +running +\d+ +127\.0\.0\.1:%d$" % port, status,
                     re.M), status
    assert "11 of 11 processes running" in status, status
    for i in range(c.N):
        promtool_metrics("http://127.0.0.1:%d/metrics" % (c.api_port + i))
    promtool_metrics("http://127.0.0.1:%d/metrics" % (c.proxy_port + 3))
    subprocess.run(["promtool", "check", "rules", os.path.join(MONITORING, "alerts.yml")],
                   check=True, capture_output=True, timeout=30)
    # Traffic through the proxy: its pools have series.
    conn = psycopg2.connect(c.proxy_dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        for _ in range(50):
            cur.execute("SELECT 1")
    conn.close()
    wait_for("Prometheus to scrape the 3 agents and the proxy", lambda: sorted(
        (t["labels"]["job"], t["health"]) for t in prom(port, "/api/v1/targets")[
            "activeTargets"]) == [("pgwarden-agent", "up")] * 3 + [("pgwarden-proxy", "up")],
        60)
    wait_for("every rule loaded and evaluated", lambda: all(
        r["health"] == "ok" for g in prom(port, "/api/v1/rules")["groups"]
        for r in g["rules"]) and len(alert_rules()) == sum(
        len(g["rules"]) for g in prom(port, "/api/v1/rules")["groups"]), 30)
    # Every dashboard query is valid and returns data (rates need two scrapes).
    panels, annotations = dashboard()
    for expr in panels:
        wait_for("data for %s" % expr, lambda: query(port, expr) or None, 30)
    for expr in annotations:
        query(port, expr)
    # Every alert expression is valid; with a healthy cluster none fires but the
    # backup's (no backup recorded: its series is absent).
    for name, expr in alert_rules().items():
        query(port, expr)
    firing = [a["labels"]["alertname"] for a in prom(port, "/api/v1/alerts")["alerts"]
              if a["state"] == "firing"]
    assert not firing, firing

    # The leader's host lost: no leader for a few seconds, then a failover.
    c.kill_host(leader)

    def fired(name):
        return query(port, 'max_over_time(ALERTS{alertname="%s",alertstate="firing"}[10m])'
                     % name) or None
    wait_for("PgwardenNoLeader to fire", lambda: fired("PgwardenNoLeader"), 60)
    wait_for("PgwardenFailover to fire", lambda: fired("PgwardenFailover"), 60)
    c.up()
    c.wait_healthy(timeout=120)

    def resolved():
        names = {a["labels"]["alertname"] for a in prom(port, "/api/v1/alerts")["alerts"]}
        return not names & {"PgwardenNoLeader", "PgwardenFailover"}
    wait_for("both alerts to resolve", resolved, 150)
    # down stops Prometheus with the rest.
    pid = int(open(os.path.join(c.dir, "prometheus/prometheus.pid")).read())
    c.down()
    wait_for("Prometheus to stop", lambda: not os.path.exists("/proc/%d" % pid) or
             open("/proc/%d/stat" % pid).read().split()[2] == "Z", 30)

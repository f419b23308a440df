"""Writers for tests/swarm, run in a client container on the application network.

    python3 workload.py DIR DSN CLIENTS

Each client loops on BEGIN; INSERT; COMMIT over one connection (autocommit off) and
records every outcome. It reconnects when its connection is lost, which counts the
error that ended it. The run stops when the file DIR/stop appears; then DIR/result.json
says, per client and in all: commits, errors by SQLSTATE (or by message when there is
none; "closed between transactions" for a connection found closed at the first
statement of a transaction, which is how libpq reports a 57P01 sent to an idle
connection), the longest time one client went without a commit (between two commits, or from
its last commit to the stop), and the acked ids (client, seq) so the test can look for
each one on the final primary.
The password comes from PGPASSWORD (this is a test client, not the product).
"""
import json
import os
import sys
import threading
import time

import psycopg2


def run_client(n, dsn, stop_file, out):
    conn = None
    seq = 0
    last_commit = None
    rec = {"commits": 0, "errors": {}, "max_gap": 0.0, "acked": [], "connects": 0}
    out[n] = rec
    while not os.path.exists(stop_file):
        step = "connect"
        try:
            if conn is None:
                conn = psycopg2.connect(dsn)
                rec["connects"] += 1
            seq += 1
            step = "insert"
            with conn.cursor() as cur:
                cur.execute("INSERT INTO swarm_load (client, seq) VALUES (%s, %s)", (n, seq))
            step = "commit"
            conn.commit()
            now = time.monotonic()
            if last_commit is not None:
                rec["max_gap"] = max(rec["max_gap"], now - last_commit)
            last_commit = now
            rec["commits"] += 1
            rec["acked"].append(seq)
        except Exception as exc:  # anything else is counted too, never a silent end
            code = getattr(exc, "pgcode", None) or (str(exc).strip().splitlines() or [
                type(exc).__name__])[0][:80]
            # A pooler (or PostgreSQL) that goes away sends 57P01 to an idle connection
            # and closes it; libpq reports that at the next statement as a closed
            # connection, without the SQLSTATE. At the first statement of a transaction
            # nothing was in flight: named apart from a connection lost mid-transaction.
            if step == "insert" and conn.closed and code.startswith("server closed"):
                code = "closed between transactions"
            rec["errors"][code] = rec["errors"].get(code, 0) + 1
            if conn is not None and conn.closed:
                conn = None
            elif conn is not None:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    conn = None
            if conn is None:
                time.sleep(0.05)
        time.sleep(0.01)
    if last_commit is not None:
        rec["max_gap"] = max(rec["max_gap"], time.monotonic() - last_commit)
    if conn is not None:
        conn.close()


def main():
    out_dir, dsn, clients = sys.argv[1], sys.argv[2], int(sys.argv[3])
    stop_file = os.path.join(out_dir, "stop")
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS swarm_load (client int, seq int, "
                    "at timestamptz DEFAULT now(), PRIMARY KEY (client, seq))")
        cur.execute("TRUNCATE swarm_load")
    conn.close()
    out = {}
    threads = [threading.Thread(target=run_client, args=(n, dsn, stop_file, out))
               for n in range(clients)]
    for t in threads:
        t.start()
    with open(os.path.join(out_dir, "started"), "w") as f:
        f.write("started\n")
    for t in threads:
        t.join()
    total = {"commits": sum(r["commits"] for r in out.values()),
             "errors": {},
             "max_gap": max(r["max_gap"] for r in out.values()),
             "clients": out}
    for r in out.values():
        for k, v in r["errors"].items():
            total["errors"][k] = total["errors"].get(k, 0) + v
    tmp = os.path.join(out_dir, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(total, f)
    os.rename(tmp, os.path.join(out_dir, "result.json"))


if __name__ == "__main__":
    main()

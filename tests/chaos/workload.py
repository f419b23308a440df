"""The chaos workload, run inside the application host's namespace.

    workload.py OUT PROXY_DSN DIRECT_DSN ROUND

Ledger ids are unique over the whole run: client k of round r inserts
(k * 10**6 + r) * 10**6 + n.

Clients, each on its own thread and connection:
  ledger-proxy-1, ledger-proxy-2  insert unique ids through the proxy (6432, pooled)
  ledger-direct                   the same straight to PostgreSQL (libpq multi-host,
                                  target_session_attrs=read-write)
  bank-proxy, bank-direct         transfer between 10 accounts in one transaction, which
                                  also inserts its own unique id into transfers
Every attempt becomes one JSON line in OUT, written as soon as its outcome is known:
  {"c": client, "op": "insert"|"transfer", "id": ledger or transfer id, "t0": started,
   "tc": COMMIT sent (transfers), "t1": answered, "ok": true|false, "srv": server
   address, "tl": timeline, "err": text}
(times from CLOCK_MONOTONIC, which every namespace shares). "ok": false means the
outcome is unknown or failed: only acknowledged commits are promises.
The workload stops when its standard input closes.
"""
import json
import random
import sys
import threading
import time

import psycopg2

INTERVAL = 0.02
WHO = "host(inet_server_addr()), substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"


class Uncertain(Exception):
    """An answer that is not an acknowledgement although no error came."""


# PostgreSQL's warning when a wait for synchronous replication is cancelled: the commit
# is then local only, and must not count as acknowledged.
SYNC_CANCELLED = "canceling wait for synchronous replication"


class Client(threading.Thread):
    def __init__(self, name, dsn, op, out, lock, stop, seed, rnd):
        super().__init__(daemon=True)
        self.name_ = name
        self.dsn = dsn
        self.op = op
        self.out = out
        self.lock = lock
        self.stop = stop
        self.rng = random.Random(seed)
        self.next_id = (seed * 10**6 + rnd) * 10**6

    def record(self, **rec):
        rec["c"] = self.name_
        line = json.dumps(rec) + "\n"
        with self.lock:
            self.out.write(line)
            self.out.flush()

    def insert(self, conn):
        self.next_id += 1
        with conn.cursor() as cur:
            cur.execute("INSERT INTO ledger (id, client) VALUES (%s, %s) RETURNING " + WHO,
                        (self.next_id, self.name_))
            srv, tl = cur.fetchone()
        return {"id": self.next_id, "srv": srv, "tl": tl}

    def transfer(self, conn):
        self.next_id += 1
        a, b = sorted(self.rng.sample(range(1, 11), 2))
        amount = self.rng.randint(1, 50)
        if self.rng.random() < 0.5:
            a, b = b, a  # from b to a half the time; rows are still locked in id order
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT " + WHO)
            srv, tl = cur.fetchone()
            cur.execute("SELECT id, balance FROM accounts WHERE id IN (%s, %s) ORDER BY id "
                        "FOR UPDATE", (a, b))
            bal = dict(cur.fetchall())
            if bal.get(a, 0) >= amount:
                cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s",
                            (amount, a))
                cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s",
                            (amount, b))
            cur.execute("INSERT INTO transfers (id) VALUES (%s)", (self.next_id,))
            tc = time.monotonic()
            cur.execute("COMMIT")
            if cur.statusmessage != "COMMIT":  # e.g. ROLLBACK: the transaction had failed
                raise Uncertain("COMMIT answered %s" % cur.statusmessage)
        return {"id": self.next_id, "srv": srv, "tl": tl, "tc": tc}

    def run(self):
        conn = None
        while not self.stop.is_set():
            t0 = time.monotonic()
            rec = {}
            try:
                if conn is None:
                    conn = psycopg2.connect(self.dsn)
                    conn.autocommit = True
                t0 = time.monotonic()
                rec = {"id": self.next_id + 1}
                del conn.notices[:]
                rec = self.insert(conn) if self.op == "insert" else self.transfer(conn)
                if any(SYNC_CANCELLED in n for n in conn.notices):
                    raise Uncertain("the wait for synchronous replication was cancelled")
                self.record(op=self.op, t0=t0, t1=time.monotonic(), ok=True, **rec)
            except Exception as exc:  # psycopg2's errors, Uncertain, anything else
                err = (getattr(exc, "pgcode", None) or "") + " " + str(exc).strip()[:200]
                self.record(op=self.op, t0=t0, t1=time.monotonic(), ok=False, err=err,
                            **{k: v for k, v in rec.items() if k == "id"})
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
                self.stop.wait(0.1)
            self.stop.wait(INTERVAL)
        if conn is not None:
            conn.close()


def main():
    out_path, proxy_dsn, direct_dsn, rnd = sys.argv[1:5]
    rnd = int(rnd)
    lock, stop = threading.Lock(), threading.Event()
    with open(out_path, "a") as out:
        clients = [
            Client("ledger-proxy-1", proxy_dsn, "insert", out, lock, stop, 1, rnd),
            Client("ledger-proxy-2", proxy_dsn, "insert", out, lock, stop, 2, rnd),
            Client("ledger-direct", direct_dsn, "insert", out, lock, stop, 3, rnd),
            Client("bank-proxy", proxy_dsn, "transfer", out, lock, stop, 4, rnd),
            Client("bank-direct", direct_dsn, "transfer", out, lock, stop, 5, rnd),
        ]
        for c in clients:
            c.start()
        print("started", flush=True)
        sys.stdin.read()
        stop.set()
        deadline = time.monotonic() + 20
        stuck = []
        for c in clients:
            c.join(max(0.1, deadline - time.monotonic()))
            if c.is_alive():
                stuck.append(c.name_)
        print(json.dumps({"stuck": stuck}), flush=True)


if __name__ == "__main__":
    main()

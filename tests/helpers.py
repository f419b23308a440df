"""Shared by the integration tests and the chaos suite: waiting on a condition with a
deadline, one query on a connection of its own."""
import time

import psycopg2


def ready(value):
    """None, False and empty containers mean "not yet"; anything else (0 too: member 0)
    is a result."""
    if value is None or value is False:
        return False
    return not (hasattr(value, "__len__") and len(value) == 0)


def wait_for(what, cond, timeout, interval=0.1, error=AssertionError):
    """Polls cond() until it returns a result (see ready) and returns it; raises error
    after timeout. The condition may raise while things settle: the last exception is
    named in the message."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if ready(value):
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise error("timed out after %.1f s waiting for %s (last error: %r)"
                % (timeout, what, last_exc))


def query(dsn, sql, args=None):
    """Runs one statement on a new autocommit connection; its rows (None without)."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()

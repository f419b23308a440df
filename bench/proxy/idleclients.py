#!/usr/bin/python3
"""One client process of the idle-clients benchmark (bench/proxy/run starts
several): opens --count connections from --source to --host:--port, logs each
one in (SCRAM-SHA-256, md5 or cleartext, whatever the server asks for) and
keeps it open, idle, after its ReadyForQuery.

Raw non-blocking sockets on one epoll loop, at most --concurrency logins in
flight. The password comes from the environment (BENCH_PGPASSWORD), never
from the command line.

Protocol with the parent, one JSON object per line:
  stdout  {"ok": ..., "failed": ..., "errors": {...}, "t0": ..., "t1": ..., ...}
          once every login has finished (t0/t1: CLOCK_MONOTONIC, shared by the
          processes of the machine, so the parent can take the wall time of all)
  stdin   "check"  -> stdout {"open": n, "closed": m}: how many of the logged-in
                      connections are still open (none readable with EOF/error)
  stdin   EOF      -> close everything and exit
"""

import argparse
import base64
import errno
import hashlib
import hmac
import json
import os
import selectors
import socket
import struct
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: take the source port at connect(), not bind()


def startup_packet(user, database):
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", database), ("application_name", "bench-idle")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(mtype, body):
    return mtype + struct.pack("!I", len(body) + 4) + body


def error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return "%s %s" % (fields.get("C", "?"), fields.get("M", "?"))


class Login:
    __slots__ = ("sock", "state", "buf", "first_bare", "server_sig", "out")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"
        self.buf = b""
        self.first_bare = None
        self.server_sig = None
        self.out = b""


class Client:
    def __init__(self, a, password):
        self.a = a
        self.user = a.user
        self.password = password.encode()
        self.startup = startup_packet(a.user, a.database)
        self.sel = selectors.DefaultSelector()
        self.salted_cache = {}  # (salt, iterations) -> SaltedPassword
        self.pbkdf2 = 0         # PBKDF2 computations (cache misses)
        self.idle = []          # logged-in sockets, kept open
        self.ok = 0
        self.failed = 0
        self.errors = {}
        self.started = 0
        self.in_flight = 0
        self.first_done = None
        self.last_done = None

    # ------------------------------------------------------------------ start
    def open_one(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((self.a.source, 0))
            s.setblocking(False)
            rc = s.connect_ex((self.a.host, self.a.port))
        except OSError as e:
            s.close()
            self.fail(None, "connect: %s" % e.strerror)
            return
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            self.fail(None, "connect: %s" % os.strerror(rc))
            return
        c = Login(s)
        self.in_flight += 1
        self.sel.register(s, selectors.EVENT_WRITE, c)

    def fail(self, c, why):
        self.failed += 1
        self.errors[why] = self.errors.get(why, 0) + 1
        if c is not None:
            self.in_flight -= 1
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()

    def done(self, c):
        self.in_flight -= 1
        self.sel.unregister(c.sock)
        self.idle.append(c.sock)
        self.ok += 1
        t = time.monotonic()
        if self.first_done is None:
            self.first_done = t
        self.last_done = t

    # ------------------------------------------------------------------ I/O
    def send(self, c, data):
        c.out += data
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            n = 0
        c.out = c.out[n:]
        self.sel.modify(c.sock, selectors.EVENT_WRITE if c.out else selectors.EVENT_READ, c)

    def on_writable(self, c):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.fail(c, "connect: %s" % os.strerror(err))
                return
            c.state = "auth"
            self.send(c, self.startup)
        else:
            self.send(c, b"")

    def on_readable(self, c):
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(c, "recv: %s" % e.strerror)
            return
        if not data:
            self.fail(c, "closed by the server during login")
            return
        c.buf += data
        while len(c.buf) >= 5:
            length = struct.unpack("!I", c.buf[1:5])[0]
            if len(c.buf) < 1 + length:
                break
            mtype, body = c.buf[:1], c.buf[5:1 + length]
            c.buf = c.buf[1 + length:]
            if not self.handle(c, mtype, body):
                return

    def handle(self, c, mtype, body):
        """False once the connection is finished (logged in or failed)."""
        if mtype == b"E":
            self.fail(c, error_text(body))
            return False
        if mtype == b"Z":
            self.done(c)
            return False
        if mtype != b"R":
            return True  # ParameterStatus, BackendKeyData, NoticeResponse
        code = struct.unpack("!I", body[:4])[0]
        if code == 0:  # AuthenticationOk
            return True
        if code == 10:  # SASL: mechanisms
            if b"SCRAM-SHA-256\0" not in body[4:]:
                self.fail(c, "no SCRAM-SHA-256 in %r" % body[4:])
                return False
            nonce = base64.b64encode(os.urandom(18)).decode()
            c.first_bare = "n=,r=" + nonce
            data = ("n,," + c.first_bare).encode()
            self.send(c, message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(data)) + data))
            return True
        if code == 11:  # SASL continue: server-first
            server_first = body[4:].decode()
            attrs = dict(x.split("=", 1) for x in server_first.split(","))
            if not attrs.get("r", "").startswith(c.first_bare[5:]):
                self.fail(c, "SCRAM: server nonce does not extend ours")
                return False
            salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
            key = (salt, iters)
            salted = self.salted_cache.get(key)
            if salted is None:
                salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
                self.pbkdf2 += 1
                if len(self.salted_cache) < 64:
                    self.salted_cache[key] = salted
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            stored = hashlib.sha256(client_key).digest()
            final_wo = "c=biws,r=" + attrs["r"]
            auth = ",".join([c.first_bare, server_first, final_wo]).encode()
            sig = hmac.new(stored, auth, hashlib.sha256).digest()
            proof = bytes(x ^ y for x, y in zip(client_key, sig))
            server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
            c.server_sig = base64.b64encode(hmac.new(server_key, auth, hashlib.sha256).digest())
            self.send(c, message(b"p", (final_wo + ",p=" + base64.b64encode(proof).decode())
                                 .encode()))
            return True
        if code == 12:  # SASL final: check the server's signature
            if body[4:].strip() != b"v=" + c.server_sig:
                self.fail(c, "SCRAM: bad server signature")
                return False
            return True
        if code == 5:  # MD5
            inner = hashlib.md5(self.password + self.user.encode()).hexdigest().encode()
            outer = "md5" + hashlib.md5(inner + body[4:8]).hexdigest()
            self.send(c, message(b"p", outer.encode() + b"\0"))
            return True
        if code == 3:  # cleartext
            self.send(c, message(b"p", self.password + b"\0"))
            return True
        self.fail(c, "unsupported authentication request %d" % code)
        return False

    # ------------------------------------------------------------------ main loop
    def run(self):
        a = self.a
        t0 = time.monotonic()
        deadline = t0 + a.timeout
        while self.started < a.count or self.in_flight:
            while self.started < a.count and self.in_flight < a.concurrency:
                self.started += 1
                self.open_one()
            if not self.in_flight:
                continue
            now = time.monotonic()
            if now >= deadline:
                for key in list(self.sel.get_map().values()):
                    self.fail(key.data, "no ReadyForQuery within %d s" % a.timeout)
                break
            for key, ev in self.sel.select(min(1.0, deadline - now)):
                c = key.data
                if ev & selectors.EVENT_WRITE:
                    self.on_writable(c)
                elif ev & selectors.EVENT_READ:
                    self.on_readable(c)
        return t0

    def check(self):
        """How many logged-in connections are still open: one poll, no wait."""
        sel = selectors.DefaultSelector()
        for s in self.idle:
            sel.register(s, selectors.EVENT_READ)
        closed = 0
        for key, _ in sel.select(0):
            try:
                data = key.fileobj.recv(65536)
                if not data:
                    closed += 1
                elif data[:1] == b"E":
                    closed += 1  # an error then a close: the server dropped it
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        sel.close()
        return {"open": len(self.idle) - closed, "closed": closed}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--source", default="127.0.0.1", help="source address to bind")
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--database", default="postgres")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=64, help="logins in flight at most")
    ap.add_argument("--timeout", type=int, default=600, help="seconds for all the logins")
    a = ap.parse_args()
    password = os.environ.get("BENCH_PGPASSWORD")
    if password is None:
        print("idleclients: BENCH_PGPASSWORD is not set", file=sys.stderr)
        return 2
    cl = Client(a, password)
    t0 = cl.run()
    out = {"source": a.source, "ok": cl.ok, "failed": cl.failed, "errors": cl.errors,
           "t0": t0, "first_done": cl.first_done, "t1": cl.last_done or time.monotonic(),
           "pbkdf2": cl.pbkdf2}
    print(json.dumps(out), flush=True)
    for line in sys.stdin:
        if line.strip() == "check":
            print(json.dumps(cl.check()), flush=True)
    for s in cl.idle:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

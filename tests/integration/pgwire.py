"""A tiny PostgreSQL wire-protocol client for tests that need to see exactly what a
server (or the proxy) answers: SQLSTATEs of login failures, malformed packets."""
import base64
import hashlib
import hmac
import os
import socket
import struct


def connect(port, host="127.0.0.1", timeout=10):
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def send_startup(s, **params):
    body = struct.pack("!I", 196608)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)


def send_msg(s, mtype, body):
    s.sendall(mtype + struct.pack("!I", len(body) + 4) + body)


def _recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def read_msg(s):
    """(type byte, body) of the next message."""
    head = _recv_exact(s, 5)
    length = struct.unpack("!I", head[1:])[0]
    return head[:1], _recv_exact(s, length - 4)


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def read_until_error_or_ready(s):
    """Reads messages until an ErrorResponse (its fields) or ReadyForQuery (None)."""
    while True:
        t, body = read_msg(s)
        if t == b"E":
            return error_fields(body)
        if t == b"Z":
            return None


def scram_login(s, user, password, database="postgres", **params):
    """Logs in with SCRAM-SHA-256 (params: more startup parameters); returns the
    ErrorResponse fields, or None on success."""
    send_startup(s, user=user, database=database, **params)
    t, body = read_msg(s)
    if t == b"E":
        return error_fields(body)
    code = struct.unpack("!I", body[:4])[0]
    assert t == b"R" and code == 10, (t, body)
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = "n=,r=" + nonce
    data = ("n,," + first_bare).encode()
    send_msg(s, b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(data)) + data)
    t, body = read_msg(s)
    if t == b"E":
        return error_fields(body)
    server_first = body[4:].decode()
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    final_wo = "c=biws,r=" + attrs["r"]
    auth = ",".join([first_bare, server_first, final_wo]).encode()
    sig = hmac.new(stored, auth, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    send_msg(s, b"p", (final_wo + ",p=" + base64.b64encode(proof).decode()).encode())
    while True:
        t, body = read_msg(s)
        if t == b"E":
            return error_fields(body)
        if t == b"Z":
            return None

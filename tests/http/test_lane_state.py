"""The C lane leaves the same state behind as the Python path.

The lane does part of Transport.handle_rx / handle_tx and of the
Protocol's bookkeeping itself (lane.c), so every completion is checked:
two servers, one with the lane and one without (c_fastpath=False), are
driven by hand from this thread, completion by completion, with the same
client bytes and the same batch clock (moved on per completion); after
each completion every slot of the connection, its protocol and the
dispatcher's connection state, the transport's scalar attributes and the
queue's pending operations must be the same on both, and so must the
bytes the clients receive.

The comparison is generic (every __slots__ attribute, every scalar
attribute of the transport): a field added to the Python path that the
lane does not maintain makes this test fail, which is the point.
"""
from __future__ import annotations

import collections
import re
import socket
import time

import pytest

import netcore
from adapters import adapt
from netcore.http import Server
from netcore.http.transport import Connection

pytest.importorskip("netcore._http")

CLOCK = [1000.0]    # the batch clock both servers see; it moves on by a second per completion


def app(req: netcore.Request):
    path = req.path
    if path == "/close":
        return netcore.Response(b"bye", headers={"Connection": "close"})
    if path == "/stream":
        return netcore.Response(iter([b"a" * 70000, b"b"]))
    if path == "/raise":
        raise RuntimeError("handler bug")
    if path == "/json":
        return {"path": path, "n": len(req.headers)}
    return netcore.Response(path.encode() + req.body, headers={"content-type": "text/plain"})


def make(interface: str, lane: bool) -> Server:
    server = Server(adapt(app, interface), port=0, interface=interface, threads=0,
                    c_fastpath=lane, log_level="critical")
    server.listen()
    # Transport.start() without its tick: no timer completions to interleave
    server._started = True
    server.dispatcher.start(server)
    server._arm_accepts()
    return server


def norm(v, depth=0):
    if isinstance(v, (bytes, bytearray)):
        return re.sub(rb"date: [^\r]*", b"date: -", bytes(v))
    if isinstance(v, (list, tuple, collections.deque)):
        return [norm(x, depth) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    if isinstance(v, dict):
        return {k: norm(x, depth) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if depth < 1 and hasattr(type(v), "__slots__"):
        return (type(v).__name__, slots(v, depth + 1))
    return type(v).__name__


# not compared: references to the server's own objects, and paused_at, which
# Connection.pause_reading stamps from the real clock (it may run between batches)
SKIP = ("transport", "handle", "config", "heads", "peer", "_client", "paused_at")


def slots(obj, depth=0, skip=SKIP):
    out = {}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name in skip:
                continue
            try:
                out[name] = norm(getattr(obj, name), depth)
            except AttributeError:
                out[name] = "<unset>"
    return out


def snapshot(server: Server, conn) -> dict:
    t = {k: v for k, v in vars(server).items()
         if isinstance(v, (bool, int, float, str)) and k not in ("now",)}
    t["conns"] = len(server.conns)
    t["dirty"] = len(server.dirty)
    t["pending_ops"] = server.q.stats()["pending_ops"]
    if conn is None:
        return t
    return {"transport": t, "conn": slots(conn), "proto": slots(conn.proto),
            "state": norm(conn.state)}


def step(server: Server, timeout: float):
    """One completion (or None when none comes within timeout), handled."""
    pending = step.pending.setdefault(id(server), [])
    if not pending:
        pending.extend(server.q.wait(timeout))
        if not pending:
            return None
    ev = pending.pop(0)
    server.now = CLOCK[0]
    server.dispatch([ev])
    return ev


step.pending = {}


def conn_of(server: Server):
    return next(iter(server.conns), None)


def drive(a: Server, b: Server, ca, cb, steps: list):
    """Send each chunk to both, then handle completions pairwise until both
    are quiet, comparing after every one."""
    seen = []
    for chunk in steps:
        if chunk == "EOF":
            ca.shutdown(socket.SHUT_WR)
            cb.shutdown(socket.SHUT_WR)
        else:
            ca.sendall(chunk)
            cb.sendall(chunk)
        while True:
            conn_a, conn_b = conn_of(a), conn_of(b)
            ea = step(a, 0.25)
            eb = step(b, 0.5 if ea is not None else 0.02)
            if ea is None and eb is None:
                break
            assert ea is not None and eb is not None, (ea, eb)
            assert (ea[0], ea[2]) == (eb[0], eb[2]), (ea, eb)
            if ea[0] == netcore.iocore.RECV:
                assert ea[3] == eb[3], "the two reads differ: cannot compare"
            ca_, cb_ = conn_a or conn_of(a), conn_b or conn_of(b)
            assert snapshot(a, ca_) == snapshot(b, cb_), (chunk, ea)
            seen.append(ea[0])
            CLOCK[0] += 1.0
    return seen


def received(s) -> bytes:
    s.setblocking(False)
    chunks = []
    try:
        while True:
            got = s.recv(65536)
            if not got:
                break
            chunks.append(got)
    except (BlockingIOError, ConnectionResetError):
        pass
    s.setblocking(True)
    return norm(b"".join(chunks))


GET = b"GET /%s HTTP/1.1\r\nHost: h\r\n\r\n"
SCENARIOS = {
    "one": [GET % b"a"],
    "pipelined": [GET % b"a" + GET % b"json" + GET % b"b"],
    "keep-alive": [GET % b"a", GET % b"b", GET % b"c"],
    "partial head after": [GET % b"a" + b"GET /b HTTP/1.1\r\nHo", b"st: h\r\n\r\n"],
    "closing": [GET % b"a" + GET % b"close" + GET % b"c"],
    "body after": [GET % b"a" + b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"],
    "stream": [GET % b"stream", GET % b"a"],
    "error": [GET % b"a" + GET % b"raise"],
    "malformed": [GET % b"a" + b"GET / HTTP/1.1\r\nHost: h\r\nBad Line\r\n\r\n"],
    "head": [b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n" + GET % b"b"],
    "http10": [b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", b"GET /b HTTP/1.0\r\n\r\n"],
    "half-close": [GET % b"a" + GET % b"b", "EOF"],
    "empty line": [b"\r\n" + GET % b"a"],
}


@pytest.mark.parametrize("interface", ["native", "wsgi"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_completion_leaves_the_same_state(interface, name):
    a, b = make(interface, True), make(interface, False)
    assert a.dispatcher.lane is not None and b.dispatcher.lane is None
    ca = socket.create_connection(a.sockname, timeout=5)
    cb = socket.create_connection(b.sockname, timeout=5)
    try:
        for s in (ca, cb):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lane0 = a.dispatcher.lane.stats()
        drive(a, b, ca, cb, [b""])   # the accepts
        seen = drive(a, b, ca, cb, SCENARIOS[name])
        assert netcore.iocore.RECV in seen
        time.sleep(0.05)
        got_a, got_b = received(ca), received(cb)
        assert got_a == got_b
        assert got_a.startswith(b"HTTP/1.")
        if name in ("one", "pipelined", "keep-alive"):
            # the lane answered these reads and counted their sends itself
            st = a.dispatcher.lane.stats()
            assert st["reads"] > lane0["reads"] and st["sends_done"] > lane0["sends_done"]
            # a small answer goes out within q.send(quiet=True): no SEND
            # completes, on either path
            assert st["sends_quiet"] > lane0["sends_quiet"]
            assert netcore.iocore.SEND not in seen, seen
    finally:
        ca.close()
        cb.close()
        for server in (a, b):
            server.close_all()

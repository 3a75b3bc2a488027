"""Iterable response bodies stream with backpressure instead of being buffered.

Each test runs with handlers inline (streams pulled on the I/O thread) and in
a thread pool (streams pulled on pool threads).  Every wait has a timeout.
"""
from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

import netcore
from conftest import read_response, recv_until_closed

CHUNK = 64 * 1024
GET = b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"   # not the fast path
SMALL = b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n"

modes = pytest.mark.parametrize("threads", [0, 2], ids=["inline", "pool"])


def body_of(n: int) -> bytes:
    return b"".join(bytes([i % 251]) * CHUNK for i in range(n))


def errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("netcore") and r.levelno >= logging.ERROR]


def slow_client(srv) -> socket.socket:
    # A small receive buffer (set before connecting) stops the kernel from
    # absorbing megabytes on the client's behalf.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.settimeout(10)
    s.connect((srv.host, srv.port))
    return s


@modes
def test_large_stream_to_slow_reader_is_intact_and_bounded(serve, threads):
    n = 200
    received = [0]          # body-ish bytes the client has read (updated by the client)
    pulled = [0]
    ahead = [0]             # the most the server has pulled beyond what the client read

    def gen():
        for i in range(n):
            pulled[0] += CHUNK
            ahead[0] = max(ahead[0], pulled[0] - received[0])
            yield bytes([i % 251]) * CHUNK

    def app(request):
        return netcore.Response(gen())

    srv = serve(app, threads=threads)
    s = slow_client(srv)
    # Pin the server side's kernel send buffer too (loopback autotunes it to
    # MiBs), so that "pulled minus received" measures the server's own buffering.
    deadline = time.monotonic() + 5
    while len(srv.server.conns) != 1:
        assert time.monotonic() < deadline, "the server never accepted"
        time.sleep(0.005)
    conn, = srv.server.conns
    conn.handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    s.sendall(GET)
    buf = bytearray()
    deadline = time.monotonic() + 30
    while not buf.endswith(b"\r\n0\r\n\r\n"):
        assert time.monotonic() < deadline, "stream did not finish"
        try:
            data = s.recv(16 * 1024)
        except socket.timeout:
            # (CI saw this stall once, with 3 I/O threads: say where it stood)
            state = {k: getattr(conn, k, None) for k in ("sending", "want_drain", "dirty", "rx_armed",
                                                           "closed", "app_paused", "lingering")}
            raise AssertionError(f"stalled: client has {len(buf)} bytes, app yielded {pulled[0]}; "
                                 f"{state}, output queued: {conn.proto.out!r:.200}") from None
        assert data, "server closed mid-stream"
        buf += data
        received[0] = len(buf)
        if len(buf) % 4 == 0:
            time.sleep(0.0005)  # throttle only: the client is a slow reader
    resp, body, rest = read_response(s, buf)
    assert resp.status_code == 200 and (b"transfer-encoding", b"chunked") in list(resp.headers)
    assert body == body_of(n) and rest == b""
    assert ahead[0] < 1024 * 1024, f"pulled {ahead[0]} bytes ahead of the client"
    # keep-alive continues after the last chunk
    s.sendall(GET)
    resp, body, _ = read_response(s, timeout=30)
    assert body == body_of(n)


@modes
@pytest.mark.parametrize("first", [GET, POST], ids=["get", "post"])
def test_pipelined_response_waits_for_the_stream(serve, threads, first):
    def app(request):
        if request.path == "/small":
            return b"small"
        return netcore.Response(bytes([i % 251]) * CHUNK for i in range(20))
    srv = serve(app, threads=threads)
    s = srv.connect(timeout=10)
    s.sendall(first + SMALL + first)
    resp, body, rest = read_response(s)
    assert body == body_of(20)
    resp, body, rest = read_response(s, bytearray(rest))
    assert body == b"small"
    resp, body, rest = read_response(s, bytearray(rest))
    assert body == body_of(20) and rest == b""


@modes
def test_iterator_raising_midway_closes_and_logs(serve, caplog, threads):
    def gen():
        yield b"a" * CHUNK
        yield b"b" * CHUNK
        raise RuntimeError("database went away")

    srv = serve(lambda r: netcore.Response(gen()), threads=threads)
    s = srv.connect()
    s.sendall(GET + SMALL)
    data = recv_until_closed(s, timeout=5)
    assert data.startswith(b"HTTP/1.1 200 ") and not data.endswith(b"0\r\n\r\n")
    assert b"small" not in data
    recs = errors(caplog)
    assert recs and recs[0].name == "netcore.error" and "midway" in recs[0].getMessage()
    assert "database went away" in str(recs[0].exc_info[1])


@modes
def test_client_disconnect_midway_closes_the_generator(serve, caplog, threads):
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield b"x" * CHUNK
        finally:
            closed.set()

    srv = serve(lambda r: b"small" if r.path == "/small" else netcore.Response(endless()),
                threads=threads)
    s = slow_client(srv)
    s.sendall(GET)
    got = 0
    while got < 4 * CHUNK:
        data = s.recv(65536)
        assert data
        got += len(data)
    s.close()  # unread data pending: the kernel resets the connection
    assert closed.wait(10), "generator was not closed after the client left"
    assert errors(caplog) == []
    # the server is still healthy
    c = srv.connect()
    c.sendall(SMALL)
    assert read_response(c)[1] == b"small"


@modes
@pytest.mark.parametrize("declared,produced", [(3 * CHUNK, 5), (10 * CHUNK, 3)], ids=["more", "fewer"])
def test_content_length_mismatch_midway_closes(serve, caplog, threads, declared, produced):
    closed = threading.Event()

    def gen():
        try:
            for _ in range(produced):
                yield b"z" * CHUNK
        finally:
            closed.set()

    srv = serve(lambda r: netcore.Response(gen(), headers={"content-length": str(declared)}),
                threads=threads)
    s = srv.connect()
    s.sendall(GET + SMALL)
    data = recv_until_closed(s, timeout=5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: %d" % declared in head and b"chunked" not in head
    assert len(body) <= declared and set(body) == {ord("z")} and b"small" not in data
    assert closed.wait(5)
    recs = errors(caplog)
    assert recs and "content-length" in recs[0].getMessage()


@modes
def test_exact_content_length_stream_keeps_alive(serve, threads):
    srv = serve(lambda r: netcore.Response((b"q" * CHUNK for _ in range(10)),
                                           headers={"content-length": str(10 * CHUNK)}),
                threads=threads)
    s = srv.connect()
    s.sendall(GET + GET)
    resp, body, rest = read_response(s)
    assert body == b"q" * (10 * CHUNK) and (b"content-length", b"%d" % (10 * CHUNK)) in list(resp.headers)
    resp, body, rest = read_response(s, bytearray(rest))
    assert body == b"q" * (10 * CHUNK) and rest == b""


@modes
def test_head_does_not_iterate_but_closes(serve_native, threads):
    closed = threading.Event()
    started = []

    def gen():
        started.append(1)
        try:
            yield b"never"
        finally:
            closed.set()

    class Body:
        def __iter__(self):
            return gen()

        def close(self):
            closed.set()

    srv = serve_native(lambda r: netcore.Response(Body()), threads=threads)
    s = srv.connect()
    s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + SMALL)
    s.settimeout(5)
    buf = b""
    while buf.count(b"HTTP/1.1 200") < 2 or not buf.endswith(b"0\r\n\r\n"):
        data = s.recv(65536)
        assert data
        buf += data
    first, _, second = buf.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in first and second.startswith(b"HTTP/1.1 200")
    assert closed.wait(5) and started == [1]  # only the GET iterated it


def test_http10_stream_is_close_delimited(serve):
    srv = serve(lambda r: netcore.Response(bytes([i % 251]) * CHUNK for i in range(8)))
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = recv_until_closed(s, timeout=5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"chunked" not in head and b"connection: close" in head and body == body_of(8)

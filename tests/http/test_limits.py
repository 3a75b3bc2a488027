"""Timeouts and the concurrency limit (the sweep runs once a second)."""
from __future__ import annotations

import socket
import time

import netcore
from conftest import read_response, recv_until_closed

H = b"Host: x\r\n"


def hello(request):
    return netcore.Response(b"hi")


def test_keep_alive_idle_timeout(serve):
    srv = serve(hello, timeout_keep_alive=1)
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    resp, body, _ = read_response(s)
    assert body == b"hi"
    t0 = time.monotonic()
    assert recv_until_closed(s, timeout=5) == b""
    assert 0.5 < time.monotonic() - t0 < 3.5


def test_idle_new_connection_is_closed(serve):
    srv = serve(hello, timeout_keep_alive=1)
    s = srv.connect()
    t0 = time.monotonic()
    assert recv_until_closed(s, timeout=5) == b""
    assert time.monotonic() - t0 < 3.5


def test_slowloris_header_trickle_is_cut_off(serve):
    srv = serve(hello, timeout_header_read=1, timeout_keep_alive=30)
    s = srv.connect()
    t0 = time.monotonic()
    head = b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(100))
    cut = False
    for i in range(len(head)):
        try:
            s.send(head[i:i + 1])
        except OSError:
            cut = True
            break
        s.settimeout(0.05)
        try:
            data = s.recv(4096)
        except socket.timeout:
            continue
        assert data.startswith(b"HTTP/1.1 408 ") or data == b""
        cut = True
        break
    assert cut, "a trickling client was never cut off"
    assert time.monotonic() - t0 < 4


def test_body_read_timeout(serve):
    srv = serve(hello, timeout_body_read=1, timeout_keep_alive=30)
    s = srv.connect()
    s.sendall(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\nabc")
    t0 = time.monotonic()
    data = recv_until_closed(s, timeout=5)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - t0 < 3.5


def test_limit_concurrency_stops_and_resumes_accepting(serve):
    srv = serve(hello, limit_concurrency=2, timeout_keep_alive=30)
    a, b = srv.connect(), srv.connect()
    for s in (a, b):
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(s)[1] == b"hi"
    c = srv.connect()  # completes in the kernel backlog, but is not accepted
    c.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    c.settimeout(0.7)
    try:
        early = c.recv(100)
    except socket.timeout:
        early = None
    assert early is None, "a connection above the limit was served"
    assert len(srv.server.conns) == 2
    a.close()  # below the limit again: c is accepted and answered
    resp, body, _ = read_response(c, timeout=5)
    assert body == b"hi"
    b.close()
    c.close()

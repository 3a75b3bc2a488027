"""Timeouts and the concurrency limit (the sweep runs every 0.1 s; see
test_deadlines.py for how exactly they fire)."""
from __future__ import annotations

import asyncio
import socket
import threading
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


def echo_size(request):
    return netcore.Response(b"%d" % len(request.body))


def test_body_trickle_is_cut_by_the_minimum_rate(serve):
    # 10 bytes/s against a 1000 bytes/s minimum: cut when the grace period
    # ends, long before the (inactivity) body timeout
    srv = serve(echo_size, min_body_rate=1000, min_body_rate_grace=1, timeout_body_read=30,
                timeout_keep_alive=30)
    s = srv.connect()
    s.settimeout(0.1)
    t0 = time.monotonic()
    s.sendall(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n")
    data = b""
    while not data and time.monotonic() - t0 < 5:
        try:
            s.send(b"x")
            data = s.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
    elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 ") and b"too slow" in data, data[:120]
    assert 1.0 <= elapsed <= 1.0 + 0.2 + 0.5, elapsed


def _upload(s, head: bytes, body: bytes, rate: float, piece: int = 2048) -> None:
    """Send head, then body at about ``rate`` bytes/s."""
    s.sendall(head)
    t0 = time.monotonic()
    for i in range(0, len(body), piece):
        s.sendall(body[i:i + piece])
        ahead = (i + piece) / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)


def test_honest_slow_upload_is_not_cut(serve):
    # ~40 KB/s for 3 s: above the minimum rate, and longer than the body
    # timeout, which limits only pauses (it was a whole-body deadline)
    srv = serve(echo_size, min_body_rate=10_000, min_body_rate_grace=0.5, timeout_body_read=1)
    s = srv.connect()
    body = b"u" * 120_000
    t0 = time.monotonic()
    _upload(s, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body), body, 40_000)
    resp, got, _ = read_response(s)
    assert time.monotonic() - t0 > 2.5
    assert resp.status_code == 200 and got == b"%d" % len(body)


def _late_reader(interface: str, delay: float, sizes: list):
    """An application that reads its body only after ``delay`` seconds."""
    if interface == "asgi":
        async def app(scope, receive, send):
            await asyncio.sleep(delay)
            n = 0
            while True:
                m = await receive()
                n += len(m.get("body", b""))
                if not m.get("more_body"):
                    break
            sizes.append(n)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"%d" % n})
        return app

    def wsgi(environ, start_response):
        time.sleep(delay)
        n = len(environ["wsgi.input"].read())
        sizes.append(n)
        start_response("200 OK", [])
        return [b"%d" % n]
    return wsgi


def test_the_body_clocks_stop_while_the_application_holds_reading(serve_app):
    # The application takes 2 s to start reading a 4 MiB body; meanwhile the
    # server stops reading the socket (flow control).  That is not the
    # client's slowness: neither the body timeout (0.5 s) nor the minimum
    # rate cuts it.
    body = b"b" * (4 * 1024 * 1024)
    for interface in ("asgi", "wsgi"):
        sizes: list = []
        srv = serve_app(_late_reader(interface, 2.0, sizes), interface=interface, threads=2,
                        timeout_body_read=0.5, min_body_rate=200_000, min_body_rate_grace=0.5)
        s = srv.connect(timeout=10)
        sender = threading.Thread(target=s.sendall, args=(
            b"POST / HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body,))
        sender.start()
        resp, got, _ = read_response(s, timeout=15)
        sender.join(10)
        assert resp.status_code == 200 and got == b"%d" % len(body), (interface, resp, got[:80])
        assert sizes == [len(body)]
        s.close()


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

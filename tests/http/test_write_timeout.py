"""The write timeout: a client that stops reading is closed, its resources freed.

"Progress" is a send completing: a client that reads slowly but steadily is
never cut, one that stops reading is closed ``timeout_write`` seconds after
the last send that completed, on every interface, and the answer's
resources go at once: the body iterator's close(), the ASGI application's
disconnect, the connection's buffers and operations.
"""
from __future__ import annotations

import socket
import threading
import time

import netcore
from adapters import adapt
from conftest import INTERFACES

H = b"Host: x\r\n"
WRITE_TIMEOUT = 1.0
BOUND = 0.2 + 0.5         # a tick, plus filling the socket buffers and this machine's noise


class Endless:
    """An endless response body that records its close()."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self):
        chunk = b"x" * 65536
        while not self.closed.is_set():
            yield chunk

    def close(self) -> None:
        self.closed.set()


def _ask_endless(serve_app) -> list:
    """A server per interface answering an endless body, each asked by a
    client with a small receive buffer: [(interface, server, body, the
    server's idle stats, socket, time sent)]."""
    runs = []
    for interface in INTERFACES:
        body = Endless()
        srv = serve_app(adapt(lambda r, body=body: netcore.Response(body), interface),
                        interface=interface, timeout_write=WRITE_TIMEOUT, timeout_keep_alive=30)
        deadline = time.monotonic() + 5
        while not srv.server.q.stats()["timers"] and time.monotonic() < deadline:
            time.sleep(0.01)     # started: accepts and the tick armed
        baseline = srv.server.q.stats()
        s = srv.connect(timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        t_sent = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        runs.append((interface, srv, body, baseline, s, t_sent))
    return runs


def _released(srv, baseline, body, timeout: float = 5.0) -> None:
    """The answer's iterator is closed and the connection's handle and
    operations are gone (back to the listener's own)."""
    assert body.closed.wait(timeout), "the body iterator was not closed"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = srv.server.q.stats()
        if (not srv.server.conns and stats["live_handles"] == baseline["live_handles"]
                and stats["pending_ops"] == baseline["pending_ops"]):
            return
        time.sleep(0.02)
    raise AssertionError(f"resources not released: {srv.server.q.stats()} vs {baseline}")


def _closed_by_server(s: socket.socket, timeout: float) -> float:
    """Drain what is buffered until the server's close (EOF or reset)."""
    s.settimeout(timeout)
    try:
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic()


def test_a_client_that_never_reads_is_closed_after_the_write_timeout(serve_app):
    runs = _ask_endless(serve_app)
    for interface, srv, body, baseline, s, t_sent in runs:
        # the server gives up on its own: it closes while we still read nothing
        assert body.closed.wait(WRITE_TIMEOUT + BOUND + 3), f"{interface}: never cut"
        t_cut = time.monotonic()
        assert t_cut - t_sent >= WRITE_TIMEOUT, (interface, t_cut - t_sent)
        assert t_cut - t_sent <= WRITE_TIMEOUT + BOUND, (interface, t_cut - t_sent)
        _closed_by_server(s, 5)
        _released(srv, baseline, body)
        s.close()


def test_a_slow_steady_reader_is_not_cut_and_is_once_it_stops(serve_app):
    runs = _ask_endless(serve_app)
    # 2.5 write timeouts of reading at ~350 KiB/s: every send completes well
    # within the timeout, so none of them is cut
    t0 = time.monotonic()
    got = {r[0]: 0 for r in runs}
    while time.monotonic() - t0 < 2.5 * WRITE_TIMEOUT:
        for interface, srv, body, baseline, s, _ in runs:
            data = s.recv(16384)
            assert data, f"{interface}: a steadily reading client was cut"
            got[interface] += len(data)
        time.sleep(0.045)
    assert all(n > 500_000 for n in got.values()), got
    assert not any(r[2].closed.is_set() for r in runs)
    t_stop = time.monotonic()
    for interface, srv, body, baseline, s, _ in runs:
        assert body.closed.wait(WRITE_TIMEOUT + BOUND + 3), f"{interface}: never cut once it stopped"
        # (the last send may have completed just before we stopped reading)
        assert time.monotonic() - t_stop <= WRITE_TIMEOUT + BOUND, interface
        _closed_by_server(s, 5)
        _released(srv, baseline, body)
        s.close()


def test_an_asgi_application_learns_of_the_cut_as_a_disconnect(serve_app):
    seen = []
    done = threading.Event()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"y" * 65536, "more_body": True})
        except OSError as exc:
            seen.append(type(exc).__name__)
        seen.append(await receive())
        done.set()

    srv = serve_app(app, interface="asgi", timeout_write=WRITE_TIMEOUT, timeout_keep_alive=30)
    s = srv.connect(timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    assert done.wait(WRITE_TIMEOUT + BOUND + 3), "the application never learnt of the cut"
    assert seen == ["ClientDisconnected", {"type": "http.disconnect"}]
    s.close()

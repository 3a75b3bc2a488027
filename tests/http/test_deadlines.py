"""Timeouts fire on time: never before their setting, at most a tick after.

Deadlines are floats computed from a clock read once per q.wait batch and
swept by a 0.1 s tick, so a timeout of T seconds must fire in [T, T + 0.2].
Every timeout is measured with real sockets, all at once: one server per
interface and setting, three connections each (idle after an answer, a
partial head, a partial body), watched by one selector.

The lower bound is measured from just before the client sent (the server
cannot have started its clock earlier); the upper bound from when the
client saw the last thing that restarts the clock (the answer, for an idle
connection).  SLACK covers this shared 2-core machine's scheduling: the
server and the client are threads and processes competing with other jobs.
"""
from __future__ import annotations

import selectors
import socket
import time
from concurrent.futures import ThreadPoolExecutor


import netcore
from adapters import adapt
from conftest import INTERFACES, read_response

SETTINGS = (1.0, 2.0, 5.0)
TICK_BOUND = 0.2          # the guarantee
SLACK = 0.3               # measurement noise on a loaded machine (see the docstring)
H = b"Host: x\r\n"


def hello(request):
    return netcore.Response(b"hi")


def _start_watch(srv, kind: str) -> tuple:
    """Open a connection in the state ``kind``; return (sock, t_sent, t_ref)."""
    s = srv.connect(timeout=10)
    if kind == "idle":
        t_sent = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        _, body, rest = read_response(s)
        assert body == b"hi" and rest == b""
        return s, t_sent, time.monotonic()
    t_sent = time.monotonic()
    if kind == "head":
        s.sendall(b"GET / HTTP/1.1\r\n" + H)
    else:
        s.sendall(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 100\r\n\r\nabc")
    return s, t_sent, t_sent


def test_timeouts_fire_within_a_tick_after_their_setting_and_never_before(serve_app):
    watches = []
    for interface in INTERFACES:
        for seconds in SETTINGS:
            srv = serve_app(adapt(hello, interface), interface=interface,
                            timeout_keep_alive=seconds, timeout_header_read=seconds,
                            timeout_body_read=seconds, min_body_rate=0)
            for kind in ("idle", "head", "body"):
                s, t_sent, t_ref = _start_watch(srv, kind)
                watches.append((f"{interface} {kind} {seconds:g}s", seconds, s, t_sent, t_ref))
    sel = selectors.DefaultSelector()
    for w in watches:
        w[2].setblocking(False)
        sel.register(w[2], selectors.EVENT_READ, w)
    fired = {}
    deadline = time.monotonic() + max(SETTINGS) + 5
    while len(fired) < len(watches) and time.monotonic() < deadline:
        for key, _ in sel.select(0.05):
            now = time.monotonic()
            name, seconds, s, t_sent, t_ref = key.data
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            # the answer to a timed-out head or body is a 408; an idle
            # connection is simply closed
            assert data == b"" or data.startswith(b"HTTP/1.1 408 "), (name, data[:40])
            fired[name] = (now - t_sent, now - t_ref, seconds)
            sel.unregister(s)
            s.close()
    missing = [w[0] for w in watches if w[0] not in fired]
    assert not missing, f"never fired: {missing}"
    early = {n: round(a, 3) for n, (a, _, t) in fired.items() if a < t}
    assert not early, f"fired before their setting: {early}"
    late = {n: round(b - t, 3) for n, (_, b, t) in fired.items() if b > t + TICK_BOUND + SLACK}
    assert not late, f"fired too late (seconds after the setting): {late}"


def _wait_closed(s, timeout: float) -> float:
    """Block until the server closes ``s``; the time it did."""
    s.settimeout(timeout)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    t = time.monotonic()
    assert data == b"", data[:40]
    return t


def _slow_app(interface: str, seconds: float):
    """An application that answers after ``seconds`` without blocking the
    I/O thread: on the pool (native, WSGI) or awaiting (ASGI)."""
    if interface != "asgi":
        def handler(request):
            time.sleep(seconds)
            return netcore.Response(b"late")
        return adapt(handler, interface)

    async def app(scope, receive, send):
        import asyncio
        await receive()
        await asyncio.sleep(seconds)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})
    return app


def _on_every_interface(check) -> None:
    """Run check(interface) for every interface at once (threads), so the
    waits overlap; re-raise the first failure."""
    with ThreadPoolExecutor(len(INTERFACES)) as pool:
        for future in [pool.submit(check, i) for i in INTERFACES]:
            future.result()


def test_keep_alive_clock_starts_when_a_slow_answer_is_out(serve_app):
    # The application takes longer than the keep-alive timeout: the
    # connection is not idle while it works, and is idle for the full
    # timeout after its answer.
    servers = {i: serve_app(_slow_app(i, 1.5), interface=i, threads=2, timeout_keep_alive=1)
               for i in INTERFACES}

    def check(interface):
        s = servers[interface].connect(timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        _, body, _ = read_response(s, timeout=10)
        t_answer = time.monotonic()
        assert body == b"late"
        idle = _wait_closed(s, 5) - t_answer
        assert 1.0 - 0.05 <= idle <= 1.0 + TICK_BOUND + SLACK, (interface, idle)

    _on_every_interface(check)


def test_keep_alive_clock_starts_when_a_long_send_has_completed(serve_app):
    # An answer that takes longer to send than the keep-alive timeout (a
    # slow reader): the idle clock starts once its last byte is out.  "Out"
    # is the server's send completing, which happens once the kernel holds
    # the last byte: up to ``buffered`` bytes before the client has read them.
    big = b"z" * (16 * 1024 * 1024)
    rcvbuf = 65536
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        buffered = int(f.read().split()[2]) + 4 * rcvbuf
    servers = {i: serve_app(adapt(lambda r: big, i), interface=i, timeout_keep_alive=1,
                            timeout_write=30) for i in INTERFACES}

    def check(interface):
        s = servers[interface].connect(timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        first = s.recv(65536)
        total = first.index(b"\r\n\r\n") + 4 + len(big)
        got = len(first)
        t0 = time.monotonic()
        t_could_complete = None     # from here on, the server's send may have completed
        while got < total:          # read at ~8 MiB/s: about 2 s
            chunk = s.recv(min(65536, total - got))
            assert chunk, "closed while the answer was still being sent"
            got += len(chunk)
            if t_could_complete is None and got >= total - buffered:
                t_could_complete = time.monotonic()
            ahead = got / (8 * 1024 * 1024) - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        t_done = time.monotonic()
        assert t_could_complete - t0 > 1.2, "the answer went out faster than the keep-alive timeout"
        t_closed = _wait_closed(s, 5)
        assert t_closed - t_could_complete >= 1.0, (interface, t_closed - t_could_complete)
        assert t_closed - t_done <= 1.0 + TICK_BOUND + SLACK, (interface, t_closed - t_done)

    _on_every_interface(check)

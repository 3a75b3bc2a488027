"""Fixtures: a real netcore server on a loopback port, in a thread.

Every socket has a timeout and every server is stopped and joined with a
timeout, so a broken server fails a test instead of hanging the suite.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from adapters import adapt
from netcore import iocore
from netcore.http import Server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Running:
    def __init__(self, server: Server, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.host, self.port = server.sockname

    def connect(self, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "server did not stop"


# The behaviour suite runs on every dispatcher: the tests write native
# handlers, and adapters.py runs the same logic as a WSGI or an ASGI app.
# It runs on both request parsers too; the second parser (llhttp) does not
# depend on the interface, so it runs behind the native one only.
# And on every completion backend of this machine beyond the default one
# (io_uring, poll), with each interface.
INTERFACES = ("native", "wsgi", "asgi")
_OTHER_BACKENDS = [b for b in iocore.backends()[1:] if b != "iocp"]
# And with several I/O threads on one queue (native and WSGI; ASGI has one),
# also on io_uring, where each I/O thread gets a ring of its own.
VARIANTS = (("native", "netcore", "auto", 1), ("wsgi", "netcore", "auto", 1),
            ("asgi", "netcore", "auto", 1), ("native", "httptools", "auto", 1),
            *((i, "netcore", b, 1) for b in _OTHER_BACKENDS for i in INTERFACES),
            ("native", "netcore", "auto", 3), ("wsgi", "netcore", "auto", 3),
            *((i, "netcore", "uring", 3) for i in ("native", "wsgi") if "uring" in _OTHER_BACKENDS))


def _variant_id(variant: tuple) -> str:
    interface, parser, backend, io_threads = variant
    return "-".join([interface] + [p for p in (parser, backend) if p not in ("netcore", "auto")]
                    + ([f"io{io_threads}"] if io_threads > 1 else []))


def _server_fixture(interface, parser="netcore", backend="auto", io_threads=1):
    running: list[Running] = []

    def start(app, **options) -> Running:
        options.setdefault("port", 0)
        options.setdefault("interface", interface)
        options.setdefault("http", parser)
        options.setdefault("backend", backend)
        options.setdefault("io_threads", io_threads)
        if options["interface"] == "asgi":
            options.setdefault("lifespan", "off")
        server = Server(adapt(app, interface) if interface in ("wsgi", "asgi") else app, **options)
        server.listen()
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        r = Running(server, t)
        running.append(r)
        return r

    return running, start


@pytest.fixture(params=VARIANTS, ids=[_variant_id(v) for v in VARIANTS])
def variant(request) -> tuple:
    return request.param


@pytest.fixture
def serve(variant):
    """Start a server on a native handler, behind every interface in turn
    (and on the second request parser)."""
    running, start = _server_fixture(*variant)
    yield start
    for r in running:
        r.stop()


@pytest.fixture
def serve_native():
    """Start a server on a native handler (tests of the native API itself)."""
    running, start = _server_fixture("native")
    yield start
    for r in running:
        r.stop()


@pytest.fixture
def serve_app():
    """Start a server on an application of any interface (auto-detected
    unless ``interface=`` is given)."""
    running, start = _server_fixture("auto")
    yield start
    for r in running:
        r.stop()


def recv_until_closed(s: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes (or a reset)."""
    s.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    else:
        raise AssertionError("server did not close the connection")
    return b"".join(chunks)


def read_response(s: socket.socket, buf: bytearray = None, timeout: float = 5.0):
    """Read one response with h11 (strict); returns (h11.Response, body, leftover)."""
    import h11
    conn = h11.Connection(h11.CLIENT)
    # h11 needs to believe it sent a request to parse a response
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    s.settimeout(timeout)
    if buf:
        conn.receive_data(bytes(buf))
    response = None
    body = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = s.recv(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body.append(bytes(event.data))
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return response, b"".join(body), conn.trailing_data[0]


def run_cli(args, env=None, **kw) -> subprocess.Popen:
    e = dict(os.environ)
    e["PYTHONUNBUFFERED"] = "1"
    if env:
        e.update(env)
    return subprocess.Popen([sys.executable, "-m", "netcore", *args], cwd=REPO, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


class StderrLines:
    """A subprocess's stderr, read line by line by a thread.

    select() on the pipe and a buffered readline() do not mix: a line that
    is already in the reader's buffer never wakes select(), so a line
    logged right behind another (two workers starting at once) was lost.
    """

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 10.0) -> list:
        """The first ``count`` regex matches among the lines (waiting for
        them up to ``timeout``); fewer if they did not come."""
        import re
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in map(re.compile(pattern).search, self.lines) if m]
                if len(found) >= count or self.closed:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    return found
                self._cond.wait(left)

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


def stderr_lines(proc: subprocess.Popen) -> StderrLines:
    """The (one) StderrLines of ``proc``."""
    lines = getattr(proc, "_stderr_lines", None)
    if lines is None:
        lines = proc._stderr_lines = StderrLines(proc.stderr)
    return lines


def wait_for_port_in_log(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """Wait for 'serving on http://host:PORT' (or the supervisor's 'workers
    on host:PORT'); return PORT."""
    lines = stderr_lines(proc)
    found = lines.wait_for(r"(?:serving on http://|workers on )[^ ]*?:(\d+)", timeout=timeout)
    if not found:
        proc.kill()
        raise AssertionError("server did not start: " + lines.text())
    return int(found[0].group(1))


def stop_process(proc: subprocess.Popen, sig: int = None, timeout: float = 15.0) -> int:
    """Signal a server process (SIGTERM by default) and wait for its exit
    code; kill it and fail if it does not exit in time."""
    import signal as _signal
    if proc.poll() is None:
        proc.send_signal(_signal.SIGTERM if sig is None else sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("server did not exit")


class BodyPump:
    """Sends a ``size``-byte request body on a thread, as fast as the server
    takes it, so a test can see whether the server stops reading."""

    def __init__(self, s: socket.socket, size: int, byte: bytes = b"x") -> None:
        self.sent = 0
        self.size = size
        self._s = s
        self._chunk = byte * 65536
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        self._s.settimeout(20)
        while self.sent < self.size:
            self.sent += self._s.send(self._chunk[:self.size - self.sent])

    def stalled(self, timeout: float = 10.0) -> bool:
        """Wait until the sender makes no progress for 0.3 s; True if it
        stalled before the end of the body (the server stopped reading)."""
        last = -1
        deadline = time.monotonic() + timeout
        while self.sent != last:
            assert time.monotonic() < deadline, "the sender never stalled nor finished"
            last = self.sent
            time.sleep(0.3)
        return self.sent < self.size

    def join(self, timeout: float = 20.0) -> None:
        self._t.join(timeout)

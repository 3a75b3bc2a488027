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
INTERFACES = ("native", "wsgi", "asgi")


def _server_fixture(interface):
    running: list[Running] = []

    def start(app, **options) -> Running:
        options.setdefault("port", 0)
        options.setdefault("interface", interface)
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


@pytest.fixture(params=INTERFACES)
def interface(request) -> str:
    return request.param


@pytest.fixture
def serve(interface):
    """Start a server on a native handler, behind every interface in turn."""
    running, start = _server_fixture(interface)
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


def wait_for_port_in_log(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """Read stderr lines until 'serving on http://host:PORT'; return PORT."""
    import re
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if not sel.select(max(0.0, deadline - time.monotonic())):
            break
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"(?:serving on http://|workers on )[^ ]*?:(\d+)", line)
        if m:
            return int(m.group(1))
    proc.kill()
    raise AssertionError("server did not start: " + "".join(seen))

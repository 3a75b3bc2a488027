"""Fixtures for the benchmark suite's own tests: a server that counts what
it received, and the C engine of the built-in generator when it builds.

Everything is bounded: sockets have timeouts, threads are joined with a
timeout, generator runs have a deadline.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Optional

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks import loadgen  # noqa: E402


class CountingServer:
    """An HTTP/1.1 server in threads that counts every request head (and
    body byte) it reads, and answers each in order: Content-Length bodies,
    or chunked with `chunked=True`.  `delay(n, s)` holds the n-th request's
    answer (counting from 1 over all connections) for s seconds."""

    def __init__(self, body: bytes = b"Hello, World!", chunked: bool = False) -> None:
        self.body = body
        self.chunked = chunked
        self.requests = 0
        self.body_bytes = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.delays: dict[int, float] = {}
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def delay(self, nth: int, seconds: float) -> None:
        self.delays[nth] = seconds

    def response(self) -> bytes:
        if self.chunked:
            half = len(self.body) // 2
            parts = [self.body[:half], self.body[half:]]
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(self.body), self.body)

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        reply = self.response()
        buf, body_left, nth = b"", 0, 0
        with conn:
            while not self.stopping:
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buf += data
                out: list[bytes] = []
                while True:
                    if body_left:  # the body of request nth: count it, answer when complete
                        take = min(body_left, len(buf))
                        body_left -= take
                        buf = buf[take:]
                        with self.lock:
                            self.body_bytes += take
                        if body_left:
                            break
                        self._answer(conn, nth, reply, out)
                        continue
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buf = buf[:end], buf[end + 4:]
                    with self.lock:
                        self.requests += 1
                        nth = self.requests
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            body_left = int(value)
                    if not body_left:
                        self._answer(conn, nth, reply, out)
                if out:
                    try:
                        conn.sendall(b"".join(out))
                    except OSError:
                        return

    def _answer(self, conn: socket.socket, nth: int, reply: bytes, out: list) -> None:
        wait = self.delays.pop(nth, 0)
        if wait:  # answers before it go out first, in order
            if out:
                conn.sendall(b"".join(out))
                out.clear()
            time.sleep(wait)
        out.append(reply)

    def close(self) -> None:
        self.stopping = True
        self.listener.close()
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)


@pytest.fixture
def counting_server():
    servers = []

    def make(**kw) -> CountingServer:
        s = CountingServer(**kw)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()


@pytest.fixture(scope="session")
def c_engine(tmp_path_factory) -> Optional[loadgen.Engine]:
    engine, _why = loadgen.build_c_engine(str(tmp_path_factory.mktemp("loadgen")))
    return engine


@pytest.fixture(params=["python", "c"])
def engine(request, c_engine) -> loadgen.Engine:
    """Each engine of the built-in generator; the C one where it builds."""
    if request.param == "python":
        return loadgen.PYTHON_ENGINE
    if c_engine is None:
        pytest.skip("the C engine did not build here (no C compiler?)")
    return c_engine

"""The idle scenario: server memory per idle keep-alive connection.

Opens N connections to a fresh server, has each make one request (one
echo for the core's echo servers), so it sits in the server's keep-alive
state, not merely in the accept queue; then
waits until the server holds them all and its RSS has settled, and divides
the RSS growth of the server's process tree by N.  Connections are closed
with a reset, so no TIME_WAIT piles up across runs.
"""
from __future__ import annotations

import socket
import struct
import time
from typing import Optional

from . import procs

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

_LINGER_RST = struct.pack("ii", 1, 0)
BATCH = 250
ECHO = b"x" * 64


def raise_nofile(need: int) -> int:
    """Raises this process's descriptor limit towards need; returns the limit."""
    if resource is None:
        return need  # no such limit to raise
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


def settle_rss(pid: int, timeout: float = 20.0) -> Optional[int]:
    """The tree's RSS once three samples 0.2 s apart agree (or at timeout)."""
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while time.monotonic() < deadline:
        cur = procs.tree_rss_bytes(pid)
        if cur is None:
            return None
        same = same + 1 if cur == last else 0
        if same >= 2:
            return cur
        last = cur
        time.sleep(0.2)
    return last


def _read_response(s: socket.socket, echo: bool) -> None:
    got = b""
    if echo:
        while len(got) < len(ECHO):
            chunk = s.recv(len(ECHO) - len(got))
            if not chunk:
                raise ConnectionError("the server closed a connection during its first echo")
            got += chunk
        if got != ECHO:
            raise ConnectionError(f"wrong echo {got!r}")
        return
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed a connection during its first request")
        got += chunk
    if not got.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected response {got[:40]!r}")


def measure(pid: int, port: int, connections: int, timeout: float = 120.0, echo: bool = False) -> dict:
    """One run against a running server (an echo server with echo=True);
    returns the figures."""
    limit = raise_nofile(connections + 256)
    if limit < connections + 64:
        raise OSError(f"the descriptor limit ({limit}) is too low for {connections} connections")
    base = settle_rss(pid)
    request = ECHO if echo else f"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    socks: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    try:
        for start in range(0, connections, BATCH):
            batch = []
            for _ in range(min(BATCH, connections - start)):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                batch.append(s)
                socks.append(s)
            for s in batch:
                s.sendall(request)
            for s in batch:
                _read_response(s, echo)
            if time.monotonic() > deadline:
                raise TimeoutError(f"opening {connections} connections took over {timeout:g} s")
        # every connection has had its answer; give the server a moment to
        # have accepted (and registered) them all
        wait_until = min(deadline, time.monotonic() + 10)
        held = procs.tree_connections(pid, port)
        while held is not None and held < connections and time.monotonic() < wait_until:
            time.sleep(0.1)
            held = procs.tree_connections(pid, port)
        idle = settle_rss(pid)
        held = procs.tree_connections(pid, port)
    finally:
        for s in socks:
            s.close()
    per_conn = None if base is None or idle is None else (idle - base) / connections
    out = {"connections": connections, "held": held, "rss_base": base, "rss_idle": idle,
           "bytes_per_conn": per_conn}
    if held is not None and held < connections:
        out["failed"] = f"the server held {held} of {connections} connections (closed the rest?)"
    return out

"""limit_max_requests: a worker stops gracefully after N (+ jitter) requests.

With a supervisor, a new worker takes its place; a single process exits 0
after its drain (as uvicorn does).  Real subprocesses and real clients.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import time

import pytest

from conftest import REPO, run_cli, stderr_lines, wait_for_port_in_log
from netcore.http import Config, Server

APP_DIR = os.path.join(REPO, "tests", "http", "apps")


def get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(), r.getheader("connection")
    finally:
        c.close()


def test_jitter_is_per_server_and_within_its_range():
    limits = set()
    for _ in range(30):
        server = Server(lambda r: b"", port=0, limit_max_requests=100, limit_max_requests_jitter=10)
        limits.add(server.max_requests)
        server.q.close_queue()
    assert limits <= set(range(100, 111)) and len(limits) > 1, limits
    server = Server(lambda r: b"", port=0)
    assert server.max_requests == 0    # no limit
    server.q.close_queue()


def test_a_single_process_drains_in_flight_requests_and_exits_0():
    proc = run_cli(["slowapp:app", "--app-dir", APP_DIR, "--port", "0", "--threads", "2",
                    "--limit-max-requests", "3"])
    try:
        port = wait_for_port_in_log(proc)
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"GET /sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n")   # request 1, in flight
        assert get(port, "/")[:2] == (200, b"ok")                     # request 2
        assert get(port, "/")[:2] == (200, b"ok")                     # request 3: the limit
        data = b""
        while True:        # the one in flight still gets its whole answer, and a close
            chunk = slow.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and b"connection: close" in data.lower()
        assert proc.wait(10) == 0
        assert stderr_lines(proc).wait_for("limit-max-requests", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("listeners", ["--reuse-port", "--no-reuse-port"])
def test_workers_are_recycled_and_no_request_is_lost(listeners):
    # (with a limit, the workers share the supervisor's socket either way:
    # a listener per worker would die with its worker, and its backlog too)
    proc = run_cli(["slowapp:app", "--app-dir", APP_DIR, "--port", "0", "--workers", "2", listeners,
                    "--limit-max-requests", "5", "--limit-max-requests-jitter", "3"])
    try:
        port = wait_for_port_in_log(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:     # both workers up
            try:
                get(port, "/pid")
                break
            except OSError:
                time.sleep(0.05)
        pids = []
        for i in range(80):      # a new connection each, ~100/s: the limit is checked every 0.1 s
            try:
                # (raises if a request is lost; the timeout leaves room for a
                # sanitizer build, where a worker's start and stop are slower)
                status, body, _ = get(port, "/pid", timeout=20)
            except OSError as exc:
                raise AssertionError(f"request {i} of 80 failed at {time.strftime('%T')}: {exc!r}; "
                                     f"server log:\n{stderr_lines(proc).text()}") from exc
            assert status == 200
            pids.append(int(body))
            time.sleep(0.01)
        assert len(set(pids)) >= 4, sorted(set(pids))
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:   # (a hung supervisor must not outlive the test)
                proc.kill()   # (its workers notice their parent is gone)
                proc.wait()



class _SignalOnRecord(dict):
    """The supervisor's children, with a stop signal's handler running right
    after a worker is recorded."""
    def __setitem__(self, pid, worker):
        super().__setitem__(pid, worker)
        self.handler(signal.SIGTERM, None)


@pytest.mark.parametrize("signal_at", ["inside-start", "at-record"])
def test_a_stop_signal_while_a_replacement_worker_starts_still_stops_it(signal_at, monkeypatch):
    # A stop signal blocked across fork() runs its handler at the unblock,
    # inside _fork, before the supervisor has recorded the new worker: that
    # worker must still get its stop, and exactly one (a second means "now").
    from netcore.http import workers
    sent = []
    monkeypatch.setattr(workers.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    sup = workers.Supervisor(lambda r: b"", Config(workers=1, worker_start="fork"))
    if signal_at == "at-record":
        sup.children = _SignalOnRecord()
        sup.children.handler = sup._on_signal
    dict.__setitem__(sup.children, 1001, workers._Forked(1001))

    def start():
        if signal_at == "inside-start":
            sup._on_signal(signal.SIGTERM, None)
        return workers._Forked(1002)
    monkeypatch.setattr(sup, "_fork", start)
    sup._start_worker()
    assert sorted(sent) == [(1001, signal.SIGTERM), (1002, signal.SIGTERM)]

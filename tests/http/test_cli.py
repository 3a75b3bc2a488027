"""CLI, signals, graceful shutdown and worker processes (real subprocesses)."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import stop_process, REPO, run_cli, stderr_lines, wait_for_port_in_log

APP_DIR = os.path.join(REPO, "tests", "http", "apps")


def get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


def stop(proc, sig=signal.SIGTERM, timeout=10):
    return stop_process(proc, sig, timeout)


def wait_for_line(proc, text, timeout=10.0) -> None:
    """Wait for a line of the server's stderr containing ``text``."""
    import re
    if not stderr_lines(proc).wait_for(re.escape(text), timeout=timeout):
        raise AssertionError(f"the server never logged {text!r}")


def refused(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except (ConnectionRefusedError, ConnectionResetError):
        # a reset: the SYN met the listener while it was being closed
        return True
    return False


def test_example_app_via_python_m(tmp_path):
    proc = run_cli(["examples.hello:app", "--port", "0"])
    try:
        port = wait_for_port_in_log(proc)
        assert get(port, "/plaintext") == (200, b"Hello, World!")
        status, body = get(port, "/json")
        assert status == 200 and body == b'{"message":"Hello, World!"}'
    finally:
        assert stop(proc, signal.SIGINT) == 0


def test_console_script_and_env_options():
    exe = os.path.join(os.path.dirname(sys.executable), "netcore")
    if not os.path.exists(exe):
        pytest.skip("console script not installed")
    env = dict(os.environ, NETCORE_PORT="0", NETCORE_APP_DIR=APP_DIR, NETCORE_ACCESS_LOG="1")
    proc = subprocess.Popen([exe, "slowapp:app"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = wait_for_port_in_log(proc)
        assert get(port, "/") == (200, b"ok")
    finally:
        assert stop(proc) == 0
    out = proc.stdout.read()
    assert '"GET / HTTP/1.1" 200 2 ' in out  # NETCORE_ACCESS_LOG=1 took effect


def test_import_error_is_one_line_and_nonzero():
    proc = run_cli(["no_such_module_xyz:app"])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode != 0
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "no_such_module_xyz" in lines[0]
    proc = run_cli(["examples.hello:nope"])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode != 0 and len(err.strip().splitlines()) == 1


def test_port_in_use_is_one_line_and_nonzero():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        for extra in ([], ["--workers", "2"]):
            proc = run_cli(["examples.hello:app", "--port", str(port), "--log-level", "warning", *extra])
            out, err = proc.communicate(timeout=15)
            assert proc.returncode != 0, extra
            lines = [l for l in err.splitlines() if l.strip()]
            assert len(lines) == 1 and "in use" in lines[0].lower(), (extra, err)
    finally:
        s.close()


def test_graceful_shutdown_finishes_in_flight_and_closes_idle():
    proc = run_cli(["slowapp:app", "--app-dir", APP_DIR, "--port", "0", "--threads", "2"])
    try:
        port = wait_for_port_in_log(proc)
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in idle.recv(1000)
        busy = socket.create_connection(("127.0.0.1", port), timeout=5)
        busy.sendall(b"GET /sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for_line(proc, "sleeping /sleep/1")  # in flight
        proc.send_signal(signal.SIGTERM)
        # the listener closes first, then the idle keep-alive connection
        assert idle.recv(1000) == b""
        data = b""
        while True:
            chunk = busy.recv(1000)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in data
        assert refused(port), "still accepting while shutting down"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_second_signal_exits_at_once():
    proc = run_cli(["slowapp:app", "--app-dir", APP_DIR, "--port", "0", "--threads", "2",
                    "--timeout-graceful-shutdown", "30"])
    try:
        port = wait_for_port_in_log(proc)
        busy = socket.create_connection(("127.0.0.1", port), timeout=5)
        busy.sendall(b"GET /sleep/20 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for_line(proc, "sleeping /sleep/20")  # in flight
        proc.send_signal(signal.SIGINT)
        # the first signal has been acted on once the listener is closed
        deadline = time.monotonic() + 5
        while not refused(port) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert refused(port), "the first signal did not begin a shutdown"
        assert proc.poll() is None                # still draining the slow request
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(5)
        assert time.monotonic() - t0 < 2 and code != 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("listeners", ["--reuse-port", "--no-reuse-port"])
def test_workers_share_port_restart_and_stop(listeners):
    # --no-reuse-port: one socket made by the supervisor, adopted by each worker
    proc = run_cli(["slowapp:app", "--app-dir", APP_DIR, "--port", "0", "--workers", "2", listeners])
    try:
        port = wait_for_port_in_log(proc)
        pids = set()
        deadline = time.monotonic() + 10
        while len(pids) < 2 and time.monotonic() < deadline:
            try:
                pids.add(int(get(port, "/pid")[1]))
            except OSError:
                time.sleep(0.05)
        assert len(pids) == 2, pids
        victim = pids.pop()
        os.kill(victim, signal.SIGKILL)
        seen = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (seen - pids - {victim}):
            try:
                seen.add(int(get(port, "/pid")[1]))
            except OSError:
                time.sleep(0.05)
        assert seen - pids - {victim}, "the killed worker was not replaced"
        assert victim not in seen
    finally:
        code = stop(proc)
    assert code == 0

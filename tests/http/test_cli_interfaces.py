"""The CLI with each interface: detection, explicit choice, errors, workers."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess

import pytest

from conftest import REPO, run_cli

APP_DIR = os.path.join(REPO, "tests", "http", "apps")


def wait_serving(proc, workers, timeout=15.0):
    """The port, once ``workers`` processes log that they serve it.  Reads
    the raw pipe: a buffered readline would hide lines from the selector."""
    import re
    import select
    import time
    fd = proc.stderr.fileno()
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        ports = [int(p) for p in re.findall(r"serving on http://[^ ]*?:(\d+)", text)]
        if len(ports) >= workers:
            return ports[0]
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        text += chunk.decode(errors="replace")
    proc.kill()
    raise AssertionError("server did not start: " + text)


def get(port, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


def finish(proc, timeout=15):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("server did not exit")


@pytest.mark.parametrize("app,interface,workers", [
    ("native", "auto", 1), ("wsgi", "auto", 1), ("asgi", "auto", 1),
    ("wsgi", "wsgi", 2), ("asgi", "asgi", 2),
])
def test_serves_each_interface(app, interface, workers):
    proc = run_cli([f"interface_apps:{app}", "--app-dir", APP_DIR, "--port", "0",
                    "--interface", interface, "--workers", str(workers)])
    try:
        port = wait_serving(proc, workers)
        for _ in range(3):
            assert get(port) == (200, app.encode())
    finally:
        assert finish(proc) == 0


def test_ambiguous_app_is_a_clear_error():
    proc = run_cli(["interface_apps:ambiguous", "--app-dir", APP_DIR, "--port", "0"])
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "cannot tell the interface" in err and "--interface" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("workers", [1, 2])
def test_lifespan_startup_failure_exits_with_the_apps_message(workers):
    proc = run_cli(["interface_apps:failing_startup", "--app-dir", APP_DIR, "--port", "0",
                    "--workers", str(workers)])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "cannot reach the database" in err

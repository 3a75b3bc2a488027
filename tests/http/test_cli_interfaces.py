"""The CLI with each interface: detection, explicit choice, errors, workers."""
from __future__ import annotations

import http.client
import os

import pytest

from conftest import REPO, run_cli, stderr_lines, stop_process

APP_DIR = os.path.join(REPO, "tests", "http", "apps")


def wait_serving(proc, workers, timeout=15.0):
    """The port, once ``workers`` processes log that they serve it."""
    lines = stderr_lines(proc)
    found = lines.wait_for(r"serving on http://[^ ]*?:(\d+)", count=workers, timeout=timeout)
    if len(found) < workers:
        proc.kill()
        raise AssertionError("server did not start: " + lines.text())
    return int(found[0].group(1))


def get(port, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


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
        assert stop_process(proc) == 0


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

"""Worker processes started by spawn (the Windows path, run here with
--worker-start spawn): N workers serve, a killed one is replaced, signals
stop them all; the app is imported again in each worker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import run_cli, wait_for_port_in_log
from netcore.http import workers
from test_cli import APP_DIR, get, stop

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads worker command lines from /proc")


def worker_pids(port, done, timeout=15.0, path="/pid"):
    """Worker pids answering ``path``, until done(pids) or the timeout."""
    pids = set()
    deadline = time.monotonic() + timeout
    while not done(pids) and time.monotonic() < deadline:
        try:
            pids.add(int(get(port, path)[1]))
        except OSError:
            time.sleep(0.05)
    return pids


def two(pids):
    return len(pids) >= 2


def is_spawned(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return b"spawned_worker" in f.read()


def wait_gone(pids, timeout=10.0):
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.05)
    return alive


@pytest.mark.parametrize("listeners", ["--reuse-port", "--no-reuse-port"])
def test_spawned_workers_serve_restart_and_stop(listeners):
    proc = run_cli(["slowapp:app", "--app-dir", APP_DIR, "--port", "0", "--workers", "2",
                    "--worker-start", "spawn", listeners])
    try:
        port = wait_for_port_in_log(proc)
        pids = worker_pids(port, two)
        assert len(pids) == 2, pids
        assert all(is_spawned(pid) for pid in pids)   # new interpreters, not forks
        victim = pids.pop()
        os.kill(victim, signal.SIGKILL)
        new = worker_pids(port, lambda seen: seen - pids - {victim}) - pids - {victim}
        assert new, "the killed worker was not replaced"
        assert all(is_spawned(pid) for pid in new)
        survivors = pids | new
    finally:
        code = stop(proc, timeout=20)
    assert code == 0
    assert not wait_gone(survivors), "workers outlived the supervisor"


def test_sigint_stops_spawned_workers_gracefully():
    proc = run_cli(["slowapp:app", "--app-dir", APP_DIR, "--port", "0", "--workers", "2",
                    "--worker-start", "spawn", "--threads", "2"])
    try:
        port = wait_for_port_in_log(proc)
        pids = worker_pids(port, two)
        assert len(pids) == 2
        # a request in flight when the signal comes is still answered
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/sleep/1")
        time.sleep(0.2)   # let the request reach a worker before the signal
        proc.send_signal(signal.SIGINT)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"ok"
        code = proc.wait(20)   # no second signal: that one would kill
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    assert not wait_gone(pids)


def run_script(tmp_path, body, timeout=30):
    script = tmp_path / "server_script.py"
    script.write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([APP_DIR, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("where", ["module", "script"])
def test_serve_with_an_app_object_spawns(tmp_path, where):
    # the app object is found again in each worker by module and qualified
    # name, or (defined in the __main__ script) by running the script file
    app_def = "from slowapp import app" if where == "module" else textwrap.dedent("""
        import os
        def app(request):
            return str(os.getpid())
        """)
    proc = run_script(tmp_path, app_def + textwrap.dedent("""
        import netcore
        if __name__ == "__main__":
            netcore.serve(app, port=0, workers=2, worker_start="spawn")
        """))
    try:
        port = wait_for_port_in_log(proc, timeout=20)
        pids = worker_pids(port, two, path="/pid" if where == "module" else "/")
        assert len(pids) == 2 and all(is_spawned(p) for p in pids)
    finally:
        code = stop(proc, timeout=20)
    assert code == 0


def test_unguarded_serve_in_a_script_fails_clearly(tmp_path):
    proc = run_script(tmp_path, """
        import netcore
        def app(request):
            return "x"
        netcore.serve(app, port=0, workers=2, worker_start="spawn")
        """)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("a worker that cannot load the app was restarted forever")
    assert proc.returncode != 0
    assert "if __name__ == '__main__'" in err


def test_app_reference_finds_module_objects(monkeypatch):
    monkeypatch.syspath_prepend(APP_DIR)
    import slowapp
    assert workers.app_reference(slowapp.app, None) == ("module", "slowapp", "app")
    assert workers.app_reference(None, "slowapp:app", APP_DIR) == ("spec", "slowapp:app", APP_DIR)
    assert workers.load_app_reference(("module", "slowapp", "app")) is slowapp.app


def test_app_reference_refuses_what_a_new_interpreter_cannot_find():
    def closure(request):
        return b""
    for app in (lambda request: b"", closure, type("Made", (), {"__call__": lambda s, r: b""})()):
        with pytest.raises(ValueError, match="cannot be found by its module and name"):
            workers.app_reference(app, None)


def test_start_methods(monkeypatch):
    assert workers.resolve_start_method("spawn") == "spawn"
    assert workers.resolve_start_method("auto") == ("fork" if hasattr(os, "fork") else "spawn")
    with pytest.raises(ValueError, match="worker_start"):
        workers.resolve_start_method("thread")
    monkeypatch.delattr(os, "fork", raising=False)
    assert workers.resolve_start_method("auto") == "spawn"
    with pytest.raises(ValueError, match="needs os.fork"):
        workers.resolve_start_method("fork")


def test_cli_rejects_an_unknown_start_method():
    proc = run_cli(["examples.hello:app", "--workers", "2", "--worker-start", "thread"])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and "--worker-start" in err

"""The registry of servers: netcore in each interface and backend the
machine has, and every peer.  Each entry says how to start it for an app,
which apps it serves, and, when it cannot run here, why (one line, shown
in the report as a skipped row).

Groups decide what a row is compared with: "native" rows (netcore's own
handler API, the Protocol servers, the C floor) against netcore native,
"asgi" rows against netcore's ASGI front end, "wsgi" rows against its
WSGI front end, "echo" rows against netcore.iocore.

Every server gets one process (one worker), keep-alive timeouts and
connection limits large enough for the idle scenario, no access log and a
backlog of 4096.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(REPO, "benchmarks", "peers")
PY = sys.executable
KEEP_ALIVE = "300"
BACKLOG = "4096"

# (group, app flavour) -> the module:attribute every server of that group serves
APP_TARGETS = {
    ("native", "raw"): "benchmarks.apps.native:app",
    ("asgi", "raw"): "benchmarks.apps.asgi:app",
    ("asgi", "fastapi"): "benchmarks.apps.fastapi_app:app",
    ("wsgi", "raw"): "benchmarks.apps.wsgi:app",
    ("wsgi", "flask"): "benchmarks.apps.flask_app:app",
}
FRAMEWORK_MODULES = {"fastapi": "fastapi", "flask": "flask"}


@dataclass
class Env:
    """What the registry needs to know about this machine."""

    c_server: Optional[str] = None           # path of the compiled C floor
    c_server_note: str = ""                   # why there is none
    netcore_help: str = ""                    # `netcore --help`
    backends: Sequence[str] = ()              # netcore.iocore.backends()
    notes: list = field(default_factory=list)

    def cli_choices(self, option: str) -> list[str]:
        m = re.search(re.escape(option) + r"\s+\{([^}]*)\}", self.netcore_help)
        return m.group(1).split(",") if m else []

    def cli_has(self, option: str) -> bool:
        return re.search(re.escape(option) + r"\b", self.netcore_help) is not None


@dataclass
class Server:
    name: str                                  # the row label
    key: str                                   # what --only matches (with the name)
    group: str                                 # native | asgi | wsgi | echo
    apps: tuple                                # app flavours served: raw, fastapi, flask, echo
    command: Callable[[str, int], list]        # (app flavour, port) -> argv
    missing: Optional[str] = None              # why it cannot run here (None: it can)
    netcore: bool = False
    ready: str = "http"                        # readiness probe: http | echo
    settings: str = ""                         # how it is configured, for the report

    def matches(self, words: Sequence[str]) -> bool:
        text = f"{self.key} {self.name}".lower()
        return any(w.strip().lower() in text for w in words if w.strip())


def have_module(name: str) -> Optional[str]:
    """None when the module can be found, else a one-line reason."""
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{name} is not installed (pip install netcore[bench])"


def first_missing(*modules: str) -> Optional[str]:
    for m in modules:
        why = have_module(m)
        if why:
            return why
    return None


def netcore_help() -> str:
    try:
        out = subprocess.run([PY, "-m", "netcore", "--help"], capture_output=True, text=True,
                             timeout=60, cwd=REPO)
        return out.stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def iocore_backends() -> list[str]:
    try:
        from netcore import iocore
        return list(iocore.backends())
    except ImportError:
        return []


# ---------------------------------------------------------------- netcore

_BACKEND_ALIASES = {"io_uring": "uring", "uring": "io_uring"}


def _netcore_backends(env: Env) -> tuple[list[tuple[str, str]], list[str]]:
    """[(label, CLI name)] of the backends the core and the CLI both have,
    and notes for the known ones that are missing."""
    choices = env.cli_choices("--backend")
    have, notes = [], []
    for b in env.backends:
        name = b if b in choices else _BACKEND_ALIASES.get(b) if _BACKEND_ALIASES.get(b) in choices else None
        if name:
            have.append((b, name))
        else:
            notes.append(f"netcore backend {b}: the core has it but `netcore --backend` does not accept it")
    if not any(b in ("uring", "io_uring") for b, _ in have) and sys.platform.startswith("linux"):
        notes.append("netcore io_uring backend: not available here "
                     f"(netcore.iocore.backends() = {list(env.backends)})")
    return have, notes


def netcore_servers(env: Env) -> list[Server]:
    backends, notes = _netcore_backends(env)
    env.notes.extend(notes)
    interfaces = env.cli_choices("--interface")
    lifespan = ["--lifespan", "off"] if env.cli_has("--lifespan") else []
    kinds = [
        # (interface, key suffix, label, group, apps, extra CLI arguments)
        ("native", "", "native", "native", ("raw",), []),
        # two I/O threads on one queue: under the GIL they overlap system calls only
        ("native", "-io2", "native, --io-threads 2", "native", ("raw",), ["--io-threads", "2"]),
        # the Python path the C lane is measured against (on the first backend only)
        ("native", "-python", "native, --no-c-fastpath", "native", ("raw",), ["--no-c-fastpath"]),
        ("asgi", "", "ASGI", "asgi", ("raw", "fastapi"), lifespan),
        ("wsgi", "", "WSGI", "wsgi", ("raw", "flask"), []),
        ("wsgi", "-inline", "WSGI, --threads 0", "wsgi", ("raw", "flask"), ["--threads", "0"]),
    ]
    out = []
    for interface, suffix, label, group, apps, extra in kinds:
        missing = None
        if not env.netcore_help:
            missing = "`python -m netcore --help` failed: is netcore installed?"
        elif interface != "native" and interface not in interfaces:
            missing = f"`netcore --interface {interface}` does not exist yet"
        elif extra and not env.cli_has(extra[0]):
            missing = f"`netcore {extra[0]}` does not exist yet"
        for backend, cli_name in (backends or [("auto", "auto")])[:1 if suffix == "-python" else None]:
            def command(app: str, port: int, group=group, interface=interface, extra=extra,
                        cli_name=cli_name) -> list:
                cmd = [PY, "-m", "netcore", APP_TARGETS[(group, app)], "--port", str(port),
                       "--backend", cli_name, "--log-level", "warning", "--backlog", BACKLOG,
                       "--timeout-keep-alive", KEEP_ALIVE]
                if interface != "native" or "native" in interfaces:
                    cmd += ["--interface", interface]   # explicit, whatever `auto` would pick
                return cmd + list(extra)
            key = f"netcore-{interface}{suffix}-{backend}"
            out.append(Server(f"netcore {label} ({backend})", key, group, apps, command, missing,
                              netcore=True, settings="1 process" + (", handlers on the I/O thread"
                                                                     if interface == "native" else "")))
    for backend in env.backends or ["auto"]:   # the core's own names: no CLI in between
        def echo(app: str, port: int, backend=backend) -> list:
            return [PY, os.path.join(PEERS, "echo_server.py"), "netcore", "--port", str(port),
                    "--backend", backend]
        out.append(Server(f"netcore.iocore ({backend})", f"netcore-iocore-{backend}", "echo", ("echo",),
                          echo, None if env.backends else "netcore.iocore cannot be imported",
                          netcore=True, ready="echo", settings="Python loop over q.wait()"))
    return out


# ---------------------------------------------------------------- peers

def peer_servers(env: Env) -> list[Server]:
    def uvicorn(app: str, port: int) -> list:
        return [PY, "-m", "uvicorn", APP_TARGETS[("asgi", app)], "--app-dir", REPO, "--host", "127.0.0.1",
                "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", "--lifespan", "off", "--timeout-keep-alive", KEEP_ALIVE,
                "--backlog", BACKLOG, "--workers", "1"]

    def granian(interface: str) -> Callable[[str, int], list]:
        def command(app: str, port: int) -> list:
            cmd = [PY, "-m", "granian", APP_TARGETS[(interface, app)], "--interface", interface,
                   "--host", "127.0.0.1", "--port", str(port), "--http", "1", "--no-ws", "--workers", "1",
                   "--runtime-threads", "1", "--log-level", "warning", "--no-access-log",
                   "--backlog", BACKLOG, "--backpressure", "20000", "--working-dir", REPO]
            if interface == "asgi" and have_module("uvloop") is None:
                cmd += ["--loop", "uvloop"]
            return cmd
        return command

    def socketify(interface: str) -> Callable[[str, int], list]:
        def command(app: str, port: int) -> list:
            return [PY, "-m", "socketify", APP_TARGETS[(interface, app)], "--interface", interface,
                    "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--lifespan", "off",
                    "--disable-listen-log", "true"]
        return command

    def fastwsgi(app: str, port: int) -> list:
        return [PY, os.path.join(PEERS, "fastwsgi_serve.py"), APP_TARGETS[("wsgi", app)], "--port", str(port)]

    def gunicorn(app: str, port: int) -> list:
        return [PY, "-m", "gunicorn", APP_TARGETS[("wsgi", app)], "--bind", f"127.0.0.1:{port}",
                "--workers", "1", "--worker-class", "gthread", "--threads", "4", "--keep-alive", KEEP_ALIVE,
                "--worker-connections", "20000",
                "--backlog", BACKLOG, "--log-level", "warning", "--chdir", REPO]

    def protocol(loop: str) -> Callable[[str, int], list]:
        return lambda app, port: [PY, os.path.join(PEERS, "protocol_server.py"), loop, "--port", str(port)]

    def c_server(app: str, port: int) -> list:
        return [env.c_server, str(port)]

    def echo(loop: str) -> Callable[[str, int], list]:
        return lambda app, port: [PY, os.path.join(PEERS, "echo_server.py"), loop, "--port", str(port)]

    return [
        Server("uvloop + httptools Protocol", "uvloop-protocol", "native", ("raw",), protocol("uvloop"),
               first_missing("uvloop", "httptools"), settings="precomputed replies, no request objects"),
        Server("asyncio + httptools Protocol", "asyncio-protocol", "native", ("raw",), protocol("asyncio"),
               first_missing("httptools"), settings="precomputed replies, default event loop"),
        Server("C epoll server", "c-epoll", "native", ("raw",), c_server,
               None if env.c_server else env.c_server_note, settings="precomputed replies (the floor)"),
        Server("uvicorn (uvloop, httptools)", "uvicorn", "asgi", ("raw", "fastapi"), uvicorn,
               first_missing("uvicorn", "uvloop", "httptools"), settings="--workers 1"),
        Server("granian ASGI", "granian-asgi", "asgi", ("raw", "fastapi"), granian("asgi"),
               first_missing("granian"), settings="1 worker, 1 runtime thread, uvloop"),
        Server("socketify ASGI", "socketify-asgi", "asgi", ("raw",), socketify("asgi"),
               first_missing("socketify"), settings="1 worker"),
        Server("granian WSGI", "granian-wsgi", "wsgi", ("raw", "flask"), granian("wsgi"),
               first_missing("granian"), settings="1 worker, 1 runtime thread"),
        Server("fastwsgi", "fastwsgi", "wsgi", ("raw", "flask"), fastwsgi,
               first_missing("fastwsgi"), settings="TCP_NODELAY on"),
        Server("socketify WSGI", "socketify-wsgi", "wsgi", ("raw",), socketify("wsgi"),
               first_missing("socketify"), settings="1 worker"),
        Server("gunicorn (gthread)", "gunicorn", "wsgi", ("raw", "flask"), gunicorn,
               first_missing("gunicorn"), settings="1 worker, gthread, 4 threads"),
        Server("uvloop Protocol", "uvloop-echo", "echo", ("echo",), echo("uvloop"),
               first_missing("uvloop"), ready="echo"),
        Server("asyncio Protocol", "asyncio-echo", "echo", ("echo",), echo("asyncio"), None, ready="echo"),
    ]


def registry(env: Env) -> list[Server]:
    return netcore_servers(env) + peer_servers(env)


def reference_for(server: Server, rows: Sequence[Server]) -> Optional[Server]:
    """The netcore row a row is compared with: netcore's first row of the
    same group (its default backend; other backends are thus compared with
    it), else netcore native.  The reference row compares with itself."""
    def first(group: str) -> Optional[Server]:
        return next((r for r in rows if r.netcore and r.group == group and r.missing is None
                     and "inline" not in r.key and "-io2" not in r.key
                     and "-python" not in r.key), None)
    return first(server.group) or (first("native") if server.group != "echo" else None)

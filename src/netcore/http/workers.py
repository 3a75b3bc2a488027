"""serve(): one process, or a supervisor over N worker processes.

Workers each create their own queue.  Where the OS has SO_REUSEPORT
(Linux) each also binds its own listening socket: the kernel spreads
connections over them and no accept lock is needed.  Elsewhere, or with
reuse_port=False, the supervisor makes one listening socket and every worker
serves it (iocore adopts it).  The supervisor starts the workers, restarts
one that dies or that stopped by itself (limit_max_requests: at once, not
as a crash), forwards SIGINT/SIGTERM (a second signal kills at once) and
exits 0 when all workers have stopped cleanly.

Workers start in one of two ways (``worker_start``):

- fork (POSIX): the child inherits the app object and the sockets.
- spawn (where fork is missing, e.g. Windows; selectable everywhere): a new
  interpreter that imports the app again from its MODULE:ATTR spec (or the
  module and qualified name of the app object) and gets the shared
  listening socket as an inherited descriptor on POSIX, or through
  socket.share()/fromshare() on Windows.  Its stdin is a pipe from the
  supervisor: the start-up parameters, then "stop"; EOF (the supervisor
  died) also stops it.

Workers run in their own process group so that a Ctrl-C on the terminal
reaches only the supervisor, which forwards it once: a worker must not see
the terminal's signal and then the forwarded one as "a second signal".
"""
from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Optional

from ..frontends import resolve_interface
from ..frontends.lifespan import StartupFailed
from .limits import OPTIONS, Config
from .server import App, run_server

log = logging.getLogger("netcore.error")

EXIT_LISTEN_FAILED = 3     # a worker could not bind or start its app: do not restart it
EXIT_APP_FAILED = 4        # a spawned worker could not import the app: nor this one
RESTART_BACKOFF = 1.0      # seconds between restarts of a worker that died young
START_METHODS = ("auto", "fork", "spawn")

# The command a spawned worker runs; its stdin carries the rest.
_SPAWN_CODE = "from netcore.http.workers import spawned_worker; spawned_worker()"


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    lvl = getattr(logging, str(level).upper(), None)
    if not isinstance(lvl, int):
        raise ValueError(f"unknown log level {level!r}")
    logger = logging.getLogger("netcore")
    logger.setLevel(lvl)
    if not root.handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        access = logging.getLogger("netcore.access")
        access_handler = logging.StreamHandler(sys.stdout)
        access_handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(access_handler)
        access.propagate = False


def serve(app: App, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, *,
          app_spec: Optional[str] = None, app_dir: str = ".", **options: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM.  Raises OSError if it cannot bind.

    ``app_spec`` ("MODULE:ATTR", found from ``app_dir``) is how spawned
    workers import the app; without it they use the app's module and
    qualified name."""
    if _loading_app_in_worker:
        raise RuntimeError("serve() ran while a spawned worker imported the app: "
                           "call it under `if __name__ == '__main__':`")
    config = Config(host=host, port=port, workers=workers, **options)
    configure_logging(config.log_level)
    # decided once, before any worker starts: a wrong shape fails here, clearly
    config = config.replace(interface=resolve_interface(app, config.interface))
    start_method = resolve_start_method(config.worker_start)
    if config.workers == 1:
        run_server(app, config)
        return
    ref = app_reference(app, app_spec, app_dir) if start_method == "spawn" else None
    code = Supervisor(app, config, ref).run()
    if code:
        raise SystemExit(code)


def resolve_start_method(name: str) -> str:
    if name not in START_METHODS:
        raise ValueError(f"worker_start must be one of {', '.join(START_METHODS)}, not {name!r}")
    if name == "auto":
        return "fork" if hasattr(os, "fork") else "spawn"
    if name == "fork" and not hasattr(os, "fork"):
        raise ValueError("worker_start=fork needs os.fork, which this platform lacks; use spawn")
    return name


# ---------------------------------------------------------------- the app, again

def app_reference(app: App, spec: Optional[str], app_dir: str = ".") -> tuple:
    """How a spawned worker finds ``app``: ("spec", MODULE:ATTR, app_dir),
    ("module", name, attr) or ("script", path, attr) for the __main__
    script.  Raises ValueError when a new interpreter cannot find it."""
    if spec:
        return ("spec", spec, os.path.abspath(app_dir))
    module_name = getattr(app, "__module__", None) or type(app).__module__
    module = sys.modules.get(module_name)
    attr = _attribute_path(app, module)
    if module is None or attr is None:
        raise ValueError(
            f"spawned workers import the app again, but {app!r} cannot be found by its module "
            f"and name (a lambda, a closure or an object made at run time?): define it at the "
            f"top level of a module, or pass its MODULE:ATTR (the CLI does)")
    if module_name == "__main__":
        path = getattr(module, "__file__", None)
        if not path:
            raise ValueError("spawned workers import the app again, and an app defined in an "
                             "interactive session has no file to import it from")
        return ("script", os.path.abspath(path), attr)
    return ("module", module_name, attr)


def _attribute_path(app: App, module: Any) -> Optional[str]:
    """The dotted name under which ``module`` holds exactly ``app``."""
    if module is None:
        return None
    qualname = getattr(app, "__qualname__", None)
    if isinstance(qualname, str) and "<" not in qualname:
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        if obj is app:
            return qualname
    for name, value in vars(module).items():  # an instance bound to a module global
        if value is app:
            return name
    return None


_loading_app_in_worker = False


def load_app_reference(ref: tuple) -> App:
    global _loading_app_in_worker
    kind, where, attr = ref   # for "spec": (kind, MODULE:ATTR, app_dir)
    _loading_app_in_worker = True
    try:
        if kind == "spec":
            from ..cli import load_app
            return load_app(where, app_dir=attr)
        if kind == "script":
            import runpy
            namespace = runpy.run_path(where, run_name="__mp_main__")
            obj: Any = namespace[attr.split(".")[0]]
            rest = attr.split(".")[1:]
        else:
            import importlib
            obj = importlib.import_module(where)
            rest = attr.split(".")
        for part in rest:
            obj = getattr(obj, part)
        return obj
    finally:
        _loading_app_in_worker = False


# ---------------------------------------------------------------- workers

class _Forked:
    """A worker made by os.fork()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.stopped = False

    def stop(self) -> None:
        if self.stopped:   # once: a second stop signal means "now"
            return
        self.stopped = True
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Spawned:
    """A worker started as a new interpreter; a thread reports its exit."""

    def __init__(self, proc: subprocess.Popen, exits: "queue.Queue[tuple[int, int]]") -> None:
        self.proc = proc
        self.pid = proc.pid
        self.started = time.monotonic()
        self.stopped = False
        threading.Thread(target=lambda: exits.put((self.pid, proc.wait())), daemon=True,
                         name=f"netcore-worker-{self.pid}").start()

    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError):  # already gone: its exit is on the way
            pass

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.send(b"stop\n")

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass


def _reuse_port_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class Supervisor:
    def __init__(self, app: App, config: Config, app_ref: Optional[tuple] = None) -> None:
        self.start_method = resolve_start_method(config.worker_start)
        if self.start_method == "spawn" and app_ref is None:
            app_ref = app_reference(app, None)
        self.app = app
        self.app_ref = app_ref
        self.config = config
        # Recycled workers (limit_max_requests) need a listener that outlives
        # them: with one per worker, a stopping worker's backlog would be
        # reset, and while every worker restarts nothing would listen.
        self.per_worker_listeners = (config.reuse_port and _reuse_port_supported()
                                     and not config.limit_max_requests)
        self.shared: Optional[socket.socket] = None
        self.children: dict[int, Any] = {}   # pid -> _Forked | _Spawned
        self.exits: "queue.Queue[tuple[int, int]]" = queue.Queue()
        self.stopping = False
        self.signals = 0
        self.failed = False
        self.placeholder: Optional[socket.socket] = None

    def _bind(self, reuse_port: bool) -> socket.socket:
        """A socket bound to the configured address; port 0 becomes the
        concrete port every worker then shares.  A taken port raises."""
        cfg = self.config
        infos = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, stype, proto, _, addr = infos[0]
        s = socket.socket(family, stype, proto)
        try:
            if os.name != "nt":  # on Windows SO_REUSEADDR would let others steal the port
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(addr)
        except OSError:
            s.close()
            raise
        if cfg.port == 0:
            self.config = cfg.replace(port=s.getsockname()[1])
        return s

    def _listen_shared(self) -> None:
        """One listening socket for every worker, made before they start."""
        self.shared = self._bind(reuse_port=False)
        try:
            self.shared.listen(self.config.backlog)
        except OSError:
            self.shared.close()
            raise

    def _reserve_port(self) -> None:
        """Bind (without listening) with SO_REUSEPORT: the workers then bind
        their own listeners to the same port.  Held until the supervisor
        exits, so a restarted worker finds the port still ours; a socket
        that does not listen receives no connections."""
        self.placeholder = self._bind(reuse_port=True)

    def _start_worker(self) -> None:
        worker = self._fork() if self.start_method == "fork" else self._spawn()
        self.children[worker.pid] = worker
        if self.stopping:
            # A stop signal's handler ran while this worker started (in
            # _fork, at the unblock): it did not see the worker.
            worker.stop()

    def _fork(self) -> _Forked:
        parent = os.getpid()
        # A stop signal must not reach the child while it still runs the
        # supervisor's handler, or before it has its own: blocked across the
        # fork, then remembered by the child until its server can act on it.
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.setpgid(0, 0)
                early: list = []
                for sig in stop_signals:
                    signal.signal(sig, lambda signum, frame: early.append(signum))
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
                if self.placeholder is not None:
                    self.placeholder.close()
                code = _run_worker(self.app, self.config, reuse_port=self.per_worker_listeners,
                                   parent_pid=parent, sock=self.shared, stop_requested=early)
            finally:
                logging.shutdown()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        return _Forked(pid)

    def _spawn(self) -> _Spawned:
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            # Its own console process group: the terminal's Ctrl-C reaches
            # only the supervisor (the worker ignores CTRL_C_EVENT).
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
            if self.shared is not None:
                kwargs["pass_fds"] = (self.shared.fileno(),)
        proc = subprocess.Popen([sys.executable, "-c", _SPAWN_CODE], stdin=subprocess.PIPE, **kwargs)
        worker = _Spawned(proc, self.exits)
        sock: Any = None
        if self.shared is not None:
            sock = self.shared.share(proc.pid) if os.name == "nt" else self.shared.fileno()
        params = {
            "app": self.app_ref,
            "sys_path": sys.path,
            "config": {name: getattr(self.config, name) for name in OPTIONS},
            "reuse_port": self.per_worker_listeners,
            "parent_pid": os.getpid(),
            "sock": sock,
        }
        worker.send(pickle.dumps(params))
        return worker

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        self.stopping = True
        if self.signals > 1:
            for worker in self.children.values():
                worker.kill()
            os._exit(1)
        for worker in self.children.values():
            worker.stop()

    def _next_exit(self) -> Optional[tuple[int, int]]:
        """(pid, exit code) of the next worker to end; None when none is left."""
        if self.start_method == "spawn":
            while True:
                try:  # a bounded wait: on Windows signals only run between waits
                    return self.exits.get(timeout=0.5)
                except queue.Empty:
                    continue
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return None
            except InterruptedError:  # pragma: no cover (PEP 475 retries)
                continue
            return pid, os.waitstatus_to_exitcode(status)

    def run(self) -> int:
        if self.per_worker_listeners:
            self._reserve_port()
        else:
            self._listen_shared()
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        log.info("supervisor %d starting %d workers (%s) on %s:%d", os.getpid(), self.config.workers,
                 self.start_method, self.config.host, self.config.port)
        for _ in range(self.config.workers):
            self._start_worker()
        exit_code = 0
        while self.children:
            ended = self._next_exit()
            if ended is None:
                break
            pid, code = ended
            worker = self.children.pop(pid, None)
            if worker is None:
                continue
            if self.stopping:
                if code != 0:
                    exit_code = 1
                continue
            if code in (EXIT_LISTEN_FAILED, EXIT_APP_FAILED):
                log.error("worker %d could not %s; stopping", pid,
                          "listen or start the application" if code == EXIT_LISTEN_FAILED
                          else "load the app")
                self.failed = True
                self._on_signal(signal.SIGTERM, None)
                exit_code = 1
                continue
            if code == 0:   # it stopped by itself: recycled (limit_max_requests)
                log.info("worker %d finished; starting a new one", pid)
            else:
                log.warning("worker %d exited with %s; restarting", pid, code)
                if time.monotonic() - worker.started < RESTART_BACKOFF:
                    time.sleep(RESTART_BACKOFF)
            if not self.stopping:
                self._start_worker()
        for s in (self.shared, self.placeholder):  # kept until now for restarted workers
            if s is not None:
                s.close()
        return exit_code


# ---------------------------------------------------------------- a spawned worker

def spawned_worker() -> None:
    """Entry point of a spawned worker (see _SPAWN_CODE): read the start-up
    parameters from stdin, import the app, serve until "stop" or EOF."""
    stdin = sys.stdin.buffer
    params = pickle.load(stdin)
    sys.path[:0] = [p for p in params["sys_path"] if p not in sys.path]
    config = Config(**params["config"])
    configure_logging(config.log_level)
    try:
        code = _serve_spawned(params, config, stdin)
    finally:
        logging.shutdown()
    os._exit(code)


def _serve_spawned(params: dict, config: Config, stdin: Any) -> int:
    """Serve in a spawned worker; return its exit code."""
    try:
        app = load_app_reference(params["app"])
    except BaseException:
        log.exception("worker %d cannot load the app", os.getpid())
        return EXIT_APP_FAILED
    sock = params["sock"]
    if sock is not None:
        sock = socket.fromshare(sock) if os.name == "nt" else socket.socket(fileno=sock)

    def listening(address: tuple) -> None:
        # the server's signal handlers are in place now: "stop" can use them
        threading.Thread(target=_stop_on_request, args=(stdin,), daemon=True,
                         name="netcore-stop-pipe").start()

    return _run_worker(app, config, reuse_port=params["reuse_port"], parent_pid=params["parent_pid"],
                       sock=sock, on_listening=listening)


def _run_worker(app: App, config: Config, **kwargs: Any) -> int:
    """run_server() in a worker process; return the worker's exit code."""
    try:
        run_server(app, config, **kwargs)
    except OSError as exc:
        log.error("worker %d cannot listen: %s", os.getpid(), exc)
        return EXIT_LISTEN_FAILED
    except StartupFailed as exc:
        log.error("worker %d: application startup failed: %s", os.getpid(), exc)
        return EXIT_LISTEN_FAILED   # restarting would fail the same way
    except BaseException:
        log.exception("worker %d crashed", os.getpid())
        return 1
    return 0


def _stop_on_request(stdin: Any) -> None:
    """Each "stop" line (or EOF: the supervisor is gone) acts as a SIGINT:
    the server's handler stops gracefully, a second time at once.  The
    handler runs on the main thread when its wait() returns, which the
    server's 0.1 s tick bounds."""
    import _thread
    while True:
        line = stdin.readline()
        _thread.interrupt_main()
        if not line:
            return

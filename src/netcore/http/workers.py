"""serve(): one process, or a supervisor over N worker processes.

Workers each create their own queue.  Where the OS has SO_REUSEPORT
(Linux) each also binds its own listening socket: the kernel spreads
connections over them and no accept lock is needed.  Elsewhere, or with
reuse_port=False, the supervisor makes one listening socket and every worker
serves it (iocore adopts it).  The supervisor forks the workers, restarts
one that dies, forwards SIGINT/SIGTERM (a second signal kills at once) and
exits 0 when all workers have stopped cleanly.

Workers run in their own process group so that a Ctrl-C on the terminal
reaches only the supervisor, which forwards it once: a worker must not see
the terminal's signal and then the forwarded one as "a second signal".
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Any, Optional

from ..frontends import resolve_interface
from ..frontends.lifespan import StartupFailed
from .limits import Config
from .server import App, run_server

log = logging.getLogger("netcore.error")

EXIT_LISTEN_FAILED = 3     # a worker could not bind or start its app: do not restart it
RESTART_BACKOFF = 1.0      # seconds between restarts of a worker that died young


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


def serve(app: App, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          **options: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM.  Raises OSError if it cannot bind."""
    config = Config(host=host, port=port, workers=workers, **options)
    configure_logging(config.log_level)
    # decided once, before any worker starts: a wrong shape fails here, clearly
    config = config.replace(interface=resolve_interface(app, config.interface))
    if config.workers == 1:
        run_server(app, config)
        return
    code = Supervisor(app, config).run()
    if code:
        raise SystemExit(code)


def _reuse_port_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class Supervisor:
    def __init__(self, app: App, config: Config) -> None:
        if not hasattr(os, "fork"):
            raise NotImplementedError("workers > 1 needs os.fork (not available on this platform)")
        self.app = app
        self.config = config
        self.per_worker_listeners = config.reuse_port and _reuse_port_supported()
        self.shared: Optional[socket.socket] = None
        self.children: dict[int, float] = {}   # pid -> start time
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
        """One listening socket for every worker, made before they fork."""
        self.shared = self._bind(reuse_port=False)
        try:
            self.shared.listen(self.config.backlog)
        except OSError:
            self.shared.close()
            raise

    def _reserve_port(self) -> None:
        """Bind (without listening) with SO_REUSEPORT: the workers then bind
        their own listeners to the same port."""
        self.placeholder = self._bind(reuse_port=True)

    def _spawn(self) -> None:
        parent = os.getpid()
        # A stop signal must not reach the child while it still runs the
        # supervisor's handler, or before it has its own: blocked across the
        # fork, then remembered by the child until its server can act on it.
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                os.setpgid(0, 0)
                early: list = []
                for sig in stop_signals:
                    signal.signal(sig, lambda signum, frame: early.append(signum))
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
                if self.placeholder is not None:
                    self.placeholder.close()
                run_server(self.app, self.config, reuse_port=self.per_worker_listeners,
                           parent_pid=parent, sock=self.shared, stop_requested=early)
            except OSError as exc:
                log.error("worker %d cannot listen: %s", os.getpid(), exc)
                code = EXIT_LISTEN_FAILED
            except StartupFailed as exc:
                log.error("worker %d: application startup failed: %s", os.getpid(), exc)
                code = EXIT_LISTEN_FAILED   # restarting would fail the same way
            except BaseException:
                log.exception("worker %d crashed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        self.children[pid] = time.monotonic()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        self.stopping = True
        if self.signals > 1:
            for pid in self.children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os._exit(1)
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        if self.per_worker_listeners:
            self._reserve_port()
        else:
            self._listen_shared()
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        log.info("supervisor %d starting %d workers on %s:%d", os.getpid(), self.config.workers,
                 self.config.host, self.config.port)
        for _ in range(self.config.workers):
            self._spawn()
        # Workers have bound their own sockets once they serve; the
        # placeholder only reserved the port.  Keep it until the first
        # worker is up so port 0 cannot be taken in between.
        time.sleep(0.2)
        if self.placeholder is not None:
            self.placeholder.close()
            self.placeholder = None
        exit_code = 0
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover (PEP 475 retries)
                continue
            started = self.children.pop(pid, None)
            if started is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code != 0:
                    exit_code = 1
                continue
            if code == EXIT_LISTEN_FAILED:
                log.error("worker %d could not listen or start the application; stopping", pid)
                self.failed = True
                self._on_signal(signal.SIGTERM, None)
                exit_code = 1
                continue
            log.warning("worker %d exited with %s; restarting", pid, code)
            if time.monotonic() - started < RESTART_BACKOFF:
                time.sleep(RESTART_BACKOFF)
            if not self.stopping:
                self._spawn()
        if self.shared is not None:  # kept until now for restarted workers
            self.shared.close()
        return exit_code


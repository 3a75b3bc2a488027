"""Server: the transport with the dispatcher of the application's interface.

``Server(app, **options)`` is what serve() and the workers run in each
process: ``listen()`` binds (so the port is known), ``run()`` serves until
``stop()`` (thread-safe) or a signal, then drains gracefully.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, Callable, Optional

from .limits import Config
from .transport import Transport

error_log = logging.getLogger("netcore.error")

App = Callable[..., Any]


class Server(Transport):
    """An HTTP/1.1 server for one process: one queue, one I/O thread."""

    def __init__(self, app: App, config: Optional[Config] = None, **options: Any) -> None:
        from ..frontends import make_dispatcher
        config = config.replace(**options) if config else Config(**options)
        dispatcher = make_dispatcher(app, config)
        super().__init__(config, dispatcher)
        self.app = app


def run_server(app: App, config: Config, reuse_port: bool = False,
               install_signals: bool = True, parent_pid: int = 0,
               on_listening: Optional[Callable[[tuple[str, int]], None]] = None,
               sock: Optional[socket.socket] = None,
               stop_requested: Optional[list] = None) -> None:
    """Run one server process to completion (until a signal or stop()).

    ``stop_requested``: a list a signal handler appended to before this
    server could install its own; non-empty means stop at once, gracefully.
    Raises OSError when the address cannot be bound.
    """
    server = Server(app, config)
    try:
        server.listen(reuse_port=reuse_port, sock=sock)
    except BaseException:
        server.q.close_queue()
        raise
    server.parent_pid = parent_pid
    if install_signals and threading.current_thread() is threading.main_thread():
        server.install_signal_handlers()
    if stop_requested:
        server.stop()
    host, port = server.sockname

    def started() -> None:
        if on_listening is not None:
            on_listening((host, port))
        error_log.info("serving on http://%s:%d (pid %d, backend %s, %s)", host, port, os.getpid(),
                       server.q.backend, server.dispatcher.describe())

    server.run(started)
    error_log.info("stopped (pid %d)", os.getpid())

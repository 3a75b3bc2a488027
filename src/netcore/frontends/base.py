"""The dispatcher interface, and what every front end shares.

A dispatcher turns the protocol's events into application calls and writes
the answers back; the transport calls it on the I/O thread only:

- on_events(conn, events): events of one read, in order: ``Request`` heads
  (``body_pending`` says whether body events follow), ``(request, data)``
  body pieces, ``(request, None)`` at the end of a body, ``(request,
  ABORTED)`` when it will never complete.
- fast_rx(conn, data) -> bool, or None: an optional fast path that may take
  a whole read; it declines (returns False) before changing any state.
- on_drain(conn): everything written so far has been sent (after
  conn.notify_drain()); the place to produce the next window of a stream.
- on_eof(conn): the peer half-closed: it sends nothing more, answers in
  progress still go out.
- on_close(conn): the connection is gone; stop its requests' work.
- on_stopping(): a graceful shutdown began.
- start(transport) / run(transport) / stop(): before, as and after the
  serving loop (run() drives transport.run_once()).

Answers go back with conn.write(seq, parts, end, keep_alive) on the I/O
thread; other threads hand work for a connection over with
transport.post_to(conn, fn, value) (the I/O thread that may touch it runs
it), other work with transport.post(fn, value).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Optional

error_log = logging.getLogger("netcore.error")
access_log = logging.getLogger("netcore.access")


class Dispatcher:
    """Base class: the no-op parts of the interface."""

    fast_rx: Optional[Callable[[Any, bytes], bool]] = None
    lane: Any = None     # the C lane, when one is installed (frontends/clane.py)

    def start(self, transport: Any) -> None:
        self.transport = transport

    def on_events(self, conn: Any, events: list) -> None:  # pragma: no cover (abstract)
        raise NotImplementedError

    def on_drain(self, conn: Any) -> None:
        pass

    def on_eof(self, conn: Any) -> None:
        pass

    def on_close(self, conn: Any) -> None:
        pass

    def on_stopping(self) -> None:
        pass

    def run(self, transport: Any) -> None:
        """Drive the transport until it has finished (ASGI runs asyncio here)."""
        while not transport.finished:
            transport.run_once(None)

    def stop(self) -> None:
        pass

    def describe(self) -> str:
        """A few words for the startup log line."""
        return type(self).__name__

    def lane_rest(self, conn: Any, data: bytes, pos: int) -> None:
        """The C lane (frontends/clane.py) took the start of a read: the rest
        goes to the general path."""
        rest_of_read(self, conn, data, pos)


def rest_of_read(dispatcher: Dispatcher, conn: Any, data: bytes, pos: int) -> None:
    """A fast path stopped at ``pos``: the rest of the read goes through the
    protocol, or, if the connection is closing, counts as unread input
    (then it lingers) unless it is only the empty lines the parser skips."""
    proto = conn.proto
    rest = data[pos:]
    if proto.reading:
        events = proto.receive(rest)
        if events:
            dispatcher.on_events(conn, events)
        return
    while rest[:2] == b"\r\n":
        rest = rest[2:]
    if rest:
        proto.linger = True


def default_threads() -> int:
    """Pool size for blocking applications when none is configured."""
    return min(32, (os.cpu_count() or 1) * 4)


class Pool:
    """A fixed set of daemon threads running submitted calls in order.

    Lighter than concurrent.futures (no Future per call): the result of a
    call goes back to the I/O thread through transport.post by the call
    itself.
    """

    def __init__(self, size: int, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(size)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable, *args: Any) -> None:
        self._jobs.put((fn, args))

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except BaseException:  # a job reports its own errors; this is a last resort
                error_log.exception("a pool job failed")

    def shutdown(self) -> None:
        """Stop the threads once they finish their current job (not waited for)."""
        for _ in self._threads:
            self._jobs.put(None)


def log_access(client: Optional[tuple], method: str, target: str, version: str, status: Any,
               size: int, start: float) -> None:
    """One line in common log format plus the response time."""
    host = client[0] if client else "-"
    elapsed = time.perf_counter() - start
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    access_log.info('%s - - [%s] "%s %s HTTP/%s" %s %d %.6f', host, stamp, method, target,
                    version, status, size, elapsed)

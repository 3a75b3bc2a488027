"""The ASGI interface (3.0, HTTP spec 2.4, lifespan): ``await app(scope, receive, send)``.

Applications run on QueueLoop (aioloop.py), asyncio on the completion
queue, on the I/O thread.  Each request's coroutine starts at once, inside
the round that parsed its head, as a real asyncio Task (so current_task()
and anyio's cancel scopes work) started eagerly: an application that never
suspends has answered before the round ends, and a pipeline's answers
leave in one send.

- receive(): ``http.request`` messages as the body arrives (``more_body``),
  with flow control: past a window of unread body, reading the socket
  pauses until the application catches up.  After the body, receive()
  waits for ``http.disconnect``: when the client goes away, when the
  response is complete, or when the server shuts down.
- send(): ``http.response.start`` then ``http.response.body`` messages.  A
  single body message becomes one response with a Content-Length; more are
  sent chunked (close-delimited to HTTP/1.0) as they come, and send() only
  waits when a window of the answer is still on its way.  send() after the
  client went away raises ClientDisconnected (an OSError); a second start,
  or a body after the last one, raises RuntimeError.
- An application that raises, or returns without a complete answer, gets
  a 500 if nothing was sent yet, else its connection is closed.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any, Optional

from ..http.parser import HEAD_CACHE, memo_head
from ..http.protocol import ABORTED
from ..http.request import Request
from ..http.response import (
    STREAM_WINDOW, BodyLengthError, Stream, build_head, complete_head, encode_headers)
from .aioloop import QueueLoop
from .base import Dispatcher, error_log, log_access, rest_of_read
from .lifespan import Lifespan

BODY_HIGH = 256 * 1024    # unread request body buffered before reading pauses
BODY_LOW = 64 * 1024      # ... and resumes

_DISCONNECT = {"type": "http.disconnect"}
_EAGER = sys.version_info >= (3, 12)


class ClientDisconnected(OSError):
    """send() on a response whose client has gone away."""


class _Done:
    """An awaitable that has already completed (with None)."""

    __slots__ = ()

    def __await__(self):
        return iter(())


DONE = _Done()


class _Ready:
    """An awaitable that has already completed with a value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self):
        return self.value
        yield  # pragma: no cover (makes this a generator)


# Cycle states
START, STREAMING, FINISHED = 0, 1, 2


class Cycle:
    """One request-response cycle: the receive and send of one request."""

    __slots__ = ("dispatcher", "conn", "req", "seq", "state", "status", "headers", "framer",
                 "chunks", "buffered", "body_done", "body_given", "paused", "receiving",
                 "draining", "unacked", "gone", "eof", "task")

    def __init__(self, dispatcher: "ASGIDispatcher", conn: Any, req: Request) -> None:
        self.dispatcher = dispatcher
        self.conn = conn
        self.req = req
        self.seq = req.seq
        self.state = START
        self.status = 0
        self.headers: Any = None
        self.framer: Optional[Stream] = None
        self.chunks: list = []            # body bytes not yet received by the app
        self.buffered = 0
        self.body_done = not req.body_pending
        self.body_given = False           # the last http.request message was received
        self.paused = False               # this cycle paused the connection's reading
        self.receiving: Optional[asyncio.Future] = None
        self.draining: Optional[asyncio.Future] = None
        self.unacked = 0                  # bytes written since the connection last drained
        self.gone = False                 # the client went away
        self.eof = False                  # the client half-closed (sends nothing more)
        self.task: Any = None
        if req.body:
            self.chunks.append(req.body)
            self.buffered = len(req.body)

    # ------------------------------------------------------------ body in (I/O thread)
    def feed(self, data: bytes) -> None:
        if self.state == FINISHED:
            return   # the app is done; the rest of the body is read and dropped
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered >= BODY_HIGH and not self.paused:
            self.paused = True
            self.conn.pause_reading()
        self._wake_receive()

    def end(self) -> None:
        self.body_done = True
        self._wake_receive()

    def disconnected(self) -> None:
        """The client went away (or the body can never complete)."""
        self.gone = True
        self.body_done = True
        self._wake_receive()
        d = self.draining
        if d is not None:
            self.draining = None
            if not d.done():
                d.set_result(None)

    def end_receiving(self) -> None:
        """The client half-closed, or the server is shutting down: after the
        body, receive() is a disconnect (sending goes on)."""
        self.eof = True
        self._wake_receive()

    def _wake_receive(self) -> None:
        fut = self.receiving
        if fut is not None and not fut.done():
            msg = self._next_message()
            if msg is not None:
                self.receiving = None
                fut.set_result(msg)

    def _next_message(self) -> Optional[dict]:
        if self.chunks:
            chunks = self.chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.chunks = []
            self.buffered = 0
            if self.paused:
                self.paused = False
                self.conn.resume_reading()
            more = not self.body_done
            if not more:
                self.body_given = True
            return {"type": "http.request", "body": body, "more_body": more}
        if not self.body_given:
            if self.gone:
                return _DISCONNECT
            if self.body_done:
                self.body_given = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return None
        if self.gone or self.eof or self.state == FINISHED:
            return _DISCONNECT
        return None

    # ------------------------------------------------------------ the app's side
    def receive(self) -> Any:
        msg = self._next_message()
        if msg is not None:
            return _Ready(msg)
        if self.receiving is not None:
            raise RuntimeError("receive() called again while an earlier receive() is waiting")
        fut = self.receiving = self.dispatcher.loop.create_future()
        return fut

    def send(self, message: dict) -> Any:
        kind = message["type"]
        if kind == "http.response.body":
            if self.state != STREAMING:
                raise RuntimeError("http.response.body sent before http.response.start"
                                   if self.state == START else
                                   "http.response.body sent after the response was complete")
            if self.gone:
                raise ClientDisconnected("the client went away")
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytearray, memoryview)):
                    raise TypeError(f"http.response.body 'body' must be bytes, not {type(body).__name__}")
                body = bytes(body)
            return self._body(body, message.get("more_body", False))
        if kind == "http.response.start":
            if self.state != START:
                raise RuntimeError("http.response.start sent twice")
            if self.gone:
                raise ClientDisconnected("the client went away")
            status = message["status"]
            if type(status) is not int or not 200 <= status <= 999:
                raise ValueError(f"invalid status {status!r} in http.response.start")
            self.status = status
            self.headers = message.get("headers", ())
            self.state = STREAMING
            return DONE
        raise RuntimeError(f"unexpected ASGI message type {kind!r} on an HTTP connection")

    def _body(self, body: bytes, more: bool) -> Any:
        req = self.req
        d = self.dispatcher
        conn = self.conn
        head_only = req.method == "HEAD" or self.status in (204, 304)
        http11 = req.http_version == "1.1"
        framer = self.framer
        if framer is None and not more:
            # the whole answer at once: one write with a Content-Length
            self.state = FINISHED
            head, keep = complete_head(d.heads, self.status, None, self.headers, len(body), http11,
                                       req.keep_alive and not d.transport.stopping,
                                       req.method == "HEAD")
            conn.write(self.seq, [head, body] if body and not head_only else [head], True, keep)
            self._finished()
            return DONE
        parts: list = []
        if framer is None:
            enc = encode_headers(self.headers)
            keep = req.keep_alive and not d.transport.stopping and not enc.close
            length = enc.length
            # (a HEAD answer says what the GET one would: chunked, with no body)
            chunked = length < 0 and http11 and self.status not in (204, 304)
            if length < 0 and not http11:
                keep = False   # close-delimited
            framer = self.framer = Stream(None, chunked, length, keep)
            parts.append(build_head(d.heads, self.status, enc, b"", length, http11, keep, chunked))
        if not head_only:
            if body:
                parts.extend(framer.frame((body,)))
            if not more:
                parts.extend(framer.finish())
        if not more:
            self.state = FINISHED
            conn.write(self.seq, parts, True, framer.keep_alive)
            self._finished()
            return DONE
        conn.write(self.seq, parts, False)
        self.unacked += len(body)
        if self.unacked < STREAM_WINDOW:
            return DONE
        # a window is on its way: wait until the client has taken it
        fut = self.draining = d.loop.create_future()
        d.wait_drained(conn, self)
        return fut

    def drained(self) -> None:
        self.unacked = 0
        d = self.draining
        if d is not None:
            self.draining = None
            if not d.done():
                d.set_result(None)

    def _finished(self) -> None:
        """The answer is complete: a waiting receive() learns the cycle is over."""
        if self.paused:
            self.paused = False
            self.conn.resume_reading()
        self.chunks = []
        self._wake_receive()

    # ------------------------------------------------------------ the task's end
    def task_done(self, task: asyncio.Task) -> None:
        d = self.dispatcher
        d.cycle_ended(self)
        if task.cancelled():
            exc: Optional[BaseException] = None
            failed = self.state != FINISHED
        else:
            exc = task.exception()
            failed = exc is not None or self.state != FINISHED
        if not failed:
            return
        req = self.req
        what = f"{req.method} {req.target.decode('latin-1')}"
        if exc is not None and not (isinstance(exc, ClientDisconnected) and self.gone):
            if isinstance(exc, BodyLengthError):
                error_log.error("%s for %s; closing the connection", exc, what)
            elif self.framer is not None:
                error_log.error("ASGI application failed midway for %s; closing the connection",
                                what, exc_info=exc)
            else:
                error_log.error("ASGI application failed for %s", what, exc_info=exc)
        elif exc is None and not self.gone and not task.cancelled():
            error_log.error("ASGI application returned without a complete response for %s", what)
        if self.gone or self.state == FINISHED:
            return       # (an exception after a complete answer is only logged)
        self.state = FINISHED
        if self.framer is None:
            self.conn.fail(self.seq, 500, "Internal Server Error")
        else:
            self.conn.cut(self.seq)   # part of the answer is out: cut it short and close
        self._finished()


class _ConnState:
    """Per connection: its running cycles, and the one receiving a body now."""

    __slots__ = ("cycles", "body", "waiting")

    def __init__(self) -> None:
        self.cycles: dict[int, Cycle] = {}
        self.body: Optional[Cycle] = None
        self.waiting: list = []            # cycles whose send() waits for a drain


class ASGIDispatcher(Dispatcher):
    def __init__(self, app: Any, config: Any) -> None:
        self.app = app
        self.config = config
        self.timing = config.access_log
        self.root = config.root_path
        self.lifespan = Lifespan(app, config.lifespan)
        self.loop: Any = None
        self.tasks: set = set()

    def describe(self) -> str:
        return "ASGI interface"

    def start(self, transport: Any) -> None:
        super().start(transport)
        self.heads = transport.heads
        host, port = transport.sockname
        self.server = (host, port)
        self.loop = QueueLoop(transport)
        asyncio.set_event_loop(self.loop)
        self.lifespan.startup(self.loop)   # raises StartupFailed
        if not self.timing:
            self.fast_rx = self.fast_path

    def run(self, transport: Any) -> None:
        self.loop.run_until_finished()

    def stop(self) -> None:
        loop = self.loop
        if loop is None:
            return
        try:
            self.lifespan.shutdown(loop)
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in tasks:
                t.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            self.loop = None

    # ------------------------------------------------------------ scope
    def _head_scope(self, method: str, version: str, raw_path: bytes, query: bytes,
                    path: str) -> dict:
        """The scope keys that depend only on the request head."""
        root = self.root
        if root and not (path == root or path.startswith(root + "/")):
            path = root + path   # the proxy took the prefix off: path includes root_path
        return {"type": "http", "http_version": version, "server": self.server, "scheme": "http",
                "method": method, "root_path": root, "path": path, "raw_path": raw_path,
                "query_string": query}

    def scope(self, conn: Any, req: Request, head: Optional[dict] = None) -> dict:
        """A fresh scope: nothing in it is shared with another request."""
        scope = (self._head_scope(req.method, req.http_version, req.raw_path,
                                  req.query_string.encode("latin-1"), req.path)
                 if head is None else head.copy())
        scope["asgi"] = {"version": "3.0", "spec_version": "2.4"}
        scope["client"] = conn.client
        scope["headers"] = list(req.raw_headers)
        scope["state"] = self.lifespan.state.copy()
        return scope

    # ------------------------------------------------------------ fast path
    def fast_path(self, conn: Any, data: bytes) -> bool:
        """Memoised body-less heads start their cycles without a pass through
        the protocol's parser, from a scope prepared once per head; anything
        else goes to the general path from where this stopped."""
        proto = conn.proto
        if not proto.fast_ready or self.transport.stopping:
            return False
        heads = HEAD_CACHE
        config = self.config
        st = conn.state
        if st is None:
            st = conn.state = _ConnState()
        started = False
        n = len(data)
        pos = 0
        while pos < n and proto.reading:
            hend = data.find(b"\r\n\r\n", pos)
            if hend < 0:
                break
            e = heads.get(data[pos:hend])
            if e is None or e[0] is not config:
                e = memo_head(data, pos, hend, config)
                if e is None:
                    break
            pos = hend + 4
            head = e[8].get(self)
            if head is None:
                raw_path, query, path = e[5][1]
                head = self._head_scope(e[1], e[3], raw_path, query, path)
                if len(e[8]) < 8:
                    e[8][self] = head
            req = Request(e[1], e[2], e[3], e[4])
            req._split = e[5]
            req._peer = conn
            req.seq = proto.accept_inline()
            cycle = Cycle(self, conn, req)
            st.cycles[req.seq] = cycle
            self._run(cycle, self.scope(conn, req, head))
            started = True
        if not started:
            return False
        if pos < n:
            rest_of_read(self, conn, data, pos)
        return True

    # ------------------------------------------------------------ events
    def on_events(self, conn: Any, events: list) -> None:
        st = conn.state
        if st is None:
            st = conn.state = _ConnState()
        for ev in events:
            if type(ev) is Request:
                cycle = Cycle(self, conn, ev)
                st.cycles[ev.seq] = cycle
                if ev.body_pending:
                    st.body = cycle
                self._run(cycle, self.scope(conn, ev))
                continue
            req, data = ev
            cycle = st.body
            if cycle is None or cycle.req is not req:
                continue   # its cycle has ended: the rest of the body is dropped
            if data is None:
                st.body = None
                cycle.end()
            elif data is ABORTED:
                st.body = None
                cycle.disconnected()
            else:
                cycle.feed(data)

    def _run(self, cycle: Cycle, scope: dict) -> None:
        coro = self.app(scope, cycle.receive, cycle.send)
        loop = self.loop
        if _EAGER:
            task = asyncio.Task(coro, loop=loop, eager_start=True)
        else:
            # Eager start by hand (before 3.12): the step the new Task asks
            # the loop to schedule is caught and run at once.
            loop.call_soon = loop.catch_call_soon
            try:
                task = asyncio.Task(coro, loop=loop)
            finally:
                loop.__dict__.pop("call_soon", None)
            loop.run_caught()
        cycle.task = task
        if task.done():
            cycle.task_done(task)
        else:
            self.tasks.add(task)
            task.add_done_callback(cycle.task_done)

    def cycle_ended(self, cycle: Cycle) -> None:
        task = cycle.task
        if task is not None:
            self.tasks.discard(task)
        st = cycle.conn.state
        if st is not None:
            st.cycles.pop(cycle.seq, None)
        if self.timing:
            req = cycle.req
            log_access(req.client, req.method, req.target.decode("latin-1"), req.http_version,
                       cycle.status or 500, 0, getattr(req, "start", 0.0))

    # ------------------------------------------------------------ output flow
    def wait_drained(self, conn: Any, cycle: Cycle) -> None:
        conn.state.waiting.append(cycle)
        conn.notify_drain()

    def on_drain(self, conn: Any) -> None:
        st = conn.state
        if st is None or not st.waiting:
            return
        proto = conn.proto
        waiting = st.waiting
        st.waiting = []
        for cycle in waiting:
            if cycle.seq <= proto.seq_out or proto.held_bytes(cycle.seq) < STREAM_WINDOW:
                cycle.drained()
            else:
                st.waiting.append(cycle)   # behind an earlier answer: wait on
        if st.waiting:
            conn.want_drain = True

    def on_eof(self, conn: Any) -> None:
        # The client will send nothing more: an app waiting in receive()
        # after its body learns it as a disconnect (its answer may still go out).
        st = conn.state
        if st is None:
            return
        for cycle in list(st.cycles.values()):
            cycle.end_receiving()

    def on_close(self, conn: Any) -> None:
        st = conn.state
        if st is None:
            return
        st.waiting = []
        st.body = None
        for cycle in list(st.cycles.values()):
            cycle.disconnected()

    def on_stopping(self) -> None:
        # Answers that wait for the client to go away (long polls,
        # server-sent events) learn of the shutdown as a disconnect.
        for conn in list(self.transport.conns):
            st = conn.state
            if st is None:
                continue
            for cycle in list(st.cycles.values()):
                cycle.end_receiving()

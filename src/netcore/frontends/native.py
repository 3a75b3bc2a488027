"""The native interface: ``handler(request) -> Response | bytes | str | dict | list``.

Handlers see a Request with its whole body (up to the body limit) and run on
the I/O thread, or with ``threads=N`` on a pool whose results come back
through the queue's post.  An iterable body that outlasts one window is a
Stream: the next window is produced only once the previous one has been
sent (on_drain), on the I/O thread or on the pool, like the handler.

The fast path (fast_rx) answers the common case of a read in one frame:
complete, repeated (memoised) heads without a body, keep-alive, handlers
inline.  It checks that the connection is in the plain state before it
touches anything, and hands everything it cannot finish itself to the
general path unchanged.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

from ..http.parser import HEAD_CACHE, memo_head
from ..http.protocol import ABORTED
from ..http.request import Request
from ..http.response import BodyLengthError, Stream, render
from .base import Dispatcher, Pool, error_log, log_access

App = Callable[[Request], Any]


class _ConnState:
    """Per connection: the body being collected, streams waiting their turn."""

    __slots__ = ("body", "streams")

    def __init__(self) -> None:
        self.body: Optional[list] = None        # pieces of the body arriving now
        self.streams: deque = deque()            # (seq, Stream), in request order


class NativeDispatcher(Dispatcher):
    def __init__(self, app: App, config: Any) -> None:
        self.app = app
        self.config = config
        self.pool: Optional[Pool] = None
        self.threads = config.threads or 0
        self.timing = config.access_log

    def start(self, transport: Any) -> None:
        super().start(transport)
        self.heads = transport.heads
        if self.threads:
            self.pool = Pool(self.threads, "netcore-handler")
        # the fast path answers inline and logs nothing
        self.fast_rx = None if self.threads or self.timing else self._fast_rx

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def describe(self) -> str:
        return f"native interface, {self.threads} handler threads" if self.threads else "native interface"

    # ------------------------------------------------------------ fast path
    def _fast_rx(self, conn: Any, data: bytes) -> bool:
        proto = conn.proto
        st = conn.state
        if (not proto.fast_ready or self.transport.stopping
                or st is not None and (st.body is not None or st.streams)):
            return False
        heads = HEAD_CACHE
        config = self.config
        app = self.app
        cache = self.heads
        out: list = []
        seq0 = seq = proto.seq_in
        n = len(data)
        pos = 0
        keep: Any = True
        while pos < n:
            hend = data.find(b"\r\n\r\n", pos)
            if hend < 0:
                break
            e = heads.get(data[pos:hend])
            if e is None or e[0] is not config:
                e = memo_head(data, pos, hend, config)
                if e is None:
                    break     # a body, an error, a closing request...: the general path's
            req = Request(e[1], e[2], e[3], e[4])
            req._split = e[5]
            req._peer = conn
            req.seq = seq
            pos = hend + 4
            mark = len(out)
            try:
                keep = render(app(req), e[6], e[7], True, out, cache)
            except Exception:
                del out[mark:]
                keep = self._failed(req, out)
            if not keep:
                # A closing answer or a stream: the protocol takes this one
                # through its general output path, from a committed state.
                proto.answered_inline(seq - seq0, out[:mark])
                proto.accept_inline()
                self._deliver(conn, req, out[mark:], keep)
                self._fast_rest(conn, data, pos)
                return True
            seq += 1
        if seq == seq0:
            return False      # nothing answered: the read goes to the general path as it is
        proto.answered_inline(seq - seq0, out)
        if pos < n:
            events = proto.receive(data[pos:] if pos else data)
            if events:
                self.on_events(conn, events)
        return True

    def _fast_rest(self, conn: Any, data: bytes, pos: int) -> None:
        """The rest of a read after a fast-path answer the general path took over."""
        proto = conn.proto
        rest = data[pos:]
        if proto.reading:
            if rest:
                events = proto.receive(rest)
                if events:
                    self.on_events(conn, events)
            return
        # the connection closes: what follows counts as unread input unless
        # it is only the empty lines receive() would have skipped
        while rest[:2] == b"\r\n":
            rest = rest[2:]
        if rest:
            proto.linger = True

    # ------------------------------------------------------------ general path
    def on_events(self, conn: Any, events: list) -> None:
        ready: list = []
        for ev in events:
            if type(ev) is Request:
                if ev.body_pending:
                    st = conn.state
                    if st is None:
                        st = conn.state = _ConnState()
                    st.body = []
                else:
                    ready.append(ev)
                continue
            req, data = ev
            st = conn.state
            if data is None:
                req.body = b"".join(st.body)
                req.body_pending = False
                st.body = None
                ready.append(req)
            elif data is ABORTED:
                if st is not None:
                    st.body = None     # never dispatched: the protocol answers it, if anyone
            else:
                st.body.append(data)
        if not ready:
            return
        if self.pool is not None:
            self.pool.submit(self._run_threaded, conn, ready)
            return
        for req in ready:
            self._answer(conn, req)

    def _answer(self, conn: Any, req: Request) -> None:
        """Run the handler on the I/O thread and write its answer."""
        parts: list = []
        keep = self._call(req, parts)
        self._deliver(conn, req, parts, keep)

    def _call(self, req: Request, parts: list) -> Any:
        """Run one handler, its answer serialised onto ``parts``; returns the
        keep-alive flag or a Stream (see render)."""
        try:
            result = self.app(req)
            # read `stopping` after the handler: a shutdown may have begun meanwhile
            keep = render(result, req.method == "HEAD", req.http_version == "1.1",
                          req.keep_alive and not self.transport.stopping, parts, self.heads)
        except Exception:
            del parts[:]
            keep = self._failed(req, parts)
        if self.timing:
            self._log(req, parts)
        return keep

    def _failed(self, req: Request, out: list) -> bool:
        error_log.exception("handler failed for %s %s", req.method, req.target.decode("latin-1"))
        out.append(self.heads.error(500, "Internal Server Error"))
        return False

    def _log(self, req: Request, parts: list) -> None:
        if not parts:
            return
        try:
            status = parts[0][9:12].decode("ascii")
        except Exception:  # pragma: no cover
            status = "-"
        log_access(req.client, req.method, req.target.decode("latin-1"), req.http_version, status,
                   sum(len(p) for p in parts[1:]), getattr(req, "start", 0.0))

    def _deliver(self, conn: Any, req: Request, parts: list, keep: Any) -> None:
        """Write an answer; a Stream's later windows follow on drain."""
        if type(keep) is not Stream:
            conn.write(req.seq, parts, True, bool(keep))
            return
        conn.write(req.seq, parts, False)
        st = conn.state
        if st is None:
            st = conn.state = _ConnState()
        st.streams.append((req.seq, keep))
        # requests behind a stream would only pile up held answers
        conn.pause_reading()
        conn.want_drain = True

    # ------------------------------------------------------------ pool
    def _run_threaded(self, conn: Any, reqs: list) -> None:
        """On a pool thread: the handlers of one read, in order."""
        answers = []
        for req in reqs:
            parts: list = []
            answers.append((req, parts, self._call(req, parts)))
        self.transport.post(self._threaded_done, (conn, answers))

    def _threaded_done(self, value: tuple) -> None:
        conn, answers = value
        for req, parts, keep in answers:
            if conn.closed:
                if type(keep) is Stream:
                    keep.close()
                continue
            self._deliver(conn, req, parts, keep)

    # ------------------------------------------------------------ streams
    def on_drain(self, conn: Any) -> None:
        st = conn.state
        if st is None or not st.streams:
            return
        seq, stream = st.streams[0]
        if seq != conn.proto.seq_out:
            conn.want_drain = True     # an earlier answer is still to come
            return
        if stream.busy:
            return
        if self.pool is not None:
            # the iterator may block: pull on the pool, as handlers run there
            stream.busy = True
            self.pool.submit(self._pull_threaded, conn, stream)
            return
        try:
            pieces = stream.pull()
        except Exception as exc:
            self._stream_failed(conn, exc)
            return
        self._stream_out(conn, seq, stream, pieces)

    def _pull_threaded(self, conn: Any, stream: Stream) -> None:
        try:
            result: Any = stream.pull()
        except Exception as exc:
            result = exc
        self.transport.post(self._pulled, (conn, stream, result))

    def _pulled(self, value: tuple) -> None:
        conn, stream, result = value
        stream.busy = False
        st = conn.state
        if conn.closed or stream.cancelled or st is None or not st.streams:
            stream.close()
        elif isinstance(result, Exception):
            self._stream_failed(conn, result)
        else:
            self._stream_out(conn, st.streams[0][0], stream, result)

    def _stream_out(self, conn: Any, seq: int, stream: Stream, pieces: list) -> None:
        st = conn.state
        if stream.done:
            st.streams.popleft()
            conn.write(seq, pieces, True, stream.keep_alive)
            if st.streams:
                conn.want_drain = True
            else:
                conn.resume_reading()
        else:
            conn.write(seq, pieces, False)
            conn.want_drain = True

    def _stream_failed(self, conn: Any, exc: Exception) -> None:
        # The head is out: no error response is possible, and closing is
        # how the client learns the body is incomplete.
        if isinstance(exc, BodyLengthError):
            error_log.error("%s; closing the connection", exc)
        else:
            error_log.error("response body iterator failed midway; closing the connection",
                            exc_info=exc)
        conn.abort()

    def on_close(self, conn: Any) -> None:
        st = conn.state
        if st is not None:
            # a client gone midway: stop pulling, close() the iterables
            while st.streams:
                st.streams.popleft()[1].close()

"""What the native and WSGI front ends share: synchronous applications.

An application call runs on the I/O thread (``threads=0``) or on a pool of
threads whose results come back through transport.post; the requests that
one read completes go to the pool as one job, so a pipeline costs one
hand-over, not one per request.  Bodies are collected until complete,
unless the subclass streams them to a running call (WSGI on a pool).

An iterable body that outlasts one window is a Stream: its next window is
produced only once the previous one has been sent (on_drain), on the
thread the application runs on, so a slow client never makes the server
buffer more than a window per connection.  Reading pauses while a stream
is being sent: requests behind it would only pile up held answers.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Optional

from ..http.parser import HEAD_CACHE, memo_head
from ..http.protocol import ABORTED
from ..http.request import Request
from ..http.response import STREAM_WINDOW, BodyLengthError, Stream
from .base import Dispatcher, Pool, error_log, rest_of_read


class ConnState:
    """Per connection: the body arriving now, streams waiting their turn."""

    __slots__ = ("body", "streams", "waiters")

    def __init__(self) -> None:
        self.body: Any = None          # collected pieces, or the subclass's body sink
        self.streams: deque = deque()  # (seq, Stream), in request order
        self.waiters: list = []        # (seq, callback) to call once seq's output drains


class BlockingDispatcher(Dispatcher):
    pool_name = "netcore-app"

    def __init__(self, config: Any, threads: int) -> None:
        self.config = config
        self.threads = threads
        self.pool: Optional[Pool] = None
        self._local = threading.local()    # a pool thread's batch in progress

    def start(self, transport: Any) -> None:
        super().start(transport)
        self.heads = transport.heads
        if self.threads:
            self.pool = Pool(self.threads, self.pool_name)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    # ------------------------------------------------------------ subclass API
    def call(self, conn: Any, req: Request, parts: list) -> Any:  # pragma: no cover (abstract)
        """Run the application for ``req`` (body complete), serialising its
        answer onto ``parts``; return keep-alive or a Stream (see render)."""
        raise NotImplementedError

    def body_started(self, conn: Any, req: Request) -> bool:
        """A head whose body follows: return True to have the subclass take
        the body itself (``conn.state.body`` is then its sink, fed by
        body_data/body_end/body_aborted); False collects it and calls the
        application once it is complete."""
        return False

    def body_data(self, sink: Any, data: bytes) -> None:  # pragma: no cover (streaming subclasses)
        raise NotImplementedError

    def body_end(self, sink: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def body_aborted(self, sink: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------ fast path
    def answer_head(self, conn: Any, entry: tuple, seq: int, out: list) -> Any:
        """Answer a memoised body-less head inline onto ``out`` (the fast
        path's per-request step; ``entry`` is its parser.HEAD_CACHE entry);
        return keep-alive or a Stream, as call() does."""
        raise NotImplementedError  # pragma: no cover (subclasses that use fast_path)

    def fast_path(self, conn: Any, data: bytes) -> bool:
        """The common case of a read in one frame: complete, repeated
        (memoised) heads without a body, keep-alive, answered inline.  It
        checks that the connection is in the plain state before touching
        anything, commits only fully answered requests, and hands the rest
        of the read to the general path unchanged."""
        proto = conn.proto
        st = conn.state
        if (not proto.fast_ready or self.transport.stopping
                or st is not None and (st.body is not None or st.streams)):
            return False
        heads = HEAD_CACHE
        config = self.config
        answer = self.answer_head
        out: list = []
        seq0 = seq = proto.seq_in
        n = len(data)
        pos = 0
        while pos < n:
            hend = data.find(b"\r\n\r\n", pos)
            if hend < 0:
                break
            e = heads.get(data[pos:hend])
            if e is None or e[0] is not config:
                e = memo_head(data, pos, hend, config)
                if e is None:
                    break     # a body, an error, a closing request...: the general path's
            pos = hend + 4
            mark = len(out)
            keep = answer(conn, e, seq, out)
            if not keep:
                # A closing answer or a stream: the protocol takes this one
                # through its general output path, from a committed state.
                proto.answered_inline(seq - seq0, out[:mark])
                proto.accept_inline()
                self.deliver(conn, seq, out[mark:], keep)
                rest_of_read(self, conn, data, pos)
                return True
            seq += 1
        if seq == seq0:
            return False      # nothing answered: the read goes to the general path as it is
        proto.answered_inline(seq - seq0, out)
        if pos < n:
            rest_of_read(self, conn, data, pos)
        return True

    # ------------------------------------------------------------ events
    def on_events(self, conn: Any, events: list) -> None:
        ready: list = []
        for ev in events:
            if type(ev) is Request:
                if not ev.body_pending:
                    ready.append(ev)
                    continue
                st = conn.state
                if st is None:
                    st = conn.state = ConnState()
                if not self.body_started(conn, ev):
                    st.body = []
                continue
            req, data = ev
            st = conn.state
            body = st.body
            if type(body) is list:
                if data is None:
                    req.body = b"".join(body)
                    req.body_pending = False
                    st.body = None
                    ready.append(req)
                elif data is ABORTED:
                    st.body = None     # never called: the protocol answers it, if anyone
                else:
                    body.append(data)
            elif data is None:
                st.body = None
                self.body_end(body)
            elif data is ABORTED:
                st.body = None
                self.body_aborted(body)
            else:
                self.body_data(body, data)
        if not ready:
            return
        if self.pool is not None:
            self.pool.submit(self._run_threaded, conn, ready)
            return
        for req in ready:
            parts: list = []
            self.deliver(conn, req.seq, parts, self.call(conn, req, parts))

    def failed(self, req: Request, out: list, exc: Optional[BaseException] = None) -> bool:
        """The application raised (``exc``, or the exception being handled):
        log it and answer 500, closing."""
        error_log.error("application failed for %s %s", req.method, req.target.decode("latin-1"),
                        exc_info=exc if exc is not None else True)
        out.append(self.heads.error(500, "Internal Server Error"))
        return False

    def lane_finish(self, conn: Any, parts: list, keep: Any, data: bytes, pos: int) -> None:
        """The C lane's answer that closes or streams (fast_path's ``not
        keep`` branch): it goes through the general output path, then the
        rest of the read."""
        seq = conn.proto.accept_inline()
        self.deliver(conn, seq, parts, keep)
        rest_of_read(self, conn, data, pos)

    def deliver(self, conn: Any, seq: int, parts: list, keep: Any) -> None:
        """Write answer ``seq`` (I/O thread); a Stream's later windows follow on drain."""
        if type(keep) is not Stream:
            conn.write(seq, parts, True, bool(keep))
            return
        if conn.closed:
            keep.close()
            return
        conn.write(seq, parts, False)
        st = conn.state
        if st is None:
            st = conn.state = ConnState()
        st.streams.append((seq, keep))
        conn.pause_reading()
        conn.want_drain = True

    # ------------------------------------------------------------ pool
    def _run_threaded(self, conn: Any, reqs: list, lane: bool = False) -> None:
        """On a pool thread: the applications of one read, in order; their
        answers go back together (see flush_batch).  ``lane``: the C lane's
        requests, which it answers itself (lane.c, answer_all)."""
        local = self._local
        answers: list = []
        local.answers = answers
        try:
            if lane:
                self.lane.answer_all(conn, reqs, answers)
            else:
                for req in reqs:
                    parts: list = []
                    answers.append((req, parts, self.call(conn, req, parts)))
        finally:
            local.answers = None
        if answers:
            self.transport.post_to(conn, self._threaded_done, (conn, answers))

    def lane_submit(self, conn: Any, reqs: list) -> None:
        """The pooled C lane's batch: the requests of one read, to the pool."""
        self.pool.submit(self._run_threaded, conn, reqs, True)

    def flush_batch(self, conn: Any) -> None:
        """On a pool thread, before a call waits for its own output to
        drain: the answers of the batch so far go out first, since the
        waiting answer may be queued behind them."""
        answers = getattr(self._local, "answers", None)
        if answers:
            self.transport.post_to(conn, self._threaded_done, (conn, answers[:]))
            del answers[:]

    def _threaded_done(self, value: tuple) -> None:
        conn, answers = value
        run: Optional[list] = None   # consecutive plain answers, queued in one step
        first = 0
        for req, parts, keep in answers:
            if type(parts) is bytes:     # the C lane's plain keep-alive answer
                if run is None:
                    first, run = req.seq, []
                run.append(parts)
                continue
            if run is not None:
                conn.write_answers(first, run)
                run = None
            self.deliver(conn, req.seq, parts, keep)
        if run is not None:
            conn.write_answers(first, run)

    # ------------------------------------------------------------ streams
    def wait_drained(self, conn: Any, seq: int, callback: Any) -> None:
        """Call ``callback()`` once answer ``seq``'s output so far has been
        sent, or at most a window of it waits behind earlier answers (or the
        connection is gone)."""
        st = conn.state
        if st is None:
            st = conn.state = ConnState()
        st.waiters.append((seq, callback))
        conn.notify_drain()

    def on_drain(self, conn: Any) -> None:
        st = conn.state
        if st is None:
            return
        if st.waiters:
            proto = conn.proto
            waiting = []
            for seq, callback in st.waiters:
                if seq <= proto.seq_out or proto.held_bytes(seq) < STREAM_WINDOW:
                    callback()
                else:
                    waiting.append((seq, callback))
            st.waiters = waiting
            if waiting:
                conn.want_drain = True
        if not st.streams:
            return
        seq, stream = st.streams[0]
        if seq != conn.proto.seq_out:
            conn.want_drain = True     # an earlier answer is still to come
            return
        if stream.busy:
            return
        if self.pool is not None:
            # the iterator may block: pull on the pool, where the application runs
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
        self.transport.post_to(conn, self._pulled, (conn, stream, result))

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
        if st is None:
            return
        # a client gone midway: stop pulling, close() the iterables
        while st.streams:
            st.streams.popleft()[1].close()
        waiters = st.waiters
        st.waiters = []
        for _seq, callback in waiters:
            callback()
        body = st.body
        if body is not None and type(body) is not list:
            st.body = None
            self.body_aborted(body)

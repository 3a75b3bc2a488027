"""The event loop: iocore completions in, HTTP connections driven.

One thread owns the queue.  Each q.wait() returns a batch of completions and
the loop dispatches them:

- RECV  -> handle_rx: feed the bytes to the Connection, run the handlers of
           the requests it completed, send every released response of the
           batch in ONE q.send, re-arm the recv.
- SEND  -> handle_tx: output done; close, half-close or resume reading.
- ACCEPT-> a new Connection, first recv armed.
- POST  -> a handler finished on a pool thread (tag: the Connection), or
           a stop request.
- TIMER -> the one-second tick: Date refresh and the timeout sweep.

Iterable bodies that outlast one window (response.Stream) are sent window
by window: the next window is pulled only when the previous send has
completed, and reading pauses until the stream ends.  Inline handlers'
streams are pulled on the I/O thread; with ``threads`` the pulls run on
the pool and are posted back like handler results.

Timeouts are a coarse sweep over connections once a second rather than a
core timer per request: the per-request cost is one float store.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any, Callable, Optional

from .. import iocore
from .connection import BODY, HEAD, IDLE, Connection
from .parser import HEAD_CACHE, memo_head
from .limits import Config
from .request import Request
from .response import BodyLengthError, Stream, error_bytes, refresh_date, render, set_server_header

error_log = logging.getLogger("netcore.error")
access_log = logging.getLogger("netcore.access")

App = Callable[[Request], Any]

RECV, SEND, ACCEPT, POST, TIMER = iocore.RECV, iocore.SEND, iocore.ACCEPT, iocore.POST, iocore.TIMER
CANCELLED = iocore.CANCELLED

ACCEPTS_AHEAD = 8          # accept operations kept pending per listener
MAX_PENDING_SENDS = 8      # stop reading a connection with this many sends unfinished
MAX_INFLIGHT = 64          # stop reading a connection with this many handlers running
LINGER_SECONDS = 2.0       # after a half-close, how long to drain the peer's input
_INF = float("inf")


class _Tag:
    """A named completion tag for the server's own operations."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_TICK = _Tag("tick")
_STOP = _Tag("stop")


class Server:
    """An HTTP/1.1 server for one process: one queue, one I/O thread.

    ``listen()`` binds (so the port is known), ``run()`` serves until
    ``stop()`` (thread-safe) or a signal, then drains gracefully.
    """

    def __init__(self, app: App, config: Optional[Config] = None, **options: Any) -> None:
        self.app = app
        self.config = config = config.replace(**options) if config else Config(**options)
        self.q = iocore.Queue(config.backend)
        self.listeners: list[Any] = []
        self._accept_tags: dict[Any, Any] = {}
        self.accepts_pending = 0
        self.conns: set[Connection] = set()
        self.stopping = False
        self.stop_deadline = _INF
        self.now = time.monotonic()
        self.pool = None
        self.parent_pid = 0          # set by a supervisor: exit if the parent dies
        self._signals = 0
        self._ka_timeout = config.timeout_keep_alive
        self._q_send = self.q.send
        self._q_recv = self.q.recv
        # handle_rx may answer on its fast path: handlers inline, no access log
        self._fast = not config.threads and not config.access_log
        set_server_header(config.server_header)
        refresh_date()

    # ------------------------------------------------------------ setup
    def listen(self, host: Optional[str] = None, port: Optional[int] = None,
               reuse_port: bool = False, sock: Optional[socket.socket] = None) -> tuple[str, int]:
        """Bind and listen, or serve ``sock`` (a listening socket shared by
        worker processes); return the bound (host, port)."""
        cfg = self.config
        if sock is not None:
            lst = self.q.adopt_listener(sock)
        else:
            lst = self.q.listen(cfg.host if host is None else host, cfg.port if port is None else port,
                                backlog=cfg.backlog, reuse_port=reuse_port)
        self.listeners.append(lst)
        self._accept_tags[lst] = _Tag("accept")
        return lst.sockname

    @property
    def sockname(self) -> tuple[str, int]:
        return self.listeners[0].sockname

    def stop(self) -> None:
        """Begin a graceful shutdown (thread- and signal-safe)."""
        try:
            self.q.post(_STOP)
        except ValueError:
            pass  # queue already closed

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                os._exit(1)  # second signal: leave at once
            self.stop()
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    # ------------------------------------------------------------ main loop
    def run(self) -> None:
        if not self.listeners:
            self.listen()
        cfg = self.config
        q = self.q
        if cfg.threads:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(cfg.threads, thread_name_prefix="netcore-handler")
        self._arm_accepts()
        q.call_later(1.0, _TICK)
        wait = q.wait
        handle_rx = self.handle_rx
        tx_done = self._tx_done
        try:
            while True:
                for op, tag, status, value in wait():
                    try:
                        if op == RECV:
                            handle_rx(tag, status, value)
                        elif op == SEND:
                            # Inlined handle_tx: a send that completes while the
                            # connection just keeps reading needs no further work.
                            tag.sending -= 1
                            if status or not tag.sending and (tag.close_after or tag.paused
                                                              or self.stopping):
                                tx_done(tag, status)
                        elif op == ACCEPT:
                            self.on_accept(tag, status, value)
                        elif op == POST:
                            self.on_post(tag, value)
                        else:
                            self.on_tick()
                    except Exception:
                        error_log.exception("internal error handling a completion")
                        if type(tag) is Connection:
                            self.close(tag)
                if self.stopping and not self.conns:
                    break
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
            q.close_queue()

    # ------------------------------------------------------------ accept
    def _arm_accepts(self) -> None:
        if self.stopping:
            return
        limit = self.config.limit_concurrency
        for lst in self.listeners:
            tag = self._accept_tags[lst]
            while self.accepts_pending < ACCEPTS_AHEAD * len(self.listeners):
                if limit and len(self.conns) + self.accepts_pending >= limit:
                    return
                self.q.accept(lst, tag)
                self.accepts_pending += 1

    def on_accept(self, tag: Any, status: int, handle: Any) -> None:
        self.accepts_pending -= 1
        if status == 0:
            if self.stopping:
                self.q.close(handle)
                return
            conn = Connection(self.config, handle, self.config.access_log)
            conn.deadline = self.now + self.config.timeout_keep_alive
            self.conns.add(conn)
            self.q.recv(handle, conn)
            conn.rx_armed = True
        elif status != CANCELLED:
            error_log.warning("accept failed: %s", iocore.status_name(status))
        self._arm_accepts()

    # ------------------------------------------------------------ receive
    def handle_rx(self, conn: Connection, status: int, data: Optional[bytes]) -> None:
        """The common case, in one frame: complete heads without a body that
        the head memo knows (or learns now), keep-alive, handlers inline,
        nothing queued or half-read.  They are answered in order, sent, and
        the recv re-armed.  Anything else (a body, an error, a closing or
        partial request, ...) goes to _rx_general, from an identical state.
        """
        if (status or not data or conn.closed or conn.lingering or not self._fast
                or not conn.reading or conn.buf or conn.body_req is not None or conn.held
                or conn.interim or self.stopping):
            self._rx_general(conn, status, data)
            return
        conn.rx_armed = False
        heads = HEAD_CACHE
        config = conn.config
        app = self.app
        out = conn.out
        seq = conn.seq_in
        n = len(data)
        pos = 0
        keep = True
        while pos < n:
            hend = data.find(b"\r\n\r\n", pos)
            if hend < 0:
                break
            e = heads.get(data[pos:hend])
            if e is None or e[0] is not config:
                e = memo_head(data, pos, hend, config)
                if e is None:
                    break
            req = Request(e[1], e[2], e[3], e[4])
            req._split = e[5]
            req.connection = conn
            req.seq = seq
            seq += 1
            pos = hend + 4
            mark = len(out)
            try:
                keep = render(app(req), e[6], e[7], True, out)
            except Exception:
                del out[mark:]
                keep = self._handler_failed(req, out)
            if not keep:
                break
        conn.seq_in = conn.seq_out = seq
        if not keep:
            if type(keep) is Stream:
                self._fast_stream(conn, keep, data[pos:])
                return
            # as _run_inline + close_after_this; the unparsed rest counts as
            # unread input unless it is only the empty lines feed() skips
            rest = data[pos:]
            while rest[:2] == b"\r\n":
                rest = rest[2:]
            conn.close_after_this()
            if rest:
                conn.linger = True
        elif pos < n:
            # the general path takes the rest (it re-arms the recv)
            self._rx_general(conn, 0, data[pos:] if pos else data)
            return
        conn.phase = IDLE
        conn.deadline = self.now + self._ka_timeout
        if out:
            self.flush(conn)
        if conn.reading:
            if conn.sending < MAX_PENDING_SENDS:
                self._q_recv(conn.handle, conn)
                conn.rx_armed = True
            else:
                conn.paused = True
        elif conn.close_after and not conn.sending and not conn.inflight and not conn.out:
            self._finish(conn)

    def _rx_general(self, conn: Connection, status: int, data: Optional[bytes]) -> None:
        conn.rx_armed = False
        if conn.closed:
            return
        if status or not data:
            if status == 0 and (conn.inflight or conn.sending or conn.out) and not conn.lingering:
                # The peer half-closed after sending its requests: answer, then close.
                conn.reading = False
                conn.close_after = True
                conn.linger = False
                return
            self.close(conn)
            return
        if conn.lingering:  # draining after our half-close: discard
            self._arm_rx(conn)
            return
        reqs = conn.feed(data)
        if reqs:
            if self.pool is None:
                self._run_inline(conn, reqs)
            else:
                self._submit(conn, reqs)
        if conn.body_req is None and not conn.buf:
            conn.phase = IDLE
            conn.deadline = self.now + self._ka_timeout
        else:
            self._set_read_phase(conn)
        if conn.out:
            self.flush(conn)
        if conn.reading:
            if (conn.sending < MAX_PENDING_SENDS and conn.inflight < MAX_INFLIGHT
                    and conn.stream is None):
                self._q_recv(conn.handle, conn)
                conn.rx_armed = True
            else:
                conn.paused = True
        elif conn.close_after and not conn.sending and not conn.inflight and not conn.out:
            self._finish(conn)

    def _set_read_phase(self, conn: Connection) -> None:
        # Deadlines are set when a phase begins, not on every read: a client
        # trickling bytes does not push its deadline back.
        if conn.body_req is not None:
            if conn.phase != BODY:
                conn.phase = BODY
                conn.deadline = self.now + self.config.timeout_body_read
        elif conn.phase != HEAD:
            conn.phase = HEAD
            conn.deadline = self.now + self.config.timeout_header_read

    def _run_inline(self, conn: Connection, reqs: list[Request]) -> None:
        app = self.app
        stopping = self.stopping
        timing = conn.timing
        if conn.held or conn.interim or conn.seq_out != reqs[0].seq:
            # Out-of-order machinery needed (an error or 100 Continue is queued).
            for req in reqs:
                parts: list[bytes] = []
                keep = self._call(app, req, parts, stopping)
                conn.add_output(req.seq, parts, keep)
                if conn.close_after:
                    break
            return
        out = conn.out
        for i, req in enumerate(reqs):
            mark = len(out)
            try:
                keep = render(app(req), req.method == "HEAD", req.http_version == "1.1",
                              req.keep_alive and not stopping, out)
            except Exception:
                del out[mark:]
                keep = self._handler_failed(req, out)
            if timing:
                self._log_access(req, out, mark)
            if not keep:
                if type(keep) is Stream:
                    # seq_out stays on the stream: the rest wait behind it
                    conn.add_output(req.seq, [], keep)
                    for later in reqs[i + 1:]:
                        parts: list[bytes] = []
                        conn.add_output(later.seq, parts, self._call(app, later, parts, stopping))
                    return
                conn.seq_out += 1
                conn.close_after_this()
                return
            conn.seq_out += 1
        if conn.held or conn.interim:
            conn.drain()

    def _call(self, app: App, req: Request, parts: list, stopping: bool) -> bool:
        """Run one handler and serialise its result onto ``parts``."""
        try:
            result = app(req)
            # read `stopping` after the handler: a shutdown may have begun meanwhile
            keep = render(result, req.method == "HEAD", req.http_version == "1.1",
                          req.keep_alive and not (stopping or self.stopping), parts)
        except Exception:
            del parts[:]
            keep = self._handler_failed(req, parts)
        if req.connection is not None and req.connection.timing:
            self._log_access(req, parts, 0)
        return keep

    def _handler_failed(self, req: Request, out: list) -> bool:
        error_log.exception("handler failed for %s %s", req.method, req.target.decode("latin-1"))
        out.append(error_bytes(500, "Internal Server Error"))
        return False

    def _log_access(self, req: Request, out: list, mark: int) -> None:
        if not out[mark:]:
            return
        head = out[mark]
        try:
            status = head[9:12].decode("ascii")
        except Exception:  # pragma: no cover
            status = "-"
        size = sum(len(p) for p in out[mark + 1:])
        client = req.client
        host = client[0] if client else "-"
        elapsed = time.perf_counter() - getattr(req, "start", time.perf_counter())
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        access_log.info('%s - - [%s] "%s %s HTTP/%s" %s %d %.6f', host, stamp, req.method,
                        req.target.decode("latin-1"), req.http_version, status, size, elapsed)

    # ------------------------------------------------------------ thread pool
    def _submit(self, conn: Connection, reqs: list[Request]) -> None:
        assert self.pool is not None
        for req in reqs:
            conn.inflight += 1
            self.pool.submit(self._run_threaded, conn, req)

    def _run_threaded(self, conn: Connection, req: Request) -> None:
        parts: list[bytes] = []
        keep = self._call(self.app, req, parts, self.stopping)
        try:
            self.q.post(conn, (req.seq, parts, keep))
        except ValueError:
            pass  # the server has shut down

    def on_post(self, tag: Any, value: Any) -> None:
        if tag is _STOP:
            self.begin_shutdown()
            return
        conn: Connection = tag
        conn.inflight -= 1
        seq, parts, keep = value
        if seq < 0:
            self._pulled(conn, keep, parts)
            return
        if conn.closed:
            if type(keep) is Stream:
                keep.close()
            return
        conn.add_output(seq, parts, keep)
        if conn.out:
            self.flush(conn)
        self._after_output(conn)

    # ------------------------------------------------------------ streaming bodies
    def _fast_stream(self, conn: Connection, stream: Stream, rest: bytes) -> None:
        """handle_rx met a streaming body: hand over to the general path."""
        # The fast loop advanced seq_out past the stream; the Connection
        # takes it as the current response instead (its head is on ``out``).
        conn.seq_out -= 1
        conn.add_output(conn.seq_out, [], stream)
        conn.phase = IDLE
        conn.deadline = self.now + self._ka_timeout
        if rest:
            self._rx_general(conn, 0, rest)  # the pipelined rest: answered, held
        elif conn.out:
            self.flush(conn)

    def _pull(self, conn: Connection) -> None:
        """Everything sent: fetch the next window of the current stream."""
        stream = conn.stream
        if self.pool is not None:
            # the iterator may block: pull on the pool, as handlers run there
            stream.busy = True
            conn.inflight += 1
            self.pool.submit(self._pull_threaded, conn, stream)
            return
        try:
            pieces = stream.pull()
        except Exception as exc:
            self._stream_failed(conn, exc)
            return
        self._stream_out(conn, stream, pieces)

    def _pull_threaded(self, conn: Connection, stream: Stream) -> None:
        try:
            result: Any = stream.pull()
        except Exception as exc:
            result = exc
        try:
            self.q.post(conn, (-1, result, stream))
        except ValueError:  # the server has shut down
            stream.busy = False
            stream.close()

    def _pulled(self, conn: Connection, stream: Stream, result: Any) -> None:
        """A pool thread's pull came back (on_post)."""
        stream.busy = False
        if conn.closed or stream.cancelled:
            stream.close()
        elif isinstance(result, Exception):
            self._stream_failed(conn, result)
        else:
            self._stream_out(conn, stream, result)

    def _stream_out(self, conn: Connection, stream: Stream, pieces: list) -> None:
        conn.out.extend(pieces)
        if stream.done:
            conn.end_stream()  # releases what waited behind it
            # the peer's clock starts now (a partial next request keeps its phase)
            conn.deadline = self.now + (self._ka_timeout if conn.phase == IDLE else
                                        self.config.timeout_header_read if conn.phase == HEAD else
                                        self.config.timeout_body_read)
        if conn.out:
            self.flush(conn)
        self._after_output(conn)

    def _stream_failed(self, conn: Connection, exc: Exception) -> None:
        # The head is out: no error response is possible, and closing is
        # how the client learns the body is incomplete.
        if isinstance(exc, BodyLengthError):
            error_log.error("%s; closing the connection", exc)
        else:
            error_log.error("response body iterator failed midway; closing the connection",
                            exc_info=exc)
        self.close(conn)

    # ------------------------------------------------------------ send
    def flush(self, conn: Connection) -> None:
        out = conn.out
        conn.out = []
        if len(out) == 1:
            data = out[0]
        elif len(out) > 4 or len(out[-1]) < 65536:
            data = b"".join(out)
        else:
            data = out
        conn.sending += 1
        self._q_send(conn.handle, conn, data)

    def handle_tx(self, conn: Connection, status: int, nbytes: Any) -> None:
        conn.sending -= 1
        self._tx_done(conn, status)

    def _tx_done(self, conn: Connection, status: int) -> None:
        if conn.closed:
            return
        if status:
            self.close(conn)
            return
        if not conn.sending:
            self._after_output(conn)

    def _after_output(self, conn: Connection) -> None:
        if conn.sending or conn.out:
            return
        if conn.stream is not None:
            if not conn.stream.busy:
                self._pull(conn)
            return
        if conn.close_after:
            if not conn.inflight:
                self._finish(conn)
            return
        if self.stopping and conn.idle:
            self.close(conn)
            return
        if conn.paused and conn.inflight < MAX_INFLIGHT:
            conn.paused = False
            if conn.reading:  # (a stream pauses even a connection that reads no more)
                self._arm_rx(conn)

    def _arm_rx(self, conn: Connection) -> None:
        if not conn.rx_armed and not conn.closed:
            self.q.recv(conn.handle, conn)
            conn.rx_armed = True

    # ------------------------------------------------------------ closing
    def _finish(self, conn: Connection) -> None:
        """All output sent on a connection we are ending."""
        if conn.lingering or conn.closed:
            return
        if not conn.linger:
            self.close(conn)
            return
        # Unread input may follow: closing now could turn into a reset that
        # destroys the response in flight.  Half-close, drain, then close.
        conn.lingering = True
        conn.deadline = self.now + LINGER_SECONDS
        try:
            fd = conn.handle.fileno()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
            try:
                s.shutdown(socket.SHUT_WR)
            finally:
                s.detach()
        except (OSError, ValueError):
            self.close(conn)
            return
        self._arm_rx(conn)

    def close(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        try:
            self.q.close(conn.handle)
        except ValueError:
            pass
        if conn.stream is not None or conn.held:
            conn.abort_streams()  # a client gone midway: stop pulling, close() the iterables
        self.conns.discard(conn)
        self._arm_accepts()

    # ------------------------------------------------------------ time
    def on_tick(self) -> None:
        refresh_date()
        now = self.now = time.monotonic()
        if self.parent_pid and os.getppid() != self.parent_pid:
            self.begin_shutdown()
        force = self.stopping and now >= self.stop_deadline
        for conn in list(self.conns):
            if force:
                self.close(conn)
            elif conn.deadline <= now and not conn.inflight and not conn.sending:
                self._expire(conn)
        if not self.q.closed:
            self.q.call_later(1.0, _TICK)

    def _expire(self, conn: Connection) -> None:
        if conn.lingering or conn.close_after or conn.phase == IDLE:
            self.close(conn)
            return
        status = 408
        conn.fail(status, "request timeout")
        conn.deadline = _INF
        if conn.out:
            self.flush(conn)

    # ------------------------------------------------------------ shutdown
    def begin_shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.config.timeout_graceful_shutdown
        for lst in self.listeners:
            try:
                self.q.close(lst)
            except ValueError:
                pass
        for conn in list(self.conns):
            if conn.idle:
                self.close(conn)


def run_server(app: App, config: Config, reuse_port: bool = False,
               install_signals: bool = True, parent_pid: int = 0,
               on_listening: Optional[Callable[[tuple[str, int]], None]] = None,
               sock: Optional[socket.socket] = None) -> None:
    """Run one server process to completion (until a signal or stop()).

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
    host, port = server.sockname
    if on_listening is not None:
        on_listening((host, port))
    error_log.info("serving on http://%s:%d (pid %d, backend %s%s)", host, port, os.getpid(),
                   server.q.backend, f", {config.threads} handler threads" if config.threads else "")
    server.run()
    error_log.info("stopped (pid %d)", os.getpid())

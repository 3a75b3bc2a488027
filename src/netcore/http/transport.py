"""The queue loop: iocore completions in, HTTP connections driven.

One thread owns the queue (the I/O thread).  Each q.wait() returns a batch
of completions, dispatched to the two points of the seed design and a few
housekeeping ones:

- RECV     -> handle_rx: the bytes go to the dispatcher's fast path, or
              through the connection's Protocol, whose events go to the
              dispatcher; then the output is sent and the recv re-armed.
- SEND     -> handle_tx: output done: finish, close, resume reading, or
              tell the dispatcher the connection has drained.
- SHUTDOWN -> our half-close is done (lingering goes on reading).
- ACCEPT   -> a new Connection, its first recv armed.
- POST     -> ``tag(value)``: a call handed over by another thread.
- TIMER    -> the tick: Date refresh and the timeout sweep.

Timeouts are plain floats, no timer per request (see on_tick): a
connection's ``deadline`` is when it must next be looked at, computed from
the batch clock ``now``; the look re-checks against what really happened
(``tx_at``: the last send completion, or the start of a send after none
was pending; ``rx_at``: the last body bytes) and either acts or moves the
deadline on.  So a deadline may be early, never a timeout.

Output written outside handle_rx (from a posted result, a drain callback,
an asyncio task) marks its connection dirty; dirty connections are flushed
once per batch, so a pipeline's answers still leave in one gathered send.

The transport knows nothing of how applications run: a dispatcher
(netcore.frontends) turns protocol events into application calls and
writes responses back through Connection.write().
"""
from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from time import monotonic
from typing import Any, Callable, Optional

from .. import iocore
from .limits import Config
from .protocol import BODY, IDLE, Protocol
from .response import FileRange, HeadCache

error_log = logging.getLogger("netcore.error")

RECV, SEND, ACCEPT, POST, TIMER = iocore.RECV, iocore.SEND, iocore.ACCEPT, iocore.POST, iocore.TIMER
SENDFILE = iocore.SENDFILE
CANCELLED = iocore.CANCELLED

ACCEPTS_AHEAD = 8          # accept operations kept pending per listener
MAX_PENDING_SENDS = 8      # stop reading a connection with this many sends unfinished
MAX_INFLIGHT = 64          # stop reading a connection with this many requests unanswered
LINGER_SECONDS = 2.0       # after a half-close, how long to drain the peer's input
TICK_SECONDS = 0.1       # timeouts fire at most this late
_INF = float("inf")


def protocol_class(parser: str) -> type:
    """The Protocol for a request parser name (limits.PARSERS)."""
    if parser == "httptools":
        try:
            from .llhttp import LLHTTPProtocol
        except ImportError as exc:
            raise ValueError(f"--http httptools needs the httptools package ({exc})") from None
        return LLHTTPProtocol
    return Protocol


def _acked_bytes(handle: Any) -> Optional[int]:
    """tcpi_bytes_acked of a TCP connection (Linux), or None."""
    try:
        s = socket.socket(fileno=handle.fileno())
    except (OSError, ValueError):
        return None
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 256)
    except OSError:
        return None
    finally:
        s.detach()
    if len(info) < _BYTES_ACKED + 8:
        return None
    return int.from_bytes(info[_BYTES_ACKED:_BYTES_ACKED + 8], sys.byteorder)


# struct tcp_info (linux/tcp.h): 8 bytes of u8 fields, 24 u32 fields, then
# the u64 fields pacing_rate, max_pacing_rate, bytes_acked (Linux >= 4.1)
_TCP_INFO = getattr(socket, "TCP_INFO", -1)
_BYTES_ACKED = 8 + 24 * 4 + 2 * 8


class _Tag:
    """A named completion tag for the transport's own operations."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_TICK = _Tag("tick")


def _nothing(_value: Any = None) -> None:
    """A post that only wakes a waiting thread."""


class _FileSend:
    """The tag of a SENDFILE: the connection and the region it sends."""

    __slots__ = ("conn", "range")

    def __init__(self, conn: "Connection", part: FileRange) -> None:
        self.conn = conn
        self.range = part


class Connection:
    """One client connection: its Protocol plus the I/O state around it."""

    __slots__ = ("transport", "handle", "proto", "rx_armed", "app_paused", "sending", "closed",
                 "deadline", "lingering", "dirty", "want_drain", "_client", "state", "files",
                 "tx_at", "rx_at", "body_start", "paused_at", "acked", "acked_at")

    def __init__(self, transport: "Transport", handle: Any) -> None:
        self.transport = transport
        self.handle = handle
        self.proto = transport.protocol(transport.config, transport.heads, transport.timing, self)
        self.rx_armed = False
        self.app_paused = False      # the dispatcher asked us to stop reading
        self.sending = 0             # q.send operations not yet completed
        self.closed = False
        self.deadline = 0.0
        self.tx_at = transport.now   # last send progress (or the start of a send after none)
        self.rx_at = 0.0             # last body bytes (body phase only)
        self.body_start = 0.0        # when the body phase began (moved on by pauses)
        self.paused_at = 0.0
        self.acked = 0               # the kernel's count of bytes the peer acknowledged ...
        self.acked_at = 0.0          # ... when last looked at (see Transport._write_check)
        self.lingering = False       # half-closed by us, draining the peer's input
        self.dirty = False           # output waits for the batch-end flush
        self.want_drain = False      # call dispatcher.on_drain once everything is sent
        self._client: Optional[tuple[str, int]] = None
        self.state: Any = None       # the dispatcher's per-connection state
        self.files = 0               # FileRange parts written, not yet handed to the kernel

    @property
    def client(self) -> Optional[tuple[str, int]]:
        """(host, port) of the peer, or None once it is no longer known."""
        c = self._client
        if c is None and not self.closed:
            try:
                c = self._client = self.handle.peername
            except (OSError, ValueError):
                return None
        return c

    # --------------------------------------------- the dispatcher's side (I/O thread)
    def write(self, seq: int, parts: list, end: bool = True, keep_alive: bool = True) -> None:
        """Queue bytes of the response to request ``seq`` (see Protocol.write)."""
        if self.closed:
            return
        self.proto.write(seq, parts, end, keep_alive)
        if not self.dirty:
            self.dirty = True
            self.transport.dirty.append(self)

    def write_answers(self, seq: int, answers: list) -> None:
        """Queue complete keep-alive answers to ``seq`` and the requests
        after it, one bytes object each (see Protocol.write_answers)."""
        if self.closed:
            return
        self.proto.write_answers(seq, answers)
        self._queued()

    def _queued(self) -> None:
        if not self.dirty:
            self.dirty = True
            self.transport.dirty.append(self)

    def fail(self, seq: int, status: int, reason: str) -> None:
        """Answer ``seq`` with an error status and close after it."""
        if self.closed:
            return
        self.proto.fail_response(seq, status, reason)
        self._queued()

    def pause_reading(self) -> None:
        if not self.app_paused:
            self.app_paused = True
            self.paused_at = monotonic()   # (may run between batches: the batch clock is stale)

    def resume_reading(self) -> None:
        if self.app_paused:
            self.app_paused = False
            if not self.closed:
                # the body's clocks stood still while the application held reading
                if self.proto.phase == BODY:
                    self.transport.body_resumed(self, monotonic() - self.paused_at)
                self.transport.arm_rx(self)

    def notify_drain(self) -> None:
        """Call dispatcher.on_drain(conn) once all output so far is sent."""
        if self.sending or self.proto.out or self.dirty:
            self.want_drain = True
        else:
            self.transport.dispatcher.on_drain(self)

    @property
    def buffered(self) -> bool:
        """Output is still on its way to the socket."""
        return bool(self.sending or self.proto.out or self.dirty)

    def cut(self, seq: int) -> None:
        """Answer ``seq`` ends here, incomplete: send what was written, then
        close (the client sees the answer cut short)."""
        self.write(seq, [], True, False)

    def abort(self) -> None:
        """Close now, discarding unsent output."""
        self.transport.close(self)


class ThreadedConnection(Connection):
    """A Connection of a transport with several I/O threads: its output is
    flushed at the end of the batch of the thread that holds it (the core
    gives a connection's completions to one thread at a time)."""

    __slots__ = ()

    def write(self, seq: int, parts: list, end: bool = True, keep_alive: bool = True) -> None:
        if self.closed:
            return
        self.proto.write(seq, parts, end, keep_alive)
        if not self.dirty:
            self.dirty = True
            self.transport._local.dirty.append(self)

    def fail(self, seq: int, status: int, reason: str) -> None:
        if self.closed:
            return
        self.proto.fail_response(seq, status, reason)
        self._queued()

    def _queued(self) -> None:
        if not self.dirty:
            self.dirty = True
            self.transport._local.dirty.append(self)


class Transport:
    """The I/O loop of one server process: one queue, one I/O thread, or
    io_threads threads waiting on it together (native and WSGI)."""

    def __init__(self, config: Config, dispatcher: Any) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.q = iocore.Queue(config.backend)
        self.heads = HeadCache(config.server_header)
        self.protocol = protocol_class(config.http)
        self.timing = config.access_log
        self.listeners: list[Any] = []
        self._accept_tags: dict[Any, Any] = {}
        self.accepts_pending = 0
        self.conns: set[Connection] = set()
        self.dirty: list[Connection] = []
        self.io_threads = config.io_threads
        self.connection_class = Connection if self.io_threads == 1 else ThreadedConnection
        self._lock = threading.Lock()        # accept bookkeeping and conns, across I/O threads
        self._local = threading.local()      # each I/O thread's dirty list
        self.stopping = False
        self.stop_deadline = _INF
        self.now = time.monotonic()  # read once per batch: deadlines cost a float add
        self.next_expiry = _INF      # no deadline is earlier than this
        self.parent_pid = 0          # set by a supervisor: stop if the parent dies
        self._signals = 0
        self._started = False
        self._ka_timeout = config.timeout_keep_alive
        self._write_timeout = config.timeout_write or _INF   # 0: never
        self._write_probe = self._write_timeout / 4
        self.files_sent = 0          # file regions handed to q.sendfile
        self.requests_closed = 0     # requests parsed on connections since closed
        self.max_requests = 0        # recycle after this many (limit_max_requests + jitter)
        if config.limit_max_requests:
            self.max_requests = config.limit_max_requests + random.randint(
                0, config.limit_max_requests_jitter)
        self._q_send = self.q.send
        self._q_recv = self.q.recv

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

    def post_to(self, conn: Connection, fn: Callable[[Any], Any], value: Any = None) -> None:
        """Run ``fn(value)`` on the I/O thread for ``conn`` (thread-safe): with
        several I/O threads, only while no other thread handles ``conn``."""
        if self.io_threads == 1:
            self.post(fn, value)
            return
        try:
            self.q.post(fn, value, handle=conn.handle)
        except ValueError:   # the connection (or the queue) is closed: fn sees it
            self.post(fn, value)

    def post(self, fn: Callable[[Any], Any], value: Any = None) -> None:
        """Run ``fn(value)`` on the I/O thread (thread-safe); dropped once the
        queue is closed."""
        try:
            self.q.post(fn, value)
        except ValueError:
            pass  # the queue is closed: the server has stopped

    def stop(self) -> None:
        """Begin a graceful shutdown (thread- and signal-safe)."""
        self.post(self._on_stop)

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                os._exit(1)  # second signal: leave at once
            self.stop()
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    # ------------------------------------------------------------ the loop
    def start(self) -> None:
        """Arm the accepts and the tick; the dispatcher starts first."""
        if not self.listeners:
            self.listen()
        self._started = True
        self.dispatcher.start(self)
        self._arm_accepts()
        self.q.call_later(TICK_SECONDS, _TICK)

    @property
    def finished(self) -> bool:
        # (accepts still pending complete, cancelled or with a connection to serve)
        return self.stopping and not self.conns and not self.accepts_pending

    def run(self, on_started: Optional[Callable[[], None]] = None) -> None:
        """Serve until stop() (or a signal) and the graceful drain.
        ``on_started`` is called once the application is up (ASGI lifespan
        startup done) and connections are being accepted."""
        threads: list = []
        try:
            self.start()
            if on_started is not None:
                on_started()
            if self.io_threads > 1:
                threads = [threading.Thread(target=self._io_thread, name=f"netcore-io-{i}",
                                            daemon=True) for i in range(1, self.io_threads)]
                for t in threads:
                    t.start()
                self._io_thread()
            else:
                self.dispatcher.run(self)
        finally:
            for _ in threads:
                self.post(_nothing)    # each wait returns and sees the end
            for t in threads:
                t.join(10)
            self.close_all()

    def _io_thread(self) -> None:
        """One of several I/O threads: batches until the server has finished."""
        dirty = self._local.dirty = []
        try:
            while not self.finished:
                self.run_once(None, dirty)
            self.post(_nothing)    # the next thread waiting sees it too
        finally:
            self.q.leave()

    def run_once(self, timeout: Optional[float], dirty: Optional[list] = None) -> None:
        """Wait up to ``timeout`` for one batch of completions and handle it;
        ``dirty`` is the calling I/O thread's list (default: the only one)."""
        if dirty is None:
            dirty = self.dirty
        if dirty:
            # written between batches (asyncio tasks): the batch clock is stale
            self.now = monotonic()
            self.flush_dirty(dirty)
        events = self.q.wait(timeout)
        self.now = monotonic()
        self.dispatch(events)
        if dirty:
            self.flush_dirty(dirty)

    def dispatch(self, events: list) -> None:
        """Hand one batch of completions to their handlers, in order.

        A dispatcher may put an equivalent in its place on the instance
        (netcore._http's C lane does: it answers the plain reads and send
        completions itself and calls this for every other completion)."""
        handle_rx = self.handle_rx
        handle_tx = self.handle_tx
        for op, tag, status, value in events:
            try:
                if op == RECV:
                    handle_rx(tag, status, value)
                elif op == SEND:
                    handle_tx(tag, status, value)
                elif op == POST:
                    tag(value)
                elif op == SENDFILE:
                    self.handle_file(tag, status, value)
                elif op == ACCEPT:
                    self.on_accept(tag, status, value)
                elif op == TIMER:
                    self.on_tick()
                elif status and isinstance(tag, Connection):  # SHUTDOWN failed: give up
                    self.close(tag)
            except Exception:
                self.internal_error(tag)

    def internal_error(self, tag: Any, exc: Optional[BaseException] = None) -> None:
        """Handling a completion raised (``exc``, or the one being handled):
        log it and close its connection."""
        error_log.error("internal error handling a completion",
                        exc_info=exc if exc is not None else True)
        if isinstance(tag, Connection):
            self.close(tag)

    def close_all(self) -> None:
        try:
            self.dispatcher.stop()
        finally:
            self.q.close_queue()

    # ------------------------------------------------------------ accept
    def _arm_accepts(self) -> None:
        if self.stopping or not self._started:
            return
        limit = self.config.limit_concurrency
        with self._lock:
            for lst in self.listeners:
                tag = self._accept_tags[lst]
                while self.accepts_pending < ACCEPTS_AHEAD * len(self.listeners):
                    if limit and len(self.conns) + self.accepts_pending >= limit:
                        return
                    self.q.accept(lst, tag)
                    self.accepts_pending += 1

    def on_accept(self, tag: Any, status: int, handle: Any) -> None:
        if status == 0:
            # (also while stopping: it was accepted before the listener
            # closed, from a backlog other workers may share, and its client
            # waits for an answer; it gets one, with a close)
            conn = self.connection_class(self, handle)
            self.set_deadline(conn, self._ka_timeout)
            # One step: with several I/O threads, another's _arm_accepts
            # between the two would see the accept neither pending nor a
            # connection, and arm one above limit_concurrency.
            with self._lock:
                self.accepts_pending -= 1
                self.conns.add(conn)
            self._q_recv(handle, conn)
            conn.rx_armed = True
        else:
            with self._lock:
                self.accepts_pending -= 1
            if status != CANCELLED:
                error_log.warning("accept failed: %s", iocore.status_name(status))
        self._arm_accepts()

    # ------------------------------------------------------------ receive
    def handle_rx(self, conn: Connection, status: int, data: Optional[bytes]) -> None:
        """A receive completed: feed it to the dispatcher (fast path) or the
        protocol, send what that produced, and read on."""
        conn.rx_armed = False
        if conn.closed:
            return
        if status or not data:
            self._rx_ended(conn, status)
            return
        if conn.lingering:  # draining after our half-close: discard
            self.arm_rx(conn)
            return
        proto = conn.proto
        fast = self.dispatcher.fast_rx
        phase = proto.phase
        if fast is None or not fast(conn, data):
            events = proto.receive(data)
            if events:
                self.dispatcher.on_events(conn, events)
        self.after_rx(conn, phase)

    def after_rx(self, conn: Connection, phase: int) -> None:
        """The end of handle_rx, once a read has been consumed (``phase``:
        the protocol's before it): deadlines, send what it produced, read on."""
        proto = conn.proto
        if proto.phase == IDLE:
            # keep-alive: the idle clock restarts with every request
            deadline = conn.deadline = self.now + self._ka_timeout
            if deadline < self.next_expiry:
                self.next_expiry = deadline
        elif proto.phase != phase:
            self._phase_began(conn)
        elif phase == BODY:
            conn.rx_at = self.now
        if conn.closed:
            return
        if proto.out:
            # Every request of the read answered, reading goes on: the
            # completion of this send would only count it (handle_tx), so
            # one that goes out at once need not be reported (the C lane
            # decides alike; test_lane_state compares the two).
            self.flush(conn, quiet=(proto.reading and proto.seq_in == proto.seq_out
                                    and not proto.close_after and not conn.app_paused
                                    and not conn.want_drain and not self.stopping))
        if proto.reading:
            if (conn.sending < MAX_PENDING_SENDS and proto.seq_in - proto.seq_out < MAX_INFLIGHT
                    and not conn.app_paused and not conn.closed):
                self._q_recv(conn.handle, conn)
                conn.rx_armed = True
        elif proto.close_after and not conn.sending and not proto.out:
            self._maybe_finish(conn)

    def _rx_ended(self, conn: Connection, status: int) -> None:
        """EOF, or a receive error."""
        proto = conn.proto
        if status == 0 and not conn.lingering and (proto.pending or conn.buffered):
            # The peer half-closed after sending its requests: answer, then close.
            events = proto.receive_eof()
            if events:
                self.dispatcher.on_events(conn, events)
            proto.peer_done()
            self.dispatcher.on_eof(conn)
            if not conn.closed:
                self._maybe_finish(conn)
            return
        self.close(conn)

    def _phase_began(self, conn: Connection) -> None:
        # Deadlines are set when a phase begins, not on every read: a client
        # trickling head bytes does not push its deadline back.  A body's
        # reads are stamped (rx_at), and its deadline re-checked when due.
        phase = conn.proto.phase
        if phase == BODY:
            conn.body_start = conn.rx_at = self.now
            self._set_due(conn, self._body_due(conn))
        else:
            self.set_deadline(conn, self._ka_timeout if phase == IDLE else
                              self.config.timeout_header_read)

    def _body_due(self, conn: Connection) -> float:
        """When the body being read is too slow: no bytes for
        timeout_body_read, or (after the grace period) an average below
        min_body_rate since its head, if nothing more arrives."""
        cfg = self.config
        due = conn.rx_at + cfg.timeout_body_read
        rate = cfg.min_body_rate
        if rate > 0:
            by_rate = conn.body_start + max(cfg.min_body_rate_grace, conn.proto.body_received / rate)
            if by_rate < due:
                due = by_rate
        return due

    def body_resumed(self, conn: Connection, paused: float) -> None:
        """The application let reading go on after ``paused`` seconds: the
        body's clocks move on by as much."""
        conn.body_start += paused
        conn.rx_at += paused
        self._set_due(conn, self._body_due(conn))

    def _set_due(self, conn: Connection, deadline: float) -> None:
        conn.deadline = deadline
        if deadline < self.next_expiry:
            self.next_expiry = deadline

    def set_deadline(self, conn: Connection, seconds: float) -> None:
        deadline = conn.deadline = self.now + seconds
        if deadline < self.next_expiry:
            self.next_expiry = deadline

    def arm_rx(self, conn: Connection) -> None:
        """Re-arm the receive if reading is wanted and nothing holds it back."""
        if conn.rx_armed or conn.closed:
            return
        proto = conn.proto
        if not conn.lingering:
            if (not proto.reading or conn.app_paused or conn.sending >= MAX_PENDING_SENDS
                    or proto.seq_in - proto.seq_out >= MAX_INFLIGHT):
                return
        self._q_recv(conn.handle, conn)
        conn.rx_armed = True

    # ------------------------------------------------------------ send
    def flush(self, conn: Connection, quiet: bool = False) -> None:
        """Send the protocol's output; ``quiet``: the send's completion
        would do nothing but count it, so ask for none if it goes out at once."""
        out = conn.proto.take_output()
        if conn.files:
            self._flush_files(conn, out)
            return
        if len(out) == 1:
            data = out[0]
        elif len(out) > 4 or len(out[-1]) < 65536:
            data = b"".join(out)
        else:
            data = out
        quiet = quiet and not conn.sending
        self._sending(conn)
        if self._q_send(conn.handle, conn, data, quiet):
            conn.sending -= 1    # out already: what handle_tx would have done (tx_at is now)

    def _sending(self, conn: Connection) -> None:
        """One more send or sendfile on ``conn``."""
        if not conn.sending:
            # output is pending from now on: the write timeout runs
            now = conn.tx_at = self.now
            if now + self._write_probe < self.next_expiry:
                self.next_expiry = now + self._write_probe
        conn.sending += 1

    def _flush_files(self, conn: Connection, out: list) -> None:
        """Output with file regions in it: bytes go out with q.send, each
        region with q.sendfile, in order (the core keeps one send queue)."""
        run: list = []
        for part in out:
            if type(part) is not FileRange:
                run.append(part)
                continue
            if run:
                self._sending(conn)
                self._q_send(conn.handle, conn, b"".join(run))
                run = []
            conn.files -= 1
            self._sending(conn)
            self.files_sent += 1
            self.q.sendfile(conn.handle, _FileSend(conn, part), part.file, part.offset, part.count)
        if run:
            self._sending(conn)
            self._q_send(conn.handle, conn, b"".join(run))

    def handle_file(self, tag: "_FileSend", status: int, nbytes: Any) -> None:
        """A file region went out (or failed: a file shorter than its count
        is -EIO, the connection then closes like after any send error)."""
        tag.range.done()
        self.handle_tx(tag.conn, status, nbytes)

    def flush_dirty(self, dirty: list) -> None:
        """Send what was written to the connections of ``dirty`` (emptied;
        connections written to meanwhile are flushed too)."""
        i = 0
        while i < len(dirty):
            conn = dirty[i]
            i += 1
            conn.dirty = False
            if conn.closed:
                continue
            if conn.proto.out:
                self.flush(conn)
            self._after_output(conn)
        dirty.clear()

    def handle_tx(self, conn: Connection, status: int, nbytes: Any) -> None:
        """A send completed.  The common case, a send done while the
        connection just keeps reading, needs no further work."""
        conn.sending -= 1
        conn.tx_at = self.now       # progress: the write timeout and the idle clock restart
        if status:
            if not conn.closed:
                self.close(conn)
        elif not conn.sending and (conn.proto.close_after or conn.app_paused or conn.want_drain
                                   or self.stopping or not conn.rx_armed) and not conn.closed:
            self._after_output(conn)

    def _after_output(self, conn: Connection) -> None:
        """Output may have been sent or released: act on what that allows."""
        if conn.closed or conn.sending or conn.proto.out:
            return
        proto = conn.proto
        if conn.want_drain and not conn.dirty:
            conn.want_drain = False
            self.dispatcher.on_drain(conn)
            if conn.closed or conn.sending or proto.out or conn.dirty:
                return
        if proto.close_after:
            self._maybe_finish(conn)
            return
        if proto.pending == 0 and proto.phase == IDLE:
            if self.stopping and proto.idle:
                self.close(conn)
                return
            self.set_deadline(conn, self._ka_timeout)
        self.arm_rx(conn)

    # ------------------------------------------------------------ closing
    def _maybe_finish(self, conn: Connection) -> None:
        """Close (or linger) once the last response is out."""
        proto = conn.proto
        if conn.sending or proto.out or conn.dirty or conn.closed or conn.lingering:
            return
        if not proto.last_queued and proto.pending:
            return  # the peer half-closed: answers are still being made
        if not proto.linger:
            self.close(conn)
            return
        # Unread input may follow: closing now could turn into a reset that
        # destroys the response in flight.  Half-close, drain, then close.
        conn.lingering = True
        self.set_deadline(conn, LINGER_SECONDS)
        try:
            self.q.shutdown(conn.handle, conn)
        except (OSError, ValueError):
            self.close(conn)
            return
        self.arm_rx(conn)

    def close(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.requests_closed += conn.proto.seq_in
        try:
            self.q.close(conn.handle)
        except ValueError:
            pass
        with self._lock:
            self.conns.discard(conn)
        if conn.files:
            conn.proto.drop_files()
        try:
            self.dispatcher.on_close(conn)
        finally:
            self._arm_accepts()

    # ------------------------------------------------------------ time
    def on_tick(self) -> None:
        """Every TICK_SECONDS: refresh the Date, expire what is due.

        Deadlines are plain floats on the connections (no timer per request);
        ``next_expiry`` is a lower bound of them and of the write timeouts,
        so most ticks skip the sweep.
        """
        now = self.now = monotonic()
        if int(time.time()) != self.heads.second:
            self.heads.refresh()
        if self.parent_pid and os.getppid() != self.parent_pid:
            self.begin_shutdown()
        if self.max_requests and not self.stopping and self.served() >= self.max_requests:
            error_log.info("served %d requests (limit-max-requests): stopping to be replaced",
                           self.served())
            self.begin_shutdown()
        if self.io_threads > 1:
            self._tick_threaded(now)
        elif self.stopping and now >= self.stop_deadline:
            for conn in list(self.conns):
                self.close(conn)
        elif now >= self.next_expiry:
            earliest = _INF
            for conn in list(self.conns):
                if conn.deadline <= now:
                    self._expire(conn)
                if conn.closed:
                    continue
                if conn.sending:
                    look = self._write_check(conn, now)
                    if look < earliest:
                        earliest = look
                    if conn.closed:
                        continue
                if conn.deadline < earliest:
                    earliest = conn.deadline
            self.next_expiry = earliest
        if not self.q.closed:
            self.q.call_later(TICK_SECONDS, _TICK)

    def _tick_threaded(self, now: float) -> None:
        """The tick's sweep with several I/O threads: a connection another
        thread may be handling is only looked at (a float), and what must
        be done to it is handed to whichever thread may touch it."""
        with self._lock:
            conns = list(self.conns)
        force = self.stopping and now >= self.stop_deadline
        for conn in conns:
            if force:
                self.post_to(conn, self._close_posted, conn)
            elif conn.deadline <= now or conn.sending:
                self.post_to(conn, self._check_posted, conn)

    def _check_posted(self, conn: Connection) -> None:
        if conn.closed:
            return
        now = self.now
        if conn.deadline <= now:
            self._expire(conn)
        if not conn.closed and conn.sending:
            self._write_check(conn, now)

    def _close_posted(self, conn: Connection) -> None:
        self.close(conn)

    def _close_if_idle(self, conn: Connection) -> None:
        if not conn.closed and conn.proto.idle and not conn.buffered and conn.proto.seq_in:
            self.close(conn)

    def _write_check(self, conn: Connection, now: float) -> float:
        """The write timeout of a connection with a send pending: close it
        if the client has taken nothing for timeout_write seconds; return
        when to look again.

        A send completes once the kernel holds all of its bytes, and the
        kernel asks for more only when a good part of its (autotuned,
        megabytes) buffer is free: a client reading slowly but steadily
        can go many seconds without a completion.  So from a quarter of
        the timeout on, the kernel's count of acknowledged bytes is also
        progress (where the platform tells it).
        """
        quiet = now - conn.tx_at
        if quiet < self._write_probe:
            return conn.tx_at + self._write_probe
        acked = _acked_bytes(conn.handle)
        if acked is not None and conn.acked_at >= conn.tx_at and acked != conn.acked:
            conn.tx_at = now              # the client took bytes since the last look
        elif quiet >= self._write_timeout:
            self.close(conn)              # it has taken nothing for too long
            return _INF
        if acked is not None:
            conn.acked = acked
            conn.acked_at = now
        return min(conn.tx_at + self._write_timeout, now + self._write_probe)

    def served(self) -> int:
        """Requests parsed so far by this process."""
        return self.requests_closed + sum(conn.proto.seq_in for conn in self.conns)

    def _expire(self, conn: Connection) -> None:
        proto = conn.proto
        now = self.now
        if conn.lingering:
            self.close(conn)
        elif proto.phase == IDLE:
            if proto.pending or conn.buffered:
                # not idle: the application is still answering, or its answer
                # is still being sent (the write timeout watches that); look
                # again later, when the idle clock will have restarted
                conn.deadline = now + self._ka_timeout
            else:
                # idle since the last request or the end of the last answer
                idle_until = conn.tx_at + self._ka_timeout
                if now >= idle_until:
                    self.close(conn)
                else:
                    conn.deadline = idle_until
        elif proto.reading:
            reason = "request timeout"
            if proto.phase == BODY:
                if conn.app_paused:
                    conn.deadline = _INF      # the application holds reading (body_resumed re-arms)
                    return
                due = self._body_due(conn)
                if now < due:
                    conn.deadline = due
                    return
                reason = "request body too slow"
            events = proto.timed_out(reason)
            conn.deadline = _INF
            if events:
                self.dispatcher.on_events(conn, events)
            if proto.out:
                self.flush(conn)
            self._after_output(conn)

    # ------------------------------------------------------------ shutdown
    def _on_stop(self, _value: Any = None) -> None:
        self.begin_shutdown()

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
        self.dispatcher.on_stopping()
        if self.io_threads > 1:
            with self._lock:
                conns = list(self.conns)
            for conn in conns:
                self.post_to(conn, self._close_if_idle, conn)
            return
        for conn in list(self.conns):
            # idle between requests: closed; one that has not sent its first
            # request yet (just accepted; it is likely on its way) keeps its
            # keep-alive time to send it, and gets its answer with a close
            if conn.proto.idle and not conn.buffered and conn.proto.seq_in:
                self.close(conn)

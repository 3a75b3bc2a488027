"""Per-connection HTTP/1.1 state: bytes in, requests out, responses ordered.

This module knows nothing about sockets, queues or how a handler runs.  The
server feeds it received bytes and gets complete Requests back; whoever
runs the handlers (inline on the I/O thread, a thread pool, later WSGI and
ASGI front ends) hands serialised responses back with add_output() in any
order, and the connection releases them in request order through ``out``.

Reading stops for good after a request that ends the connection
(``Connection: close``, HTTP/1.0 without keep-alive) and after a protocol
error, whose error response is queued behind the responses to the requests
that preceded it: a client never sees one request answered as two, nor the
answers of a pipeline out of order.

A response whose body streams (a falsy ``Stream`` in place of the
keep-alive flag) is released head first and stays the current response
until the server calls end_stream(): ``seq_out`` does not move past it, so
the responses after it are held like any early completion.
"""
from __future__ import annotations

from time import perf_counter
from typing import Any, Optional

from .parser import ChunkedReader, HTTPError, check_incomplete_head, parse_head
from .request import Request
from .response import CONTINUE, Stream, error_bytes

# Connection phases, for timeouts: what are we waiting for from the peer?
IDLE = 0      # between requests (keep-alive timeout)
HEAD = 1      # part of a request head has arrived (header-read timeout)
BODY = 2      # a head has arrived, its body has not (body-read timeout)


class Connection:
    __slots__ = (
        # protocol state (used by feed/add_output)
        "config", "buf", "reading", "body_req", "body_parts", "body_need", "reader",
        "seq_in", "seq_out", "held", "interim", "out", "close_after", "last_queued", "linger", "phase",
        "timing", "stream",
        # I/O bookkeeping owned by the server
        "handle", "_client", "closed", "rx_armed", "paused", "sending", "inflight",
        "deadline", "lingering",
    )

    def __init__(self, config: Any, handle: Any = None, timing: bool = False) -> None:
        self.config = config
        self.buf = b""               # unparsed bytes (an incomplete head or chunk line)
        self.reading = True          # False once no further request will be parsed
        self.body_req: Optional[Request] = None   # request whose body is arriving
        self.body_parts: list[bytes] = []
        self.body_need = 0           # Content-Length bytes still to come
        self.reader: Optional[ChunkedReader] = None
        self.seq_in = 0              # sequence number of the next parsed request
        self.seq_out = 0             # sequence number of the next response to release
        self.held: dict[int, tuple[list, bool]] = {}   # early responses, by seq
        self.interim: dict[int, bytes] = {}            # 100 Continue waiting its turn
        self.out: list[bytes] = []   # released bytes not yet handed to the socket
        self.close_after = False     # close once ``out`` is sent
        # A response that ends the connection is queued: later ones are
        # dropped.  (close_after alone may also mean "the peer half-closed:
        # answer what is in flight, then close".)
        self.last_queued = False
        self.linger = False          # unread input may remain: half-close, then drain
        self.phase = IDLE
        self.timing = timing         # stamp Request.start (for the access log)
        self.stream: Any = None      # the released response whose body is still streaming
        self.handle = handle
        self._client: Optional[tuple[str, int]] = None
        self.closed = False
        self.rx_armed = False
        self.paused = False
        self.sending = 0
        self.inflight = 0
        self.deadline = 0.0
        self.lingering = False

    @property
    def client(self) -> Optional[tuple[str, int]]:
        c = self._client
        if c is None and self.handle is not None:
            try:
                c = self._client = self.handle.peername
            except (OSError, ValueError):
                return None
        return c

    # ---------------------------------------------------------- input side
    def feed(self, data: bytes) -> list[Request]:
        """Consume received bytes; return the requests they completed.

        A protocol error queues its error response (ordered after the
        returned requests' responses) and stops reading.
        """
        reqs: list[Request] = []
        if not self.reading:
            return reqs
        scan = 0
        if self.buf:
            scan = len(self.buf) - 3
            data = self.buf + data
            self.buf = b""
        pos = 0
        n = len(data)
        config = self.config
        try:
            if self.body_req is not None:
                pos, done = self._feed_body(data, 0)
                if done is None:
                    if pos < n:
                        self.buf = data[pos:]
                    return reqs
                done.seq = self.seq_in
                self.seq_in += 1
                reqs.append(done)
                if not done.keep_alive:
                    return self._stop_reading(reqs, pos < n)
                scan = pos
            while pos < n:
                if data.startswith(b"\r\n", pos):  # tolerated empty line before a request
                    pos += 2
                    continue
                hend = data.find(b"\r\n\r\n", scan if scan > pos else pos)
                if hend < 0:
                    check_incomplete_head(data, pos, config)
                    self.buf = data[pos:]
                    break
                req, framing = parse_head(data, pos, hend, config)
                pos = hend + 4
                req.connection = self
                if self.timing:
                    req.start = perf_counter()
                if framing is not None:
                    length, chunked, expect = framing
                    if not chunked:
                        end = pos + length
                        if end <= n:
                            req.body = data[pos:end]
                            pos = end
                        else:
                            self.body_req = req
                            self.body_parts = [data[pos:]] if pos < n else []
                            self.body_need = end - n
                            if expect and pos == n:
                                self._add_interim(self.seq_in, CONTINUE)
                            return reqs
                    else:
                        reader = ChunkedReader(config)
                        pos = reader.feed(data, pos)
                        if not reader.done:
                            self.body_req = req
                            self.reader = reader
                            if pos < n:
                                self.buf = data[pos:]
                            elif expect and not reader.parts and reader.state == reader.SIZE:
                                self._add_interim(self.seq_in, CONTINUE)
                            return reqs
                        req.body = reader.body()
                # sequence numbers are given on completion, so a request that
                # dies half-read leaves no gap before the error response
                req.seq = self.seq_in
                self.seq_in += 1
                reqs.append(req)
                if not req.keep_alive:
                    return self._stop_reading(reqs, pos < n)
        except HTTPError as exc:
            self.fail(exc.status, exc.reason)
        return reqs

    def _feed_body(self, data: bytes, pos: int) -> tuple[int, Optional[Request]]:
        """Continue the body of ``body_req``; return (position, request if complete)."""
        req = self.body_req
        assert req is not None
        reader = self.reader
        if reader is None:
            need = self.body_need
            n = len(data) - pos
            if n < need:
                self.body_parts.append(data[pos:] if pos else data)
                self.body_need = need - n
                return len(data), None
            self.body_parts.append(data[pos:pos + need])
            req.body = b"".join(self.body_parts)
            pos += need
        else:
            pos = reader.feed(data, pos)
            if not reader.done:
                return pos, None
            req.body = reader.body()
            self.reader = None
        self.body_parts = []
        self.body_req = None
        return pos, req

    def _stop_reading(self, reqs: list[Request], unread: bool) -> list[Request]:
        self.reading = False
        self.buf = b""
        if unread:
            self.linger = True
        return reqs

    def fail(self, status: int, reason: str) -> None:
        """Answer a protocol error after the pending responses, then close."""
        self.reading = False
        self.buf = b""
        self.body_req = None
        self.reader = None
        self.body_parts = []
        self.linger = True
        seq = self.seq_in
        self.seq_in += 1
        self.add_output(seq, [error_bytes(status, reason)], False)

    @property
    def idle(self) -> bool:
        """Nothing in progress: no partial request, handler or unsent output."""
        return (self.seq_out == self.seq_in and not self.buf and self.body_req is None
                and not self.out and not self.sending and not self.inflight)

    def update_phase(self) -> int:
        if self.body_req is not None:
            self.phase = BODY
        elif self.buf:
            self.phase = HEAD
        else:
            self.phase = IDLE
        return self.phase

    # --------------------------------------------------------- output side
    def add_output(self, seq: int, parts: list[bytes], keep_alive: Any) -> None:
        """Hand in the serialised response to request ``seq`` (any order)."""
        if seq != self.seq_out:
            self.held[seq] = (parts, keep_alive)
            return
        self._release(parts, keep_alive)
        if self.held or self.interim:
            self.drain()

    def _release(self, parts: list[bytes], keep_alive: Any) -> None:
        if self.last_queued:
            self.seq_out += 1
            if type(keep_alive) is Stream:
                keep_alive.close()  # a stream nobody will read
            return  # an earlier response closed the connection
        self.out.extend(parts)
        if keep_alive:
            self.seq_out += 1
        elif type(keep_alive) is not Stream:
            self.seq_out += 1
            self.close_after_this()
        else:
            # A streaming body: seq_out stays on it until end_stream().
            # Reading pauses meanwhile (requests behind a stream would only
            # pile up held responses), and ``paused`` also routes the send
            # completions to the server, which pulls the next window then.
            self.stream = keep_alive
            self.paused = True

    def end_stream(self) -> None:
        """The current stream has sent its last bytes: move on."""
        stream = self.stream
        self.stream = None
        self.seq_out += 1
        if not stream.keep_alive:
            self.close_after_this()
        if self.held or self.interim:
            self.drain()

    def abort_streams(self) -> None:
        """The connection is gone: close every body iterable it still holds."""
        stream = self.stream
        self.stream = None
        if stream is not None:
            stream.close()
        for _parts, keep_alive in self.held.values():
            if type(keep_alive) is Stream:
                keep_alive.close()
        self.held.clear()

    def close_after_this(self) -> None:
        """The response just queued is the last: stop reading, and linger
        (drain before closing) if the client sent more than we answered."""
        self.close_after = True
        self.last_queued = True
        self.reading = False
        self.body_req = None
        if self.buf or self.seq_in > self.seq_out:
            self.linger = True
        self.buf = b""

    def drain(self) -> None:
        """Release held responses (and 100 Continue) that are now in order."""
        while self.stream is None:
            seq = self.seq_out
            if seq in self.interim:
                cont = self.interim.pop(seq)
                if not self.close_after:
                    self.out.append(cont)
            if seq in self.held:
                parts, keep_alive = self.held.pop(seq)
                self._release(parts, keep_alive)
            else:
                return

    def _add_interim(self, seq: int, data: bytes) -> None:
        if seq == self.seq_out:
            self.out.append(data)
        else:
            self.interim[seq] = data

"""HTTP/1.1 for one server connection, sans I/O (RFC 9112).

Bytes go in through receive(); events come out: a ``Request`` when its head
has been parsed, then ``(request, data)`` tuples for pieces of its body and
``(request, None)`` at its end, or ``(request, ABORTED)`` when the body can
never complete (malformed framing, the peer went away).  A request whose
whole body came with its head is emitted alone, with ``body`` filled in and
``body_pending`` false.  Nothing here knows about sockets, queues, threads
or how an application runs.

Every request gets a sequence number when its head is parsed.  Responses
are handed back with write(seq, parts, end, keep_alive) in any order and
from any producer; they are released to ``out`` strictly in request order,
so a client never sees a pipeline answered out of order or one request
answered twice.  A protocol error gets its own response, ordered after the
answers to the requests before it, and ends reading for good.

Why parse ahead of the answers: pipelined heads in one read are all
available at once, and answering them from one pass is what makes
pipelining cheap; ordering on output keeps that safe.
"""
from __future__ import annotations

from time import perf_counter
from typing import Any, Optional

from .parser import ChunkedReader, HTTPError, check_incomplete_head, parse_head
from .request import Request
from .response import CONTINUE, HeadCache

# What the peer is doing, for timeouts.
IDLE = 0      # between requests (keep-alive timeout)
HEAD = 1      # part of a request head has arrived (header-read timeout)
BODY = 2      # a head has arrived, its body has not (body-read timeout)

ABORTED = object()   # body event: this request's body will never complete

_EMPTY: list = []


class _Held:
    """Output for a response that is not the current one yet."""

    __slots__ = ("parts", "ended", "keep_alive", "interim")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ended = False
        self.keep_alive = True
        self.interim: Optional[bytes] = None


class Protocol:
    """State of one HTTP/1.1 server connection: input parsing, output order."""

    __slots__ = (
        "config", "heads", "timing", "peer",
        # input side
        "buf", "reading", "phase", "body_req", "body_left", "body_length", "reader",
        "seq_in",
        # output side
        "seq_out", "started", "out", "held", "aborted", "close_after", "last_queued", "linger",
    )

    def __init__(self, config: Any, heads: HeadCache, timing: bool = False, peer: Any = None) -> None:
        self.config = config
        self.heads = heads            # per-server response heads (error responses)
        self.timing = timing          # stamp Request.start (access log)
        self.peer = peer              # whatever the transport wants requests to reach (client address)
        self.buf = b""                # unparsed bytes: an incomplete head or chunk line
        self.reading = True           # False once no further request will be parsed
        self.phase = IDLE
        self.body_req: Optional[Request] = None   # the request whose body is arriving
        self.body_left = 0            # Content-Length bytes still to come
        self.body_length = 0          # ... of this many
        self.reader: Optional[ChunkedReader] = None
        self.seq_in = 0               # sequence number of the next request parsed
        self.seq_out = 0              # sequence number of the response being released
        self.started = False          # bytes of response seq_out are already out
        self.out: list[bytes] = []    # released bytes, for the transport to send
        self.held: dict[int, _Held] = {}
        self.aborted: set[int] = set()  # responses replaced by an error: writes ignored
        self.close_after = False      # close the connection once ``out`` is sent
        # A response that ends the connection was released: later ones are
        # dropped.  (close_after alone may also mean "the peer half-closed:
        # answer what is in flight, then close".)
        self.last_queued = False
        self.linger = False           # unread input may remain: half-close, then drain

    # ------------------------------------------------------------ queries
    @property
    def pending(self) -> int:
        """Requests parsed and not yet fully answered."""
        return self.seq_in - self.seq_out

    @property
    def idle(self) -> bool:
        """Nothing in progress: no partial request, no unanswered one, no output."""
        return self.seq_out == self.seq_in and not self.buf and self.body_req is None and not self.out

    @property
    def body_received(self) -> int:
        """Bytes of the body being read that have arrived (chunk data only)."""
        reader = self.reader
        if reader is not None:
            return reader.size - reader.remaining
        return self.body_length - self.body_left if self.body_req is not None else 0

    @property
    def fast_ready(self) -> bool:
        """In the plain keep-alive state a fast path may take over from:
        reading, nothing buffered, nothing unanswered or held."""
        return (self.reading and not self.buf and self.body_req is None
                and self.seq_out == self.seq_in and not self.held and not self.close_after)

    # ------------------------------------------------------------ input
    def receive(self, data: bytes) -> list:
        """Consume received bytes; return the events they complete."""
        events: list = []
        if not self.reading:
            return events
        scan = 0
        if self.buf:
            scan = len(self.buf) - 3      # the CRLFCRLF may straddle the old bytes
            data = self.buf + data
            self.buf = b""
        pos = 0
        n = len(data)
        config = self.config
        try:
            if self.body_req is not None:
                pos = self._feed_body(data, 0, events)
                if self.body_req is not None:
                    return events
                if not self.reading:
                    return events
                scan = pos
            while pos < n:
                if data.startswith(b"\r\n", pos):  # tolerated empty line before a request
                    pos += 2
                    continue
                hend = data.find(b"\r\n\r\n", scan if scan > pos else pos)
                if hend < 0:
                    check_incomplete_head(data, pos, config, scan)
                    self.buf = data[pos:]
                    self.phase = HEAD
                    return events
                req, framing = parse_head(data, pos, hend, config)
                pos = hend + 4
                req.seq = self.seq_in
                self.seq_in += 1
                req._peer = self.peer
                if self.timing:
                    req.start = perf_counter()
                events.append(req)
                if framing is not None:
                    pos = self._start_body(req, framing, data, pos, events)
                    if self.body_req is not None:
                        return events
                if not req.keep_alive:
                    self._stop_reading(pos < n)
                    return events
            self.phase = IDLE
        except HTTPError as exc:
            self._input_failed(exc, events)
        return events

    def receive_eof(self) -> list:
        """The peer will send nothing more.  Returns (request, ABORTED) for a
        body cut short; a partial head is simply dropped."""
        events: list = []
        self.buf = b""
        req = self.body_req
        if req is not None:
            self.body_req = None
            self.reader = None
            events.append((req, ABORTED))
            self.abandon(req.seq)
        self.reading = False
        self.phase = IDLE
        return events

    def _start_body(self, req: Request, framing: tuple, data: bytes, pos: int, events: list) -> int:
        length, chunked, expect = framing
        n = len(data)
        if not chunked:
            end = pos + length
            if end <= n:  # the whole body is here: one event
                req.body = data[pos:end]
                return end
            req.body_pending = True
            self.body_req = req
            self.body_left = end - n
            self.body_length = length
            self.phase = BODY
            if pos < n:
                events.append((req, data[pos:]))
            elif expect:
                self.interim(req.seq, CONTINUE)
            return n
        reader = ChunkedReader(self.config)
        # Registered before feeding, so that a framing error is this request's.
        req.body_pending = True
        self.body_req = req
        pos = reader.feed(data, pos)
        if reader.done:
            req.body_pending = False
            self.body_req = None
            req.body = reader.body()
            return pos
        self.reader = reader
        self.phase = BODY
        if reader.parts:
            events.append((req, b"".join(reader.parts)))
            reader.parts = []
        elif expect and reader.state == reader.SIZE and pos == n:
            self.interim(req.seq, CONTINUE)
        if pos < n:
            self.buf = data[pos:]
        return n

    def _feed_body(self, data: bytes, pos: int, events: list) -> int:
        """Continue the body of ``body_req``; return the new position."""
        req = self.body_req
        reader = self.reader
        if reader is None:
            need = self.body_left
            avail = len(data) - pos
            if avail < need:
                events.append((req, data[pos:] if pos else data))
                self.body_left = need - avail
                return len(data)
            events.append((req, data[pos:pos + need]))
            pos += need
        else:
            pos = reader.feed(data, pos)
            if reader.parts:
                events.append((req, b"".join(reader.parts)))
                reader.parts = []
            if not reader.done:
                if pos < len(data):
                    self.buf = data[pos:]
                return len(data)
            self.reader = None
        self.body_req = None
        self.phase = IDLE
        events.append((req, None))
        if not req.keep_alive:
            self._stop_reading(pos < len(data))
        return pos

    def _stop_reading(self, unread: bool) -> None:
        self.reading = False
        self.buf = b""
        self.phase = IDLE
        if unread:
            self.linger = True

    def _input_failed(self, exc: HTTPError, events: list) -> None:
        """A protocol error: answer it in order, then read no more."""
        req = self.body_req
        self.reading = False
        self.buf = b""
        self.body_req = None
        self.reader = None
        self.phase = IDLE
        self.linger = True
        if req is not None:
            # The request was already handed out: it learns its body failed,
            # and the error takes its place in the answers if it has none yet.
            events.append((req, ABORTED))
            self.fail_response(req.seq, exc.status, exc.reason)
        else:
            seq = self.seq_in
            self.seq_in += 1
            self.write(seq, [self.heads.error(exc.status, exc.reason)], True, False)

    # ------------------------------------------------------------ output
    def write(self, seq: int, parts: list, end: bool = True, keep_alive: bool = True) -> None:
        """Bytes of the response to request ``seq``; ``end`` marks its last
        part, ``keep_alive`` (with end) whether the connection stays open."""
        if self.last_queued:
            return   # an earlier response closed the connection: nothing more goes out
        if seq == self.seq_out:
            if parts:
                self.out.extend(parts)
                self.started = True
            if end:
                self._finished(keep_alive)
            return
        if seq < self.seq_out or seq in self.aborted:
            return   # already answered (by an error) or dropped after a closing response
        h = self.held.get(seq)
        if h is None:
            h = self.held[seq] = _Held()
        h.parts.extend(parts)
        if end:
            h.ended = True
            h.keep_alive = keep_alive

    def write_answers(self, seq: int, answers: list) -> None:
        """Complete keep-alive answers to requests ``seq``, ``seq`` + 1, ...,
        one bytes object each: what a write() per answer would do."""
        if (seq == self.seq_out and not self.started and not self.held and not self.aborted
                and not self.last_queued):
            self.out.extend(answers)     # none waits: they are released in one step
            self.seq_out += len(answers)
            return
        for answer in answers:
            self.write(seq, [answer])
            seq += 1

    def interim(self, seq: int, data: bytes) -> None:
        """An informational response (100 Continue) ahead of ``seq``'s answer."""
        if self.last_queued:
            return
        if seq == self.seq_out:
            if not self.started and not self.close_after:
                self.out.append(data)
        elif seq > self.seq_out:
            h = self.held.get(seq)
            if h is None:
                h = self.held[seq] = _Held()
            if not h.parts:
                h.interim = data

    def held_bytes(self, seq: int) -> int:
        """Bytes written for ``seq`` that wait for earlier responses."""
        h = self.held.get(seq)
        return sum(map(len, h.parts)) if h is not None else 0

    def fail_response(self, seq: int, status: int, reason: str) -> None:
        """Answer ``seq`` with an error and close, in place of whatever its
        producer would have written; if its answer has already begun, cut it
        short and close."""
        self.linger = True
        self._replace(seq, self.heads.error(status, reason))

    def abandon(self, seq: int) -> None:
        """``seq`` will never be answered (its client went away mid-request):
        whatever it wrote so far is the last output of the connection."""
        self._replace(seq, None)

    def _replace(self, seq: int, answer: Optional[bytes]) -> None:
        if seq < self.seq_out or seq in self.aborted:
            return
        if seq == self.seq_out:
            self.write(seq, [answer] if answer is not None and not self.started else [], True, False)
            return
        self.held.pop(seq, None)
        self.write(seq, [answer] if answer is not None else [], True, False)
        self.aborted.add(seq)     # its producer's later writes are ignored

    def _finished(self, keep_alive: bool) -> None:
        """Response seq_out is complete: move on, releasing what waited."""
        while True:
            self.aborted.discard(self.seq_out)
            self.seq_out += 1
            self.started = False
            if not keep_alive:
                self._close_after_this()
            if not self.held:
                return
            h = self.held.pop(self.seq_out, None)
            if h is None:
                return
            if self.last_queued:
                continue  # dropped: an earlier response closed the connection
            if h.interim is not None and not h.parts:
                self.out.append(h.interim)
            if h.parts:
                self.out.extend(h.parts)
                self.started = True
            if not h.ended:
                return
            keep_alive = h.keep_alive

    def _close_after_this(self) -> None:
        """The response just released is the last: stop reading, and linger
        (drain before closing) if the client sent more than we answered."""
        if not self.last_queued:
            self.last_queued = True
            self.close_after = True
            if self.buf or self.body_req is not None or self.seq_in > self.seq_out:
                self.linger = True
            self.reading = False
            self.buf = b""
            self.body_req = None
            self.reader = None
            self.phase = IDLE
        # every later response is dropped
        self.held.clear()

    def timed_out(self, reason: str = "request timeout") -> list:
        """The peer took too long with a head or a body: answer 408."""
        events: list = []
        self._input_failed(HTTPError(408, reason), events)
        return events

    def peer_done(self) -> None:
        """The peer half-closed after its requests: answer them, then close."""
        self.reading = False
        self.close_after = True
        self.linger = False

    def answered_inline(self, count: int, parts: list) -> None:
        """A fast path parsed and fully answered ``count`` keep-alive requests
        itself, from the fast_ready state; ``parts`` are their answers."""
        self.seq_in += count
        self.seq_out += count
        self.out.extend(parts)

    def accept_inline(self) -> int:
        """A fast path parsed one more request head itself; its sequence number."""
        seq = self.seq_in
        self.seq_in += 1
        return seq

    def drop_files(self) -> None:
        """The connection is gone: file parts never sent are done with."""
        for parts in [self.out, *(h.parts for h in self.held.values())]:
            for part in parts:
                done = getattr(part, "done", None)
                if done is not None:
                    done()

    def take_output(self) -> list:
        out = self.out
        if out:
            self.out = []
        return out

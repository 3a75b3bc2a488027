"""The request parser on llhttp (Node.js's parser, through httptools): ``--http httptools``.

LLHTTPProtocol is the Protocol with another input side: llhttp tokenizes
the stream and decides where each message and each chunk ends; the
meaning of what it found is netcore's (parser.py: the request line's
rules, Host, Content-Length, Transfer-Encoding, Connection, Expect, the
limits), so both parsers answer with the same statuses and refuse the
same smuggling shapes.  Output ordering is the Protocol's own.

Where llhttp is more lenient than netcore the gap is closed here (header
values lose trailing whitespace, HTTP/2.0 request lines are 505s, the
limits are counted from what llhttp reports, a body after an Upgrade head
is read).  Where it is stricter nothing can be done here; README lists
those differences (unknown methods, whitespace before ';' in a chunk
line, ...).

Positions: httptools reports tokens, not offsets, so the limits are
counted from the tokens: the request line as method + target + 10 bytes
(exact: llhttp admits single spaces only), the header section as name +
value + 4 bytes per field (exact for "Name: value" fields; extra spaces
around a value are not counted).  A head still arriving is bounded by the
bytes fed since its first byte.
"""
from __future__ import annotations

from time import perf_counter
from typing import Any, Optional

import httptools

from .parser import (
    HTTPError, _Block, _HEADER, _REQUEST_LINE, check_incomplete_head, check_request_line,
    decide_framing)
from .protocol import BODY, HEAD, IDLE, Protocol
from .request import Request
from .response import CONTINUE


class _Stop(Exception):
    """Raised from a callback to make llhttp stop where it is."""


class LLHTTPProtocol(Protocol):
    """A Protocol whose requests llhttp tokenizes (see the module docstring)."""

    __slots__ = ("_parser", "_events", "_url", "_fields", "_field_bytes", "_trailers",
                 "_trailer_bytes", "_head_fed", "_req", "_framing", "_parts", "_inline",
                 "_got", "_error", "_after_close", "_upgraded_req", "_line", "_line_len",
                 "_at_boundary", "_head_exact")

    fast_ready = False        # the native fast path parses with netcore's parser: not here

    def __init__(self, config: Any, heads: Any, timing: bool = False, peer: Any = None) -> None:
        super().__init__(config, heads, timing, peer)
        self._parser = httptools.HttpRequestParser(self)
        self._events: list = []
        self._url = b""
        self._fields: list = []
        self._field_bytes = 0
        self._trailers = 0
        self._trailer_bytes = 0
        self._head_fed = 0            # bytes fed since the head being parsed began
        self._req: Optional[Request] = None   # the request whose head or body is being parsed
        self._framing: Optional[tuple] = None
        self._parts: list = []        # its body bytes from this read
        self._inline = False          # its head came in this read: a complete body joins it
        self._got = 0                 # its body bytes so far
        self._error: Optional[HTTPError] = None
        self._after_close = False     # a request that ends the connection was parsed
        self._upgraded_req: Optional[tuple] = None   # (request, framing) of an Upgrade head
        # The raw request line of a message that began where a read began
        # (the only place httptools lets us see where a message starts):
        # checked with netcore's rules, which see what tokens hide (extra
        # spaces, bare LFs, a version that is only a prefix of one).
        self._line: Optional[bytes] = None
        self._line_len = -1
        self._at_boundary = False     # this read began between messages
        self._head_exact = False      # the head being parsed began at a read's start

    # ------------------------------------------------------------ queries
    @property
    def idle(self) -> bool:
        return self.phase == IDLE and Protocol.idle.fget(self)  # type: ignore[attr-defined]

    @property
    def body_received(self) -> int:
        if self.body_req is not None and self.reader is None and self._req is self.body_req:
            return self._got
        return Protocol.body_received.fget(self)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ input
    def receive(self, data: bytes) -> list:
        events: list = []
        if not self.reading:
            return events
        self._events = events
        try:
            if self.reader is not None or (self.body_req is not None and self._req is None):
                # the body after an Upgrade head: netcore's own body reader
                pos = self._feed_body(data, 0, events)
                if self.body_req is not None or not self.reading:
                    return events
                data = data[pos:]
            self._feed(data)
        except HTTPError as exc:
            self._input_failed(exc, events)
            return events
        req = self._req
        if req is not None and self.reading:
            if self._framing is not None and self.body_req is req:
                if self._parts:
                    events.append((req, b"".join(self._parts)))
                    self._parts = []
                elif self._inline and self._framing[2] and not self._got:
                    self.interim(req.seq, CONTINUE)
                self._inline = False
        return events

    def _feed(self, data: bytes) -> None:
        if self.phase == IDLE:
            self._at_boundary = True
            self._line = b""
            self._line_len = -1
            self._head_fed = 0
        if self._line is not None:
            self._check_line(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as up:
            self._upgrade(data, up.args[0])
        except httptools.HttpParserError as exc:
            error, self._error = self._error, None
            if isinstance(error, _Stop) or (self._after_close and error is None):
                self.linger = True    # bytes after a request that closes: unread input
                return
            if error is not None:
                raise error from None
            raise self._line_verdict() or _status_of(exc) from None
        self._at_boundary = False
        if self.phase == HEAD:
            # A head still arriving: the tokens are bounded by the limits as
            # they come, but a field in progress is not reported until the
            # next one begins.  A head that began with a read is measured
            # exactly, as netcore does; one that began inside a read is
            # bounded, overcounting by at most that read's earlier part.
            self._head_fed += len(data)
            cfg = self.config
            if self._head_exact and self._line_len >= 0:
                if self._head_fed - self._line_len - 2 > cfg.max_header_bytes:
                    raise HTTPError(431, "request header section too large")
            elif self._head_fed > cfg.max_request_line + cfg.max_header_bytes + _READ_SLACK:
                if not self._fields:
                    raise HTTPError(414, "request line too long")
                raise HTTPError(431, "request header section too large")

    def _check_line(self, data: bytes) -> None:
        """netcore's rules on the raw request line, as its bytes come."""
        line = self._line + data
        if not self._line:
            skipped = len(line)
            while line[:2] == b"\r\n":      # empty lines before a request
                line = line[2:]
            self._head_fed = len(line) - skipped   # the head starts after them
        eol = line.find(b"\r\n")
        if eol < 0:
            check_incomplete_head(line, 0, self.config)  # 414, or 400 for what can never be a line
            self._line = line
            return
        if eol > self.config.max_request_line:
            raise HTTPError(414, "request line too long")
        check_incomplete_head(line[:eol + 2], 0, self.config)   # the whole line's verdict
        self._line = None
        self._line_len = eol
    def _upgrade(self, data: bytes, offset: int) -> None:
        """llhttp stopped after a head with Upgrade (netcore does not
        upgrade): read its body with netcore's reader, then go on."""
        req, framing = self._upgraded_req
        self._upgraded_req = None
        rest = data[offset:]
        if framing is not None:
            # as if the head had just been parsed by netcore
            self._req = None
            self.body_req = None
            self.phase = IDLE
            req.body_pending = False
            pos = self._start_body(req, framing, rest, 0, self._events)
            if self.body_req is not None:
                return
            if not req.keep_alive:
                self._stop_reading(pos < len(rest))
                return
            rest = rest[pos:]
        if rest and self.reading:
            self._feed(rest)

    def _line_verdict(self) -> Optional[HTTPError]:
        """When llhttp fails in a head's fields: netcore's verdict on its
        request line, if that is already known and wrong (netcore judges
        the line first: a 505 or 501 before a field's 400)."""
        if self._req is not None or not self._fields or self.phase != HEAD:
            return None     # (a field was reported: the line was complete)
        version = self._parser.get_http_version()
        if version == "0.0":
            return None     # the version was not reached
        major, _, minor = version.partition(".")
        try:
            check_request_line(self._parser.get_method(), self._url, major.encode(), minor.encode())
        except HTTPError as exc:
            return exc
        return None

    # ------------------------------------------------------------ llhttp's callbacks
    def _fail(self, exc: Exception) -> None:
        """Stop llhttp with ``exc`` (re-raised once feed_data returns)."""
        self._error = exc
        raise exc

    def on_message_begin(self) -> None:
        if self._after_close:
            self._fail(_Stop())
        self.phase = HEAD
        self._head_exact = self._at_boundary
        if not self._at_boundary:
            self._line = None
            self._line_len = -1
            self._head_fed = 0
        self._at_boundary = False
        self._url = b""
        self._fields = []
        self._field_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        method = self._parser.get_method()
        if len(method) + len(self._url) + 10 > self.config.max_request_line:
            self._fail(HTTPError(414, "request line too long"))

    def on_header(self, name: bytes, value: bytes) -> None:
        if value[-1:] in b" \t":
            value = value.rstrip(b" \t")   # llhttp keeps trailing whitespace; RFC 9112 5.1 drops it
        if self._req is not None:   # a trailer field: checked and counted, then dropped
            self._trailers += 1
            self._trailer_bytes += len(name) + len(value) + 4
            if (self._trailers > self.config.max_header_count
                    or self._trailer_bytes > self.config.max_header_bytes):
                self._fail(HTTPError(431, "trailer section too large"))
            if _HEADER.fullmatch(name + b": " + value) is None:
                self._fail(HTTPError(400, "malformed trailer field"))
            return
        self._fields.append((name.lower(), value))
        self._field_bytes += len(name) + len(value) + 4
        if len(self._fields) > self.config.max_header_count:
            self._fail(HTTPError(431, "too many header fields"))
        if self._field_bytes > self.config.max_header_bytes:
            self._fail(HTTPError(431, "request header section too large"))
        if _HEADER.fullmatch(name + b":" + value) is None:
            self._fail(HTTPError(400, "malformed header field"))

    def on_headers_complete(self) -> None:
        parser = self._parser
        try:
            method = parser.get_method()
            major, _, minor = parser.get_http_version().partition(".")
            line = method + b" " + self._url + b" HTTP/" + major.encode() + b"." + minor.encode()
            if _REQUEST_LINE.fullmatch(line) is None:
                raise HTTPError(505 if len(major) > 1 or len(minor) > 1 else 400,
                                "malformed request line")
            mstr, target, http11 = check_request_line(method, self._url, major.encode(), minor.encode())
            keep_alive, framing = decide_framing(http11, _Block.from_fields(self._fields), self.config)
        except HTTPError as exc:
            self._fail(exc)
        req = Request(mstr, target, "1.1" if http11 else "1.0", tuple(self._fields), keep_alive)
        req.seq = self.seq_in
        self.seq_in += 1
        req._peer = self.peer
        if self.timing:
            req.start = perf_counter()
        self._events.append(req)
        self._head_fed = 0
        self._trailers = self._trailer_bytes = 0
        self._got = 0
        self._parts = []
        self._framing = framing
        if parser.should_upgrade():
            self._upgraded_req = (req, framing)
        self._req = req
        if framing is not None:
            req.body_pending = True
            self.body_req = req
            self._inline = True
            self.phase = BODY

    def on_body(self, body: bytes) -> None:
        self._got += len(body)
        if self._got > self.config.max_body_bytes:
            self._fail(HTTPError(413, "request body too large"))
        self._parts.append(body)

    def on_message_complete(self) -> None:
        req = self._req
        if req is None:
            return
        if self._upgraded_req is not None and self._framing is not None:
            return     # llhttp skipped the body of an Upgrade head: _upgrade reads it
        self._req = None
        self.phase = IDLE
        if self._framing is not None:
            self.body_req = None
            if self._inline:      # head and whole body in one read: one event
                req.body = b"".join(self._parts)
                req.body_pending = False
            else:
                if self._parts:
                    self._events.append((req, b"".join(self._parts)))
                self._events.append((req, None))
            self._parts = []
        if not req.keep_alive:
            self.reading = False
            self._after_close = True


_READ_SLACK = 256 * 1024   # the most one read can bring (the core's receive arena)


def _status_of(exc: Exception) -> HTTPError:
    """The status for an error llhttp found."""
    reason = str(exc)
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return HTTPError(400, "unknown or malformed method")
    if "PRI" in reason or "Invalid HTTP version" in reason:
        return HTTPError(505, "HTTP version not supported")
    if "Content-Length" in reason and "Transfer-Encoding" in reason:
        return HTTPError(400, "both Transfer-Encoding and Content-Length")
    return HTTPError(400, reason[:80] or "malformed request")

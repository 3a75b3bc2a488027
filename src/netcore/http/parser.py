"""HTTP/1.1 request parsing (RFC 9112), strict.

The rules live here, in Python; netcore._http.parse_head_fast handles only
well-formed heads in C and defers everything else to this code, so every
rejection and its status come from one place.

Why not httptools: its callbacks cost a Python call per URL, per header and
per message, and its errors are strings we would have to map back to status
codes (414/431/501/505 all look alike there).  Here a request head is found
with one bytes.find(b"\\r\\n\\r\\n"), validated with two compiled regexes and
split without per-byte Python work, and every rejection carries its status.

Line endings are CRLF; a bare LF anywhere in a head or a chunk line is a
400, at once (RFC 9112 section 2.2 lets a recipient accept it instead; it
is refused here because a proxy in front may split the stream differently,
which is how requests get smuggled).  A head that can never become a
request (a byte no request line can begin with, a method that is not a
token, a broken version) is a 400 as soon as the offending byte arrives,
not after the header timeout.

Framing rules (RFC 9112 section 6) decided here:
- Transfer-Encoding and Content-Length together: 400 (request smuggling).
- Transfer-Encoding other than exactly "chunked": 501; in HTTP/1.0: 400.
- Content-Length must be digits; duplicates must agree, else 400.
- HTTP/1.1 needs exactly one Host; two Hosts are 400 in any version.
"""
from __future__ import annotations

import re
from typing import Optional

from .request import Request, split_target

# The C head parser (netcore._http.parse_head_fast) returns _parse_fields'
# exact result for common well-formed heads and None for anything else, so
# it runs first and the Python code below stays the authority for the rest
# (and for every error status).  Without the extension, Python does it all.
try:
    from .._http import parse_head_fast as _head_fast
except ImportError:  # pragma: no cover
    _head_fast = None

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
# method SP request-target SP HTTP-version; the target is any run of
# visible ASCII (a URI is ASCII: no controls, spaces or bytes >= 0x80).
_TARGET = rb"[\x21-\x7e]"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") (" + _TARGET + rb"+) HTTP/([0-9])\.([0-9])")
# Anything shaped like a request line but with a version we do not speak.
_OTHER_VERSION = re.compile(rb"" + _TOKEN + rb" " + _TARGET + rb"+ HTTP/[0-9]+(?:\.[0-9]+)?")
# field-name ":" OWS field-value OWS; the value excludes controls but HTAB.
# A line starting with whitespace (obs-fold) or with space before the colon
# does not match and is rejected.
_HEADER = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)")
_HOST = re.compile(rb"[-._~%!$&'()*+,;=:\[\]0-9A-Za-z]*")
# What can still become a request line: a token, SP, a target, SP and a
# prefix of an HTTP version (any digits: "HTTP/2.0" is a 505, not a 400).
_LINE_PREFIX = re.compile(rb"(?:" + _TOKEN + rb"(?: " + _TARGET + rb"*"
                          rb"(?: (?:H(?:T(?:T(?:P(?:/[0-9]*(?:\.[0-9]*)?)?)?)?)?)?)?)?)?")
# absolute-form (RFC 9112 section 3.2.2): scheme "://" authority, then a
# path and query; the authority is [userinfo "@"] host [":" port].
_PCT = rb"%[0-9A-Fa-f]{2}"
_SUB = rb"-._~!$&'()*+,;="
_ABSOLUTE = re.compile(
    rb"[A-Za-z][-+.0-9A-Za-z]*://"
    rb"(?:(?:[" + _SUB + rb":0-9A-Za-z]|" + _PCT + rb")*@)?"                 # userinfo
    rb"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[" + _SUB + rb":0-9A-Za-z]+\]"  # IP-literal
    rb"|(?:[" + _SUB + rb"0-9A-Za-z]|" + _PCT + rb")+)"                        # reg-name, IPv4
    rb"(?::[0-9]*)?"                                                           # port
    rb"(?:[/?]" + _TARGET + rb"*)?")
# chunk-size [ chunk-ext ] (RFC 9112 section 7.1.1): each extension is
# BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ].
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:"
                         + _TOKEN + rb"|" + _QUOTED + rb"))?)*")

_SPECIAL = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection", b"expect"))


class HTTPError(Exception):
    """A request we refuse: answer ``status`` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


def _version_error(line: bytes) -> HTTPError:
    if _OTHER_VERSION.fullmatch(line):
        return HTTPError(505, "HTTP version not supported")
    return HTTPError(400, "malformed request line")


def check_incomplete_head(data: bytes, start: int, config, new: int = 0) -> None:
    """Called while the head at data[start:] has not fully arrived: fail
    early on size, and on what can never become a request.  Bytes before
    ``new`` were checked by an earlier call (only the new ones are scanned
    for a bare LF: a trickled head costs no rescans)."""
    line_end = data.find(b"\r\n", start)
    if line_end < 0:
        if len(data) - start > config.max_request_line:
            raise HTTPError(414, "request line too long")
        end = len(data) - 1 if data[-1:] == b"\r" else len(data)   # (a CR may be the CRLF's)
        if _LINE_PREFIX.fullmatch(data, start, end) is None:
            # (the words the complete line would get: an answer must not
            # depend on how TCP split the client's bytes)
            raise (HTTPError(400, "bare LF line ending") if b"\n" in data[start:]
                   else HTTPError(400, "malformed request line"))
        return
    if line_end - start > config.max_request_line:
        raise HTTPError(414, "request line too long")
    line = data[start:line_end]
    if line not in _LINE_CACHE:
        _LINE_CACHE[line] = _request_line(line)   # raises as the complete head would
    if len(data) - line_end - 2 > config.max_header_bytes:
        raise HTTPError(431, "request header section too large")
    fields = line_end + 2
    lf = data.find(b"\n", max(new, fields))
    while lf >= 0:
        if data[lf - 1] != 13:   # "\r"
            raise HTTPError(400, "bare LF line ending")
        lf = data.find(b"\n", lf + 1)
    # the field lines completed by these bytes: each must be a field
    pos = max(fields, data.rfind(b"\r\n", fields, max(new, fields)) + 2)
    eol = data.find(b"\r\n", pos)
    while eol >= 0:
        if _HEADER.fullmatch(data, pos, eol) is None:
            raise HTTPError(400, "malformed header field")
        pos = eol + 2
        eol = data.find(b"\r\n", pos)


# Memo tables for the pure, repeated parts of a head.  Clients send the same
# request lines and the same header blocks over and over (same Host, same
# User-Agent, same Accept...), and validating them is a pure function of
# their bytes, so the result is cached: a repeated head costs two dict
# lookups instead of a regex per line.  Entries are small and the tables are
# bounded (cleared when full), so hostile input can only cause misses.
_LINE_CACHE: dict[bytes, tuple[str, bytes, bool]] = {}
_BLOCK_CACHE: dict[bytes, "_Block"] = {}
_CACHE_MAX = 2048
_BLOCK_CACHE_LIMIT = 4096   # bytes: longer header blocks are parsed every time


class _Block:
    """The parsed, validated meaning of one header block."""

    __slots__ = ("headers", "hosts", "content_length", "te", "close", "keep_alive", "expect")

    def __init__(self, block: bytes, config) -> None:
        self._clear()
        headers: list[tuple[bytes, bytes]] = []
        lines = block.split(b"\r\n")
        if len(lines) > config.max_header_count:
            raise HTTPError(431, "too many header fields")
        match = _HEADER.fullmatch
        special = []
        for hline in lines:
            hm = match(hline)
            if hm is None:
                raise HTTPError(400, "malformed header field")
            name, value = hm.groups()
            name = name.lower()
            if value[-1:] in b" \t" and value:
                value = value.rstrip(b" \t")
            headers.append((name, value))
            if name in _SPECIAL:
                special.append((name, value))
        # the grammar of every line first, then their meaning (a malformed
        # line is a 400 whatever an earlier Expect says)
        for name, value in special:
            self._special(name, value)
        self.headers = tuple(headers)

    @classmethod
    def from_fields(cls, fields: list) -> "_Block":
        """The meaning of fields another tokenizer split: (lower-case name,
        value without OWS) pairs, each already checked against the grammar."""
        self = cls.__new__(cls)
        self._clear()
        for name, value in fields:
            if name in _SPECIAL:
                self._special(name, value)
        self.headers = tuple(fields)
        return self

    def _clear(self) -> None:
        self.hosts = 0
        self.content_length = -1
        self.te: Optional[bytes] = None
        self.close = self.keep_alive = self.expect = False

    def _special(self, name: bytes, value: bytes) -> None:
        """A field the server gives meaning to (one of _SPECIAL)."""
        if name == b"host":
            self.hosts += 1
            if self.hosts > 1:
                raise HTTPError(400, "duplicate Host header")
            if _HOST.fullmatch(value) is None:
                raise HTTPError(400, "invalid Host header")
        elif name == b"content-length":
            # one field of digits: a repeated field or a list, even of equal
            # values (RFC 9110 8.6 lets a recipient refuse them), is how
            # framing disagreements between servers begin
            if self.content_length >= 0:
                raise HTTPError(400, "conflicting Content-Length values")
            if not value.isdigit() or len(value) > 18:
                raise HTTPError(400, "invalid Content-Length")
            self.content_length = int(value)
        elif name == b"transfer-encoding":
            self.te = value if self.te is None else self.te + b"," + value
        elif name == b"connection":
            for token in value.lower().split(b","):
                token = token.strip(b" \t")
                if token == b"close":
                    self.close = True
                elif token == b"keep-alive":
                    self.keep_alive = True
        else:  # expect
            if value.lower() != b"100-continue":
                raise HTTPError(417, "unsupported expectation")
            self.expect = True


_EMPTY_BLOCK = _Block.from_fields([])


def _request_line(line: bytes) -> tuple[str, bytes, bool]:
    """Validate a request line (raising its status); callers memoise it."""
    if len(_LINE_CACHE) >= _CACHE_MAX:
        _LINE_CACHE.clear()
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise _version_error(line)
    method, target, major, minor = m.groups()
    return check_request_line(method, target, major, minor)


def check_request_line(method: bytes, target: bytes, major: bytes, minor: bytes) -> tuple[str, bytes, bool]:
    """The rules of a tokenized request line (method a token, target
    visible bytes, one-digit version): (method, target, http11)."""
    if major != b"1":
        raise HTTPError(505, "HTTP version not supported")
    # Origin-form, absolute-form, or "*" for OPTIONS; authority-form is only
    # for CONNECT, which a server (not a proxy) does not implement.
    if method == b"CONNECT":
        raise HTTPError(501, "CONNECT is not implemented")
    if target[:1] != b"/":
        if target == b"*":
            if method != b"OPTIONS":
                raise HTTPError(400, "'*' target is only valid for OPTIONS")
        elif _ABSOLUTE.fullmatch(target) is None:
            raise HTTPError(400, "malformed request target")
    # 1.x for x >= 1 is compatible with 1.1 (RFC 9110 section 2.5)
    return method.decode("ascii"), target, minor != b"0"


def _parse_fields(data: bytes, start: int, end: int, config) -> tuple:
    """Validate the head in data[start:end]; return (method, target, http11,
    headers, keep_alive, framing) as documented in parse_head."""
    line_end = data.find(b"\r\n", start, end + 2)
    if line_end - start > config.max_request_line:
        raise HTTPError(414, "request line too long")
    line = data[start:line_end]
    parsed = _LINE_CACHE.get(line)
    if parsed is None:
        parsed = _request_line(line)
        _LINE_CACHE[line] = parsed
    method, target, http11 = parsed

    if end > line_end:
        if end - line_end > config.max_header_bytes:
            raise HTTPError(431, "request header section too large")
        block_bytes = data[line_end + 2:end]
        block = _BLOCK_CACHE.get(block_bytes)
        if block is None:
            block = _Block(block_bytes, config)
            if len(block_bytes) <= _BLOCK_CACHE_LIMIT:
                if len(_BLOCK_CACHE) >= _CACHE_MAX:
                    _BLOCK_CACHE.clear()
                _BLOCK_CACHE[block_bytes] = block
        elif len(block.headers) > config.max_header_count:
            raise HTTPError(431, "too many header fields")
    else:
        block = _EMPTY_BLOCK
    return method, target, http11, block.headers, *decide_framing(http11, block, config)


def decide_framing(http11: bool, block: _Block, config) -> tuple:
    """(keep_alive, framing) of a request with these fields (RFC 9112
    sections 3.2, 6, 9.3); raises HTTPError."""
    if http11:
        if block.hosts != 1:
            raise HTTPError(400, "missing Host header" if not block.hosts else "duplicate Host header")
        keep_alive = not block.close
    else:
        keep_alive = block.keep_alive and not block.close
    if block.te is None and block.content_length <= 0:
        return keep_alive, None
    te = block.te
    content_length = block.content_length
    if te is not None:
        if content_length >= 0:
            raise HTTPError(400, "both Transfer-Encoding and Content-Length")
        if not http11:
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings = [c.strip(b" \t").lower() for c in te.split(b",")]
        if codings != [b"chunked"]:
            # chunked must be last, and only once (RFC 9112 6.1)
            if b"" in codings or b"chunked" in codings[:-1]:
                raise HTTPError(400, "malformed Transfer-Encoding")
            raise HTTPError(501, "unsupported Transfer-Encoding")
        return keep_alive, (0, True, block.expect and http11)
    if content_length > config.max_body_bytes:
        raise HTTPError(413, "request body too large")
    return keep_alive, (content_length, False, block.expect and http11)


def parse_head(data: bytes, start: int, end: int, config) -> tuple[Request, Optional[tuple]]:
    """Parse the head in data[start:end] (end is where b"\r\n\r\n" starts).

    Returns (request, framing): framing is None for a request without a
    body, else (content_length, chunked, expect_continue).  Raises HTTPError.
    """
    fields = None if _head_fast is None else _head_fast(
        data, start, end, config.max_request_line, config.max_header_bytes,
        config.max_header_count, config.max_body_bytes)
    if fields is None:
        fields = _parse_fields(data, start, end, config)
    method, target, http11, headers, keep_alive, framing = fields
    return Request(method, target, "1.1" if http11 else "1.0", headers, keep_alive), framing


# Whole-head memo for the server's fast path.  A complete head (request line
# plus header block) is a pure function of its bytes and of the limits in
# ``config``, and keep-alive clients repeat theirs byte for byte, so the
# validated result is kept per head: a repeated request costs one find, one
# slice and one dict lookup before its Request is built.  Only heads the fast
# path can finish alone are stored (no body, connection stays open); entries
# carry the config they were validated against.  Bounded like the others.
HEAD_CACHE: dict[bytes, tuple] = {}
_HEAD_CACHE_LIMIT = 4096   # bytes: longer heads are parsed every time


def memo_head(data: bytes, start: int, end: int, config) -> Optional[tuple]:
    """The fast-path entry for the head in data[start:end], or None when the
    general path must take it (error, body, closing request, ...):
    (config, method, target, http_version, headers, Request._split, is HEAD, http11,
    derived) where ``derived`` is a dict in which consumers (a WSGI environ,
    an ASGI scope) memoise what they build from this head, keyed by themselves."""
    # the head memo missed: C first, the memoised Python parser if it declines
    fields = None if _head_fast is None else _head_fast(
        data, start, end, config.max_request_line, config.max_header_bytes,
        config.max_header_count, config.max_body_bytes)
    if fields is None:
        try:
            fields = _parse_fields(data, start, end, config)
        except HTTPError:
            return None
    method, target, http11, headers, keep_alive, framing = fields
    if framing is not None or not keep_alive:
        return None
    entry = (config, method, target, "1.1" if http11 else "1.0", headers,
             (target, split_target(target)), method == "HEAD", http11, {})
    if end - start <= _HEAD_CACHE_LIMIT:
        if len(HEAD_CACHE) >= _CACHE_MAX:
            HEAD_CACHE.clear()
        HEAD_CACHE[data[start:end]] = entry
    return entry


_MAX_SIZE_LINE = 1024      # bytes of a chunk-size line (size and extensions)


class ChunkedReader:
    """Incremental decoder of a chunked request body.

    feed(data, pos) consumes what it can from data[pos:] and returns the new
    position; ``done`` is set after the last chunk and its trailers.  Bytes
    of an incomplete size line or trailer line are left unconsumed for the
    caller to prepend to the next read.
    """

    __slots__ = ("parts", "size", "remaining", "state", "trailer_bytes", "trailers",
                 "done", "max_body", "max_trailer", "max_count")

    # states
    SIZE, DATA, DATA_END, TRAILER = range(4)

    def __init__(self, config) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.remaining = 0
        self.state = self.SIZE
        self.trailer_bytes = 0
        self.trailers = 0
        self.done = False
        self.max_body = config.max_body_bytes
        self.max_trailer = config.max_header_bytes
        self.max_count = config.max_header_count

    def body(self) -> bytes:
        return b"".join(self.parts)

    def feed(self, data: bytes, pos: int) -> int:
        n = len(data)
        while pos < n and not self.done:
            state = self.state
            if state == self.DATA:
                take = min(self.remaining, n - pos)
                self.parts.append(data[pos:pos + take])
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = self.DATA_END
            elif state == self.DATA_END:
                if n - pos < 2:
                    if data[pos:pos + 1] != b"\r":
                        raise HTTPError(400, "missing CRLF after chunk data")
                    return pos
                if data[pos:pos + 2] != b"\r\n":
                    raise HTTPError(400, "missing CRLF after chunk data")
                pos += 2
                self.state = self.SIZE
            else:
                # The line ends at its first LF, which must follow a CR
                # (looking for CRLF instead would take a bare LF into the
                # line when a CRLF came later in the same read).  Its length
                # is judged first, as far as it has arrived (a last '\r' may
                # begin the CRLF): a line cut anywhere is then refused
                # exactly as the whole one would be.
                lf = data.find(b"\n", pos)
                end = n if lf < 0 else lf
                pending = end - pos - (end > pos and data[end - 1] == 13)
                if state == self.SIZE:
                    if pending > _MAX_SIZE_LINE:
                        raise HTTPError(400, "chunk size line too long")
                elif pending and self.trailer_bytes + pending + 2 > self.max_trailer:
                    raise HTTPError(431, "trailer section too large")
                if lf < 0:
                    return pos
                if lf == pos or data[lf - 1] != 13:
                    raise HTTPError(400, "bare LF line ending")
                eol = lf - 1
                line = data[pos:eol]
                pos = eol + 2
                if state == self.SIZE:
                    m = _CHUNK_SIZE.fullmatch(line)
                    if m is None:
                        raise HTTPError(400, "malformed chunk size")
                    size = int(m.group(1), 16)
                    self.size += size
                    if self.size > self.max_body:
                        raise HTTPError(413, "request body too large")
                    if size == 0:
                        self.state = self.TRAILER
                    else:
                        self.remaining = size
                        self.state = self.DATA
                else:  # TRAILER: fields until an empty line; checked, dropped
                    if not line:
                        self.done = True
                        break
                    self.trailer_bytes += len(line) + 2
                    self.trailers += 1
                    if self.trailer_bytes > self.max_trailer or self.trailers > self.max_count:
                        raise HTTPError(431, "trailer section too large")
                    if _HEADER.fullmatch(line) is None:
                        raise HTTPError(400, "malformed trailer field")
        return pos

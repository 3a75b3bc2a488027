"""Response and its serialisation to bytes.

The bytes of a response head depend on (status, headers, body length,
connection disposition) and on the current second (Date).  Servers answer
the same few shapes over and over, so complete heads are memoised per
second in each server's HeadCache: the steady-state cost of a response is a
tuple, a dict lookup and two list appends.  The cache is cleared when the
Date changes (the server ticks HeadCache.refresh() once a second) or when
it grows past a bound.
"""
from __future__ import annotations

import json
import logging
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

HeadersArg = Union[Mapping[str, str], Sequence[tuple[str, str]], None]
BodyArg = Union[bytes, bytearray, memoryview, str, Iterable[bytes], Iterable[str]]

_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_NO_BODY = frozenset((204, 304))
_BAD_HEADER_CHARS = ("\r", "\n", "\x00")
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
try:
    # Same bytes as _json_encode(x).encode("utf-8") for plain dict/list/str/
    # int/float/bool/None data, ~15x faster; None means "use _json_encode".
    from .._http import json_simple as _json_simple
except ImportError:  # extension not built: pure Python throughout
    _json_simple = None

# content-type defaults by kind of body
_CT_BYTES = b"content-type: application/octet-stream\r\n"
_CT_TEXT = b"content-type: text/plain; charset=utf-8\r\n"
_CT_JSON = b"content-type: application/json\r\n"

# connection dispositions: (http11, keep_alive) -> header line
_CONN_LINE = {
    (True, True): b"",
    (True, False): b"connection: close\r\n",
    (False, True): b"connection: keep-alive\r\n",
    (False, False): b"connection: close\r\n",
}

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Response:
    """What a handler returns (it may also return bytes, str, dict or list).

    ``body`` is bytes/str, or an iterable of bytes/str chunks; an iterable is
    sent with chunked transfer-coding unless the headers give a
    Content-Length.  ``headers`` is a mapping or a sequence of (name, value)
    pairs (use pairs to repeat a name, e.g. Set-Cookie).
    """

    __slots__ = ("body", "status", "headers")

    def __init__(self, body: BodyArg = b"", status: int = 200, headers: HeadersArg = None) -> None:
        self.body = body
        self.status = status
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


# ---------------------------------------------------------------- per-server heads

class HeadCache:
    """One server's response-head state: its Server line, the current Date
    line, and the heads memoised for the current second.

    Per server, not per module: two servers in one process may differ in
    their settings (server_header), and neither may change the other's.
    """

    __slots__ = ("server_line", "second", "date_line", "heads")

    def __init__(self, server_header: bool = True) -> None:
        self.server_line = b"server: netcore\r\n" if server_header else b""
        self.second = -1
        self.date_line = b""
        self.heads: dict[Any, Any] = {}
        self.refresh()

    def refresh(self) -> None:
        """Call at least once a second: the Date line follows the clock."""
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.date_line = _date_line(now)
            self.heads = {}

    def error(self, status: int, message: str) -> bytes:
        """A complete plain-text error response that closes the connection."""
        body = (message + "\n").encode("utf-8", "replace")
        return b"".join((_status_line(status), self.server_line, self.date_line, _CT_TEXT,
                         b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body))


_DATE_MEMO: list = [-1, b""]


def _date_line(second: int) -> bytes:
    # shared by every HeadCache: formatted once per second per process
    if _DATE_MEMO[0] != second:
        _DATE_MEMO[1] = b"date: " + formatdate(second, usegmt=True).encode("ascii") + b"\r\n"
        _DATE_MEMO[0] = second
    return _DATE_MEMO[1]


# ---------------------------------------------------------------- headers

class _Encoded:
    """A user header set, validated and encoded once."""

    __slots__ = ("block", "has_type", "length", "close", "has_server", "has_date")

    def __init__(self, headers: HeadersArg) -> None:
        items = headers.items() if isinstance(headers, Mapping) else headers
        lines = []
        self.has_type = False
        self.length = -1
        self.close = False
        self.has_server = False
        self.has_date = False
        for name, value in items:  # type: ignore[union-attr]
            # str pairs (native, WSGI) or latin-1 bytes pairs (ASGI)
            name = name.decode("latin-1") if type(name) is bytes else str(name)
            value = value.decode("latin-1") if type(value) is bytes else str(value)
            lname = name.lower()
            if not name or any(c in name for c in _BAD_HEADER_CHARS + (":", " ", "\t")):
                raise ValueError(f"invalid header name {name!r}")
            if any(c in value for c in _BAD_HEADER_CHARS):
                raise ValueError(f"invalid header value for {name!r}")
            if lname == "content-type":
                self.has_type = True
            elif lname == "content-length":
                value = value.strip()
                if not value.isdigit():
                    raise ValueError(f"invalid content-length {value!r}")
                self.length = int(value)
                continue  # written by the server from the real body size
            elif lname == "connection":
                if "close" in value.lower():
                    self.close = True
                continue  # the server writes its own
            elif lname == "transfer-encoding" or lname == "keep-alive":
                continue  # framing is the server's business
            elif lname == "server":
                self.has_server = True
            elif lname == "date":
                self.has_date = True
            lines.append(f"{name}: {value}\r\n")
        self.block = "".join(lines).encode("latin-1")


_encoded_cache: dict[Any, _Encoded] = {}


def _encode_headers(headers: HeadersArg) -> tuple[Any, _Encoded]:
    if headers is None:
        return None, _NO_HEADERS
    try:
        if type(headers) is dict or isinstance(headers, Mapping):
            key = tuple(headers.items())  # type: ignore[union-attr]
        else:
            key = tuple(headers)  # type: ignore[arg-type]
        enc = _encoded_cache.get(key)
    except TypeError:  # unhashable values: no caching
        return None, _Encoded(headers)
    if enc is None:
        enc = _Encoded(headers)
        if len(_encoded_cache) > 512:
            _encoded_cache.clear()
        _encoded_cache[key] = enc
    return key, enc


_NO_HEADERS = _Encoded(())


def _status_line(status: int) -> bytes:
    if type(status) is not int or not 200 <= status <= 999:
        raise ValueError(f"invalid response status {status!r}")
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


def _build_head(cache: HeadCache, status: int, enc: _Encoded, default_type: bytes, length: int,
                conn_line: bytes, chunked: bool, line: Optional[bytes] = None) -> bytes:
    """The head for ``status`` (its status line ``line``, or the standard one)."""
    parts = [line or _status_line(status),
             b"" if enc.has_server else cache.server_line,
             b"" if enc.has_date else cache.date_line,
             enc.block]
    if not enc.has_type and status not in _NO_BODY:
        parts.append(default_type)
    if length >= 0 and status not in _NO_BODY:
        parts.append(b"content-length: %d\r\n" % length)
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(conn_line)
    parts.append(b"\r\n")
    return b"".join(parts)


def build_head(cache: HeadCache, status: int, enc: "_Encoded", default_type: bytes, length: int,
               http11: bool, keep_alive: bool, chunked: bool, line: Optional[bytes] = None) -> bytes:
    """A response head, not memoised (streams; complete bodies use complete_head)."""
    return _build_head(cache, status, enc, default_type, length, _CONN_LINE[http11, keep_alive],
                       chunked, line)


def parse_status(status: str) -> tuple[int, bytes]:
    """A WSGI/CGI status string ("200 OK") -> (code, status line)."""
    if (type(status) is not str or len(status) < 4 or not status[:3].isdigit() or status[3] != " "
            or any(c in status for c in _BAD_HEADER_CHARS)):
        raise ValueError(f"invalid status {status!r}: expected 'NNN Reason'")
    code = int(status[:3])
    if code < 200:
        raise ValueError(f"invalid status {status!r}: informational responses are the server's")
    return code, b"HTTP/1.1 " + status.encode("latin-1") + b"\r\n"


def complete_head(cache: HeadCache, status: int, line: Optional[bytes], headers: Any, length: int,
                  http11: bool, keep_alive: bool, head_only: bool = False,
                  default_type: bytes = b"") -> tuple[bytes, bool]:
    """The head of a response whose whole body (``length`` bytes) is known,
    and whether the connection stays open; memoised for the second.  Raises
    ValueError for headers that cannot be sent or a contradicting length.
    An answer to HEAD keeps the Content-Length its application declared
    (that of the body a GET would get), whatever body came with it."""
    try:
        key: Any = (line or status, tuple(headers) if headers is not None else None, length,
                    http11, keep_alive, head_only, default_type)
        hit = cache.heads.get(key)
    except TypeError:   # unhashable headers: build every time
        key = None
        hit = None
    if hit is None:
        enc = encode_headers(headers)
        if enc.length >= 0 and enc.length != length:
            if not head_only:
                raise ValueError(f"content-length {enc.length} does not match the body ({length} bytes)")
            length = enc.length
        keep = keep_alive and not enc.close
        hit = (_build_head(cache, status, enc, default_type, length, _CONN_LINE[http11, keep], False,
                           line), keep)
        if key is not None:
            if len(cache.heads) >= 1024:
                cache.heads.clear()
            cache.heads[key] = hit
    return hit


def encode_headers(headers: HeadersArg) -> "_Encoded":
    """A header set (mapping or (name, value) pairs of str), validated and
    encoded once; raises ValueError for names or values that cannot be sent."""
    return _encode_headers(headers)[1]


_KIND_TYPES = (_CT_BYTES, _CT_TEXT, _CT_JSON)


def render(result: Any, head_only: bool, http11: bool, keep_alive: bool, out: list,
           cache: HeadCache) -> Any:
    """Serialise a handler's result onto ``out``; return keep-alive, or a
    (falsy) Stream when an iterable body continues past its first window.

    Raises TypeError/ValueError for results that cannot be sent; the caller
    answers 500 instead.  Nothing is appended to ``out`` when it raises.
    """
    rtype = type(result)
    # exact types first: isinstance() is the slow test, and no Response
    # subclass can also be a dict, bytes or str (layout conflict)
    if rtype is Response or (rtype is not dict and rtype is not bytes and rtype is not str
                             and isinstance(result, Response)):
        body = result.body
        status = result.status
        headers = result.headers
        btype = type(body)
        if btype is bytes:
            kind = 0
        elif btype is str:
            body = body.encode("utf-8")
            kind = 1
        elif btype is bytearray or btype is memoryview:
            body = bytes(body)
            kind = 0
        elif body is None:
            body = b""
            kind = 0
        elif hasattr(body, "__iter__"):
            return render_iterable(body, status, None, encode_headers(headers), head_only, http11,
                                   keep_alive, out, cache)
        else:
            raise TypeError(f"cannot send a {btype.__name__} as a response body")
    else:
        status = 200
        headers = None
        if rtype is bytes:
            body = result
            kind = 0
        elif rtype is str:
            body = result.encode("utf-8")
            kind = 1
        elif rtype is dict or rtype is list or isinstance(result, (dict, list)):
            body = _json_simple(result) if _json_simple is not None else None
            if body is None:
                body = _json_encode(result).encode("utf-8")
            kind = 2
        elif rtype is bytearray or rtype is memoryview:
            body = bytes(result)
            kind = 0
        else:
            raise TypeError(f"cannot send a {rtype.__name__} as a response")

    length = len(body)
    # One lookup finds the finished head for this shape of response.
    if headers is None:
        hkey: Any = None
    elif type(headers) is dict or isinstance(headers, Mapping):
        hkey = tuple(headers.items())  # type: ignore[union-attr]
    else:
        hkey = tuple(headers)  # type: ignore[arg-type]
    key = (status, hkey, length, kind, http11, keep_alive)
    heads = cache.heads
    try:
        hit = heads.get(key)
    except TypeError:  # unhashable header values: build every time
        hit = _make_head(cache, status, headers, length, kind, http11, keep_alive)
    else:
        if hit is None:
            hit = _make_head(cache, status, headers, length, kind, http11, keep_alive)
            if len(heads) >= 1024:
                heads.clear()
            heads[key] = hit
    head, keep, with_body = hit
    out.append(head)
    if with_body and length and not head_only:
        out.append(body)
    return keep


def _make_head(cache: HeadCache, status: int, headers: HeadersArg, length: int, kind: int,
               http11: bool, keep_alive: bool) -> tuple[bytes, bool, bool]:
    enc = _Encoded(headers) if headers is not None else _NO_HEADERS
    if enc.close:
        keep_alive = False
    if enc.length >= 0 and enc.length != length:
        raise ValueError(f"content-length {enc.length} does not match the body ({length} bytes)")
    head = _build_head(cache, status, enc, _KIND_TYPES[kind], length, _CONN_LINE[http11, keep_alive], False)
    return head, keep_alive, status not in _NO_BODY


class FileRange:
    """A part of a response that is a region of an open file: the transport
    hands it to the kernel (Queue.sendfile) instead of reading it.  done()
    runs once, when the region has been sent, failed or was dropped."""

    __slots__ = ("file", "offset", "count", "on_done")

    def __init__(self, file: Any, offset: int, count: int, on_done: Any = None) -> None:
        self.file = file
        self.offset = offset
        self.count = count
        self.on_done = on_done

    def __len__(self) -> int:     # counts as its bytes (held answers, flow control)
        return self.count

    def done(self) -> None:
        on_done = self.on_done
        if on_done is not None:
            self.on_done = None
            try:
                on_done()
            except Exception:
                logging.getLogger("netcore.error").exception("closing a file response failed")


STREAM_WINDOW = 65536   # body bytes pulled per send: the backpressure window


class BodyLengthError(ValueError):
    """An iterable body disagreed with the Content-Length its handler declared."""


class Stream:
    """A response body still being pulled from its iterable.

    render() returns one in place of its keep-alive flag when an iterable
    body has not ended within its first STREAM_WINDOW bytes; the head and
    that first window are already on ``out``.  The server then calls pull()
    again only once the previous window's send has completed, so a
    connection holds at most one window of body in memory, however large
    or endless the body.

    A Stream is falsy: the callers' common path tests ``if not keep`` and
    stays as it was, and only their rare branch has to tell a Stream from
    False.
    """

    __slots__ = ("body", "it", "chunked", "left", "keep_alive", "done", "busy", "cancelled",
                 "closed", "bytes_only")

    def __init__(self, body: Any, chunked: bool, length: int, keep_alive: bool) -> None:
        self.body = body
        self.it: Any = None
        self.chunked = chunked
        self.left = length          # declared bytes still to come; -1: not checked
        self.keep_alive = keep_alive
        self.done = False           # the iterable ended (and was closed)
        self.busy = False           # a pool thread is inside pull() (server-owned)
        self.cancelled = False      # close() was asked for while busy
        self.closed = False
        self.bytes_only = False     # refuse str and other chunks (WSGI), instead of converting

    def __bool__(self) -> bool:
        return False

    def pull(self) -> list[bytes]:
        """The next window of framed body bytes; at the end also the last
        chunk, ``done`` set and the iterable closed.  Raises what the
        iterator raises, or BodyLengthError."""
        pieces: list[bytes] = []
        size = 0
        for chunk in self.it:
            size += self._frame(chunk, pieces)
            if size >= STREAM_WINDOW:
                return pieces
        pieces.extend(self.finish())
        self._close_now()  # (the pulling thread itself: not close(), which defers when busy)
        return pieces

    def frame(self, chunks: Iterable[Any]) -> list[bytes]:
        """``chunks`` framed as the next part of this body."""
        pieces: list[bytes] = []
        for chunk in chunks:
            self._frame(chunk, pieces)
        return pieces

    def finish(self) -> list[bytes]:
        """The end of the body: the last chunk of a chunked one; ``done`` set."""
        if self.left > 0:
            raise BodyLengthError(f"response body {self.left} bytes shorter than its content-length")
        self.done = True
        return [b"0\r\n\r\n"] if self.chunked else []

    def _frame(self, chunk: Any, pieces: list) -> int:
        if type(chunk) is not bytes:
            if self.bytes_only and not isinstance(chunk, (bytearray, memoryview)):
                raise TypeError(f"response body chunks must be bytes, not {type(chunk).__name__}")
            chunk = chunk.encode("utf-8") if type(chunk) is str else bytes(chunk)
        n = len(chunk)
        if not n:
            return 0  # an empty chunk would read as the end of a chunked body
        if self.left >= 0:
            if n > self.left:
                raise BodyLengthError("response body longer than its content-length")
            self.left -= n
        if self.chunked:
            pieces.append(b"%x\r\n" % n)
            pieces.append(chunk)
            pieces.append(b"\r\n")
        else:
            pieces.append(chunk)
        return n

    def close(self) -> None:
        """Call the iterable's close() once (as WSGI servers do), now or,
        if a pool thread is pulling, when that pull comes back."""
        if self.busy:
            self.cancelled = True
        else:
            self._close_now()

    def _close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(self.body, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logging.getLogger("netcore.error").exception("closing a response body failed")


def render_iterable(body: Any, status: int, line: Optional[bytes], enc: _Encoded, head_only: bool,
                    http11: bool, keep_alive: bool, out: list, cache: HeadCache,
                    bytes_only: bool = False) -> Any:
    """Serialise an iterable body's head and first window onto ``out``; like
    render(), return keep-alive or a Stream for the windows that follow.
    ``line`` is the status line (None: the standard one for ``status``);
    ``bytes_only`` refuses chunks that are not bytes (WSGI)."""
    if enc.close:
        keep_alive = False
    length = enc.length
    chunked = length < 0 and http11 and status not in _NO_BODY
    if length < 0 and not http11:
        keep_alive = False  # HTTP/1.0 without a length: the close delimits the body
    stream = Stream(body, chunked, length, keep_alive)
    stream.bytes_only = bytes_only
    if head_only or status in _NO_BODY:
        # no body is sent, so none is produced (not iterated); close() still runs
        pieces: list[bytes] = []
        stream.close()
    else:
        # The first window is pulled before anything is queued: an iterator
        # failing this early (or a short body of the wrong length) still
        # gets a clean 500 from the caller.
        try:
            stream.it = iter(body)
            pieces = stream.pull()
        except BaseException:
            stream.close()
            raise
    out.append(_build_head(cache, status, enc, _CT_BYTES, length, _CONN_LINE[http11, keep_alive],
                           chunked, line))
    out.extend(pieces)
    if stream.closed:
        return keep_alive   # no body, or all of it in one window: an ordinary response
    return stream

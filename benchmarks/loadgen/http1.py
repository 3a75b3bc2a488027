"""HTTP/1.1 for the Python engine: the requests it sends and the counting
of the responses it reads back (the C engine, loadgen.c, does the same).

The response reader only frames: it finds each head, takes the status and
the body length (Content-Length or chunked) and skips the body without
keeping it.  Heads repeat byte for byte (only Date changes, once a
second), so their parse is cached.
"""
from __future__ import annotations

from typing import Optional

AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
)
ACCEPTS = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "application/json, text/plain, */*",
)
LANGUAGES = ("en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3",
             "ja,en-US;q=0.7,en;q=0.3")
ENCODINGS = ("gzip, deflate, br, zstd", "gzip, deflate")


def plain_head(method: str, path: str, host: str, port: int, body_bytes: int = 0) -> bytes:
    """A minimal request head; with a body, its Content-Length."""
    if body_bytes:
        return (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {body_bytes}\r\n\r\n").encode()
    return f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


def browser_head(i: int, method: str, path: str, host: str, port: int) -> bytes:
    """The i-th browser-like head: realistic fields, and a Cookie and an
    X-Request-Id that make every head differ from every other."""
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {AGENTS[i % 4]}\r\n"
            f"Accept: {ACCEPTS[i % 3]}\r\nAccept-Language: {LANGUAGES[i % 4]}\r\n"
            f"Accept-Encoding: {ENCODINGS[i % 2]}\r\n"
            f"Cookie: session={i:016x}; theme=dark; visits={i % 1000}\r\n"
            f"X-Request-Id: {i:08x}-{i % 65536:04x}\r\n\r\n").encode()


class FramingError(ValueError):
    """A response the reader cannot frame (no length, a bad chunk size)."""


_CHUNKED = -1
_HEAD_CACHE_MAX = 512


def _parse_head(head: bytes) -> tuple[int, int]:
    """(status, body length or _CHUNKED) of a head without its blank line."""
    if head[:7] != b"HTTP/1." or len(head) < 12:
        raise FramingError(f"not a response head: {head[:40]!r}")
    try:
        status = int(head[9:12])
    except ValueError:
        raise FramingError(f"bad status line: {head[:40]!r}") from None
    length: Optional[int] = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            return status, _CHUNKED
    if length is None:
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        else:
            raise FramingError("a response without a length (read-until-close)")
    return status, length


class ResponseReader:
    """Counts complete responses in the bytes of one connection.

    feed(data) returns the statuses of the responses that data completed;
    a body is skipped as it streams in, never buffered."""

    __slots__ = ("_buf", "_skip", "_status", "_chunked", "_cache")

    def __init__(self, cache: Optional[dict] = None) -> None:
        self._buf = b""        # unparsed bytes (a partial head or chunk line)
        self._skip = 0         # body bytes still to pass over
        self._status = 0       # status of the response whose body is skipped
        self._chunked = False  # the skipped bytes are a chunk (a size line follows)
        self._cache = {} if cache is None else cache  # shared by a process's connections

    def feed(self, data: bytes) -> list[int]:
        done: list[int] = []
        if self._skip:
            if len(data) < self._skip:
                self._skip -= len(data)
                return done
            data = data[self._skip:]
            self._skip = 0
            if not self._chunked:
                done.append(self._status)
        buf = self._buf + data if self._buf else data
        pos = 0
        n = len(buf)
        cache = self._cache
        while pos < n:
            if self._chunked:
                step = self._chunk(buf, pos, done)
                if step == pos:  # needs more bytes
                    break
                pos = step
                continue
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            head = buf[pos:end]
            parsed = cache.get(head)
            if parsed is None:
                parsed = _parse_head(head)
                if len(cache) >= _HEAD_CACHE_MAX:
                    cache.clear()
                cache[head] = parsed
            status, length = parsed
            pos = end + 4
            if length == _CHUNKED:
                self._chunked = True
                self._status = status
                continue
            if pos + length <= n:
                pos += length
                done.append(status)
            else:
                self._skip = pos + length - n
                self._status = status
                pos = n
        self._buf = buf[pos:] if pos < n else b""
        return done

    def _chunk(self, buf: bytes, pos: int, done: list[int]) -> int:
        """One step through a chunked body from pos; returns the new
        position (pos itself when more bytes are needed)."""
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return pos
        try:
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
        except ValueError:
            raise FramingError(f"bad chunk size line {buf[pos:eol][:40]!r}") from None
        if size == 0:  # last chunk; then trailers up to an empty line
            end = buf.find(b"\r\n\r\n", eol)
            if end < 0 and buf[eol:eol + 4] != b"\r\n\r\n":
                return pos
            self._chunked = False
            done.append(self._status)
            return (end if end >= 0 else eol) + 4
        start = eol + 2
        if start + size + 2 <= len(buf):
            return start + size + 2
        # the chunk runs past this read: skip it as it streams in, then
        # come back to chunked parsing for the next size line
        self._skip = start + size + 2 - len(buf)
        return len(buf)

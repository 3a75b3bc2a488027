"""Request and Headers as handlers see them.

The parser fills a Request with raw bytes and does no decoding a handler
might never ask for: path, query and header objects are built on first
access.  A plaintext handler that ignores its request pays for one object.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence
from urllib.parse import parse_qs, unquote


class Headers:
    """Read-only, case-insensitive view of request headers; duplicates kept.

    Names are lower-case ``str``; values are ``str`` decoded as latin-1 (the
    bytes are kept exact: ``value.encode("latin-1")`` gives them back).
    """

    __slots__ = ("raw",)

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        # raw: [(lower-case name, value), ...] in arrival order
        self.raw = raw

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first value of ``name``, or ``default``."""
        key = name.lower().encode("latin-1")
        for k, v in self.raw:
            if k == key:
                return v.decode("latin-1")
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (empty list when absent)."""
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.raw if k == key]

    getlist = get_all

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower().encode("latin-1")
        return any(k == key for k, _ in self.raw)

    def keys(self) -> list[str]:
        return [k.decode("latin-1") for k, _ in self.raw]

    def values(self) -> list[str]:
        return [v.decode("latin-1") for _, v in self.raw]

    def items(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


# target bytes -> (raw path, raw query, decoded path): a pure function of the
# target, and servers see the same few targets again and again.
_SPLIT_CACHE: dict[bytes, tuple[bytes, bytes, str]] = {}


def _split_target(target: bytes) -> tuple[bytes, bytes, str]:
    if target[:1] != b"/" and b"://" in target[:16]:
        # absolute-form: keep only path and query
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        qmark = rest.find(b"?")
        if slash < 0 or (0 <= qmark < slash):
            target = b"/" + (rest[qmark:] if qmark >= 0 else b"")
        else:
            target = rest[slash:]
    path, _, query = target.partition(b"?")
    path = path.partition(b"#")[0]
    query = query.partition(b"#")[0]
    text = path.decode("latin-1")
    if "%" in text:
        decoded = unquote(text, encoding="utf-8", errors="surrogateescape")
    elif path.isascii():
        decoded = text
    else:
        decoded = path.decode("utf-8", "surrogateescape")
    return path, query, decoded


def split_target(target: bytes) -> tuple[bytes, bytes, str]:
    """_split_target, memoised in _SPLIT_CACHE."""
    split = _SPLIT_CACHE.get(target)
    if split is None:
        split = _split_target(target)
        if len(_SPLIT_CACHE) >= 2048:
            _SPLIT_CACHE.clear()
        _SPLIT_CACHE[target] = split
    return split


class Request:
    """One HTTP request.

    Attributes set by the parser: ``method`` (str), ``target`` (the raw
    request-target, bytes), ``http_version`` ("1.0" or "1.1"), ``body``
    (bytes, complete), ``keep_alive`` (whether the connection stays open
    after the response).  Computed on access: ``path``, ``raw_path``,
    ``query_string``, ``query``, ``headers``, ``client``.
    """

    __slots__ = ("method", "target", "http_version", "raw_headers", "body", "body_pending",
                 "keep_alive", "seq", "start", "_peer", "_headers", "_split")

    method: str
    target: bytes
    http_version: str
    raw_headers: Sequence[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool

    def __init__(self, method: str, target: bytes, http_version: str,
                 raw_headers: Sequence[tuple[bytes, bytes]], keep_alive: bool = True,
                 body: bytes = b"") -> None:
        # Only what every request needs is set here (this runs per request);
        # seq, start, _headers and _split are filled in when used (the
        # native fast path sets _split from its head memo).
        self.method = method
        self.target = target
        self.http_version = http_version
        self.raw_headers = raw_headers
        self.keep_alive = keep_alive
        self.body = body
        self.body_pending = False     # the body is still arriving (protocol events follow)
        self._peer = None             # the transport's connection: only for ``client``

    # -- target pieces ---------------------------------------------------
    def _parts(self) -> tuple[bytes, bytes, str]:
        # _split is (target, split of target); the target check keeps it
        # right if a handler or middleware rewrites ``target``.
        try:
            ts = self._split
            if ts[0] is self.target:
                return ts[1]
        except AttributeError:
            pass
        target = self.target
        split = split_target(target)
        self._split = (target, split)
        return split

    @property
    def raw_path(self) -> bytes:
        """Path as sent (percent-encoded), without the query."""
        return self._parts()[0]

    @property
    def path(self) -> str:
        """Percent-decoded path (UTF-8, undecodable bytes as surrogate escapes)."""
        try:  # _parts() inlined for the common case: handlers read this per request
            ts = self._split
            if ts[0] is self.target:
                return ts[1][2]
        except AttributeError:
            pass
        return self._parts()[2]

    @property
    def query_string(self) -> str:
        """The raw query (after '?'), still percent-encoded."""
        return self._parts()[1].decode("latin-1")

    @property
    def query(self) -> dict[str, list[str]]:
        """The query parsed with urllib.parse.parse_qs (blank values kept)."""
        return parse_qs(self.query_string, keep_blank_values=True)

    # -- headers and peer --------------------------------------------------
    @property
    def headers(self) -> Headers:
        try:
            return self._headers
        except AttributeError:
            h = self._headers = Headers(self.raw_headers)
            return h

    @property
    def client(self) -> Optional[tuple[str, int]]:
        """(host, port) of the peer, or None when it is no longer known."""
        peer = self._peer
        return peer.client if peer is not None else None

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding)

    def json(self) -> Any:
        import json
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target.decode('latin-1')} HTTP/{self.http_version}>"

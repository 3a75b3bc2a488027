"""The native interface: ``handler(request) -> Response | bytes | str | dict | list``.

Handlers see a Request with its whole body (up to the body limit) and run on
the I/O thread, or with ``threads=N`` on a pool (see blocking.py, which also
streams iterable bodies window by window).

The fast path (fast_rx) answers the common case of a read in one frame:
complete, repeated (memoised) heads without a body, keep-alive, handlers
inline.  It checks that the connection is in the plain state before it
touches anything, and hands everything it cannot finish itself to the
general path unchanged.
"""
from __future__ import annotations

from typing import Any, Callable

from ..http.parser import HEAD_CACHE, memo_head
from ..http.request import Request
from ..http.response import render
from .base import log_access
from .blocking import BlockingDispatcher

App = Callable[[Request], Any]


class NativeDispatcher(BlockingDispatcher):
    pool_name = "netcore-handler"

    def __init__(self, app: App, config: Any) -> None:
        super().__init__(config, config.threads or 0)
        self.app = app
        self.timing = config.access_log

    def start(self, transport: Any) -> None:
        super().start(transport)
        # the fast path answers inline and logs nothing
        self.fast_rx = None if self.threads or self.timing else self._fast_rx

    def describe(self) -> str:
        return f"native interface, {self.threads} handler threads" if self.threads else "native interface"

    # ------------------------------------------------------------ fast path
    def _fast_rx(self, conn: Any, data: bytes) -> bool:
        proto = conn.proto
        st = conn.state
        if (not proto.fast_ready or self.transport.stopping
                or st is not None and (st.body is not None or st.streams)):
            return False
        heads = HEAD_CACHE
        config = self.config
        app = self.app
        cache = self.heads
        out: list = []
        seq0 = seq = proto.seq_in
        n = len(data)
        pos = 0
        keep: Any = True
        while pos < n:
            hend = data.find(b"\r\n\r\n", pos)
            if hend < 0:
                break
            e = heads.get(data[pos:hend])
            if e is None or e[0] is not config:
                e = memo_head(data, pos, hend, config)
                if e is None:
                    break     # a body, an error, a closing request...: the general path's
            req = Request(e[1], e[2], e[3], e[4])
            req._split = e[5]
            req._peer = conn
            req.seq = seq
            pos = hend + 4
            mark = len(out)
            try:
                keep = render(app(req), e[6], e[7], True, out, cache)
            except Exception:
                del out[mark:]
                keep = self.failed(req, out)
            if not keep:
                # A closing answer or a stream: the protocol takes this one
                # through its general output path, from a committed state.
                proto.answered_inline(seq - seq0, out[:mark])
                proto.accept_inline()
                self.deliver(conn, req, out[mark:], keep)
                self._fast_rest(conn, data, pos)
                return True
            seq += 1
        if seq == seq0:
            return False      # nothing answered: the read goes to the general path as it is
        proto.answered_inline(seq - seq0, out)
        if pos < n:
            events = proto.receive(data[pos:] if pos else data)
            if events:
                self.on_events(conn, events)
        return True

    def _fast_rest(self, conn: Any, data: bytes, pos: int) -> None:
        """The rest of a read after a fast-path answer the general path took over."""
        proto = conn.proto
        rest = data[pos:]
        if proto.reading:
            if rest:
                events = proto.receive(rest)
                if events:
                    self.on_events(conn, events)
            return
        # the connection closes: what follows counts as unread input unless
        # it is only the empty lines receive() would have skipped
        while rest[:2] == b"\r\n":
            rest = rest[2:]
        if rest:
            proto.linger = True

    # ------------------------------------------------------------ general path
    def call(self, conn: Any, req: Request, parts: list) -> Any:
        try:
            result = self.app(req)
            # read `stopping` after the handler: a shutdown may have begun meanwhile
            keep = render(result, req.method == "HEAD", req.http_version == "1.1",
                          req.keep_alive and not self.transport.stopping, parts, self.heads)
        except Exception:
            del parts[:]
            keep = self.failed(req, parts)
        if self.timing:
            self._log(req, parts)
        return keep

    def _log(self, req: Request, parts: list) -> None:
        if not parts:
            return
        try:
            status = parts[0][9:12].decode("ascii")
        except Exception:  # pragma: no cover
            status = "-"
        log_access(req.client, req.method, req.target.decode("latin-1"), req.http_version, status,
                   sum(len(p) for p in parts[1:]), getattr(req, "start", 0.0))

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
        if not self.threads and not self.timing:
            self.fast_rx = self.fast_path

    def describe(self) -> str:
        return f"native interface, {self.threads} handler threads" if self.threads else "native interface"

    # ------------------------------------------------------------ fast path
    def answer_head(self, conn: Any, e: tuple, seq: int, out: list) -> Any:
        req = Request(e[1], e[2], e[3], e[4])
        req._split = e[5]
        req._peer = conn
        req.seq = seq
        mark = len(out)
        try:
            return render(self.app(req), e[6], e[7], True, out, self.heads)
        except Exception:
            del out[mark:]
            return self.failed(req, out)

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

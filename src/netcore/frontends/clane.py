"""The C lane (netcore._http.Lane): one server's per-request path in C.

For the plain case (a keep-alive connection with nothing in progress,
complete requests without a body) the lane parses the requests of a read
in C, hands each application a C Request (a netcore.Request subclass with
lazy fields), renders a native handler's result or a WSGI list result in C
(ASGI: builds the scope, the cycle runs as ever), and sends the answers of
the read at once; the only Python run per request is the application.
Everything else (bodies, errors, closing requests, streams, unusual
results) goes to the Python path, which stays the reference: the lane
either produces the same bytes or leaves the decision to it.

install() gives the lane the pieces of the transport, the protocol and the
dispatcher it works with; the lane reads their state at their __slots__
offsets and calls their Python methods for everything it does not do.
``c_fastpath=False`` (``--no-c-fastpath``, ``NETCORE_C_FASTPATH=0``) keeps
the pure-Python path.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

from .. import iocore
from ..http import transport as _transport
from ..http.protocol import IDLE, Protocol
from ..http.request import Request
from ..http.response import _REASONS, STREAM_WINDOW, Response, render
from ..http.transport import Connection
from .blocking import ConnState

try:
    from .. import _http
except ImportError:  # pragma: no cover (extension not built)
    _http = None

NATIVE, WSGI, ASGI = (_http.LANE_NATIVE, _http.LANE_WSGI, _http.LANE_ASGI) if _http else (0, 1, 2)

_ready = False


def available(config: Any, pooled: bool = False) -> bool:
    """The lane serves one I/O thread: its scratch state (output buffer,
    cached clocks, the read it declined) is per lane, so with --io-threads
    above 1 every completion takes the Python path.  ``pooled`` (WSGI on a
    pool): pool threads call the lane too, which only the GIL makes safe,
    so a free-threaded build keeps the Python path there."""
    if pooled and not getattr(sys, "_is_gil_enabled", lambda: True)():
        return False
    return _http is not None and config.c_fastpath and config.io_threads == 1


def _setup() -> None:
    global _ready
    if not _ready:
        _http.setup_request(Request)
        _http.setup_render(_REASONS)
        from .wsgi import _Call
        _http.setup_wsgi(_Call, STREAM_WINDOW)
        _ready = True


def install(dispatcher: Any, transport: Any, mode: int, **extra: Any) -> Optional[Any]:
    """Put a lane on ``transport`` for ``dispatcher``: its fast_rx becomes
    the lane's, and the transport's dispatch() the lane's."""
    _setup()
    cfg = transport.config
    parts = dict(
        transport=transport, dispatcher=dispatcher, app=dispatcher.app,
        q_send=transport._q_send, q_recv=transport._q_recv, heads=transport.heads,
        handle_rx=transport.handle_rx, handle_tx=transport.handle_tx,
        dispatch=type(transport).dispatch, internal_error=transport.internal_error,
        after_rx=transport.after_rx, client=Connection.client.fget,
        answered_inline=Protocol.answered_inline, accept_inline=Protocol.accept_inline,
        render=render, lane_failed=getattr(dispatcher, "lane_failed", None),
        lane_finish=getattr(dispatcher, "lane_finish", None),
        lane_rest=dispatcher.lane_rest,
        Connection=Connection, Protocol=Protocol, ConnState=ConnState, Response=Response,
        IDLE=IDLE, RECV=iocore.RECV, SEND=iocore.SEND,
        MAX_PENDING_SENDS=_transport.MAX_PENDING_SENDS, MAX_INFLIGHT=_transport.MAX_INFLIGHT,
        timeout_keep_alive=float(cfg.timeout_keep_alive), write_probe=float(transport._write_probe),
        max_request_line=cfg.max_request_line, max_header_bytes=cfg.max_header_bytes,
        max_header_count=cfg.max_header_count, max_body_bytes=cfg.max_body_bytes,
        **extra)
    lane = dispatcher.lane = _http.Lane(mode, parts)
    dispatcher.fast_rx = lane.fast_rx
    transport.dispatch = lane.dispatch
    return lane

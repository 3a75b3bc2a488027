"""netcore.iocore: the completion-queue core.

One uniform completion queue over the platform's event model (epoll or
io_uring on Linux, IOCP on Windows).  Start operations on a Queue, then collect their
completions in batches with Queue.wait(); see iocore.pyi for the contract.
"""
from netcore._iocore import (  # noqa: F401
    ACCEPT,
    CANCELLED,
    CONNECT,
    KNOWN_BACKENDS,
    POST,
    RECV,
    RECV_MORE,
    SEND,
    SENDFILE,
    SHUTDOWN,
    TIMER,
    Handle,
    Queue,
    Timer,
    backends,
    status_name,
)

__all__ = [
    "ACCEPT", "CANCELLED", "CONNECT", "KNOWN_BACKENDS", "POST", "RECV", "RECV_MORE", "SEND",
    "SENDFILE", "SHUTDOWN", "TIMER",
    "Handle", "Queue", "Timer", "backends", "status_name",
]

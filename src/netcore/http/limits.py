"""Server configuration: limits, timeouts and switches, with their defaults.

One plain object read on the hot path (attribute access only), so it is a
__slots__ class rather than a dataclass with properties.  The CLI maps each
field to a ``--option`` and a ``NETCORE_OPTION`` environment variable, so the
names here are the public option names with dashes turned into underscores.
"""
from __future__ import annotations

from typing import Any, Optional

INTERFACES = ("auto", "native", "wsgi", "asgi")
PARSERS = ("netcore", "httptools")

# name -> (default, type, help).  The single source of truth for serve()
# keyword arguments and CLI options.
OPTIONS: dict[str, tuple[Any, type, str]] = {
    "host": ("127.0.0.1", str, "address to bind"),
    "port": (8000, int, "port to bind (0 picks a free one)"),
    "workers": (1, int, "worker processes (SO_REUSEPORT listener each on Linux)"),
    "reuse_port": (True, bool, "with workers > 1: a SO_REUSEPORT listener per worker where the OS "
                               "has it; off: the supervisor shares one listening socket"),
    "worker_start": ("auto", str, "how workers start: fork, spawn, or auto (fork where the OS has it)"),
    "io_threads": (1, int, "I/O threads waiting on the one completion queue (native and WSGI; under "
                           "the GIL they overlap system calls only: --workers is how to use cores)"),
    "threads": (None, int, "run the application on a pool of N threads (0: on the I/O thread; "
                           "default: 0 for native, 4 per core up to 32 for wsgi)"),
    "backend": ("auto", str, "completion backend: auto, epoll, uring (Linux), poll (POSIX) or iocp (Windows)"),
    "interface": ("auto", str, "application interface: auto (by the app's shape), native, wsgi or asgi"),
    "lifespan": ("auto", str, "ASGI lifespan: auto (run it if the app speaks it), on, off"),
    "root_path": ("", str, "the path prefix the application is mounted at behind a proxy "
                           "(WSGI SCRIPT_NAME, ASGI root_path)"),
    "http": ("netcore", str, "request parser: netcore (its own, with a C fast path) or httptools (llhttp)"),
    "log_level": ("info", str, "logging level: critical, error, warning, info, debug"),
    "access_log": (False, bool, "log every request to the netcore.access logger"),
    "backlog": (1024, int, "listen backlog"),
    "timeout_keep_alive": (5.0, float, "close an idle keep-alive connection after this many seconds"),
    "timeout_header_read": (10.0, float, "a request head must arrive within this many seconds of its first byte"),
    "timeout_body_read": (60.0, float, "a request body may go this many seconds without a byte arriving"),
    "min_body_rate": (1024.0, float, "after the grace period, a request body must average at least this "
                                     "many bytes per second since its head (0: no minimum)"),
    "min_body_rate_grace": (5.0, float, "seconds after a request head before min-body-rate applies"),
    "timeout_write": (30.0, float, "close a connection whose pending answer has not progressed (no send "
                                   "completed) for this many seconds (0: never)"),
    "timeout_graceful_shutdown": (10.0, float, "on SIGINT/SIGTERM, wait this long for in-flight requests"),
    "limit_concurrency": (0, int, "stop accepting at this many open connections (0: no limit)"),
    "limit_max_requests": (0, int, "a worker stops gracefully after this many requests and the supervisor "
                                   "starts a new one; a single process exits 0 (0: no limit)"),
    "limit_max_requests_jitter": (0, int, "add a random 0..N to limit-max-requests per worker, so "
                                          "workers do not all restart at once"),
    "max_request_line": (8190, int, "longest request line in bytes (414 above it)"),
    "max_header_bytes": (32768, int, "largest header section in bytes (431 above it)"),
    "max_header_count": (100, int, "most header fields in a request (431 above it)"),
    "max_body_bytes": (10 * 1024 * 1024, int, "largest request body in bytes (413 above it)"),
    "server_header": (True, bool, "send a 'Server: netcore' header"),
    "c_fastpath": (True, bool, "answer plain requests on the C lane (netcore._http); off: the "
                               "pure-Python path, the reference the lane is tested against"),
}


class Config:
    """All server settings.  Unknown keywords raise TypeError."""

    __slots__ = tuple(OPTIONS)

    host: str
    port: int
    workers: int
    reuse_port: bool
    threads: Optional[int]
    io_threads: int
    backend: str
    interface: str
    lifespan: str
    root_path: str
    http: str
    log_level: str
    access_log: bool
    backlog: int
    timeout_keep_alive: float
    timeout_header_read: float
    timeout_body_read: float
    min_body_rate: float
    min_body_rate_grace: float
    timeout_write: float
    timeout_graceful_shutdown: float
    limit_concurrency: int
    limit_max_requests: int
    limit_max_requests_jitter: int
    max_request_line: int
    max_header_bytes: int
    max_header_count: int
    max_body_bytes: int
    server_header: bool
    c_fastpath: bool

    def __init__(self, **options: Any) -> None:
        for name, (default, _type, _help) in OPTIONS.items():
            setattr(self, name, default)
        for name, value in options.items():
            if name not in OPTIONS:
                raise TypeError(f"unknown option {name!r}")
            if value is None:
                continue
            setattr(self, name, value)
        self.validate()

    def validate(self) -> None:
        if self.interface not in INTERFACES:
            raise ValueError(f"unknown interface {self.interface!r} (expected one of {', '.join(INTERFACES)})")
        for name in ("workers", "io_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.http not in PARSERS:
            raise ValueError(f"unknown parser {self.http!r} (expected one of {', '.join(PARSERS)})")
        if self.lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be auto, on or off, not {self.lifespan!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ValueError(f"root_path must be empty or start (and not end) with '/': {self.root_path!r}")
        if self.threads is not None and self.threads < 0:
            raise ValueError("threads must be >= 0")
        for name in ("limit_concurrency", "limit_max_requests", "limit_max_requests_jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("max_request_line", "max_header_bytes", "max_header_count", "max_body_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("timeout_keep_alive", "timeout_header_read", "timeout_body_read",
                     "min_body_rate", "min_body_rate_grace", "timeout_write",
                     "timeout_graceful_shutdown"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0")

    def replace(self, **options: Any) -> "Config":
        merged = {name: getattr(self, name) for name in OPTIONS}
        merged.update(options)
        return Config(**merged)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in OPTIONS)
        return f"Config({inner})"



"""The C sources of netcore._iocore: the shared core, and each platform's
backends.  Read by setup.py and by tests/native_build.py, so a new backend
file is listed once, here."""

CORE = ["core/queue.c", "core/thread.c", "core/timers.c", "core/errors.c", "core/cursor.c",
        "core/starve.c"]

PLATFORM = {
    # stream.c does the I/O for every readiness poller (epoll.c, ...).
    "linux": ["unix/stream.c", "unix/epoll.c", "unix/uring.c", "unix/uring_ring.c",
              "unix/sock.c"],
    "windows": ["win/iocp.c", "win/sock.c"],
}

"""The C sources of netcore._iocore: the shared core, and each platform
family's backends.  Read by setup.py and by tests/native_build.py, so a new
backend file is listed once, here; no platform's backend (nor its headers)
reaches another's build."""

CORE = ["core/queue.c", "core/thread.c", "core/timers.c", "core/errors.c", "core/cursor.c",
        "core/starve.c"]

# The portable POSIX backend: readiness from poll(2); every POSIX platform
# gets it, as the fallback where no native event model is built.
POSIX_PORTABLE = ["unix/poll.c"]

# stream.c does the I/O for every readiness poller (epoll.c, poll.c, ...);
# sock.c holds the platform's socket calls.
_STREAM = ["unix/stream.c", "unix/sock.c"]

PLATFORM = {
    "linux": [*_STREAM, "unix/epoll.c", "unix/uring.c", "unix/uring_ring.c", *POSIX_PORTABLE],
    "darwin": [*_STREAM, *POSIX_PORTABLE],   # kqueue would go here
    "bsd": [*_STREAM, *POSIX_PORTABLE],      # kqueue would go here
    "posix": [*_STREAM, *POSIX_PORTABLE],    # any other POSIX system
    "windows": ["win/iocp.c", "win/sock.c"],
}


def family(platform: str) -> str:
    """The platform family of a sys.platform value."""
    if platform == "win32":
        return "windows"
    if platform.startswith("linux"):
        return "linux"
    if platform == "darwin":
        return "darwin"
    if platform.startswith(("freebsd", "openbsd", "netbsd", "dragonfly")):
        return "bsd"
    return "posix"

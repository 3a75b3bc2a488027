"""netcore: a completion-queue networking core with an HTTP/1.1 server."""
from typing import Any

__version__ = "0.1.0"

__all__ = ["Request", "Response", "serve", "__version__"]


_LAZY = ("Request", "Response", "serve", "Headers", "Config", "Server")


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import netcore.iocore` does not pull in
    # the HTTP server.
    if name in _LAZY:
        from . import http
        g = globals()
        for n in _LAZY:  # bind them all: later lookups skip this function
            g[n] = getattr(http, n)
        return g[name]
    raise AttributeError(f"module 'netcore' has no attribute {name!r}")

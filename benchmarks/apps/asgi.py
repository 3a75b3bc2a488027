"""The suite's raw ASGI 3 app (HTTP and lifespan), the same for every ASGI server."""
from __future__ import annotations

import json

from . import BODY_64K, HELLO, MESSAGE

_TEXT = [(b"content-type", b"text/plain")]
_JSON = [(b"content-type", b"application/json")]
_BINARY = [(b"content-type", b"application/octet-stream")]


def _start(status: int, kind: list, length: int) -> dict:
    return {"type": "http.response.start", "status": status,
            "headers": kind + [(b"content-length", str(length).encode())]}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/plaintext":
        body, kind, status = HELLO, _TEXT, 200
    elif path == "/json":
        body, kind, status = json.dumps(MESSAGE, separators=(",", ":")).encode(), _JSON, 200
    elif path == "/64k":
        body, kind, status = BODY_64K, _BINARY, 200
    elif path == "/upload" and scope["method"] == "POST":
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body, kind, status = str(size).encode(), _TEXT, 200
    else:
        body, kind, status = b"Not Found", _TEXT, 404
    await send(_start(status, kind, len(body)))
    await send({"type": "http.response.body", "body": body})

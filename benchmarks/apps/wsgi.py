"""The suite's raw WSGI (PEP 3333) app, the same for every WSGI server."""
from __future__ import annotations

import json

from . import BODY_64K, HELLO, MESSAGE

_TEXT = "text/plain"
_JSON = "application/json"
_BINARY = "application/octet-stream"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/plaintext":
        body, kind, status = HELLO, _TEXT, "200 OK"
    elif path == "/json":
        body, kind, status = json.dumps(MESSAGE, separators=(",", ":")).encode(), _JSON, "200 OK"
    elif path == "/64k":
        body, kind, status = BODY_64K, _BINARY, "200 OK"
    elif path == "/upload" and environ["REQUEST_METHOD"] == "POST":
        stream, size = environ["wsgi.input"], 0
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            size += len(chunk)
        body, kind, status = str(size).encode(), _TEXT, "200 OK"
    else:
        body, kind, status = b"Not Found", _TEXT, "404 Not Found"
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]

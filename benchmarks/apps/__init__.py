"""The applications every server in the suite serves.

One app per interface, each with the same routes and the same work per
request, so a row differs from another only by the server:

    GET  /plaintext   "Hello, World!" (text/plain)
    GET  /json        {"message": "Hello, World!"}, encoded per request
    GET  /64k         a 64 KiB body (the same bytes object every time)
    POST /upload      reads the whole body, answers its length in bytes

`fastapi_app` and `flask_app` are the framework rows: a JSON endpoint each.
"""
from __future__ import annotations

HELLO = b"Hello, World!"
MESSAGE = {"message": "Hello, World!"}
BODY_64K = b"x" * 65536

"""The same small application for each interface, for the reliability tests:
``/`` answers "ok" after reading the body, ``/big`` streams 64 MiB in 64 KiB
chunks, ``/sleep`` answers after 0.3 s (off the I/O thread)."""
import asyncio
import time

import netcore

CHUNK = b"b" * 65536


def _big():
    for _ in range(1024):
        yield CHUNK


def native(request):
    request.body
    if request.path == "/big":
        return netcore.Response(_big())
    if request.path == "/sleep":
        time.sleep(0.3)
    return netcore.Response(b"ok")


def wsgi(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/big":
        return _big()
    if environ["PATH_INFO"] == "/sleep":
        time.sleep(0.3)
    return [b"ok"]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/big":
        try:
            for _ in range(1024):
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        except OSError:
            return
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/sleep":
        await asyncio.sleep(0.3)
    await send({"type": "http.response.body", "body": b"ok"})

"""Peer app for uvicorn: plaintext and JSON, the minimum ASGI needs."""
import json

PLAIN_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
JSON_HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/json":
        body = json.dumps({"message": "Hello, World!"}, separators=(",", ":")).encode()
        headers = JSON_HEADERS + [(b"content-length", str(len(body)).encode())]
    else:
        body = b"Hello, World!"
        headers = PLAIN_HEADERS
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""Native handlers as WSGI and ASGI applications, for the behaviour suite.

The HTTP behaviour tests are written once, with native handlers; these
adapters let the very same handler logic run behind the WSGI and the ASGI
front ends, so every dispatcher is held to the same behaviour.  They use
only the public shapes of each interface (environ/start_response,
scope/receive/send), as an application would.
"""
from __future__ import annotations

import json
from http import HTTPStatus
from urllib.parse import quote

import netcore

_REASONS = {s.value: s.phrase for s in HTTPStatus}


def _result(result):
    """A native handler's result -> (status, [(name, value)], bytes | iterable)."""
    if isinstance(result, netcore.Response):
        headers = result.headers or ()
        headers = list(headers.items()) if hasattr(headers, "items") else list(headers)
        body = result.body
        if isinstance(body, str):
            body = body.encode()
        elif body is None:
            body = b""
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        return result.status, [(str(k), str(v)) for k, v in headers], body
    if isinstance(result, bytes):
        return 200, [], result
    if isinstance(result, str):
        return 200, [("content-type", "text/plain; charset=utf-8")], result.encode()
    if isinstance(result, (dict, list)):
        return 200, [("content-type", "application/json")], json.dumps(result).encode()
    raise TypeError(f"cannot send a {type(result).__name__}")


def _chunks(body):
    for chunk in body:
        yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)


def as_wsgi(handler):
    def app(environ, start_response):
        target = quote(environ["PATH_INFO"].encode("latin-1"), safe="/:@!$&'()*+,;=-._~%")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        headers = []
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                headers.append((key[5:].lower().replace("_", "-").encode(), value.encode("latin-1")))
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                headers.append((key.lower().replace("_", "-").encode(), value.encode("latin-1")))
        req = netcore.Request(environ["REQUEST_METHOD"], target.encode("latin-1"),
                              environ["SERVER_PROTOCOL"][5:], headers, True,
                              environ["wsgi.input"].read())
        status, headers, body = _result(handler(req))
        start_response(f"{status} {_REASONS.get(status, 'Unknown')}", headers)
        if isinstance(body, bytes):
            return [body]
        return _Closing(_chunks(body), body)
    return app


class _Closing:
    """An iterable whose close() closes the handler's body (as WSGI requires)."""

    def __init__(self, it, body):
        self.it = it
        self.body = body

    def __iter__(self):
        return self.it

    def close(self):
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


def as_asgi(handler):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return    # no lifespan: the server goes on without it
        body = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.append(message["body"])
            if not message["more_body"]:
                break
        target = scope["raw_path"]
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        req = netcore.Request(scope["method"], target, scope["http_version"], scope["headers"],
                              True, b"".join(body))
        status, headers, body = _result(handler(req))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]})
        if isinstance(body, bytes):
            await send({"type": "http.response.body", "body": body})
            return
        try:
            for chunk in _chunks(body):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
    return app


def adapt(handler, interface: str):
    if interface == "wsgi":
        return as_wsgi(handler)
    if interface == "asgi":
        return as_asgi(handler)
    return handler

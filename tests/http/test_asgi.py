"""ASGI conformance, with raw ASGI applications (spec 2.4 HTTP + lifespan)."""
from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
import time

import pytest

from conftest import BodyPump, read_response, recv_until_closed

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


async def read_body(receive):
    body = []
    while True:
        m = await receive()
        assert m["type"] == "http.request"
        body.append(m["body"])
        if not m["more_body"]:
            return b"".join(body)


async def respond(send, body=b"ok", status=200, headers=()):
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


def asgi(fn):
    """An ASGI app from ``async fn(scope, receive, send)`` that ignores lifespan."""
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        await fn(scope, receive, send)
    return app


def test_scope_is_complete_and_fresh_per_request(serve_app):
    scopes = []
    fresh = []

    @asgi
    async def app(scope, receive, send):
        scopes.append(scope)
        fresh.append((dict(scope["asgi"]), list(scope["headers"]), dict(scope["state"])))
        await read_body(receive)
        scope["asgi"]["version"] = "mutated"      # must not leak into the next request
        scope["headers"].append((b"x-added", b"1"))
        scope["state"]["leak"] = True
        await respond(send)

    srv = serve_app(app, interface="asgi")
    s = srv.connect()
    target = b"/caf%C3%A9/a%2Fb?q=%C3%A9t%C3%A9&x=1"
    s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: example\r\nX-Dup: a\r\nX-Dup: b\r\n"
              b"User-Agent: Test\r\n\r\n" + GET)
    read_response(s)
    wait_for(lambda: len(scopes) == 2, what="two requests")
    sc = scopes[0]
    assert sc["type"] == "http" and sc["http_version"] == "1.1" and sc["method"] == "GET"
    assert fresh[1][0] == {"version": "3.0", "spec_version": "2.4"}
    assert sc["scheme"] == "http" and sc["root_path"] == ""
    assert sc["path"] == "/café/a/b" and sc["raw_path"] == b"/caf%C3%A9/a%2Fb"
    assert sc["query_string"] == b"q=%C3%A9t%C3%A9&x=1"
    assert sc["headers"][:4] == [(b"host", b"example"), (b"x-dup", b"a"), (b"x-dup", b"b"),
                                 (b"user-agent", b"Test")]
    assert all(k == k.lower() and isinstance(k, bytes) and isinstance(v, bytes) for k, v in sc["headers"])
    host, port = sc["client"]
    assert isinstance(host, str) and isinstance(port, int) and port == s.getsockname()[1]
    assert sc["server"] == (srv.host, srv.port)
    assert (b"x-added", b"1") not in fresh[1][1] and "leak" not in fresh[1][2]
    assert scopes[0] is not scopes[1] and scopes[0]["asgi"] is not scopes[1]["asgi"]


@pytest.mark.parametrize("sent,path", [(b"/api/items", "/api/items"), (b"/items", "/api/items")])
def test_root_path_is_included_in_path(serve_app, sent, path):
    seen = []

    @asgi
    async def app(scope, receive, send):
        seen.append((scope["root_path"], scope["path"], scope["raw_path"]))
        await respond(send)

    srv = serve_app(app, interface="asgi", root_path="/api")
    s = srv.connect()
    s.sendall(b"GET " + sent + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(s)
    assert seen == [("/api", path, sent)]


def test_large_body_arrives_in_pieces_with_flow_control(serve_app):
    proceed = threading.Event()
    first = []
    total = []

    @asgi
    async def app(scope, receive, send):
        while not proceed.is_set():              # let the client fill every buffer
            await asyncio.sleep(0.01)
        m = await receive()
        first.append(len(m["body"]))
        size = len(m["body"])
        pieces = 1
        while m["more_body"]:
            m = await receive()
            size += len(m["body"])
            pieces += 1
        total.append((size, pieces))
        await respond(send, b"%d" % size)

    srv = serve_app(app, interface="asgi")
    size = 8 * 1024 * 1024
    s = srv.connect(timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    pump = BodyPump(s, size)
    # the client stalls: the server stopped reading what the app does not take
    assert pump.stalled(), "the server read the whole body although the app read nothing"
    proceed.set()
    pump.join()
    resp, body, _ = read_response(s, timeout=20)
    assert body == b"%d" % size and total[0][0] == size
    assert first[0] <= 512 * 1024, f"{first[0]} body bytes were buffered for the app"
    assert total[0][1] > 1, "the body was not delivered in pieces"


def test_disconnect_reaches_a_waiting_receive(serve_app):
    got = []

    @asgi
    async def app(scope, receive, send):
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"streaming", "more_body": True})
        got.append(await receive())              # waits until the client goes away

    srv = serve_app(app, interface="asgi")
    s = srv.connect()
    s.sendall(GET)
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    s.close()
    wait_for(lambda: got, what="http.disconnect")
    assert got == [{"type": "http.disconnect"}]


def test_receive_after_a_complete_response_is_a_disconnect(serve_app):
    got = []

    @asgi
    async def app(scope, receive, send):
        await read_body(receive)
        await respond(send)
        got.append(await receive())

    srv = serve_app(app, interface="asgi")
    s = srv.connect()
    s.sendall(GET)
    read_response(s)
    wait_for(lambda: got)
    assert got == [{"type": "http.disconnect"}]


def test_send_after_the_client_went_away_raises_oserror(serve_app):
    errors = []

    @asgi
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(10000):
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                await asyncio.sleep(0.001)
        except Exception as exc:
            errors.append(exc)

    srv = serve_app(app, interface="asgi")
    s = srv.connect()
    s.sendall(GET)
    s.recv(1000)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    wait_for(lambda: errors, timeout=10, what="send() to fail")
    assert isinstance(errors[0], OSError), errors


def test_protocol_misuse_raises_clear_errors(serve_app):
    errors = {}

    @asgi
    async def app(scope, receive, send):
        path = scope["path"]
        if path == "/twice":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            try:
                await send({"type": "http.response.start", "status": 200, "headers": []})
            except RuntimeError as exc:
                errors[path] = exc
            await send({"type": "http.response.body", "body": b"one"})
        elif path == "/after":
            await respond(send, b"done")
            try:
                await send({"type": "http.response.body", "body": b"more"})
            except RuntimeError as exc:
                errors[path] = exc
        elif path == "/str":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            try:
                await send({"type": "http.response.body", "body": "text"})
            except TypeError as exc:
                errors[path] = exc
            await send({"type": "http.response.body", "body": b"bytes"})

    srv = serve_app(app, interface="asgi")
    for path, body in (("/twice", b"one"), ("/after", b"done"), ("/str", b"bytes")):
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        assert r.status == 200 and r.read() == body
        c.close()
    assert "twice" in str(errors["/twice"]) and "complete" in str(errors["/after"])
    assert "bytes" in str(errors["/str"])


@pytest.mark.parametrize("path", ["/raise", "/return"])
def test_app_failing_before_its_response_gets_a_500(serve_app, caplog, path):
    @asgi
    async def app(scope, receive, send):
        if scope["path"] == "/raise":
            raise ValueError("app bug")

    srv = serve_app(app, interface="asgi")
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    assert r.status == 500
    r.read()
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert records and ("app bug" in str(records[0].exc_info) or "without" in records[0].getMessage())


def test_headers_that_cannot_be_sent_get_a_500(serve_app, caplog):
    # (the answer was marked complete before its head was built, so the
    # request was never answered and the connection hung)
    @asgi
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nb")]})
        await send({"type": "http.response.body", "body": b"never"})

    srv = serve_app(app, interface="asgi")
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    out = recv_until_closed(s)
    assert out.startswith(b"HTTP/1.1 500 ") and b"never" not in out
    assert any("invalid header value" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_shutdown_delivers_disconnect_to_endless_streams(serve_app):
    ended = []

    @asgi
    async def app(scope, receive, send):
        await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"event\n", "more_body": True})
        ended.append(await receive())         # an SSE stream: until the client (or server) goes
        await send({"type": "http.response.body", "body": b"bye\n"})

    srv = serve_app(app, interface="asgi")
    s = srv.connect()
    s.sendall(GET)
    assert b"event" in s.recv(65536)
    srv.server.stop()
    srv.thread.join(10)
    assert not srv.thread.is_alive(), "the server did not stop"
    assert ended == [{"type": "http.disconnect"}]
    assert b"bye" in recv_until_closed(s)


def test_fifty_sleeping_requests_run_concurrently_on_one_connection_each(serve_app):
    @asgi
    async def app(scope, receive, send):
        await asyncio.sleep(0.3)
        await respond(send, b"slept")

    srv = serve_app(app, interface="asgi")
    socks = [srv.connect(timeout=10) for _ in range(50)]
    start = time.monotonic()
    for s in socks:
        s.sendall(GET)
    for s in socks:
        resp, body, _ = read_response(s, timeout=10)
        assert body == b"slept"
    assert time.monotonic() - start < 3.0


# ---------------------------------------------------------------- lifespan

def lifespan_app(startup="complete", shutdown_log=None):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            if startup == "raise":
                raise RuntimeError("no lifespan here")
            if startup == "failed":
                await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
                return
            scope["state"]["db"] = {"connected": True}
            scope["state"]["counter"] = 0
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            if shutdown_log is not None:
                shutdown_log.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        state["counter"] += 1          # top-level: per request (a shallow copy)
        state["db"].setdefault("seen", 0)
        state["db"]["seen"] += 1       # nested: shared
        await respond(send, b"%d %d" % (state["counter"], state["db"]["seen"]))
    return app


def test_lifespan_startup_state_and_shutdown(serve_app):
    log = []
    srv = serve_app(lifespan_app(shutdown_log=log), interface="asgi", lifespan="on")
    s = srv.connect()
    s.sendall(GET + GET)
    _, body1, rest = read_response(s)
    _, body2, _ = read_response(s, bytearray(rest))
    assert (body1, body2) == (b"1 1", b"1 2")       # shallow copy per request
    srv.stop()
    assert log == ["shutdown"]


def test_lifespan_raising_is_tolerated_in_auto(serve_app):
    srv = serve_app(lifespan_app(startup="raise"), interface="asgi", lifespan="auto")
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.status == 500   # the app needs its state; the server serves nonetheless
    r.read()


@pytest.mark.parametrize("startup,mode", [("failed", "auto"), ("failed", "on"), ("raise", "on")])
def test_lifespan_startup_failure_stops_the_server(startup, mode):
    from netcore.frontends.lifespan import StartupFailed
    from netcore.http import Server
    server = Server(lifespan_app(startup=startup), port=0, interface="asgi", lifespan=mode)
    server.listen()
    with pytest.raises(StartupFailed, match="database unreachable" if startup == "failed" else "no lifespan"):
        server.run()
    assert server.q.closed

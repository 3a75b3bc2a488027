"""HTTP/1.1 connection behaviour with real clients (RFC 9112)."""
from __future__ import annotations

import asyncio
import email.utils
import http.client
import socket
import time

import h11
import pytest

import netcore
from adapters import adapt
from conftest import read_response, recv_until_closed


def hello(request):
    return netcore.Response(b"Hello, World!", headers={"content-type": "text/plain"})


def echo(request):
    return netcore.Response(request.body, headers={"x-path": request.path,
                                                   "x-method": request.method})


# ---------------------------------------------------------------- keep-alive

def test_http11_keeps_alive_by_default(serve):
    srv = serve(hello)
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"Hello, World!"
    assert r.getheader("connection") is None
    sock = c.sock
    c.request("GET", "/")
    r = c.getresponse()
    assert r.read() == b"Hello, World!"
    assert c.sock is sock, "http.client had to reconnect: the server closed a 1.1 connection"
    c.close()


def test_http10_closes_by_default(serve):
    srv = serve(hello)
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = recv_until_closed(s)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in data.lower()
    assert data.endswith(b"\r\n\r\nHello, World!")


def test_http10_keep_alive_when_asked(serve):
    srv = serve(hello)
    s = srv.connect()
    for _ in range(2):
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp, body, _ = read_response(s)
        assert resp.status_code == 200 and body == b"Hello, World!"
        assert (b"connection", b"keep-alive") in [(k, v.lower()) for k, v in resp.headers]
    s.close()


def test_connection_close_honoured(serve):
    srv = serve(hello)
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = recv_until_closed(s)
    assert data.count(b"HTTP/1.1 200") == 1
    assert b"connection: close" in data.lower()


def test_requests_after_connection_close_are_ignored(serve):
    srv = serve(echo)
    s = srv.connect()
    s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
              b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_until_closed(s)
    assert data.count(b"HTTP/1.1 ") == 1 and b"x-path: /a" in data


def test_strict_client_h11_keep_alive_cycle(serve):
    srv = serve(echo)
    s = srv.connect()
    conn = h11.Connection(h11.CLIENT)
    for i in range(3):
        body = b"x" * i
        s.sendall(conn.send(h11.Request(method="POST", target=f"/p{i}",
                                        headers=[("Host", "t"), ("Content-Length", str(len(body)))])))
        s.sendall(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        got = b""
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(s.recv(65536))
            elif isinstance(ev, h11.Response):
                assert ev.status_code == 200
                assert (b"x-path", f"/p{i}".encode()) in list(ev.headers)
            elif isinstance(ev, h11.Data):
                got += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                break
        assert got == body
        conn.start_next_cycle()
    s.close()


# ---------------------------------------------------------------- pipelining

class CountingSends:
    """Counts a server's q.send calls: its flush, wrapped, plus those its C
    lane makes (which sends a read's answers without flush)."""

    def __init__(self, server):
        self._flushes = 0
        self._lane = server.dispatcher.lane
        self._lane0 = self._lane.stats()["sends"] if self._lane else 0
        orig = server.flush

        def flush(conn, *args, **kwargs):
            self._flushes += 1
            orig(conn, *args, **kwargs)
        server.flush = flush

    @property
    def calls(self):
        lane = self._lane.stats()["sends"] - self._lane0 if self._lane else 0
        return self._flushes + lane


def test_pipelined_requests_answered_in_order_in_one_send(serve):
    srv = serve(echo)
    counter = CountingSends(srv.server)
    # flush is looked up as an attribute per call, so the wrapper is used
    s = srv.connect()
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(16))
    s.sendall(reqs)
    buf = b""
    s.settimeout(5)
    while buf.count(b"HTTP/1.1 200") < 16 or not buf.endswith(b"\r\n\r\n"):
        buf += s.recv(65536)
    paths = [int(line.split(b"/")[1]) for line in buf.split(b"\r\n") if line.startswith(b"x-path:")]
    assert paths == list(range(16))
    assert counter.calls == 1


def test_pipelined_mixed_bodies(serve):
    srv = serve(echo)
    s = srv.connect()
    s.sendall(b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
              b"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
              b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
    leftover = b""
    bodies = []
    for _ in range(3):
        resp, body, leftover = read_response(s, bytearray(leftover))
        bodies.append(body)
    assert bodies == [b"abc", b"de", b""]


def test_request_split_one_byte_per_read(serve):
    srv = serve(echo)
    s = srv.connect()
    raw = (b"POST /slow?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: v\r\n\r\n"
           b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
    for i in range(len(raw)):
        s.send(raw[i:i + 1])
        time.sleep(0.001)
    resp, body, rest = read_response(s)
    assert resp.status_code == 200 and body == b"hello world"
    resp, body, rest = read_response(s, bytearray(rest))
    assert body == b"ok" and (b"x-path", b"/two") in list(resp.headers)


# ---------------------------------------------------------------- bodies

def test_content_length_body(serve):
    srv = serve(echo)
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    payload = bytes(range(256)) * 1000
    c.request("POST", "/up", body=payload)
    r = c.getresponse()
    assert r.status == 200 and r.read() == payload


def test_chunked_request_body(serve):
    srv = serve(echo)
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("POST", "/up", body=iter([b"a" * 100, b"b" * 70000, b"c"]), encode_chunked=True,
              headers={"Transfer-Encoding": "chunked"})
    r = c.getresponse()
    assert r.read() == b"a" * 100 + b"b" * 70000 + b"c"


def test_chunked_response(serve):
    def app(request):
        return netcore.Response((b"part%d;" % i for i in range(5)), headers={"content-type": "text/plain"})
    srv = serve(app)
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    resp, body, _ = read_response(s)
    assert (b"transfer-encoding", b"chunked") in list(resp.headers)
    assert body == b"part0;part1;part2;part3;part4;"
    # http.client too, twice on one connection
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    for _ in range(2):
        c.request("GET", "/")
        assert c.getresponse().read() == b"part0;part1;part2;part3;part4;"


def test_iterable_with_content_length_is_not_chunked(serve):
    def app(request):
        return netcore.Response([b"ab", "cd"], headers={"content-length": "4"})
    srv = serve(app)
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    resp, body, _ = read_response(s)
    assert body == b"abcd" and (b"content-length", b"4") in list(resp.headers)
    assert b"transfer-encoding" not in dict(resp.headers)


def test_iterable_to_http10_is_close_delimited(serve):
    srv = serve(lambda r: netcore.Response(iter([b"x", b"y"])))
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    data = recv_until_closed(s)
    head, _, body = data.partition(b"\r\n\r\n")
    assert body == b"xy" and b"chunked" not in head and b"connection: close" in head


def test_head_has_length_and_no_body(serve):
    srv = serve(hello)
    s = srv.connect()
    s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    s.settimeout(5)
    while buf.count(b"Hello, World!") < 1:
        buf += s.recv(65536)
    first, sep, rest = buf.partition(b"\r\n\r\n")
    assert b"content-length: 13" in first
    assert rest.startswith(b"HTTP/1.1 200 OK"), "HEAD response carried a body"
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("HEAD", "/")
    r = c.getresponse()
    assert r.getheader("content-length") == "13" and r.read() == b""


def test_expect_100_continue(serve):
    srv = serve(echo)
    s = srv.connect()
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    s.settimeout(5)
    interim = s.recv(65536)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(b"hello")
    resp, body, _ = read_response(s)
    assert resp.status_code == 200 and body == b"hello"


def test_expect_100_continue_chunked_and_pipelined_order(serve):
    srv = serve(echo)
    s = srv.connect()
    s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
              b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    resp, body, rest = read_response(s)
    assert (b"x-path", b"/first") in list(resp.headers)
    s.settimeout(5)
    while len(rest) < 25:
        rest += s.recv(65536)
    assert rest.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(b"3\r\nabc\r\n0\r\n\r\n")
    resp, body, _ = read_response(s, bytearray(rest[25:]))
    assert body == b"abc"


def test_unknown_expectation_is_417(serve):
    srv = serve(echo)
    s = srv.connect()
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx")
    assert recv_until_closed(s).startswith(b"HTTP/1.1 417 ")


def test_date_and_server_headers(serve):
    srv = serve(hello)
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    assert r.getheader("server") == "netcore"
    date = email.utils.parsedate_to_datetime(r.getheader("date"))
    assert abs(date.timestamp() - time.time()) < 3
    first = r.getheader("date")
    second = srv.server.heads.second
    # the cached Date follows the clock: wait for the server's next second
    assert _wait_until(lambda: srv.server.heads.second != second, timeout=3)
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    assert r.getheader("date") != first


def test_server_header_setting_is_per_server(serve):
    # Regression: the setting once lived in a module-wide clock, so making a
    # second server with server_header=False took the header off the first.
    first = serve(hello)
    second = serve(hello, server_header=False)
    for srv, expected in ((first, "netcore"), (second, None), (first, "netcore")):
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        c.request("GET", "/")
        r = c.getresponse()
        assert r.read() == b"Hello, World!"
        assert r.getheader("server") == expected, (srv.port, r.getheaders())
        assert r.getheader("date")
        c.close()


def test_large_response_is_fully_delivered(serve):
    big = b"z" * (8 * 1024 * 1024)
    srv = serve(lambda r: big)
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    for _ in range(2):
        c.request("GET", "/")
        assert c.getresponse().read() == big


def test_half_closed_client_still_gets_answers(serve):
    srv = serve(echo, timeout_keep_alive=1)
    s = srv.connect()
    s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    data = recv_until_closed(s, timeout=5)
    assert data.count(b"HTTP/1.1 200 OK") == 2


def test_half_closed_client_is_closed_promptly(serve):
    srv = serve(echo, timeout_keep_alive=30)
    s = srv.connect()
    s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    data = recv_until_closed(s, timeout=3)
    assert data.count(b"HTTP/1.1 200 OK") == 1


def _wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def _peer_done(srv) -> bool:
    """The server has seen the client's FIN on its (only) connection."""
    return any(c.proto.close_after and not c.proto.reading for c in list(srv.server.conns))


def _answer_after_fin(interface: str, srv_box: list, seen: list):
    """An application whose answers wait until the server has seen the
    client's half-close, off the I/O thread (a pool, or awaiting), so the
    FIN arrives while answers are in progress: not a race that may be missed."""
    if interface == "asgi":
        async def app(scope, receive, send):
            await receive()
            for _ in range(1000):
                if _peer_done(srv_box[0]):
                    seen.append(scope["path"])
                    break
                await asyncio.sleep(0.005)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"r" + scope["path"].encode()})
        return app

    def handler(request):
        if _wait_until(lambda: _peer_done(srv_box[0])):
            seen.append(request.path)
        return b"r" + request.path.encode()
    return adapt(handler, interface)


@pytest.mark.parametrize("interface", ["native", "wsgi", "asgi"])
def test_half_close_after_pipelined_requests_still_gets_every_answer(serve_app, interface):
    srv_box: list = []
    seen: list = []
    srv = serve_app(_answer_after_fin(interface, srv_box, seen), interface=interface, threads=2)
    srv_box.append(srv)
    s = srv.connect()
    s.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    data = recv_until_closed(s)
    assert "/1" in seen, "the FIN did not arrive while an answer was in progress"
    assert data.count(b"HTTP/1.1 200") == 2, data
    assert data.index(b"r/1") < data.index(b"r/2")

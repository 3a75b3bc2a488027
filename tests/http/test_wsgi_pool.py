"""A long WSGI stream to a slow client costs at most its own pool thread,
and only while a window is being produced: the pool keeps serving others."""
from __future__ import annotations

import http.client
import socket
import threading
import time

from conftest import read_response, recv_until_closed


def test_slow_stream_does_not_starve_the_pool(serve_app):
    produced = [0]

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/stream":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])

            def gen():
                for _ in range(2000):           # ~128 MiB if anyone read it all
                    produced[0] += 1
                    yield b"s" * 65536
            return gen()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"quick"]

    srv = serve_app(app, interface="wsgi", threads=1)   # one thread: a stream must not keep it
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    slow.settimeout(10)
    slow.connect((srv.host, srv.port))
    slow.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert slow.recv(65536).startswith(b"HTTP/1.1 200")    # streaming, and the client stalls
    start = time.monotonic()
    for _ in range(20):
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        c.request("GET", "/quick")
        assert c.getresponse().read() == b"quick"
        c.close()
    assert time.monotonic() - start < 5
    assert produced[0] < 200, f"{produced[0]} windows produced for a client that reads nothing"
    slow.close()


def test_pipelined_requests_on_the_pool_keep_their_order(serve_app):
    def app(environ, start_response):
        delay = float(environ["QUERY_STRING"] or 0)
        time.sleep(delay)
        start_response("200 OK", [])
        return [environ["QUERY_STRING"].encode()]

    srv = serve_app(app, interface="wsgi", threads=4)
    s = srv.connect()
    s.sendall(b"".join(b"GET /?%s HTTP/1.1\r\nHost: x\r\n\r\n" % d for d in (b"0.2", b"0", b"0.1")))
    rest = bytearray()
    bodies = []
    for _ in range(3):
        _, body, left = read_response(s, rest)
        rest = bytearray(left)
        bodies.append(body)
    assert bodies == [b"0.2", b"0", b"0.1"]


def test_pooled_lane_batch_mixes_plain_written_and_streamed_answers(serve_app):
    # One read of plain GETs goes to the pool as one batch (the C lane's
    # pooled path where it is built).  Among them: write() past a window
    # (the batch so far must go out before that call waits for its client),
    # a generator (a Stream) and an application error, in order.
    big = b"w" * (256 * 1024)

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/write":
            write = start_response("200 OK", [("Content-Length", str(len(big)))])
            write(big[:100_000])
            write(big[100_000:])
            return []
        if path == "/gen":
            start_response("200 OK", [])
            return (b"g%d" % i for i in range(3))
        if path == "/boom":
            raise RuntimeError("boom")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [path.encode()]

    srv = serve_app(app, interface="wsgi", threads=2)
    s = srv.connect()
    s.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s)[1] == b"/up"      # serving: the lane (if any) is installed
    lane = srv.server.dispatcher.lane
    before = lane.stats()["pooled"] if lane is not None else 0
    paths = ["/a", "/write", "/b", "/gen", "/c"]
    s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths)
              + b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    rest = bytearray()
    got = []
    for _ in range(len(paths) + 1):
        resp, body, left = read_response(s, rest)
        rest = bytearray(left)
        got.append((resp.status_code, body))
    assert got == [(200, b"/a"), (200, big), (200, b"/b"), (200, b"g0g1g2"), (200, b"/c"),
                   (500, got[-1][1])]
    assert b"Internal Server Error" in got[-1][1]
    if lane is not None:
        assert lane.stats()["pooled"] - before == len(paths) + 1


def test_pooled_request_running_at_a_graceful_stop_is_answered_closing(serve_app):
    # The pooled lane decides keep-alive when the application returns, as
    # the general path does: a stop that began meanwhile closes after it.
    started, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        started.set()
        release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    srv = serve_app(app, interface="wsgi", threads=2)
    s = srv.connect()
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert started.wait(5)
    srv.server.stop()
    deadline = time.monotonic() + 5
    while not srv.server.stopping and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.server.stopping
    release.set()
    data = recv_until_closed(s, 5)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"done")
    assert b"connection: close" in data.lower()

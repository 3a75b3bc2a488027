"""WSGI conformance (PEP 3333), with raw WSGI applications, on the pool and
inline (``threads=0``)."""
from __future__ import annotations

import http.client
import io
import logging
import os
import sys
import threading
import time

import pytest

from netcore import iocore
from conftest import BodyPump, read_response, recv_until_closed

modes = pytest.mark.parametrize("threads", [4, 0], ids=["pool", "inline"])
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def ok(start_response, headers=()):
    start_response("200 OK", [("Content-Type", "text/plain"), *headers])


@modes
def test_environ_has_every_required_key(serve_app, threads):
    seen = []

    def app(environ, start_response):
        seen.append(dict(environ))
        ok(start_response)
        return [b"ok"]

    srv = serve_app(app, interface="wsgi", threads=threads, root_path="/mount")
    s = srv.connect()
    body = b"a=1"
    s.sendall(b"POST /mount/caf%C3%A9/x%20y?q=%C3%A9&z=2 HTTP/1.1\r\nHost: example:99\r\n"
              b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n"
              b"X-Dup: a\r\nX-Dup: b\r\nCookie: c=1\r\nCookie: d=2\r\nX_Sneaky: 1\r\n\r\n" + body)
    read_response(s)
    env = seen[0]
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == "/mount"
    assert env["PATH_INFO"] == "/café/x y".encode().decode("latin-1")   # bytes as latin-1
    assert env["QUERY_STRING"] == "q=%C3%A9&z=2"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded" and env["CONTENT_LENGTH"] == "3"
    assert env["SERVER_NAME"] == srv.host and env["SERVER_PORT"] == str(srv.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["HTTP_HOST"] == "example:99"
    assert env["HTTP_X_DUP"] == "a,b" and env["HTTP_COOKIE"] == "c=1; d=2"
    assert not any("SNEAKY" in k for k in env), "a header with '_' would spoof a CGI key"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"] == str(s.getsockname()[1])
    assert env["wsgi.version"] == (1, 0) and env["wsgi.url_scheme"] == "http"
    assert env["wsgi.errors"] is sys.stderr and env["wsgi.run_once"] is False
    assert env["wsgi.multithread"] is (threads > 0) and env["wsgi.multiprocess"] is False
    assert env["wsgi.input_terminated"] is True and callable(env["wsgi.file_wrapper"])
    assert hasattr(env["wsgi.input"], "read")


def test_path_outside_the_root_keeps_its_path_info(serve_app):
    seen = []

    def app(environ, start_response):
        seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
        ok(start_response)
        return [b""]

    srv = serve_app(app, interface="wsgi", root_path="/mount")
    s = srv.connect()
    s.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\nGET /mount HTTP/1.1\r\nHost: x\r\n\r\n")
    _, _, rest = read_response(s)
    read_response(s, bytearray(rest))
    assert seen == [("/mount", "/other"), ("/mount", "")]


@modes
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_input_reading_edge_cases(serve_app, threads, chunked):
    results = {}   # by method: on a pool the pipelined GET may run before the POST ends

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        r = {}
        r["zero"] = inp.read(0)
        r["line"] = inp.readline()
        r["limited"] = inp.readline(3)
        r["rest_of_line"] = inp.readline()
        r["lines"] = inp.readlines(1)
        r["iter"] = [line for _, line in zip(range(1), inp)]
        r["n"] = inp.read(5)
        r["big"] = inp.read(10 ** 9)
        r["after_eof"] = (inp.read(), inp.read(10), inp.readline(), inp.readlines())
        results[environ["REQUEST_METHOD"]] = r
        ok(start_response)
        return [b"done"]

    srv = serve_app(app, interface="wsgi", threads=threads)
    body = b"first line\nabcdef\nthird\nfourth\n0123456789tail"
    s = srv.connect()
    if chunked:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                           for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    else:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        payload = body
    # sent in pieces, the next request right behind the body: input stops at its end
    s.sendall(head + payload[:9])
    time.sleep(0.05)
    s.sendall(payload[9:] + GET)
    resp, got, rest = read_response(s)
    assert got == b"done"
    resp, got, _ = read_response(s, bytearray(rest))
    assert got == b"done"
    r = results["POST"]
    assert r["zero"] == b"" and r["line"] == b"first line\n"
    assert r["limited"] == b"abc" and r["rest_of_line"] == b"def\n"
    assert r["lines"] == [b"third\n"] and r["iter"] == [b"fourth\n"]
    assert r["n"] == b"01234" and r["big"] == b"56789tail"
    assert r["after_eof"] == (b"", b"", b"", [])
    assert results["GET"]["line"] == b""      # the GET: an empty input


def test_input_streams_while_the_body_arrives(serve_app):
    progress = []

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        progress.append(inp.read(4))          # arrives before the rest is even sent
        progress.append(inp.read())
        ok(start_response)
        return [b"%d" % len(progress[-1])]

    srv = serve_app(app, interface="wsgi", threads=2)
    s = srv.connect()
    first = b"head" + b"y" * (64 * 1024)        # the call starts once a first window is here
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (len(first) + 1000000)
              + first)
    wait_for(lambda: progress, what="the app to read the first bytes")
    assert progress == [b"head"]              # while most of the body is still to come
    s.sendall(b"x" * 1000000)
    _, body, _ = read_response(s, timeout=10)
    assert body == b"%d" % (len(first) - 4 + 1000000)


def test_a_trickled_body_holds_no_pool_thread(serve_app):
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        body = environ["wsgi.input"].read()
        ok(start_response)
        return [b"%d" % len(body)]

    srv = serve_app(app, interface="wsgi", threads=1)
    slow = [srv.connect() for _ in range(4)]
    for s in slow:
        s.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("GET", "/quick")                 # the one thread is free for it
    assert c.getresponse().read() == b"0" and calls == ["/quick"]
    for s in slow:
        s.sendall(b"x" * 998)
        assert read_response(s)[1] == b"1000"


def test_unread_streaming_body_is_bounded_until_the_app_reads(serve_app):
    go = threading.Event()

    def app(environ, start_response):
        go.wait(10)
        n = len(environ["wsgi.input"].read())
        ok(start_response)
        return [b"%d" % n]

    srv = serve_app(app, interface="wsgi", threads=2, max_body_bytes=64 * 1024 * 1024)
    size = 32 * 1024 * 1024
    s = srv.connect(timeout=20)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    pump = BodyPump(s, size, b"y")
    assert pump.stalled(), "the server buffered the whole body for an app that did not read"
    go.set()
    pump.join()
    _, body, _ = read_response(s, timeout=20)
    assert body == b"%d" % size


@modes
def test_start_response_exc_info(serve_app, threads):
    outcome = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/before":
            start_response("200 OK", [("X-First", "1")])
            try:
                raise ValueError("while rendering")
            except ValueError:
                start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
            return [b"replaced"]
        write = start_response("200 OK", [])
        write(b"x" * (70 * 1024))          # on the pool this sends the head
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())
            except KeyError as exc:
                outcome.append(exc)
                raise

    srv = serve_app(app, interface="wsgi", threads=threads)
    s = srv.connect()
    s.sendall(b"GET /before HTTP/1.1\r\nHost: x\r\n\r\n")
    resp, body, _ = read_response(s)
    assert resp.status_code == 503 and body == b"replaced"
    assert (b"x-second", b"1") in list(resp.headers) and (b"x-first", b"1") not in list(resp.headers)
    s2 = srv.connect()
    s2.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    data = recv_until_closed(s2)
    if threads:
        # the head was out: start_response re-raised, and the answer is cut short
        assert outcome and data.startswith(b"HTTP/1.1 200")
    else:
        # inline nothing was sent yet: the replacement is allowed, the app's raise gives a 500
        assert data.startswith(b"HTTP/1.1 500")


@modes
def test_write_callable_comes_before_the_iterable(serve_app, threads):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"x" * (100 * 1024))
        return iter([b" iterated"])

    srv = serve_app(app, interface="wsgi", threads=threads)
    s = srv.connect()
    s.sendall(GET + GET)
    resp, body, rest = read_response(s)
    assert body == b"written " + b"x" * (100 * 1024) + b" iterated"
    resp, body, _ = read_response(s, bytearray(rest))
    assert body.endswith(b" iterated")


class Result:
    """A result iterable that records its close()."""

    def __init__(self, chunks, closed, fail_after=None):
        self.chunks = chunks
        self.closed = closed
        self.fail_after = fail_after

    def __iter__(self):
        for i, c in enumerate(self.chunks):
            if i == self.fail_after:
                raise RuntimeError("generator failed")
            yield c

    def close(self):
        self.closed.set()


@modes
@pytest.mark.parametrize("case", ["normal", "error_first", "error_midway", "client_abort", "head"])
def test_close_is_always_called(serve_app, threads, case):
    closed = threading.Event()

    def app(environ, start_response):
        ok(start_response)
        if case == "error_first":
            return Result([b"a"], closed, fail_after=0)
        if case == "error_midway":
            return Result([b"a" * 65536] * 5, closed, fail_after=3)
        if case == "client_abort":
            return Result([b"b" * 65536] * 10000, closed)
        return Result([b"short"], closed)

    srv = serve_app(app, interface="wsgi", threads=threads)
    s = srv.connect()
    s.sendall((b"HEAD" if case == "head" else b"GET") + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
    if case == "client_abort":
        assert s.recv(65536)
        s.close()
    elif case == "error_first":
        assert read_response(s)[0].status_code == 500
    else:
        s.recv(65536)
    assert closed.wait(10), "close() was not called"


@modes
@pytest.mark.parametrize("backend", iocore.backends())
@pytest.mark.parametrize("declared", [True, False], ids=["length", "no-length"])
def test_file_wrapper_sends_the_file(serve_app, tmp_path, threads, backend, declared):
    data = os.urandom(300 * 1024)
    path = tmp_path / "blob"
    path.write_bytes(data)
    closed = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/next":
            ok(start_response)
            return [b"next"]
        f = open(path, "rb")
        f.seek(1000)                           # PEP 3333: from the current position
        orig = f.close
        f.close = lambda: (closed.append(1), orig())
        start_response("200 OK", [("Content-Length", str(len(data) - 1000))] if declared else [])
        return environ["wsgi.file_wrapper"](f, 32768)

    srv = serve_app(app, interface="wsgi", threads=threads, backend=backend)
    s = srv.connect()
    s.sendall(GET + b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    resp, body, rest = read_response(s, timeout=10)
    assert body == data[1000:]
    headers = dict(resp.headers)
    assert headers.get(b"content-length") == b"%d" % (len(data) - 1000) or (
        not declared and headers.get(b"transfer-encoding") == b"chunked")
    rest = bytes(rest)
    while b"\r\n\r\n" not in rest:           # the HEAD answer may come in a later read
        more = s.recv(65536)
        assert more, "closed before the HEAD answer"
        rest += more
    head, _, rest = rest.partition(b"\r\n\r\n")     # the HEAD answer: no body
    assert head.startswith(b"HTTP/1.1 200")
    _, body, _ = read_response(s, bytearray(rest), timeout=10)
    assert body == b"next"
    wait_for(lambda: len(closed) == 2, what="both files to be closed")
    # a regular file goes out by sendfile where the backend can, read otherwise
    assert (srv.server.files_sent > 0) == srv.server.q.can_sendfile


@modes
@pytest.mark.parametrize("header", ["Connection", "Transfer-Encoding", "Keep-Alive", "Upgrade"])
def test_hop_by_hop_headers_are_refused(serve_app, caplog, threads, header):
    def app(environ, start_response):
        start_response("200 OK", [(header, "x")])
        return [b"never"]

    srv = serve_app(app, interface="wsgi", threads=threads)
    s = srv.connect()
    s.sendall(GET)
    resp, body, _ = read_response(s)
    assert resp.status_code == 500 and b"never" not in body
    assert any("hop-by-hop" in str(r.exc_info) for r in caplog.records if r.exc_info)


@modes
@pytest.mark.parametrize("case", ["no_start_response", "bad_status", "str_body", "bad_headers"])
def test_application_errors_are_500(serve_app, caplog, threads, case):
    def app(environ, start_response):
        if case == "bad_status":
            start_response("OK", [])
        elif case == "bad_headers":
            start_response("200 OK", [("X", 1)])
        elif case == "str_body":
            start_response("200 OK", [])
            return iter(["text"])
        return [b"x"]

    srv = serve_app(app, interface="wsgi", threads=threads)
    s = srv.connect()
    s.sendall(GET + GET)
    for _ in range(2):
        resp, body, rest = read_response(s)
        assert resp.status_code == 500
        break
    assert any(r.levelno >= logging.ERROR for r in caplog.records)


def test_generator_may_call_start_response_late(serve_app):
    def app(environ, start_response):
        start_response("201 Created", [("X-Late", "yes")])
        yield b""
        yield b"created"

    srv = serve_app(app, interface="wsgi")
    s = srv.connect()
    s.sendall(GET)
    resp, body, _ = read_response(s)
    assert resp.status_code == 201 and body == b"created"


def test_eight_blocking_calls_run_at_once(serve_app):
    def app(environ, start_response):
        time.sleep(0.4)
        ok(start_response)
        return [b"slept"]

    srv = serve_app(app, interface="wsgi", threads=8)
    socks = [srv.connect(timeout=10) for _ in range(8)]
    start = time.monotonic()
    for s in socks:
        s.sendall(GET)
    for s in socks:
        assert read_response(s, timeout=10)[1] == b"slept"
    assert time.monotonic() - start < 1.6


def test_inline_mode_never_blocks_other_connections_while_idle(serve_app):
    def app(environ, start_response):
        ok(start_response)
        return [environ["wsgi.input"].read()]

    srv = serve_app(app, interface="wsgi", threads=0)
    slow = srv.connect()
    slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")   # never finishes
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("POST", "/", body=b"quick")
    assert c.getresponse().read() == b"quick"
    slow.sendall(b"-rest!")
    assert read_response(slow)[1] == b"half-rest!"


def test_wsgi_input_is_bytesio_like_for_small_bodies(serve_app):
    kinds = []

    def app(environ, start_response):
        kinds.append(isinstance(environ["wsgi.input"], io.BytesIO))
        ok(start_response)
        return [environ["wsgi.input"].read()]

    srv = serve_app(app, interface="wsgi", threads=2)
    s = srv.connect()
    # in one send (http.client sends the body apart, and it may then arrive
    # in a later read, which streams it)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nsmall body")
    assert read_response(s)[1] == b"small body" and kinds == [True]

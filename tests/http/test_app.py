"""The native handler interface: Request, return types, errors, threads, logs."""
from __future__ import annotations

import http.client
import json
import logging
import threading
import time

import netcore
from conftest import read_response, recv_until_closed

H = b"Host: x\r\n"


def test_request_attributes(serve_native):
    seen = {}

    def app(request):
        seen.update(method=request.method, path=request.path, raw_path=request.raw_path,
                    query_string=request.query_string, query=request.query,
                    version=request.http_version, body=request.body, client=request.client,
                    keep_alive=request.keep_alive, accept=request.headers.get("ACCEPT"),
                    cookies=request.headers.get_all("x-dup"), has=("X-Dup" in request.headers),
                    target=request.target)
        return b"ok"
    srv = serve_native(app)
    s = srv.connect()
    s.sendall(b"PUT /a%20b/c?x=1&y=2&x=3 HTTP/1.1\r\n" + H + b"Accept: text/html\r\nX-Dup: one\r\n"
              b"x-dup: two\r\nContent-Length: 4\r\n\r\nbody")
    read_response(s)
    assert seen["method"] == "PUT"
    assert seen["path"] == "/a b/c" and seen["raw_path"] == b"/a%20b/c"
    assert seen["query_string"] == "x=1&y=2&x=3" and seen["query"] == {"x": ["1", "3"], "y": ["2"]}
    assert seen["version"] == "1.1" and seen["body"] == b"body" and seen["keep_alive"] is True
    assert seen["accept"] == "text/html" and seen["cookies"] == ["one", "two"] and seen["has"]
    assert seen["client"] == s.getsockname()
    assert seen["target"] == b"/a%20b/c?x=1&y=2&x=3"


def test_absolute_form_target(serve_native):
    srv = serve_native(lambda r: r.path + "?" + r.query_string)
    s = srv.connect()
    s.sendall(b"GET http://example.com/p/q?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert read_response(s)[1] == b"/p/q?z=1"


def test_return_types(serve_native):
    routes = {
        "/bytes": b"raw",
        "/str": "caf\u00e9",
        "/dict": {"message": "Hello, World!"},
        "/list": [1, 2, "x"],
        "/resp": netcore.Response("made", status=201, headers=[("X-A", "1"), ("X-A", "2")]),
        "/empty": netcore.Response(status=204),
    }
    srv = serve_native(lambda r: routes[r.path])
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)

    def get(path):
        c.request("GET", path)
        r = c.getresponse()
        return r, r.read()
    r, body = get("/bytes")
    assert body == b"raw" and r.getheader("content-type") == "application/octet-stream"
    r, body = get("/str")
    assert body == "caf\u00e9".encode() and r.getheader("content-type") == "text/plain; charset=utf-8"
    r, body = get("/dict")
    assert json.loads(body) == {"message": "Hello, World!"} and r.getheader("content-type") == "application/json"
    r, body = get("/list")
    assert json.loads(body) == [1, 2, "x"]
    r, body = get("/resp")
    assert r.status == 201 and body == b"made" and r.headers.get_all("x-a") == ["1", "2"]
    r, body = get("/empty")
    assert r.status == 204 and body == b"" and r.getheader("content-length") is None


def test_handler_exception_is_500_and_logged(serve_native, caplog):
    def app(request):
        if request.path == "/boom":
            raise RuntimeError("kaboom")
        return b"fine"
    srv = serve_native(app)
    with caplog.at_level(logging.ERROR, logger="netcore.error"):
        s = srv.connect()
        s.sendall(b"GET /boom HTTP/1.1\r\n" + H + b"\r\n")
        data = recv_until_closed(s)
        assert data.startswith(b"HTTP/1.1 500 ")
    assert any("kaboom" in (r.exc_text or "") or (r.exc_info and "kaboom" in str(r.exc_info[1]))
               for r in caplog.records if r.name == "netcore.error")
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
    c.request("GET", "/ok")
    assert c.getresponse().read() == b"fine"


def test_bad_results_are_500(serve_native):
    results = {"/obj": object(), "/hdr": netcore.Response(b"x", headers={"x": "a\r\nInjected: 1"}),
               "/status": netcore.Response(b"x", status=42),
               "/len": netcore.Response(b"x", headers={"content-length": "5"})}
    srv = serve_native(lambda r: results[r.path])
    for path in results:
        s = srv.connect()
        s.sendall(b"GET %s HTTP/1.1\r\n" % path.encode() + H + b"\r\n")
        data = recv_until_closed(s)
        assert data.startswith(b"HTTP/1.1 500 "), path
        assert b"Injected" not in data


def test_pipelined_500_keeps_earlier_answers(serve_native):
    def app(request):
        if request.path == "/2":
            raise ValueError("no")
        return request.path
    srv = serve_native(app)
    s = srv.connect()
    s.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(4)))
    data = recv_until_closed(s)
    import re
    assert re.findall(rb"HTTP/1\.1 (\d\d\d) ", data) == [b"200", b"200", b"500"]


def test_threads_run_blocking_handlers_concurrently(serve_native):
    def app(request):
        time.sleep(0.5)
        return threading.current_thread().name
    srv = serve_native(app, threads=4)
    results = []

    def client():
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        c.request("GET", "/")
        results.append(c.getresponse().read())
    t0 = time.monotonic()
    ts = [threading.Thread(target=client) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(5)
    assert len(results) == 4 and all(r.startswith(b"netcore-handler") for r in results)
    assert time.monotonic() - t0 < 1.5


def test_threads_keep_pipeline_order(serve_native):
    def app(request):
        n = int(request.path[1:])
        time.sleep(0.05 * (5 - n))  # later requests finish first
        return request.path
    srv = serve_native(app, threads=4)
    s = srv.connect()
    s.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
    rest = b""
    bodies = []
    for _ in range(5):
        resp, body, rest = read_response(s, bytearray(rest))
        bodies.append(body)
    assert bodies == [b"/0", b"/1", b"/2", b"/3", b"/4"]


def test_threads_handler_exception(serve_native):
    def app(request):
        raise KeyError("x")
    srv = serve_native(app, threads=2)
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    assert recv_until_closed(s).startswith(b"HTTP/1.1 500 ")


def test_access_log(serve_native, caplog):
    srv = serve_native(lambda r: b"12345", access_log=True)
    with caplog.at_level(logging.INFO, logger="netcore.access"):
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        c.request("GET", "/logged?q=1")
        c.getresponse().read()
        deadline = time.monotonic() + 2
        while not [r for r in caplog.records if r.name == "netcore.access"] and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "netcore.access"]
    assert len(lines) == 1
    import re
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                        r'"GET /logged\?q=1 HTTP/1\.1" 200 5 \d+\.\d{6}', lines[0]), lines[0]


def test_access_log_off_by_default(serve_native, caplog):
    srv = serve_native(lambda r: b"x")
    with caplog.at_level(logging.INFO, logger="netcore.access"):
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=5)
        c.request("GET", "/")
        c.getresponse().read()
    assert not [r for r in caplog.records if r.name == "netcore.access"]

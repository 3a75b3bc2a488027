"""Real frameworks, unchanged, on netcore: Flask and Django over WSGI,
Starlette and FastAPI over ASGI, each serving the same routes
(tests/http/apps/*_app.py), with real HTTP clients.  The interface is
detected from each application's shape (interface auto)."""
from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import importlib
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

import pytest

from conftest import read_response

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "apps"))

FRAMEWORKS = {
    "flask": ("flask", "flask_app", "wsgi"),
    "django": ("django", "django_app", "wsgi"),
    "starlette": ("starlette", "starlette_app", "asgi"),
    "fastapi": ("fastapi", "fastapi_app", "asgi"),
}
ASGI = [name for name, (_, _, kind) in FRAMEWORKS.items() if kind == "asgi"]
WSGI = [name for name, (_, _, kind) in FRAMEWORKS.items() if kind == "wsgi"]


def load(name):
    package, module, _ = FRAMEWORKS[name]
    pytest.importorskip(package)
    if package == "fastapi" or package == "starlette":
        pytest.importorskip("multipart")   # python-multipart: forms and uploads
    return importlib.import_module(module)


@pytest.fixture(params=list(FRAMEWORKS))
def framework(request):
    return request.param


@pytest.fixture
def site(serve_app, framework):
    mod = load(framework)
    srv = serve_app(mod.app, threads=16)
    expected = FRAMEWORKS[framework][2]
    assert srv.server.dispatcher.describe().startswith(expected.upper()), "interface detection"
    srv.module = mod
    return srv


def request(srv, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def test_routing_and_json(site):
    r, data = request(site, "GET", "/hello")
    assert r.status == 200 and data == b"hello"
    r, data = request(site, "GET", "/json")
    assert r.status == 200 and r.getheader("content-type").startswith("application/json")
    assert json.loads(data) == {"message": "Hello, World!"}
    r, _ = request(site, "GET", "/no/such/route")
    assert r.status == 404


def test_path_parameters_and_utf8_query(site):
    q = urllib.parse.quote("été ☃ & more")
    r, data = request(site, "GET", f"/items/42?q={q}")
    assert r.status == 200 and json.loads(data) == {"id": 42, "q": "été ☃ & more"}


def test_urlencoded_form(site):
    body = urllib.parse.urlencode({"name": "Zoë", "city": "Zürich"}).encode()
    r, data = request(site, "POST", "/form", body,
                      {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200 and json.loads(data) == {"name": "Zoë", "city": "Zürich"}


def _multipart(fields, files):
    boundary = "netcore-boundary-7d1b"
    out = []
    for name, value in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                   .encode())
    for name, (filename, content) in files.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                   f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode())
        out.append(content)
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def test_multipart_upload_of_several_mebibytes(site):
    content = os.urandom(5 * 1024 * 1024)
    body, ctype = _multipart({"note": "a photo"}, {"file": ("photo.bin", content)})
    r, data = request(site, "POST", "/upload", body, {"Content-Type": ctype}, timeout=30)
    assert r.status == 200, data[:300]
    assert json.loads(data) == {"name": "photo.bin", "size": len(content),
                                "sha256": hashlib.sha256(content).hexdigest(), "note": "a photo"}


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_request_body_streamed(site, framing):
    pieces = [os.urandom(64 * 1024 + i) for i in range(40)]     # ~2.5 MiB
    whole = b"".join(pieces)
    c = http.client.HTTPConnection(site.host, site.port, timeout=30)
    if framing == "chunked":
        c.request("POST", "/echo", body=iter(pieces), encode_chunked=True,
                  headers={"Content-Type": "application/octet-stream"})
    else:
        c.request("POST", "/echo", body=whole, headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200, data[:300]
    assert json.loads(data) == {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}


def test_streaming_response(site):
    s = site.connect()
    s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    resp, body, _ = read_response(s)
    assert resp.status_code == 200
    assert body == "".join(f"chunk {i}\n" for i in range(20)).encode()
    headers = dict(resp.headers)
    assert headers.get(b"transfer-encoding") == b"chunked" or b"content-length" in headers


def test_several_set_cookie_headers_and_custom_headers(site):
    r, _ = request(site, "GET", "/cookies")
    cookies = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
    assert len(cookies) == 2 and cookies[0].startswith("a=1") and cookies[1].startswith("b=2")
    r, data = request(site, "GET", "/headers", headers={"X-Test": "from the client"})
    assert r.getheader("x-custom") == "custom value" and r.getheader("x-echo") == "from the client"


def test_head_has_no_body(site):
    s = site.connect()
    s.sendall(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    s.settimeout(5)
    while buf.count(b"HTTP/1.1 200") < 2:
        data = s.recv(65536)
        assert data
        buf += data
    head_response, _, rest = buf.partition(b"\r\n\r\n")
    assert head_response.startswith(b"HTTP/1.1 200")
    assert rest.startswith(b"HTTP/1.1 200"), "the HEAD answer carried a body"
    resp, body, _ = read_response(s, bytearray(rest))
    assert body == b"hello"


@pytest.mark.parametrize("path,status", [("/empty", 204), ("/notmodified", 304)])
def test_no_body_statuses(site, path, status):
    s = site.connect()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    resp, body, rest = read_response(s)
    assert resp.status_code == status and body == b""
    # the next answer follows right after the head: nothing was sent as a body
    resp, body, _ = read_response(s, bytearray(rest))
    assert resp.status_code == 200 and body == b"hello"


def test_exception_becomes_a_500_from_the_framework(site):
    r, _ = request(site, "GET", "/error")
    assert r.status == 500
    r, data = request(site, "GET", "/hello")       # and the server goes on
    assert data == b"hello"


def test_background_task_runs_after_the_response(site):
    before = len(site.module.background_done)
    r, data = request(site, "POST", "/background")
    assert r.status == 200 and data == b"scheduled"
    deadline = time.monotonic() + 5
    while len(site.module.background_done) == before:
        assert time.monotonic() < deadline, "the background task never ran"
        time.sleep(0.01)


@pytest.mark.parametrize("name", ASGI)
def test_lifespan_state_reaches_requests(serve_app, name):
    mod = load(name)
    srv = serve_app(mod.app)
    r, data = request(srv, "GET", "/state")
    assert r.status == 200 and json.loads(data) == {"started": "yes"}


@pytest.mark.parametrize("name", ASGI)
def test_fifty_concurrent_sleeps_finish_together(serve_app, name):
    mod = load(name)
    srv = serve_app(mod.app)
    request(srv, "GET", "/hello")      # warm up imports and the first request
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: request(srv, "GET", "/sleep", timeout=20), range(50)))
    elapsed = time.monotonic() - start
    assert all(r.status == 200 and d == b"slept" for r, d in results)
    # one at a time would take 15 s
    assert elapsed < 3.0, f"50 sleeps of 0.3 s took {elapsed:.2f} s"


@pytest.mark.parametrize("name", WSGI)
def test_eight_blocking_requests_share_the_pool(serve_app, name):
    mod = load(name)
    srv = serve_app(mod.app, threads=8)
    request(srv, "GET", "/hello")
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: request(srv, "GET", "/sleep", timeout=20), range(8)))
    elapsed = time.monotonic() - start
    assert all(r.status == 200 and d == b"slept" for r, d in results)
    assert elapsed < 1.5, f"8 blocking sleeps of 0.3 s on 8 threads took {elapsed:.2f} s"


@pytest.fixture
def echo_server():
    """A plain TCP line echo server on a thread, for outbound connections."""
    lst = socket.create_server(("127.0.0.1", 0))
    lst.settimeout(10)
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                conn, _ = lst.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                while not data.endswith(b"\n"):
                    piece = conn.recv(100)
                    if not piece:
                        break
                    data += piece
                conn.sendall(b"echo " + data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield lst.getsockname()[1]
    stop.set()
    lst.close()
    t.join(5)


@pytest.mark.parametrize("name", ASGI)
def test_app_opens_an_outbound_asyncio_connection(serve_app, name, echo_server):
    mod = load(name)
    srv = serve_app(mod.app)
    r, data = request(srv, "GET", f"/outbound?port={echo_server}")
    assert r.status == 200 and data == b"echo ping"

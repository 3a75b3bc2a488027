"""The C lane against the Python reference, on the wire.

Hypothesis generates pipelines of request heads and bodies (mostly valid,
some malformed: bad lines, bodies, closing requests, empty lines, a
request cut off at the end) and cuts each into a few writes.  The same
pipeline goes to three servers running the same application: one with
the C lane (the default), one without it (c_fastpath=False: the Python
fast path), and one on the general path alone (c_fastpath=False plus the
access log, which turns every fast path off).  Each connection is
half-closed after the last write and read until the server closes; the
bytes must be the same, response by response (Date lines aside).  The
application echoes what it saw of its request and answers in many shapes
(chosen by the request), including errors, closing answers and streams,
so malformed input and unusual results are decided by the reference on
all three.

NETCORE_LANE_EXAMPLES=N runs more examples (the default keeps CI fast).
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings

import netcore
from adapters import adapt
from conftest import recv_until_closed
from lane_strategies import pipelines
from netcore.http import Server

pytest.importorskip("netcore._http")

EXAMPLES = int(os.environ.get("NETCORE_LANE_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def echo(req: netcore.Request):
    text = (f"{req.method} {req.target!r} {req.http_version} {req.path!r} {req.raw_path!r} "
            f"{req.query_string!r} {sorted(req.query.items())} {req.headers.items()} "
            f"{req.keep_alive} {req.body!r} {isinstance(req, netcore.Request)}")
    shape = len(req.target) % 13
    if shape == 0:
        return netcore.Response(text.encode(), headers={"content-type": "text/plain", "x-k": "0"})
    if shape == 1:
        return text.encode()
    if shape == 2:
        return text
    if shape == 3:
        return {"echo": text, "n": len(text)}
    if shape == 4:
        return [text, 1, 2.5, None]
    if shape == 5:
        return netcore.Response(text, status=404, headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    if shape == 6:
        return netcore.Response(None, status=204)
    if shape == 7:
        return netcore.Response(text.encode(), headers={"Connection": "close"})
    if shape == 8:
        return netcore.Response(iter([b"a", text.encode(), b"b"]))
    if shape == 9:
        raise ValueError("the application failed")
    if shape == 10:
        return netcore.Response(b"x", headers={"X-Bad": "a\r\nb"})
    if shape == 11:
        return netcore.Response(text.encode() * (17000 // len(text) + 1))
    body = text.encode()
    return netcore.Response(body, status=299, headers={"Server": "custom",
                                                       "Content-Length": str(len(body))})


VARIANTS = {
    "lane": {},
    "python": {"c_fastpath": False},
    "general": {"c_fastpath": False, "access_log": True},
}


@pytest.fixture(scope="module", params=("native", "wsgi", "asgi", "wsgi-pool"))
def servers(request):
    # wsgi-pool: the pooled lane (parsed on the I/O thread, answered on the
    # pool) against the pool's general path
    interface, _, pool = request.param.partition("-")
    running = {}
    for name, options in VARIANTS.items():
        opts = dict(port=0, interface=interface, threads=2 if pool else 0, log_level="critical",
                    **options)
        if interface == "asgi":
            opts["lifespan"] = "off"
        server = Server(adapt(echo, interface), **opts)
        server.listen()
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        running[name] = (server, t)
    yield {name: server for name, (server, _t) in running.items()}
    for server, t in running.values():
        server.stop()
        t.join(10)
        assert not t.is_alive()


def exchange(addr, data: bytes, cuts: list) -> bytes:
    s = socket.create_connection(addr, timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        prev = 0
        for cut in [*cuts, len(data)]:
            s.sendall(data[prev:cut])
            prev = cut
            time.sleep(0.002)       # (makes separate reads likely; nothing depends on it)
        s.shutdown(socket.SHUT_WR)
        return recv_until_closed(s, 10)
    finally:
        s.close()


_DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")
_START = re.compile(rb"(?=HTTP/1\.1 \d\d\d )")


def responses(raw: bytes) -> list:
    return [r for r in _START.split(_DATE.sub(b"\r\ndate: -\r\n", raw)) if r]


@SETTINGS
@given(pipelines())
def test_same_bytes_with_and_without_the_lane(servers, case):
    data, cuts = case
    got = {name: responses(exchange(srv.sockname, data, cuts)) for name, srv in servers.items()}
    assert got["lane"] == got["python"], data
    assert got["python"] == got["general"], data


def test_the_lane_answers_plain_pipelines(servers):
    # not a fake fast path: plain requests (answers of shapes 0 to 5) are the lane's
    data = b"".join(b"GET /%s HTTP/1.1\r\nHost: h\r\nX-Id: %d\r\n\r\n" % (b"p" * (12 + i), i)
                    for i in range(6))
    exchange(servers["lane"].sockname, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", [])  # (started)
    lane = servers["lane"].dispatcher.lane
    assert servers["python"].dispatcher.lane is None and servers["general"].dispatcher.lane is None
    before = lane.stats()
    got = {name: responses(exchange(srv.sockname, data, [])) for name, srv in servers.items()}
    assert len(got["lane"]) == 6
    assert got["lane"] == got["python"] == got["general"]
    after = lane.stats()
    assert after["requests"] - before["requests"] == 6
    # on a pool the same six are answered there, by the lane's answer_all
    pooled = getattr(servers["lane"].dispatcher, "pool", None) is not None
    assert after["pooled"] - before["pooled"] == (6 if pooled else 0)

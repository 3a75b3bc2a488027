"""The C lane's pieces against the Python reference, one at a time
(netcore._http's probes): the C Request against parser.parse_head's
Request, and the two renderers against response.render and
WSGIDispatcher._render.  The C side either gives exactly what Python gives
or declines; the tests also check that it does not decline the plain
shapes, or the lane would be a fake fast path.
"""
from __future__ import annotations

import gc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netcore.http  # noqa: F401  (netcore.frontends needs netcore.http first)
from lane_strategies import BODIES, header_sets, request, results, targets
from netcore.http import parser
from netcore.http.limits import Config
from netcore.http.parser import HTTPError
from netcore.http.request import Request, _split_target
from netcore.http.response import HeadCache, Response, render

_http = pytest.importorskip("netcore._http")
from netcore.frontends import clane  # noqa: E402

clane._setup()
CONFIG = Config()
SMALL = Config(max_request_line=40, max_header_bytes=120, max_header_count=4, max_body_bytes=10)
HEADS = HeadCache()
SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))

ATTRS = ("method", "target", "http_version", "raw_headers", "keep_alive", "body", "path",
         "raw_path", "query_string", "query")


def c_request(data: bytes, config, peer=None, seq=3):
    end = data.index(b"\r\n\r\n")
    return _http.make_request(data, 0, end, config.max_request_line, config.max_header_bytes,
                              config.max_header_count, config.max_body_bytes, peer, seq)


def py_request(data: bytes, config):
    """parse_head's Request, or None where the lane must leave the head to
    Python (an error, a body, a closing request)."""
    end = data.index(b"\r\n\r\n")
    try:
        req, framing = parser.parse_head(data, 0, end, config)
    except HTTPError:
        return None
    if framing is not None or not req.keep_alive:
        return None
    return req


def same_request(c, p):
    for name in ATTRS:
        assert getattr(c, name) == getattr(p, name), name
    assert list(c.headers.items()) == list(p.headers.items())
    assert repr(c) == repr(p)


@SETTINGS
@given(request(), st.sampled_from([CONFIG, SMALL]))
def test_c_request_is_parse_heads_request(raw, config):
    data = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    c = c_request(data, config)
    p = py_request(data, config)
    if c is None:
        # declined: the C parser declines it, or Python finds a body, a
        # close or an error (which stays Python's to answer)
        end = data.index(b"\r\n\r\n")
        fast = _http.parse_head_fast(data, 0, end, config.max_request_line, config.max_header_bytes,
                                     config.max_header_count, config.max_body_bytes)
        assert fast is None or p is None
        return
    assert p is not None, data
    assert isinstance(c, netcore.http.Request) and type(c) is not Request
    same_request(c, p)
    assert c.seq == 3 and c.body_pending is False and c.client is None


@SETTINGS
@given(targets())
def test_path_pieces_match_split_target(target):
    c = c_request(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n", CONFIG)
    if not target.isascii():
        assert c is None          # obs-text in a target: parser.py's to refuse
        return
    assert c is not None
    raw_path, query, path = _split_target(target)
    assert (c.raw_path, c.query_string, c.path) == (raw_path, query.decode("latin-1"), path)


def test_plain_heads_are_taken():
    data = (b"GET /plaintext?a=1 HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n"
            b"Accept: */*\r\nCookie: a=b; c=d\r\nX-Request-Id: 17\r\n\r\n")
    c = c_request(data, CONFIG)
    assert c is not None
    same_request(c, py_request(data, CONFIG))


def test_rewritten_fields_take_over():
    data = b"GET /a%41?x=1 HTTP/1.1\r\nHost: h\r\nX-Y: z\r\n\r\n"
    c = c_request(data, CONFIG)
    assert c.path == "/aA"
    c.target = b"/b%42?y=2"
    assert (c.path, c.raw_path, c.query_string, c.query) == ("/bB", b"/b%42", "y=2", {"y": ["2"]})
    c.raw_headers = ((b"k", b"v"),)
    assert c.headers.get("k") == "v" and "x-y" not in c.headers
    del c.target
    with pytest.raises(AttributeError):
        c.target
    with pytest.raises(AttributeError):
        c.start          # unset slots stay unset, as on any Request
    c.start = 1.5
    assert c.start == 1.5


def test_requests_are_collected():
    class Peer:
        pass
    peer = Peer()
    c = c_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", CONFIG, peer=peer)
    peer.req = c                      # a cycle through the request's _peer slot
    c.raw_headers                     # and its lazy fields built
    del c, peer
    before = len([o for o in gc.get_objects() if type(o).__name__ == "Peer"])
    gc.collect()
    after = len([o for o in gc.get_objects() if type(o).__name__ == "Peer"])
    assert after == before - 1


# ---------------------------------------------------------------- renderers

def py_render(result, head_only, http11):
    out: list = []
    try:
        keep = render(result, head_only, http11, True, out, HEADS)
    except (TypeError, ValueError):
        return "error"
    if keep is not True:
        return "closing"
    return b"".join(out)


@SETTINGS
@given(results(), st.booleans(), st.booleans())
def test_render_native_is_responses_render(result, head_only, http11):
    c = _http.render_native(result, head_only, http11, HEADS, Response)
    if c is None:
        return
    assert c == py_render(result, head_only, http11)


def test_render_native_takes_the_plain_results():
    plain = [Response(b"Hello, World!", headers={"content-type": "text/plain"}),
             Response("caf\u00e9", status=404, headers=[("X-A", "1"), ("X-A", "2")]),
             Response(None, status=204), Response(b"x", headers={"Content-Length": " 1 "}),
             b"raw", "text", {"message": "Hello, World!"}, [1, 2.5, None, True, "s"],
             Response(b"", status=299, headers=(("Server", "me"), ("date", "now"))),
             Response(b"x" * 20000)]
    for result in plain:
        for head_only in (False, True):
            for http11 in (True, False):
                c = _http.render_native(result, head_only, http11, HEADS, Response)
                assert c is not None, result
                assert c == py_render(result, head_only, http11)


@SETTINGS
@given(st.sampled_from(["200 OK", "404 Not Found", "299 ", "204 No Content", "304 x", "199 Info",
                        "20 OK", "2000 OK", "200OK", "200 caf\u00e9", "200 \u20ac", "200 a\nb",
                        "\u0662\u0660\u0660 OK", None]),
       header_sets(), st.one_of(st.none(), st.lists(st.binary(max_size=4), max_size=2)),
       st.lists(st.one_of(st.binary(max_size=8), st.builds(bytearray, st.binary(max_size=3))),
                max_size=3).map(lambda l: l if len(l) % 2 else tuple(l)),
       st.booleans(), st.booleans())
def test_render_wsgi_is_wsgi_render(status, headers, written, result, head_only, http11):
    from netcore.frontends.wsgi import WSGIDispatcher, _Call
    d = WSGIDispatcher(lambda e, s: [], Config(threads=0))
    d.heads = HEADS
    c = _http.render_wsgi(status, headers, written, result, head_only, http11, HEADS)
    if c is None:
        return
    call = _Call(d, None, None)
    call.status_text, call.headers, call.written = status, headers, list(written or [])
    parts: list = []
    keep = d._render(head_only, http11, True, call, result, parts)
    assert keep is True
    assert c == b"".join(parts)


def test_render_wsgi_takes_the_plain_results():
    c = _http.render_wsgi("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")],
                          None, [b"Hello, World!"], False, True, HEADS)
    assert c is not None and c.endswith(b"\r\n\r\nHello, World!")


def test_the_pooled_lane_needs_the_gil(monkeypatch):
    # pool threads call the pooled lane: without a GIL it stays off
    config = Config()
    assert clane.available(config, pooled=True)
    monkeypatch.setattr(clane.sys, "_is_gil_enabled", lambda: False, raising=False)
    assert not clane.available(config, pooled=True)
    assert clane.available(config)    # the I/O thread's own lane is per thread anyway


def test_answer_all_refuses_a_lane_that_is_not_pooled(serve_app):
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"up"]

    srv = serve_app(app, interface="wsgi", threads=0)
    s = srv.connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(1000).endswith(b"up")     # serving: the lane is installed
    s.close()
    lane = srv.server.dispatcher.lane
    assert lane is not None
    with pytest.raises(RuntimeError, match="not a pooled"):
        lane.answer_all(None, [], [])

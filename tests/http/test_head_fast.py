"""The C head parser (netcore._http.parse_head_fast) against the Python one.

The contract: for any bytes, the C function either declines (None) or
returns exactly what parser._parse_fields returns for the same bytes and
config; it must never accept what Python rejects (every error status stays
Python's).  Generated well-formed heads must nearly all be handled in C, or
the fast path would be fake.
"""
from __future__ import annotations

import random

import pytest

from netcore.http import parser
from netcore.http.limits import Config
from netcore.http.parser import HTTPError, _parse_fields

_http = pytest.importorskip("netcore._http")


def fast(data, start, end, config):
    return _http.parse_head_fast(data, start, end, config.max_request_line, config.max_header_bytes,
                                 config.max_header_count, config.max_body_bytes)


DEFAULT = Config()
SMALL = Config(max_request_line=48, max_header_bytes=160, max_header_count=5, max_body_bytes=100)
CONFIGS = (DEFAULT, SMALL)

METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"M-SEARCH",
           b"PURGE", b"get", b"X!#$%&'*+.^_`|~9"]
PATH_CHARS = b"abcXYZ019-._~!$&'()*+,;=:@%/?#[]\"<>\\^`{|}"   # (a URI is ASCII)
NAMES = [b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"Transfer-Encoding",
         b"Connection", b"CONNECTION", b"Expect", b"User-Agent", b"Accept", b"X-Request-Id",
         b"Cookie", b"X!#$%&'*+.^_`|~9", b"Hostx", b"Content-Lengthx", b"Expectation"]
VALUE_CHARS = b"abcXYZ 019\t-._~!$&'()*+,;=:@%/?#[]\"<>\\^`{|}\x80\xc3\xa9\xff"
HOST_VALUES = [b"127.0.0.1", b"example.com:8080", b"[::1]:80", b"", b"a_b~c%20", b"h!$&'()*+,;="]
CONNECTION_VALUES = [b"keep-alive", b"close", b"Keep-Alive", b"CLOSE", b"upgrade, close",
                     b" keep-alive ,\tTE", b"", b",", b"closed", b"keep-alive, close", b"x\x80y"]


def reference(data: bytes, start: int, end: int, config):
    try:
        return _parse_fields(data, start, end, config)
    except HTTPError as exc:
        return exc.status


def ows(rng) -> bytes:
    return rng.choice([b"", b"", b" ", b"\t", b"  ", b" \t "])


def rand_bytes(rng, alphabet: bytes, lo: int, hi: int) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def case(rng, s: bytes) -> bytes:
    return bytes(c ^ 32 if 97 <= (c | 32) <= 122 and rng.random() < 0.3 else c for c in s)


def valid_head(rng) -> bytes:
    """A well-formed head within what the C parser claims to handle."""
    http11 = rng.random() < 0.8
    method = rng.choice(METHODS)
    target = b"/" + rand_bytes(rng, PATH_CHARS, 0, 30)
    lines = [method + b" " + target + (b" HTTP/1.1" if http11 else rng.choice([b" HTTP/1.0", b" HTTP/1.0"]))]
    fields = []
    if http11 or rng.random() < 0.3:
        fields.append(rng.choice([b"Host", b"host", b"HOST"]) + b":" + ows(rng) + rng.choice(HOST_VALUES) + ows(rng))
    body = rng.random()
    if body < 0.2:
        fields.append(case(rng, b"content-length") + b":" + ows(rng)
                      + rng.choice([b"0", b"5", b"007", b"99", b"100"]) + ows(rng))
    elif body < 0.3 and http11:
        fields.append(case(rng, b"transfer-encoding") + b":" + ows(rng) + case(rng, b"chunked") + ows(rng))
    if rng.random() < 0.2:
        fields.append(case(rng, b"expect") + b":" + ows(rng) + case(rng, b"100-continue") + ows(rng))
    for _ in range(rng.randint(0, 3)):
        fields.append(case(rng, b"connection") + b":" + ows(rng) + rng.choice(CONNECTION_VALUES) + ows(rng))
    for _ in range(rng.randint(0, 8)):
        name = rng.choice([b"User-Agent", b"Accept", b"X-Request-Id", b"Cookie", b"Hostx",
                           b"X!#$%&'*+.^_`|~9", b"Content-Lengthx", b"a"])
        fields.append(case(rng, name) + b":" + ows(rng) + rand_bytes(rng, VALUE_CHARS, 0, 40) + ows(rng))
    rng.shuffle(fields)
    return b"\r\n".join(lines + fields)


ODD = [b"\r", b"\n", b"\r\n", b"\0", b" ", b"\t", b":", b",", b"\x7f", b"\x80", b"\xff", b"\x01",
       b"\x1f", b"\r\n ", b"\r\n\t", b"\r\nHost: x", b"\r\nContent-Length: 5",
       b"\r\nContent-Length: 6", b"\r\nTransfer-Encoding: chunked", b"\r\nTransfer-Encoding: gzip",
       b"\r\nExpect: nope", b"\r\nConnection: close", b"\r\n: x", b"\r\nX : y", b"HTTP/1.1",
       b"HTTP/2.0", b"*", b"http://h/", b"CONNECT", b"OPTIONS", b"A" * 60, b"B" * 9000,
       b"\r\nX-Long: " + b"v" * 40000, b"\r\nContent-Length: 1234567890123456789",
       b"\r\nContent-Length: 0000000000000000009", b"\r\nContent-Length: 000000000000000009",
       b"\r\nContent-Length: +5", b"\r\nContent-Length: 5, 5", b"\r\nContent-Length: 5,6",
       b"\r\nHost: a b", b"\r\nHost: a/b", b"1", b"0", b"9", b"."]


def mutate(rng, head: bytes) -> bytes:
    b = bytearray(head)
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        i = rng.randint(0, len(b))
        if r < 0.3 and b:                       # flip a byte to anything
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif r < 0.75:                          # insert something suspicious
            b[i:i] = rng.choice(ODD)
        elif r < 0.85 and b:                    # delete a run
            del b[i:i + rng.randint(1, 4)]
        else:                                   # duplicate a line
            lines = bytes(b).split(b"\r\n")
            k = rng.randrange(len(lines))
            lines.insert(rng.randint(1, len(lines)), lines[k])
            b = bytearray(b"\r\n".join(lines))
    return bytes(b)


FIXED = [
    b"GET / HTTP/1.1",                                          # no Host
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: a",                    # two Hosts
    b"GET / HTTP/1.0\r\nHost: a\r\nHost: b",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0",
    b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0999999999999999999",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 000000000000000005",   # 18 digits: fine
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000000005",  # 19 digits: 400
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: ",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n folded",
    b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded: x",
    b"GET / HTTP/1.1\r\nHost : a",
    b"GET / HTTP/1.1\r\nHost:\x00a",
    b"GET / HTTP/1.1\r\nHost: a\rX: y",
    b"GET / HTTP/1.1\r\nHost: a\nX: y",
    b"GET / HTTP/1.1\r\nHost: a\r\n",
    b"GET  / HTTP/1.1\r\nHost: a",
    b"GET / HTTP/1.1 \r\nHost: a",
    b"GET /\x7f HTTP/1.1\r\nHost: a",
    b"GET / HTTP/2.0\r\nHost: a",
    b"GET / HTTP/0.9\r\nHost: a",
    b"GET / HTTP/1.10\r\nHost: a",
    b"GET / http/1.1\r\nHost: a",
    b"GET * HTTP/1.1\r\nHost: a",
    b"OPTIONS * HTTP/1.1\r\nHost: a",
    b"GET http://a/b HTTP/1.1\r\nHost: a",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a",
    b"G@T / HTTP/1.1\r\nHost: a",
    b" GET / HTTP/1.1\r\nHost: a",
    b"",
    b"GET / HTTP/1.9\r\nHost: a\r\nConnection: close",
    b"GET / HTTP/1.0\r\nConnection: keep-alive",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nExpect: 100-Continue",
    b"POST / HTTP/1.0\r\nContent-Length: 10\r\nExpect: 100-continue",
    b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: a",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 33000,
    b"GET / HTTP/1.1\r\nHost: a" + b"\r\nX: y" * 100,
    b"GET / HTTP/1.1\r\nHost: a" + b"\r\nX: y" * 99,
]


def check(data: bytes, start: int, end: int, config, stats=None) -> None:
    got = fast(data, start, end, config)
    if got is None:
        if stats is not None:
            stats[1] += 1
        return
    want = reference(data, start, end, config)
    # repr() tells True from 1 and str from bytes: the shapes must be identical
    assert repr(got) == repr(want), (data[start:end + 4], config)
    if stats is not None:
        stats[0] += 1


def test_fixed_cases():
    handled = 0
    for head in FIXED:
        data = head + b"\r\n\r\n"
        for config in CONFIGS:
            end = data.find(b"\r\n\r\n")
            got = fast(data, 0, end, config)
            want = reference(data, 0, end, config)
            if got is not None:
                handled += 1
                assert repr(got) == repr(want), head
            else:
                assert not isinstance(want, tuple) or head in NOT_FAST, (head, want)
    assert handled >= 10


# well-formed heads the C parser deliberately leaves to Python
NOT_FAST = {
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    b"OPTIONS * HTTP/1.1\r\nHost: a",
    b"GET http://a/b HTTP/1.1\r\nHost: a",
}


def test_valid_heads_are_fast_and_identical():
    rng = random.Random(20261126)
    seen = fast_ok = 0
    for i in range(6000):
        head = valid_head(rng)
        prefix = b"" if i % 3 else b"GET /prev HTTP/1.1\r\nHost: a\r\n\r\n"
        data = prefix + head + b"\r\n\r\n" + (b"" if i % 2 else b"POST /next HTTP/1.1\r\n")
        start, end = len(prefix), len(prefix) + len(head)
        assert data.find(b"\r\n\r\n", start) == end
        want = reference(data, start, end, DEFAULT)
        assert isinstance(want, tuple), (head, want)  # the generator makes only valid heads
        got = fast(data, start, end, DEFAULT)
        seen += 1
        if got is not None:
            fast_ok += 1
            assert repr(got) == repr(want), head
        check(data, start, end, SMALL)
    assert fast_ok / seen >= 0.99, (fast_ok, seen)


def test_mutated_heads_never_accepted_wrongly():
    rng = random.Random(7)
    stats = [0, 0]
    rejected_by_python = 0
    for i in range(20000):
        head = mutate(rng, valid_head(rng))
        data = head + b"\r\n\r\n"
        end = data.find(b"\r\n\r\n")      # where the server would cut the head
        start = 0
        if i % 5 == 0 and end > 0:
            start = rng.randrange(0, end + 1)  # heads starting mid-buffer
        config = CONFIGS[i % 2]
        if not isinstance(reference(data, start, end, config), tuple):
            rejected_by_python += 1
        check(data, start, end, config, stats)
    assert stats[0] > 2000 and rejected_by_python > 2000, (stats, rejected_by_python)


def test_arbitrary_bounds_decline_or_agree():
    # callers pass the first b"\r\n\r\n"; other bounds must still be safe
    rng = random.Random(3)
    for _ in range(3000):
        data = valid_head(rng) + b"\r\n\r\n" + rand_bytes(rng, b"\r\n ab:", 0, 6)
        start = rng.randint(-2, len(data) + 2)
        end = rng.randint(-2, len(data) + 2)
        got = fast(data, start, end, DEFAULT)
        if got is not None:
            assert 0 <= start <= end <= len(data) - 2
            assert repr(got) == repr(reference(data, start, end, DEFAULT))


def test_declines_unusual_arguments():
    data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    end = data.find(b"\r\n\r\n")
    assert fast(data, 0, end, DEFAULT) is not None
    assert fast(bytearray(data), 0, end, DEFAULT) is None
    assert fast(memoryview(data), 0, end, DEFAULT) is None
    assert fast(data, 0, 10 ** 30, DEFAULT) is None
    for name in ("max_request_line", "max_header_bytes", "max_header_count", "max_body_bytes"):
        for bad in (100.0, -1, 10 ** 30, "100"):     # not a plain int that fits: Python's business
            odd = Config()
            setattr(odd, name, bad)
            assert fast(data, 0, end, odd) is None
    with pytest.raises(TypeError):
        _http.parse_head_fast(data, 0, end, 1, 2, 3)


def test_parser_entry_points_use_it_transparently(monkeypatch):
    """parse_head and memo_head give the same answers with and without C."""
    rng = random.Random(11)
    heads = [valid_head(rng) for _ in range(300)] + [mutate(rng, valid_head(rng)) for _ in range(300)]

    def run():
        out = []
        for head in heads:
            data = head + b"\r\n\r\n"
            end = data.find(b"\r\n\r\n")
            try:
                req, framing = parser.parse_head(data, 0, end, DEFAULT)
                out.append((req.method, req.target, req.http_version, tuple(req.raw_headers),
                            req.keep_alive, framing))
            except HTTPError as exc:
                out.append(exc.status)
            parser.HEAD_CACHE.clear()
            e = parser.memo_head(data, 0, end, DEFAULT)
            out.append(None if e is None else repr(e[1:]))
        return out

    with_c = run()
    monkeypatch.setattr(parser, "_head_fast", None)
    assert run() == with_c
    parser.HEAD_CACHE.clear()

"""Differential fuzzing of the two request parsers (see differential.py).

Hypothesis builds request streams from parts that matter to the parsers
(methods, targets, versions, framing fields, chunked bodies with
extensions and trailers, pipelining), mutates bytes, splits the stream at
random points, and checks that netcore's parser and llhttp's agree on
every request, on where each ends and on the verdict, or differ only as
README documents.  A short run here; a long one:

    NETCORE_FUZZ_EXAMPLES=200000 .venv/bin/python -m pytest -q tests/http/test_parser_differential.py
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from differential import compare

EXAMPLES = int(os.environ.get("NETCORE_FUZZ_EXAMPLES", "300"))

METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"PATCH", b"CONNECT", b"FOO"]
TARGETS = [b"/", b"/a?b=c", b"*", b"http://h:1/p", b"/%41", b"/caf\xc3\xa9", b"abc", b"/a#f"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9", b"HTTP/1"]
FIELDS = [b"Host: x", b"Connection: close", b"Connection: keep-alive", b"Expect: 100-continue",
          b"X-A:  b  ", b"Content-Length: 3", b"Upgrade: ws", b"Connection: upgrade", b"Cookie: a=b",
          b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", b"Content-Length: 3, 3"]
EXTENSIONS = [b"", b";a=b", b'; q="x y"', b";z", b";", b' ;a', b';a="b']
ALPHABET = b"\r\n \t:;,0123456789abcdefABCDEF/HTTP\x00\x7f\xff-=\"chunked"


@st.composite
def request(draw):
    fields = draw(st.lists(st.sampled_from(FIELDS), max_size=3))
    if draw(st.booleans()):
        fields.append(b"Host: x")
    body = b""
    kind = draw(st.sampled_from(["none", "length", "chunked"]))
    if kind == "length":
        body = b"x" * draw(st.integers(0, 12))
        fields.append(b"Content-Length: %d" % len(body))
    elif kind == "chunked":
        fields.append(b"Transfer-Encoding: chunked")
        for size in draw(st.lists(st.integers(1, 6), max_size=3)):
            body += b"%x%s\r\n%s\r\n" % (size, draw(st.sampled_from(EXTENSIONS)), b"y" * size)
        body += b"0\r\n" + draw(st.sampled_from([b"", b"T: v\r\n"])) + b"\r\n"
    fields = draw(st.permutations(fields))
    line = b" ".join((draw(st.sampled_from(METHODS)), draw(st.sampled_from(TARGETS)),
                      draw(st.sampled_from(VERSIONS))))
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


@st.composite
def stream(draw):
    data = bytearray(b"".join(draw(st.lists(request(), min_size=1, max_size=3))))
    for op, where, byte in draw(st.lists(st.tuples(st.sampled_from("rdi"), st.floats(0, 1),
                                                   st.sampled_from(ALPHABET)), max_size=3)):
        if not data:
            break
        pos = min(int(where * len(data)), len(data) - 1)
        if op == "r":
            data[pos] = byte
        elif op == "d":
            del data[pos]
        else:
            data.insert(pos, byte)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=4))))
    return bytes(data), [c for c in cuts if c < len(data)]


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream())
def test_both_parsers_agree_or_differ_as_documented(case):
    data, cuts = case
    disagreement = compare(data, cuts)
    assert disagreement is None, f"{data!r} split at {cuts}:\n{disagreement}"


def test_the_documented_differences_still_exist():
    # Each README entry is real: if llhttp (or the adapter) changes, the
    # list must change with it.
    from differential import outcome
    from netcore.http.llhttp import LLHTTPProtocol
    from netcore.http.protocol import Protocol
    H = b"Host: x\r\n"
    cases = [
        b"FOO / HTTP/1.1\r\n" + H + b"\r\n",                               # methods
        b"GET / HTTP/1.2\r\n" + H + b"\r\n",                                # HTTP/1.2
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1 ;a\r\ny\r\n0\r\n\r\n",  # BWS
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1;=b\r\ny\r\n0\r\n\r\n",  # no name
    ]
    for raw in cases:
        assert outcome(Protocol, [raw]) != outcome(LLHTTPProtocol, [raw]), raw

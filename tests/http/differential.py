"""The two request parsers side by side: netcore's and llhttp's (httptools).

outcome(cls, pieces) feeds a byte stream, split into ``pieces``, to a
fresh Protocol of that class, then an EOF, and reduces what came out to
what must agree: every request (method, target, version, fields,
keep-alive, the whole body or "aborted"), the error status if one was
answered, and whether reading went on.  That covers accept/reject, the
framing (where each request and body ends) and the parsed fields.

known_difference(stream) names the documented, justified differences
(README, "The HTTP/1.1 server"): the cases where llhttp is stricter than
netcore and an adapter cannot be more lenient than its parser, or where
httptools does not report what netcore measures.

The pytest test (test_parser_differential.py) runs a short hypothesis
search; a long one:

    NETCORE_FUZZ_EXAMPLES=200000 .venv/bin/python -m pytest -q tests/http/test_parser_differential.py
"""
from __future__ import annotations

import re
from typing import Optional

from netcore.http.limits import Config
from netcore.http.llhttp import LLHTTPProtocol
from netcore.http.protocol import ABORTED, Protocol
from netcore.http.request import Request
from netcore.http.response import HeadCache

CONFIG = Config()

# llhttp's method table (llhttp/src/llhttp/constants.ts, HTTP methods for
# requests); any other token is a method for netcore
LLHTTP_METHODS = frozenset(b"""DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE
PROPFIND PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH
NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY PRI""".split())


def outcome(cls, pieces: list, config: Config = CONFIG) -> tuple:
    proto = cls(config, HeadCache())
    requests: list = []
    bodies: dict = {}
    for piece in pieces:
        _collect(proto, proto.receive(piece), requests, bodies)
    _collect(proto, proto.receive_eof(), requests, bodies)
    # the error answer, if any (it is ordered after the answers before it)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", b"".join(proto.out))
    status = next((int(s) for s in statuses if s != b"200"), None)
    reqs = tuple((r.method, r.target, r.http_version, tuple(r.raw_headers), r.keep_alive,
                  bodies.get(r.seq, r.body)) for r in requests)
    return reqs, status


_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


def _collect(proto, events: list, requests: list, bodies: dict) -> None:
    """Record the events; answer each request once its body is complete."""
    for ev in events:
        if type(ev) is Request:
            requests.append(ev)
            if ev.body_pending:
                bodies[ev.seq] = b""
            else:
                proto.write(ev.seq, [_OK], True, ev.keep_alive)
            continue
        req, data = ev
        if data is ABORTED:
            bodies[req.seq] = "aborted"
        elif data is None:
            proto.write(req.seq, [_OK], True, req.keep_alive)
        elif bodies.get(req.seq) != "aborted":
            bodies[req.seq] = bodies.get(req.seq, b"") + data


def compare(stream: bytes, cuts: list) -> Optional[str]:
    """None when both parsers agree on ``stream`` split at ``cuts`` (or
    differ as documented), else a description of the disagreement."""
    pieces = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)]) if b > a]
    a = outcome(Protocol, pieces)
    b = outcome(LLHTTPProtocol, pieces)
    if a == b or known_difference(stream, a, b):
        return None
    return f"netcore {a}\nllhttp  {b}"


def known_difference(stream: bytes, netcore: tuple, llhttp: tuple) -> Optional[str]:
    """The documented difference that explains why the outcomes of
    ``stream`` differ, or None."""
    for req in netcore[0]:
        if req[0].encode() not in LLHTTP_METHODS:
            return "llhttp knows a fixed set of methods"
    for line in _lines(stream):
        method = line.split(b" ", 1)[0]
        if method and re.fullmatch(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+", method) and method not in LLHTTP_METHODS:
            return "llhttp knows a fixed set of methods"
        if re.match(rb"\S+ +\S+ +HTTP/1\.[2-9]", line):
            return "llhttp refuses HTTP/1.2 to 1.9 (netcore reads them as 1.1)"
        if re.match(rb"\S+  +\S", line):
            return "llhttp accepts several spaces in a request line that does not begin a read"
    if re.search(rb"\r\n[0-9A-Fa-f]+(?:;[^\r\n]*)?[ \t]", stream):
        return "llhttp refuses whitespace in a chunk line (RFC 9112 7.1.1 BWS)"
    if re.search(rb"\r\n[0-9A-Fa-f]+(?:;[^\r\n]*)?;=", stream):
        return "llhttp accepts a chunk extension without a name (httptools does not report extensions)"
    if netcore[0] == llhttp[0] and netcore[1] and llhttp[1]:
        return "the same request refused for another of its faults"
    if netcore[0] == llhttp[0] and netcore[1] is None and llhttp[1] == 400 \
            and outcome(Protocol, [stream + b"\r\n\r\n"])[1] is not None:
        # the stream ended inside a head llhttp already refused (a bare CR,
        # a method its table has none beginning so); netcore refuses it once
        # the head is complete
        return "llhttp refuses some incomplete heads sooner"
    return None


def _lines(stream: bytes) -> list:
    return [ln for ln in re.split(rb"\r\n|\n", stream) if b"HTTP/" in ln]

"""Hypothesis strategies for the C lane's differential tests: request heads
(mostly well-formed, some not), bodies, pipelines cut at random points,
and the results applications return."""
from __future__ import annotations

from hypothesis import strategies as st

import netcore

METHODS = [b"GET", b"GET", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
           b"M-SEARCH", b"get", b"X!#$%&'*+.^_`|~9"]
PATH_BYTES = (b"abcXYZ019-._~!$&'()*+,;=:@/%?#[]\"<>\\^`{|}" + bytes(range(0x80, 0x100, 17))
              + b"\xc3\xa9")
HEX = b"0123456789abcdefABCDEF"
VALUE_BYTES = b"abcXYZ 019\t-._~!$&'()*+,;=:@%/?#[]\"<>\\^`{|}" + b"\x80\xc3\xa9\xff"
NAMES = [b"User-Agent", b"Accept", b"Accept-Language", b"Accept-Encoding", b"Cookie", b"cookie",
         b"X-Request-Id", b"Content-Type", b"content-length", b"X_Under", b"Referer", b"a",
         b"X!#$%&'*+.^_`|~9", b"Connection", b"Expect", b"Hostx", b"HOST"]
ODD = [b"\r", b"\n", b"\0", b" ", b"\x7f", b"\x01", b"\r\n ", b"\r\n\t", b": x", b"X : y",
       b"HTTP/2.0", b"*", b"http://h/p?q", b"\r\nTransfer-Encoding: gzip", b"\r\nHost: a b",
       b"\r\nContent-Length: 5, 5", b"\r\nContent-Length: +1", b"A" * 300]


def _pct(draw) -> bytes:
    return b"%" + bytes([draw(st.sampled_from(HEX)), draw(st.sampled_from(HEX))])


@st.composite
def targets(draw) -> bytes:
    """Origin-form targets with percent-escapes, queries, fragments, obs-text."""
    parts = [b"/"]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            parts.append(_pct(draw))
        elif kind == 1:
            parts.append(b"%" + draw(st.binary(max_size=2).filter(lambda b: b" " not in b
                                                                  and b"\r" not in b
                                                                  and b"\n" not in b
                                                                  and b"\t" not in b
                                                                  and all(0x20 < c != 0x7f
                                                                          for c in b))))
        else:
            parts.append(bytes(draw(st.lists(st.sampled_from(PATH_BYTES), max_size=8))))
    return b"".join(parts)


@st.composite
def field(draw) -> bytes:
    name = draw(st.sampled_from(NAMES))
    if draw(st.booleans()):
        name = name.swapcase()
    ows = draw(st.sampled_from([b"", b" ", b"  ", b"\t"]))
    value = bytes(draw(st.lists(st.sampled_from(VALUE_BYTES), max_size=24)))
    return name + b":" + ows + value + draw(st.sampled_from([b"", b" ", b"\t"]))


@st.composite
def request(draw) -> bytes:
    """One request: a head (valid most of the time), maybe a body."""
    method = draw(st.sampled_from(METHODS))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0"]))
    target = draw(targets())
    fields = []
    if version != b"HTTP/1.0" or draw(st.booleans()):
        fields.append(b"Host: " + draw(st.sampled_from([b"127.0.0.1", b"example.com:8080", b"h"])))
    fields += draw(st.lists(field(), max_size=7))
    body = b""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        body = draw(st.binary(max_size=40))
        fields.append(b"Content-Length: %d" % len(body))
    elif kind == 1 and version == b"HTTP/1.1":
        chunks = draw(st.lists(st.binary(min_size=1, max_size=12), max_size=3))
        fields.append(b"Transfer-Encoding: chunked")
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    elif kind == 2:
        fields.append(b"Connection: " + draw(st.sampled_from([b"close", b"keep-alive", b"Upgrade"])))
    elif kind == 3:
        fields.append(b"Content-Length: 0")
    fields = draw(st.permutations(fields))
    head = b"\r\n".join([method + b" " + target + b" " + version, *fields])
    if draw(st.integers(0, 14)) == 0:   # now and then, something malformed
        at = draw(st.integers(0, len(head)))
        head = head[:at] + draw(st.sampled_from(ODD)) + head[at:]
    return head + b"\r\n\r\n" + body


@st.composite
def pipelines(draw) -> tuple[bytes, list[int]]:
    """Requests back to back, and where the client's writes cut them."""
    data = b"".join(draw(st.lists(request(), min_size=1, max_size=5)))
    if draw(st.integers(0, 9)) == 0:
        data = b"\r\n" + data                    # an empty line before a request
    if draw(st.integers(0, 9)) == 0:
        data += draw(st.sampled_from([b"GET / HT", b"GET /x HTTP/1.1\r\nHost: h\r\n"]))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=3, unique=True)))
    return data, cuts


# ---------------------------------------------------------------- results

HEADER_NAMES = ["content-type", "Content-Type", "X-A", "x-b", "Set-Cookie", "Server", "date",
                "Content-Length", "connection", "Transfer-Encoding", "keep-alive", "Cache-Control",
                "X Bad", "X:Bad", "", "\u00e9t\u00e9", "Trailer", "te", "Upgrade", "K\u212aep-Alive"]
HEADER_VALUES = ["text/plain", "", " padded ", "a\tb", "caf\u00e9", "\u20ac", "x\r\ny", "13", " 5 ",
                 "0", "close", "Keep-Alive", "\x1c13\x1f", "1" * 20, "abc", "\x00"]


@st.composite
def header_sets(draw):
    pairs = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES)),
                          max_size=5))
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return None
    if shape == 1:
        return dict(pairs)
    if shape == 2:
        return pairs
    if shape == 3:
        return tuple(pairs)
    if shape == 4:
        return [list(p) for p in pairs]
    return [(k.encode("latin-1", "replace"), v) for k, v in pairs]


BODIES = st.one_of(st.binary(max_size=30), st.text(max_size=12), st.none(),
                   st.binary(min_size=17000, max_size=17010),
                   st.builds(bytearray, st.binary(max_size=5)),
                   st.lists(st.binary(max_size=5), max_size=3))
STATUSES = st.sampled_from([200, 200, 201, 204, 304, 404, 299, 500, 999, 1000, 199, True, "200"])
JSONABLE = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6),
                                  st.floats(allow_nan=True)),
                        lambda kids: st.one_of(st.lists(kids, max_size=3),
                                               st.dictionaries(st.text(max_size=4), kids, max_size=3)),
                        max_leaves=8)


@st.composite
def results(draw):
    kind = draw(st.integers(0, 5))
    if kind <= 2:
        headers = draw(header_sets())
        return netcore.Response(draw(BODIES), status=draw(STATUSES), headers=headers)
    if kind == 3:
        return draw(st.one_of(st.binary(max_size=20), st.text(max_size=10)))
    if kind == 4:
        return draw(JSONABLE.filter(lambda v: isinstance(v, (dict, list))))
    return draw(st.sampled_from([{1: 2}, [float("inf")], 42, None, ("t",)]))

"""The invariants the HTTP fuzz target checks (tests/fuzz/fuzz_http.py),
kept free of atheris so pytest can replay the corpus through them too.

- check_head: the C head parser (netcore._http.parse_head_fast) returns
  exactly what the Python reference (parser._parse_fields) returns, or
  declines (None); it never accepts what Python rejects.
- check_chunked_split: ChunkedReader's outcome (error status, or done, body
  and the bytes after the body) does not depend on how the bytes arrived.
- check_chunked_round_trip: a body chunked any way decodes back to itself.
"""
from __future__ import annotations

from netcore import _http
from netcore.http.limits import Config
from netcore.http.parser import ChunkedReader, HTTPError, _parse_fields

parse_head_fast = _http.parse_head_fast

CONFIGS = (
    Config(),
    Config(max_request_line=48, max_header_bytes=160, max_header_count=5, max_body_bytes=100),
    Config(max_request_line=16, max_header_bytes=24, max_header_count=2, max_body_bytes=8),
)

# Known segmentation-dependent refusals of ChunkedReader: fed in pieces it
# refuses what it accepts whole (a chunk-size line over 1024 bytes with its
# CRLF still to come; a trailer section exactly at the limit while its last
# CRLF is incomplete).  Kept as strict xfail tests in test_http_checks.py and
# skipped here so the fuzzer looks for new findings.
def check_head(data: bytes, config: Config, start: int) -> None:
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        return
    fast = parse_head_fast(data, start, end, config.max_request_line, config.max_header_bytes,
                           config.max_header_count, config.max_body_bytes)
    try:
        ref = _parse_fields(data, start, end, config)
    except HTTPError as exc:
        assert fast is None, f"C accepted what Python rejects with {exc.status}: {fast!r}"
        return
    assert fast is None or fast == ref, f"C {fast!r} != Python {ref!r}"


def decode(pieces, config: Config):
    """Feed pieces as the server does (unconsumed bytes are kept and the next
    read appended); return ("error", status, reason) or ("ok", done, body, rest)."""
    reader = ChunkedReader(config)
    buf = b""
    for i, piece in enumerate(pieces):
        buf += piece
        try:
            pos = reader.feed(buf, 0)
        except HTTPError as exc:
            return ("error", exc.status, exc.reason)
        buf = buf[pos:]
        if reader.done:
            return ("ok", True, reader.body(), buf + b"".join(pieces[i + 1:]))
    return ("ok", False, reader.body(), buf)


def check_chunked_split(data: bytes, cuts: list, config: Config) -> None:
    whole = decode([data], config)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    split = decode(pieces, config)
    assert whole == split, f"whole {whole!r} != split {split!r}"


def check_chunked_round_trip(body: bytes, sizes: list, exts: list, trailer: bytes,
                             config: Config) -> None:
    """Chunk ``body`` by ``sizes`` (cycled; extensions ``exts`` cycled too,
    b"" for none), add ``trailer`` lines, and decode it whole."""
    out, pos, i = [], 0, 0
    while pos < len(body):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(body)
        chunk = body[pos:pos + size]
        ext = exts[i % len(exts)] if exts else b""
        out.append(b"%x%s\r\n%s\r\n" % (len(chunk), ext, chunk))
        pos += size
        i += 1
    encoded = b"".join(out) + b"0\r\n" + trailer + b"\r\n"
    result = decode([encoded], config)
    if len(body) > config.max_body_bytes:
        assert result[:2] == ("error", 413), result
    elif result[0] == "ok":
        assert result == ("ok", True, body, b""), (encoded, result)
    else:  # only a trailer section over the limit may refuse it
        assert result[1] == 431 and len(trailer) > config.max_header_bytes - 2, (encoded, result)

"""The built-in load generator, both engines, against a server that counts
what it received: counts, pipelining, bodies, framing, latencies, the
fixed rate and its coordinated-omission correction."""
from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import loadgen, stats
from benchmarks.loadgen.http1 import FramingError, ResponseReader, browser_head


def run(engine, server, **load) -> loadgen.LoadResult:
    return loadgen.run(engine, loadgen.Load(**load), "127.0.0.1", server.port, timeout=60)


def test_fixed_count_matches_what_the_server_received(engine, counting_server):
    srv = counting_server()
    res = run(engine, srv, connections=4, requests=500, duration=0)
    assert res.requests == 500
    assert srv.requests == 500          # nothing sent twice, nothing lost
    assert res.errors == {}
    assert res.hist.total == 500
    assert srv.connections == 4


def test_pipelined_batches_are_counted_per_response(engine, counting_server):
    srv = counting_server()
    res = run(engine, srv, connections=3, requests=300, duration=0, depth=8)
    assert res.requests == 300
    assert srv.requests == 300
    assert res.hist.total == 300


def test_chunked_and_large_bodies_are_framed(engine, counting_server):
    srv = counting_server(body=b"y" * 70_000, chunked=True)
    res = run(engine, srv, connections=2, requests=40, duration=0, depth=2)
    assert (res.requests, srv.requests, res.errors) == (40, 40, {})
    assert res.bytes >= 40 * 70_000


def test_uploads_send_the_whole_body(engine, counting_server):
    srv = counting_server()
    res = run(engine, srv, connections=2, requests=10, duration=0, method="POST", path="/upload",
              body_bytes=100_000)
    assert (res.requests, srv.requests) == (10, 10)
    assert srv.body_bytes == 10 * 100_000


def test_duration_mode_counts_only_answered_requests(engine, counting_server):
    srv = counting_server()
    res = run(engine, srv, connections=4, duration=0.5)
    assert res.requests > 50
    # every counted response was received by the server; at most one batch
    # per connection can still be on its way when the clock stops
    assert res.requests <= srv.requests <= res.requests + 4
    assert 0.45 <= res.duration_s <= 2.0


def test_latency_reflects_a_server_delay(engine, counting_server):
    srv = counting_server()
    for n in range(1, 21):
        srv.delay(n, 0.05)  # every one of the 20 requests waits 50 ms
    res = run(engine, srv, connections=1, requests=20, duration=0)
    assert res.requests == 20
    p50 = res.hist.percentile(50)
    assert 50_000 * 0.97 <= p50 <= 50_000 + 200_000, p50   # bucket error, plus a loaded machine


def test_fixed_rate_holds_the_rate(engine, counting_server):
    srv = counting_server()
    res = run(engine, srv, connections=4, duration=1.0, rate=400)
    assert 300 <= res.requests <= 440, res.requests
    assert res.errors == {}


def test_fixed_rate_corrects_coordinated_omission(engine, counting_server):
    """A 0.5 s stall on one connection: at 200 req/s over 4 connections that
    connection owes a request every 20 ms, so some 25 requests fall due
    during the stall.  Timed from when they were due, many show a long wait;
    a generator that times from when it could send would show one."""
    srv = counting_server()
    srv.delay(40, 0.5)
    res = run(engine, srv, connections=4, duration=1.5, rate=200)
    slow = sum(n for b, n in res.hist.counts.items() if stats.bucket_range(b)[0] >= 100_000)
    assert slow >= 8, res.hist.to_pairs()
    assert res.requests >= 200


def test_browser_heads_differ_on_every_request(engine, counting_server):
    srv = counting_server()
    res = run(engine, srv, connections=2, requests=50, duration=0, heads="browser")
    assert (res.requests, srv.requests) == (50, 50)
    heads = {browser_head(i, "GET", "/", "h", 1) for i in range(1000)}
    assert len(heads) == 1000


def test_connection_refused_is_counted_not_a_hang(engine):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    res = loadgen.run(engine, loadgen.Load(connections=2, duration=0.2, connect_timeout=0.5),
                      "127.0.0.1", port, timeout=20)
    assert res.requests == 0
    assert res.errors.get("connect", 0) >= 2


def test_processes_split_the_load(counting_server):
    srv = counting_server()
    res = loadgen.run(loadgen.PYTHON_ENGINE, loadgen.Load(connections=4, requests=200, duration=0),
                      "127.0.0.1", srv.port, processes=2, timeout=60)
    assert res.processes == 2
    assert res.requests == 200 and srv.requests == 200


def test_load_split_keeps_totals():
    parts = loadgen.Load(connections=10, rate=1000.0, requests=100).split(3)
    assert [p.connections for p in parts] == [4, 3, 3]
    assert sum(p.rate for p in parts) == pytest.approx(1000.0)
    assert sum(p.requests for p in parts) == 100


def test_c_buckets_match_python(c_engine):
    if c_engine is None:
        pytest.skip("the C engine did not build here")
    out = subprocess.run(c_engine.prefix + ["mode=buckets"], capture_output=True, text=True, timeout=30)
    pairs = json.loads(out.stdout)
    assert len(pairs) > 250 and pairs[-1][0] > 50_000_000
    for value, bucket in pairs:
        assert bucket == stats.bucket_of(value), value


def test_echo_mode_checks_every_byte(engine):
    """Against an echo server that corrupts one byte in a thousand messages,
    the generator reports echo errors; against an honest one, none."""
    import socket
    import threading

    def serve(listener, corrupt):
        conn, _ = listener.accept()
        conn.settimeout(5)
        n = 0
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                n += 1
                if corrupt and n == 50:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                conn.sendall(data)

    for corrupt in (False, True):
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(10)
        t = threading.Thread(target=serve, args=(listener, corrupt), daemon=True)
        t.start()
        res = loadgen.run(engine, loadgen.Load(mode="echo", connections=1, requests=100, duration=2),
                          "127.0.0.1", listener.getsockname()[1], timeout=30)
        listener.close()
        t.join(10)
        if corrupt:
            assert res.errors.get("echo", 0) >= 1
        else:
            assert res.errors == {} and res.requests == 100


# ---------------------------------------------------------------- the reader alone

RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n"
EMPTY = b"HTTP/1.1 204 No Content\r\n\r\n"


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 64, 10_000])
def test_reader_frames_responses_split_anywhere(step):
    stream = (RESP + CHUNKED + EMPTY + b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnop") * 3
    r = ResponseReader()
    got = []
    for i in range(0, len(stream), step):
        got += r.feed(stream[i:i + step])
    assert got == [200, 201, 204, 404] * 3


def test_reader_rejects_what_it_cannot_frame():
    with pytest.raises(FramingError):
        ResponseReader().feed(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody until close")
    with pytest.raises(FramingError):
        ResponseReader().feed(b"garbage\r\n\r\n")


@pytest.mark.wine
def test_c_engine_runs_on_iocp_under_wine(tmp_path, counting_server):
    """The C engine built for Windows (mingw-w64, the core's IOCP backend)
    counts what the server received, run under Wine."""
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import native_build  # tests/native_build.py: the toolchain the Wine tests use

    if not native_build.have_mingw() or not native_build.have_wine():
        pytest.skip("needs mingw-w64 and wine64")
    engine, why = loadgen.build_c_engine(str(tmp_path), cc=native_build.MINGW_CC, windows=True)
    assert engine is not None, why
    srv = counting_server()
    wine = loadgen.Engine("c", [native_build.wine_command(), *engine.prefix])
    res = loadgen.run(wine, loadgen.Load(connections=4, requests=400, duration=30), "127.0.0.1", srv.port,
                      timeout=120)
    assert (res.requests, srv.requests, res.errors) == (400, 400, {})

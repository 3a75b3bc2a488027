"""Several I/O threads on one queue (io_threads): each waits and dispatches
handle_rx/handle_tx; the core gives a connection's completions to one thread
at a time, which is what keeps each connection's state machine safe."""
from __future__ import annotations

import concurrent.futures
import threading

import pytest

import netcore
from conftest import read_response


def echo_path(request):
    return netcore.Response(request.path.encode() + b"|" + request.body,
                            headers={"content-type": "text/plain"})


@pytest.mark.parametrize("interface,threads", [("native", 0), ("native", 4), ("wsgi", 4)])
def test_many_pipelining_clients_get_their_own_answers_in_order(serve_app, interface, threads):
    seen_threads = set()

    def native(request):
        seen_threads.add(threading.current_thread().name)
        return echo_path(request)

    def wsgi(environ, start_response):
        seen_threads.add(threading.current_thread().name)
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode() + b"|" + body]

    app = native if interface == "native" else wsgi
    srv = serve_app(app, interface=interface, threads=threads, io_threads=4)

    def client(n):
        s = srv.connect(timeout=10)
        reqs = []
        for i in range(20):
            body = b"b%d-%d" % (n, i) if i % 3 else b""
            head = b"POST /c%d/r%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (n, i, len(body))
            reqs.append(head + body)
        s.sendall(b"".join(reqs))       # all pipelined
        rest = bytearray()
        for i in range(20):
            _, body, left = read_response(s, rest, timeout=10)
            rest = bytearray(left)
            expect = b"/c%d/r%d|" % (n, i) + (b"b%d-%d" % (n, i) if i % 3 else b"")
            assert body == expect
        s.close()
        return n

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert sorted(pool.map(client, range(48))) == list(range(48))
    io = {t.name for t in threading.enumerate() if t.name.startswith("netcore-io-")}
    assert len(io) == 3          # the server's own thread plus three more
    if threads == 0:
        # inline handlers run on the I/O threads: more than one took part
        assert len(seen_threads) > 1, seen_threads


def test_io_threads_stop_with_the_server(serve_app):
    srv = serve_app(lambda r: b"ok", interface="native", io_threads=3)
    c = srv.connect()
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(c)[1] == b"ok"
    srv.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("netcore-io-") and t.is_alive()]


def test_asgi_refuses_several_io_threads():
    from netcore.http import Server

    async def app(scope, receive, send):
        pass

    with pytest.raises(ValueError, match="ASGI"):
        Server(app, port=0, interface="asgi", io_threads=2)


@pytest.mark.parametrize("interface", ["native", "wsgi"])
def test_the_c_lane_is_off_with_several_io_threads(serve_app, interface):
    """The lane's scratch state is one per server: several I/O threads
    would share it, so they all take the Python path (which they answer)."""
    def native(request):
        return b"ok"

    def wsgi(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = native if interface == "native" else wsgi
    one = serve_app(app, interface=interface, threads=0, io_threads=1)
    several = serve_app(app, interface=interface, threads=0, io_threads=2)
    for srv in (one, several):
        c = srv.connect()
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(c)[1] == b"ok"
        c.close()
    if netcore_has_lane():
        assert one.server.dispatcher.lane is not None
    assert several.server.dispatcher.lane is None


def netcore_has_lane() -> bool:
    from netcore.frontends import clane
    return clane._http is not None

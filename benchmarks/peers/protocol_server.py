"""Peer: a hand-written asyncio.Protocol HTTP server, httptools parsing.

The best a Python callback per request reaches on an event loop: httptools
parses, and on_message_complete writes a precomputed reply chosen by path
(the upload reply carries the body length it counted).  Keep-alive and
pipelining work: replies are written in order as requests complete.

    python protocol_server.py uvloop|asyncio [--port P]
Prints "READY <port>" once listening; SIGINT/SIGTERM stop it.
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import httptools

_DATE = b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"


def _reply(kind: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nServer: py\r\n" + _DATE + b"Content-Type: " + kind +
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


PLAIN = _reply(b"text/plain", b"Hello, World!")
_BY_PATH = {
    b"/plaintext": PLAIN,
    b"/json": _reply(b"application/json", b'{"message":"Hello, World!"}'),
    b"/64k": _reply(b"application/octet-stream", b"x" * 65536),
}


def reply_for(path: bytes) -> bytes:
    return _BY_PATH.get(path, PLAIN)


def upload_reply(size: int) -> bytes:
    return _reply(b"text/plain", str(size).encode())


def make_protocol():
    class Proto(asyncio.Protocol):
        __slots__ = ("transport", "parser", "url", "body")

        def connection_made(self, transport):
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.body = 0

        def data_received(self, data):
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_begin(self):
            self.url = b""
            self.body = 0

        def on_url(self, url):
            self.url += url

        def on_body(self, body):
            self.body += len(body)

        def on_message_complete(self):
            path = self.url.split(b"?", 1)[0]
            self.transport.write(upload_reply(self.body) if path == b"/upload" else reply_for(path))
            if not self.parser.should_keep_alive():
                self.transport.close()

        def connection_lost(self, exc):
            self.transport = None

    return Proto


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("loop", choices=("uvloop", "asyncio"))
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.loop == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(make_protocol(), "127.0.0.1", args.port, backlog=4096))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    loop.run_forever()
    server.close()


if __name__ == "__main__":
    main()

"""Peer: a hand-written uvloop + httptools asyncio.Protocol server.

The best a Python callback per request reaches on libuv: httptools parses,
on_message_complete writes a precomputed response.  Keep-alive and
pipelining work (responses are written in order as requests complete).
Usage: python uvloop_httptools_server.py PORT [json]
"""
import asyncio
import sys

import httptools
import uvloop

PLAIN = (b"HTTP/1.1 200 OK\r\nServer: uvloop\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
         b"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")
JSON = (b"HTTP/1.1 200 OK\r\nServer: uvloop\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
        b"Content-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"message\":\"Hello, World!\"}")


def make_protocol(response: bytes):
    class Proto(asyncio.Protocol):
        __slots__ = ("transport", "parser")

        def connection_made(self, transport):
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data):
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_message_complete(self):
            self.transport.write(response)
            if not self.parser.should_keep_alive():
                self.transport.close()

        def connection_lost(self, exc):
            self.transport = None

    return Proto


def main():
    port = int(sys.argv[1])
    response = JSON if len(sys.argv) > 2 and sys.argv[2] == "json" else PLAIN
    uvloop.install()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(make_protocol(response), "127.0.0.1", port, backlog=1024))
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()

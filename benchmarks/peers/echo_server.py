"""Echo servers for the core-level benchmark, selectable by name.

    python echo_server.py netcore|asyncio|uvloop [--backend B] [--host H] [--port P]

Prints "READY <port>" on stdout once listening, then serves until killed
(SIGTERM/SIGINT).  All three do the same work per message: take the bytes
the kernel had, write them back, keep reading.
"""
import argparse
import resource
import signal
import sys

SERVERS = ("netcore", "netcore-uring", "asyncio", "uvloop")


def raise_nofile():
    # The 1,000-connection echo scenario needs the hard limit of descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ready(port):
    print(f"READY {port}", flush=True)


def serve_netcore(host, port, backend):
    from netcore import iocore

    q = iocore.Queue(backend)
    lst = q.listen(host, port, backlog=4096)
    # The connection Handle is its own tag: no per-connection Python state.
    q.accept(lst, None)
    ready(lst.sockname[1])
    ACCEPT, RECV, RECV_MORE = iocore.ACCEPT, iocore.RECV, iocore.RECV_MORE
    wait, recv, send, close, accept = q.wait, q.recv, q.send, q.close, q.accept
    # What an asyncio Protocol gets from its loop, asked of the core: a recv
    # that stays armed (multishot: RECV_MORE per read) and sends that report
    # no completion when they go out at once (quiet), as a transport's
    # write() reports none.
    while True:
        for op, conn, status, value in wait():
            if op == RECV_MORE:
                send(conn, conn, value, quiet=True)
            elif op == RECV:
                if value:
                    # the multishot recv ended with these bytes: echo them,
                    # then arm it again (sends on a handle go out in order)
                    send(conn, conn, value, quiet=True)
                    recv(conn, conn, multishot=True)
                else:  # b"" (peer closed) or None (error)
                    close(conn)
            elif op == ACCEPT:
                accept(lst, None)
                if status == 0:
                    recv(value, value, multishot=True)
            # SEND completions (a send that had to wait) need nothing: a
            # failed send also shows up as an error or EOF on the recv.


def _protocol_class():
    import asyncio

    class Echo(asyncio.Protocol):
        __slots__ = ("transport",)

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

        def connection_lost(self, exc):
            self.transport = None

    return Echo


def serve_asyncio(host, port, use_uvloop):
    import asyncio

    if use_uvloop:
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(_protocol_class(), host, port, backlog=4096))
    # Stop from inside the loop: a Python-level SIGTERM handler would raise
    # SystemExit out of whatever protocol callback happened to be running.
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    ready(server.sockets[0].getsockname()[1])
    loop.run_forever()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("server", choices=SERVERS)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--backend", default="auto", help="netcore's completion backend")
    args = ap.parse_args(argv)
    raise_nofile()
    # Exit quietly on SIGTERM (the runner's stop signal); the asyncio
    # servers replace this with a loop signal handler.
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        if args.server == "netcore":
            serve_netcore(args.host, args.port, args.backend)
        else:
            serve_asyncio(args.host, args.port, args.server == "uvloop")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

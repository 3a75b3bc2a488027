"""An echo server written directly on the completion queue.

    python examples/echo_server.py [--host 127.0.0.1] [--port 8000]
"""
import argparse

from netcore import iocore


def serve(host: str, port: int) -> None:
    q = iocore.Queue()
    listener = q.listen(host, port)
    print(f"echo server ({q.backend}) on {listener.sockname[0]}:{listener.sockname[1]}", flush=True)
    q.accept(listener, listener)
    while True:
        for op, tag, status, value in q.wait():
            if op == iocore.ACCEPT:
                q.accept(listener, listener)  # keep one accept pending
                if status == 0:
                    q.recv(value, value)
            elif status != 0 or (op == iocore.RECV and not value):
                if status != iocore.CANCELLED:
                    q.close(tag)  # error or EOF: the peer is gone
            elif op == iocore.RECV:
                q.send(tag, tag, value)
            elif op == iocore.SEND:
                q.recv(tag, tag)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    try:
        serve(args.host, args.port)
    except KeyboardInterrupt:
        pass

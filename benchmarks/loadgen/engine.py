"""The built-in load generator's Python engine, on netcore.iocore.

The same generator as loadgen.c (see there for the modes and the
coordinated-omission correction), for machines without a C compiler: one
process, one completion queue, every connection's completions in the
batches of one wait.  It takes the same key=value arguments and prints the
same JSON; `python -m benchmarks.loadgen.engine key=value ...`.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Optional

from netcore import iocore

from ..stats import Histogram
from .http1 import FramingError, ResponseReader, browser_head, plain_head

DEFAULTS = {"host": "127.0.0.1", "port": 8000, "mode": "http", "connections": 64, "duration": 5.0,
            "requests": 0, "path": "/plaintext", "method": "GET", "body_bytes": 0, "depth": 1,
            "heads": "plain", "rate": 0.0, "msg_bytes": 64, "connect_timeout": 10.0}

_STOP, _GUARD = object(), object()
RECV_BYTES = 65536


def parse_args(argv: list[str]) -> dict:
    cfg = dict(DEFAULTS)
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in DEFAULTS:
            raise SystemExit(f"bad argument {arg!r}: expected one of {', '.join(DEFAULTS)} as key=value")
        cfg[key] = type(DEFAULTS[key])(value)
    if cfg["connections"] <= 0 or cfg["depth"] <= 0 or (cfg["duration"] <= 0 and cfg["requests"] <= 0):
        raise SystemExit("bad arguments: connections, depth and duration (or requests) must be positive")
    if cfg["rate"] > 0 or cfg["body_bytes"]:
        cfg["depth"] = 1  # fixed rate and uploads send one request at a time
    return cfg


class Conn:
    __slots__ = ("id", "handle", "connecting", "inflight", "seq", "sent_at", "due", "timer",
                 "reader", "echoed")

    def __init__(self, i: int, cache: dict) -> None:
        self.id = i
        self.handle: Optional[iocore.Handle] = None
        self.connecting = False
        self.inflight = 0
        self.seq = 0
        self.sent_at = 0
        self.due = 0
        self.timer = False
        self.reader = ResponseReader(cache)
        self.echoed = 0


_ECHO: dict[int, list[bytes]] = {}


def echo_message(conn_id: int, seq: int, size: int) -> bytes:
    """Content depends on connection and sequence (as in loadgen.c), so a
    stale, duplicated or crossed echo fails the check.  Byte i is
    (id * 131 + seq * 7 + i) mod 256: 256 distinct messages per size."""
    table = _ECHO.get(size)
    if table is None:
        table = _ECHO[size] = [bytes((b + i) & 0xFF for i in range(size)) for b in range(256)]
    return table[(conn_id * 131 + seq * 7) & 0xFF]


class Generator:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.q = iocore.Queue()
        self.echo = cfg["mode"] == "echo"
        self.depth = cfg["depth"]
        self.rate = cfg["rate"]
        self.limit = cfg["requests"]
        self.interval_ns = int(1e9 * cfg["connections"] / self.rate) if self.rate > 0 else 0
        host, port = cfg["host"], cfg["port"]
        self.body = b"x" * cfg["body_bytes"] if cfg["body_bytes"] else b""
        self.browser = cfg["heads"] == "browser"
        head = plain_head(cfg["method"], cfg["path"], host, port, cfg["body_bytes"])
        self.batch = [head * self.depth] if not self.body else [head, self.body]
        self.browser_i = 0
        cache: dict = {}
        self.conns = [Conn(i, cache) for i in range(cfg["connections"])]
        self.hist = Histogram()
        self.measuring = self.stopping = self.started = False
        self.connected = 0
        self.counted = self.sent = self.bytes = 0
        self.errors = {"connect": 0, "closed": 0, "status": 0, "framing": 0, "echo": 0}
        self.t_start = self.t_end = 0

    # -------------------------------------------------------- sending

    def send_batch(self, c: Conn, ref: int) -> None:
        cfg = self.cfg
        if self.echo:
            data = [echo_message(c.id, c.seq, cfg["msg_bytes"])]
            c.inflight, c.echoed = 1, 0
            c.seq += 1
            self.sent += 1
        else:
            depth = self.depth
            if self.limit and self.sent + depth > self.limit:
                depth = self.limit - self.sent
            if depth <= 0:
                return
            if self.browser:
                heads = []
                for _ in range(depth):
                    heads.append(browser_head(self.browser_i, cfg["method"], cfg["path"],
                                              cfg["host"], cfg["port"]))
                    self.browser_i += 1
                data = [b"".join(heads)]
            elif depth == self.depth:
                data = self.batch
            else:
                data = [self.batch[0][:len(self.batch[0]) // self.depth * depth]]
            c.inflight = depth
            c.seq += depth
            self.sent += depth
        c.sent_at = ref
        self.q.send(c.handle, None, data)

    def connect(self, c: Conn) -> None:
        c.handle = None
        c.connecting = True
        c.inflight = 0
        c.reader = ResponseReader(c.reader._cache)
        self.q.connect(self.cfg["host"], self.cfg["port"], c)

    def arm(self, c: Conn, delay_ns: int) -> None:
        c.timer = True
        self.q.call_later(max(delay_ns, 0) / 1e9, c)

    def next_batch(self, c: Conn, now: int) -> None:
        if self.stopping or (self.limit and self.sent >= self.limit):
            return
        if not self.rate:
            self.send_batch(c, now)
            return
        c.due += self.interval_ns
        if c.due <= now:
            self.send_batch(c, c.due)     # late because the server was: timed from when due
        elif not c.timer:
            self.arm(c, c.due - now)      # on time: timed from when the timer sends it

    def begin(self) -> None:
        self.measuring = True
        self.t_start = time.perf_counter_ns()
        if self.cfg["duration"] > 0:  # with requests=N too: a cap against a lost connection
            self.q.call_later(self.cfg["duration"], _STOP)
        step = int(1e9 / self.rate) if self.rate else 0
        for i, c in enumerate(self.conns):
            if c.handle is None:
                continue
            if self.rate:
                c.due = self.t_start + i * step   # spread the schedules over one interval
                if i == 0:
                    self.send_batch(c, self.t_start)
                else:
                    self.arm(c, c.due - self.t_start)
            else:
                self.send_batch(c, self.t_start)

    # -------------------------------------------------------- receiving

    def done(self, c: Conn, status: int, now: int) -> None:
        c.inflight -= 1
        if self.measuring and not self.stopping:
            self.counted += 1
            if not 200 <= status <= 399:
                self.errors["status"] += 1
            self.hist.record((now - c.sent_at) // 1000)
            if self.limit and self.counted >= self.limit:
                self.stopping = True

    def lost(self, c: Conn, why: str) -> None:
        self.errors[why] += 1
        if c.handle is not None and not c.handle.closed:
            self.q.close(c.handle)
        if not self.stopping:
            self.connect(c)
        else:
            c.handle = None

    def on_recv(self, c: Conn, status: int, data: Optional[bytes], now: int) -> None:
        if status == iocore.CANCELLED:
            return
        if status != 0 or not data:
            self.lost(c, "closed")
            return
        if self.measuring and not self.stopping:
            self.bytes += len(data)
        if self.echo:
            want = echo_message(c.id, c.seq - 1, self.cfg["msg_bytes"])
            if data != want[c.echoed:c.echoed + len(data)]:
                self.lost(c, "echo")
                return
            c.echoed += len(data)
            if c.echoed == len(want):
                self.done(c, 200, now)
        else:
            try:
                statuses = c.reader.feed(data)
            except FramingError:
                self.lost(c, "framing")
                return
            for st in statuses:
                self.done(c, st, now)
        self.q.recv(c.handle, c, RECV_BYTES)
        if c.inflight == 0:
            self.next_batch(c, now)

    def run(self) -> dict:
        q = self.q
        for c in self.conns:
            self.connect(c)
        q.call_later(self.cfg["connect_timeout"], _GUARD)
        CONNECT, RECV, TIMER = iocore.CONNECT, iocore.RECV, iocore.TIMER
        clock = time.perf_counter_ns
        while not self.stopping:
            events = q.wait()
            now = clock()
            for op, tag, status, value in events:
                if op == RECV:
                    self.on_recv(tag, status, value, now)
                elif op == CONNECT:
                    self.on_connect(tag, status, value, now)
                elif op == TIMER:
                    self.on_timer(tag, now)
                # SEND completions need nothing: a failed send shows on the recv too
        self.t_end = clock()
        return self.result()

    def on_connect(self, c: Conn, status: int, handle, now: int) -> None:
        c.connecting = False
        if status != 0:
            self.errors["connect"] += 1
            if not self.stopping and not c.timer:
                self.arm(c, 50_000_000)   # retry soon, not in a tight loop
            return
        c.handle = handle
        self.q.recv(handle, c, RECV_BYTES)
        if not self.started:
            self.connected += 1
            if self.connected == len(self.conns):
                self.started = True
                self.begin()
        elif not self.stopping:
            c.due = now
            self.send_batch(c, now)       # a reconnect picks up where it left off

    def on_timer(self, tag, now: int) -> None:
        if tag is _STOP:
            self.stopping = True
        elif tag is _GUARD:
            if not self.started:          # some never connected: measure with the rest
                self.started = True
                self.begin()
        else:
            c = tag
            c.timer = False
            if self.stopping:
                return
            if c.handle is None:
                if not c.connecting:
                    self.connect(c)
            elif c.inflight == 0 and self.started:
                self.send_batch(c, now)

    def result(self) -> dict:
        return {"engine": "python", "backend": self.q.backend, "requests": self.counted,
                "duration_s": (self.t_end - self.t_start) / 1e9, "sent": self.sent,
                "bytes": self.bytes, "errors": self.errors, "hist": self.hist.to_pairs()}


def main(argv: Optional[list[str]] = None) -> int:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    gen = Generator(cfg)
    try:
        out = gen.run()
    except OSError as e:
        print(f"load generator: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

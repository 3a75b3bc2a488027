"""The scenarios of the suite: what load each one sends, to which servers,
and which figure is its answer.

kind:
  http     a load generator (wrk, or the built-in one) for a fixed time;
           requests/s and server CPU time per request
  latency  the built-in generator at a fixed request rate, latency
           percentiles corrected for coordinated omission
  idle     many idle keep-alive connections; server memory per connection
  echo     the core benchmark: 64-byte ping-pong, messages/s and CPU/message
  loadgen  the load generators themselves against the C server: is the
           built-in one as strong as wrk?
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str
    app: str                      # raw | fastapi | flask | echo
    path: str = "/plaintext"
    method: str = "GET"
    body_bytes: int = 0
    depth: int = 1
    heads: str = "plain"
    connections: int = 64
    headline: str = "rps"         # rps | cpu | latency | memory
    quick: bool = False
    note: str = ""

    @property
    def sized_by_connections_option(self) -> bool:
        """--connections sizes the HTTP load scenarios (not echo or idle)."""
        return self.kind in ("http", "latency", "loadgen")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("plaintext", "Plaintext", "http", "raw", headline="cpu", quick=True,
             note="Without pipelining one load-generator core is the limit for every fast server, "
                  "so server CPU per request is the figure that tells them apart."),
    Scenario("json", "JSON", "http", "raw", path="/json", headline="cpu",
             note="The JSON body is encoded per request by every Python app."),
    Scenario("pipelined", "Plaintext, 16-deep pipelining", "http", "raw", depth=16, quick=True),
    Scenario("pipelined-json", "JSON, 16-deep pipelining", "http", "raw", path="/json", depth=16),
    Scenario("browser", "Browser-like heads, different on every request", "http", "raw", heads="browser",
             headline="cpu",
             note="User-Agent, Accept, Accept-Language, Accept-Encoding rotate; a Cookie and an "
                  "X-Request-Id change on every request, so no server-side memo of heads can hit."),
    Scenario("64k", "64 KiB response", "http", "raw", path="/64k"),
    Scenario("upload", "1 MiB upload (POST, body read fully)", "http", "raw", path="/upload", method="POST",
             body_bytes=1 << 20, connections=16),
    Scenario("latency", "Latency at a fixed request rate", "latency", "raw", headline="latency",
             note="Built-in generator, fixed rate over all connections; a request that went out late "
                  "because an earlier response was late is timed from when it was due (coordinated "
                  "omission corrected)."),
    Scenario("idle", "Idle keep-alive connections", "idle", "raw", connections=10_000, headline="memory",
             note="Growth of the server's RSS (whole process tree) with every connection open and idle "
                  "after one request (one echo for the core's echo servers), divided by the connections; "
                  "kernel socket buffers are not in RSS."),
    Scenario("echo-100", "Core echo, 100 connections", "echo", "echo", connections=100, headline="cpu",
             quick=True, note="64-byte messages, one in flight per connection, every echoed byte checked."),
    Scenario("echo-1000", "Core echo, 1,000 connections", "echo", "echo", connections=1000, headline="cpu"),
    Scenario("fastapi", "FastAPI JSON endpoint", "http", "fastapi", path="/json", headline="cpu"),
    Scenario("flask", "Flask JSON endpoint", "http", "flask", path="/json", headline="cpu"),
    Scenario("loadgen", "Load generators against the C server", "loadgen", "raw", quick=True,
             note="wrk and the built-in generator's engines, one after the other, driving the minimal C "
                  "server: plaintext without and with 16-deep pipelining."),
)

BY_KEY = {s.key: s for s in SCENARIOS}


def select(keys: Optional[Sequence[str]], quick: bool) -> list[Scenario]:
    """The scenarios named (in the suite's order), or the default set."""
    if keys:
        unknown = [k for k in keys if k not in BY_KEY]
        if unknown:
            raise ValueError(f"unknown scenario {', '.join(unknown)}; known: {', '.join(BY_KEY)}")
        return [s for s in SCENARIOS if s.key in keys]
    return [s for s in SCENARIOS if s.quick or not quick]

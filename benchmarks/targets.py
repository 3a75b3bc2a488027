"""The speed goals the issues set, checked against a run's figures.

A goal compares two rows of one scenario (or one row with a number).  Its
verdict uses the spread as well as the median: "met" when even the least
favourable pairing of the runs' min and max meets it, "not met" when even
the most favourable misses, "unclear" when the spread straddles the goal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .stats import Spread


@dataclass(frozen=True)
class Goal:
    source: str        # the issue that set it
    text: str          # what it says, for the report
    scenario: str
    metric: str        # rps | cpu | msgs_per_cpu | p99 | bytes_per_conn
    row: str           # key prefix of the row measured
    than: Optional[str]  # key prefix of the row it is compared with (None: an absolute bound)
    op: str            # ">=" or "<=" or "<"
    bound: float       # factor (against `than`) or absolute value


GOALS = (
    Goal("#7", "ASGI pipelined req/s ≥ 2× granian ASGI", "pipelined", "rps", "netcore-asgi", "granian-asgi", ">=", 2),
    Goal("#7", "ASGI pipelined req/s ≥ 3× uvicorn", "pipelined", "rps", "netcore-asgi", "uvicorn", ">=", 3),
    Goal("#7", "ASGI CPU/request < granian ASGI", "plaintext", "cpu", "netcore-asgi", "granian-asgi", "<", 1),
    Goal("#7", "ASGI CPU/request < uvicorn", "plaintext", "cpu", "netcore-asgi", "uvicorn", "<", 1),
    Goal("#7", "WSGI pipelined req/s ≥ 3× granian WSGI", "pipelined", "rps", "netcore-wsgi", "granian-wsgi", ">=", 3),
    Goal("#7", "WSGI --threads 0 CPU/request ≤ fastwsgi", "plaintext", "cpu", "netcore-wsgi-inline", "fastwsgi", "<=", 1),
    Goal("#8", "native pipelined plaintext ≥ 0.5× C server", "pipelined", "rps", "netcore-native", "c-epoll", ">=", 0.5),
    Goal("#8", "native pipelined plaintext ≥ 2× uvloop Protocol", "pipelined", "rps", "netcore-native", "uvloop-protocol", ">=", 2),
    Goal("#8", "native pipelined JSON ≥ 0.5× C server", "pipelined-json", "rps", "netcore-native", "c-epoll", ">=", 0.5),
    Goal("#8", "native pipelined JSON ≥ 2× uvloop Protocol", "pipelined-json", "rps", "netcore-native", "uvloop-protocol", ">=", 2),
    Goal("#8", "native plaintext CPU/request ≤ 1.25× C server", "plaintext", "cpu", "netcore-native", "c-epoll", "<=", 1.25),
    Goal("#8", "native JSON CPU/request ≤ 1.25× C server", "json", "cpu", "netcore-native", "c-epoll", "<=", 1.25),
    Goal("#8", "native browser-like heads CPU/request ≤ 1.5× C server", "browser", "cpu", "netcore-native", "c-epoll", "<=", 1.5),
    # 324 bytes was measured on the core's echo server (2026-11-26); both rows are checked
    Goal("#8", "idle connection, core echo server ≤ 324 bytes", "idle", "bytes_per_conn", "netcore-iocore", None, "<=", 324),
    Goal("#8", "idle connection, native HTTP ≤ 324 bytes", "idle", "bytes_per_conn", "netcore-native", None, "<=", 324),
    Goal("#9", "io_uring plaintext CPU/request ≤ 0.85× epoll", "plaintext", "cpu", "netcore-native-uring", "netcore-native-epoll", "<=", 0.85),
    Goal("#9", "io_uring p99 latency < epoll", "latency", "p99", "netcore-native-uring", "netcore-native-epoll", "<", 1),
    Goal("#9", "echo (100) messages per CPU-second ≥ 1.5× uvloop", "echo-100", "msgs_per_cpu", "netcore-iocore", "uvloop-echo", ">=", 1.5),
    Goal("#9", "echo (1,000) messages per CPU-second ≥ 1.5× uvloop", "echo-1000", "msgs_per_cpu", "netcore-iocore", "uvloop-echo", ">=", 1.5),
)

_ALIASES = {"uring": ("uring", "io_uring")}


def resolve(prefix: str, keys: list[str]) -> Optional[str]:
    """The first row key matching a goal's row name: an exact key, a
    backend-qualified one (netcore-native -> netcore-native-epoll), or with
    io_uring's other name."""
    head, _, tail = prefix.rpartition("-")
    names = [prefix] + ([f"{head}-{alt}" for alt in _ALIASES[tail]] if tail in _ALIASES else [])
    for name in names:
        if name in keys:
            return name
    for name in names:
        for k in keys:
            rest = k[len(name):]
            if k.startswith(name + "-") and rest.count("-") == 1:  # just a backend suffix
                return k
    return None


@dataclass
class Verdict:
    goal: Goal
    row: Optional[str]
    than: Optional[str]
    value: Optional[float]       # ratio (or absolute) from medians
    low: Optional[float]         # least and most favourable over the spread
    high: Optional[float]
    verdict: str                 # met | not met | unclear | not measured


def _range(a: Spread, b: Optional[Spread]) -> tuple[float, float, float]:
    if b is None:
        return a.median, a.low, a.high
    return a.median / b.median, a.low / b.high, a.high / b.low


def check(goal: Goal, cell: Callable[[str, str], Optional[dict]], keys: list[str]) -> Verdict:
    """cell(scenario, row) -> the aggregated figures of a table cell."""
    row = resolve(goal.row, keys)
    than = resolve(goal.than, keys) if goal.than else None
    a = cell(goal.scenario, row) if row else None
    b = cell(goal.scenario, than) if than else None
    sa = a.get(goal.metric) if a else None
    sb = b.get(goal.metric) if b else None
    if sa is None or (goal.than and sb is None) or (sb is not None and (sb.low <= 0 or sb.median <= 0)):
        return Verdict(goal, row, than, None, None, None, "not measured")
    value, low, high = _range(sa, sb)

    def ok(x: float) -> bool:
        return x >= goal.bound if goal.op == ">=" else x <= goal.bound if goal.op == "<=" else x < goal.bound

    if ok(low) and ok(high):
        verdict = "met"
    elif not ok(low) and not ok(high):
        verdict = "not met"
    else:
        verdict = "met (median; the spread straddles it)" if ok(value) else \
            "not met (median; the spread straddles it)"
    return Verdict(goal, row, than, value, low, high, verdict)

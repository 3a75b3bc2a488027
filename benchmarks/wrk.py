"""wrk as the suite's load generator: the command for a scenario, and the
parsing of its report (requests, duration, errors, latency percentiles).

Pipelining, browser-like heads and uploads come from the Lua scripts in
lua/.  wrk's latency figures are of a closed loop (coordinated omission);
the latency scenario uses the built-in generator's fixed-rate mode instead.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Optional

LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lua")

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def find() -> Optional[str]:
    return shutil.which("wrk")


def version(path: str) -> str:
    # wrk -v prints its version and a usage text, exiting non-zero
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"wrk\s+(\S+)", out.stdout + out.stderr)
    return m.group(1) if m else "?"


def whole_seconds(duration: float) -> int:
    """wrk takes whole seconds only."""
    return max(1, round(duration))


def command(wrk: str, url: str, connections: int, duration: float, threads: int = 1,
            depth: int = 1, heads: str = "plain", body_bytes: int = 0) -> list[str]:
    cmd = [wrk, f"-t{threads}", f"-c{max(connections, threads)}", f"-d{whole_seconds(duration)}s",
           "--latency", "--timeout", "10s"]
    script_args: list[str] = []
    if body_bytes:
        cmd += ["-s", os.path.join(LUA, "upload.lua")]
        script_args = [str(body_bytes)]
    elif depth > 1:
        cmd += ["-s", os.path.join(LUA, "pipeline.lua")]
        script_args = [str(depth)]
    elif heads == "browser":
        cmd += ["-s", os.path.join(LUA, "browser.lua")]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    return cmd


@dataclass
class WrkReport:
    requests: int
    duration_s: float
    bytes_read: float
    rps: float
    errors: dict = field(default_factory=dict)        # connect/read/write/timeout/status
    latency_us: dict = field(default_factory=dict)    # "50", "75", "90", "99" -> µs


def _duration_s(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unknown wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)] / 1e6


def _latency_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unknown wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse(output: str) -> WrkReport:
    """Reads wrk's text report; raises ValueError when it is not one."""
    m = re.search(r"^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+)(\w+) read", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not m or not rps:
        raise ValueError("not a wrk report: " + (output.strip().splitlines() or ["(empty)"])[-1][:200])
    errors = {}
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if se:
        errors.update(zip(("connect", "read", "write", "timeout"), map(int, se.groups())))
    st = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if st:
        errors["status"] = int(st.group(1))
    latency = {}
    dist = output.split("Latency Distribution", 1)
    if len(dist) == 2:
        for pct, value in re.findall(r"^\s+([\d.]+)%\s+([\d.]+\w+)\s*$", dist[1], re.M):
            latency[pct.rstrip("0").rstrip(".") if "." in pct else pct] = _latency_us(value)
    return WrkReport(requests=int(m.group(1)), duration_s=_duration_s(m.group(2)),
                     bytes_read=float(m.group(3)) * _BYTES.get(m.group(4), 1),
                     rps=float(rps.group(1)), errors={k: v for k, v in errors.items() if v},
                     latency_us=latency)

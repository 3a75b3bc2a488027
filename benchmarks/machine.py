"""What the figures were measured on: CPU, cores, kernel, Python, the
versions of netcore and of every peer, the load at the start and the end,
and how server and load generator were placed on the CPUs."""
from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Optional

from . import procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# distributions whose versions the report lists (when installed)
PACKAGES = ("netcore", "uvicorn", "uvloop", "httptools", "granian", "socketify", "fastwsgi",
            "gunicorn", "fastapi", "starlette", "flask", "werkzeug", "matplotlib", "psutil")


@dataclass(frozen=True)
class Placement:
    """CPUs for the server and for the load generator (None: not pinned)."""

    server: Optional[tuple[int, ...]]
    client: Optional[tuple[int, ...]]
    note: str


def placement() -> Placement:
    """Server on the first usable CPU, load generator on the others: the
    rule of thumb on a small machine, where each needs a whole core."""
    if not procs.can_pin():
        return Placement(None, None, f"not pinned: {platform.system()} has no sched_setaffinity")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Placement(None, None, "not pinned: only one CPU is usable")
    server, client = (cpus[0],), tuple(cpus[1:])
    return Placement(server, client, f"server on CPU {cpus[0]}, load generator on CPU "
                                     f"{','.join(map(str, client))}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            if m:
                return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> Optional[str]:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        return None


def git_describe() -> str:
    try:
        out = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def compiler_version(cc: Optional[str]) -> Optional[str]:
    if not cc:
        return None
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0].strip() if out.stdout else None
    except (OSError, subprocess.SubprocessError):
        return None


def describe(place: Placement, tools: dict[str, str]) -> dict:
    """The machine description stored in results.json and shown in results.md."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "netcore_commit": git_describe(),
        "packages": versions(),
        "tools": tools,
        "placement": place.note,
        "load_average_start": load_average(),
    }

"""The built-in load generator, for machines without wrk (Windows, say).

Two engines with one interface (key=value arguments in, one JSON object
out): the C engine (loadgen.c), compiled here on the fly together with
netcore's own completion-queue sources, so it runs on whatever backend the
core has; and the Python engine (engine.py) on netcore.iocore, used where
there is no C compiler.  Several processes can share a load (`procs`):
connections and rate are split between them and their histograms merged.

Why a C engine: on one client core the Python engine spends more CPU per
response than a fast server does, so it would measure itself.  The suite's
"loadgen" scenario shows how each engine compares with wrk against the C
server, so the report says whether the generator was the limit.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import asdict, dataclass, replace
from typing import Optional, Sequence

from .. import procs
from ..stats import Histogram

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORE = os.path.join(REPO, "src", "_iocore")


@dataclass(frozen=True)
class Load:
    """What to send: the arguments both engines take."""

    mode: str = "http"          # "http" or "echo"
    connections: int = 64
    duration: float = 5.0
    requests: int = 0           # stop after this many responses instead
    path: str = "/plaintext"
    method: str = "GET"
    body_bytes: int = 0
    depth: int = 1              # requests in flight per connection (pipelined if > 1)
    heads: str = "plain"        # "plain" or "browser" (differ on every request)
    rate: float = 0.0           # requests/s over all connections; 0: as fast as possible
    msg_bytes: int = 64         # echo message size
    connect_timeout: float = 10.0  # start counting by then even if some never connected

    def args(self, host: str, port: int) -> list[str]:
        return [f"host={host}", f"port={port}"] + [f"{k}={v}" for k, v in asdict(self).items()]

    def split(self, parts: int) -> list["Load"]:
        """The same load shared by `parts` processes."""
        parts = max(1, min(parts, self.connections))
        base, extra = divmod(self.connections, parts)
        out = []
        for i in range(parts):
            n = base + (i < extra)
            out.append(replace(self, connections=n,
                               rate=self.rate * n / self.connections if self.rate else 0.0,
                               requests=(self.requests * n // self.connections) if self.requests else 0))
        return out


@dataclass
class LoadResult:
    engine: str
    requests: int
    duration_s: float
    errors: dict
    bytes: int
    hist: Histogram
    client_cpu_s: Optional[float]
    processes: int


class Engine:
    """One way to run the generator: a command prefix and a name."""

    def __init__(self, name: str, prefix: Sequence[str]) -> None:
        self.name = name
        self.prefix = list(prefix)

    def __repr__(self) -> str:
        return f"Engine({self.name})"


PYTHON_ENGINE = Engine("python", [sys.executable, "-m", "benchmarks.loadgen.engine"])


def compiler() -> Optional[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or ""
    for cand in (cc.split()[0] if cc else None, "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return cand
    return None


def build_c_engine(out_dir: str, cc: Optional[str] = None,
                   windows: Optional[bool] = None) -> tuple[Optional[Engine], str]:
    """Compiles loadgen.c with the core's sources; (engine, "") or (None, why).
    cc and windows choose a cross compiler (mingw-w64, say) instead of the host's."""
    cc = cc or compiler()
    if cc is None:
        return None, "no C compiler"
    if not os.path.isfile(os.path.join(CORE, "iocore.h")):
        return None, f"netcore's C sources are not at {CORE}"
    windows = os.name == "nt" if windows is None else windows
    sources = sorted(glob.glob(os.path.join(CORE, "core", "*.c")) +
                     glob.glob(os.path.join(CORE, "win" if windows else "unix", "*.c")))
    exe = os.path.join(out_dir, "loadgen" + (".exe" if windows else ""))
    cmd = [cc, "-std=gnu11", "-O2", f"-I{CORE}"]
    if windows:
        cmd += ["-D_WIN32_WINNT=0x0602", "-DWIN32_LEAN_AND_MEAN"]
    cmd += [os.path.join(HERE, "loadgen.c"), *sources, "-o", exe]
    cmd += ["-static", "-lws2_32", "-lmswsock"] if windows else ["-lpthread"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"compiling the C engine failed: {e}"
    if res.returncode != 0:
        first = next((line for line in res.stderr.splitlines() if "error" in line), res.stderr.strip()[:200])
        return None, f"compiling the C engine failed: {first}"
    return Engine("c", [exe]), ""


class LoadError(RuntimeError):
    """The generator failed (its message says why)."""


def run(engine: Engine, load: Load, host: str, port: int, processes: int = 1,
        cpus: Optional[Sequence[int]] = None, timeout: Optional[float] = None) -> LoadResult:
    """Runs the load to completion and merges what its processes counted."""
    parts = load.split(processes)
    cmds = [engine.prefix + part.args(host, port) for part in parts]
    limit = timeout if timeout is not None else \
        (load.duration if not load.requests else 300) + load.connect_timeout + 30
    results = procs.run_clients(cmds, cpus, limit, cwd=REPO)
    merged = Histogram()
    total = nbytes = 0
    duration = 0.0
    errors: dict = {}
    cpu: Optional[float] = 0.0
    for res in results:
        try:
            data = json.loads(res.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LoadError(f"{engine.name} engine exited {res.returncode}: {res.stdout.strip()[-300:]}") from None
        if res.returncode != 0:
            raise LoadError(f"{engine.name} engine exited {res.returncode}")
        total += data["requests"]
        nbytes += data["bytes"]
        duration = max(duration, data["duration_s"])
        for k, v in data["errors"].items():
            errors[k] = errors.get(k, 0) + v
        merged.merge(Histogram.from_pairs(data["hist"]))
        cpu = None if cpu is None or res.cpu_seconds is None else cpu + res.cpu_seconds
    return LoadResult(engine.name, total, duration, {k: v for k, v in errors.items() if v},
                      nbytes, merged, cpu, len(parts))

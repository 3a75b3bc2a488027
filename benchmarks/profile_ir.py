"""Deterministic cost per request: callgrind instructions (Ir) of the server.

Runs netcore under ``valgrind --tool=callgrind`` twice, serving a fixed
number of requests from the built-in generator's C engine (N and 2N), and
reports (Ir(2N) - Ir(N)) / N: start-up and shutdown cancel out.  User-space
instructions only (the kernel's share is not counted), which is exactly the
part netcore's Python code controls.

    python -m benchmarks.profile_ir [--app benchmarks.apps.native:app] [--path /plaintext]
                                    [--conns 16] [--depth 1] [--requests 20000] [--browser] [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile

from . import loadgen, procs
from .runner import REPO, _probe_http


def run_once(args: argparse.Namespace, engine: loadgen.Engine, n: int, outdir: str) -> int:
    port = procs.free_port()
    out = os.path.join(outdir, f"cg.{n}")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           sys.executable, "-m", "netcore", args.app, "--port", str(port), "--log-level", "warning"]
    server = procs.ServerProcess("netcore under callgrind", cmd, REPO, None)
    try:
        server.wait_ready(lambda: _probe_http(port), timeout=120.0)  # valgrind starts slowly
        load = loadgen.Load(connections=args.conns, requests=n, duration=0, path=args.path, depth=args.depth,
                            heads="browser" if args.browser else "plain")
        res = loadgen.run(engine, load, "127.0.0.1", port, timeout=900)
        if res.requests != n or res.errors:
            raise RuntimeError(f"the generator counted {res.requests} of {n}, errors {res.errors}")
    finally:
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(120)
        server.stop()
    with open(out) as f:
        m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--app", default="benchmarks.apps.native:app")
    ap.add_argument("--path", default="/plaintext")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--browser", action="store_true", help="browser-like heads, new on every request")
    ap.add_argument("--keep", action="store_true", help="keep the callgrind files (printed)")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        print("valgrind is required", file=sys.stderr)
        return 2
    build = tempfile.mkdtemp(prefix="netcore-ir-")
    engine, why = loadgen.build_c_engine(build)
    if engine is None:
        print(f"the C engine is required: {why}", file=sys.stderr)
        return 2
    n = args.requests
    a = run_once(args, engine, n, build)
    b = run_once(args, engine, 2 * n, build)
    print(f"{args.path} conns={args.conns} depth={args.depth} browser={args.browser}: "
          f"{(b - a) / n:,.0f} Ir/request")
    if args.keep:
        print(f"callgrind files: {build}/cg.{2 * n}")
    else:
        shutil.rmtree(build, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

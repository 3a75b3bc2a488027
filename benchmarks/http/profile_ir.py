#!/usr/bin/env python3
"""Deterministic cost per request: callgrind instructions (Ir) of the server.

Runs the netcore server under ``valgrind --tool=callgrind`` twice, serving a
fixed number of requests from load_client (N and 2N), and reports
(Ir(2N) - Ir(N)) / N: start-up and shutdown cancel out.  User-space
instructions only (the kernel's share is not counted), which is exactly the
part netcore's Python code controls.

    python benchmarks/http/profile_ir.py [--path /plaintext] [--conns 16] [--depth 1]
                                         [--requests 20000] [--vary] [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile

from run import free_port, wait_port  # the runner beside this file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLIENT = os.path.join(HERE, "build", "load_client")


def run_once(args, n: int, outdir: str) -> int:
    port = free_port()
    out = os.path.join(outdir, f"cg.{n}")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           sys.executable, "-m", "netcore", args.app, "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=60.0)  # valgrind starts slowly
        res = subprocess.run([CLIENT, str(port), args.path, str(args.conns), str(args.depth), str(n),
                              "1" if args.vary else "0"], capture_output=True, text=True, timeout=600)
        if res.returncode:
            raise RuntimeError(res.stderr)
        got, bad = map(int, res.stdout.split())
        if got != n or bad:
            raise RuntimeError(f"client: {res.stdout}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(120)
    with open(out) as f:
        text = f.read()
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", default="examples.hello:app")
    ap.add_argument("--path", default="/plaintext")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--vary", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the callgrind files (printed)")
    args = ap.parse_args()
    os.makedirs(os.path.join(HERE, "build"), exist_ok=True)
    subprocess.run(["gcc", "-O2", "-o", CLIENT, os.path.join(HERE, "load_client.c")], check=True)
    outdir = tempfile.mkdtemp(prefix="netcore-ir-")
    n = args.requests
    a = run_once(args, n, outdir)
    b = run_once(args, 2 * n, outdir)
    print(f"{args.path} conns={args.conns} depth={args.depth} vary={args.vary}: "
          f"{(b - a) / n:,.0f} Ir/request")
    if args.keep:
        print(f"callgrind files: {outdir}/cg.{2 * n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m benchmarks: netcore against every installed peer, one command.

    python -m benchmarks                 # the full suite (about 45 minutes)
    python -m benchmarks --quick         # a smoke run of the main scenarios, about a minute
    python -m benchmarks --only netcore,uvicorn --scenario plaintext,pipelined --runs 5
    python -m benchmarks --list          # scenarios and servers, and what is missing here

Writes DIR/results.md, DIR/results.json and DIR/results.png (--out DIR).
Run it from a checkout with netcore installed (scripts/setup.sh); the peers
come with `pip install -e .[bench]`.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

from . import report
from .runner import Options, Suite
from .scenarios import SCENARIOS, select

QUICK = {"duration": 1.0, "warmup": 0.3, "runs": 1, "idle_connections": 1000}


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="the scenarios marked quick, 1 run of 1 s each (a smoke run, not a measurement)")
    ap.add_argument("--only", type=_csv, default=[],
                    help="servers whose key or name contains one of these words (comma-separated)")
    ap.add_argument("--scenario", type=_csv, action="extend", default=[],
                    help="scenarios to run (comma-separated): " + ", ".join(s.key for s in SCENARIOS))
    ap.add_argument("--duration", type=float, help="measured seconds per run (default 5; quick 1)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds before each run (default 1; quick 0.3)")
    ap.add_argument("--runs", type=int, help="interleaved rounds (default 3; quick 1)")
    ap.add_argument("--connections", type=int, help="connections of the HTTP load scenarios (default 64)")
    ap.add_argument("--idle-connections", type=int, help="connections of the idle scenario (default 10000)")
    ap.add_argument("--rate", type=float, help="requests/s of the latency scenario (default 10000)")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "c", "python"), default="auto",
                    help="HTTP load generator: wrk, the built-in C or Python engine (auto: wrk if present)")
    ap.add_argument("--loadgen-procs", type=int, help="built-in generator processes (default: client CPUs)")
    ap.add_argument("--out", default="bench-results", help="directory for results.md/json/png")
    ap.add_argument("--label", default="", help="a note printed at the top of results.md")
    ap.add_argument("--list", action="store_true", help="list scenarios and servers, then exit")
    args = ap.parse_args(argv)
    for name in ("duration", "warmup", "runs", "connections", "idle_connections", "rate", "loadgen_procs"):
        value = getattr(args, name)
        if value is not None and value <= 0 and not (name == "warmup" and value == 0):
            ap.error(f"--{name.replace('_', '-')} must be positive")
    return args


def options(args: argparse.Namespace) -> Options:
    base = Options()
    if args.quick:
        base = Options(**{**base.__dict__, **QUICK})
    o = Options(**base.__dict__)
    for name in ("duration", "warmup", "runs", "connections", "idle_connections", "rate", "loadgen_procs"):
        if getattr(args, name) is not None:
            setattr(o, name, getattr(args, name))
    o.loadgen, o.only, o.quick = args.loadgen, args.only, args.quick
    return o


def list_all(suite: Suite) -> None:
    print("scenarios:")
    for s in SCENARIOS:
        print(f"  {s.key:15} {s.title}{'  [quick]' if s.quick else ''}")
    print("servers:")
    for r in suite.rows:
        print(f"  {r.key:28} {r.name:36} {'skipped: ' + r.missing if r.missing else 'available'}")
    print("load generators:")
    print(f"  wrk: {suite.tools.wrk or 'not found'}")
    print(f"  built-in, C engine: {'built' if suite.tools.c_engine else suite.tools.c_engine_note}")
    print(f"  built-in, Python engine: {'available' if suite.tools.python_engine else 'netcore.iocore missing'}")
    for n in suite.env.notes:
        print(f"  note: {n}")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        scns = select(args.scenario, args.quick)
    except ValueError as e:
        print(f"python -m benchmarks: {e}", file=sys.stderr)
        return 2
    suite = Suite(options(args), scns)
    try:
        suite.setup()
        if args.list:
            list_all(suite)
            return 0
        suite.run()
        command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        result = suite.result(command.strip())
        result["label"] = args.label
        notes = report.write(result, args.out)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        suite.cleanup()
    for n in notes:
        print(n)
    print(f"wrote {os.path.join(args.out, 'results.md')}, results.json" + ("" if notes else ", results.png"))
    return 1 if suite.failures and not suite.runs else 0


if __name__ == "__main__":
    sys.exit(main())

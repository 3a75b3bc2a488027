"""The outputs of a run: results.json (every raw figure), results.md (one
table per scenario, every cell a median with its min-max spread and each
row's ratio against netcore, then the goals of the issues) and results.png
(a chart, when matplotlib is installed).

results.md carries a summary between <!-- summary:begin --> and
<!-- summary:end -->; `python -m benchmarks.readme` copies it into the
README's performance section.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from typing import Optional

from . import targets
from .stats import Spread, ratio

GROUP_ORDER = {"native": 0, "asgi": 1, "wsgi": 2, "echo": 3}
GROUP_LABEL = {"native": "native", "asgi": "ASGI", "wsgi": "WSGI", "echo": "core"}
SUMMARY_BEGIN, SUMMARY_END = "<!-- summary:begin -->", "<!-- summary:end -->"


# ---------------------------------------------------------------- numbers

def fmt_num(v: Optional[float]) -> str:
    """Three significant figures, with k/M for big counts."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_spread(s: Optional[Spread]) -> str:
    if s is None:
        return "–"
    if s.n == 1 or s.low == s.high:
        return fmt_num(s.median)
    return f"{fmt_num(s.median)} ({fmt_num(s.low)}–{fmt_num(s.high)})"


def fmt_pct(s: Optional[Spread]) -> str:
    if s is None:
        return "–"
    if s.n == 1 or s.low == s.high:
        return f"{s.median:.0%}"
    return f"{s.median:.0%} ({s.low:.0%}–{s.high:.0%})"


def fmt_ratio(r: Optional[float]) -> str:
    return "–" if r is None else f"{r:.2f}×"


# ---------------------------------------------------------------- aggregation

def aggregate(result: dict) -> dict:
    """(scenario, row) -> figures over the successful runs of that cell."""
    cells: dict = {}
    for run in result["runs"]:
        cells.setdefault((run["scenario"], run["row"]), []).append(run)
    out = {}
    for key, runs in cells.items():
        ok = [r for r in runs if not r.get("failed")]
        lat = [r.get("latency_us") or {} for r in ok]
        cell = {
            "runs": len(runs), "ok": len(ok),
            "failed": [r["failed"] for r in runs if r.get("failed")],
            "rps": Spread.of(r.get("rps") for r in ok),
            "cpu": Spread.of(r.get("cpu_us") for r in ok),
            "msgs_per_cpu": Spread.of(1e6 / r["cpu_us"] for r in ok if r.get("cpu_us")),
            "p50": Spread.of(x.get("50") for x in lat),
            "p99": Spread.of(x.get("99") for x in lat),
            "p999": Spread.of(x.get("99.9") for x in lat),
            "max": Spread.of(r.get("latency_max_us") for r in ok),
            "bytes_per_conn": Spread.of(r.get("bytes_per_conn") for r in ok),
            "held": Spread.of(r.get("held") for r in ok),
            "client_util": Spread.of(r.get("client_util") for r in ok),
            "client_us": Spread.of(r["client_cpu_s"] / r["requests"] * 1e6 for r in ok
                                   if r.get("client_cpu_s") is not None and r.get("requests")),
            "other_cpus": Spread.of(r.get("other_cpus") for r in ok),
            "tools": sorted({r.get("tool", "") for r in ok} - {""}),
            "errors": _sum_errors(ok),
        }
        out[key] = cell
    return out


def _sum_errors(runs: list) -> dict:
    total: dict = {}
    for r in runs:
        for k, v in (r.get("errors") or {}).items():
            total[k] = total.get(k, 0) + v
    return total


class View:
    """A run's result with its cells aggregated: what the tables read."""

    def __init__(self, result: dict) -> None:
        self.result = result
        self.cells = aggregate(result)
        self.servers = {s["key"]: s for s in result["servers"]}
        self.scenarios = result["scenarios"]

    def cell(self, scenario: str, row: Optional[str]) -> Optional[dict]:
        return self.cells.get((scenario, row)) if row else None

    def rows_of(self, scenario: str) -> list[str]:
        keys = {r for (s, r) in self.cells if s == scenario}
        order = list(self.servers)
        return sorted(keys, key=lambda k: (GROUP_ORDER.get(self.servers.get(k, {}).get("group"), 9),
                                           not self.servers.get(k, {}).get("netcore"),
                                           order.index(k) if k in order else 99))

    def name(self, row: str) -> str:
        return self.servers.get(row, {}).get("name", row)

    def reference(self, row: str) -> Optional[str]:
        return self.servers.get(row, {}).get("reference")

    def ref_mark(self, row: str) -> str:
        """'†' when a row is compared with netcore native for want of its own interface."""
        ref = self.reference(row)
        srv, rs = self.servers.get(row, {}), self.servers.get(ref or "", {})
        return "†" if ref and srv.get("group") != rs.get("group") else ""


# ---------------------------------------------------------------- tables

def _table(header: list[str], rows: list[list[str]], right_from: int = 1, left_after: int = 99) -> list[str]:
    """A Markdown table; columns right_from..left_after-1 are right-aligned (figures)."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if right_from <= i < left_after else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _vs(view: View, scenario: str, row: str, metric: str, invert: bool = False) -> str:
    ref = view.reference(row)
    a, b = view.cell(scenario, row), view.cell(scenario, ref)
    if not a or not b:
        return "–"
    r = ratio(a.get(metric), b.get(metric))
    if r is not None and invert:
        r = 1 / r if r else None
    return fmt_ratio(r) + view.ref_mark(row)


def _failed_note(cell: dict) -> str:
    if not cell["failed"]:
        return ""
    return f" ({len(cell['failed'])} of {cell['runs']} runs failed)"


def http_table(view: View, scn: dict) -> list[str]:
    rows = []
    for row in view.rows_of(scn["key"]):
        c = view.cell(scn["key"], row)
        group = GROUP_LABEL.get(view.servers.get(row, {}).get("group"), "")
        rows.append([view.name(row) + _failed_note(c), group, fmt_spread(c["rps"]), _vs(view, scn["key"], row, "rps"),
                     fmt_spread(c["cpu"]), _vs(view, scn["key"], row, "cpu"), fmt_pct(c["client_util"]),
                     fmt_spread(c["other_cpus"])])
    return _table(["server", "interface", "requests/s", "vs netcore", "server CPU µs/request", "vs netcore",
                   "load generator CPU use", "other load (CPUs)"], rows, 2)


def latency_table(view: View, scn: dict) -> list[str]:
    rows = []
    for row in view.rows_of(scn["key"]):
        c = view.cell(scn["key"], row)
        rows.append([view.name(row) + _failed_note(c), fmt_spread(c["rps"]), fmt_spread(c["p50"]),
                     fmt_spread(c["p99"]), fmt_spread(c["p999"]), fmt_spread(c["max"]),
                     _vs(view, scn["key"], row, "p99"), fmt_spread(c["cpu"])])
    return _table(["server", "achieved requests/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "p99 vs netcore",
                   "server CPU µs/request"], rows)


def idle_table(view: View, scn: dict) -> list[str]:
    rows = []
    for row in view.rows_of(scn["key"]):
        c = view.cell(scn["key"], row)
        rows.append([view.name(row) + _failed_note(c), fmt_spread(c["bytes_per_conn"]),
                     _vs(view, scn["key"], row, "bytes_per_conn"), fmt_spread(c["held"])])
    return _table(["server", "bytes per idle connection", "vs netcore", "connections held"], rows)


def echo_table(view: View, scn: dict) -> list[str]:
    rows = []
    for row in view.rows_of(scn["key"]):
        c = view.cell(scn["key"], row)
        rows.append([view.name(row) + _failed_note(c), fmt_spread(c["rps"]), fmt_spread(c["cpu"]),
                     fmt_spread(c["msgs_per_cpu"]), _vs(view, scn["key"], row, "msgs_per_cpu"),
                     fmt_pct(c["client_util"]), fmt_spread(c["other_cpus"])])
    return _table(["server", "messages/s", "server CPU µs/message", "messages per server-CPU-second",
                   "vs netcore", "load generator CPU use", "other load (CPUs)"], rows)


TOOL_NAMES = {"wrk": "wrk", "c": "built-in, C engine", "python": "built-in, Python engine"}


def loadgen_rows(view: View, scn: dict) -> list[tuple[str, str, dict]]:
    out = []
    for (s, row), cell in view.cells.items():
        if s == scn["key"]:
            load, _, tool = row.partition("|")
            out.append((load, tool, cell))
    from .runner import LOADGEN_LOADS
    loads = [name for name, _ in LOADGEN_LOADS]
    tools = list(TOOL_NAMES)
    return sorted(out, key=lambda t: (loads.index(t[0]) if t[0] in loads else 9,
                                      tools.index(t[1]) if t[1] in tools else 9))


def loadgen_table(view: View, scn: dict) -> tuple[list[str], list[str]]:
    """The generators side by side, and a verdict per built-in engine: the
    rate it reached against wrk's in the same rounds, and its CPU per
    request against wrk's (the steadier figure on a busy machine: one core
    of a generator that needs less CPU per request drives harder)."""
    rows, verdicts = [], []
    entries = loadgen_rows(view, scn)
    by = {(load, tool): cell for load, tool, cell in entries}
    for load, tool, c in entries:
        w = by.get((load, "wrk"))
        rows.append([load, TOOL_NAMES.get(tool, tool) + _failed_note(c), fmt_spread(c["rps"]),
                     fmt_ratio(ratio(c["rps"], w["rps"])) if w else "–", fmt_spread(c["client_us"]),
                     fmt_ratio(ratio(c["client_us"], w["client_us"])) if w else "–", fmt_pct(c["client_util"]),
                     fmt_spread(c["cpu"]), fmt_spread(c["other_cpus"])])
        if tool == "wrk" or not w:
            continue
        rate, cost = ratio(c["rps"], w["rps"]), ratio(c["client_us"], w["client_us"])
        if rate is None:
            continue
        text = f"{TOOL_NAMES[tool]}, {load}: {rate:.2f}× wrk's rate"
        if cost is not None:
            text += f", {cost:.2f}× wrk's CPU per request"
            text += (" (at least as strong as wrk)" if cost <= 1.03 else
                     f" (so on one core it reaches about {1 / cost:.2f}× what wrk can drive)")
        verdicts.append(text)
    return (_table(["load", "generator", "requests/s", "vs wrk", "generator CPU µs/request", "vs wrk",
                    "generator CPU use", "server CPU µs/request", "other load (CPUs)"], rows, 2), verdicts)


def goals_table(view: View, measured_only: bool = False) -> list[str]:
    keys = list(view.servers)
    rows, skipped = [], 0
    for goal in targets.GOALS:
        v = targets.check(goal, view.cell, keys)
        if measured_only and v.value is None:
            skipped += 1
            continue
        if v.value is None:
            measured = "–"
        elif goal.than:
            measured = f"{v.value:.2f}× ({min(v.low, v.high):.2f}–{max(v.low, v.high):.2f})"
        else:
            measured = f"{fmt_num(v.value)} ({fmt_num(v.low)}–{fmt_num(v.high)})"
        rows.append([goal.source, goal.text, measured, v.verdict])
    table = _table(["issue", "goal", "measured (spread)", "verdict"], rows, 2, 3) if rows else []
    if skipped:
        table += ["", f"{skipped} more goal{'s' if skipped != 1 else ''} could not be checked: "
                      "the rows they compare were not measured (see the full results)."]
    return table


# ---------------------------------------------------------------- documents

def header_lines(result: dict) -> list[str]:
    m, o = result["machine"], result["options"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    tools = ", ".join(f"{k}: {v}" for k, v in m["tools"].items())
    lines = [
        f"- **Date**: {m['date']}; netcore at `{m['netcore_commit']}`",
        f"- **Machine**: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['os']}, {m['python']}; "
        f"load average {m.get('load_average_start')} at the start, {m.get('load_average_end')} at the end",
        f"- **Placement**: {m['placement']}",
        f"- **Tools**: {tools}",
        f"- **Versions**: {pk}",
        f"- **Command**: `{_command(result)}`",
        f"- **Method**: {o['runs']} interleaved round{'s' if o['runs'] != 1 else ''} (every server once per "
        "round, rotating order, "
        f"a fresh process each time); {o['warmup']:g} s warm-up then {o['duration']:g} s measured per run; "
        "every cell is the median of the runs with the min–max spread in brackets. Server CPU = user + system "
        "time of the server's whole process tree (OS accounting) over the run, divided by the requests.",
    ]
    other = Spread.of(r.get("other_cpus") for r in result["runs"] if not r.get("failed"))
    if other:
        lines.append(f"- **Other load**: the rest of the machine used {other.median:.2f} CPUs during the median "
                     f"run (up to {other.high:.2f}); figures from a machine that was not quiet are noisy")
    if result.get("label"):
        lines.insert(0, f"- **Note**: {result['label']}")
    return lines


def _command(result: dict) -> str:
    """The command as run, with a --label's text (shown as the Note) elided."""
    label = result.get("label")
    return result["command"].replace(shlex.quote(label), "'…'") if label else result["command"]


def summary_lines(view: View) -> list[str]:
    """The compact part the README shows: headline figures and the goals."""
    result = view.result
    lines = [SUMMARY_BEGIN] + header_lines(result) + [""]
    heads = [s for s in view.scenarios if s["kind"] in ("http", "latency", "idle") and s["app"] == "raw"]
    if heads:
        header = ["server"]
        for s in heads:
            unit = {"rps": "req/s", "cpu": "CPU µs/req", "latency": "p99 µs", "memory": "B/conn"}[s["headline"]]
            header.append(f"{s['key']} ({unit})")
        rows_keys: list[str] = []
        for s in heads:
            rows_keys += [r for r in view.rows_of(s["key"]) if r not in rows_keys
                          and view.servers.get(r, {}).get("group") != "echo"]
        rows_keys.sort(key=lambda k: (GROUP_ORDER.get(view.servers.get(k, {}).get("group"), 9),
                                      not view.servers.get(k, {}).get("netcore"),
                                      list(view.servers).index(k) if k in view.servers else 99))
        rows = []
        for row in rows_keys:
            cells = [view.name(row)]
            for s in heads:
                metric = {"rps": "rps", "cpu": "cpu", "latency": "p99", "memory": "bytes_per_conn"}[s["headline"]]
                c = view.cell(s["key"], row)
                cells.append(fmt_num(c[metric].median) if c and c.get(metric) else "–")
            rows.append(cells)
        lines += ["HTTP, the same app on every server (medians; spreads and ratios in the full results):", ""]
        lines += _table(header, rows) + [""]
    for key, title in (("fastapi", "FastAPI"), ("flask", "Flask")):
        rows = []
        for row in view.rows_of(key):
            c = view.cell(key, row)
            rows.append([view.name(row), fmt_num(c["rps"].median if c["rps"] else None),
                         fmt_num(c["cpu"].median if c["cpu"] else None)])
        if rows:
            lines += [f"{title} JSON endpoint:", ""] + _table(["server", "req/s", "CPU µs/req"], rows) + [""]
    echo = [s for s in view.scenarios if s["kind"] == "echo"]
    idle = next((s["key"] for s in view.scenarios if s["kind"] == "idle"), None)
    rows_keys = []
    for key in [s["key"] for s in echo] + ([idle] if idle else []):
        rows_keys += [r for r in view.rows_of(key) if r not in rows_keys
                      and view.servers.get(r, {}).get("group") == "echo"]
    if rows_keys:
        rows = []
        for row in rows_keys:
            cells = [view.name(row)]
            for s in echo:
                c = view.cell(s["key"], row)
                cells += [fmt_num(c["rps"].median) if c and c["rps"] else "–",
                          fmt_num(c["cpu"].median) if c and c["cpu"] else "–"]
            c = view.cell(idle, row)
            if idle:
                cells.append(fmt_num(c["bytes_per_conn"].median) if c and c["bytes_per_conn"] else "–")
            rows.append(cells)
        header = ["server"]
        for s in echo:
            header += [f"{s['key']} msg/s", f"{s['key']} CPU µs/msg"]
        if idle:
            header.append("idle (B/conn)")
        lines += ["The core alone (echo servers: 64-byte ping-pong; memory per idle connection):", ""]
        lines += _table(header, rows) + [""]
    for s in view.scenarios:
        if s["kind"] == "loadgen":
            _, verdicts = loadgen_table(view, s)
            if verdicts:
                lines += ["Built-in load generator against wrk (C server): " + "; ".join(verdicts) + ".", ""]
    lines += ["Goals set by the issues:", ""] + goals_table(view, measured_only=True) + ["", SUMMARY_END]
    return lines


def markdown(result: dict) -> str:
    view = View(result)
    out = ["# netcore benchmark results", ""]
    out += summary_lines(view)
    out += ["", "## Scenarios", "",
            "Ratios: each row against netcore's row of the same interface (its first backend); "
            "† marks a row compared with netcore native because netcore's own front end for its interface "
            "was not measured. requests/s and messages/s: higher is better; CPU, latency and memory: lower "
            "is better. \"load generator CPU use\" near 100% means the generator's core, not the server, "
            "set the pace.", ""]
    for scn in view.scenarios:
        out += [f"### {scn['title']} (`{scn['key']}`)", ""]
        desc = _describe(scn, result["options"])
        if desc:
            out += [desc, ""]
        if scn["kind"] == "http":
            out += http_table(view, scn)
        elif scn["kind"] == "latency":
            out += latency_table(view, scn)
        elif scn["kind"] == "idle":
            out += idle_table(view, scn)
        elif scn["kind"] == "echo":
            out += echo_table(view, scn)
        elif scn["kind"] == "loadgen":
            table, verdicts = loadgen_table(view, scn)
            out += table + ([""] + [f"- {v}" for v in verdicts] if verdicts else [])
        if not any(s == scn["key"] for s, _ in view.cells):
            out += ["", "(no runs)"]
        out.append("")
    out += ["## Goals set by the issues", ""] + goals_table(view) + [""]
    out += ["## Servers", ""]
    ran = {r for (_, r) in view.cells}

    def status(s: dict) -> str:
        if s["missing"]:
            return "skipped: " + s["missing"]
        return "ran" if s["key"] in ran else "not run (not selected, or no scenario for it)"
    rows = [[s["name"], GROUP_LABEL.get(s["group"], s["group"]), s["settings"] or "", status(s)]
            for s in result["servers"]]
    out += _table(["server", "interface", "settings", "here"], rows, 4) + [""]
    if result["notes"] or result["failures"]:
        out += ["## Skipped and failed", ""]
        out += [f"- skipped: {n}" for n in result["notes"]] + [f"- failed: {f}" for f in result["failures"]] + [""]
    return "\n".join(out)


def _describe(scn: dict, options: dict) -> str:
    conns = scn["connections"]
    if scn["kind"] in ("http", "latency", "loadgen") and options.get("connections"):
        conns = options["connections"]
    if scn["kind"] == "idle" and options.get("idle_connections"):
        conns = options["idle_connections"]
    parts = [f"{conns:,} connections"]
    if scn["kind"] in ("http", "latency"):
        parts.append(f"`{scn['method']} {scn['path']}`")
    if scn["depth"] > 1:
        parts.append(f"{scn['depth']} requests pipelined per connection")
    if scn["body_bytes"]:
        parts.append(f"{scn['body_bytes']:,}-byte body")
    if scn["kind"] == "latency":
        parts.append(f"{options['rate']:,.0f} requests/s in all")
    text = "; ".join(parts) + "."
    return (text + " " + scn["note"]).strip()


def write(result: dict, out_dir: str) -> list[str]:
    """Writes results.json, results.md and (with matplotlib) results.png;
    returns notes about what was not written."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(result) + "\n")
    from . import chart
    why = chart.write(View(result), os.path.join(out_dir, "results.png"))
    return [why] if why else []


def main(argv: Optional[list] = None) -> int:
    """python -m benchmarks.report DIR/results.json [--out DIR]: writes
    results.md and results.png again from the raw figures of a run."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    ap.add_argument("results_json")
    ap.add_argument("--out", help="directory to write to (default: the JSON file's)")
    args = ap.parse_args(argv)
    with open(args.results_json, encoding="utf-8") as f:
        result = json.load(f)
    out = args.out or os.path.dirname(os.path.abspath(args.results_json))
    for note in write(result, out):
        print(note)
    print(f"wrote {os.path.join(out, 'results.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

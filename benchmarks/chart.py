"""results.png: one panel per scenario, a bar per server for the
scenario's headline figure (the median) with the min-max spread as an
error bar; netcore's bars are coloured.  Needs matplotlib (the `chart`
extra); without it the suite says the chart was skipped."""
from __future__ import annotations

import math
from typing import Optional

METRIC = {"rps": ("rps", "requests/s (higher is better)"),
          "cpu": ("cpu", "server CPU µs per request or message (lower is better)"),
          "latency": ("p99", "p99 latency µs (lower is better)"),
          "memory": ("bytes_per_conn", "bytes per idle connection (lower is better)")}


def write(view, path: str) -> Optional[str]:
    """Draws the chart; returns why not when it cannot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "results.png skipped: matplotlib is not installed (pip install netcore[chart])"
    panels = []
    for scn in view.scenarios:
        if scn["kind"] == "loadgen":
            rows = [(f"{load}: {tool}", cell) for load, tool, cell in _loadgen(view, scn)]
            metric, label = "rps", "requests/s against the C server"
        else:
            metric, label = METRIC[scn["headline"]]
            rows = [(view.name(r), view.cell(scn["key"], r)) for r in view.rows_of(scn["key"])]
            rows = [(n, c) for n, c in rows if c]
        rows = [(n, c[metric], c) for n, c in rows if c.get(metric)]
        if rows:
            panels.append((scn, label, rows))
    if not panels:
        return "results.png skipped: no figures to draw"
    from matplotlib.ticker import FuncFormatter

    from .report import fmt_num
    ticks = FuncFormatter(lambda v, _pos: fmt_num(v) if v else "0")
    cols = 2
    nrows = math.ceil(len(panels) / cols)
    height = [max(1.6, 0.32 * len(p[2]) + 0.9) for p in panels]
    row_h = [max(height[i:i + cols]) for i in range(0, len(height), cols)]
    fig, axes = plt.subplots(nrows, cols, figsize=(15, sum(row_h) + 1.0),
                             gridspec_kw={"height_ratios": row_h}, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (scn, label, rows) in zip(axes.flat, panels):
        names = [n for n, _, _ in rows][::-1]
        med = [s.median for _, s, _ in rows][::-1]
        err = [[s.median - s.low for _, s, _ in rows][::-1], [s.high - s.median for _, s, _ in rows][::-1]]
        colors = ["#d9480f" if n.startswith("netcore") else "#868e96" for n in names]
        ax.barh(names, med, xerr=err, color=colors, capsize=2, error_kw={"elinewidth": 0.8})
        if scn["headline"] in ("latency", "memory") and max(med) > 20 * min(med):
            ax.set_xscale("log")  # one slow row would flatten the rest
            label += ", log scale"
        ax.set_title(scn["title"], fontsize=10, loc="left")
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(ticks)
        ax.grid(axis="x", alpha=0.3)
    m = view.result["machine"]
    fig.suptitle(f"netcore benchmark suite · {m['date']} · {m['cpu']}, {m['logical_cpus']} CPUs · "
                 f"medians of {view.result['options']['runs']} runs, bars: min–max", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def _loadgen(view, scn):
    from .report import TOOL_NAMES, loadgen_rows
    return [(load, TOOL_NAMES.get(tool, tool), cell) for load, tool, cell in loadgen_rows(view, scn)]

"""The suite's registry (what runs, what is skipped and why), its process
accounting, the report, the goals, the README splice, and one small run
end to end."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from benchmarks import idle, procs, readme, report, servers, targets
from benchmarks.runner import Options, Suite, Toolbox
from benchmarks.scenarios import BY_KEY, select

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HELP_TODAY = """usage: netcore [-h]
  --backend {auto,epoll,iocp}
  --interface {native}  application interface
  --threads THREADS
"""
HELP_LATER = """usage: netcore [-h]
  --backend {auto,epoll,iocp,uring}
  --interface {auto,native,wsgi,asgi}
  --lifespan {auto,on,off}
  --threads THREADS
  --io-threads IO_THREADS
  --c-fastpath, --no-c-fastpath
"""


def rows(help_text: str, backends=("epoll",)) -> tuple[dict, servers.Env]:
    env = servers.Env(c_server="/bin/true", netcore_help=help_text, backends=list(backends))
    return {r.key: r for r in servers.registry(env)}, env


def test_front_ends_missing_today_are_skipped_with_a_reason():
    reg, env = rows(HELP_TODAY)
    assert reg["netcore-native-epoll"].missing is None
    for key in ("netcore-asgi-epoll", "netcore-wsgi-epoll", "netcore-wsgi-inline-epoll",
                "netcore-native-io2-epoll"):
        assert "does not exist yet" in reg[key].missing
    assert any("io_uring" in n for n in env.notes)


def test_front_ends_and_uring_run_once_the_cli_has_them():
    reg, env = rows(HELP_LATER, backends=("epoll", "uring"))
    for key in ("netcore-asgi-epoll", "netcore-wsgi-epoll", "netcore-wsgi-inline-uring", "netcore-native-uring",
                "netcore-iocore-uring"):
        assert reg[key].missing is None, key
    asgi = reg["netcore-asgi-uring"].command("raw", 9)
    assert asgi[asgi.index("--interface") + 1] == "asgi" and "--lifespan" in asgi
    assert asgi[asgi.index("--backend") + 1] == "uring"
    inline = reg["netcore-wsgi-inline-epoll"].command("flask", 9)
    assert inline[inline.index("--threads") + 1] == "0" and "benchmarks.apps.flask_app:app" in inline
    assert reg["netcore-native-io2-epoll"].command("raw", 9)[-2:] == ["--io-threads", "2"]
    assert reg["netcore-native-python-epoll"].command("raw", 9)[-1] == "--no-c-fastpath"
    assert "netcore-native-python-uring" not in reg          # the Python path: one backend
    assert not any("io_uring" in n for n in env.notes)
    # the core may call it io_uring while the CLI says uring
    reg2, _ = rows(HELP_LATER, backends=("epoll", "io_uring"))
    cmd = reg2["netcore-native-io_uring"].command("raw", 9)
    assert cmd[cmd.index("--backend") + 1] == "uring"
    echo = reg2["netcore-iocore-io_uring"].command("echo", 9)     # the core's own name for its Queue
    assert echo[echo.index("--backend") + 1] == "io_uring"


def test_reference_rows():
    reg, _ = rows(HELP_LATER, backends=("epoll", "uring"))
    all_rows = list(reg.values())
    ref = lambda k: servers.reference_for(reg[k], all_rows).key  # noqa: E731
    assert ref("granian-asgi") == "netcore-asgi-epoll"
    assert ref("netcore-native-uring") == "netcore-native-epoll"     # uring is compared with epoll
    assert ref("netcore-wsgi-inline-epoll") == "netcore-wsgi-epoll"
    assert ref("netcore-native-io2-epoll") == "netcore-native-epoll"
    assert ref("netcore-native-python-epoll") == "netcore-native-epoll"
    assert ref("c-epoll") == "netcore-native-epoll"
    assert ref("uvloop-echo") == "netcore-iocore-epoll"
    today, _ = rows(HELP_TODAY)
    assert servers.reference_for(today["granian-asgi"], list(today.values())).key == "netcore-native-epoll"


def test_absent_module_is_a_one_line_reason():
    why = servers.have_module("no_such_peer_module_xyz")
    assert "not installed" in why and "\n" not in why
    assert servers.have_module("json") is None


def _suite(reg_rows, scenario_keys, have_wrk=True) -> Suite:
    s = Suite(Options(runs=1), select(scenario_keys, False))
    s.rows = reg_rows
    s.env = servers.Env(c_server=None, c_server_note="no C compiler to build the C epoll server")
    s.tools = Toolbox(wrk="/usr/bin/wrk" if have_wrk else None, c_engine=None, c_engine_note="no C compiler",
                      python_engine=object())
    return s


def test_plan_skips_absent_peers_and_frameworks(monkeypatch):
    reg, _ = rows(HELP_TODAY)
    reg["gunicorn"].missing = "gunicorn is not installed (pip install netcore[bench])"
    reg["c-epoll"].missing = "no C compiler to build the C epoll server"
    real = servers.have_module
    monkeypatch.setattr(servers, "have_module", lambda m: "flask is not installed" if m == "flask" else real(m))
    suite = _suite(list(reg.values()), ["plaintext", "flask", "loadgen"])
    jobs = suite.plan()
    keys = {(j.server.key, j.app) for j in jobs}
    assert ("netcore-native-epoll", "raw") in keys
    assert not any(k[0] in ("gunicorn", "c-epoll", "netcore-asgi-epoll") for k in keys)
    assert not any(app == "flask" for _, app in keys)
    notes = " | ".join(suite.notes)
    assert "gunicorn is not installed" in notes
    assert "Flask JSON endpoint: flask is not installed" in notes
    assert "loadgen: no C compiler" in notes
    assert "netcore ASGI (epoll): `netcore --interface asgi` does not exist yet" in notes


def test_plan_only_filters_and_rejects_unknown_words():
    reg, _ = rows(HELP_TODAY)
    reg["uvicorn"].missing = None   # as if installed: this test is about the filter
    suite = _suite(list(reg.values()), ["plaintext", "echo-100"])
    suite.options.only = ["uvicorn", "iocore"]
    assert {j.server.key for j in suite.plan()} == {"uvicorn", "netcore-iocore-epoll"}
    suite.options.only = ["nothing-like-this"]
    with pytest.raises(SystemExit):
        suite.plan()


def test_scenario_selection():
    assert [s.key for s in select(None, True)] == [k for k, s in BY_KEY.items() if s.quick]
    assert [s.key for s in select(["json", "plaintext"], False)] == ["plaintext", "json"]
    with pytest.raises(ValueError, match="unknown scenario"):
        select(["nope"], False)


# ---------------------------------------------------------------- accounting

BURN = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time\\nt=time.process_time()\\nwhile time.process_time()-t<0.6: pass\\nprint('done', flush=True)\\ntime.sleep(30)"])
print(child.pid, flush=True)
time.sleep(30)
"""


@pytest.mark.skipif(not procs.HAVE_PROC, reason="needs /proc (Linux)")
def test_tree_cpu_counts_grandchildren():
    """CPU burnt by a child of the server process counts as the server's."""
    p = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    try:
        child = int(p.stdout.readline())
        assert child in procs.tree_pids(p.pid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and procs.tree_cpu_seconds(p.pid) < 0.5:
            time.sleep(0.05)
        assert procs.tree_cpu_seconds(p.pid) >= 0.5
        assert procs.tree_rss_bytes(p.pid) > procs.tree_rss_bytes(child)
    finally:
        for pid in procs.tree_pids(p.pid)[::-1]:
            os.kill(pid, 9)
        p.wait(10)


@pytest.mark.skipif(not procs.HAVE_PROC, reason="needs /proc (Linux)")
def test_idle_connections_are_held_and_measured(counting_server):
    srv = counting_server()
    out = idle.measure(os.getpid(), srv.port, 60, timeout=30)
    # the counting server runs in this process: only its ends count (local port = its port)
    assert out["held"] == 60 and "failed" not in out
    assert out["bytes_per_conn"] is not None
    assert srv.requests == 60


# ---------------------------------------------------------------- report

def _result(runs: list, servers_: list) -> dict:
    return {"machine": {"date": "2026-12-01 10:00 UTC", "cpu": "Test CPU", "logical_cpus": 2, "os": "Linux",
                        "python": "CPython 3.11", "netcore_commit": "abc", "packages": {"granian": "2"},
                        "tools": {"wrk": "4"}, "placement": "server on CPU 0", "load_average_start": "0.1",
                        "load_average_end": "0.2"},
            "command": "python -m benchmarks --runs 3", "label": "",
            "options": {"runs": 3, "warmup": 1, "duration": 5, "rate": 10000, "connections": None,
                        "idle_connections": None},
            "scenarios": [{"key": k, **{f: getattr(BY_KEY[k], f) for f in (
                "title", "kind", "app", "path", "method", "body_bytes", "depth", "heads", "connections",
                "headline", "quick", "note")}} for k in ("plaintext", "pipelined", "idle")],
            "servers": servers_, "notes": ["x: skipped"], "failures": [], "runs": runs}


SRV = [{"key": "netcore-native-epoll", "name": "netcore native (epoll)", "group": "native", "netcore": True,
        "apps": ["raw"], "settings": "", "missing": None, "reference": "netcore-native-epoll"},
       {"key": "c-epoll", "name": "C epoll server", "group": "native", "netcore": False, "apps": ["raw"],
        "settings": "", "missing": None, "reference": "netcore-native-epoll"},
       {"key": "uvloop-protocol", "name": "uvloop + httptools Protocol", "group": "native", "netcore": False,
        "apps": ["raw"], "settings": "", "missing": None, "reference": "netcore-native-epoll"}]


def _runs(scenario, row, rps, cpu):
    return [{"scenario": scenario, "row": row, "round": i, "tool": "wrk", "rps": r, "cpu_us": c,
             "requests": int(r * 5), "errors": {}} for i, (r, c) in enumerate(zip(rps, cpu))]


def test_markdown_cells_have_median_spread_and_ratio():
    runs = (_runs("pipelined", "netcore-native-epoll", [400e3, 380e3, 420e3], [2.0, 2.1, 1.9])
            + _runs("pipelined", "c-epoll", [1.0e6, 0.9e6, 1.1e6], [0.5, 0.5, 0.5])
            + _runs("plaintext", "netcore-native-epoll", [100e3] * 3, [6.0, 6.2, 5.9])
            + _runs("plaintext", "c-epoll", [100e3] * 3, [5.0, 5.1, 4.9])
            + [{"scenario": "pipelined", "row": "uvloop-protocol", "round": 0, "failed": "did not start"}])
    md = report.markdown(_result(runs, SRV))
    assert "| netcore native (epoll) | native | 400k (380k–420k) | 1.00× |" in md
    assert "| C epoll server | native | 1M (900k–1.1M) | 2.50× | 0.50 | 0.25× |" in md
    assert "(1 of 1 runs failed)" in md
    # the goals: pipelined 0.4x the C server (not met), CPU 6.0/5.0 = 1.2x (met, but the spread
    # 5.9/5.1 .. 6.2/4.9 straddles 1.25)
    assert "| #8 | native pipelined plaintext ≥ 0.5× C server | 0.40× (0.35–0.47) | not met |" in md
    assert "native plaintext CPU/request ≤ 1.25× C server | 1.20× (1.16–1.27) | met (median; the spread straddles it) |" in md
    assert "2026-12-01 10:00 UTC" in md and "`python -m benchmarks --runs 3`" in md
    assert md.count(report.SUMMARY_BEGIN) == 1 and md.count(report.SUMMARY_END) == 1


def test_goal_verdicts():
    cells = {("s", "a"): {"rps": report.Spread(10, 9, 11, 3)}, ("s", "b"): {"rps": report.Spread(4, 4, 4, 3)}}
    keys = ["a", "b"]
    g = targets.Goal("#x", "a ≥ 2× b", "s", "rps", "a", "b", ">=", 2)
    assert targets.check(g, lambda s, r: cells.get((s, r)), keys).verdict == "met"
    g3 = targets.Goal("#x", "a ≥ 2.5× b", "s", "rps", "a", "b", ">=", 2.5)
    assert targets.check(g3, lambda s, r: cells.get((s, r)), keys).verdict.startswith("met (median")
    g4 = targets.Goal("#x", "a ≥ 3× b", "s", "rps", "a", "b", ">=", 3)
    assert targets.check(g4, lambda s, r: cells.get((s, r)), keys).verdict == "not met"
    gm = targets.Goal("#x", "missing", "s", "rps", "zzz", "b", ">=", 1)
    assert targets.check(gm, lambda s, r: cells.get((s, r)), keys).verdict == "not measured"


def test_goal_rows_resolve_by_backend_suffix():
    keys = ["netcore-native-epoll", "netcore-wsgi-epoll", "netcore-wsgi-inline-epoll", "netcore-native-io_uring"]
    assert targets.resolve("netcore-native", keys) == "netcore-native-epoll"
    assert targets.resolve("netcore-wsgi", keys) == "netcore-wsgi-epoll"
    assert targets.resolve("netcore-wsgi-inline", keys) == "netcore-wsgi-inline-epoll"
    assert targets.resolve("netcore-native-uring", keys) == "netcore-native-io_uring"
    assert targets.resolve("granian-asgi", keys) is None


def test_readme_splice_replaces_only_the_marked_section(tmp_path):
    md = report.markdown(_result(_runs("plaintext", "netcore-native-epoll", [1e5] * 3, [6.0] * 3), SRV))
    res = tmp_path / "results.md"
    res.write_text(md)
    rd = tmp_path / "README.md"
    rd.write_text(f"# x\n\n## Performance\n\nintro\n\n{readme.BEGIN}\nold table\n{readme.END}\n\n## Tests\nkeep\n")
    assert readme.main([str(res), "--readme", str(rd)]) == 0
    text = rd.read_text()
    assert "old table" not in text and "2026-12-01 10:00 UTC" in text
    assert text.startswith("# x\n\n## Performance\n\nintro\n\n") and text.endswith("## Tests\nkeep\n")
    assert "[`results.md`](results.md)" in text
    rd.write_text("# no markers\n")
    assert readme.main([str(res), "--readme", str(rd)]) == 1
    with pytest.raises(ValueError):
        readme.summary("no summary here")


# ---------------------------------------------------------------- end to end

@pytest.mark.skipif(not shutil.which("cc") and not shutil.which("gcc"), reason="needs a C compiler (C server)")
@pytest.mark.skipif(not procs.HAVE_PROC, reason="needs /proc (Linux)")
def test_a_small_run_end_to_end(tmp_path):
    """Two scenarios, two servers that need no peer package, the built-in
    Python engine (no wrk needed): the outputs exist and hold the runs."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--scenario", "plaintext,idle",
                           "--only", "c-epoll,netcore-native-epoll", "--duration", "0.5", "--warmup", "0",
                           "--runs", "2", "--idle-connections", "50", "--loadgen", "python", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "results.json").read_text())
    runs = [r for r in data["runs"] if r["scenario"] == "plaintext"]
    assert {(r["row"], r["round"]) for r in runs} == {(k, i) for k in ("c-epoll", "netcore-native-epoll")
                                                     for i in (0, 1)}
    for r in runs:
        assert not r.get("failed") and r["requests"] > 0 and r["tool"] == "builtin-python", r
        assert r["cpu_us"] > 0, r
    idle_runs = [r for r in data["runs"] if r["scenario"] == "idle"]
    assert len(idle_runs) == 4, idle_runs
    for r in idle_runs:
        assert r["held"] == 50 and r["bytes_per_conn"] is not None, r
    md = (out / "results.md").read_text()
    assert "### Plaintext (`plaintext`)" in md and "| C epoll server |" in md
    assert data["machine"]["cpu"] and data["machine"]["placement"]


def test_chart_is_optional(tmp_path, monkeypatch):
    result = _result(_runs("plaintext", "netcore-native-epoll", [1e5] * 3, [6.0] * 3)
                     + _runs("plaintext", "c-epoll", [1.2e5] * 3, [5.0] * 3), SRV)
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # as if it were not installed
    notes = report.write(result, str(tmp_path))
    assert notes and "matplotlib is not installed" in notes[0]
    assert (tmp_path / "results.md").exists() and (tmp_path / "results.json").exists()
    assert not (tmp_path / "results.png").exists()
    monkeypatch.delitem(sys.modules, "matplotlib")
    pytest.importorskip("matplotlib")
    assert report.write(result, str(tmp_path)) == []
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

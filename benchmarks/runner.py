"""Runs the suite: builds the C pieces, finds what can run here, and goes
through rounds.  One round starts every server once (each one alone on the
machine, pinned to the server CPU), warms it up and measures one run of
each of its scenarios, then stops it; the next round does the same in a
rotated order.  So runs of one server are interleaved with the others'
(A B C A B C), and drift on a shared machine spreads over every row.

Every run records the server tree's CPU time over the run (the OS
accounting of every process in it), the load generator's own CPU time, and
the CPU the rest of the machine used meanwhile (a gauge of other load).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

from . import idle, loadgen, machine, procs, servers, wrk
from .progress import Progress
from .scenarios import Scenario
from .servers import Server

REPO = servers.REPO
PEERS = servers.PEERS
START_TIMEOUT = 30.0
_ERROR_SHARE = 0.01  # more errors than this share of requests mark a run as failed


@dataclass
class Options:
    duration: float = 5.0
    warmup: float = 1.0
    runs: int = 3
    connections: Optional[int] = None       # overrides the HTTP scenarios' own
    idle_connections: Optional[int] = None
    rate: float = 10_000.0
    loadgen: str = "auto"                   # auto | wrk | c | python
    loadgen_procs: Optional[int] = None
    only: Sequence[str] = ()
    quick: bool = False


@dataclass
class Job:
    """One server process and the scenarios it runs in a round."""

    server: Server
    app: str
    scenarios: list     # idle gets a job of its own: a process nothing ran in before

    @property
    def steps(self) -> int:
        return sum(3 * len(LOADGEN_LOADS) if s.kind == "loadgen" else 1 for s in self.scenarios)


# the loadgen scenario: (label, depth) of the loads each generator sends
LOADGEN_LOADS = (("plaintext", 1), ("pipelined ×16", 16))


@dataclass
class Toolbox:
    """The load generators this machine has."""

    wrk: Optional[str]
    c_engine: Optional[loadgen.Engine]
    c_engine_note: str
    python_engine: Optional[loadgen.Engine]

    def builtin(self) -> Optional[loadgen.Engine]:
        return self.c_engine or self.python_engine


@dataclass
class Suite:
    options: Options
    scenarios: list
    build_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="netcore-bench-"))
    progress: Optional[Progress] = None
    runs: list = field(default_factory=list)
    notes: list = field(default_factory=list)      # skipped rows and scenarios, one line each
    failures: list = field(default_factory=list)   # runs that failed, one line each

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        self.place = machine.placement()
        if self.place.client and procs.can_pin():
            os.sched_setaffinity(0, set(self.place.client))   # keep the suite off the server's CPU
        idle.raise_nofile(1 << 20)                               # servers inherit it
        c_server, c_note = self._build_c_server()
        c_engine, c_engine_note = loadgen.build_c_engine(self.build_dir)
        self.tools = Toolbox(wrk.find(), c_engine, c_engine_note,
                             loadgen.PYTHON_ENGINE if servers.iocore_backends() else None)
        self.env = servers.Env(c_server=c_server, c_server_note=c_note, netcore_help=servers.netcore_help(),
                               backends=servers.iocore_backends())
        self.rows = servers.registry(self.env)
        self.notes.extend(self.env.notes)
        cc = loadgen.compiler()
        tools = {"load generator (HTTP)": self.http_tool_name(), "C compiler": machine.compiler_version(cc) or "none"}
        if self.tools.wrk:
            tools["wrk"] = wrk.version(self.tools.wrk)
        self.machine = machine.describe(self.place, tools)
        self._check_tools()

    def _build_c_server(self) -> tuple[Optional[str], str]:
        if not os.path.isdir("/proc") or not hasattr(os, "sched_getaffinity"):
            return None, "the C epoll server needs Linux"
        cc = loadgen.compiler()
        if not cc:
            return None, "no C compiler to build the C epoll server"
        exe = os.path.join(self.build_dir, "c_server")
        res = subprocess.run([cc, "-O2", "-o", exe, os.path.join(PEERS, "c_server.c")],
                             capture_output=True, text=True, timeout=120)
        if res.returncode:
            return None, f"building the C epoll server failed: {res.stderr.strip()[:200]}"
        return exe, ""

    def http_tool_name(self) -> str:
        tool = self._http_tool()
        return {"wrk": "wrk", "c": "built-in generator, C engine",
                "python": "built-in generator, Python engine"}.get(tool or "", "none")

    def _http_tool(self) -> Optional[str]:
        want = self.options.loadgen
        have = {"wrk": self.tools.wrk, "c": self.tools.c_engine, "python": self.tools.python_engine}
        if want != "auto":
            return want if have.get(want) else None
        return next((k for k in ("wrk", "c", "python") if have[k]), None)

    def _check_tools(self) -> None:
        if self.options.loadgen != "auto" and self._http_tool() is None:
            why = self.tools.c_engine_note if self.options.loadgen == "c" else "not found"
            raise SystemExit(f"--loadgen {self.options.loadgen}: {why}")
        if not self.tools.wrk:
            self.notes.append("wrk: not found; HTTP scenarios use the built-in load generator")
        if not self.tools.c_engine:
            self.notes.append(f"built-in generator, C engine: {self.tools.c_engine_note}; "
                              "the Python engine runs instead")

    # ------------------------------------------------------------ planning

    def selected_rows(self) -> list[Server]:
        rows = [r for r in self.rows if not self.options.only or r.matches(self.options.only)]
        if self.options.only and not rows:
            raise SystemExit(f"--only {','.join(self.options.only)} matches no server; "
                             f"known: {', '.join(r.key for r in self.rows)}")
        return rows

    def plan(self) -> list[Job]:
        rows = self.selected_rows()
        jobs: list[Job] = []
        for r in rows:
            if r.missing:
                self.notes.append(f"{r.name}: {r.missing}")
        for app in ("raw", "fastapi", "flask", "echo"):
            scns = [s for s in self.scenarios if s.app == app and s.kind in ("http", "latency", "echo")]
            if not scns:
                continue
            framework = servers.FRAMEWORK_MODULES.get(app)
            why = servers.have_module(framework) if framework else None
            if why:
                self.notes.append(f"{', '.join(s.title for s in scns)}: {why}")
                continue
            if any(s.kind == "latency" for s in scns) and not self.tools.builtin():
                self.notes.append("latency: the built-in generator cannot run here")
                scns = [s for s in scns if s.kind != "latency"]
            for r in rows:
                if app in r.apps and not r.missing:
                    jobs.append(Job(r, app, scns))
        for s in self.scenarios:
            if s.kind == "idle":
                jobs += [Job(r, "echo" if r.group == "echo" else "raw", [s]) for r in rows
                         if ("raw" in r.apps or "echo" in r.apps) and not r.missing]
            elif s.kind == "loadgen":
                c_row = next((r for r in self.rows if r.key == "c-epoll"), None)
                if c_row is None or c_row.missing:
                    self.notes.append(f"loadgen: {self.env.c_server_note}")
                else:
                    jobs.append(Job(c_row, "raw", [s]))
        return jobs

    # ------------------------------------------------------------ running

    def run(self, say: Callable[[str], None] = print) -> None:
        jobs = self.plan()
        o = self.options
        steps = sum(j.steps for j in jobs) * o.runs
        per = o.duration + o.warmup + 0.5
        self.progress = Progress(steps, steps * per)
        for note in self.notes:
            self.progress.say(f"skip: {note}")
        dead: set = set()
        try:
            for rnd in range(o.runs):
                shift = rnd % len(jobs) if jobs else 0
                for job in jobs[shift:] + jobs[:shift]:
                    if (job.server.key, job.app) in dead:
                        self.progress.done += job.steps
                        continue
                    if not self._run_job(job, rnd):
                        dead.add((job.server.key, job.app))
        finally:
            self.progress.finish()

    def _server_env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def _start(self, job: Job) -> tuple[procs.ServerProcess, int]:
        port = procs.free_port()
        sp = procs.ServerProcess(job.server.name, job.server.command(job.app, port), REPO,
                                 self.place.server, env=self._server_env())
        probe = (lambda: _probe_echo(port)) if job.server.ready == "echo" else (lambda: _probe_http(port))
        try:
            sp.wait_ready(probe, START_TIMEOUT)
        except procs.ServerError:
            sp.stop()
            raise
        return sp, port

    def _run_job(self, job: Job, rnd: int) -> bool:
        """One server process through its scenarios; False if it cannot start."""
        label = f"round {rnd + 1}/{self.options.runs} · {job.server.name}"
        self.progress.step(f"{label} · starting")
        try:
            sp, port = self._start(job)
        except procs.ServerError as e:
            self.failures.append(f"{job.server.name} ({job.app} app) did not start: {e}")
            self.progress.say(f"fail: {job.server.name} ({job.app} app) did not start: {e}")
            self.progress.done += job.steps
            return False
        try:
            for i, scn in enumerate(job.scenarios):
                if not sp.alive():
                    self.failures.append(f"{job.server.name} died before {scn.key}: {sp.log_tail()}")
                    self.progress.say(f"fail: {job.server.name} died: {sp.log_tail()}")
                    self.progress.done += Job(job.server, job.app, job.scenarios[i:]).steps
                    break
                if scn.kind == "loadgen":
                    self._loadgen_runs(scn, sp, port, rnd, label)
                    continue
                self.progress.step(f"{label} · {scn.key}")
                try:
                    rec = self._measure(scn, job, sp, port)
                except (OSError, RuntimeError, ValueError, TimeoutError) as e:
                    rec = {"failed": f"{type(e).__name__}: {e}"}
                self._record(scn, job.server.key, rnd, rec)
                self.progress.advance()
        finally:
            sp.stop()
        return True

    def _record(self, scn: Scenario, row: str, rnd: int, rec: dict) -> None:
        rec.update(scenario=scn.key, row=row, round=rnd)
        self.runs.append(rec)
        if rec.get("failed"):
            self.failures.append(f"{scn.key} / {row}, round {rnd + 1}: {rec['failed']}")
        self.progress.say(_summary_line(scn, row, rec))

    # ------------------------------------------------------------ measuring

    def _connections(self, scn: Scenario) -> int:
        if scn.kind == "idle":
            return self.options.idle_connections or scn.connections
        if scn.sized_by_connections_option and self.options.connections:
            return self.options.connections
        return scn.connections

    def _load(self, scn: Scenario, duration: float) -> loadgen.Load:
        if scn.kind == "echo":
            return loadgen.Load(mode="echo", connections=self._connections(scn), duration=duration)
        return loadgen.Load(connections=self._connections(scn), duration=duration, path=scn.path,
                            method=scn.method, body_bytes=scn.body_bytes, depth=scn.depth, heads=scn.heads,
                            rate=self.options.rate if scn.kind == "latency" else 0.0)

    def _client_procs(self) -> int:
        if self.options.loadgen_procs:
            return self.options.loadgen_procs
        return len(self.place.client) if self.place.client else 1

    def _measure(self, scn: Scenario, job: Job, sp: procs.ServerProcess, port: int) -> dict:
        o = self.options
        if scn.kind == "idle":
            return idle.measure(sp.pid, port, self._connections(scn), echo=job.server.ready == "echo")
        if scn.kind == "http":
            tool = self._http_tool()
        else:  # latency and echo need the built-in generator's modes
            tool = "c" if self.tools.c_engine else "python"
        if tool is None:
            raise RuntimeError("no load generator can run here")
        if o.warmup > 0:
            self._drive(tool, scn, port, o.warmup, sp)
        return self._drive(tool, scn, port, o.duration, sp)

    def _drive(self, tool: str, scn: Scenario, port: int, duration: float, sp: procs.ServerProcess,
               depth: Optional[int] = None) -> dict:
        """One timed run of a tool against the server, with the CPU accounting."""
        load = self._load(scn, duration)
        if depth is not None:
            load = loadgen.Load(connections=load.connections, duration=duration, depth=depth)
        cpu0, busy0, t0 = procs.tree_cpu_seconds(sp.pid), procs.machine_busy_seconds(), time.monotonic()
        if tool == "wrk":
            cmd = wrk.command(self.tools.wrk, f"http://127.0.0.1:{port}{load.path}", load.connections,
                              duration, threads=self._client_procs(), depth=load.depth, heads=load.heads,
                              body_bytes=load.body_bytes)
            res = procs.run_clients([cmd], self.place.client, duration + 30)[0]
            rep = wrk.parse(res.stdout)
            rec = {"tool": "wrk", "requests": rep.requests, "duration_s": rep.duration_s,
                   "errors": rep.errors, "latency_us": rep.latency_us, "client_cpu_s": res.cpu_seconds}
        else:
            engine = self.tools.c_engine if tool == "c" else self.tools.python_engine
            out = loadgen.run(engine, load, "127.0.0.1", port, self._client_procs(), self.place.client)
            h = out.hist
            rec = {"tool": f"builtin-{out.engine}", "requests": out.requests, "duration_s": out.duration_s,
                   "errors": out.errors, "client_cpu_s": out.client_cpu_s,
                   "latency_us": {p: h.percentile(float(p)) for p in ("50", "90", "99", "99.9")},
                   "latency_max_us": h.percentile(100.0)}
            if load.rate:
                rec["target_rate"] = load.rate
                rec["hist"] = h.to_pairs()
        wall = time.monotonic() - t0
        cpu1, busy1 = procs.tree_cpu_seconds(sp.pid), procs.machine_busy_seconds()
        rec["rps"] = rec["requests"] / rec["duration_s"] if rec["duration_s"] else 0.0
        if cpu0 is not None and cpu1 is not None:
            rec["server_cpu_s"] = cpu1 - cpu0
            rec["cpu_us"] = (cpu1 - cpu0) / rec["requests"] * 1e6 if rec["requests"] else None
        if busy0 is not None and busy1 is not None and rec.get("client_cpu_s") is not None \
                and rec.get("server_cpu_s") is not None:
            rec["other_cpus"] = max(0.0, (busy1 - busy0) - rec["server_cpu_s"] - rec["client_cpu_s"]) / wall
        if rec.get("client_cpu_s") is not None:
            rec["client_util"] = rec["client_cpu_s"] / wall
        bad = sum(rec["errors"].values())
        if rec["requests"] == 0:
            rec["failed"] = f"no responses ({rec['errors'] or 'no errors reported'})"
        elif bad > _ERROR_SHARE * rec["requests"]:
            rec["failed"] = f"{bad} errors in {rec['requests']} requests: {rec['errors']}"
        return rec

    def _loadgen_runs(self, scn: Scenario, sp: procs.ServerProcess, port: int, rnd: int, label: str) -> None:
        tools = [t for t, ok in (("wrk", self.tools.wrk), ("c", self.tools.c_engine),
                                 ("python", self.tools.python_engine)) if ok]
        for name, depth in LOADGEN_LOADS:
            order = tools[rnd % len(tools):] + tools[:rnd % len(tools)] if tools else []
            for tool in order:
                self.progress.step(f"{label} · loadgen {name} · {tool}")
                try:
                    if self.options.warmup > 0:
                        self._drive(tool, scn, port, self.options.warmup, sp, depth=depth)
                    rec = self._drive(tool, scn, port, self.options.duration, sp, depth=depth)
                except (OSError, RuntimeError, ValueError, TimeoutError) as e:
                    rec = {"failed": f"{type(e).__name__}: {e}"}
                rec["load"] = name
                self._record(scn, f"{name}|{tool}", rnd, rec)
                self.progress.advance()
            self.progress.done += 3 - len(order)

    def result(self, command: str) -> dict:
        self.machine["load_average_end"] = machine.load_average()
        return {
            "machine": self.machine,
            "command": command,
            "options": asdict(self.options),
            "scenarios": [asdict(s) for s in self.scenarios],
            "servers": [{"key": r.key, "name": r.name, "group": r.group, "netcore": r.netcore,
                         "apps": list(r.apps), "settings": r.settings, "missing": r.missing,
                         "reference": (servers.reference_for(r, self.rows).key
                                       if servers.reference_for(r, self.rows) else None)}
                        for r in self.rows],
            "notes": self.notes,
            "failures": self.failures,
            "runs": self.runs,
        }

    def cleanup(self) -> None:
        shutil.rmtree(self.build_dir, ignore_errors=True)


# ---------------------------------------------------------------- probes

def _probe_http(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        s.settimeout(2)
        return s.recv(64).startswith(b"HTTP/1.1 200")


def _probe_echo(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"ping")
        s.settimeout(2)
        return s.recv(4) == b"ping"


def _summary_line(scn: Scenario, row: str, rec: dict) -> str:
    if rec.get("failed"):
        return f"  {scn.key:15} {row:36} FAILED: {rec['failed']}"
    if scn.kind == "idle":
        per = rec.get("bytes_per_conn")
        return (f"  {scn.key:15} {row:36} {per:,.0f} B/connection, {rec.get('held')} held"
                if per is not None else f"  {scn.key:15} {row:36} no memory accounting here")
    cpu = rec.get("cpu_us")
    lat = rec.get("latency_us") or {}
    extra = ""
    if scn.kind == "latency":
        extra = "  p50 {} p99 {} p99.9 {} µs".format(*(f"{lat.get(p):,.0f}" if lat.get(p) is not None else "-"
                                                     for p in ("50", "99", "99.9")))
    return (f"  {scn.key:15} {row:36} {rec['rps']:>12,.0f}/s  "
            f"{(f'{cpu:.2f} µs CPU' if cpu is not None else '-'):>14}  {rec['tool']}{extra}")

"""Processes of the suite: servers (pinned, started and stopped cleanly),
load-generator runs (pinned, with their own CPU time), and the OS
accounting of a server's whole process tree (CPU time and RSS).

Linux reads /proc; elsewhere psutil is used when installed, and without it
CPU and memory figures are reported as missing rather than guessed.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

HAVE_PROC = os.path.isdir("/proc/self/task")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
try:  # optional: CPU and RSS accounting where there is no /proc
    import psutil  # type: ignore
except ImportError:  # pragma: no cover - depends on the machine
    psutil = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity")


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the suite dies, so an interrupted
    or killed run leaves no server behind."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pinner(cpus: Optional[Sequence[int]]) -> Optional[Callable[[], None]]:
    """The child's preexec: pin it (where the OS can) and tie it to the suite."""
    if not sys.platform.startswith("linux"):
        return None if not cpus or not can_pin() else (lambda: os.sched_setaffinity(0, set(cpus)))

    def setup() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, set(cpus))
    return setup


# ------------------------------------------------------------ /proc reading

def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        # comm (field 2) may hold spaces and parentheses: split after the last ')'
        return f.read().rsplit(")", 1)[1].split()


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid = int(_stat_fields(int(name))[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            kids.setdefault(ppid, []).append(int(name))
    return kids


def tree_pids(root: int) -> list[int]:
    """root and every live descendant of it."""
    if not HAVE_PROC:
        if psutil is None:
            return [root]
        try:
            p = psutil.Process(root)
            return [root] + [c.pid for c in p.children(recursive=True)]
        except psutil.Error:
            return []
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def tree_cpu_seconds(root: int) -> Optional[float]:
    """User + system CPU of root's process tree, including reaped children
    (cutime/cstime), in seconds; None where the OS gives no accounting."""
    total = 0.0
    if HAVE_PROC:
        for pid in tree_pids(root):
            try:
                f = _stat_fields(pid)
            except OSError:
                continue
            # fields 14-17 of stat(5): utime stime cutime cstime; f[0] is field 3
            total += sum(int(x) for x in f[11:15]) / CLK_TCK
        return total
    if psutil is None:
        return None
    for pid in tree_pids(root):
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system + getattr(t, "children_user", 0) + getattr(t, "children_system", 0)
        except psutil.Error:
            continue
    return total


def tree_rss_bytes(root: int) -> Optional[int]:
    total = 0
    if HAVE_PROC:
        for pid in tree_pids(root):
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            break
            except OSError:
                continue
        return total
    if psutil is None:
        return None
    for pid in tree_pids(root):
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return total


def tree_connections(root: int, port: int) -> Optional[int]:
    """Established TCP connections to local `port` that root's tree holds
    open (from its descriptors and /proc/net/tcp{,6}); None without /proc."""
    if not HAVE_PROC:
        return None
    inodes = set()
    for pid in tree_pids(root):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    held = set()  # a set: a table read while sockets come and go can repeat a line
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # local_address is HEXIP:HEXPORT; state 01 is ESTABLISHED
                    if fields[3] == "01" and fields[9] in inodes and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        held.add(fields[9])
        except OSError:
            continue
    return len(held)


def machine_busy_seconds() -> Optional[float]:
    """CPU time the whole machine spent busy (not idle or iowait) so far."""
    if not HAVE_PROC:
        return None
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK


def _start_time(pid: int) -> Optional[str]:
    try:
        return _stat_fields(pid)[19]  # field 22: starttime, tells a reused pid apart
    except (OSError, IndexError):
        return None


# ------------------------------------------------------------ servers

class ServerError(RuntimeError):
    """A server did not start, or died; the message says why (log tail)."""


class ServerProcess:
    """A server started in its own session, pinned to cpus, logging to a file."""

    def __init__(self, name: str, cmd: Sequence[str], cwd: str, cpus: Optional[Sequence[int]],
                 env: Optional[dict] = None) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log = tempfile.TemporaryFile(mode="w+b")
        self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=_pinner(cpus), start_new_session=True)
        self.pid = self.proc.pid

    def log_tail(self, lines: int = 3) -> str:
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:]) or "(no output)"

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"exited with status {self.proc.returncode}: {self.log_tail()}")
            try:
                if probe():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise ServerError(f"not ready after {timeout:g} s: {self.log_tail()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGINT (a graceful stop everywhere), then SIGTERM, then SIGKILL;
        descendants left behind (own process groups) are killed by pid."""
        tree = [(p, _start_time(p)) for p in tree_pids(self.pid)] if HAVE_PROC else []
        steps = ((signal.SIGINT, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)) if os.name != "nt" \
            else ((signal.SIGTERM, grace),)  # Windows: SIGTERM is TerminateProcess
        for sig, wait in steps:
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        for pid, started in tree[1:]:
            if started is not None and _start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.log.close()


# ------------------------------------------------------------ clients

class ClientResult:
    __slots__ = ("returncode", "stdout", "cpu_seconds", "wall_seconds")

    def __init__(self, returncode: int, stdout: str, cpu_seconds: Optional[float], wall: float) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.cpu_seconds = cpu_seconds
        self.wall_seconds = wall


def run_clients(cmds: Sequence[Sequence[str]], cpus: Optional[Sequence[int]], timeout: float,
                cwd: Optional[str] = None, env: Optional[dict] = None) -> list[ClientResult]:
    """Runs load-generator processes side by side to completion; each one's
    CPU time comes from wait4 (its rusage), not from sampling."""
    files = [tempfile.TemporaryFile(mode="w+b") for _ in cmds]
    try:
        t0 = time.monotonic()
        procs = [subprocess.Popen(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=f,
                                  stderr=subprocess.STDOUT, preexec_fn=_pinner(cpus))
                 for cmd, f in zip(cmds, files)]
        cpu: list[Optional[float]] = [None] * len(procs)
        wall = [0.0] * len(procs)
        pending = set(range(len(procs)))
        deadline = t0 + timeout
        while pending:
            for i in sorted(pending):
                p = procs[i]
                if hasattr(os, "wait4"):
                    pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                    if not pid:
                        continue
                    p.returncode = os.waitstatus_to_exitcode(status)
                    cpu[i] = usage.ru_utime + usage.ru_stime
                elif p.poll() is None:  # pragma: no cover - Windows
                    continue
                wall[i] = time.monotonic() - t0
                pending.discard(i)
            if pending and time.monotonic() > deadline:
                for i in pending:
                    procs[i].kill()
                    procs[i].wait()
                raise TimeoutError(f"{cmds[0][0]} ran past {timeout:g} s")
            if pending:
                time.sleep(0.02)
        out = []
        for p, f, c, w in zip(procs, files, cpu, wall):
            f.seek(0)
            out.append(ClientResult(p.returncode, f.read().decode("utf-8", "replace"), c, w))
        return out
    finally:
        for f in files:
            f.close()



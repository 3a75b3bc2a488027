"""Helpers shared by run.py and memory.py: starting/stopping servers,
machine description, and updating one section of RESULTS.md."""
import datetime
import os
import platform
import re
import select
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS_PY = os.path.join(HERE, "servers.py")
RESULTS = os.path.join(HERE, "RESULTS.md")
REPO = os.path.dirname(os.path.dirname(HERE))


class Server:
    """One servers.py process pinned to a CPU; use as a context manager."""

    def __init__(self, name, cpu, host="127.0.0.1"):
        self.name = name
        cmd = [sys.executable, SERVERS_PY, name, "--host", host]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu)] + cmd
        # taskset execs the interpreter, so proc.pid is the server itself.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.port = self._await_ready(15.0)

    def _await_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith("READY "):
                    return int(line.split()[1])
                if not line and self.proc.poll() is not None:
                    break
        self.stop()
        raise RuntimeError(f"{self.name} server did not become ready (rc={self.proc.returncode})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def machine_info():
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        model = m.group(1).strip() if m else model
    except (OSError, subprocess.SubprocessError):
        pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{model}, {os.cpu_count()} CPUs",
        "kernel": platform.release(),
        "python": sys.version.split()[0] + f" ({platform.python_implementation()})",
    }
    try:
        import uvloop
        info["uvloop"] = uvloop.__version__
    except ImportError:
        info["uvloop"] = "not installed"
    try:
        info["netcore"] = subprocess.run(
            ["git", "-C", REPO, "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        info["netcore"] = "?"
    with open("/proc/loadavg") as f:
        info["loadavg at start"] = " ".join(f.read().split()[:3])
    return info


def command_line():
    return " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, REPO)] +
                    [os.path.relpath(os.path.abspath(sys.argv[0]), REPO)] + sys.argv[1:])


HEADER = """# Echo benchmark results

Core-level echo benchmark: `netcore.iocore` vs an `asyncio.Protocol` echo
server on the default loop and on uvloop.  Produced by `run.py` (throughput)
and `memory.py` (idle connections); each rewrites only its own section.
"""


def update_section(name, body):
    """Replace the text between this section's markers in RESULTS.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(RESULTS).read() if os.path.exists(RESULTS) else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(RESULTS, "w") as f:
        f.write(text)


def info_lines(info):
    return "\n".join(f"- {k}: {v}" for k, v in info.items())

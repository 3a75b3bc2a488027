"""Load and faults on every interface (``pytest -m reliability``), bounded in time.

Each check runs a real server process (the CLI) per interface with the same
application (apps/reliability_apps.py) and real sockets: hostile input,
slowloris, a 1,000-connection soak (memory slope, descriptors back to
their baseline), clients that stop reading, descriptor exhaustion, worker
death, graceful shutdown under load.  Each prints one line of figures
(README, "Reliability", reports them).
"""
from __future__ import annotations

import os
import random
import resource
import selectors
import signal
import socket
import threading
import time

import pytest

from conftest import REPO, run_cli, stderr_lines, stop_process

pytestmark = pytest.mark.reliability

APP_DIR = os.path.join(REPO, "tests", "http", "apps")
INTERFACES = ("native", "wsgi", "asgi")
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def start(interface: str, *options: str, nofile: int = 0) -> tuple:
    """A server process; (proc, port, pid of the process that serves)."""
    def limit():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    extra = ["--lifespan", "off"] if interface == "asgi" else []
    proc = run_cli([f"reliability_apps:{interface}", "--app-dir", APP_DIR, "--port", "0",
                    "--interface", interface, *extra, *options], preexec_fn=limit)
    found = stderr_lines(proc).wait_for(r"serving on http://[^ ]*?:(\d+) \(pid (\d+)", timeout=15)
    if not found:
        proc.kill()
        raise AssertionError("server did not start: " + stderr_lines(proc).text())
    return proc, int(found[0].group(1)), int(found[0].group(2))


def stop(proc) -> int:
    return stop_process(proc)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def ask(port: int, raw: bytes = GET, timeout: float = 5.0) -> bytes:
    """One request on a new connection; the answer's first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return s.recv(65536)


def recv_all(s: socket.socket) -> bytes:
    """Everything until the server closes (or resets)."""
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def report(name: str, interface: str, **figures) -> None:
    print(f"\nreliability {name} [{interface}]: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.mark.parametrize("interface", INTERFACES)
def test_hostile_input(interface):
    proc, port, pid = start(interface, "--timeout-header-read", "1", "--timeout-keep-alive", "1")
    try:
        rng = random.Random(7)
        valid = (b"POST /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3;a=b\r\nabc\r\n0\r\nT: v\r\n\r\n")
        alphabet = b"\r\n :;,0123456789abcdefABCDEF/HTTP\t\x00\x7f\xff-\""
        answered = closed = 0
        for i in range(400):
            if i % 4 == 0:
                raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
            else:
                b = bytearray(valid * rng.randint(1, 3))
                for _ in range(rng.randint(1, 8)):
                    pos = rng.randrange(len(b))
                    if rng.random() < 0.5:
                        b[pos] = rng.choice(alphabet)
                    else:
                        b.insert(pos, rng.choice(alphabet))
                raw = bytes(b)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                data = recv_all(s)
            assert not data or data.startswith(b"HTTP/1.1 "), data[:60]
            answered += bool(data)
            closed += 1
        assert ask(port).startswith(b"HTTP/1.1 200 ")
        assert proc.poll() is None
        report("hostile input", interface, cases=400, answered=answered, closed=closed)
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("interface", INTERFACES)
def test_slowloris(interface):
    proc, port, pid = start(interface, "--timeout-header-read", "1", "--timeout-body-read", "1")
    try:
        base = fds(pid)
        socks = []
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" if i % 2 else
                      b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
            socks.append(s)
        t0 = time.monotonic()
        # a well-behaved client is served at once meanwhile
        assert ask(port).startswith(b"HTTP/1.1 200 ")
        served_in = time.monotonic() - t0
        cut = 0
        for s in socks:
            s.settimeout(5)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            cut += data.startswith(b"HTTP/1.1 408 ") or data == b""
            s.close()
        elapsed = time.monotonic() - t0
        assert cut == len(socks) and elapsed < 4, (cut, elapsed)
        assert wait_until(lambda: fds(pid) <= base, 5), (fds(pid), base)
        report("slowloris", interface, trickling=len(socks), cut=cut, all_cut_within_s=round(elapsed, 2),
               normal_request_s=round(served_in, 3))
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("interface", INTERFACES)
def test_soak_1000_connections(interface):
    duration = float(os.environ.get("NETCORE_SOAK_SECONDS", "8"))
    proc, port, pid = start(interface, "--timeout-keep-alive", "30")
    try:
        base_fds = fds(pid)
        sel = selectors.DefaultSelector()
        conns = []
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            conns.append(s)
            sel.register(s, selectors.EVENT_READ, [b""])
        for s in conns:
            s.send(GET)
        done = 0
        samples = []
        t0 = time.monotonic()
        next_sample = t0
        while time.monotonic() - t0 < duration:
            for key, _ in sel.select(0.05):
                s = key.fileobj
                buf = key.data[0] + s.recv(65536)
                n = buf.count(b"\r\n\r\nok")
                assert buf, "a soak connection was closed"
                if n:
                    done += n
                    buf = buf[buf.rindex(b"\r\n\r\nok") + 6:]
                    s.send(GET * n)
                key.data[0] = buf
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - t0, rss_kib(pid)))
                next_sample += 0.25
        open_fds = fds(pid)
        for s in conns:
            sel.unregister(s)
            s.close()
        # the slope of RSS over the second half (after warm-up), KiB/s
        half = [(t, r) for t, r in samples if t >= duration / 2]
        n = len(half)
        mt = sum(t for t, _ in half) / n
        mr = sum(r for _, r in half) / n
        slope = sum((t - mt) * (r - mr) for t, r in half) / max(1e-9, sum((t - mt) ** 2 for t, _ in half))
        assert open_fds >= base_fds + 1000
        assert wait_until(lambda: fds(pid) <= base_fds, 10), (fds(pid), base_fds)
        rate = done / duration
        assert rate > 500, rate
        assert slope < 256, f"RSS grows {slope:.0f} KiB/s under a steady load"
        report("soak", interface, connections=1000, seconds=duration, requests=done,
               req_per_s=round(rate), rss_kib_end=samples[-1][1], rss_slope_kib_per_s=round(slope, 1),
               fds_peak=open_fds, fds_after=fds(pid), fds_baseline=base_fds)
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("interface", INTERFACES)
def test_clients_that_stop_reading(interface):
    proc, port, pid = start(interface, "--timeout-write", "1", "--timeout-keep-alive", "30")
    try:
        base_fds = fds(pid)
        base_rss = rss_kib(pid)
        socks = []
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        time.sleep(0.5)     # (let them stall: this is the scenario, not a wait for a condition)
        stalled_rss = rss_kib(pid)
        # cut after the write timeout; meanwhile others are served
        assert ask(port).startswith(b"HTTP/1.1 200 ")
        assert wait_until(lambda: fds(pid) <= base_fds, 6), (fds(pid), base_fds)
        for s in socks:
            s.close()
        report("stop reading", interface, clients=50, rss_kib_before=base_rss,
               rss_kib_stalled=stalled_rss, rss_kib_after=rss_kib(pid), fds_after=fds(pid),
               fds_baseline=base_fds)
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("interface", INTERFACES)
def test_descriptor_exhaustion(interface):
    proc, port, pid = start(interface, "--timeout-keep-alive", "30", nofile=128)
    try:
        socks = []
        for _ in range(300):      # far past the limit: the kernel backlog holds the rest
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        time.sleep(1.0)           # exhausted for a second (the scenario)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu_ticks = int(fields[11]) + int(fields[12])
        time.sleep(1.0)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        busy = (int(fields[11]) + int(fields[12]) - cpu_ticks) / os.sysconf("SC_CLK_TCK")
        for s in socks:
            s.close()
        # descriptors back: it serves again
        assert wait_until(lambda: _serves(port), 10)
        assert busy < 0.5, f"the server spun while out of descriptors: {busy:.2f} s CPU in 1 s"
        assert proc.poll() is None
        report("descriptor exhaustion", interface, nofile=128, connections=len(socks),
               cpu_s_per_s_while_exhausted=round(busy, 3))
    finally:
        assert stop(proc) == 0


def _serves(port: int) -> bool:
    try:
        return ask(port, timeout=2).startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


@pytest.mark.parametrize("interface", INTERFACES)
def test_worker_death_under_load(interface):
    proc, port, _ = start(interface, "--workers", "2")
    try:
        assert wait_until(lambda: len(stderr_lines(proc).wait_for("serving on", 2, 0)) >= 2, 10)
        stop_load = threading.Event()
        counts = {"ok": 0, "failed": 0}

        def load():
            while not stop_load.is_set():
                try:
                    ok = ask(port, timeout=3).startswith(b"HTTP/1.1 200 ")
                except OSError:
                    ok = False
                counts["ok" if ok else "failed"] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        killed = 0
        lines = stderr_lines(proc)
        for n in range(3):
            # kill one worker, then wait for its replacement to serve
            pids = [int(m.group(1)) for m in lines.wait_for(r"serving on .*\(pid (\d+)", 100, 0)]
            live = [p for p in pids if os.path.exists(f"/proc/{p}")]
            os.kill(live[-1], signal.SIGKILL)
            killed += 1
            assert len(lines.wait_for("serving on", 3 + n, timeout=10)) == 3 + n, "not replaced"
        before = counts["ok"]
        assert wait_until(lambda: counts["ok"] > before + 100, 5), "not serving after the deaths"
        stop_load.set()
        for t in threads:
            t.join(10)
        assert proc.poll() is None
        report("worker death", interface, killed=killed, ok=counts["ok"], failed=counts["failed"])
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("interface", INTERFACES)
def test_graceful_shutdown_under_load(interface):
    proc, port, pid = start(interface, "--threads", "8", "--timeout-graceful-shutdown", "5")
    try:
        socks = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        time.sleep(0.1)         # in flight (they take 0.3 s)
        proc.send_signal(signal.SIGTERM)
        complete = 0
        for s in socks:
            data = recv_all(s)
            complete += data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok")
            s.close()
        code = proc.wait(10)
        assert code == 0 and complete == len(socks), (code, complete)
        report("graceful shutdown", interface, in_flight=len(socks), completed=complete, exit_code=code)
    finally:
        if proc.poll() is None:
            stop(proc)

"""Server memory per idle connection: netcore.iocore (epoll, io_uring) vs uvloop vs asyncio.

    python benchmarks/echo/memory.py [--conns 10000] [--no-write]

For each server: read its VmRSS, open N connections to it, wait until it
has accepted them all (counted from /proc/<pid>/fd), let it settle, read
VmRSS again.  The netcore server keeps one recv (65536 bytes max) pending
on every connection, so this shows whether a pending recv holds a receive
buffer.  Then every connection does one 64-byte echo and goes idle again,
and RSS is read once more: buffers used for that round trip should not
stay behind per connection.  Kernel socket buffers are not in RSS and are
the same for all servers.
"""
import argparse
import os
import resource
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Server, command_line, info_lines, machine_info, update_section  # noqa: E402

ALL = ("netcore", "netcore-uring", "uvloop", "asyncio")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid, want_fds, timeout=60.0):
    deadline = time.monotonic() + timeout
    while nfds(pid) < want_fds:
        if time.monotonic() > deadline:
            raise RuntimeError(f"server has {nfds(pid)} fds, expected {want_fds}")
        time.sleep(0.05)
    # Let the last accepts reach their first pending recv, then wait until
    # RSS stops moving.
    prev = -1
    for _ in range(50):
        time.sleep(0.2)
        cur = rss_bytes(pid)
        if cur == prev:
            break
        prev = cur
    return rss_bytes(pid)


def measure(name, n, cpu):
    with Server(name, cpu) as srv:
        time.sleep(0.5)
        base_fds = nfds(srv.pid)
        base = settle(srv.pid, base_fds)
        socks = []
        linger = struct.pack("ii", 1, 0)  # RST on close: no TIME_WAIT left behind
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                socks.append(s)
            idle = settle(srv.pid, base_fds + n)
            msg = b"x" * 64
            for s in socks:
                s.sendall(msg)
            for s in socks:
                got = b""
                while len(got) < len(msg):
                    chunk = s.recv(len(msg) - len(got))
                    if not chunk:
                        raise RuntimeError(f"{name} closed a connection")
                    got += chunk
                if got != msg:
                    raise RuntimeError(f"{name} echoed wrong bytes")
            touched = settle(srv.pid, base_fds + n)
        finally:
            for s in socks:
                s.close()
    return {"base": base, "idle": idle, "touched": touched,
            "idle_per_conn": (idle - base) / n, "touched_per_conn": (touched - base) / n}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--servers", default=",".join(ALL))
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    a = ap.parse_args()
    servers = [s.strip() for s in a.servers.split(",") if s.strip()]
    # This process holds all N client sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.conns + 100
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit(f"RLIMIT_NOFILE hard limit {hard} is below the {need} needed; use --conns")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else hard, hard))

    info = machine_info()
    rows = ["| server | RSS before | RSS with idle conns | bytes per idle connection "
            "| bytes per connection after one 64-byte echo |",
            "|---|---:|---:|---:|---:|"]
    for name in servers:
        r = measure(name, a.conns, a.server_cpu)
        print(f"{name:8s} base {r['base'] / 2**20:7.1f} MiB  idle {r['idle'] / 2**20:7.1f} MiB  "
              f"{r['idle_per_conn']:7.0f} B/idle conn  {r['touched_per_conn']:7.0f} B/conn after one echo",
              flush=True)
        rows.append(f"| {name} | {r['base'] / 2**20:.1f} MiB | {r['idle'] / 2**20:.1f} MiB "
                    f"| {r['idle_per_conn']:,.0f} | {r['touched_per_conn']:,.0f} |")
    tbl = "\n".join(rows)
    print()
    print(tbl)
    if a.no_write:
        return
    body = f"""## Memory: {a.conns:,} idle connections

{info_lines(info)}
- server VmRSS growth from /proc/&lt;pid&gt;/status divided by the connection count; the netcore server keeps one recv (max_bytes=65536) pending on each connection
- "after one echo": every connection then echoed 64 bytes once and went idle again
- kernel socket buffers are not part of RSS

Command:

```
{command_line()}
```

{tbl}
"""
    update_section("memory", body)
    print(f"\nwrote {os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'RESULTS.md'))}")


if __name__ == "__main__":
    main()

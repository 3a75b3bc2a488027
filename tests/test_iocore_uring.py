"""What is particular to the io_uring backend: the run-time probe and its
fallback, CQ overflow, provided-buffer exhaustion, and bytes a recv had when
its connection was closed.  The failures are forced through the backend's
test hooks (environment variables read in unix/uring.c), each in a child
process, since the probe runs once per process."""
import errno
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import termios
import time

import pytest

from iocore_helpers import collect
from netcore import iocore

HERE = os.path.dirname(os.path.abspath(__file__))
HAVE_URING = "uring" in iocore.backends()
needs_uring = pytest.mark.skipif(not HAVE_URING, reason="io_uring is not usable here")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="io_uring is Linux's")


def run_child(code, *args, **env):
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, **env))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


PROBE = r"""
import json
from netcore import iocore
r = {"backends": iocore.backends(), "auto": iocore.Queue().backend}
for name in ("uring", "io_uring"):
    try:
        iocore.Queue(name)
        r[name] = None
    except OSError as e:
        r[name] = [e.errno, str(e)]
print(json.dumps(r))
"""


@pytest.mark.parametrize("env, code, reason", [
    ({"NETCORE_URING_FAKE_ERRNO": "EPERM"}, errno.EPERM, "seccomp"),
    ({"NETCORE_URING_FAKE_ERRNO": "ENOSYS"}, errno.ENOSYS, "no io_uring"),
    ({"NETCORE_URING_FAKE_MISSING_OP": "RECV"}, errno.EOPNOTSUPP, "IORING_OP_RECV"),
], ids=["eperm", "enosys", "missing-opcode"])
def test_a_refused_probe_falls_back_to_epoll_and_names_the_reason(env, code, reason):
    if "NETCORE_URING_FAKE_MISSING_OP" in env and not HAVE_URING:
        pytest.skip("the opcode probe needs a ring")
    r = run_child(PROBE, **env)
    assert "uring" not in r["backends"] and r["auto"] == "epoll"
    for name in ("uring", "io_uring"):  # the alias fails the same way
        err, message = r[name]
        assert err == code and reason in message and "not available" in message, r


ECHO = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from iocore_helpers import one, pair
from netcore import iocore
q = iocore.Queue("uring")
server, client = pair(q)
q.send(client, "s", [b"still ", b"works"])
one(q)
q.recv(server, "r")
print(json.dumps(one(q)[3].decode()))
"""


@needs_uring
@pytest.mark.parametrize("refused", ["0x100", "0x388"], ids=["coop-taskrun", "every-optional-flag"])
def test_setup_flags_the_kernel_refuses_are_dropped(refused):
    # 0x100 COOP_TASKRUN (TASKRUN_FLAG goes with it); 0x388 also CQSIZE, SUBMIT_ALL.
    assert run_child(ECHO, HERE, NETCORE_URING_REFUSE_FLAGS=refused) == "still works"


STATS = r"""
import json, socket, sys
sys.path.insert(0, sys.argv[1])
from iocore_helpers import collect
from netcore import iocore
q = iocore.Queue("uring")
lst = q.listen("127.0.0.1", 0, backlog=256)
n = int(sys.argv[2])
peers = [socket.create_connection(lst.sockname) for _ in range(n)]
for i in range(n):
    q.accept(lst, i)
conns = [ev[3] for ev in collect(q, n)]
for i, c in enumerate(conns):
    q.recv(c, i)
for _ in range(4 * n):      # a tiny SQ takes several waits to submit them all
    q.wait(0)
for i, p in enumerate(peers):
    p.sendall(bytes([i % 251]) * int(sys.argv[3]))
got = {}
for op, tag, status, value in collect(q, n, timeout=20):
    got[tag] = (status, len(value), value[:1].hex())
print(json.dumps({"got": got, "stats": q.stats()}))
"""


@needs_uring
def test_cq_overflow_is_counted_and_loses_no_completion():
    # 4 SQ entries make a 32-entry CQ; 64 connections receive at once.
    r = run_child(STATS, HERE, "64", "10", NETCORE_URING_ENTRIES="4")
    assert len(r["got"]) == 64
    assert all(v[0] == 0 and v[1] == 10 for v in r["got"].values()), r
    assert r["stats"]["cq_overflow"] >= 1, r["stats"]


@needs_uring
def test_running_out_of_provided_buffers_rearms_and_loses_nothing():
    # 4 buffers for 32 connections: most receives end with ENOBUFS first.
    r = run_child(STATS, HERE, "32", "3000", NETCORE_URING_BUFFERS="4")
    assert sorted(int(k) for k in r["got"]) == list(range(32))
    for tag, (status, size, first) in r["got"].items():
        assert status == 0 and 0 < size <= 3000 and first == f"{int(tag) % 251:02x}", r


BULK = r"""
import json, socket, sys
from netcore import iocore
q = iocore.Queue("uring")
lst = q.listen("127.0.0.1", 0)
peer = socket.create_connection(lst.sockname)
q.accept(lst, "a")
conn = None
while conn is None:
    for ev in q.wait(5):
        conn = ev[3]
payload = bytes(range(256)) * 2048          # 512 KiB: far more than 4 buffers
peer.sendall(payload)
peer.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    q.recv(conn, "r", max_bytes=65536)
    (ev,) = q.wait(10)
    assert ev[2] == 0, ev
    if not ev[3]:
        break
    got += ev[3]
print(json.dumps({"ok": bytes(got) == payload, "len": len(got)}))
"""


@needs_uring
def test_one_connection_receiving_more_than_the_buffer_ring_gets_every_byte():
    r = run_child(BULK, NETCORE_URING_BUFFERS="4")
    assert r == {"ok": True, "len": 512 * 1024}


def _wait_until_the_kernel_took(sock, timeout=5.0):
    """The socket's receive queue is empty: a recv request took the bytes
    (and its completion is in the ring: it ran in this thread's last
    system call)."""
    deadline = time.monotonic() + timeout
    while struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0" * 4))[0]:
        assert time.monotonic() < deadline, "the recv never took the bytes"
        time.sleep(0.001)


@needs_uring
@pytest.mark.parametrize("oneshot", [False, True], ids=["multishot", "oneshot"])
def test_a_recv_whose_bytes_came_before_the_close_gets_them(monkeypatch, oneshot):
    if oneshot:
        monkeypatch.setenv("NETCORE_URING_NO_MULTISHOT_RECV", "1")
    q = iocore.Queue("uring")
    try:
        lst = q.listen("127.0.0.1", 0)
        peer = socket.create_connection(lst.sockname)
        q.accept(lst, "a")
        conn = collect(q, 1)[0][3]
        q.recv(conn, "r")
        assert q.wait(0.05) == []  # submitted; nothing to read yet
        peer.sendall(b"hello")
        with socket.socket(fileno=os.dup(conn.fileno())) as view:
            _wait_until_the_kernel_took(view)
        q.close(conn)  # the completion is in the ring, not yet reaped
        assert collect(q, 1) == [(iocore.RECV, "r", 0, b"hello")]
        assert q.wait(0.1) == []  # exactly once
        peer.close()
    finally:
        q.close_queue()

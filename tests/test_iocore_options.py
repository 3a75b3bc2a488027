"""The core's options for fewer completions, on every backend of this
machine: quiet sends (q.send(..., quiet=True)) and multishot recvs
(q.recv(..., multishot=True), q.recv_stop)."""
import errno
import gc
import socket
import struct
import weakref

import pytest

from iocore_helpers import collect, one, pair
from netcore import iocore


class Tag:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Tag({self.name})"


def read_exactly(q, conn, n, tag="r"):
    got = b""
    while len(got) < n:
        q.recv(conn, tag)
        ev = one(q)
        assert ev[0] == iocore.RECV and ev[2] == 0 and ev[3], ev
        got += ev[3]
    return got


# ------------------------------------------------------------------ quiet sends

def test_a_quiet_send_done_at_once_reports_nothing(q):
    server, client = pair(q)
    if q.backend == "uring":
        pytest.skip("io_uring sends with the batch's next io_uring_enter, never within the "
                    "call (test_quiet_sends_on_uring_complete)")
    tag = Tag("send")
    ref = weakref.ref(tag)
    assert q.send(client, tag, b"hello", quiet=True) is True
    assert q.send(client, tag, [b" ", memoryview(b"world")], quiet=True) is True
    del tag
    gc.collect()
    assert ref() is None                     # nothing is pending: the core let go at once
    assert read_exactly(q, server, 11) == b"hello world"
    assert q.wait(0.2) == []                 # and no SEND ever completes
    assert q.stats()["pending_ops"] == 0


def test_quiet_sends_on_uring_complete(q):
    # There a quiet send is never done within the call (a sendmsg of its own
    # costs more than the batched request), so it says so and completes.
    if q.backend != "uring":
        pytest.skip("io_uring only")
    server, client = pair(q)
    assert q.send(client, "a", b"hello", quiet=True) is False
    assert q.send(client, "b", [b" ", memoryview(b"world")], quiet=True) is False
    q.recv(server, "r", multishot=True)
    got, sent = b"", {}
    while len(got) < 11 or len(sent) < 2:
        for op, tag, status, value in collect(q, 1, timeout=5):
            assert status == 0
            if op == iocore.SEND:
                sent[tag] = value
            else:
                got += value
    assert got == b"hello world" and sent == {"a": 5, "b": 6}


def test_a_quiet_send_that_cannot_go_out_at_once_completes(q):
    server, client = pair(q)
    data = bytes(range(256)) * (32 * 4096)   # 32 MiB: more than the socket takes
    assert q.send(client, "big", data, quiet=True) is False
    got = []
    total = 0
    sent = None
    while total < len(data) or sent is None:
        if total < len(data):
            q.recv(server, "r", 1 << 20)
        for op, tag, status, value in collect(q, 1, timeout=30):
            assert status == 0
            if op == iocore.SEND:
                sent = value
            else:
                got.append(value)
                total += len(value)
    assert sent == len(data) and b"".join(got) == data


def test_quiet_sends_keep_their_order_behind_a_pending_one(q):
    server, client = pair(q)
    big = b"a" * (32 << 20)
    assert q.send(client, "big", big, quiet=True) is False
    # queued behind the big one: not out at once, so reported
    assert q.send(client, "small", b"b", quiet=True) is False
    got, done = bytearray(), set()
    while len(got) < len(big) + 1 or len(done) < 2:
        if len(got) < len(big) + 1:
            q.recv(server, "r", 1 << 20)
        for op, tag, status, value in collect(q, 1, timeout=30):
            assert status == 0
            if op == iocore.SEND:
                done.add(tag)
            else:
                got += value
    assert bytes(got) == big + b"b" and done == {"big", "small"}


def test_a_quiet_send_to_a_reset_peer_still_reports_its_error(q):
    server, client = pair(q)
    raw = socket.socket(fileno=server.fileno())
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.detach()
    q.close(server)                          # RST to the client
    statuses = []
    for _ in range(50):                      # until the reset is seen
        if q.send(client, "s", b"x" * 1000, quiet=True):
            continue
        status = one(q)[2]
        if status == 0:                      # (io_uring: sent before the reset came)
            continue
        statuses.append(status)
        break
    assert statuses == [-errno.ECONNRESET]


# ------------------------------------------------------------------ multishot recvs

def test_a_multishot_recv_completes_per_read_and_stays_armed(q):
    server, client = pair(q)
    tag = Tag("ms")
    ref = weakref.ref(tag)
    q.recv(server, tag, 4, multishot=True)
    with pytest.raises(RuntimeError):
        q.recv(server, "second")              # one recv per connection, as ever
    got = b""
    for msg in (b"abcdefghij", b"XYZ", b"0123456789"):
        q.send(client, "s", msg)
        want = len(got) + len(msg)
        while len(got) < want:
            for op, t, status, value in q.wait(5):
                if op == iocore.SEND:
                    continue
                assert (op, t, status) == (iocore.RECV_MORE, tag, 0) and 0 < len(value) <= 4
                got += value
    assert got == b"abcdefghijXYZ0123456789"
    del t, tag
    gc.collect()
    assert ref() is not None                  # still armed: the core holds its tag
    q.close(client)                           # EOF: the last completion
    (ev,) = collect(q, 1)
    assert ev[0] == iocore.RECV and ev[2] == 0 and ev[3] == b"" and ev[1] is ref()
    del ev
    gc.collect()
    assert ref() is None
    assert q.stats()["pending_ops"] == 0


def test_recv_stop_ends_it_and_nothing_is_lost(q):
    server, client = pair(q)
    with pytest.raises(RuntimeError):
        q.recv_stop(server)                   # none pending
    q.recv(server, "ms", multishot=True)
    q.send(client, "s", b"one")
    evs = collect(q, 2)
    assert [e[3] for e in evs if e[0] == iocore.RECV_MORE] == [b"one"]
    q.recv_stop(server)
    (ev,) = collect(q, 1)
    assert ev[:3] == (iocore.RECV, "ms", iocore.CANCELLED)
    q.send(client, "s", b"two")               # waits in the socket for the next recv
    collect(q, 1)
    q.recv(server, "again", multishot=True)
    (ev,) = collect(q, 1)
    assert ev == (iocore.RECV_MORE, "again", 0, b"two")


def test_close_ends_an_armed_multishot_recv_once(q):
    server, client = pair(q)
    q.recv(server, "ms", multishot=True)
    q.close(server)
    (ev,) = collect(q, 1)
    assert ev[:3] == (iocore.RECV, "ms", iocore.CANCELLED)
    assert q.wait(0.2) == []


def test_closing_the_queue_releases_an_armed_multishot_recvs_tag(q):
    server, client = pair(q)
    tag = Tag("ms")
    ref = weakref.ref(tag)
    q.recv(server, tag, multishot=True)
    q.send(client, "s", b"data")
    collect(q, 2)                             # a RECV_MORE (and the SEND)
    del tag
    gc.collect()
    assert ref() is not None
    q.close_queue()
    gc.collect()
    assert ref() is None

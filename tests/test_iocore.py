"""The completion-queue contract, run against every backend of this machine."""
import errno
import gc
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref

import pytest

from iocore_helpers import collect, one, pair, wait_until
from netcore import iocore


class Tag:
    """A tag we can hold a weak reference to."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Tag({self.name})"


# ------------------------------------------------------------------ queue


def test_auto_backend_is_a_real_one(q):
    assert q.backend in iocore.backends()
    assert iocore.Queue().backend == iocore.backends()[0]


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        iocore.Queue("nope")


def test_unavailable_backend_is_an_os_error():
    missing = [b for b in iocore.KNOWN_BACKENDS if b not in iocore.backends()]
    if not missing:
        pytest.skip("every known backend is available here")
    with pytest.raises(OSError, match="not available"):
        iocore.Queue(missing[0])


def test_closed_queue_refuses_work(q):
    q.close_queue()
    with pytest.raises(ValueError, match="closed"):
        q.listen("127.0.0.1", 0)
    with pytest.raises(ValueError, match="closed"):
        q.wait(0)


# ------------------------------------------------------- accept / connect


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_accept_and_connect(q, host):
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    lst = q.listen(host, 0)
    lhost, port = lst.sockname
    assert lhost == host and port > 0
    q.accept(lst, "a")
    q.connect(host, port, "c")
    evs = {ev[1]: ev for ev in collect(q, 2)}
    assert evs["a"][0] == iocore.ACCEPT and evs["c"][0] == iocore.CONNECT
    server, client = evs["a"][3], evs["c"][3]
    assert server.peername == client.sockname
    assert not server.is_listener and lst.is_listener


def test_connect_refused(q):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    q.connect("127.0.0.1", port, "c")
    op, tag, status, value = one(q)
    assert (op, tag, status, value) == (iocore.CONNECT, "c", -errno.ECONNREFUSED, None)
    assert q.stats()["live_handles"] == 0


def test_accept_drains_the_backlog(q):
    lst = q.listen("127.0.0.1", 0, backlog=128)
    clients = [socket.create_connection(lst.sockname) for _ in range(50)]
    for i in range(50):
        q.accept(lst, i)
    evs = collect(q, 50)
    assert sorted(ev[1] for ev in evs) == list(range(50))
    assert all(ev[2] == 0 for ev in evs)
    for c in clients:
        c.close()


def test_a_burst_of_connections_is_accepted_whole_one_op_at_a_time(q):
    # A backend may take connections ahead of the accept ops (io_uring's
    # multishot accept does): none of them may be dropped.
    lst = q.listen("127.0.0.1", 0, backlog=1024)
    clients = [socket.create_connection(lst.sockname) for _ in range(300)]
    conns = []
    while len(conns) < 300:
        q.accept(lst, "a")
        (ev,) = collect(q, 1)
        assert ev[2] == 0, ev
        conns.append(ev[3])
    assert q.stats()["live_handles"] == 301
    for c in clients:  # none was closed: no EOF waiting on any
        c.setblocking(False)
        with pytest.raises(BlockingIOError):
            c.recv(1)
        c.close()


def test_connections_have_nodelay_and_listeners_reuse_port(q):
    server, client = pair(q)
    for h in (server, client):
        assert h.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    if hasattr(socket, "SO_REUSEPORT"):
        a = q.listen("127.0.0.1", 0, reuse_port=True)
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
        b = q.listen("127.0.0.1", a.sockname[1], reuse_port=True)
        assert b.sockname == a.sockname


def test_adopt_a_listening_socket_made_elsewhere(q):
    with socket.socket() as made:
        made.bind(("127.0.0.1", 0))
        made.listen()
        lst = q.adopt_listener(made)
        assert lst.is_listener and lst.sockname == made.getsockname()
        q.accept(lst, "a")
        with socket.create_connection(made.getsockname()):
            op, tag, status, conn = one(q)
            assert (op, tag, status) == (iocore.ACCEPT, "a", 0)
            assert not conn.is_listener
    q.close(lst)
    with socket.socket() as idle, pytest.raises(ValueError, match="listening"):
        q.adopt_listener(idle)
    with pytest.raises(TypeError):
        q.adopt_listener(3)
    assert q.stats()["live_handles"] == 1  # only the accepted connection


def test_listen_on_a_port_in_use_raises(q):
    lst = q.listen("127.0.0.1", 0)
    with pytest.raises(OSError) as info:
        q.listen("127.0.0.1", lst.sockname[1])
    assert info.value.errno == errno.EADDRINUSE


# -------------------------------------------------------------- recv / send


def test_echo_and_gathered_send(q):
    server, client = pair(q)
    q.send(client, "s", [b"hello ", bytearray(b"big "), memoryview(b"world")])
    assert one(q) == (iocore.SEND, "s", 0, 15)
    q.recv(server, "r")
    assert one(q) == (iocore.RECV, "r", 0, b"hello big world")


def test_one_mebibyte_both_ways_with_partial_reads(q):
    server, client = pair(q)
    payload = bytes(range(256)) * 4096
    received = {server: bytearray(), client: bytearray()}
    q.send(client, "to-server", payload)
    q.send(server, "to-client", payload[::-1])
    q.recv(server, server, max_bytes=1000)
    q.recv(client, client, max_bytes=1000)
    sent = set()
    deadline = time.monotonic() + 20
    while len(sent) < 2 or any(len(b) < len(payload) for b in received.values()):
        assert time.monotonic() < deadline, "echo timed out"
        for op, tag, status, value in q.wait(1):
            assert status == 0
            if op == iocore.SEND:
                assert value == len(payload)
                sent.add(tag)
            else:
                assert 0 < len(value) <= 1000
                received[tag] += value
                if len(received[tag]) < len(payload):
                    q.recv(tag, tag, max_bytes=1000)
    assert received[server] == payload
    assert received[client] == payload[::-1]


def test_send_completes_only_when_every_byte_is_out(q):
    server, client = pair(q)
    peer = socket.socket(fileno=socket.dup(server.fileno()))  # a slow reader
    peer.setblocking(False)
    big = b"x" * (16 << 20)  # far beyond the socket buffers
    q.send(client, "big", big)
    assert q.wait(0.2) == []  # cannot be done: nobody has read yet
    got = 0
    deadline = time.monotonic() + 20
    done = None
    while done is None:
        assert time.monotonic() < deadline
        try:
            got += len(peer.recv(1 << 20))
        except BlockingIOError:
            pass
        evs = q.wait(0.01)
        if evs:
            done = evs[0]
    assert done == (iocore.SEND, "big", 0, len(big))
    peer.setblocking(True)
    peer.settimeout(5)
    while got < len(big):
        got += len(peer.recv(1 << 20))
    assert got == len(big)
    peer.close()


def test_sends_keep_their_order(q):
    server, client = pair(q)
    chunks = [bytes([i]) * 70000 for i in range(20)]
    for i, c in enumerate(chunks):
        q.send(client, i, c)
    want = b"".join(chunks)
    got = bytearray()
    done = []
    q.recv(server, "r")
    deadline = time.monotonic() + 20
    while len(got) < len(want) or len(done) < len(chunks):
        assert time.monotonic() < deadline
        for op, tag, status, value in q.wait(1):
            assert status == 0
            if op == iocore.SEND:
                done.append(tag)
            else:
                got += value
                q.recv(server, "r")
    assert bytes(got) == want
    assert done == list(range(20))


def test_eof_reset_and_cancel_are_distinct(q):
    server, client = pair(q)
    q.close(client)  # orderly close: the server sees EOF
    q.recv(server, "eof")
    assert one(q) == (iocore.RECV, "eof", 0, b"")

    server2, client2 = pair(q)
    q.recv(server2, "reset")
    # SO_LINGER 0 makes close() send RST instead of FIN.
    _set_linger_zero(client2)
    q.close(client2)
    assert one(q) == (iocore.RECV, "reset", -errno.ECONNRESET, None)

    server3, client3 = pair(q)
    q.recv(server3, "cancel")
    q.close(server3)
    assert one(q) == (iocore.RECV, "cancel", iocore.CANCELLED, None)
    for code in (0, -errno.ECONNRESET, iocore.CANCELLED):
        assert iocore.status_name(code) in ("OK", "ECONNRESET", "CANCELLED")


def test_eof_queued_behind_data_is_still_reported(q):
    # Data and FIN both arrive before the first read (loopback delivers them
    # within sendall/shutdown): the short read must not swallow the hang-up,
    # as edge-triggered epoll gives no second edge.
    lst = q.listen("127.0.0.1", 0)
    peer = socket.create_connection(lst.sockname)
    peer.sendall(b"hello")
    peer.shutdown(socket.SHUT_WR)
    q.accept(lst, "a")
    conn = one(q)[3]
    q.recv(conn, "data")
    assert one(q) == (iocore.RECV, "data", 0, b"hello")
    q.recv(conn, "eof")
    assert one(q) == (iocore.RECV, "eof", 0, b"")
    peer.close()


def test_shutdown_follows_queued_sends_then_the_peer_reads_eof(q):
    lst = q.listen("127.0.0.1", 0)
    peer = socket.create_connection(lst.sockname)
    q.accept(lst, "a")
    conn = one(q)[3]
    payload = bytes(range(256)) * 4096          # 1 MiB: more than the socket buffer
    q.send(conn, "s", payload)
    q.shutdown(conn, "shut")
    peer.settimeout(5)
    got = bytearray()
    events = []
    while True:
        events += q.wait(timeout=0)
        data = peer.recv(65536)
        if not data:
            break
        got += data
    assert bytes(got) == payload                # every byte before the EOF
    events += collect(q, 2 - len(events))
    assert [(op, tag, status) for op, tag, status, _ in events] == [
        (iocore.SEND, "s", 0), (iocore.SHUTDOWN, "shut", 0)]
    # only the sending side is shut: the connection still receives
    peer.sendall(b"still here")
    q.recv(conn, "r")
    assert one(q) == (iocore.RECV, "r", 0, b"still here")
    with pytest.raises(ValueError, match="wrong kind"):
        q.shutdown(lst, "x")
    q.close(conn)
    with pytest.raises(ValueError, match="closed"):
        q.shutdown(conn, "x")
    peer.close()



def test_sendfile_goes_out_in_order_with_the_sends_around_it(q, tmp_path):
    if not q.can_sendfile:
        with pytest.raises(NotImplementedError):
            q.sendfile(pair(q)[0], "f", 0, 0, 1)
        pytest.skip(f"{q.backend} sends files through user space")
    data = bytes(range(256)) * 8192            # 2 MiB: more than the socket buffer
    path = tmp_path / "blob"
    path.write_bytes(data)
    lst = q.listen("127.0.0.1", 0)
    peer = socket.create_connection(lst.sockname)
    q.accept(lst, "a")
    conn = one(q)[3]
    f = open(path, "rb")
    ref = weakref.ref(f)
    q.send(conn, "before", b"<head>")
    q.sendfile(conn, "file", f, 100, len(data) - 200)
    q.send(conn, "after", b"<tail>")
    q.sendfile(conn, "short", f, len(data) - 10, 50)   # only 10 bytes left
    del f
    assert ref() is not None, "the queue must keep the file alive until its completion"
    expect = b"<head>" + data[100:-100] + b"<tail>" + data[-10:]
    got = bytearray()
    events = []
    peer.settimeout(5)
    while len(got) < len(expect):
        events += q.wait(timeout=0)
        chunk = peer.recv(65536)
        assert chunk
        got += chunk
    assert bytes(got) == expect
    events += collect(q, 4 - len(events))
    assert [(op, tag, status, value) for op, tag, status, value in events] == [
        (iocore.SEND, "before", 0, 6), (iocore.SENDFILE, "file", 0, len(data) - 200),
        (iocore.SEND, "after", 0, 6), (iocore.SENDFILE, "short", -errno.EIO, 10)]
    gc.collect()
    assert ref() is None, "released with its completion"
    with pytest.raises(ValueError, match="offset"):
        q.sendfile(conn, "x", 0, -1, 1)
    q.close(conn)
    with pytest.raises(ValueError, match="closed"):
        q.sendfile(conn, "x", 0, 0, 1)
    peer.close()

def _set_linger_zero(handle):
    # Handle.setsockopt takes ints; linger needs a struct, so go through a dup.
    s = socket.socket(fileno=socket.dup(handle.fileno()))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # only the dup: the handle's descriptor stays open


def test_send_to_a_reset_peer_fails_without_sigpipe(q):
    server, client = pair(q)
    _set_linger_zero(server)
    q.close(server)
    statuses = []
    deadline = time.monotonic() + 10
    # The first send may still be accepted by the kernel; later ones fail.
    while not any(s < 0 for s in statuses):
        assert time.monotonic() < deadline
        q.send(client, "s", b"x" * 65536)
        statuses += [ev[2] for ev in collect(q, 1)]
    assert statuses[-1] == -errno.ECONNRESET


# ----------------------------------------------------------------- close


def test_close_with_each_kind_of_operation_pending(q):
    lst = q.listen("127.0.0.1", 0)
    q.accept(lst, "accept")
    idle_srv, idle_cli = pair(q)
    q.recv(idle_srv, "recv")  # the peer never sends
    busy_srv, busy_cli = pair(q)
    q.send(busy_cli, "send", b"x" * (64 << 20))  # blocks: nobody reads
    assert q.wait(0.1) == []
    for h in (lst, idle_srv, idle_cli, busy_srv, busy_cli):
        q.close(h)
    evs = collect(q, 3)
    assert sorted((ev[1], ev[2]) for ev in evs) == [
        ("accept", iocore.CANCELLED), ("recv", iocore.CANCELLED), ("send", iocore.CANCELLED)]
    assert q.wait(0.1) == []  # exactly once
    stats = q.stats()
    assert stats.pop("rings") == (1 if q.backend == "uring" else 0)
    assert stats == {"live_handles": 0, "pending_ops": 0, "timers": 0, "waiters": 1, "cq_overflow": 0}


def test_close_with_connect_pending(q):
    # A listener whose backlog is full leaves the next connect pending.
    lst = q.listen("127.0.0.1", 0, backlog=0)
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(lst.sockname)
        fillers.append(s)
    q.connect("127.0.0.1", lst.sockname[1], "c")
    evs = q.wait(0.2)
    if evs:  # the kernel accepted into the backlog after all
        pytest.skip("could not hold a connect pending on this kernel")
    st = q.stats()
    assert st["live_handles"] == 2  # listener + the connecting socket
    q.close_queue()  # closes the connecting handle too; nothing leaks
    for s in fillers:
        s.close()


def test_close_inside_a_batch_and_fd_reuse(q):
    lst = q.listen("127.0.0.1", 0)
    a_srv, a_cli = pair(q)
    q.recv(a_srv, "a")
    a_cli_sock_fd = a_srv.fileno()
    q.send(a_cli, "s", b"ping")
    evs = collect(q, 2)
    assert {ev[1] for ev in evs} == {"a", "s"}
    # In the batch handling: close A, accept B, which reuses A's fd number.
    q.close(a_srv)
    q.accept(lst, "b")
    c = socket.create_connection(lst.sockname)
    (ev,) = collect(q, 1)
    b = ev[3]
    assert b.fileno() == a_cli_sock_fd
    with pytest.raises(ValueError, match="closed"):
        q.recv(a_srv, "stale")  # A's handle never matches B
    c.sendall(b"to-b")
    q.recv(b, "b-recv")
    assert one(q) == (iocore.RECV, "b-recv", 0, b"to-b")
    assert q.wait(0.1) == []
    c.close()


def test_tags_live_until_their_completion_and_no_longer(q):
    server, client = pair(q)
    tag = Tag("recv")
    ref = weakref.ref(tag)
    q.recv(server, tag)
    del tag
    gc.collect()
    assert ref() is not None  # the core holds it while pending
    q.close(server)
    (ev,) = collect(q, 1)
    assert ev[2] == iocore.CANCELLED and ev[1] is ref()
    del ev
    gc.collect()
    assert ref() is None


def test_closing_the_queue_releases_pending_tags(q):
    server, client = pair(q)
    pending, posted = Tag("pending"), Tag("posted")
    refs = [weakref.ref(pending), weakref.ref(posted)]
    q.recv(server, pending)
    q.post(posted)
    del pending, posted
    gc.collect()
    # held by the core only: the recv still pending, the post undelivered
    assert [r() is not None for r in refs] == [True, True]
    q.close_queue()
    gc.collect()
    assert [r() for r in refs] == [None, None]


# -------------------------------------------------------- post and timers


def test_post_from_another_thread_wakes_a_waiter(q):
    t = threading.Timer(0.2, q.post, args=("wake", 42))
    start = time.monotonic()
    t.start()
    assert q.wait(10) == [(iocore.POST, "wake", 0, 42)]
    assert time.monotonic() - start < 5
    t.join()


def test_timers_fire_in_order_and_cancelled_ones_never(q):
    q.call_later(0.15, "late")
    q.call_later(0.05, "early")
    dropped = q.call_later(0.1, "cancelled")
    assert q.cancel_timer(dropped) is True
    assert q.cancel_timer(dropped) is False
    start = time.monotonic()
    evs = collect(q, 2)
    assert [ev[1] for ev in evs] == ["early", "late"]
    assert all(ev[0] == iocore.TIMER for ev in evs)
    assert time.monotonic() - start >= 0.14
    assert q.wait(0.1) == []
    assert q.stats()["timers"] == 0


def test_wait_timeout_returns_empty(q):
    start = time.monotonic()
    assert q.wait(0.1) == []
    assert 0.08 <= time.monotonic() - start < 2


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer/SIGALRM")
def test_a_signal_handler_exception_interrupts_wait(q):
    class Stop(Exception):
        pass

    def handler(signum, frame):
        raise Stop

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        start = time.monotonic()
        with pytest.raises(Stop):
            q.wait(10)
        assert time.monotonic() - start < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ----------------------------------------------------------- bad arguments


def test_bad_arguments_raise_clear_errors(q):
    server, client = pair(q)
    lst = q.listen("127.0.0.1", 0)
    with pytest.raises(TypeError):
        q.recv("not a handle", "t")
    with pytest.raises(TypeError):
        q.recv(None, "t")
    with pytest.raises(ValueError, match="max_bytes"):
        q.recv(server, "t", max_bytes=-1)
    with pytest.raises(ValueError, match="wrong kind"):
        q.recv(lst, "t")
    with pytest.raises(ValueError, match="wrong kind"):
        q.accept(server, "t")
    q.recv(server, "first")
    with pytest.raises(RuntimeError, match="already pending"):
        q.recv(server, "second")
    with pytest.raises(TypeError, match="bytes-like"):
        q.send(client, "t", "text is not bytes")
    with pytest.raises(TypeError, match="bytes-like"):
        q.send(client, "t", [b"ok", 3])
    with pytest.raises(ValueError, match="port"):
        q.listen("127.0.0.1", 70000)
    with pytest.raises(ValueError, match="timeout"):
        q.wait(-1)
    with pytest.raises(ValueError, match="seconds"):
        q.call_later(-1, "t")
    other = iocore.Queue()
    with pytest.raises(ValueError, match="another queue"):
        other.recv(server, "t")
    other.close_queue()
    q.close(client)
    with pytest.raises(ValueError, match="closed"):
        q.send(client, "t", b"x")
    with pytest.raises(ValueError, match="closed"):
        q.close(client)
    with pytest.raises(ValueError, match="closed"):
        client.fileno()
    assert client.closed
    with pytest.raises(socket.gaierror):
        q.connect("no-such-host.invalid", 80, "t")


def test_handles_and_timers_come_only_from_a_queue():
    # Made by hand they would have no queue to read through (issue 12).
    with pytest.raises(TypeError, match="Queue"):
        iocore.Handle()
    with pytest.raises(TypeError, match="Queue"):
        iocore.Timer()
    # Even bypassing __init__, a queue-less handle is closed, never a crash.
    out = subprocess.run([sys.executable, "-c", HANDLE_WITHOUT_QUEUE],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "ValueError", "ValueError", "ValueError", "ValueError"]


HANDLE_WITHOUT_QUEUE = r"""
from netcore import iocore
h = iocore.Handle.__new__(iocore.Handle)
print(h.closed)
for call in (h.fileno, lambda: h.sockname, lambda: h.is_listener,
             lambda: iocore.Queue().cancel_timer(iocore.Timer.__new__(iocore.Timer))):
    try:
        call()
    except Exception as e:
        print(type(e).__name__)
"""


CLOSE_DURING_CALL = r"""
import sys
from netcore import iocore

q = iocore.Queue(sys.argv[1])
server = q.listen("127.0.0.1", 0)

class Host(str):  # stands in for another thread closing the queue meanwhile
    def encode(self, *args):
        q.close_queue()
        return str(self).encode(*args)

class Timeout:
    def __float__(self):
        q.close_queue()
        return 0.0

class Parts(list):
    def __getitem__(self, i):
        q.close_queue()
        return list.__getitem__(self, i)

calls = {
    "listen": lambda: q.listen(Host("127.0.0.1"), 0),
    "connect": lambda: q.connect(Host("127.0.0.1"), 1, "t"),
    "wait": lambda: q.wait(Timeout()),
    "send": lambda: q.send(server, "t", Parts([b"x"])),
}
try:
    calls[sys.argv[2]]()
except ValueError as e:
    print(e)
"""


@pytest.mark.parametrize("call", ["listen", "connect", "wait", "send"])
def test_queue_closed_while_a_call_runs_python_code(tmp_path, backend, call):
    """listen/connect resolve without the GIL and wait/send convert their
    arguments: the queue may be closed meanwhile, which must raise, not crash."""
    script = tmp_path / "close_during_call.py"
    script.write_text(CLOSE_DURING_CALL)
    out = subprocess.run([sys.executable, str(script), backend, call],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr}"
    assert "closed" in out.stdout

def test_counters_return_to_zero(q):
    server, client = pair(q)
    q.recv(server, "r")
    q.send(client, "s", b"x")
    q.call_later(10, "t")
    st = q.stats()
    assert st["live_handles"] == 2 and st["pending_ops"] >= 1 and st["timers"] == 1
    collect(q, 2)
    q.close(server)
    q.close(client)
    assert q.stats()["pending_ops"] == 0 and q.stats()["live_handles"] == 0


# ----------------------------------------------------------------- threads


def test_four_threads_two_hundred_connections_every_byte_counted(q):
    """4 threads wait on one queue; 200 clients echo 20 messages each.
    No connection's completions are ever held by two threads at once."""
    n_conns, rounds, size = 200, 20, 300
    lst = q.listen("127.0.0.1", 0, backlog=512)
    for i in range(n_conns):
        q.accept(lst, ("accept", i))
    lock = threading.Lock()
    busy = {}  # connection -> thread currently handling its completion
    errors = []
    echoed = [0]
    stop = threading.Event()

    def serve():
        mine = []
        try:
            handle_batches(mine)
        finally:
            # The core gives an ended thread's batch to the others: forget it
            # here first, or their next event would look like an overlap.
            with lock:
                for conn in mine:
                    busy.pop(conn, None)

    def handle_batches(mine):
        while not stop.is_set():
            with lock:
                for conn in mine:
                    busy.pop(conn, None)
            mine.clear()
            for op, tag, status, value in q.wait(0.05):
                if op == iocore.POST:
                    return
                conn = value if op == iocore.ACCEPT else tag
                with lock:
                    holder = busy.get(conn)
                    if holder is not None and holder is not threading.current_thread():
                        errors.append(f"two threads on {conn}")
                    busy[conn] = threading.current_thread()
                mine.append(conn)
                time.sleep(0.0002)  # handler work that lets other threads run
                if status != 0:
                    if status != iocore.CANCELLED:
                        errors.append((op, status))
                    continue
                if op == iocore.ACCEPT:
                    q.recv(conn, conn)
                elif op == iocore.RECV:
                    if value == b"":
                        q.close(conn)
                        continue
                    with lock:
                        echoed[0] += len(value)
                    q.send(conn, conn, value)
                elif op == iocore.SEND:
                    q.recv(conn, conn)

    threads = [threading.Thread(target=serve) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        _run_clients(lst.sockname, n_conns, rounds, size)
    finally:
        stop.set()
        for _ in threads:
            q.post("stop")
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert echoed[0] == n_conns * rounds * size
    # Each thread that ended left the queue (its exit hook runs a moment
    # after join() returns).
    assert wait_until(lambda: q.stats()["waiters"] == 0)
    # On io_uring each waiter thread had a ring of its own.
    assert q.stats()["rings"] == (4 if q.backend == "uring" else 0)


def test_a_thread_that_leaves_frees_its_batch_for_others(q):
    server, client = pair(q)  # this thread's batch now holds both
    q.send(client, "s", b"x")
    got = []
    other = threading.Thread(target=lambda: got.extend(q.wait(0.3)))
    other.start()
    other.join(5)
    assert got == []  # held by this thread's batch: not for another thread
    before = q.stats()["waiters"]
    q.leave()
    assert q.stats()["waiters"] == before - 1  # this thread's record is gone
    other = threading.Thread(target=lambda: got.extend(q.wait(5)))
    other.start()
    other.join(10)
    assert got == [(iocore.SEND, "s", 0, 1)]


def test_a_post_to_a_connection_waits_for_the_batch_that_holds_it(q):
    server, client = pair(q)  # this thread's batch now holds both
    q.post("for-server", 1, handle=server)
    q.post("for-anyone", 2)
    got = []
    other = threading.Thread(target=lambda: got.extend(q.wait(0.3)))
    other.start()
    other.join(5)
    # the plain post may go to any thread; the connection's only to its holder
    assert got == [(iocore.POST, "for-anyone", 0, 2)]
    q.leave()
    other = threading.Thread(target=lambda: got.extend(q.wait(5)))
    other.start()
    other.join(10)
    assert got[1:] == [(iocore.POST, "for-server", 0, 1)]
    with pytest.raises(ValueError, match="wrong kind"):
        q.post("x", handle=q.listen("127.0.0.1", 0))
    q.close(server)
    with pytest.raises(ValueError, match="closed"):
        q.post("x", handle=server)


def test_a_thread_that_dies_without_leave_gives_its_batch_back(q, monkeypatch):
    server, client = pair(q)
    q.leave()  # this thread's setup batch held both ends
    q.send(client, "first", b"x")
    got, crashes = [], []
    monkeypatch.setattr(threading, "excepthook", crashes.append)

    def crash():
        got.extend(q.wait(5))  # its batch now holds client
        raise RuntimeError("a bug in the handler")  # ends without leave()

    t = threading.Thread(target=crash)
    t.start()
    t.join(10)
    assert got == [(iocore.SEND, "first", 0, 1)] and len(crashes) == 1
    # The thread's exit hook returned its batch (a moment after join()).
    assert wait_until(lambda: q.stats()["waiters"] == 0)
    q.send(client, "second", b"y")
    assert one(q, timeout=3) == (iocore.SEND, "second", 0, 1)


def test_an_accept_in_another_threads_batch_leaves_the_listener_free(q):
    lst = q.listen("127.0.0.1", 0)
    q.accept(lst, "a1")
    q.accept(lst, "a2")
    peers = [socket.create_connection(lst.sockname) for _ in range(2)]
    first, parked, done = [], threading.Event(), threading.Event()

    def take_one_and_sit_on_it():
        first.extend(q.wait(5, max_events=1))
        parked.set()
        done.wait(10)  # keeps its batch: no wait(), no leave()
        q.leave()

    t = threading.Thread(target=take_one_and_sit_on_it)
    t.start()
    try:
        assert parked.wait(10)
        start = time.monotonic()
        second = collect(q, 1, timeout=3)  # fails if the listener were held
        took = time.monotonic() - start
    finally:
        done.set()
        t.join(10)
    assert [ev[0] for ev in first + second] == [iocore.ACCEPT, iocore.ACCEPT]
    assert {first[0][1], second[0][1]} == {"a1", "a2"}
    assert took < 2
    for p in peers:
        p.close()


def test_accepts_armed_while_the_listener_closes_each_complete_once(backend):
    # Waiter threads accept while another thread arms more accepts and
    # closes the listener: every accept the core took completes exactly
    # once (with a connection, or CANCELLED), also the one a waiter was
    # performing when the close came.  (A lost one left a server waiting
    # forever for its accepts at a graceful stop.)
    for _ in range(60):
        q = iocore.Queue(backend)
        lst = q.listen("127.0.0.1", 0)
        lock = threading.Lock()
        armed, completed = [], []
        stop = threading.Event()

        def waiter():
            while not stop.is_set():
                for op, tag, status, value in q.wait(0.05):
                    if op == iocore.ACCEPT:
                        with lock:
                            completed.append(tag)
                        if status == 0:
                            q.close(value)

        def arm(n):
            for i in range(n):
                with lock:
                    try:
                        q.accept(lst, len(armed))
                    except ValueError:    # closed: refused, so never to complete
                        return
                    armed.append(len(armed))

        threads = [threading.Thread(target=waiter) for _ in range(3)]
        for t in threads:
            t.start()
        arm(2)
        peers = [socket.create_connection(lst.sockname) for _ in range(2)]
        more = threading.Thread(target=arm, args=(20,))
        more.start()
        q.close(lst)
        more.join(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with lock:
                if len(completed) >= len(armed):
                    break
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(10)
        for p in peers:
            p.close()
        q.close_queue()
        assert sorted(completed) == sorted(armed)


def _run_clients(addr, n_conns, rounds, size):
    """Plain blocking sockets in a few threads; each checks its echoes."""
    failures = []

    def client(ids):
        for i in ids:
            with socket.create_connection(addr, timeout=10) as s:
                for r in range(rounds):
                    msg = bytes([(i + r) % 256]) * size
                    s.sendall(msg)
                    got = b""
                    while len(got) < size:
                        chunk = s.recv(size - len(got))
                        if not chunk:
                            failures.append(i)
                            return
                        got += chunk
                    if got != msg:
                        failures.append(i)

    # Connections stay open in each client thread only while it runs; use
    # 20 client threads so many connections are live at once.
    groups = [range(k, n_conns, 20) for k in range(20)]
    threads = [threading.Thread(target=client, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "clients hung"
    assert failures == []

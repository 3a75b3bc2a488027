"""Waiting helpers for the core tests: every wait is bounded."""
import time


def collect(q, count, timeout=5.0, match=None):
    """Wait until `count` events (those passing `match`, if given) arrived;
    fail rather than hang when they don't."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out with {len(got)}/{count} events: {got!r}")
        for ev in q.wait(timeout=left):
            if match is None or match(ev):
                got.append(ev)
    return got


def one(q, timeout=5.0):
    (ev,) = collect(q, 1, timeout)
    return ev


def pair(q):
    """A connected (server side, client side) pair of connection handles."""
    lst = q.listen("127.0.0.1", 0)
    q.accept(lst, "accept")
    q.connect("127.0.0.1", lst.sockname[1], "connect")
    evs = {ev[1]: ev for ev in collect(q, 2)}
    assert evs["accept"][2] == 0 and evs["connect"][2] == 0, evs
    q.close(lst)
    return evs["accept"][3], evs["connect"][3]


def wait_until(condition, timeout=5.0):
    """True once condition() holds, False if it did not within timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True

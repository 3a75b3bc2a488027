"""The C JSON encoder (netcore._http.json_simple) must produce exactly what
the json module produces with the server's settings, or decline (None)."""
import json
import random
import sys

import pytest

_http = pytest.importorskip("netcore._http")
json_simple = _http.json_simple

reference = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
CHARS = [chr(i) for i in range(0x80)] + ["é", "€", "😀", "\ud800", "\u2028", "\x7f", "\x1f"]
SCALARS = [True, False, None, 0, -0.0, 1e16, float("nan"), float("inf"), (1, 2), b"x", 3 + 4j]


def random_text(rng):
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 8)))


def random_value(rng, depth=0):
    r = rng.random()
    if depth < 4 and r < 0.15:
        return {random_text(rng) if rng.random() < 0.9 else rng.choice([1, 1.5, None, True]):
                random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 4 and r < 0.3:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return rng.choice([random_text(rng), rng.randint(-10**20, 10**20),
                       rng.random() * 10 ** rng.randint(-30, 30), rng.choice(SCALARS)])


def test_matches_the_json_module_or_declines():
    rng = random.Random(1234)
    handled = 0
    for _ in range(20000):
        value = random_value(rng)
        got = json_simple(value)
        if got is None:
            continue  # the server then uses the json module
        handled += 1
        assert got == reference(value).encode("utf-8"), value
    assert handled > 5000  # the fast path is actually taken


def test_declines_what_it_cannot_encode_exactly():
    cycle = []
    cycle.append(cycle)
    deep = []
    node = deep
    for _ in range(40):
        node.append([])
        node = node[0]

    class Sub(dict):
        pass

    for value in (cycle, deep, Sub(a=1), float("nan"), {1: 2}, "\ud800"):
        assert json_simple(value) is None
    if hasattr(sys, "set_int_max_str_digits"):
        assert json_simple(10 ** 5000) is None


def test_common_shapes():
    assert json_simple({"message": "Hello, World!"}) == b'{"message":"Hello, World!"}'
    assert json_simple([1, 2.5, "é", None, True]) == b'[1,2.5,"\xc3\xa9",null,true]'

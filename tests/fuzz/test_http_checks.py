"""The fuzz invariants (http_checks.py) in the ordinary suite: the seed
corpus replayed through them (chunked inputs cut at every byte), proof that
each check can fail, and the known chunked-decoder defects as strict xfails."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

http_checks = pytest.importorskip("http_checks")  # needs netcore._http

CORPUS = sorted((Path(__file__).parent / "corpus").iterdir())


def seed_cases():
    cases = []
    for path in CORPUS:
        raw = path.read_bytes()
        cases.append(pytest.param(raw[0] % 3, http_checks.CONFIGS[raw[1] % 3], raw[1] >> 6, raw[2:],
                                  id=path.name))
    return cases


@pytest.mark.parametrize("mode, config, start, data", seed_cases())
def test_seed_corpus_holds(mode, config, start, data):
    if mode == 0:
        http_checks.check_head(data, config, start)
    elif mode == 1:
        http_checks.check_chunked_split(data, list(range(len(data) + 1)), config)
    else:
        http_checks.check_chunked_round_trip(data, [1, 7, 64], [b"", b";a=b"], b"T: v\r\n", config)


def test_seed_corpus_reaches_the_c_parser():
    accepted = 0
    for path in CORPUS:
        raw = path.read_bytes()
        if raw[0] == 0:
            data, config = raw[2:], http_checks.CONFIGS[raw[1] % 3]
            start = raw[1] >> 6
            end = data.find(b"\r\n\r\n", start)
            accepted += http_checks.parse_head_fast(
                data, start, end, config.max_request_line, config.max_header_bytes,
                config.max_header_count, config.max_body_bytes) is not None
    assert accepted >= 5  # the head seeds are not all declined


def test_round_trips_random_bodies():
    rng = random.Random(7)
    for _ in range(300):
        body = rng.randbytes(rng.randint(0, 400)) if hasattr(rng, "randbytes") else \
            bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
        sizes = [rng.randint(1, 50) for _ in range(rng.randint(0, 3))]
        for config in http_checks.CONFIGS:
            http_checks.check_chunked_round_trip(body, sizes, [b"", b";x=1"], b"", config)


def test_check_head_catches_a_c_parser_that_disagrees(monkeypatch):
    head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    real = http_checks.parse_head_fast

    def lying(*args):
        fields = real(*args)
        return fields[:4] + (not fields[4],) + fields[5:]   # flip keep_alive

    monkeypatch.setattr(http_checks, "parse_head_fast", lying)
    with pytest.raises(AssertionError, match="!= Python"):
        http_checks.check_head(head, http_checks.CONFIGS[0], 0)
    accepted = real(head, 0, len(head) - 4, 99, 99, 9, 9)
    assert accepted is not None
    monkeypatch.setattr(http_checks, "parse_head_fast", lambda *args: accepted)
    with pytest.raises(AssertionError, match="C accepted what Python rejects"):
        http_checks.check_head(b"GET / HTTP/1.1\r\n\r\n", http_checks.CONFIGS[0], 0)


def test_check_chunked_split_catches_a_segmentation_dependent_decoder(monkeypatch):
    class Sticky(http_checks.ChunkedReader):
        def feed(self, data, pos):   # loses a byte whenever a read ends mid-chunk
            new = super().feed(data, pos)
            if self.state == self.DATA and self.parts:
                self.parts[-1] = self.parts[-1][:-1] + b"?"
            return new

    monkeypatch.setattr(http_checks, "ChunkedReader", Sticky)
    with pytest.raises(AssertionError, match="whole"):
        http_checks.check_chunked_split(b"5\r\nhello\r\n0\r\n\r\n", [5], http_checks.CONFIGS[0])


# Once refused only when cut into pieces; now the same whole or cut.
FORMERLY_SPLIT_DEPENDENT = [
    pytest.param(b"5;" + b"x" * 2000 + b"\r\nhello\r\n0\r\n\r\n", 0, 100, id="long-size-line"),
    pytest.param(b"5;" + b"x" * 1022 + b"\r\nhello\r\n0\r\n\r\n", 0, 1, id="size-line-at-limit"),
    pytest.param(b"0\r\nab: cdef\r\n\r\n", 3, 1, id="trailer-at-limit"),
    pytest.param(b"0\r\nab: cdefg\r\n\r\n", 3, 1, id="trailer-over-limit"),
]


@pytest.mark.parametrize("data, config_index, step", FORMERLY_SPLIT_DEPENDENT)
def test_segmentation_never_changes_the_outcome(data, config_index, step):
    configs = http_checks.CONFIGS + (http_checks.Config(max_header_bytes=10),)
    config = configs[config_index]
    whole = http_checks.decode([data], config)
    split = http_checks.decode([data[i:i + step] for i in range(0, len(data), step)], config)
    assert whole == split

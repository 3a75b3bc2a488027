"""wrk's report parsed; the suite's statistics and latency histogram."""
from __future__ import annotations

import math

import pytest

from benchmarks import stats, wrk
from benchmarks.stats import Histogram, Spread

PLAIN = """Running 2s test @ http://127.0.0.1:18200/plaintext
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   433.03us  260.50us   4.52ms   89.30%
    Req/Sec   102.02k    24.90k  174.66k    90.00%
  Latency Distribution
     50%  451.00us
     75%  523.00us
     90%  566.00us
     99%    1.44ms
  202937 requests in 2.00s, 24.39MB read
Requests/sec: 101397.22
Transfer/sec:     12.18MB
"""

ERRORS = """Running 1m test @ http://127.0.0.1:8000/json
  2 threads and 512 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s   300.00ms   2.00s    70.00%
    Req/Sec     1.08M    22.71k    1.11M    90.00%
  Latency Distribution
     50%    1.10s
     75%    1.30s
     90%    1.60s
     99%    1.99s
  6004321 requests in 1.00m, 1.20GB read
  Socket errors: connect 0, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec: 100072.02
Transfer/sec:     20.48MB
"""


def test_parse_plain_report():
    r = wrk.parse(PLAIN)
    assert r.requests == 202937
    assert r.duration_s == pytest.approx(2.0)
    assert r.rps == pytest.approx(101397.22)
    assert r.bytes_read == pytest.approx(24.39 * 1024 ** 2)
    assert r.errors == {}
    assert r.latency_us == {"50": 451.0, "75": 523.0, "90": 566.0, "99": 1440.0}


def test_parse_errors_units_and_minutes():
    r = wrk.parse(ERRORS)
    assert r.requests == 6004321
    assert r.duration_s == pytest.approx(60.0)
    assert r.errors == {"read": 12, "timeout": 3, "status": 7}
    assert r.latency_us["99"] == pytest.approx(1.99e6)
    assert r.bytes_read == pytest.approx(1.2 * 1024 ** 3)


@pytest.mark.parametrize("text", ["", "unable to connect to 127.0.0.1:1 Connection refused",
                                  "Usage: wrk <options> <url>\n  Options: ..."])
def test_parse_rejects_what_is_not_a_report(text):
    with pytest.raises(ValueError, match="not a wrk report"):
        wrk.parse(text)


def test_command_picks_the_script_and_whole_seconds():
    cmd = wrk.command("wrk", "http://h:1/p", 64, 0.3, depth=16)
    assert "-d1s" in cmd and cmd[-2:] == ["--", "16"] and any(c.endswith("pipeline.lua") for c in cmd)
    cmd = wrk.command("wrk", "http://h:1/u", 16, 5, body_bytes=1024)
    assert "-d5s" in cmd and cmd[-1] == "1024" and any(c.endswith("upload.lua") for c in cmd)
    cmd = wrk.command("wrk", "http://h:1/", 64, 2, heads="browser")
    assert any(c.endswith("browser.lua") for c in cmd) and "--" not in cmd
    assert wrk.command("wrk", "http://h:1/", 1, 2, threads=2)[2] == "-c2"   # wrk needs c >= t


# ---------------------------------------------------------------- statistics

def test_spread_median_min_max_ignore_missing():
    s = Spread.of([3.0, None, 1.0, float("nan"), 2.0, 10.0])
    assert (s.median, s.low, s.high, s.n) == (2.5, 1.0, 10.0, 4)
    assert Spread.of([None]) is None
    assert stats.ratio(Spread.of([4.0]), Spread.of([2.0])) == 2.0
    assert stats.ratio(Spread.of([4.0]), None) is None
    assert stats.ratio(Spread.of([4.0]), Spread.of([0.0])) is None


def test_buckets_tile_the_range_without_gaps():
    prev = -1
    for b in range(stats.bucket_of(60_000_000) + 1):
        low, high = stats.bucket_range(b)
        assert low == prev + 1
        prev = high
    for v in (0, 1, 63, 64, 65, 127, 128, 1000, 123_456, 59_999_999):
        low, high = stats.bucket_range(stats.bucket_of(v))
        assert low <= v <= high
        assert (high - low) <= max(0, v) / 16  # a bucket is at most ~6% of its values (~3% half-width)


def test_percentiles_exact_below_64us_and_close_above():
    h = Histogram()
    for v in range(1, 51):        # 1..50 µs, one each
        h.record(v)
    assert h.percentile(50) == 25
    assert h.percentile(100) == 50
    assert h.percentile(2) == 1
    big = Histogram()
    for v in range(1000, 2000):
        big.record(v)
    assert big.percentile(50) == pytest.approx(1499.5, rel=0.03)
    assert big.percentile(99.9) == pytest.approx(1999, rel=0.03)
    assert Histogram().percentile(50) is None


def test_histograms_merge_and_round_trip():
    a, b = Histogram(), Histogram()
    for v in (10, 20, 5000):
        a.record(v)
    for v in (10, 7000):
        b.record(v)
    a.merge(b)
    assert a.total == 5
    c = Histogram.from_pairs(a.to_pairs())
    assert c.counts == a.counts
    assert c.percentile(40) == 10


def test_percentile_rank_rule():
    h = Histogram({stats.bucket_of(10): 99, stats.bucket_of(1_000_000): 1})
    assert h.percentile(99) == 10          # the 99th of 100 values is still fast
    assert h.percentile(99.9) > 900_000    # the slowest one shows at p99.9
    assert not math.isnan(h.percentile(100))

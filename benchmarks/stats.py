"""Statistics of the suite: the median and min-max spread of repeated runs,
and the latency histogram the built-in load generator fills.

The histogram is log-linear over whole microseconds: values below 64 µs
have a bucket each, above that every power of two is split into 32
buckets, so a bucket is at most ~3% wide and 60 s fit in under 800
buckets.  The C helper (loadgen/loadgen.c) uses the same bucket function,
so their histograms merge by index.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

LINEAR = 64      # values 0..63 µs: one bucket each
SUB = 32         # buckets per power of two above that
_SUB_BITS = 5    # log2(SUB)


def bucket_of(us: int) -> int:
    """The bucket index of a latency in whole microseconds."""
    if us < LINEAR:
        return max(us, 0)
    shift = us.bit_length() - _SUB_BITS - 1          # us >> shift lies in [SUB, 2*SUB)
    return LINEAR + (shift - 1) * SUB + ((us >> shift) - SUB)


def bucket_range(index: int) -> tuple[int, int]:
    """The values [low, high] (µs, inclusive) that fall into a bucket."""
    if index < LINEAR:
        return index, index
    shift, sub = divmod(index - LINEAR, SUB)
    shift += 1
    low = (SUB + sub) << shift
    return low, low + (1 << shift) - 1


class Histogram:
    """Counts of latencies by bucket; merges, and answers percentiles."""

    __slots__ = ("counts",)

    def __init__(self, counts: Optional[Mapping[int, int]] = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    def record(self, us: int) -> None:
        b = bucket_of(us)
        self.counts[b] = self.counts.get(b, 0) + 1

    def merge(self, other: "Histogram") -> None:
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, p: float) -> Optional[float]:
        """The p-th percentile (0 < p <= 100) in µs: the midpoint of the
        bucket holding the rank-ceil(p% of n) value; None when empty."""
        n = self.total
        if n == 0:
            return None
        rank = max(1, math.ceil(p / 100.0 * n))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                low, high = bucket_range(b)
                return (low + high) / 2
        raise AssertionError("unreachable")

    def to_pairs(self) -> list[list[int]]:
        return [[b, n] for b, n in sorted(self.counts.items())]

    @classmethod
    def from_pairs(cls, pairs: Iterable[Sequence[int]]) -> "Histogram":
        h = cls()
        for b, n in pairs:
            h.counts[int(b)] = h.counts.get(int(b), 0) + int(n)
        return h


@dataclass(frozen=True)
class Spread:
    """The median of repeated measurements with their min and max."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[Optional[float]]) -> Optional["Spread"]:
        vals = [float(v) for v in values if v is not None and not math.isnan(v)]
        if not vals:
            return None
        return cls(statistics.median(vals), min(vals), max(vals), len(vals))


def ratio(value: Optional[Spread], reference: Optional[Spread]) -> Optional[float]:
    """median / reference median, or None when either is missing or zero."""
    if value is None or reference is None or not reference.median:
        return None
    return value.median / reference.median

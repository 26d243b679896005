"""A mergeable latency histogram with log-linear buckets (HdrHistogram's layout, simplified).

Pure: imports neither asyncio, socket nor ssl. Values are integers (nanoseconds here); each
bucket is under 1% wide, so a percentile is exact to within 1%; min, max, count and sum are
exact. Histograms from several processes merge by adding their buckets, so the merged
percentiles are the same as if one process had recorded everything.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["LatencyHistogram"]

_SUB_BITS: Final = 7
_SUB: Final = 1 << _SUB_BITS  # 128 buckets per power of two above 128
_BUCKETS: Final = _SUB + 48 * _SUB  # values up to 2**55 ns (over a year)


def _index(value: int) -> int:
    if value < _SUB:
        return max(0, value)
    shift = value.bit_length() - _SUB_BITS - 1
    return _SUB + shift * _SUB + (value >> shift) - _SUB


def _upper(index: int) -> int:
    """The largest value that falls into bucket index."""
    if index < _SUB:
        return index
    shift, sub = divmod(index - _SUB, _SUB)
    return ((sub + _SUB + 1) << shift) - 1


class LatencyHistogram:
    """record() values, merge() histograms, read percentile(p)."""

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, value: int) -> None:
        if value < 0:
            value = 0
        self.counts[_index(value)] += 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    def merge(self, other: LatencyHistogram) -> None:
        if other.count == 0:
            return
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def percentile(self, p: float) -> int:
        """The smallest recorded value v such that p percent of the values are <= v (to within a
        bucket, capped by the exact max). 0 for an empty histogram."""
        if not 0 <= p <= 100:
            raise ValueError("percentile must be between 0 and 100")
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(p * self.count / 100 - 1e-9))  # 1e-9: float noise in p
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return max(self.min, min(_upper(index), self.max))
        return self.max

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-able form, buckets sparse: for passing between processes."""
        return {
            "buckets": {str(i): n for i, n in enumerate(self.counts) if n},
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LatencyHistogram:
        """The histogram back from to_dict(); ValueError if data is not one (a file given to
        `aioecho bench merge` may be anything)."""
        hist = cls()
        buckets = data["buckets"]
        if not isinstance(buckets, dict):
            raise ValueError("buckets must be an object")
        for index, n in buckets.items():
            slot, count = int(index), int(n)
            if not 0 <= slot < _BUCKETS or count < 0:
                raise ValueError(f"no bucket {slot} (or a negative count)")
            hist.counts[slot] = count
        for name in ("count", "total", "min", "max"):
            value = data[name]
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number")
            setattr(hist, name, value)
        return hist

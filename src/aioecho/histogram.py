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
    def from_dict(cls, data: dict[str, object], where: str = "histogram") -> LatencyHistogram:
        """The histogram back from to_dict(); ValueError naming the field if data is not one (a
        file given to `aioecho bench merge` may be anything)."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: must be an object")
        hist = cls()
        buckets = data.get("buckets")
        if not isinstance(buckets, dict):
            raise ValueError(f"{where}.buckets: must be an object")
        for index, n in buckets.items():
            slot = int(index) if isinstance(index, str) and index.isdigit() else -1
            if not 0 <= slot < _BUCKETS:
                raise ValueError(f"{where}.buckets: no bucket {str(index)[:20]!r}")
            hist.counts[slot] = whole(n, f"{where}.buckets.{slot}")
        for name in ("count", "total", "min", "max"):
            setattr(hist, name, whole(data.get(name), f"{where}.{name}"))
        if hist.count and hist.min > hist.max:
            raise ValueError(f"{where}: min {hist.min} is over max {hist.max}")
        if hist.count != sum(hist.counts):
            raise ValueError(f"{where}.count: {hist.count} is not the sum of the buckets")
        return hist


MAX_WHOLE: Final = 2**63 - 1  # no count, total or duration of a real run comes near


def whole(value: object, where: str) -> int:
    """value if it is a whole number from 0 to MAX_WHOLE; else ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WHOLE:
        shown = "missing" if value is None else "not a whole number from 0 to 2**63-1"
        raise ValueError(f"{where}: {shown}")
    return value

"""The latency histogram: percentiles within a bucket's width, exact merging."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from aioecho.histogram import LatencyHistogram


def exact_percentile(values: list[int], p: float) -> int:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=500), st.floats(0, 100))
def test_percentile_within_one_percent(values: list[int], p: float) -> None:
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    exact = exact_percentile(values, p)
    got = hist.percentile(p)
    assert exact <= got <= max(exact * 1.01, exact + 1)
    assert (hist.min, hist.max, hist.count) == (min(values), max(values), len(values))


@given(st.lists(st.lists(st.integers(0, 10**10), max_size=100), min_size=1, max_size=5))
def test_merge_is_exact(parts: list[list[int]]) -> None:
    merged, whole = LatencyHistogram(), LatencyHistogram()
    for part in parts:
        h = LatencyHistogram()
        for v in part:
            h.record(v)
            whole.record(v)
        merged.merge(LatencyHistogram.from_dict(h.to_dict()))
    assert merged.counts == whole.counts
    assert (merged.count, merged.min, merged.max, merged.total) == (
        whole.count,
        whole.min,
        whole.max,
        whole.total,
    )
    for p in (50, 90, 99, 99.9, 100):
        assert merged.percentile(p) == whole.percentile(p)


def test_known_distribution() -> None:
    hist = LatencyHistogram()
    rng = random.Random(1)
    for _ in range(9980):
        hist.record(100_000 + rng.randrange(1000))  # about 100 us
    for _ in range(20):
        hist.record(1_000_000_000)  # one stall of 1 s, twenty requests caught in it
    assert 100_000 <= hist.percentile(50) <= 102_000
    assert hist.percentile(99.9) >= 1_000_000_000 * 0.99
    assert hist.max == 1_000_000_000


def test_empty() -> None:
    assert LatencyHistogram().percentile(99) == 0

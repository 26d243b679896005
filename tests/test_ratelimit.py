"""The UDP reply policy, with the clock passed in: no sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioecho.server.ratelimit import REFLECTION_PORTS, TokenBucket, UdpPolicy


@pytest.mark.parametrize("port", [0, 7, 13, 17, 19, 37, 53, 123, 161])
def test_never_answers_reflection_ports(port: int) -> None:
    assert port in REFLECTION_PORTS
    assert not UdpPolicy(rate=1000).allow("127.0.0.1", port, now=0.0)


def test_burst_then_rate() -> None:
    policy = UdpPolicy(rate=10)
    assert sum(policy.allow("127.0.0.1", 5000, 0.0) for _ in range(100)) == 10
    assert sum(policy.allow("127.0.0.1", 5000, 0.5) for _ in range(100)) == 5
    assert sum(policy.allow("127.0.0.1", 5000, 100.0) for _ in range(100)) == 10  # capped


def test_sources_are_limited_separately() -> None:
    policy = UdpPolicy(rate=2)
    assert [policy.allow("127.0.0.1", 5000, 0.0) for _ in range(3)] == [True, True, False]
    assert policy.allow("127.0.0.2", 5000, 0.0)


def test_source_table_stays_bounded() -> None:
    policy = UdpPolicy(rate=1, max_sources=100)
    for i in range(10_000):
        policy.allow(f"host{i}", 5000, now=i * 0.001)
    assert len(policy) <= 100


@given(
    rate=st.floats(min_value=0.5, max_value=1000),
    steps=st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_bucket_never_exceeds_burst_plus_rate_times_time(rate: float, steps: list[float]) -> None:
    burst = max(1.0, rate)
    bucket, now, granted = TokenBucket(rate, burst, 0.0), 0.0, 0
    for step in steps:
        now += step
        granted += bucket.take(now)
    assert granted <= burst + rate * now + 1e-6

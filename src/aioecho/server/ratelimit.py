"""Who a UDP echo server may answer (RFC 862 echo is a known reflection and loop tool).

Pure: imports neither asyncio, socket nor ssl; the caller passes the clock (loop.time()).
"""

from __future__ import annotations

from typing import Final

__all__ = ["REFLECTION_PORTS", "TokenBucket", "UdpPolicy"]

# Source ports of services that answer UDP on their own: replying to them can start an endless
# echo-chargen style loop between two servers, or reflect a spoofed flood at them. Port 0 is
# not a valid source at all.
REFLECTION_PORTS: Final = frozenset(
    {0, 7, 9, 11, 13, 17, 19, 37, 53, 69, 111, 123, 137, 138, 161, 162, 389, 500, 520, 1900,
     5353, 11211}
)  # fmt: skip

# Per-source buckets kept at most: a flood from spoofed sources must not grow memory without end.
MAX_SOURCES: Final = 65536


class TokenBucket:
    """rate tokens a second, up to burst; take() spends one if there is one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be more than 0 and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst  # a new source starts with a full bucket
        self.stamp = now  # when tokens was last brought up to date

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def full_at(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class UdpPolicy:
    """Whether to echo a datagram from (host, port): never to a reflection port, and at most
    `rate` datagrams a second per source host (burst `rate`)."""

    def __init__(self, rate: float, max_sources: int = MAX_SOURCES) -> None:
        self.rate = rate
        self._max_sources = max_sources
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, host: str, port: int, now: float) -> bool:
        if port in REFLECTION_PORTS:
            return False
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= self._max_sources:
                self._forget(now)
            bucket = self._buckets[host] = TokenBucket(self.rate, max(1.0, self.rate), now)
        return bucket.take(now)

    def _forget(self, now: float) -> None:
        """Drop buckets that are full again (the same as no bucket); if that is not enough, the
        older half: a source forgotten early gets at most one extra burst."""
        self._buckets = {h: b for h, b in self._buckets.items() if not b.full_at(now)}
        if len(self._buckets) >= self._max_sources:
            keep = list(self._buckets.items())[len(self._buckets) // 2 :]
            self._buckets = dict(keep)

    def __len__(self) -> int:
        return len(self._buckets)

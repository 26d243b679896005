"""Toxics for aioecho.testing, by type: `latency(ms=100)`, `reset_peer()`, ... Each returns a
Toxic (the API's, checked as the API checks it), named `<type>_<stream>` unless named."""

from __future__ import annotations

from typing import Any

from ..proxy.spec import ApiError, Toxic, parse_toxic

__all__ = [
    "bandwidth",
    "blackhole",
    "corrupt",
    "drop",
    "duplicate",
    "latency",
    "limit_data",
    "limit_time",
    "reset_peer",
    "slicer",
    "slow_close",
    "timeout",
    "toxic",
]


def toxic(
    type: str,
    *,
    stream: str = "downstream",
    toxicity: float = 1.0,
    name: str | None = None,
    match: dict[str, Any] | None = None,
    **attributes: float,
) -> Toxic:
    """Any toxic by its Toxiproxy type and attributes; ValueError names what is wrong.

    >>> toxic("latency", latency=100).name
    'latency_downstream'
    """
    body: dict[str, Any] = {
        "type": type,
        "stream": stream,
        "toxicity": toxicity,
        "attributes": attributes,
    }
    if name is not None:
        body["name"] = name
    if match is not None:
        body["match"] = match
    try:
        return parse_toxic(body)
    except ApiError as err:
        raise ValueError(err.message) from None


def latency(ms: float, jitter: float = 0, **options: Any) -> Toxic:
    """Each chunk held ms milliseconds, plus or minus jitter."""
    return toxic("latency", latency=ms, jitter=jitter, **options)


def bandwidth(kb_per_second: int, **options: Any) -> Toxic:
    """At most this many KB (1,000 bytes) per second."""
    return toxic("bandwidth", rate=kb_per_second, **options)


def slow_close(ms: float, **options: Any) -> Toxic:
    """The EOF passed on ms milliseconds late."""
    return toxic("slow_close", delay=ms, **options)


def timeout(ms: float = 0, **options: Any) -> Toxic:
    """Nothing passes; closed after ms milliseconds (0: held until the toxic is removed)."""
    return toxic("timeout", timeout=ms, **options)


def reset_peer(ms: float = 0, **options: Any) -> Toxic:
    """The first data is dropped and the connection reset (RST) ms milliseconds later."""
    return toxic("reset_peer", timeout=ms, **options)


def slicer(average_size: int, size_variation: int = 0, delay_us: int = 0, **options: Any) -> Toxic:
    """Data cut into pieces of about average_size bytes, delay_us microseconds apart."""
    return toxic(
        "slicer",
        average_size=average_size,
        size_variation=size_variation,
        delay=delay_us,
        **options,
    )


def limit_data(limit: int, **options: Any) -> Toxic:
    """Closed once `limit` bytes have passed."""
    return toxic("limit_data", bytes=limit, **options)


def corrupt(probability: float, **options: Any) -> Toxic:
    """Each chunk passes with one byte flipped, with this probability."""
    return toxic("corrupt", probability=probability, **options)


def limit_time(ms: float, **options: Any) -> Toxic:
    """Closed (FIN) ms milliseconds after the toxic applies."""
    return toxic("limit_time", time=ms, **options)


def blackhole(**options: Any) -> Toxic:
    """Read and dropped, never answered, never closed."""
    return toxic("blackhole", **options)


def drop(probability: float, **options: Any) -> Toxic:
    """UDP proxies: each datagram dropped with this probability."""
    return toxic("drop", probability=probability, **options)


def duplicate(probability: float, **options: Any) -> Toxic:
    """UDP proxies: each datagram sent twice with this probability."""
    return toxic("duplicate", probability=probability, **options)

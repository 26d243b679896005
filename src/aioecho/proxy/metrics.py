"""GET /metrics of the proxy's API: each proxy's connections, bytes and toxics, in Prometheus's
text format, read from the Hub at scrape time (prometheus_client, an optional extra)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .hub import Hub

__all__ = ["exposition"]


class _HubCollector:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Any]:
        proxies = self._hub.proxies
        up = GaugeMetricFamily(
            "aioecho_proxy_enabled", "1 while the proxy listens", labels=["proxy"]
        )
        active = GaugeMetricFamily(
            "aioecho_proxy_connections", "connections open now", labels=["proxy"]
        )
        total = CounterMetricFamily(
            "aioecho_proxy_connections", "connections accepted", labels=["proxy"]
        )
        toxics = GaugeMetricFamily("aioecho_proxy_toxics", "toxics set", labels=["proxy"])
        for name, proxy in proxies.items():
            up.add_metric([name], 1.0 if proxy.enabled else 0.0)
            active.add_metric([name], float(proxy.open_connections))
            total.add_metric([name], float(proxy.numbers))
            toxics.add_metric([name], float(len(proxy.toxics)))
        yield from (up, active, total, toxics)


def exposition(hub: Hub) -> tuple[int, str, bytes]:
    registry = CollectorRegistry()
    registry.register(_HubCollector(hub))
    return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

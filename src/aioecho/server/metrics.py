"""--metrics HOST:PORT: Prometheus metrics and health checks over HTTP, served on the server's
own event loop (no thread), on a listener of their own.

    /metrics  the server's counters in Prometheus's text format (prometheus_client), read from
              the server's statistics at scrape time: nothing is counted twice, and the echo's
              hot path does nothing for it
    /healthz  200 while the process serves
    /readyz   200 while it accepts connections; 503 from the moment draining starts, so that a
              balancer stops sending before connections are cut

HTTP is parsed by h11, bounded: a request head of at most 8 KiB (431 past it), 10 s to send
it, 64 clients at once (a 65th makes the one that has waited longest for its request leave, so
that idle connections cannot keep a health probe out), pipelined requests answered in turn with
flow control, and anything but GET or HEAD of those three paths is a 404 or 405.
prometheus_client and h11 are an optional extra: `pip install 'aioecho[metrics]'`.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, cast

from ..errors import AioechoError, ListenError
from ..httpserve import MAX_HEAD, HttpConnection, head_size
from ..version import __version__
from .tls import HANDSHAKE_BUCKETS

if TYPE_CHECKING:
    from .serve import Server

__all__ = ["MetricsEndpoint", "start_metrics"]

_log = logging.getLogger("aioecho.main")

TEXT: Final = "text/plain; charset=utf-8"
MISSING = "--metrics needs prometheus_client and h11: pip install 'aioecho[metrics]'"


class _ServerCollector:
    """The server's statistics as Prometheus metric families, built at each scrape."""

    def __init__(self, endpoint: MetricsEndpoint, loop_name: str) -> None:
        self._endpoint = endpoint
        self._loop_name = loop_name

    def collect(self) -> Iterator[Any]:
        worker = self._endpoint.worker
        for family in self._families():
            if worker is not None:  # --workers: which one's, on every sample
                family.samples = [
                    sample._replace(labels={**sample.labels, "worker": str(worker)})
                    for sample in family.samples
                ]
            yield family

    def _families(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        server = self._endpoint.server
        if server is None:  # still starting up
            return
        stats = server.stats()
        by_transport = server.by_transport()
        labelled = (  # by transport: tcp, tls, unix (each listener's kind)
            ("connections_accepted", "Connections taken on", "accepted"),
            ("connections_refused", "Closed at once (--max-connections)", "refused"),
            ("connections_reset", "Lost with an error (reset, broken pipe)", "reset"),
            (
                "connections_checks",
                "Ended before any data: health checks, port probes (not in connections_reset)",
                "checks",
            ),
        )
        for name, text, key in labelled:
            family = CounterMetricFamily(f"aioecho_{name}", text, labels=["transport"])
            for transport, counts in sorted(by_transport.items()):
                family.add_metric([transport], counts[key])
            yield family
        counters = (
            ("connections_idle_closed", "Closed by --idle-timeout", stats.idle_closed),
            ("received_bytes", "Payload bytes received", stats.bytes_in),
            ("sent_bytes", "Payload bytes echoed", stats.bytes_out),
        )
        for name, text, value in counters:
            yield CounterMetricFamily(f"aioecho_{name}", text, value=value)
        for name, text, value in (
            ("datagrams_echoed", "UDP datagrams echoed", stats.datagrams_echoed),
            ("datagrams_dropped", "UDP datagrams dropped (--udp-rate)", stats.datagrams_dropped),
        ):
            family = CounterMetricFamily(f"aioecho_{name}", text, labels=["transport"])
            family.add_metric(["udp"], value)
            yield family
        faults = stats.faults()
        if faults:
            fired = CounterMetricFamily(
                "aioecho_faults_fired", "Faults that fired, by fault", labels=["fault"]
            )
            for kind, count in faults.items():
                fired.add_metric([kind], count)
            yield fired
        yield CounterMetricFamily(
            "aioecho_proxy_header_rejects",
            "Connections closed without a valid PROXY protocol header (--proxy-protocol)",
            value=server.header_rejects,
        )
        handshakes = server.tls_handshakes
        if handshakes is not None:
            failures = CounterMetricFamily(
                "aioecho_tls_handshake_failures", "Failed TLS handshakes, by reason",
                labels=["reason"],
            )  # fmt: skip
            for reason, count in sorted(handshakes.reasons.items()):
                failures.add_metric([reason], count)
            yield failures
            cumulative, buckets = 0, []
            for bound, count in zip((*HANDSHAKE_BUCKETS, float("inf")), handshakes.buckets,
                                    strict=True):  # fmt: skip
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            yield HistogramMetricFamily(
                "aioecho_tls_handshake_seconds",
                "Time from accept to a completed TLS handshake",
                buckets=buckets,
                sum_value=handshakes.seconds,
            )
        yield GaugeMetricFamily("aioecho_connections_open", "Connections open now", stats.active)
        yield GaugeMetricFamily(
            "aioecho_ready", "1 while accepting, 0 once draining", 0 if server.draining else 1
        )
        yield InfoMetricFamily(
            "aioecho_build",
            "Version, event loop and Python",
            value={
                "version": __version__,
                "loop": self._loop_name,
                "python": platform.python_version(),
            },
        )


class _HttpProtocol(HttpConnection):
    """One HTTP/1.1 client connection, GET and HEAD answered in turn (keep-alive)."""

    def __init__(self, endpoint: MetricsEndpoint) -> None:
        super().__init__(endpoint.clients)
        self._endpoint = endpoint

    def eof_received(self) -> bool:
        return False  # a client that is done: close

    def _process(self) -> None:
        """Answer every whole request received, pipelined ones included, in a loop (a client
        may send thousands in one write: no recursion)."""
        h11 = self._h11
        while (event := self._next_event()) is not None:
            if isinstance(event, h11.Request):
                if head_size(event) > MAX_HEAD:
                    self._send_error(431, TEXT, b"request header fields too large\n")
                    return
                self._answer(event)
                if self._conn.our_state is h11.MUST_CLOSE:
                    self.transport.close()
                    return
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _refuse(self, err: Exception) -> None:
        self._send_error(400, TEXT, b"bad request\n")

    def _answer(self, request: Any) -> None:
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        handler = self._endpoint.routes.get(path)
        headers: list[tuple[str, str]] = []
        if handler is None:
            status, kind, body = 404, TEXT, b"not found\n"
        elif method not in ("GET", "HEAD"):
            status, kind, body = 405, TEXT, b"method not allowed\n"
            headers.append(("allow", "GET, HEAD"))
        else:
            status, kind, body = handler(dict(request.headers))
        self._send(status, kind, b"" if method == "HEAD" else body, len(body), headers)


class MetricsEndpoint:
    """The HTTP listener for /metrics, /healthz and /readyz of one server. It opens before the
    server does (so that every listener is open before the listening lines): until `server` is
    set, /readyz says 503 and /metrics has only the process's figures."""

    def __init__(
        self, loop_name: str, server: Server | None = None, worker: int | None = None
    ) -> None:
        try:
            import h11  # noqa: F401
            from prometheus_client import CollectorRegistry, ProcessCollector
            from prometheus_client.exposition import choose_encoder
        except ImportError:
            raise AioechoError(MISSING) from None
        self.server = server
        self.worker = worker
        self._registry = CollectorRegistry()
        self._registry.register(_ServerCollector(self, loop_name))
        ProcessCollector(registry=self._registry)
        self._choose_encoder = choose_encoder
        self.routes: dict[str, Callable[[dict[bytes, bytes]], tuple[int, str, bytes]]] = {
            "/metrics": self._metrics,
            "/healthz": lambda headers: (200, "text/plain; charset=utf-8", b"ok\n"),
            "/readyz": self._ready,
        }
        self._listener: asyncio.Server | None = None
        # open HTTP connections, the one that waited longest for its request first
        self.clients: dict[asyncio.Transport, None] = {}

    def _metrics(self, headers: dict[bytes, bytes]) -> tuple[int, str, bytes]:
        """Prometheus's text format, or OpenMetrics when the scraper's Accept asks for it."""
        accept = headers.get(b"accept", b"").decode("latin-1")
        encode, kind = self._choose_encoder(accept)
        return 200, kind, encode(self._registry)

    def _ready(self, headers: dict[bytes, bytes]) -> tuple[int, str, bytes]:
        if self.server is None:
            return 503, "text/plain; charset=utf-8", b"starting\n"
        if self.server.draining:
            return 503, "text/plain; charset=utf-8", b"draining\n"
        return 200, "text/plain; charset=utf-8", b"ready\n"

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        try:
            self._listener = await loop.create_server(lambda: _HttpProtocol(self), host, port)
        except OSError as err:
            raise ListenError(f"{host} port {port} (--metrics)", err) from None
        return cast(tuple[str, int], self._listener.sockets[0].getsockname()[:2])

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            for client in list(self.clients):  # keep-alive scrapers: not waited for
                client.abort()
            await self._listener.wait_closed()


async def start_metrics(
    where: tuple[str, int],
    loop_name: str,
    level: int,
    server: Server | None = None,
    worker: int | None = None,
) -> MetricsEndpoint:
    """Serve metrics and health at where (the server's once it is set); log the line scripts
    read the port from. worker: this process's number among --workers, a label on every
    aioecho_ metric (each worker serves its own endpoint, on the next port)."""
    endpoint = MetricsEndpoint(loop_name, server, worker)
    host, port = await endpoint.start(*where)
    _log.log(level, "metrics on http://%s/metrics (and /healthz, /readyz)", _url_host(host, port))
    return endpoint


def _url_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

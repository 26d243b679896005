"""`aioecho bench`: a load generator with honest latency.

Closed loop: each connection keeps `pipeline` requests in flight and sends the next as soon as
one comes back (this measures service time). Open loop (`rate`): requests go out at scheduled
times whatever the server does, and latency counts from the scheduled time, so a stalled
server cannot hide the queueing it causes (coordinated omission). Every echoed byte is checked
against the request it answers: each request starts with its sequence number.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TextIO

from .client import connect
from .config import BenchConfig
from .errors import describe_os_error
from .latency import LatencyHistogram

__all__ = ["BenchProtocol", "BenchResult", "describe", "is_terminal", "merge", "run_bench"]

_log = logging.getLogger("aioecho.bench")

MIB: Final = 1024 * 1024
_perf_ns = time.perf_counter_ns


class _Run:
    """State shared by the connections of one bench process."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.size = config.size
        self.closed_loop = config.closed_loop
        self.histogram = LatencyHistogram()
        self.measuring = False  # past the warm-up
        self.stopping = False  # no new requests
        self.completed = 0  # measured requests
        self.budget = config.requests or -1  # measured requests still to send; -1: no limit
        self.mismatches = 0
        self.resets = 0
        self.timeouts = 0
        self._seq = 0
        self._body = random.Random(config.size).randbytes(max(0, config.size - 8))
        self.all_done = asyncio.Event()  # set once the request budget is used up

    def payload(self) -> bytes:
        """The next request: its sequence number (8 bytes, cut to size) and a fixed body."""
        self._seq += 1
        return (self._seq.to_bytes(8, "big") + self._body)[-self.size :]

    def may_send(self) -> bool:
        if self.stopping:
            return False
        if self.measuring and self.budget >= 0:
            if self.budget == 0:
                return False
            self.budget -= 1
        return True

    def complete(self, latency_ns: int) -> None:
        if self.measuring:
            self.histogram.record(latency_ns)
            self.completed += 1
            if self.completed == self.config.requests:
                self.all_done.set()


class BenchProtocol(asyncio.Protocol):
    """One load-generating connection: sends requests, matches each echo to its request."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.inflight: deque[tuple[int, bytes]] = deque()  # (scheduled ns, request) in order
        self.pending = bytearray()  # echo received, not yet a whole request's worth
        self.broken = False  # mismatched or lost: no more requests
        loop = asyncio.get_running_loop()
        self.settled: asyncio.Future[None] = loop.create_future()  # stopping, nothing in flight
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport  # set in connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, scheduled_ns: int) -> None:
        payload = self.run.payload()
        self.inflight.append((scheduled_ns, payload))
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        run = self.run
        if not self.pending and len(data) == run.size and self.inflight:  # the common case
            self._answer(data, _perf_ns())
            return
        self.pending += data
        now = _perf_ns()
        while len(self.pending) >= run.size and self.inflight and not self.broken:
            echo = bytes(self.pending[: run.size])
            del self.pending[: run.size]
            self._answer(echo, now)
        if self.pending and not self.inflight:
            self._fail()  # bytes nobody asked for

    def _answer(self, echo: bytes, now: int) -> None:
        scheduled, request = self.inflight.popleft()
        if echo != request:
            self._fail()
            return
        run = self.run
        run.complete(now - scheduled)
        if run.closed_loop and not self.broken and run.may_send():
            self.send(_perf_ns())
        elif run.stopping and not self.inflight:
            self.settle()

    def settle(self) -> None:
        """No more answers to wait for: stopping with nothing in flight, or broken."""
        if not self.settled.done():
            self.settled.set_result(None)

    def _fail(self) -> None:
        if not self.broken:
            self.broken = True
            self.run.mismatches += 1
            self.transport.abort()
            self.settle()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.broken:
            self.run.resets += 1
            _log.warning("connection lost: %s", describe_os_error(exc))
        self.broken = True
        self.settle()
        self.closed.set_result(None)


@dataclasses.dataclass
class BenchResult:
    """What one run measured; merge() adds another process's result."""

    config: BenchConfig
    histogram: LatencyHistogram
    elapsed_s: float
    mismatches: int = 0
    resets: int = 0
    timeouts: int = 0

    @property
    def requests(self) -> int:
        return self.histogram.count

    @property
    def errors(self) -> int:
        return self.mismatches + self.resets + self.timeouts

    def merge(self, other: BenchResult) -> None:
        self.histogram.merge(other.histogram)
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.mismatches += other.mismatches
        self.resets += other.resets
        self.timeouts += other.timeouts

    def summary(self) -> dict[str, Any]:
        """The figures, with their units in their names."""
        h, elapsed = self.histogram, self.elapsed_s or 1e-9
        us = {f"p{str(p).replace('.', '')}_us": h.percentile(p) / 1000 for p in (50, 90, 99, 99.9)}
        return {
            "requests": self.requests,
            "elapsed_s": round(self.elapsed_s, 3),
            "rps": round(self.requests / elapsed, 1),
            "mib_per_s": round(self.requests * self.config.size / elapsed / MIB, 3),
            "min_us": h.min / 1000,
            **us,
            "max_us": h.max / 1000,
            "mean_us": round(h.mean() / 1000, 3),
            "errors": self.errors,
            "mismatches": self.mismatches,
            "resets": self.resets,
            "timeouts": self.timeouts,
        }

    def to_json(self) -> str:
        config = dataclasses.asdict(self.config)
        return json.dumps({"config": config, "result": self.summary()}, indent=2)

    def to_wire(self) -> str:
        """The exact result, histogram included, for a parent process to merge."""
        return json.dumps(
            {
                "histogram": self.histogram.to_dict(),
                "elapsed_s": self.elapsed_s,
                "mismatches": self.mismatches,
                "resets": self.resets,
                "timeouts": self.timeouts,
            }
        )

    @classmethod
    def from_wire(cls, config: BenchConfig, text: str) -> BenchResult:
        data = json.loads(text)
        return cls(
            config,
            LatencyHistogram.from_dict(data["histogram"]),
            data["elapsed_s"],
            data["mismatches"],
            data["resets"],
            data["timeouts"],
        )

    def table(self) -> str:
        s = self.summary()
        head = ("requests", "req/s", "MiB/s", "min", "p50", "p90", "p99", "p99.9", "max", "errors")
        row = (
            str(s["requests"]),
            f"{s['rps']:.0f}",
            f"{s['mib_per_s']:.2f}",
            *(f"{s[k]:.0f}" for k in ("min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us")),
            str(s["errors"]),
        )
        widths = [max(len(a), len(b)) for a, b in zip(head, row, strict=True)]
        line = "  ".join
        return "\n".join(
            [
                line(h.rjust(w) for h, w in zip(head, widths, strict=True)) + "   (latency in us)",
                line(r.rjust(w) for r, w in zip(row, widths, strict=True)),
            ]
        )


async def run_bench(config: BenchConfig, progress: TextIO | None = None) -> BenchResult:
    """One process's share of the load. progress: a terminal to draw a live line on."""
    run = _Run(config)
    factory: Callable[[], BenchProtocol] = functools.partial(BenchProtocol, run)
    conns = [(await connect(factory, config.target))[1] for _ in range(config.connections)]
    loop = asyncio.get_running_loop()
    tasks = [asyncio.ensure_future(_watch_timeouts(run, conns))]
    if config.closed_loop:
        for conn in conns:
            for _ in range(config.pipeline):
                if run.may_send():
                    conn.send(_perf_ns())
    else:
        tasks.append(asyncio.ensure_future(_schedule(run, conns, config.rate)))
    if progress is not None:
        tasks.append(asyncio.ensure_future(_progress(run, progress)))

    await asyncio.sleep(config.warmup)
    run.measuring = True
    started = loop.time()
    if config.requests:
        await run.all_done.wait()
    else:
        await asyncio.sleep(config.duration)
    run.measuring = False  # requests still in flight complete unmeasured
    elapsed = loop.time() - started
    run.stopping = True
    for task in tasks:
        task.cancel()
    await _finish(run, conns)
    if progress is not None:
        progress.write("\r\033[K")
    return BenchResult(config, run.histogram, elapsed, run.mismatches, run.resets, run.timeouts)


async def _schedule(run: _Run, conns: list[BenchProtocol], rate: float) -> None:
    """Open loop: request i goes out at start + i/rate, to the connections in turn, whether or
    not earlier ones have come back; latency counts from that scheduled time."""
    interval = 1e9 / rate
    start, sent = _perf_ns(), 0
    while True:
        due = int((_perf_ns() - start) / interval) + 1
        while sent < due:
            conn = conns[sent % len(conns)]
            if not conn.broken and run.may_send():
                conn.send(start + int(sent * interval))
            sent += 1
        await asyncio.sleep(min(0.001, max(0.0, (start + sent * interval - _perf_ns()) / 1e9)))


async def _watch_timeouts(run: _Run, conns: list[BenchProtocol]) -> None:
    timeout_ns = int(run.config.target.timeout * 1e9)
    while True:
        await asyncio.sleep(min(0.5, run.config.target.timeout / 4))
        now = _perf_ns()
        for conn in conns:
            if conn.inflight and not conn.broken and now - conn.inflight[0][0] > timeout_ns:
                run.timeouts += len(conn.inflight)
                conn.broken = True
                conn.transport.abort()


async def _finish(run: _Run, conns: list[BenchProtocol]) -> None:
    """Wait (up to the timeout) for requests in flight, then close every connection."""
    for conn in conns:
        if conn.broken or not conn.inflight:
            conn.settle()
    _, late = await asyncio.wait([c.settled for c in conns], timeout=run.config.target.timeout)
    if late:
        run.timeouts += sum(len(c.inflight) for c in conns if not c.settled.done())
    for conn in conns:
        conn.transport.close()
    await asyncio.gather(*(c.closed for c in conns))


async def _progress(run: _Run, out: TextIO) -> None:
    last, last_time = 0, time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        rate = (run.completed - last) / (now - last_time)
        last, last_time = run.completed, now
        phase = "measuring" if run.measuring else "warming up"
        out.write(f"\r\033[K{phase}: {run.completed} requests, {rate:.0f} req/s")
        out.flush()


def merge(results: list[BenchResult], config: BenchConfig) -> BenchResult:
    total = BenchResult(config, LatencyHistogram(), 0.0)
    for result in results:
        total.merge(result)
    return total


def describe(config: BenchConfig) -> str:
    target = config.target
    where = target.where + (" (tls)" if target.tls else "")
    mode = "closed loop" if config.closed_loop else f"open loop at {config.rate:g} req/s"
    length = f"{config.requests} requests" if config.requests else f"{config.duration:g}s"
    return (
        f"aioecho bench: {where}, {config.connections} connections, pipeline {config.pipeline}, "
        f"{mode}, {config.size} bytes, {length} after {config.warmup:g}s warm-up, "
        f"{config.workers} worker{'s' if config.workers > 1 else ''}"
    )


def is_terminal(stream: TextIO) -> bool:
    return stream.isatty() if hasattr(stream, "isatty") else False

"""`aioecho bench`: a load generator with honest latency.

Closed loop: each connection keeps `pipeline` requests in flight and sends the next as soon as
one comes back (this measures service time). Open loop (`rate`): requests go out at scheduled
times whatever the server does, and latency counts from the scheduled time, so a stalled
server cannot hide the queueing it causes (coordinated omission). Every echoed byte is checked
against the request it answers: each request starts with its sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TextIO

from ..client.config import ClientConfig
from ..client.protocol import connect
from ..errors import BenchError, describe_os_error
from ..histogram import LatencyHistogram, whole
from .config import BenchConfig

__all__ = ["BenchProtocol", "BenchResult", "describe", "is_terminal", "merge", "run_bench"]

_log = logging.getLogger("aioecho.bench")

MIB: Final = 1024 * 1024
_perf_ns = time.perf_counter_ns


# Requests kept in flight by one process in open loop, in bytes: past this the generator does not
# send (and says so) rather than queue without bound behind a server that cannot keep up.
MAX_INFLIGHT_BYTES: Final = 128 * MIB
MAX_INFLIGHT_PER_CONNECTION: Final = 100_000
REQUEST_OVERHEAD: Final = 160  # bytes a request in flight costs besides its payload (measured)


class _Run:
    """State shared by the connections of one bench process.

    A request is measured when it is sent (closed loop) or scheduled (open loop) inside the
    measured window, whenever its echo comes back: a request scheduled in the window and never
    answered is an error (timeout, reset, closed by the server, or not sent), not a silent gap.
    """

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.size = config.size
        self.closed_loop = config.closed_loop
        self.histogram = LatencyHistogram()
        self.measuring = False  # sends now are in the measured window
        self.window_start: int | None = None  # perf_counter_ns of the measured window
        self.window_end: int | None = None
        self.stopping = False  # no new requests; connections may be closed by us
        self.completed = 0  # measured requests answered
        self.lost = 0  # measured requests that will never be answered
        self.budget = config.requests or -1  # measured requests still to send; -1: no limit
        self.mismatches = 0
        self.resets = 0
        self.timeouts = 0
        self.closed = 0  # requests in flight on a connection the server closed
        self.closed_connections = 0
        self.unsent = 0  # measured requests not sent: connection gone, or the in-flight cap
        self.alive = config.connections  # connections not yet given up
        self.inflight_cap = _inflight_cap(config)
        self._seq = 0
        self._body = random.Random(config.size).randbytes(max(0, config.size - 8))
        # set once the measured requests are all settled (--requests), or no connection is left
        self.ended = asyncio.Event()

    def payload(self) -> bytes:
        """The next request: its sequence number (8 bytes, cut to size) and a fixed body."""
        self._seq += 1
        return (self._seq.to_bytes(8, "big") + self._body)[-self.size :]

    def may_send(self, measured: bool | None = None) -> bool:
        """Whether another request may go out; a measured one uses up the --requests budget."""
        if self.stopping:
            return False
        if (self.measuring if measured is None else measured) and self.budget >= 0:
            if self.budget == 0:
                return False
            self.budget -= 1
        return True

    def complete(self, latency_ns: int) -> None:
        self.histogram.record(latency_ns)
        self.completed += 1
        if self.completed + self.lost == self.config.requests:
            self.ended.set()

    def not_sent(self, measured: bool) -> None:
        if measured:
            self.unsent += 1
            self.lose(1)

    def lose(self, measured: int) -> None:
        self.lost += measured
        if measured and self.completed + self.lost == self.config.requests:
            self.ended.set()

    def connection_gone(self) -> None:
        self.alive -= 1
        if not self.alive:
            self.ended.set()


def _inflight_cap(config: BenchConfig) -> int:
    per_process = max(1, config.connections // config.workers)
    return max(
        config.pipeline,
        min(
            MAX_INFLIGHT_PER_CONNECTION,
            MAX_INFLIGHT_BYTES // (config.size + REQUEST_OVERHEAD) // per_process,
        ),
    )


class BenchProtocol(asyncio.Protocol):
    """One load-generating connection: sends requests, matches each echo to its request."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        # (scheduled ns, request, measured) in the order sent
        self.inflight: deque[tuple[int, bytes, bool]] = deque()
        self.pending = bytearray()  # echo received, not yet a whole request's worth
        self.broken = False  # mismatched, lost or timed out: no more requests
        loop = asyncio.get_running_loop()
        self.settled: asyncio.Future[None] = loop.create_future()  # stopping, nothing in flight
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport  # set in connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, scheduled_ns: int, measured: bool) -> None:
        if self.broken:
            self.run.not_sent(measured)
            return
        payload = self.run.payload()
        try:
            self.transport.write(payload)
        except RuntimeError:  # uvloop: the transport closed before connection_lost was called
            self.run.not_sent(measured)
            self.give_up("closed")
            return
        self.inflight.append((scheduled_ns, payload, measured))

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
        if self.pending and not self.inflight and not self.broken:
            self.give_up("mismatch")  # bytes nobody asked for

    def _answer(self, echo: bytes, now: int) -> None:
        if echo != self.inflight[0][1]:
            self.give_up("mismatch")
            return
        scheduled, _, measured = self.inflight.popleft()
        run = self.run
        if measured:
            run.complete(now - scheduled)
        if run.closed_loop and not self.broken and run.may_send():
            self.send(_perf_ns(), run.measuring)
        elif run.stopping and not self.inflight:
            self.settle()

    def settle(self) -> None:
        """No more answers to wait for: stopping with nothing in flight, or broken."""
        if not self.settled.done():
            self.settled.set_result(None)

    def give_up(self, why: str) -> None:
        """This connection is done for: count why, and the requests it will never answer."""
        if self.broken:
            return
        self.broken = True
        run = self.run
        lost = len(self.inflight)
        if why == "mismatch":
            run.mismatches += 1
        elif why == "reset":
            run.resets += 1
        elif why == "timeout":
            run.timeouts += lost
        elif why == "closed":
            run.closed += lost
            run.closed_connections += 1
        run.lose(sum(1 for entry in self.inflight if entry[2]))
        self.inflight.clear()
        run.connection_gone()
        if why in ("mismatch", "timeout"):
            self.transport.abort()
        self.settle()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            if not self.broken:
                _log.warning("connection lost: %s", describe_os_error(exc))
            self.give_up("reset")
        elif not (self.run.stopping and not self.inflight):
            self.give_up("closed")  # the server closed it while requests were owed or to come
        self.broken = True
        self.settle()
        self.closed.set_result(None)


_COUNTERS: Final = ("mismatches", "resets", "timeouts", "closed", "unsent", "closed_connections")


@dataclasses.dataclass
class BenchResult:
    """What one run measured; merge() adds another process's result."""

    config: BenchConfig
    histogram: LatencyHistogram
    elapsed_s: float
    mismatches: int = 0  # wrong echoes (each ends its connection)
    resets: int = 0  # connections lost with an error
    timeouts: int = 0  # requests not answered within --timeout
    closed: int = 0  # requests in flight when the server closed their connection
    unsent: int = 0  # requests due in the window but not sent (connection gone, in-flight cap)
    closed_connections: int = 0  # connections the server closed before the run ended
    # --new-connection: the connect and TLS handshake times, and failed connects by reason
    connects: LatencyHistogram | None = None
    handshakes: LatencyHistogram | None = None
    failed_connects: dict[str, int] = dataclasses.field(default_factory=dict)
    resumed: int = 0  # --tls-resume: handshakes the server resumed

    @property
    def requests(self) -> int:
        return self.histogram.count

    @property
    def errors(self) -> int:
        failed = sum(self.failed_connects.values())
        return self.mismatches + self.resets + self.timeouts + self.closed + self.unsent + failed

    def merge(self, other: BenchResult) -> None:
        self.histogram.merge(other.histogram)
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        for counter in _COUNTERS:
            setattr(self, counter, getattr(self, counter) + getattr(other, counter))
        for name in ("connects", "handshakes"):
            theirs = getattr(other, name)
            if theirs is not None:
                if getattr(self, name) is None:
                    setattr(self, name, LatencyHistogram())
                getattr(self, name).merge(theirs)
        for reason, count in other.failed_connects.items():
            self.failed_connects[reason] = self.failed_connects.get(reason, 0) + count
        self.resumed += other.resumed

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
            **{counter: getattr(self, counter) for counter in _COUNTERS},
            **self._connection_summary(),
        }

    def _connection_summary(self) -> dict[str, Any]:
        if self.connects is None:
            return {}
        figures: dict[str, Any] = {
            "connections_per_s": round(self.requests / (self.elapsed_s or 1e-9), 1),
            "failed_connects": dict(sorted(self.failed_connects.items())),
        }
        for name, hist in (("connect", self.connects), ("tls", self.handshakes)):
            if hist is not None and hist.count:
                for p in (50, 90, 99):
                    figures[f"{name}_p{p}_us"] = hist.percentile(p) / 1000
                figures[f"{name}_max_us"] = hist.max / 1000
        if self.config.tls_resume:
            figures["tls_resumed"] = self.resumed
        return figures

    def to_json(self) -> str:
        """The report: the config, the figures, and the exact result (the whole histogram and
        the counters) that `aioecho bench merge` adds up."""
        config = dataclasses.asdict(self.config)
        exact = json.loads(self.to_wire())
        return json.dumps({"config": config, "result": self.summary(), "exact": exact}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> BenchResult:
        """A result back from to_json() (ValueError, KeyError or ConfigError if it is not one)."""
        data = json.loads(text, parse_constant=_no_constant)
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise ValueError("config: missing")
        fields = dict(data["config"])
        if not isinstance(fields.get("target"), dict):
            raise ValueError("config.target: must be an object")
        try:
            config = BenchConfig(**{**fields, "target": ClientConfig(**fields["target"])})
        except TypeError:
            raise ValueError("config: not a bench configuration") from None
        return cls.from_exact(config, data.get("exact"))

    def to_wire(self) -> str:
        """The exact result, histogram included, for a parent process to merge."""
        counters = {counter: getattr(self, counter) for counter in _COUNTERS}
        extra: dict[str, Any] = {}
        if self.connects is not None:
            extra["connects"] = self.connects.to_dict()
            extra["failed_connects"] = self.failed_connects
        if self.handshakes is not None:
            extra["handshakes"] = self.handshakes.to_dict()
            extra["resumed"] = self.resumed
        return json.dumps(
            {
                "histogram": self.histogram.to_dict(),
                "elapsed_s": self.elapsed_s,
                **counters,
                **extra,
            }
        )

    @classmethod
    def from_wire(cls, config: BenchConfig, text: str) -> BenchResult:
        return cls.from_exact(config, json.loads(text))

    @classmethod
    def from_exact(cls, config: BenchConfig, data: Any) -> BenchResult:
        """The exact result from its JSON form; ValueError naming the field if it is not one."""
        if not isinstance(data, dict):
            raise ValueError("exact: must be an object")
        elapsed = data.get("elapsed_s")
        if (
            isinstance(elapsed, bool)
            or not isinstance(elapsed, int | float)
            or not 0 <= elapsed < 1e9  # NaN fails too
        ):
            raise ValueError("exact.elapsed_s: must be a number of seconds, 0 or more")
        histogram = LatencyHistogram.from_dict(data.get("histogram", {}), "exact.histogram")
        if not elapsed and histogram.count:  # requests in no time: an infinite rate
            raise ValueError(f"exact.elapsed_s: 0 seconds for {histogram.count} requests")
        result = cls(config, histogram, float(elapsed))
        for counter in _COUNTERS:
            setattr(result, counter, whole(data.get(counter), f"exact.{counter}"))
        if "connects" in data:
            result.connects = LatencyHistogram.from_dict(data["connects"] or {}, "exact.connects")
            failed = data.get("failed_connects")
            if not isinstance(failed, dict):
                raise ValueError("exact.failed_connects: must be an object")
            result.failed_connects = {
                str(k)[:40]: whole(v, f"exact.failed_connects.{str(k)[:40]}")
                for k, v in failed.items()
            }
        if "handshakes" in data:
            result.handshakes = LatencyHistogram.from_dict(
                data["handshakes"] or {}, "exact.handshakes"
            )
            result.resumed = whole(data.get("resumed", 0), "exact.resumed")
        return result

    def failure(self) -> str | None:
        """What went wrong, in one line; None when every measured request came back right."""
        if not self.errors and self.requests:
            return None
        connections = self.config.connections
        if self.connects is None and self.closed_connections + self.resets == connections:
            reset = f", {self.resets} with a reset" if self.resets else ""
            return f"the server closed every connection ({connections} of {connections}{reset})"
        if not self.errors:
            return "no request completed"
        parts = [f"{getattr(self, c)} {c}" for c in _COUNTERS[:5] if getattr(self, c)]
        parts += [f"{n} connects {why}" for why, n in sorted(self.failed_connects.items())]
        text = f"{self.errors} errors: {', '.join(parts)}"
        if self.closed_connections:
            text += f" (the server closed {self.closed_connections} connections)"
        if self.unsent:
            cap = _inflight_cap(self.config)
            text += (
                "; requests were not sent when their connection was gone or the generator fell "
                f"behind (at most ~{cap} in flight per connection)"
            )
        return text

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
        lines = [
            line(h.rjust(w) for h, w in zip(head, widths, strict=True)) + "   (latency in us)",
            line(r.rjust(w) for r, w in zip(row, widths, strict=True)),
        ]
        if self.connects is not None:
            lines.append(self._connection_line(s))
        return "\n".join(lines)

    def _connection_line(self, s: dict[str, Any]) -> str:
        """'14230 connections/s; connect p50/p90/p99 45/80/210 us; tls ...; failed: 0'"""
        parts = [f"{s['connections_per_s']:.0f} connections/s"]
        for name in ("connect", "tls"):
            if f"{name}_p50_us" in s:
                values = "/".join(f"{s[f'{name}_p{p}_us']:.0f}" for p in (50, 90, 99))
                parts.append(f"{name} p50/p90/p99 {values} us")
        if "tls_resumed" in s:
            parts.append(f"resumed {s['tls_resumed']} of {s['requests']}")
        failed = s["failed_connects"]
        detail = ", ".join(f"{n} {reason}" for reason, n in failed.items())
        parts.append(f"failed connects: {detail}" if failed else "failed connects: 0")
        return "; ".join(parts)


async def run_bench(config: BenchConfig, progress: TextIO | None = None) -> BenchResult:
    """One process's share of the load. progress: a terminal to draw a live line on."""
    run = _Run(config)
    factory: Callable[[], BenchProtocol] = functools.partial(BenchProtocol, run)
    conns = [(await connect(factory, config.target))[1] for _ in range(config.connections)]
    tasks = [asyncio.ensure_future(_watch_timeouts(run, conns))]
    if progress is not None:
        tasks.append(asyncio.ensure_future(_progress(run, progress)))
    run.measuring = not config.warmup
    scheduler = None
    if config.closed_loop:
        for conn in conns:
            for _ in range(config.pipeline):
                if run.may_send():
                    conn.send(_perf_ns(), run.measuring)
    else:
        scheduler = asyncio.ensure_future(_schedule(run, conns, config.rate))
    await _until_ended(run, config.warmup)
    run.window_start = started = _perf_ns()
    run.measuring = True
    if not config.requests:  # the scheduler stops at this slot, however late the loop wakes
        run.window_end = run.window_start + int(config.duration * 1e9)
    await _until_ended(run, None if config.requests else config.duration)
    if run.window_end is None or run.ended.is_set():  # --requests, or no connection left
        run.window_end = min(_perf_ns(), run.window_end or _perf_ns())
    run.measuring = False
    # not loop.time(): uvloop's clock moves in whole milliseconds (a short run measured 0.0 s)
    elapsed = (_perf_ns() - started) / 1e9
    if not config.closed_loop:  # the measured requests are the slots in the window, exactly
        elapsed = min(elapsed, (run.window_end - run.window_start) / 1e9)
    if scheduler is not None:  # it stops by itself at the first slot past the window
        await asyncio.wait([scheduler], timeout=config.target.timeout)
        scheduler.cancel()
    run.stopping = True
    for task in tasks:
        task.cancel()
    await _finish(run, conns)
    if progress is not None:
        progress.write("\r\033[K")
    counters = {counter: getattr(run, counter) for counter in _COUNTERS}
    return BenchResult(config, run.histogram, elapsed, **counters)


async def _until_ended(run: _Run, seconds: float | None) -> None:
    """Sleep this long (None: for ever), or until the run has ended by itself."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(run.ended.wait(), seconds)


async def _schedule(run: _Run, conns: list[BenchProtocol], rate: float) -> None:
    """Open loop: request i is due at start + i/rate, to the connections in turn, whether or
    not earlier ones have come back; latency counts from that scheduled time. A slot that cannot
    be sent (its connection is gone, or has the most requests in flight it may have) is counted,
    not skipped silently. Returns at the first slot past the measured window."""
    interval = 1e9 / rate
    start, slot = _perf_ns(), 0
    while True:
        due = int((_perf_ns() - start) / interval) + 1
        while slot < due:
            scheduled = start + int(slot * interval)
            if run.window_end is not None and scheduled >= run.window_end:
                return
            measured = run.window_start is not None and scheduled >= run.window_start
            if not run.may_send(measured):
                return
            conn = conns[slot % len(conns)]
            if len(conn.inflight) >= run.inflight_cap:
                run.not_sent(measured)
            else:
                conn.send(scheduled, measured)
            slot += 1
        await asyncio.sleep(min(0.001, max(0.0, (start + slot * interval - _perf_ns()) / 1e9)))


async def _watch_timeouts(run: _Run, conns: list[BenchProtocol]) -> None:
    timeout_ns = int(run.config.target.timeout * 1e9)
    while True:
        await asyncio.sleep(min(0.5, run.config.target.timeout / 4))
        now = _perf_ns()
        for conn in conns:
            if conn.inflight and not conn.broken and now - conn.inflight[0][0] > timeout_ns:
                conn.give_up("timeout")


async def _finish(run: _Run, conns: list[BenchProtocol]) -> None:
    """Wait (up to the timeout) for requests in flight, then close every connection."""
    for conn in conns:
        if conn.broken or not conn.inflight:
            conn.settle()
    await asyncio.wait([c.settled for c in conns], timeout=run.config.target.timeout)
    for conn in conns:
        if not conn.settled.done():
            conn.give_up("timeout")
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


def merge_reports(results: list[BenchResult]) -> BenchResult:
    """Results taken by separate runs (on several machines) as one report, exactly as one run
    of all their connections would have made it: the histograms and counters added, as a
    --workers run adds its workers'. They must have measured the same load shape."""
    first = results[0].config
    for result in results[1:]:
        other = result.config
        for name in ("size", "pipeline", "target"):
            if getattr(other, name) != getattr(first, name):
                raise BenchError(f"the results measured different loads ({name} differs)")
        if other.closed_loop != first.closed_loop:
            raise BenchError("the results measured different loads (open and closed loop)")
    config = dataclasses.replace(
        first,
        connections=sum(r.config.connections for r in results),
        rate=sum(r.config.rate for r in results),
        requests=sum(r.config.requests for r in results),
        workers=sum(r.config.workers for r in results),
    )
    return merge(results, config)


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


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a report holds")

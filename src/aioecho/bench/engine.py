"""`aioecho bench`: a load generator with honest latency.

Closed loop: each connection keeps `pipeline` requests in flight and sends the next as soon as
one comes back (this measures service time). Open loop (`rate`): requests go out at scheduled
times whatever the server does, and latency counts from the scheduled time, so a stalled
server cannot hide the queueing it causes (coordinated omission). Every echoed byte is checked
against the request it answers: each request starts with its sequence number.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Final, TextIO

from ..client.protocol import connect
from ..errors import describe_os_error
from ..histogram import LatencyHistogram
from ..units import plural
from .config import BenchConfig
from .result import _COUNTERS, BenchResult, inflight_cap

__all__ = ["BenchProtocol", "describe", "is_terminal", "run_bench", "until"]

_log = logging.getLogger("aioecho.bench")

MIB: Final = 1024 * 1024
_perf_ns = time.perf_counter_ns


# Requests kept in flight by one process in open loop, in bytes: past this the generator does not
# send (and says so) rather than queue without bound behind a server that cannot keep up.
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
        self.inflight_cap = inflight_cap(config)
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


async def run_bench(
    config: BenchConfig,
    progress: TextIO | None = None,
    live: bool = True,
    stop: asyncio.Event | None = None,
) -> BenchResult:
    """One process's share of the load. progress: where to show it every second; live: a
    terminal, where one line is redrawn (else a line each time). stop: once set (Ctrl-C), the
    measured window ends there, and the result is what it holds."""
    run = _Run(config)
    factory: Callable[[], BenchProtocol] = functools.partial(BenchProtocol, run)
    conns = [(await connect(factory, config.target))[1] for _ in range(config.connections)]
    tasks = [asyncio.ensure_future(_watch_timeouts(run, conns))]
    if progress is not None:
        tasks.append(asyncio.ensure_future(_progress(run, progress, live)))
    run.measuring = not config.warmup
    scheduler = None
    if config.closed_loop:
        for conn in conns:
            for _ in range(config.pipeline):
                if run.may_send():
                    conn.send(_perf_ns(), run.measuring)
    else:
        scheduler = asyncio.ensure_future(_schedule(run, conns, config.rate))
    await _until_ended(run, config.warmup, stop)
    run.window_start = started = _perf_ns()
    run.measuring = True
    if not config.requests:  # the scheduler stops at this slot, however late the loop wakes
        run.window_end = run.window_start + int(config.duration * 1e9)
    await _until_ended(run, None if config.requests else config.duration, stop)
    if stop is not None and stop.is_set():
        run.ended.set()  # the window ends now
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
    if progress is not None and live:
        progress.write("\r\033[K")
    counters = {counter: getattr(run, counter) for counter in _COUNTERS}
    return BenchResult(config, run.histogram, elapsed, **counters)


async def _until_ended(run: _Run, seconds: float | None, stop: asyncio.Event | None) -> None:
    """Sleep this long (None: for ever), or until the run has ended by itself, or stop."""
    await until(run.ended, seconds, stop)


async def until(event: asyncio.Event, seconds: float | None, stop: asyncio.Event | None) -> None:
    """Wait for event, at most seconds (None: no limit), and no longer than stop is unset."""
    waits = [asyncio.ensure_future(event.wait())]
    if stop is not None:
        waits.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


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


async def _progress(run: _Run, out: TextIO, live: bool = True) -> None:
    last, last_time = 0, time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        rate = (run.completed - last) / (now - last_time)
        last, last_time = run.completed, now
        phase = "measuring" if run.measuring else "warming up"
        line = f"{phase}: {run.completed} requests, {rate:.0f} req/s"
        out.write(f"\r\033[K{line}" if live else f"{line}\n")
        out.flush()


def describe(config: BenchConfig) -> str:
    target = config.target
    where = target.where + (" (tls)" if target.tls else "")
    mode = "closed loop" if config.closed_loop else f"open loop at {config.rate:g} req/s"
    length = f"{config.requests} requests" if config.requests else f"{config.duration:g}s"
    return (
        f"aioecho bench: {where}, {plural(config.connections, 'connection')}, pipeline "
        f"{config.pipeline}, {mode}, {config.size} bytes, {length} after {config.warmup:g}s "
        f"warm-up, {plural(config.workers, 'worker')}"
    )


def is_terminal(stream: TextIO) -> bool:
    return stream.isatty() if hasattr(stream, "isatty") else False

"""`aioecho bench --new-connection`: every request on a connection of its own (connect, TLS
handshake, send, receive the echo, close), the load a firewall or a balancer meets when
measured in connections per second.

Closed loop: `connections` workers, each opening its next connection once the last one is
done. Open loop (`rate`): connection attempts start at scheduled times whatever the server
does, and the connect time counts from the scheduled time, so a server that is slow to accept
cannot hide its queue; at most MAX_ATTEMPTS are under way at once (more are counted as not
sent). Measured apart: the connect time, the TLS handshake time, and the request (send to
echo); failed connects are counted by reason (refused, reset, timeout, other).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, TextIO

from ..histogram import LatencyHistogram
from ..tls import ResumingContext, client_context, resuming_context
from .config import BenchConfig
from .engine import until
from .result import BenchResult

__all__ = ["run_new_connections"]

MAX_ATTEMPTS: Final = 10_000  # open loop: attempts under way at once, at most
_perf_ns = time.perf_counter_ns


class _OneRequest(asyncio.Protocol):
    """One connection's request: collects the echo and compares it as it comes."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.got = 0
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        end = self.got + len(data)
        if self.payload[self.got : end] != data:
            self.done.set_result("mismatch")
            return
        self.got = end
        if end == len(self.payload):
            self.done.set_result("ok")

    def eof_received(self) -> bool:
        if not self.done.done():
            self.done.set_result("closed")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result("reset" if exc is not None else "closed")


class _Run:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.histogram = LatencyHistogram()
        self.connects = LatencyHistogram()
        self.handshakes = LatencyHistogram() if config.target.tls else None
        self.failed: dict[str, int] = {}
        self.counters = dict.fromkeys(("mismatches", "resets", "timeouts", "closed", "unsent"), 0)
        self.measuring = False
        self.stopping = False
        self.completed = 0
        self.issued = 0  # measured attempts started: --requests N starts N, no more
        self.settled = 0  # measured attempts with an outcome (or not sent)
        self.ended = asyncio.Event()  # set once --requests attempts are settled
        target = config.target
        self.context: ssl.SSLContext | None = None
        if config.tls_resume:
            self.context = resuming_context(**target.tls_options())
        elif target.tls:
            self.context = client_context(**target.tls_options())
        self.resumed = 0
        self.payload = (bytes(range(256)) * (config.size // 256 + 1))[: config.size]

    def more(self) -> bool:
        """Whether to start another connection."""
        requests = self.config.requests
        return not self.stopping and not (self.measuring and requests and self.issued >= requests)

    def issue(self) -> bool:
        """Another connection is starting: whether it is measured (and so counted)."""
        self.issued += self.measuring
        return self.measuring

    def settle(self) -> None:
        """A measured attempt has its outcome: the run ends at the last of --requests."""
        self.settled += 1
        if self.settled == self.config.requests:
            self.ended.set()

    def fail_connect(self, err: BaseException, measured: bool) -> None:
        if not measured:
            return
        self.settle()
        if isinstance(err, ConnectionRefusedError):
            reason = "refused"
        elif isinstance(err, ConnectionResetError | BrokenPipeError):
            reason = "reset"
        elif isinstance(err, asyncio.TimeoutError | TimeoutError):
            reason = "timeout"
        else:
            reason = "other"
        self.failed[reason] = self.failed.get(reason, 0) + 1

    async def attempt(self, started: int, measured: bool) -> None:
        """One connection, from `started` (perf_counter_ns: now, or its scheduled time), the
        whole of it bounded by --timeout (one timer: asyncio.wait_for would cost a task per
        step, more than the rest of a short connection); counted if `measured`."""
        loop = asyncio.get_running_loop()
        target = self.config.target
        protocol = _OneRequest(self.payload)
        transport: Any = None
        phase = "connect"
        resumed = False
        try:
            async with _deadline(target.timeout):
                if target.unix is not None:
                    transport, _ = await loop.create_unix_connection(lambda: protocol, target.unix)
                else:
                    transport, _ = await loop.create_connection(
                        lambda: protocol, target.host, target.port
                    )
                connected = _perf_ns()
                if self.context is not None:
                    transport = await loop.start_tls(
                        transport, protocol, self.context, server_hostname=target.server_name
                    )
                handshaken = _perf_ns()
                phase = "echo"
                transport.write(self.payload)
                sent = _perf_ns()
                outcome = await protocol.done
                if outcome == "ok" and isinstance(self.context, ResumingContext):
                    ssl_object = transport.get_extra_info("ssl_object")
                    resumed = ssl_object.session_reused
                    self.context.keep(ssl_object)  # its ticket has come with the echo
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as err:
            if phase == "connect":
                self.fail_connect(err, measured)
                return
            outcome = "timeout" if isinstance(err, asyncio.TimeoutError) else "reset"
        finally:
            if transport is not None:
                transport.close()
        if not measured:
            return
        self.settle()
        if outcome != "ok":
            key = {"mismatch": "mismatches", "reset": "resets", "timeout": "timeouts"}
            self.counters[key.get(outcome, "closed")] += 1
            return
        self.histogram.record(_perf_ns() - sent)
        self.connects.record(connected - started)
        if self.handshakes is not None:
            self.handshakes.record(handshaken - connected)
        self.resumed += resumed
        self.completed += 1


@contextlib.asynccontextmanager
async def _deadline_compat(seconds: float) -> AsyncIterator[None]:
    """asyncio.timeout() for Python 3.10: cancel the task when the time is up, and say so as
    TimeoutError."""
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        yield
    except asyncio.CancelledError:
        if expired:
            raise asyncio.TimeoutError from None
        raise
    finally:
        handle.cancel()


_deadline: Callable[[float], AbstractAsyncContextManager[Any]] = getattr(
    asyncio, "timeout", _deadline_compat
)


async def run_new_connections(
    config: BenchConfig,
    progress: TextIO | None = None,
    live: bool = True,
    stop: asyncio.Event | None = None,
) -> BenchResult:
    """One process's share of a --new-connection run (no progress line: progress and live are
    taken for run_bench's sake, and ignored)."""
    run = _Run(config)
    attempts: set[asyncio.Future[None]] = set()
    if config.closed_loop:
        workers = [asyncio.ensure_future(_worker(run)) for _ in range(config.connections)]
    else:
        workers = [asyncio.ensure_future(_schedule(run, attempts))]
    run.measuring = not config.warmup
    never = asyncio.Event()
    if config.warmup:
        await until(never, config.warmup, stop)
    run.measuring = True
    started = _perf_ns()  # not loop.time(): uvloop's clock moves in whole milliseconds
    await until(run.ended, None if config.requests else config.duration, stop)
    run.measuring = False
    elapsed = (_perf_ns() - started) / 1e9
    # Connections under way are let finish (each is bounded by --timeout), not cut: a cut
    # handshake is a failure in the server's log that the load did not cause.
    run.stopping = True
    pending = [*attempts, *workers]
    if pending:
        await asyncio.wait(pending, timeout=config.target.timeout)
    for task in pending:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*pending, return_exceptions=True)
    result = BenchResult(config, run.histogram, elapsed)
    for counter, value in run.counters.items():
        setattr(result, counter, value)
    result.connects, result.handshakes = run.connects, run.handshakes
    result.failed_connects = run.failed
    result.resumed = run.resumed
    return result


async def _worker(run: _Run) -> None:
    while run.more():
        await run.attempt(_perf_ns(), run.issue())


async def _schedule(run: _Run, attempts: set[asyncio.Future[None]]) -> None:
    """Open loop: attempt i starts at start + i/rate."""
    interval = 1e9 / run.config.rate
    start, slot = _perf_ns(), 0
    while run.more():
        due = int((_perf_ns() - start) / interval) + 1
        while slot < due:
            scheduled = start + int(slot * interval)
            if len(attempts) >= MAX_ATTEMPTS:
                if run.measuring:
                    run.counters["unsent"] += 1
                    run.settle()
            elif run.more():
                task = asyncio.ensure_future(run.attempt(scheduled, run.issue()))
                attempts.add(task)
                task.add_done_callback(attempts.discard)
            slot += 1
        await asyncio.sleep(min(0.001, max(0.0, (start + slot * interval - _perf_ns()) / 1e9)))

"""Faults on demand: an echo server that is slow, throttled, chopped, cut off, stalled or lossy,
on purpose, so that clients can be tested against it.

The faulty protocols are subclasses chosen at start-up only when a fault is asked for: a server
without fault options runs the plain classes. Every random choice comes from one seeded
generator, so a run can be replayed (`--seed`); each connection draws its own generator from it
in the order connections arrive.

Stream connections: each chunk read is queued with the time its echo is due (now + delay +
jitter, never before the chunk ahead of it, so order is kept), cut into slices if asked, and
written by one timer per connection, which also meters --bandwidth (a token bucket refilled
continuously, with room for 20 ms of data, so the flow is smooth). The queue counts towards
--max-buffer: past it the connection stops reading, as the plain server does.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from ..transports import pause_for, reset
from .config import FaultConfig
from .protocol import EchoServerProtocol
from .ratelimit import UdpPolicy
from .registry import Admission
from .udp import EchoDatagramProtocol

__all__ = [
    "FaultPlan",
    "FaultyDatagramProtocol",
    "FaultyEchoProtocol",
    "Shaper",
    "datagram_fate",
]

_log = logging.getLogger("aioecho.server")

BURST: Final = 0.02  # seconds of --bandwidth a connection may send at once
MAX_WRITES: Final = 64  # writes of one connection's echo per turn of the loop (--slice 1)
MAX_HELD: Final = 16 * 1024 * 1024  # UDP bytes --delay holds at once; more are dropped


class FaultPlan:
    """The faults of one server, and the generator every random choice comes from."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.seed = config.seed if config.seed is not None else random.randrange(2**32)
        self._random = random.Random(self.seed)
        # how often each fault fired: reset, close, stall (streams), drop, duplicate, corrupt
        self.fired: collections.Counter[str] = collections.Counter()

    def connection(self) -> random.Random | None:
        """A generator for the next connection, or None if the faults pass it by (--fault-share)."""
        rng = random.Random(self._random.getrandbits(64))
        return rng if rng.random() < self.config.share else None

    def datagrams(self) -> random.Random:
        return random.Random(self._random.getrandbits(64))


class Shaper:
    """Writes to a transport as the faults say: each chunk held until it is due (delay, jitter,
    order kept), cut into slices, metered (bandwidth), and the stream cut off after so many
    bytes (reset, close or stall). `pause(reason, flag)` is told when the source should stop
    reading (the queue is over max_buffer, or a stall); `eof_sent()` once our EOF has gone."""

    def __init__(
        self,
        transport: asyncio.Transport,
        faults: FaultConfig,
        rng: random.Random,
        max_buffer: int,
        pause: Callable[[str, bool], None],
        eof_sent: Callable[[], None],
        fired: collections.Counter[str] | None = None,
    ) -> None:
        self.transport = transport
        self._fired = fired if fired is not None else collections.Counter()  # cut-offs made
        self._faults = faults
        self._rng = rng
        self._max_buffer = max_buffer
        self._pause = pause
        self._eof_sent = eof_sent
        self._loop = asyncio.get_running_loop()
        self._queue: deque[tuple[float, memoryview]] = deque()  # (when due, bytes), in order
        self.queued_bytes = 0
        self._last_due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reset: asyncio.TimerHandle | None = None  # reset_on_data's, once data came
        self._accepted = 0  # bytes taken for writing (the cut-offs count these)
        self._written = 0
        self.discarded = 0  # bytes past a cut-off, never written
        self._cut = _cut(faults)  # ("reset" | "close" | "stall", after bytes)
        self._eof = False
        self._eof_at = 0.0  # loop time of the EOF we are to answer
        # room for BURST seconds of --bandwidth, and never less than a byte (else a rate under
        # 50 B/s would never send one)
        self._burst = max(1.0, faults.bandwidth * BURST)
        self._tokens = self._burst
        self._refilled = self._loop.time()

    @property
    def accepted(self) -> int:
        """Bytes taken for writing so far (what a byte count of the faults counts)."""
        return self._accepted

    @property
    def idle(self) -> bool:
        """Nothing queued, no EOF waiting: the shaper can go without losing anything."""
        return not self._queue and not self._eof

    def reconfigure(self, faults: FaultConfig) -> None:
        """Shape with these faults from now on (the proxy's API changed its toxics). A cut-off
        counts from the start of the stream, as at creation. What is queued keeps its due
        time, unless the new faults delay nothing: then it goes as soon as it may."""
        self._faults = faults
        self._cut = _cut(faults)
        if faults.reset_on_data is None and self._reset is not None:
            self._reset.cancel()
            self._reset = None
        self._burst = max(1.0, faults.bandwidth * BURST)
        self._tokens = min(self._tokens, self._burst)
        if not faults.delay and not faults.jitter:
            now = self._loop.time()
            self._queue = deque((min(due, now), chunk) for due, chunk in self._queue)
            self._last_due = min(self._last_due, now)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pause("queue", self.queued_bytes > self._max_buffer)
        self._schedule()

    def write(self, data: bytes) -> None:
        faults = self._faults
        if faults.swallow or faults.reset_on_data is not None:  # read and dropped
            self.discarded += len(data)
            if faults.reset_on_data is not None and self._reset is None:
                self._reset = self._loop.call_later(faults.reset_on_data, self._cut_off, "reset")
            return
        if self._cut is not None:
            room = max(0, self._cut[1] - self._accepted)
            if len(data) > room:  # past the cut-off: never written
                self.discarded += len(data) - room
                data = data[:room]
        if not data:
            return
        self._accepted += len(data)
        if faults.garble and self._rng.random() < faults.garble:
            self._fired["corrupt"] += 1
            at = self._rng.randrange(len(data))
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
        now = self._loop.time()
        due = now + faults.delay
        if faults.jitter:
            due += self._rng.uniform(0.0, faults.jitter)
        self._last_due = due = max(due, self._last_due)
        if due <= now and not self._queue and not faults.slice and not faults.bandwidth:
            # due now, nothing ahead of it, nothing to cut or meter (a latency of 0, a
            # corruption, a byte limit): written at once, as the plain path would, without a
            # timer and a copy per chunk
            self.transport.write(data)
            self._written += len(data)
            if self._cut is not None and self._written >= self._cut[1]:
                self._cut_off(self._cut[0])
            return
        # a view: slices and metered parts are cut from it as they go out, without copying the
        # rest each time (the bytes underneath are never changed, so a view is safe to keep)
        self._queue.append((due, memoryview(data)))
        self.queued_bytes += len(data)
        self._pause("queue", self.queued_bytes > self._max_buffer)
        self._schedule()

    def write_eof(self) -> None:
        """Send EOF once everything queued has gone and --slow-close has passed since now."""
        self._eof = True
        self._eof_at = self._loop.time()
        self._schedule()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reset is not None:
            self._reset.cancel()
            self._reset = None

    def _schedule(self) -> None:
        if self._timer is not None or self.transport.is_closing():
            return
        if self._queue:
            when = max(self._queue[0][0], self._next_tokens_at())
        elif self._eof:
            when = self._eof_at + self._faults.slow_close
        else:
            return
        self._timer = self._loop.call_at(when, self._send_due)

    def _send_due(self) -> None:
        self._timer = None
        now = self._loop.time()
        bandwidth = self._faults.bandwidth
        if bandwidth:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled) * bandwidth)
            self._refilled = now
        faults = self._faults
        writes = 0
        while self._queue and self._queue[0][0] <= now:
            if writes == MAX_WRITES:  # the rest on a later turn: other connections go first
                self._timer = self._loop.call_at(now, self._send_due)
                return
            writes += 1
            due, chunk = self._queue[0]
            size = piece = len(chunk)
            if faults.slice:
                piece = faults.slice
                if faults.slice_variation:
                    piece += self._rng.randint(-faults.slice_variation, faults.slice_variation)
                size = min(size, piece)
            if bandwidth:
                size = min(size, int(self._tokens))
                if size <= 0:
                    break
                self._tokens -= size
            if size < len(chunk):  # the rest waits: for tokens, or a slice's delay
                sliced = size == piece
                self._queue[0] = (now + faults.slice_delay if sliced else due, chunk[size:])
            else:
                self._queue.popleft()
            self.queued_bytes -= size
            self.transport.write(bytes(chunk[:size]))
            self._written += size
            if self._cut is not None and self._written >= self._cut[1]:
                self._cut_off(self._cut[0])
                return
        self._pause("queue", self.queued_bytes > self._max_buffer)
        if not self._queue and self._eof and now >= self._eof_at + faults.slow_close:
            self._eof = False
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self._eof_sent()
            return
        self._schedule()

    def _next_tokens_at(self) -> float:
        """When the bucket will hold a byte again (now, unless --bandwidth has run it dry)."""
        bandwidth = self._faults.bandwidth
        if not bandwidth or self._tokens >= 1:
            return 0.0
        return self._refilled + (1 - self._tokens) / bandwidth

    def _cut_off(self, kind: str) -> None:
        self._fired[kind] += 1
        self._queue.clear()
        self.queued_bytes = 0
        if kind == "reset":
            reset(self.transport)
        elif kind == "close":
            self.transport.close()
        else:  # stall: nothing more is read or written; the connection stays open, silent
            self._pause("stall", True)


def _cut(faults: FaultConfig) -> tuple[str, int] | None:
    """The stream's cut-off: ("reset" | "close" | "stall", after so many bytes), or None."""
    for kind, after in (
        ("reset", faults.reset_after),
        ("close", faults.close_after),
        ("stall", faults.stall_after),
    ):
        if after is not None:
            return kind, after
    return None


class FaultyEchoProtocol(EchoServerProtocol):
    """The echo server protocol, misbehaving as the plan says."""

    def __init__(
        self,
        *,
        plan: FaultPlan,
        max_buffer: int | None = None,
        connections: Admission | None = None,
    ) -> None:
        super().__init__(max_buffer=max_buffer, connections=connections)
        self._plan = plan
        self._shaper: Shaper | None = None  # None: this connection is spared
        self._paused_for: set[str] = set()  # why reading is paused: transport, queue, stall

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._admitted:
            return
        rng = self._plan.connection()
        if rng is not None:
            self._shaper = Shaper(
                self.transport,
                self._plan.config,
                rng,
                self.buffer_limit(),
                self._pause_reading,
                self.transport.close,  # eof_received kept the transport open: ours to close
                self._plan.fired,
            )

    def data_received(self, data: bytes) -> None:
        if self._shaper is None:
            super().data_received(data)
            return
        self.bytes_in += len(data)
        discarded = self._shaper.discarded
        self._shaper.write(data)
        self.unsent_at_close += self._shaper.discarded - discarded  # not counted as sent

    def eof_received(self) -> bool:
        if self._shaper is None:
            return super().eof_received()
        self._shaper.write_eof()
        # half-open until the queued echo and our EOF have gone (TLS closes after EOF anyway)
        return self.transport.can_write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._shaper is not None:
            self._shaper.cancel()
        super().connection_lost(exc)

    def abort(self, reason: str) -> None:
        if self._shaper is not None:
            self._shaper.cancel()
            self.unsent_at_close += self._shaper.queued_bytes
        super().abort(reason)

    def queued(self) -> int:
        queued = super().queued()
        return queued + self._shaper.queued_bytes if self._shaper is not None else queued

    def pause_writing(self) -> None:
        self._pause_reading("transport", True)

    def resume_writing(self) -> None:
        self._pause_reading("transport", False)

    def _pause_reading(self, reason: str, paused: bool) -> None:
        """Reading is paused while any reason holds: the transport's buffer, the queue, a stall."""
        pause_for(self.transport, self._paused_for, reason, paused)


def datagram_fate(
    faults: FaultConfig, rng: random.Random, fired: collections.Counter[str], data: bytes
) -> tuple[bytes, int, float] | None:
    """What the faults do to one datagram: None if it is dropped, else (its bytes, corrupted
    or not; how many copies go; after how many seconds). The draws come in one order, so a
    seed replays the same fates (the echo's UDP and the proxy's UDP alike)."""
    if faults.drop and rng.random() < faults.drop:
        fired["drop"] += 1
        return None
    if faults.corrupt and data and rng.random() < faults.corrupt:
        fired["corrupt"] += 1
        at = rng.randrange(len(data))
        data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    copies = 1
    if faults.duplicate and rng.random() < faults.duplicate:
        fired["duplicate"] += 1
        copies = 2
    delay = faults.delay + (rng.uniform(0.0, faults.jitter) if faults.jitter else 0.0)
    return data, copies, delay


class FaultyDatagramProtocol(EchoDatagramProtocol):
    """The UDP echo, dropping, duplicating, corrupting and delaying datagrams as asked.

    The reply policy (--udp-rate, reflection ports) applies before a datagram is held, and what
    --delay holds is bounded (MAX_HELD bytes); past it a datagram is dropped and counted."""

    def __init__(self, policy: UdpPolicy, *, plan: FaultPlan, max_held: int = MAX_HELD) -> None:
        super().__init__(policy)
        self._plan = plan
        self._faults = plan.config
        self._rng = plan.datagrams()
        self._max_held = max_held
        self.held = 0  # bytes waiting for their --delay

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.admit(data, addr):
            return
        fate = datagram_fate(self._faults, self._rng, self._plan.fired, data)
        if fate is None:
            return
        data, copies, delay = fate
        if not delay:
            for _ in range(copies):
                self.send(data, addr)
            return
        size = len(data) * copies
        if self.held + size > self._max_held:
            self._drops.add()
            return
        self.held += size
        due = time.perf_counter() + delay
        self._loop.call_later(delay, self._release, data, addr, copies, due)

    def _release(self, data: bytes, addr: Any, copies: int, due: float) -> None:
        # uvloop's timers count in whole milliseconds from the loop's cached clock, and can
        # fire before the delay has passed: an echo never goes out early (ping saw 49.4 ms
        # for --delay 50ms)
        early = due - time.perf_counter()
        if early > 0:
            self._loop.call_later(early, self._release, data, addr, copies, due)
            return
        self.held -= len(data) * copies
        if self.transport.is_closing():
            return
        for _ in range(copies):
            self.send(data, addr)

"""What every prober of `aioecho ping` shares: a probe's bytes, the timetable, the IP marking,
and the wait that a stop cuts short."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from .config import PING_HEADER as HEADER
from .stats import ProbeResult

__all__ = ["REMEMBERED", "Emit", "mark", "payload", "perf_ns", "timetable", "until"]

perf_ns = time.perf_counter_ns
_BODY: Final = bytes(range(256)) * 256  # the rest of a payload, up to 64 KiB at a time
REMEMBERED: Final = 65536  # UDP probes remembered, to classify late and duplicate answers

Emit = Callable[[ProbeResult], None]


def payload(seq: int, size: int, sent_ns: int) -> bytes:
    """Probe seq's bytes: its number, its send time, then a fixed pattern up to size."""
    head = seq.to_bytes(8, "big") + (sent_ns & (2**64 - 1)).to_bytes(8, "big")
    body = _BODY * (1 + (size - HEADER) // len(_BODY))
    return head + body[: size - HEADER]


def mark(sock: Any, tos: int) -> None:
    """Set the TOS byte (IPv6: the traffic class) of what sock sends; 0 leaves the system's."""
    if not tos or sock is None:
        return
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
    elif sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)


async def timetable(count: int, interval: float, stop: asyncio.Event) -> AsyncIterator[int]:
    """Sequence numbers from 1, each at its time: start + (seq - 1) x interval; none once stop
    is set."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    seq = 1
    while (not count or seq <= count) and not stop.is_set():
        delay = start + (seq - 1) * interval - loop.time()
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
        yield seq
        seq += 1


async def until(stop: asyncio.Event, waiting: Awaitable[Any]) -> None:
    """Wait for waiting, or until stop is set (waiting is then cancelled)."""
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopped):
            pending.cancel()
        if task.done() and not task.cancelled():
            task.exception()  # a wait_for's timeout: retrieved, so never logged

"""`aioecho check`'s UDP cases: every datagram starts with a tag (a send number), so that a
reply is matched to the datagram it answers; duplicates and late replies to earlier sends
are set aside, and every queue is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import AsyncIterator
from typing import Any, Final

from ..errors import ResolveError, describe_os_error
from ..units import plural
from .peers import BURST, UDP_SIZES, UDP_WAIT, CaseFailed, Pattern, Target, non_strict, ok
from .report import CaseResult
from .streams import Probe, idle_probe

# UDP cases: every datagram starts with a tag (a send number), so that a reply is matched to
# the datagram it answers; duplicates and late replies to earlier sends are set aside.

MAX_QUEUED: Final = 256  # datagrams received and not yet read; more are dropped (a flood)
TAG_SIZE: Final = 8  # the send number (4 bytes, little-endian: a 1-byte datagram keeps its
# low byte) and b"AIOE"
SPACING: Final = 0.02  # seconds between tries of the same datagram
LOSS_SAMPLE: Final = 20  # datagrams sent to gauge the path's loss before the sizes
MAX_TRIES: Final = 40
FALSE_LIMIT: Final = 1e-6  # chance, at the loss measured, that a size is lost on every try
LATE_WINDOW: Final = 0.5  # seconds udp-burst waits for duplicates, at most, however many come


class _Datagrams(asyncio.DatagramProtocol):
    """A connected UDP socket's arrivals, in order, at most MAX_QUEUED waiting."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(MAX_QUEUED)
        self.overflow = 0  # datagrams dropped because MAX_QUEUED were waiting

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._put(data)

    def error_received(self, exc: Exception) -> None:
        self._put(exc)

    def _put(self, item: bytes | Exception) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflow += 1


class Flow:
    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Datagrams) -> None:
        self.transport, self.protocol = transport, protocol
        self.sends = 0
        self.stray = 0  # replies that answer no datagram being waited for

    async def next(self, wait: float) -> bytes | None:
        """The next datagram within wait seconds, or None; an ICMP error is CaseFailed."""
        try:
            item = await asyncio.wait_for(self.protocol.queue.get(), wait)
        except asyncio.TimeoutError:
            return None
        if isinstance(item, Exception):
            raise CaseFailed(f"the server's host answered: {describe_os_error(item)}")
        return item

    def send(self, body: bytes) -> bytes:
        """Send body with a new tag in front (cut to the size of body); returns what was sent."""
        self.sends += 1
        tag = (self.sends % 2**32).to_bytes(4, "little") + b"AIOE"
        data = tag[: len(body)] + body[len(tag) :]
        self.transport.sendto(data)
        return data

    async def reply(self, sent: dict[bytes, bytes], deadline: float) -> tuple[bytes, bytes] | None:
        """The first reply before deadline (loop time) whose tag is one of sent's keys (a tag:
        what was sent with it), as (what was sent, the reply); other replies are stray."""
        loop = asyncio.get_running_loop()
        length = len(next(iter(sent)))
        while (left := deadline - loop.time()) > 0:
            reply = await self.next(left)
            if reply is None:
                return None
            data = sent.get(reply[:length])
            if data is not None:
                return data, reply
            self.stray += 1
        return None

    async def exchange(self, body: bytes, tries: int, wait: float) -> tuple[bytes, bytes] | None:
        """Send body (tagged anew each time) every SPACING seconds until a reply to any of the
        sends comes, tries sends at most, then wait seconds more: (what was sent, reply)."""
        loop = asyncio.get_running_loop()
        sent: dict[bytes, bytes] = {}
        for attempt in range(tries):
            data = self.send(body)
            sent[data[: min(TAG_SIZE, len(data))]] = data
            last = attempt == tries - 1
            answer = await self.reply(sent, loop.time() + (wait if last else SPACING))
            if answer is not None:
                return answer
        return None


@contextlib.asynccontextmanager
async def open_flow(target: Target) -> AsyncIterator[Flow]:
    loop = asyncio.get_running_loop()
    host, port = target.udp_address()
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            _Datagrams, remote_addr=(host, port), family=target.family
        )
    except socket.gaierror as err:
        raise CaseFailed(str(ResolveError(host, err))) from None
    except OSError as err:
        raise CaseFailed(f"cannot open a UDP socket to {host}: {describe_os_error(err)}") from None
    target.saw(transport.get_extra_info("sockname"), transport.get_extra_info("peername"))
    try:
        yield Flow(transport, protocol)
    finally:
        transport.close()


def udp_wait(target: Target) -> float:
    return min(UDP_WAIT, target.timeout)


async def _loss(flow: Flow, target: Target, count: int) -> tuple[int, int]:
    """Send count small datagrams SPACING apart; (how many came back, how many changed)."""
    loop = asyncio.get_running_loop()
    body = Pattern(7).slice(0, 64)
    sent: dict[bytes, bytes] = {}
    for _ in range(count):
        data = flow.send(body)
        sent[data[:TAG_SIZE]] = data
        await asyncio.sleep(SPACING)
    back: set[bytes] = set()
    changed = 0
    deadline = loop.time() + udp_wait(target)
    while len(back) + changed < count and (answer := await flow.reply(sent, deadline)):
        data, reply = answer
        if reply != data:
            changed += 1
        back.add(data[:TAG_SIZE])
    return len(back), changed


def _tries(back: int, sent: int) -> int:
    """Tries of one datagram before calling it lost: enough that, at the loss measured (its
    upper bound: two standard errors, or 3/sent when none was lost), losing every try by
    chance is under FALSE_LIMIT."""
    lost = (sent - back) / sent
    upper = lost + 2 * math.sqrt(lost * (1 - lost) / sent) if lost else 3 / sent
    upper = min(upper + 0.02, 0.95)
    return max(3, min(MAX_TRIES, math.ceil(math.log(FALSE_LIMIT) / math.log(upper))))


async def _udp_basic(target: Target) -> CaseResult:
    count = 10
    async with open_flow(target) as flow:
        back, changed = await _loss(flow, target, count)
    figures = {"sent": count, "back": back, "changed": changed, "stray": flow.stray}
    if changed:
        raise CaseFailed(f"{changed} of {count} datagrams came back changed", figures=figures)
    if not back:
        stray = f" ({plural(flow.stray, 'datagram')} came that answer none)" if flow.stray else ""
        raise CaseFailed(f"no reply to {count} datagrams of 64 bytes{stray}", figures=figures)
    if back < count:
        lost = count - back
        return non_strict(
            f"{back} of {count} datagrams came back ({100 * lost / count:.0f}% lost), each whole",
            **figures,
        )
    return ok(f"{count} datagrams of 64 bytes came back whole to their sender", **figures)


async def _udp_sizes(target: Target) -> CaseResult:
    pattern = Pattern(8)
    # size -> 'whole', 'lost' (no reply to any try), or the length of a reply matched to it
    outcomes: dict[int, str | int] = {}
    async with open_flow(target) as flow:
        back, _ = await _loss(flow, target, LOSS_SAMPLE)
        if not back:
            raise CaseFailed(f"no reply to {LOSS_SAMPLE} datagrams of 64 bytes")
        tries = _tries(back, LOSS_SAMPLE)

        async def send(size: int) -> bool:
            answer = await flow.exchange(pattern.slice(0, size), tries, udp_wait(target))
            if answer is None:
                outcomes[size] = "lost"
                return False
            data, reply = answer
            if len(reply) == size and reply != data:
                raise CaseFailed(f"a {size}-byte datagram came back changed")
            outcomes[size] = "whole" if reply == data else len(reply)
            return reply == data

        passed = [size for size in UDP_SIZES if await send(size)]
        largest = max(passed, default=0)
        if largest and largest != UDP_SIZES[-1]:
            # bisect between the largest that came back and the next size that did not
            low, high = largest, min(s for s in UDP_SIZES if s > largest)
            while high - low > 1:
                middle = (low + high) // 2
                if await send(middle):
                    low = middle
                else:
                    high = middle
            largest = low
    loss = 1 - back / LOSS_SAMPLE
    figures = {
        "largest": largest,
        "sizes": {str(k): v for k, v in sorted(outcomes.items())},
        "tries": tries,
        "loss": round(loss, 3),
        "stray": flow.stray,
    }
    cut = {s: n for s, n in outcomes.items() if isinstance(n, int)}
    if cut:
        size = max(cut)
        raise CaseFailed(
            f"datagrams over {largest} bytes come back cut short (a {size}-byte one as "
            f"{cut[size]} bytes)",
            figures=figures,
        )
    if not largest:
        raise CaseFailed(
            f"no datagram came back in {tries} tries of each size, while small ones did",
            figures=figures,
        )
    noise = f"; {loss:.0%} of small datagrams lost" if loss else ""
    if largest < UDP_SIZES[-1]:
        return non_strict(
            f"the largest datagram that came back: {largest} bytes (larger ones lost in "
            f"{tries} tries each{noise})",
            **figures,
        )
    return ok(f"datagrams of {UDP_SIZES[0]} to {largest} bytes came back whole{noise}", **figures)


async def _udp_burst(target: Target) -> CaseResult:
    # a second's pause first: a per-source rate limiter (aioecho's --udp-rate) starts full
    await asyncio.sleep(1.0)
    loop = asyncio.get_running_loop()
    pattern = Pattern(9)
    body = pattern.slice(0, 60)
    seen: dict[int, int] = {}
    reordered = 0
    changed: list[int] = []  # the lengths of replies that match no datagram sent
    async with open_flow(target) as flow:
        for seq in range(BURST):
            flow.transport.sendto(seq.to_bytes(4, "big") + body)
        highest = -1
        while len(seen) < BURST:
            reply = await flow.next(udp_wait(target))
            if reply is None:
                break
            seq = int.from_bytes(reply[:4], "big")
            if len(reply) != 64 or reply[4:] != body or seq >= BURST:
                changed.append(len(reply))
                if len(changed) > BURST:
                    break  # a flood: enough said
                continue
            seen[seq] = seen.get(seq, 0) + 1
            reordered += seq < highest
            highest = max(highest, seq)
        # late duplicates, for LATE_WINDOW at most (a flooding peer never falls silent)
        deadline = loop.time() + LATE_WINDOW
        while (left := deadline - loop.time()) > 0 and (reply := await flow.next(min(left, 0.05))):
            seq = int.from_bytes(reply[:4], "big")
            if seq in seen:
                seen[seq] += 1
    lost = BURST - len(seen)
    duplicates = sum(n - 1 for n in seen.values())
    figures = {"sent": BURST, "lost": lost, "duplicates": duplicates, "reordered": reordered}
    if changed:
        sizes = ", ".join(map(str, sorted(set(changed))[:5]))
        raise CaseFailed(
            f"{len(changed)} replies match no datagram sent (64 bytes each; these had {sizes}: "
            "merged or split, as a stream would)",
            figures=figures,
        )
    if lost == BURST:
        raise CaseFailed(f"none of {BURST} datagrams sent at once came back", figures=figures)
    summary = (
        f"{BURST} datagrams at once: {lost} lost, {duplicates} duplicated, {reordered} reordered"
    )
    # a tail drop (the first N back, none after) is what a rate limit or a full queue does;
    # loss spread over the burst is not
    tail = lost and sorted(seen) == list(range(len(seen)))
    if tail:
        summary += f" (the first {len(seen)} came back, none after: a rate limit or a queue?)"
    if lost or duplicates or reordered:
        return non_strict(summary, **figures)
    return ok(f"{BURST} datagrams at once, each back once, in order", **figures)


async def _udp_probe(target: Target, idle: float) -> Probe:
    body = b"idle? " + bytes(10)
    tries, wait = target.udp_tries, udp_wait(target)
    async with open_flow(target) as flow:
        if await flow.exchange(body, tries, wait) is None:
            return Probe(idle, "no-echo", idle)  # the flow never started: inconclusive
        await asyncio.sleep(idle)
        if await flow.exchange(body, tries, wait) is not None:
            return Probe(idle, "alive", idle)
    # the control: does a fresh flow echo now? If not, the path is down, not this flow
    async with open_flow(target) as fresh:
        if await fresh.exchange(body, tries, wait) is None:
            return Probe(idle, "no-echo", idle)
    return Probe(idle, "silent", idle)


async def _udp_idle_probe(target: Target) -> CaseResult:
    async with open_flow(target) as flow:
        back, _ = await _loss(flow, target, LOSS_SAMPLE)
    if not back:
        raise CaseFailed(f"no reply to {LOSS_SAMPLE} datagrams of 64 bytes on a fresh flow")
    target.udp_tries = _tries(back, LOSS_SAMPLE)
    return await idle_probe(target, _udp_probe)

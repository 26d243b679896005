"""`aioecho check`'s TCP, TLS and Unix-socket cases, and the idle-probe bisection that the
UDP flows share: each case reads as the script of what a peer does."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from ..client.protocol import SEED_MESSAGES
from ..errors import describe_os_error
from ..units import format_size, plural
from .peers import (
    CHUNK,
    CONNECTION_SIZE,
    CONNECTIONS,
    FLOOD_TIME,
    HALF_CLOSE_SIZE,
    HOL_FACTOR,
    HOL_FLOOR,
    PROBE_CONNECTIONS,
    PROBE_PRECISION,
    PROBE_ROUNDS,
    ROUND_TRIPS,
    SLOW_READER_FLOOD,
    STALL,
    CaseFailed,
    Pattern,
    Peer,
    Target,
    format_size_text,
    non_strict,
    ok,
    skipped,
)
from .report import CaseResult, describe_ends, rate

# TCP, TLS and Unix-socket cases


async def _basic(target: Target) -> CaseResult:
    message = b"".join(SEED_MESSAGES)
    async with target.peer() as peer:
        for number, part in enumerate(SEED_MESSAGES, 1):  # each echo awaited: parts arrive apart
            try:
                peer.write(part)
                await peer.expect(part)
            except CaseFailed as failure:
                raise CaseFailed(
                    f"{failure.detail} (part {number} of {len(SEED_MESSAGES)})",
                    kind=failure.kind,
                ) from None
    return ok(f"{len(message)} bytes sent in {len(SEED_MESSAGES)} parts came back in order")


BINARY: Final = (
    bytes(range(256))
    + bytes(range(255, -1, -1))
    + b"\r\n" * 256
    + b"\r" * 64
    + b"\n" * 64
    + b"\0" * 1024
    + b"\n\r" * 64
    + b"\xff" * 256
)


async def _binary(target: Target) -> CaseResult:
    async with target.peer() as peer:
        peer.write(BINARY)
        await peer.expect(BINARY)
    return ok(f"{len(BINARY)} bytes: all 256 values, CR/LF runs, NULs, back unchanged")


async def _fragmented(target: Target) -> CaseResult:
    size = 4096
    data = Pattern(1).slice(0, size)
    async with target.peer() as peer:
        for i in range(size):
            peer.write(data[i : i + 1])
            if i % 256 == 255:
                await asyncio.sleep(0)  # let each byte leave on its own, not coalesced
        await peer.expect(data)
        peer.reads = 0
        peer.write(data)
        await peer.expect(data)
    return ok(
        f"{size} one-byte writes back complete; one {size}-byte write back in "
        f"{plural(peer.reads, 'read')}",
        reads=peer.reads,
    )


async def _large(target: Target) -> CaseResult:
    size = target.config.large
    pattern, check = Pattern(2), Pattern(2)
    sent, got = hashlib.sha256(), hashlib.sha256()
    started = time.perf_counter()
    async with target.peer() as peer:

        async def write() -> None:
            for offset in range(0, size, CHUNK):
                chunk = pattern.slice(offset, min(CHUNK, size - offset))
                sent.update(chunk)
                peer.write(chunk)
                await peer.drain()

        writing = asyncio.ensure_future(write())
        try:
            await peer.expect_stream(size, check.slice, got)
            await writing
        finally:
            writing.cancel()
    seconds = time.perf_counter() - started
    if got.digest() != sent.digest():  # cannot happen unless the comparison above is wrong
        raise CaseFailed("the SHA-256 of the echo differs from what was sent")
    return ok(
        f"{format_size_text(size)} in {seconds:.2f}s ({rate(size, seconds)}), SHA-256 matches",
        bytes=size,
        mib_per_s=round(size / 1024**2 / seconds, 1),
        sha256=got.hexdigest(),
    )


async def _half_close(target: Target) -> CaseResult:
    data = Pattern(3).slice(0, HALF_CLOSE_SIZE)
    async with target.peer() as peer:
        if not peer.writer.can_write_eof():
            return skipped("asyncio's TLS cannot send EOF alone (close_notify ends both ways)")
        peer.write(data)
        with contextlib.suppress(OSError):  # reset already: the read below says so
            peer.writer.write_eof()
        try:
            await peer.expect(data)
        except CaseFailed as failure:
            raise CaseFailed(f"after our EOF: {failure.detail}") from None
        how = await peer.ending(target.timeout)
    size = format_size_text(len(data))
    if how == "eof":
        return ok(f"{size} echoed after our EOF, then the server's EOF", end=how)
    if how == "reset":
        return non_strict(f"{size} echoed after our EOF, then a reset instead of EOF", end=how)
    if how == "data":
        raise CaseFailed("the server sent more than it was sent after our EOF")
    return non_strict(
        f"{size} echoed after our EOF, but no EOF from the server within {target.timeout:g}s",
        end=how,
    )


async def _flood(peer: Peer, cap: int) -> tuple[int, str]:
    """Write without reading until the path stops taking data ('stalled'), takes more than cap
    bytes ('capped'), or FLOOD_TIME passes ('slow'). Returns the bytes taken and which."""
    transport = peer.transport
    transport.set_write_buffer_limits(high=4 * CHUNK)
    pattern = Pattern(4)
    loop = asyncio.get_running_loop()
    taken, last_change = 0, loop.time()
    give_up = last_change + FLOOD_TIME
    while True:
        queued = transport.get_write_buffer_size()
        now_taken = peer.sent - queued
        if now_taken != taken:
            taken, last_change = now_taken, loop.time()
        if taken > cap:
            return taken, "capped"
        if loop.time() - last_change >= STALL:
            return taken, "stalled"
        if loop.time() >= give_up:
            return taken, "slow"
        if transport.is_closing():
            await asyncio.sleep(0)  # connection_lost, on its way, tells a reset from a close
            how = "reset" if isinstance(peer.reader.exception(), OSError) else "closed"
            raise CaseFailed(
                f"the connection was {how} after the server took {format_size_text(taken)}",
                kind=how,
            )
        if queued < 4 * CHUNK:
            peer.write(pattern.slice(peer.sent, CHUNK))
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.02)


async def _read_back(peer: Peer, what: str) -> None:
    """The echo of everything _flood wrote, checked."""
    try:
        await peer.expect_stream(peer.sent, Pattern(4).slice)
    except CaseFailed as failure:
        raise CaseFailed(f"{what}: {failure.detail}") from None


async def _backpressure(target: Target) -> CaseResult:
    cap = target.config.backpressure_cap
    async with target.peer() as peer:
        taken, how = await _flood(peer, cap)
        if how == "capped":
            raise CaseFailed(
                f"the server took more than {format_size(cap)} unread and went on taking "
                "(buffering without bound?)",
                figures={"taken": taken},
            )
        await _read_back(peer, "reading the echo after the stall")
    if how == "slow":
        return non_strict(
            f"the path took {format_size_text(taken)} unread in {FLOOD_TIME:g}s and was still "
            "taking: no stall seen",
            taken=taken,
        )
    return ok(
        f"the path took {format_size_text(taken)} unread, then stopped; all of it echoed after",
        taken=taken,
    )


async def _concurrency(target: Target) -> CaseResult:
    async def one(index: int) -> None:
        data = Pattern(100 + index).slice(0, CONNECTION_SIZE)
        async with target.peer() as peer:
            peer.write(data)
            await peer.expect(data)

    outcomes = await asyncio.gather(*(one(i) for i in range(CONNECTIONS)), return_exceptions=True)
    failures = []
    for outcome in outcomes:
        if isinstance(outcome, CaseFailed):
            failures.append(outcome.kind)
        elif isinstance(outcome, OSError):
            failures.append(describe_os_error(outcome))
        elif isinstance(outcome, BaseException):
            raise outcome
    if failures:
        raise CaseFailed(
            f"{len(failures)} of {CONNECTIONS} connections failed: {describe_ends(failures)}"
            + (" (a small listen backlog?)" if len(failures) < CONNECTIONS else ""),
            figures={"failed": len(failures)},
        )
    return ok(
        f"{CONNECTIONS} connections at once, {format_size_text(CONNECTION_SIZE)} each, "
        "each back exactly"
    )


async def _reset(target: Target) -> CaseResult:
    async with target.peer() as peer:
        data = Pattern(5).slice(0, 16 * CHUNK)
        peer.write(data)
        first = await peer.read()  # the echo has begun: the reset comes mid-stream
        if not first:
            raise CaseFailed("the server closed the connection without echoing")
        peer.reset()
    try:
        async with target.peer() as peer:
            message = b"still there?"
            peer.write(message)
            await peer.expect(message)
    except CaseFailed as failure:
        raise CaseFailed(f"after a reset, a new connection: {failure.detail}") from None
    return ok("reset after the echo began; a new connection echoes")


async def _round_trips(peer: Peer, count: int) -> list[float]:
    times = []
    message = Pattern(6).slice(0, 1024)
    for _ in range(count):
        started = time.perf_counter()
        peer.write(message)
        await peer.expect(message)
        times.append(time.perf_counter() - started)
    return times


async def _slow_reader(target: Target) -> CaseResult:
    cap = min(target.config.backpressure_cap, SLOW_READER_FLOOD)
    async with target.peer() as other:
        before = statistics.median(await _round_trips(other, ROUND_TRIPS))
        async with target.peer() as slow:
            taken, _ = await _flood(slow, cap)
            try:
                during_times = await _round_trips(other, ROUND_TRIPS)
            except CaseFailed as failure:
                raise CaseFailed(
                    f"while one peer did not read ({format_size_text(taken)} unread), "
                    f"another peer's echo: {failure.detail} (head-of-line blocking)"
                ) from None
            await _read_back(slow, "the slow reader's echo")
    during = statistics.median(during_times)
    figures = {
        "median_before_ms": round(before * 1e3, 3),
        "median_during_ms": round(during * 1e3, 3),
    }
    text = (
        f"another peer's 1 KiB round trips: median {during * 1e3:.2f} ms "
        f"({before * 1e3:.2f} ms before) while one peer had {format_size_text(taken)} unread"
    )
    if during > max(HOL_FACTOR * before, before + HOL_FLOOR):
        return non_strict(f"{text}: held up", **figures)
    return ok(text, **figures)


async def control(target: Target) -> None:
    """Before an idle case: a fresh connection echoes twice with no idle time between, or the
    case fails for that reason (a server that stalls or cuts after N bytes is not an idle
    timeout)."""
    try:
        control = await _tcp_probe(target, 0.0)
    except CaseFailed as failure:
        if failure.kind == "failed" or failure.kind.startswith("connect"):
            raise  # cannot connect (or resolve): said as every case says it
        raise CaseFailed(
            f"with no idle time, on a fresh connection: {failure.detail}: not an idle limit",
            kind=failure.kind,
        ) from None
    if control.end != "alive":
        how = {"reset": "was reset", "fin": "was closed (FIN)", "silent": "fell silent"}
        raise CaseFailed(
            f"a fresh connection {how[control.end]} after its first 5 bytes of echo, with no "
            "idle time: not an idle limit",
            kind=f"control {control.end}",
        )


async def _idle(target: Target) -> CaseResult:
    await control(target)
    idle = target.config.idle
    message = b"idle?"
    async with target.peer() as peer:
        peer.write(message)
        await peer.expect(message)
        last_echo = time.perf_counter()
        how = await peer.ending(idle)
        after = time.perf_counter() - last_echo
        if how != "silent":
            ended = {
                "eof": "closed the connection (FIN)",
                "reset": "reset the connection",
                "data": "sent unasked data",
            }
            figures = {"after_s": round(after, 3)}
            if how == "data":
                raise CaseFailed(f"the server {ended[how]} while it was idle", figures=figures)
            # one phenomenon with idle-probe: an idle limit is NON-STRICT, with its time
            return non_strict(
                f"the path (the server or something between) {ended[how]} after {after:.1f}s "
                f"idle (--idle {idle:g}s)",
                **figures,
            )
        peer.write(message)
        try:
            await peer.expect(message)
        except CaseFailed as failure:
            raise CaseFailed(f"after {idle:g}s idle: {failure.detail}") from None
    return ok(f"echoes after {idle:g}s idle", idle_s=idle)


# idle-probe: TCP and UDP share the bisection; a probe says how one idle period ended


@dataclass
class Probe:
    idle: float  # seconds it was meant to stay silent
    # 'alive', 'reset', 'fin', 'silent' (no echo after the idle period, while a fresh
    # connection or flow echoed), 'no-echo' (nothing echoed at all then: inconclusive)
    end: str
    after: float  # seconds of silence when it ended (idle, when alive or found dead on probing)


async def _tcp_probe(target: Target, idle: float) -> Probe:
    message = b"idle?"
    async with target.peer() as peer:
        peer.write(message)
        await peer.expect(message)
        started = time.perf_counter()
        how = await peer.ending(idle)
        after = time.perf_counter() - started
        if how == "eof":
            return Probe(idle, "fin", after)
        if how == "reset":
            return Probe(idle, "reset", after)
        peer.write(message)
        try:
            data = await asyncio.wait_for(peer.reader.read(len(message)), target.timeout)
        except asyncio.TimeoutError:
            return Probe(idle, "silent", idle)
        except OSError:
            return Probe(idle, "reset", idle)
        return Probe(idle, "alive" if data else "fin", idle)


async def idle_probe(
    target: Target, probe: Callable[[Target, float], Awaitable[Probe]]
) -> CaseResult:
    longest = target.config.idle_probe
    assert longest is not None
    survived, failed = 0.0, longest
    failed_known = False
    probes: list[Probe] = []
    for _ in range(PROBE_ROUNDS):
        # spread the round's connections over (survived, failed]; failed itself only if unknown
        steps = PROBE_CONNECTIONS if not failed_known else PROBE_CONNECTIONS + 1
        periods = [
            survived + (failed - survived) * (i + 1) / steps for i in range(PROBE_CONNECTIONS)
        ]
        results = await asyncio.gather(*(probe(target, p) for p in periods))
        probes += results
        # The bracket from every probe so far: the longest period that survived, and the
        # shortest end above it. An end at or below a survivor is not an idle limit (loss, a
        # flow that never started): left out, so the bracket is always low < high.
        survived = max((p.idle for p in probes if p.end == "alive"), default=0.0)
        ends_above = [p.after for p in probes if p.end not in ("alive", "no-echo")]
        ends_above = [after for after in ends_above if after > survived]
        failed_known = bool(ends_above)
        failed = min(ends_above, default=longest)
        if not failed_known:
            break  # everything up to the longest period survived
        if failed - survived <= PROBE_PRECISION * failed:
            break
        if any(r.end in ("reset", "fin") for r in results):
            break  # the path said when it ended them: no need to bisect
    ends = [p.end for p in probes if p.end not in ("alive", "no-echo") and p.after > survived]
    figures = {
        "survived_s": round(survived, 3),
        "ended_s": round(failed, 3) if failed_known else None,
        "ends": {how: ends.count(how) for how in sorted(set(ends))},
        "probes": len(probes),
        "inconclusive": sum(
            p.end == "no-echo" or (p.end != "alive" and p.after <= survived) for p in probes
        ),
    }
    if not failed_known:
        return ok(f"every idle period up to {longest:g}s survived", **figures)
    observed = [p.after for p in probes if p.end in ("reset", "fin") and p.after > survived]
    if observed:
        limit = statistics.median(observed)
        figures["limit_s"] = round(limit, 3)
        return non_strict(
            f"idle connections end after {limit:.1f}s ({describe_ends(ends)}); "
            f"{survived:.1f}s survived",
            **figures,
        )
    figures["limit_s"] = round((survived + failed) / 2, 3)
    return non_strict(
        f"idle flows die silently between {survived:.1f}s (survived) and {failed:.1f}s "
        f"({describe_ends(ends)})",
        **figures,
    )


async def _tcp_idle_probe(target: Target) -> CaseResult:
    await control(target)
    return await idle_probe(target, _tcp_probe)

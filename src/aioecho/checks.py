"""`aioecho check`'s cases: each opens its own connections (asyncio streams: a case reads as
the script of what a peer does), bounds every wait by the target's timeout, and ends in a
CaseResult. The verdicts and reports are in checkreport.py."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import math
import os
import random
import socket
import ssl
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from .checkreport import CaseResult, Verdict, describe_ends, first_difference, plural, rate
from .client import SEED_MESSAGES
from .config import CheckConfig, ClientConfig, format_size
from .errors import ConnectError, ResolveError, describe_os_error
from .faults import reset
from .tls import client_context, describe_tls_error

__all__ = ["Pattern", "run_case"]

CHUNK: Final = 64 * 1024  # bytes per write of the bulk cases
STALL: Final = 1.0  # seconds without progress after which a writer that is not read has stalled
FLOOD_TIME: Final = 30.0  # seconds a flood may take before it gives up waiting for a stall
HALF_CLOSE_SIZE: Final = 256 * 1024  # bytes written before our EOF
CONNECTIONS: Final = 100  # the concurrency case's
CONNECTION_SIZE: Final = 64 * 1024  # bytes each of them sends
SLOW_READER_FLOOD: Final = 64 * 1024**2  # at most, unread, while the other peer is timed
ROUND_TRIPS: Final = 20  # the slow-reader case's, before and during the flood
HOL_FACTOR: Final = 10.0  # slower than this (and than HOL_FLOOR) counts as held up
HOL_FLOOR: Final = 0.05  # seconds
UDP_WAIT: Final = 1.0  # seconds for a datagram's echo, at most (less with a shorter --timeout)
UDP_SIZES: Final = (1, 512, 1472, 8192, 65507)
BURST: Final = 200  # datagrams at once
PROBE_CONNECTIONS: Final = 8  # parallel connections per idle-probe round
PROBE_ROUNDS: Final = 4
PROBE_PRECISION: Final = 0.1  # bisect until the bracket is within 10%
SLOWEST: Final = 1024**2  # bytes a second a bulk case is given time for, at most (then it is cut)


class CaseFailed(Exception):
    """The case's verdict is FAILED, for the reason given."""

    def __init__(
        self, detail: str, *, kind: str = "failed", figures: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail, self.figures = detail, figures or {}
        self.kind = kind  # a word for tallies: 'reset', 'hang', 'closed', 'changed', ...


class Pattern:
    """An endless byte stream, the same for the same seed: 64 KiB blocks of random bytes, each
    starting with its block number, so that a lost, repeated or reordered block shows."""

    def __init__(self, seed: int) -> None:
        self._base = random.Random(seed).randbytes(CHUNK)
        self._number = -1
        self._block = b""

    def block(self, number: int) -> bytes:
        if number != self._number:
            self._number, self._block = number, number.to_bytes(8, "big") + self._base[8:]
        return self._block

    def slice(self, offset: int, size: int) -> bytes:
        if offset % CHUNK == 0 and size == CHUNK:
            return self.block(offset // CHUNK)
        out = bytearray()
        while size:
            number, start = divmod(offset, CHUNK)
            part = self.block(number)[start : start + size]
            out += part
            offset += len(part)
            size -= len(part)
        return bytes(out)


class _Cut(Exception):
    """The case's time is up (its share of --budget). Raised by the peers' own reads and
    writes: a cancellation from outside can be lost in asyncio.wait_for when the read it
    waits for completes at the same moment, which a trickling path makes likely."""


class _Peer:
    """One stream connection of a case, counting what went each way."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        deadline: float = math.inf,
    ) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.deadline = deadline  # loop time at which the case is cut
        self.sent = 0
        self.received = 0
        self.reads = 0

    @property
    def transport(self) -> asyncio.Transport:
        return cast(asyncio.Transport, self.writer.transport)

    def _in_time(self) -> None:
        if asyncio.get_running_loop().time() >= self.deadline:
            raise _Cut

    def write(self, data: bytes) -> None:
        self._in_time()
        if self.transport.is_closing():
            # uvloop raises on a write to a closed transport. Not a failure yet: the next read
            # says how it ended (reset or EOF) after the exact echo received.
            return
        self.writer.write(data)
        self.sent += len(data)

    async def drain(self) -> None:
        try:
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except asyncio.TimeoutError:
            raise CaseFailed(
                f"the server took nothing for {self.timeout:g}s while we wrote "
                f"(after {format_size_text(self.sent)})",
                kind="hang",
            ) from None
        except OSError as err:
            raise CaseFailed(f"writing failed: {describe_os_error(err)}", kind="reset") from None

    async def read(self, most: int = CHUNK) -> bytes:
        """What the server sent next, b'' at its EOF; a reset or silence is CaseFailed."""
        self._in_time()
        left = self.deadline - asyncio.get_running_loop().time()
        try:
            data = await asyncio.wait_for(self.reader.read(most), min(self.timeout, left))
        except asyncio.TimeoutError:
            if left <= self.timeout:  # the wait ended at the deadline, not at --timeout
                raise _Cut from None
            raise CaseFailed(
                f"no echo for {self.timeout:g}s after {format_size_text(self.received)} of "
                f"{format_size_text(self.sent)} (a hang)",
                kind="hang",
            ) from None
        except OSError as err:
            data = self._salvage(most)
            if data:  # received before the reset: echo all the same, read before the error
                self.received += len(data)
                self.reads += 1
                return data
            # ENOTCONN: our shutdown or write met the peer's reset first (uvloop says so)
            reason = "connection reset by peer" if err.errno == errno.ENOTCONN else None
            raise CaseFailed(
                f"the connection was reset ({reason or describe_os_error(err)}) after "
                f"{format_size_text(self.received)} of {format_size_text(self.sent)} came back",
                kind="reset" if self.received else "reset before any echo",
            ) from None
        self.received += len(data)
        self.reads += 1
        return data

    def _salvage(self, most: int) -> bytes:
        """Bytes the reader holds although the connection was reset since: StreamReader.read
        raises the reset first and would throw them away (CPython's StreamReader._buffer)."""
        buffer = getattr(self.reader, "_buffer", None)
        if not buffer:
            return b""
        data = bytes(buffer[:most])
        del buffer[:most]
        return data

    async def expect(self, expected: bytes) -> None:
        """Read until len(expected) bytes came back, each equal to what was sent."""
        await self.expect_stream(len(expected), lambda offset, size: expected[offset:][:size])

    async def expect_stream(
        self, total: int, expected: Callable[[int, int], bytes], digest: Any = None
    ) -> None:
        """Read total bytes, checking each against expected(offset, size) as it comes."""
        offset = 0
        while offset < total:
            data = await self.read(min(CHUNK, total - offset))
            if not data:
                raise CaseFailed(
                    f"the server closed the connection after echoing {offset} of {total} bytes",
                    kind="closed" if offset else "closed before any echo",
                )
            want = expected(offset, len(data))
            if data != want:
                at = offset + (first_difference(want, data) or 0)
                raise CaseFailed(
                    f"the echo differs from what was sent at byte {at} of {total}", kind="changed"
                )
            if digest is not None:
                digest.update(data)
            offset += len(data)

    async def ending(self, wait: float) -> str:
        """How the server ends its side: 'eof', 'reset', 'data' (it sent more), or 'silent'
        (nothing within wait seconds)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), wait)
        except asyncio.TimeoutError:
            return "silent"
        except OSError:
            return "reset"
        return "data" if data else "eof"

    def reset(self) -> None:
        reset(self.transport)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), self.timeout)


def format_size_text(size: int) -> str:
    """'4096 bytes', '256.0 KiB', '64.0 MiB': sizes in messages."""
    if size < 10 * 1024:
        return plural(size, "byte")
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"


class _SalvagingProtocol(asyncio.StreamReaderProtocol):
    """A plain TCP stream's protocol that, when the connection is reset, first reads what the
    kernel still holds: a reset met while writing ends the transport before it read the echo
    that came before the reset, and a figure "reset after N bytes" must count those too."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        super().__init__(reader)
        self._reader = reader
        self._salvage_from: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._salvage_from = transport
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        reader, transport = self._reader, self._salvage_from
        if isinstance(exc, OSError) and transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:
                with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock.fileno())) as s:
                    s.setblocking(False)
                    for _ in range(64):  # what one socket buffer holds, at most
                        data = s.recv(CHUNK)
                        if not data:
                            break
                        reader.feed_data(data)
        super().connection_lost(exc)


async def _open_salvaging(
    host: str, port: int, family: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=4 * CHUNK, loop=loop)
    transport, protocol = await loop.create_connection(
        lambda: _SalvagingProtocol(reader), host, port, family=family
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class _Target:
    """Opens the connections of the cases, as the target says."""

    def __init__(self, config: CheckConfig) -> None:
        self.config = config
        self.client: ClientConfig = config.target
        self.timeout = config.target.timeout
        t = config.target
        self.context = client_context(t.cafile, t.insecure) if t.tls else None
        self.udp_tries = 8  # tries of a UDP datagram before it counts as lost (udp-idle-probe)
        self.peers: list[_Peer] = []  # every connection opened, for a cut case's figures
        self.deadline = math.inf  # loop time at which the case is cut (run_case)
        # the address connected to (one of the host's, with --all-addresses) and the family
        self.connect_host = config.address or config.target.host
        self.family = FAMILIES[config.family]
        self.addresses: dict[str, str] | None = None  # the first connection's local and remote

    def saw(self, local: Any, remote: Any) -> None:
        """Note the addresses of the case's first connection or flow, for its figures."""
        if self.addresses is None and isinstance(remote, tuple):
            self.addresses = {"local": _address(local), "remote": _address(remote)}

    async def open(self) -> _Peer:
        t = self.client
        opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        if t.unix is not None:
            hostname = t.host if self.context is not None else None
            opening = asyncio.open_unix_connection(
                t.unix, ssl=self.context, server_hostname=hostname, limit=4 * CHUNK
            )
        elif self.context is None:
            opening = _open_salvaging(self.connect_host, t.port, self.family)
        else:
            opening = asyncio.open_connection(
                self.connect_host, t.port, ssl=self.context, limit=4 * CHUNK,
                family=self.family, server_hostname=t.host,
            )  # fmt: skip
        try:
            reader, writer = await asyncio.wait_for(opening, self.timeout)
        except asyncio.TimeoutError:
            raise CaseFailed(
                str(ConnectError(t.where, f"timed out after {self.timeout:g}s")),
                kind="connect timeout",
            ) from None
        except socket.gaierror as err:
            raise CaseFailed(str(ResolveError(t.host, err))) from None
        except ssl.SSLError as err:
            raise CaseFailed(str(ConnectError(t.where, describe_tls_error(err)))) from None
        except OSError as err:
            reason = describe_os_error(err)
            raise CaseFailed(
                str(ConnectError(t.where, reason)), kind=f"connect: {reason}"
            ) from None
        peer = _Peer(reader, writer, self.timeout, self.deadline)
        self.saw(writer.get_extra_info("sockname"), writer.get_extra_info("peername"))
        self.peers.append(peer)
        return peer

    @contextlib.asynccontextmanager
    async def peer(self) -> AsyncIterator[_Peer]:
        peer = await self.open()
        try:
            yield peer
        finally:
            peer.transport.abort()

    def udp_address(self) -> tuple[str, int]:
        return self.connect_host, self.client.port


FAMILIES: Final = {0: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}


def _address(sockaddr: Any) -> str:
    """'127.0.0.1 port 5000', '::1 port 5000' (a socket's name or peer, for the report)."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return f"{sockaddr[0]} port {sockaddr[1]}"
    return str(sockaddr)


Case = Callable[[_Target], Awaitable[CaseResult]]


async def run_case(name: str, config: CheckConfig, budget: float | None = None) -> CaseResult:
    """Run one case to its verdict: whatever goes wrong inside is a FAILED with the reason.
    budget: seconds it may take besides its idle waits; past them it is cut (see _cut)."""
    target = _Target(config)
    case = CASES[name]
    started = time.perf_counter()
    limit = time_limit(name, config)
    if budget is not None:
        limit = min(limit, budget + idle_wait(name, config))
    target.deadline = asyncio.get_running_loop().time() + limit
    try:
        # the peers cut themselves at the deadline; wait_for, a second later, is the backstop
        result = await asyncio.wait_for(case(target), limit + 1.0)
    except (asyncio.TimeoutError, _Cut):
        # every wait inside is bounded; this catches a path that trickles, a byte at a time
        result = _cut(name, target, limit)
    except CaseFailed as failure:
        result = CaseResult(name, Verdict.FAILED, failure.detail, figures=failure.figures)
    except (OSError, EOFError, asyncio.IncompleteReadError) as err:
        result = CaseResult(name, Verdict.FAILED, f"unexpected: {describe_os_error(err)}")
    except Exception as err:
        result = CaseResult(name, Verdict.FAILED, f"unexpected: {type(err).__name__}: {err}")
    result.name = name
    result.seconds = time.perf_counter() - started
    if target.addresses is not None:
        result.figures = {**target.addresses, **result.figures}
    return result


def idle_wait(name: str, config: CheckConfig) -> float:
    """Seconds of a case that are idle by request (--idle, --idle-probe): not from the budget."""
    if name == "idle":
        return config.idle
    if name.endswith("idle-probe"):
        assert config.idle_probe is not None
        return PROBE_ROUNDS * (config.idle_probe + 2 * config.target.timeout)
    return 0.0


def _cut(name: str, target: _Target, limit: float) -> CaseResult:
    """A case stopped at its time limit: slow but right so far is NON-STRICT, with how far it
    got and the rate; nothing echoed at all is FAILED."""
    echoed = sum(peer.received for peer in target.peers)
    sent = sum(peer.sent for peer in target.peers)
    figures = {"cut": True, "limit_s": round(limit, 1), "echoed_bytes": echoed, "sent_bytes": sent}
    if not echoed:
        return CaseResult(
            name, Verdict.FAILED, f"nothing echoed within {limit:.0f}s", figures=figures
        )
    figures["rate_bps"] = round(echoed / limit)
    return CaseResult(
        name,
        Verdict.NON_STRICT,
        f"cut at {limit:.0f}s: {format_size_text(echoed)} echoed of {format_size_text(sent)} "
        f"sent ({format_size_text(round(echoed / limit))}/s), right so far",
        figures=figures,
    )


def time_limit(name: str, config: CheckConfig) -> float:
    """Seconds a case may take in all: generous, since each of its waits has its own bound."""
    limit = 60.0 + 10 * config.target.timeout
    if name == "large":
        limit += config.large / SLOWEST
    elif name in ("backpressure", "slow-reader"):
        limit += FLOOD_TIME + config.backpressure_cap / SLOWEST
    return limit + idle_wait(name, config)


def _ok(detail: str, **figures: Any) -> CaseResult:
    return CaseResult("", Verdict.OK, detail, figures=figures)


def _non_strict(detail: str, **figures: Any) -> CaseResult:
    return CaseResult("", Verdict.NON_STRICT, detail, figures=figures)


def _skipped(detail: str) -> CaseResult:
    return CaseResult("", Verdict.SKIPPED, detail)


# TCP, TLS and Unix-socket cases


async def _basic(target: _Target) -> CaseResult:
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
    return _ok(f"{len(message)} bytes sent in {len(SEED_MESSAGES)} parts came back in order")


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


async def _binary(target: _Target) -> CaseResult:
    async with target.peer() as peer:
        peer.write(BINARY)
        await peer.expect(BINARY)
    return _ok(f"{len(BINARY)} bytes: all 256 values, CR/LF runs, NULs, back unchanged")


async def _fragmented(target: _Target) -> CaseResult:
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
    return _ok(
        f"{size} one-byte writes back complete; one {size}-byte write back in "
        f"{plural(peer.reads, 'read')}",
        reads=peer.reads,
    )


async def _large(target: _Target) -> CaseResult:
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
    return _ok(
        f"{format_size_text(size)} in {seconds:.2f}s ({rate(size, seconds)}), SHA-256 matches",
        bytes=size,
        mib_per_s=round(size / 1024**2 / seconds, 1),
        sha256=got.hexdigest(),
    )


async def _half_close(target: _Target) -> CaseResult:
    data = Pattern(3).slice(0, HALF_CLOSE_SIZE)
    async with target.peer() as peer:
        if not peer.writer.can_write_eof():
            return _skipped("asyncio's TLS cannot send EOF alone (close_notify ends both ways)")
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
        return _ok(f"{size} echoed after our EOF, then the server's EOF", end=how)
    if how == "reset":
        return _non_strict(f"{size} echoed after our EOF, then a reset instead of EOF", end=how)
    if how == "data":
        raise CaseFailed("the server sent more than it was sent after our EOF")
    return _non_strict(
        f"{size} echoed after our EOF, but no EOF from the server within {target.timeout:g}s",
        end=how,
    )


async def _flood(peer: _Peer, cap: int) -> tuple[int, str]:
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


async def _read_back(peer: _Peer, what: str) -> None:
    """The echo of everything _flood wrote, checked."""
    try:
        await peer.expect_stream(peer.sent, Pattern(4).slice)
    except CaseFailed as failure:
        raise CaseFailed(f"{what}: {failure.detail}") from None


async def _backpressure(target: _Target) -> CaseResult:
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
        return _non_strict(
            f"the path took {format_size_text(taken)} unread in {FLOOD_TIME:g}s and was still "
            "taking: no stall seen",
            taken=taken,
        )
    return _ok(
        f"the path took {format_size_text(taken)} unread, then stopped; all of it echoed after",
        taken=taken,
    )


async def _concurrency(target: _Target) -> CaseResult:
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
    return _ok(
        f"{CONNECTIONS} connections at once, {format_size_text(CONNECTION_SIZE)} each, "
        "each back exactly"
    )


async def _reset(target: _Target) -> CaseResult:
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
    return _ok("reset after the echo began; a new connection echoes")


async def _round_trips(peer: _Peer, count: int) -> list[float]:
    times = []
    message = Pattern(6).slice(0, 1024)
    for _ in range(count):
        started = time.perf_counter()
        peer.write(message)
        await peer.expect(message)
        times.append(time.perf_counter() - started)
    return times


async def _slow_reader(target: _Target) -> CaseResult:
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
        return _non_strict(f"{text}: held up", **figures)
    return _ok(text, **figures)


async def _control(target: _Target) -> None:
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


async def _idle(target: _Target) -> CaseResult:
    await _control(target)
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
            return _non_strict(
                f"the path (the server or something between) {ended[how]} after {after:.1f}s "
                f"idle (--idle {idle:g}s)",
                **figures,
            )
        peer.write(message)
        try:
            await peer.expect(message)
        except CaseFailed as failure:
            raise CaseFailed(f"after {idle:g}s idle: {failure.detail}") from None
    return _ok(f"echoes after {idle:g}s idle", idle_s=idle)


# idle-probe: TCP and UDP share the bisection; a probe says how one idle period ended


@dataclass
class _Probe:
    idle: float  # seconds it was meant to stay silent
    # 'alive', 'reset', 'fin', 'silent' (no echo after the idle period, while a fresh
    # connection or flow echoed), 'no-echo' (nothing echoed at all then: inconclusive)
    end: str
    after: float  # seconds of silence when it ended (idle, when alive or found dead on probing)


async def _tcp_probe(target: _Target, idle: float) -> _Probe:
    message = b"idle?"
    async with target.peer() as peer:
        peer.write(message)
        await peer.expect(message)
        started = time.perf_counter()
        how = await peer.ending(idle)
        after = time.perf_counter() - started
        if how == "eof":
            return _Probe(idle, "fin", after)
        if how == "reset":
            return _Probe(idle, "reset", after)
        peer.write(message)
        try:
            data = await asyncio.wait_for(peer.reader.read(len(message)), target.timeout)
        except asyncio.TimeoutError:
            return _Probe(idle, "silent", idle)
        except OSError:
            return _Probe(idle, "reset", idle)
        return _Probe(idle, "alive" if data else "fin", idle)


async def _idle_probe(
    target: _Target, probe: Callable[[_Target, float], Awaitable[_Probe]]
) -> CaseResult:
    longest = target.config.idle_probe
    assert longest is not None
    survived, failed = 0.0, longest
    failed_known = False
    probes: list[_Probe] = []
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
        return _ok(f"every idle period up to {longest:g}s survived", **figures)
    observed = [p.after for p in probes if p.end in ("reset", "fin") and p.after > survived]
    if observed:
        limit = statistics.median(observed)
        figures["limit_s"] = round(limit, 3)
        return _non_strict(
            f"idle connections end after {limit:.1f}s ({describe_ends(ends)}); "
            f"{survived:.1f}s survived",
            **figures,
        )
    figures["limit_s"] = round((survived + failed) / 2, 3)
    return _non_strict(
        f"idle flows die silently between {survived:.1f}s (survived) and {failed:.1f}s "
        f"({describe_ends(ends)})",
        **figures,
    )


async def _tcp_idle_probe(target: _Target) -> CaseResult:
    await _control(target)
    return await _idle_probe(target, _tcp_probe)


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


class _Flow:
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
async def _flow(target: _Target) -> AsyncIterator[_Flow]:
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
        yield _Flow(transport, protocol)
    finally:
        transport.close()


def _udp_wait(target: _Target) -> float:
    return min(UDP_WAIT, target.timeout)


async def _loss(flow: _Flow, target: _Target, count: int) -> tuple[int, int]:
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
    deadline = loop.time() + _udp_wait(target)
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


async def _udp_basic(target: _Target) -> CaseResult:
    count = 10
    async with _flow(target) as flow:
        back, changed = await _loss(flow, target, count)
    figures = {"sent": count, "back": back, "changed": changed, "stray": flow.stray}
    if changed:
        raise CaseFailed(f"{changed} of {count} datagrams came back changed", figures=figures)
    if not back:
        stray = f" ({plural(flow.stray, 'datagram')} came that answer none)" if flow.stray else ""
        raise CaseFailed(f"no reply to {count} datagrams of 64 bytes{stray}", figures=figures)
    if back < count:
        lost = count - back
        return _non_strict(
            f"{back} of {count} datagrams came back ({100 * lost / count:.0f}% lost), each whole",
            **figures,
        )
    return _ok(f"{count} datagrams of 64 bytes came back whole to their sender", **figures)


async def _udp_sizes(target: _Target) -> CaseResult:
    pattern = Pattern(8)
    # size -> 'whole', 'lost' (no reply to any try), or the length of a reply matched to it
    outcomes: dict[int, str | int] = {}
    async with _flow(target) as flow:
        back, _ = await _loss(flow, target, LOSS_SAMPLE)
        if not back:
            raise CaseFailed(f"no reply to {LOSS_SAMPLE} datagrams of 64 bytes")
        tries = _tries(back, LOSS_SAMPLE)

        async def send(size: int) -> bool:
            answer = await flow.exchange(pattern.slice(0, size), tries, _udp_wait(target))
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
        return _non_strict(
            f"the largest datagram that came back: {largest} bytes (larger ones lost in "
            f"{tries} tries each{noise})",
            **figures,
        )
    return _ok(f"datagrams of {UDP_SIZES[0]} to {largest} bytes came back whole{noise}", **figures)


async def _udp_burst(target: _Target) -> CaseResult:
    # a second's pause first: a per-source rate limiter (aioecho's --udp-rate) starts full
    await asyncio.sleep(1.0)
    loop = asyncio.get_running_loop()
    pattern = Pattern(9)
    body = pattern.slice(0, 60)
    seen: dict[int, int] = {}
    reordered = 0
    changed: list[int] = []  # the lengths of replies that match no datagram sent
    async with _flow(target) as flow:
        for seq in range(BURST):
            flow.transport.sendto(seq.to_bytes(4, "big") + body)
        highest = -1
        while len(seen) < BURST:
            reply = await flow.next(_udp_wait(target))
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
        return _non_strict(summary, **figures)
    return _ok(f"{BURST} datagrams at once, each back once, in order", **figures)


async def _udp_probe(target: _Target, idle: float) -> _Probe:
    body = b"idle? " + bytes(10)
    tries, wait = target.udp_tries, _udp_wait(target)
    async with _flow(target) as flow:
        if await flow.exchange(body, tries, wait) is None:
            return _Probe(idle, "no-echo", idle)  # the flow never started: inconclusive
        await asyncio.sleep(idle)
        if await flow.exchange(body, tries, wait) is not None:
            return _Probe(idle, "alive", idle)
    # the control: does a fresh flow echo now? If not, the path is down, not this flow
    async with _flow(target) as fresh:
        if await fresh.exchange(body, tries, wait) is None:
            return _Probe(idle, "no-echo", idle)
    return _Probe(idle, "silent", idle)


async def _udp_idle_probe(target: _Target) -> CaseResult:
    async with _flow(target) as flow:
        back, _ = await _loss(flow, target, LOSS_SAMPLE)
    if not back:
        raise CaseFailed(f"no reply to {LOSS_SAMPLE} datagrams of 64 bytes on a fresh flow")
    target.udp_tries = _tries(back, LOSS_SAMPLE)
    return await _idle_probe(target, _udp_probe)


CASES: Final[dict[str, Case]] = {
    "basic": _basic,
    "binary": _binary,
    "fragmented": _fragmented,
    "large": _large,
    "half-close": _half_close,
    "backpressure": _backpressure,
    "concurrency": _concurrency,
    "reset": _reset,
    "slow-reader": _slow_reader,
    "idle": _idle,
    "idle-probe": _tcp_idle_probe,
    "udp-basic": _udp_basic,
    "udp-sizes": _udp_sizes,
    "udp-burst": _udp_burst,
    "udp-idle-probe": _udp_idle_probe,
}

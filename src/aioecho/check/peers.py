"""What every `aioecho check` case is built from: the target (with its deadline and the
peers it opened), a peer (an asyncio stream with its counts, salvaging what a reset cut
off), the patterns sent, the way a case fails or is cut, and its verdict helpers."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import random
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, cast

from ..client.config import ClientConfig
from ..errors import ConnectError, ResolveError, describe_os_error
from ..tls import client_context, describe_tls_error
from ..transports import reset
from ..units import plural
from .config import CheckConfig
from .report import CaseResult, Verdict, first_difference

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


class Cut(Exception):
    """The case's time is up (its share of --budget). Raised by the peers' own reads and
    writes: a cancellation from outside can be lost in asyncio.wait_for when the read it
    waits for completes at the same moment, which a trickling path makes likely."""


class Peer:
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
            raise Cut

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
                raise Cut from None
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


async def open_salvaging(
    host: str, port: int, family: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=4 * CHUNK, loop=loop)
    transport, protocol = await loop.create_connection(
        lambda: _SalvagingProtocol(reader), host, port, family=family
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class Target:
    """Opens the connections of the cases, as the target says."""

    def __init__(self, config: CheckConfig) -> None:
        self.config = config
        self.client: ClientConfig = config.target
        self.timeout = config.target.timeout
        t = config.target
        self.context = client_context(**t.tls_options()) if t.tls else None
        self.udp_tries = 8  # tries of a UDP datagram before it counts as lost (udp-idle-probe)
        self.peers: list[Peer] = []  # every connection opened, for a cut case's figures
        self.deadline = math.inf  # loop time at which the case is cut (run_case)
        # the address connected to (one of the host's, with --all-addresses) and the family
        self.connect_host = config.address or config.target.host
        self.family = FAMILIES[config.family]
        self.addresses: dict[str, str] | None = None  # the first connection's local and remote

    def saw(self, local: Any, remote: Any) -> None:
        """Note the addresses of the case's first connection or flow, for its figures."""
        if self.addresses is None and isinstance(remote, tuple):
            self.addresses = {"local": _address(local), "remote": _address(remote)}

    async def open(self) -> Peer:
        t = self.client
        opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        if t.unix is not None:
            hostname = t.server_name if self.context is not None else None
            opening = asyncio.open_unix_connection(
                t.unix, ssl=self.context, server_hostname=hostname, limit=4 * CHUNK
            )
        elif self.context is None:
            opening = open_salvaging(self.connect_host, t.port, self.family)
        else:
            opening = asyncio.open_connection(
                self.connect_host, t.port, ssl=self.context, limit=4 * CHUNK,
                family=self.family, server_hostname=t.server_name,
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
        for _ in range(t.banner_lines):  # the server's greeting (--banner-lines): not echo
            try:
                line = await asyncio.wait_for(reader.readline(), self.timeout)
            except (asyncio.TimeoutError, ValueError):
                writer.transport.abort()
                raise CaseFailed(
                    f"no banner line within {self.timeout:g}s (--banner-lines {t.banner_lines})",
                    kind="banner",
                ) from None
            if not line.endswith(b"\n"):
                writer.transport.abort()
                raise CaseFailed("closed during the banner (--banner-lines)", kind="closed")
        peer = Peer(reader, writer, self.timeout, self.deadline)
        self.saw(writer.get_extra_info("sockname"), writer.get_extra_info("peername"))
        self.peers.append(peer)
        return peer

    @contextlib.asynccontextmanager
    async def peer(self) -> AsyncIterator[Peer]:
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


def ok(detail: str, **figures: Any) -> CaseResult:
    return CaseResult("", Verdict.OK, detail, figures=figures)


def non_strict(detail: str, **figures: Any) -> CaseResult:
    return CaseResult("", Verdict.NON_STRICT, detail, figures=figures)


def skipped(detail: str) -> CaseResult:
    return CaseResult("", Verdict.SKIPPED, detail)

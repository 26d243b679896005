"""`aioecho ping`'s probes: application-level round trips over TCP, TLS, Unix sockets and UDP.

Probes go out on a fixed timetable (probe n at start + (n-1) x interval, whatever came back), so
a stalled path shows as growing RTTs, not as fewer probes. Each probe is a payload of `size`
bytes that starts with its sequence number and its send time, checked byte for byte.

- Stream, one connection (the default): probes are written on one connection, several in flight
  if the RTT exceeds the interval; the echo comes back in order. A timeout, a wrong echo or a
  lost connection ends the probes in flight, and the next probe connects again.
- Stream, a connection per probe (new_connection): each probe resolves the name (when a name is
  given), connects, does the TLS handshake, echoes and closes, and reports each phase.
- UDP: one datagram per probe, never resent; answers are matched by sequence number, so lost,
  duplicated, reordered, corrupted and late answers are told apart (datagrams.py).

A stream connection may start with a greeting, read before its first probe: the lines of a
server's --banner (banner_lines), and the answer of a --reflect server to AIOECHO-REFLECT
(reflect), which says what the server saw and which instance it is (ping --reflect, --spread).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Final, cast

from ..addresses import format_address
from ..client.config import ClientConfig
from ..errors import ResolveError, describe_os_error
from ..reflection import MAGIC, ReflectionError, instance_name, read_reflection
from ..tls import client_context, describe_session, describe_tls_error
from .config import PING_HEADER as HEADER
from .datagrams import UdpProber, UdpReflectProber
from .probes import Emit, mark, payload, perf_ns, timetable, until
from .stats import ProbeResult

__all__ = ["FAMILIES", "ping"]

FAMILIES: Final = {0: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}

MAX_GREETING: Final = 64 * 1024  # bytes of one greeting line, at most
UNASKED: Final = "the server sent bytes before any probe (a --banner? --banner-lines N)"
MAX_BANNER_LINES: Final = 100  # a banner's lines before a reflection, at most


@dataclasses.dataclass(frozen=True)
class Greeting:
    """What a connection's server says before the echo: banner lines, and a reflection."""

    banner_lines: int = 0
    reflect: bool = False

    @property
    def lines(self) -> int:
        return self.banner_lines + self.reflect

    def read(self, lines: list[bytes]) -> tuple[str | None, str | None]:
        """(the instance that answered, what it saw) from the greeting's lines."""
        banner = lines[0].decode("utf-8", "replace").strip() if len(lines) > self.reflect else None
        if not self.reflect:
            return banner, None
        try:
            seen = read_reflection(lines[-1])
        except ReflectionError as err:
            raise GreetingError(str(err)) from None
        backend = instance_name(seen)
        client = seen["client"]
        return backend, f"seen as {client} by {backend}"


async def ping(
    target: ClientConfig,
    *,
    count: int = 0,
    interval: float = 1.0,
    size: int = 64,
    new_connection: bool = False,
    stop: asyncio.Event | None = None,
    tos: int = 0,
    reflect: bool = False,
    banner_lines: int = 0,
    family: int = 0,
) -> AsyncIterator[ProbeResult]:
    """Probe target; yield each probe's result as it ends, and each extra answer (duplicates,
    late ones). count=0 probes until the consumer stops iterating, or until stop is set: then
    no probe more is sent, the probes in flight end at once as 'unanswered', and the iteration
    ends. A probe waits target.timeout seconds for its answer; a UDP run that lost some waits
    one timeout more for late answers. Raises ResolveError or ConnectError only when UDP
    cannot start (a stream probe that cannot connect is a result: refused, timeout, error).
    tos: the IP TOS byte (IPv6: traffic class) the probes carry; 0 leaves the system's.
    banner_lines: lines the server sends on connect (--banner), read before the probes;
    reflect: ask each connection what the server saw (server --reflect): each result carries
    the instance that answered (`backend`), and a connection's first one what it saw (`seen`).
    Without reflect, the first banner line names the instance. family: 4 or 6 keeps to that
    address family (0: the resolver's first address)."""
    if size < HEADER:
        raise ValueError(f"size must be at least {HEADER} bytes")
    results: asyncio.Queue[ProbeResult | None] = asyncio.Queue()
    prober: UdpProber | UdpReflectProber | _StreamProber
    if target.udp and reflect:
        read = Greeting(0, True).read
        prober = UdpReflectProber(target, size, results.put_nowait, read, FAMILIES[family])
    elif target.udp:
        prober = UdpProber(target, size, results.put_nowait, tos, FAMILIES[family])
    else:
        greeting = Greeting(banner_lines, reflect)
        prober = _StreamProber(
            target, size, results.put_nowait, new_connection, tos, greeting, FAMILIES[family]
        )
    task = asyncio.ensure_future(prober.run(count, interval, stop or asyncio.Event()))
    task.add_done_callback(lambda _: results.put_nowait(None))
    try:
        while (result := await results.get()) is not None:
            yield result
        task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _failure(err: BaseException, host: str) -> tuple[str, str | None]:
    """A failed connection step as a probe status and, for 'error', the reason."""
    if isinstance(err, ConnectionRefusedError):
        return "refused", None
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return "timeout", None
    if isinstance(err, ConnectionResetError | BrokenPipeError):
        return "reset", None
    if isinstance(err, socket.gaierror):
        return "error", str(ResolveError(host, err))
    if isinstance(err, ssl.SSLError):
        return "error", describe_tls_error(err)
    if isinstance(err, GreetingError):
        return "error", str(err)
    return "error", describe_os_error(err)


class _EchoProbes(asyncio.Protocol):
    """Probes on one stream connection: matches the echo, in order, to the probes in flight."""

    def __init__(
        self,
        size: int,
        timeout: float,
        emit: Emit,
        peer: str,
        *,
        events: bool = False,
        greeting: int = 0,
        reflect: bool = False,
    ) -> None:
        self.size = size
        self.reflect = reflect  # the greeting ends with a reflection
        # lines the server sends before the echo (--banner-lines, and --reflect's answer)
        self.wanted_lines = greeting
        self.lines: list[bytes] = []
        self.greeted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not greeting:
            self.greeted.set_result(None)
        self.tls: str | None = None  # the connection's TLS, for its first probe
        self.backend: str | None = None  # which instance answered (--spread)
        self.seen: str | None = None  # what it saw (--reflect), for this connection's first probe
        self.events = events  # say how the peer ended the connection (an extra result)
        self.last_active = perf_ns()  # the last probe sent or answered
        self.timeout = timeout
        self.emit = emit
        self.peer = peer
        self.inflight: deque[tuple[int, int, bytes]] = deque()  # (seq, sent ns, payload)
        self.buffer = bytearray()
        self.broken = False  # no more probes on this connection
        self.idle: asyncio.Future[None] | None = None  # resolved when nothing is in flight
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._lost: str | None = None  # "reset" or "closed" once the connection is gone
        self._unasked: bytes | None = None  # what the server sent before any probe
        self.probed = False  # a probe was sent on this connection
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, seq: int) -> None:
        if self._unasked is not None:  # the server spoke first: this stream is not the echo
            self.emit(ProbeResult(seq, "mismatch", self.size, peer=self.peer, detail=UNASKED))
            return
        if self._lost is not None:  # gone between its opening and this probe
            self.emit(ProbeResult(seq, self._lost, self.size, peer=self.peer))
            return
        self.probed = True
        sent = self.last_active = perf_ns()
        data = payload(seq, self.size, sent)
        self.inflight.append((seq, sent, data))
        self._timers[seq] = asyncio.get_running_loop().call_later(self.timeout, self._expire, seq)
        if not self.transport.is_closing():  # else connection_lost, on its way, ends the probe
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        now = self.last_active = perf_ns()
        self.buffer += data
        if self.wanted_lines and not self._greeting():
            return
        while len(self.buffer) >= self.size and self.inflight:
            echo = bytes(self.buffer[: self.size])
            del self.buffer[: self.size]
            seq, sent, expected = self.inflight.popleft()
            self._timers.pop(seq).cancel()
            if echo != expected:
                self.emit(ProbeResult(seq, "mismatch", self.size, peer=self.peer))
                self._break("mismatch")
                return
            self.emit(
                ProbeResult(
                    seq, "ok", self.size, rtt_us=(now - sent) / 1000, peer=self.peer,
                    backend=self.backend, seen=self.seen, tls=self.tls,
                )
            )  # fmt: skip
            self.seen = self.tls = None  # said once per connection
        if self.buffer and not self.inflight:
            if not self.probed:  # before any probe: the server greets (a banner?)
                self._unasked = bytes(self.buffer[:64])
            self._break("mismatch")  # bytes nobody sent: the stream cannot be trusted
        self._check_idle()

    def _greeting(self) -> bool:
        """Take the greeting's lines off the front of the stream; True once all are in. With a
        reflection asked for, the lines before it are a banner's, however many (a server with
        --banner, not said with --banner-lines), up to MAX_BANNER_LINES."""
        while self.wanted_lines:
            end = self.buffer.find(b"\n", 0, MAX_GREETING)
            if end < 0:
                if len(self.buffer) >= MAX_GREETING:  # no line: not a greeting at all
                    self._fail_greeting(f"no line within {MAX_GREETING} bytes")
                return False
            line = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            self.lines.append(line)
            if line == MAGIC[:-2] + b"\n" or line == MAGIC:
                self._fail_greeting("the server echoed AIOECHO-REFLECT back: it has no --reflect")
                return False
            if self.reflect and self.wanted_lines == 1 and not line.startswith(b"{"):
                if len(self.lines) > MAX_BANNER_LINES:
                    self._fail_greeting(f"no reflection within {MAX_BANNER_LINES} lines")
                    return False
                continue  # a banner's line: the reflection is still to come
            self.wanted_lines -= 1
        if not self.greeted.done():
            self.greeted.set_result(None)
        return True

    def _fail_greeting(self, why: str) -> None:
        if not self.greeted.done():
            self.greeted.set_exception(GreetingError(why))
        self.broken = True  # ours to end: no event
        self.transport.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.greeted.done():
            self.greeted.set_exception(exc or ConnectionResetError("closed before its greeting"))
            self.greeted.exception()  # retrieved: the opener reports it
        self._lost = "reset" if exc is not None else "closed"
        if self.events and not self.broken:  # the peer's doing (or the path's), not ours
            idle = None if self.inflight else (perf_ns() - self.last_active) / 1e9
            self.emit(
                ProbeResult(0, self._lost, self.size, peer=self.peer, extra=True, idle_s=idle)
            )
        self._break(self._lost)
        if not self.closed.done():
            self.closed.set_result(None)

    def _expire(self, seq: int) -> None:
        self._break("timeout")

    def _break(self, status: str) -> None:
        """End every probe in flight with this status; no more probes here."""
        while self.inflight:
            seq = self.inflight.popleft()[0]
            self._timers.pop(seq).cancel()
            self.emit(ProbeResult(seq, status, self.size, peer=self.peer))
        if not self.broken:
            self.broken = True
            self.transport.abort()
        self._check_idle()

    def unanswered(self) -> None:
        """Stopped: the probes in flight end as 'unanswered' (no event: ours to end)."""
        self.broken = True
        self._break("unanswered")

    def close(self) -> None:
        """Ours to end: no event, no more probes."""
        self.broken = True
        self.transport.close()

    def _check_idle(self) -> None:
        if not self.inflight and self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    async def drain(self) -> None:
        """Return once no probe is in flight (each ends by its timeout at the latest)."""
        if self.inflight:
            self.idle = asyncio.get_running_loop().create_future()
            await self.idle


class GreetingError(ConnectionError):
    """The server's greeting (banner lines, reflection) did not come as expected."""


class _StreamProber:
    def __init__(
        self,
        target: ClientConfig,
        size: int,
        emit: Emit,
        new_connection: bool,
        tos: int = 0,
        greeting: Greeting | None = None,
        family: int = socket.AF_UNSPEC,
    ) -> None:
        self.family = family
        self.target = target
        self.size = size
        self.emit = emit
        self.new_connection = new_connection
        self.tos = tos
        self.greeting = greeting or Greeting()
        self.context = client_context(**target.tls_options()) if target.tls else None

    async def run(self, count: int, interval: float, stop: asyncio.Event) -> None:
        if self.new_connection:
            probes: dict[asyncio.Future[None], int] = {}  # in flight: their seq
            try:
                async for seq in timetable(count, interval, stop):
                    probe = asyncio.ensure_future(self._probe_alone(seq))
                    probes[probe] = seq
                    probe.add_done_callback(lambda done: probes.pop(done, None))
                if probes:
                    await until(stop, asyncio.gather(*probes))
                for seq in sorted(probes.values()):  # stopped: in flight, never answered
                    self.emit(ProbeResult(seq, "unanswered", self.size))
            finally:
                for pending in list(probes):
                    pending.cancel()
            return
        conn: _EchoProbes | None = None
        opened = False  # a connection was open before: opening another is a reconnect
        try:
            async for seq in timetable(count, interval, stop):
                if conn is None or conn.broken:
                    conn = None
                    try:
                        conn, phases = await self._open(self.emit, events=True)
                    except Exception as err:  # a probe's outcome, not the program's end
                        status, detail = _failure(err, self.target.host)
                        self.emit(ProbeResult(seq, status, self.size, detail=detail))
                        continue
                    if opened:
                        self.emit(
                            ProbeResult(
                                0, "reconnected", self.size, peer=conn.peer, extra=True,
                                connect_us=phases.get("connect_us"),
                            )
                        )  # fmt: skip
                    opened = True
                conn.send(seq)
            if conn is not None:
                await until(stop, conn.drain())
                if conn.inflight:  # stopped: in flight, never answered
                    conn.unanswered()
        finally:
            if conn is not None:
                conn.close()

    async def _probe_alone(self, seq: int) -> None:
        """One probe on a connection of its own, with the phases of opening it."""
        got: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
        phases: dict[str, float] = {}

        def keep(result: ProbeResult) -> None:
            if not got.done():
                got.set_result(result)

        conn = None
        try:
            conn, phases = await self._open(keep)
            conn.send(seq)
            result = await got
        except Exception as err:
            status, detail = _failure(err, self.target.host)
            result = ProbeResult(seq, status, self.size, detail=detail)
        finally:
            if conn is not None:
                conn.transport.close()
        self.emit(dataclasses.replace(result, **phases))  # type: ignore[arg-type]

    async def _open(
        self, emit: Emit, *, events: bool = False
    ) -> tuple[_EchoProbes, dict[str, float]]:
        """Resolve, connect and shake hands, timing each phase; within target.timeout. The
        connection's probes report to emit (and, with events, how the peer ended it)."""
        return await asyncio.wait_for(self._open_phases(emit, events), self.target.timeout)

    async def _open_phases(self, emit: Emit, events: bool) -> tuple[_EchoProbes, dict[str, float]]:
        loop = asyncio.get_running_loop()
        target = self.target
        phases: dict[str, float] = {}
        address: Any
        if target.unix is not None:
            family, address, peer = socket.AF_UNIX, target.unix, target.unix
        else:
            started = perf_ns()
            infos = await loop.getaddrinfo(
                target.host, target.port, family=self.family, type=socket.SOCK_STREAM
            )
            if not _is_address(target.host):
                phases["resolve_us"] = (perf_ns() - started) / 1000
            family, _, _, _, address = infos[0]  # re-resolved for every new connection
            peer = format_address(address)
        # proto TCP named so that asyncio sets TCP_NODELAY (it checks sock.proto)
        proto = 0 if family == socket.AF_UNIX else socket.IPPROTO_TCP
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        mark(sock, self.tos)
        try:
            sock.setblocking(False)
            started = perf_ns()
            await loop.sock_connect(sock, address)
            phases["connect_us"] = (perf_ns() - started) / 1000
            greeting = self.greeting
            probes = _EchoProbes(
                self.size, target.timeout, emit, peer, events=events, greeting=greeting.lines,
                reflect=greeting.reflect,
            )  # fmt: skip
            started = perf_ns()
            hostname = target.server_name if self.context is not None else None
            if family == socket.AF_UNIX:
                await loop.create_unix_connection(
                    lambda: probes, sock=sock, ssl=self.context, server_hostname=hostname
                )
            else:
                await loop.create_connection(
                    lambda: probes, sock=sock, ssl=self.context, server_hostname=hostname
                )
        except BaseException:
            sock.close()
            raise
        if self.context is not None:
            phases["tls_us"] = (perf_ns() - started) / 1000
            probes.tls = describe_session(probes.transport.get_extra_info("ssl_object"))
        if greeting.lines:
            if greeting.reflect:
                probes.transport.write(MAGIC)
            try:
                await probes.greeted
            except BaseException:
                probes.transport.abort()
                raise
            probes.backend, probes.seen = greeting.read(probes.lines)
        return probes, phases


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

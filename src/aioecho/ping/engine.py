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
  duplicated, reordered, corrupted and late answers are told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, cast

from ..addresses import format_address
from ..client.config import ClientConfig
from ..errors import ConnectError, ResolveError, describe_os_error
from ..tls import client_context, describe_tls_error
from .config import PING_HEADER as HEADER
from .stats import ProbeResult

__all__ = ["ping"]

_perf_ns = time.perf_counter_ns
_BODY: Final = bytes(range(256)) * 256  # the rest of a payload, up to 64 KiB at a time
REMEMBERED: Final = 65536  # UDP probes remembered, to classify late and duplicate answers

Emit = Callable[[ProbeResult], None]


def payload(seq: int, size: int, sent_ns: int) -> bytes:
    """Probe seq's bytes: its number, its send time, then a fixed pattern up to size."""
    head = seq.to_bytes(8, "big") + (sent_ns & (2**64 - 1)).to_bytes(8, "big")
    body = _BODY * (1 + (size - HEADER) // len(_BODY))
    return head + body[: size - HEADER]


async def ping(
    target: ClientConfig,
    *,
    count: int = 0,
    interval: float = 1.0,
    size: int = 64,
    new_connection: bool = False,
    stop: asyncio.Event | None = None,
    tos: int = 0,
) -> AsyncIterator[ProbeResult]:
    """Probe target; yield each probe's result as it ends, and each extra answer (duplicates,
    late ones). count=0 probes until the consumer stops iterating, or until stop is set: then
    no probe more is sent, the probes in flight end at once as 'unanswered', and the iteration
    ends. A probe waits target.timeout seconds for its answer; a UDP run that lost some waits
    one timeout more for late answers. Raises ResolveError or ConnectError only when UDP
    cannot start (a stream probe that cannot connect is a result: refused, timeout, error).
    tos: the IP TOS byte (IPv6: traffic class) the probes carry; 0 leaves the system's."""
    if size < HEADER:
        raise ValueError(f"size must be at least {HEADER} bytes")
    results: asyncio.Queue[ProbeResult | None] = asyncio.Queue()
    prober: _UdpProber | _StreamProber
    if target.udp:
        prober = _UdpProber(target, size, results.put_nowait, tos)
    else:
        prober = _StreamProber(target, size, results.put_nowait, new_connection, tos)
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


def mark(sock: Any, tos: int) -> None:
    """Set the TOS byte (IPv6: the traffic class) of what sock sends; 0 leaves the system's."""
    if not tos or sock is None:
        return
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
    elif sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)


async def _timetable(count: int, interval: float, stop: asyncio.Event) -> AsyncIterator[int]:
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


async def _until(stop: asyncio.Event, waiting: Awaitable[Any]) -> None:
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
    return "error", describe_os_error(err)


class _EchoProbes(asyncio.Protocol):
    """Probes on one stream connection: matches the echo, in order, to the probes in flight."""

    def __init__(
        self, size: int, timeout: float, emit: Emit, peer: str, *, events: bool = False
    ) -> None:
        self.size = size
        self.events = events  # say how the peer ended the connection (an extra result)
        self.last_active = _perf_ns()  # the last probe sent or answered
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
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, seq: int) -> None:
        if self._lost is not None:  # gone between its opening and this probe
            self.emit(ProbeResult(seq, self._lost, self.size, peer=self.peer))
            return
        sent = self.last_active = _perf_ns()
        data = payload(seq, self.size, sent)
        self.inflight.append((seq, sent, data))
        self._timers[seq] = asyncio.get_running_loop().call_later(self.timeout, self._expire, seq)
        if not self.transport.is_closing():  # else connection_lost, on its way, ends the probe
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        now = self.last_active = _perf_ns()
        self.buffer += data
        while len(self.buffer) >= self.size and self.inflight:
            echo = bytes(self.buffer[: self.size])
            del self.buffer[: self.size]
            seq, sent, expected = self.inflight.popleft()
            self._timers.pop(seq).cancel()
            if echo != expected:
                self.emit(ProbeResult(seq, "mismatch", self.size, peer=self.peer))
                self._break("mismatch")
                return
            self.emit(ProbeResult(seq, "ok", self.size, rtt_us=(now - sent) / 1000, peer=self.peer))
        if self.buffer and not self.inflight:
            self._break("mismatch")  # bytes nobody sent: the stream cannot be trusted
        self._check_idle()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = "reset" if exc is not None else "closed"
        if self.events and not self.broken:  # the peer's doing (or the path's), not ours
            idle = None if self.inflight else (_perf_ns() - self.last_active) / 1e9
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


class _StreamProber:
    def __init__(
        self, target: ClientConfig, size: int, emit: Emit, new_connection: bool, tos: int = 0
    ) -> None:
        self.target = target
        self.size = size
        self.emit = emit
        self.new_connection = new_connection
        self.tos = tos
        self.context = client_context(target.cafile, target.insecure) if target.tls else None

    async def run(self, count: int, interval: float, stop: asyncio.Event) -> None:
        if self.new_connection:
            probes: dict[asyncio.Future[None], int] = {}  # in flight: their seq
            try:
                async for seq in _timetable(count, interval, stop):
                    probe = asyncio.ensure_future(self._probe_alone(seq))
                    probes[probe] = seq
                    probe.add_done_callback(lambda done: probes.pop(done, None))
                if probes:
                    await _until(stop, asyncio.gather(*probes))
                for seq in sorted(probes.values()):  # stopped: in flight, never answered
                    self.emit(ProbeResult(seq, "unanswered", self.size))
            finally:
                for pending in list(probes):
                    pending.cancel()
            return
        conn: _EchoProbes | None = None
        opened = False  # a connection was open before: opening another is a reconnect
        try:
            async for seq in _timetable(count, interval, stop):
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
                await _until(stop, conn.drain())
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
            started = _perf_ns()
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
            if not _is_address(target.host):
                phases["resolve_us"] = (_perf_ns() - started) / 1000
            family, _, _, _, address = infos[0]  # re-resolved for every new connection
            peer = format_address(address)
        # proto TCP named so that asyncio sets TCP_NODELAY (it checks sock.proto)
        proto = 0 if family == socket.AF_UNIX else socket.IPPROTO_TCP
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        mark(sock, self.tos)
        try:
            sock.setblocking(False)
            started = _perf_ns()
            await loop.sock_connect(sock, address)
            phases["connect_us"] = (_perf_ns() - started) / 1000
            probes = _EchoProbes(self.size, target.timeout, emit, peer, events=events)
            started = _perf_ns()
            hostname = target.host if self.context is not None else None
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
            phases["tls_us"] = (_perf_ns() - started) / 1000
        return probes, phases


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _UdpProber(asyncio.DatagramProtocol):
    """One datagram per probe; answers matched by the sequence number they carry."""

    def __init__(self, target: ClientConfig, size: int, emit: Emit, tos: int = 0) -> None:
        self.target = target
        self.size = size
        self.emit = emit
        self.tos = tos
        self.sent: dict[int, tuple[int, bytes]] = {}  # seq -> (sent ns, payload), the latest
        self.pending: dict[int, asyncio.TimerHandle] = {}  # probes awaiting their answer
        self.timed_out: set[int] = set()  # probes that may still get a late answer
        self.highest = 0  # the highest sequence number answered so far
        self.peer = ""
        self.settled: asyncio.Future[None] | None = None
        self.stragglers: asyncio.Future[None] | None = None  # resolved when none is owed

    async def run(self, count: int, interval: float, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        where = self.target.where
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self, remote_addr=(self.target.host, self.target.port)
            )
        except socket.gaierror as err:
            raise ResolveError(self.target.host, err) from None
        except OSError as err:
            raise ConnectError(where, describe_os_error(err)) from None
        self.peer = format_address(transport.get_extra_info("peername"), udp=True)
        mark(transport.get_extra_info("socket"), self.tos)
        try:
            async for seq in _timetable(count, interval, stop):
                sent = _perf_ns()
                data = payload(seq, self.size, sent)
                self.sent[seq] = (sent, data)
                self.sent.pop(seq - REMEMBERED, None)
                self.timed_out.discard(seq - REMEMBERED)
                self.pending[seq] = loop.call_later(self.target.timeout, self._expire, seq)
                try:
                    transport.sendto(data)
                except OSError as err:
                    self._end(seq, "error", describe_os_error(err))
            if self.pending:
                self.settled = loop.create_future()
                await _until(stop, self.settled)
            for seq in sorted(self.pending):  # stopped: in flight, never answered
                self._end(seq, "unanswered")
            if self.timed_out and not stop.is_set():
                # one timeout more for late answers: the last probes' are the likeliest
                self.stragglers = loop.create_future()
                await _until(stop, asyncio.wait_for(self.stragglers, self.target.timeout))
        finally:
            for timer in self.pending.values():
                timer.cancel()
            transport.close()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = _perf_ns()
        seq = int.from_bytes(data[:8], "big") if len(data) >= HEADER else 0
        entry = self.sent.get(seq)
        if entry is None or data != entry[1]:
            if entry is not None and seq in self.pending:
                self._end(seq, "corrupted")
            else:
                self.emit(ProbeResult(seq, "corrupted", len(data), peer=self.peer, extra=True))
            return
        rtt = (now - entry[0]) / 1000
        if seq in self.pending:
            self.pending.pop(seq).cancel()
            status = "reordered" if seq < self.highest else "ok"
            self.highest = max(self.highest, seq)
            self.emit(ProbeResult(seq, status, self.size, rtt_us=rtt, peer=self.peer))
            self._check_settled()
        elif seq in self.timed_out:
            self.timed_out.discard(seq)
            self.emit(ProbeResult(seq, "late", self.size, rtt_us=rtt, peer=self.peer, extra=True))
            if not self.timed_out and self.stragglers is not None and not self.stragglers.done():
                self.stragglers.set_result(None)
        else:
            self.emit(
                ProbeResult(seq, "duplicate", self.size, rtt_us=rtt, peer=self.peer, extra=True)
            )

    def error_received(self, exc: Exception) -> None:
        # An ICMP error (port unreachable) names no datagram: it ends the oldest probe waiting.
        if self.pending:
            seq = min(self.pending)
            if isinstance(exc, ConnectionRefusedError):
                self._end(seq, "refused")
            else:
                self._end(seq, "error", describe_os_error(exc))

    def _expire(self, seq: int) -> None:
        self.pending.pop(seq, None)
        self.timed_out.add(seq)
        self.emit(ProbeResult(seq, "timeout", self.size, peer=self.peer))
        self._check_settled()

    def _end(self, seq: int, status: str, detail: str | None = None) -> None:
        timer = self.pending.pop(seq, None)
        if timer is not None:
            timer.cancel()
        self.emit(ProbeResult(seq, status, self.size, peer=self.peer, detail=detail))
        self._check_settled()

    def _check_settled(self) -> None:
        if not self.pending and self.settled is not None and not self.settled.done():
            self.settled.set_result(None)

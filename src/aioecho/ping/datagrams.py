"""`aioecho ping` over UDP: one datagram per probe, never resent; answers are matched by the
sequence number they carry, so lost, duplicated, reordered, corrupted and late answers are told
apart (engine.ping runs it). With --reflect or --spread, each probe has a socket of its own
(UdpReflectProber)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from ..addresses import format_address
from ..client.config import ClientConfig
from ..errors import ConnectError, ResolveError, describe_os_error
from ..reflection import MAGIC
from .config import PING_HEADER as HEADER
from .probes import REMEMBERED, Emit, mark, payload, perf_ns, timetable, until
from .stats import ProbeResult

__all__ = ["UdpProber", "UdpReflectProber"]


class UdpProber(asyncio.DatagramProtocol):
    """One datagram per probe; answers matched by the sequence number they carry."""

    def __init__(
        self,
        target: ClientConfig,
        size: int,
        emit: Emit,
        tos: int = 0,
        family: int = socket.AF_UNSPEC,
    ) -> None:
        self.family = family
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
                lambda: self, remote_addr=(self.target.host, self.target.port), family=self.family
            )
        except socket.gaierror as err:
            raise ResolveError(self.target.host, err) from None
        except OSError as err:
            raise ConnectError(where, describe_os_error(err)) from None
        self.peer = format_address(transport.get_extra_info("peername"), udp=True)
        mark(transport.get_extra_info("socket"), self.tos)
        try:
            async for seq in timetable(count, interval, stop):
                sent = perf_ns()
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
                await until(stop, self.settled)
            for seq in sorted(self.pending):  # stopped: in flight, never answered
                self._end(seq, "unanswered")
            if self.timed_out and not stop.is_set():
                # one timeout more for late answers: the last probes' are the likeliest
                self.stragglers = loop.create_future()
                await until(stop, asyncio.wait_for(self.stragglers, self.target.timeout))
        finally:
            for timer in self.pending.values():
                timer.cancel()
            transport.close()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = perf_ns()
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


class _OneFlow(asyncio.DatagramProtocol):
    """One probe's socket (--reflect, --spread over UDP): its answers, in order."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answers.full():  # a flood on this socket is not queued
            self.answers.put_nowait(data)


class UdpReflectProber:
    """--reflect and --spread over UDP: each probe from a socket of its own (a new source port,
    as a new connection is for a stream, which a UDP balancer spreads by), carrying the magic
    line before its payload; a --reflect server answers with its reflection, then the echo of
    the payload, both to that socket."""

    def __init__(
        self,
        target: ClientConfig,
        size: int,
        emit: Emit,
        read: Callable[[list[bytes]], tuple[str | None, str | None]],
        family: int = socket.AF_UNSPEC,
    ) -> None:
        self.target = target
        self.size = size
        self.emit = emit
        self.read = read  # the reflection's line -> (backend, seen)
        self.family = family

    async def run(self, count: int, interval: float, stop: asyncio.Event) -> None:
        probes: set[asyncio.Future[None]] = set()
        try:
            async for seq in timetable(count, interval, stop):
                probe = asyncio.ensure_future(self._probe(seq))
                probes.add(probe)
                probe.add_done_callback(probes.discard)
            if probes:
                await until(stop, asyncio.gather(*probes))
        finally:
            for pending in list(probes):
                pending.cancel()

    async def _probe(self, seq: int) -> None:
        loop = asyncio.get_running_loop()
        target = self.target
        try:
            transport, flow = await loop.create_datagram_endpoint(
                _OneFlow, remote_addr=(target.host, target.port), family=self.family
            )
        except OSError as err:
            self.emit(ProbeResult(seq, "error", self.size, detail=describe_os_error(err)))
            return
        peer = format_address(transport.get_extra_info("peername"), udp=True)
        try:
            sent = perf_ns()
            data = payload(seq, self.size, sent)
            transport.sendto(MAGIC + data)
            reflection = await asyncio.wait_for(flow.answers.get(), target.timeout)
            echo = await asyncio.wait_for(flow.answers.get(), target.timeout)
            rtt = (perf_ns() - sent) / 1000
            try:
                backend, seen = self.read([reflection])
            except ConnectionError as err:
                self.emit(ProbeResult(seq, "error", self.size, peer=peer, detail=str(err)))
                return
            status = "ok" if echo == data else "mismatch"
            self.emit(
                ProbeResult(seq, status, self.size, rtt_us=rtt, peer=peer, backend=backend,
                            seen=seen)
            )  # fmt: skip
        except asyncio.TimeoutError:
            self.emit(ProbeResult(seq, "timeout", self.size, peer=peer))
        finally:
            transport.close()

"""`--trace` for the server: the echo protocols, saying what happens at each event (the lines
and their clock are tracing.py's)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..addresses import format_address, peer_name
from ..tracing import TraceClock as _Clock
from ..tracing import reason as _reason
from .protocol import EchoServerProtocol
from .udp import EchoDatagramProtocol

__all__ = ["TracingDatagramProtocol", "TracingEchoServerProtocol"]


class TracingEchoServerProtocol(EchoServerProtocol):
    """The echo server protocol, saying what happens at each event."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._clock = _Clock(peer_name("EchoServer", peer))
        self._in_data = False
        self._deferred: tuple[float, str] | None = None  # a line from inside write()
        super().connection_made(transport)
        outcome = (
            f"echo, pause reading past {self.buffer_limit()} bytes of unsent echo"
            if self._admitted
            else "close (--max-connections reached)"
        )
        self._clock.line(f"connection_made from {format_address(peer)} -> {outcome}")

    def data_received(self, data: bytes) -> None:
        # transport.write() may call pause_writing() before it returns: that line is printed
        # after this one, which is the cause.
        self._in_data = True
        at = self._clock.stamp()
        super().data_received(data)
        self._in_data = False
        self._clock.line(
            f"data_received {len(data)} bytes -> write "
            f"(buffer {self.queued()} of {self.buffer_limit()})",
            at,
        )
        if self._deferred is not None:
            self._clock.line(self._deferred[1], self._deferred[0])
            self._deferred = None

    def pause_writing(self) -> None:
        line = f"pause_writing (buffer {self.queued()} of {self.buffer_limit()}) -> pause_reading"
        super().pause_writing()
        if self._in_data:
            self._deferred = (self._clock.stamp(), line)
        else:
            self._clock.line(line)

    def resume_writing(self) -> None:
        self._clock.line(f"resume_writing (buffer {self.queued()}) -> resume_reading")
        super().resume_writing()

    def eof_received(self) -> bool:
        pending = self.queued()
        if self.transport.can_write_eof():
            self._clock.line(f"eof_received -> write_eof after {pending} bytes pending")
        else:
            self._clock.line("eof_received -> close (TLS has no half-close)")
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._clock.line(f"connection_lost ({_reason(exc)}) after {self.bytes_in} bytes echoed")

    def abort(self, reason: str) -> None:
        self._clock.line(f"abort: {reason} ({self.queued()} bytes of echo dropped)")
        super().abort(reason)


class TracingDatagramProtocol(EchoDatagramProtocol):
    """The UDP echo, saying what it does with each datagram."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._clock = _Clock("udp")
        super().connection_made(transport)
        where = format_address(transport.get_extra_info("sockname"), udp=True)
        self._clock.line(f"connection_made on {where}")

    def datagram_received(self, data: bytes, addr: Any) -> None:
        echoed = self.echoed
        super().datagram_received(data, addr)
        outcome = "sendto" if self.echoed > echoed else "dropped (empty, reflection, --udp-rate)"
        source = format_address(addr, udp=True)
        self._clock.line(f"datagram_received {len(data)} bytes from {source} -> {outcome}")

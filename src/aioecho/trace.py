"""`--trace`: every Protocol callback and what the protocol does to its transport, one line each,
with a millisecond clock from the connection's start:

    EchoServer_127.0.0.1_50312: +12.403 ms data_received 65536 bytes -> write (buffer 262144 of
    262144)
    EchoServer_127.0.0.1_50312: +12.410 ms pause_writing (buffer 262144 of 262144) ->
    pause_reading

(each one line).

The tracing protocols are subclasses chosen at start-up, so a server without --trace runs the
plain classes and pays nothing for this. Lines go to the `aioecho.trace` logger, which the CLI
shows whatever the verbosity.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from .addresses import format_address, peer_name
from .client import EchoClientProtocol, StreamClientProtocol
from .errors import describe_os_error
from .server import EchoServerProtocol
from .udp import EchoDatagramProtocol

__all__ = [
    "TracingDatagramProtocol",
    "TracingEchoClientProtocol",
    "TracingEchoServerProtocol",
    "TracingStreamClientProtocol",
    "trace_log",
]

trace_log = logging.getLogger("aioecho.trace")


class _Clock:
    """A connection's trace: its name and its clock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = time.perf_counter()

    def stamp(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def line(self, text: str, at: float | None = None) -> None:
        ms = self.stamp() if at is None else at
        trace_log.info("+%.3f ms %s", ms, text, extra={"conn": self.name})


def _reason(exc: BaseException | None) -> str:
    return "None" if exc is None else f"{type(exc).__name__}: {describe_os_error(exc)}"


class TracingEchoServerProtocol(EchoServerProtocol):
    """The echo server protocol, saying what happens at each event."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._clock = _Clock(peer_name("EchoServer", peer))
        self._in_data = False
        self._deferred: tuple[float, str] | None = None  # a line from inside write()
        super().connection_made(transport)
        outcome = (
            f"echo, pause reading past {self._max_buffer} bytes of unsent echo"
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
            f"(buffer {self.queued()} of {self._max_buffer})",
            at,
        )
        if self._deferred is not None:
            self._clock.line(self._deferred[1], self._deferred[0])
            self._deferred = None

    def pause_writing(self) -> None:
        line = f"pause_writing (buffer {self.queued()} of {self._max_buffer}) -> pause_reading"
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


class TracingEchoClientProtocol(EchoClientProtocol):
    """The seed's client, saying what happens at each event."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._clock = _Clock("EchoClient")
        size = sum(len(m) for m in self.messages)
        ends = (
            "write_eof"
            if cast(asyncio.Transport, transport).can_write_eof()
            else "close once all is back (TLS has no half-close)"
        )
        self._clock.line(
            f"connection_made to {format_address(transport.get_extra_info('peername'))} -> "
            f"write {len(self.messages)} messages ({size} bytes), {ends}"
        )
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._clock.line(f"data_received {len(data)} bytes ({len(self.received)} back so far)")

    def eof_received(self) -> bool:
        self._clock.line("eof_received -> close")
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clock.line(f"connection_lost ({_reason(exc)})")
        super().connection_lost(exc)


class TracingStreamClientProtocol(StreamClientProtocol):
    """`client -`, saying what happens at each event: the writes, the checked echo, the
    flow control."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._clock = _Clock("EchoClient")
        super().connection_made(transport)
        self._clock.line(
            f"connection_made to {format_address(transport.get_extra_info('peername'))}"
        )

    async def send(self, chunk: bytes) -> None:
        self._clock.line(f"write {len(chunk)} bytes (unechoed {self.window.size + len(chunk)})")
        await super().send(chunk)

    def send_eof(self) -> None:
        half = self.transport.can_write_eof()
        self._clock.line("write_eof" if half else "end of input (TLS has no half-close)")
        super().send_eof()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._clock.line(
            f"data_received {len(data)} bytes -> checked (unechoed {self.window.size})"
        )

    def pause_writing(self) -> None:
        self._clock.line("pause_writing -> stop reading standard input")
        super().pause_writing()

    def resume_writing(self) -> None:
        self._clock.line("resume_writing -> read standard input again")
        super().resume_writing()

    def eof_received(self) -> bool:
        self._clock.line("eof_received")
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clock.line(f"connection_lost ({_reason(exc)})")
        super().connection_lost(exc)

"""`--trace` for the client: its protocols, saying what happens at each event (the lines and
their clock are tracing.py's)."""

from __future__ import annotations

import asyncio
from typing import cast

from ..addresses import format_address
from ..tracing import TraceClock as _Clock
from ..tracing import reason as _reason
from .protocol import EchoClientProtocol, StreamClientProtocol

__all__ = ["TracingEchoClientProtocol", "TracingStreamClientProtocol"]


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

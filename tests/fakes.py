"""A fake transport for the pure units of protocol callbacks (order of events, flow control)."""

from __future__ import annotations

import asyncio
from typing import Any


class FakeTransport:
    """Records what a protocol does to its transport."""

    def __init__(self, *, can_write_eof: bool = True, peer: Any = ("127.0.0.1", 4242)) -> None:
        self.written: list[bytes] = []
        self.high: int | None = None
        self.eof_written = False
        self.closed = False
        self.aborted = False
        self.reading = True
        self.queued = 0
        self._can_write_eof = can_write_eof
        self._peer = peer

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def write_eof(self) -> None:
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return self._can_write_eof

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return self.queued

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._peer if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

"""--banner-lines for the client programs that connect through client.connect() (client,
bench): the server's greeting lines are read and dropped before the protocol sees any data."""

from __future__ import annotations

import asyncio
from typing import Final, cast

from ..errors import EchoError

__all__ = ["MAX_BANNER_LINE", "SkipBanner"]

MAX_BANNER_LINE: Final = 64 * 1024  # bytes of a greeting line, at most (--banner-lines)


class SkipBanner(asyncio.Protocol):
    """In front of a client protocol until the server's greeting lines (--banner-lines) have
    gone by: they are not echo. Then the transport is the protocol's own."""

    def __init__(self, inner: asyncio.Protocol, lines: int) -> None:
        self.inner = inner
        self._lines = lines
        self._held = b""
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._lines:  # the hand-over lags by a call (TLS)
            self.inner.data_received(data)
            return
        held = self._held + data
        while self._lines:
            end = held.find(b"\n")
            if end < 0:
                if len(held) > MAX_BANNER_LINE:
                    self.inner.connection_lost(EchoError(
                        f"no end of the banner's line within {MAX_BANNER_LINE} bytes "
                        "(--banner-lines)"
                    ))  # fmt: skip
                    self.transport.abort()
                self._held = held
                return
            held = held[end + 1 :]
            self._lines -= 1
        self._held = b""
        self.transport.set_protocol(self.inner)
        if held:
            self.inner.data_received(held)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

"""UDP echo (RFC 862): each datagram goes back whole to its sender, within the reply policy."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from ..addresses import format_address
from ..errors import describe_os_error
from ..logs import FloodCounter, preview
from .ratelimit import UdpPolicy

__all__ = ["EchoDatagramProtocol"]

_log = logging.getLogger("aioecho.udp")


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    """Echo every datagram that `policy` allows; count the rest and log them once a second.

    UDP has no read-side flow control (the kernel drops what does not fit); if the send buffer
    fills, the transport buffers and calls pause_writing, and datagrams are dropped until
    resume_writing rather than queued without bound."""

    def __init__(self, policy: UdpPolicy) -> None:
        self._policy = policy
        self._debug = False  # per-datagram lines are on
        self._write_paused = False
        self._drops = FloodCounter(self._report_drops)
        self.echoed = 0
        self.transport: asyncio.DatagramTransport  # set in connection_made
        self._loop: asyncio.AbstractEventLoop  # set in connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._loop = asyncio.get_running_loop()
        self._debug = _log.isEnabledFor(logging.DEBUG)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.admit(data, addr):
            self.send(data, addr)

    def admit(self, data: bytes, addr: Any) -> bool:
        """Whether to echo this datagram; one not echoed is counted as dropped."""
        if self._debug:
            _log.debug("%s: received %s", format_address(addr, udp=True), preview(data))
        # An empty datagram has nothing to echo (asyncio does not even send one): dropped.
        if (
            not data
            or self._write_paused
            or not self._policy.allow(addr[0], addr[1], self._loop.time())
        ):
            self._drops.add()
            return False
        return True

    def send(self, data: bytes, addr: Any) -> None:
        if self._write_paused:  # the send buffer filled meanwhile (a delayed echo)
            self._drops.add()
            return
        self.transport.sendto(data, addr)
        self.echoed += 1

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable from an earlier reply, or a datagram too big to send
        _log.info("error: %s", describe_os_error(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self._drops.flush()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False

    @property
    def dropped(self) -> int:
        return self._drops.total

    def _report_drops(self, count: int) -> None:
        _log.warning(
            "dropped %d datagram%s (empty, from reflection ports, over --udp-rate %g/s "
            "per source, or past what --delay may hold)",
            count,
            "" if count == 1 else "s",
            self._policy.rate,
        )

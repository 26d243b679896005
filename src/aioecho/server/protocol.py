"""The echo server's protocol: an EchoServerProtocol per connection (serve.py listens and makes
them; faults.py, trace.py and proxy_protocol.py hold its variants, which subclass or wrap it).

Callback order (CPython's contract): connection_made -> data_received* -> eof_received? ->
connection_lost, with pause_writing/resume_writing in between when the peer reads slower than
it writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any, cast

from ..addresses import peer_name
from ..errors import describe_os_error
from ..logs import connection_lines, preview
from .config import DEFAULT_MAX_BUFFER
from .registry import Connections, Linked

__all__ = ["BannerEchoServerProtocol", "EchoServerProtocol", "banner_text"]

_log = logging.getLogger("aioecho.server")
_main_log = logging.getLogger("aioecho.main")


class EchoServerProtocol(asyncio.Protocol, Linked):
    """Echo every byte back in order; answer EOF with EOF; stop reading while the echo is stuck.

    Memory per connection is bounded by max_buffer (pending echo) plus one read from the socket:
    when the transport's write buffer goes over max_buffer, the transport calls pause_writing()
    and the protocol stops reading from that peer until resume_writing().
    """

    # Slots: with 10,000 idle connections the per-connection footprint is the figure that
    # matters (README, Performance).
    __slots__ = (
        "_close_reason",
        "_connections",
        "_debug",
        "_max_buffer",
        "_name",
        "bytes_in",
        "health_check",
        "idle_mark",
        "idle_since",
        "transport",
        "unsent_at_close",
    )

    def __init__(
        self, *, max_buffer: int = DEFAULT_MAX_BUFFER, connections: Connections | None = None
    ) -> None:
        self._max_buffer = max_buffer  # bytes of pending echo before reading pauses
        self._connections = connections  # the server's registry: limits, idle sweep, shutdown
        self._debug = False  # per-chunk lines are on: cached off the hot path
        self._close_reason: str | None = None  # why we ended it, when we did
        self._name = ""  # EchoServer_{host}_{port} (the seed's logger name), once admitted
        self.bytes_in = 0  # received, and so handed back to the transport
        # a balancer's own connection (PROXY LOCAL/UNKNOWN): its lines are DEBUG, and it is
        # counted as a check, not as a client (registry)
        self.health_check = False
        self.unsent_at_close = 0  # echo still queued when we aborted
        self.idle_mark = -1  # the idle sweep's last view of the counters
        self.idle_since = 0.0  # loop time at which idle_mark last changed
        self.transport: asyncio.Transport  # set in connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance-checked: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        if self._connections is not None and not self._connections.admit(self):
            self.transport.close()  # counted and logged (rate-limited) by the registry
            return
        # Named now, not when a line needs it: once a peer has reset, its socket no longer
        # knows who it was, and that is the line that matters.
        self._name = peer_name("EchoServer", transport.get_extra_info("peername"))
        self._debug = _log.isEnabledFor(logging.DEBUG)
        self.transport.set_write_buffer_limits(high=self._max_buffer)
        if _log.isEnabledFor(logging.INFO):
            self._log(self._routine(), "connection accepted")

    @property
    def _admitted(self) -> bool:
        """Not refused by --max-connections (a flag of its own would cost a slot per peer)."""
        return self._name != ""

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._debug:
            self._log(logging.DEBUG, "received %s", preview(data))
            self.transport.write(data)
            self._log(logging.DEBUG, "sent %s", preview(data))
        else:
            self.transport.write(data)

    def eof_received(self) -> bool:
        """Half-close: the transport sends our EOF after the pending echo, then closes."""
        if self._debug:
            self._log(logging.DEBUG, "received EOF")
        if self.transport.can_write_eof():
            self.transport.write_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        if exc is not None and (self.health_check or not self.bytes_in):
            # counted as a check (registry), not as a reset
            self._log(self._routine(), "closing: reset before any data (a health check?)")
        elif exc is not None:
            self._log(logging.WARNING, "closing: %s", describe_os_error(exc))
        elif self._close_reason is not None:
            self._log(logging.INFO, "closing: %s", self._close_reason)
        else:
            self._log(self._routine(), "closing")
        if self._connections is not None:
            self._connections.discard(self, exc)

    def _routine(self) -> int:
        """The level of the accepted and closing lines: DEBUG for a balancer's health check."""
        return logging.DEBUG if self.health_check else logging.INFO

    def pause_writing(self) -> None:
        """The peer is not reading its echo: stop reading what it sends (TCP slows it down)."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def queued(self) -> int:
        return self.transport.get_write_buffer_size()

    def abort(self, reason: str) -> None:
        """End the connection now, dropping queued echo; the close line gives the reason."""
        self._close_reason = reason
        self.unsent_at_close += self.transport.get_write_buffer_size()
        self.transport.abort()

    def _log(self, level: int, message: str, *args: object) -> None:
        """A line that starts `EchoServer_{host}_{port}: ` (the seed's per-peer logger name)."""
        if not _log.isEnabledFor(level):
            return
        name = self._name
        lines = connection_lines()
        if lines is not None and level == logging.INFO:
            lines.add(name, message % args if args else message)
        else:
            _log.log(level, message, *args, extra={"conn": name})


class BannerEchoServerProtocol(EchoServerProtocol):
    """The echo, after a line sent on connect (--banner): which instance answered, for a client
    behind a balancer. A class of its own, so that the plain echo pays nothing for it."""

    __slots__ = ("_banner",)

    def __init__(self, *, banner: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._banner = banner  # formatted but for {port}, the port this connection came to

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._admitted:
            sockname = transport.get_extra_info("sockname")
            port = sockname[1] if isinstance(sockname, tuple) else ""
            self.transport.write(self._banner.replace("{port}", str(port)).encode())


def banner_text(template: str, worker: int) -> str:
    """--banner with {hostname}, {pid} and {worker} filled in ({port} is per connection), as
    one line."""
    text = template.format(
        hostname=socket.gethostname(), pid=os.getpid(), worker=worker, port="{port}"
    )
    return text if text.endswith("\n") else text + "\n"

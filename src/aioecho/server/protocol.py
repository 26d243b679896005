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
from typing import Any, Final, cast

from ..addresses import peer_name
from ..errors import describe_os_error
from ..logs import connection_lines, preview
from .config import DEFAULT_MAX_BUFFER
from .registry import Admission, Linked

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
    # What every connection needs is a slot; what few need (a reason we closed it, a health
    # check's mark, echo dropped at the close, a max_buffer of its own) is in one _Rare made on
    # first use; what every connection of a server shares is the registry's (max_buffer); and
    # the per-chunk lines of -v are a class of their own (_verbose), not a flag per peer.
    __slots__ = (
        "_connections",
        "_peer",
        "_rare",
        "bytes_in",
        "idle_mark",
        "idle_since",
        "transport",
    )

    def __init__(
        self, *, max_buffer: int | None = None, connections: Admission | None = None
    ) -> None:
        """max_buffer: bytes of pending echo before reading pauses (default: the registry's,
        else DEFAULT_MAX_BUFFER). connections: the server's registry (limits, idle sweep,
        shutdown), None for a protocol on its own."""
        if _log.isEnabledFor(logging.DEBUG):  # the per-chunk lines: the same slots, more lines
            # here, not in connection_made: uvloop keeps the data_received it finds then
            self.__class__ = _verbose(type(self))
        self._connections = connections
        self._rare: _Rare | None = None
        if max_buffer is not None:
            self._more().max_buffer = max_buffer
        self._peer: int | str = ""  # who, once admitted: pack_peer(); "" before
        self.bytes_in = 0  # received, and so handed back to the transport
        self.idle_mark = -1  # the idle sweep's last view of the counters
        self.idle_since = 0.0  # loop time at which idle_mark last changed
        self.transport: asyncio.Transport  # set in connection_made

    def _more(self) -> _Rare:
        if self._rare is None:
            self._rare = _Rare()
        return self._rare

    @property
    def health_check(self) -> bool:
        """A balancer's own connection (PROXY LOCAL/UNKNOWN): its lines are DEBUG, and it is
        counted as a check, not as a client (registry)."""
        return self._rare is not None and self._rare.health_check

    @health_check.setter
    def health_check(self, value: bool) -> None:
        self._more().health_check = value

    @property
    def unsent_at_close(self) -> int:
        """Echo still queued (or a fault's, discarded) when we ended the connection."""
        return self._rare.unsent_at_close if self._rare is not None else 0

    @unsent_at_close.setter
    def unsent_at_close(self, value: int) -> None:
        self._more().unsent_at_close = value

    def buffer_limit(self) -> int:
        """Bytes of pending echo before reading pauses."""
        if self._rare is not None and self._rare.max_buffer is not None:
            return self._rare.max_buffer
        if self._connections is not None:
            return self._connections.max_buffer
        return DEFAULT_MAX_BUFFER

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance-checked: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        if self._connections is not None and not self._connections.admit(self):
            self.transport.close()  # counted and logged (rate-limited) by the registry
            return
        # Kept now, not asked when a line needs it: once a peer has reset, its socket no longer
        # knows who it was, and that is the line that matters. Packed into an int (28 bytes,
        # against 80 for the name's text): per idle connection, that is the figure.
        self._peer = pack_peer(transport.get_extra_info("peername"))
        self.transport.set_write_buffer_limits(high=self.buffer_limit())
        if _log.isEnabledFor(logging.INFO):
            self._log(self._routine(), "connection accepted")

    @property
    def _admitted(self) -> bool:
        """Not refused by --max-connections (a flag of its own would cost a slot per peer)."""
        return self._peer != ""

    @property
    def _name(self) -> str:
        """EchoServer_{host}_{port}: the seed's per-peer logger name."""
        return unpack_peer(self._peer)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.transport.write(data)

    def eof_received(self) -> bool:
        """Half-close: the transport sends our EOF after the pending echo, then closes."""
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
        elif self._rare is not None and self._rare.close_reason is not None:
            self._log(logging.INFO, "closing: %s", self._rare.close_reason)
        else:
            self._log(self._routine(), "closing")
        if self._connections is not None:
            self._connections.discard(self, exc)

    def _routine(self) -> int:
        """The level of the accepted and closing lines: DEBUG for a balancer's health check."""
        rare = self._rare
        return logging.DEBUG if rare is not None and rare.health_check else logging.INFO

    def pause_writing(self) -> None:
        """The peer is not reading its echo: stop reading what it sends (TCP slows it down)."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def queued(self) -> int:
        return self.transport.get_write_buffer_size()

    def abort(self, reason: str) -> None:
        """End the connection now, dropping queued echo; the close line gives the reason."""
        self._more().close_reason = reason
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


class _Rare:
    """What few connections need: made on first use (EchoServerProtocol._more)."""

    __slots__ = ("close_reason", "health_check", "max_buffer", "unsent_at_close")

    def __init__(self) -> None:
        self.close_reason: str | None = None  # why we ended it, when we did
        self.health_check = False
        self.max_buffer: int | None = None  # the protocol's own, given to it
        self.unsent_at_close = 0


class _VerboseMixin:
    """-v: a line per chunk received and sent, and for EOF (the seed's DEBUG lines). A peer's
    protocol takes this class when it is made with DEBUG on: the plain data_received pays
    nothing for a flag it would test on every chunk."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        me = cast(EchoServerProtocol, self)
        me._log(logging.DEBUG, "received %s", preview(data))
        super().data_received(data)  # type: ignore[misc]
        me._log(logging.DEBUG, "sent %s", preview(data))

    def eof_received(self) -> bool:
        cast(EchoServerProtocol, self)._log(logging.DEBUG, "received EOF")
        return cast(bool, super().eof_received())  # type: ignore[misc]


_VERBOSE: dict[type[EchoServerProtocol], type[EchoServerProtocol]] = {}


def _verbose(cls: type[EchoServerProtocol]) -> type[EchoServerProtocol]:
    """cls with the -v lines: the same slots, so that a connection's protocol can take it."""
    if issubclass(cls, _VerboseMixin):
        return cls
    if cls not in _VERBOSE:
        _VERBOSE[cls] = type(cls.__name__, (_VerboseMixin, cls), {"__slots__": ()})
    return _VERBOSE[cls]


# The hosts peers came from, each once: a peer is kept as its host's index here and its port,
# in one small int (28 to 32 bytes, against 80 for the name's text). Bounded: past MAX_HOSTS
# distinct hosts a peer keeps its name's text.
MAX_HOSTS: Final = 65536
_HOSTS: list[str] = []
_HOST_INDEX: dict[str, int] = {}


def pack_peer(peername: Any) -> int | str:
    """A peer's address as one int (its host's index << 16 | its port), or its name where it
    has no (host, port) address (a Unix socket) or the hosts seen are too many."""
    if (
        isinstance(peername, tuple)
        and len(peername) >= 2
        and isinstance(peername[1], int)
        and 0 <= peername[1] <= 0xFFFF  # the port's 16 bits (a PROXY header's too)
    ):
        host = peername[0]
        index = _HOST_INDEX.get(host)
        if index is None and len(_HOSTS) < MAX_HOSTS:
            index = _HOST_INDEX[host] = len(_HOSTS)
            _HOSTS.append(host)
        if index is not None:
            return index << 16 | peername[1]
    return peer_name("EchoServer", peername)


def unpack_peer(peer: int | str) -> str:
    """The name pack_peer() packed: EchoServer_127.0.0.1_54321, EchoServer_::1_443."""
    if isinstance(peer, str):
        return peer
    return f"EchoServer_{_HOSTS[peer >> 16]}_{peer & 0xFFFF}"


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

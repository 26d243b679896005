"""--proxy-protocol: every connection starts with a PROXY protocol header from the balancer in
front (proxyheader.py). ProxyHeaderProtocol reads it, drops it from the stream, and hands the
connection to the echo with the client's address as its peer name, so that logs show the
client rather than the balancer. A connection without a valid header within HEADER_TIMEOUT is
closed with one log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final, cast

from ..addresses import peer_name
from ..logs import ConnectionLog
from .proxyheader import ProxyHeaderError, parse
from .registry import Admission, Linked

__all__ = ["ClientAddressTransport", "ProxyHeaderProtocol"]

_log = logging.getLogger("aioecho.server")

HEADER_TIMEOUT: Final = 10.0  # seconds a connection gets to send its PROXY header


class ClientAddressTransport:
    """The connection's transport, with the client's address (from the header) as its
    peername; everything else is the transport's own."""

    def __init__(
        self, transport: asyncio.Transport, peername: tuple[str, int], header: Any = None
    ) -> None:
        self._transport = transport
        self._peername = peername
        self._header = header  # the PROXY header (proxyheader.ProxyHeader), for --reflect

    def write(self, data: bytes) -> None:  # the hot path: no __getattr__ on the way
        self._transport.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peername
        if name == "proxy_header":
            return self._header
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ProxyHeaderProtocol(asyncio.Protocol, Linked):
    """Reads the PROXY header, then hands the connection to a protocol from `inner`. Counted
    against --max-connections from the accept, as a TLS handshake is (registry.Tracked)."""

    bytes_in = 0
    unsent_at_close = 0

    def __init__(
        self,
        inner: Callable[[], asyncio.Protocol],
        *,
        connections: Admission | None = None,
        timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self._inner_factory = inner
        self._connections = connections
        self._timeout = timeout
        self._buffer = b""
        self._handed_over = False
        self._timer: asyncio.TimerHandle | None = None
        self._peer: Any = None  # the balancer's address, read at accept (uvloop forgets it)
        self.idle_mark = -1
        self.idle_since = 0.0
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._connections is not None and not self._connections.admit(self):
            self.transport.close()
            return
        self._peer = transport.get_extra_info("peername")
        self._timer = asyncio.get_running_loop().call_later(
            self._timeout, self._reject, f"no PROXY protocol header within {self._timeout:g}s"
        )

    def queued(self) -> int:
        return 0

    def abort(self, reason: str) -> None:
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            header = parse(self._buffer)
        except ProxyHeaderError as err:
            self._reject(str(err))
            return
        if header is None:
            return  # not all of it yet (the parser bounds how much it waits for)
        if self._timer is not None:
            self._timer.cancel()
        rest, self._buffer = self._buffer[header.length :], b""
        if self._connections is not None:
            self._connections.hand_over(self)
        self._handed_over = True
        inner = self._inner_factory()
        seen: asyncio.BaseTransport = self.transport
        # LOCAL (a balancer's health check) or UNSPEC: the balancer's own address, as read at
        # accept (after a reset, uvloop's transport no longer knows it: "EchoServer_unknown")
        source = header.source
        if source is None:
            if hasattr(inner, "health_check"):
                inner.health_check = True
            if isinstance(self._peer, tuple):
                source = (self._peer[0], self._peer[1])
        if source is not None and hasattr(inner, "client_address"):
            # TLS comes next: the handshake needs the real transport, and passes the address
            # on to the echo itself (tls.TLSAcceptProtocol)
            inner.client_address = source
            setattr(inner, "proxy_header", header)  # noqa: B010  (TLS's, like client_address)
        elif source is not None:
            seen = cast(asyncio.Transport, ClientAddressTransport(self.transport, source, header))
        inner.connection_made(seen)
        self.transport.set_protocol(inner)
        if rest and not self.transport.is_closing():
            inner.data_received(rest)

    def eof_received(self) -> bool:
        if self._buffer:
            self._reject("closed before a complete PROXY protocol header")
        # else: connected and closed without a byte, as a balancer's TCP check does: no
        # warning; counted as a check (registry)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._connections is not None and not self._handed_over:
            self._connections.discard(self, exc)

    def _reject(self, reason: str) -> None:
        if self.transport.is_closing():
            return
        if self._connections is not None:
            self._connections.header_rejects += 1
        name = peer_name("EchoServer", self._peer)
        ConnectionLog(_log, name).warning("closing: %s", reason)
        self.transport.abort()

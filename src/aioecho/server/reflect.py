"""--reflect: say what the far end saw. A connection (or a datagram) that starts with the magic
line `AIOECHO-REFLECT 1\\r\\n` gets one JSON line back first: the client's address as the server
saw it (NAT and a balancer's SNAT show), the socket's own peer, the PROXY header's addresses if
one came, the address it was accepted on, TLS (version, cipher, SNI, ALPN, the client
certificate's subject), the instance (hostname, pid, worker, port: the banner's fields) and the
time it was received; then the echo goes on as usual. Anything else is the plain echo, byte for
byte: the magic is uppercase ASCII text with a version and CRLF, which binary and line-based
traffic does not start with by chance.

Bounded: at most len(MAGIC) bytes are held while the start is told apart, for MAGIC_WAIT seconds
at most (a slow client's magic, byte by byte, still counts; one that stops halfway gets its
bytes echoed). ReflectProtocol stands in front of the echo protocol only until then (then the
transport is the echo's own: the hot path pays nothing); the echo protocol is made at once, so
that --banner still greets on connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final, cast

from ..logs import rfc3339
from ..reflection import MAGIC
from .udp import EchoDatagramProtocol

__all__ = ["MAGIC", "ReflectProtocol", "ReflectingDatagramProtocol", "Reflections"]

MAGIC_WAIT: Final = 2.0  # seconds for the magic to come whole, once the first byte matched


class Reflections:
    """What the reflector of one server shares: its identity, and how many it answered."""

    def __init__(self, worker: int = 0) -> None:
        self.count = 0
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.worker = worker

    def line(self, transport: Any, size: int | None = None, peer: Any = None) -> bytes:
        """The JSON line for a connection's transport (or a datagram: its size and sender)."""
        self.count += 1
        info = transport.get_extra_info
        local = info("sockname")
        seen: dict[str, Any] = {
            "reflect": 1,
            "client": _address(peer if peer is not None else info("peername")),
            "local": _address(local),
            "instance": {
                "hostname": self.hostname,
                "pid": self.pid,
                "worker": self.worker,
                "port": local[1] if isinstance(local, tuple) else None,
            },
            "received": rfc3339(time.time()),
        }
        sock = info("socket")
        if peer is None and sock is not None and sock.family != socket.AF_UNIX:
            with contextlib.suppress(OSError):  # reset meanwhile
                seen["socket_peer"] = _address(sock.getpeername())
        header = info("proxy_header")
        if header is not None:
            seen["proxy_header"] = {
                "source": _address(header.source),
                "destination": _address(header.destination),
            }
        tls = info("ssl_object")
        if tls is not None:
            cert = tls.getpeercert()
            subject = dict(x[0] for x in cert.get("subject", ())) if cert else None
            seen["tls"] = {
                "version": tls.version(),
                "cipher": (tls.cipher() or (None,))[0],
                "alpn": tls.selected_alpn_protocol(),
                "sni": getattr(tls, "aioecho_sni", None),
                "client_certificate": subject,
            }
        if size is not None:
            seen["size"] = size
        return json.dumps(seen, separators=(",", ":")).encode() + b"\n"


def _address(sockaddr: Any) -> str | None:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host = str(sockaddr[0])
        return f"[{host}]:{sockaddr[1]}" if ":" in host else f"{host}:{sockaddr[1]}"
    return str(sockaddr) if sockaddr else None


class ReflectProtocol(asyncio.Protocol):
    """In front of the echo protocol until the connection's start is told apart."""

    def __init__(self, inner: Callable[[], asyncio.Protocol], reflections: Reflections) -> None:
        self._inner = inner()
        self._reflections = reflections
        self._held = b""
        self._timer: asyncio.TimerHandle | None = None
        self._decided = False
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._inner.connection_made(transport)  # admitted, greeted (--banner) now

    def data_received(self, data: bytes) -> None:
        if self._decided:  # the transport's hand-over lags by a call (TLS: early data)
            self._inner.data_received(data)
            return
        held = self._held = self._held + data
        if len(held) < len(MAGIC) and MAGIC.startswith(held):
            if self._timer is None:  # a slow client: its magic, byte by byte
                self._timer = asyncio.get_running_loop().call_later(
                    MAGIC_WAIT, self._hand_over, False
                )
            return
        self._hand_over(held.startswith(MAGIC))

    def eof_received(self) -> bool:
        if not self._decided:
            self._hand_over(False)
        return bool(self._inner.eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _hand_over(self, reflect: bool) -> None:
        """The start is told: the reflection first if asked, then the echo's, for good."""
        if self._decided:
            return
        self._decided = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rest, self._held = self._held, b""
        transport = self.transport
        if transport.is_closing():
            return
        if reflect:
            rest = rest[len(MAGIC) :]
            transport.write(self._reflections.line(transport))
        transport.set_protocol(self._inner)
        if rest:
            self._inner.data_received(rest)


class ReflectingDatagramProtocol(EchoDatagramProtocol):
    """UDP: a datagram that starts with the magic is answered with the JSON line (its size
    included), and what follows the magic, if anything, is echoed in a datagram of its own."""

    def __init__(self, *args: Any, reflections: Reflections, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reflections = reflections

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not data.startswith(MAGIC):
            super().datagram_received(data, addr)
            return
        if not self.admit(data, addr):
            return
        self.send(self._reflections.line(self.transport, len(data), addr), addr)
        rest = data[len(MAGIC) :]
        if rest:
            self.send(rest, addr)

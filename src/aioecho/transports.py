"""Small things done to a transport, by the server's faults, the proxy and check alike: reset a
connection (RST), and pause reading while any of several reasons holds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

__all__ = ["pause_for", "reset"]


def pause_for(transport: asyncio.Transport, reasons: set[str], reason: str, paused: bool) -> None:
    """Pause reading from transport while any of reasons holds; resume when none does."""
    before = bool(reasons)
    if paused:
        reasons.add(reason)
    else:
        reasons.discard(reason)
    if transport.is_closing() or before == bool(reasons):
        return
    if reasons:
        transport.pause_reading()
    else:
        transport.resume_reading()


def reset(transport: asyncio.Transport) -> None:
    """Close with RST: SO_LINGER on, with a timeout of 0, then close."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family != socket.AF_UNIX:
        # ValueError: uvloop's socket of a connection closed meanwhile (descriptor -1)
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()

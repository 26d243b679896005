"""Addresses as people read them: '127.0.0.1 port 10000', '::1 port 53 (udp)', a socket path,
and the seed's per-peer names (EchoServer_127.0.0.1_54321). Every message that names a place
gets its text from here.

Pure: imports neither asyncio, socket nor ssl. A socket address is what the socket module
returns: a (host, port, ...) tuple for IP, a str (or bytes) path for a Unix socket.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Final

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_UDP6_PAYLOAD",
    "MAX_UDP_PAYLOAD",
    "describe_target",
    "format_address",
    "host_port",
    "peer_name",
]

DEFAULT_HOST: Final = "localhost"
DEFAULT_PORT: Final = 10000
MAX_UDP_PAYLOAD: Final = 65507  # 65535 less the IPv4 and UDP headers
MAX_UDP6_PAYLOAD: Final = 65527  # IPv6: 65535 less the UDP header (the IP header is apart)


def host_port(host: str, port: int | str, udp: bool = False) -> str:
    """'localhost port 10000', or '... (udp)'."""
    return f"{host} port {port} (udp)" if udp else f"{host} port {port}"


def format_address(sockaddr: Any, udp: bool = False) -> str:
    """A socket address: '127.0.0.1 port 54321', '::1 port 7 (udp)' or a Unix socket path."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return host_port(sockaddr[0], sockaddr[1], udp)
    if isinstance(sockaddr, bytes):
        return sockaddr.decode(errors="backslashreplace")
    return str(sockaddr)


def describe_target(hosts: Sequence[str], port: int, unix: str | None = None) -> str:
    """Where a server is asked to listen: 'localhost, ::1 port 10000' or the Unix socket path."""
    return unix if unix is not None else host_port(", ".join(hosts), port)


_unnamed_peers = itertools.count(1)


def peer_name(prefix: str, peername: Any) -> str:
    """The seed's per-connection name: EchoServer_::1_63347; a Unix socket peer has no address,
    so it gets a number: EchoServer_unix_7."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{prefix}_{peername[0]}_{peername[1]}"
    if peername is None:  # the transport no longer knows (uvloop, once closed)
        return f"{prefix}_unknown"
    return f"{prefix}_unix_{next(_unnamed_peers)}"

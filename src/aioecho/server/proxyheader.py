"""The PROXY protocol header (HAProxy's specification, versions 1 and 2): a balancer's line or
block before the payload that says who the client is. Pure: bytes in, a ProxyHeader out.

    v1: b'PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\\r\\n' (at most 107 bytes)
    v2: the 12-byte signature, version/command, family/transport, a 2-byte length, addresses,
        then TLVs (skipped here)
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["ProxyHeader", "ProxyHeaderError", "parse"]

V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107  # bytes, CRLF included
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED: Final = 16  # signature, version/command, family, length
V2_MAX_PAYLOAD: Final = 4096  # bytes of addresses and TLVs we accept (the spec allows 65535)


class ProxyHeaderError(ValueError):
    """Not a valid PROXY protocol header: the connection is closed."""


@dataclass(frozen=True)
class ProxyHeader:
    """source and destination as (host, port), or None when the header says LOCAL or UNKNOWN
    (a health check from the balancer itself: the connection's own addresses stand)."""

    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int  # bytes the header took, to be dropped from the stream
    version: int


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of data, or None if more bytes are needed to tell."""
    if not data:
        return None
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    raise ProxyHeaderError("no PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    if not data.startswith(V1_PREFIX[: len(data)]):
        raise ProxyHeaderError("no PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"v1 header longer than {V1_MAX} bytes")
        return None
    try:
        words = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header is not ASCII") from None
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return ProxyHeader(None, None, end + 2, 1)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("v1 header is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'")
    version = 4 if words[1] == "TCP4" else 6
    source = (_address(words[2], version), _port(words[4]))
    destination = (_address(words[3], version), _port(words[5]))
    return ProxyHeader(source, destination, end + 2, 1)


def _address(text: str, version: int) -> str:
    # No scope id (fe80::1%eth0): a balancer never sends one, and it would carry any text the
    # client chose into the connection's name and every log line.
    try:
        address = ipaddress.ip_address(text) if "%" not in text else None
    except ValueError:
        address = None
    if address is None:
        raise ProxyHeaderError(f"v1 header: {text!r} is not an address")
    if address.version != version:
        raise ProxyHeaderError(f"v1 header: {text!r} is not an IPv{version} address")
    return str(address)


def _port(text: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyHeaderError(f"v1 header: {text!r} is not a port")
    return int(text)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if not V2_SIGNATURE.startswith(data[:12]):
        raise ProxyHeaderError("no PROXY protocol header")
    if len(data) < V2_FIXED:
        return None
    version_command, family, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"v2 header with version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyHeaderError(f"v2 header with command {command}")
    if length > V2_MAX_PAYLOAD:
        raise ProxyHeaderError(f"v2 header of {length} bytes (at most {V2_MAX_PAYLOAD})")
    if len(data) < V2_FIXED + length:
        return None
    total = V2_FIXED + length
    if command == 0:  # LOCAL: the balancer's own connection (a health check)
        return ProxyHeader(None, None, total, 2)
    body = data[V2_FIXED:total]
    if family == 0x11:  # TCP over IPv4
        if length < 12:
            raise ProxyHeaderError("v2 header too short for IPv4 addresses")
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
        source = (str(ipaddress.IPv4Address(src)), sport)
        destination = (str(ipaddress.IPv4Address(dst)), dport)
    elif family == 0x21:  # TCP over IPv6
        if length < 36:
            raise ProxyHeaderError("v2 header too short for IPv6 addresses")
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
        source = (str(ipaddress.IPv6Address(src)), sport)
        destination = (str(ipaddress.IPv6Address(dst)), dport)
    else:  # UNSPEC, Unix or datagram addresses: keep the connection's own
        return ProxyHeader(None, None, total, 2)
    return ProxyHeader(source, destination, total, 2)

"""`aioecho client --udp`: each message one datagram, sent until the same datagram comes back."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

from ..addresses import MAX_UDP_PAYLOAD, format_address
from ..errors import ConfigError, ConnectError, EchoError, ResolveError, describe_os_error
from ..logs import ConnectionLog, preview
from .config import ClientConfig

__all__ = ["echo_datagrams"]

_log = logging.getLogger("aioecho.udp")


class _DatagramClientProtocol(asyncio.DatagramProtocol):
    """Hands every reply, or the first error (an ICMP port unreachable), to a queue."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.replies.put_nowait(exc)


async def echo_datagrams(messages: list[bytes], config: ClientConfig) -> None:
    """Send each message as one datagram and wait for the same datagram back, resending up to
    config.retries times (UDP may drop); the whole exchange of one message is bounded by
    config.timeout. Raises EchoError when a datagram gets no echo, ConnectError when the host
    says nobody listens."""
    if not all(messages):
        raise ConfigError("--udp: an empty message cannot be sent as a datagram")
    loop = asyncio.get_running_loop()
    log = ConnectionLog(logging.getLogger("aioecho.client"), "EchoClient")
    where = config.where
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            _DatagramClientProtocol, remote_addr=(config.host, config.port)
        )
    except socket.gaierror as err:
        raise ResolveError(config.host, err) from None
    except OSError as err:
        raise ConnectError(where, describe_os_error(err)) from None
    try:
        peer = transport.get_extra_info("peername")
        log.info("connecting to %s", format_address(peer, udp=True))
        per_try = config.timeout / (config.retries + 1)
        for number, message in enumerate(messages, 1):
            for _attempt in range(config.retries + 1):
                log.info("sending %s", preview(message))
                try:
                    transport.sendto(message)
                    if await _await_reply(protocol.replies, message, per_try, log, where):
                        break
                except OSError as err:
                    if err.errno == errno.EMSGSIZE:
                        raise EchoError(
                            f"datagram {number} ({len(message)} bytes) is over the largest UDP "
                            f"payload ({MAX_UDP_PAYLOAD} bytes over IPv4)"
                        ) from None
                    raise ConnectError(where, describe_os_error(err)) from None
            else:
                raise EchoError(
                    f"no echo of datagram {number} after {config.retries + 1} tries "
                    f"of {per_try:g}s (--timeout, --retries)"
                )
    finally:
        transport.close()


async def _await_reply(
    replies: asyncio.Queue[bytes | Exception],
    message: bytes,
    timeout: float,
    log: ConnectionLog,
    where: str,
) -> bool:
    """True once `message` comes back; False if timeout seconds pass first. A reply that is not
    `message` (a late duplicate of an earlier one, or a wrong echo) is logged and skipped."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            reply = await asyncio.wait_for(replies.get(), max(0.0, remaining))
        except asyncio.TimeoutError:
            return False
        if isinstance(reply, Exception):
            raise reply  # an ICMP error (port unreachable), or a datagram too big to send
        log.info("received %s", preview(reply))
        if reply == message:
            return True
        log.warning("ignoring a datagram that is not the echo of the one sent last")

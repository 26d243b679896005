#!/usr/bin/env python3
"""The bare price of start_tls: a bare uvloop echo server that takes each connection through
loop.start_tls itself, as aioecho does (so that a handshake is counted from the accept and a
failed one can be logged), and nothing more; beside tls_baseline.py, which lets the loop's own
TLS server path do the handshake. Same settings and warm-up as tls_baseline.py.

    python benchmarks/tls_starttls_baseline.py PORT CERT KEY
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any

import uvloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Accept(asyncio.Protocol):
    """Until start_tls takes the connection over, uvloop may still deliver the first bytes
    (the ClientHello): they are fed to the TLS layer once it is in place. Bytes decrypted
    before the hand-over are passed to the echo after it."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.raw: list[bytes] = []
        self.early: list[bytes] = []
        self.plain_phase = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        plain: Any = transport
        plain.pause_reading()
        loop = asyncio.get_running_loop()
        self.task = loop.create_task(self.handshake(loop, plain))
        loop.call_soon(self.taken_over, plain)

    def taken_over(self, plain: Any) -> None:
        self.plain_phase = False
        if self.raw:
            data, tls = b"".join(self.raw), plain.get_protocol()

            def feed() -> None:
                buffer = tls.get_buffer(len(data))
                buffer[: len(data)] = data
                tls.buffer_updated(len(data))

            asyncio.get_running_loop().call_soon(feed)

    async def handshake(self, loop: Any, plain: Any) -> None:
        """The hand-over follows start_tls in the same step of the task, before uvloop's TLS
        layer delivers the first data, as aioecho does."""
        try:
            secure = await loop.start_tls(plain, self, self.context, server_side=True)
        except Exception:
            return
        if secure is None:
            return
        echo = Echo()
        echo.connection_made(secure)
        secure.set_protocol(echo)
        for data in self.early:
            echo.data_received(data)

    def data_received(self, data: bytes) -> None:
        (self.raw if self.plain_phase else self.early).append(data)


async def main(port: int, cert: str, key: str) -> None:
    block = bytearray(1024 * 1024)  # the warm-up of tls_baseline.py
    del block
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Accept(context), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))

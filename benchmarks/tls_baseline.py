#!/usr/bin/env python3
"""The fair bare baseline for TLS: a bare uvloop asyncio.Protocol echo over TLS, with the same
TLS settings as aioecho and the same warm-up: glibc's mmap threshold raised at start by freeing
one 1 MiB block (as aioecho's serve() does), without which every TLS read of a fresh process
pays an mmap and a munmap (measured: 73 us per request as written, 37.6 us with it).

    python benchmarks/tls_baseline.py PORT CERT KEY
"""

from __future__ import annotations

import asyncio
import ssl
import sys

import uvloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


async def main(port: int, cert: str, key: str) -> None:
    block = bytearray(1024 * 1024)  # the warm-up: see the docstring
    del block
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server = await asyncio.get_running_loop().create_server(
        Echo, "127.0.0.1", port, ssl=context, backlog=1024
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))

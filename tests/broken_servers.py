"""Echo servers each broken in one known way, for `aioecho check` to catch:

    python tests/broken_servers.py KIND    # prints 'listening on port N', serves until killed

drop-on-eof        holds each chunk's echo 20 ms; on the peer's EOF, closes at once (the held
                   echo is lost)
flip               flips one byte of every 4 MiB it echoes on a connection
unbounded          never stops reading: echo the peer does not read piles up in memory
close-after-first  echoes the first chunk it reads, then closes
idle-reset         resets a connection that was idle for 3 seconds
reset-500          echoes the first 500 bytes of each connection, then resets it (blocking
                   sockets and a thread per connection: nothing of asyncio)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
from typing import cast

FLIP_EVERY = 4 * 1024**2
IDLE_RESET = 3.0  # seconds
HOLD_MOST = 1024**2  # bytes drop-on-eof holds before it stops reading


class Echo(asyncio.Protocol):
    """A correct echo with flow control; the broken ones change one thing each."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.write_eof()
        return True

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


class DropOnEof(Echo):
    def __init__(self) -> None:
        self.held: list[bytes] = []
        self.size = 0
        self.writing_paused = False

    def data_received(self, data: bytes) -> None:
        if not self.held:
            asyncio.get_running_loop().call_later(0.02, self.flush)
        self.held.append(data)
        self.size += len(data)
        if self.size > HOLD_MOST:
            self.transport.pause_reading()  # flow control kept, so backpressure holds

    def flush(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"".join(self.held))
            if not self.writing_paused:
                self.transport.resume_reading()
        self.held.clear()
        self.size = 0

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.transport.abort()
        return False


class Flip(Echo):
    def __init__(self) -> None:
        self.echoed = 0

    def data_received(self, data: bytes) -> None:
        start = self.echoed
        self.echoed += len(data)
        mark = (start // FLIP_EVERY + 1) * FLIP_EVERY - 1  # the next byte to flip
        if mark < self.echoed:
            changed = bytearray(data)
            changed[mark - start] ^= 0x01
            data = bytes(changed)
        self.transport.write(data)


class Unbounded(Echo):
    def pause_writing(self) -> None:
        pass  # the fault: keeps reading whatever the peer does

    def resume_writing(self) -> None:
        pass


class CloseAfterFirst(Echo):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        self.transport.close()


class IdleReset(Echo):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.timer = self.loop.call_later(0.05, self.sweep)

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        super().data_received(data)

    def sweep(self) -> None:
        if self.loop.time() - self.last >= IDLE_RESET:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        else:
            self.timer = self.loop.call_later(0.05, self.sweep)

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()


KINDS: dict[str, type[Echo]] = {
    "drop-on-eof": DropOnEof,
    "flip": Flip,
    "unbounded": Unbounded,
    "close-after-first": CloseAfterFirst,
    "idle-reset": IdleReset,
}


RESET_AFTER = 500


def reset_after(conn: socket.socket) -> None:
    echoed = 0
    # no Nagle: the last small echo must leave before the reset, not wait for an ACK
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while echoed < RESET_AFTER:
            data = conn.recv(RESET_AFTER - echoed)
            if not data:
                return
            conn.sendall(data)
            echoed += len(data)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def serve_reset_after() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        print(f"listening on port {listener.getsockname()[1]}", flush=True)
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=reset_after, args=(conn,), daemon=True).start()


async def main(kind: str) -> None:
    server = await asyncio.get_running_loop().create_server(KINDS[kind], "127.0.0.1", 0)
    print(f"listening on port {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "reset-500":
        serve_reset_after()
    else:
        asyncio.run(main(sys.argv[1]))

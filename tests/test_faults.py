"""Misbehaving peers mixed with well-behaved ones: the good ones get exact echoes, the server's
memory stays bounded, and connections and descriptors return to where they started."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct

from support import ServerProcess, exchange, open_fds, pattern_bytes, sha256, wait_for_stats

MIB = 1024 * 1024


async def well_behaved(port: int, size: int, seed: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = pattern_bytes(size, seed)

    async def send() -> None:
        for pos in range(0, size, 256 * 1024):
            writer.write(data[pos : pos + 256 * 1024])
            await writer.drain()
        writer.write_eof()

    async def receive() -> tuple[int, str]:
        digest, got = hashlib.sha256(), 0
        while chunk := await reader.read(MIB):
            digest.update(chunk)
            got += len(chunk)
        return got, digest.hexdigest()

    _, (got, digest) = await asyncio.gather(send(), receive())
    writer.close()
    await writer.wait_closed()
    return got == size and digest == sha256(data)


async def idle(port: int, done: asyncio.Event) -> None:
    """Connects and never sends."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    await done.wait()
    writer.close()


async def slow_reader(port: int, done: asyncio.Event) -> None:
    """Sends 2 MiB, then reads one byte now and then."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1)
    writer.transport.set_write_buffer_limits(high=4 * MIB)
    writer.write(b"s" * 2 * MIB)
    while not done.is_set():
        await reader.read(1)
        with contextlib.suppress(asyncio.TimeoutError):  # the peer's pace, not a synchronisation
            await asyncio.wait_for(done.wait(), 0.2)
    writer.transport.abort()


async def resetter(port: int, rounds: int) -> None:
    """Sends a burst, reads a little, and resets (SO_LINGER 0), over and over."""
    for _ in range(rounds):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"r" * 200_000)
        await reader.read(1000)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def mixed_load(port: int) -> list[bool]:
    done = asyncio.Event()
    bad = [asyncio.ensure_future(idle(port, done)) for _ in range(200)]
    bad += [asyncio.ensure_future(slow_reader(port, done)) for _ in range(50)]
    bad += [asyncio.ensure_future(resetter(port, 3)) for _ in range(50)]
    try:
        return list(await asyncio.gather(*(well_behaved(port, 10 * MIB, i) for i in range(100))))
    finally:
        done.set()
        await asyncio.gather(*bad)


def test_good_clients_get_exact_echoes_among_bad_ones() -> None:
    max_buffer = 256 * 1024
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        pid = server.proc.pid
        # One echo first: the loop opens some descriptors lazily (libuv reserves one for its
        # EMFILE trick once it accepts), and the start figures must include them.
        assert exchange(server.port, b"warm-up") == b"warm-up"
        wait_for_stats(server, active=0)
        fds_before, rss_before = open_fds(pid), server.rss_kib()
        results = asyncio.run(mixed_load(server.port))
        rss_peak = server.rss_kib()
        assert all(results), f"{results.count(False)} of 100 good clients got a wrong echo"
        stats = wait_for_stats(server, active=0)
        assert stats["active"] == 0
        assert stats["accepted"] == 1 + 100 + 200 + 50 + 150
        assert open_fds(pid) == fds_before
        assert server.stop() == 0
    # README's bound: per open connection --max-buffer of queued echo plus one 256 KiB read
    bound_kib = 400 * (max_buffer + 256 * 1024) // 1024
    grown_kib = rss_peak - rss_before
    print(f"\nserver RSS {rss_before} KiB -> {rss_peak} KiB (+{grown_kib}), bound +{bound_kib} KiB")
    assert grown_kib < bound_kib

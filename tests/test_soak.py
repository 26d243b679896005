"""Soak (`make soak`, not in `make test`): thousands of connections cycling for minutes; the
server's RSS and open descriptors must come back to their baseline. AIOECHO_SOAK_SECONDS sets
the length (default 120)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from support import ServerProcess, open_fds, wait_for_stats

SECONDS = float(os.environ.get("AIOECHO_SOAK_SECONDS", "120"))
BATCH = 1000  # connections open at once
PAYLOAD = b"soak" * 1024


async def one(port: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(PAYLOAD)
    writer.write_eof()
    echoed = await reader.read()
    writer.close()
    await writer.wait_closed()
    return echoed == PAYLOAD


async def cycle(port: int, until: float) -> int:
    done = 0
    while time.monotonic() < until:
        results = await asyncio.gather(*(one(port) for _ in range(BATCH)))
        assert all(results)
        done += len(results)
    return done


@pytest.mark.slow
@pytest.mark.timeout(SECONDS * 3 + 120)
def test_soak_returns_to_baseline() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        pid = server.proc.pid
        asyncio.run(cycle(server.port, time.monotonic() + 5))  # warm up: allocator, caches
        wait_for_stats(server, active=0)
        rss0, fds0 = server.rss_kib(), open_fds(pid)
        started = time.monotonic()
        count = asyncio.run(cycle(server.port, started + SECONDS))
        elapsed = time.monotonic() - started
        stats = wait_for_stats(server, active=0)
        rss1, fds1 = server.rss_kib(), open_fds(pid)
        assert server.stop() == 0
    print(
        f"\nsoak: {count} connections in {elapsed:.0f}s ({count / elapsed:.0f}/s), "
        f"RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}, stats {stats}"
    )
    assert stats["active"] == 0
    assert fds1 == fds0
    assert rss1 - rss0 < 8 * 1024, f"RSS grew by {rss1 - rss0} KiB"

"""`aioecho server --workers N`: N worker processes on one port, supervised by this one.

TCP: each worker listens on its own socket with SO_REUSEPORT, and the kernel spreads new
connections over them (a single shared socket would not: under asyncio and libuv the first
worker woken takes every queued connection at once). This process only reserves the port (a
bound socket that does not listen, so it is never handed a connection). UDP and Unix sockets,
and every socket where SO_REUSEPORT is missing: one socket opened here and inherited by all.

A worker that dies is started again; SIGINT/SIGTERM is passed on once to every worker, which
drains its connections; SIGUSR1 is passed on too. Workers run in their own session, so a
Ctrl-C at the terminal reaches them only through here, and each stops by itself if this
process disappears.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any, Final

from .config import ServerConfig
from .listeners import announce, open_sockets, remove_unix_socket
from .logs import NOTICE
from .server import describe_target
from .tls import server_context

__all__ = ["supervise", "worker_count"]

_log = logging.getLogger("aioecho.main")

RESTART_BACKOFF: Final = 1.0  # seconds: a worker that dies this soon is restarted this late


def worker_count(requested: int) -> int:
    """--workers 0 means one per CPU."""
    return requested if requested > 0 else (os.cpu_count() or 1)


async def supervise(config: ServerConfig, count: int, argv: Sequence[str]) -> None:
    """Open the shared sockets, run `count` workers with `argv` (the server's own arguments)
    until SIGINT/SIGTERM, then stop them gracefully."""
    loop = asyncio.get_running_loop()
    reuse_port = hasattr(socket, "SO_REUSEPORT") and config.unix is None
    _log.info("starting up on %s with %d workers", describe_target(config), count)
    if config.tls_cert is not None and config.tls_key is not None:
        server_context(config.tls_cert, config.tls_key)  # fail here, not in every worker
    sockets, unix_inode = await open_sockets(config, reuse_port=reuse_port, listen=not reuse_port)
    shared = [s for s in sockets if not (reuse_port and s.type == socket.SOCK_STREAM)]
    fds = [s.fileno() for s in shared]
    for fd in fds:
        os.set_inheritable(fd, True)
    port = sockets[0].getsockname()[1] if config.unix is None else 0
    # Each worker writes a byte here once it serves: the port is announced only then, since the
    # reserved TCP socket does not listen and would refuse a client that came sooner.
    ready_read, ready_write = os.pipe()
    os.set_inheritable(ready_write, True)
    ready = asyncio.StreamReader()
    ready_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(ready), os.fdopen(ready_read, "rb", 0)
    )
    command = [
        sys.executable, "-m", "aioecho", *argv, "--port", str(port),
        "--worker-fds", ",".join(map(str, fds)) or "none",
        "--worker-parent", str(os.getpid()), "--worker-ready-fd", str(ready_write),
    ] + (["--worker-reuse-port"] if reuse_port else [])  # fmt: skip

    procs: dict[int, asyncio.subprocess.Process] = {}
    stopping = asyncio.Event()

    async def keep_running(number: int) -> None:
        while not stopping.is_set():
            started = loop.time()
            proc = await asyncio.create_subprocess_exec(
                *command, "--worker-id", str(number),
                stdin=asyncio.subprocess.DEVNULL, pass_fds=[*fds, ready_write],
                start_new_session=True,
            )  # fmt: skip
            procs[number] = proc
            _log.info("worker %d started (pid %d)", number, proc.pid)
            status = await proc.wait()
            if stopping.is_set():
                return
            _log.warning(
                "worker %d (pid %d) exited with status %d: restarting it", number, proc.pid, status
            )
            if loop.time() - started < RESTART_BACKOFF:
                await asyncio.sleep(RESTART_BACKOFF)

    def forward(signum: int) -> None:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signum)

    def stop() -> None:
        if stopping.is_set():  # a second signal: workers abort what is left
            forward(signal.SIGTERM)
            return
        stopping.set()
        _log.info("stopping %d workers", len(procs))
        forward(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    loop.add_signal_handler(signal.SIGUSR1, forward, signal.SIGUSR1)
    running = asyncio.gather(*(keep_running(n) for n in range(1, count + 1)))
    try:
        await _announce_when_ready(ready, count, sockets, running)
        await running
    finally:
        ready_transport.close()
        os.close(ready_write)
        for sock in sockets:
            sock.close()
        if config.unix is not None and unix_inode is not None:
            remove_unix_socket(config.unix, unix_inode)
    _log.info("closing server: every worker has stopped")


async def _announce_when_ready(
    ready: asyncio.StreamReader,
    count: int,
    sockets: list[socket.socket],
    running: asyncio.Future[list[None]],
) -> None:
    """Print the listening lines once every first worker serves (or the workers are gone)."""
    waiting = asyncio.ensure_future(ready.readexactly(count))
    either: set[asyncio.Future[Any]] = {waiting, running}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if waiting.done():
        announce(sockets, NOTICE)
    else:
        waiting.cancel()

"""`aioecho server --workers N`: N worker processes on one port, supervised by this one.

TCP: each worker listens on its own socket with SO_REUSEPORT, and the kernel spreads new
connections over them (a single shared socket would not: under asyncio and libuv the first
worker woken takes every queued connection at once). This process only reserves the port (a
bound socket that does not listen, so it is never handed a connection). UDP and Unix sockets,
and every socket where SO_REUSEPORT is missing: one socket opened here and inherited by all.

A worker that dies is started again; SIGINT, SIGTERM or SIGHUP is passed on, as SIGTERM, once
to every worker, which drains its connections; SIGUSR1 (statistics) and SIGUSR2 (reload the
TLS certificate) are passed on too. Workers run in their own session, so a Ctrl-C at the
terminal reaches them only through here, and each stops by itself if this process disappears.

Both halves live here. A worker is `aioecho server` run with the supervisor's own arguments;
what makes it a worker (its number, the inherited descriptors, whom to tell it is ready) travels
in one environment variable, _AIOECHO_ROLE, never in command-line flags, so nothing hidden
can clash with a public option (nor with AIOECHO_<OPTION>, the options' own variables).
`aioecho bench --workers` uses the same variable for its share (roles.py holds it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any, Final

from ..addresses import describe_target
from ..errors import AioechoError, ConfigError, ExitStatus
from ..logs import NOTICE
from ..roles import WorkerRole
from ..tls import server_context
from .config import ServerConfig
from .listeners import announce, open_sockets, remove_unix_socket
from .sdnotify import Notifier

__all__ = [
    "check_metrics_ports",
    "report_ready",
    "stop_when_orphaned",
    "supervise",
    "worker_sockets",
]

_log = logging.getLogger("aioecho.main")

RESTART_BACKOFF: Final = 1.0  # seconds: a worker that dies this soon is restarted this late


def check_metrics_ports(config: ServerConfig, count: int) -> None:
    """Worker N serves --metrics on the Nth port from the one given: all must exist."""
    if config.metrics is not None and config.metrics[1]:
        last = config.metrics[1] + count - 1
        if last > 65535:
            raise ConfigError(
                f"--metrics port {config.metrics[1]} with {count} workers: worker {count} "
                f"would serve on port {last} (each worker takes the next port; at most 65535)"
            )


async def supervise(
    config: ServerConfig,
    count: int,
    argv: Sequence[str],
    inherited: list[socket.socket] | None = None,
    how: str = "",
) -> None:
    """Open the shared sockets (or share `inherited` ones: socket activation, --fd), run
    `count` workers with `argv` (the server's own arguments) until SIGINT/SIGTERM, then stop
    them gracefully."""
    loop = asyncio.get_running_loop()
    notifier = Notifier.from_environment()  # before the workers start: theirs is not the main pid
    reuse_port = hasattr(socket, "SO_REUSEPORT") and config.unix is None and inherited is None
    if config.tls_cert is not None and config.tls_key is not None:
        # fail here, not in every worker
        server_context(config.tls_cert, config.tls_key, config.tls_client_ca, config.alpn)
    if inherited is not None:
        _log.info("starting up with %d workers", count)
        sockets, unix_inode = inherited, None
    else:
        target = describe_target(config.hosts, config.port, config.unix)
        _log.info("starting up on %s with %d workers", target, count)
        sockets, unix_inode = await open_sockets(
            config, reuse_port=reuse_port, listen=not reuse_port
        )
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
    command = [sys.executable, "-m", "aioecho", *argv]
    if config.unix is None and inherited is None:  # port 0: the port the supervisor reserved
        command += ["--port", str(port)]
    failure: list[str] = []
    announced = asyncio.Event()  # every first worker served: later deaths are restarted

    procs: dict[int, asyncio.subprocess.Process] = {}
    stopping = asyncio.Event()

    async def keep_running(number: int) -> None:
        while not stopping.is_set():
            started = loop.time()
            role = WorkerRole(number, os.getpid(), tuple(fds), reuse_port, ready_write)
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=[*fds, ready_write],
                start_new_session=True,
                env=role.environ(),
            )
            procs[number] = proc
            _log.info("worker %d started (pid %d)", number, proc.pid)
            status = await proc.wait()
            if stopping.is_set():
                return
            if status == ExitStatus.USAGE or not announced.is_set():
                # it will not start however often it is restarted (a taken --metrics port)
                failure.append(f"worker {number} could not start (exit status {status})")
                stop()
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
        if notifier is not None:
            notifier.send("STOPPING=1", f"STATUS=stopping {len(procs)} workers")
        forward(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop)
    loop.add_signal_handler(signal.SIGUSR1, forward, signal.SIGUSR1)
    loop.add_signal_handler(signal.SIGUSR2, forward, signal.SIGUSR2)  # each reloads its own

    def status() -> str:
        alive = sum(proc.returncode is None for proc in procs.values())
        return f"{alive} of {count} workers running"

    running = asyncio.gather(*(keep_running(n) for n in range(1, count + 1)))
    keeper = None
    try:
        if await _announce_when_ready(ready, count, sockets, running, how):
            announced.set()
            if notifier is not None:
                notifier.send("READY=1", f"STATUS={status()}")
                keeper = asyncio.ensure_future(notifier.keep_alive(status))
        await running
    finally:
        if keeper is not None:
            keeper.cancel()
        if notifier is not None:
            notifier.close()
        ready_transport.close()
        os.close(ready_write)
        for sock in sockets:
            sock.close()
        if config.unix is not None and unix_inode is not None:
            remove_unix_socket(config.unix, unix_inode)
    if failure:
        raise AioechoError(failure[0])
    _log.info("closing server: every worker has stopped")


async def _announce_when_ready(
    ready: asyncio.StreamReader,
    count: int,
    sockets: list[socket.socket],
    running: asyncio.Future[list[None]],
    how: str,
) -> bool:
    """Print the listening lines once every first worker serves (True), or the workers are
    gone (False)."""
    waiting = asyncio.ensure_future(ready.readexactly(count))
    either: set[asyncio.Future[Any]] = {waiting, running}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if waiting.done() and not waiting.exception():
        announce(sockets, NOTICE, how)
        return True
    waiting.cancel()
    return False


# The worker's half.


async def worker_sockets(config: ServerConfig, role: WorkerRole) -> list[socket.socket]:
    """A worker's sockets: those its supervisor opened, and with SO_REUSEPORT its own TCP ones."""
    sockets = [socket.socket(fileno=fd) for fd in role.fds]
    if role.reuse_port and config.tcp:
        own, _ = await open_sockets(
            dataclasses.replace(config, udp=False), reuse_port=True, listen=True
        )
        sockets += own
    return sockets


def report_ready(role: WorkerRole) -> None:
    """Tell the supervisor this worker serves."""
    if role.ready_fd is not None:
        os.write(role.ready_fd, b".")
        os.close(role.ready_fd)


async def stop_when_orphaned(stop: asyncio.Event, role: WorkerRole) -> None:
    """A worker whose supervisor has gone (killed outright, maybe before this worker was even
    serving) stops by itself."""
    while os.getppid() == role.parent:
        await asyncio.sleep(1.0)
    stop.set()

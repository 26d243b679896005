"""`aioecho server`: serve until SIGINT, SIGTERM or SIGHUP, with statistics on SIGUSR1 and every
--stats-interval, the TLS certificate reloaded on SIGUSR2, as a single process or as one of
--workers."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import logging
import resource
import signal
import socket
from collections.abc import Callable

from .. import loops
from .. import loops as _loops
from ..errors import ConfigError
from ..logs import NOTICE, LoopErrorLog
from ..options import Invocation, given
from ..roles import WorkerRole, worker_count
from .config import ServerConfig
from .listeners import activated_sockets, announce, inherited_socket
from .options import add_parser, server_config
from .registry import Admission
from .sdnotify import Notifier
from .serve import FD_RESERVE, Server, serve
from .workers import (
    check_metrics_ports,
    report_ready,
    stop_when_orphaned,
    supervise,
    worker_sockets,
)

__all__ = [
    "STOP_SIGNALS",
    "add_parser",
    "inherited_sockets",
    "raise_open_file_limit",
    "run",
    "run_server",
]

_main_log = logging.getLogger("aioecho.main")
_stats_log = logging.getLogger("aioecho.stats")

# SIGHUP too: a closed terminal should end the server the way Ctrl-C does, draining.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def raise_open_file_limit(wanted: int) -> None:
    """Raise this process's soft limit on open files towards `wanted` (as far as the hard limit
    allows): a server that runs out of descriptors serves nobody well. The program's decision,
    not the library's: serve() only lowers its connection limit to what the limit affords."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def inherited_sockets(config: ServerConfig) -> tuple[list[socket.socket] | None, str]:
    """The listening sockets this process was given rather than asked to open, and how:
    systemd's socket activation (LISTEN_FDS), or --fd."""
    activated = activated_sockets()
    if activated is not None:
        return activated, "socket activation"
    if config.fds:
        return [inherited_socket(fd, config.backlog) for fd in config.fds], "inherited"
    return None, ""


async def run_server(
    config: ServerConfig,
    role: WorkerRole | None = None,
    *,
    connection: Callable[[Admission], Callable[[], asyncio.Protocol]] | None = None,
    inherited: list[socket.socket] | None = None,
    how: str = "",
    fds_per_connection: int = 1,
    fault_counts: collections.Counter[str] | None = None,
) -> None:
    """The server until a stop signal; role: set when this process is one of --workers.
    connection: another protocol than the echo's for stream connections (serve()).
    inherited: sockets to serve instead of opening any (inherited_sockets()).
    fds_per_connection: descriptors each connection holds (the proxy's hold two);
    fault_counts: what connection's faults fired (serve())."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(LoopErrorLog())
    _main_log.info("using %s", loops.describe(loop))
    notifier = Notifier.from_environment() if role is None else None  # (workers: supervisor's)
    stop = asyncio.Event()
    server: Server | None = None
    asked_early: list[int] = []  # SIGUSR1 after the listening lines, before serve() returned

    def log_stats(level: int = NOTICE) -> None:  # shown with -q too: it was asked for
        if server is not None:
            snapshot = server.stats()
            fields = {k: v for k, v in dataclasses.asdict(snapshot).items() if v is not None}
            _stats_log.log(level, "%s", snapshot.line(), extra={"stats": fields})
        else:
            asked_early.append(level)

    # Before serve(): a script may signal as soon as it reads the listening line, and the
    # default action of each of these signals is to end the process.
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, log_stats)
    loop.add_signal_handler(signal.SIGUSR2, lambda: server is not None and server.reload_tls())
    raise_open_file_limit(config.max_connections * fds_per_connection + FD_RESERVE)
    endpoint = None
    if config.metrics is not None:  # before the echo's listeners: open when they are announced
        from .metrics import start_metrics

        host, port = config.metrics
        if role is not None and port:  # per worker: worker N on the Nth port from there
            port += role.number - 1
        worker = role.number if role is not None else None
        endpoint = await start_metrics((host, port), loops.describe(loop), NOTICE, worker=worker)
    watcher = None
    if role is not None:
        sockets = await worker_sockets(config, role)
        server = await serve(
            config,
            sockets=sockets,
            connection=connection,
            worker=role.number,
            fds_per_connection=fds_per_connection,
            fault_counts=fault_counts,
        )
        report_ready(role)
        watcher = asyncio.ensure_future(stop_when_orphaned(stop, role))
    elif inherited is not None:
        announce(inherited, NOTICE, how)
        server = await serve(
            config,
            sockets=inherited,
            connection=connection,
            fds_per_connection=fds_per_connection,
            fault_counts=fault_counts,
        )
    else:
        server = await serve(
            config,
            connection=connection,
            fds_per_connection=fds_per_connection,
            fault_counts=fault_counts,
        )
    if endpoint is not None:
        endpoint.server = server
    if asked_early:  # the listening lines are printed inside serve(): a script may ask at once
        log_stats(asked_early[0])
    keeper = None
    if notifier is not None:  # every listener is open, the metrics one included
        notifier.send("READY=1", f"STATUS={_status(server)}")
        keeper = asyncio.ensure_future(notifier.keep_alive(lambda: _status(server)))
    ticker = asyncio.ensure_future(_every(config.stats_interval, log_stats))
    await stop.wait()
    if notifier is not None:
        notifier.send("STOPPING=1", f"STATUS=draining: {_status(server)}")
    if config.drain_delay:
        await _drain_delay(server, config.drain_delay)
    ticker.cancel()
    if watcher is not None:
        watcher.cancel()
    for signum in STOP_SIGNALS:  # a second signal ends the drain at once
        loop.add_signal_handler(signum, server.abort)
    if config.trace:
        logging.getLogger("aioecho.trace").info(
            "stop signal -> close the listeners; %d open connections get %gs (--drain-timeout) "
            "to finish, then are aborted",
            server.open_connections,
            config.drain_timeout,
        )
    await server.close()
    if endpoint is not None:  # after the drain: /readyz said 503 all along it
        await endpoint.close()
    if keeper is not None:  # the watchdog pinged through the drain
        keeper.cancel()
    if notifier is not None:
        notifier.close()
    log_stats(logging.INFO)


def _status(server: Server) -> str:
    """systemd's STATUS= line: '3 open, 120 accepted, 0 refused'."""
    stats = server.stats()
    return f"{stats.active} open, {stats.accepted} accepted, {stats.refused} refused"


async def _drain_delay(server: Server, delay: float) -> None:
    """--drain-delay: /readyz 503 at once, new connections still served for delay seconds (or
    until another stop signal), then the caller drains."""
    server.unready()
    _main_log.info("not ready: serving new connections for %gs more (--drain-delay)", delay)
    skip = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, skip.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(skip.wait(), delay)


async def _every(interval: float, action: Callable[[], None]) -> None:
    if interval <= 0:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        deadline += interval
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        action()


def handed_over(
    args: argparse.Namespace, config: ServerConfig, role: WorkerRole | None
) -> tuple[list[socket.socket] | None, str]:
    """The sockets handed over to serve (systemd's socket activation, --fd), checked against
    the options that would ask for others; none for a worker (its supervisor took them)."""
    if role is not None:
        return None, ""
    inherited, how = inherited_sockets(config)
    if how == "socket activation" and (
        config.fds or config.unix is not None or given(args, "port") or args.hosts
    ):
        raise ConfigError(
            "socket activation (LISTEN_FDS) hands over the sockets to serve: it does not "
            "go with --host, --port, --unix or --fd"
        )
    return inherited, how


def run(call: Invocation) -> None:
    """`aioecho server` as the command line asked: one process, or a supervisor of --workers."""
    args = call.args
    config = server_config(args)
    workers = worker_count(args.workers)
    if workers > 1:
        check_metrics_ports(config, workers)
    inherited, how = handed_over(args, config, call.role)
    if call.role is None and workers > 1:
        _loops.run(supervise(config, workers, call.argv, inherited, how), call.loop)
    else:
        _loops.run(run_server(config, call.role, inherited=inherited, how=how), call.loop)

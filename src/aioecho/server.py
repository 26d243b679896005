"""The echo server: an EchoServerProtocol per connection, and serve() to listen and shut down.

Callback order (CPython's contract): connection_made -> data_received* -> eof_received? ->
connection_lost, with pause_writing/resume_writing in between when the peer reads slower than
it writes.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import os
import resource
import socket
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from .addresses import describe_target, peer_name
from .config import DEFAULT_MAX_BUFFER, ServerConfig
from .errors import describe_os_error
from .listeners import announce, open_sockets, remove_unix_socket
from .logs import NOTICE, connection_lines, preview
from .ratelimit import UdpPolicy
from .registry import Connections, Linked
from .stats import StatsSnapshot
from .tls import HandshakeFailures, TLSAcceptProtocol, server_context
from .udp import EchoDatagramProtocol

__all__ = ["BannerEchoServerProtocol", "EchoServerProtocol", "Server", "serve"]

_log = logging.getLogger("aioecho.server")
_main_log = logging.getLogger("aioecho.main")

# Descriptors kept free of connections: listeners, the loop's own, a refused peer's moment.
FD_RESERVE: Final = 32


class EchoServerProtocol(asyncio.Protocol, Linked):
    """Echo every byte back in order; answer EOF with EOF; stop reading while the echo is stuck.

    Memory per connection is bounded by max_buffer (pending echo) plus one read from the socket:
    when the transport's write buffer goes over max_buffer, the transport calls pause_writing()
    and the protocol stops reading from that peer until resume_writing().
    """

    # Slots: with 10,000 idle connections the per-connection footprint is the figure that
    # matters (README, Performance).
    __slots__ = (
        "_close_reason",
        "_connections",
        "_debug",
        "_max_buffer",
        "_name",
        "bytes_in",
        "health_check",
        "idle_mark",
        "idle_since",
        "transport",
        "unsent_at_close",
    )

    def __init__(
        self, *, max_buffer: int = DEFAULT_MAX_BUFFER, connections: Connections | None = None
    ) -> None:
        self._max_buffer = max_buffer  # bytes of pending echo before reading pauses
        self._connections = connections  # the server's registry: limits, idle sweep, shutdown
        self._debug = False  # per-chunk lines are on: cached off the hot path
        self._close_reason: str | None = None  # why we ended it, when we did
        self._name = ""  # EchoServer_{host}_{port} (the seed's logger name), once admitted
        self.bytes_in = 0  # received, and so handed back to the transport
        # a balancer's own connection (PROXY LOCAL/UNKNOWN): its lines are DEBUG, and it is
        # counted as a check, not as a client (registry)
        self.health_check = False
        self.unsent_at_close = 0  # echo still queued when we aborted
        self.idle_mark = -1  # the idle sweep's last view of the counters
        self.idle_since = 0.0  # loop time at which idle_mark last changed
        self.transport: asyncio.Transport  # set in connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance-checked: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        if self._connections is not None and not self._connections.admit(self):
            self.transport.close()  # counted and logged (rate-limited) by the registry
            return
        # Named now, not when a line needs it: once a peer has reset, its socket no longer
        # knows who it was, and that is the line that matters.
        self._name = peer_name("EchoServer", transport.get_extra_info("peername"))
        self._debug = _log.isEnabledFor(logging.DEBUG)
        self.transport.set_write_buffer_limits(high=self._max_buffer)
        if _log.isEnabledFor(logging.INFO):
            self._log(self._routine(), "connection accepted")

    @property
    def _admitted(self) -> bool:
        """Not refused by --max-connections (a flag of its own would cost a slot per peer)."""
        return self._name != ""

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._debug:
            self._log(logging.DEBUG, "received %s", preview(data))
            self.transport.write(data)
            self._log(logging.DEBUG, "sent %s", preview(data))
        else:
            self.transport.write(data)

    def eof_received(self) -> bool:
        """Half-close: the transport sends our EOF after the pending echo, then closes."""
        if self._debug:
            self._log(logging.DEBUG, "received EOF")
        if self.transport.can_write_eof():
            self.transport.write_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        if exc is not None and (self.health_check or not self.bytes_in):
            # counted as a check (registry), not as a reset
            self._log(self._routine(), "closing: reset before any data (a health check?)")
        elif exc is not None:
            self._log(logging.WARNING, "closing: %s", describe_os_error(exc))
        elif self._close_reason is not None:
            self._log(logging.INFO, "closing: %s", self._close_reason)
        else:
            self._log(self._routine(), "closing")
        if self._connections is not None:
            self._connections.discard(self, exc)

    def _routine(self) -> int:
        """The level of the accepted and closing lines: DEBUG for a balancer's health check."""
        return logging.DEBUG if self.health_check else logging.INFO

    def pause_writing(self) -> None:
        """The peer is not reading its echo: stop reading what it sends (TCP slows it down)."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def queued(self) -> int:
        return self.transport.get_write_buffer_size()

    def abort(self, reason: str) -> None:
        """End the connection now, dropping queued echo; the close line gives the reason."""
        self._close_reason = reason
        self.unsent_at_close += self.transport.get_write_buffer_size()
        self.transport.abort()

    def _log(self, level: int, message: str, *args: object) -> None:
        """A line that starts `EchoServer_{host}_{port}: ` (the seed's per-peer logger name)."""
        if not _log.isEnabledFor(level):
            return
        name = self._name
        lines = connection_lines()
        if lines is not None and level == logging.INFO:
            lines.add(name, message % args if args else message)
        else:
            _log.log(level, message, *args, extra={"conn": name})


class BannerEchoServerProtocol(EchoServerProtocol):
    """The echo, after a line sent on connect (--banner): which instance answered, for a client
    behind a balancer. A class of its own, so that the plain echo pays nothing for it."""

    __slots__ = ("_banner",)

    def __init__(self, *, banner: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._banner = banner  # formatted but for {port}, the port this connection came to

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._admitted:
            sockname = transport.get_extra_info("sockname")
            port = sockname[1] if isinstance(sockname, tuple) else ""
            self.transport.write(self._banner.replace("{port}", str(port)).encode())


def banner_text(template: str, worker: int) -> str:
    """--banner with {hostname}, {pid} and {worker} filled in ({port} is per connection), as
    one line."""
    text = template.format(
        hostname=socket.gethostname(), pid=os.getpid(), worker=worker, port="{port}"
    )
    return text if text.endswith("\n") else text + "\n"


class Server:
    """A running echo server, as returned by serve(). Use `async with` or call close().

    Where it listens: `addresses` (TCP or TLS) and `udp_addresses`, each (host, port), and
    `unix_path`."""

    def __init__(
        self,
        config: ServerConfig,
        listeners: list[asyncio.Server],
        datagrams: list[tuple[asyncio.DatagramTransport, EchoDatagramProtocol]],
        connections: Connections,
        unix_inode: int | None = None,
        tls_failures: HandshakeFailures | None = None,
        fault_counts: collections.Counter[str] | None = None,
    ) -> None:
        self._config = config
        self._fault_counts = fault_counts  # how often each fault fired, if there are faults
        self._listeners = listeners
        self._datagrams = [transport for transport, _ in datagrams]
        self._datagram_protocols = [protocol for _, protocol in datagrams]
        self._connections = connections
        self._tls_failures = tls_failures
        self._unix_inode = unix_inode  # of the socket file we made, removed on close
        self._closing: asyncio.Future[int] | None = None
        self._unready = False  # unready(): /readyz 503 before close()
        self.unix_path = config.unix if unix_inode is not None else None
        self.addresses: list[tuple[str, int]] = [
            cast(tuple[str, int], sock.getsockname()[:2])
            for listener in listeners
            for sock in listener.sockets
            if sock.family != socket.AF_UNIX
        ]
        self.udp_addresses: list[tuple[str, int]] = [
            cast(tuple[str, int], t.get_extra_info("sockname")[:2]) for t in self._datagrams
        ]

    @property
    def port(self) -> int:
        """The port every listener is bound to."""
        return (self.addresses or self.udp_addresses)[0][1]

    @property
    def draining(self) -> bool:
        """True from unready() or the moment close() began (for /readyz)."""
        return self._closing is not None or self._unready

    def unready(self) -> None:
        """Say not ready (/readyz 503) while still accepting: the --drain-delay before close()."""
        self._unready = True

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def stats(self) -> StatsSnapshot:
        """The counters now: connections, bytes, and UDP datagrams."""
        tcp = self._connections.snapshot()
        faults = {}
        if self._fault_counts is not None:
            fired = self._fault_counts
            faults = {
                "fault_resets": fired["reset"],
                "fault_closes": fired["close"],
                "fault_stalls": fired["stall"],
                "fault_drops": fired["drop"],
                "fault_duplicates": fired["duplicate"],
                "fault_corruptions": fired["corrupt"],
            }
        return dataclasses.replace(
            tcp,
            datagrams_echoed=sum(p.echoed for p in self._datagram_protocols),
            datagrams_dropped=sum(p.dropped for p in self._datagram_protocols),
            **faults,
        )

    async def close(self, drain_timeout: float | None = None) -> int:
        """Stop listening, give open connections drain_timeout seconds (default: the config's) to
        finish, then abort the rest. Returns how many were aborted. Calling it again waits for the
        first call to finish."""
        if self._closing is None:
            timeout = self._config.drain_timeout if drain_timeout is None else drain_timeout
            self._closing = asyncio.ensure_future(self._close(timeout))
        return await asyncio.shield(self._closing)

    async def _close(self, drain_timeout: float) -> int:
        for listener in self._listeners:
            listener.close()
        for datagram in self._datagrams:
            datagram.close()
        if self.unix_path is not None and self._unix_inode is not None:
            remove_unix_socket(self.unix_path, self._unix_inode)
        _main_log.info("closing server")  # after close(): a peer that reads this is refused
        aborted = 0
        if self._connections and not await self._connections.wait_empty(drain_timeout):
            aborted = self._connections.abort_all("still open after the drain timeout")
            _main_log.warning(
                "aborted %d connection%s still open after %gs (--drain-timeout)",
                aborted,
                "" if aborted == 1 else "s",
                drain_timeout,
            )
            await self._connections.wait_empty(drain_timeout + 1.0)
        self._connections.close()
        if self._tls_failures is not None:
            self._tls_failures.flush()
        for listener in self._listeners:
            await listener.wait_closed()
        return aborted

    def abort(self) -> None:
        """End every open connection now, as a second Ctrl-C does."""
        self._connections.abort_all("interrupted")

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(
    config: ServerConfig | None = None,
    *,
    sockets: Sequence[socket.socket] | None = None,
    connection: Callable[[Connections], Callable[[], asyncio.Protocol]] | None = None,
    worker: int = 0,
    fds_per_connection: int = 1,
    fault_counts: collections.Counter[str] | None = None,
) -> Server:
    """Listen as config says (TCP, TLS, UDP, Unix socket) and echo for every peer.

    Returns a Server that tells where it listens (one port for every listener, also when port 0
    asks for a free one). Raises ResolveError, ListenError or TLSSetupError if it cannot start.
    sockets: serve these, already bound (a worker process's), instead of opening any; then
    nothing is announced and no Unix socket file is removed on close. connection: makes the
    protocol factory for stream connections instead of the echo's (the proxy's), given the
    registry its protocols must join. worker: this process's number among --workers (for
    --banner). fds_per_connection: descriptors each connection holds (2 for the proxy's: the
    client's and the upstream's), so that --max-connections is lowered to what the open-file
    limit affords. fault_counts: where the faults of `connection`'s protocols count what fired
    (the proxy's), for the statistics.
    """
    config = config or ServerConfig()
    loop = asyncio.get_running_loop()
    _raise_mmap_threshold()
    connections = Connections(
        max_connections=_affordable_connections(config.max_connections, fds_per_connection),
        idle_timeout=config.idle_timeout,
    )
    # The classes are chosen here, so that the plain ones pay nothing for tracing or faults.
    factory: Callable[[], asyncio.Protocol] = functools.partial(
        EchoServerProtocol, max_buffer=config.max_buffer, connections=connections
    )
    datagram_protocol: Callable[[UdpPolicy], EchoDatagramProtocol] = EchoDatagramProtocol
    if config.trace:
        from .trace import TracingDatagramProtocol, TracingEchoServerProtocol

        factory = functools.partial(
            TracingEchoServerProtocol, max_buffer=config.max_buffer, connections=connections
        )
        datagram_protocol = TracingDatagramProtocol
    if config.banner is not None:
        factory = functools.partial(
            BannerEchoServerProtocol,
            banner=banner_text(config.banner, worker),
            max_buffer=config.max_buffer,
            connections=connections,
        )
    if connection is not None:
        factory = connection(connections)
    elif config.faults.stream or config.faults.datagram:
        from .faults import FaultPlan, FaultyDatagramProtocol, FaultyEchoProtocol

        plan = FaultPlan(config.faults)
        fault_counts = plan.fired
        _main_log.log(NOTICE, "faults: %s", config.faults.describe(plan.seed))
        if config.faults.stream:
            factory = functools.partial(
                FaultyEchoProtocol,
                plan=plan,
                max_buffer=config.max_buffer,
                connections=connections,
            )
        if config.faults.datagram:
            datagram_protocol = functools.partial(FaultyDatagramProtocol, plan=plan)
    tls_failures = HandshakeFailures()
    if config.tls_cert is not None and config.tls_key is not None:
        factory = functools.partial(
            TLSAcceptProtocol,
            server_context(config.tls_cert, config.tls_key),
            factory,
            config.tls_handshake_timeout,
            connections=connections,
            failures=tls_failures,
        )
    if config.proxy_protocol:  # outermost: the header comes before anything else
        from .balancer import ProxyHeaderProtocol

        factory = functools.partial(ProxyHeaderProtocol, factory, connections=connections)
    unix_inode = None
    if sockets is None:
        _main_log.info("starting up on %s", describe_target(config.hosts, config.port, config.unix))
        sockets, unix_inode = await open_sockets(config)
        announce(sockets, NOTICE)
    listeners: list[asyncio.Server] = []
    datagrams: list[tuple[asyncio.DatagramTransport, EchoDatagramProtocol]] = []
    policy = UdpPolicy(config.udp_rate)
    for sock in sockets:
        if sock.type == socket.SOCK_DGRAM:
            datagrams.append(
                await loop.create_datagram_endpoint(
                    functools.partial(datagram_protocol, policy), sock=sock
                )
            )
        elif sock.family == socket.AF_UNIX:
            listeners.append(
                await loop.create_unix_server(factory, sock=sock, backlog=config.backlog)
            )
        else:
            listeners.append(await loop.create_server(factory, sock=sock, backlog=config.backlog))
    return Server(config, listeners, datagrams, connections, unix_inode, tls_failures, fault_counts)


def _affordable_connections(wanted: int, fds_per_connection: int = 1) -> int:
    """--max-connections, lowered if the open-file limit cannot hold that many sockets.

    Running out of descriptors is worse than refusing: asyncio then logs an accept error per
    connection in a loop, and uvloop's libuv silently drops new peers. The limit itself is the
    program's to raise (the CLI does, before serving); a library call leaves it alone."""
    need = wanted * fds_per_connection + FD_RESERVE
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    affordable = max(1, (soft - FD_RESERVE) // fds_per_connection)
    _main_log.warning(
        "the open-file limit (%d) allows %d connections, not %d: --max-connections lowered "
        "(raise the limit with ulimit -n)",
        soft,
        affordable,
        wanted,
    )
    return affordable


def _raise_mmap_threshold() -> None:
    """Remove a cold-start cost of the asyncio loop, which reads with recv(256 KiB).

    glibc serves allocations over its mmap threshold (128 KiB at first) with mmap and munmap, a
    few microseconds each, so every read of a fresh process can pay for two system calls; the
    threshold rises to the size of the first such block that is freed whole, which in a bare
    server happens only when a connection closes (measured here: the bare baseline spends 3.7x
    to 4.9x the CPU per request of its warm self until then). The CLI's own start-up (its
    imports) may already free such a block; freeing one here makes it certain, also for the
    library. Elsewhere than glibc it is harmless.
    """
    block = bytearray(1024 * 1024)
    del block

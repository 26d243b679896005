"""serve(): listen as the config says, with the protocol variant it asks for (plain, banner,
trace, faults; TLS and PROXY-header wrappers around it), and the Server that shuts it down."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import resource
import socket
from collections.abc import Callable, Sequence
from typing import Final, cast

from ..addresses import describe_target
from ..logs import NOTICE
from .config import ServerConfig
from .faults import FaultPlan, FaultyDatagramProtocol, FaultyEchoProtocol
from .listeners import announce, open_sockets, remove_unix_socket
from .protocol import BannerEchoServerProtocol, EchoServerProtocol, banner_text
from .proxy_protocol import ProxyHeaderProtocol
from .ratelimit import UdpPolicy
from .reflect import ReflectingDatagramProtocol, Reflections, ReflectProtocol
from .registry import Admission, Connections, Listener
from .stats import StatsSnapshot
from .tls import HandshakeFailures, ServerContext, TLSAcceptProtocol
from .trace import TracingDatagramProtocol, TracingEchoServerProtocol
from .udp import EchoDatagramProtocol

__all__ = ["FD_RESERVE", "Server", "serve"]

_main_log = logging.getLogger("aioecho.main")

# Descriptors kept free of connections: listeners, the loop's own, a refused peer's moment.
FD_RESERVE: Final = 32


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
        self.tls_context: ServerContext | None = None  # --tls-cert's, for reload_tls()
        self.reflections: Reflections | None = None  # --reflect's
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

    @property
    def tls_handshakes(self) -> HandshakeFailures | None:
        """The TLS handshakes' failures by reason and times (None without TLS)."""
        return self._tls_failures if self.tls_context is not None else None

    def by_transport(self) -> dict[str, dict[str, int]]:
        """accepted, refused, reset and checks by transport (tcp, tls, unix)."""
        counts = self._connections.by_transport
        keys = ("accepted", "refused", "reset", "checks")
        return {t: {k: c[k] for k in keys} for t, c in counts.items()}

    @property
    def header_rejects(self) -> int:
        """Connections closed for want of a valid PROXY protocol header."""
        return self._connections.header_rejects

    def reload_tls(self) -> bool:
        """Load the certificate and key files again for the handshakes that follow (SIGUSR2);
        open connections keep theirs. False (one error line) if they do not load, or there is
        no TLS: the certificate in use stays."""
        if self.tls_context is None:
            _main_log.warning("SIGUSR2 reloads --tls-cert and --tls-key: this server has none")
            return False
        return self.tls_context.reload()

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
            reflections=self.reflections.count if self.reflections is not None else None,
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
    connection: Callable[[Admission], Callable[[], asyncio.Protocol]] | None = None,
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
    raise_mmap_threshold()
    connections = Connections(
        max_connections=_affordable_connections(config.max_connections, fds_per_connection),
        idle_timeout=config.idle_timeout,
        max_buffer=config.max_buffer,
    )
    # The classes are chosen here, so that the plain ones pay nothing for tracing or faults.
    datagram_protocol: Callable[[UdpPolicy], EchoDatagramProtocol] = EchoDatagramProtocol
    if config.trace:
        datagram_protocol = TracingDatagramProtocol
    plan = None
    if connection is None and (config.faults.stream or config.faults.datagram):
        plan = FaultPlan(config.faults)
        fault_counts = plan.fired
        _main_log.log(NOTICE, "faults: %s", config.faults.describe(plan.seed))
        if config.faults.datagram:
            datagram_protocol = functools.partial(FaultyDatagramProtocol, plan=plan)
    reflections = None
    if config.reflect:
        reflections = Reflections(worker)
        datagram_protocol = functools.partial(ReflectingDatagramProtocol, reflections=reflections)
    tls_failures = HandshakeFailures()
    tls_context = None
    if config.tls_cert is not None and config.tls_key is not None:
        tls_context = ServerContext(
            config.tls_cert, config.tls_key, config.tls_client_ca, config.alpn
        )

    def stream_protocol(admission: Admission) -> Callable[[], asyncio.Protocol]:
        """The protocol factory of one kind of listener, its connections joining admission."""
        factory: Callable[[], asyncio.Protocol] = functools.partial(
            EchoServerProtocol, connections=admission
        )
        if config.trace:
            factory = functools.partial(TracingEchoServerProtocol, connections=admission)
        if config.banner is not None:
            factory = functools.partial(
                BannerEchoServerProtocol,
                banner=banner_text(config.banner, worker),
                connections=admission,
            )
        if connection is not None:
            factory = connection(admission)
        elif plan is not None and config.faults.stream:
            factory = functools.partial(FaultyEchoProtocol, plan=plan, connections=admission)
        if reflections is not None:  # in front of the echo, behind TLS and the PROXY header
            factory = functools.partial(ReflectProtocol, factory, reflections)
        if tls_context is not None:
            factory = functools.partial(
                TLSAcceptProtocol,
                tls_context,
                factory,
                config.tls_handshake_timeout,
                connections=admission,
                failures=tls_failures,
            )
        if config.proxy_protocol:  # outermost: the header comes before anything else
            factory = functools.partial(ProxyHeaderProtocol, factory, connections=admission)
        return factory

    factories: dict[str, Callable[[], asyncio.Protocol]] = {}  # by transport (--metrics)

    def for_transport(transport: str) -> Callable[[], asyncio.Protocol]:
        if transport not in factories:
            factories[transport] = stream_protocol(Listener(connections, transport))
        return factories[transport]

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
            factory = for_transport("tls" if tls_context is not None else "unix")
            listeners.append(
                await loop.create_unix_server(factory, sock=sock, backlog=config.backlog)
            )
        else:
            factory = for_transport("tls" if tls_context is not None else "tcp")
            listeners.append(await loop.create_server(factory, sock=sock, backlog=config.backlog))
    server = Server(
        config, listeners, datagrams, connections, unix_inode, tls_failures, fault_counts
    )
    server.reflections = reflections
    server.tls_context = tls_context
    return server


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


def raise_mmap_threshold() -> None:
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

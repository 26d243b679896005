"""The echo server: an EchoServerProtocol per connection, and serve() to listen and shut down.

Callback order (CPython's contract): connection_made -> data_received* -> eof_received? ->
connection_lost, with pause_writing/resume_writing in between when the peer reads slower than
it writes.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections.abc import Iterable
from typing import Any, cast

from .config import DEFAULT_MAX_BUFFER, ServerConfig
from .errors import ListenError, ResolveError, describe_os_error
from .logs import NOTICE, ConnectionLog, peer_name, preview

__all__ = ["EchoServerProtocol", "Server", "serve"]

_log = logging.getLogger("aioecho.server")
_main_log = logging.getLogger("aioecho.main")

# Tries at a port that is free on every listening address at once, when --port 0 is asked.
_PORT_ZERO_TRIES = 20


class EchoServerProtocol(asyncio.Protocol):
    """Echo every byte back in order; answer EOF with EOF; stop reading while the echo is stuck.

    Memory per connection is bounded by max_buffer (pending echo) plus one read from the socket:
    when the transport's write buffer goes over max_buffer, the transport calls pause_writing()
    and the protocol stops reading from that peer until resume_writing().
    """

    def __init__(
        self, *, max_buffer: int = DEFAULT_MAX_BUFFER, connections: Connections | None = None
    ) -> None:
        self._max_buffer = max_buffer  # bytes of pending echo before reading pauses
        self._connections = connections  # the server's registry, for graceful shutdown
        self._debug = False  # per-chunk lines are on: cached off the hot path
        self.transport: asyncio.Transport  # set in connection_made
        self.log: ConnectionLog  # set in connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance-checked: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        self.log = ConnectionLog(
            _log, peer_name("EchoServer", transport.get_extra_info("peername"))
        )
        self._debug = _log.isEnabledFor(logging.DEBUG)
        self.transport.set_write_buffer_limits(high=self._max_buffer)
        if self._connections is not None:
            self._connections.add(self)
        self.log.info("connection accepted")

    def data_received(self, data: bytes) -> None:
        if self._debug:
            self.log.debug("received %s", preview(data))
            self.transport.write(data)
            self.log.debug("sent %s", preview(data))
        else:
            self.transport.write(data)

    def eof_received(self) -> bool:
        """Half-close: the transport sends our EOF after the pending echo, then closes."""
        if self._debug:
            self.log.debug("received EOF")
        if self.transport.can_write_eof():
            self.transport.write_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self.log.info("closing")
        else:
            self.log.warning("closing: %s", describe_os_error(exc))
        if self._connections is not None:
            self._connections.discard(self)

    def pause_writing(self) -> None:
        """The peer is not reading its echo: stop reading what it sends (TCP slows it down)."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


class Connections:
    """The open connections of one server, so that shutdown can wait for them or end them."""

    def __init__(self) -> None:
        self._open: set[EchoServerProtocol] = set()
        self._empty = asyncio.Event()  # set while no connection is open
        self._empty.set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, conn: EchoServerProtocol) -> None:
        self._open.add(conn)
        self._empty.clear()

    def discard(self, conn: EchoServerProtocol) -> None:
        self._open.discard(conn)
        if not self._open:
            self._empty.set()

    async def wait_empty(self, timeout: float) -> bool:
        """True once every connection has closed, False if timeout seconds pass first."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def abort_all(self) -> int:
        conns = list(self._open)
        for conn in conns:
            conn.transport.abort()
        return len(conns)


class Server:
    """A running echo server, as returned by serve(). Use `async with` or call close()."""

    def __init__(
        self,
        listeners: list[asyncio.Server],
        connections: Connections,
        config: ServerConfig,
    ) -> None:
        self._listeners = listeners
        self._connections = connections
        self._config = config
        self._closing: asyncio.Future[int] | None = None
        self.addresses: list[tuple[str, int]] = [  # (host, port) of each listening socket
            cast(tuple[str, int], sock.getsockname()[:2])
            for listener in listeners
            for sock in listener.sockets
        ]

    @property
    def port(self) -> int:
        """The port every listener is bound to."""
        return self.addresses[0][1]

    @property
    def open_connections(self) -> int:
        return len(self._connections)

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
        _main_log.info("closing server")  # after close(): a peer that reads this is refused
        aborted = 0
        if self._connections and not await self._connections.wait_empty(drain_timeout):
            aborted = self._connections.abort_all()
            _main_log.warning(
                "aborted %d connection%s still open after %gs (--drain-timeout)",
                aborted,
                "" if aborted == 1 else "s",
                drain_timeout,
            )
            await self._connections.wait_empty(drain_timeout + 1.0)
        for listener in self._listeners:
            await listener.wait_closed()
        return aborted

    def abort(self) -> None:
        """End every open connection now, as a second Ctrl-C does."""
        self._connections.abort_all()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(config: ServerConfig | None = None) -> Server:
    """Listen on every address of config.hosts at config.port and echo for every peer.

    Returns a Server whose `addresses` tell where it listens (one port for all of them, also when
    port 0 asks for a free one). Raises ResolveError or ListenError if it cannot listen.
    """
    config = config or ServerConfig()
    loop = asyncio.get_running_loop()
    _main_log.info("starting up on %s port %d", ", ".join(config.hosts), config.port)
    addresses = await _resolve(config.hosts)
    socks = _bind_all(addresses, config.port, config.backlog)
    connections = Connections()
    factory = functools.partial(
        EchoServerProtocol, max_buffer=config.max_buffer, connections=connections
    )
    listeners = []
    for sock in socks:
        listeners.append(await loop.create_server(factory, sock=sock, backlog=config.backlog))
    server = Server(listeners, connections, config)
    for host, port in server.addresses:
        _main_log.log(NOTICE, "listening on %s port %d", host, port)
    return server


async def _resolve(hosts: Iterable[str]) -> list[tuple[int, tuple[Any, ...]]]:
    """(family, sockaddr) of every address the hosts name, each once, in order."""
    loop = asyncio.get_running_loop()
    found: dict[tuple[int, str], tuple[Any, ...]] = {}
    for host in hosts:
        try:
            infos = await loop.getaddrinfo(
                host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as err:
            raise ResolveError(host, err) from None
        for family, _type, _proto, _name, sockaddr in infos:
            found.setdefault((family, str(sockaddr[0])), sockaddr)
    return [(family, sockaddr) for (family, _), sockaddr in found.items()]


def _bind_all(
    addresses: list[tuple[int, tuple[Any, ...]]], port: int, backlog: int
) -> list[socket.socket]:
    """Listening sockets on every address with one port number. asyncio's create_server gives
    each address its own port when asked for port 0, so the sockets are made here."""
    for attempt in range(_PORT_ZERO_TRIES if port == 0 else 1):
        socks: list[socket.socket] = []
        chosen = port
        try:
            for family, sockaddr in addresses:
                sock = _listen_socket(family, sockaddr, chosen, backlog)
                socks.append(sock)
                chosen = sock.getsockname()[1]
        except ListenError as err:
            for sock in socks:
                sock.close()
            in_use = isinstance(err.err, OSError) and err.err.errno == errno.EADDRINUSE
            if port != 0 or not in_use or attempt == _PORT_ZERO_TRIES - 1:
                raise
            continue
        return socks
    raise AssertionError("unreachable")


def _listen_socket(
    family: int, sockaddr: tuple[Any, ...], port: int, backlog: int
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # As asyncio does: '::' must not take the IPv4 port that '0.0.0.0' asks for.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((sockaddr[0], port, *sockaddr[2:]))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise ListenError(str(sockaddr[0]), port, err) from None
    return sock

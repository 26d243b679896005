"""`aioecho proxy`: forward each connection to an upstream TCP service, both ways, with the
server's fault options applied to what comes back (and, with faults_upstream, to what goes).

Each accepted connection (the client side) opens its own upstream connection. Bytes flow both
ways with flow control end to end: when one side's write buffer passes --max-buffer, reading
from the other side pauses, so a client that does not read slows the upstream down and memory
stays bounded per direction. A half-close is forwarded: the client's EOF becomes a write_eof
upstream and the reverse; the connection ends once both directions have. An upstream that
refuses is logged and the client's connection closed; one that resets, reset.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import random
import socket
from dataclasses import dataclass
from typing import Final, cast

from ..addresses import host_port, peer_name
from ..errors import describe_os_error
from ..logs import ConnectionLog
from ..server.config import DEFAULT_MAX_BUFFER, FaultConfig
from ..server.faults import FaultPlan, Shaper
from ..server.registry import Admission, Linked
from ..transports import pause_for, reset

__all__ = ["ProxyProtocol", "Upstream"]

_log = logging.getLogger("aioecho.proxy")

CONNECT_TIMEOUT: Final = 10.0  # seconds to reach the upstream
WATCH_INTERVAL: Final = 1.0  # seconds between checks of a paused client for a reset
_TCP_CLOSE: Final = 7  # tcpi_state of a connection the peer has reset (linux/tcp_states.h)
_NO_FAULTS: Final = FaultConfig()


def peer_has_reset(transport: asyncio.BaseTransport) -> bool:
    """True if the kernel says the peer reset this TCP connection (Linux's TCP_INFO; False
    where it cannot tell)."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_INFO", None)
    if sock is None or option is None or sock.family == socket.AF_UNIX:
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, 1)
    except OSError:
        return False
    return bool(info) and info[0] == _TCP_CLOSE


@dataclass(frozen=True)
class Upstream:
    """Where the proxy forwards to, and how."""

    host: str
    port: int
    plan: FaultPlan | None = None  # the faults, if any
    faults_upstream: bool = False  # on what the client sends too
    max_buffer: int = DEFAULT_MAX_BUFFER  # per direction, before reading the other side pauses
    connect_timeout: float = CONNECT_TIMEOUT

    @property
    def where(self) -> str:
        return host_port(self.host, self.port)


class _Side:
    """One direction's writer: straight to the transport, or through a Shaper."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.shaper: Shaper | None = None

    def write(self, data: bytes) -> None:
        if self.shaper is not None:
            self.shaper.write(data)
        else:
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.shaper is not None:
            self.shaper.write_eof()
        elif self.transport.can_write_eof():
            self.transport.write_eof()

    def queued(self) -> int:
        shaped = self.shaper.queued_bytes if self.shaper is not None else 0
        return self.transport.get_write_buffer_size() + shaped


class ProxyProtocol(asyncio.Protocol, Linked):
    """The client's side of one proxied connection (registry.Tracked for limits and idle)."""

    def __init__(self, upstream: Upstream, connections: Admission | None = None) -> None:
        self.upstream = upstream
        self._connections = connections
        self._admitted = False
        self.bytes_in = 0  # both directions: the idle sweep sees any movement
        self.bytes_down = 0  # of which from the upstream
        self.upstream_ended_first = False  # its EOF or loss came before the client's EOF
        self.unsent_at_close = 0
        self.idle_mark = -1
        self.idle_since = 0.0
        self._early: list[bytes] = []  # read before the upstream connection is up
        self._refused = False  # the upstream could not be reached
        self._client_eof = False
        self._upstream_eof = False
        self._paused_client: set[str] = set()
        self._paused_upstream: set[str] = set()
        self._up: _UpstreamProtocol | None = None
        self._to_client: _Side
        self._to_upstream: _Side | None = None
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.TimerHandle | None = None  # checks a paused client for a reset
        self.transport: asyncio.Transport
        self.log: ConnectionLog

    # registry.Tracked

    def queued(self) -> int:
        up = self._to_upstream.queued() if self._to_upstream is not None else 0
        return self._to_client.queued() + up

    def abort(self, reason: str) -> None:
        self.log.info("closing: %s", reason)
        self.transport.abort()
        if self._up is not None:
            self._up.transport.abort()

    # the client's connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._connections is not None and not self._connections.admit(self):
            self.transport.close()
            return
        self._admitted = True
        self.log = ConnectionLog(_log, peer_name("Proxy", transport.get_extra_info("peername")))
        self.transport.set_write_buffer_limits(high=self.upstream.max_buffer)
        self._to_client = _Side(self.transport)
        self._pause_client("upstream connecting", True)
        self._task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = self.upstream
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: _UpstreamProtocol(self), upstream.host, upstream.port
                ),
                upstream.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as err:
            if self._up is not None:  # connected, then lost before the task resumed
                return
            self.log.warning("upstream %s: %s", upstream.where, describe_os_error(err))
            self._refuse()

    def upstream_made(self, up: _UpstreamProtocol) -> None:
        """The upstream connection is up: everything is set here, in its connection_made, so
        that not one byte of the upstream's (a greeting) passes before the shaper and the flow
        control exist. A pause_writing of the client's that came before applies now."""
        if self.transport.is_closing():  # the client left meanwhile
            up.transport.close()
            return
        upstream = self.upstream
        transport = up.transport
        self._up = up
        transport.set_write_buffer_limits(high=upstream.max_buffer)
        self._to_upstream = _Side(transport)
        plan = upstream.plan
        if plan is not None:
            rng = plan.connection()
            if rng is not None:
                self._to_client.shaper = Shaper(
                    self.transport,
                    plan.config,
                    rng,
                    upstream.max_buffer,
                    self._pause_upstream,
                    self._maybe_done,
                    plan.fired,
                )
                if upstream.faults_upstream:
                    self._to_upstream.shaper = Shaper(
                        transport,
                        plan.config,
                        rng,
                        upstream.max_buffer,
                        self._pause_client,
                        self._maybe_done,
                        plan.fired,
                    )
        if self._paused_upstream:  # the client stopped reading before the upstream existed
            transport.pause_reading()
        for data in self._early:
            self._to_upstream.write(data)
        self._early.clear()
        if self._client_eof:
            self._to_upstream.write_eof()
        self._pause_client("upstream connecting", False)
        self.connected()

    def connected(self) -> None:
        """Both sides are up (a subclass sets its faults here)."""

    def shape(
        self,
        to_client: FaultConfig | None,
        to_upstream: FaultConfig | None,
        rng: random.Random,
        fired: collections.Counter[str],
    ) -> None:
        """Faults on each direction from now on, set while the connection runs (the API's
        toxics): a shaper is made or changed; None: no faults, and a shaper that holds nothing
        goes (one that still does drains first). Only once connected()."""
        for side, faults, pause in (
            (self._to_client, to_client, self._pause_upstream),
            (self._to_upstream, to_upstream, self._pause_client),
        ):
            if side is None or side.transport.is_closing():
                continue
            shaper = side.shaper
            if faults is not None and shaper is None:
                side.shaper = Shaper(
                    side.transport,
                    faults,
                    rng,
                    self.upstream.max_buffer,
                    pause,
                    self._maybe_done,
                    fired,
                )
            elif faults is not None and shaper is not None:
                shaper.reconfigure(faults)
            elif shaper is not None and shaper.idle:
                shaper.cancel()
                side.shaper = None
                pause("queue", False)
                pause("stall", False)
            elif shaper is not None:
                shaper.reconfigure(_NO_FAULTS)

    def accepted(self, upstream: bool) -> int:
        """Bytes the shaper of a direction has taken so far (0 without one)."""
        side = self._to_upstream if upstream else self._to_client
        return side.shaper.accepted if side is not None and side.shaper is not None else 0

    def end(self, kind: str) -> None:
        """End both sides now: 'reset' (RST) or 'close' (FIN after what is queued)."""
        for transport in (self.transport, self._up.transport if self._up is not None else None):
            if transport is None or transport.is_closing():
                continue
            if kind == "reset":
                reset(transport)
            else:
                transport.close()

    def _refuse(self) -> None:
        """No upstream: end the client's connection with a clean close (FIN). Closing with its
        data unread would send a reset, so its input is read and dropped until its EOF, for a
        second at most."""
        self._refused = True
        self._early.clear()
        self._pause_client("upstream connecting", False)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(1.0, self.transport.abort)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._refused:
            return
        if self._to_upstream is None:
            # uvloop starts reading after connection_made even though it paused reading:
            # keep this read, and pause again (else the whole input piles up here)
            self._early.append(data)
            self.transport.pause_reading()
        else:
            self._to_upstream.write(data)

    def eof_received(self) -> bool:
        self._client_eof = True
        if self._refused:
            return False  # the transport closes: a clean end on both sides
        if self._to_upstream is not None:
            self._to_upstream.write_eof()
        self._maybe_done()
        # half-open while the upstream's answer comes back; TLS has no half-close: its transport
        # closes after EOF whatever this returns, and asyncio warns when it is True
        return self.transport.can_write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        if self._task is not None:
            self._task.cancel()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for side in (self._to_client, self._to_upstream):
            if side is not None and side.shaper is not None:
                side.shaper.cancel()
        if self._up is not None and not self._up.transport.is_closing():
            if exc is not None:
                reset(self._up.transport)
            else:
                self._up.transport.close()
        if exc is not None:
            self.log.warning("client: %s", describe_os_error(exc))
        else:
            self.log.info("closing")
        if self._connections is not None:
            self._connections.discard(self, exc)

    def pause_writing(self) -> None:  # the client does not read: stop reading upstream
        self._pause_upstream("client buffer", True)

    def resume_writing(self) -> None:
        self._pause_upstream("client buffer", False)

    # called by the upstream side

    def from_upstream(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.bytes_down += len(data)
        self._to_client.write(data)

    def upstream_eof(self) -> None:
        self._upstream_eof = True
        self.upstream_ended_first = not self._client_eof
        self._to_client.write_eof()
        self._maybe_done()

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.transport.is_closing():
            return
        self.upstream_ended_first = self.upstream_ended_first or not self._client_eof
        if exc is not None:
            self.log.warning("upstream %s: %s", self.upstream.where, describe_os_error(exc))
            reset(self.transport)
        elif not self._upstream_eof:
            self._to_client.write_eof()
            self.transport.close()

    def _maybe_done(self) -> None:
        """Both directions have ended (and any shaped queue is sent): close both."""
        client_done = self._client_eof and (
            self._to_upstream is None
            or self._to_upstream.shaper is None
            or not self._to_upstream.shaper.queued_bytes
        )
        upstream_done = self._upstream_eof and (
            self._to_client.shaper is None or not self._to_client.shaper.queued_bytes
        )
        if client_done and upstream_done:
            self.transport.close()
            if self._up is not None:
                self._up.transport.close()

    def _pause_client(self, reason: str, paused: bool) -> None:
        pause_for(self.transport, self._paused_client, reason, paused)
        if self._paused_client and self._watch is None and not self.transport.is_closing():
            self._watch = asyncio.get_running_loop().call_later(WATCH_INTERVAL, self._check_client)

    def _check_client(self) -> None:
        """While the client's reading is paused the loop does not poll its socket, so a reset
        from it would go unseen until --idle-timeout and hold its place: ask the kernel."""
        self._watch = None
        if not self._paused_client or self.transport.is_closing():
            return
        if peer_has_reset(self.transport):
            self.connection_lost(ConnectionResetError(errno.ECONNRESET, "connection reset"))
            self._admitted = False  # counted once: the transport's own connection_lost is moot
            self.transport.abort()
            return
        self._watch = asyncio.get_running_loop().call_later(WATCH_INTERVAL, self._check_client)

    def _pause_upstream(self, reason: str, paused: bool) -> None:
        if self._up is not None:
            pause_for(self._up.transport, self._paused_upstream, reason, paused)
        elif paused:  # no upstream yet: remembered, applied when it connects
            self._paused_upstream.add(reason)
        else:
            self._paused_upstream.discard(reason)


class _UpstreamProtocol(asyncio.Protocol):
    """The upstream side: hands everything to the client's ProxyProtocol."""

    def __init__(self, client: ProxyProtocol) -> None:
        self.client = client
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.client.upstream_made(self)

    def data_received(self, data: bytes) -> None:
        self.client.from_upstream(data)
        if self.client._paused_upstream:
            # uvloop starts reading after connection_made even if it paused: pause again
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.client.upstream_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_lost(exc)

    def pause_writing(self) -> None:  # the upstream does not read: stop reading the client
        self.client._pause_client("upstream buffer", True)

    def resume_writing(self) -> None:
        self.client._pause_client("upstream buffer", False)

"""The open connections of one server: admission (--max-connections), the idle sweep
(--idle-timeout), counters, and what graceful shutdown needs (wait until empty, abort the rest).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterator
from typing import Any, Final, Protocol

from ..logs import FloodCounter
from .config import DEFAULT_MAX_BUFFER
from .stats import StatsSnapshot

__all__ = ["Admission", "Connections", "Linked", "Listener", "Tracked"]

_main_log = logging.getLogger("aioecho.main")

MIN_SWEEP_INTERVAL: Final = 0.05  # seconds


class Linked:
    """A place in a registry's list of open connections: the registry keeps them in a list
    threaded through the connections themselves (two references each), not in a set, which
    costs ~60 bytes per connection at 10,000 (README, Performance)."""

    __slots__ = ("registry_next", "registry_prev")

    registry_next: Any  # unset, or None: not registered
    registry_prev: Any


class Tracked(Protocol):
    """What the registry needs of a connection (server.EchoServerProtocol is one): its
    counters, which the registry reads and the idle sweep marks, a way to end it, and its links
    (a Linked subclass)."""

    bytes_in: int  # received so far (and so handed back for echo)
    unsent_at_close: int  # echo dropped by abort(): not counted as sent
    idle_mark: int  # the sweep's last view of 2 * bytes_in - queued(): grows when data moves
    idle_since: float  # loop time at which idle_mark last changed
    registry_next: Any
    registry_prev: Any

    def queued(self) -> int:
        """Bytes of echo waiting to be sent."""
        ...

    def abort(self, reason: str) -> None:
        """End the connection now; the reason goes into its closing line."""
        ...


class Admission(Protocol):
    """What a connection's protocol asks of its registry: a Connections, or a Listener (the
    registry as one kind of listener's connections see it)."""

    max_buffer: int
    header_rejects: int

    def admit(self, conn: Tracked) -> bool: ...

    def hand_over(self, conn: Tracked) -> None: ...

    def discard(self, conn: Tracked, exc: Exception | None) -> None: ...


class Connections:
    """Registry of a server's open connections. Protocols call admit() in connection_made and
    discard() in connection_lost; nothing here runs per data_received."""

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        idle_timeout: float = 0.0,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self.max_connections = max_connections  # None: no limit
        self.max_buffer = max_buffer  # pending echo per connection before reading pauses
        self.header_rejects = 0  # closed for want of a valid PROXY protocol header
        # accepted, refused, reset and checks by transport (tcp, tls, unix): Listener's counts
        self.by_transport: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.idle_timeout = idle_timeout  # seconds; 0: never
        self._head = Linked()  # the list's ends meet here
        self._head.registry_next = self._head.registry_prev = self._head
        self._count = 0
        self._empty = asyncio.Event()  # set while no connection is open
        self._empty.set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._refusals = FloodCounter(self._report_refusals)
        # counters of connections that have closed (open ones are summed at snapshot time)
        self.accepted = 0
        self.idle_closed = 0
        self.resets = 0
        self.checks = 0  # connections that ended without a byte of data
        self._closed_bytes_in = 0
        self._closed_bytes_out = 0

    @property
    def refused(self) -> int:
        return self._refusals.total

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Tracked]:
        """The open connections (a snapshot: they may close while the caller goes through)."""
        found = []
        node = self._head.registry_next
        while node is not self._head:
            found.append(node)
            node = node.registry_next
        return iter(found)

    def _link(self, conn: Tracked) -> None:
        last = self._head.registry_prev
        conn.registry_prev, conn.registry_next = last, self._head
        last.registry_next = self._head.registry_prev = conn
        self._count += 1

    def _unlink(self, conn: Tracked) -> bool:
        """Take conn out of the list; False if it was not in it."""
        after = getattr(conn, "registry_next", None)
        if after is None:
            return False
        before = conn.registry_prev
        before.registry_next, after.registry_prev = after, before
        conn.registry_next = conn.registry_prev = None
        self._count -= 1
        return True

    def admit(self, conn: Tracked) -> bool:
        """Register conn; False (and counted as refused) when --max-connections are open."""
        if self.max_connections is not None and self._count >= self.max_connections:
            self._refusals.add()
            return False
        self._link(conn)
        self.accepted += 1
        self._empty.clear()
        if self.idle_timeout and self._sweeper is None:
            self._schedule_sweep()
        return True

    def hand_over(self, conn: Tracked) -> None:
        """conn passes its place to the protocol that takes its connection next (TLS, once the
        handshake is done), whose admit() follows at once: conn leaves without counting as a
        closed connection, and the connection is counted as accepted once."""
        self.handed_over(conn)

    def handed_over(self, conn: Tracked) -> bool:
        """hand_over(), saying whether conn was here to hand over its place."""
        if not self._unlink(conn):
            return False
        self.accepted -= 1
        if not self._count:
            self._empty.set()
        return True

    def discard(self, conn: Tracked, exc: Exception | None) -> None:
        self.discarded(conn, exc)

    def discarded(self, conn: Tracked, exc: Exception | None) -> str:
        """discard(), saying how the connection was counted: 'checks', 'reset' or '' (a
        client that closed, or one not here)."""
        if not self._unlink(conn):
            return ""
        ending = ""
        if not conn.bytes_in or getattr(conn, "health_check", False):
            self.checks += 1  # a health check or a port probe, not a client that was cut off
            ending = "checks"
        elif exc is not None:
            self.resets += 1
            ending = "reset"
        self._closed_bytes_in += conn.bytes_in
        self._closed_bytes_out += conn.bytes_in - conn.unsent_at_close
        if not self._count:
            self._empty.set()
        return ending

    def snapshot(self) -> StatsSnapshot:
        conns = list(self)
        open_in = sum(c.bytes_in for c in conns)
        queued = sum(c.queued() for c in conns)
        return StatsSnapshot(
            accepted=self.accepted,
            active=self._count,
            refused=self.refused,
            idle_closed=self.idle_closed,
            resets=self.resets,
            checks=self.checks,
            bytes_in=self._closed_bytes_in + open_in,
            bytes_out=self._closed_bytes_out + open_in - queued,
        )

    async def wait_empty(self, timeout: float) -> bool:
        """True once every connection has closed, False if timeout seconds pass first."""
        if self._empty.is_set():  # wait_for with timeout 0 would time out even then
            return True
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def abort_all(self, reason: str) -> int:
        conns = list(self)
        for conn in conns:
            conn.abort(reason)
        return len(conns)

    def close(self) -> None:
        """Stop the idle sweep, and log refusals not yet reported (shutdown)."""
        self._refusals.flush()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _schedule_sweep(self) -> None:
        interval = max(MIN_SWEEP_INTERVAL, self.idle_timeout / 4)
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close connections on which nothing has moved either way for idle_timeout seconds.
        Compares counters a few times per timeout instead of re-arming a timer per read."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for conn in self:
            # bytes_in and bytes_in - queued() (sent) only grow: their sum changes when either does
            mark = 2 * conn.bytes_in - conn.queued()
            if mark != conn.idle_mark:
                conn.idle_mark, conn.idle_since = mark, now
            elif now - conn.idle_since >= self.idle_timeout:
                self.idle_closed += 1
                conn.abort(f"idle for {self.idle_timeout:g}s (--idle-timeout)")
        if self._count:
            self._schedule_sweep()

    def _report_refusals(self, count: int) -> None:
        _main_log.warning(
            "refused %d connection%s: %d open (--max-connections)",
            count,
            "" if count == 1 else "s",
            self._count,
        )


class Listener:
    """The registry as the connections of one kind of listener see it: the same list, limits,
    idle sweep and drain, and besides the totals, the counts by transport (tcp, tls, unix) for
    --metrics. A listener's protocols hold this instead of the registry: nothing more per
    connection."""

    def __init__(self, registry: Connections, transport: str) -> None:
        self._registry = registry
        self.transport = transport
        self.max_buffer = registry.max_buffer
        self._counts = registry.by_transport[transport]

    @property
    def header_rejects(self) -> int:
        return self._registry.header_rejects

    @header_rejects.setter
    def header_rejects(self, value: int) -> None:
        self._registry.header_rejects = value

    def admit(self, conn: Tracked) -> bool:
        admitted = self._registry.admit(conn)
        self._counts["accepted" if admitted else "refused"] += 1
        return admitted

    def hand_over(self, conn: Tracked) -> None:
        if self._registry.handed_over(conn):
            self._counts["accepted"] -= 1

    def discard(self, conn: Tracked, exc: Exception | None) -> None:
        ending = self._registry.discarded(conn, exc)
        if ending:
            self._counts[ending] += 1

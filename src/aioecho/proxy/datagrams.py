"""UDP proxies of the API (`"protocol": "udp"`, ours; Toxiproxy has none): each client address
is a session with its own connected socket to the upstream, and the toxics (latency, drop,
duplicate, corrupt, timeout, blackhole) act on each datagram through the server's own datagram
faults (faults.datagram_fate), drawn from a generator seeded by the proxy's seed and the
session's number, so that a seed replays the same drops and copies.

Bounded: at most MAX_SESSIONS sessions (a new one ends the one idle longest), a session idle for
SESSION_IDLE seconds ends, at most MAX_PENDING datagrams wait while a session's upstream socket
opens, and at most MAX_HELD bytes wait for their latency (past it a datagram is dropped).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from typing import Any, Final, Protocol, cast

from ..server.config import FaultConfig
from ..server.faults import datagram_fate
from .journal import Journal
from .spec import Toxic, datagram_shaping, join_address, split_address

__all__ = ["UdpRelay"]

_log = logging.getLogger("aioecho.proxy")

MAX_SESSIONS: Final = 1024
SESSION_IDLE: Final = 60.0
MAX_PENDING: Final = 64
MAX_HELD: Final = 16 * 1024 * 1024
SWEEP: Final = 5.0


class Owner(Protocol):
    """What a UDP relay needs of its proxy (hub.LiveProxy)."""

    name: str
    upstream: str

    @property
    def seed(self) -> int: ...

    @property
    def journal(self) -> Journal: ...

    def next_number(self) -> int: ...

    def deciding(self, applies: dict[str, bool], number: int, client: str) -> list[Toxic]: ...


class _Session:
    """One client address: its datagrams both ways, its toxics' faults, its counts."""

    def __init__(self, relay: UdpRelay, number: int, addr: Any) -> None:
        self.relay = relay
        self.number = number
        self.addr = addr
        self.client = join_address(str(addr[0]), int(addr[1]))
        self.applies: dict[str, bool] = {}  # toxic name -> decided
        self.faults: dict[bool, FaultConfig | None] = {True: None, False: None}  # upstream?
        seed = relay.proxy.seed
        self.rng = {up: random.Random(f"{seed}/{number}/{up}") for up in (True, False)}
        self.fired: collections.Counter[str] = collections.Counter()
        self.counts = {"datagrams_upstream": 0, "datagrams_downstream": 0}
        self.upstream: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.last = 0.0
        self.closed = False
        self.opening = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        host, port = split_address(self.relay.proxy.upstream, "upstream")
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UpstreamSide(self), remote_addr=(host, port)
            )
        except OSError as err:
            _log.warning("proxy %s: upstream %s: %s", self.relay.proxy.name, host, err)
            self.close("upstream")
            return
        if self.closed:
            transport.close()
            return
        self.upstream = transport
        for data in self.pending:
            self.send(data, True)
        self.pending.clear()

    def from_client(self, data: bytes) -> None:
        self.counts["datagrams_upstream"] += 1
        if self.upstream is None:
            if len(self.pending) < MAX_PENDING:
                self.pending.append(data)
            return
        self.send(data, True)

    def send(self, data: bytes, up: bool) -> None:
        faults = self.faults[up]
        if faults is None:
            self._write(data, up)
            return
        fate = datagram_fate(faults, self.rng[up], self.fired, data)
        if fate is None:
            return
        data, copies, delay = fate
        if not delay:
            for _ in range(copies):
                self._write(data, up)
            return
        relay = self.relay
        size = len(data) * copies
        if relay.held + size > MAX_HELD:
            self.fired["drop"] += 1
            return
        relay.held += size
        asyncio.get_running_loop().call_later(delay, self._release, data, up, copies)

    def _release(self, data: bytes, up: bool, copies: int) -> None:
        self.relay.held -= len(data) * copies
        for _ in range(copies):
            self._write(data, up)

    def _write(self, data: bytes, up: bool) -> None:
        if self.closed:
            return
        if up:
            if self.upstream is not None:
                self.upstream.sendto(data)
        elif self.relay.transport is not None and not self.relay.transport.is_closing():
            self.relay.transport.sendto(data, self.addr)

    def describe(self) -> dict[str, Any]:
        return {
            "connection": self.number,
            "client": self.client,
            "protocol": "udp",
            **self.counts,
            "dropped": self.fired["drop"],
            "duplicated": self.fired["duplicate"],
            "corrupted": self.fired["corrupt"],
        }

    def close(self, by: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.opening.cancel()
        if self.upstream is not None:
            self.upstream.close()
        self.relay.ended(self, by)


class _UpstreamSide(asyncio.DatagramProtocol):
    def __init__(self, session: _Session) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: Any) -> None:
        session = self.session
        session.counts["datagrams_downstream"] += 1
        session.last = asyncio.get_running_loop().time()
        session.send(data, False)

    def error_received(self, exc: Exception) -> None:  # ICMP: the upstream's port is closed
        self.session.fired["upstream_unreachable"] += 1


class UdpRelay(asyncio.DatagramProtocol):
    """The client side of a UDP proxy: sessions by client address."""

    def __init__(self, proxy: Owner) -> None:
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: collections.OrderedDict[Any, _Session] = collections.OrderedDict()
        self.held = 0  # bytes waiting for their latency, every session's
        self._sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        session = self.sessions.get(addr)
        if session is None:
            if len(self.sessions) >= MAX_SESSIONS:
                next(iter(self.sessions.values())).close("proxy")
            session = self._open(addr)
        else:
            self.sessions.move_to_end(addr)
        session.last = asyncio.get_running_loop().time()
        session.from_client(data)

    def error_received(self, exc: Exception) -> None:
        pass  # a client's port closed (ICMP): its session idles out

    def _open(self, addr: Any) -> _Session:
        proxy = self.proxy
        number = proxy.next_number()
        session = _Session(self, number, addr)
        self.sessions[addr] = session
        proxy.journal.add(
            "connection_opened",
            proxy=proxy.name,
            connection=number,
            client=session.client,
            protocol="udp",
        )
        self.apply(session)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP, self._sweep)
        return session

    def apply(self, session: _Session) -> None:
        applying = self.proxy.deciding(session.applies, session.number, session.client)
        for up in (True, False):
            session.faults[up] = datagram_shaping(t for t in applying if t.upstream == up)

    def apply_all(self) -> None:
        for session in self.sessions.values():
            self.apply(session)

    def ended(self, session: _Session, by: str) -> None:
        if self.sessions.get(session.addr) is session:
            del self.sessions[session.addr]
        self.proxy.journal.add(
            "connection_closed",
            proxy=self.proxy.name,
            connection=session.number,
            ended_by=by,
            reset=False,
            **{k: v for k, v in session.describe().items() if k not in ("connection", "client")},
        )

    def _sweep(self) -> None:
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for session in list(self.sessions.values()):
            if now - session.last >= SESSION_IDLE:
                session.close("idle")
        if self.sessions:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for session in list(self.sessions.values()):
            session.close("proxy")
        if self.transport is not None:
            self.transport.close()

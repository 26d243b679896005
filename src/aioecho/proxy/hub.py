"""The proxies an API controls (`aioecho proxy --api`, `aioecho.testing.fault_proxy`): each one
a listener that relays to its upstream with relay.ProxyProtocol, and a list of toxics applied
to its connections, those already open included, as they change.

Per connection and toxic, whether the toxic applies is decided once (spec.decides: the proxy's
seed, the connection's number, the toxic's name), when the connection is up or the toxic
added; the toxics that apply make each direction's faults (spec.shaping), which the
connection's Shaper takes at once (relay.ProxyProtocol.shape); timed endings (reset_peer,
timeout, limit_time) are a timer per connection and toxic. With no toxic, a connection has no
shaper: the relay's plain path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import describe_os_error
from ..server.registry import Tracked
from ..server.serve import raise_mmap_threshold
from .datagrams import UdpRelay
from .journal import Journal
from .relay import ProxyProtocol, Upstream
from .spec import (
    ApiError,
    ProxySpec,
    Toxic,
    check_fits,
    decides,
    endings,
    join_address,
    shaping,
    split_address,
)

__all__ = ["Hub", "LiveProxy"]

_log = logging.getLogger("aioecho.proxy")

MAX_PROXIES = 1000  # proxies one API holds
MAX_TOXICS = 100  # toxics one proxy holds
MAX_CONNECTIONS = 10_000  # open connections per proxy; more are closed at once
WATCH_INTERVAL = 0.5  # seconds between two checks of the upstream (refuse_when_down)
WATCH_TIMEOUT = 1.0  # seconds a check's connection may take


@dataclass
class _Seen:
    """What a proxy knows of one of its connections."""

    number: int  # from 1, in the order they arrived
    client: str  # 'ip:port' as the proxy saw it
    applies: dict[str, bool] = field(default_factory=dict)  # toxic name -> decided
    bases: dict[str, int] = field(default_factory=dict)  # toxic name -> bytes when it began
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    fired: collections.Counter[str] = field(default_factory=collections.Counter)
    ended_by: tuple[str, str] | None = None  # ('toxic', name) or ('proxy', '')
    connected: bool = False


class _ToxicProtocol(ProxyProtocol):
    """A relayed connection of an API proxy: it tells its proxy when both sides are up."""

    def __init__(self, proxy: LiveProxy, upstream: Upstream) -> None:
        super().__init__(upstream, proxy)
        self.proxy = proxy

    def connected(self) -> None:
        self.proxy.connected(self)


class LiveProxy:
    """One named proxy: its listener, its toxics, its open connections (an Admission for
    ProxyProtocol: admit, discard)."""

    header_rejects = 0  # registry.Admission: no PROXY headers here

    def __init__(self, hub: Hub, spec: ProxySpec) -> None:
        self.hub = hub
        self.name = spec.name
        self.listen = spec.listen
        self.upstream = spec.upstream
        self.protocol = spec.protocol
        self.enabled = False  # True while listening
        self.max_buffer = hub.max_buffer
        self.toxics: dict[str, Toxic] = {toxic.name: toxic for toxic in spec.toxics}
        self._listener: asyncio.Server | None = None
        self._udp: UdpRelay | None = None  # a UDP proxy's sessions, while it listens
        self.refuse_when_down = spec.refuse_when_down
        self.upstream_up = True  # as the watcher last saw it (refuse_when_down)
        self._watcher: asyncio.Task[None] | None = None
        self._relay = self._upstream()
        self._conns: dict[_ToxicProtocol, _Seen] = {}
        self._numbers = 0  # connections so far
        self._times: collections.Counter[str] = collections.Counter()  # toxic -> applied to

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.toxics.values()],
        }
        if self.protocol != "tcp":
            found["protocol"] = self.protocol
        if self.refuse_when_down:
            found["refuse_when_down"] = True
            found["upstream_up"] = self.upstream_up
        return found

    @property
    def seed(self) -> int:
        return self.hub.seed

    @property
    def journal(self) -> Journal:
        return self.hub.journal

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def numbers(self) -> int:
        """Connections accepted so far."""
        return self._numbers

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) it listens on (the port chosen when 0 was asked)."""
        return split_address(self.listen, "listen")

    def _upstream(self) -> Upstream:
        host, port = split_address(self.upstream, "upstream")
        hub = self.hub
        return Upstream(host, port, max_buffer=hub.max_buffer, connect_timeout=hub.connect_timeout)

    # listening

    async def start(self) -> None:
        """Listen (a port of 0 takes a free one, and `listen` then says which)."""
        if self.enabled:
            return
        host, port = split_address(self.listen, "listen")
        if host == "localhost":  # one address, as Toxiproxy takes (Go's first: IPv4)
            host = "127.0.0.1"
        loop = asyncio.get_running_loop()
        if self.protocol == "udp":
            relay = UdpRelay(self)
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: relay, local_addr=(host or "0.0.0.0", port)
                )
            except OSError as err:
                raise ApiError(500, f"listen {self.listen}: {describe_os_error(err)}") from None
            self._udp = relay
            bound = transport.get_extra_info("sockname")
            self.listen = join_address(host if host else str(bound[0]), int(bound[1]))
            self.enabled = True
            _log.info(
                "proxy %s: listening on %s (udp), to %s", self.name, self.listen, self.upstream
            )
            return
        await self._listen(host, port)
        self.enabled = True
        self.upstream_up = True
        _log.info("proxy %s: listening on %s, to %s", self.name, self.listen, self.upstream)
        if self.refuse_when_down:
            self._watcher = loop.create_task(self._watch())

    async def _listen(self, host: str, port: int) -> None:
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                lambda: _ToxicProtocol(self, self._relay),
                host or None,
                port,
                reuse_address=True,
                family=socket.AF_INET6 if ":" in host else socket.AF_UNSPEC,
            )
        except OSError as err:
            raise ApiError(500, f"listen {self.listen}: {describe_os_error(err)}") from None
        bound = self._listener.sockets[0].getsockname()
        self.listen = join_address(host if host else str(bound[0]), int(bound[1]))

    async def _watch(self) -> None:
        """refuse_when_down: while the upstream cannot be reached, no listener (a client's
        connection is refused, not accepted then closed); listening again once it can."""
        relay = self._relay
        while True:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(relay.host, relay.port), WATCH_TIMEOUT
                )
            except (OSError, asyncio.TimeoutError):
                up = False
            else:
                up = True
                writer.close()
            if up != self.upstream_up:
                self.upstream_up = up
                self.hub.journal.add("upstream_up" if up else "upstream_down", proxy=self.name)
                if up:
                    try:
                        await self._listen(*split_address(self.listen, "listen"))
                    except ApiError as err:
                        _log.warning("proxy %s: %s", self.name, err.message)
                        self.upstream_up = False
                elif self._listener is not None:
                    self._listener.close()
                    self._listener = None
            await asyncio.sleep(WATCH_INTERVAL)

    async def stop(self) -> None:
        """Stop listening and close every connection (Toxiproxy's disable)."""
        listener, self._listener = self._listener, None
        self.enabled = False
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        udp, self._udp = self._udp, None
        if udp is not None:
            udp.close()
        if listener is None:
            return
        listener.close()
        for conn, seen in list(self._conns.items()):
            seen.ended_by = ("proxy", "")
            conn.abort("the proxy is disabled")
        await listener.wait_closed()

    async def update(self, spec: ProxySpec) -> None:
        """Toxiproxy's update: a new listen or upstream restarts it; enabled starts or stops."""
        if spec.listen != self.listen or spec.upstream != self.upstream:
            await self.stop()
            self.listen, self.upstream = spec.listen, spec.upstream
            self._relay = self._upstream()
        if spec.enabled and not self.enabled:
            await self.start()
        elif not spec.enabled and self.enabled:
            await self.stop()

    # registry.Admission, for the connections

    def admit(self, conn: Tracked) -> bool:
        if len(self._conns) >= MAX_CONNECTIONS:
            _log.warning(
                "proxy %s: %d connections open: one more closed", self.name, MAX_CONNECTIONS
            )
            return False
        assert isinstance(conn, _ToxicProtocol)
        number = self.next_number()
        peer = conn.transport.get_extra_info("peername")
        client = join_address(str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else "-"
        self._conns[conn] = _Seen(number, client)
        self.hub.journal.add("connection_opened", proxy=self.name, connection=number, client=client)
        return True

    def hand_over(self, conn: Tracked) -> None:  # pragma: no cover - no TLS here
        pass

    def discard(self, conn: Tracked, exc: Exception | None) -> None:
        assert isinstance(conn, _ToxicProtocol)
        seen = self._conns.pop(conn, None)
        if seen is None:
            return
        for timer in seen.timers.values():
            timer.cancel()
        kind, toxic = seen.ended_by or ("", "")
        if not kind and (seen.fired["close"] or seen.fired["reset"]):  # a shaper's cut-off
            kind = "toxic"
            cause = "reset_peer" if seen.fired["reset"] else "limit_data"
            toxic = next(
                (n for n, t in self.toxics.items() if t.type == cause and seen.applies.get(n)),
                "",
            )
        if not kind:
            kind = "upstream" if conn.upstream_ended_first else "client"
        fields: dict[str, Any] = {"ended_by": kind}
        if toxic:
            fields["toxic"] = toxic
        self.hub.journal.add(
            "connection_closed",
            proxy=self.name,
            connection=seen.number,
            bytes_upstream=conn.bytes_in - conn.bytes_down,
            bytes_downstream=conn.bytes_down,
            reset=exc is not None or bool(seen.fired["reset"]),
            **fields,
        )

    def connected(self, conn: _ToxicProtocol) -> None:
        seen = self._conns.get(conn)
        if seen is not None:
            seen.connected = True
            self._apply(conn, seen)

    # toxics

    def add_toxic(self, toxic: Toxic) -> None:
        if toxic.name in self.toxics:
            raise ApiError(409, "toxic already exists")
        if len(self.toxics) >= MAX_TOXICS:
            raise ApiError(400, f"bad request body: a proxy holds at most {MAX_TOXICS} toxics")
        check_fits(toxic, self.protocol)
        self.toxics[toxic.name] = toxic
        self._apply_all()

    def update_toxic(self, toxic: Toxic) -> None:
        old = self.toxics[toxic.name]
        self.toxics[toxic.name] = toxic
        if old.toxicity != toxic.toxicity or old.match != toxic.match:
            self._times.pop(toxic.name, None)
        for seen in self._conns.values():
            if old.toxicity != toxic.toxicity or old.match != toxic.match:
                seen.applies.pop(toxic.name, None)  # decided again
            timer = seen.timers.pop(toxic.name, None)
            if timer is not None:
                timer.cancel()
        self._apply_all()

    def remove_toxic(self, name: str) -> None:
        if self.toxics.pop(name, None) is None:
            raise ApiError(404, "toxic not found")
        self._times.pop(name, None)
        for seen in self._conns.values():
            seen.applies.pop(name, None)
            seen.bases.pop(name, None)
            timer = seen.timers.pop(name, None)
            if timer is not None:
                timer.cancel()
        self._apply_all()

    def reset_toxics(self) -> None:
        for name in list(self.toxics):
            self.remove_toxic(name)

    def _apply_all(self) -> None:
        if self._udp is not None:
            self._udp.apply_all()
        for conn, seen in list(self._conns.items()):
            if seen.connected:
                self._apply(conn, seen)

    def _apply(self, conn: _ToxicProtocol, seen: _Seen) -> None:
        """Decide what is new, then set both directions' faults and the timed endings."""
        applying = self.deciding(seen.applies, seen.number, seen.client)
        for toxic in applying:
            if toxic.name not in seen.bases:  # limit_data counts from here
                seen.bases[toxic.name] = conn.accepted(toxic.upstream)
        down = shaping(self._with_bases(applying, seen, upstream=False))
        up = shaping(self._with_bases(applying, seen, upstream=True))
        rng = random.Random(f"{self.hub.seed}/{seen.number}")
        conn.shape(down, up, rng, seen.fired)
        for toxic in applying:
            ending = endings(toxic)
            if ending is not None and toxic.name not in seen.timers:
                kind, after = ending
                seen.timers[toxic.name] = asyncio.get_running_loop().call_later(
                    after, self._end, conn, toxic.name, kind
                )

    def deciding(self, applies: dict[str, bool], number: int, client: str) -> list[Toxic]:
        """The toxics that apply to connection `number`, each decided once (and journaled when
        it applies); applies holds the decisions made so far."""
        applying = []
        for toxic in self.toxics.values():
            decided = applies.get(toxic.name)
            if decided is None:
                match = toxic.match
                decided = decides(self.hub.seed, number, toxic) and (
                    match is None
                    or (
                        match.admits(number, client.rsplit(":", 1)[0].strip("[]"))
                        and (match.times is None or self._times[toxic.name] < match.times)
                    )
                )
                applies[toxic.name] = decided
                if decided:
                    self._times[toxic.name] += 1
                    self.hub.journal.add(
                        "toxic_applied",
                        proxy=self.name,
                        connection=number,
                        toxic=toxic.name,
                        type=toxic.type,
                        stream=toxic.stream,
                    )
            if decided:
                applying.append(toxic)
        return applying

    def connections(self) -> list[dict[str, Any]]:
        """The open connections (a UDP proxy's sessions) with what has passed so far."""
        if self._udp is not None:
            return [session.describe() for session in self._udp.sessions.values()]
        return [
            {
                "connection": seen.number,
                "client": seen.client,
                "bytes_upstream": conn.bytes_in - conn.bytes_down,
                "bytes_downstream": conn.bytes_down,
                "toxics": sorted(name for name, applies in seen.applies.items() if applies),
            }
            for conn, seen in self._conns.items()
        ]

    def next_number(self) -> int:
        self._numbers += 1
        return self._numbers

    @staticmethod
    def _with_bases(
        toxics: Iterable[Toxic], seen: _Seen, upstream: bool
    ) -> list[tuple[Toxic, int]]:
        return [(t, seen.bases.get(t.name, 0)) for t in toxics if t.upstream == upstream]

    def _end(self, conn: _ToxicProtocol, name: str, kind: str) -> None:
        seen = self._conns.get(conn)
        if seen is None:
            return
        seen.timers.pop(name, None)
        seen.ended_by = ("toxic", name)
        if kind == "reset":
            seen.fired["reset"] += 1
        conn.end(kind)


class Hub:
    """Every proxy of one API, by name, and the journal they write to."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        journal: Journal | None = None,
        max_buffer: int = 4 * 1024 * 1024,
        connect_timeout: float = 10.0,
    ) -> None:
        raise_mmap_threshold()  # as the server does: no mmap and munmap per 256 KiB read
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.journal = journal if journal is not None else Journal()
        self.max_buffer = max_buffer
        self.connect_timeout = connect_timeout
        self.proxies: dict[str, LiveProxy] = {}
        self.scenario_steps = 0  # steps of scenarios waiting for their time (scenario.py)

    def get(self, name: str) -> LiveProxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(404, "proxy not found")
        return proxy

    async def create(self, spec: ProxySpec) -> LiveProxy:
        """A new proxy, its toxics in place before its first connection (listening if enabled)."""
        if spec.name in self.proxies:
            raise ApiError(409, "proxy already exists")
        if len(self.proxies) >= MAX_PROXIES:
            raise ApiError(400, f"bad request body: at most {MAX_PROXIES} proxies")
        if len(spec.toxics) > MAX_TOXICS:
            raise ApiError(400, f"bad request body: a proxy holds at most {MAX_TOXICS} toxics")
        proxy = LiveProxy(self, spec)
        if spec.enabled:
            await proxy.start()
        self.proxies[spec.name] = proxy
        self.journal.add(
            "proxy_created", proxy=spec.name, listen=proxy.listen, upstream=proxy.upstream
        )
        return proxy

    async def populate(self, specs: list[ProxySpec]) -> list[LiveProxy]:
        """Toxiproxy's /populate: each proxy created, or replaced if its listen or upstream
        differ; the others are left as they are."""
        made = []
        for spec in specs:
            current = self.proxies.get(spec.name)
            if current is not None and (
                current.upstream != spec.upstream or not _same_listen(current.listen, spec.listen)
            ):
                await self.delete(spec.name)
                current = None
            if current is None:
                current = await self.create(spec)
            made.append(current)
        return made

    async def update(self, name: str, spec: ProxySpec) -> LiveProxy:
        proxy = self.get(name)
        was = proxy.enabled
        await proxy.update(spec)
        if proxy.enabled != was:
            self.journal.add("proxy_enabled" if proxy.enabled else "proxy_disabled", proxy=name)
        else:
            self.journal.add("proxy_updated", proxy=name)
        return proxy

    async def delete(self, name: str) -> None:
        proxy = self.get(name)
        await proxy.stop()
        del self.proxies[name]
        self.journal.add("proxy_deleted", proxy=name)

    async def reset(self) -> None:
        """Toxiproxy's /reset: every proxy enabled, every toxic removed."""
        for proxy in self.proxies.values():
            proxy.reset_toxics()
            if not proxy.enabled:
                await proxy.start()
        self.journal.add("reset")

    def add_toxic(self, name: str, toxic: Toxic) -> Toxic:
        self.get(name).add_toxic(toxic)
        self.journal.add("toxic_added", proxy=name, **_toxic_fields(toxic))
        return toxic

    def update_toxic(self, name: str, toxic: Toxic) -> Toxic:
        self.get(name).update_toxic(toxic)
        self.journal.add("toxic_updated", proxy=name, **_toxic_fields(toxic))
        return toxic

    def remove_toxic(self, name: str, toxic: str) -> None:
        self.get(name).remove_toxic(toxic)
        self.journal.add("toxic_removed", proxy=name, toxic=toxic)

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()


def _toxic_fields(toxic: Toxic) -> dict[str, Any]:
    return {"toxic": toxic.name, "type": toxic.type, "stream": toxic.stream}


def _same_listen(current: str, wanted: str) -> bool:
    """A port of 0 asked for any port: the one chosen matches it."""
    host, port = split_address(wanted, "listen")
    now_host, now_port = split_address(current, "listen")
    return (host in (now_host, "", "localhost")) and port in (0, now_port)

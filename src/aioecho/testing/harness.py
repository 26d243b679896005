"""A fault proxy and an echo endpoint inside the test process: async context managers for async
code, and the same things on a loop in a background thread for synchronous tests (what the
pytest fixtures hand out). No HTTP: the proxy's Hub is driven directly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from ..proxy.hub import Hub, LiveProxy
from ..proxy.spec import ApiError, ProxySpec, Toxic, join_address, parse_toxic
from ..server.config import FaultConfig, ServerConfig
from ..server.serve import Server, serve

__all__ = [
    "BackgroundEchoServer",
    "BackgroundFaultProxy",
    "EchoEndpoint",
    "FaultProxy",
    "echo_server",
    "fault_proxy",
]

_T = TypeVar("_T")
WAIT = 30.0  # seconds a call into the background loop may take at most


class FaultProxy:
    """A proxy in front of `upstream`, with toxics set and removed while connections run."""

    def __init__(self, hub: Hub, proxy: LiveProxy) -> None:
        self._hub = hub
        self._proxy = proxy

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to connect to instead of the upstream."""
        return self._proxy.address

    @property
    def toxics(self) -> list[Toxic]:
        return list(self._proxy.toxics.values())

    @property
    def events(self) -> list[dict[str, Any]]:
        """The journal so far (connections, toxics applied, closes)."""
        return self._hub.journal.since(0)

    @property
    def seed(self) -> int:
        return self._hub.seed

    @property
    def connections(self) -> list[dict[str, Any]]:
        """The open connections (a UDP proxy's sessions): what has passed, which toxics."""
        return self._proxy.connections()

    def add(self, toxic: Toxic) -> Toxic:
        """Apply a toxic, to open connections as well; ValueError if its name is taken."""
        try:
            return self._hub.add_toxic(self._proxy.name, toxic)
        except ApiError as err:
            raise ValueError(err.message) from None

    def update(self, name: str, *, toxicity: float | None = None, **attributes: float) -> Toxic:
        """Change a toxic's attributes (and toxicity) in place."""
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        current = self._proxy.toxics.get(name)
        try:
            if current is None:
                raise ApiError(404, "toxic not found")
            return self._hub.update_toxic(self._proxy.name, parse_toxic(body, current))
        except ApiError as err:
            raise ValueError(err.message) from None

    def remove(self, toxic: Toxic | str) -> None:
        name = toxic if isinstance(toxic, str) else toxic.name
        try:
            self._hub.remove_toxic(self._proxy.name, name)
        except ApiError as err:
            raise ValueError(err.message) from None

    def clear(self) -> None:
        """Remove every toxic."""
        for name in list(self._proxy.toxics):
            self.remove(name)

    async def disable(self) -> None:
        """Stop listening and close every connection (until enable())."""
        await self._proxy.stop()

    async def enable(self) -> None:
        await self._proxy.start()


@asynccontextmanager
async def fault_proxy(
    upstream: tuple[str, int],
    *,
    toxics: Iterable[Toxic] = (),
    listen: tuple[str, int] = ("127.0.0.1", 0),
    seed: int | None = None,
    name: str = "proxy",
    protocol: str = "tcp",
) -> AsyncIterator[FaultProxy]:
    """A proxy to upstream on a free port, its toxics in place before the first connection;
    protocol "udp" relays datagrams (the toxics latency, drop, duplicate, corrupt, timeout).

    >>> async def demo(upstream):
    ...     async with fault_proxy(upstream, toxics=[latency(ms=100)]) as proxy:
    ...         host, port = proxy.address  # connect here instead
    """
    hub = Hub(seed=seed)
    spec = ProxySpec(
        name=name,
        listen=join_address(*listen),
        upstream=join_address(*upstream),
        toxics=tuple(toxics),
        protocol=protocol,
    )
    try:
        proxy = await hub.create(spec)
    except ApiError as err:
        raise ValueError(err.message) from None
    try:
        yield FaultProxy(hub, proxy)
    finally:
        await hub.close()


class EchoEndpoint:
    """A throwaway echo server (TCP, and UDP if asked) on a free port."""

    def __init__(self, server: Server) -> None:
        self.server = server

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.server.port


@asynccontextmanager
async def echo_server(*, udp: bool = False, **faults: Any) -> AsyncIterator[EchoEndpoint]:
    """An echo server on 127.0.0.1 (a free port), with the server's faults as keywords
    (FaultConfig's: delay, jitter, bandwidth, slice, reset_after, drop, ..., seed)."""
    config = ServerConfig(
        hosts=("127.0.0.1",),
        port=0,
        udp=udp,
        tcp=True,
        faults=FaultConfig(**faults),
        drain_timeout=0.0,
    )
    server = await serve(config)
    try:
        yield EchoEndpoint(server)
    finally:
        await server.close()


class _Background:
    """An event loop in a daemon thread, and a way to run coroutines on it from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="aioecho", daemon=True)
        self._thread.start()
        self._closers: list[Any] = []

    def call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT)

    def run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """A plain function on the loop's thread (the Hub is not thread-safe)."""

        async def call() -> Any:
            return function(*args, **kwargs)

        return self.call(call())

    def enter(self, manager: Any) -> Any:
        value = self.call(manager.__aenter__())
        self._closers.append(manager)
        return value

    def close(self) -> None:
        """Everything entered, closed; the loop stopped and its thread joined."""
        if not self._thread.is_alive():
            return
        try:
            while self._closers:
                self.call(self._closers.pop().__aexit__(None, None, None))
            self.call(self.loop.shutdown_default_executor())  # getaddrinfo's threads
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(WAIT)
            self.loop.close()


class BackgroundFaultProxy:
    """FaultProxy for synchronous code: the same calls, each run on the background loop."""

    def __init__(self, background: _Background, proxy: FaultProxy) -> None:
        self._background = background
        self._proxy = proxy

    @property
    def address(self) -> tuple[str, int]:
        return self._proxy.address

    @property
    def toxics(self) -> list[Toxic]:
        result: list[Toxic] = self._background.run(lambda: self._proxy.toxics)
        return result

    @property
    def events(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._background.run(lambda: self._proxy.events)
        return result

    @property
    def seed(self) -> int:
        return self._proxy.seed

    @property
    def connections(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._background.run(lambda: self._proxy.connections)
        return result

    def add(self, toxic: Toxic) -> Toxic:
        result: Toxic = self._background.run(self._proxy.add, toxic)
        return result

    def update(self, name: str, *, toxicity: float | None = None, **attributes: float) -> Toxic:
        result: Toxic = self._background.run(
            self._proxy.update, name, toxicity=toxicity, **attributes
        )
        return result

    def remove(self, toxic: Toxic | str) -> None:
        self._background.run(self._proxy.remove, toxic)

    def clear(self) -> None:
        self._background.run(self._proxy.clear)

    def disable(self) -> None:
        self._background.call(self._proxy.disable())

    def enable(self) -> None:
        self._background.call(self._proxy.enable())


class BackgroundEchoServer:
    def __init__(self, endpoint: EchoEndpoint) -> None:
        self.endpoint = endpoint

    @property
    def address(self) -> tuple[str, int]:
        return self.endpoint.address


class Harness:
    """What the pytest fixtures share in one test: one background loop, closed at teardown."""

    def __init__(self) -> None:
        self._background: _Background | None = None

    def _loop(self) -> _Background:
        if self._background is None:
            self._background = _Background()
        return self._background

    def fault_proxy(self, upstream: tuple[str, int], **options: Any) -> BackgroundFaultProxy:
        background = self._loop()
        return BackgroundFaultProxy(background, background.enter(fault_proxy(upstream, **options)))

    def echo_server(self, **options: Any) -> BackgroundEchoServer:
        background = self._loop()
        return BackgroundEchoServer(background.enter(echo_server(**options)))

    def close(self) -> None:
        if self._background is not None:
            self._background.close()
            self._background = None

"""aioecho's pytest plugin (entry point `pytest11`: `aioecho`): fault fixtures for any test.

    def test_retry(fault_proxy):
        proxy = fault_proxy(("127.0.0.1", 6379))
        proxy.add(aioecho.testing.reset_peer())
        ...

`fault_proxy` is a factory: each call makes a proxy to that upstream (keywords as
aioecho.testing.fault_proxy's: toxics, seed, listen, name). `echo_server` likewise makes an
echo endpoint (keywords: udp, and the server's faults). Both run on one event loop in a
background thread per test, so they serve synchronous tests and async ones alike (the test's
own loop never waits on them); everything is closed, and the thread joined, at teardown.
Ports are ephemeral, so parallel runs (pytest-xdist) do not clash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .harness import BackgroundEchoServer, BackgroundFaultProxy, Harness

__all__ = ["echo_server", "fault_proxy"]


@pytest.fixture
def _aioecho_harness() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def fault_proxy(_aioecho_harness: Harness) -> Callable[..., BackgroundFaultProxy]:
    """A factory: fault_proxy((host, port), toxics=[...], seed=N) -> a proxy to that upstream."""
    return _aioecho_harness.fault_proxy


@pytest.fixture
def echo_server(_aioecho_harness: Harness) -> Callable[..., BackgroundEchoServer]:
    """A factory: echo_server(udp=False, delay=..., ...) -> an echo endpoint on a free port."""

    def make(**options: Any) -> BackgroundEchoServer:
        return _aioecho_harness.echo_server(**options)

    return make

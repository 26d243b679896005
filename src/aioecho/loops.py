"""Choosing and running the event loop: uvloop where it is installed, else asyncio's own."""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["LOOPS", "describe", "resolve", "run"]

_T = TypeVar("_T")

LOOPS: Final = ("auto", "asyncio", "uvloop")


def resolve(name: str) -> str:
    """'auto' -> 'uvloop' if it can be imported, else 'asyncio'. Raises ValueError otherwise."""
    if name not in LOOPS:
        raise ValueError(f"unknown event loop {name!r}: choose from {', '.join(LOOPS)}")
    if name == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    if name == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("uvloop is not installed on this platform: use --loop asyncio")
    return name


def _factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, _T], loop: str = "auto") -> _T:
    """asyncio.run(main) on the chosen loop."""
    factory = _factory(resolve(loop))
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    new_loop = factory()  # Python 3.10 has no Runner
    asyncio.set_event_loop(new_loop)
    try:
        return new_loop.run_until_complete(main)
    finally:
        new_loop.run_until_complete(new_loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        new_loop.close()


def describe(loop: asyncio.AbstractEventLoop) -> str:
    """'uvloop 0.23.0' or 'asyncio (EpollSelector)'."""
    module = type(loop).__module__.split(".")[0]
    if module == "uvloop":
        return f"uvloop {importlib.metadata.version('uvloop')}"
    selector = getattr(loop, "_selector", None)
    return f"asyncio ({type(selector).__name__})" if selector is not None else module

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from aioecho import Server, ServerConfig, serve
from support import LOOPS, in_thread_loop


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=LOOPS)
def live_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """An in-process server on 127.0.0.1, port 0, its loop in a thread; one per module and loop."""
    loop, thread = in_thread_loop(request.param)
    config = ServerConfig(hosts=("127.0.0.1",), port=0, drain_timeout=1.0)
    server = asyncio.run_coroutine_threadsafe(serve(config), loop).result(30)
    errors: list[dict[str, object]] = []
    loop.call_soon_threadsafe(loop.set_exception_handler, lambda _loop, ctx: errors.append(ctx))
    yield server
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    loop.close()
    assert not errors, f"the loop's exception handler was called: {errors}"

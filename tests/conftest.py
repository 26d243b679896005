from __future__ import annotations

import asyncio
import contextlib
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


# Every helper a test starts must end with it, forked children included. The test process is
# made the subreaper of everything it starts (Linux), so that a child whose parent has gone
# (socat's `fork` children, a worker whose supervisor was killed) is re-parented here, not to
# init, where nobody would see it: at the end of the session any child still running fails it.
_PR_SET_CHILD_SUBREAPER = 36


def pytest_sessionstart(session: pytest.Session) -> None:
    import ctypes
    import signal

    # Started as a background job of a script (`make test &`), the suite inherits SIGINT
    # ignored, and so would every process it starts: a test's Ctrl-C would reach nobody. A
    # Python handler here makes the children start with the default disposition again.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    with contextlib.suppress(OSError, AttributeError):  # not Linux: direct children only
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _children() -> dict[int, str]:
    """Children of this process that are still running (not zombies): pid -> command line."""
    import os
    from pathlib import Path

    found = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            if int(ppid) != me:
                continue
            if state == "Z":
                os.waitpid(int(entry.name), os.WNOHANG)  # an orphan that ended: reaped here
                continue
            found[int(entry.name)] = (entry / "cmdline").read_text().replace("\0", " ")
        except (OSError, ValueError, ChildProcessError):
            continue
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os
    import signal
    import time
    from pathlib import Path

    if not Path("/proc/self/stat").exists():
        return
    deadline = time.monotonic() + 5.0  # an orphaned worker notices within a second
    left = _children()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _children()
    for pid in left:
        with contextlib.suppress(OSError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if left:
        print(f"\nthe tests left {len(left)} processes running: {sorted(left.values())}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""aioecho.testing and its pytest plugin, as a user's project meets them: the fixtures in a
synchronous test and an async one, each run by a pytest of its own that finds the plugin
through the `pytest11` entry point; and the showcase, redis-py through the fixture."""

from __future__ import annotations

import http.server
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from redis.backoff import ConstantBackoff
from redis.retry import Retry

import aioecho.testing as faults
from support import WAIT, wait_until
from test_toxiproxy_clients import redis_port  # noqa: F401  (a fixture)

SYNC_TEST = """
import socket
import aioecho.testing as faults

def test_sync(fault_proxy, echo_server):
    echo = echo_server()
    proxy = fault_proxy(echo.address)
    with socket.create_connection(proxy.address, timeout=10) as sock:
        sock.sendall(b"hello")
        assert sock.recv(5) == b"hello"
        proxy.add(faults.limit_data(3))        # applies to this open connection
        sock.sendall(b"abcdef")
        got = b""
        while chunk := sock.recv(100):
            got += chunk
        assert got == b"abc"
    assert [e["event"] for e in proxy.events if e["event"] == "toxic_applied"] == ["toxic_applied"]
"""

ASYNC_TEST = """
import asyncio, time
import pytest
import aioecho.testing as faults

@pytest.mark.asyncio
async def test_async(fault_proxy, echo_server):
    echo = echo_server(delay=0.0)
    proxy = fault_proxy(echo.address, toxics=[faults.latency(150)])
    reader, writer = await asyncio.open_connection(*proxy.address)
    started = time.perf_counter()
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    assert time.perf_counter() - started >= 0.15
    proxy.remove("latency_downstream")
    writer.close()
    await writer.wait_closed()

async def test_native():  # no fixture: the async context managers on the test's own loop
    async with faults.echo_server() as echo, faults.fault_proxy(echo.address) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        writer.close()
        await writer.wait_closed()
"""

CHECK_CLOSED = """
import socket, threading

def pytest_sessionfinish(session):
    # every fixture closed: no background thread left, and the proxies' ports free again
    assert threading.active_count() == 1, threading.enumerate()
"""


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("source", "options"),
    [(SYNC_TEST, ()), (ASYNC_TEST, ("-o", "asyncio_mode=auto"))],
    ids=["sync", "async"],
)
def test_the_fixtures_work_in_a_project_of_its_own(
    tmp_path: Path, source: str, options: tuple[str, ...]
) -> None:
    (tmp_path / "test_it.py").write_text(textwrap.dedent(source))
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CHECK_CLOSED))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    done = run_pytest(tmp_path, *options)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout
    plugins = run_pytest(tmp_path, "--co", "--fixtures")
    assert "fault_proxy" in plugins.stdout and "aioecho" in plugins.stdout


def test_the_fixtures_work_under_pytest_xdist(tmp_path: Path) -> None:
    """Two workers, each with its proxies and echo servers on ports of their own."""
    for number in range(4):
        (tmp_path / f"test_it{number}.py").write_text(textwrap.dedent(SYNC_TEST))
    done = run_pytest(tmp_path, "-n", "2", "-o", "asyncio_default_fixture_loop_scope=function")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


def test_without_the_plugin_the_fixtures_are_not_there(tmp_path: Path) -> None:
    (tmp_path / "test_it.py").write_text(textwrap.dedent(SYNC_TEST))
    done = run_pytest(tmp_path, "-p", "no:aioecho")
    assert done.returncode != 0 and "fixture 'fault_proxy' not found" in done.stdout


# the showcase: redis-py, a client nobody here wrote, through the fixture


def test_latency_over_socket_timeout_raises_redis_timeout(
    fault_proxy: Callable[..., faults.BackgroundFaultProxy],
    redis_port: int,  # noqa: F811
) -> None:
    proxy = fault_proxy(("127.0.0.1", redis_port))
    client = redis.Redis(*proxy.address, socket_timeout=0.2, retry=Retry(ConstantBackoff(0), 0))
    assert client.ping()
    proxy.add(faults.latency(ms=1000))
    with pytest.raises(redis.TimeoutError):
        client.get("key")
    client.close()


def test_reset_peer_raises_and_a_retry_gets_through_once_it_is_gone(
    fault_proxy: Callable[..., faults.BackgroundFaultProxy],
    redis_port: int,  # noqa: F811
) -> None:
    proxy = fault_proxy(("127.0.0.1", redis_port))
    proxy.add(faults.reset_peer())
    bare = redis.Redis(*proxy.address, socket_timeout=5, retry=Retry(ConstantBackoff(0), 0))
    with pytest.raises(redis.ConnectionError):
        bare.get("key")
    bare.close()

    # The toxic goes once the first retried attempt has been reset too (an event, not a clock).
    def resets() -> int:
        return sum(e.get("toxic") == "reset_peer_downstream" for e in proxy.events)

    def remove_after_next_reset() -> None:
        wait_until(lambda: resets() >= 2, "a second reset")
        proxy.remove("reset_peer_downstream")

    helper = threading.Thread(target=remove_after_next_reset)
    helper.start()
    patient = redis.Redis(
        *proxy.address,
        socket_timeout=5,
        retry=Retry(ConstantBackoff(0.05), 200),
        retry_on_error=[redis.ConnectionError],
    )
    try:
        assert patient.set("key", "value")
    finally:
        helper.join(WAIT)
        patient.close()
    assert resets() >= 2


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the server keeps the connection: the client waits

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, int]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(WAIT)


def test_requests_through_a_timeout_toxic_times_out_at_its_timeout(
    fault_proxy: Callable[..., faults.BackgroundFaultProxy], http_server: tuple[str, int]
) -> None:
    proxy = fault_proxy(http_server)
    host, port = proxy.address
    assert requests.get(f"http://{host}:{port}/", timeout=WAIT).text == "ok"
    proxy.add(faults.timeout())
    started = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"http://{host}:{port}/", timeout=(WAIT, 0.5))
    took = time.perf_counter() - started
    assert took >= 0.5
    proxy.remove("timeout_downstream")
    assert requests.get(f"http://{host}:{port}/", timeout=WAIT).text == "ok"

"""`aioecho bench` reports the right numbers on known cases: a server with an injected delay, a
server that stalls, a server that corrupts the echo."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from support import end_group, error_line, in_thread_loop, require_tool, run_cli


class DelayedEcho(asyncio.Protocol):
    """Echoes each chunk `delay` seconds after it came, in order; during [stall_at, +stall)
    nothing goes out. Optionally flips the last byte of every chunk."""

    def __init__(self, delay: float, stall_at: float | None, stall: float, corrupt: bool) -> None:
        self.delay, self.stall_at, self.stall, self.corrupt = delay, stall_at, stall, corrupt
        self.queue: deque[tuple[float, bytes]] = deque()  # (when due, chunk), in arrival order
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        when = self.loop.time() + self.delay
        if self.stall_at is not None and self.stall_at <= when < self.stall_at + self.stall:
            when = self.stall_at + self.stall
        self.queue.append((when, data))
        if self.timer is None:
            self.timer = self.loop.call_at(when, self._flush)

    def _flush(self) -> None:
        self.timer = None
        while self.queue and self.queue[0][0] <= self.loop.time():
            if not self.transport.is_closing():
                self.transport.write(self.queue.popleft()[1])
            else:
                self.queue.clear()
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


def serve_in_thread(factory: Callable[[float], Callable[[], asyncio.Protocol]]) -> Iterator[int]:
    """Yield the port of a server on a loop in a thread; factory(start time) makes its protocol
    factory, so that protocols can act at times counted from the start."""
    loop, thread = in_thread_loop("asyncio")

    async def serve() -> asyncio.Server:
        return await loop.create_server(factory(loop.time()), "127.0.0.1", 0)

    server = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    yield server.sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def start_server(
    delay: float = 0.0, stall_after: float | None = None, stall: float = 0.0, corrupt: bool = False
) -> Iterator[int]:
    def factory(start: float) -> Callable[[], asyncio.Protocol]:
        stall_at = None if stall_after is None else start + stall_after
        return lambda: DelayedEcho(delay, stall_at, stall, corrupt)

    return serve_in_thread(factory)


def bench(port: int, *args: str) -> tuple[int, dict[str, float]]:
    result = run_cli(
        "bench", "-q", "--port", str(port), "--host", "127.0.0.1", "--json", *args, timeout=60
    )
    output = result.stdout.decode()
    return result.returncode, json.loads(output)["result"] if output else {}


@pytest.fixture
def delayed_server() -> Iterator[int]:
    yield from start_server(delay=0.020)


def test_fixed_rate_against_a_known_delay(delayed_server: int) -> None:
    rc, r = bench(
        delayed_server, "--rate", "200", "--connections", "4", "--duration", "2", "--warmup", "0.3"
    )
    assert rc == 0
    assert 20_000 <= r["p50_us"] <= 26_000  # the injected 20 ms, plus loopback and scheduling
    assert r["min_us"] >= 20_000
    assert 170 <= r["rps"] <= 230
    assert r["errors"] == 0
    assert r["mib_per_s"] == pytest.approx(r["rps"] * 1024 / 2**20, rel=0.01)


def test_open_loop_shows_a_stall() -> None:
    for port in start_server(delay=0.0, stall_after=1.0, stall=1.0):
        rc, r = bench(
            port, "--rate", "200", "--connections", "4", "--duration", "2.5", "--warmup", "0.2"
        )
        assert rc == 0
        assert r["max_us"] >= 950_000  # the first request caught waited the whole second
        assert r["p99_us"] >= 500_000  # a fifth of the requests were queued behind the stall
        assert r["p50_us"] < 50_000


def test_mismatch_is_counted_and_fails() -> None:
    for port in start_server(corrupt=True):
        rc, r = bench(port, "--connections", "3", "--duration", "0.5", "--warmup", "0")
        assert rc == 1
        assert r["mismatches"] == 3  # one per connection, which is then closed


def test_spawn_prints_a_table() -> None:
    result = run_cli(
        "bench", "--spawn", "--duration", "1", "--warmup", "0.2", "--connections", "4", timeout=60
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.decode().splitlines()
    assert header.split()[:10] == [
        "requests", "req/s", "MiB/s", "min", "p50", "p90", "p99", "p99.9", "max", "errors",
    ]  # fmt: skip
    values = [float(v) for v in row.split()]
    assert values[0] > 100 and values[-1] == 0
    assert values[3] <= values[4] <= values[5] <= values[6] <= values[7] <= values[8]
    assert "main: aioecho bench: 127.0.0.1 port " in result.stderr.decode()


def test_workers_merge_their_histograms(delayed_server: int) -> None:
    rc, r = bench(
        delayed_server, "--workers", "2", "--connections", "4", "--requests", "200", "--warmup", "0"
    )
    assert rc == 0
    assert r["requests"] == 200
    assert 20_000 <= r["p50_us"] <= 30_000


def test_bench_over_unix_and_tls(tmp_path: object) -> None:
    from pathlib import Path

    from support import ServerProcess
    from transports import Certs, short_unix_path

    path = short_unix_path()
    with ServerProcess("--unix", path) as server:
        server.start()
        result = run_cli("bench", "--unix", path, "--duration", "0.5", "--warmup", "0", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["result"]["requests"] > 0
        assert server.stop() == 0
    certs = Certs.make(Path(str(tmp_path)))
    args = (
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--tls-cert",
        str(certs.cert),
        "--tls-key",
        str(certs.key),
    )
    with ServerProcess(*args) as server:
        server.start()
        result = run_cli(
            "bench", "--tls", "--cafile", str(certs.ca), "--host", "localhost", "--port",
            str(server.port), "--duration", "0.5", "--warmup", "0", "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["result"]["requests"] > 0
        assert server.stop() == 0


def test_requests_never_answered_are_timeouts() -> None:
    for port in start_server(delay=30.0):  # echoes long after the bench gives up
        rc, r = bench(
            port, "--connections", "3", "--pipeline", "2", "--duration", "0.3", "--warmup", "0",
            "--timeout", "1",
        )  # fmt: skip
        assert rc == 1
        assert r["timeouts"] == 6  # every request in flight when the run ended
        assert r["requests"] == 0


class ClosingEcho(asyncio.Protocol):
    """Echoes until `close_at` (loop time), then ends its side cleanly (FIN: a shutdown, since a
    close with requests still unread would send a reset); at once if that time has passed when
    the connection comes. close_at None: `after` seconds after the connection's first bytes
    (so that a slow start of the client does not count)."""

    def __init__(self, close_at: float | None, after: float = 0.0) -> None:
        self.close_at = close_at
        self.after = after
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self.finished = False
        if self.close_at is not None:
            self.timer = loop.call_at(self.close_at, self.finish)

    def finish(self) -> None:
        self.finished = True
        self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.after, self.finish)
        if not self.finished:
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


def closing_server(after: float) -> Iterator[int]:
    return serve_in_thread(lambda start: lambda: ClosingEcho(start + after))


def test_a_server_that_closes_mid_run_fails_the_run(loop_name: str) -> None:
    """Each connection is closed 0.7 s after its first request (the warm-up is 0.2 s): timed
    from the bench's own start, not the server's, which a slow start-up used to overrun."""
    for port in serve_in_thread(lambda start: lambda: ClosingEcho(None, after=0.7)):
        result = run_cli(
            "bench", "-q", "--port", str(port), "--host", "127.0.0.1", "--json",
            "--connections", "4", "--duration", "5", "--warmup", "0.2", "--loop", loop_name,
            timeout=60,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        r = json.loads(result.stdout)["result"]
        assert r["closed_connections"] == 4
        assert r["closed"] >= 4  # each connection had a request in flight (closed loop)
        assert r["errors"] >= r["closed"]
        assert r["elapsed_s"] < 2.0  # the run ends once no connection is left
        assert (
            error_line(result)
            == "aioecho bench: error: the server closed every connection (4 of 4)"
        )


def test_a_server_that_closes_at_once_is_named_and_no_traceback(loop_name: str) -> None:
    for port in closing_server(after=0.0):
        for _ in range(3):  # uvloop: a write could meet the closed transport, one run in two
            result = run_cli(
                "bench", "-q", "--port", str(port), "--host", "127.0.0.1", "--duration", "5",
                "--loop", loop_name, timeout=30,
            )  # fmt: skip
            assert b"Traceback" not in result.stderr, result.stderr
            assert error_line(result) == (
                "aioecho bench: error: the server closed every connection (10 of 10)"
            )


def test_against_socat_running_true(loop_name: str) -> None:
    socat = require_tool("socat")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [socat, f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", "EXEC:/bin/true"],
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port)
        result = run_cli(
            "bench", "-q", "--port", str(port), "--host", "127.0.0.1", "--connections", "2",
            "--duration", "5", "--loop", loop_name, timeout=30,
        )  # fmt: skip
        assert b"Traceback" not in result.stderr, result.stderr
        assert error_line(result).startswith(
            "aioecho bench: error: the server closed every connection (2 of 2"
        )  # socat's close may come as a reset, when a request is still unread
    finally:
        end_group(proc)
        proc.wait(10)


def test_every_request_scheduled_in_the_window_is_accounted_for() -> None:
    """Open loop against a server slower than the window's tail: requests scheduled near the end
    are answered after it, and are measured all the same (not silently dropped)."""
    for port in start_server(delay=0.3):
        rc, r = bench(
            port, "--rate", "100", "--connections", "2", "--duration", "1", "--warmup", "0"
        )
        assert rc == 0, r
        assert 99 <= r["requests"] <= 101  # 100 scheduled in one second at 100/s
        assert r["min_us"] >= 300_000


def test_requests_scheduled_but_never_answered_fail_the_run() -> None:
    for port in start_server(delay=0.0, stall_after=0.5, stall=30.0):
        rc, r = bench(
            port, "--rate", "100", "--connections", "2", "--duration", "1", "--warmup", "0",
            "--timeout", "1",
        )  # fmt: skip
        assert rc == 1
        assert r["timeouts"] > 0
        assert 99 <= r["requests"] + r["timeouts"] + r["unsent"] <= 101


def test_open_loop_counts_what_the_in_flight_cap_keeps_back() -> None:
    """A pure unit of the scheduler: with room for two requests per connection and nothing
    answered, every later slot is counted as not sent."""
    from aioecho.bench.config import BenchConfig
    from aioecho.bench.engine import _Run, _schedule

    class Silent:
        def __init__(self) -> None:
            self.inflight: deque[object] = deque()
            self.broken = False

        def send(self, scheduled: int, measured: bool) -> None:
            self.inflight.append((scheduled, measured))

    async def scenario() -> tuple[int, int]:
        run = _Run(BenchConfig(rate=1000, duration=1, connections=2))
        run.inflight_cap = 2
        run.measuring = True
        run.window_start = 0
        conns = [Silent(), Silent()]
        task = asyncio.ensure_future(_schedule(run, conns, 1000))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        task.cancel()
        return sum(len(c.inflight) for c in conns), run.unsent

    sent, unsent = asyncio.run(scenario())
    assert sent == 4
    assert unsent >= 50  # about 100 slots in 0.1 s at 1000/s


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--size", "1GiB"], "aioecho bench: error: --size 1073741824: at most 64MiB"),
        (["--connections", "100000"], "aioecho bench: error: --connections 100000: at most 50000"),
    ],
)
def test_counts_have_upper_bounds(args: list[str], line: str) -> None:
    result = run_cli("bench", *args)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [line]


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}"
            time.sleep(0.02)

"""`aioecho proxy`: a faithful relay in front of services nobody here wrote, and the same faults
as the server when asked."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import (
    WAIT,
    ServerProcess,
    end_group,
    error_line,
    flood_without_reading,
    pattern_bytes,
    raw_listener,
    require_tool,
    run_cli,
    sha256,
)
from transports import Certs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cat_service() -> Iterator[int]:
    """socat serving `cat` on a free port: an echo service nobody here wrote."""
    socat = require_tool("socat")
    port = free_port()
    proc = subprocess.Popen(
        [socat, f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr", "EXEC:cat"],
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        from test_bench import wait_for_port

        wait_for_port(port)
        yield port
    finally:
        end_group(proc)


def start_proxy(upstream: int, *args: str) -> ServerProcess:
    """`aioecho proxy` to 127.0.0.1:upstream; it prints the server's lines."""
    where = ("--to", f"127.0.0.1:{upstream}", "--host", "127.0.0.1", "--port", "0")
    return ServerProcess(*where, *args, program="proxy")


def test_relays_a_stream_intact_in_front_of_socat(cat_service: int, loop_name: str) -> None:
    data = pattern_bytes(8 << 20)
    with start_proxy(cat_service, "--loop", loop_name) as relay:
        relay.start()
        assert relay.lines[0] == f"main: forwarding to 127.0.0.1 port {cat_service}"
        seed = run_cli("client", "-q", "--host", "127.0.0.1", "--port", str(relay.port))
        assert seed.returncode == 0, seed.stderr
        result = run_cli(
            "client", "-q", "--host", "127.0.0.1", "--port", str(relay.port), "-", input=data
        )
        assert result.returncode == 0, result.stderr  # half-close forwarded both ways
        assert sha256(result.stdout) == sha256(data)
        assert relay.stop() == 0


def test_faults_apply_to_what_comes_back(cat_service: int) -> None:
    with start_proxy(cat_service, "--delay", "50ms") as relay:
        relay.start()
        result = run_cli(
            "ping", "-q", "--json", "--host", "127.0.0.1", "--port", str(relay.port), "-c", "3",
            "-i", "0.05",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout.decode().splitlines()[-1])
        assert summary["min_us"] >= 49_000
        assert relay.stop() == 0
    with start_proxy(cat_service, "--reset-after", "100") as relay:
        relay.start()
        result = run_cli(
            "client", "-q", "--host", "127.0.0.1", "--port", str(relay.port), "x" * 300
        )
        assert error_line(result) == (
            "aioecho client: error: the server reset the connection after echoing 100 of 300 bytes"
        )
        assert relay.stop() == 0


def test_an_upstream_that_refuses_closes_the_client_cleanly() -> None:
    with start_proxy(free_port()) as relay:
        relay.start()
        result = run_cli("client", "-q", "--host", "127.0.0.1", "--port", str(relay.port))
        assert error_line(result) == (
            "aioecho client: error: the server closed the connection without echoing (46 bytes "
            "sent)"
        )
        relay.wait_for_line(
            r"^Proxy_127\.0\.0\.1_\d+: upstream 127\.0\.0\.1 port \d+: connection refused$"
        )
        assert relay.stop() == 0


def test_an_upstream_that_resets_resets_the_client() -> None:
    with raw_listener() as upstream:

        def reset_one() -> None:
            conn, _ = upstream.accept()
            conn.recv(10)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

        threading.Thread(target=reset_one, daemon=True).start()
        with start_proxy(upstream.getsockname()[1]) as relay:
            relay.start()
            result = run_cli("client", "-q", "--host", "127.0.0.1", "--port", str(relay.port))
            assert error_line(result).startswith(
                "aioecho client: error: the server reset the connection"
            )
            assert relay.stop() == 0


def test_a_client_that_does_not_read_slows_the_upstream_down(loop_name: str) -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as echo:
        echo.start()
        args = ("-q", "--max-buffer", "64KiB", "--drain-timeout", "0.2", "--loop", loop_name)
        with start_proxy(echo.port, *args) as relay:
            relay.start()
            before = relay.rss_kib()
            sent = flood_without_reading(relay.port)  # the proxy stops reading: echo undelivered
            grew = relay.rss_kib() - before
            assert sent < 64 << 20, (sent, grew, relay.lines, echo.lines)
            assert grew < 32 * 1024, grew
            assert relay.stop() == 0
        assert echo.stop() == 0


def test_limits_apply_as_in_the_server(cat_service: int) -> None:
    with start_proxy(cat_service, "--max-connections", "1") as relay:
        relay.start()
        with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as held:
            held.sendall(b"hi")
            assert held.recv(10) == b"hi"
            refused = run_cli("client", "-q", "--host", "127.0.0.1", "--port", str(relay.port))
            assert refused.returncode == 1
        assert relay.stop() == 0
    assert any("refused 1 connection" in ln for ln in relay.lines), relay.lines


def test_in_front_of_redis_a_cut_looks_like_a_cut() -> None:
    redis_server = require_tool("redis-server")
    redis_cli = require_tool("redis-cli")
    port = free_port()
    redis = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        from test_bench import wait_for_port

        wait_for_port(port)
        with start_proxy(port) as relay, start_proxy(port, "--reset-after", "100") as cutting:
            relay.start()
            cutting.start()

            def cli(through: int, *command: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [redis_cli, "-p", str(through), *command],
                    capture_output=True, text=True, timeout=WAIT, check=False,
                )  # fmt: skip

            assert cli(relay.port, "SET", "k", "v" * 500).stdout.strip() == "OK"
            assert cli(relay.port, "STRLEN", "k").stdout.strip() == "500"
            assert cli(cutting.port, "PING").stdout.strip() == "PONG"
            cut = cli(cutting.port, "GET", "k")
            assert "Connection reset by peer" in cut.stdout + cut.stderr, cut
            assert relay.stop() == 0 and cutting.stop() == 0
    finally:
        redis.kill()
        redis.wait(WAIT)


def test_proxy_usage_errors() -> None:
    result = run_cli("proxy", "--to", "nowhere")
    assert result.returncode == 2
    assert "invalid target 'nowhere': use HOST:PORT" in result.stderr.decode()
    udp = run_cli("proxy", "--to", "127.0.0.1:5", "--udp")
    assert udp.returncode == 2
    assert udp.stderr.decode().splitlines() == [
        "aioecho proxy: error: no --udp here: the proxy relays TCP (and TLS, Unix) streams, "
        "not UDP (see aioecho proxy --help)"
    ]


def test_tls_clients_ending_through_the_proxy_log_nothing_odd(
    cat_service: int, loop_name: str, tmp_path: Path
) -> None:
    # asyncio logged "returning true from eof_received() has no effect when using ssl" for every
    # TLS client's EOF (issue 26 C19)
    certs = Certs.make(tmp_path)
    tls = ("--tls-cert", str(certs.cert), "--tls-key", str(certs.key))
    with start_proxy(cat_service, "--loop", loop_name, *tls) as relay:
        relay.start()
        for _ in range(3):
            result = run_cli(
                "client", "--tls", "--cafile", str(certs.ca), "--port", str(relay.port)
            )
            assert result.returncode == 0, result.stderr
        relay.wait_for_line(r": closing$")
        assert relay.stop() == 0
    assert not [line for line in relay.lines if "eof_received" in line], relay.lines

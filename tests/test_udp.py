"""UDP echo (RFC 862): whole datagrams back, no reflection, per-source rate limit."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from support import WAIT, ServerProcess, error_line, require_tool, run_cli


def udp_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(WAIT)
    return sock


def round_trip(port: int, payload: bytes) -> bytes:
    """Send until the echo comes back (UDP may drop), waiting on the socket, not a sleep."""
    with udp_socket() as sock:
        sock.settimeout(1.0)
        for _ in range(10):
            sock.sendto(payload, ("127.0.0.1", port))
            try:
                return sock.recv(65535)
            except TimeoutError:
                continue
    raise AssertionError("no echo after 10 tries")


@pytest.fixture
def udp_server(loop_name: str) -> Iterator[ServerProcess]:
    with ServerProcess(
        "--udp", "--host", "127.0.0.1", "--port", "0", "--loop", loop_name
    ) as server:
        yield server.start()


@pytest.fixture
def one_udp_server() -> Iterator[ServerProcess]:
    """On the default loop only: for the peers' own tests, which wait out their timeouts."""
    with ServerProcess("--udp", "--host", "127.0.0.1", "--port", "0") as server:
        yield server.start()


def test_listening_line_and_whole_datagrams(udp_server: ServerProcess) -> None:
    assert udp_server.lines[-1] == f"main: listening on 127.0.0.1 port {udp_server.port} (udp)"
    # 65507: the largest IPv4 UDP payload. (Not 0: asyncio's sendto silently skips empty data.)
    for size in (1, 1400, 9000, 65507):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert round_trip(udp_server.port, payload) == payload
    assert udp_server.stop() == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="binding UDP port 19 needs root (CI runs as root)")
def test_no_reply_to_a_reflection_port(udp_server: ServerProcess) -> None:
    with udp_socket(19) as chargen, udp_socket() as witness:  # 19: chargen
        chargen.sendto(b"loop?", ("127.0.0.1", udp_server.port))
        # The server reads its socket in order: once the witness's later datagram is echoed,
        # the one from port 19 has been dealt with.
        witness.sendto(b"after", ("127.0.0.1", udp_server.port))
        assert witness.recv(100) == b"after"
        chargen.setblocking(False)
        with pytest.raises(BlockingIOError):
            chargen.recv(100)
    udp_server.wait_for_line(r"^udp: dropped 1 datagram ")
    assert udp_server.stop() == 0


def test_flood_from_one_source_is_limited_and_others_are_served(loop_name: str) -> None:
    rate = 50
    args = (
        "--udp",
        "--udp-rate",
        str(rate),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--loop",
        loop_name,
    )
    with ServerProcess(*args) as server:
        server.start()
        with udp_socket() as flood:
            started = time.monotonic()
            for i in range(100_000):
                flood.sendto(i.to_bytes(4, "big"), ("127.0.0.1", server.port))
            # meanwhile another source is answered
            other = run_cli(
                "client", "--udp", "--port", str(server.port), "--timeout", "20", "still", "here"
            )
            assert other.returncode == 0, other.stderr
            elapsed = time.monotonic() - started
            flood.setblocking(False)
            replies = 0
            try:
                while flood.recv(100):
                    replies += 1
            except BlockingIOError:
                pass
        assert 1 <= replies <= rate + rate * elapsed + 1, (replies, elapsed)
        server.wait_for_line(r"^udp: dropped \d+ datagrams ")
        assert server.stop() == 0
    drop_lines = [ln for ln in server.lines if ln.startswith("udp: dropped")]
    assert len(drop_lines) <= elapsed + 3  # at most one a second, not one per datagram


def test_aioecho_udp_client(udp_server: ServerProcess) -> None:
    result = run_cli("client", "--udp", "--port", str(udp_server.port), "one", "two")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    assert f"EchoClient: connecting to 127.0.0.1 port {udp_server.port} (udp)" in lines
    assert "EchoClient: received b'two'" in lines
    assert udp_server.stop() == 0


def test_udp_client_without_server() -> None:
    with udp_socket() as reserved:
        port = reserved.getsockname()[1]
    result = run_cli("client", "--udp", "--port", str(port), "--timeout", "2", "anyone?")
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] in (
        f"aioecho client: error: cannot connect to localhost port {port} (udp): connection refused",
        "aioecho client: error: no echo of datagram 1 after 4 tries of 0.5s (--timeout, --retries)",
    )


def test_tcp_and_udp_share_the_port() -> None:
    with ServerProcess("--tcp", "--udp", "--host", "127.0.0.1", "--port", "0") as server:
        server.start(listeners=2)
        (_, tcp_port), (_, udp_port) = server.addresses
        assert tcp_port == udp_port
        assert server.lines[-2:] == [
            f"main: listening on 127.0.0.1 port {tcp_port}",
            f"main: listening on 127.0.0.1 port {tcp_port} (udp)",
        ]
        assert run_cli("client", "--port", str(tcp_port)).returncode == 0
        assert round_trip(udp_port, b"both") == b"both"
        assert server.stop() == 0


def test_socat_datagram_comes_back(one_udp_server: ServerProcess) -> None:
    udp_server = one_udp_server
    socat = require_tool("socat")
    result = subprocess.run(
        [socat, "-t", "2", "-", f"UDP:127.0.0.1:{udp_server.port}"],
        input=b"datagram via socat\n",
        capture_output=True,
        timeout=WAIT,
    )
    assert result.stdout == b"datagram via socat\n", result.stderr
    assert udp_server.stop() == 0


def test_netcat_datagram_comes_back(one_udp_server: ServerProcess) -> None:
    udp_server = one_udp_server
    nc = require_tool("nc")
    result = subprocess.run(
        [nc, "-u", "-w", "2", "127.0.0.1", str(udp_server.port)],
        input=b"datagram via netcat\n",
        capture_output=True,
        timeout=WAIT,
    )
    assert result.stdout == b"datagram via netcat\n", result.stderr
    assert udp_server.stop() == 0


def test_empty_datagrams_are_dropped_not_counted_as_echoed(udp_server: ServerProcess) -> None:
    from support import stats_now

    with udp_socket() as sock:
        for _ in range(5):
            sock.sendto(b"", ("127.0.0.1", udp_server.port))
        sock.sendto(b"after", ("127.0.0.1", udp_server.port))
        assert sock.recv(100) == b"after"  # read in order: the empty ones were dealt with
    stats = stats_now(udp_server)
    assert (stats["datagrams_echoed"], stats["datagrams_dropped"]) == (1, 5)
    assert udp_server.stop() == 0


def test_client_refuses_an_empty_datagram() -> None:
    result = run_cli("client", "--udp", "--port", "9", "one", "")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "aioecho client: error: --udp: an empty message cannot be sent as a datagram "
        "(see aioecho client --help)"
    ]


def test_client_says_a_datagram_is_too_large(one_udp_server: ServerProcess) -> None:
    result = run_cli("client", "-q", "--udp", "--port", str(one_udp_server.port), "x" * 65508)
    assert error_line(result) == (
        "aioecho client: error: datagram 1 (65508 bytes) is over the largest UDP payload "
        "(65507 bytes over IPv4)"
    )

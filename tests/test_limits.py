"""Limits and statistics: --max-connections, --idle-timeout, --max-buffer, the open-file limit."""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import time

import pytest

from support import WAIT, ServerProcess, run_cli, wait_for_stats


def count_served(socks: list[socket.socket]) -> int:
    """How many of the connections echo a byte (the refused ones read EOF or a reset)."""
    served = 0
    for sock in socks:
        with contextlib.suppress(ConnectionResetError):
            sock.sendall(b"x")
            served += sock.recv(1) == b"x"
    return served


def test_max_connections_serves_exactly_that_many() -> None:
    args = ("--host", "127.0.0.1", "--port", "0", "--max-connections", "100")
    with ServerProcess(*args) as server:
        server.start()
        socks = [
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) for _ in range(500)
        ]
        try:
            assert count_served(socks) == 100
            stats = wait_for_stats(server, refused=400)
            assert (stats["accepted"], stats["active"], stats["refused"]) == (100, 100, 400)
        finally:
            for sock in socks:
                sock.close()
        assert wait_for_stats(server, active=0)["active"] == 0
        # room again: a new client is served
        assert run_cli("client", "--port", str(server.port)).returncode == 0
        assert server.stop() == 0
    refusal_lines = [ln for ln in server.lines if "(--max-connections)" in ln]
    assert 1 <= len(refusal_lines) <= 5, refusal_lines  # rate-limited, not one per refusal


def test_idle_peer_is_closed_and_slow_peer_is_not() -> None:
    args = ("--host", "127.0.0.1", "--port", "0", "--idle-timeout", "0.6")
    with ServerProcess(*args) as server:
        server.start()
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as silent,
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as slow,
        ):
            started = time.monotonic()
            # slow-loris: one byte every 0.2 s keeps within the rules
            for byte in b"slowly":
                slow.sendall(bytes([byte]))
                assert slow.recv(1) == bytes([byte])
                time.sleep(0.2)  # the peer's pace, not a synchronisation
            assert silent.recv(1) == b""  # closed by the server, without a byte
            assert time.monotonic() - started >= 0.6
            slow.sendall(b"!")
            assert slow.recv(1) == b"!"
        server.wait_for_line(r": closing: idle for 0.6s \(--idle-timeout\)$")
        assert wait_for_stats(server, active=0)["idle_closed"] == 1
        assert server.stop() == 0


def test_statistics_count_bytes_and_resets() -> None:
    import struct

    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        assert run_cli("client", "--port", str(server.port), "12345", "6789").returncode == 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as bad:
            bad.sendall(b"abc")
            assert bad.recv(3) == b"abc"
            bad.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # a connection that resets before a byte (a balancer's TCP check) is a check, not a reset
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as check:
            check.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stats = wait_for_stats(server, active=0, resets=1, checks=1)
        assert stats == {
            "accepted": 3,
            "active": 0,
            "refused": 0,
            "idle_closed": 0,
            "resets": 1,
            "checks": 1,
            "bytes_in": 12,
            "bytes_out": 12,
            "datagrams_echoed": 0,
            "datagrams_dropped": 0,
        }
        assert server.stop() == 0


def test_memory_per_connection_is_bounded_by_max_buffer() -> None:
    """Per connection the server holds at most --max-buffer of queued echo plus one socket read
    (256 KiB): README's formula. 20 peers that never read must stay inside it."""
    peers, max_buffer, read_chunk = 20, 64 * 1024, 256 * 1024
    args = ("--host", "127.0.0.1", "--port", "0", "--max-buffer", str(max_buffer))
    with ServerProcess(*args) as server:
        server.start()
        baseline = server.rss_kib()
        block = b"z" * (1 << 20)
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(peers)]
        try:
            for sock in socks:
                sock.setblocking(False)
            # push on every socket until none has had room for a second: all stalled (a server
            # without flow control never stalls: the cap turns that into a failure below)
            pushed = 0
            while pushed < peers * 64 * len(block) and (
                writable := select.select([], socks, [], 1.0)[1]
            ):
                for sock in writable:
                    pushed += sock.send(block)
            grown = (server.rss_kib() - baseline) * 1024
        finally:
            for sock in socks:
                sock.close()
        assert server.stop() == 0
    bound = peers * (max_buffer + read_chunk) + 16 * 1024 * 1024  # + interpreter slack
    assert grown < bound, f"grew {grown} bytes, bound {bound}"


def _limit_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_open_file_limit_lowers_max_connections_and_server_recovers() -> None:
    with ServerProcess(
        "--host", "127.0.0.1", "--port", "0", preexec_fn=lambda: _limit_files(100)
    ) as server:
        server.start()
        warning = server.wait_for_line(r"open-file limit")
        assert warning == (
            "main: the open-file limit (100) allows 68 connections, not 10000: "
            "--max-connections lowered (raise the limit with ulimit -n)"
        )
        socks = [
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) for _ in range(200)
        ]
        try:
            assert count_served(socks) == 68
        finally:
            for sock in socks:
                sock.close()
        wait_for_stats(server, active=0)
        assert run_cli("client", "--port", str(server.port)).returncode == 0
        assert server.stop() == 0
    assert not [ln for ln in server.lines if "too many open files" in ln]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--max-connections", "0"],
            "argument --max-connections: invalid number 0: must be 1 or more",
        ),
        (["--idle-timeout", "-3"], "argument --idle-timeout: invalid duration '-3'"),
        (["--backlog", "many"], "argument --backlog: invalid number 'many': not a whole number"),
    ],
)
def test_limit_usage_errors(args: list[str], message: str) -> None:
    result = run_cli("server", *args)
    assert result.returncode == 2
    assert message in result.stderr.decode()

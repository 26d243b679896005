"""SIGTERM and SIGINT: stop accepting, let transfers in flight finish, exit 0 cleanly."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading

import pytest

from support import WAIT, ServerProcess, exchange, pattern_bytes, sha256

NOISE = (
    "Traceback",
    "Task was destroyed",
    "ResourceWarning",
    "Exception ignored",
    "never retrieved",
)


def assert_clean(lines: list[str]) -> None:
    noisy = [ln for ln in lines if any(word in ln for word in NOISE)]
    assert not noisy, noisy


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"]
)
def test_idle_server_exits_zero(sig: int, loop_name: str) -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--loop", loop_name) as server:
        server.start()
        assert server.stop(sig) == 0
    assert server.lines[-3] == "main: closing server"
    assert server.lines[-2] == (
        "stats: accepted=0 active=0 refused=0 idle_closed=0 resets=0 checks=0 bytes_in=0 "
        "bytes_out=0 datagrams_echoed=0 datagrams_dropped=0"
    )
    assert_clean(server.lines)


def test_transfer_in_flight_completes_and_new_connections_are_refused(loop_name: str) -> None:
    first, second = pattern_bytes(8 << 20, seed=1), pattern_bytes(8 << 20, seed=2)
    args = ("--host", "127.0.0.1", "--port", "0", "--drain-timeout", "30", "--loop", loop_name)
    with ServerProcess(*args) as server:
        server.start()
        digest = hashlib.sha256()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            reader = threading.Thread(
                target=lambda: [digest.update(c) for c in iter(lambda: sock.recv(1 << 20), b"")]
            )
            reader.start()
            sock.sendall(first)
            server.proc.send_signal(signal.SIGTERM)
            server.wait_for_line(r"^main: closing server$")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", server.port), timeout=WAIT).close()
            sock.sendall(second)
            sock.shutdown(socket.SHUT_WR)
            reader.join(WAIT)
        assert server.wait() == 0
    assert digest.hexdigest() == sha256(first + second)
    assert not any("aborted" in ln for ln in server.lines)
    assert_clean(server.lines)


def test_connections_left_after_drain_timeout_are_aborted(loop_name: str) -> None:
    args = ("--host", "127.0.0.1", "--port", "0", "--drain-timeout", "0.2", "--loop", loop_name)
    with ServerProcess(*args) as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
            assert server.stop() == 0
            try:
                rest = sock.recv(10)
            except ConnectionResetError:
                rest = b""
            assert rest == b""  # the peer is told: reset, not a silent hang
    assert "main: aborted 1 connection still open after 0.2s (--drain-timeout)" in server.lines
    assert_clean(server.lines)


def test_sighup_drains_and_removes_the_unix_socket(tmp_path: object) -> None:
    """A closed terminal (SIGHUP) shuts down as Ctrl-C does: stats, and no socket file left."""
    from transports import short_unix_path

    path = short_unix_path()
    with ServerProcess("--unix", path) as server:
        server.start()
        assert server.stop(signal.SIGHUP) == 0
    assert not os.path.exists(path)
    assert any(ln.startswith("stats: ") for ln in server.lines)


def close_stdin() -> None:
    os.close(0)


def test_server_with_stdin_closed_serves_and_stops_cleanly(loop_name: str) -> None:
    """libuv asserts (exit 134) on a socket at descriptor 0-2: they must be taken first."""
    with ServerProcess(
        "--host", "127.0.0.1", "--port", "0", "--loop", loop_name, preexec_fn=close_stdin
    ) as server:
        server.start()
        assert exchange(server.port, b"still served") == b"still served"
        assert server.stop() == 0
    assert_clean(server.lines)

"""Values at and past their bounds: one line at start-up that names the option, exit 2, never a
traceback, and nothing left behind (issue 26 A5, B10)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from support import WAIT, ServerProcess, run_cli

BAD = [
    (("--max-buffer", "2GiB"), "--max-buffer must be 1 byte to 1GiB"),
    (("--backlog", "2147483648"), "--backlog must be 1 to 65535"),
    (("--fd", "3", "--fd", "3"), "--fd 3 is given twice"),
    (("--fd", "99999999999"), "--fd must be 3 to 65535"),
    (("--stats-interval", "1e-300"), "--stats-interval must be 0 (only at shutdown) or 0.1 to"),
    (("--banner", "{worker:>10000000}"), "--banner: {worker:>10000000} is not a field"),
    (("--banner", "{hostname.__class__.__mro__}"), "--banner: {hostname.__class__.__mro__} is"),
    (("--banner", "{port:d}"), "--banner: {port:d} is not a field"),
    (("--banner", "{port[0]}"), "--banner: {port[0]} is not a field"),
    (("--banner", "{port!r}"), "--banner: {port!r} is not a field"),
    (("--banner", "{port:>999999999999}"), "--banner: {port:>999999999999} is not a field"),
    (("--banner", "{nope}"), "--banner: {nope} is not a field"),
    (("--banner", "x" * 5000), "--banner must be at most 4096 bytes"),
    (("--banner", "{hostname}" * 20), "--banner must be at most 4096 bytes"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_a_bad_value_is_one_line(args: tuple[str, ...], message: str) -> None:
    port = () if "--fd" in args else ("--port", "0")
    result = run_cli("server", *port, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert b"Traceback" not in result.stderr
    assert lines[-1].startswith(f"aioecho server: error: {message}"), lines


def test_a_refused_backlog_leaves_no_unix_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    result = run_cli("server", "--unix", str(path), "--backlog", "2147483648")
    assert result.returncode == 2, result.stderr
    assert not path.exists()


def test_the_largest_max_buffer_serves(loop_name: str) -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--max-buffer", "1GiB",
                       "--loop", loop_name) as server:  # fmt: skip
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"hello")
            assert sock.recv(10) == b"hello"
        assert server.stop() == 0
        assert not any("Traceback" in ln or "Error" in ln for ln in server.lines), server.lines


def test_a_banner_with_its_fields_is_sent() -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--banner",
                       "{{x}} {worker} {port}") as server:  # fmt: skip
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            assert sock.recv(100) == f"{{x}} 0 {server.port}\n".encode()
        assert server.stop() == 0

"""Unix domain sockets: stale files, live servers and other files, permissions, clean-up."""

from __future__ import annotations

import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ServerProcess, error_line, pattern_bytes, run_cli, sha256
from transports import short_unix_path


@pytest.fixture
def path() -> Iterator[str]:
    where = short_unix_path()
    yield where
    shutil.rmtree(Path(where).parent, ignore_errors=True)


def test_default_mode_is_owner_only_and_file_is_removed(path: str) -> None:
    with ServerProcess("--unix", path) as server:
        server.start()
        assert server.lines[-1] == f"main: listening on {path}"
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        assert stat.S_ISSOCK(Path(path).stat().st_mode)
        assert server.stop() == 0
    assert not Path(path).exists()


def test_unix_mode(path: str) -> None:
    with ServerProcess("--unix", path, "--unix-mode", "660") as server:
        server.start()
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o660
        assert server.stop() == 0


def test_stale_socket_is_replaced(path: str) -> None:
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)  # a socket file nobody listens on: what a killed server leaves
    dead.close()
    with ServerProcess("--unix", path) as server:
        server.start()
        assert f"main: removing stale socket {path}" in server.lines
        assert run_cli("client", "--unix", path).returncode == 0
        assert server.stop() == 0


def test_live_server_is_not_taken_over(path: str) -> None:
    with ServerProcess("--unix", path) as first:
        first.start()
        second = run_cli("server", "--unix", path)
        assert error_line(second) == (
            f"aioecho server: error: cannot listen on {path}: another server is listening there"
        )
        data = pattern_bytes(1 << 20, seed=4)
        result = run_cli("client", "-q", "--unix", path, "-", input=data)
        assert result.returncode == 0 and sha256(result.stdout) == sha256(data)
        assert first.stop() == 0


def test_path_that_is_not_a_socket_is_left_alone(path: str) -> None:
    Path(path).write_text("precious")
    result = run_cli("server", "--unix", path)
    assert error_line(result) == (
        f"aioecho server: error: cannot listen on {path}: the path exists and is not a socket"
    )
    assert Path(path).read_text() == "precious"


def test_client_to_missing_socket(path: str) -> None:
    result = run_cli("client", "--unix", path)
    assert error_line(result) == (
        f"aioecho client: error: cannot connect to {path}: no such file or directory"
    )


def test_bad_mode_is_a_usage_error() -> None:
    result = run_cli("server", "--unix", "/tmp/x.sock", "--unix-mode", "999")
    assert result.returncode == 2
    assert "invalid mode '999'" in result.stderr.decode()

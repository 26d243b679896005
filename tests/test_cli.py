"""The `aioecho` command as a user runs it: real subprocesses, exact lines and exit codes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support import (
    WAIT,
    ServerProcess,
    aioecho_command,
    error_line,
    lines_without,
    pattern_bytes,
    raw_listener,
    reader_goes_away,
    require_tool,
    run_cli,
    sha256,
)

SEED_CLIENT = [
    "main: waiting for client to complete",
    "EchoClient: connecting to 127.0.0.1 port {port}",
    "EchoClient: sending b'This is the message. '",
    "EchoClient: sending b'It will be sent '",
    "EchoClient: sending b'in parts.'",
    # the echo may come back in one or several pieces: checked separately below
    "EchoClient: received EOF",
    "EchoClient: server closed connection",
    "main: closing event loop",
]


def test_seed_output_is_reproduced(loop_name: str) -> None:
    with ServerProcess("-v", "--host", "127.0.0.1", "--port", "0", "--loop", loop_name) as server:
        server.start()
        result = run_cli("client", "--port", str(server.port), "--loop", loop_name)
        assert result.returncode == 0, result.stderr
        lines = result.stderr.decode().splitlines()
        received = [ln for ln in lines if ln.startswith("EchoClient: received b")]
        echoed = "".join(
            re.fullmatch(r"EchoClient: received b'(.*)'", ln).group(1) for ln in received
        )  # type: ignore[union-attr]
        assert echoed == "This is the message. It will be sent in parts."
        assert [ln for ln in lines if ln not in received] == [
            ln.format(port=server.port) for ln in SEED_CLIENT
        ]
        conn = server.wait_for_line(r"connection accepted$").split(":")[0]
        server.wait_for_line(rf"^{re.escape(conn)}: closing$")
        assert server.stop() == 0
    first_lines = server.lines[:3]
    # -v shows asyncio's own debug lines too, such as "asyncio: Using selector: EpollSelector"
    using = next(ln for ln in first_lines if ln.startswith("main: using "))
    expected = "main: using uvloop " if loop_name == "uvloop" else "main: using asyncio ("
    assert using.startswith(expected), first_lines
    assert "main: starting up on 127.0.0.1 port 0" in first_lines
    server_lines = [ln for ln in server.lines if ln.startswith(conn)]
    assert server_lines[0] == f"{conn}: connection accepted"
    assert server_lines[-2:] == [f"{conn}: received EOF", f"{conn}: closing"]
    middle = server_lines[1:-2]
    assert [ln.split(": ")[1].split(" ")[0] for ln in middle] == ["received", "sent"] * (
        len(middle) // 2
    )
    ours = lines_without(server.lines, "asyncio: ")  # asyncio's debug mode logs more with -v
    assert ours[-3] == "main: closing server"
    assert ours[-2].startswith("stats: accepted=1 active=0 refused=0 idle_closed=0 resets=0 ")
    assert re.fullmatch(r"EchoServer_127\.0\.0\.1_\d+", conn)


def test_default_level_logs_lifecycle_not_chunks() -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        assert run_cli("client", "--port", str(server.port)).returncode == 0
        server.wait_for_line(r": closing$")
        assert server.stop() == 0
    assert server.lines[0].startswith("main: using ")
    assert not [ln for ln in server.lines if "received" in ln or "sent b" in ln]
    assert any(ln.endswith(": connection accepted") for ln in server.lines)


def test_quiet_prints_only_listening_lines() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        result = run_cli("client", "-q", "--port", str(server.port))
        assert result.returncode == 0
        assert result.stderr == b""
        assert server.stop() == 0
    assert server.lines == [f"main: listening on 127.0.0.1 port {server.port}", "<EOF>"]


def test_port_zero_is_one_port_for_every_host() -> None:
    with ServerProcess("--host", "127.0.0.1", "--host", "::1", "--port", "0") as server:
        server.start(listeners=2)
        (host4, port4), (host6, port6) = server.addresses
        assert (host4, host6) == ("127.0.0.1", "::1")
        assert port4 == port6
        for host in ("127.0.0.1", "::1"):
            result = run_cli("client", "--host", host, "--port", str(port4), "hi")
            assert result.returncode == 0, result.stderr
        assert server.stop() == 0


def test_stream_stdin_to_stdout(loop_name: str) -> None:
    data = pattern_bytes(32 * 1024 * 1024, seed=11)
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--loop", loop_name) as server:
        server.start()
        result = run_cli("client", "--port", str(server.port), "--loop", loop_name, "-", input=data)
        assert result.returncode == 0, result.stderr
        assert sha256(result.stdout) == sha256(data)
        assert b"sending" not in result.stderr  # no per-chunk lines without -v
        assert f"main: echoed {len(data)} bytes intact".encode() in result.stderr
        assert server.stop() == 0


def test_client_detects_a_wrong_echo() -> None:
    with raw_listener() as listener:

        def corrupt() -> None:
            conn, _ = listener.accept()
            with conn:
                data = conn.recv(100)
                conn.sendall(data[:3] + b"X" + data[4:])
                conn.shutdown(socket.SHUT_WR)

        threading.Thread(target=corrupt, daemon=True).start()
        result = run_cli("client", "--port", str(listener.getsockname()[1]), "hello")
    assert (
        error_line(result) == "aioecho client: error: the echo differs from what was sent at byte 3"
    )


def test_stream_client_detects_a_wrong_echo() -> None:
    with raw_listener() as listener:

        def corrupt() -> None:
            conn, _ = listener.accept()
            with conn:
                data = conn.recv(10)
                conn.sendall(b"\x00" + data[1:])

        threading.Thread(target=corrupt, daemon=True).start()
        result = run_cli(
            "client", "--port", str(listener.getsockname()[1]), "-", input=b"abcdefghij"
        )
    assert result.returncode == 1
    assert b"aioecho client: error: the echo differs from what was sent at byte 0" in result.stderr
    assert b"Traceback" not in result.stderr


def test_client_times_out_on_silence() -> None:
    with raw_listener() as listener:
        port = listener.getsockname()[1]
        result = run_cli("client", "--port", str(port), "--timeout", "0.5", "hello")
        result_stream = run_cli("client", "--port", str(port), "--timeout", "0.5", "-", input=b"x")
    for res in (result, result_stream):
        assert (
            error_line(res) == "aioecho client: error: the server sent nothing for 0.5s (--timeout)"
        )


def test_client_connection_refused() -> None:
    with raw_listener() as listener:
        port = listener.getsockname()[1]
    result = run_cli("client", "--host", "127.0.0.1", "--port", str(port))
    assert error_line(result) == (
        f"aioecho client: error: cannot connect to 127.0.0.1 port {port}: connection refused"
    )


def test_client_server_resets() -> None:
    with raw_listener() as listener:

        def reset() -> None:
            import struct

            conn, _ = listener.accept()
            conn.recv(10)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

        threading.Thread(target=reset, daemon=True).start()
        result = run_cli("client", "--port", str(listener.getsockname()[1]), "hello")
    assert error_line(result) == (
        "aioecho client: error: the server reset the connection without echoing (5 bytes sent)"
    )


def test_port_in_use() -> None:
    with raw_listener() as listener:
        port = listener.getsockname()[1]
        result = run_cli("server", "--host", "127.0.0.1", "--port", str(port))
    assert error_line(result) == (
        f"aioecho server: error: cannot listen on 127.0.0.1 port {port}: address already in use"
    )


def test_address_not_on_this_machine() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned locally; bind fails, nothing is sent.
    result = run_cli("server", "--host", "192.0.2.1", "--port", "0")
    assert error_line(result) == (
        "aioecho server: error: cannot listen on 192.0.2.1 port 0: cannot assign requested address"
    )


def test_privileged_port_refused() -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 1:
        pytest.skip("this machine lets anyone bind any port")
    prefix: list[str] = []
    if os.geteuid() == 0:  # root binds anything: drop the capability that allows it
        prefix = [require_tool("setpriv"), "--bounding-set", "-net_bind_service"]
    result = subprocess.run(
        [*prefix, *aioecho_command("server", "--host", "127.0.0.1", "--port", "1")],
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert error_line(result) == (
        "aioecho server: error: cannot listen on 127.0.0.1 port 1: permission denied"
    )


def test_host_that_does_not_resolve() -> None:
    result = run_cli("server", "--host", "no-such-host.invalid", "--port", "0")
    assert result.returncode == 1
    line = result.stderr.decode().splitlines()[-1]
    assert line.startswith("aioecho server: error: cannot resolve host 'no-such-host.invalid': ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server", "--port", "70000"], "argument --port: invalid port 70000: must be 0 to 65535"),
        (["server", "--port", "ten"], "argument --port: invalid port 'ten': not a number"),
        (["client", "--port", "-5"], "argument --port: invalid port -5: must be 0 to 65535"),
        (["client", "--timeout", "soon"], "argument --timeout: invalid duration 'soon'"),
        (["server", "--drain-timeout", "-1"], "argument --drain-timeout: invalid duration '-1'"),
        (["server", "-q", "-v"], "argument -v/--verbose: not allowed with argument -q/--quiet"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr.decode().splitlines()[-1]
    assert b"Traceback" not in result.stderr


def test_help_has_examples() -> None:
    for command in ("server", "client"):
        result = run_cli(command, "--help")
        assert result.returncode == 0
        assert b"examples:" in result.stdout


def test_a_reset_peer_is_one_log_line() -> None:
    import struct

    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"x" * 1000)
            assert sock.recv(1000)
            name = f"EchoServer_127.0.0.1_{sock.getsockname()[1]}"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.wait_for_line(rf"^{name}: closing")
        assert run_cli("client", "--port", str(server.port)).returncode == 0  # others unaffected
        assert server.stop() == 0
    assert [ln for ln in server.lines if ln.startswith(name)] == [
        f"{name}: connection accepted",
        f"{name}: closing: connection reset by peer",
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["server", "--work", "2"],
            "aioecho server: error: unknown option --work; did you mean --workers? "
            "(see aioecho server --help)",
        ),
        (
            ["server", "--max-buffer", "0"],
            "aioecho server: error: --max-buffer must be 1 byte to 1GiB",
        ),
        (
            ["bench", "--duration", "0"],
            "aioecho bench: error: --duration must be more than 0 seconds",
        ),
        (["server", "--workers", "100000"], None),  # the bound depends on the CPUs
    ],
)
def test_usage_errors_are_one_line_naming_a_real_flag(args: list[str], line: str | None) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    if line is None:
        assert lines[0].startswith("aioecho server: error: --workers 100000: at most "), lines
    else:
        assert lines[0] == line


def test_no_hidden_option_leaks_into_help_or_abbreviations() -> None:
    for command in ("server", "bench"):
        assert b"--worker-" not in run_cli(command, "--help").stdout


def test_a_bug_is_a_traceback_and_exit_1_not_a_usage_error() -> None:
    """An internal ValueError (here injected into the histogram) must not read as the user's
    mistake (exit 2, one line): it shows its traceback."""
    code = (
        "import sys\n"
        "from aioecho import cli, histogram\n"
        "def broken(self, value): raise ValueError('injected bug')\n"
        "histogram.LatencyHistogram.record = broken\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "bench", "--spawn", "--requests", "20", "--warmup", "0"],
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback (most recent call last)" in stderr
    assert "ValueError: injected bug" in stderr


def test_client_stream_ends_when_its_reader_goes_away(loop_name: str, tmp_path: Path) -> None:
    """`aioecho client - < big | head -c 10` must end (exit 1, one line), not hang."""
    big = tmp_path / "big.bin"
    big.write_bytes(pattern_bytes(32 * 1024 * 1024))
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        with big.open("rb") as stdin:
            status, lines, got = reader_goes_away(
                ["client", "-q", "--port", str(server.port), "--loop", loop_name, "-"],
                lambda stdout: stdout.read(10),
                stdin,
            )
        assert len(got) == 10
        assert status == 1
        assert lines == ["aioecho client: error: cannot write to standard output: broken pipe"]
        assert server.stop() == 0


def test_client_stream_with_stdin_closed_is_an_empty_stream(loop_name: str) -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        result = subprocess.run(
            ["bash", "-c", 'exec "$@" <&-', "-", *aioecho_command(
                "client", "--port", str(server.port), "--loop", loop_name, "-"
            )],
            capture_output=True,
            timeout=WAIT,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "main: echoed 0 bytes intact" in result.stderr.decode().splitlines()
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["server", "--unix", "/tmp/x.sock", "--port", "5"],
            "--unix listens on a socket file: it does not go with --host or --port",
        ),
        (
            ["server", "--unix", "/tmp/x.sock", "--host", "::1"],
            "--unix listens on a socket file: it does not go with --host or --port",
        ),
        (
            ["client", "--unix", "/tmp/x.sock", "--host", "h"],
            "--unix connects to a socket file: --host goes with it only with --tls "
            "(the name to verify)",
        ),
        (
            ["bench", "--spawn", "--port", "5"],
            "--spawn picks its own address: it does not go with --host, --port or --unix",
        ),
        (
            ["bench", "--spawn", "--tls", "--insecure"],
            "--spawn starts a plain TCP server: it does not go with --tls",
        ),
    ],
)
def test_conflicting_options_are_refused(args: list[str], line: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [f"aioecho {args[0]}: error: {line}"]


def test_bench_help_explains_every_option() -> None:
    text = run_cli("bench", "--help").stdout.decode().split("options:", 1)[1]
    for option in ("--connections N", "--duration SECONDS", "--warmup SECONDS"):
        described = " ".join(text.split(option, 1)[1].split("\n  -", 1)[0].split())
        assert "(default " in described, described

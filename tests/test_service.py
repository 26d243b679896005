"""Running as a service: settings from the environment, systemd socket activation and --fd,
and --banner behind a real HAProxy."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support import (
    HAPROXY_DEFAULTS,
    WAIT,
    ServerProcess,
    free_port,
    peer,
    require_tool,
    run_cli,
)


def read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed after {line!r}"
        line += chunk
    return line


def echo_once(port: int, data: bytes = b"hello") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(data)
        return sock.recv(100)


def test_every_option_can_come_from_the_environment() -> None:
    env = {"AIOECHO_HOST": "127.0.0.1", "AIOECHO_PORT": "0", "AIOECHO_TCP": "1",
           "AIOECHO_UDP": "yes", "AIOECHO_MAX_BUFFER": "1MiB", "AIOECHO_QUIET": "1"}  # fmt: skip
    with ServerProcess(env=env) as server:
        server.start(listeners=2)
        assert [a for a, _ in server.addresses] == ["127.0.0.1", "127.0.0.1"]
        assert echo_once(server.port) == b"hello"
        assert server.stop() == 0
    assert not [ln for ln in server.lines if "connection accepted" in ln]  # AIOECHO_QUIET


def test_a_port_from_the_environment_and_the_command_line_winning() -> None:
    port = free_port()
    with ServerProcess("-q", env={"AIOECHO_PORT": str(port), "AIOECHO_HOST": "127.0.0.1"}) as s:
        s.start()
        assert s.port == port
    with ServerProcess("-q", "--port", "0", env={"AIOECHO_PORT": "1",
                                                 "AIOECHO_HOST": "127.0.0.1"}) as s:  # fmt: skip
        s.start()
        assert s.port not in (0, 1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AIOECHO_PORT": "x"}, "aioecho server: error: AIOECHO_PORT='x': invalid port 'x'"),
        ({"AIOECHO_UDP": "maybe"}, "aioecho server: error: AIOECHO_UDP='maybe': a flag is 1 or 0"),
        ({"AIOECHO_LOOP": "tokio"}, "aioecho server: error: AIOECHO_LOOP='tokio': must be one of"),
        ({"AIOECHO_MAX_BUFFER": "0"}, "aioecho server: error: --max-buffer must be 1 byte to 1GiB"),
    ],
)
def test_a_bad_value_in_the_environment_is_one_line_naming_it(
    env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aioecho", "server"],
        env={**os.environ, **env},
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_a_flag_given_beats_the_one_it_excludes_in_the_environment() -> None:
    """AIOECHO_VERBOSE=1 used to beat -q on the command line."""
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0",
                       env={"AIOECHO_VERBOSE": "1"}) as server:  # fmt: skip
        server.start()
        assert echo_once(server.port) == b"hello"
        assert server.stop() == 0
    assert not [ln for ln in server.lines if "connection accepted" in ln or "using" in ln]


def test_a_misspelled_variable_is_a_warning_and_no_longer_a_worker_role() -> None:
    """AIOECHO_WORKER=2 (a typo of AIOECHO_WORKERS) used to exit with "'int' object is not a
    mapping": it was the workers' own variable; now it is a typo, said as one."""
    with ServerProcess("--host", "127.0.0.1", "--port", "0",
                       env={"AIOECHO_WORKER": "2"}) as server:  # fmt: skip
        server.start()
        assert echo_once(server.port) == b"hello"
        assert server.stop() == 0
    assert server.lines[0] == (
        "aioecho server: warning: AIOECHO_WORKER names no option of aioecho server; did you mean "
        "AIOECHO_WORKERS?"
    )


def test_the_proxy_reads_its_own_variables() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as upstream:
        upstream.start()
        env = {"AIOECHO_PROXY_TO": f"127.0.0.1:{upstream.port}", "AIOECHO_PROXY_PORT": "0",
               "AIOECHO_PROXY_HOST": "127.0.0.1", "AIOECHO_PORT": "1"}  # fmt: skip
        with ServerProcess(program="proxy", env=env) as relay:
            relay.start()
            assert echo_once(relay.port) == b"hello"
            assert relay.stop() == 0
        assert upstream.stop() == 0


@pytest.mark.timeout(60)
def test_socket_activation_refuses_a_host_or_port_given() -> None:
    activate = require_tool("systemd-socket-activate")
    port = free_port()
    with ServerProcess("--port", "0", command=[activate, "-l", f"127.0.0.1:{port}"]) as server:
        server.wait_for_line(rf"^Listening on 127\.0\.0\.1:{port} as 3\.$")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        line = server.wait_for_line(r"^aioecho server: error:")
        assert line == (
            "aioecho server: error: socket activation (LISTEN_FDS) hands over the sockets to "
            "serve: it "
            "does not go with --host, --port, --unix or --fd"
        )


def test_help_says_once_that_the_environment_works() -> None:
    text = run_cli("server", "--help").stdout.decode()
    assert text.count("AIOECHO_<OPTION>") == 1


@pytest.mark.timeout(60)
def test_systemd_socket_activation_tcp_and_udp() -> None:
    activate = require_tool("systemd-socket-activate")
    port = free_port()
    with ServerProcess("-q", command=[activate, "-l", f"127.0.0.1:{port}"]) as server:
        server.wait_for_line(rf"^Listening on 127\.0\.0\.1:{port} as 3\.$")
        assert echo_once(port) == b"hello"  # the first connection starts the server
        line = server.wait_for_line(r"^main: listening on ")
        assert line == f"main: listening on 127.0.0.1 port {port} (socket activation)"
        assert echo_once(port, b"again") == b"again"
        assert server.stop() == 0
    port = free_port(socket.SOCK_DGRAM)
    with ServerProcess("-q", command=[activate, "--datagram", "-l", f"127.0.0.1:{port}"]) as udp:
        udp.wait_for_line(rf"^Listening on 127\.0\.0\.1:{port} as 3\.$")
        client = run_cli("client", "-q", "--udp", "--host", "127.0.0.1", "--port", str(port), "hi")
        assert client.returncode == 0, client.stderr
        line = udp.wait_for_line(r"^main: listening on ")
        assert line == f"main: listening on 127.0.0.1 port {port} (udp) (socket activation)"


def test_fd_serves_an_inherited_socket() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        with ServerProcess("-q", "--fd", str(fd), pass_fds=[fd]) as server:
            server.start()
            assert server.lines[-1] == f"main: listening on 127.0.0.1 port {port} (inherited)"
            assert echo_once(port) == b"hello"
            assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fd", "1"], "--fd: invalid number 1: must be 3 or more"),
        (["--fd", "3", "--port", "7"], "--fd serves a socket already made"),
        (["--fd", "99"], "cannot listen on descriptor 99: bad file descriptor"),
        (["--banner", "{nope}"], "--banner: {nope} is not a field: the fields are {hostname}"),
        (["--banner", "x", "--delay", "1"], "--banner does not go with --trace or the stream"),
    ],
)
def test_service_option_errors_are_one_line(args: list[str], message: str) -> None:
    result = run_cli("server", *args)
    assert result.returncode in (1, 2)
    lines = [ln for ln in result.stderr.decode().splitlines() if "error" in ln]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_banner_comes_first_then_the_echo() -> None:
    banner = "served by {hostname} pid {pid} worker {worker} port {port}"
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--banner", banner) as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            line = read_line(sock).decode()
            sock.sendall(b"echo")
            assert sock.recv(100) == b"echo"
    hostname = socket.gethostname()
    assert line == f"served by {hostname} pid {server.proc.pid} worker 0 port {server.port}\n"


HAPROXY = (
    HAPROXY_DEFAULTS
    + """\
frontend echo
    bind 127.0.0.1:{port}
    default_backend servers
backend servers
    balance roundrobin
{servers}
"""
)


@pytest.mark.timeout(60)
def test_two_banner_servers_behind_haproxy_answer_in_turn(tmp_path: Path) -> None:
    haproxy = require_tool("haproxy")
    servers = [
        ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--banner", "served by {port}")
        for _ in range(2)
    ]
    try:
        ports = [server.start().port for server in servers]
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        backends = "".join(f"    server s{p} 127.0.0.1:{p}\n" for p in ports)
        config.write_text(HAPROXY.format(port=front, servers=backends))
        with peer([haproxy, "-db", "-f", str(config)], front):
            answers = []
            for _ in range(4):
                with socket.create_connection(("127.0.0.1", front), timeout=WAIT) as sock:
                    answers.append(read_line(sock).decode().strip())
                    sock.sendall(b"x")
                    assert sock.recv(10) == b"x"
    finally:
        for server in servers:
            server.__exit__()
    assert answers[0] != answers[1] and answers[0::2] == [answers[0]] * 2
    assert sorted(set(answers)) == sorted(f"served by {p}" for p in ports)


def test_the_shipped_systemd_units_verify() -> None:
    """As shipped: the path of the program is not swapped for the test's (it used to be, and
    the shipped ExecStart=/usr/local/bin/aioecho failed `systemd-analyze verify` wherever
    aioecho was not installed there)."""
    analyze = require_tool("systemd-analyze")
    units = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
    result = subprocess.run(
        [analyze, "verify", str(units / "aioecho.socket"), str(units / "aioecho.service")],
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    text = (units / "aioecho.service").read_text()
    exec_start = next(
        ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("ExecStart=")
    )
    assert exec_start.split() == [
        "/usr/bin/env", "aioecho", "server", "--stats-interval", "60", "--drain-delay", "5"
    ]  # fmt: skip


def test_the_shipped_service_unit_stays_hardened() -> None:
    """systemd-analyze security's exposure score: 3.2 when issue 25 was filed, at most that."""
    analyze = require_tool("systemd-analyze")
    unit = Path(__file__).resolve().parent.parent / "deploy" / "systemd" / "aioecho.service"
    result = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)],
        capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for aioecho\.service: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.2


def test_log_format_json_is_an_object_per_line_with_the_peer() -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--log-format", "json") as server:
        server.wait_for_line(r'"message": "listening on ')
        port = int(json.loads(server.wait_for_line(r'"listening on '))["message"].split()[-1])
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(b"x")
            assert sock.recv(10) == b"x"
            peer_name = f"EchoServer_127.0.0.1_{sock.getsockname()[1]}"
        line = json.loads(server.wait_for_line(r'"message": "closing"'))
        assert server.stop() == 0
    assert line["peer"] == peer_name and line["level"] == "info"
    assert (line["peer_ip"], line["peer_port"]) == ("127.0.0.1", int(peer_name.split("_")[-1]))
    assert line["logger"] == "aioecho.server"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])
    assert line["pid"] == server.proc.pid and line["host"] == socket.gethostname()
    documents = [json.loads(ln) for ln in server.lines if ln != "<EOF>"]
    assert {d["level"] for d in documents} <= {"debug", "info", "warning", "error", "critical"}
    listening = next(d for d in documents if d["message"].startswith("listening on"))
    assert listening["notice"] is True  # our NOTICE level, as info
    stats = next(d for d in documents if d["logger"] == "aioecho.stats")
    assert stats["accepted"] == 1 and stats["bytes_in"] == 1 and stats["active"] == 0
    assert "fault_resets" not in stats  # no faults: no fault counters


def test_log_timestamps_start_every_text_line() -> None:
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z "
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--log-timestamps") as server:
        port = int(server.wait_for_line(stamp + r"main: listening on ").split()[-1])
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(b"x")
            assert sock.recv(10) == b"x"
        server.wait_for_line(stamp + r"EchoServer_127\.0\.0\.1_\d+: closing$")
        assert server.stop() == 0
    assert all(re.match(stamp, ln) for ln in server.lines if ln != "<EOF>"), server.lines


def _notifications(sock: socket.socket, until: str) -> list[str]:
    """Datagrams from the server, each as text, up to the first that contains `until`."""
    got = []
    while not got or until not in got[-1]:
        got.append(sock.recv(4096).decode())
    return got


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_notify_ready_watchdog_and_stopping(workers: str) -> None:
    # Type=notify: READY=1 once listening, WATCHDOG=1 from the loop at half WATCHDOG_USEC
    # (none while the process is stopped), STOPPING=1 at the drain (issue 25 #2). A Unix
    # datagram socket stands in for systemd.
    from transports import short_unix_path

    path = short_unix_path()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        systemd.settimeout(WAIT)
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
        args = ("--host", "127.0.0.1", "--port", "0", "--workers", workers)
        with ServerProcess(*args, env=env) as server:
            first = _notifications(systemd, "READY=1")
            assert len(first) == 1, first  # READY is the first word systemd hears
            server.start()  # READY came after every listening line was ready to be printed
            with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT):
                pass
            assert "STATUS=" in first[0]
            pings = _notifications(systemd, "WATCHDOG=1")
            pings += _notifications(systemd, "WATCHDOG=1")  # every 0.1 s
            server.proc.send_signal(signal.SIGSTOP)  # the loop cannot run: no pings
            systemd.settimeout(0.5)
            with pytest.raises(TimeoutError):
                while True:  # what was sent before the stop, then nothing
                    systemd.recv(4096)
            server.proc.send_signal(signal.SIGCONT)
            systemd.settimeout(WAIT)
            assert "WATCHDOG=1" in _notifications(systemd, "WATCHDOG=1")[-1]
            server.proc.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in _notifications(systemd, "STOPPING=1")[-1]
            assert server.wait() == 0

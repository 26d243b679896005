"""One suite over every stream transport (TCP over IPv4 and IPv6, Unix sockets, TLS): the seed
scenario, every byte value, a large stream by hash, and shutdown with a transfer in flight."""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ServerProcess, pattern_bytes, run_cli, sha256
from transports import Certs, Pump, Transport, short_unix_path

TRANSPORTS = ["tcp4", "tcp6", "unix", "tls"]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, certs: Certs) -> Iterator[Transport]:
    path = short_unix_path()
    yield Transport(str(request.param), certs=certs, unix_path=path)
    shutil.rmtree(Path(path).parent, ignore_errors=True)


def test_seed_scenario(transport: Transport, loop_name: str) -> None:
    with ServerProcess("-v", "--loop", loop_name, *transport.server_args()) as server:
        server.start()
        result = run_cli("client", "--loop", loop_name, *transport.client_args(server))
        assert result.returncode == 0, result.stderr
        lines = result.stderr.decode().splitlines()
        echoed = "".join(
            m.group(1) for ln in lines if (m := re.fullmatch(r"EchoClient: received b'(.*)'", ln))
        )
        assert echoed == "This is the message. It will be sent in parts."
        assert [ln for ln in lines if "received b" not in ln][-3:] == [
            # with TLS, no half-close: the client closes once the echo is complete, and this EOF
            # is the server's close_notify answering ours
            "EchoClient: received EOF",
            "EchoClient: server closed connection",
            "main: closing event loop",
        ]
        conn = server.wait_for_line(r": connection accepted$").split(": ")[0]
        server.wait_for_line(rf"^{re.escape(conn)}: closing$")
        assert server.stop() == 0
    ours = [ln.split(": ", 1)[1] for ln in server.lines if ln.startswith(conn + ":")]
    assert ours[0] == "connection accepted"
    assert ours[-1] == "closing"
    assert "".join(ln[len("received b'") : -1] for ln in ours if ln.startswith("received b")) == (
        "This is the message. It will be sent in parts."
    )


def test_every_byte_value_and_a_large_stream(transport: Transport, loop_name: str) -> None:
    data = bytes(range(256)) * 4096 + pattern_bytes(24 << 20, seed=9)
    with ServerProcess("-q", "--loop", loop_name, *transport.server_args()) as server:
        server.start()
        result = run_cli(
            "client", "-q", "--loop", loop_name, *transport.client_args(server), "-", input=data
        )
        assert result.returncode == 0, result.stderr
        assert sha256(result.stdout) == sha256(data)
        assert server.stop() == 0


def test_transfer_in_flight_survives_shutdown(transport: Transport) -> None:
    first, second = pattern_bytes(4 << 20, seed=1), pattern_bytes(4 << 20, seed=2)
    total = len(first) + len(second)
    with ServerProcess("--drain-timeout", "30", *transport.server_args()) as server:
        server.start()
        with transport.connect(server) as sock:
            pump = Pump(sock)
            pump.run(first)
            server.proc.send_signal(signal.SIGTERM)
            server.wait_for_line(r"^main: closing server$")
            with pytest.raises((ConnectionRefusedError, FileNotFoundError)):
                transport.connect(server).close()
            pump.run(second)
            transport.finish_sending(sock)
            pump.run(until=total)
        assert server.wait() == 0
    got, digest = pump.got, pump.digest
    assert got == total
    assert digest.hexdigest() == sha256(first + second)
    if transport.name == "unix":
        assert not Path(transport.unix_path).exists()

"""TLS: clear errors for bad files and bad peers, and peers nobody here wrote."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

from support import WAIT, ServerProcess, require_tool, run_cli
from transports import Certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs.make(tmp_path_factory.mktemp("certs"))


def tls_server(certs: Certs, *args: str) -> ServerProcess:
    return ServerProcess(
        "--host", "127.0.0.1", "--port", "0", "--tls-cert", str(certs.cert), "--tls-key",
        str(certs.key), *args,
    )  # fmt: skip


def last_line(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode().splitlines()[-1]


def test_missing_certificate(certs: Certs) -> None:
    missing = "/nonexistent/cert.pem"
    result = run_cli("server", "--port", "0", "--tls-cert", missing, "--tls-key", str(certs.key))
    assert result.returncode == 1
    assert last_line(result) == (
        f"aioecho: error: cannot read TLS certificate {missing}: no such file or directory"
    )


def test_unreadable_key(certs: Certs, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(certs.key.read_bytes())
    key.chmod(0)
    if os.access(key, os.R_OK):  # root reads anything: make it a directory instead
        key.unlink()
        key.mkdir()
    result = run_cli("server", "--port", "0", "--tls-cert", str(certs.cert), "--tls-key", str(key))
    assert result.returncode == 1
    assert last_line(result).startswith(f"aioecho: error: cannot read TLS key {key}: ")


def test_key_that_does_not_match(certs: Certs) -> None:
    result = run_cli(
        "server", "--port", "0", "--tls-cert", str(certs.cert), "--tls-key", str(certs.other_key)
    )
    assert result.returncode == 1
    assert last_line(result) == (
        f"aioecho: error: TLS key {certs.other_key} does not match certificate {certs.cert}"
    )


def test_not_a_certificate(certs: Certs) -> None:
    result = run_cli(
        "server", "--port", "0", "--tls-cert", str(certs.key), "--tls-key", str(certs.key)
    )
    assert result.returncode == 1
    assert last_line(result).startswith(f"aioecho: error: cannot load TLS certificate {certs.key}")


def test_cert_without_key_is_a_usage_error(certs: Certs) -> None:
    result = run_cli("server", "--tls-cert", str(certs.cert))
    assert result.returncode == 2
    assert last_line(result) == "aioecho: error: TLS needs both --tls-cert and --tls-key"


def test_bad_peers_get_one_line_each_and_others_are_served(certs: Certs, loop_name: str) -> None:
    with tls_server(certs, "--loop", loop_name) as server:
        server.start()
        # a client that speaks plain TCP to the TLS port
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert plain.recv(100) == b""  # closed on us, not answered
        server.wait_for_line(r"TLS handshake failed: ")
        # a client that does not trust the server's certificate
        untrusting = run_cli("client", "--tls", "--port", str(server.port))
        assert untrusting.returncode == 1
        assert last_line(untrusting).startswith(
            f"aioecho: error: cannot connect to localhost port {server.port}: "
            "certificate verify failed"
        )
        # meanwhile a good client is served
        good = run_cli("client", "--tls", "--cafile", str(certs.ca), "--port", str(server.port))
        assert good.returncode == 0, good.stderr
        insecure = run_cli("client", "--tls", "--insecure", "--port", str(server.port))
        assert insecure.returncode == 0, insecure.stderr
        server.wait_for_line(r": closing$")
        assert server.stop() == 0
    failures = [ln for ln in server.lines if "TLS handshake failed" in ln]
    assert len(failures) == 2, server.lines
    assert all(ln.startswith("EchoServer_127.0.0.1_") for ln in failures)
    assert not [ln for ln in server.lines if "Traceback" in ln]


def test_plain_client_to_tls_port_fails_clearly(certs: Certs) -> None:
    with tls_server(certs) as server:
        server.start()
        result = run_cli("client", "--port", str(server.port), "--timeout", "5")
        assert result.returncode == 1
        assert last_line(result).startswith("aioecho: error: ")
        assert server.stop() == 0


def test_openssl_s_client_gets_exact_echo(certs: Certs) -> None:
    openssl = require_tool("openssl")
    with tls_server(certs) as server:
        server.start()
        proc = subprocess.Popen(
            [openssl, "s_client", "-brief", "-CAfile", str(certs.ca), "-verify_return_error",
             "-connect", f"127.0.0.1:{server.port}", "-servername", "localhost"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        message = b"hello through openssl \x00\xff\n"
        proc.stdin.write(message)
        proc.stdin.flush()
        got = b""
        while len(got) < len(message) and (chunk := proc.stdout.read1(100)):
            got += chunk
        proc.stdin.close()  # s_client closes the connection at EOF on its input
        proc.wait(WAIT)
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()
        assert got == message
        server.wait_for_line(r": closing$")
        assert server.stop() == 0

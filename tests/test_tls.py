"""TLS: clear errors for bad files and bad peers, and peers nobody here wrote."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support import WAIT, ServerProcess, error_line, require_tool, run_cli
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
        f"aioecho server: error: cannot read TLS certificate {missing}: no such file or directory"
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
    assert last_line(result).startswith(f"aioecho server: error: cannot read TLS key {key}: ")


def test_key_that_does_not_match(certs: Certs) -> None:
    result = run_cli(
        "server", "--port", "0", "--tls-cert", str(certs.cert), "--tls-key", str(certs.other_key)
    )
    assert result.returncode == 1
    assert last_line(result) == (
        f"aioecho server: error: TLS key {certs.other_key} does not match certificate {certs.cert}"
    )


def test_not_a_certificate(certs: Certs) -> None:
    result = run_cli(
        "server", "--port", "0", "--tls-cert", str(certs.key), "--tls-key", str(certs.key)
    )
    assert result.returncode == 1
    assert last_line(result) == (
        f"aioecho server: error: TLS certificate {certs.key} holds no PEM certificate (BEGIN line)"
    )


@pytest.mark.parametrize("which", ["--tls-cert", "--tls-key", "--cafile"])
def test_garbage_pem_names_the_file(certs: Certs, tmp_path: Path, which: str) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"this is not PEM\n")
    program = "client" if which == "--cafile" else "server"
    if which == "--cafile":
        result = run_cli("client", "--tls", "--cafile", str(garbage))
        what = "CA file"
    else:
        files = {"--tls-cert": str(certs.cert), "--tls-key": str(certs.key), which: str(garbage)}
        result = run_cli("server", "--port", "0", *(x for kv in files.items() for x in kv))
        what = "certificate" if which == "--tls-cert" else "key"
    label = "private key" if which == "--tls-key" else "certificate"
    assert error_line(result) == (
        f"aioecho {program}: error: TLS {what} {garbage} holds no PEM {label} (BEGIN line)"
    )


def test_cert_without_key_is_a_usage_error(certs: Certs) -> None:
    result = run_cli("server", "--tls-cert", str(certs.cert))
    assert result.returncode == 2
    assert last_line(result) == "aioecho server: error: TLS needs both --tls-cert and --tls-key"


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
            f"aioecho client: error: cannot connect to localhost port {server.port}: "
            "certificate verify failed"
        )
        # meanwhile a good client is served
        good = run_cli("client", "--tls", "--cafile", str(certs.ca), "--port", str(server.port))
        assert good.returncode == 0, good.stderr
        insecure = run_cli("client", "--tls", "--insecure", "--port", str(server.port))
        assert insecure.returncode == 0, insecure.stderr
        server.wait_for_line(r": closing$")
        assert server.stop() == 0
    # two failures within a second: the first named, the second folded into a count (a flood of
    # bad peers costs a line a second)
    failures = [ln for ln in server.lines if "TLS handshake failed: " in ln]
    assert len(failures) == 1, server.lines
    assert failures[0].startswith("EchoServer_127.0.0.1_")
    assert "server: 1 more TLS handshake failed (one is logged a second)" in server.lines
    assert not [ln for ln in server.lines if "Traceback" in ln]


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_tls_peer_is_named_on_both_its_lines(certs: Certs, loop_name: str, reset: bool) -> None:
    """Its closing line too, when the socket no longer knows its peer (a TLS transport, once
    closed, answers None for the peer's address; a reset socket, ENOTCONN)."""
    import ssl
    import struct

    context = ssl.create_default_context(cafile=str(certs.ca))
    with tls_server(certs, "--loop", loop_name) as server:
        server.start()
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"x" * 1000)
            assert sock.recv(1000)
            name = f"EchoServer_127.0.0.1_{sock.getsockname()[1]}"
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.wait_for_line(rf"^{name}: closing")
        assert server.stop() == 0
    assert [ln for ln in server.lines if ln.startswith("EchoServer")] == [
        f"{name}: connection accepted",
        f"{name}: closing: connection reset by peer" if reset else f"{name}: closing",
    ]


def test_a_client_hello_that_waits_at_the_accept_is_not_lost(certs: Certs, loop_name: str) -> None:
    """uvloop starts reading a new connection as soon as connection_made returns, before
    start_tls has taken it over: a ClientHello already waiting in the socket is read by the
    accepting protocol, which must hand it to the TLS layer. The server is stopped while the
    client connects and sends its ClientHello, so that it waits there at the accept."""
    import signal
    import ssl

    context = ssl.create_default_context(cafile=str(certs.ca))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")

    def receive(sock: socket.socket) -> None:
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        incoming.write(data)

    with tls_server(certs, "--loop", loop_name) as server:
        server.start()
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
            with pytest.raises(ssl.SSLWantReadError):
                tls.do_handshake()
            sock.sendall(outgoing.read())  # the ClientHello
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        with sock:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    receive(sock)
            message = os.urandom(3000)
            tls.write(message)
            sock.sendall(outgoing.read())  # the client's Finished, then the message
            echo = b""
            while len(echo) < len(message):
                try:
                    echo += tls.read(65536)
                except ssl.SSLWantReadError:
                    receive(sock)
            assert echo == message
        server.wait_for_line(r": closing")
        assert server.stop() == 0


def test_plain_client_to_tls_port_fails_clearly(certs: Certs) -> None:
    with tls_server(certs) as server:
        server.start()
        result = run_cli("client", "--port", str(server.port), "--timeout", "5")
        assert result.returncode == 1
        # the server aborts a failed handshake: FIN or RST, depending on what it had unread
        assert last_line(result) in (
            f"aioecho client: error: the server {how} the connection without echoing (46 bytes "
            "sent)"
            for how in ("closed", "reset")
        )
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
    # asyncio's TLS layer warns when a protocol asks to keep a TLS connection half-open
    assert not [ln for ln in server.lines if "eof_received" in ln], server.lines


def test_handshakes_in_progress_count_against_max_connections(certs: Certs, loop_name: str) -> None:
    """Silent peers on the TLS port hold a place each from their accept: past the limit they
    are refused, and they do not pile up (descriptors, memory) behind `active=0`."""
    from support import stats_now, wait_for_stats, wait_until

    with tls_server(
        certs, "--loop", loop_name, "--max-connections", "10", "--tls-handshake-timeout", "1"
    ) as server:
        server.start()
        fds_before = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
        try:
            stats = wait_for_stats(server, active=10, refused=50)
            assert stats["accepted"] == 10
            # held descriptors come back to the limit once the refused ones are closed (plus
            # the one libuv opens on its first accept)
            wait_until(lambda: len(os.listdir(f"/proc/{server.proc.pid}/fd")) <= fds_before + 11)
            # the handshake timeout frees the places; then a real client is served
            wait_for_stats(server, active=0)
            good = run_cli("client", "--tls", "--cafile", str(certs.ca), "--port", str(server.port))
            assert good.returncode == 0, good.stderr
        finally:
            for sock in silent:
                sock.close()
        assert stats_now(server)["accepted"] == 11  # a TLS connection is counted once
        assert server.stop() == 0
    failed = [ln for ln in server.lines if "TLS handshake failed" in ln]
    folded = [ln for ln in server.lines if "more TLS handshakes failed" in ln]
    assert len(failed) <= 2, failed  # ten timed out together: one line, and a count
    assert folded, server.lines
    assert not [ln for ln in server.lines if "Traceback" in ln or "never retrieved" in ln]


def test_tls_over_a_unix_socket_refuses_a_plain_client_in_one_line(
    certs: Certs, loop_name: str
) -> None:
    from transports import short_unix_path

    path = short_unix_path()
    with ServerProcess(
        "--unix", path, "--tls-cert", str(certs.cert), "--tls-key", str(certs.key),
        "--loop", loop_name,
    ) as server:  # fmt: skip
        server.start()
        plain = run_cli("client", "--unix", path, "--timeout", "5")
        assert plain.returncode == 1
        server.wait_for_line("TLS handshake failed")
        good = run_cli("client", "--unix", path, "--tls", "--cafile", str(certs.ca))
        assert good.returncode == 0, good.stderr
        assert server.stop() == 0
    failed = [ln for ln in server.lines if "TLS handshake failed" in ln]
    assert len(failed) == 1 and failed[0].startswith("EchoServer_unix_"), server.lines
    assert not [ln for ln in server.lines if "Task exception" in ln or "Traceback" in ln]


def test_insecure_is_said_once(certs: Certs) -> None:
    with tls_server(certs) as server:
        server.start()
        result = run_cli("client", "-q", "--tls", "--insecure", "--port", str(server.port))
        assert result.returncode == 0, result.stderr
        assert result.stderr.decode().splitlines() == [
            "main: --insecure: the server's certificate and name are not checked; anyone on the "
            "path could read and change the traffic"
        ]
        assert server.stop() == 0


@pytest.mark.parametrize("client_loop", ["asyncio", "uvloop"])
def test_a_reset_after_n_bytes_delivers_the_n_bytes_over_tls(
    certs: Certs, loop_name: str, client_loop: str
) -> None:
    # The session tickets go out first; on asyncio the echo's record then waited for their ACK
    # (Nagle: asyncio sets TCP_NODELAY only on sockets whose proto is TCP, and ours was 0) and
    # the reset threw it away (issue 26 B12).
    with tls_server(certs, "--reset-after", "10", "--loop", loop_name) as server:
        server.start()
        for _ in range(5):
            result = run_cli(
                "client", "--tls", "--cafile", str(certs.ca), "--port", str(server.port),
                "--loop", client_loop, "0123456789abcdef",
            )  # fmt: skip
            assert last_line(result) == (
                "aioecho client: error: the server reset the connection after echoing 10 of 16 "
                "bytes"
            ), result.stderr
        assert server.stop() == 0


def _served_certificate(port: int, ca: Path) -> tuple[bytes, ssl.SSLSocket]:
    """The DER certificate a new TLS connection is served, and the connection (open)."""
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    conn = context.wrap_socket(raw, server_hostname="localhost")
    der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der, conn


def _echoes(conn: ssl.SSLSocket, data: bytes = b"still here") -> bool:
    conn.sendall(data)
    got = b""
    while len(got) < len(data):
        got += conn.recv(len(data) - len(got))
    return got == data


def test_sigusr2_reloads_the_certificate_for_new_connections(
    tmp_path: Path, loop_name: str
) -> None:
    """Issue 25 #5: new connections get the new certificate, open ones keep theirs and go on,
    and a file that does not load is one error line with the certificate in use kept."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    first, second = ca.issue_cert("localhost"), ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"

    def install(issued: Any) -> bytes:
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        return ssl.PEM_cert_to_DER_cert(issued.cert_chain_pems[0].bytes().decode())

    first_der = install(first)
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--loop", loop_name,
                       "--tls-cert", str(cert), "--tls-key", str(key)) as server:  # fmt: skip
        server.start()
        der, before = _served_certificate(server.port, ca_path)
        assert der == first_der
        second_der = install(second)
        server.proc.send_signal(signal.SIGUSR2)
        server.wait_for_line(rf"^main: TLS certificate reloaded from {re.escape(str(cert))}$")
        der, after = _served_certificate(server.port, ca_path)
        assert der == second_der != first_der
        assert _echoes(before) and _echoes(after)  # the open connection kept its session
        cert.write_text("not a certificate\n")
        server.proc.send_signal(signal.SIGUSR2)
        line = server.wait_for_line(r"^main: TLS certificate not reloaded")
        assert "the one in use stays" in line and str(cert) in line
        der, third = _served_certificate(server.port, ca_path)
        assert der == second_der
        for conn in (before, after, third):
            conn.close()
        assert server.stop() == 0

"""The PROXY protocol header parser (v1 and v2), and --proxy-protocol behind a real HAProxy."""

from __future__ import annotations

import socket
import ssl
import struct
from pathlib import Path

import pytest

from aioecho.server.proxyheader import V2_SIGNATURE, ProxyHeader, ProxyHeaderError, parse
from support import (
    HAPROXY_DEFAULTS,
    WAIT,
    ServerProcess,
    free_port,
    peer,
    require_tool,
    stats_now,
    wait_until,
)
from transports import Certs

V1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"


def v2(command: int = 1, family: int = 0x11, body: bytes | None = None) -> bytes:
    if body is None:
        body = socket.inet_aton("192.0.2.1") + socket.inet_aton("198.51.100.2")
        body += struct.pack("!HH", 56324, 443)
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def test_v1() -> None:
    assert parse(V1 + b"payload") == ProxyHeader(
        ("192.0.2.1", 56324), ("198.51.100.2", 443), len(V1), 1
    )
    six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"
    assert parse(six) == ProxyHeader(("2001:db8::1", 1), ("2001:db8::2", 2), len(six), 1)
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyHeader(None, None, 15, 1)


def test_v2_ipv4_ipv6_local_and_tlvs_skipped() -> None:
    header = parse(v2())
    assert header is not None and header.source == ("192.0.2.1", 56324)
    six = socket.inet_pton(socket.AF_INET6, "2001:db8::1") * 2 + struct.pack("!HH", 7, 8)
    tlv = b"\x04\x00\x02ab"  # a NOOP TLV after the addresses
    header = parse(v2(family=0x21, body=six + tlv) + b"rest")
    assert header == ProxyHeader(("2001:db8::1", 7), ("2001:db8::1", 8), 16 + len(six + tlv), 2)
    assert parse(v2(command=0, body=b"")) == ProxyHeader(None, None, 16, 2)


def test_partial_headers_wait_for_more() -> None:
    for data in (V1, v2()):
        assert all(parse(data[:n]) is None for n in range(1, len(data)))


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1 99999\r\n",
        b"PROXY TCP4 " + b"1" * 120,
        V2_SIGNATURE[:11] + b"X",
        V2_SIGNATURE + b"\x10\x11\x00\x00",  # version 1 in a v2 block
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # 65535 bytes of addresses: refused
    ],
)
def test_bad_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


HAPROXY = (
    HAPROXY_DEFAULTS
    + """\
frontend echo
    bind 127.0.0.1:{front}
    default_backend servers
backend servers
    server echo 127.0.0.1:{port} {option}
"""
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("option", ["send-proxy", "send-proxy-v2"])
def test_behind_haproxy_the_client_address_is_logged(tmp_path: Path, option: str) -> None:
    haproxy = require_tool("haproxy")
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--proxy-protocol") as server:
        server.start()
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(HAPROXY.format(front=front, port=server.port, option=option))
        with peer([haproxy, "-db", "-f", str(config)], front):
            with socket.create_connection(("127.0.0.1", front), timeout=WAIT) as sock:
                own_port = sock.getsockname()[1]
                sock.sendall(b"through haproxy")
                assert sock.recv(100) == b"through haproxy"
            line = server.wait_for_line(rf"^EchoServer_127\.0\.0\.1_{own_port}: closing$")
        assert line  # the client's own address and port, not HAProxy's


def test_a_connection_without_a_header_is_closed_with_one_line() -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--proxy-protocol") as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"hello, no header\r\n")
            assert sock.recv(100) == b""  # closed without an echo
            name = f"EchoServer_127.0.0.1_{sock.getsockname()[1]}"
        line = server.wait_for_line(rf"^{name}: closing")
        assert line == f"{name}: closing: no PROXY protocol header"
        # a header sent in pieces, then the payload: echoed without the header
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            for piece in (V1[:5], V1[5:20], V1[20:], b"payload"):
                sock.sendall(piece)
            assert sock.recv(100) == b"payload"
        server.wait_for_line(r"^EchoServer_192\.0\.2\.1_56324: connection accepted$")


@pytest.mark.timeout(60)
def test_behind_haproxy_with_tls_passed_through(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """HAProxy forwards the TLS bytes untouched after its PROXY header: the handshake is ours,
    and the log still names the client."""
    haproxy = require_tool("haproxy")
    certs = Certs.make(tmp_path_factory.mktemp("certs"))
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--proxy-protocol", "--tls-cert",
                       str(certs.cert), "--tls-key", str(certs.key)) as server:  # fmt: skip
        server.start()
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(HAPROXY.format(front=front, port=server.port, option="send-proxy-v2"))
        context = ssl.create_default_context(cafile=str(certs.ca))
        with peer([haproxy, "-db", "-f", str(config)], front):
            with socket.create_connection(("127.0.0.1", front), timeout=WAIT) as raw:
                own_port = raw.getsockname()[1]
                with context.wrap_socket(raw, server_hostname="localhost") as sock:
                    sock.sendall(b"secret")
                    assert sock.recv(100) == b"secret"
            server.wait_for_line(rf"^EchoServer_127\.0\.0\.1_{own_port}: closing$")


FORGED = "fe80::1%\x1b[31m\nmain:forged"


def test_a_scope_id_is_refused() -> None:
    with pytest.raises(ProxyHeaderError):
        parse(f"PROXY TCP6 {FORGED} ::1 1 2\r\n".encode())
    with pytest.raises(ProxyHeaderError):
        parse(b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n")


@pytest.mark.parametrize("family", ["TCP6", "TCP4"])
def test_peer_text_cannot_forge_or_colour_a_log_line(family: str) -> None:
    """A v1 header's scope id was accepted as the client's address (its text in every line of
    the connection), and a refusal printed the header's text raw."""
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--proxy-protocol") as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(f"PROXY {family} {FORGED} ::1 1 2\r\n".encode())
            assert sock.recv(10) == b""
        server.wait_for_line(r"closing: v1 header")
        assert server.stop() == 0
    assert not any("\x1b" in ln or ln.startswith("main:forged") for ln in server.lines)
    assert any("\\x1b[31m\\nmain:forged" in ln for ln in server.lines), server.lines


def test_the_text_log_escapes_control_characters() -> None:
    import io
    import logging

    from aioecho.logs import configure

    out = io.StringIO()
    configure(0, stream=out)
    try:
        logging.getLogger("aioecho.server").warning("sni %s", "a\x1b[2J\nmain: forged\x85")
    finally:
        configure(0)
    assert out.getvalue() == "server: sni a\\x1b[2J\\x0amain: forged\\x85\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("option", ["send-proxy", "send-proxy-v2"])
def test_haproxy_health_checks_are_counted_apart_not_as_resets(
    tmp_path: Path, option: str, loop_name: str
) -> None:
    # They were "EchoServer_unknown: closing: connection reset by peer" warnings, counted as
    # resets (issue 26 C19): a v2 check is a LOCAL header, then HAProxy resets.
    haproxy = require_tool("haproxy")
    args = ("--host", "127.0.0.1", "--port", "0", "--proxy-protocol", "--loop", loop_name)
    with ServerProcess(*args) as server:
        server.start()
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        checked = f"{option} check inter 50ms"
        config.write_text(HAPROXY.format(front=front, port=server.port, option=checked))
        with peer([haproxy, "-db", "-f", str(config)], front):
            wait_until(lambda: _ended(stats_now(server)) >= 5, "five health checks")
            with socket.create_connection(("127.0.0.1", front), timeout=WAIT) as sock:
                sock.sendall(b"a client among checks")
                assert sock.recv(100) == b"a client among checks"
        stats = stats_now(server)
        assert stats["resets"] == 0, stats
        assert server.stop() == 0
    assert not [line for line in server.lines if "unknown" in line or "reset by peer" in line]
    assert not [line for line in server.lines if "PROXY protocol header" in line]
    assert stats["checks"] >= 5


def _ended(stats: dict[str, int]) -> int:
    return stats.get("checks", 0) + stats["resets"]  # (before checks were counted: resets)

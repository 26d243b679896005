"""End to end over loopback against an in-process server (both loops): integrity and half-close."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioecho import EchoError, Server, echo
from support import WAIT, exchange, pattern_bytes, sha256


def test_every_byte_value(live_server: Server) -> None:
    data = bytes(range(256)) * 64
    assert asyncio.run(echo(data, "127.0.0.1", live_server.port)) == data


def test_seed_messages_through_library(live_server: Server) -> None:
    parts = [b"This is the message. ", b"It will be sent ", b"in parts."]
    got = asyncio.run(echo(parts, "127.0.0.1", live_server.port))
    assert got == b"This is the message. It will be sent in parts."


def test_empty_exchange_is_just_eof(live_server: Server) -> None:
    assert exchange(live_server.port, b"") == b""


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(min_size=1, max_size=20_000),
    cuts=st.lists(st.integers(min_value=1, max_value=5000), max_size=20),
)
def test_any_chunking_echoes_the_same_stream(
    live_server: Server, data: bytes, cuts: list[int]
) -> None:
    """The network may split and merge writes anyhow; the echo is the same byte stream."""
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=WAIT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pos, received = 0, bytearray()
        for cut in cuts:
            piece = data[pos : pos + cut]
            sock.sendall(piece)
            pos += len(piece)
            if len(received) < pos and cut % 2:  # read back part of the way, sometimes
                received += sock.recv(65536)
        sock.sendall(data[pos:])
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
    assert bytes(received) == data


def test_half_close_echo_still_arrives_after_our_eof(live_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=WAIT) as sock:
        sock.sendall(b"before eof")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(100):
            got += chunk
    assert got == b"before eof"


def test_large_stream_by_hash(live_server: Server) -> None:
    data = pattern_bytes(64 * 1024 * 1024, seed=7)
    assert sha256(exchange(live_server.port, data)) == sha256(data)


def test_many_concurrent_clients(live_server: Server) -> None:
    async def many() -> list[bool]:
        payloads = [pattern_bytes(10_000 + i, seed=i) for i in range(50)]
        results = await asyncio.gather(*(echo(p, "127.0.0.1", live_server.port) for p in payloads))
        return [r == p for r, p in zip(results, payloads, strict=True)]

    assert all(asyncio.run(many()))


def test_reset_peer_does_not_disturb_others(live_server: Server) -> None:
    data = pattern_bytes(4 * 1024 * 1024, seed=3)
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=WAIT) as good:

        def send() -> None:
            good.sendall(data)
            good.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        for _ in range(20):  # peers that send and then reset (SO_LINGER 0)
            with socket.create_connection(("127.0.0.1", live_server.port), timeout=WAIT) as bad:
                bad.sendall(b"x" * 100_000)
                bad.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        digest = hashlib.sha256()
        while chunk := good.recv(1 << 20):
            digest.update(chunk)
        sender.join(WAIT)
    assert digest.hexdigest() == sha256(data)


def test_client_times_out_on_a_silent_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(EchoError, match=r"sent nothing for 0.3s"):
            asyncio.run(echo(b"hello", "127.0.0.1", port, timeout=0.3))

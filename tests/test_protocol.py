"""EchoServerProtocol's callbacks against a fake transport: order, half-close, backpressure."""

from __future__ import annotations

import logging
import sys

import pytest

from aioecho import EchoServerProtocol
from aioecho.addresses import peer_name
from aioecho.server.config import DEFAULT_MAX_BUFFER
from aioecho.server.protocol import pack_peer, unpack_peer
from aioecho.server.registry import Connections
from fakes import FakeTransport


def test_echoes_each_chunk_in_order() -> None:
    proto, transport = EchoServerProtocol(), FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    for chunk in (b"a", b"bc", b"\x00\xff"):
        proto.data_received(chunk)
    assert transport.written == [b"a", b"bc", b"\x00\xff"]


def test_eof_is_answered_with_eof_then_close() -> None:
    proto, transport = EchoServerProtocol(), FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    assert not proto.eof_received()  # False: the transport closes once the echo is flushed
    assert transport.eof_written


def test_eof_without_half_close_support_just_closes() -> None:
    proto, transport = EchoServerProtocol(), FakeTransport(can_write_eof=False)
    proto.connection_made(transport)  # type: ignore[arg-type]
    assert not proto.eof_received()
    assert not transport.eof_written


def test_write_pressure_pauses_and_resumes_reading() -> None:
    proto, transport = EchoServerProtocol(max_buffer=1234), FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    assert transport.high == 1234
    proto.pause_writing()
    assert not transport.reading
    proto.resume_writing()
    assert transport.reading


def test_log_lines_like_the_seed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aioecho.server")
    proto, transport = EchoServerProtocol(), FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    proto.data_received(b"hi")
    proto.eof_received()
    proto.connection_lost(None)
    lines = [f"{r.conn}: {r.getMessage()}" for r in caplog.records]  # type: ignore[attr-defined]
    assert lines == [
        "EchoServer_127.0.0.1_4242: connection accepted",
        "EchoServer_127.0.0.1_4242: received b'hi'",
        "EchoServer_127.0.0.1_4242: sent b'hi'",
        "EchoServer_127.0.0.1_4242: received EOF",
        "EchoServer_127.0.0.1_4242: closing",
    ]


def test_no_logger_per_connection() -> None:
    before = len(logging.Logger.manager.loggerDict)
    for port in range(1000, 1100):
        transport = FakeTransport()
        transport.get_extra_info = lambda name, default=None, p=port: ("127.0.0.2", p)  # type: ignore[method-assign]
        proto = EchoServerProtocol()
        proto.connection_made(transport)  # type: ignore[arg-type]
        proto.connection_lost(None)
    assert len(logging.Logger.manager.loggerDict) == before


@pytest.mark.parametrize(
    "peername",
    [
        ("127.0.0.1", 54321),
        ("0.0.0.0", 0),
        ("255.255.255.255", 65535),
        ("::1", 443, 0, 0),
        ("::ffff:127.0.0.1", 5000, 0, 0),
        ("2001:db8::1", 65535, 0, 0),
        ("fe80::1%lo", 7, 0, 1),
        "/tmp/echo.sock",
        None,
    ],
)
def test_a_packed_peer_names_itself_as_the_seed_does(peername: object) -> None:
    packed = pack_peer(peername)
    if isinstance(peername, tuple):
        assert unpack_peer(packed) == peer_name("EchoServer", peername)
        assert isinstance(packed, int) and sys.getsizeof(packed) <= 32  # the text: 70 and more
    else:
        assert isinstance(packed, str) and packed.startswith("EchoServer_")


def test_a_connection_holds_nine_slots_and_nothing_more() -> None:
    """What 10,000 idle connections cost is what one protocol holds (README, Performance): the
    rare fields live in one object made on first use, the per-chunk lines in a class."""
    slots = [s for c in type(EchoServerProtocol()).__mro__ for s in c.__dict__.get("__slots__", ())]
    assert len(slots) == 9, slots
    proto, transport = EchoServerProtocol(), FakeTransport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    assert proto._rare is None and type(proto) is EchoServerProtocol
    proto.abort("idle")
    assert proto._rare is not None  # made for the rare case only


def test_max_buffer_comes_from_the_protocol_or_its_registry() -> None:
    registry = Connections(max_buffer=4321)
    for proto, high in (
        (EchoServerProtocol(connections=registry), 4321),
        (EchoServerProtocol(max_buffer=1234, connections=registry), 1234),
        (EchoServerProtocol(), DEFAULT_MAX_BUFFER),
    ):
        transport = FakeTransport()
        proto.connection_made(transport)  # type: ignore[arg-type]
        assert transport.high == high

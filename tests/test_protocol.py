"""EchoServerProtocol's callbacks against a fake transport: order, half-close, backpressure."""

from __future__ import annotations

import logging

import pytest

from aioecho import EchoServerProtocol
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

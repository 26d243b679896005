"""Callback edge cases of the registry, the TLS accept protocol and the stream client, driven by
hand with a fake transport: orders of events that end-to-end runs reach only by chance."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest

from aioecho.client.protocol import StreamClientProtocol
from aioecho.errors import EchoError
from aioecho.server.registry import Connections
from aioecho.server.tls import TLSAcceptProtocol, _feed
from fakes import FakeTransport


class FakeConnection:
    """What the registry tracks (registry.Tracked)."""

    def __init__(self, bytes_in: int = 0, queued: int = 0) -> None:
        self.bytes_in = bytes_in
        self.unsent_at_close = 0
        self.idle_mark = -1
        self.idle_since = 0.0
        self._queued = queued
        self.aborted: str | None = None

    def queued(self) -> int:
        return self._queued

    def abort(self, reason: str) -> None:
        self.aborted = reason
        self.unsent_at_close = self._queued


# Connections


def test_registry_admits_up_to_the_limit_and_counts_the_rest() -> None:
    async def scenario() -> None:
        conns = Connections(max_connections=2)
        first, second, third = FakeConnection(), FakeConnection(), FakeConnection()
        assert conns.admit(first) and conns.admit(second)
        assert not conns.admit(third)
        assert (len(conns), conns.refused, conns.accepted) == (2, 1, 2)
        conns.discard(third, None)  # a refused connection's loss changes nothing
        assert len(conns) == 2
        conns.discard(first, None)
        assert conns.admit(third)
        conns.close()

    asyncio.run(scenario())


def test_registry_counts_bytes_of_closed_and_open_connections() -> None:
    async def scenario() -> None:
        conns = Connections()
        done, reset, live = FakeConnection(), FakeConnection(), FakeConnection()
        for conn in (done, reset, live):
            conns.admit(conn)
        done.bytes_in = 100
        reset.bytes_in, reset._queued = 50, 20
        reset.abort("test")
        live.bytes_in, live._queued = 30, 10
        conns.discard(done, None)
        conns.discard(reset, ConnectionResetError())
        conns.discard(reset, ConnectionResetError())  # a second loss report is ignored
        snap = conns.snapshot()
        assert (snap.active, snap.resets) == (1, 1)
        assert snap.bytes_in == 180
        assert snap.bytes_out == 100 + (50 - 20) + (30 - 10)

    asyncio.run(scenario())


def test_registry_wait_empty_and_abort_all() -> None:
    async def scenario() -> None:
        conns = Connections()
        assert await conns.wait_empty(0)  # empty from the start
        a, b = FakeConnection(), FakeConnection()
        conns.admit(a)
        conns.admit(b)
        assert not await conns.wait_empty(0.01)
        assert conns.abort_all("shutting down") == 2
        assert a.aborted == b.aborted == "shutting down"
        conns.discard(a, None)
        conns.discard(b, None)
        assert await conns.wait_empty(0)

    asyncio.run(scenario())


def test_idle_sweep_spares_a_connection_whose_echo_is_still_draining() -> None:
    async def scenario() -> None:
        conns = Connections(idle_timeout=0.2)
        idle, draining = FakeConnection(), FakeConnection(queued=1000)
        conns.admit(idle)
        conns.admit(draining)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while idle.aborted is None and loop.time() < deadline:
            draining._queued -= 1  # the peer reads slowly, but it reads
            await asyncio.sleep(0.01)
        assert idle.aborted == "idle for 0.2s (--idle-timeout)"
        assert draining.aborted is None
        assert conns.idle_closed == 1
        conns.close()

    asyncio.run(scenario())


# TLSAcceptProtocol


def test_tls_accept_logs_one_line_and_aborts_when_the_handshake_cannot_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """start_tls refuses a transport that is not the loop's own: whatever goes wrong before the
    hand-over ends this connection only, with one line and an abort."""
    caplog.set_level(logging.WARNING, logger="aioecho.server")
    inner_made: list[object] = []

    async def scenario() -> FakeTransport:
        plain = FakeTransport(peer=("10.0.0.1", 4433))
        protocol = TLSAcceptProtocol(
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), lambda: inner_made.append(1)
        )  # type: ignore[arg-type,return-value]
        plain.set_protocol(protocol)
        protocol.connection_made(plain)  # type: ignore[arg-type]
        assert not plain.reading  # nothing is read until the TLS layer takes over
        protocol.data_received(b"\x16\x03\x01")  # uvloop may deliver a first read anyway
        assert not plain.reading
        assert protocol._task is not None
        await asyncio.wait([protocol._task])  # start_tls fails in it: nothing to hand over
        await asyncio.sleep(0)  # the stashed first read's _taken_over: nothing to feed
        return plain

    plain = asyncio.run(scenario())
    assert plain.aborted
    assert inner_made == []
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("TLS handshake failed: "), messages
    assert caplog.records[0].conn == "EchoServer_10.0.0.1_4433"  # type: ignore[attr-defined]


class Buffered(asyncio.BufferedProtocol):
    def __init__(self, size: int) -> None:
        self.buffer = bytearray(size)
        self.got = bytearray()
        self.calls = 0

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.got += self.buffer[:nbytes]
        self.calls += 1


def test_feed_replays_stashed_bytes_through_small_buffers() -> None:
    protocol = Buffered(7)
    _feed(protocol, bytes(range(50)))
    assert protocol.got == bytes(range(50))
    assert protocol.calls == 8  # 7 x 7 + 1


# StreamClientProtocol


def stream_client(can_write_eof: bool = True) -> tuple[StreamClientProtocol, FakeTransport, list]:
    sink: list[bytes] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    protocol = StreamClientProtocol(done, sink.append)
    transport = FakeTransport(can_write_eof=can_write_eof)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport, sink


def test_stream_client_fails_at_the_first_wrong_byte_and_aborts() -> None:
    async def scenario() -> None:
        protocol, transport, sink = stream_client()
        await protocol.send(b"abcdef")
        protocol.data_received(b"abc")
        protocol.data_received(b"dXf")
        assert transport.aborted
        with pytest.raises(EchoError, match=r"differs from what was sent at byte 4$"):
            protocol.done.result()
        assert sink == [b"abc"]  # nothing wrong is passed on
        with pytest.raises(EchoError):  # and nothing more is sent
            await protocol.send(b"more")

    asyncio.run(scenario())


def test_stream_client_clean_close_with_echo_owed_is_an_error() -> None:
    async def scenario() -> None:
        protocol, _, _ = stream_client()
        await protocol.send(b"12345")
        protocol.data_received(b"12")
        protocol.connection_lost(None)
        with pytest.raises(
            EchoError, match=r"^the server closed the connection after echoing 2 of 5 bytes$"
        ):
            protocol.done.result()

    asyncio.run(scenario())


def test_stream_client_says_a_reset_as_the_messages_client_does() -> None:
    # `client -` said "connection lost after 1000 bytes: connection reset by peer" where
    # `client MSG` said "the server reset the connection after echoing 1000 of 5000 bytes"
    async def scenario() -> None:
        protocol, _, _ = stream_client()
        await protocol.send(b"12345")
        protocol.data_received(b"12")
        protocol.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
        with pytest.raises(
            EchoError, match=r"^the server reset the connection after echoing 2 of 5 bytes$"
        ):
            protocol.done.result()

    asyncio.run(scenario())


def test_stream_client_without_half_close_ends_on_the_last_echoed_byte() -> None:
    async def scenario() -> None:
        protocol, transport, _ = stream_client(can_write_eof=False)  # TLS
        await protocol.send(b"xyz")
        protocol.send_eof()
        assert not transport.eof_written and not protocol.done.done()
        protocol.data_received(b"xyz")
        assert protocol.done.done() and protocol.done.result() is None

    asyncio.run(scenario())


def test_stream_client_send_waits_while_the_transport_is_paused() -> None:
    async def scenario() -> None:
        protocol, _, _ = stream_client()
        protocol.pause_writing()
        sending = asyncio.ensure_future(protocol.send(b"data"))
        await asyncio.sleep(0.01)
        assert not sending.done()
        protocol.resume_writing()
        await asyncio.wait_for(sending, 5)

    asyncio.run(scenario())


def test_stream_client_more_echo_than_sent_is_a_mismatch() -> None:
    async def scenario() -> None:
        protocol, transport, _ = stream_client()
        await protocol.send(b"ab")
        protocol.data_received(b"abc")
        assert transport.aborted
        with pytest.raises(EchoError, match=r"at byte 2$"):
            protocol.done.result()

    asyncio.run(scenario())

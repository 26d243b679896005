"""Random interleavings of writes, reads, EOF and resets over many connections (hypothesis):
every connection that is not reset gets exactly its bytes back, and the server's count of open
connections returns to zero."""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioecho import Server
from support import WAIT

CONNECTIONS = 6

ops = st.lists(
    st.tuples(
        st.integers(0, CONNECTIONS - 1),
        st.one_of(
            st.tuples(st.just("write"), st.binary(min_size=1, max_size=3000)),
            st.tuples(st.just("read"), st.none()),
            st.tuples(st.just("eof"), st.none()),
            st.tuples(st.just("reset"), st.none()),
        ),
    ),
    max_size=60,
)


@dataclass
class Peer:
    sock: socket.socket
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    eof_sent: bool = False
    reset: bool = False

    def read_available(self) -> None:
        self.sock.setblocking(False)
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)


def wait_until_no_connections(server: Server) -> None:
    loop = server._listeners[0].get_loop()  # the fixture's loop, running in its thread

    async def drained() -> bool:
        return await server._connections.wait_empty(WAIT)

    assert asyncio.run_coroutine_threadsafe(drained(), loop).result(WAIT + 5)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=ops)
def test_random_interleavings(
    live_server: Server, program: list[tuple[int, tuple[str, bytes | None]]]
) -> None:
    peers = [
        Peer(socket.create_connection(("127.0.0.1", live_server.port), timeout=WAIT))
        for _ in range(CONNECTIONS)
    ]
    try:
        for index, (op, payload) in program:
            peer = peers[index]
            if peer.reset or (peer.eof_sent and op in ("write", "eof")):
                continue
            if op == "write" and payload is not None:
                peer.sock.sendall(payload)  # small enough for the socket buffers: no deadlock
                peer.sent += payload
            elif op == "read":
                peer.read_available()
            elif op == "eof":
                peer.sock.shutdown(socket.SHUT_WR)
                peer.eof_sent = True
            elif op == "reset":
                peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.sock.close()
                peer.reset = True
        for peer in peers:
            if peer.reset:
                continue
            if not peer.eof_sent:
                peer.sock.shutdown(socket.SHUT_WR)
            while chunk := peer.sock.recv(65536):
                peer.received += chunk
            assert bytes(peer.received) == bytes(peer.sent)
    finally:
        for peer in peers:
            peer.sock.close()
    wait_until_no_connections(live_server)
    assert live_server.open_connections == 0

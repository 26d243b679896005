"""The HTTP/1.1 connection of aioecho's two small HTTP servers (`--metrics` and `proxy --api`),
parsed by h11 and bounded the same way: a request head of at most MAX_HEAD bytes, REQUEST_TIMEOUT
seconds for a request to arrive whole, MAX_CLIENTS connections at once (one more makes the
connection that has waited longest for its request leave, so that idle keep-alive clients
cannot keep a probe out), and reading paused while a client does not read its answers.

A subclass reads events in `_process` (its own: GET only, or with bodies) from `_next_event`,
which also starts each next request's cycle and puts the client at the back of the eviction
order, and answers with `_send`.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Sequence
from typing import Any, Final, cast

__all__ = ["MAX_CLIENTS", "MAX_HEAD", "REQUEST_TIMEOUT", "HttpConnection", "head_size"]

MAX_HEAD: Final = 8 * 1024  # bytes of request line and headers
REQUEST_TIMEOUT: Final = 10.0  # seconds for a request to arrive whole
MAX_CLIENTS: Final = 64  # HTTP connections at once; more are closed at once


class HttpConnection(asyncio.Protocol):
    """One client of a bounded HTTP server; `clients` is the server's, shared by its
    connections (the one that waited longest first)."""

    def __init__(self, clients: dict[asyncio.Transport, None]) -> None:
        import h11

        self._h11 = h11
        self._clients = clients
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        clients = self._clients
        if len(clients) >= MAX_CLIENTS:
            oldest = next(iter(clients))
            del clients[oldest]
            oldest.abort()
        clients[self.transport] = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._conn.receive_data(data)
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._clients.pop(self.transport, None)

    def pause_writing(self) -> None:  # a client that sends requests and reads no answer
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def _process(self) -> None:
        raise NotImplementedError

    def _refuse(self, err: Exception) -> None:
        """A request h11 could not parse (err has its error_status_hint): answered, closed."""
        raise NotImplementedError

    def _next_event(self) -> Any:
        """The next event to act on (a request, its data, its end, the client's close), or
        None: more data is needed, or the connection is done. A finished request and answer
        start the next cycle here (keep-alive)."""
        h11 = self._h11
        conn = self._conn
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as err:
                self._refuse(err)
                return None
            if event is h11.NEED_DATA:
                return None
            if event is h11.PAUSED:
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                    self._touch()
                    continue
                self.transport.close()  # one side must close: done
                return None
            return event

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, self.transport.abort)

    def _touch(self) -> None:
        """A whole request answered: the client goes to the back of the eviction order, with a
        new REQUEST_TIMEOUT for its next request."""
        clients = self._clients
        if self.transport in clients:
            del clients[self.transport]
            clients[self.transport] = None
        self._arm()

    def _send(
        self,
        status: int,
        kind: str,
        body: bytes,
        length: int | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """One whole response; length: the Content-Length when body is left out (HEAD)."""
        h11 = self._h11
        fields = [("content-type", kind), *headers]
        if status != 204:
            fields.append(("content-length", str(len(body) if length is None else length)))
        reason = http.HTTPStatus(status).phrase.encode()
        response = h11.Response(status_code=status, headers=fields, reason=reason)
        self.transport.write(self._conn.send(response))
        if body and status != 204:
            self.transport.write(self._conn.send(h11.Data(data=body)))
        self.transport.write(self._conn.send(h11.EndOfMessage()))

    def _send_error(self, status: int, kind: str, body: bytes) -> None:
        """An error answered if a response may still start, then the connection closed."""
        if self._conn.our_state in (self._h11.IDLE, self._h11.SEND_RESPONSE):
            self._send(status, kind, body)
        self.transport.close()


def head_size(request: Any) -> int:
    """About the bytes of a request's head (h11 bounds it only while incomplete)."""
    size = len(request.method) + len(request.target) + 12
    return size + sum(len(name) + len(value) + 4 for name, value in request.headers)

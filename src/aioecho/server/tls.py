"""The server side of a TLS handshake, run by the server itself so that it reports its failures.

asyncio drops a failed server-side TLS handshake silently unless the loop's debug mode is on
(the error only reaches the debug log), so a peer that speaks plain TCP to a TLS port, or that
rejects our certificate, would leave no trace. TLSAcceptProtocol runs the handshake itself with
loop.start_tls and logs one line per failed peer.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import ssl
import time
from collections.abc import Callable
from typing import Final, cast

from ..addresses import peer_name
from ..errors import TLSSetupError
from ..logs import NOTICE, ConnectionLog, FloodCounter
from ..tls import HANDSHAKE_TIMEOUT, describe_tls_error, server_context
from .registry import Admission, Linked

__all__ = ["HandshakeFailures", "ServerContext", "TLSAcceptProtocol"]

_log = logging.getLogger("aioecho.server")
_main_log = logging.getLogger("aioecho.main")


class ServerContext:
    """The server's TLS context, which a reload replaces for the handshakes that follow; the
    connections open keep the one they were made with."""

    def __init__(
        self, cert: str, key: str, client_ca: str | None = None, alpn: tuple[str, ...] = ()
    ) -> None:
        self.cert, self.key, self.client_ca, self.alpn = cert, key, client_ca, alpn
        self.context = server_context(cert, key, client_ca, alpn)

    def reload(self) -> bool:
        """Load --tls-cert and --tls-key again (SIGUSR2); a file that does not load is one
        error line, and the context in use stays. True if the new one is in use."""
        try:
            context = server_context(self.cert, self.key, self.client_ca, self.alpn)
        except TLSSetupError as err:
            _main_log.error("TLS certificate not reloaded, the one in use stays: %s", err)
            return False
        self.context = context
        _main_log.log(NOTICE, "TLS certificate reloaded from %s", self.cert)
        return True


# Upper bounds (seconds) of the handshake-time histogram's buckets (--metrics), then +Inf
HANDSHAKE_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_REASONS: Final = 32  # distinct failure reasons counted apart; the rest as "other"


class HandshakeFailures:
    """The server's TLS handshakes: the log of failed ones (a line naming the peer and the
    reason, at most one a second, the rest counted, so that a flood of bad peers costs a line a
    second), the failures counted by reason, and the time of the ones that succeeded, in
    buckets (for --metrics)."""

    def __init__(self) -> None:
        self._last = float("-inf")  # loop time of the last line
        self._folded = FloodCounter(self._report)
        self.reasons: collections.Counter[str] = collections.Counter()
        self.buckets = [0] * (len(HANDSHAKE_BUCKETS) + 1)  # per bucket, not cumulative
        self.seconds = 0.0  # all succeeded handshakes' time

    def succeeded(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(HANDSHAKE_BUCKETS, seconds)] += 1
        self.seconds += seconds

    def failed(self, name: str, reason: str) -> None:
        key = reason if reason in self.reasons or len(self.reasons) < MAX_REASONS else "other"
        self.reasons[key] += 1
        now = asyncio.get_running_loop().time()
        if now - self._last >= 1.0:
            self._last = now
            ConnectionLog(_log, name).warning("TLS handshake failed: %s", reason)
        else:
            self._folded.add()

    def flush(self) -> None:
        self._folded.flush()

    def _report(self, count: int) -> None:
        _log.warning(
            "%d more TLS handshake%s failed (one is logged a second)", count, "s"[: count > 1]
        )


class TLSAcceptProtocol(asyncio.Protocol, Linked):
    """Takes a new TCP connection through the TLS handshake, then hands the TLS transport to a
    protocol from `inner`. Until the hand-over, whatever the TLS layer delivers (early data,
    EOF, loss) is kept and replayed to the inner protocol in order.

    A connection counts against --max-connections from its accept, handshake included (a
    handshake holds descriptors and the TLS layer's buffers): it is admitted to `connections`
    here, and hands its place over to the inner protocol once the handshake is done."""

    # what the registry tracks (registry.Tracked): a handshake moves no payload
    bytes_in = 0
    unsent_at_close = 0

    def __init__(
        self,
        context: ssl.SSLContext | ServerContext,
        inner: Callable[[], asyncio.Protocol],
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        *,
        connections: Admission | None = None,
        failures: HandshakeFailures | None = None,
    ) -> None:
        # the context of this handshake: the one in use now, whatever a reload does later
        self._context = context.context if isinstance(context, ServerContext) else context
        self._inner_factory = inner
        self._handshake_timeout = handshake_timeout
        self._connections = connections
        self._failures = failures or HandshakeFailures()
        self._raw: list[bytes] = []  # handshake bytes read before start_tls took over
        self._early: list[bytes] = []  # decrypted before the hand-over
        self._eof = False
        self._lost: tuple[Exception | None] | None = None  # (exc,) once lost
        self._task: asyncio.Task[None] | None = None  # the handshake, then the hand-over
        self._peer: object = None  # the peer's address, read while the transport is open
        # the client's address when a PROXY protocol header gave it (balancer.py)
        self.client_address: tuple[str, int] | None = None
        self.proxy_header: object = None  # and the header itself (--reflect shows it)
        self.idle_mark = -1
        self.idle_since = 0.0
        self._plain: asyncio.Transport  # set in connection_made
        self._started = 0.0  # when the handshake began (perf_counter)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._started = time.perf_counter()
        self._plain = plain = cast(asyncio.Transport, transport)
        if self._connections is not None and not self._connections.admit(self):
            plain.close()  # counted and logged (rate-limited) by the registry
            return
        self._peer = self.client_address or plain.get_extra_info("peername")
        # asyncio honours this until start_tls resumes reading; uvloop starts reading right
        # after connection_made regardless, so the first bytes may still come: see _raw.
        plain.pause_reading()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._handshake(loop, plain))

    def queued(self) -> int:
        return 0

    def abort(self, reason: str) -> None:
        """Idle sweep or shutdown: end the handshake now."""
        self._plain.abort()

    async def _handshake(self, loop: asyncio.AbstractEventLoop, plain: asyncio.Transport) -> None:
        """The handshake, then the hand-over in the same step of the task. uvloop's TLS layer
        wakes start_tls before it delivers the data that came with the client's Finished, so
        the inner protocol gets that data itself and its echo leaves with the session tickets,
        as on uvloop's own TLS server; a done-callback would run a loop iteration later, and
        the echo would need a write of its own. (asyncio's TLS layer delivers that data first:
        it waits in _early.)"""
        try:
            secure = await loop.start_tls(
                plain,
                self,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._handshake_timeout,
            )
        except asyncio.CancelledError:
            self._end(plain)
            raise
        except Exception as err:  # whatever the peer did wrong, it ends this connection only
            self._failures.failed(peer_name("EchoServer", self._peer), describe_tls_error(err))
            self._end(plain)
            return
        if secure is None:  # the connection closed during the handshake
            self._end(plain)
            return
        self._failures.succeeded(time.perf_counter() - self._started)
        if self._connections is not None:
            self._connections.hand_over(self)
        inner = self._inner_factory()
        seen: asyncio.BaseTransport = secure
        if self.client_address is not None:
            from .proxy_protocol import ClientAddressTransport

            seen = cast(
                asyncio.Transport,
                ClientAddressTransport(secure, self.client_address, self.proxy_header),
            )
        inner.connection_made(seen)
        secure.set_protocol(inner)
        for data in self._early:
            inner.data_received(data)
        if self._eof and not inner.eof_received():
            secure.close()
        if self._lost is not None:
            inner.connection_lost(self._lost[0])

    def _end(self, plain: asyncio.Transport) -> None:
        plain.abort()
        if self._connections is not None:
            self._connections.discard(self, None)

    def _taken_over(self, plain: asyncio.Transport) -> None:
        """start_tls's first step is done: it has put its TLS protocol on the plain transport
        and queued that protocol's connection_made. The bytes read before go to it after that."""
        if plain.get_protocol() is self:
            return  # start_tls failed before taking over: _handshake reports it
        raw, self._raw = b"".join(self._raw), []
        asyncio.get_running_loop().call_soon(_feed, plain.get_protocol(), raw)

    def data_received(self, data: bytes) -> None:
        plain = self._plain
        if plain.get_protocol() is not self:  # from the TLS layer, before the hand-over
            self._early.append(data)
            return
        # From the plain transport, before start_tls's first step (uvloop, seldom), which is
        # queued ahead of this call_soon
        if not self._raw:
            asyncio.get_running_loop().call_soon(self._taken_over, plain)
        self._raw.append(data)
        plain.pause_reading()  # nothing more until start_tls resumes reading

    def eof_received(self) -> bool:
        # Replayed to the inner protocol at the hand-over. TLS has no half-close: the TLS layer
        # closes after EOF whatever this returns, and logs a warning when it is True.
        self._eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = (exc,)


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Deliver data to a protocol as its transport would (both loops' TLS protocols are
    BufferedProtocols)."""
    if hasattr(protocol, "get_buffer"):
        buffered = cast(asyncio.BufferedProtocol, protocol)
        view = memoryview(data)
        while view:
            buffer = memoryview(buffered.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            buffered.buffer_updated(size)
            view = view[size:]
    else:
        cast(asyncio.Protocol, protocol).data_received(data)

"""The echo client: the seed's EchoClientProtocol and echo(), and a checked stdin/stdout stream.

The seed's client sends its messages, half-closes, and completes a Future when the server's EOF
arrives. The stream client (`aioecho client -`) runs two pumps at once, as an echo client must
(a client that alternates writing and reading deadlocks once the data outgrows the socket
buffers): stdin -> socket, and socket -> stdout, each with flow control, so memory stays
constant whatever the size.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import queue
import socket
import ssl
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar, cast

from ..addresses import DEFAULT_HOST, DEFAULT_PORT, format_address
from ..errors import AioechoError, ConnectError, EchoError, ResolveError, describe_os_error
from ..logs import ConnectionLog, preview
from ..tls import client_context, describe_tls_error
from .banner import SkipBanner
from .config import ClientConfig

__all__ = [
    "SEED_MESSAGES",
    "EchoClientProtocol",
    "connect",
    "describe_mismatch",
    "echo",
    "echo_messages",
    "stream_stdio",
]

_log = logging.getLogger("aioecho.client")
_main_log = logging.getLogger("aioecho.main")

_T = TypeVar("_T")
_P = TypeVar("_P", bound=asyncio.BaseProtocol)

# the seed chapter's message, in its three parts
SEED_MESSAGES: Final = (b"This is the message. ", b"It will be sent ", b"in parts.")
CHUNK: Final = 256 * 1024  # bytes read from stdin at a time
WINDOW: Final = 16 * 1024 * 1024  # bytes sent but not yet echoed before sending waits
OUTPUT_HIGH: Final = 4 * 1024 * 1024  # bytes waiting for stdout before socket reading pauses
OUTPUT_LOW: Final = 1024 * 1024


class EchoClientProtocol(asyncio.Protocol):
    """The seed's client: send each message, half-close, collect the echo until the server's EOF.

    `future` gets the bytes that came back once the server sends EOF or closes; it gets a
    ConnectionError if the connection breaks first. `closed` is done after connection_lost.
    """

    def __init__(
        self, messages: Iterable[bytes], future: asyncio.Future[bytes], *, level: int = logging.INFO
    ) -> None:
        self.messages = list(messages)  # sent in order, then EOF
        self.future = future  # the echo, once the server has finished
        self.received = bytearray()  # the echo so far
        self.closed: asyncio.Future[None] = future.get_loop().create_future()
        self.log = ConnectionLog(_log, "EchoClient")
        self._level = level  # of the per-message lines
        self._expected: int | None = None  # bytes owed, where the transport cannot half-close
        self.transport: asyncio.Transport  # set in connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.log.info("connecting to %s", format_address(transport.get_extra_info("peername")))
        for message in self.messages:
            self.transport.write(message)
            self.log.log(self._level, "sending %s", preview(message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:  # TLS has no half-close: close once every byte has come back
            self._expected = sum(len(m) for m in self.messages)
            self._close_if_complete()

    def data_received(self, data: bytes) -> None:
        self.log.log(self._level, "received %s", preview(data))
        self.received += data
        if self._expected is not None:
            self._close_if_complete()

    def eof_received(self) -> bool:
        self.log.info("received EOF")
        self.transport.close()
        self._finish(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.info("server closed connection")
        self._finish(exc)
        self.closed.set_result(None)

    def _close_if_complete(self) -> None:
        if self._expected is not None and len(self.received) >= self._expected:
            self.transport.close()
            self._finish(None)

    def _finish(self, exc: Exception | None) -> None:
        if self.future.done():
            return
        if exc is None:
            self.future.set_result(bytes(self.received))
        elif _is_reset(exc):
            # refused by a limit, a plain client on a TLS port, a crash; a write that meets the
            # reset fails with EPIPE instead, and our write_eof (shutdown) with ENOTCONN
            sent = sum(len(m) for m in self.messages)
            self.future.set_exception(EchoError(_cut_short("reset", len(self.received), sent)))
        else:
            self.future.set_exception(
                EchoError(
                    f"connection lost after {len(self.received)} bytes: {describe_os_error(exc)}"
                )
            )


async def echo(
    data: bytes | Iterable[bytes],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    timeout: float = 10.0,
) -> bytes:
    """Send data (bytes, or messages sent one after another) to an echo server; return the echo.

    Raises ConnectError or ResolveError if it cannot connect within timeout seconds, EchoError if
    the connection breaks or the server falls silent for timeout seconds before closing.
    """
    messages = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    return await echo_messages(
        [bytes(m) for m in messages],
        ClientConfig(host=host, port=port, timeout=timeout),
        logging.DEBUG,
    )


async def echo_messages(
    messages: list[bytes],
    config: ClientConfig,
    level: int,
    protocol_class: type[EchoClientProtocol] = EchoClientProtocol,
) -> bytes:
    """The seed's exchange as config says: send messages (logged at level), half-close, and
    return what came back by the server's EOF. protocol_class: it, or a tracing subclass."""
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    factory = functools.partial(protocol_class, messages, future, level=level)
    transport, protocol = await connect(factory, config)
    try:
        return await _await_echo(future, lambda: len(protocol.received), config.timeout)
    except BaseException:
        future.cancel()  # nobody will read what the abort below would put there
        transport.abort()
        raise
    finally:
        transport.close()
        await protocol.closed


async def connect(factory: Callable[[], _P], config: ClientConfig) -> tuple[asyncio.Transport, _P]:
    """A stream connection as config says: TCP (trying each address of the host in turn, with
    happy eyeballs where the loop offers it), TLS, or a Unix socket. With banner_lines, the
    server's greeting is read and dropped before the protocol sees any data."""
    if config.banner_lines:
        made: list[_P] = []

        def skipping() -> asyncio.Protocol:
            made.append(factory())
            return SkipBanner(cast(asyncio.Protocol, made[0]), config.banner_lines)

        transport, _ = await _connect(skipping, config)
        return transport, made[0]
    return await _connect(factory, config)


async def _connect(factory: Callable[[], _P], config: ClientConfig) -> tuple[asyncio.Transport, _P]:
    loop = asyncio.get_running_loop()
    context = client_context(**config.tls_options()) if config.tls else None
    connection: Awaitable[tuple[asyncio.Transport, _P]]
    if config.unix is not None:
        hostname = config.server_name if context is not None else None
        connection = loop.create_unix_connection(
            factory, config.unix, ssl=context, server_hostname=hostname
        )
    elif isinstance(loop, asyncio.BaseEventLoop):  # uvloop has no happy_eyeballs_delay
        connection = loop.create_connection(
            factory,
            config.host,
            config.port,
            ssl=context,
            server_hostname=config.server_name if context is not None else None,
            happy_eyeballs_delay=0.25,
        )
    else:
        connection = loop.create_connection(
            factory,
            config.host,
            config.port,
            ssl=context,
            server_hostname=config.server_name if context is not None else None,
        )
    try:
        transport, protocol = await asyncio.wait_for(connection, config.timeout)
    except asyncio.TimeoutError:
        reason = f"timed out after {config.timeout:g}s (--timeout)"
        raise ConnectError(config.where, reason) from None
    except socket.gaierror as err:
        raise ResolveError(config.host, err) from None
    except ssl.SSLError as err:
        raise ConnectError(config.where, describe_tls_error(err)) from None
    except OSError as err:
        raise ConnectError(config.where, describe_os_error(err)) from None
    return transport, protocol


async def _await_echo(
    future: asyncio.Future[_T],
    progress: Callable[[], int],
    timeout: float,
    excused: Callable[[], bool] = lambda: False,
) -> _T:
    """future's result, unless progress() stands still for timeout seconds while not excused().

    Polls a counter a few times per timeout instead of re-arming a timer on every read."""
    loop = asyncio.get_running_loop()
    last, last_change = progress(), loop.time()
    while True:
        done, _ = await asyncio.wait((future,), timeout=timeout / 4)
        if done:
            return future.result()
        now, current = loop.time(), progress()
        if current != last or excused():
            last, last_change = current, now
        elif now - last_change >= timeout:
            raise EchoError(f"the server sent nothing for {timeout:g}s (--timeout)")


def describe_mismatch(sent: bytes, got: bytes) -> str:
    """Why an echo is not what was sent: the first differing byte, or the lengths."""
    at = next((i for i, (a, b) in enumerate(zip(sent, got, strict=False)) if a != b), None)
    if at is not None:
        return f"the echo differs from what was sent at byte {at}"
    if len(got) < len(sent):  # refused by a limit, a plain client on a TLS port, ...
        return _cut_short("closed", len(got), len(sent))
    return f"the echo has {len(got)} bytes, {len(sent)} were sent"


def _is_reset(exc: BaseException) -> bool:
    """The server reset the connection: a read that meets the reset says so, a write fails
    with EPIPE instead, and our write_eof (shutdown) with ENOTCONN."""
    return isinstance(exc, ConnectionResetError | BrokenPipeError) or (
        isinstance(exc, OSError) and exc.errno == errno.ENOTCONN
    )


def mutual_tls_hint(message: str, config: ClientConfig) -> str:
    """A TLS 1.3 server that requires a client certificate finishes the handshake, then closes
    at the first data without one (the alert reaches asyncio as a plain close, on both loops):
    said so when that is what a closed-without-echo TLS connection may be."""
    if config.tls and config.cert is None and "closed the connection without echoing" in message:
        return f"{message}: a server that requires a client certificate does this (--cert)"
    return message


def _cut_short(how: str, got: int, sent: int) -> str:
    if not got:
        return f"the server {how} the connection without echoing ({sent} bytes sent)"
    return f"the server {how} the connection after echoing {got} of {sent} bytes"


class SentWindow:
    """Bytes sent and not yet echoed, to check the echo against byte for byte."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._head = 0  # bytes of _chunks[0] already matched
        self.size = 0  # bytes owed by the server
        self.matched = 0  # bytes echoed correctly so far

    def push(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.append(chunk)
            self.size += len(chunk)

    def match(self, data: bytes) -> int | None:
        """Consume data; None if it is what was sent, else the offset of the first wrong byte."""
        pos = 0
        while pos < len(data):
            if not self._chunks:
                return self.matched + pos  # more came back than was sent
            chunk = self._chunks[0]
            take = min(len(chunk) - self._head, len(data) - pos)
            expected = chunk[self._head : self._head + take]
            got = data[pos : pos + take]
            if expected != got:
                return self.matched + pos + next(i for i in range(take) if expected[i] != got[i])
            pos += take
            self._head += take
            if self._head == len(chunk):
                self._chunks.popleft()
                self._head = 0
        self.size -= pos
        self.matched += pos
        return None


class StreamClientProtocol(asyncio.Protocol):
    """One side of a checked byte stream: send() what the caller reads, match the echo, pass it on.

    `done` resolves when the server's EOF arrives, or fails with an AioechoError at the first
    wrong byte or when the connection breaks.
    """

    def __init__(self, done: asyncio.Future[None], sink: Callable[[bytes], None]) -> None:
        self.done = done
        self.sink = sink  # takes each echoed chunk once it is checked
        self.window = SentWindow()
        self.received_total = 0
        self.eof_sent = False
        self.closed: asyncio.Future[None] = done.get_loop().create_future()
        self.log = ConnectionLog(_log, "EchoClient")
        self._debug = _log.isEnabledFor(logging.DEBUG)
        self._writable: asyncio.Future[None] | None = None  # waits for room to write
        self._write_paused = False
        self._half_close = True  # the transport can write EOF (TLS cannot)
        self.transport: asyncio.Transport  # set in connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.log.info("connecting to %s", format_address(transport.get_extra_info("peername")))
        self.transport.set_write_buffer_limits(high=1024 * 1024)
        self._half_close = self.transport.can_write_eof()

    def data_received(self, data: bytes) -> None:
        if self._debug:
            self.log.debug("received %s", preview(data))
        self.received_total += len(data)
        wrong = self.window.match(data)
        if wrong is not None:
            self.fail(EchoError(f"the echo differs from what was sent at byte {wrong}"))
            return
        self.sink(data)
        if self._writable is not None and self.window.size <= WINDOW // 2:
            self._wake(None)
        if self.eof_sent and not self._half_close and not self.window.size and not self.done.done():
            self.done.set_result(None)  # without half-close, the last echoed byte is the end

    def eof_received(self) -> bool:
        self.log.info("received EOF")
        if not self.done.done():
            self.done.set_result(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.info("server closed connection")
        # the same words as the messages client's (echo_messages): what came back, of what
        matched, sent = self.window.matched, self.window.matched + self.window.size
        if exc is None:
            self.fail(EchoError(_cut_short("closed", matched, sent)))
        elif _is_reset(exc):
            self.fail(EchoError(_cut_short("reset", matched, sent)))
        else:
            reason = describe_os_error(exc)
            self.fail(EchoError(f"connection lost after {matched} of {sent} bytes: {reason}"))
        self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.window.size <= WINDOW:
            self._wake(None)

    async def send(self, chunk: bytes) -> None:
        """Write chunk; return once the transport and the echo window have room for more."""
        if self.done.done():
            self.done.result()  # raises the failure; a clean EOF here is an early close
            raise EchoError("the server closed the connection before the stream ended")
        self.window.push(chunk)
        self.transport.write(chunk)
        if self._debug:
            self.log.debug("sending %s", preview(chunk))
        while self._write_paused or self.window.size > WINDOW:
            self._writable = self.done.get_loop().create_future()
            await self._writable

    def send_eof(self) -> None:
        """Half-close; TLS cannot, so there `done` resolves once the last byte has come back."""
        self.eof_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        elif not self.window.size and not self.done.done():
            self.done.set_result(None)

    def fail(self, error: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(error)
            self.transport.abort()
        self._wake(error)

    def _wake(self, error: Exception | None) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class _OutputPump:
    """Writes echoed chunks to a file descriptor from a thread, so that a slow stdout never
    blocks the loop; socket reading pauses while more than OUTPUT_HIGH bytes wait."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.pending = 0  # bytes queued, not yet written
        self.paused = False  # socket reading paused by us
        self.transport: asyncio.Transport | None = None  # whose reading pauses
        self.flushed: asyncio.Future[None] = loop.create_future()  # the writer thread is done
        self.error: AioechoError | None = None  # why it stopped early
        # told at once when the output breaks (its reader went away): nothing more can be shown
        self.on_error: Callable[[AioechoError], None] = lambda error: None
        threading.Thread(target=self._run, name="aioecho-stdout", daemon=True).start()

    def write(self, data: bytes) -> None:
        self.pending += len(data)
        self._queue.put(data)
        if self.pending > OUTPUT_HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        error: OSError | None = None
        while (item := self._queue.get()) is not None:
            view = memoryview(item)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as err:
                error = err
                break
            self._call(self._written, len(item))
        self._call(self._finished, error)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        # RuntimeError: the loop is gone, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _written(self, size: int) -> None:
        self.pending -= size
        if self.paused and self.pending <= OUTPUT_LOW and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def _finished(self, error: OSError | None) -> None:
        if self.flushed.done():
            return
        if error is not None:
            reason = describe_os_error(error)
            self.error = AioechoError(f"cannot write to standard output: {reason}")
            self.on_error(self.error)
        self.flushed.set_result(None)


READ_AHEAD: Final = 2  # chunks read from stdin and not yet sent


class _InputPump:
    """Reads a file descriptor from a thread (a read from a terminal or a pipe blocks, and cannot
    be cancelled) into `chunks`, at most READ_AHEAD chunks ahead of the sender. The thread is a
    daemon: a read that never returns must not hold up the exit."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._room = threading.Semaphore(READ_AHEAD)
        self.chunks: asyncio.Queue[bytes | OSError] = asyncio.Queue()
        threading.Thread(target=self._run, name="aioecho-stdin", daemon=True).start()

    async def get(self) -> bytes | OSError:
        """The next chunk: b"" at EOF, an OSError if reading failed."""
        chunk = await self.chunks.get()
        self._room.release()
        return chunk

    def _run(self) -> None:
        while True:
            data: bytes | OSError
            self._room.acquire()
            try:
                data = os.read(self._fd, CHUNK)
            except OSError as err:
                data = err
            try:
                self._loop.call_soon_threadsafe(self.chunks.put_nowait, data)
            except RuntimeError:
                return  # the loop has closed: nobody wants more input
            if not isinstance(data, bytes) or not data:
                return


async def stream_stdio(
    config: ClientConfig,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    protocol_class: type[StreamClientProtocol] = StreamClientProtocol,
) -> int:
    """Stream stdin_fd through the server to stdout_fd, checking every byte; return the count.

    Raises ConnectError/ResolveError, or EchoError at the first wrong byte, an early close or a
    silence of config.timeout seconds while echo is owed."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    output = _OutputPump(stdout_fd, loop)
    transport, protocol = await connect(
        functools.partial(protocol_class, done, output.write), config
    )
    output.transport = transport
    output.on_error = protocol.fail  # ends the run, and the stdin pump with it
    stdin = _InputPump(stdin_fd, loop)

    async def pump_stdin() -> None:
        while chunk := await stdin.get():
            if isinstance(chunk, OSError):
                raise AioechoError(f"cannot read standard input: {describe_os_error(chunk)}")
            await protocol.send(chunk)
        protocol.send_eof()

    def stop_on_failure(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            protocol.fail(error if isinstance(error, Exception) else EchoError(repr(error)))

    sender = asyncio.ensure_future(pump_stdin())
    sender.add_done_callback(stop_on_failure)
    try:
        await _await_echo(
            done,
            lambda: protocol.received_total,
            config.timeout,
            excused=lambda: output.paused or (protocol.window.size == 0 and not protocol.eof_sent),
        )
        if protocol.window.size or not sender.done():
            raise EchoError(
                f"the server closed the connection after echoing {protocol.window.matched} "
                f"bytes, with {protocol.window.size} bytes not echoed"
            )
        output.close()
        await output.flushed
        if output.error is not None:
            raise output.error
    except BaseException:
        done.cancel()  # nobody will read what the abort below would put there
        transport.abort()
        raise
    finally:
        sender.cancel()
        output.close()
        transport.close()
        await protocol.closed
    return protocol.window.matched

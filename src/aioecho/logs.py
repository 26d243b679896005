"""Log lines as the seed prints them (`NAME: message`), without a Logger per connection.

The seed names a logger per peer (`EchoServer_{host}_{port}`); the logging module keeps every
Logger for ever, so that leaks one per connection. Here a connection is a LoggerAdapter over one
module logger, carrying its display name in the record's `conn` field, which the CLI's
formatter shows in place of the logger name.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Final, TextIO

from .errors import describe_os_error

__all__ = [
    "LOG_FORMATS",
    "NOTICE",
    "ConnectionLines",
    "ConnectionLog",
    "FloodCounter",
    "LoopErrorLog",
    "configure",
    "connection_lines",
    "escape_controls",
    "preview",
]

# Between INFO and WARNING: lines that scripts read (the listening port), shown even with -q.
NOTICE: Final = 25
logging.addLevelName(NOTICE, "NOTICE")

PREVIEW_BYTES: Final = 64


def preview(data: bytes) -> str:
    """repr() of a payload, cut after 64 bytes: b'abc...'... (1000 bytes)."""
    if len(data) <= PREVIEW_BYTES:
        return repr(data)
    return f"{bytes(data[:PREVIEW_BYTES])!r}... ({len(data)} bytes)"


class ConnectionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for one connection: lines show as `{name}: message`."""

    def __init__(self, logger: logging.Logger, name: str) -> None:
        super().__init__(logger, {"conn": name})


class FloodCounter:
    """Counts an event that can come in floods (refused connections, dropped datagrams) and
    reports how many at most once per interval: a flood costs a line a second, not a line each.
    report(n) is called with the count since the last report."""

    def __init__(self, report: Callable[[int], None], interval: float = 1.0) -> None:
        self.total = 0
        self._unreported = 0
        self._report = report
        self._interval = interval

    def add(self) -> None:
        self.total += 1
        self._unreported += 1
        if self._unreported == 1:
            asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        """Report what is counted but not yet reported (the timer does; so does shutdown)."""
        if self._unreported:
            count, self._unreported = self._unreported, 0
            self._report(count)


# C0 controls, DEL and C1 controls, shown as \xNN: a peer's bytes that reach a log line (a
# PROXY header, an SNI name, an address) can neither end a line nor send terminal escapes.
_CONTROLS: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def escape_controls(text: str) -> str:
    """text with every control character shown as \\xNN: one line, no terminal escapes."""
    return text.translate(_CONTROLS)


def rfc3339(seconds: float) -> str:
    """'2026-12-03T00:03:55.032109Z': UTC, microseconds (what log shippers parse)."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class _SeedFormatter(logging.Formatter):
    """`NAME: message`: the connection's name, else the logger's without its `aioecho.`;
    a worker process puts its own name first: `worker2: NAME: message`; with timestamps
    (--log-timestamps), the time first."""

    def __init__(self, tag: str | None, timestamps: bool = False) -> None:
        line = f"{tag}: %(who)s: %(message)s" if tag else "%(who)s: %(message)s"
        super().__init__(f"%(asctime)s {line}" if timestamps else line)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339(record.created)

    def format(self, record: logging.LogRecord) -> str:
        who = getattr(record, "conn", None)
        if who is None:
            who = record.name.removeprefix("aioecho.")
        record.who = who
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # the line itself, escaped; a traceback, appended after this, keeps its lines
        return escape_controls(super().formatMessage(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: timestamp (RFC 3339, UTC, microseconds),
    level (debug, info, warning, error, critical; our NOTICE is info with "notice": true),
    logger, message, pid, host; for a connection's lines its name (peer) and, where it has an
    address, peer_ip and peer_port; for the statistics, each counter as a number; the worker."""

    def __init__(self, tag: str | None) -> None:
        super().__init__()
        self._tag = tag
        self._pid = os.getpid()
        self._host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        notice = record.levelno == NOTICE
        document: dict[str, Any] = {
            "timestamp": rfc3339(record.created),
            "level": "info" if notice else record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": self._pid,
            "host": self._host,
        }
        if notice:
            document["notice"] = True
        peer = getattr(record, "conn", None)
        if peer is not None:
            document["peer"] = peer
            document.update(peer_fields(peer))
        stats = getattr(record, "stats", None)
        if isinstance(stats, dict):
            document.update(stats)
        if self._tag is not None:
            document["worker"] = self._tag
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document)


def peer_fields(name: str) -> dict[str, Any]:
    """peer_ip and peer_port from a connection's name ('EchoServer_::1_443'), where it has an
    address (not 'EchoServer_unix_7', 'EchoServer_unknown', 'EchoClient')."""
    _, _, rest = name.partition("_")
    host, _, port = rest.rpartition("_")
    if not host or host == "unix" or not port.isdigit():
        return {}
    return {"peer_ip": host, "peer_port": int(port)}


LOG_FORMATS: Final = ("text", "json")
LINE_DELAY: Final = 0.1  # seconds a connection's line may wait in the buffer, at most
LINE_BUFFER: Final = 16 * 1024  # characters buffered, at most


class ConnectionLines:
    """The per-connection lines (accepted, closing), written as plain text without a LogRecord
    each: building and formatting two records per connection cost more CPU than the rest of a
    short connection's life (README, Performance). Lines wait here at most LINE_DELAY seconds
    and are written in one call; every other log record, and the handler's flush at exit, write
    them first, so the order of lines holds and nothing is lost at shutdown (only a process
    killed outright can lose the last LINE_DELAY's lines)."""

    def __init__(self, stream: TextIO, tag: str | None, timestamps: bool = False) -> None:
        self._stream = stream
        self._prefix = f"{tag}: " if tag else ""
        self._timestamps = timestamps
        # one growing buffer, not a string per line: a line's string is freed at once, and its
        # memory goes to the next one instead of leaving holes among long-lived connections
        self._pending = io.StringIO()

    def add(self, name: str, message: str) -> None:
        pending = self._pending
        if not pending.tell():
            asyncio.get_running_loop().call_later(LINE_DELAY, self.flush)
        if self._timestamps:
            pending.write(rfc3339(time.time()))
            pending.write(" ")
        pending.write(self._prefix)
        pending.write(name)
        pending.write(": ")
        pending.write(message)
        pending.write("\n")
        if pending.tell() > LINE_BUFFER:  # a burst of connections: write now, keep memory small
            self.flush()

    def flush(self) -> None:
        if self._pending.tell():
            text = self._pending.getvalue()
            self._pending = io.StringIO()
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stderr gone: as logging's own handler, do not fail the server for it


class _OrderedHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes the buffered connection lines before anything of its own."""

    def __init__(self, stream: TextIO, lines: ConnectionLines | None) -> None:
        super().__init__(stream)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        if self.lines is not None:
            self.lines.flush()
        super().emit(record)

    def flush(self) -> None:
        if self.lines is not None:
            self.lines.flush()
        super().flush()


_connection_lines: ConnectionLines | None = None


def connection_lines() -> ConnectionLines | None:
    """The fast path for per-connection lines, when the CLI's text log is configured."""
    return _connection_lines


def configure(
    verbosity: int,
    stream: TextIO | None = None,
    tag: str | None = None,
    trace: bool = False,
    log_format: str = "text",
    timestamps: bool = False,
) -> None:
    """Send log lines to stderr. verbosity: -1 quiet (NOTICE), 0 INFO, 1 DEBUG (with asyncio's).
    tag: a prefix for every line (a worker process's name). trace: show the `aioecho.trace`
    lines (--trace) whatever the verbosity. log_format: 'text' (the seed's `NAME: message`) or
    'json' (an object per line). timestamps: text lines start with the time (RFC 3339)."""
    logging.getLogger("aioecho.trace").setLevel(logging.INFO if trace else logging.WARNING)
    level = {-1: NOTICE, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    global _connection_lines
    out = stream if stream is not None else sys.stderr
    _connection_lines = ConnectionLines(out, tag, timestamps) if log_format == "text" else None
    handler = _OrderedHandler(out, _connection_lines)
    formatter = _JsonFormatter(tag) if log_format == "json" else _SeedFormatter(tag, timestamps)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class LoopErrorLog:
    """A loop exception handler: one line instead of asyncio's traceback for a fault on one
    connection (an OSError: not a crash), and the same message at most once a second, since some
    faults repeat per connection (asyncio reports EMFILE on every accept). Anything else is a
    bug, and keeps its traceback."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}  # message -> (when logged, repeats since)
        self._log = logging.getLogger("aioecho.main")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "unexpected event loop error")
        bug = exc is not None and not isinstance(exc, OSError | asyncio.TimeoutError)
        if bug:  # a bug: its traceback once, then rate-limited like any other (it may repeat)
            text = f"{message}: {type(exc).__name__}: {exc}"[:500]
        else:
            text = f"{message}: {describe_os_error(exc) if exc else 'no details'}"
        now = loop.time()
        seen = text in self._last
        last, repeats = self._last.get(text, (-1e9, 0))
        if now - last < 1.0:
            self._last[text] = (last, repeats + 1)
            return
        if len(self._last) >= 1000:  # bounded, whatever the messages
            self._last.clear()
        self._last[text] = (now, 0)
        more = f" (and {repeats} more like it)" if repeats else ""
        if bug and not seen:
            self._log.error("%s%s", message, more, exc_info=exc)
        else:
            self._log.error("%s%s", text, more)

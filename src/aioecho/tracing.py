"""`--trace`: every Protocol callback and what the protocol does to its transport, one line each,
with a millisecond clock from the connection's start:

    EchoServer_127.0.0.1_50312: +12.403 ms data_received 65536 bytes -> write (buffer 262144 of
    262144)
    EchoServer_127.0.0.1_50312: +12.410 ms pause_writing (buffer 262144 of 262144) ->
    pause_reading

(each one line).

The tracing protocols (server/trace.py, client/trace.py) are subclasses chosen at start-up, so
a server without --trace runs the plain classes and pays nothing for this. Lines go to the
`aioecho.trace` logger, which the CLI shows whatever the verbosity.
"""

from __future__ import annotations

import logging
import time

from .errors import describe_os_error

__all__ = ["TraceClock", "reason", "trace_log"]

trace_log = logging.getLogger("aioecho.trace")


class TraceClock:
    """A connection's trace: its name and its clock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.start = time.perf_counter()

    def stamp(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def line(self, text: str, at: float | None = None) -> None:
        ms = self.stamp() if at is None else at
        trace_log.info("+%.3f ms %s", ms, text, extra={"conn": self.name})


def reason(exc: BaseException | None) -> str:
    return "None" if exc is None else f"{type(exc).__name__}: {describe_os_error(exc)}"

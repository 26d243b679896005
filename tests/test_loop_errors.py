"""The loop's exception handler: one line per fault, repeats folded into a count."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aioecho.logs import LoopErrorLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


def test_repeats_within_a_second_are_folded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="aioecho.main")
    handler, clock = LoopErrorLog(), Clock()
    context = {"message": "socket.accept() out of system resource", "exception": OSError(24, "x")}
    loop = clock  # only .time() is used
    for _ in range(500):
        handler(loop, context)  # type: ignore[arg-type]
        clock.now += 0.001
    clock.now = 1.5
    handler(loop, context)  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [
        "socket.accept() out of system resource: too many open files",
        "socket.accept() out of system resource: too many open files (and 499 more like it)",
    ]


def test_handler_accepts_a_context_without_exception(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="aioecho.main")
    loop = asyncio.new_event_loop()
    try:
        LoopErrorLog()(loop, {"message": "Task was destroyed"})
    finally:
        loop.close()
    assert [r.getMessage() for r in caplog.records] == ["Task was destroyed: no details"]

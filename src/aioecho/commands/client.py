"""`aioecho client`: the seed's exchange, each message as a datagram (--udp), or stdin streamed
through the server to stdout (`-`), every byte checked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ..client import (
    SEED_MESSAGES,
    EchoClientProtocol,
    StreamClientProtocol,
    describe_mismatch,
    echo_messages,
    stream_stdio,
)
from ..config import ClientConfig
from ..errors import EchoError
from ..logs import LoopErrorLog
from ..tls import warn_if_insecure
from ..trace import TracingEchoClientProtocol, TracingStreamClientProtocol
from ..udp import echo_datagrams

__all__ = ["SEED_MESSAGES", "run_client"]

_main_log = logging.getLogger("aioecho.main")


async def run_client(
    config: ClientConfig, messages: Sequence[bytes], *, trace: bool = False
) -> None:
    """Send messages (b'-' alone: stream stdin) and check the echo; raises AioechoError.
    trace: log every protocol event (trace.py)."""
    asyncio.get_running_loop().set_exception_handler(LoopErrorLog())
    _main_log.info("waiting for client to complete")
    warn_if_insecure(config)
    if config.udp:
        await echo_datagrams(list(messages), config)
    elif list(messages) == [b"-"]:
        stream = TracingStreamClientProtocol if trace else StreamClientProtocol
        count = await stream_stdio(config, protocol_class=stream)
        _main_log.info("echoed %d bytes intact", count)
    else:
        sent = b"".join(messages)
        seed = TracingEchoClientProtocol if trace else EchoClientProtocol
        got = await echo_messages(list(messages), config, logging.INFO, seed)
        if got != sent:
            raise EchoError(describe_mismatch(sent, got))
    _main_log.info("closing event loop")

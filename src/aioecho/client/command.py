"""`aioecho client`: the seed's exchange, each message as a datagram (--udp), or stdin streamed
through the server to stdout (`-`), every byte checked."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from .. import loops
from ..errors import EchoError
from ..logs import LoopErrorLog
from ..options import Invocation
from .config import ClientConfig, warn_if_insecure
from .datagrams import echo_datagrams
from .options import add_parser, client_config
from .protocol import (
    SEED_MESSAGES,
    EchoClientProtocol,
    StreamClientProtocol,
    describe_mismatch,
    echo_messages,
    mutual_tls_hint,
    stream_stdio,
)
from .trace import TracingEchoClientProtocol, TracingStreamClientProtocol

__all__ = ["SEED_MESSAGES", "add_parser", "run", "run_client"]

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
            raise EchoError(mutual_tls_hint(describe_mismatch(sent, got), config))
    _main_log.info("closing event loop")


def run(call: Invocation) -> None:
    """`aioecho client` as the command line asked."""
    args = call.args
    messages = [os.fsencode(m) for m in args.messages] or list(SEED_MESSAGES)
    loops.run(run_client(client_config(args), messages, trace=args.trace), call.loop)

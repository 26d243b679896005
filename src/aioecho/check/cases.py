"""`aioecho check`'s case table and runner: each case opens its own connections (asyncio
streams), bounds every wait by the target's timeout, and ends in a CaseResult. The cases are
in streams.py and datagrams.py, what they are built from in peers.py; the verdicts and
reports in report.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

from ..errors import describe_os_error
from .config import CheckConfig
from .datagrams import _udp_basic, _udp_burst, _udp_idle_probe, _udp_sizes
from .far import _path, _tls
from .peers import FLOOD_TIME, PROBE_ROUNDS, SLOWEST, CaseFailed, Cut, Target, format_size_text
from .report import CaseResult, Verdict
from .streams import (
    _backpressure,
    _basic,
    _binary,
    _concurrency,
    _fragmented,
    _half_close,
    _idle,
    _large,
    _reset,
    _slow_reader,
    _tcp_idle_probe,
)

__all__ = ["CASES", "idle_wait", "run_case", "time_limit"]


CASES: Final[dict[str, Case]] = {
    "basic": _basic,
    "tls": _tls,
    "binary": _binary,
    "fragmented": _fragmented,
    "large": _large,
    "half-close": _half_close,
    "backpressure": _backpressure,
    "concurrency": _concurrency,
    "reset": _reset,
    "slow-reader": _slow_reader,
    "idle": _idle,
    "path": _path,
    "idle-probe": _tcp_idle_probe,
    "udp-basic": _udp_basic,
    "udp-sizes": _udp_sizes,
    "udp-burst": _udp_burst,
    "udp-idle-probe": _udp_idle_probe,
}


Case = Callable[[Target], Awaitable[CaseResult]]


async def run_case(name: str, config: CheckConfig, budget: float | None = None) -> CaseResult:
    """Run one case to its verdict: whatever goes wrong inside is a FAILED with the reason.
    budget: seconds it may take besides its idle waits; past them it is cut (see _cut)."""
    target = Target(config)
    case = CASES[name]
    started = time.perf_counter()
    limit = time_limit(name, config)
    if budget is not None:
        limit = min(limit, budget + idle_wait(name, config))
    target.deadline = asyncio.get_running_loop().time() + limit
    try:
        # the peers cut themselves at the deadline; wait_for, a second later, is the backstop
        result = await asyncio.wait_for(case(target), limit + 1.0)
    except (asyncio.TimeoutError, Cut):
        # every wait inside is bounded; this catches a path that trickles, a byte at a time
        result = _cut(name, target, limit)
    except CaseFailed as failure:
        result = CaseResult(name, Verdict.FAILED, failure.detail, figures=failure.figures)
    except (OSError, EOFError, asyncio.IncompleteReadError) as err:
        result = CaseResult(name, Verdict.FAILED, f"unexpected: {describe_os_error(err)}")
    except Exception as err:
        result = CaseResult(name, Verdict.FAILED, f"unexpected: {type(err).__name__}: {err}")
    result.name = name
    result.seconds = time.perf_counter() - started
    if target.addresses is not None:
        result.figures = {**target.addresses, **result.figures}
    return result


def idle_wait(name: str, config: CheckConfig) -> float:
    """Seconds of a case that are idle by request (--idle, --idle-probe): not from the budget."""
    if name == "idle":
        return config.idle
    if name.endswith("idle-probe"):
        assert config.idle_probe is not None
        return PROBE_ROUNDS * (config.idle_probe + 2 * config.target.timeout)
    return 0.0


def _cut(name: str, target: Target, limit: float) -> CaseResult:
    """A case stopped at its time limit: slow but right so far is NON-STRICT, with how far it
    got and the rate; nothing echoed at all is FAILED."""
    echoed = sum(peer.received for peer in target.peers)
    sent = sum(peer.sent for peer in target.peers)
    figures = {"cut": True, "limit_s": round(limit, 1), "echoed_bytes": echoed, "sent_bytes": sent}
    if not echoed:
        return CaseResult(
            name, Verdict.FAILED, f"nothing echoed within {limit:.0f}s", figures=figures
        )
    figures["rate_bps"] = round(echoed / limit)
    return CaseResult(
        name,
        Verdict.NON_STRICT,
        f"cut at {limit:.0f}s: {format_size_text(echoed)} echoed of {format_size_text(sent)} "
        f"sent ({format_size_text(round(echoed / limit))}/s), right so far",
        figures=figures,
    )


def time_limit(name: str, config: CheckConfig) -> float:
    """Seconds a case may take in all: generous, since each of its waits has its own bound."""
    limit = 60.0 + 10 * config.target.timeout
    if name == "large":
        limit += config.large / SLOWEST
    elif name in ("backpressure", "slow-reader"):
        limit += FLOOD_TIME + config.backpressure_cap / SLOWEST
    return limit + idle_wait(name, config)

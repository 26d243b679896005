"""`aioecho ping`: a line per probe on stdout (text, JSON lines or CSV), the summary when the
count is reached or on Ctrl-C, and exit status 1 when loss passes --max-loss, an answer was
wrong, or nothing answered at all."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TextIO

from .. import loops
from ..client.config import warn_if_insecure
from ..errors import AioechoError, ResolveError
from ..logs import LoopErrorLog
from ..options import Invocation
from ..output import report_file, writing_stdout
from ..version import __version__
from .config import PingConfig
from .engine import FAMILIES, ping
from .options import add_parser, ping_config
from .stats import PingSummary, ProbeResult

__all__ = ["PingFailed", "add_parser", "run", "run_ping"]

CSV_FIELDS = (
    "time", "seq", "status", "bytes", "rtt_us", "resolve_us", "connect_us", "tls_us", "peer",
    "idle_s",
)  # fmt: skip


STOP_GRACE = 2.0  # seconds the probes get to end as unanswered after Ctrl-C


class PingFailed(AioechoError):
    """Too many probes lost, a wrong answer, or no answer at all."""

    def __init__(self, message: str, summary: PingSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary  # the run's, already printed


async def run_ping(config: PingConfig) -> PingSummary:
    """Ping until config.count probes have ended, or SIGINT/SIGTERM; print on stdout as
    config.output says, and write the --json-file and --csv-file reports. Returns the summary;
    raises PingFailed after printing it when the run fails."""
    files = [("json", config.json_file), ("csv", config.csv_file)]
    with contextlib.ExitStack() as stack:
        outs: list[tuple[str, TextIO]] = [(config.output, sys.stdout)]
        for form, path in files:
            if path is None:
                continue
            outs.append((form, stack.enter_context(report_file(f"--{form}-file", path))))
        with writing_stdout():
            if not config.all_addresses:
                return await _ping(config, outs)
            return await _each_address(config, outs)


async def _each_address(config: PingConfig, outs: list[tuple[str, TextIO]]) -> PingSummary:
    """--all-addresses: the run for each address the host resolves to, in turn, then their
    figures side by side; fails if any address's run fails (the others are still run)."""
    target = config.target
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, family=FAMILIES[config.family],
                type=socket.SOCK_DGRAM if target.udp else socket.SOCK_STREAM,
            ),
            target.timeout,
        )  # fmt: skip
    except (OSError, asyncio.TimeoutError) as err:
        raise ResolveError(target.host, err) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    runs: list[tuple[str, PingSummary | None, str | None]] = []
    for address in addresses:
        # the name is still what TLS sends and verifies
        sni = target.sni if target.sni is not None or not target.tls else target.host
        one = dataclasses.replace(config, target=dataclasses.replace(target, host=address, sni=sni))
        try:
            runs.append((address, await _ping(one, outs), None))
        except PingFailed as err:
            runs.append((address, err.summary, str(err)))
    out = outs[0][1] if config.output == "text" else sys.stderr
    _say(out, "")
    many = f"{len(addresses)} address{'es' if len(addresses) != 1 else ''}"
    _say(out, f"--- {target.host}: {many} side by side ---")
    for address, summary, failure in runs:
        assert summary is not None
        f = summary.figures()
        _say(
            out,
            f"{address}: {summary.sent} sent, {summary.received} received, "
            f"{summary.loss_pct:.3g}% loss, rtt avg {f['avg_us'] / 1000:.3f} ms, "
            f"p99 {f['p99_us'] / 1000:.3f} ms" + (f" ({failure})" if failure else ""),
        )
    failures = [f"{address}: {why}" for address, _, why in runs if why is not None]
    if failures:
        raise PingFailed("; ".join(failures))
    return runs[-1][1]  # type: ignore[return-value]


async def _ping(config: PingConfig, outs: list[tuple[str, TextIO]]) -> PingSummary:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(LoopErrorLog())
    warn_if_insecure(config.target)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # as ping does: stop, summarise, exit
        loop.add_signal_handler(signum, stop.set)
    where = config.target.where
    summary = PingSummary()
    printers = [_printer(config, form, out) for form, out in outs]
    started_at, started = time.time(), time.perf_counter()
    if config.output == "text":
        each = f"a new connection each, every {config.interval:g}s"
        how = each if config.new_connection else f"every {config.interval:g}s"
        text = f"PING {where}: {config.size} bytes, {how}, timeout {config.target.timeout:g}s"
        _say(outs[0][1], text)

    async def probe() -> None:
        async for result in ping(
            config.target,
            count=config.count,
            interval=config.interval,
            size=config.size,
            new_connection=config.new_connection,
            stop=stop,
            tos=config.tos,
            reflect=config.reflecting,
            banner_lines=config.banner_lines,
            family=config.family,
        ):
            summary.add(result)
            for show in printers:
                show(result)

    probing = asyncio.ensure_future(probe())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((probing, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not probing.done():  # stopped: the probes in flight end as unanswered, at once
            await asyncio.wait((probing,), timeout=STOP_GRACE)
    finally:
        stopping.cancel()
        probing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probing
    summary.seconds = time.perf_counter() - started
    for index, (form, out) in enumerate(outs):
        _print_summary(config, form, summary, out, where, started_at, shown=index == 0)
    failure = summary.failure(config.max_loss)
    if failure is not None:
        raise PingFailed(failure, summary)
    return summary


def _printer(config: PingConfig, form: str, out: TextIO) -> Callable[[ProbeResult], None]:
    if form == "json":
        return lambda result: _say(out, json.dumps(_stamped(result)))
    if form == "csv":
        named = config.reflecting or config.banner_lines  # a column for the instance
        fields = (*CSV_FIELDS, "backend") if named else CSV_FIELDS
        writer = csv.DictWriter(out, fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()

        def row(result: ProbeResult) -> None:
            writer.writerow(_stamped(result))
            out.flush()

        return row
    if config.quiet:  # as ping -q: the summary only
        return lambda result: None
    said: list[str | None] = [None]  # what the server saw, as last said

    def stamp() -> str:  # as ping -D: the wall-clock time first
        return f"[{time.time():.6f}] " if config.verbose else ""

    tls: list[str | None] = [None]  # the TLS line, as last said

    def line(result: ProbeResult) -> None:
        if result.tls is not None and result.tls != tls[0]:  # the first, and any change
            tls[0] = result.tls
            _say(out, stamp() + f"TLS {result.tls}")
        if config.reflect and result.seen is not None and result.seen != said[0]:
            said[0] = result.seen
            _say(out, stamp() + result.seen)
        _say(out, stamp() + result.line())

    return line


def _stamped(result: ProbeResult) -> dict[str, object]:
    """The result's fields, with the time it was printed (Unix seconds) first."""
    return {"time": round(time.time(), 6), **result.to_dict()}


def _print_summary(
    config: PingConfig,
    form: str,
    summary: PingSummary,
    out: TextIO,
    where: str,
    started_at: float,
    shown: bool,
) -> None:
    """The summary in out's form; shown: out is what the user watches (standard output), where
    a CSV table's summary goes aside to standard error (a file's CSV keeps the rows only)."""
    if form == "json":
        target = config.target
        run = {
            "version": __version__,
            "command": sys.argv[1:],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
            "time": round(time.time(), 6),
            "target": target.unix if target.unix is not None else target.host,
            "port": None if target.unix is not None else target.port,
            "transport": "udp" if target.udp else "unix" if target.unix else "tcp",
            "tls": target.tls,
            "count": config.count,
            "interval_s": config.interval,
            "size": config.size,
            "timeout_s": target.timeout,
            "new_connection": config.new_connection,
        }
        _say(out, json.dumps({**summary.to_dict(), **run}))
        return
    lines = summary.lines(where)
    if form == "csv":  # the rows stay machine-readable; the summary goes aside
        for line in lines if shown else ():
            print(line, file=sys.stderr)
        return
    _say(out, "")
    for line in lines:
        _say(out, line)


def _say(out: TextIO, line: str) -> None:
    print(line, file=out, flush=True)


def run(call: Invocation) -> None:
    """`aioecho ping` as the command line asked."""
    loops.run(run_ping(ping_config(call.args)), call.loop)

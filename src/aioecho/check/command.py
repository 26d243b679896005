"""`aioecho check`: run the chosen cases one after another against the target, print a line per
case as it ends, then the summary; write the JSON and JUnit reports asked for; fail (exit 1)
when a case FAILED."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TextIO

from .. import loops
from ..addresses import host_port
from ..client.config import warn_if_insecure
from ..errors import AioechoError, Interrupted, ResolveError, describe_os_error
from ..logs import LoopErrorLog
from ..options import Invocation
from ..output import check_writable, writing_stdout
from ..units import plural
from ..version import __version__
from .cases import idle_wait, run_case
from .config import CheckConfig
from .html import to_html
from .options import add_parser, check_config
from .peers import FAMILIES
from .report import CaseResult, Report, Verdict, table_line

__all__ = ["CheckFailed", "add_parser", "describe", "run", "run_check"]


STOP_GRACE = 2.0  # seconds an interrupted case gets to end
MIN_SHARE = 5.0  # seconds of the budget kept for each case still to run (less if it is short)


class CheckFailed(AioechoError):
    """At least one case FAILED."""


def describe(config: CheckConfig) -> str:
    """'127.0.0.1 port 10000 (TCP, UDP)', '/run/echo.sock (Unix, TLS)'."""
    target = config.target
    kinds = []
    if any(not name.startswith("udp-") for name in config.cases):
        kinds.append("Unix" if target.unix is not None else "TCP")
        if target.tls:
            kinds.append("TLS")
    if any(name.startswith("udp-") for name in config.cases):
        kinds.append("UDP")
    where = target.unix if target.unix is not None else host_port(target.host, target.port)
    return f"{where} ({', '.join(kinds)})"


async def run_check(config: CheckConfig) -> Report:
    """Run every case of config.cases; raise CheckFailed (after the reports) if one FAILED.
    SIGINT or SIGTERM ends the run: the cases not finished are SKIPPED (interrupted), the
    reports are written all the same, then Interrupted."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(LoopErrorLog())
    reports = (
        ("--json-file", config.json_path),
        ("--junit-file", config.junit_path),
        ("--html-file", config.html_path),
    )
    for option, path in reports:
        if path is not None and path != "-":
            check_writable(option, path)  # before the run, not after it
    warn_if_insecure(config.target)
    addresses = await _resolve(config)
    # the table goes to stdout, unless a report does: then it goes aside, to stderr
    to_stdout = "-" in (config.json_path, config.junit_path, config.html_path)
    table: TextIO = sys.stderr if to_stdout else sys.stdout
    report = Report(describe(config))
    report.meta = _meta(config, addresses)
    started = time.perf_counter()
    stopped: asyncio.Future[int] = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stop, stopped, signum)
    runs = [(a, dataclasses.replace(config, address=a)) for a in addresses]
    with writing_stdout():
        count = len(config.cases) * (len(runs) if config.all_addresses else 1)
        _say(table, f"CHECK {report.target}: {plural(count, 'case')}")
        for address, one in runs if config.all_addresses else [(None, config)]:
            if address is not None:
                _say(table, f"at {address}:")
            await _run_cases(one, address, report, table, stopped)
        report.seconds = time.perf_counter() - started
        _say(table, report.summary_line())
        for line in report.differences():
            _say(table, line)
        for path, text in (
            (config.json_path, report.to_json),
            (config.junit_path, report.to_junit),
            (config.html_path, lambda: to_html(report)),
        ):
            if path is not None:
                _write(path, text())
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
    if stopped.done():
        raise Interrupted(stopped.result())
    if report.failed:
        names = [r.name for r in report.results if r.verdict is Verdict.FAILED]
        raise CheckFailed(f"FAILED: {', '.join(names)}")
    return report


async def _run_cases(
    config: CheckConfig,
    address: str | None,
    report: Report,
    table: TextIO,
    stopped: asyncio.Future[int],
) -> None:
    """config's cases in turn, each with its share of the budget, into report."""
    deadline = time.perf_counter() + config.budget
    floor = min(MIN_SHARE, config.budget / max(1, len(config.cases)))
    for index, name in enumerate(config.cases):
        deadline += idle_wait(name, config)  # asked for: not from the budget
        # what is left of the budget, less a floor's worth for each case still to come
        left = deadline - time.perf_counter()
        share = max(floor, left - floor * (len(config.cases) - index - 1))
        if stopped.done():
            result = CaseResult(name, Verdict.SKIPPED, "interrupted")
        else:
            running = asyncio.ensure_future(run_case(name, config, share))
            await asyncio.wait((running, stopped), return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                result = running.result()
            else:
                running.cancel()  # (asyncio.wait_for can lose it: not waited for long)
                await asyncio.wait((running,), timeout=STOP_GRACE)
                result = CaseResult(name, Verdict.SKIPPED, "interrupted")
        if address is not None:
            result.figures = {"address": address, **result.figures}
        report.results.append(result)
        if not (config.quiet and result.verdict is Verdict.OK):
            _say(table, table_line(result))
        if config.verbose and result.figures:
            _say(table, "    " + " ".join(f"{k}={v}" for k, v in result.figures.items()))


def _meta(config: CheckConfig, addresses: list[str]) -> dict[str, object]:
    """What a ticket needs besides the verdicts: the tool, the command, when, and where."""
    target = config.target
    return {
        "version": __version__,
        "command": sys.argv[1:],
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": target.unix if target.unix is not None else target.host,
        "port": None if target.unix is not None else target.port,
        "addresses": addresses,
        "family": {0: "any", 4: "IPv4", 6: "IPv6"}[config.family],
        "tls": target.tls,
        "budget_s": config.budget,
    }


def _stop(stopped: asyncio.Future[int], signum: int) -> None:
    if not stopped.done():
        stopped.set_result(signum)


async def _resolve(config: CheckConfig) -> list[str]:
    """The host's addresses (of the family asked for), in the resolver's order. A name that
    does not resolve is one line at once, not a FAILED per case (and a case that waits its
    timeout out)."""
    target = config.target
    if target.unix is not None:
        return []
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, family=FAMILIES[config.family], type=socket.SOCK_STREAM
            ),
            target.timeout,
        )
    except socket.gaierror as err:
        raise ResolveError(target.host, err) from None
    except asyncio.TimeoutError:
        raise ResolveError(target.host, TimeoutError("timed out")) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _say(out: TextIO, line: str) -> None:
    print(line, file=out, flush=True)


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    try:
        Path(path).write_text(text if text.endswith("\n") else text + "\n")
    except OSError as err:
        raise AioechoError(f"cannot write {path}: {describe_os_error(err)}") from None


def run(call: Invocation) -> None:
    """`aioecho check` as the command line asked."""
    loops.run(run_check(check_config(call.args)), call.loop)

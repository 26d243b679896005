"""`aioecho bench`: run the load (bench.py) in this process or fanned out to --workers
processes whose exact histograms are merged, optionally against a server spawned for the run,
then print the table or JSON and fail on any wrong, lost or missing echo."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from typing import Final, TextIO

from .. import loops
from ..client.config import warn_if_insecure
from ..errors import (
    AioechoError,
    BenchError,
    ConfigError,
    ExitStatus,
    Interrupted,
    describe_os_error,
)
from ..logs import LoopErrorLog
from ..options import Invocation
from ..output import check_writable, writing_stdout
from ..roles import WorkerRole
from .config import BenchConfig
from .engine import describe, is_terminal, run_bench
from .options import add_parser, bench_config, merge_parser
from .result import BenchResult, merge, merge_reports

__all__ = ["add_parser", "run", "run_bench_command", "run_bench_share", "run_merge"]

_main_log = logging.getLogger("aioecho.main")

_background: set[asyncio.Future[None]] = set()  # tasks that must not be garbage-collected


async def run_bench_command(
    config: BenchConfig,
    *,
    argv: Sequence[str],
    spawn: bool = False,
    as_json: bool = False,
    json_file: str | None = None,
    loop_name: str = "auto",
    verbose: bool = False,
) -> None:
    """The whole run. argv: the command's own arguments, which --workers processes get again.
    Raises BenchError when any request failed or none completed."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(LoopErrorLog())
    if json_file is not None:
        check_writable("--json-file", json_file)  # not found out after the whole run
    stop, stopped_by = _stop_on_signals()
    server: asyncio.subprocess.Process | None = None
    warn_if_insecure(config.target)
    extra: list[str] = []
    try:
        if spawn:
            server, port = await _spawn_server(loop_name)
            config = dataclasses.replace(
                config, target=dataclasses.replace(config.target, host="127.0.0.1", port=port)
            )
            extra = ["--host", "127.0.0.1", "--port", str(port)]
        _main_log.info("%s, loop %s", describe(config), loops.describe(loop))
        if config.start_at is not None:
            await _wait_until(config.start_at)
        if config.workers == 1:
            live = is_terminal(sys.stderr)
            shown = sys.stderr if live or verbose else None
            result = await _run(config, shown, live, stop)
        else:
            argv = [a for a in argv if a != "--spawn"] + extra
            result = await _bench_workers(config, argv, stop)
    finally:
        if server is not None:
            server.terminate()
            await server.wait()
    if json_file is not None:
        try:
            with open(json_file, "w", encoding="utf-8") as file:
                file.write(result.to_json() + "\n")
        except OSError as err:
            raise BenchError(f"--json-file {json_file}: {describe_os_error(err)}") from None
    with writing_stdout():
        print(result.to_json() if as_json else result.table(), flush=True)
    if stopped_by:
        raise Interrupted(stopped_by[0])
    failure = result.failure()
    if failure is not None:
        raise BenchError(failure)


def _stop_on_signals() -> tuple[asyncio.Event, list[int]]:
    """An event set by the first SIGINT or SIGTERM, and the signal's number once it came: the
    run ends there and reports what it measured (a second signal ends it at once)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stopped_by: list[int] = []

    def stopping(signum: int) -> None:
        if stopped_by:
            signal.default_int_handler(signum, None)  # a second one: at once
        stopped_by.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping, signum)
    return stop, stopped_by


MAX_START_WAIT: Final = 24 * 3600.0  # seconds --start-at may lie ahead


async def _wait_until(start_at: float) -> None:
    """Sleep until the wall-clock time start_at (time.time(), which is what other machines
    share, give or take their clock skew)."""
    delay = start_at - time.time()
    shown = time.strftime("%H:%M:%S", time.localtime(start_at))
    if delay < -1.0:
        raise BenchError(f"--start-at {shown} is {-delay:.0f}s in the past")
    if delay > MAX_START_WAIT:
        raise BenchError(f"--start-at {shown} is more than 24 hours ahead")
    if delay > 0:
        _main_log.info("starting at %s (in %.1fs)", shown, delay)
        await asyncio.sleep(delay)


async def run_bench_share(config: BenchConfig, role: WorkerRole) -> None:
    """One of --workers processes: run this share of the load, report it on stdout (also when
    a signal ends it early: the parent passes its Ctrl-C on)."""
    asyncio.get_running_loop().set_exception_handler(LoopErrorLog())
    stop, _ = _stop_on_signals()
    result = await _run(config.share(role.number), stop=stop)
    print(result.to_wire(), flush=True)


async def _run(
    config: BenchConfig,
    progress: TextIO | None = None,
    live: bool = True,
    stop: asyncio.Event | None = None,
) -> BenchResult:
    if config.new_connection:
        from .newconn import run_new_connections

        return await run_new_connections(config, progress, live, stop)
    return await run_bench(config, progress, live, stop)


async def _spawn_server(loop_name: str) -> tuple[asyncio.subprocess.Process, int]:
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aioecho", "server", "-q", "--host", "127.0.0.1", "--port", "0",
        "--loop", loop_name, "--max-connections", "100000",
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert server.stderr is not None
    while line := await server.stderr.readline():
        if match := re.search(rb"listening on \S+ port (\d+)", line):
            # keep reading its log, or a full pipe would stall it
            _background.add(asyncio.ensure_future(_drain(server.stderr)))
            return server, int(match.group(1))
    raise BenchError("the spawned server did not start: " + (await server.stderr.read()).decode())


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _bench_workers(config: BenchConfig, argv: list[str], stop: asyncio.Event) -> BenchResult:
    """Run the load in config.workers processes and merge their histograms exactly. stop: pass
    it on to the workers (SIGINT), which end their window and report."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aioecho",
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            env=WorkerRole(i, os.getpid()).environ(),
        )
        for i in range(config.workers)
    ]

    async def forward() -> None:
        await stop.wait()
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)

    forwarding = asyncio.ensure_future(forward())
    try:
        outputs = await asyncio.gather(*(p.communicate() for p in procs))
    finally:
        forwarding.cancel()
    results = []
    for proc, (out, _) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise BenchError(f"a bench worker failed with exit status {proc.returncode}")
        results.append(BenchResult.from_wire(config, out.decode().strip().splitlines()[-1]))
    return merge(results, config)


def run(call: Invocation) -> None:
    """`aioecho bench` as the command line asked: the whole run, or one worker's share."""
    config = bench_config(call.args)
    if call.role is not None:
        loops.run(run_bench_share(config, call.role), call.loop)
        return
    args = call.args
    run_it = run_bench_command(
        config,
        argv=call.argv,
        spawn=args.spawn,
        as_json=args.json_to == "-",
        json_file=None if args.json_to == "-" else args.json_to,
        loop_name=call.loop,
        verbose=args.verbose,
    )
    loops.run(run_it, call.loop)


MAX_REPORT: Final = 64 * 1024**2  # bytes of one report given to `bench merge`


def run_merge(argv: Sequence[str]) -> int:
    """`aioecho bench merge FILE...`: a verb of its own, with its own arguments and errors."""
    args = merge_parser().parse_args(argv)
    try:
        results = []
        for name in args.files:
            try:
                with open(name, "rb") as file:
                    raw_report = file.read(MAX_REPORT + 1)
            except OSError as err:
                raise AioechoError(f"cannot read {name}: {describe_os_error(err)}") from None
            if len(raw_report) > MAX_REPORT:
                raise AioechoError(
                    f"{name}: over {MAX_REPORT // 1024**2} MiB: not the output of aioecho bench "
                    "--json"
                )
            try:
                results.append(BenchResult.from_json(raw_report.decode("utf-8")))
            except UnicodeDecodeError:
                raise AioechoError(f"{name}: not UTF-8 text: not the output of aioecho "
                                   "bench --json") from None  # fmt: skip
            except RecursionError:
                raise AioechoError(f"{name}: nested too deep: not the output of aioecho "
                                   "bench --json") from None  # fmt: skip
            except ConfigError as err:
                raise AioechoError(f"{name}: config: {err}") from None
            except (ValueError, KeyError, TypeError, OverflowError) as err:
                raise AioechoError(
                    f"{name}: {err}: not the output of aioecho bench --json"
                ) from None
        merged = merge_reports(results)
        with writing_stdout():
            print(merged.to_json() if args.json else merged.table(), flush=True)
    except AioechoError as err:
        print(f"aioecho bench merge: error: {err}", file=sys.stderr)
        return ExitStatus.USAGE if isinstance(err, ConfigError) else ExitStatus.FAILURE
    return ExitStatus.OK

"""The `aioecho` command: argument parsing, signals, and the one place that prints errors and
chooses exit codes (0 ok, 1 failure, 2 usage, 130 interrupted)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, loops
from .bench import BenchResult, describe, is_terminal, merge, run_bench
from .client import _echo_messages, stream_stdio
from .config import (
    DEFAULT_HOST,
    DEFAULT_MAX_BUFFER,
    DEFAULT_PORT,
    BenchConfig,
    ClientConfig,
    ServerConfig,
    parse_count,
    parse_mode,
    parse_port,
    parse_rate,
    parse_seconds,
    parse_size,
)
from .errors import AioechoError, EchoError, ExitStatus, describe_os_error
from .listeners import open_sockets
from .logs import NOTICE, configure
from .server import serve
from .udp import echo_datagrams
from .workers import supervise, worker_count

__all__ = ["main"]

_SERVER = ServerConfig()  # the defaults: config.py is their one home
_CLIENT = ClientConfig()
_BENCH = BenchConfig()

_main_log = logging.getLogger("aioecho.main")


class BenchError(AioechoError):
    pass


_background: set[asyncio.Future[None]] = set()  # tasks that must not be garbage-collected


_stats_log = logging.getLogger("aioecho.stats")

SEED_MESSAGES = (b"This is the message. ", b"It will be sent ", b"in parts.")

SERVER_EXAMPLES = """\
examples:
  aioecho server                          # localhost port 10000
  aioecho server -v                       # log every chunk, as the seed does
  aioecho server --host ::1 --host 127.0.0.1 --port 0
  aioecho server --host :: -q             # every address, IPv6 and IPv4, warnings only
  aioecho server --tls-cert cert.pem --tls-key key.pem
  aioecho server --unix /tmp/echo.sock --unix-mode 660
  aioecho server --tcp --udp --udp-rate 50
"""

CLIENT_EXAMPLES = """\
examples:
  aioecho client                          # the seed's three-part message
  aioecho client hello world              # two messages, one after the other
  aioecho client - < big.bin | cmp - big.bin
  printf 'ping' | aioecho client -q --port 10001 -
  aioecho client --tls --cafile ca.pem --host echo.example
  aioecho client --unix /tmp/echo.sock
  aioecho client --udp one datagram each  # three datagrams, each checked
exit status: 0 the echo came back identical, 1 it did not (or no connection), 2 usage.
"""


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser raising ValueError, keeping its message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=_checked(parse_port),
        default=DEFAULT_PORT,
        help="TCP port (default %(default)s)",
    )
    parser.add_argument(
        "--loop",
        choices=loops.LOOPS,
        default="auto",
        help="event loop: auto (uvloop when installed), asyncio or uvloop",
    )
    level = parser.add_mutually_exclusive_group()
    level.add_argument("-v", "--verbose", action="store_true", help="log every chunk and EOF")
    level.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings, errors and listening lines"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aioecho", description="An asyncio echo server and client (asyncio.Protocol)."
    )
    parser.add_argument("--version", action="version", version=f"aioecho {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = commands.add_parser(
        "server",
        help="run an echo server",
        description="Echo every byte back to its sender, in order.",
        epilog=SERVER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    server.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="HOST",
        help=f"address or name to listen on, repeatable; a name binds all its addresses "
        f"(default {DEFAULT_HOST})",
    )
    _common(server)
    server.add_argument(
        "--drain-timeout",
        type=_checked(parse_seconds),
        default=_SERVER.drain_timeout,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, time open connections get to finish (default %(default)s)",
    )
    server.add_argument(
        "--unix", metavar="PATH", help="listen on a Unix socket instead of host and port"
    )
    server.add_argument(
        "--unix-mode",
        type=_checked(parse_mode),
        default=_SERVER.unix_mode,
        metavar="MODE",
        help="permissions of the Unix socket, in chmod's octal form (default 600: owner only)",
    )
    server.add_argument("--tcp", action="store_true", help="serve TCP (the default without --udp)")
    server.add_argument("--udp", action="store_true", help="serve UDP (RFC 862); with --tcp, both")
    server.add_argument(
        "--udp-rate",
        type=_checked(parse_rate),
        default=_SERVER.udp_rate,
        metavar="N",
        help="UDP datagrams echoed per second per source address, burst N (default 200)",
    )
    server.add_argument("--tls-cert", metavar="CERT", help="PEM certificate chain: serve TLS")
    server.add_argument("--tls-key", metavar="KEY", help="PEM private key of --tls-cert")
    server.add_argument(
        "--max-connections",
        type=_checked(parse_count),
        default=_SERVER.max_connections,
        metavar="N",
        help="open connections at most; more are accepted and closed at once (default 10000)",
    )
    server.add_argument(
        "--idle-timeout",
        type=_checked(parse_seconds),
        default=_SERVER.idle_timeout,
        metavar="SECONDS",
        help="close a connection with nothing sent or received for this long; 0 never "
        "(default 300)",
    )
    server.add_argument(
        "--backlog",
        type=_checked(parse_count),
        default=_SERVER.backlog,
        metavar="N",
        help="queue of connections waiting to be accepted (default 1024)",
    )
    server.add_argument(
        "--stats-interval",
        type=_checked(parse_seconds),
        default=_SERVER.stats_interval,
        metavar="SECONDS",
        help="log the statistics every SECONDS; they are logged at shutdown and on SIGUSR1 too",
    )
    server.add_argument(
        "--workers",
        type=_checked(lambda text: parse_count(text, minimum=0)),
        default=1,
        metavar="N",
        help="worker processes sharing the port, supervised and restarted; 0: one per CPU "
        "(default 1: no supervisor)",
    )
    server.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    server.add_argument("--worker-fds", default=None, help=argparse.SUPPRESS)
    server.add_argument("--worker-reuse-port", action="store_true", help=argparse.SUPPRESS)
    server.add_argument("--worker-parent", type=int, default=None, help=argparse.SUPPRESS)
    server.add_argument("--worker-ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    server.add_argument(
        "--max-buffer",
        type=_checked(parse_size),
        default=DEFAULT_MAX_BUFFER,
        metavar="BYTES",
        help="pending echo per connection before reading from it pauses (default 256KiB)",
    )

    client = commands.add_parser(
        "client",
        help="send messages (or stdin) to an echo server and check the echo",
        description="Send messages, half-close, and check that the same bytes come back.",
        epilog=CLIENT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    client.add_argument(
        "messages",
        nargs="*",
        metavar="MSG",
        help="messages to send in turn (default: the seed's three parts); - streams stdin",
    )
    _target_options(client)
    client.add_argument("--udp", action="store_true", help="send each message as one datagram")
    client.add_argument(
        "--retries",
        type=int,
        default=_CLIENT.retries,
        metavar="N",
        help="UDP: resend a datagram with no echo up to N times (default %(default)s)",
    )
    _bench_parser(commands)
    return parser


BENCH_EXAMPLES = """\
examples:
  aioecho bench --spawn                   # start a server on a free port and measure it
  aioecho bench --port 10000 --connections 100 --size 1KiB --duration 10
  aioecho bench --rate 20000 --duration 30     # open loop: latency from scheduled send times
  aioecho bench --unix /tmp/echo.sock --pipeline 8 --json
exit status: 0 every echo was right, 1 mismatches, resets or timeouts (or no request done).
"""


def _target_options(
    parser: argparse.ArgumentParser,
    timeout_help: str = "bound on connecting and on any silence while echo is owed",
) -> None:
    """Where a client or the bench connects, and how: shared by both, mapped by _target()."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="server (default %(default)s)")
    _common(parser)
    parser.add_argument("--unix", metavar="PATH", help="connect to a Unix socket")
    parser.add_argument("--tls", action="store_true", help="speak TLS, verifying the server")
    parser.add_argument("--cafile", metavar="CA", help="PEM CA certificates to verify with")
    parser.add_argument(
        "--insecure", action="store_true", help="TLS without verifying the server at all"
    )
    parser.add_argument(
        "--timeout",
        type=_checked(parse_seconds),
        default=_CLIENT.timeout,
        metavar="SECONDS",
        help=f"{timeout_help} (default %(default)s)",
    )


def _target(args: argparse.Namespace, **more: Any) -> ClientConfig:
    return ClientConfig(
        host=args.host,
        port=args.port,
        unix=args.unix,
        tls=args.tls,
        cafile=args.cafile,
        insecure=args.insecure,
        timeout=args.timeout,
        **more,
    )


def _bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure an echo server: requests/s, MiB/s and latency percentiles",
        description="Load an echo server with checked requests and report latency.",
        epilog=BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _target_options(bench, timeout_help="a request not back within this counts as timed out")
    count = _checked(parse_count)
    bench.add_argument("--connections", "-c", type=count, default=_BENCH.connections, metavar="N")
    bench.add_argument(
        "--pipeline",
        type=count,
        default=_BENCH.pipeline,
        metavar="K",
        help="closed loop: requests in flight",
    )
    bench.add_argument(
        "--rate",
        type=_checked(parse_rate),
        default=_BENCH.rate,
        metavar="R",
        help="open loop: R requests/s in total, latency from each scheduled send time",
    )
    bench.add_argument(
        "--size",
        type=_checked(parse_size),
        default=_BENCH.size,
        metavar="BYTES",
        help="e.g. 64, 1KiB",
    )
    bench.add_argument(
        "--duration", type=_checked(parse_seconds), default=_BENCH.duration, metavar="SECONDS"
    )
    bench.add_argument(
        "--requests", type=count, default=0, metavar="N", help="stop after N requests instead"
    )
    bench.add_argument(
        "--warmup", type=_checked(parse_seconds), default=_BENCH.warmup, metavar="SECONDS"
    )
    bench.add_argument(
        "--workers",
        type=count,
        default=_BENCH.workers,
        metavar="N",
        help="processes sharing the load",
    )
    bench.add_argument("--json", action="store_true", help="print the result as JSON")
    bench.add_argument(
        "--spawn", action="store_true", help="start `aioecho server` on a free port and measure it"
    )
    bench.add_argument("--worker-share", type=int, default=None, help=argparse.SUPPRESS)


def bench_config(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        target=_target(args),
        connections=args.connections,
        pipeline=args.pipeline,
        rate=args.rate,
        size=args.size,
        duration=args.duration,
        requests=args.requests,
        warmup=args.warmup,
        workers=args.workers,
    )


async def run_bench_command(
    config: BenchConfig, args: argparse.Namespace, argv: Sequence[str]
) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_LoopErrorLog())
    if args.worker_share is not None:  # one of several processes: report to the parent
        result = await run_bench(config.share(args.worker_share))
        print(result.to_wire(), flush=True)
        return ExitStatus.OK
    server: asyncio.subprocess.Process | None = None
    extra: list[str] = []
    try:
        if args.spawn:
            server, port = await _spawn_server(args.loop)
            config = dataclasses.replace(
                config, target=dataclasses.replace(config.target, host="127.0.0.1", port=port)
            )
            extra = ["--host", "127.0.0.1", "--port", str(port)]
        _main_log.info("%s, loop %s", describe(config), loops.describe(loop))
        if config.workers == 1:
            result = await run_bench(config, sys.stderr if is_terminal(sys.stderr) else None)
        else:
            result = await _bench_workers(config, [a for a in argv if a != "--spawn"] + extra)
    finally:
        if server is not None:
            server.terminate()
            await server.wait()
    print(result.to_json() if args.json else result.table())
    if result.errors or not result.requests:
        what = "no request completed" if not result.requests else f"{result.errors} errors"
        raise BenchError(
            f"{what} (mismatches {result.mismatches}, resets {result.resets}, "
            f"timeouts {result.timeouts})"
        )
    return ExitStatus.OK


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


async def _bench_workers(config: BenchConfig, argv: list[str]) -> BenchResult:
    """Run the load in config.workers processes and merge their histograms exactly."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aioecho",
            *argv,
            "--worker-share",
            str(i),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(config.workers)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    results = []
    for proc, (out, _) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise BenchError(f"a bench worker failed with exit status {proc.returncode}")
        results.append(BenchResult.from_wire(config, out.decode().strip().splitlines()[-1]))
    return merge(results, config)


def server_config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        hosts=tuple(args.hosts or (DEFAULT_HOST,)),
        port=args.port,
        unix=args.unix,
        unix_mode=args.unix_mode,
        tcp=args.tcp or not args.udp,
        udp=args.udp,
        udp_rate=args.udp_rate,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        drain_timeout=args.drain_timeout,
        max_buffer=args.max_buffer,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        backlog=args.backlog,
        stats_interval=args.stats_interval,
    )


def client_config(args: argparse.Namespace) -> ClientConfig:
    return _target(args, udp=args.udp, retries=args.retries)


class _LoopErrorLog:
    """The loop's exception handler: one line instead of asyncio's traceback (a fault on one
    connection is not a crash), and the same message at most once a second, since some faults
    repeat per connection (asyncio reports EMFILE on every accept)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}  # message -> (when logged, repeats since)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "unexpected event loop error")
        text = f"{message}: {describe_os_error(exc) if exc else 'no details'}"
        now = loop.time()
        last, repeats = self._last.get(text, (-1e9, 0))
        if now - last < 1.0:
            self._last[text] = (last, repeats + 1)
            return
        self._last[text] = (now, 0)
        more = f" (and {repeats} more like it)" if repeats else ""
        _main_log.error("%s%s", text, more)


async def run_server(config: ServerConfig, args: argparse.Namespace | None = None) -> None:
    """The server until SIGINT/SIGTERM. args: a worker's hidden arguments, when it is one."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_LoopErrorLog())
    _main_log.info("using %s", loops.describe(loop))
    stop = asyncio.Event()
    # Before serve(): a script may signal as soon as it reads the listening line.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if args is not None and args.worker_id is not None:
        server = await serve(config, sockets=await _worker_sockets(config, args))
        if args.worker_ready_fd is not None:  # tell the supervisor: serving
            os.write(args.worker_ready_fd, b".")
            os.close(args.worker_ready_fd)
        watcher = asyncio.ensure_future(_stop_when_orphaned(stop, args.worker_parent))
    else:
        server = await serve(config)
        watcher = None

    def log_stats(level: int = NOTICE) -> None:
        _stats_log.log(level, "%s", server.stats().line())

    # asked for (SIGUSR1, --stats-interval): shown with -q too
    loop.add_signal_handler(signal.SIGUSR1, log_stats)
    ticker = asyncio.ensure_future(_every(config.stats_interval, log_stats))
    await stop.wait()
    ticker.cancel()
    if watcher is not None:
        watcher.cancel()
    for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal ends the drain at once
        loop.add_signal_handler(signum, server.abort)
    await server.close()
    log_stats(logging.INFO)


async def _worker_sockets(config: ServerConfig, args: argparse.Namespace) -> list[socket.socket]:
    """A worker's sockets: those its supervisor opened, and with SO_REUSEPORT its own TCP ones."""
    fds = (
        [] if args.worker_fds in (None, "none") else [int(fd) for fd in args.worker_fds.split(",")]
    )
    sockets = [socket.socket(fileno=fd) for fd in fds]
    if args.worker_reuse_port and config.tcp:
        own, _ = await open_sockets(
            dataclasses.replace(config, udp=False), reuse_port=True, listen=True
        )
        sockets += own
    return sockets


async def _stop_when_orphaned(stop: asyncio.Event, parent: int | None) -> None:
    """A worker whose supervisor has gone (killed outright, maybe before this worker was even
    serving) stops by itself."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    stop.set()


async def _every(interval: float, action: Callable[[], None]) -> None:
    if interval <= 0:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        deadline += interval
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        action()


async def run_client(config: ClientConfig, messages: Sequence[bytes]) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_LoopErrorLog())
    _main_log.info("waiting for client to complete")
    if config.udp:
        await echo_datagrams(list(messages), config)
    elif list(messages) == [b"-"]:
        count = await stream_stdio(config)
        _main_log.info("echoed %d bytes intact", count)
    else:
        sent = b"".join(messages)
        got = await _echo_messages(list(messages), config, logging.INFO)
        if got != sent:
            raise EchoError(_mismatch(sent, got))
    _main_log.info("closing event loop")


def _mismatch(sent: bytes, got: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(sent, got, strict=False)) if a != b), None)
    if at is not None:
        return f"the echo differs from what was sent at byte {at}"
    return f"the echo has {len(got)} bytes, {len(sent)} were sent"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "client" and args.udp and args.messages == ["-"]:
        parser.error("--udp sends messages as datagrams: it does not stream stdin (-)")
    tag = f"worker{args.worker_id}" if getattr(args, "worker_id", None) is not None else None
    configure(1 if args.verbose else -1 if args.quiet else 0, tag=tag)
    try:
        if args.command == "server":
            workers = worker_count(args.workers)
            raw = list(argv) if argv is not None else sys.argv[1:]
            if workers > 1 and args.worker_id is None:
                loops.run(supervise(server_config(args), workers, raw), args.loop)
            else:
                loops.run(run_server(server_config(args), args), args.loop)
        elif args.command == "bench":
            raw = list(argv) if argv is not None else sys.argv[1:]
            return loops.run(run_bench_command(bench_config(args), args, raw), args.loop)
        else:
            messages = [os.fsencode(m) for m in args.messages] or list(SEED_MESSAGES)
            loops.run(run_client(client_config(args), messages), args.loop)
    except AioechoError as err:
        print(f"aioecho: error: {err}", file=sys.stderr)
        return ExitStatus.FAILURE
    except ValueError as err:  # a value argparse let through but the config refused
        print(f"aioecho: error: {err}", file=sys.stderr)
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        print("aioecho: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    return ExitStatus.OK

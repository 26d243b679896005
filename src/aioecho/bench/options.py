"""`aioecho bench`'s options (and `bench merge`'s), mapped onto BenchConfig."""

from __future__ import annotations

import argparse
from typing import Any, cast

from ..client.options import target, target_options
from ..errors import ConfigError
from ..options import Parser, checked, given, report_options
from ..units import parse_count, parse_rate, parse_seconds, parse_size, parse_start_time
from .config import BenchConfig

__all__ = ["add_parser", "bench_config", "merge_parser"]

_BENCH = BenchConfig()  # the defaults

BENCH_EXAMPLES = """\
examples:
  aioecho bench --spawn                   # start a server on a free port and measure it
  aioecho bench --port 10000 --connections 100 --size 1KiB --duration 10
  aioecho bench --rate 20000 --duration 30     # open loop: latency from scheduled send times
  aioecho bench --spawn --new-connection       # connections/s, connect time percentiles
  aioecho bench --new-connection --rate 5000   # a connect rate, failed connects by reason
  aioecho bench --tls --cafile ca.pem --new-connection --tls-resume   # resumed handshakes
  aioecho bench --unix /tmp/echo.sock --pipeline 8 --json
  aioecho bench --host target --json --start-at 14:30 > a.json   # on each load machine...
  aioecho bench merge a.json b.json          # ...then one report, as if one run made it
exit status: 0 every echo was right; 1 a wrong echo, a reset or closed connection, a timeout,
a request not sent (or none done); 2 usage.
"""


def add_parser(commands: Any) -> Parser:
    """`aioecho bench`'s parser, added to the subcommands."""
    bench = commands.add_parser(
        "bench",
        help="measure an echo server: requests/s, MiB/s and latency percentiles; "
        "`bench merge` joins the results of several runs",
        description="Load an echo server with checked requests and report latency.",
        epilog=BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target_options(
        bench,
        timeout_help="a connect, or a request not back, within this counts as timed out",
        verbose="a progress line every second on standard error, also when it is not a "
        "terminal (a terminal gets one line, redrawn, by default)",
        quiet="the result only, no start-up line",
    )
    count = checked(parse_count)
    bench.add_argument(
        "--connections",
        type=count,
        default=_BENCH.connections,
        metavar="N",
        help="connections, opened before the run (default %(default)s)",
    )
    bench.add_argument(
        "--pipeline",
        type=count,
        default=_BENCH.pipeline,
        metavar="K",
        help="closed loop: requests in flight per connection (default %(default)s)",
    )
    bench.add_argument(
        "--rate",
        type=checked(parse_rate),
        default=_BENCH.rate,
        metavar="R",
        help="open loop: R requests/s in total, latency from each scheduled send time "
        "(default: closed loop)",
    )
    bench.add_argument(
        "-s",
        "--size",
        type=checked(parse_size),
        default=_BENCH.size,
        metavar="BYTES",
        help="bytes per request, e.g. 64, 1KiB (default %(default)s)",
    )
    bench.add_argument(
        "--duration",
        type=checked(parse_seconds),
        default=_BENCH.duration,
        metavar="SECONDS",
        help="length of the measured run, after the warm-up (default %(default)s)",
    )
    bench.add_argument(
        "--requests", type=count, default=0, metavar="N", help="stop after N requests instead"
    )
    bench.add_argument(
        "--warmup",
        type=checked(parse_seconds),
        default=_BENCH.warmup,
        metavar="SECONDS",
        help="load sent first and not measured (default %(default)s)",
    )
    bench.add_argument(
        "--workers",
        type=count,
        default=_BENCH.workers,
        metavar="N",
        help="processes sharing the load (default %(default)s)",
    )
    report_options(bench, [("json", "the result as JSON (for `aioecho bench merge`)")])
    bench.add_argument(
        "--new-connection",
        action="store_true",
        help="every request on a connection of its own: connections/s, and connect (and TLS "
        "handshake) times of their own; with --rate, a connect rate",
    )
    bench.add_argument(
        "--tls-resume",
        action="store_true",
        help="with --tls --new-connection: offer each new connection the TLS session of one "
        "before it (TLS 1.3 tickets, TLS 1.2 session IDs) and count the handshakes the server "
        "resumed",
    )
    bench.add_argument(
        "--start-at",
        type=checked(parse_start_time),
        metavar="TIME",
        help="wait until this wall-clock time to start (HH:MM[:SS] today, ISO 8601, @EPOCH): "
        "the same start on several load machines, for `aioecho bench merge` after",
    )
    bench.add_argument(
        "verb",
        nargs="?",
        choices=["merge"],
        metavar="merge",
        help="`aioecho bench merge FILE...` merges the --json results of several runs into one "
        "report (see aioecho bench merge --help)",
    )
    bench.add_argument(
        "--spawn", action="store_true", help="start `aioecho server` on a free port and measure it"
    )
    return cast(Parser, bench)


MERGE_EXAMPLES = """\
examples:
  aioecho bench merge a.json b.json               # the table, as one run would print it
  aioecho bench merge --json host*.json > all.json
Each file is the output of `aioecho bench --json`: its whole latency histogram and counters are
added up exactly, as a --workers run adds its workers'. The results must have measured the same
shape of load (size, pipeline, target, open or closed loop).
"""


def merge_parser() -> Parser:
    merge = Parser(
        prog="aioecho bench merge",
        description="Merge the results of several `aioecho bench --json` runs (taken on several "
        "load machines) into one report.",
        epilog=MERGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    merge.add_argument("files", nargs="+", metavar="FILE", help="aioecho bench --json outputs")
    merge.add_argument("--json", action="store_true", help="print the merged report as JSON")
    return merge


def bench_config(args: argparse.Namespace) -> BenchConfig:
    if args.verb is not None:
        raise ConfigError("merge comes right after bench, before any option: "
                          "aioecho bench merge FILE...")  # fmt: skip
    if args.spawn and (args.unix is not None or given(args, "host", "port")):
        raise ConfigError(
            "--spawn picks its own address: it does not go with --host, --port or --unix"
        )
    if args.spawn and args.tls:
        raise ConfigError("--spawn starts a plain TCP server: it does not go with --tls")
    return BenchConfig(
        target=target(args),
        connections=args.connections,
        pipeline=args.pipeline,
        rate=args.rate,
        size=args.size,
        duration=args.duration,
        requests=args.requests,
        warmup=args.warmup,
        workers=args.workers,
        start_at=args.start_at,
        new_connection=args.new_connection,
        tls_resume=args.tls_resume,
    )

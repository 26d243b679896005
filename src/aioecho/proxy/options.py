"""`aioecho proxy`'s options: its own (--to, --faults-upstream, --connect-timeout), and the
server's listen and fault options, mapped onto ProxyConfig."""

from __future__ import annotations

import argparse
from typing import Any, cast

from ..options import Parser, checked
from ..server.options import fault_options, listen_options, server_config
from ..units import parse_seconds, parse_target
from .config import ProxyConfig

__all__ = ["add_parser", "proxy_config"]

_PROXY = ProxyConfig(upstream_port=1)  # the defaults

PROXY_EXAMPLES = """\
examples:
  aioecho proxy --to 127.0.0.1:6379 --port 7000                  # a plain relay to redis
  aioecho proxy --to 127.0.0.1:6379 --port 7000 --reset-after 100
  aioecho proxy --to db.example:5432 --port 6432 --delay 50ms --jitter 10ms
  aioecho proxy --to 127.0.0.1:8080 --bandwidth 64KiB --faults-upstream
"""


def add_parser(commands: Any) -> Parser:
    """`aioecho proxy`'s parser, added to the subcommands."""
    proxy = commands.add_parser(
        "proxy",
        help="forward connections to a TCP service, with faults on demand",
        description="Listen as the server does and forward each connection to --to, both "
        "ways, with the fault options applied to what comes back.",
        epilog=PROXY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    proxy.add_argument(
        "--to", required=True, type=checked(parse_target), metavar="HOST:PORT", help="upstream"
    )
    proxy.add_argument(
        "--faults-upstream",
        action="store_true",
        help="apply the faults to what the client sends as well",
    )
    proxy.add_argument(
        "--connect-timeout",
        type=checked(parse_seconds),
        default=_PROXY.connect_timeout,
        metavar="SECONDS",
        help="time to reach the upstream (default %(default)s)",
    )
    listen_options(proxy, echo=False)
    fault_options(proxy, datagram=False)
    proxy = cast(Parser, proxy)
    for flag in ("--udp", "--tcp", "--udp-rate", "--drop", "--duplicate", "--corrupt"):
        proxy.not_here[flag] = "the proxy relays TCP (and TLS, Unix) streams, not UDP"
    proxy.not_here["--trace"] = "--trace traces the echo server's protocol, not the proxy's"
    proxy.not_here["--banner"] = "--banner is the echo server's greeting; the upstream speaks"
    return proxy


def proxy_config(args: argparse.Namespace) -> ProxyConfig:
    host, port = args.to
    return ProxyConfig(
        listen=server_config(args),
        upstream_host=host,
        upstream_port=port,
        faults_upstream=args.faults_upstream,
        connect_timeout=args.connect_timeout,
    )

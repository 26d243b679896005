"""`aioecho proxy`'s options: its own (--to, --faults-upstream, --connect-timeout), and the
server's listen and fault options, mapped onto ProxyConfig."""

from __future__ import annotations

import argparse
from typing import Any, cast

from ..errors import ConfigError
from ..options import Parser, checked, given
from ..server.options import fault_options, listen_options, server_config
from ..units import parse_port, parse_seconds, parse_target
from .config import ProxyConfig

__all__ = ["add_parser", "proxy_config"]

_PROXY = ProxyConfig(upstream_port=1)  # the defaults

PROXY_EXAMPLES = """\
examples:
  aioecho proxy --to 127.0.0.1:6379 --port 7000                  # a plain relay to redis
  aioecho proxy --to 127.0.0.1:6379 --port 7000 --reset-after 100
  aioecho proxy --to db.example:5432 --port 6432 --delay 50ms --jitter 10ms
  aioecho proxy --to 127.0.0.1:8080 --bandwidth 64KiB --faults-upstream
  aioecho proxy --api                                            # Toxiproxy's API on :8474
  aioecho proxy --api 127.0.0.1:0 --config proxies.json --journal events.ndjson --seed 7
"""

API = ("127.0.0.1", 8474)  # Toxiproxy's default


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
        "--to", type=checked(parse_target), metavar="HOST:PORT", help="upstream (or --api)"
    )
    proxy.add_argument(
        "--api",
        nargs="?",
        const=API,
        type=checked(parse_api),
        metavar="[HOST:]PORT",
        help="no fixed upstream: serve Toxiproxy's HTTP API there (default 127.0.0.1:8474), "
        "through which any Toxiproxy client makes proxies and toxics (docs/toxiproxy.md)",
    )
    proxy.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="--api: make these proxies at start, their toxics in place before the first "
        "connection (Toxiproxy's JSON list; each may have a toxics list)",
    )
    proxy.add_argument(
        "--journal",
        metavar="FILE",
        help="--api: append every event (connections, toxics applied, closes) to FILE, NDJSON; "
        "GET /events serves them too",
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


def parse_api(text: str) -> tuple[str, int]:
    """'PORT' (on 127.0.0.1) or 'HOST:PORT'."""
    if text.isdigit():
        return API[0], parse_port(text)
    return parse_target(text)


def proxy_config(args: argparse.Namespace) -> ProxyConfig:
    host, port = args.to if args.to is not None else ("127.0.0.1", 0)
    if args.api is not None and args.to is not None:
        raise ConfigError("--api makes its proxies through the API: no --to with it")
    listen = server_config(args)
    if args.api is not None and (
        listen.faults.stream or listen.unix is not None or given(args, "port")
    ):
        raise ConfigError(
            "with --api, each proxy's address and faults come through the API (or --config): "
            "its listen field and its toxics, not --port, --unix or fault options"
        )
    return ProxyConfig(
        listen=listen,
        upstream_host=host,
        upstream_port=port,
        faults_upstream=args.faults_upstream,
        connect_timeout=args.connect_timeout,
        api=args.api,
        config_file=args.config_file,
        journal=args.journal,
    )

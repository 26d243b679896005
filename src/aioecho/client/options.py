"""`aioecho client`'s options, and the target options (where and how to connect) that bench,
ping and check share with it, mapped onto ClientConfig."""

from __future__ import annotations

import argparse
from typing import Any, cast

from ..addresses import DEFAULT_HOST
from ..errors import ConfigError
from ..options import Given, Parser, checked, common_options, given, trace_option
from ..units import parse_alpn, parse_count, parse_seconds
from .config import ClientConfig

__all__ = ["add_parser", "client_config", "target", "target_options"]

_CLIENT = ClientConfig()  # the defaults

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


def target_options(
    parser: argparse.ArgumentParser,
    timeout_help: str = "bound on connecting and on any silence while echo is owed",
    timeout_default: float = _CLIENT.timeout,
    *,
    verbose: str | None = "also what was received, chunk by chunk",
    quiet: str = "only warnings and errors (the exit status tells the rest)",
) -> None:
    """Where a client or the bench connects, and how: shared by both, mapped by target()."""
    parser.add_argument(
        "--host", action=Given, default=DEFAULT_HOST, help="server (default %(default)s)"
    )
    common_options(parser, verbose=verbose, quiet=quiet)
    parser.add_argument("--unix", metavar="PATH", help="connect to a Unix socket")
    parser.add_argument("--tls", action="store_true", help="speak TLS, verifying the server")
    parser.add_argument("--cafile", metavar="CA", help="PEM CA certificates to verify with")
    parser.add_argument(
        "--insecure", action="store_true", help="TLS without verifying the server at all"
    )
    parser.add_argument(
        "--alpn",
        type=checked(parse_alpn),
        default=(),
        metavar="PROTOCOLS",
        help="TLS: ALPN protocols to ask for, by preference: h2,http/1.1",
    )
    parser.add_argument(
        "--sni", metavar="NAME", help="TLS: the server name to send and verify (default: --host)"
    )
    parser.add_argument("--cert", metavar="CERT", help="TLS: a client certificate (PEM)")
    parser.add_argument("--key", metavar="KEY", help="TLS: --cert's key, if not in its file")
    parser.add_argument(
        "--banner-lines",
        type=checked(lambda text: parse_count(text, minimum=0)),
        default=0,
        metavar="N",
        help="the server greets each connection with N lines (server --banner): read and "
        "dropped before the echo (default 0)",
    )
    parser.add_argument(
        "--timeout",
        type=checked(parse_seconds),
        default=timeout_default,
        metavar="SECONDS",
        help=f"{timeout_help} (default %(default)s)",
    )


def target(args: argparse.Namespace, **more: Any) -> ClientConfig:
    if args.unix is not None and given(args, "port"):
        raise ConfigError("--unix connects to a socket file: it does not go with --port")
    if args.unix is not None and given(args, "host") and not args.tls:
        raise ConfigError(
            "--unix connects to a socket file: --host goes with it only with --tls "
            "(the name to verify)"
        )
    return ClientConfig(
        host=args.host,
        port=args.port,
        unix=args.unix,
        tls=args.tls,
        cafile=args.cafile,
        insecure=args.insecure,
        alpn=args.alpn,
        sni=args.sni,
        cert=args.cert,
        key=args.key,
        banner_lines=args.banner_lines,
        timeout=args.timeout,
        **more,
    )


def add_parser(commands: Any) -> Parser:
    """`aioecho client`'s parser, added to the subcommands."""
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
    target_options(client)
    trace_option(client)
    client.add_argument("--udp", action="store_true", help="send each message as one datagram")
    client.add_argument(
        "--retries",
        type=int,
        default=_CLIENT.retries,
        metavar="N",
        help="UDP: resend a datagram with no echo up to N times (default %(default)s)",
    )
    return cast(Parser, client)


def client_config(args: argparse.Namespace) -> ClientConfig:
    return target(args, udp=args.udp, retries=args.retries)

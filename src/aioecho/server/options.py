"""`aioecho server`'s options: the argparse part, and their mapping onto ServerConfig. The
listen and fault options are the proxy's too (proxy/options.py adds them to its parser)."""

from __future__ import annotations

import argparse
from typing import Any, cast

from ..addresses import DEFAULT_HOST
from ..errors import ConfigError
from ..logs import LOG_FORMATS
from ..options import Parser, checked, common_options, given, trace_option
from ..units import (
    format_size,
    parse_alpn,
    parse_byte_rate,
    parse_count,
    parse_mode,
    parse_probability,
    parse_rate,
    parse_seconds,
    parse_size,
    parse_target,
)
from .config import DEFAULT_MAX_BUFFER, FaultConfig, ServerConfig

__all__ = ["add_parser", "fault_config", "fault_options", "listen_options", "server_config"]

_SERVER = ServerConfig()  # the defaults: config.py is their one home

SERVER_ENVIRONMENT = """\
Every option can also be set in the environment as AIOECHO_<OPTION>: AIOECHO_PORT=9000,
AIOECHO_MAX_BUFFER=1MiB, a repeatable one comma-separated (AIOECHO_HOST=127.0.0.1,::1), a flag
as 1 or 0 (AIOECHO_UDP=1). An option given on the command line wins.
"""


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


_FAULTS = FaultConfig()


def fault_options(parser: argparse.ArgumentParser, *, datagram: bool = True) -> None:
    """Misbehaviour on demand, for testing clients: none by default."""
    faults = parser.add_argument_group(
        "faults (for testing clients; none by default; listed in the start-up line)"
    )
    seconds, size = checked(parse_seconds), checked(parse_size)
    share = checked(parse_probability)
    for flag, parse, metavar, text in (
        ("--delay", seconds, "DURATION", "hold each chunk's echo back this long (order kept)"),
        ("--jitter", seconds, "DURATION", "add a uniform random delay in [0, DURATION]"),
        (
            "--bandwidth",
            checked(parse_byte_rate),
            "RATE",
            "bytes per second per connection, e.g. 64KiB, 1MiB/s",
        ),
        ("--slice", size, "SIZE", "echo in writes of at most SIZE bytes"),
        ("--slice-delay", seconds, "DURATION", "pause between two slices"),
        ("--reset-after", size, "BYTES", "reset the connection (RST) once BYTES were echoed"),
        ("--close-after", size, "BYTES", "close the connection (FIN) once BYTES were echoed"),
        ("--stall-after", size, "BYTES", "stop reading and echoing there; hold it open"),
        ("--slow-close", seconds, "DURATION", "wait this long before answering the peer's EOF"),
        ("--fault-share", share, "P", "share of connections the faults apply to (default 1)"),
        ("--drop", share, "P", "UDP: drop a datagram with probability P"),
        ("--duplicate", share, "P", "UDP: echo a datagram twice with probability P"),
        ("--corrupt", share, "P", "UDP: flip one byte of a datagram with probability P"),
    ):
        dest = flag.removeprefix("--").replace("-", "_")
        default = getattr(_FAULTS, "share" if dest == "fault_share" else dest)
        if text.startswith("UDP") and not datagram:
            parser.set_defaults(**{dest: default})  # not offered: the proxy relays streams
            continue
        faults.add_argument(flag, type=parse, default=default, metavar=metavar, help=text)
    faults.add_argument(
        "--seed", type=int, default=None, metavar="N", help="make every random choice repeatable"
    )


def fault_config(args: argparse.Namespace) -> FaultConfig:
    return FaultConfig(
        delay=args.delay,
        jitter=args.jitter,
        bandwidth=args.bandwidth,
        slice=args.slice,
        slice_delay=args.slice_delay,
        reset_after=args.reset_after,
        close_after=args.close_after,
        stall_after=args.stall_after,
        slow_close=args.slow_close,
        share=args.fault_share,
        drop=args.drop,
        duplicate=args.duplicate,
        corrupt=args.corrupt,
        seed=args.seed,
    )


def listen_options(parser: argparse.ArgumentParser, *, echo: bool = True) -> None:
    """Where and how a server (or the proxy) listens, and what it allows its peers."""
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="HOST",
        help=f"address or name to listen on, repeatable; a name binds all its addresses "
        f"(default {DEFAULT_HOST})",
    )
    common_options(
        parser,
        verbose="log every chunk and EOF, as the seed does",
        quiet="only warnings, errors and the listening lines",
    )
    if echo:
        trace_option(parser)
    parser.add_argument(
        "--drain-timeout",
        type=checked(parse_seconds),
        default=_SERVER.drain_timeout,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, time open connections get to finish (default %(default)s)",
    )
    parser.add_argument(
        "--drain-delay",
        type=checked(parse_seconds),
        default=_SERVER.drain_delay,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, /readyz says 503 at once but new connections are served for "
        "this long before the drain, so that a balancer takes the server out first; a second "
        "signal skips it (default %(default)g)",
    )
    parser.add_argument(
        "--unix", metavar="PATH", help="listen on a Unix socket instead of host and port"
    )
    parser.add_argument(
        "--unix-mode",
        type=checked(parse_mode),
        default=format(_SERVER.unix_mode, "03o"),  # a string: argparse parses it
        metavar="MODE",
        help="permissions of the Unix socket, in chmod's octal form "
        "(default %(default)s: owner only)",
    )
    if not echo:  # the proxy relays streams, and has no trace of its own
        parser.set_defaults(tcp=True, udp=False, udp_rate=_SERVER.udp_rate, trace=False)
    else:
        parser.add_argument(
            "--tcp", action="store_true", help="serve TCP (the default without --udp)"
        )
        parser.add_argument(
            "--udp", action="store_true", help="serve UDP (RFC 862); with --tcp, both"
        )
        parser.add_argument(
            "--udp-rate",
            type=checked(parse_rate),
            default=_SERVER.udp_rate,
            metavar="N",
            help="UDP datagrams echoed per second per source address, burst N "
            "(default %(default)g)",
        )
    parser.add_argument("--tls-cert", metavar="CERT", help="PEM certificate chain: serve TLS")
    parser.add_argument("--tls-key", metavar="KEY", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        metavar="CA",
        help="mutual TLS: require a client certificate signed by one of these (PEM)",
    )
    parser.add_argument(
        "--alpn",
        type=checked(parse_alpn),
        default=(),
        metavar="PROTOCOLS",
        help="ALPN protocols to offer, by preference: h2,http/1.1 (default: none)",
    )
    parser.add_argument(
        "--tls-handshake-timeout",
        type=checked(parse_seconds),
        default=_SERVER.tls_handshake_timeout,
        metavar="SECONDS",
        help="time a peer gets to finish the TLS handshake; it counts as a connection meanwhile "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=checked(parse_count),
        default=_SERVER.max_connections,
        metavar="N",
        help="open connections at most; more are accepted and closed at once (default %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=checked(parse_seconds),
        default=_SERVER.idle_timeout,
        metavar="SECONDS",
        help="close a connection with nothing sent or received for this long; 0 never "
        "(default %(default)g)",
    )
    parser.add_argument(
        "--backlog",
        type=checked(parse_count),
        default=_SERVER.backlog,
        metavar="N",
        help="queue of connections waiting to be accepted (default %(default)s)",
    )
    parser.add_argument(
        "--stats-interval",
        type=checked(parse_seconds),
        default=_SERVER.stats_interval,
        metavar="SECONDS",
        help="log the statistics every SECONDS; they are logged at shutdown and on SIGUSR1 too",
    )
    parser.add_argument(
        "--workers",
        type=checked(lambda text: parse_count(text, minimum=0)),
        default=1,
        metavar="N",
        help="worker processes sharing the port, supervised and restarted; 0: one per CPU "
        "(default %(default)s: no supervisor)",
    )
    parser.add_argument(
        "--max-buffer",
        type=checked(parse_size),
        default=format_size(DEFAULT_MAX_BUFFER),  # a string: argparse parses it
        metavar="BYTES",
        help="pending echo per connection before reading from it pauses (default %(default)s)",
    )
    parser.add_argument(
        "--fd",
        action="append",
        dest="fds",
        type=checked(lambda text: parse_count(text, minimum=3)),
        metavar="N",
        help="serve the listening socket at descriptor N, inherited (repeatable); systemd's "
        "socket activation (LISTEN_FDS) is taken without it",
    )
    parser.add_argument(
        "--metrics",
        type=checked(parse_target),
        metavar="HOST:PORT",
        help="serve Prometheus /metrics, /healthz and /readyz over HTTP there; with --workers, "
        "each worker its own, on PORT, PORT+1, ... (needs pip install 'aioecho[metrics]')",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (NAME: message, as the seed prints) or json (an object per line: timestamp, "
        "level, logger, message, pid, host, peer, peer_ip, peer_port; the statistics as "
        "numbers) (default %(default)s)",
    )
    parser.add_argument(
        "--log-timestamps",
        action="store_true",
        help="text logs: each line starts with its time (RFC 3339, UTC, microseconds)",
    )
    parser.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="every connection starts with a PROXY protocol header (v1 or v2, from HAProxy "
        "and others): the client's address in it is the one logged",
    )


def add_parser(commands: Any) -> Parser:
    """`aioecho server`'s parser, added to the subcommands."""
    server = commands.add_parser(
        "server",
        help="run an echo server",
        description="Echo every byte back to its sender, in order.\n\n" + SERVER_ENVIRONMENT,
        epilog=SERVER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen_options(server)
    server.add_argument(
        "--banner",
        metavar="TEXT",
        help="a line sent on connect, before any echo: {hostname}, {pid}, {worker} and {port} "
        "are filled in (default: none, a pure echo)",
    )
    server.add_argument(
        "--reflect",
        action="store_true",
        help="a connection or datagram that starts with the line AIOECHO-REFLECT 1 (CRLF) "
        "gets a JSON line of what the server saw first (client address, PROXY header, TLS, "
        "instance); everything else is the plain echo (ping --reflect, --spread)",
    )
    fault_options(server)
    return cast(Parser, server)


def server_config(args: argparse.Namespace) -> ServerConfig:
    if args.unix is not None and (args.hosts or given(args, "port")):
        raise ConfigError("--unix listens on a socket file: it does not go with --host or --port")
    # the server's own options (the proxy listens through this mapping too, without them)
    fds = tuple(getattr(args, "fds", None) or ())
    if fds and (args.unix is not None or args.hosts or given(args, "port")):
        raise ConfigError(
            "--fd serves a socket already made: it does not go with --host, --port or --unix"
        )
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
        tls_client_ca=args.tls_client_ca,
        alpn=args.alpn,
        tls_handshake_timeout=args.tls_handshake_timeout,
        drain_timeout=args.drain_timeout,
        drain_delay=args.drain_delay,
        max_buffer=args.max_buffer,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        backlog=args.backlog,
        stats_interval=args.stats_interval,
        trace=args.trace,
        faults=fault_config(args),
        fds=fds,
        banner=getattr(args, "banner", None),
        reflect=getattr(args, "reflect", False),
        proxy_protocol=getattr(args, "proxy_protocol", False),
        metrics=getattr(args, "metrics", None),
    )

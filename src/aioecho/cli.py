"""The `aioecho` command: the parser, the mapping from arguments to configs, and main(), the one
place that prints errors and chooses exit codes (0 ok, 1 failure, 2 usage, 130 interrupted).
The programs themselves are in commands/."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NoReturn, cast

from . import __version__, loops
from .checkreport import TCP_CASES, UDP_CASES, select_cases
from .client import SEED_MESSAGES
from .commands import writing_stdout
from .commands.bench import run_bench_command, run_bench_share
from .commands.check import run_check
from .commands.client import run_client
from .commands.ping import run_ping
from .commands.proxy import run_proxy
from .commands.server import inherited_sockets, run_server
from .config import (
    DEFAULT_HOST,
    DEFAULT_MAX_BUFFER,
    DEFAULT_PORT,
    MIN_PING_INTERVAL,
    BenchConfig,
    CheckConfig,
    ClientConfig,
    FaultConfig,
    PingConfig,
    ProxyConfig,
    ServerConfig,
    format_size,
    parse_count,
    parse_mode,
    parse_percent,
    parse_port,
    parse_probability,
    parse_rate,
    parse_seconds,
    parse_size,
    parse_start_time,
    parse_target,
)
from .errors import AioechoError, ConfigError, ExitStatus, Interrupted, describe_os_error
from .logs import LOG_FORMATS, configure
from .workers import WorkerRole, check_metrics_ports, supervise, worker_count

__all__ = ["build_parser", "main"]

_SERVER = ServerConfig()  # the defaults: config.py is their one home
_CLIENT = ClientConfig()
_BENCH = BenchConfig()
_PING = PingConfig()
_PROXY = ProxyConfig(upstream_port=1)
_CHECK = CheckConfig()


class _Parser(argparse.ArgumentParser):
    """One-line usage errors that point at --help; an unknown option is matched to the nearest
    real one. Abbreviated options are not accepted: a new option would make today's
    abbreviation ambiguous, and break the scripts that use it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # reported by the subcommand's parser, which knows its options
            chosen = self.subcommand(getattr(parsed, "command", None)) or self
            chosen.error(chosen._unrecognized(extras[0]))
        return parsed

    def subcommand(self, name: str | None) -> _Parser | None:
        """The parser of a subcommand, by name."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                return cast(_Parser, action.choices[name])
        return None

    def error(self, message: str) -> NoReturn:
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _unrecognized(self, word: str) -> str:
        if not word.startswith("-") or word == "-":
            return f"unexpected argument {word!r}"
        flag = word.split("=", 1)[0]
        known = [o for action in self._actions for o in action.option_strings]
        near = [o for o in known if o.startswith(flag) and flag.startswith("--")]
        if not near:
            import difflib  # only for this message: kept out of every start-up

            near = difflib.get_close_matches(flag, known, n=3, cutoff=0.6)
        if not near:
            return f"unknown option {flag}"
        return f"unknown option {flag}; did you mean {' or '.join(sorted(near))}?"


ENV_PREFIX: Final = "AIOECHO_"
PROXY_ENV_PREFIX: Final = "AIOECHO_PROXY_"  # the proxy's own, so that AIOECHO_PORT is the server's
_FLAG_WORDS: Final = {"1": True, "true": True, "yes": True, "on": True,
                      "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def environment_defaults(
    parser: argparse.ArgumentParser,
    environ: Mapping[str, str],
    argv: Sequence[str] = (),
    prefix: str = ENV_PREFIX,
) -> dict[str, Any]:
    """The values of parser's options set in the environment as AIOECHO_<OPTION>
    (AIOECHO_MAX_BUFFER for --max-buffer), to be its defaults: a flag given still wins, and so
    does one that excludes it (-q given beats AIOECHO_VERBOSE=1). A repeatable option takes a
    comma-separated list, a flag 1 or 0. argv: the command line, for those exclusions."""
    found: dict[str, Any] = {}
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")}
    excluded: set[str] = set()
    for group in parser._mutually_exclusive_groups:
        if any(set(a.option_strings) & given for a in group._group_actions):
            excluded.update(a.dest for a in group._group_actions)
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or isinstance(action, argparse._HelpAction):
            continue
        name = prefix + longs[0][2:].upper().replace("-", "_")
        if name not in environ or action.dest in excluded:
            continue
        text = environ[name]
        try:
            found[action.dest] = _environment_value(action, text)
        except (argparse.ArgumentTypeError, ValueError) as err:
            raise ConfigError(f"{name}={text!r}: {err}") from None
    return found


def unknown_environment(
    parser: argparse.ArgumentParser, environ: Mapping[str, str], prefix: str = ENV_PREFIX
) -> list[str]:
    """A warning for each variable with the prefix that names no option of parser (a typo is
    otherwise silently ignored), with the nearest one."""
    import difflib

    known = {
        prefix + o[2:].upper().replace("-", "_")
        for action in parser._actions
        for o in action.option_strings
        if o.startswith("--")
    }
    warnings = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name in known:
            continue
        if prefix == ENV_PREFIX and name.startswith(PROXY_ENV_PREFIX):
            continue  # the proxy's
        near = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        warnings.append(f"{name} names no option of aioecho {parser.prog.split()[-1]}{hint}")
    return warnings


def _environment_value(action: argparse.Action, text: str) -> Any:
    if isinstance(action, argparse._StoreTrueAction):
        flag = _FLAG_WORDS.get(text.strip().lower())
        if flag is None:
            raise ValueError("a flag is 1 or 0")
        return flag
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    if isinstance(action, argparse._AppendAction):
        return [convert(part.strip()) for part in text.split(",") if part.strip()]
    value = convert(text)
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}")
    return value


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


def _ping_interval(text: str) -> float:
    """ping -i: one message for every value out of range, 0 and -1 alike."""
    try:
        value = float("nan") if text.strip().startswith("-") else parse_seconds(text)
    except ConfigError:
        value = float("nan")  # not a duration at all: said below with the range
    if not MIN_PING_INTERVAL <= value <= 3600:
        raise ConfigError(
            f"invalid interval {text!r}: must be {MIN_PING_INTERVAL:g} to 3600 seconds"
        )
    return value


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser raising ValueError, keeping its message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


class _Given(argparse._StoreAction):
    """Stores the value and notes that the option was given (in `given`), for the options whose
    conflicts depend on it: --host and --port beside --unix or --spawn."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        super().__call__(parser, namespace, values, option)
        namespace.given = getattr(namespace, "given", set()) | {self.dest}


def _given(args: argparse.Namespace, *dests: str) -> bool:
    return bool(getattr(args, "given", set()) & set(dests))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        action=_Given,
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


_FAULTS = FaultConfig()


def _fault_options(parser: argparse.ArgumentParser) -> None:
    """Misbehaviour on demand, for testing clients: none by default."""
    faults = parser.add_argument_group(
        "faults (for testing clients; none by default; listed in the start-up line)"
    )
    seconds, size = _checked(parse_seconds), _checked(parse_size)
    share = _checked(parse_probability)
    for flag, parse, metavar, text in (
        ("--delay", seconds, "DURATION", "hold each chunk's echo back this long (order kept)"),
        ("--jitter", seconds, "DURATION", "add a uniform random delay in [0, DURATION]"),
        ("--bandwidth", size, "RATE", "bytes per second per connection, e.g. 64KiB, 10MB"),
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


def _trace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print every protocol and transport event, with a clock from the connection's "
        "start (shown with -q too)",
    )


PROXY_EXAMPLES = """\
examples:
  aioecho proxy --to 127.0.0.1:6379 --port 7000                  # a plain relay to redis
  aioecho proxy --to 127.0.0.1:6379 --port 7000 --reset-after 100
  aioecho proxy --to db.example:5432 --port 6432 --delay 50ms --jitter 10ms
  aioecho proxy --to 127.0.0.1:8080 --bandwidth 64KiB --faults-upstream
"""


def proxy_config(args: argparse.Namespace) -> ProxyConfig:
    host, port = args.to
    return ProxyConfig(
        listen=server_config(args),
        upstream_host=host,
        upstream_port=port,
        faults_upstream=args.faults_upstream,
        connect_timeout=args.connect_timeout,
    )


def _listen_options(parser: argparse.ArgumentParser) -> None:
    """Where and how a server (or the proxy) listens, and what it allows its peers."""
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="HOST",
        help=f"address or name to listen on, repeatable; a name binds all its addresses "
        f"(default {DEFAULT_HOST})",
    )
    _common(parser)
    _trace_option(parser)
    parser.add_argument(
        "--drain-timeout",
        type=_checked(parse_seconds),
        default=_SERVER.drain_timeout,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, time open connections get to finish (default %(default)s)",
    )
    parser.add_argument(
        "--drain-delay",
        type=_checked(parse_seconds),
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
        type=_checked(parse_mode),
        default=format(_SERVER.unix_mode, "03o"),  # a string: argparse parses it
        metavar="MODE",
        help="permissions of the Unix socket, in chmod's octal form "
        "(default %(default)s: owner only)",
    )
    parser.add_argument("--tcp", action="store_true", help="serve TCP (the default without --udp)")
    parser.add_argument("--udp", action="store_true", help="serve UDP (RFC 862); with --tcp, both")
    parser.add_argument(
        "--udp-rate",
        type=_checked(parse_rate),
        default=_SERVER.udp_rate,
        metavar="N",
        help="UDP datagrams echoed per second per source address, burst N (default %(default)g)",
    )
    parser.add_argument("--tls-cert", metavar="CERT", help="PEM certificate chain: serve TLS")
    parser.add_argument("--tls-key", metavar="KEY", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-handshake-timeout",
        type=_checked(parse_seconds),
        default=_SERVER.tls_handshake_timeout,
        metavar="SECONDS",
        help="time a peer gets to finish the TLS handshake; it counts as a connection meanwhile "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=_checked(parse_count),
        default=_SERVER.max_connections,
        metavar="N",
        help="open connections at most; more are accepted and closed at once (default %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_checked(parse_seconds),
        default=_SERVER.idle_timeout,
        metavar="SECONDS",
        help="close a connection with nothing sent or received for this long; 0 never "
        "(default %(default)g)",
    )
    parser.add_argument(
        "--backlog",
        type=_checked(parse_count),
        default=_SERVER.backlog,
        metavar="N",
        help="queue of connections waiting to be accepted (default %(default)s)",
    )
    parser.add_argument(
        "--stats-interval",
        type=_checked(parse_seconds),
        default=_SERVER.stats_interval,
        metavar="SECONDS",
        help="log the statistics every SECONDS; they are logged at shutdown and on SIGUSR1 too",
    )
    parser.add_argument(
        "--workers",
        type=_checked(lambda text: parse_count(text, minimum=0)),
        default=1,
        metavar="N",
        help="worker processes sharing the port, supervised and restarted; 0: one per CPU "
        "(default %(default)s: no supervisor)",
    )
    parser.add_argument(
        "--max-buffer",
        type=_checked(parse_size),
        default=format_size(DEFAULT_MAX_BUFFER),  # a string: argparse parses it
        metavar="BYTES",
        help="pending echo per connection before reading from it pauses (default %(default)s)",
    )


def build_parser() -> _Parser:
    parser = _Parser(
        prog="aioecho", description="An asyncio echo server and client (asyncio.Protocol)."
    )
    parser.add_argument("--version", action="version", version=f"aioecho {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = commands.add_parser(
        "server",
        help="run an echo server",
        description="Echo every byte back to its sender, in order.\n\n" + SERVER_ENVIRONMENT,
        epilog=SERVER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _listen_options(server)
    server.add_argument(
        "--fd",
        action="append",
        dest="fds",
        type=_checked(lambda text: parse_count(text, minimum=3)),
        metavar="N",
        help="serve the listening socket at descriptor N, inherited (repeatable); systemd's "
        "socket activation (LISTEN_FDS) is taken without it",
    )
    server.add_argument(
        "--metrics",
        type=_checked(parse_target),
        metavar="HOST:PORT",
        help="serve Prometheus /metrics, /healthz and /readyz over HTTP there; with --workers, "
        "each worker its own, on PORT, PORT+1, ... (needs pip install 'aioecho[metrics]')",
    )
    server.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (NAME: message, as the seed prints) or json (an object per line: time, "
        "level, logger, message, peer) (default %(default)s)",
    )
    server.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="every connection starts with a PROXY protocol header (v1 or v2, from HAProxy "
        "and others): the client's address in it is the one logged",
    )
    server.add_argument(
        "--banner",
        metavar="TEXT",
        help="a line sent on connect, before any echo: {hostname}, {pid}, {worker} and {port} "
        "are filled in (default: none, a pure echo)",
    )
    _fault_options(server)

    proxy = commands.add_parser(
        "proxy",
        help="forward connections to a TCP service, with faults on demand",
        description="Listen as the server does and forward each connection to --to, both "
        "ways, with the fault options applied to what comes back.",
        epilog=PROXY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    proxy.add_argument(
        "--to", required=True, type=_checked(parse_target), metavar="HOST:PORT", help="upstream"
    )
    proxy.add_argument(
        "--faults-upstream",
        action="store_true",
        help="apply the faults to what the client sends as well",
    )
    proxy.add_argument(
        "--connect-timeout",
        type=_checked(parse_seconds),
        default=_PROXY.connect_timeout,
        metavar="SECONDS",
        help="time to reach the upstream (default %(default)s)",
    )
    _listen_options(proxy)
    _fault_options(proxy)

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
    _trace_option(client)
    client.add_argument("--udp", action="store_true", help="send each message as one datagram")
    client.add_argument(
        "--retries",
        type=int,
        default=_CLIENT.retries,
        metavar="N",
        help="UDP: resend a datagram with no echo up to N times (default %(default)s)",
    )
    _bench_parser(commands)
    _ping_parser(commands)
    _check_parser(commands)
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for aioecho's commands and options, generated "
        "from this parser (shtab).",
        epilog=COMPLETION_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    return parser


COMPLETION_EXAMPLES = """\
examples:
  aioecho completion bash > ~/.local/share/bash-completion/completions/aioecho
  aioecho completion zsh > "${fpath[1]}/_aioecho"
"""


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


MERGE_EXAMPLES = """\
examples:
  aioecho bench merge a.json b.json               # the table, as one run would print it
  aioecho bench merge --json host*.json > all.json
Each file is the output of `aioecho bench --json`: its whole latency histogram and counters are
added up exactly, as a --workers run adds its workers'. The results must have measured the same
shape of load (size, pipeline, target, open or closed loop).
"""


def _merge_parser() -> _Parser:
    merge = _Parser(
        prog="aioecho bench merge",
        description="Merge the results of several `aioecho bench --json` runs (taken on several "
        "load machines) into one report.",
        epilog=MERGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    merge.add_argument("files", nargs="+", metavar="FILE", help="aioecho bench --json outputs")
    merge.add_argument("--json", action="store_true", help="print the merged report as JSON")
    return merge


MAX_REPORT: Final = 64 * 1024**2  # bytes of one report given to `bench merge`


def _bench_merge(argv: Sequence[str]) -> int:
    from .bench import BenchResult, merge_reports

    args = _merge_parser().parse_args(argv)
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
        print(f"aioecho: error: {err}", file=sys.stderr)
        return ExitStatus.USAGE if isinstance(err, ConfigError) else ExitStatus.FAILURE
    return ExitStatus.OK


def _target_options(
    parser: argparse.ArgumentParser,
    timeout_help: str = "bound on connecting and on any silence while echo is owed",
    timeout_default: float = _CLIENT.timeout,
) -> None:
    """Where a client or the bench connects, and how: shared by both, mapped by _target()."""
    parser.add_argument(
        "--host", action=_Given, default=DEFAULT_HOST, help="server (default %(default)s)"
    )
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
        default=timeout_default,
        metavar="SECONDS",
        help=f"{timeout_help} (default %(default)s)",
    )


def _target(args: argparse.Namespace, **more: Any) -> ClientConfig:
    if args.unix is not None and _given(args, "port"):
        raise ConfigError("--unix connects to a socket file: it does not go with --port")
    if args.unix is not None and _given(args, "host") and not args.tls:
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
    bench.add_argument(
        "--connections",
        "-c",
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
        type=_checked(parse_rate),
        default=_BENCH.rate,
        metavar="R",
        help="open loop: R requests/s in total, latency from each scheduled send time "
        "(default: closed loop)",
    )
    bench.add_argument(
        "--size",
        type=_checked(parse_size),
        default=_BENCH.size,
        metavar="BYTES",
        help="bytes per request, e.g. 64, 1KiB (default %(default)s)",
    )
    bench.add_argument(
        "--duration",
        type=_checked(parse_seconds),
        default=_BENCH.duration,
        metavar="SECONDS",
        help="length of the measured run, after the warm-up (default %(default)s)",
    )
    bench.add_argument(
        "--requests", type=count, default=0, metavar="N", help="stop after N requests instead"
    )
    bench.add_argument(
        "--warmup",
        type=_checked(parse_seconds),
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
    bench.add_argument("--json", action="store_true", help="print the result as JSON")
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
        type=_checked(parse_start_time),
        metavar="TIME",
        help="wait until this wall-clock time to start (HH:MM[:SS] today, ISO 8601, @EPOCH): "
        "the same start on several load machines, for `aioecho bench merge` after",
    )
    bench.add_argument(
        "--spawn", action="store_true", help="start `aioecho server` on a free port and measure it"
    )


PING_EXAMPLES = """\
examples:
  aioecho ping -c 5                       # five probes to localhost port 10000, one a second
  aioecho ping --udp -c 100 -i 0.01       # datagrams: lost, duplicated, reordered, late
  aioecho ping --new-connection --tls --cafile ca.pem --host echo.example -c 5
  aioecho ping --json -c 10 | jq .rtt_us  # a JSON object per probe, then the summary
exit status: 0 loss within --max-loss and every answer right; 1 otherwise (or no answer at
all); 2 usage.
"""


def _ping_parser(commands: Any) -> None:
    ping = commands.add_parser(
        "ping",
        help="measure round trips to an echo server, probe by probe (TCP, TLS, Unix, UDP)",
        description="Send numbered probes on a fixed timetable and time each echo; with "
        "--new-connection, time the name resolution, connect and TLS handshake too.",
        epilog=PING_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _target_options(
        ping,
        timeout_help="how long a probe waits for its answer",
        timeout_default=_PING.target.timeout,
    )
    for action in ping._actions:  # -q means what it means to ping(8)
        if "-q" in action.option_strings:
            action.help = "the summary only, no line per probe (and only warnings and errors)"
    ping.add_argument("--udp", action="store_true", help="probe with datagrams (RFC 862)")
    ping.add_argument(
        "-c",
        "--count",
        type=_checked(lambda text: parse_count(text, minimum=0)),
        default=_PING.count,
        metavar="N",
        help="probes to send; 0 until Ctrl-C (default %(default)s)",
    )
    ping.add_argument(
        "-i",
        "--interval",
        type=_checked(_ping_interval),
        default=_PING.interval,
        metavar="SECONDS",
        help="time between probes, kept whatever the answers do (default %(default)g)",
    )
    ping.add_argument(
        "-s",
        "--size",
        type=_checked(parse_size),
        default=_PING.size,
        metavar="BYTES",
        help="bytes per probe, e.g. 64, 1KiB (default %(default)s)",
    )
    ping.add_argument(
        "--new-connection",
        action="store_true",
        help="a connection per probe, with its phases timed: resolve, connect, tls",
    )
    output = ping.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON object per line")
    output.add_argument("--csv", action="store_true", help="a CSV row per probe")
    ping.add_argument(
        "--max-loss",
        type=_checked(parse_percent),
        default=_PING.max_loss,
        metavar="PCT",
        help="percent of probes that may be lost with exit status 0 (default %(default)g)",
    )


CHECK_EXAMPLES = (
    """\
examples:
  aioecho check --port 10000                   # every TCP case against a server
  aioecho check --host lb.example --port 7 --tcp --udp --json report.json
  aioecho check --port 8443 --tls --cafile ca.pem --skip large backpressure
  aioecho check --port 10000 --idle-probe 600  # how long does the path keep idle connections?
  aioecho check --port 10000 --junit check.xml # for CI
cases, in the order they run:
"""
    + "".join(f"  {name:<15} {what}\n" for name, what in {**TCP_CASES, **UDP_CASES}.items())
    + """\
verdicts: OK; NON-STRICT works, but not as a strict echo server should (the line says how);
FAILED bytes lost, changed or reordered, or a hang; SKIPPED does not apply (the line says why).
exit status: 0 no case FAILED; 1 some case FAILED; 2 usage.
"""
)


def _case_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _check_parser(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="check an echo server, or a proxy or balancer in front of one, case by case",
        description="Run conformance cases against an echo endpoint (a server, or the proxy, "
        "balancer or tunnel in front of one) and report, case by case, what holds.",
        epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _target_options(
        check,
        timeout_help="bound on any one wait for the server",
        timeout_default=_CHECK.target.timeout,
    )
    check.add_argument("--tcp", action="store_true", help="the TCP cases (the default)")
    check.add_argument(
        "--udp", action="store_true", help="the UDP cases; with --tcp, both (same port)"
    )
    for flag, verb in (("--only", "run only"), ("--skip", "do not run")):
        check.add_argument(
            flag,
            nargs="+",
            action="extend",
            type=_case_names,
            default=[],
            metavar="CASE",
            help=f"{verb} these cases (names below, space or comma separated)",
        )
    check.add_argument(
        "--json", metavar="FILE", help="write everything measured as JSON (- for stdout)"
    )
    check.add_argument("--junit", metavar="FILE", help="write a JUnit XML report (- for stdout)")
    check.add_argument(
        "--html", metavar="FILE", help="write the report as one self-contained HTML page"
    )
    check.add_argument(
        "--idle-probe",
        type=_checked(parse_seconds),
        metavar="MAX_SECONDS",
        help="also find how long the path keeps an idle connection (and UDP flow), up to this",
    )
    check.add_argument(
        "--idle",
        type=_checked(parse_seconds),
        default=_CHECK.idle,
        metavar="SECONDS",
        help="how long the idle case stays silent (default %(default)g)",
    )
    check.add_argument(
        "--large",
        type=_checked(parse_size),
        default=format_size(_CHECK.large),
        metavar="BYTES",
        help="bytes of the large case (default %(default)s)",
    )
    check.add_argument(
        "--backpressure-cap",
        type=_checked(parse_size),
        default=format_size(_CHECK.backpressure_cap),
        metavar="BYTES",
        help="unread bytes a server may take before backpressure FAILED (default %(default)s)",
    )
    family = check.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=4, default=0,
                        help="IPv4 addresses only")  # fmt: skip
    family.add_argument("-6", dest="family", action="store_const", const=6,
                        help="IPv6 addresses only")  # fmt: skip
    check.add_argument(
        "--all-addresses",
        action="store_true",
        help="run the cases against each address the host resolves to, side by side (a "
        "dual-stack name whose IPv6 path differs)",
    )
    check.add_argument(
        "--budget",
        type=_checked(parse_seconds),
        default=_CHECK.budget,
        metavar="SECONDS",
        help="time the whole run may take besides the idle waits; a case that runs out is cut "
        "and says how far it got (default %(default)g)",
    )


def check_config(args: argparse.Namespace) -> CheckConfig:
    only = [name for names in args.only for name in names]
    skip = [name for names in args.skip for name in names]
    tcp = args.tcp or not args.udp
    return CheckConfig(
        target=_target(args),
        cases=tuple(select_cases(tcp, args.udp, only, skip, args.idle_probe is not None)),
        udp=args.udp,
        idle=args.idle,
        idle_probe=args.idle_probe,
        large=args.large,
        backpressure_cap=args.backpressure_cap,
        json_path=args.json,
        junit_path=args.junit,
        html_path=args.html,
        budget=args.budget,
        family=args.family,
        all_addresses=args.all_addresses,
    )


def ping_config(args: argparse.Namespace) -> PingConfig:
    return PingConfig(
        target=_target(args, udp=args.udp),
        count=args.count,
        interval=args.interval,
        size=args.size,
        new_connection=args.new_connection,
        output="json" if args.json else "csv" if args.csv else "text",
        max_loss=args.max_loss,
        quiet=args.quiet,
    )


def bench_config(args: argparse.Namespace) -> BenchConfig:
    if args.spawn and (args.unix is not None or _given(args, "host", "port")):
        raise ConfigError(
            "--spawn picks its own address: it does not go with --host, --port or --unix"
        )
    if args.spawn and args.tls:
        raise ConfigError("--spawn starts a plain TCP server: it does not go with --tls")
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
        start_at=args.start_at,
        new_connection=args.new_connection,
        tls_resume=args.tls_resume,
    )


def server_config(args: argparse.Namespace) -> ServerConfig:
    if args.unix is not None and (args.hosts or _given(args, "port")):
        raise ConfigError("--unix listens on a socket file: it does not go with --host or --port")
    # the server's own options (the proxy listens through this mapping too, without them)
    fds = tuple(getattr(args, "fds", None) or ())
    if fds and (args.unix is not None or args.hosts or _given(args, "port")):
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
        proxy_protocol=getattr(args, "proxy_protocol", False),
        metrics=getattr(args, "metrics", None),
    )


def client_config(args: argparse.Namespace) -> ClientConfig:
    return _target(args, udp=args.udp, retries=args.retries)


def _open_standard_descriptors() -> None:
    """Open /dev/null on whichever of descriptors 0-2 is closed (`aioecho server <&-`): else the
    first socket would take that number, and libuv aborts on a socket at 0-2 (and a closed
    stdin would read as an error rather than as an empty stream)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd itself
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:  # Python leaves these None when the descriptor was closed
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    _open_standard_descriptors()  # before any loop exists
    raw = list(argv) if argv is not None else sys.argv[1:]
    if raw[:2] == ["bench", "merge"]:  # a verb of its own, with its own arguments
        return _bench_merge(raw[2:])
    parser = build_parser()
    command = raw[0] if raw else ""
    if command in ("server", "proxy"):  # the environment first: it may give a required option
        usage = parser.subcommand(command) or parser
        prefix = ENV_PREFIX if command == "server" else PROXY_ENV_PREFIX
        try:
            from_environment = environment_defaults(usage, os.environ, raw, prefix)
        except ConfigError as err:
            print(f"aioecho: error: {err}", file=sys.stderr)
            return ExitStatus.USAGE
        if "-h" not in raw and "--help" not in raw:
            for warning in unknown_environment(usage, os.environ, prefix):
                print(f"aioecho: warning: {warning}", file=sys.stderr)
        if from_environment:
            usage.set_defaults(**from_environment)
            for action in usage._actions:  # given in the environment: no longer required
                if action.dest in from_environment:
                    action.required = False
    args = parser.parse_args(raw)
    usage = parser.subcommand(args.command) or parser
    if args.command == "completion":
        import shtab

        print(shtab.complete(parser, shell=args.shell), end="")
        return ExitStatus.OK
    if args.command == "client" and args.udp and args.messages == ["-"]:
        usage.error("--udp sends messages as datagrams: it does not stream stdin (-)")
    if args.command == "client" and args.udp and not all(args.messages):
        usage.error("--udp: an empty message cannot be sent as a datagram")
    try:
        role = WorkerRole.take()
        serving = args.command in ("server", "proxy")
        tag = f"worker{role.number}" if role is not None and serving else None
        configure(
            1 if args.verbose else -1 if args.quiet else 0,
            tag=tag,
            trace=getattr(args, "trace", False),
            log_format=getattr(args, "log_format", "text"),
        )
        loop_name = _loop_name(args.loop)
        if args.command == "server":
            config = server_config(args)
            workers = worker_count(args.workers)
            if workers > 1:
                check_metrics_ports(config, workers)
            inherited, how = inherited_sockets(config) if role is None else (None, "")
            if how == "socket activation" and (
                config.fds or config.unix is not None or _given(args, "port") or args.hosts
            ):
                raise ConfigError(
                    "socket activation (LISTEN_FDS) hands over the sockets to serve: it does not "
                    "go with --host, --port, --unix or --fd"
                )
            if role is None and workers > 1:
                loops.run(supervise(config, workers, raw, inherited, how), loop_name)
            else:
                loops.run(run_server(config, role, inherited=inherited, how=how), loop_name)
        elif args.command == "bench":
            bench = bench_config(args)
            if role is not None:
                loops.run(run_bench_share(bench, role), loop_name)
            else:
                loops.run(
                    run_bench_command(
                        bench, argv=raw, spawn=args.spawn, as_json=args.json, loop_name=loop_name
                    ),
                    loop_name,
                )
        elif args.command == "proxy":
            relay = proxy_config(args)
            workers = worker_count(args.workers)
            if role is None and workers > 1:
                loops.run(supervise(relay.listen, workers, raw), loop_name)
            else:
                loops.run(run_proxy(relay, role), loop_name)
        elif args.command == "ping":
            loops.run(run_ping(ping_config(args)), loop_name)
        elif args.command == "check":
            loops.run(run_check(check_config(args)), loop_name)
        else:
            messages = [os.fsencode(m) for m in args.messages] or list(SEED_MESSAGES)
            loops.run(run_client(client_config(args), messages, trace=args.trace), loop_name)
    except ConfigError as err:
        print(f"aioecho: error: {err}", file=sys.stderr)
        return ExitStatus.USAGE
    except Interrupted as err:
        print("aioecho: interrupted", file=sys.stderr)
        return 128 + err.signum
    except AioechoError as err:
        print(f"aioecho: error: {err}", file=sys.stderr)
        return ExitStatus.FAILURE
    except KeyboardInterrupt:
        print("aioecho: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    return ExitStatus.OK


def _loop_name(name: str) -> str:
    try:
        return loops.resolve(name)
    except ValueError as err:
        raise ConfigError(f"--loop: {err}") from None

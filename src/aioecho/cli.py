"""The `aioecho` command: assembles the programs' parsers (each program's options live in its
own package) and holds main(), the one place that prints errors and chooses exit codes (0 ok,
1 failure, 2 usage, 130 interrupted)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import loops
from .bench import command as bench
from .check import command as check
from .client import command as client
from .errors import AioechoError, ConfigError, ExitStatus, Interrupted
from .logs import configure
from .options import ENV_PREFIX, Invocation, Parser, environment, version_option
from .ping import command as ping
from .proxy import command as proxy
from .roles import WorkerRole
from .server import command as server

__all__ = ["build_parser", "main"]

PROGRAMS = {"server": server, "proxy": proxy, "client": client, "bench": bench, "ping": ping,
            "check": check}  # fmt: skip

EPILOG = """\
  aioecho bench merge FILE...  merge the --json results of several bench runs into one report

Each COMMAND has its own --help, with examples.
"""

COMPLETION_EXAMPLES = """\
examples:
  aioecho completion bash > ~/.local/share/bash-completion/completions/aioecho
  aioecho completion zsh > "${fpath[1]}/_aioecho"
"""


def build_parser() -> Parser:
    parser = Parser(
        prog="aioecho",
        description="An asyncio echo server, client, load generator (bench), prober (ping),\n"
        "conformance checker (check) and fault-injecting proxy, on asyncio.Protocol.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    version_option(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for program in PROGRAMS.values():
        program.add_parser(commands)
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
        return bench.run_merge(raw[2:])
    parser = build_parser()
    command = raw[0] if raw else ""
    if command in ("server", "proxy"):  # the environment first: it may give a required option
        usage = parser.subcommand(command) or parser
        try:
            for warning in environment(usage, raw, ENV_PREFIX if command == "server" else None):
                print(f"{usage.prog}: warning: {warning}", file=sys.stderr)
        except ConfigError as err:
            print(f"{usage.prog}: error: {err}", file=sys.stderr)
            return ExitStatus.USAGE
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
            timestamps=getattr(args, "log_timestamps", False),
        )
        PROGRAMS[args.command].run(Invocation(args, raw, _loop_name(args.loop), role))
    except ConfigError as err:
        print(f"{usage.prog}: error: {err}", file=sys.stderr)
        return ExitStatus.USAGE
    except Interrupted as err:
        print(f"{usage.prog}: interrupted", file=sys.stderr)
        return 128 + err.signum
    except AioechoError as err:
        print(f"{usage.prog}: error: {err}", file=sys.stderr)
        return ExitStatus.FAILURE
    except KeyboardInterrupt:
        print(f"{usage.prog}: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    return ExitStatus.OK


def _loop_name(name: str) -> str:
    try:
        return loops.resolve(name)
    except ValueError as err:
        raise ConfigError(f"--loop: {err}") from None

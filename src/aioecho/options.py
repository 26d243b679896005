"""What every program's options share: the parser class (one-line errors, no abbreviations),
value checks that keep the parser's message, the options every program has (-v/-q, --loop,
--port), defaults from the environment (AIOECHO_<OPTION>), and the Invocation a program runs
with. Below the programs: no program imports cli.py, and this imports no program."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast

from . import loops
from .addresses import DEFAULT_PORT
from .errors import ConfigError, ExitStatus
from .roles import WorkerRole
from .units import parse_port
from .version import __version__

__all__ = [
    "ENV_PREFIX",
    "PROXY_ENV_PREFIX",
    "Given",
    "Invocation",
    "Parser",
    "checked",
    "common_options",
    "environment",
    "environment_defaults",
    "given",
    "one_on_stdout",
    "report_options",
    "trace_option",
    "unknown_environment",
    "version_option",
]


@dataclass(frozen=True)
class Invocation:
    """What a program's run() is given by cli.main(): its parsed arguments, the whole command
    line (a supervisor starts its workers with it), the event loop chosen, and the worker role
    this process was started in, if any."""

    args: argparse.Namespace
    argv: list[str]
    loop: str
    role: WorkerRole | None


class Parser(argparse.ArgumentParser):
    """One-line usage errors that point at --help; an unknown option is matched to the nearest
    real one. Abbreviated options are not accepted: a new option would make today's
    abbreviation ambiguous, and break the scripts that use it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # options another program has and this one does not, with why (a clear refusal)
        self.not_here: dict[str, str] = {}

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # reported by the subcommand's parser, which knows its options
            chosen = self.subcommand(getattr(parsed, "command", None)) or self
            chosen.error(chosen._unrecognized(extras[0]))
        return parsed

    def subcommand(self, name: str | None) -> Parser | None:
        """The parser of a subcommand, by name."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                return cast(Parser, action.choices[name])
        return None

    def error(self, message: str) -> NoReturn:
        self.exit(ExitStatus.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _unrecognized(self, word: str) -> str:
        if not word.startswith("-") or word == "-":
            return f"unexpected argument {word!r}"
        flag = word.split("=", 1)[0]
        if flag in self.not_here:
            return f"no {flag} here: {self.not_here[flag]}"
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


def environment(parser: Parser, argv: Sequence[str], prefix: str | None) -> list[str]:
    """Take parser's defaults from the environment (AIOECHO_<OPTION>; prefix None: the proxy's
    AIOECHO_PROXY_<OPTION>), an option given there being no longer required. Returns a warning
    for each variable that names no option (not with --help). Raises ConfigError."""
    prefix = prefix if prefix is not None else PROXY_ENV_PREFIX
    found = environment_defaults(parser, os.environ, argv, prefix)
    warnings = []
    if "-h" not in argv and "--help" not in argv:
        warnings = unknown_environment(parser, os.environ, prefix)
    if found:
        parser.set_defaults(**found)
        for action in parser._actions:
            if action.dest in found:
                action.required = False
    return warnings


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


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser raising ValueError, keeping its message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


class Given(argparse._StoreAction):
    """Stores the value and notes that the option was given (in `given`), for the options whose
    conflicts depend on it: --host and --port beside --unix or --spawn."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        super().__call__(parser, namespace, values, option)
        namespace.given = getattr(namespace, "given", set()) | {self.dest}


def given(args: argparse.Namespace, *dests: str) -> bool:
    return bool(getattr(args, "given", set()) & set(dests))


def common_options(
    parser: argparse.ArgumentParser, *, verbose: str | None, quiet: str, port: str = "TCP port"
) -> None:
    """The options every program has: --port, --loop, -q (and -v where it means something),
    -V. verbose and quiet: what they do in this program, for its help."""
    parser.add_argument(
        "--port",
        action=Given,
        type=checked(parse_port),
        default=DEFAULT_PORT,
        help=f"{port} (default %(default)s)",
    )
    parser.add_argument(
        "--loop",
        choices=loops.LOOPS,
        default="auto",
        help="event loop: auto (uvloop when installed), asyncio or uvloop",
    )
    level = parser.add_mutually_exclusive_group()
    if verbose is not None:
        level.add_argument("-v", "--verbose", action="store_true", help=verbose)
    else:
        parser.set_defaults(verbose=False)
    level.add_argument("-q", "--quiet", action="store_true", help=quiet)
    version_option(parser)


def family_options(parser: argparse.ArgumentParser, all_addresses: str) -> None:
    """-4 and -6 (one address family only) and --all-addresses (its help: what each address
    gets), for the programs that probe a host (ping, check)."""
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=4, default=0,
                        help="IPv4 addresses only")  # fmt: skip
    family.add_argument("-6", dest="family", action="store_const", const=6,
                        help="IPv6 addresses only")  # fmt: skip
    # -4 and -6 look like negative numbers, which makes argparse take every "-1" for an option
    # ("expected one argument" for -i -1): they are matched exactly, a number stays a value
    parser._has_negative_number_optionals.clear()
    parser.add_argument("--all-addresses", action="store_true", help=all_addresses)


def report_options(parser: argparse.ArgumentParser, formats: Sequence[tuple[str, str]]) -> None:
    """For each (format, what it holds): --FORMAT prints it on standard output (the text goes
    aside, to standard error, or away), --FORMAT-file FILE writes it to FILE beside the text.
    The same two spellings in every program; args.FORMAT_to is then '-', FILE or None."""
    for name, what in formats:
        group = parser.add_mutually_exclusive_group()
        dest = f"{name}_to"
        group.add_argument(f"--{name}", dest=dest, action="store_const", const="-",
                           help=f"print {what} on standard output")  # fmt: skip
        group.add_argument(f"--{name}-file", dest=dest, metavar="FILE",
                           help=f"write {what} to FILE, the text still shown")  # fmt: skip


def one_on_stdout(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Only one report may take standard output."""
    taking = [f"--{name}" for name in names if getattr(args, f"{name}_to", None) == "-"]
    if len(taking) > 1:
        raise ConfigError(f"{' and '.join(taking)} cannot both print on standard output")


def version_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-V", "--version", action="version", version=f"aioecho {__version__}",
        help="print the version and exit",
    )  # fmt: skip


def trace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print every protocol and transport event, with a clock from the connection's "
        "start (shown with -q too)",
    )

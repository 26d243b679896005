"""What every program's options share: the parser class (one-line errors, no abbreviations),
value checks that keep the parser's message, the options every program has (-v/-q, --loop,
--port), defaults from the environment (AIOECHO_<OPTION>), and the Invocation a program runs
with. Below the programs: no program imports cli.py, and this imports no program."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast

from . import loops
from .addresses import DEFAULT_PORT
from .errors import ConfigError, ExitStatus
from .roles import WorkerRole
from .units import parse_port

__all__ = [
    "ENV_PREFIX",
    "PROXY_ENV_PREFIX",
    "Given",
    "Invocation",
    "Parser",
    "checked",
    "common_options",
    "environment_defaults",
    "given",
    "trace_option",
    "unknown_environment",
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


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        action=Given,
        type=checked(parse_port),
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


def trace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print every protocol and transport event, with a clock from the connection's "
        "start (shown with -q too)",
    )

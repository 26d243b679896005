"""`aioecho check`'s options, mapped onto CheckConfig."""

from __future__ import annotations

import argparse
from typing import Any, cast

from ..client.options import target, target_options
from ..options import Parser, checked, family_options, one_on_stdout, report_options
from ..units import format_size, parse_seconds, parse_size
from .config import CheckConfig
from .report import TCP_CASES, UDP_CASES, select_cases

__all__ = ["add_parser", "check_config"]

_CHECK = CheckConfig()  # the defaults

CHECK_EXAMPLES = (
    """\
examples:
  aioecho check --port 10000                   # every TCP case against a server
  aioecho check --host lb.example --port 7 --tcp --udp --json-file report.json
  aioecho check --port 8443 --tls --cafile ca.pem --skip large backpressure
  aioecho check --port 10000 --idle-probe 600  # how long does the path keep idle connections?
  aioecho check --port 10000 --junit-file check.xml  # for CI
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


class _CaseNames(tuple[str, ...]):
    """The case names as --only's and --skip's choices: what shell completion offers. A value
    (a list: one word, split at its commas) passes here; select_cases() names an unknown case,
    with the nearest, which argparse's choices message would not."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, list) or super().__contains__(value)


def add_parser(commands: Any) -> Parser:
    """`aioecho check`'s parser, added to the subcommands."""
    check = commands.add_parser(
        "check",
        help="check an echo server, or a proxy or balancer in front of one, case by case",
        description="Run conformance cases against an echo endpoint (a server, or the proxy, "
        "balancer or tunnel in front of one) and report, case by case, what holds.",
        epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target_options(
        check,
        timeout_help="bound on any one wait for the server: a connect, an echo, a reply",
        verbose="each case's figures too, on a line under it",
        quiet="only the cases that are not OK, and the summary",
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
            choices=_CaseNames({**TCP_CASES, **UDP_CASES}),
            default=[],
            metavar="CASE",
            help=f"{verb} these cases (names below, space or comma separated)",
        )
    report_options(
        check,
        [("json", "everything measured, as JSON"), ("junit", "a JUnit XML report"),
         ("html", "the report as one self-contained HTML page")],
    )  # fmt: skip
    check.add_argument(
        "--reflect",
        action="store_true",
        help="also the path case: what a server with --reflect saw (addresses translated, a "
        "PROXY header, TLS ended on the way)",
    )
    check.add_argument(
        "--idle-probe",
        type=checked(parse_seconds),
        metavar="MAX_SECONDS",
        help="also find how long the path keeps an idle connection (and UDP flow), up to this",
    )
    check.add_argument(
        "--idle",
        type=checked(parse_seconds),
        default=_CHECK.idle,
        metavar="SECONDS",
        help="how long the idle case stays silent (default %(default)g)",
    )
    check.add_argument(
        "--large",
        type=checked(parse_size),
        default=format_size(_CHECK.large),
        metavar="BYTES",
        help="bytes of the large case (default %(default)s)",
    )
    check.add_argument(
        "--backpressure-cap",
        type=checked(parse_size),
        default=format_size(_CHECK.backpressure_cap),
        metavar="BYTES",
        help="unread bytes a server may take before backpressure FAILED (default %(default)s)",
    )
    family_options(
        check,
        "run the cases against each address the host resolves to, side by side (a dual-stack "
        "name whose IPv6 path differs)",
    )
    check.add_argument(
        "--budget",
        type=checked(parse_seconds),
        default=_CHECK.budget,
        metavar="SECONDS",
        help="time the whole run may take besides the idle waits; a case that runs out is cut "
        "and says how far it got (default %(default)g)",
    )
    return cast(Parser, check)


def check_config(args: argparse.Namespace) -> CheckConfig:
    one_on_stdout(args, ("json", "junit", "html"))
    only = [name for names in args.only for name in names]
    skip = [name for names in args.skip for name in names]
    tcp = args.tcp or not args.udp
    return CheckConfig(
        target=target(args),
        cases=tuple(
            select_cases(
                tcp,
                args.udp,
                only,
                skip,
                args.idle_probe is not None,
                asked=[case for case, on in (("tls", args.tls), ("path", args.reflect)) if on],
            )
        ),
        udp=args.udp,
        idle=args.idle,
        idle_probe=args.idle_probe,
        large=args.large,
        backpressure_cap=args.backpressure_cap,
        json_path=args.json_to,
        junit_path=args.junit_to,
        html_path=args.html_to,
        quiet=args.quiet,
        verbose=args.verbose,
        budget=args.budget,
        family=args.family,
        all_addresses=args.all_addresses,
    )

"""`aioecho ping`'s options, mapped onto PingConfig."""

from __future__ import annotations

import argparse
from typing import Any, Final, cast

from ..client.options import target, target_options
from ..errors import ConfigError
from ..options import Parser, checked, family_options, one_on_stdout, report_options
from ..units import parse_count, parse_percent, parse_seconds, parse_size
from .config import MIN_PING_INTERVAL, PingConfig

__all__ = ["add_parser", "ping_config"]

_PING = PingConfig()  # the defaults

PING_EXAMPLES = """\
examples:
  aioecho ping -c 5                       # five probes to localhost port 10000, one a second
  aioecho ping --udp -c 100 -i 0.01       # datagrams: lost, duplicated, reordered, late
  aioecho ping --new-connection --tls --cafile ca.pem --host echo.example -c 5
  aioecho ping --json -c 10 | jq .rtt_us  # a JSON object per probe, then the summary
exit status: 0 loss within --max-loss and every answer right; 1 otherwise (or no answer at
all); 2 usage.
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


# DSCP code points by name (RFC 2474, 2597, 3246): --tos takes them shifted into the TOS byte
DSCP: Final[dict[str, int]] = {
    "ef": 46,
    **{f"cs{n}": 8 * n for n in range(8)},
    **{f"af{c}{d}": 8 * c + 2 * d for c in range(1, 5) for d in range(1, 4)},
}


def _tos(text: str) -> int:
    """--tos: a byte (decimal or 0x hex), or a DSCP name (ef, af41, cs1) shifted into place."""
    name = text.strip().lower()
    if name in DSCP:
        return DSCP[name] << 2
    try:
        value = int(name, 0)
    except ValueError:
        raise ConfigError(f"invalid TOS {text!r}: a number (184, 0xb8) or a DSCP name (ef, af41, "
                          "cs1)") from None  # fmt: skip
    if not 0 <= value <= 255:
        raise ConfigError(f"invalid TOS {text!r}: must be 0 to 255")
    return value


def add_parser(commands: Any) -> Parser:
    """`aioecho ping`'s parser, added to the subcommands."""
    ping = commands.add_parser(
        "ping",
        help="measure round trips to an echo server, probe by probe (TCP, TLS, Unix, UDP)",
        description="Send numbered probes on a fixed timetable and time each echo; with "
        "--new-connection, time the name resolution, connect and TLS handshake too.",
        epilog=PING_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target_options(
        ping,
        timeout_help="how long a probe waits for its answer (and, with --new-connection, "
        "for its connection)",
        timeout_default=_PING.target.timeout,
        verbose="each line starts with its wall-clock time, [Unix seconds] (as ping -D)",
        quiet="the summary only, no line per probe (as ping -q)",
    )
    ping.add_argument("--udp", action="store_true", help="probe with datagrams (RFC 862)")
    ping.add_argument(
        "-c",
        "--count",
        type=checked(lambda text: parse_count(text, minimum=0)),
        default=_PING.count,
        metavar="N",
        help="probes to send; 0 until Ctrl-C (default %(default)s)",
    )
    ping.add_argument(
        "-i",
        "--interval",
        type=checked(_ping_interval),
        default=_PING.interval,
        metavar="SECONDS",
        help="time between probes, kept whatever the answers do (default %(default)g)",
    )
    ping.add_argument(
        "-s",
        "--size",
        type=checked(parse_size),
        default=_PING.size,
        metavar="BYTES",
        help="bytes per probe, e.g. 64, 1KiB (default %(default)s)",
    )
    ping.add_argument(
        "--new-connection",
        action="store_true",
        help="a connection per probe, with its phases timed: resolve, connect, tls",
    )
    ping.add_argument(
        "--tos",
        type=checked(_tos),
        default=_PING.tos,
        metavar="TOS",
        help="the IP TOS byte (IPv6: traffic class) of the probes, as a number or a DSCP name: "
        "184 or ef (expedited), 0x20 or cs1 (the default: the system's)",
    )
    family_options(
        ping,
        "probe each address the host resolves to in turn (-c each), then their figures side by "
        "side (a dual-stack name whose IPv6 path differs)",
    )
    ping.add_argument(
        "--reflect",
        action="store_true",
        help="ask each connection what the server saw (a server with --reflect): the address "
        "it saw us as and its instance, once per connection, and in the summary when it changed",
    )
    ping.add_argument(
        "--spread",
        action="store_true",
        help="with --new-connection: which instance answered each probe, tallied at the end "
        "(behind a balancer); read from the reflection, or the banner line with --banner-lines",
    )
    report_options(
        ping,
        [("json", "a JSON object per probe and event, then the summary's"),
         ("csv", "a CSV row per probe (the summary on standard error)")],
    )  # fmt: skip
    ping.add_argument(
        "--max-loss",
        type=checked(parse_percent),
        default=_PING.max_loss,
        metavar="PCT",
        help="percent of probes that may be lost with exit status 0 (default %(default)g)",
    )
    return cast(Parser, ping)


def ping_config(args: argparse.Namespace) -> PingConfig:
    one_on_stdout(args, ("json", "csv"))
    return PingConfig(
        target=target(args, udp=args.udp),
        count=args.count,
        interval=args.interval,
        size=args.size,
        new_connection=args.new_connection,
        output="json" if args.json_to == "-" else "csv" if args.csv_to == "-" else "text",
        json_file=None if args.json_to == "-" else args.json_to,
        csv_file=None if args.csv_to == "-" else args.csv_to,
        verbose=args.verbose,
        tos=args.tos,
        max_loss=args.max_loss,
        quiet=args.quiet,
        reflect=args.reflect,
        spread=args.spread,
        family=args.family,
        all_addresses=args.all_addresses,
    )

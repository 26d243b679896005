"""Sizes, durations, rates, counts, ports and times as a user writes them, parsed (and sizes
formatted back) in one place for every program.

Pure: imports neither asyncio, socket nor ssl."""

from __future__ import annotations

import re
from typing import Final

from .errors import ConfigError

_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_port(text: str) -> int:
    """A TCP/UDP port number, 0 (any free port) to 65535."""
    try:
        port = int(text, 10)
    except ValueError:
        raise ConfigError(f"invalid port {text!r}: not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"invalid port {port}: must be 0 to 65535")
    return port


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be 0 to 65535")


_TIME_UNITS: Final = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "h": 3600.0}
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?\s*(h|ms|us|m|s)?", re.I)


def parse_seconds(text: str) -> float:
    """A non-negative, finite duration: seconds ('5', '0.25', '1e-3'), with a unit ('100ms',
    '2m', '1.5h', '250us'), or in parts, largest first ('1m30s', '1h 15m')."""
    stripped = text.strip()
    if stripped.startswith("-"):
        raise ConfigError(f"invalid duration {text!r}: must be zero or more seconds")
    parts = []
    at = 0
    while at < len(stripped):
        match = _DURATION_PART.match(stripped, at)
        if match is None:
            break
        parts.append(match)
        at = match.end()
        while at < len(stripped) and stripped[at] == " ":
            at += 1
    units = [(match.group(2) or "").lower() for match in parts]
    scales = [_TIME_UNITS[unit] for unit in units]
    if (
        not parts
        or at != len(stripped)
        or (len(parts) > 1 and "" in units)  # '1m30': the 30 of what?
        or scales != sorted(scales, reverse=True)
        or len(set(units)) != len(units)
    ):
        raise ConfigError(
            f"invalid duration {text!r}: use seconds or a unit (h, m, s, ms, us), e.g. 1.5, "
            "250ms, 1m30s"
        )
    value = sum(
        float(match.group(0)[: len(match.group(0)) - len(unit)]) * scale
        for match, unit, scale in zip(parts, units, scales, strict=True)
    )
    if not 0 <= value < float("inf"):
        raise ConfigError(f"invalid duration {text!r}: must be zero or more seconds")
    return value


def parse_probability(text: str) -> float:
    """A probability or share, 0 to 1 ('0.3')."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"invalid probability {text!r}: not a number") from None
    if not 0 <= value <= 1:
        raise ConfigError(f"invalid probability {text!r}: must be 0 to 1")
    return value


def parse_size(text: str) -> int:
    """A byte count with an optional unit: '64', '1KiB', '10KB', '1MiB' (KB=1000, KiB=1024)."""
    stripped = text.strip()
    digits = stripped.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ").strip()
    unit = stripped[len(digits) :].strip().lower() if digits else stripped.lower()
    if not digits or unit not in _SIZE_UNITS:
        raise ConfigError(f"invalid size {text!r}: use a number with an optional unit, e.g. 1KiB")
    try:
        number = float(digits) if "." in digits else int(digits, 10)
    except ValueError:
        raise ConfigError(f"invalid size {text!r}: not a number") from None
    exact = number * _SIZE_UNITS[unit]
    if not exact >= 0 or exact == float("inf"):
        raise ConfigError(f"invalid size {text!r}: must be zero or more bytes")
    if exact != int(exact):
        raise ConfigError(f"invalid size {text!r}: not a whole number of bytes")
    return int(exact)


def format_size(size: int) -> str:
    """The shortest exact form parse_size reads back: 262144 -> '256KiB', 1000 -> '1000'."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_count(text: str, minimum: int = 1) -> int:
    """A whole number, `minimum` (1) or more."""
    try:
        count = int(text, 10)
    except ValueError:
        raise ConfigError(f"invalid number {text!r}: not a whole number") from None
    if count < minimum:
        raise ConfigError(f"invalid number {count}: must be {minimum} or more")
    return count


def parse_mode(text: str) -> int:
    """A file mode in chmod's octal form: '600', '0660'."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise ConfigError(f"invalid mode {text!r}: use octal digits, e.g. 600") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"invalid mode {text!r}: must be 000 to 777")
    return mode


def parse_percent(text: str) -> float:
    """A percentage, 0 to 100 ('5', '0.5', '5%')."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ConfigError(f"invalid percentage {text!r}: not a number") from None
    if not 0 <= value <= 100:
        raise ConfigError(f"invalid percentage {text!r}: must be 0 to 100")
    return value


_RATE_UNITS: Final = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str) -> float:
    """A positive rate per second: '20000', '1e4', '10k', '2.5M', '10k/s' (k, M, G: 1000s)."""
    stripped = text.strip().removesuffix("/s").strip()
    unit = stripped[-1:].lower() if stripped[-1:].isalpha() else ""
    if unit == "e":  # '1e': not an exponent's end
        unit = "?"
    try:
        rate = float(stripped[: len(stripped) - len(unit)]) * _RATE_UNITS[unit]
    except (ValueError, KeyError):
        raise ConfigError(
            f"invalid rate {text!r}: use a number per second, e.g. 500, 1e4, 10k, 2.5M"
        ) from None
    if not 0 < rate < float("inf"):
        raise ConfigError(f"invalid rate {text!r}: must be more than 0")
    return rate


def parse_byte_rate(text: str) -> int:
    """Bytes per second: a size with an optional '/s' ('64KiB', '1MiB/s', '10MB/s'), the form
    the start-up line prints back."""
    stripped = text.strip()
    per_second = stripped[:-2] if stripped.lower().endswith("/s") else stripped
    try:
        return parse_size(per_second)
    except ConfigError:
        raise ConfigError(
            f"invalid rate {text!r}: use bytes per second with an optional unit, e.g. 64KiB, 1MiB/s"
        ) from None


MAX_EPOCH: Final = 32503680000.0  # the year 3000


def parse_start_time(text: str) -> float:
    """A wall-clock time as epoch seconds: 'HH:MM[:SS]' (today, local time), an ISO 8601 date
    and time ('2026-11-27T14:30:00Z', local without an offset), or '@EPOCH'."""
    import datetime
    import time

    text = text.strip()
    if text.startswith("@"):
        try:
            epoch = float(text[1:])
        except ValueError:
            raise ConfigError(f"invalid time {text!r}: @ takes epoch seconds") from None
        if not 0 <= epoch < MAX_EPOCH:  # NaN too: a time the clock functions can show
            raise ConfigError(f"invalid time {text!r}: epoch seconds from 0 to {MAX_EPOCH:.0f}")
        return epoch
    try:
        if "T" not in text and " " not in text and text.count(":") in (1, 2):
            clock = datetime.time.fromisoformat(text)
            moment = datetime.datetime.combine(datetime.date.today(), clock)
        else:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"invalid time {text!r}: use HH:MM[:SS], an ISO 8601 date and time, or @EPOCH"
        ) from None
    if moment.tzinfo is None:
        return time.mktime(moment.timetuple()) + moment.microsecond / 1e6
    return moment.timestamp()


def parse_target(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT'."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host:
        raise ConfigError(f"invalid target {text!r}: use HOST:PORT")
    return host, parse_port(port)


def parse_alpn(text: str) -> tuple[str, ...]:
    """'h2,http/1.1': ALPN protocol names, by preference (each 1 to 255 ASCII bytes)."""
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        if not name or len(name.encode("ascii", "replace")) > 255 or not name.isascii():
            raise ConfigError(f"invalid ALPN protocol list {text!r}: use names such as h2,http/1.1")
    return names


def plural(count: int, noun: str) -> str:
    """'1 connection', '2 connections', '0 probes'."""
    return f"{count} {noun}{'s' if count != 1 else ''}"

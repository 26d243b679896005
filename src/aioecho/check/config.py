"""Which `aioecho check` cases run against which target, and their sizes and times.

Pure: imports neither asyncio, socket nor ssl."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..client.config import ClientConfig
from ..errors import ConfigError
from ..units import format_size

# Bounds of `aioecho check`'s sizes and times.
MAX_CHECK_LARGE: Final = 4 * 1024**3  # bytes of the `large` case
MAX_CHECK_CAP: Final = 16 * 1024**3  # bytes the `backpressure` case may push unread
MAX_CHECK_IDLE: Final = 24 * 3600.0  # seconds: `idle` and --idle-probe
MIN_CHECK_BUDGET: Final = 10.0  # seconds


@dataclass(frozen=True, kw_only=True)
class CheckConfig:
    """`aioecho check`: which cases run against which target, and their sizes and times."""

    target: ClientConfig = ClientConfig(timeout=5.0)  # timeout: any one wait for the peer
    cases: tuple[str, ...] = ()  # in the order they run (checkreport.select_cases)
    udp: bool = False  # the UDP cases (at the target's host and port)
    idle: float = 10.0  # seconds the `idle` case stays silent
    idle_probe: float | None = None  # the longest idle period idle-probe tries, in seconds
    large: int = 64 * 1024**2  # bytes of the `large` case
    backpressure_cap: int = 256 * 1024**2  # unread bytes a server may take before FAILED
    json_path: str | None = None  # '-': standard output
    junit_path: str | None = None
    html_path: str | None = None  # a self-contained HTML page
    # seconds the whole run may take, besides the idle waits asked for (--idle, --idle-probe);
    # a case that runs out of it is cut, with what it did so far
    budget: float = 120.0
    family: int = 0  # 4 or 6: only that address family (-4, -6); 0: either
    address: str | None = None  # connect to this one of the host's addresses (--all-addresses)
    all_addresses: bool = False  # run the cases against each address the host resolves to
    quiet: bool = False  # the table: only the cases not OK, and the summary
    verbose: bool = False  # the table: each case's figures too

    def __post_init__(self) -> None:
        if self.family not in (0, 4, 6):
            raise ConfigError("family must be 4, 6 or 0 (either)")
        if (self.family or self.all_addresses) and self.target.unix is not None:
            raise ConfigError("-4, -6 and --all-addresses are for a host, not --unix")
        if not MIN_CHECK_BUDGET <= self.budget <= MAX_CHECK_IDLE:
            raise ConfigError(
                f"--budget must be {MIN_CHECK_BUDGET:g} to {MAX_CHECK_IDLE:g} seconds"
            )
        if self.udp and (self.target.tls or self.target.unix is not None):
            raise ConfigError("--udp does not go with --tls or --unix")
        if not 0 < self.idle <= MAX_CHECK_IDLE:
            raise ConfigError(f"--idle must be more than 0 and at most {MAX_CHECK_IDLE:g} seconds")
        if self.idle_probe is not None and not 1 <= self.idle_probe <= MAX_CHECK_IDLE:
            raise ConfigError(f"--idle-probe must be 1 to {MAX_CHECK_IDLE:g} seconds")
        if not 1024 <= self.large <= MAX_CHECK_LARGE:
            raise ConfigError(f"--large must be 1KiB to {format_size(MAX_CHECK_LARGE)}")
        if not 1024**2 <= self.backpressure_cap <= MAX_CHECK_CAP:
            raise ConfigError(f"--backpressure-cap must be 1MiB to {format_size(MAX_CHECK_CAP)}")
        if [self.json_path, self.junit_path, self.html_path].count("-") > 1:
            raise ConfigError("only one of --json, --junit and --html can print on standard output")

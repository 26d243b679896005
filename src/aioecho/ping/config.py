"""What `aioecho ping` sends and how often.

Pure: imports neither asyncio, socket nor ssl."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..addresses import MAX_UDP6_PAYLOAD, MAX_UDP_PAYLOAD
from ..client.config import ClientConfig
from ..errors import ConfigError
from ..units import format_size

# Bounds of ping's counts, for the same reasons as the bench's.
MAX_PING_COUNT: Final = 1_000_000_000
MIN_PING_INTERVAL: Final = 0.001  # seconds
MAX_PING_SIZE: Final = 16 * 1024**2  # stream; UDP: MAX_UDP_PAYLOAD
PING_HEADER: Final = 16  # a probe's sequence number and send time
MAX_PING_IN_FLIGHT: Final = 256 * 1024**2  # bytes of probes awaiting their answer, at most


@dataclass(frozen=True, kw_only=True)
class PingConfig:
    """What `aioecho ping` probes, how often, and what counts as failure."""

    target: ClientConfig = ClientConfig(
        timeout=2.0
    )  # where; timeout: a probe's wait for its answer
    count: int = 0  # probes; 0: until interrupted
    interval: float = 1.0  # seconds between probes' scheduled times
    size: int = 64  # bytes per probe
    new_connection: bool = False  # a connection per probe, with its phases timed
    output: str = "text"  # text, json (lines) or csv
    max_loss: float = 0.0  # percent of probes that may be lost for exit status 0
    quiet: bool = False  # text output: the summary only (ping -q)
    verbose: bool = False  # text output: each line starts with its wall-clock time (ping -D)
    tos: int = 0  # the IP TOS byte (IPv6: traffic class) of the probes; 0: the system's
    family: int = 0  # 4 or 6: that address family only (-4, -6); 0: either
    all_addresses: bool = False  # probe each address the host resolves to, in turn
    reflect: bool = False  # ask each connection what the server saw (server --reflect)
    spread: bool = False  # tally which instance answered each probe (--new-connection)
    json_file: str | None = None  # also write the JSON lines here
    csv_file: str | None = None  # also write the CSV rows here

    def __post_init__(self) -> None:
        if not 0 <= self.count <= MAX_PING_COUNT:
            raise ConfigError(f"--count must be 0 (until interrupted) to {MAX_PING_COUNT}")
        if not MIN_PING_INTERVAL <= self.interval <= 3600:
            raise ConfigError(f"--interval must be {MIN_PING_INTERVAL:g} to 3600 seconds")
        most = MAX_PING_SIZE
        if self.target.udp:  # an IPv6 header has no options to leave room for: 20 bytes more
            most = MAX_UDP6_PAYLOAD if ":" in self.target.host else MAX_UDP_PAYLOAD
        if not PING_HEADER <= self.size <= most:
            shown = f"{most} bytes" if self.target.udp else format_size(most)
            raise ConfigError(f"--size must be {PING_HEADER} bytes to {shown}")
        in_flight = self.size * max(1.0, self.target.timeout / self.interval)
        if in_flight > MAX_PING_IN_FLIGHT:
            raise ConfigError(
                f"--size x (--timeout / --interval) is {in_flight:.0f} bytes of probes in "
                f"flight: at most {format_size(MAX_PING_IN_FLIGHT)}"
            )
        if self.new_connection and self.target.udp:
            raise ConfigError("--new-connection does not go with --udp (UDP has no connection)")
        if self.output not in ("text", "json", "csv"):
            raise ConfigError("output must be text, json or csv")
        if not 0 <= self.tos <= 255:
            raise ConfigError("--tos must be 0 to 255 (a byte: DSCP << 2 | ECN)")
        if self.tos and self.target.unix is not None:
            raise ConfigError("--tos marks IP packets: it does not go with --unix")
        if not 0 <= self.max_loss <= 100:
            raise ConfigError("--max-loss must be 0 to 100 (percent)")
        if self.family not in (0, 4, 6):
            raise ConfigError("family must be 4, 6 or 0 (either)")
        if (self.family or self.all_addresses) and self.target.unix is not None:
            raise ConfigError("-4, -6 and --all-addresses are for a host, not --unix")
        if self.all_addresses and not self.count:
            raise ConfigError("--all-addresses probes each address in turn: give --count")
        if self.spread and not (self.new_connection or self.target.udp):
            raise ConfigError(
                "--spread tallies which instance answered each connection: add --new-connection"
            )

    @property
    def reflecting(self) -> bool:
        """Each connection asks what the server saw: --reflect, or --spread with no banner to
        name the instance."""
        return self.reflect or (self.spread and not self.banner_lines)

    @property
    def banner_lines(self) -> int:
        """Lines the server greets with (the target's --banner-lines), read before the probes."""
        return self.target.banner_lines

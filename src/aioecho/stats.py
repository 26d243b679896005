"""Server statistics: a frozen snapshot of the counters, and its one-line form.

Pure: imports neither asyncio, socket nor ssl.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["StatsSnapshot"]


@dataclass(frozen=True, kw_only=True)
class StatsSnapshot:
    """What a server has done since it started. Byte counts are payload bytes; bytes_out counts
    echo handed to the kernel (echo still queued when a peer resets counts as sent)."""

    accepted: int = 0  # connections taken on (refused ones not included)
    active: int = 0  # connections open now
    refused: int = 0  # connections closed at once because of --max-connections
    idle_closed: int = 0  # connections closed by --idle-timeout
    resets: int = 0  # connections lost with an error (reset by peer, broken pipe, ...)
    bytes_in: int = 0
    bytes_out: int = 0
    datagrams_echoed: int = 0  # UDP
    datagrams_dropped: int = 0  # UDP: reflection ports and --udp-rate

    def line(self) -> str:
        """'accepted=3 active=1 refused=0 ...': one log line, every counter."""
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

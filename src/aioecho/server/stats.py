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
    # connections that ended before any data: a balancer's health check (TCP connect, PROXY
    # LOCAL header), a port probe; not counted in resets however they ended
    checks: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    datagrams_echoed: int = 0  # UDP
    datagrams_dropped: int = 0  # UDP: reflection ports, --udp-rate, over what --delay holds
    # how often each fault fired, for a server with fault options (None: it has none)
    fault_resets: int | None = None  # --reset-after
    fault_closes: int | None = None  # --close-after
    fault_stalls: int | None = None  # --stall-after
    fault_drops: int | None = None  # UDP --drop
    fault_duplicates: int | None = None  # UDP --duplicate
    fault_corruptions: int | None = None  # UDP --corrupt
    reflections: int | None = None  # --reflect: connections and datagrams answered

    def line(self) -> str:
        """'accepted=3 active=1 refused=0 ...': one log line, every counter (the fault ones only
        where the server has faults)."""
        return " ".join(
            f"{f.name}={value}"
            for f in fields(self)
            if (value := getattr(self, f.name)) is not None
        )

    def faults(self) -> dict[str, int]:
        """{'reset': 2, ...}: the fault counters by fault, for a server with fault options."""
        counts = {
            "reset": self.fault_resets,
            "close": self.fault_closes,
            "stall": self.fault_stalls,
            "drop": self.fault_drops,
            "duplicate": self.fault_duplicates,
            "corrupt": self.fault_corruptions,
        }
        return {kind: count for kind, count in counts.items() if count is not None}

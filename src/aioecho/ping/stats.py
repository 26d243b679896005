"""What `aioecho ping` reports: one result per probe (and per extra answer), and the summary.

Pure: imports neither asyncio, socket nor ssl. Times are microseconds (floats); the summary
keeps running sums and a LatencyHistogram, not every RTT, so a ping may run for days.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final

from ..histogram import LatencyHistogram
from ..units import plural

__all__ = [
    "ANSWERED",
    "EVENTS",
    "LOST",
    "WRONG",
    "PhaseStats",
    "PingSummary",
    "ProbeResult",
    "summarize",
]

# A probe ends as exactly one of these:
ANSWERED: Final = ("ok", "reordered")  # the right bytes, in time (reordered: after a later one)
WRONG: Final = ("mismatch", "corrupted")  # bytes came back, not the ones sent
# nothing usable came back; "unanswered": still in flight when the run was stopped (Ctrl-C)
LOST: Final = ("timeout", "refused", "reset", "closed", "error", "unanswered")
# ... and these are extra answers, which end no probe: "duplicate" (a second copy), "late" (the
# answer to a probe that had timed out), "corrupted" with extra=True (a datagram whose sequence
# number matches no probe).
# Connection events are extra results too (seq 0): how the peer ended the connection, "closed"
# (FIN) or "reset", with idle_s when no probe was in flight; and "reconnected", with connect_us.
EVENTS: Final = ("closed", "reset", "reconnected")
LATE_SHOWN: Final = 10  # late answers the summary names, with their RTT
_SEEN_PORT: Final = re.compile(r":\d+ by")  # 'seen as 10.0.0.1:51234 by host pid 42'


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome, or an extra answer (extra=True)."""

    seq: int  # from 1; 0 when a corrupted datagram's own number is unreadable
    status: str
    size: int  # bytes sent (or received, for extra answers)
    rtt_us: float | None = None
    resolve_us: float | None = None  # --new-connection phases, where measured
    connect_us: float | None = None
    tls_us: float | None = None
    peer: str | None = None  # '127.0.0.1 port 10000', the address that answered
    detail: str | None = None  # why, for status "error"
    extra: bool = False
    idle_s: float | None = None  # a connection event: seconds since the last probe activity
    backend: str | None = None  # the instance that answered (--spread, --reflect)
    seen: str | None = None  # what it saw: a connection's first probe (--reflect)
    tls: str | None = None  # the connection's TLS (version, cipher, certificate): its first probe

    @property
    def is_event(self) -> bool:
        return self.extra and self.status in EVENTS

    def line(self) -> str:
        """As ping prints it: '64 bytes from 127.0.0.1 port 10000: seq=3 rtt=0.350 ms'."""
        if self.is_event:
            return self._event_line()
        seq = f"seq={self.seq}" if self.seq else "seq=?"
        if self.status in ANSWERED or self.status in ("duplicate", "late"):
            phases = "".join(
                f" {name}={_ms(value)} ms"
                for name, value in (
                    ("resolve", self.resolve_us),
                    ("connect", self.connect_us),
                    ("tls", self.tls_us),
                )
                if value is not None
            )
            late = " late" if self.status == "late" else ""
            note = {"reordered": " (reordered)", "duplicate": " (DUP!)"}.get(self.status, "")
            backend = f" from {self.backend}" if self.backend is not None else ""
            return (
                f"{self.size} bytes from {self.peer}: {seq}{late}{phases} "
                f"rtt={_ms(self.rtt_us or 0.0)} ms{backend}{note}"
            )
        return f"{seq} {self.status}" + (f": {self.detail}" if self.detail else "")

    def _event_line(self) -> str:
        if self.status == "reconnected":
            connect = f" (connect {_ms(self.connect_us)} ms)" if self.connect_us is not None else ""
            return f"reconnected to {self.peer}{connect}"
        how = "closed by the peer (FIN)" if self.status == "closed" else "reset by the peer"
        when = f" after {self.idle_s:.1f}s idle" if self.idle_s is not None else ""
        return f"connection {how}{when}"

    def to_dict(self) -> dict[str, Any]:
        """For --json: only the fields that were measured."""
        fields = {"type": "event" if self.is_event else "probe", **asdict(self)}
        fields["bytes"] = fields.pop("size")
        return {k: v for k, v in fields.items() if v is not None and v is not False}


def _ms(us: float) -> str:
    return f"{us / 1000:.3f}"


class PhaseStats:
    """min/avg/max of one connection phase (resolve, connect, tls)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def add(self, us: float) -> None:
        self.count += 1
        self.total += us
        self.min = min(self.min, us)
        self.max = max(self.max, us)

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else 0.0


class PingSummary:
    """Counts and RTT figures over the results added so far."""

    def __init__(self) -> None:
        self.sent = 0  # probes that ended (each once)
        self.received = 0  # answered right and in time
        self.lost = 0  # never answered (late answers are taken out again)
        self.wrong = 0  # answered with other bytes (stream mismatch or corrupted datagram)
        self.duplicates = 0
        self.reordered = 0
        self.corrupted = 0  # datagrams: wrong bytes, whether or not they ended a probe
        self.late = 0
        self.late_answers: list[tuple[int, float]] = []  # (seq, rtt_us), the first LATE_SHOWN
        self.closes = 0  # connection events: the peer closed (FIN) or reset the connection
        self.resets = 0
        self.reconnects = 0
        self.seconds = 0.0  # the run's length, set by whoever ran it
        self._rtt_ns = LatencyHistogram()
        self._squares = 0.0  # sum of rtt_us squared, for mdev
        self._jitter_total = 0.0
        self._jitter_count = 0
        self._last_rtt: float | None = None
        self.phases = {name: PhaseStats() for name in ("resolve", "connect", "tls")}
        # --spread, --reflect: which instance answered, and what the server saw
        self.backends: collections.Counter[str] = collections.Counter()
        self.same_backend = 0  # answered by the same instance as the answer before
        self._last_backend: str | None = None
        self.seen: str | None = None  # the last connection's reflection
        self.seen_changes = 0  # how often it differed from the one before (NAT, backend)

    def add(self, result: ProbeResult) -> None:
        status = result.status
        if status == "corrupted":
            self.corrupted += 1
        if result.is_event:
            if status == "closed":
                self.closes += 1
            elif status == "reset":
                self.resets += 1
            else:
                self.reconnects += 1
            return
        if result.extra:
            if status == "duplicate":
                self.duplicates += 1
            elif status == "late":
                self.late += 1
                self.lost -= 1  # it was counted lost when it timed out
                if len(self.late_answers) < LATE_SHOWN:
                    self.late_answers.append((result.seq, result.rtt_us or 0.0))
            return
        self.sent += 1
        for name, us in (
            ("resolve", result.resolve_us),
            ("connect", result.connect_us),
            ("tls", result.tls_us),
        ):
            if us is not None:
                self.phases[name].add(us)
        if status in ANSWERED:
            self.received += 1
            self.reordered += status == "reordered"
            self._add_rtt(result.rtt_us or 0.0)
            self._add_backend(result)
        elif status in WRONG:
            self.wrong += 1
        else:
            self.lost += 1

    def _add_backend(self, result: ProbeResult) -> None:
        if result.backend is not None:
            self.backends[result.backend] += 1
            self.same_backend += result.backend == self._last_backend
            self._last_backend = result.backend
        if result.seen is not None:
            # a new connection's port is new each time: the address and the instance count
            if self.seen is not None and _SEEN_PORT.sub(" by", result.seen) != _SEEN_PORT.sub(
                " by", self.seen
            ):
                self.seen_changes += 1
            self.seen = result.seen

    def _add_rtt(self, us: float) -> None:
        self._rtt_ns.record(round(us * 1000))
        self._squares += us * us
        if self._last_rtt is not None:
            self._jitter_total += abs(us - self._last_rtt)
            self._jitter_count += 1
        self._last_rtt = us

    @property
    def wrong_answers(self) -> int:
        """Answers that were not what was sent: ending a probe, or matching none."""
        return max(self.wrong, self.corrupted)

    @property
    def loss_pct(self) -> float:
        return 100.0 * self.lost / self.sent if self.sent else 0.0

    def figures(self) -> dict[str, float]:
        """RTT figures in microseconds (all 0 before the first answer)."""
        h = self._rtt_ns
        if not h.count:
            names = ("min", "avg", "max", "mdev", "p50", "p90", "p99", "jitter")
            return {f"{name}_us": 0.0 for name in names}
        avg = h.total / h.count / 1000
        variance = max(0.0, self._squares / h.count - avg * avg)
        jitter = self._jitter_total / self._jitter_count if self._jitter_count else 0.0
        return {
            "min_us": h.min / 1000,
            "avg_us": avg,
            "max_us": h.max / 1000,
            "mdev_us": math.sqrt(variance),
            "p50_us": h.percentile(50) / 1000,
            "p90_us": h.percentile(90) / 1000,
            "p99_us": h.percentile(99) / 1000,
            "jitter_us": jitter,
        }

    def to_dict(self) -> dict[str, Any]:
        counts = {
            name: getattr(self, name)
            for name in (
                "sent",
                "received",
                "lost",
                "duplicates",
                "reordered",
                "corrupted",
                "late",
                "closes",
                "resets",
                "reconnects",
            )
        }
        phases = {
            f"{name}_{figure}_us": value
            for name, stats in self.phases.items()
            if stats.count
            for figure, value in (("min", stats.min), ("avg", stats.avg), ("max", stats.max))
        }
        spread = {}
        if self.backends:
            spread = {"backends": dict(self.backends), "same_backend": self.same_backend}
        if self.seen is not None:
            spread.update(seen=self.seen, seen_changes=self.seen_changes)
        return {
            "type": "summary",
            **counts,
            **spread,
            "wrong": self.wrong_answers,
            "loss_pct": round(self.loss_pct, 3),
            "time_ms": round(self.seconds * 1000),
            **{k: round(v, 3) for k, v in self.figures().items()},
            **{k: round(v, 3) for k, v in phases.items()},
        }

    def lines(self, where: str) -> list[str]:
        """The closing block, as ping prints it."""
        f = self.figures()
        lines = [
            f"--- {where} ping statistics ---",
            f"{plural(self.sent, 'probe')} sent, {self.received} received, {self.lost} lost "
            f"({self.loss_pct:.3g}% loss), "
            f"{plural(self.duplicates, 'duplicate')}, {self.reordered} reordered, "
            f"{self.wrong_answers} wrong, {self.late} late, time {self.seconds * 1000:.0f}ms",
        ]
        if self.late:
            shown = ", ".join(f"seq={seq} {_ms(rtt)} ms" for seq, rtt in self.late_answers)
            more = self.late - len(self.late_answers)
            lines.append(f"late: {shown}" + (f" and {more} more" if more else ""))
        if self.closes or self.resets or self.reconnects:
            lines.append(
                f"connection: {self.closes} closed by the peer, {self.resets} reset, "
                f"{plural(self.reconnects, 'reconnect')}"
            )
        if self.received:
            lines += [
                "rtt min/avg/max/mdev = "
                + "/".join(_ms(f[k]) for k in ("min_us", "avg_us", "max_us", "mdev_us"))
                + " ms",
                "rtt p50/p90/p99 = "
                + "/".join(_ms(f[k]) for k in ("p50_us", "p90_us", "p99_us"))
                + f" ms, jitter {_ms(f['jitter_us'])} ms",
            ]
        for name, stats in self.phases.items():
            if stats.count:
                figures = "/".join(_ms(v) for v in (stats.min, stats.avg, stats.max))
                lines.append(f"{name} min/avg/max = {figures} ms")
        if self.backends:
            total = sum(self.backends.values())
            tally = ", ".join(
                f"{name} {count} ({100 * count / total:.0f}%)"
                for name, count in self.backends.most_common()
            )
            lines.append(f"answered by: {tally}")
            if total > 1:
                same = 100 * self.same_backend / (total - 1)
                lines.append(f"same backend as the previous probe: {same:.0f}%")
        if self.seen is not None:
            changed = f" (changed {plural(self.seen_changes, 'time')})" if self.seen_changes else ""
            lines.append(f"last {self.seen}{changed}")
        return lines

    def failure(self, max_loss_pct: float) -> str | None:
        """Why the run fails (exit status 1), or None."""
        if not self.sent:
            return "no probe was sent"
        if self.wrong_answers:
            return f"{self.wrong_answers} answers were not what was sent"
        if not self.received and not self.late:
            return f"no answer to any of {self.sent} probes"
        if self.loss_pct > max_loss_pct:
            # digits enough to show the difference: 33.33% against --max-loss 33.3
            digits = 3
            while f"{self.loss_pct:.{digits}g}" == f"{max_loss_pct:.{digits}g}" and digits < 9:
                digits += 1
            return (
                f"{self.lost} of {self.sent} probes lost ({self.loss_pct:.{digits}g}% loss, "
                f"--max-loss {max_loss_pct:g}%)"
            )
        return None


def summarize(results: Iterable[ProbeResult]) -> PingSummary:
    """The summary of a finished list of results."""
    summary = PingSummary()
    for result in results:
        summary.add(result)
    return summary

"""What one bench run measured: BenchResult (the table, the figures, JSON, the exact form a
parent merges), and merging the results of several processes or runs into one."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from ..client.config import ClientConfig
from ..errors import BenchError
from ..histogram import LatencyHistogram, whole
from ..units import plural
from .config import BenchConfig

__all__ = ["BenchResult", "inflight_cap", "merge", "merge_reports"]

MIB: Final = 1024 * 1024

MAX_INFLIGHT_BYTES: Final = 128 * MIB
MAX_INFLIGHT_PER_CONNECTION: Final = 100_000
REQUEST_OVERHEAD: Final = 160  # bytes a request in flight costs besides its payload (measured)


def inflight_cap(config: BenchConfig) -> int:
    per_process = max(1, config.connections // config.workers)
    return max(
        config.pipeline,
        min(
            MAX_INFLIGHT_PER_CONNECTION,
            MAX_INFLIGHT_BYTES // (config.size + REQUEST_OVERHEAD) // per_process,
        ),
    )


_COUNTERS: Final = ("mismatches", "resets", "timeouts", "closed", "unsent", "closed_connections")


@dataclasses.dataclass
class BenchResult:
    """What one run measured; merge() adds another process's result."""

    config: BenchConfig
    histogram: LatencyHistogram
    elapsed_s: float
    mismatches: int = 0  # wrong echoes (each ends its connection)
    resets: int = 0  # connections lost with an error
    timeouts: int = 0  # requests not answered within --timeout
    closed: int = 0  # requests in flight when the server closed their connection
    unsent: int = 0  # requests due in the window but not sent (connection gone, in-flight cap)
    closed_connections: int = 0  # connections the server closed before the run ended
    # --new-connection: the connect and TLS handshake times, and failed connects by reason
    connects: LatencyHistogram | None = None
    handshakes: LatencyHistogram | None = None
    failed_connects: dict[str, int] = dataclasses.field(default_factory=dict)
    resumed: int = 0  # --tls-resume: handshakes the server resumed

    @property
    def requests(self) -> int:
        return self.histogram.count

    @property
    def errors(self) -> int:
        failed = sum(self.failed_connects.values())
        return self.mismatches + self.resets + self.timeouts + self.closed + self.unsent + failed

    def merge(self, other: BenchResult) -> None:
        self.histogram.merge(other.histogram)
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        for counter in _COUNTERS:
            setattr(self, counter, getattr(self, counter) + getattr(other, counter))
        for name in ("connects", "handshakes"):
            theirs = getattr(other, name)
            if theirs is not None:
                if getattr(self, name) is None:
                    setattr(self, name, LatencyHistogram())
                getattr(self, name).merge(theirs)
        for reason, count in other.failed_connects.items():
            self.failed_connects[reason] = self.failed_connects.get(reason, 0) + count
        self.resumed += other.resumed

    def summary(self) -> dict[str, Any]:
        """The figures, with their units in their names."""
        h, elapsed = self.histogram, self.elapsed_s or 1e-9
        us = {f"p{str(p).replace('.', '')}_us": h.percentile(p) / 1000 for p in (50, 90, 99, 99.9)}
        return {
            "requests": self.requests,
            "elapsed_s": round(self.elapsed_s, 3),
            "rps": round(self.requests / elapsed, 1),
            "mib_per_s": round(self.requests * self.config.size / elapsed / MIB, 3),
            "min_us": h.min / 1000,
            **us,
            "max_us": h.max / 1000,
            "mean_us": round(h.mean() / 1000, 3),
            "errors": self.errors,
            **{counter: getattr(self, counter) for counter in _COUNTERS},
            **self._connection_summary(),
        }

    def _connection_summary(self) -> dict[str, Any]:
        if self.connects is None:
            return {}
        figures: dict[str, Any] = {
            "connections_per_s": round(self.requests / (self.elapsed_s or 1e-9), 1),
            "failed_connects": dict(sorted(self.failed_connects.items())),
        }
        for name, hist in (("connect", self.connects), ("tls", self.handshakes)):
            if hist is not None and hist.count:
                for p in (50, 90, 99):
                    figures[f"{name}_p{p}_us"] = hist.percentile(p) / 1000
                figures[f"{name}_max_us"] = hist.max / 1000
        if self.config.tls_resume:
            figures["tls_resumed"] = self.resumed
        return figures

    def to_json(self) -> str:
        """The report: the config, the figures, and the exact result (the whole histogram and
        the counters) that `aioecho bench merge` adds up."""
        config = dataclasses.asdict(self.config)
        if self.config.target.unix is not None:  # a socket path: no host, no port
            config["target"].update(host=None, port=None)
        exact = json.loads(self.to_wire())
        return json.dumps({"config": config, "result": self.summary(), "exact": exact}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> BenchResult:
        """A result back from to_json() (ValueError, KeyError or ConfigError if it is not one)."""
        data = json.loads(text, parse_constant=_no_constant)
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise ValueError("config: missing")
        fields = dict(data["config"])
        if not isinstance(fields.get("target"), dict):
            raise ValueError("config.target: must be an object")
        target = {k: v for k, v in fields["target"].items() if k not in ("host", "port") or v}
        try:
            config = BenchConfig(**{**fields, "target": ClientConfig(**target)})
        except TypeError:
            raise ValueError("config: not a bench configuration") from None
        return cls.from_exact(config, data.get("exact"))

    def to_wire(self) -> str:
        """The exact result, histogram included, for a parent process to merge."""
        counters = {counter: getattr(self, counter) for counter in _COUNTERS}
        extra: dict[str, Any] = {}
        if self.connects is not None:
            extra["connects"] = self.connects.to_dict()
            extra["failed_connects"] = self.failed_connects
        if self.handshakes is not None:
            extra["handshakes"] = self.handshakes.to_dict()
            extra["resumed"] = self.resumed
        return json.dumps(
            {
                "histogram": self.histogram.to_dict(),
                "elapsed_s": self.elapsed_s,
                **counters,
                **extra,
            }
        )

    @classmethod
    def from_wire(cls, config: BenchConfig, text: str) -> BenchResult:
        return cls.from_exact(config, json.loads(text))

    @classmethod
    def from_exact(cls, config: BenchConfig, data: Any) -> BenchResult:
        """The exact result from its JSON form; ValueError naming the field if it is not one."""
        if not isinstance(data, dict):
            raise ValueError("exact: must be an object")
        elapsed = data.get("elapsed_s")
        if (
            isinstance(elapsed, bool)
            or not isinstance(elapsed, int | float)
            or not 0 <= elapsed < 1e9  # NaN fails too
        ):
            raise ValueError("exact.elapsed_s: must be a number of seconds, 0 or more")
        histogram = LatencyHistogram.from_dict(data.get("histogram", {}), "exact.histogram")
        if not elapsed and histogram.count:  # requests in no time: an infinite rate
            raise ValueError(f"exact.elapsed_s: 0 seconds for {histogram.count} requests")
        result = cls(config, histogram, float(elapsed))
        for counter in _COUNTERS:
            setattr(result, counter, whole(data.get(counter), f"exact.{counter}"))
        if "connects" in data:
            result.connects = LatencyHistogram.from_dict(data["connects"] or {}, "exact.connects")
            failed = data.get("failed_connects")
            if not isinstance(failed, dict):
                raise ValueError("exact.failed_connects: must be an object")
            result.failed_connects = {
                str(k)[:40]: whole(v, f"exact.failed_connects.{str(k)[:40]}")
                for k, v in failed.items()
            }
        if "handshakes" in data:
            result.handshakes = LatencyHistogram.from_dict(
                data["handshakes"] or {}, "exact.handshakes"
            )
            result.resumed = whole(data.get("resumed", 0), "exact.resumed")
        return result

    def failure(self) -> str | None:
        """What went wrong, in one line; None when every measured request came back right."""
        if not self.errors and self.requests:
            return None
        connections = self.config.connections
        if self.connects is None and self.closed_connections + self.resets == connections:
            reset = f", {self.resets} with a reset" if self.resets else ""
            return f"the server closed every connection ({connections} of {connections}{reset})"
        if not self.errors:
            return "no request completed"
        parts = [f"{getattr(self, c)} {c}" for c in _COUNTERS[:5] if getattr(self, c)]
        parts += [f"{n} connects {why}" for why, n in sorted(self.failed_connects.items())]
        text = f"{self.errors} errors: {', '.join(parts)}"
        if self.closed_connections:
            text += f" (the server closed {plural(self.closed_connections, 'connection')})"
        if self.unsent:
            cap = inflight_cap(self.config)
            text += (
                "; requests were not sent when their connection was gone or the generator fell "
                f"behind (at most ~{cap} in flight per connection)"
            )
        return text

    def table(self) -> str:
        s = self.summary()
        head = ("requests", "req/s", "MiB/s", "min", "p50", "p90", "p99", "p99.9", "max", "errors")
        row = (
            str(s["requests"]),
            f"{s['rps']:.0f}",
            f"{s['mib_per_s']:.2f}",
            *(f"{s[k]:.0f}" for k in ("min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us")),
            str(s["errors"]),
        )
        widths = [max(len(a), len(b)) for a, b in zip(head, row, strict=True)]
        line = "  ".join
        lines = [
            line(h.rjust(w) for h, w in zip(head, widths, strict=True)) + "   (latency in us)",
            line(r.rjust(w) for r, w in zip(row, widths, strict=True)),
        ]
        if self.connects is not None:
            lines.append(self._connection_line(s))
        return "\n".join(lines)

    def _connection_line(self, s: dict[str, Any]) -> str:
        """'14230 connections/s; connect p50/p90/p99 45/80/210 us; tls ...; failed: 0'"""
        parts = [f"{s['connections_per_s']:.0f} connections/s"]
        for name in ("connect", "tls"):
            if f"{name}_p50_us" in s:
                values = "/".join(f"{s[f'{name}_p{p}_us']:.0f}" for p in (50, 90, 99))
                parts.append(f"{name} p50/p90/p99 {values} us")
        if "tls_resumed" in s:
            parts.append(f"resumed {s['tls_resumed']} of {s['requests']}")
        failed = s["failed_connects"]
        detail = ", ".join(f"{n} {reason}" for reason, n in failed.items())
        parts.append(f"failed connects: {detail}" if failed else "failed connects: 0")
        return "; ".join(parts)


def merge_reports(results: list[BenchResult]) -> BenchResult:
    """Results taken by separate runs (on several machines) as one report, exactly as one run
    of all their connections would have made it: the histograms and counters added, as a
    --workers run adds its workers'. They must have measured the same load shape."""
    first = results[0].config
    for result in results[1:]:
        other = result.config
        for name in ("size", "pipeline", "target"):
            if getattr(other, name) != getattr(first, name):
                raise BenchError(f"the results measured different loads ({name} differs)")
        if other.closed_loop != first.closed_loop:
            raise BenchError("the results measured different loads (open and closed loop)")
    config = dataclasses.replace(
        first,
        connections=sum(r.config.connections for r in results),
        rate=sum(r.config.rate for r in results),
        requests=sum(r.config.requests for r in results),
        workers=sum(r.config.workers for r in results),
    )
    return merge(results, config)


def merge(results: list[BenchResult], config: BenchConfig) -> BenchResult:
    total = BenchResult(config, LatencyHistogram(), 0.0)
    for result in results:
        total.merge(result)
    return total


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a report holds")

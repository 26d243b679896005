"""`aioecho check`'s cases, verdicts and reports (a table, JSON, JUnit XML): no I/O here, so
the report formats are unit-tested without a server."""

from __future__ import annotations

import enum
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import ConfigError

__all__ = [
    "TCP_CASES",
    "UDP_CASES",
    "CaseResult",
    "Report",
    "Verdict",
    "select_cases",
]


class Verdict(str, enum.Enum):
    OK = "OK"
    NON_STRICT = "NON-STRICT"  # works, but not as a strict echo server should (the detail says how)
    FAILED = "FAILED"  # bytes lost, changed, reordered, or a hang
    SKIPPED = "SKIPPED"  # does not apply here (the detail says why)


# name -> what it checks: in the order they run (cheap and basic first, so that a dead server
# fails on `basic` rather than on something subtle)
TCP_CASES: Final = {
    "basic": "the seed's three-part message comes back in order",
    "tls": "with --tls: what the handshake agreed; the certificate's names and days left",
    "binary": "every byte value, CR/LF runs and NULs come back unchanged",
    "fragmented": "one-byte writes, and one large write read back in any chunking",
    "large": "a bulk transfer read back while writing, SHA-256 compared",
    "half-close": "after our EOF: all the echo, then the server's EOF",
    "backpressure": "a peer that does not read is stopped after a bounded amount",
    "concurrency": "connections at once, each with its own pattern",
    "reset": "a connection reset mid-stream; the server still serves",
    "slow-reader": "a peer that does not read does not hold up another peer",
    "idle": "an idle connection still echoes",
    "path": "what a --reflect server saw: addresses translated, PROXY header, TLS ended",
    "idle-probe": "how long the path keeps an idle connection (with --idle-probe)",
}
UDP_CASES: Final = {
    "udp-basic": "a datagram comes back whole to its sender",
    "udp-sizes": "the largest datagram that comes back",
    "udp-burst": "datagrams at once: loss, duplicates and reordering",
    "udp-idle-probe": "how long the path keeps a UDP flow between datagrams (with --idle-probe)",
}
PROBES: Final = ("idle-probe", "udp-idle-probe")  # run only with --idle-probe
# run only when what they look at is asked for: the case -> the option that asks
ASKED: Final = {"tls": "--tls", "path": "--reflect"}


def select_cases(
    tcp: bool,
    udp: bool,
    only: Sequence[str],
    skip: Sequence[str],
    idle_probe: bool,
    asked: Sequence[str] = (),
) -> list[str]:
    """asked: the ASKED cases whose option was given ("tls", "path")."""
    """The cases to run, in their order; a name neither list knows is a ConfigError."""
    known = [*TCP_CASES, *UDP_CASES]
    for name in (*only, *skip):
        if name not in known:
            raise ConfigError(f"unknown case {name!r}: the cases are {', '.join(known)}")
    chosen = [
        name
        for name in known
        if (tcp if name in TCP_CASES else udp)
        and (name in only or not only)
        and (name not in PROBES or idle_probe)
        and (name not in ASKED or name in asked)
        and name not in skip
    ]
    for name in only:
        if name not in chosen and name not in skip:
            transport = "--udp" if name in UDP_CASES else "TCP (--tcp)"
            needs = "--idle-probe" if name in PROBES and not idle_probe else transport
            if name in ASKED and name not in asked:
                needs = ASKED[name]
            raise ConfigError(f"--only {name}: that case needs {needs}")
    if not chosen:
        raise ConfigError("--only and --skip leave no case to run")
    return chosen


@dataclass
class CaseResult:
    """One case's verdict, its key figure in words, and everything measured."""

    name: str
    verdict: Verdict
    detail: str
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.name,
            "verdict": self.verdict.value,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            **self.figures,
        }


NAME_WIDTH: Final = max(map(len, [*TCP_CASES, *UDP_CASES]))
VERDICT_WIDTH: Final = max(len(v.value) for v in Verdict)


def table_line(result: CaseResult) -> str:
    return f"{result.name:<{NAME_WIDTH}}  {result.verdict.value:<{VERDICT_WIDTH}}  {result.detail}"


@dataclass
class Report:
    target: str  # '127.0.0.1 port 10000 (TLS)'
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)  # version, command, start, addresses

    def counts(self) -> dict[str, int]:
        return {v.value: sum(r.verdict is v for r in self.results) for v in Verdict}

    @property
    def failed(self) -> bool:
        return any(r.verdict is Verdict.FAILED for r in self.results)

    def summary_line(self) -> str:
        parts = ", ".join(f"{n} {verdict}" for verdict, n in self.counts().items() if n)
        cut = [r.name for r in self.results if r.figures.get("cut")]
        said = f" (cut at the time they had: {', '.join(cut)})" if cut else ""
        return f"{parts} in {self.seconds:.1f}s{said}"

    def differences(self) -> list[str]:
        """With --all-addresses: a line per case whose verdict depends on the address."""
        by_case: dict[str, dict[str, str]] = {}
        for r in self.results:
            if "address" in r.figures:
                by_case.setdefault(r.name, {})[str(r.figures["address"])] = r.verdict.value
        return [
            f"{name} differs by address: "
            + ", ".join(f"{address} {verdict}" for address, verdict in verdicts.items())
            for name, verdicts in by_case.items()
            if len(set(verdicts.values())) > 1
        ]

    def to_json(self) -> str:
        document = {
            **self.meta,
            "target": self.target,
            "seconds": round(self.seconds, 3),
            "counts": self.counts(),
            "failed": self.failed,
            "cases": [r.to_dict() for r in self.results],
        }
        return json.dumps(document, indent=2)

    def to_junit(self) -> str:
        """JUnit XML as CI systems read it: FAILED is a failure, SKIPPED skipped, and
        NON-STRICT passes with its detail in system-out."""
        counts = self.counts()
        suite = ET.Element(
            "testsuite",
            name=f"aioecho check {self.target}",
            tests=str(len(self.results)),
            failures=str(counts[Verdict.FAILED.value]),
            skipped=str(counts[Verdict.SKIPPED.value]),
            errors="0",
            time=f"{self.seconds:.3f}",
        )
        for result in self.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname="aioecho.check",
                name=result.name,
                time=f"{result.seconds:.3f}",
            )
            if result.verdict is Verdict.FAILED:
                ET.SubElement(case, "failure", message=result.detail)
            elif result.verdict is Verdict.SKIPPED:
                ET.SubElement(case, "skipped", message=result.detail)
            ET.SubElement(case, "system-out").text = f"{result.verdict.value}: {result.detail}"
        ET.indent(suite)
        return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def first_difference(expected: bytes, got: bytes) -> int | None:
    """The offset of the first byte that differs, or None when one is a prefix of the other."""
    if expected[: len(got)] == got[: len(expected)]:
        return None
    return next(i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b)


def rate(nbytes: int, seconds: float) -> str:
    """'312.4 MiB/s'"""
    return f"{nbytes / 1024**2 / max(seconds, 1e-9):.1f} MiB/s"


def describe_ends(ends: Iterable[str]) -> str:
    """'3 reset, 1 silent' from ['reset', 'silent', 'reset', 'reset']"""
    tally: dict[str, int] = {}
    for how in ends:
        tally[how] = tally.get(how, 0) + 1
    return ", ".join(f"{n} {how}" for how, n in tally.items())

"""`aioecho check --html`: the report as one self-contained page to attach to a ticket. No
network fetches (inline CSS and SVG, no script), every value escaped; the verdict table, each
case's figure, and a small chart where a case has a series: idle-probe's bracket, udp-sizes'
sizes, large's rate.

Pure: builds a string from a Report; imports neither asyncio, socket nor ssl.
"""

from __future__ import annotations

import html
import math
from typing import Any, Final

from .report import CaseResult, Report, Verdict

__all__ = ["to_html"]

COLOURS: Final = {
    Verdict.OK: "#1a7f37",
    Verdict.NON_STRICT: "#9a6700",
    Verdict.FAILED: "#cf222e",
    Verdict.SKIPPED: "#57606a",
}
WIDTH: Final = 320  # px of a chart
STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1f2328; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #d0d7de;
         vertical-align: top; }
.verdict { font-weight: 600; white-space: nowrap; }
.meta td:first-child { color: #57606a; }
svg text { font: 11px system-ui, sans-serif; }
"""


def to_html(report: Report) -> str:
    """The whole page."""
    e = html.escape
    counts = ", ".join(f"{n} {verdict}" for verdict, n in report.counts().items() if n)
    rows = "\n".join(_row(result) for result in report.results)
    meta = "\n".join(
        f"<tr><td>{e(str(key))}</td><td>{e(_text(value))}</td></tr>"
        for key, value in report.meta.items()
    )
    differences = "".join(f"<p>{e(line)}</p>" for line in report.differences())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>aioecho check: {e(report.target)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>aioecho check: {e(report.target)}</h1>
<p><strong>{e(counts)}</strong> in {report.seconds:.1f}s</p>
{differences}
<table>
<tr><th>case</th><th>verdict</th><th>what was seen</th><th></th></tr>
{rows}
</table>
<h2>Run</h2>
<table class="meta">
{meta}
</table>
</body>
</html>
"""


def _row(result: CaseResult) -> str:
    e = html.escape
    colour = COLOURS[result.verdict]
    address = result.figures.get("address")
    name = f"{result.name} ({address})" if address else result.name
    return (
        f'<tr><td>{e(name)}</td><td class="verdict" style="color:{colour}">'
        f"{e(result.verdict.value)}</td><td>{e(result.detail)}</td>"
        f"<td>{_chart(result)}</td></tr>"
    )


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def _chart(result: CaseResult) -> str:
    """An inline SVG for the cases that have a series; '' for the others."""
    f = result.figures
    if "survived_s" in f:
        return _bracket(f["survived_s"], f.get("ended_s"))
    if "sizes" in f and isinstance(f["sizes"], dict):
        return _sizes(f["sizes"])
    if "mib_per_s" in f:
        return _rate(float(f["mib_per_s"]))
    return ""


def _svg(height: int, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{html.escape(label)}">{body}</svg>'
    )


def _bracket(survived: float, ended: float | None) -> str:
    """Idle time: survived up to here (green), ended from there (red)."""
    top = max(survived, ended or 0.0) * 1.1 or 1.0
    x = round(WIDTH * survived / top)
    body = f'<rect x="0" y="4" width="{x}" height="12" fill="#1a7f37"/>'
    label = f"survived {survived:g}s"
    if ended is not None:
        end = round(WIDTH * ended / top)
        body += f'<rect x="{end}" y="4" width="{max(1, WIDTH - end)}" height="12" fill="#cf222e"/>'
        label += f", ended {ended:g}s"
    body += f'<text x="0" y="30">{html.escape(label)}</text>'
    return _svg(34, body, label)


def _sizes(sizes: dict[str, Any]) -> str:
    """Each datagram size tried, on a log scale: whole (green), cut (amber), lost (red)."""
    bars, label = [], []
    ordered = sorted(sizes.items(), key=lambda item: int(item[0]))
    step = WIDTH / max(1, len(ordered))
    top = math.log2(max(int(size) for size, _ in ordered) + 1)
    for i, (size, outcome) in enumerate(ordered):
        colour = {"whole": "#1a7f37", "lost": "#cf222e"}.get(str(outcome), "#9a6700")
        height = max(2, round(40 * math.log2(int(size) + 1) / top))
        x = round(i * step)
        bars.append(
            f'<rect x="{x}" y="{44 - height}" width="{max(1, round(step) - 2)}" '
            f'height="{height}" fill="{colour}"/>'
        )
        label.append(f"{size} {outcome}")
    text = ", ".join(label)
    return _svg(46, "".join(bars), f"datagram sizes: {text}")


def _rate(mib_per_s: float) -> str:
    """The rate against a 1 GiB/s scale (log), with its figure."""
    x = round(WIDTH * min(1.0, math.log10(1 + mib_per_s) / math.log10(1 + 1024)))
    label = f"{mib_per_s:g} MiB/s"
    body = (
        f'<rect x="0" y="4" width="{max(1, x)}" height="12" fill="#0969da"/>'
        f'<text x="0" y="30">{html.escape(label)}</text>'
    )
    return _svg(34, body, label)

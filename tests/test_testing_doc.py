"""docs/testing.md runs as printed: its files written and its console blocks run in page order,
in a directory and a network namespace of their own (the page's redis-server on 6379); and
docs/toxiproxy.md's example."""

from __future__ import annotations

import re
from pathlib import Path

from console import network_namespace, run_block

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "testing.md"
PIECE = re.compile(r"^```(python|console)\n(.*?)^```", re.M | re.S)
FILE = re.compile(r"# file: (\S+)\n")


def test_the_page_runs_as_printed(tmp_path: Path) -> None:
    pieces = PIECE.findall(PAGE.read_text())
    assert [kind for kind, _ in pieces].count("console") >= 3
    with network_namespace() as prefix:
        # the page's blocks share one redis-server: run as one script, in page order
        run_block(_in_order(pieces, tmp_path), tmp_path, prefix)


def _in_order(pieces: list[tuple[str, str]], folder: Path) -> str:
    """One console block: each file written by a `cat` step where the page shows it, so the
    second cache.py replaces the first between the two runs."""
    lines = []
    for number, (kind, body) in enumerate(pieces):
        if kind == "python":
            name = FILE.match(body)
            assert name, f"a python block names its file: {body[:60]}"
            saved = folder / f".piece{number}"
            saved.write_text(body)
            lines.append(f"$ cp {saved.name} {name.group(1)}")
        else:
            lines.extend(body.splitlines())
    return "\n".join(lines) + "\n"


def test_the_toxiproxy_page_runs_as_printed(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "toxiproxy.md").read_text()
    found = PIECE.findall(page)
    assert [kind for kind, _ in found] == ["console"]
    with network_namespace() as prefix:
        run_block(found[0][1], tmp_path, prefix)

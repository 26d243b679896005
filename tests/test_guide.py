"""docs/protocols.md runs as printed: every command in its console blocks, every line it shows.

The blocks run as tests/console.py says (in bash, from the repository root, with the project's
environment first on PATH); the ports the page uses (7001-7099) are replaced by free ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from console import blocks as console_blocks
from console import free_port, run_block

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "protocols.md"
PAGE_PORT = re.compile(r"\b70\d\d\b")


def blocks() -> list[str]:
    return console_blocks(GUIDE.read_text())


def test_the_guide_has_commands_and_the_readme_links_it() -> None:
    assert len(blocks()) >= 6
    first_screen = (ROOT / "README.md").read_text().splitlines()[:30]
    assert any("docs/protocols.md" in line for line in first_screen)


@pytest.mark.parametrize("number", range(len(blocks())))
def test_guide_block_runs_as_printed(number: int) -> None:
    block = blocks()[number]
    ports: dict[str, str] = {}
    block = PAGE_PORT.sub(lambda m: ports.setdefault(m.group(0), str(free_port())), block)
    run_block(block, ROOT)

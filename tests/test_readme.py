"""README.md runs as printed: every console block (tests/console.py says how a block runs), in
a network namespace and an empty directory of its own, HOME included; and the library examples.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from console import blocks, network_namespace, run_block

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks() -> list[str]:
    return blocks(README.read_text())


def test_every_example_is_a_console_block() -> None:
    """An example outside a console block would not run here: the indented blocks that are
    left show output, tables or the set-up commands themselves, never an aioecho command."""
    text = README.read_text()
    assert len(readme_blocks()) >= 15
    indented = re.findall(r"(?:^    .*\n)+", re.sub(r"```.*?```", "", text, flags=re.S), re.M)
    commands = [
        line.strip()
        for block in indented
        for line in block.splitlines()
        if re.match(r"\s*(\$ )?(aioecho|printf|curl|socat|openssl|nc|redis-cli|systemd)\b", line)
    ]
    assert commands == []


@pytest.mark.timeout(300)
@pytest.mark.parametrize("number", range(len(readme_blocks())))
def test_readme_block_runs_as_printed(number: int, tmp_path: Path) -> None:
    with network_namespace() as prefix:
        run_block(readme_blocks()[number], tmp_path, prefix, home=tmp_path)


def test_readme_python_example_runs() -> None:
    readme = README.read_text()
    found = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert found, "the README has no python example"
    for block in found:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})

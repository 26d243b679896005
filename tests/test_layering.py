"""The pure modules stay pure: no asyncio, socket or ssl, directly or through another aioecho
module. Checked from the source (importing would not tell: asyncio is loaded anyway)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "aioecho"
# Parsers, settings, errors, address text, the UDP reply policy, histograms, statistics, ping's
# summary, check's report:
# the parts a unit test can take without a loop or a socket.
PURE = {
    "config", "errors", "addresses", "ratelimit", "latency", "stats", "pingstats", "checkreport",
    "checkhtml",
    "proxyheader",
}  # fmt: skip
FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "uvloop"}


def impurities(source: str, pure: set[str] = PURE) -> list[str]:
    """The imports of source that a pure module may not have: a forbidden top-level module, or
    an aioecho module that is not pure itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y, from . import x
                modules = [node.module] if node.module else [a.name for a in node.names]
                found += [f".{m}" for m in modules if m.split(".")[0] not in pure]
                continue
            names = [node.module or ""]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in FORBIDDEN]
    return found


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_module_imports_nothing_impure(module: str) -> None:
    assert impurities((PACKAGE / f"{module}.py").read_text()) == []


def test_the_check_catches_what_it_is_for() -> None:
    assert impurities("import asyncio") == ["asyncio"]
    assert impurities("from socket import AF_INET") == ["socket"]
    assert impurities("import ssl as tls") == ["ssl"]
    assert impurities("from .server import serve") == [".server"]
    assert impurities("from . import logs") == [".logs"]
    assert impurities("def f():\n    import asyncio.events\n") == ["asyncio.events"]
    assert impurities("from .errors import ConfigError\nimport os") == []

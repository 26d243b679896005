"""The layout is the architecture, checked from the source (importing would not tell: asyncio is
loaded anyway, and a lazy import runs only when its function does):

- the pure modules stay pure: no asyncio, socket or ssl, directly or through another module;
- no import circle, lazy imports included;
- a program package (server, client, bench, ping, check, proxy) imports the shared blocks beside
  it and no other program's package, except the edges in ALLOWED, each with its reason;
- the shared blocks import no program; only cli.py assembles them;
- every module stays readable: cli.py under 150 lines, every other under 600.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "aioecho"
README = PACKAGE.parent.parent / "README.md"
PROGRAMS = {"server", "client", "bench", "ping", "check", "proxy"}
# Program -> program imports that are the architecture, not a leak:
ALLOWED = {
    # bench, ping and check are clients: they connect to their target as the client does
    # (ClientConfig, its target options, connect(), the TLS warnings).
    ("bench", "client"): "a load generator connects as the client does",
    ("ping", "client"): "ping's target is a ClientConfig, with the client's target options",
    ("check", "client"): "check's target is a ClientConfig; it sends the seed's messages",
    # A proxy is a server whose protocol relays: it listens through the server's listeners,
    # registry and --workers supervisor, and shapes with the server's faults.
    ("proxy", "server"): "the proxy listens, drains and shapes as the server does",
}
# Besides cli.py and the package root, aioecho.testing assembles: it is the harness a user's
# tests import, made of the proxy's Hub and the server's serve(), as the CLI is made of programs.
ASSEMBLERS = ("", "cli", "__main__", "testing")
# Settings, parsers, errors, address text, the UDP reply policy, histograms, statistics, ping's
# summary, check's report: the parts a unit test can take without a loop or a socket.
PURE = {
    "version", "errors", "addresses", "units", "histogram", "roles", "reflection",
    "server.config", "server.ratelimit", "server.stats", "server.proxyheader",
    "client.config", "bench.config", "bench.result", "ping.config", "ping.stats",
    "check.config", "check.report", "check.html", "proxy.config", "proxy.spec",
}  # fmt: skip
FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "uvloop"}
MAX_LINES = {"cli": 150}
DEFAULT_MAX_LINES = 600


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name under aioecho ('server.serve'; a package's
    __init__ by the package's name, the root as '')."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, source: str, known: set[str]) -> tuple[set[str], list[str]]:
    """The aioecho modules that the module `name` imports anywhere in its source (a function's
    lazy import too), and the top-level non-aioecho modules it imports."""
    package = name.split(".") if name in known and _is_package(name) else name.split(".")[:-1]
    if name == "":
        package = []
    inner: set[str] = set()
    outer: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "aioecho" or alias.name.startswith("aioecho."):
                    inner.add(_nearest(alias.name.removeprefix("aioecho").lstrip("."), known))
                else:
                    outer.append(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif node.module and (node.module == "aioecho" or node.module.startswith("aioecho.")):
                base = []
                node_module = node.module.removeprefix("aioecho").lstrip(".")
                base = node_module.split(".") if node_module else []
                for alias in node.names:
                    inner.add(_nearest(".".join([*base, alias.name]).strip("."), known))
                continue
            else:
                outer.append(node.module or "")
                continue
            target = [*base, *(node.module.split(".") if node.module else [])]
            for alias in node.names:
                inner.add(_nearest(".".join([*target, alias.name]), known))
    inner.discard(name)
    return inner, outer


def _is_package(name: str) -> bool:
    return (PACKAGE.joinpath(*name.split(".")) / "__init__.py").exists()


def _nearest(dotted: str, known: set[str]) -> str:
    """'server.serve.Server' -> 'server.serve': the longest prefix that is a module."""
    parts = dotted.split(".") if dotted else []
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def graph() -> dict[str, set[str]]:
    known = set(modules())
    return {name: imports(name, path.read_text(), known)[0] for name, path in modules().items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing
    itself): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def program(name: str) -> str | None:
    head = name.split(".")[0]
    return head if head in PROGRAMS else None


def crossings(edges: dict[str, set[str]]) -> list[str]:
    """Imports from one program's package into another's not in ALLOWED, and from a shared
    block into any program (cli.py and the package root, which assemble, aside)."""
    bad = []
    for source, targets in edges.items():
        if source.split(".")[0] in ASSEMBLERS:
            continue
        for target in targets:
            mine, theirs = program(source), program(target)
            if theirs is None or mine == theirs:
                continue
            if mine is None or (mine, theirs) not in ALLOWED:
                bad.append(f"{source} -> {target}")
    return sorted(bad)


def impurities(name: str, source: str, pure: set[str] = PURE) -> list[str]:
    """The imports of a pure module that it may not have: a forbidden top-level module, or an
    aioecho module that is not pure itself."""
    inner, outer = imports(name, source, set(modules()) | pure)
    found = [module for module in outer if module.split(".")[0] in FORBIDDEN]
    return found + sorted(f"aioecho.{module}" for module in inner if module not in pure)


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_programs_import_only_shared_blocks_and_the_allowed_programs() -> None:
    assert crossings(graph()) == []


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_module_imports_nothing_impure(module: str) -> None:
    assert impurities(module, modules()[module].read_text()) == []


@pytest.mark.parametrize("module", sorted(modules()))
def test_modules_stay_readable(module: str) -> None:
    lines = modules()[module].read_text().count("\n")
    assert lines <= MAX_LINES.get(module, DEFAULT_MAX_LINES)


def test_the_checks_catch_what_they_are_for() -> None:
    assert impurities("units", "import asyncio") == ["asyncio"]
    assert impurities("units", "from socket import AF_INET") == ["socket"]
    assert impurities("units", "import ssl as tls") == ["ssl"]
    assert impurities("units", "from .server.serve import serve") == ["aioecho.server.serve"]
    assert impurities("ping.stats", "from .. import logs") == ["aioecho.logs"]
    assert impurities("units", "def f():\n    import asyncio.events\n") == ["asyncio.events"]
    assert impurities("units", "from .errors import ConfigError\nimport os") == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert crossings({"ping.engine": {"client.config", "errors"}}) == []
    assert crossings({"client.protocol": {"ping.stats"}}) == ["client.protocol -> ping.stats"]
    assert crossings({"server.serve": {"proxy.relay"}}) == ["server.serve -> proxy.relay"]
    assert crossings({"units": {"server.config"}}) == ["units -> server.config"]
    known = set(modules())
    lazy = "def f():\n    from ..ping import engine\n"
    assert imports("server.serve", lazy, known)[0] == {"ping.engine"}


def test_every_name_the_readme_imports_is_public() -> None:
    import aioecho

    shown = re.findall(r"^from aioecho import (.+)$", README.read_text(), re.MULTILINE)
    names = {name.strip() for line in shown for name in line.split(",")}
    assert names, "the README shows the library"
    assert names <= set(aioecho.__all__)
    for name in sorted(aioecho.__all__):
        assert getattr(aioecho, name) is not None

"""docs/protocols.md runs as printed: every command in its console blocks, every line it shows.

A console block is a script: `$ command` runs it (in bash, from the repository root, with the
project's environment first on PATH); `$ command &` starts it in the background, waits for the
first line the page shows under it, and sends it SIGINT when the block ends (in the order they
were started, each waited for). The lines under a command must appear in its output (stdout and
stderr), in order; other lines may come between them. Numbers are compared as "a number", since
timings, ports and sizes change from run to run; the ports the page uses (7001-7099) are
replaced by free ones.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import WAIT

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "protocols.md"
BLOCK = re.compile(r"^ *```console\n(.*?)^ *```", re.M | re.S)
PAGE_PORT = re.compile(r"\b70\d\d\b")


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)

    @property
    def background(self) -> bool:
        return self.command.endswith(" &")


def steps(block: str) -> list[Step]:
    found: list[Step] = []
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            found.append(Step(line[2:]))
        elif line and line != "..." and found:
            found[-1].expected.append(line)
    return found


def normal(line: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "#", line.strip())


def missing(expected: list[str], output: str) -> list[str]:
    """The expected lines not found, in order, among the output's lines (numbers aside)."""
    lines = [normal(ln) for ln in output.splitlines()]
    at = 0
    for want in expected:
        try:
            at = lines.index(normal(want), at) + 1
        except ValueError:
            return expected[expected.index(want) :]
    return []


class Background:
    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def wait_for(self, line: str) -> None:
        deadline = time.monotonic() + WAIT
        while missing([line], "".join(self.output)):
            ended = self.proc.poll() is not None and not self.reader.is_alive()
            assert not ended, f"it exited without {line!r}: {self.output}"
            assert time.monotonic() < deadline, f"no {line!r} in {self.output}"
            time.sleep(0.02)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(WAIT)
        self.reader.join(WAIT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return "".join(self.output)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def blocks() -> list[str]:
    return BLOCK.findall(GUIDE.read_text())


def test_the_guide_has_commands_and_the_readme_links_it() -> None:
    assert len(blocks()) >= 6
    first_screen = (ROOT / "README.md").read_text().splitlines()[:30]
    assert any("docs/protocols.md" in line for line in first_screen)


@pytest.mark.parametrize("number", range(len(blocks())))
def test_guide_block_runs_as_printed(number: int) -> None:
    block = blocks()[number]
    ports: dict[str, str] = {}
    block = PAGE_PORT.sub(lambda m: ports.setdefault(m.group(0), str(free_port())), block)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONASYNCIODEBUG", None)  # the page shows the normal output
    running: list[tuple[Step, Background]] = []
    try:
        for step in steps(block):
            if step.background:
                process = Background(step.command[:-2], env)
                running.append((step, process))
                if step.expected:
                    process.wait_for(step.expected[0])
                continue
            result = subprocess.run(
                ["bash", "-c", step.command],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"$ {step.command}\n{output}"
            assert not missing(step.expected, output), f"$ {step.command}\n{output}"
    finally:
        outputs = [(step, process.stop()) for step, process in running]
    for step, output in outputs:
        assert not missing(step.expected, output), f"$ {step.command}\n{output}"

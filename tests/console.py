"""Run a page's console blocks as printed (docs/protocols.md, README.md).

A console block is a script: `$ command` runs it in bash, with the project's environment first
on PATH; `$ command &` starts it in the background, waits for the first line the page shows
under it (or for every line above a `...` line under it), and sends it SIGINT when the block
ends (in the order they were started, each waited for). A command must exit 0, unless it ends
with a comment `# exit N`. The lines under a command must appear in its output (stdout and
stderr), in order; other lines may come between them. Numbers are compared as "a number", and
runs of spaces as one, since timings, ports and sizes change from run to run.

Where the commands run: in a directory (cwd), and optionally in a network namespace of their
own (a user and network namespace, loopback up, IPv4 and IPv6), so that a page may use the
ports it names, 10000 included, whatever else runs on the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from support import WAIT

BLOCK = re.compile(r"^ *```console\n(.*?)^ *```", re.M | re.S)
EXIT = re.compile(r"#\s*exit (\d+)\s*$")
COMMENT = re.compile(r"\s+#\s.*$")  # a comment after the command, as in `cmd &  # why`


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    ready: int = 1  # a background command is waited for until its first `ready` lines show

    @property
    def bare(self) -> str:
        """The command without its comment (and without a final &)."""
        return COMMENT.sub("", self.command).removesuffix(" &").rstrip()

    @property
    def background(self) -> bool:
        return COMMENT.sub("", self.command).endswith(" &")

    @property
    def status(self) -> int:
        match = EXIT.search(self.command)
        return int(match.group(1)) if match else 0


def blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def steps(block: str) -> list[Step]:
    found: list[Step] = []
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            found.append(Step(line[2:]))
        elif line == "..." and found and not found[-1].expected[found[-1].ready :]:
            found[-1].ready = len(found[-1].expected)  # the lines above: waited for
        elif line and line != "..." and found:
            found[-1].expected.append(line)
    return found


def normal(line: str) -> str:
    """Numbers as '#', runs of spaces as one (a table's columns follow its numbers' widths)."""
    return re.sub(r"\s+", " ", re.sub(r"\d+(\.\d+)?", "#", line.strip()))


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
    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
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


LOOPBACK_UP = """
import fcntl, socket, struct
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    request = struct.pack("16sh", b"lo", 0)
    flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, request))[1]  # SIOCGIFFLAGS
    fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP
"""


@contextlib.contextmanager
def network_namespace() -> Iterator[list[str]]:
    """A user and network namespace of its own, loopback up; yields the argv prefix that runs a
    command in it. Needs util-linux's unshare and nsenter, and user namespaces."""
    for tool in ("unshare", "nsenter"):
        assert shutil.which(tool), f"{tool} (util-linux) runs the page in a namespace"
    holder = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net", "sleep", "3600"])
    try:
        enter = ["nsenter", "-t", str(holder.pid), "--user", "--net", "--preserve-credentials"]
        deadline = time.monotonic() + WAIT
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare made no network namespace"
            time.sleep(0.01)
        subprocess.run([*enter, sys.executable, "-c", LOOPBACK_UP], check=True, timeout=WAIT)
        yield enter
    finally:
        holder.kill()
        holder.wait(WAIT)


def run_block(
    block: str, cwd: Path, prefix: list[str] | None = None, home: Path | None = None
) -> None:
    """Run a console block's steps in cwd (prefix: e.g. network_namespace()'s; home: HOME);
    fails on the first command that does not exit as the page says, or whose lines are not in
    its output."""
    prefix = prefix or []
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if home is not None:
        env["HOME"] = str(home)
    env.pop("PYTHONASYNCIODEBUG", None)  # the page shows the normal output
    running: list[tuple[Step, Background]] = []
    try:
        for step in steps(block):
            if step.background:
                process = Background([*prefix, "bash", "-c", f"exec {step.bare}"], cwd, env)
                running.append((step, process))
                for line in step.expected[: step.ready]:
                    process.wait_for(line)
                continue
            result = subprocess.run(
                [*prefix, "bash", "-c", step.command],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            output = result.stdout + result.stderr
            assert result.returncode == step.status, f"$ {step.command}\n{output}"
            assert not missing(step.expected, output), f"$ {step.command}\n{output}"
    finally:
        outputs = [(step, process.stop()) for step, process in running]
    for step, output in outputs:
        assert not missing(step.expected, output), f"$ {step.command}\n{output}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


__all__ = ["Step", "blocks", "free_port", "missing", "network_namespace", "run_block", "steps"]

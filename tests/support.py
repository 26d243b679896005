"""Helpers for the tests: CLI subprocesses synchronised on their log lines, raw peers, hashes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aioecho import loops

# TCP: '127.0.0.1 port 5', UDP: '127.0.0.1 port 5 (udp)', Unix: a path
LISTENING = re.compile(
    r"^main: listening on (\S+)(?: port (\d+))?( \(udp\))?"
    r"(?: \((?:socket activation|inherited)\))?$"  # sockets given rather than opened
)
LOOPS = ["asyncio", "uvloop"] if loops.resolve("auto") == "uvloop" else ["asyncio"]
WAIT = 30.0  # seconds: an upper bound for events that normally take milliseconds


def aioecho_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "aioecho", *args]


class ServerProcess:
    """`aioecho server` in a subprocess; start() returns once it prints its listening lines."""

    def __init__(
        self,
        *args: str,
        preexec_fn: object = None,
        program: str = "server",
        env: dict[str, str] | None = None,
        command: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> None:
        """env: variables added to this process's; command: run this instead of the CLI (a
        wrapper such as systemd-socket-activate, followed by the CLI's command line)."""
        self.args = args
        self.proc = subprocess.Popen(
            [*command, *aioecho_command(program, *args)],
            env={**os.environ, **env} if env is not None else None,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,  # type: ignore[arg-type]
        )
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.addresses: list[tuple[str, int]] = []

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._new_line:
                self.lines.append(line.rstrip("\n"))
                self._new_line.notify_all()
        with self._new_line:
            self.lines.append("<EOF>")
            self._new_line.notify_all()

    def wait_for_line(self, pattern: str, timeout: float = WAIT) -> str:
        """The first log line matching the regular expression; fails on timeout or exit."""
        regex = re.compile(pattern)
        with self._new_line:
            found = self._new_line.wait_for(
                lambda: any(regex.search(ln) or ln == "<EOF>" for ln in self.lines), timeout
            )
            match = next((ln for ln in self.lines if regex.search(ln)), None)
        assert found and match is not None, f"no line {pattern!r} in {self.lines}"
        return match

    def start(self, listeners: int = 1) -> ServerProcess:
        self.wait_for_line(r"^main: listening on ")
        with self._new_line:
            announced = self._new_line.wait_for(
                lambda: sum(bool(LISTENING.match(ln)) for ln in self.lines) >= listeners, WAIT
            )
            assert announced, f"fewer than {listeners} listening lines in {self.lines}"
            self.addresses = [
                (m.group(1), int(m.group(2) or 0))
                for ln in self.lines
                if (m := LISTENING.match(ln))
            ]
        return self

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(WAIT)
        self._reader.join(WAIT)
        return rc

    def wait(self) -> int:
        """The exit status, once the server exits by itself."""
        rc = self.proc.wait(WAIT)
        self._reader.join(WAIT)
        return rc

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        # --workers: workers run in sessions of their own; a failed test must not leave them
        # holding the stderr pipe (and this reader) open
        for line in list(self.lines):
            if match := re.search(r"^main: worker \d+ started \(pid (\d+)\)$", line):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(match.group(1)), signal.SIGKILL)
        self._reader.join(WAIT)
        if self.proc.stderr and not self._reader.is_alive():
            self.proc.stderr.close()

    def rss_kib(self) -> int:
        """Resident memory of the server process."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def run_cli(
    *args: str, input: bytes = b"", timeout: float = WAIT
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        aioecho_command(*args), input=input, capture_output=True, timeout=timeout, check=False
    )


def error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The one-line error of a CLI run that failed with exit status 1: its last stderr line."""
    assert result.returncode == 1, result.stderr
    return result.stderr.decode().splitlines()[-1]


def pattern_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def exchange(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Send data with a blocking socket, half-close, and read the echo until EOF (two threads,
    since an echo client that sends everything before reading deadlocks on large data)."""
    with socket.create_connection((host, port), timeout=WAIT) as sock:

        def send() -> None:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
        sender.join(WAIT)
        return b"".join(chunks)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def require_tool(name: str) -> str:
    """The path of a peer program; skip without it, except under CI=true, where it must exist."""
    import pytest

    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


@contextlib.contextmanager
def raw_listener(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    """A listening socket that is not an echo server: for refused/silent/wrong-echo cases."""
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


def in_thread_loop(loop_name: str) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """An event loop running forever in a daemon thread."""
    factory = {"asyncio": asyncio.new_event_loop}.get(loop_name)
    if factory is None:
        import uvloop

        factory = uvloop.new_event_loop
    loop = factory()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


def lines_without(lines: Sequence[str], *prefixes: str) -> list[str]:
    return [ln for ln in lines if not ln.startswith(prefixes)]


STATS = re.compile(r"^stats: (.*)$")


def stats_now(server: ServerProcess) -> dict[str, int]:
    """Ask the server for its statistics (SIGUSR1) and read the line it logs."""
    before = sum(bool(STATS.match(ln)) for ln in server.lines)
    server.proc.send_signal(signal.SIGUSR1)
    with server._new_line:
        logged = server._new_line.wait_for(
            lambda: sum(bool(STATS.match(ln)) for ln in server.lines) > before, WAIT
        )
        assert logged, f"no stats line after SIGUSR1: {server.lines[-5:]}"
        line = [ln for ln in server.lines if STATS.match(ln)][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in line[len("stats: ") :].split())}


def wait_for_stats(server: ServerProcess, **expected: int) -> dict[str, int]:
    """Poll the statistics until they show `expected` (connections close asynchronously); fail
    with the last figures if they do not within WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        stats = stats_now(server)
        if all(stats[k] == v for k, v in expected.items()):
            return stats
        assert time.monotonic() < deadline, f"stats never showed {expected}: last {stats}"
        time.sleep(0.05)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(condition: Callable[[], bool], what: str = "the condition") -> None:
    """Poll condition() until it holds; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"{what} never held"
        time.sleep(0.02)


def flood_without_reading(port: int, most: int = 256 << 20) -> int:
    """Send up to `most` bytes on a connection that never reads its echo, until the peer has
    taken nothing for a second; return how many bytes it took."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sent = 0
    try:
        while sent < most:
            sent += sock.send(b"x" * (1 << 20))
    except TimeoutError:
        pass  # the peer stopped reading
    finally:
        sock.close()
    return sent


def reader_goes_away(
    args: Sequence[str], first: Callable[[Any], bytes], stdin: Any = subprocess.DEVNULL
) -> tuple[int | None, list[str], bytes]:
    """Run the CLI with a reader on its stdout that takes what first(stdout) reads, then goes
    away as `| head` does; return its exit status, its stderr lines and what was read."""
    proc = subprocess.Popen(
        aioecho_command(*args), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        got = first(proc.stdout)
        proc.stdout.close()
        status: int | None = proc.wait(WAIT)
    finally:
        proc.kill()
    lines = proc.stderr.read().decode().splitlines()
    proc.stderr.close()
    return status, lines, got


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free now, for peers that cannot listen on port 0 and say which they got."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int, udp: bool = False) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc (connecting to find out
    would use up netcat's one connection)."""
    table = Path("/proc/net/udp" if udp else "/proc/net/tcp").read_text().splitlines()[1:]
    wanted = f"0100007F:{port:04X}"
    state = "07" if udp else "0A"  # UDP: unconnected; TCP: LISTEN
    return any(row.split()[1] == wanted and row.split()[3] == state for row in table)


@contextlib.contextmanager
def peer(command: list[str], port: int, udp: bool = False, **popen: Any) -> Iterator[None]:
    """A peer program in a process group of its own, ended with everything it forked (socat's
    `fork` children never see a close on UDP)."""
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True, **popen)
    try:
        wait_until(lambda: listening(port, udp) or proc.poll() is not None, f"{command} listening")
        assert proc.poll() is None, f"{command} exited: {proc.returncode}"
        yield
    finally:
        end_group(proc)


def end_group(proc: subprocess.Popen[Any]) -> None:
    """Kill a process started with start_new_session=True and its whole group; reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    proc.wait(WAIT)


# HAProxy in TCP mode, in front of the servers a test starts (the tests add frontend and backend)
HAPROXY_DEFAULTS = """\
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""

"""Peers nobody here wrote: OpenBSD netcat and socat get exact echoes."""

from __future__ import annotations

import subprocess

from support import WAIT, ServerProcess, pattern_bytes, require_tool, sha256


def test_netcat_gets_exact_echo() -> None:
    nc = require_tool("nc")
    data = pattern_bytes(4 << 20, seed=21)
    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        # -N: shut down the socket's write side at EOF on stdin (OpenBSD netcat)
        result = subprocess.run(
            [nc, "-N", "127.0.0.1", str(server.port)], input=data, capture_output=True, timeout=WAIT
        )
        assert result.returncode == 0, result.stderr
        assert sha256(result.stdout) == sha256(data)
        assert server.stop() == 0


def test_socat_gets_exact_echo() -> None:
    socat = require_tool("socat")
    data = pattern_bytes(4 << 20, seed=22)
    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        # -t: after stdin's EOF, wait this long for the echo to finish (default 0.5s)
        result = subprocess.run(
            [socat, "-t", str(WAIT), "-", f"TCP:127.0.0.1:{server.port}"],
            input=data,
            capture_output=True,
            timeout=WAIT,
        )
        assert result.returncode == 0, result.stderr
        assert sha256(result.stdout) == sha256(data)
        assert server.stop() == 0

"""`aioecho server --workers N`: connections spread over workers, a killed worker comes back,
SIGTERM stops them all cleanly."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
from pathlib import Path

from support import WAIT, ServerProcess, run_cli
from transports import short_unix_path


def test_connections_reach_several_workers_and_a_killed_worker_returns() -> None:
    with ServerProcess("--workers", "2", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        started = [server.wait_for_line(rf"^main: worker {n} started \(pid \d+\)$") for n in (1, 2)]
        server.wait_for_line(r"^worker1: main: using ")
        server.wait_for_line(r"^worker2: main: using ")
        socks = [
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) for _ in range(40)
        ]
        for sock in socks:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
            sock.close()
        with server._new_line:
            server._new_line.wait_for(
                lambda: sum("connection accepted" in ln for ln in server.lines) >= 40, WAIT
            )
            workers = {ln.split(":")[0] for ln in server.lines if "connection accepted" in ln}
        assert workers == {"worker1", "worker2"}

        pid = int(re.search(r"pid (\d+)", started[0]).group(1))  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        server.wait_for_line(
            rf"^main: worker 1 \(pid {pid}\) exited with status -9: restarting it$"
        )
        server.wait_for_line(rf"^main: worker 1 started \(pid (?!{pid}\))\d+\)$")
        assert run_cli("client", "--port", str(server.port)).returncode == 0
        assert server.stop() == 0
    assert server.lines[-2] == "main: closing server: every worker has stopped"
    assert not [ln for ln in server.lines if "Traceback" in ln]


def test_workers_share_udp_and_unix_sockets() -> None:
    with ServerProcess(
        "--workers", "2", "--tcp", "--udp", "--host", "127.0.0.1", "--port", "0"
    ) as server:
        server.start(listeners=2)
        assert server.addresses[0][1] == server.addresses[1][1]
        assert run_cli("client", "--udp", "--port", str(server.port), "datagram").returncode == 0
        assert run_cli("client", "--port", str(server.port)).returncode == 0
        assert server.stop() == 0
    path = short_unix_path()
    try:
        with ServerProcess("--workers", "2", "--unix", path) as server:
            server.start()
            assert run_cli("client", "--unix", path).returncode == 0
            assert server.stop() == 0
        assert not Path(path).exists()
    finally:
        shutil.rmtree(Path(path).parent, ignore_errors=True)

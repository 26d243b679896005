"""deploy/container/Containerfile, which no test here can build (no container daemon): its
structure (a slim Python base, a user of its own, the metrics extra, a health check against
/healthz, SIGTERM to stop), and its command and health check run as written, in a network
namespace of their own, with the environment the image sets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console import network_namespace
from support import WAIT

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def one(name: str) -> str:
    values = [rest for word, rest in instructions() if word == name]
    assert len(values) == 1, (name, values)
    return values[0]


def exec_form(text: str) -> list[str]:
    argv = json.loads(text)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), text
    return argv


def test_the_image_is_slim_unprivileged_and_stops_gracefully() -> None:
    assert re.fullmatch(r"\S*python:3\.\d+-slim", one("FROM"))
    user = one("USER")
    assert user not in ("root", "0") and f" {user}" in one("RUN")  # made by useradd there
    assert '"/src[metrics]"' in one("RUN")
    assert one("STOPSIGNAL") == "SIGTERM"
    command = exec_form(one("CMD"))
    assert command[:2] == ["aioecho", "server"]
    metrics_port = command[command.index("--metrics") + 1].rsplit(":", 1)[1]
    health = one("HEALTHCHECK")
    assert health.split(" CMD ")[0].startswith("--interval=")
    probe = exec_form(health.split(" CMD ", 1)[1])
    assert f"127.0.0.1:{metrics_port}/healthz" in " ".join(probe)
    exposed = one("EXPOSE").split()
    assert {"10000/tcp", f"{metrics_port}/tcp"} <= set(exposed)
    if "--udp" in command:
        assert "10000/udp" in exposed


@pytest.mark.timeout(120)
def test_the_command_and_the_health_check_run_as_written(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")  # the metrics extra, which the image installs
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for word, rest in instructions():
        if word == "ENV":
            name, _, value = rest.partition("=")
            env[name] = value
    command = exec_form(one("CMD"))
    probe = exec_form(one("HEALTHCHECK").split(" CMD ", 1)[1])
    with network_namespace() as prefix:
        server = subprocess.Popen(
            [*prefix, *command], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
        )
        try:
            assert server.stderr is not None
            lines = []
            for line in server.stderr:  # AIOECHO_QUIET=1: the listening lines still show
                lines.append(line)
                if line.startswith("main: listening on 0.0.0.0 port 10000 (udp)"):
                    break
            assert any(ln.startswith("main: metrics on http://0.0.0.0:") for ln in lines), lines
            checked = subprocess.run([*prefix, *probe], env=env, timeout=WAIT, check=False)
            assert checked.returncode == 0
            started = time.monotonic()
            server.send_signal(getattr(signal, one("STOPSIGNAL")))
            assert server.wait(WAIT) == 0
            assert time.monotonic() - started < 10  # before a runtime's SIGKILL
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(WAIT)
            if server.stderr is not None:
                server.stderr.close()

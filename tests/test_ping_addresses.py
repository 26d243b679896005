"""ping -4, -6 and --all-addresses: one address family, or each address of a dual-stack name
in turn with the figures side by side. The name is dual.test, in an /etc/hosts of the test's
own (a user and mount namespace: unshare, util-linux), since this machine's localhost is IPv4
only."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from support import ServerProcess, aioecho_command


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")


def ping(hosts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """aioecho ping with dual.test in its /etc/hosts: 127.0.0.1 and ::1."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) gives the test an /etc/hosts of its own"
    command = " ".join(f"'{arg}'" for arg in aioecho_command("ping", *args))
    script = f"mount --bind {hosts} /etc/hosts && exec {command}"
    return subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1 dual.test\n::1 dual.test\n")
    return path


def test_each_address_in_turn_then_side_by_side(hosts: Path) -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--host", "::1", "--port", "0") as server:
        server.start(listeners=2)
        port = ["--host", "dual.test", "--port", str(server.port)]
        both = ping(hosts, *port, "--all-addresses", "-c", "3", "-i", "0.01")
        six = ping(hosts, *port, "-6", "-c", "2", "-i", "0.01", "--json")
        four = ping(hosts, *port, "-4", "-c", "2", "-i", "0.01", "--json")
    assert both.returncode == 0, both.stderr
    out = both.stdout.splitlines()
    title = "--- dual.test: 2 addresses side by side ---"
    assert title in out, out
    side = out[out.index(title) + 1 :]
    assert sorted(line.split(": 3 sent")[0] for line in side) == ["127.0.0.1", "::1"], side
    assert all("3 sent, 3 received, 0% loss" in line for line in side), side
    for family, done, address in ((6, six, "::1"), (4, four, "127.0.0.1")):
        assert done.returncode == 0, (family, done.stderr)
        probes = [json.loads(line) for line in done.stdout.splitlines()][:-1]
        assert {p["peer"] for p in probes} == {f"{address} port {server.port}"}


def test_all_addresses_needs_a_count(hosts: Path) -> None:
    done = ping(hosts, "--host", "dual.test", "--all-addresses")
    assert done.returncode == 2 and "give --count" in done.stderr

"""`aioecho proxy --api` driven by Toxiproxy clients nobody here wrote, unchanged, each through
its own documented usage, in front of a real redis-server: toxiproxy-python (PyPI) and
toxiproxy-node-client (npm, installed by `npm ci` into a temporary folder). Where a documented
call does not work, aioecho is wrong, not the client."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from support import WAIT, aioecho_command, free_port, require_tool, wait_until

NODE_SCENARIO = Path(__file__).parent / "toxiproxy_node"
API_LINE = re.compile(r"api on http://(\S+) ")


class ApiProcess:
    """`aioecho proxy --api 127.0.0.1:0` in a subprocess, its address read from its log."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            aioecho_command("proxy", "--api", "127.0.0.1:0", *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.lines: list[str] = []
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            found = API_LINE.search(line)
            if found:
                self.url = f"http://{found.group(1)}"
                self.host, port = found.group(1).rsplit(":", 1)
                self.port = int(port)
                return
        raise AssertionError(f"no api line: {self.lines}")

    def stop(self) -> str:
        self.proc.terminate()
        _, rest = self.proc.communicate(timeout=WAIT)
        return rest


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    server = require_tool("redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_timeout=WAIT)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, "redis-server to answer")
        client.close()
        yield port
    finally:
        proc.terminate()
        proc.wait(WAIT)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess("--journal", str(tmp_path / "events.ndjson"), "--seed", "7")
    try:
        yield process
    finally:
        process.stop()


def test_toxiproxy_python_drives_it_unchanged(api: ApiProcess, redis_port: int) -> None:
    from toxiproxy import Toxiproxy

    server = Toxiproxy()
    server.update_api_consumer(api.host, api.port)
    assert server.running()
    assert b"version" in server.version()
    proxy = server.create(upstream=f"127.0.0.1:{redis_port}", name="redis")
    assert proxy.enabled
    port = int(proxy.listen.rsplit(":", 1)[1])
    client = redis.Redis(port=port, socket_timeout=5)
    client.set("key", "value")
    assert client.get("key") == b"value"  # the connection is open before the toxic comes

    proxy.add_toxic(type="latency", attributes={"latency": 300})
    started = time.perf_counter()
    assert client.get("key") == b"value"
    took = time.perf_counter() - started
    assert took >= 0.3, f"a GET took {took:.3f}s under 300 ms of latency (open connection)"
    assert set(proxy.toxics()) == {"latency_downstream"}
    assert proxy.get_toxic("latency_downstream").attributes == {"latency": 300, "jitter": 0}
    proxy.destroy_toxic("latency_downstream")
    started = time.perf_counter()
    client.get("key")
    assert time.perf_counter() - started < 0.3

    client.set("big", "x" * 3000)
    proxy.add_toxic(type="bandwidth", attributes={"rate": 2})  # 2 KB/s
    started = time.perf_counter()
    assert client.get("big") == b"x" * 3000
    took = time.perf_counter() - started
    assert took >= 1.0, f"3 KB at 2 KB/s came in {took:.3f}s"
    proxy.destroy_toxic("bandwidth_downstream")

    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    slow = redis.Redis(port=port, socket_timeout=0.5)
    with pytest.raises(redis.TimeoutError):
        slow.get("key")
    slow.close()
    proxy.destroy_toxic("timeout_downstream")

    proxy.add_toxic(type="reset_peer", attributes={"timeout": 0})
    fresh = redis.Redis(port=port, socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        fresh.get("key")
    fresh.close()
    proxy.destroy_toxic("reset_peer_downstream")

    proxy.add_toxic(type="limit_data", stream="downstream", attributes={"bytes": 10})
    limited = redis.Redis(port=port, socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        limited.get("big")
    limited.close()
    proxy.destroy_toxic("limit_data_downstream")

    with proxy.down():
        assert not server.get_proxy("redis").enabled
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=port, socket_timeout=5).get("key")
    assert server.get_proxy("redis").enabled
    again = redis.Redis(port=port, socket_timeout=5)
    assert again.get("key") == b"value"

    proxy.add_toxic(type="latency", attributes={"latency": 1000})
    assert server.reset()
    assert proxy.toxics() == {}
    assert (
        server.populate(
            [{"name": "redis", "upstream": f"127.0.0.1:{redis_port}", "listen": proxy.listen}]
        )
        == []
    )  # the same proxy: left as it is
    assert server.destroy(proxy)
    assert server.proxies() == {}
    for c in (client, again):
        c.close()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_timeout=5).get("key")


def test_toxiproxy_node_client_drives_it_unchanged(
    api: ApiProcess, redis_port: int, tmp_path: Path
) -> None:
    npm = require_tool("npm")
    node = require_tool("node")
    folder = tmp_path / "node"
    shutil.copytree(NODE_SCENARIO, folder)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
    )
    done = subprocess.run(
        [node, "scenario.js", api.url, str(redis_port)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line.split()[0] for line in done.stdout.splitlines()]
    assert steps == [
        "version", "create", "latency", "update", "bandwidth", "timeout", "reset_peer",
        "limit_data", "disable", "reset", "populate", "all",
    ]  # fmt: skip


def test_the_journal_names_every_toxic_that_fired_with_its_connection(
    api: ApiProcess, redis_port: int, tmp_path: Path
) -> None:
    base = api.url
    made = requests.post(
        f"{base}/proxies",
        json={
            "name": "redis",
            "upstream": f"127.0.0.1:{redis_port}",
            "listen": "127.0.0.1:0",
            "toxics": [{"type": "reset_peer", "attributes": {"timeout": 0}, "toxicity": 0.5}],
        },
        timeout=WAIT,
    )
    assert made.status_code == 201
    port = int(made.json()["listen"].rsplit(":", 1)[1])
    outcomes = [_ping(port) for _ in range(20)]  # one connection each, no retry
    wait_until(lambda: _closed(base) == 20, "20 connections closed in the journal")
    events = [
        json.loads(line) for line in requests.get(f"{base}/events", timeout=WAIT).text.splitlines()
    ]
    applied = {e["connection"] for e in events if e["event"] == "toxic_applied"}
    reset = {
        e["connection"]
        for e in events
        if e["event"] == "connection_closed" and e.get("toxic") == "reset_peer_downstream"
    }
    assert applied == reset
    assert [o == "reset" for o in outcomes] == [n in applied for n in range(1, 21)]
    assert 0 < len(applied) < 20
    written = (tmp_path / "events.ndjson").read_text().splitlines()
    assert [json.loads(line) for line in written] == events
    since = requests.get(f"{base}/events?since={events[-2]['seq']}", timeout=WAIT)
    assert [json.loads(line) for line in since.text.splitlines()] == events[-1:]


def _ping(port: int) -> str:
    """An inline PING on a connection of its own: '+PONG', or 'reset'."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"PING\r\n")
        try:
            return sock.recv(64).decode().strip() or "closed"
        except ConnectionResetError:
            return "reset"


def _closed(base: str) -> int:
    text = requests.get(f"{base}/events", timeout=WAIT).text
    return sum('"connection_closed"' in line for line in text.splitlines())

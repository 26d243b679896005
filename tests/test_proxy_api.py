"""The proxy's API beyond what a client's scenario shows: Toxiproxy's status codes and error
texts, the JSON shapes field by field, our additions (seeded toxicity, match, config file,
scenarios, limit_time, blackhole, corrupt), and the HTTP bounds."""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from aioecho.proxy.api import answer
from aioecho.proxy.hub import Hub
from aioecho.proxy.spec import ApiError, decides, parse_proxy, parse_toxic, shaping
from aioecho.testing import echo_server, fault_proxy, latency
from support import WAIT, free_port, pattern_bytes, run_cli, wait_until
from test_toxiproxy_clients import ApiProcess


def call(hub: Hub, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    """One request through the API's routing, on the running loop."""
    raw = b"" if body is None else json.dumps(body).encode()
    status, kind, data = asyncio.get_event_loop().run_until_complete(
        answer(hub, method, target, raw)
    )
    return status, json.loads(data) if data and kind.startswith("application/json") else data


@pytest.fixture
def hub() -> Iterator[Hub]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    made = Hub(seed=1)
    yield made
    loop.run_until_complete(made.close())
    asyncio.set_event_loop(None)
    loop.close()


UPSTREAM = "127.0.0.1:9"  # never connected to in these tests


def test_status_codes_and_error_texts_are_toxiproxys(hub: Hub) -> None:
    assert call(hub, "GET", "/proxies") == (200, {})
    status, made = call(hub, "POST", "/proxies", {"name": "a", "upstream": UPSTREAM})
    assert status == 201
    assert set(made) == {"name", "listen", "upstream", "enabled", "toxics"}
    assert made["enabled"] is True and made["toxics"] == []
    assert made["listen"].startswith("127.0.0.1:") and not made["listen"].endswith(":0")
    assert call(hub, "POST", "/proxies", {"name": "a", "upstream": UPSTREAM}) == (
        409, {"error": "proxy already exists", "status": 409},
    )  # fmt: skip
    assert call(hub, "POST", "/proxies", {"upstream": UPSTREAM}) == (
        400, {"error": "missing required field: name", "status": 400},
    )  # fmt: skip
    assert call(hub, "GET", "/proxies/b") == (404, {"error": "proxy not found", "status": 404})
    assert call(hub, "GET", "/proxies/a/toxics/x") == (
        404, {"error": "toxic not found", "status": 404},
    )  # fmt: skip
    assert call(hub, "POST", "/proxies/a/toxics", {"type": "nope"}) == (
        400, {"error": "invalid toxic type", "status": 400},
    )  # fmt: skip
    assert call(hub, "POST", "/proxies/a/toxics", {"type": "latency", "stream": "sideways"}) == (
        400, {"error": "stream was invalid, can be either upstream or downstream", "status": 400},
    )  # fmt: skip
    status, toxic = call(hub, "POST", "/proxies/a/toxics", {"type": "latency"})
    assert (status, toxic) == (200, {
        "name": "latency_downstream", "type": "latency", "stream": "downstream",
        "toxicity": 1.0, "attributes": {"latency": 0, "jitter": 0},
    })  # fmt: skip
    assert call(hub, "POST", "/proxies/a/toxics", {"type": "latency"})[0] == 409
    status, body = call(
        hub,
        "POST",
        "/proxies/a/toxics",
        {"type": "latency", "name": "l2", "attributes": {"latency": "slow"}},
    )
    assert status == 400 and body["error"].startswith("bad request body: ")
    assert call(hub, "DELETE", "/proxies/a/toxics/latency_downstream") == (204, b"")
    assert call(hub, "DELETE", "/proxies/a/toxics/latency_downstream")[0] == 404
    assert call(hub, "POST", "/reset") == (204, b"")
    assert call(hub, "DELETE", "/proxies/a") == (204, b"")
    assert call(hub, "GET", "/nowhere") == (404, b"404 page not found\n")
    assert call(hub, "DELETE", "/proxies")[0] == 405
    status, body = call(hub, "GET", "/version")
    assert status == 200 and set(body) == {"version"}


def test_an_update_keeps_what_it_does_not_name(hub: Hub) -> None:
    call(hub, "POST", "/proxies", {"name": "a", "upstream": UPSTREAM})
    call(hub, "POST", "/proxies/a/toxics",
         {"type": "slicer", "attributes": {"average_size": 10, "delay": 5}})  # fmt: skip
    status, toxic = call(hub, "POST", "/proxies/a/toxics/slicer_downstream",
                         {"attributes": {"size_variation": 3}})  # fmt: skip
    assert status == 200
    assert toxic["attributes"] == {"average_size": 10, "size_variation": 3, "delay": 5}
    status, proxy = call(hub, "PATCH", "/proxies/a", {"enabled": False})
    assert (status, proxy["enabled"], proxy["upstream"]) == (200, False, UPSTREAM)
    status, proxy = call(hub, "POST", "/proxies/a", {"enabled": True})
    assert proxy["enabled"] is True


def test_populate_makes_replaces_and_keeps(hub: Hub) -> None:
    status, body = call(hub, "POST", "/populate", [
        {"name": "a", "upstream": UPSTREAM}, {"name": "b", "upstream": UPSTREAM},
    ])  # fmt: skip
    assert status == 201 and [p["name"] for p in body["proxies"]] == ["a", "b"]
    listen_a = body["proxies"][0]["listen"]
    status, body = call(hub, "POST", "/populate", [
        {"name": "a", "upstream": UPSTREAM, "listen": listen_a},
        {"name": "b", "upstream": "127.0.0.1:10"},
    ])  # fmt: skip
    assert body["proxies"][0]["listen"] == listen_a  # kept
    assert body["proxies"][1]["upstream"] == "127.0.0.1:10"  # replaced
    assert call(hub, "POST", "/populate", {"name": "x"})[0] == 400


def test_toxicity_is_seeded_and_exact() -> None:
    half = parse_toxic({"type": "latency", "toxicity": 0.5})
    never = parse_toxic({"type": "latency", "toxicity": 0.0})
    first = [decides(42, n, half) for n in range(1, 1001)]
    assert first == [decides(42, n, half) for n in range(1, 1001)]  # run to run
    assert first != [decides(43, n, half) for n in range(1, 1001)]
    assert 400 < sum(first) < 600
    assert not any(decides(s, n, never) for s in range(5) for n in range(1, 1001))


def test_bad_input_is_one_400_each() -> None:
    for body in (
        [], {"type": "latency", "toxicity": 2}, {"type": "latency", "toxicity": True},
        {"type": "latency", "attributes": {"latency": -1}},
        {"type": "latency", "attributes": {"latency": 1.5}},
        {"type": "latency", "attributes": {"latency": 10**12}},
        # JSON's Infinity, NaN, 1e400 and a 400-digit integer: int() raised, a 500 and a traceback
        {"type": "latency", "attributes": {"latency": float("inf")}},
        {"type": "latency", "attributes": {"jitter": float("nan")}},
        {"type": "latency", "attributes": {"latency": 10**400}},
        {"type": "corrupt", "attributes": {"probability": float("nan")}},
        {"type": "slicer", "attributes": {"average_size": 5, "size_variation": 5}},
        {"type": "corrupt", "attributes": {"probability": 1.5}},
        {"type": "latency", "match": {"source": "not-a-network"}},
        {"type": "latency", "match": {"every": 0}},
        {"type": "latency", "name": "x" * 201},
    ):  # fmt: skip
        with pytest.raises(ApiError) as caught:
            parse_toxic(body)
        assert caught.value.status == 400, body
    for body in ({"name": "a", "upstream": "nohost"}, {"name": "a", "upstream": "h:0"},
                 {"name": "a", "upstream": "h:1", "listen": "h:99999"},
                 {"name": "a", "upstream": "h:1", "enabled": "yes"}):  # fmt: skip
        with pytest.raises(ApiError):
            parse_proxy(body)


def test_toxics_map_onto_the_server_faults() -> None:
    def faults(*bodies: dict[str, Any]) -> Any:
        return shaping((parse_toxic(b), 0) for b in bodies)

    assert faults() is None
    assert faults({"type": "bandwidth", "attributes": {"rate": 0}}) is None  # Toxiproxy: no limit
    got = faults({"type": "latency", "attributes": {"latency": 100, "jitter": 20}})
    assert (round(got.delay, 3), round(got.jitter, 3)) == (0.08, 0.04)
    assert faults({"type": "bandwidth", "attributes": {"rate": 5}}).bandwidth == 5000
    assert faults({"type": "limit_data", "attributes": {"bytes": 10}}).close_after == 10
    assert shaping([(parse_toxic({"type": "limit_data", "attributes": {"bytes": 10}}), 7)]
                   ).close_after == 17  # fmt: skip
    assert faults({"type": "reset_peer", "attributes": {"timeout": 250}}).reset_on_data == 0.25
    assert faults({"type": "blackhole"}).swallow


def exchange_through(port: int, data: bytes, wait: float = WAIT) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


async def _through(proxy_port: int, data: bytes) -> bytes:
    return await asyncio.to_thread(exchange_through, proxy_port, data)


def test_toxics_at_creation_apply_to_the_first_connection() -> None:
    async def main() -> None:
        async with echo_server() as echo, fault_proxy(echo.address, toxics=[latency(200)]) as proxy:
            started = time.perf_counter()
            assert await _through(proxy.address[1], b"ping") == b"ping"
            assert time.perf_counter() - started >= 0.2
            assert [e["event"] for e in proxy.events if e["event"] == "toxic_applied"] == [
                "toxic_applied"
            ]

    asyncio.run(main())


def test_match_every_nth_connection_and_by_source() -> None:
    from aioecho.testing import limit_data

    async def main() -> None:
        async with echo_server() as echo, fault_proxy(echo.address) as proxy:
            proxy.add(limit_data(2, match={"every": 3}))
            got = [await _through(proxy.address[1], b"hello") for _ in range(6)]
            assert got == [b"hello", b"hello", b"he", b"hello", b"hello", b"he"]
            proxy.clear()
            proxy.add(limit_data(2, match={"source": "10.0.0.0/8"}))
            assert await _through(proxy.address[1], b"hello") == b"hello"
            proxy.update("limit_data_downstream", toxicity=1.0)
            proxy.clear()
            proxy.add(limit_data(2, match={"source": "127.0.0.0/8"}))
            assert await _through(proxy.address[1], b"hello") == b"he"
            proxy.clear()
            proxy.add(limit_data(2, match={"times": 2}))  # the next two connections only
            got = [await _through(proxy.address[1], b"hello") for _ in range(3)]
            assert got == [b"he", b"he", b"hello"]

    asyncio.run(main())


def test_limit_time_blackhole_and_corrupt() -> None:
    from aioecho.testing import blackhole, corrupt, limit_time

    async def main() -> None:
        async with echo_server() as echo, fault_proxy(echo.address, seed=3) as proxy:
            data = pattern_bytes(1000)
            proxy.add(corrupt(1.0))
            got = await _through(proxy.address[1], data)
            assert len(got) == len(data) and got != data
            assert sum(a != b for a, b in zip(got, data, strict=True)) >= 1
            proxy.clear()
            proxy.add(blackhole(stream="upstream"))
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(b"nothing comes back")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.3)
            proxy.clear()
            proxy.add(limit_time(100))  # applies to the open connection too
            started = time.perf_counter()
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
            assert time.perf_counter() - started < 5
            writer.close()
            closed = [e for e in proxy.events if e["event"] == "connection_closed"]
            assert (
                closed[-1]["ended_by"] == "toxic" and closed[-1]["toxic"] == "limit_time_downstream"
            )

    asyncio.run(main())


def test_a_disabled_proxy_refuses_and_an_enabled_one_serves() -> None:
    async def main() -> None:
        async with echo_server() as echo, fault_proxy(echo.address) as proxy:
            port = proxy.address[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await proxy.disable()
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
            writer.close()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
            await proxy.enable()
            assert await _through(port, b"back") == b"back"

    asyncio.run(main())


def test_a_scenario_runs_on_the_proxys_clock(hub: Hub) -> None:
    assert call(hub, "POST", "/proxies", {"name": "a", "upstream": UPSTREAM})[0] == 201
    status, body = call(hub, "POST", "/proxies/a/scenario", {"steps": [
        {"at": 0.2, "remove": "latency_downstream"},
        {"at": 0, "add": {"type": "latency", "attributes": {"latency": 50}}},
        {"at": 0.1, "update": {"name": "latency_downstream", "attributes": {"latency": 70}}},
    ]})  # fmt: skip
    assert (status, body) == (202, {"proxy": "a", "steps": 3})
    loop = asyncio.get_event_loop()
    deadline = time.monotonic() + WAIT
    while len([e for e in hub.journal.since() if e["event"] == "scenario_step"]) < 3:
        assert time.monotonic() < deadline
        loop.run_until_complete(asyncio.sleep(0.05))
    steps = [e for e in hub.journal.since() if e["event"] == "scenario_step"]
    assert [s["action"] for s in steps] == ["add", "update", "remove"]
    assert not any("error" in s for s in steps)
    changed = [e for e in hub.journal.since() if e["event"] == "toxic_updated"]
    assert len(changed) == 1
    assert call(hub, "GET", "/proxies/a/toxics") == (200, [])
    assert call(hub, "POST", "/proxies/a/scenario", {"steps": [{"at": -1, "add": {}}]})[0] == 400
    # a peer cannot pile up timers: the steps waiting at once are bounded, all scenarios counted
    far = {"steps": [{"at": 3600, "remove": "x"}] * 1000}
    statuses = [call(hub, "POST", "/proxies/a/scenario", far)[0] for _ in range(11)]
    assert statuses == [202] * 10 + [400]


def test_config_file_makes_proxies_with_their_toxics(tmp_path: Path) -> None:
    async def main() -> None:
        async with echo_server() as echo:
            port = free_port()
            config = tmp_path / "proxies.json"
            config.write_text(json.dumps([{
                "name": "echo", "listen": f"127.0.0.1:{port}",
                "upstream": f"{echo.address[0]}:{echo.address[1]}",
                "toxics": [{"type": "limit_data", "attributes": {"bytes": 3}}],
                "scenario": [{"at": 0, "add": {"type": "latency", "attributes": {"latency": 1}}}],
            }]))  # fmt: skip
            api = await asyncio.to_thread(ApiProcess, "--config", str(config))
            try:
                assert await _through(port, b"abcdef") == b"abc"  # its very first connection
                url = f"{api.url}/events"

                def steps() -> list[str]:
                    lines = requests.get(url, timeout=WAIT).text.splitlines()
                    return [e["action"] for e in map(json.loads, lines)
                            if e["event"] == "scenario_step"]  # fmt: skip

                await asyncio.to_thread(wait_until, lambda: steps() == ["add"], "the step")
            finally:
                api.stop()

    asyncio.run(main())


def test_config_file_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for text, expected in (
        ("[", "not JSON"),
        ('{"name": 1}', "a JSON list of proxies is needed"),
        ('[{"name": "a"}]', "missing required field: upstream"),
    ):
        bad.write_text(text)
        assert expected in usage_error("proxy", "--api", "127.0.0.1:0", "--config", str(bad))
    assert "no --to with it" in usage_error("proxy", "--api", "127.0.0.1:0", "--to", "h:1")
    assert "go with --api" in usage_error("proxy", "--to", "h:1", "--journal", "x")
    assert "(or --api)" in usage_error("proxy")
    for option in (["--port", "7000"], ["--delay", "10ms"], ["--unix", "/tmp/x"]):
        assert "come through the API" in usage_error("proxy", "--api", *option)


def usage_error(*args: str) -> str:
    """The one line of a CLI run refused as a usage error (exit 2)."""
    result = run_cli(*args)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("aioecho proxy: error: ")
    return lines[0]


def test_http_bounds_and_browsers(tmp_path: Path) -> None:
    api = ApiProcess()
    try:
        base = api.url
        refused = requests.get(f"{base}/proxies", headers={"User-Agent": "Mozilla/5.0"},
                               timeout=WAIT)  # fmt: skip
        assert refused.status_code == 403
        big = requests.post(f"{base}/proxies", data=b"[" + b" " * (2 << 20) + b"]", timeout=WAIT)
        assert big.status_code == 413
        bad = requests.post(f"{base}/proxies", data=b"{not json", timeout=WAIT)
        assert bad.status_code == 400 and bad.json()["error"].startswith("bad request body")
        with requests.Session() as session:  # keep-alive: several requests on one connection
            for _ in range(3):
                assert session.get(f"{base}/version", timeout=WAIT).ok
        metrics = requests.get(f"{base}/metrics", timeout=WAIT)
        assert metrics.status_code == 200 and "aioecho_proxy_" in metrics.text
    finally:
        api.stop()


async def _datagrams(port: int, proxy: Any, toxic: Any, count: int = 60) -> list[bytes]:
    """Send count numbered datagrams through the UDP proxy under toxic, then (toxic removed)
    an end marker; everything echoed before the marker's echo, in order (loopback keeps it)."""
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    done = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if data == b"end":
                done.set_result(None)
            else:
                got.append(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    proxy.add(toxic)
    for n in range(count):
        transport.sendto(b"%03d" % n)
    # every one read by the proxy under the toxic before it goes (an event: its count)
    deadline = time.monotonic() + WAIT
    while not any(c["datagrams_upstream"] == count for c in proxy.connections):
        assert time.monotonic() < deadline, proxy.connections
        await asyncio.sleep(0.01)
    proxy.clear()
    transport.sendto(b"end")
    await asyncio.wait_for(done, WAIT)
    transport.close()
    return got


def test_a_udp_proxy_drops_and_duplicates_exactly_as_seeded() -> None:
    from aioecho.testing import drop, duplicate

    async def run(seed: int, toxic: Any) -> list[bytes]:
        async with (
            echo_server(udp=True) as echo,
            fault_proxy(echo.address, protocol="udp", seed=seed) as proxy,
        ):
            return await _datagrams(proxy.address[1], proxy, toxic)

    async def main() -> None:
        lossy = drop(0.3, stream="upstream")
        first = await run(5, lossy)
        assert first == await run(5, lossy)  # the same seed, the same datagrams lost
        assert first != await run(6, lossy)
        assert 20 < len(first) < 60 and first == sorted(first)
        twice = await run(5, duplicate(0.5))
        copies = collections.Counter(twice)
        assert set(copies) == {b"%03d" % n for n in range(60)}
        assert 10 < sum(c == 2 for c in copies.values()) < 50
        assert twice == await run(5, duplicate(0.5))

    asyncio.run(main())


def test_udp_proxies_refuse_stream_toxics_and_the_reverse(hub: Hub) -> None:
    call(hub, "POST", "/proxies", {"name": "u", "upstream": UPSTREAM, "protocol": "udp"})
    status, body = call(hub, "POST", "/proxies/u/toxics", {"type": "slicer"})
    assert (status, body["error"]) == (
        400,
        "bad request body: a slicer toxic is not for UDP proxies",
    )
    assert call(hub, "GET", "/proxies/u")[1]["protocol"] == "udp"
    call(hub, "POST", "/proxies", {"name": "t", "upstream": UPSTREAM})
    assert call(hub, "POST", "/proxies/t/toxics", {"type": "drop"})[0] == 400
    assert "protocol" not in call(hub, "GET", "/proxies/t")[1]  # Toxiproxy's shape


def test_refuse_when_down_refuses_while_the_upstream_is_down(hub: Hub) -> None:
    port = free_port()
    status, made = call(hub, "POST", "/proxies", {
        "name": "r", "upstream": f"127.0.0.1:{port}", "refuse_when_down": True,
    })  # fmt: skip
    assert status == 201 and made["refuse_when_down"] is True
    proxy_port = int(made["listen"].rsplit(":", 1)[1])
    loop = asyncio.get_event_loop()

    def wait_event(name: str) -> None:
        deadline = time.monotonic() + WAIT
        while not any(e["event"] == name for e in hub.journal.since()):
            assert time.monotonic() < deadline, f"no {name}"
            loop.run_until_complete(asyncio.sleep(0.02))

    wait_event("upstream_down")
    with pytest.raises(ConnectionRefusedError):
        loop.run_until_complete(asyncio.open_connection("127.0.0.1", proxy_port))
    assert call(hub, "GET", "/proxies/r")[1]["upstream_up"] is False

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        writer.close()

    upstream = loop.run_until_complete(asyncio.start_server(echo, "127.0.0.1", port))
    wait_event("upstream_up")

    async def through() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(b"back")
        got = await reader.read(100)
        writer.close()
        return got

    assert loop.run_until_complete(through()) == b"back"
    upstream.close()
    loop.run_until_complete(upstream.wait_closed())


# Toxiproxy's shapes, from its README (HTTP API: proxy fields, toxic fields) and api.go
# (proxyWithToxics, ApiError, the populate answer, Version).
PROXY_FIELDS = {"name", "listen", "upstream", "enabled", "toxics"}
TOXIC_FIELDS = {"name", "type", "stream", "toxicity", "attributes"}
ERROR_FIELDS = {"error", "status"}


def test_every_endpoint_answers_in_toxiprox_shapes(hub: Hub) -> None:
    assert set(call(hub, "GET", "/version")[1]) == {"version"}
    made = call(hub, "POST", "/proxies", {"name": "a", "upstream": UPSTREAM})[1]
    assert set(made) == PROXY_FIELDS
    assert all(set(p) == PROXY_FIELDS for p in call(hub, "GET", "/proxies")[1].values())
    assert set(call(hub, "GET", "/proxies/a")[1]) == PROXY_FIELDS
    populated = call(hub, "POST", "/populate", [{"name": "b", "upstream": UPSTREAM}])[1]
    assert set(populated) == {"proxies"} and set(populated["proxies"][0]) == PROXY_FIELDS
    toxic = call(hub, "POST", "/proxies/a/toxics", {"type": "bandwidth"})[1]
    assert set(toxic) == TOXIC_FIELDS and toxic["attributes"] == {"rate": 0}
    assert [set(t) for t in call(hub, "GET", "/proxies/a/toxics")[1]] == [TOXIC_FIELDS]
    assert set(call(hub, "GET", "/proxies/a/toxics/bandwidth_downstream")[1]) == TOXIC_FIELDS
    assert set(call(hub, "PATCH", "/proxies/a/toxics/bandwidth_downstream", {})[1]) == (
        TOXIC_FIELDS
    )
    assert [t["name"] for t in call(hub, "GET", "/proxies/a")[1]["toxics"]] == [
        "bandwidth_downstream"
    ]
    assert set(call(hub, "PATCH", "/proxies/a", {"enabled": False})[1]) == PROXY_FIELDS
    for method, path, body in (
        ("GET", "/proxies/x", None), ("POST", "/proxies", {"name": "a", "upstream": UPSTREAM}),
        ("POST", "/proxies/a/toxics", {"type": "x"}), ("DELETE", "/proxies/a/toxics/x", None),
    ):  # fmt: skip
        assert set(call(hub, method, path, body)[1]) == ERROR_FIELDS
    defaults = {"latency": {"latency": 0, "jitter": 0}, "bandwidth": {"rate": 0},
                "slow_close": {"delay": 0}, "timeout": {"timeout": 0},
                "reset_peer": {"timeout": 0}, "limit_data": {"bytes": 0},
                "slicer": {"average_size": 0, "size_variation": 0, "delay": 0}}  # fmt: skip
    for kind, attributes in defaults.items():
        assert parse_toxic({"type": kind}).to_json()["attributes"] == attributes

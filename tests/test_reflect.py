"""server --reflect: a connection or datagram that starts with the magic line learns what the
server saw; everything else is the plain echo, byte for byte (both loops, TCP, TLS, UDP, behind
HAProxy with and without a PROXY header)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aioecho import Server, ServerConfig, serve
from aioecho.server.reflect import MAGIC
from support import LOOPS, WAIT, ServerProcess, free_port, in_thread_loop, peer, require_tool


@pytest.fixture(scope="module", params=LOOPS)
def reflector(request: pytest.FixtureRequest) -> Iterator[Server]:
    loop, thread = in_thread_loop(request.param)
    config = ServerConfig(hosts=("127.0.0.1",), port=0, udp=True, reflect=True, drain_timeout=1.0)
    server = asyncio.run_coroutine_threadsafe(serve(config), loop).result(WAIT)
    yield server
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(WAIT)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    loop.close()


def exchange(port: int, pieces: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        for piece in pieces:
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def split(answer: bytes) -> tuple[dict[str, object], bytes]:
    line, _, rest = answer.partition(b"\n")
    return json.loads(line), rest


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300).filter(lambda data: not data.startswith(MAGIC)))
def test_anything_without_the_magic_is_echoed_unchanged(reflector: Server, data: bytes) -> None:
    assert exchange(reflector.port, [data]) == data


@given(st.binary(min_size=1, max_size=40))
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_prefix_of_the_magic_then_other_bytes_is_echoed(reflector: Server, tail: bytes) -> None:
    for cut in (1, 7, len(MAGIC) - 1):
        data = MAGIC[:cut] + tail
        if not data.startswith(MAGIC):
            assert exchange(reflector.port, [data[:cut], data[cut:]]) == data


def test_the_magic_byte_by_byte_still_reflects(reflector: Server) -> None:
    pieces = [bytes([b]) for b in MAGIC] + [b"then the echo"]
    seen, rest = split(exchange(reflector.port, pieces))
    assert rest == b"then the echo"
    assert seen["reflect"] == 1
    assert str(seen["client"]).startswith("127.0.0.1:")
    assert seen["local"] == f"127.0.0.1:{reflector.port}"
    assert seen["instance"]["port"] == reflector.port  # type: ignore[index]
    assert seen["socket_peer"] == seen["client"]


def test_a_datagram_with_the_magic_gets_the_line_then_its_echo(reflector: Server) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(WAIT)
        sock.sendto(MAGIC + b"payload", ("127.0.0.1", reflector.port))
        seen = json.loads(sock.recv(4096))
        assert sock.recv(4096) == b"payload"
        assert seen["size"] == len(MAGIC) + len(b"payload")
        assert seen["client"] == f"127.0.0.1:{sock.getsockname()[1]}"
    assert reflector.stats().reflections is not None


def test_reflections_are_counted() -> None:
    async def main() -> None:
        server = await serve(ServerConfig(hosts=("127.0.0.1",), port=0, reflect=True))
        try:
            await asyncio.to_thread(exchange, server.port, [MAGIC])
            await asyncio.to_thread(exchange, server.port, [b"plain"])
            assert server.stats().reflections == 1
        finally:
            await server.close()
        plain = await serve(ServerConfig(hosts=("127.0.0.1",), port=0))
        assert plain.stats().reflections is None  # not in the stats line without --reflect
        await plain.close()

    asyncio.run(main())


def test_over_tls_it_says_the_version_and_the_name_asked_for(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("echo.test")
    folder = tmp_path_factory.mktemp("reflect-tls")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "cert.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    pem = str(folder / "cert.pem")
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--reflect", "--tls-cert", pem,
                       "--tls-key", pem) as server:  # fmt: skip
        server.start()
        context = ssl.create_default_context(cafile=str(folder / "ca.pem"))
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as raw,
            context.wrap_socket(raw, server_hostname="echo.test") as tls,
        ):
            tls.sendall(MAGIC)
            line = b""
            while not line.endswith(b"\n"):
                line += tls.recv(4096)
    seen = json.loads(line)
    assert seen["tls"]["sni"] == "echo.test"
    assert seen["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert seen["tls"]["cipher"] and seen["tls"]["client_certificate"] is None


HAPROXY = """global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend echo
    bind 127.0.0.1:{front}
    default_backend servers
backend servers
    server echo 127.0.0.1:{port} {option}
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("option", ["send-proxy-v2", ""])
def test_behind_haproxy_it_reports_whom_it_saw(tmp_path: Path, option: str) -> None:
    haproxy = require_tool("haproxy")
    flags = ["--proxy-protocol"] if option else []
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--reflect", *flags) as server:
        server.start()
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(HAPROXY.format(front=front, port=server.port, option=option))
        with (
            peer([haproxy, "-db", "-f", str(config)], front),
            socket.create_connection(("127.0.0.1", front), timeout=WAIT) as sock,
        ):
            mine = f"127.0.0.1:{sock.getsockname()[1]}"
            sock.sendall(MAGIC)
            line = b""
            while not line.endswith(b"\n"):
                line += sock.recv(4096)
    seen = json.loads(line)
    if option:  # the original client, from the header; the socket's peer is HAProxy
        assert seen["client"] == mine
        assert seen["proxy_header"]["source"] == mine
        assert seen["proxy_header"]["destination"] == f"127.0.0.1:{front}"
        assert seen["socket_peer"] != mine
    else:  # HAProxy's own address: the client is hidden from the server
        assert seen["client"] != mine and "proxy_header" not in seen


def ping_json(*args: str) -> list[dict[str, object]]:
    from support import aioecho_command

    done = subprocess.run(aioecho_command("ping", "--json", *args), capture_output=True,
                          timeout=120)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


BALANCER = """global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen echo
    bind 127.0.0.1:{front}
    balance {balance}
    server a 127.0.0.1:{a}
    server b 127.0.0.1:{b}
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("balance", ["roundrobin", "source"])
def test_spread_tallies_the_backends_behind_haproxy(tmp_path: Path, balance: str) -> None:
    haproxy = require_tool("haproxy")
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--reflect") as a, \
         ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--reflect",
                       "--banner", "{hostname} {pid}") as b:  # fmt: skip
        a.start()
        b.start()
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(BALANCER.format(front=front, balance=balance, a=a.port, b=b.port))
        with peer([haproxy, "-db", "-f", str(config)], front):
            lines = ping_json("--port", str(front), "--spread", "--new-connection",
                              "-c", "100", "-i", "0.005")  # fmt: skip
    summary = lines[-1]
    assert summary["received"] == 100, summary
    counts = sorted(summary["backends"].values())  # type: ignore[union-attr]
    if balance == "roundrobin":
        assert len(counts) == 2 and abs(counts[0] - counts[1]) <= 2, summary
        assert summary["same_backend"] < 30  # mostly alternating (probes overlap at -i 0.005)
    else:
        assert counts == [100], summary
    names = {f"{socket.gethostname()} pid {a.proc.pid}", f"{socket.gethostname()} pid {b.proc.pid}"}
    assert set(summary["backends"]) <= names  # type: ignore[arg-type]


def test_ping_reflect_says_how_it_was_seen_and_a_plain_server_is_named(tmp_path: Path) -> None:
    from support import aioecho_command

    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--reflect") as server:
        server.start()
        command = aioecho_command("ping", "--port", str(server.port), "--reflect", "-c", "2")
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    seen = [line for line in out if line.startswith("seen as 127.0.0.1:")]
    assert len(seen) == 1 and seen[0].endswith(f"by {socket.gethostname()} pid {server.proc.pid}")
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as plain:
        plain.start()
        lines = ping_json("--port", str(plain.port), "--reflect", "-c", "1")
    assert lines[0]["status"] == "error"
    assert "it has no --reflect" in str(lines[0]["detail"])


def test_banner_lines_are_read_before_the_probes() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--banner",
                       "hello from {hostname}") as server:  # fmt: skip
        server.start()
        without = ping_json("--port", str(server.port), "-c", "1")
        lines = ping_json("--port", str(server.port), "--banner-lines", "1", "-c", "3",
                          "-i", "0.01", "--new-connection", "--spread")  # fmt: skip
    # the banner read as the echo: what it fixes. It comes before the probe (then the probe is
    # not sent, and the detail names --banner-lines) or after it, when the machine is busy
    assert without[0]["status"] == "mismatch", without
    assert lines[-1]["received"] == 3
    assert lines[-1]["backends"] == {f"hello from {socket.gethostname()}": 3}


@pytest.mark.timeout(120)
def test_banner_lines_in_client_check_and_bench() -> None:
    from support import aioecho_command

    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--banner",
                       "{hostname} {pid}") as server:  # fmt: skip
        server.start()
        port = ["--port", str(server.port)]

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(aioecho_command(*args), capture_output=True, text=True,
                                  timeout=120)  # fmt: skip

        before = run("client", *port, "hello")
        after = run("client", *port, "--banner-lines", "1", "hello")
        stream = subprocess.run(aioecho_command("client", *port, "--banner-lines", "1", "-q", "-"),
                                input="x" * 100_000, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        checked = run("check", *port, "--banner-lines", "1", "--only", "basic,binary,fragmented",
                      "--json")  # fmt: skip
        bench = run("bench", *port, "--banner-lines", "1", "-q", "--duration", "1")
        bench_before = run("bench", *port, "-q", "--duration", "1")
    assert before.returncode == 1 and "differs" in before.stderr  # the banner read as the echo
    assert after.returncode == 0, after.stderr
    assert stream.returncode == 0 and stream.stdout == "x" * 100_000, stream.stderr
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verdicts = {c["case"]: c["verdict"] for c in json.loads(checked.stdout)["cases"]}
    assert set(verdicts.values()) == {"OK"}, verdicts
    assert bench.returncode == 0, bench.stderr
    assert bench_before.returncode == 1 and "mismatches" in bench_before.stderr


def test_over_udp_each_probe_asks_from_a_port_of_its_own() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--udp", "--reflect") as server:
        server.start()
        lines = ping_json("--udp", "--port", str(server.port), "--spread", "--reflect", "-c", "4",
                          "-i", "0.01")  # fmt: skip
        plain = ping_json("--udp", "--port", str(server.port), "-c", "2", "-i", "0.01")
    *probes, summary = lines
    assert [p["status"] for p in probes] == ["ok"] * 4, probes
    ports = {str(p["seen"]).split(" by ")[0] for p in probes}
    assert len(ports) == 4  # a new source port each: what a UDP balancer spreads by
    assert summary["backends"] == {f"{socket.gethostname()} pid {server.proc.pid}": 4}
    assert plain[-1]["received"] == 2  # without --reflect: the plain probes


def test_bytes_before_any_probe_end_the_next_probe_as_a_mismatch_naming_banner_lines() -> None:
    """A busy machine reads the banner before ping sends its probe: the probe was then ended as
    'closed' (our own abort), which hid the cause."""
    from aioecho.ping.engine import UNASKED, _EchoProbes
    from fakes import FakeTransport

    async def main() -> list[object]:
        got: list[object] = []
        probes = _EchoProbes(64, 5.0, got.append, "127.0.0.1 port 1")
        probes.connection_made(FakeTransport())  # type: ignore[arg-type]
        probes.data_received(b"hello from host\n")
        probes.send(1)
        return got

    (result,) = asyncio.run(main())
    assert (result.status, result.detail) == ("mismatch", UNASKED)  # type: ignore[attr-defined]

"""`aioecho bench --new-connection`: connections/s, connect (and TLS handshake) percentiles,
failed connects by reason, and its exact result through --json and merge."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from support import HAPROXY_DEFAULTS, ServerProcess, free_port, peer, require_tool, run_cli
from transports import Certs


@pytest.mark.timeout(60)
def test_spawn_new_connection_prints_connections_per_second_and_connect_percentiles() -> None:
    result = run_cli("bench", "--spawn", "--new-connection", "--duration", "1", "--warmup", "0.2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert re.fullmatch(
        r"\d+ connections/s; connect p50/p90/p99 \d+/\d+/\d+ us; failed connects: 0", lines[-1]
    ), lines


@pytest.mark.timeout(60)
def test_json_has_every_figure_and_counts_every_connection() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        result = run_cli(
            "bench", "--host", "127.0.0.1", "--port", str(server.port), "--new-connection",
            "--requests", "200", "--warmup", "0", "--json", "-q",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    figures = report["result"]
    assert figures["requests"] == 200 and figures["errors"] == 0
    assert figures["connect_p50_us"] > 0 and figures["connections_per_s"] > 0
    assert report["exact"]["connects"]["count"] == figures["requests"]


@pytest.mark.timeout(60)
def test_tls_handshakes_are_timed_apart(tmp_path_factory: pytest.TempPathFactory) -> None:
    certs = Certs.make(tmp_path_factory.mktemp("certs"))
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--tls-cert",
                       str(certs.cert), "--tls-key", str(certs.key)) as server:  # fmt: skip
        server.start()
        result = run_cli(
            "bench", "--port", str(server.port), "--tls", "--cafile", str(certs.ca),
            "--new-connection", "--connections", "1", "--requests", "50", "--warmup", "0",
            "--json",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    figures = report["result"]
    assert report["exact"]["handshakes"]["count"] == figures["requests"]
    # One connection at a time, so neither phase waits behind another connection's
    # handshake: a loopback connect is a few hundred us here, a handshake (key exchange,
    # a signature, a verification) several times that. With 10 at once both phases queue
    # on the loop and their medians were once equal.
    assert figures["tls_p50_us"] > figures["connect_p50_us"] > 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("load", [["--requests", "100"], ["--rate", "400", "--requests", "100"]])
def test_the_end_of_a_run_cuts_no_connection(
    tmp_path_factory: pytest.TempPathFactory, load: list[str]
) -> None:
    """Connections under way when the count is reached are let finish: the server logs no
    handshake failure or reset that the load did not mean, and exactly N are measured."""
    certs = Certs.make(tmp_path_factory.mktemp("certs"))
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--tls-cert", str(certs.cert),
                       "--tls-key", str(certs.key)) as server:  # fmt: skip
        server.start()
        result = run_cli(
            "bench", "--port", str(server.port), "--tls", "--cafile", str(certs.ca),
            "--new-connection", "--connections", "10", "--warmup", "0.2", "--json", *load,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert server.stop() == 0
    assert json.loads(result.stdout)["result"]["requests"] == 100
    closing = [ln for ln in server.lines if ln.startswith("EchoServer") or "failed" in ln]
    assert closing and [ln for ln in closing if not ln.endswith((": closing", "accepted"))] == []


@pytest.mark.timeout(60)
def test_tls_resume_offers_the_last_session_and_counts_what_the_server_resumed(
    tmp_path_factory: pytest.TempPathFactory, loop_name: str
) -> None:
    certs = Certs.make(tmp_path_factory.mktemp("certs"))
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--tls-cert",
                       str(certs.cert), "--tls-key", str(certs.key)) as server:  # fmt: skip
        server.start()
        common = ["bench", "--loop", loop_name, "--port", str(server.port), "--tls", "--cafile",
                  str(certs.ca), "--new-connection", "--connections", "2", "--requests", "40",
                  "--warmup", "0.2"]  # fmt: skip
        resumed = run_cli(*common, "--tls-resume", "--json")
        full = run_cli(*common, "--json")
        table = run_cli(*common, "--tls-resume", "--workers", "2")  # two counts, added up
    assert resumed.returncode == full.returncode == table.returncode == 0, resumed.stderr
    # the warm-up's connections leave a session to offer: every measured one is resumed
    assert json.loads(resumed.stdout)["result"]["tls_resumed"] == 40
    assert json.loads(resumed.stdout)["exact"]["resumed"] == 40
    assert "tls_resumed" not in json.loads(full.stdout)["result"]
    assert "; resumed 40 of 40; " in table.stdout.decode().splitlines()[-1]


def resumed_by(port: int, certs: Certs) -> dict[str, int]:
    result = run_cli(
        "bench", "--port", str(port), "--tls", "--cafile", str(certs.ca), "--new-connection",
        "--connections", "1", "--requests", "10", "--warmup", "0.2", "--tls-resume", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures: dict[str, int] = json.loads(result.stdout)["result"]
    return figures


@pytest.mark.timeout(60)
def test_tls_resume_against_socat_which_resumes(tmp_path_factory: pytest.TempPathFactory) -> None:
    """socat makes its TLS context before it forks: every child decrypts the same tickets."""
    socat = require_tool("socat")
    certs = Certs.make(tmp_path_factory.mktemp("certs"))
    port = free_port()
    listen = (f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={certs.cert},"
              f"key={certs.key},verify=0")  # fmt: skip
    with peer([socat, listen, "EXEC:cat"], port):
        figures = resumed_by(port, certs)
    assert figures["requests"] == figures["tls_resumed"] == 10


@pytest.mark.timeout(60)
def test_tls_resume_against_haproxy_without_tickets_or_cache(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A TLS terminator that resumes nothing (no tickets, no session cache): every handshake is
    a full one, and the count says so."""
    haproxy = require_tool("haproxy")
    certs = Certs.make(tmp_path_factory.mktemp("certs"))
    pem = certs.cert.parent / "haproxy.pem"  # HAProxy wants the certificate and key in one file
    pem.write_bytes(certs.cert.read_bytes() + certs.key.read_bytes())
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        front = free_port()
        config = certs.cert.parent / "haproxy.cfg"
        config.write_text(
            "global\n    tune.ssl.cachesize 0\n" + HAPROXY_DEFAULTS
            + f"frontend tls\n    bind 127.0.0.1:{front} ssl crt {pem} no-tls-tickets\n"
            f"    default_backend echo\nbackend echo\n    server a 127.0.0.1:{server.port}\n"
        )  # fmt: skip
        with peer([haproxy, "-db", "-f", str(config)], front):
            figures = resumed_by(front, certs)
    assert figures["requests"] == 10 and figures["tls_resumed"] == 0


@pytest.mark.parametrize(
    "args", [["--new-connection"], ["--tls", "--insecure"], []], ids=["no-tls", "no-new", "none"]
)
def test_tls_resume_needs_tls_and_new_connections(args: list[str]) -> None:
    result = run_cli("bench", "--tls-resume", *args)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[-1] == (
        "aioecho bench: error: --tls-resume resumes TLS sessions on new connections: it goes with "
        "--tls and --new-connection"
    )


@pytest.mark.timeout(60)
def test_failed_connects_are_counted_by_reason() -> None:
    port = free_port()  # nothing listens: every attempt is refused
    result = run_cli(
        "bench", "--host", "127.0.0.1", "--port", str(port), "--new-connection", "--rate", "200",
        "--duration", "0.5", "--warmup", "0", "--json",
    )  # fmt: skip
    assert result.returncode == 1
    figures = json.loads(result.stdout)["result"]
    assert figures["requests"] == 0
    assert set(figures["failed_connects"]) == {"refused"}
    assert 50 <= figures["failed_connects"]["refused"] <= 150  # 200/s for 0.5 s


def test_new_connection_does_not_go_with_pipeline() -> None:
    result = run_cli("bench", "--new-connection", "--pipeline", "4")
    assert result.returncode == 2
    assert "--new-connection sends one request per connection" in result.stderr.decode()


def test_the_python_310_deadline_times_out_and_lets_through() -> None:
    """newconn's stand-in for asyncio.timeout() on Python 3.10, tested on every version."""
    from aioecho.bench.newconn import _deadline_compat

    async def scenario() -> tuple[str, str]:
        try:
            async with _deadline_compat(0.01):
                await asyncio.sleep(10)
            late = "no timeout"
        except asyncio.TimeoutError:
            late = "timed out"
        async with _deadline_compat(10):
            await asyncio.sleep(0)
        on_time = "done"
        return late, on_time

    assert asyncio.run(scenario()) == ("timed out", "done")

    async def cancelled_from_outside() -> bool:
        task = asyncio.ensure_future(asyncio.sleep(0))

        async def inner() -> None:
            async with _deadline_compat(10):
                await asyncio.sleep(10)

        runner = asyncio.ensure_future(inner())
        await asyncio.sleep(0)
        runner.cancel()
        await task
        try:
            await runner
        except asyncio.CancelledError:
            return True  # a cancel that is not the deadline's stays a cancel
        return False

    assert asyncio.run(cancelled_from_outside())

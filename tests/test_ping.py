"""`aioecho ping`: the figures follow what the path does (delay, loss, duplicates, reordering,
corruption, lateness), the exit status follows --max-loss, and the outputs agree."""

from __future__ import annotations

import asyncio
import json
import math
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from aioecho.ping.stats import PingSummary, ProbeResult, summarize
from support import (
    HAPROXY_DEFAULTS,
    WAIT,
    ServerProcess,
    aioecho_command,
    end_group,
    error_line,
    free_port,
    in_thread_loop,
    peer,
    reader_goes_away,
    require_tool,
    run_cli,
)

# Units: the summary's arithmetic


def ok(seq: int, rtt_us: float, **more: Any) -> ProbeResult:
    return ProbeResult(seq, "ok", 64, rtt_us=rtt_us, peer="127.0.0.1 port 7", **more)


def test_summary_figures_are_ping_s() -> None:
    results = [ok(1, 100.0), ok(2, 300.0), ok(3, 200.0), ProbeResult(4, "timeout", 64)]
    s = summarize(results).to_dict()
    assert (s["sent"], s["received"], s["lost"], s["loss_pct"]) == (4, 3, 1, 25.0)
    assert (s["min_us"], s["avg_us"], s["max_us"]) == (100.0, 200.0, 300.0)
    assert s["mdev_us"] == pytest.approx(math.sqrt((100**2 + 0 + 100**2) / 3), abs=0.001)
    assert s["jitter_us"] == 150.0  # |300-100| and |200-300|, averaged
    assert s["p50_us"] == pytest.approx(200.0, rel=0.01)


def test_late_answers_are_late_not_lost_and_extras_are_no_probes() -> None:
    results = [
        ok(1, 100.0),
        ProbeResult(2, "timeout", 64),
        ProbeResult(2, "late", 64, rtt_us=3e6, peer="p", extra=True),
        ProbeResult(1, "duplicate", 64, rtt_us=150.0, peer="p", extra=True),
        ProbeResult(0, "corrupted", 64, extra=True),
    ]
    s = summarize(results)
    assert (s.sent, s.received, s.lost, s.late, s.duplicates, s.corrupted) == (2, 1, 0, 1, 1, 1)
    assert s.failure(0) == "1 answers were not what was sent"
    assert s.figures()["max_us"] == 100.0  # a late answer's RTT is not a round trip in time


def test_failure_follows_max_loss() -> None:
    s = summarize([ok(1, 1.0), ok(2, 1.0), ok(3, 1.0), ProbeResult(4, "timeout", 64)])
    assert s.failure(25) is None
    assert s.failure(20) == "1 of 4 probes lost (25% loss, --max-loss 20%)"
    assert PingSummary().failure(0) == "no probe was sent"
    assert summarize([ProbeResult(1, "refused", 64)]).failure(100) == "no answer to any of 1 probes"


def test_probe_lines() -> None:
    assert ok(3, 350.0).line() == "64 bytes from 127.0.0.1 port 7: seq=3 rtt=0.350 ms"
    phased = ok(1, 350.0, resolve_us=50.0, connect_us=210.0, tls_us=1900.0)
    assert phased.line() == (
        "64 bytes from 127.0.0.1 port 7: seq=1 resolve=0.050 ms connect=0.210 ms "
        "tls=1.900 ms rtt=0.350 ms"
    )
    assert ProbeResult(4, "timeout", 64).line() == "seq=4 timeout"
    assert ProbeResult(6, "error", 64, detail="no route").line() == "seq=6 error: no route"
    assert ProbeResult(0, "corrupted", 9, extra=True).line() == "seq=? corrupted"


# In-test peers that misbehave on command


class Faulty(asyncio.DatagramProtocol):
    """A UDP echo that does to each probe what `plan` says for its sequence number: 'drop',
    'dup', ('delay', seconds), 'corrupt'; anything else is echoed at once."""

    def __init__(self, plan: dict[int, Any]) -> None:
        self.plan = plan

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        action = self.plan.get(int.from_bytes(data[:8], "big"))
        if action == "drop":
            return
        if action == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        if isinstance(action, tuple):
            asyncio.get_running_loop().call_later(action[1], self.transport.sendto, data, addr)
            return
        self.transport.sendto(data, addr)
        if action == "dup":
            self.transport.sendto(data, addr)


class SlowStream(asyncio.Protocol):
    """A TCP echo that answers each chunk `delay` seconds late, optionally with a byte flipped."""

    def __init__(self, delay: float, corrupt: bool = False) -> None:
        self.delay, self.corrupt = delay, corrupt

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        asyncio.get_running_loop().call_later(self.delay, self._send, data)

    def _send(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


def peer_in_thread(start: Callable[[asyncio.AbstractEventLoop], Any]) -> Iterator[int]:
    loop, thread = in_thread_loop("asyncio")
    server = asyncio.run_coroutine_threadsafe(start(loop), loop).result(10)
    transport = server[0] if isinstance(server, tuple) else server
    port = (
        transport.get_extra_info("sockname")[1]
        if isinstance(server, tuple)
        else server.sockets[0].getsockname()[1]
    )
    yield port

    async def close() -> None:
        transport.close()
        if isinstance(transport, asyncio.Server):
            await transport.wait_closed()
        else:  # a datagram transport closes its socket on the next loop iteration
            await asyncio.sleep(0.01)

    asyncio.run_coroutine_threadsafe(close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def udp_peer(plan: dict[int, Any]) -> Iterator[int]:
    async def start(loop: asyncio.AbstractEventLoop) -> Any:
        return await loop.create_datagram_endpoint(
            lambda: Faulty(plan), local_addr=("127.0.0.1", 0)
        )

    return peer_in_thread(start)


def tcp_peer(delay: float, corrupt: bool = False) -> Iterator[int]:
    async def start(loop: asyncio.AbstractEventLoop) -> Any:
        return await loop.create_server(lambda: SlowStream(delay, corrupt), "127.0.0.1", 0)

    return peer_in_thread(start)


def ping(*args: str) -> subprocess.CompletedProcess[bytes]:
    return run_cli("ping", "--host", "127.0.0.1", *args, timeout=60)


def json_lines(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


# End to end


def test_ping_aioecho_over_tcp(loop_name: str) -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        result = ping("--port", str(server.port), "-c", "3", "-i", "0.05", "--loop", loop_name)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.decode().splitlines()
        assert lines[0] == f"PING 127.0.0.1 port {server.port}: 64 bytes, every 0.05s, timeout 2s"
        for seq, line in enumerate(lines[1:4], 1):
            assert line.startswith(f"64 bytes from 127.0.0.1 port {server.port}: seq={seq} rtt=")
        assert lines[5] == f"--- 127.0.0.1 port {server.port} ping statistics ---"
        assert re.fullmatch(
            r"3 probes sent, 3 received, 0 lost \(0% loss\), 0 duplicates, 0 reordered, 0 wrong, "
            r"0 late, time (\d+)ms",
            lines[6],
        ), lines[6]
        assert int(lines[6].split()[-1][:-2]) >= 100  # two intervals of 0.05 s at least
        assert lines[7].startswith("rtt min/avg/max/mdev = ")
        assert server.stop() == 0


def test_rtt_follows_an_injected_delay() -> None:
    for port in tcp_peer(delay=0.1):
        result = ping("--port", str(port), "-c", "3", "-i", "0.05", "--json")
        assert result.returncode == 0, result.stderr
        *probes, summary = json_lines(result)
        assert [p["status"] for p in probes] == ["ok"] * 3
        assert all(100_000 <= p["rtt_us"] < 300_000 for p in probes)  # several in flight at once
        assert 100_000 <= summary["min_us"] <= summary["p50_us"] <= summary["max_us"] < 300_000


def test_a_wrong_echo_is_a_mismatch_and_fails() -> None:
    for port in tcp_peer(delay=0.0, corrupt=True):
        result = ping("--port", str(port), "-c", "2", "-i", "0.05")
        lines = result.stdout.decode().splitlines()
        assert lines[1] == "seq=1 mismatch"
        assert lines[2].startswith(f"reconnected to 127.0.0.1 port {port} (connect ")
        assert lines[3] == "seq=2 mismatch"
        assert error_line(result) == "aioecho ping: error: 2 answers were not what was sent"


def test_each_udp_fault_is_counted_as_its_own_kind() -> None:
    # probes every 0.2 s, each waiting 1 s: 2 answers at 1.6 s (late), 3 never (lost), 4 twice,
    # 5 at 1.3 s (after 6 and 7: reordered), 7 with a byte flipped
    plan = {2: ("delay", 1.4), 3: "drop", 4: "dup", 5: ("delay", 0.5), 7: "corrupt"}
    for port in udp_peer(plan):
        result = ping(
            "--udp", "--port", str(port), "-c", "10", "-i", "0.2", "--timeout", "1", "--json"
        )  # fmt: skip
        lines = json_lines(result)
        summary = lines[-1]
        by_status: dict[str, list[int]] = {}
        for line in lines[:-1]:
            by_status.setdefault(line["status"], []).append(line["seq"])
        assert by_status == {
            "ok": [1, 4, 6, 8, 9, 10],
            "duplicate": [4],
            "reordered": [5],
            "corrupted": [7],
            "timeout": [2, 3],
            "late": [2],
        }, by_status
        assert {k: summary[k] for k in ("sent", "received", "lost", "duplicates")} == {
            "sent": 10,
            "received": 7,
            "lost": 1,
            "duplicates": 1,
        }
        assert (summary["reordered"], summary["corrupted"], summary["late"]) == (1, 1, 1)
        assert summary["loss_pct"] == 10.0
        # the summary agrees with the probe lines
        rtts = [line["rtt_us"] for line in lines[:-1] if line["status"] in ("ok", "reordered")]
        assert summary["min_us"] == pytest.approx(min(rtts), abs=0.01)
        assert summary["max_us"] == pytest.approx(max(rtts), abs=0.01)
        assert summary["max_us"] >= 500_000  # the reordered one waited half a second
        assert result.returncode == 1  # a corrupted answer fails the run


@pytest.mark.parametrize(("max_loss", "status"), [("30", 0), ("20", 1)])
def test_exit_status_follows_max_loss(max_loss: str, status: int) -> None:
    for port in udp_peer({4: "drop", 8: "drop"}):
        result = ping(
            "--udp", "--port", str(port), "-c", "8", "-i", "0.02", "--timeout", "0.3",
            "--max-loss", max_loss,
        )  # fmt: skip
        assert result.returncode == status, result.stdout
        assert "8 probes sent, 6 received, 2 lost (25% loss)" in result.stdout.decode()


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_a_closed_port_is_refused_probe_by_probe(udp: bool, loop_name: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once it is closed
    more = ["--loop", loop_name] + (["--udp"] if udp else [])
    result = ping("--port", str(port), "-c", "3", "-i", "0.05", *more)
    lines = result.stdout.decode().splitlines()
    assert lines[1:4] == ["seq=1 refused", "seq=2 refused", "seq=3 refused"]
    assert "3 probes sent, 0 received, 3 lost (100% loss)" in lines[6]
    assert error_line(result) == "aioecho ping: error: no answer to any of 3 probes"


def test_new_connection_times_each_phase_over_tls(tmp_path: Any) -> None:
    from pathlib import Path

    from transports import Certs

    certs = Certs.make(Path(str(tmp_path)))
    args = ("--tls-cert", str(certs.cert), "--tls-key", str(certs.key))
    with ServerProcess("--host", "127.0.0.1", "--port", "0", *args) as server:
        server.start()
        common = ["--new-connection", "--tls", "--cafile", str(certs.ca), "-c", "2", "-i", "0.05"]
        common += ["--port", str(server.port), "--json"]
        by_name = run_cli("ping", "--host", "localhost", *common)
        assert by_name.returncode == 0, by_name.stderr
        *probes, summary = json_lines(by_name)
        for probe in probes:
            assert probe["status"] == "ok"
            assert probe["resolve_us"] > 0 and probe["connect_us"] > 0 and probe["tls_us"] > 0
        assert summary["tls_min_us"] <= summary["tls_avg_us"] <= summary["tls_max_us"]
        by_address = run_cli("ping", "--host", "127.0.0.1", *common[:-1])
        said, first = by_address.stdout.decode().splitlines()[1:3]
        assert " connect=" in first and " tls=" in first and "resolve=" not in first, first
        # the TLS line, once: what was agreed and what the certificate says
        assert said.startswith("TLS TLSv1.3 TLS_"), said
        assert "certificate for DNS:localhost, IP Address:127.0.0.1, IP Address:0:0" in said
        assert said.endswith(" days)"), said
        assert by_address.stdout.decode().count("\nTLS ") == 1
        assert server.stop() == 0


def test_ctrl_c_prints_the_summary_and_exits_as_ping_does() -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        proc = subprocess.Popen(
            aioecho_command(
                "ping", "--host", "127.0.0.1", "--port", str(server.port), "-i", "0.05"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        seen = [proc.stdout.readline() for _ in range(3)]  # the header and two probes
        assert "seq=2 " in seen[2], seen
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0
        assert f"--- 127.0.0.1 port {server.port} ping statistics ---" in rest
        assert server.stop() == 0


def test_csv_rows_and_unix_socket() -> None:
    from transports import short_unix_path

    path = short_unix_path()
    with ServerProcess("--unix", path) as server:
        server.start()
        result = run_cli("ping", "--unix", path, "-c", "2", "-i", "0.05", "--csv")
        assert result.returncode == 0, result.stderr
        header, *rows = result.stdout.decode().splitlines()
        assert header == "time,seq,status,bytes,rtt_us,resolve_us,connect_us,tls_us,peer,idle_s"
        assert [row.split(",")[1:4] for row in rows] == [["1", "ok", "64"], ["2", "ok", "64"]]
        assert all(abs(float(row.split(",")[0]) - time.time()) < 60 for row in rows)
        assert f"--- {path} ping statistics ---" in result.stderr.decode()
        assert server.stop() == 0


@pytest.mark.parametrize("peer", ["socat", "nc"])
def test_against_peers_nobody_here_wrote(peer: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if peer == "socat":
        argv = [
            require_tool("socat"),
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
            "EXEC:cat",
        ]
    else:  # OpenBSD netcat, one connection, echoing through cat with a FIFO would need a shell
        argv = [
            "bash",
            "-c",
            f"f=$(mktemp -u); mkfifo $f; {require_tool('nc')} -l 127.0.0.1 {port} <$f | cat >$f",
        ]
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        from test_bench import wait_for_port

        wait_for_port(port) if peer == "socat" else wait_listening(port)
        result = ping("--port", str(port), "-c", "3", "-i", "0.05")
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "3 probes sent, 3 received, 0 lost (0% loss)" in result.stdout.decode()
    finally:
        end_group(proc)


def wait_listening(port: int) -> None:
    """Wait for a listener without connecting to it (nc -l serves one connection only)."""
    import time

    deadline = time.monotonic() + WAIT
    while f":{port:04X} " not in Path("/proc/net/tcp").read_text():
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--size", "8"], "--size must be 16 bytes to 16MiB"),
        (["--udp", "--size", "65508"], "--size must be 16 bytes to 65507 bytes"),
        (["--udp", "--host", "::1", "--size", "65528"], "--size must be 16 bytes to 65527 bytes"),
        (
            ["--udp", "--new-connection"],
            "--new-connection does not go with --udp (UDP has no connection)",
        ),
        (
            ["--size", "16MiB", "--interval", "0.01"],
            "--size x (--timeout / --interval) is 3355443200 bytes of probes in flight: "
            "at most 256MiB",
        ),
    ],
)
def test_usage_errors(args: list[str], line: str) -> None:
    result = run_cli("ping", *args)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [f"aioecho ping: error: {line}"]


@pytest.mark.parametrize("value", ["0", "-1", "1e-9", "4000", "abc"])
def test_every_interval_out_of_range_gets_the_same_message(value: str) -> None:
    # -i 0 and -i -1 had different messages (issue 21 #13)
    result = run_cli("ping", "-i", value)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[-1] == (
        f"aioecho ping: error: argument -i/--interval: invalid interval '{value}': must be "
        "0.001 to 3600 seconds (see aioecho ping --help)"
    )


def test_udp_late_answers_are_waited_for_and_named_and_ctrl_c_counts_what_was_in_flight() -> None:
    # seq 5 was "lost" while 1-4 were late: the run did not wait for the last answer; probes in
    # flight at Ctrl-C were left out of `sent` (issue 21 #11)
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--udp", "--delay", "50ms") as s:
        s.start()
        result = ping("--udp", "--port", str(s.port), "-c", "5", "-i", "0.1", "--timeout", "0.03")
        out = result.stdout.decode().splitlines()
        assert [line.split(": ")[1].split()[0] for line in out if " late " in line] == [
            f"seq={n}" for n in range(1, 6)
        ], out
        assert re.match(r"late: seq=1 5\d\.\d{3} ms, seq=2 ", out[-1]), out
        # Ctrl-C while 3 probes wait for a 50 ms answer each: counted as sent, unanswered
        proc = subprocess.Popen(
            aioecho_command(
                "ping", "--udp", "--host", "127.0.0.1", "--port", str(s.port), "-i", "0.01",
                "--timeout", "1", "--json",
            ),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        while json.loads(proc.stdout.readline())["seq"] < 3:
            pass
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=WAIT)
    lines = [json.loads(line) for line in rest.decode().splitlines()]
    summary = lines[-1]
    unanswered = [line for line in lines if line.get("status") == "unanswered"]
    assert unanswered, lines
    assert summary["sent"] == summary["received"] + summary["lost"], summary
    assert summary["lost"] >= len(unanswered)


def test_the_text_summary_agrees_with_the_probe_lines() -> None:
    import re

    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        result = ping("--port", str(server.port), "-c", "5", "-i", "0.02")
        assert result.returncode == 0, result.stderr
        text = result.stdout.decode()
        rtts = [float(ms) for ms in re.findall(r" rtt=([\d.]+) ms", text)]
        assert len(rtts) == 5
        figures = re.search(r"^rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/", text, re.M)
        assert figures is not None, text
        low, avg, high = (float(x) for x in figures.groups())
        assert low == min(rtts) and high == max(rtts)
        assert avg == pytest.approx(sum(rtts) / 5, abs=0.002)  # each line rounds to 1 us
        assert server.stop() == 0


def test_a_stalled_stream_times_out_and_the_next_probe_reconnects() -> None:
    for port in tcp_peer(delay=5.0):
        result = ping("--port", str(port), "-c", "3", "-i", "0.5", "--timeout", "0.3")
        lines = result.stdout.decode().splitlines()
        probes = [line for line in lines[1:] if line.startswith("seq=")]
        assert probes == ["seq=1 timeout", "seq=2 timeout", "seq=3 timeout"]
        assert [line for line in lines if line.startswith("reconnected to")]  # after each
        assert error_line(result) == "aioecho ping: error: no answer to any of 3 probes"


def test_a_reader_that_goes_away_ends_ping_in_one_line() -> None:
    """`aioecho ping | head -1`: exit 1 with one line, no traceback, at the first write after."""
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        status, lines, got = reader_goes_away(
            ["ping", "--host", "127.0.0.1", "--port", str(server.port), "-i", "0.02"],
            lambda stdout: stdout.readline(),
        )
        assert got.startswith(b"PING ")
        assert status == 1
        assert lines == ["aioecho ping: error: cannot write to standard output: broken pipe"]
        assert server.stop() == 0


@pytest.mark.parametrize("new_connection", [False, True], ids=["kept", "new-connection"])
def test_a_server_that_accepts_then_resets_is_a_reset_probe_by_probe(
    new_connection: bool, loop_name: str
) -> None:
    """It used to end 4 runs in 10 with RuntimeError (a write on a closed transport), and with
    --new-connection that text was a probe line."""
    import struct
    import threading

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]

        def reset_all() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

        threading.Thread(target=reset_all, daemon=True).start()
        more = ["--new-connection"] if new_connection else []
        for _ in range(5):
            result = ping("--port", str(port), "-c", "6", "-i", "0.02", "--loop", loop_name, *more)
            out, err = result.stdout.decode(), result.stderr.decode()
            assert "Traceback" not in err and "RuntimeError" not in out + err, out + err
            probes = [ln for ln in out.splitlines() if ln.startswith("seq=")]
            assert len(probes) == 6, out
            assert all(ln.split()[1] in ("reset", "closed") for ln in probes), out
            assert "6 probes sent, 0 received" in out, out
        listener.shutdown(socket.SHUT_RDWR)


@pytest.mark.timeout(60)
def test_a_balancer_closing_idle_connections_shows_as_events(tmp_path: Path) -> None:
    # HAProxy with `timeout client 1s`, probes 1.5 s apart: 4 OK and nothing said, while each
    # probe ran on a new connection (issue 21 #10)
    haproxy = require_tool("haproxy")
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            HAPROXY_DEFAULTS
            + f"frontend echo\n    bind 127.0.0.1:{front}\n    timeout client 1s\n"
            + "    default_backend servers\nbackend servers\n"
            + f"    server echo 127.0.0.1:{server.port}\n"
        )
        with peer([haproxy, "-db", "-f", str(config)], front):
            result = ping("--port", str(front), "-c", "3", "-i", "1.5", "--json")
            text = ping("--port", str(front), "-c", "2", "-i", "1.5")
    assert result.returncode == 0, result.stderr
    lines = json_lines(result)
    events = [line for line in lines if line["type"] == "event"]
    assert [e["status"] for e in events] == ["closed", "reconnected", "closed", "reconnected"]
    for closed in events[::2]:
        assert 0.9 <= closed["idle_s"] <= 1.45, closed  # HAProxy's 1 s, from the last echo
    summary = lines[-1]
    assert (summary["closes"], summary["reconnects"], summary["received"]) == (2, 2, 3)
    out = text.stdout.decode().splitlines()
    assert any(re.fullmatch(r"connection closed by the peer \(FIN\) after 1\.\ds idle", ln)
               for ln in out), out  # fmt: skip
    assert "connection: 1 closed by the peer, 0 reset, 1 reconnect" in out


def test_quiet_prints_the_summary_only() -> None:
    # -q printed every probe line; ping(8)'s -q prints the summary (issue 21 #12)
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        result = ping("-q", "--port", str(server.port), "-c", "3", "-i", "0.02")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode().splitlines()
    assert not [line for line in out if "seq=" in line], out
    assert out[-3].startswith("3 probes sent, 3 received, 0 lost (0% loss)"), out


def test_the_summary_and_the_error_count_wrong_answers_alike() -> None:
    # garbage UDP replies: the summary said "0 wrong" while the error said "17055 answers were
    # not what was sent"; --max-loss 33.3 failed at "33.3% loss" (issue 21 #12, #13)
    summary = summarize(
        [
            ProbeResult(1, "ok", 64, rtt_us=100.0),
            ProbeResult(0, "corrupted", 64, extra=True),
            ProbeResult(0, "corrupted", 64, extra=True),
        ]
    )
    assert ", 2 wrong, " in summary.lines("x")[1]
    assert summary.failure(0) == "2 answers were not what was sent"
    lossy = summarize([ProbeResult(1, "ok", 64, rtt_us=1.0), ProbeResult(2, "ok", 64, rtt_us=1.0),
                       ProbeResult(3, "timeout", 64)])  # fmt: skip
    assert lossy.failure(33.3) == "1 of 3 probes lost (33.33% loss, --max-loss 33.3%)"
    assert lossy.failure(33.4) is None


@pytest.mark.parametrize(
    ("given", "byte"), [("184", 184), ("ef", 184), ("0x20", 32), ("af41", 136)]
)
def test_tos_marks_every_probe(given: str, byte: int) -> None:
    """--tos: each datagram arrives with that TOS byte (read by a peer with IP_RECVTOS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        seen: list[int] = []

        def echo() -> None:
            peer.settimeout(WAIT)
            for _ in range(3):
                data, ancillary, _, source = peer.recvmsg(65536, socket.CMSG_SPACE(1))
                seen.extend(d[0] for level, kind, d in ancillary if kind == socket.IP_TOS)
                peer.sendto(data, source)

        thread = threading.Thread(target=echo, daemon=True)
        thread.start()
        port = str(peer.getsockname()[1])
        result = ping("--udp", "--host", "127.0.0.1", "--port", port, "-c", "3", "-i", "0.01",
                      "--tos", given)  # fmt: skip
        thread.join(WAIT)
    assert result.returncode == 0, result.stderr
    assert seen == [byte] * 3


def test_tos_bounds_and_names() -> None:
    for bad, why in (("256", "must be 0 to 255"), ("fast", "a DSCP name")):
        result = ping("--tos", bad)
        assert result.returncode == 2
        assert why in result.stderr.decode()
    unix = run_cli("ping", "--unix", "x", "--tos", "ef")
    assert "--tos marks IP packets: it does not go with --unix" in unix.stderr.decode()

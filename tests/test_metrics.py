"""--metrics: Prometheus counters that move, /healthz, and /readyz turning 503 during the
drain; HTTP parsed by h11, bounded."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support import WAIT, ServerProcess, require_tool, run_cli, wait_until

METRICS_LINE = r"^main: metrics on http://127\.0\.0\.1:(\d+)/metrics \(and /healthz, /readyz\)$"


def metrics_port(server: ServerProcess) -> int:
    """The port of the metrics endpoint, from the server's announcement."""
    match = re.match(METRICS_LINE, server.wait_for_line(METRICS_LINE))
    assert match is not None
    return int(match.group(1))


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of name's samples whose labels include these (all of them, without any)."""
    found = re.findall(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, flags=re.MULTILINE)
    assert found, f"no {name} in {text}"
    total = 0.0
    for label_text, value in found:
        have = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


@pytest.mark.timeout(60)
def test_counters_move_and_readyz_turns_503_while_draining() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--metrics",
                       "127.0.0.1:0", "--drain-timeout", "20") as server:  # fmt: skip
        server.start()
        port = metrics_port(server)
        status, before = get(port, "/metrics")
        assert status == 200 and metric(before, "aioecho_connections_accepted_total") == 0
        for _ in range(3):
            assert (
                run_cli(
                    "client", "-q", "--host", "127.0.0.1", "--port", str(server.port)
                ).returncode
                == 0
            )
        _, after = get(port, "/metrics")
        assert metric(after, "aioecho_connections_accepted_total") == 3
        assert metric(after, "aioecho_received_bytes_total") == 3 * 46
        assert 'aioecho_build_info{loop="' in after
        assert get(port, "/healthz") == (200, "ok\n")
        assert get(port, "/readyz") == (200, "ready\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as held:
            held.sendall(b"x")
            assert held.recv(1) == b"x"
            assert metric(get(port, "/metrics")[1], "aioecho_connections_open") == 1
            server.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: get(port, "/readyz")[0] == 503, "/readyz 503 after SIGTERM")
            assert get(port, "/readyz") == (503, "draining\n")  # the held connection drains
            assert get(port, "/healthz") == (200, "ok\n")
            assert metric(get(port, "/metrics")[1], "aioecho_ready") == 0
        assert server.wait() == 0


def test_other_paths_and_methods_and_bad_requests() -> None:
    with ServerProcess(
        "-q", "--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0"
    ) as server:
        server.start()
        port = metrics_port(server)
        assert get(port, "/nope")[0] == 404
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=WAIT)
        assert refused.value.code == 405
        refused.value.close()
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")  # a head over 8 KiB
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            # two requests pipelined on one connection: both answered, in order
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            answers = b""
            while b"ready\n" not in answers:
                chunk = sock.recv(4096)
                assert chunk, answers
                answers += chunk
            assert answers.index(b"ok\n") < answers.index(b"ready\n")


@pytest.mark.timeout(60)
def test_with_workers_each_serves_its_own_metrics() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--workers", "2",
                       "--metrics", "127.0.0.1:0") as server:  # fmt: skip
        server.start()
        pattern = r"^worker(\d): main: metrics on http://127\.0\.0\.1:(\d+)/metrics"
        for number in ("1", "2"):
            server.wait_for_line(rf"^worker{number}: main: metrics on ")
        found = [(m.group(1), int(m.group(2))) for ln in server.lines
                 if (m := re.match(pattern, ln))]  # fmt: skip
        assert len({port for _, port in found}) == 2
        for number, port in found:
            assert get(port, "/readyz") == (200, "ready\n")
            _, text = get(port, "/metrics")  # each worker's own, and says which it is
            samples = [ln for ln in text.splitlines() if ln.startswith("aioecho_")]
            assert samples and all(f'worker="{number}"' in ln for ln in samples), samples
        assert server.stop() == 0


def test_half_sent_requests_do_not_keep_health_out() -> None:
    """64 clients that send half a request and wait used to make /healthz fail (a liveness
    probe would restart a healthy server): the one that waited longest makes room."""
    with ServerProcess(
        "-q", "--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0"
    ) as server:
        server.start()
        port = metrics_port(server)
        held = []
        try:
            for _ in range(64):
                sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
                held.append(sock)
            for _ in range(3):
                assert get(port, "/healthz") == (200, "ok\n")
            with contextlib.suppress(ConnectionResetError):
                assert held[0].recv(100) == b""  # the oldest left to make room
            held[-1].sendall(b"st: x\r\n\r\n")
            assert held[-1].recv(100).startswith(b"HTTP/1.1 200 OK")  # the newest still served
        finally:
            for sock in held:
                sock.close()
        assert server.stop() == 0
        assert not [ln for ln in server.lines if "error" in ln.lower()], server.lines


def test_pipelined_requests_are_answered_in_turn() -> None:
    """2,000 requests in one write used to end in RecursionError, a traceback per connection."""
    with ServerProcess(
        "-q", "--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0"
    ) as server:
        server.start()
        port = metrics_port(server)
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
                threading.Thread(target=sock.sendall, args=(request * 2000,), daemon=True).start()
                got = b""
                while got.count(b"ok\n") < 2000:
                    chunk = sock.recv(1 << 16)
                    assert chunk, got[-200:]
                    got += chunk
                assert got.count(b"HTTP/1.1 200 OK") == 2000
        assert server.stop() == 0
        assert not [ln for ln in server.lines if "Traceback" in ln or "error" in ln], server.lines


def test_a_head_over_8_kib_is_refused_also_in_one_read() -> None:
    with ServerProcess(
        "-q", "--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0"
    ) as server:
        server.start()
        port = metrics_port(server)
        for size in (9_000, 100_000):
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * size + b"\r\n\r\n"
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
                sock.sendall(head)
                answer = sock.recv(100)
                assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), answer
        assert server.stop() == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_metrics_port_stops_the_start_before_any_listening_line(workers: str) -> None:
    """The echo's port used to be announced first (a script had already started), and with
    --workers each worker was restarted for ever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli(
            "server", "--host", "127.0.0.1", "--port", "0", "--workers", workers,
            "--metrics", f"127.0.0.1:{port}",
        )  # fmt: skip
    lines = result.stderr.decode().splitlines()
    assert result.returncode != 0, lines
    assert not [ln for ln in lines if "listening on" in ln], lines
    assert not [ln for ln in lines if "restarting" in ln], lines
    assert any(f"127.0.0.1 port {port} (--metrics)" in ln for ln in lines), lines
    assert "Traceback" not in result.stderr.decode()


def test_worker_metrics_ports_past_65535_are_refused() -> None:
    result = run_cli("server", "--port", "0", "--workers", "4", "--metrics", "127.0.0.1:65534")
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode().splitlines()[-1] == (
        "aioecho server: error: --metrics port 65534 with 4 workers: worker 4 would serve on port "
        "65537 (each worker takes the next port; at most 65535)"
    )


@pytest.mark.timeout(60)
def test_a_drain_delay_keeps_serving_while_readyz_says_503() -> None:
    # SIGTERM turned /readyz 503 and closed the listener at the same instant: a balancer still
    # sending for one probe interval got refused connections (issue 25 #1)
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0",
                       "--drain-delay", "30") as server:  # fmt: skip
        server.start()
        port = metrics_port(server)
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_line(r"^main: not ready: serving new connections for 30s more")
        assert get(port, "/readyz") == (503, "draining\n")
        for _ in range(3):  # new connections are still served, during the delay
            result = run_cli("client", "-q", "--host", "127.0.0.1", "--port", str(server.port))
            assert result.returncode == 0, result.stderr
        assert "main: closing server" not in server.lines
        server.proc.send_signal(signal.SIGTERM)  # a second signal skips the rest of the delay
        server.wait_for_line(r"^main: closing server$")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT).close()
        assert server.wait() == 0


def get_with(port: int, path: str, accept: str) -> tuple[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=WAIT) as answer:
        return answer.headers["Content-Type"], answer.read().decode()


def test_transport_labels_tls_handshakes_and_openmetrics(tmp_path: Path) -> None:
    """Issue 25 #4: connection counters by transport, TLS failures by reason and handshake
    times, PROXY-header rejects, UDP's counters labelled udp, OpenMetrics when asked for; every
    exposition parsed by prometheus_client's own parsers."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
    from prometheus_client.parser import text_string_to_metric_families as prom

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_path = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_path))
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0",
                       "--tls-cert", str(cert), "--tls-key", str(key)) as server:  # fmt: skip
        server.start()
        port = metrics_port(server)
        good = run_cli("client", "-q", "--host", "127.0.0.1", "--port", str(server.port),
                       "--tls", "--cafile", str(ca_path), "hi")  # fmt: skip
        assert good.returncode == 0, good.stderr
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not TLS: a failed handshake
            assert plain.recv(100) == b""
        wait_until(lambda: "tls_handshake_failures_total{" in get(port, "/metrics")[1])
        _, text = get(port, "/metrics")
        assert metric(text, "aioecho_connections_accepted_total", transport="tls") == 2
        assert metric(text, "aioecho_connections_accepted_total", transport="tcp") == 0
        assert metric(text, "aioecho_tls_handshake_failures_total") == 1
        assert metric(text, "aioecho_tls_handshake_seconds_count") == 1
        assert 0 < metric(text, "aioecho_tls_handshake_seconds_sum") < WAIT
        assert metric(text, "aioecho_tls_handshake_seconds_bucket", le="+Inf") == 1
        assert metric(text, "aioecho_datagrams_echoed_total", transport="udp") == 0
        assert {f.name for f in prom(text)} >= {"aioecho_tls_handshake_seconds"}
        kind, body = get_with(port, "/metrics", "application/openmetrics-text; version=1.0.0")
        assert kind.startswith("application/openmetrics-text") and body.endswith("# EOF\n")
        assert any(f.name == "aioecho_connections_accepted" for f in om(body))
        assert server.stop() == 0
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0",
                       "--proxy-protocol") as server:  # fmt: skip
        server.start()
        port = metrics_port(server)
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"not a PROXY header\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(100) == b""
        wait_until(lambda: metric(get(port, "/metrics")[1], "aioecho_proxy_header_rejects_total")
                   == 1)  # fmt: skip
        assert server.stop() == 0


def test_promtool_accepts_what_metrics_serves() -> None:
    promtool = require_tool("promtool")
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--tcp", "--udp",
                       "--metrics", "127.0.0.1:0", "--delay", "1ms") as server:  # fmt: skip
        server.start()
        port = metrics_port(server)
        assert run_cli("client", "-q", "--host", "127.0.0.1", "--port", str(server.port),
                       "hi").returncode == 0  # fmt: skip
        _, text = get(port, "/metrics")
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                                 text=True, timeout=WAIT, check=False)  # fmt: skip
        assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout
        assert server.stop() == 0

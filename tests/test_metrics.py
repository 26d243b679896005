"""--metrics: Prometheus counters that move, /healthz, and /readyz turning 503 during the
drain; HTTP parsed by h11, bounded."""

from __future__ import annotations

import re
import signal
import socket
import urllib.error
import urllib.request

import pytest

from support import WAIT, ServerProcess, run_cli, wait_until

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


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"no {name} in {text}"
    return float(match.group(1))


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
        ports = [int(m.group(2)) for ln in server.lines if (m := re.match(pattern, ln))]
        assert len(set(ports)) == 2
        for port in ports:
            assert get(port, "/readyz") == (200, "ready\n")
        assert server.stop() == 0


def test_at_most_64_http_clients_at_once() -> None:
    with ServerProcess(
        "-q", "--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0"
    ) as server:
        server.start()
        port = metrics_port(server)
        held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(64)]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as extra:
                try:
                    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer = extra.recv(100)
                except ConnectionResetError:
                    answer = b""
                assert answer == b""  # the 65th: closed at once, unanswered
            held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held[0].recv(100).startswith(b"HTTP/1.1 200 OK")  # the 64 are served
        finally:
            for sock in held:
                sock.close()

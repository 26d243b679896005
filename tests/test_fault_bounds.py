"""Server faults under load and in the counters: UDP --delay holds a bounded amount, the reply
policy applies first, and every fault that fires is counted (statistics and /metrics)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from support import STATS, WAIT, ServerProcess, run_cli, stats_now, wait_for_stats, wait_until

DATAGRAM = 60_000


def flood_udp(port: int, count: int) -> None:
    """count datagrams of DATAGRAM bytes from one source, paced so that the server's socket
    buffer does not drop them before the server sees them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        payload = bytes(DATAGRAM)
        for number in range(count):
            sock.sendto(payload, ("127.0.0.1", port))
            if number % 4 == 3:
                time.sleep(0.001)


@pytest.mark.parametrize("rate", ["200", "1000000"])
def test_udp_delay_holds_a_bounded_amount(rate: str, loop_name: str) -> None:
    """--delay used to hold every datagram before any limit (1.29 GB after 8 s of flood)."""
    args = ("--udp", "--host", "127.0.0.1", "--port", "0", "--delay", "20s")
    with ServerProcess(*args, "--udp-rate", rate, "--loop", loop_name) as server:
        server.start()
        base = server.rss_kib()
        flood_udp(server.port, 2000)  # 120 MB
        wait_until(lambda: stats_now(server)["datagrams_dropped"] > 0, "drops counted")
        grown = server.rss_kib() - base
        assert grown < (16 << 10) + 24 << 10, f"RSS grew {grown} KiB"
        assert server.stop() == 0


def final_stats(server: ServerProcess) -> dict[str, int]:
    line = [ln for ln in server.lines if STATS.match(ln)][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in line[len("stats: ") :].split())}


def test_a_stall_counts_only_what_was_sent(loop_name: str) -> None:
    args = ("--host", "127.0.0.1", "--port", "0", "--stall-after", "10", "--drain-timeout", "0")
    with ServerProcess(*args, "--loop", loop_name) as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"x" * 1000)
            got = b""
            while len(got) < 10:
                got += sock.recv(100)
            wait_for_stats(server, bytes_in=1000)
            assert server.stop() == 0
        stats = final_stats(server)
        assert (stats["bytes_in"], stats["bytes_out"], stats["fault_stalls"]) == (1000, 10, 1)


def test_resets_and_closes_are_counted(loop_name: str) -> None:
    for flag, counter in (("--reset-after", "fault_resets"), ("--close-after", "fault_closes")):
        args = ("--host", "127.0.0.1", "--port", "0", flag, "10", "--loop", loop_name)
        with ServerProcess(*args) as server:
            server.start()
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
                    sock.sendall(b"x" * 100)
                    expected = ConnectionResetError if flag == "--reset-after" else ()
                    with contextlib.suppress(expected) if expected else contextlib.nullcontext():
                        while sock.recv(100):
                            pass
            wait_for_stats(server, active=0, **{counter: 3})
            assert server.stop() == 0


def test_udp_faults_are_counted(loop_name: str) -> None:
    args = ("--udp", "--host", "127.0.0.1", "--port", "0", "--loop", loop_name)
    with ServerProcess(*args, "--drop", "1") as server:
        server.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(5):
                sock.sendto(b"hello", ("127.0.0.1", server.port))
        wait_for_stats(server, fault_drops=5)
        assert server.stop() == 0
    with ServerProcess(*args, "--duplicate", "1", "--corrupt", "1") as server:
        server.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(WAIT)
            for _ in range(3):
                sock.sendto(b"hello", ("127.0.0.1", server.port))
                assert sock.recv(100) != b"hello"
                assert sock.recv(100) != b"hello"
        stats = wait_for_stats(server, fault_duplicates=3, fault_corruptions=3)
        assert stats["datagrams_echoed"] == 6
        assert server.stop() == 0


def test_a_server_without_faults_has_no_fault_counters() -> None:
    with ServerProcess("--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        assert not any(k.startswith("fault_") for k in stats_now(server))
        assert server.stop() == 0


def test_one_sliced_connection_does_not_starve_the_others(loop_name: str) -> None:
    """--slice 1 without --slice-delay: a 1 MB echo is a million writes; they used to run in a
    few callbacks, so that other connections lost their probes and drain overran."""
    args = ("--host", "127.0.0.1", "--port", "0", "--slice", "1", "--drain-timeout", "1")
    with ServerProcess(*args, "--loop", loop_name) as server:
        server.start()
        data = bytes(1 << 20)
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
            sender.start()
            wait_until(lambda: stats_now(server)["bytes_in"] > 200_000, "the stream under way")
            result = run_cli(
                "ping", "-q", "--host", "127.0.0.1", "--port", str(server.port), "-c", "5",
                "-i", "0.1", "--timeout", "2",
            )  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
            assert b"5 received" in result.stdout, result.stdout
            started = time.monotonic()
            assert server.stop() == 0
            # the drain timeout, and the rest of a shutdown (not a million writes first)
            assert time.monotonic() - started < 1 + 5, server.lines[-3:]


@pytest.mark.parametrize("program", ["server", "proxy"])
def test_a_bandwidth_under_one_byte_per_burst_still_echoes(program: str, loop_name: str) -> None:
    """--bandwidth 4 (B/s): the 20 ms burst holds 0.08 bytes; the bucket used to never reach a
    byte, so nothing was ever echoed."""
    with contextlib.ExitStack() as stack:
        port: int | None = None
        if program == "proxy":
            upstream = stack.enter_context(
                ServerProcess("--host", "127.0.0.1", "--port", "0", "--loop", loop_name)
            )
            upstream.start()
            port = upstream.port
        where = ("--to", f"127.0.0.1:{port}") if port is not None else ()
        server = stack.enter_context(
            ServerProcess(*where, "--host", "127.0.0.1", "--port", "0", "--bandwidth", "4",
                          "--loop", loop_name, program=program)
        )  # fmt: skip
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            started = time.monotonic()
            sock.sendall(b"abc")
            got = b""
            while len(got) < 3:
                got += sock.recv(10)
            assert got == b"abc"
            assert time.monotonic() - started >= 0.45  # a byte at once, then one every 0.25 s
        assert server.stop() == 0

"""Faults on demand (`aioecho server --delay ...`): each one measured with a client, not merely
accepted."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest

from support import WAIT, ServerProcess, flood_without_reading, pattern_bytes, run_cli


def faulty(*faults: str, udp: bool = False) -> ServerProcess:
    kind = ["--udp", "--udp-rate", "1000000"] if udp else []
    # a short drain: a stalled connection is held open on purpose, reading paused
    where = ("--host", "127.0.0.1", "--port", "0", "--drain-timeout", "0.2")
    return ServerProcess("-q", *where, *kind, *faults)


def test_the_start_up_line_lists_the_faults() -> None:
    with faulty(
        "--delay", "50ms", "--jitter", "0.01", "--reset-after", "1KiB", "--seed", "42"
    ) as s:
        s.start()
        assert s.lines[0] == "main: faults: delay 50ms, jitter 10ms, reset-after 1KiB, seed 42"
        assert s.stop() == 0


def test_delay_shows_in_the_bench_p50(loop_name: str) -> None:
    with faulty("--delay", "50ms", "--loop", loop_name) as server:
        server.start()
        result = run_cli(
            "bench", "-q", "--host", "127.0.0.1", "--port", str(server.port), "--rate", "100",
            "--connections", "2", "--duration", "1", "--warmup", "0", "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        r = json.loads(result.stdout)["result"]
        assert 50_000 <= r["p50_us"] <= 60_000, r
        assert r["min_us"] >= 49_000  # libuv's timers have a resolution of 1 ms
        assert server.stop() == 0


def test_bandwidth_meters_the_echo() -> None:
    """Timed from the first echoed byte to the last: the metering alone, not the start-up of a
    client process (which made this fail on a busy machine)."""
    data = pattern_bytes(4 << 20)
    with faulty("--bandwidth", "1MiB") as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
            sender.start()
            got = bytearray(sock.recv(1 << 16))
            started = time.monotonic()
            while len(got) < len(data):
                chunk = sock.recv(1 << 16)
                assert chunk, len(got)
                got += chunk
            elapsed = time.monotonic() - started
            sender.join(WAIT)
        assert got == data
        # 4 MiB at 1 MiB/s, less the first burst (20 ms) and the first read: about 3.98 s
        assert 3.6 <= elapsed <= 4.6, elapsed
        assert server.stop() == 0


def test_slices_make_short_reads() -> None:
    with faulty("--slice", "1", "--slice-delay", "20ms") as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"sliced")
            reads = [sock.recv(100) for _ in range(6)]
        assert reads == [b"s", b"l", b"i", b"c", b"e", b"d"]
        assert server.stop() == 0


def exchange_until_cut(port: int, size: int) -> tuple[bytes, str]:
    """Send size bytes (from a thread: the server may stop reading); collect the echo until the
    connection ends or falls silent for half a second. Returns the echo and how it ended."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    sender = threading.Thread(target=lambda: _send_quietly(sock, pattern_bytes(size)))
    sender.start()
    echo = b""
    try:
        while chunk := sock.recv(1 << 16):
            echo += chunk
        ended = "closed"
    except ConnectionResetError:
        ended = "reset"
    except TimeoutError:
        ended = "silent"
    sock.close()
    sender.join(WAIT)
    return echo, ended


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server cut the connection, or the test closed it
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # a spared connection then ends with the server's EOF


@pytest.mark.parametrize(
    ("fault", "ended"),
    [("--reset-after", "reset"), ("--close-after", "closed"), ("--stall-after", "silent")],
)
def test_cut_offs_happen_after_exactly_that_many_bytes(
    fault: str, ended: str, loop_name: str
) -> None:
    with faulty(fault, "1000", "--loop", loop_name) as server:
        server.start()
        echo, how = exchange_until_cut(server.port, 5000)
        assert (len(echo), how) == (1000, ended)
        assert echo == pattern_bytes(5000)[:1000]
        assert server.stop() == 0


def datagram(n: int) -> bytes:
    """Numbered twice: one flipped byte cannot turn it into another datagram of the run."""
    return n.to_bytes(4, "big") + b"datagram" + n.to_bytes(4, "big")


def udp_exchange(port: int, count: int = 2000) -> list[bytes]:
    """Send count numbered datagrams in batches (so no socket buffer overflows) and return
    every reply, in arrival order."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(0.1)
        for batch in range(0, count, 100):
            for n in range(batch, min(count, batch + 100)):
                sock.send(datagram(n))
            while True:
                try:
                    replies.append(sock.recv(100))
                except TimeoutError:
                    break
    return replies


def test_drop_loses_that_share_and_the_seed_replays_it() -> None:
    kept = []
    for _ in range(2):
        with faulty("--drop", "0.3", "--seed", "7", udp=True) as server:
            server.start()
            replies = udp_exchange(server.port)
            kept.append({int.from_bytes(r[:4], "big") for r in replies})
            assert server.stop() == 0
    lost = 1 - len(kept[0]) / 2000
    assert 0.26 <= lost <= 0.34, lost
    assert kept[0] == kept[1]  # the same seed drops the same datagrams


def test_duplicate_and_corrupt() -> None:
    with faulty("--duplicate", "1", udp=True) as server:
        server.start()
        replies = udp_exchange(server.port, 200)
        assert sorted(replies) == sorted([datagram(n) for n in range(200)] * 2)
        assert server.stop() == 0
    with faulty("--corrupt", "1", udp=True) as server:
        server.start()
        replies = udp_exchange(server.port, 200)
        assert len(replies) == 200
        sent = [datagram(n) for n in range(200)]
        for reply in replies:
            assert min(sum(a != b for a, b in zip(reply, s, strict=True)) for s in sent) == 1
        assert server.stop() == 0


def test_fault_share_spares_some_connections_repeatably() -> None:
    patterns = []
    for _ in range(2):
        with faulty("--close-after", "10", "--fault-share", "0.5", "--seed", "3") as server:
            server.start()
            cut = []
            for _ in range(20):
                echo, _ = exchange_until_cut(server.port, 100)
                cut.append(len(echo) == 10)
            patterns.append(cut)
            assert server.stop() == 0
    assert patterns[0] == patterns[1]
    assert 3 <= sum(patterns[0]) <= 17  # about half, with the seed's luck


def test_a_delayed_echo_still_pauses_a_peer_that_does_not_read() -> None:
    """The queue of delayed echo counts towards --max-buffer: memory stays bounded."""
    with faulty("--delay", "10ms", "--max-buffer", "64KiB") as server:
        server.start()
        before = server.rss_kib()
        sent = flood_without_reading(server.port)
        grew = server.rss_kib() - before
        assert sent < 64 << 20, sent
        assert grew < 32 * 1024, grew
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--drop", "1.5"], "argument --drop: invalid probability '1.5': must be 0 to 1"),
        (
            ["--reset-after", "10", "--close-after", "10"],
            "choose one of --reset-after, --close-after and --stall-after",
        ),
        (["--trace", "--delay", "1s"], "--trace does not go with fault options"),
    ],
)
def test_fault_usage_errors(args: list[str], line: str) -> None:
    result = run_cli("server", *args)
    assert result.returncode == 2
    assert line in result.stderr.decode().splitlines()[-1]

"""`aioecho proxy` under hostile peers: memory bounded when the upstream speaks first, faults on
every byte, descriptors counted two per connection, resets seen while a client is paused."""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from support import WAIT, ServerProcess, raw_listener, run_cli, wait_until

MAX_BUFFER = 64 * 1024


class ZeroSource:
    """An upstream that writes zeros to every connection as fast as it is taken, counting what
    the other end has taken, until stop()."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.port = int(self.listener.getsockname()[1])
        self.sent = 0
        self.accepted = 0
        self.last_progress = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        chunk = bytes(1 << 16)
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        conns: list[socket.socket] = []
        while not self._stop.is_set():
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    conn, _ = self.listener.accept()
                    conn.setblocking(False)
                    conns.append(conn)
                    self.accepted += 1
                    selector.register(conn, selectors.EVENT_WRITE)
                    continue
                try:
                    sent = sock.send(chunk)
                except BlockingIOError:
                    continue
                except OSError:
                    selector.unregister(sock)
                    continue
                self.sent += sent
                self.last_progress = time.monotonic()
        for conn in conns:
            conn.close()
        selector.close()

    def stalled(self, quiet: float = 1.0) -> bool:
        return time.monotonic() - self.last_progress > quiet

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self.listener.close()


@pytest.fixture
def zero_source() -> Iterator[ZeroSource]:
    source = ZeroSource()
    yield source
    source.stop()


@pytest.mark.parametrize("clients", [20, 200])
def test_an_upstream_that_speaks_first_is_held_back_by_clients_that_do_not_read(
    zero_source: ZeroSource, clients: int, loop_name: str
) -> None:
    """Each client stops reading before its upstream connection exists: its pause must reach
    the upstream once it does (it was lost: 3.26 GB in 6 s with 20 clients)."""
    where = ("--to", f"127.0.0.1:{zero_source.port}", "--host", "127.0.0.1", "--port", "0")
    args = ("--max-buffer", f"{MAX_BUFFER}", "--loop", loop_name)
    with ServerProcess(*where, *args, program="proxy") as relay:
        relay.start()
        base = relay.rss_kib()
        socks = []
        try:
            for _ in range(clients):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", relay.port))
                socks.append(sock)
            wait_until(lambda: zero_source.accepted == clients, "every upstream connection")
            # Kernel buffers on both legs (up to ~10 MiB a connection with autotuning) and
            # the proxy's own bound; far less than what an unbounded proxy takes in WAIT.
            most = clients * 16 << 20
            deadline = time.monotonic() + WAIT
            while not zero_source.stalled():
                assert zero_source.sent < most, f"the proxy took {zero_source.sent} bytes"
                assert time.monotonic() < deadline, "the upstream never stalled"
                time.sleep(0.05)
            grown = relay.rss_kib() - base
            # per connection: --max-buffer each way plus one read (256 KiB), and slack
            assert grown < clients * (2 * MAX_BUFFER + 512 * 1024) // 1024 + 20 * 1024, grown
        finally:
            for sock in socks:
                sock.close()
        assert relay.stop() == 0


def test_an_upstream_greeting_is_delayed_like_every_other_byte(loop_name: str) -> None:
    """An upstream that speaks at once (a banner, an SMTP or redis greeting): the fault shaper
    exists before its first byte comes in."""
    with raw_listener() as upstream:
        served = threading.Event()

        def greet() -> None:
            for _ in range(5):
                conn, _ = upstream.accept()
                conn.sendall(b"hello\n")
                conn.close()
            served.set()

        threading.Thread(target=greet, daemon=True).start()
        where = ("--to", f"127.0.0.1:{upstream.getsockname()[1]}", "--host", "127.0.0.1")
        with ServerProcess(*where, "--port", "0", "--delay", "300ms", "--loop", loop_name,
                           program="proxy") as relay:  # fmt: skip
            relay.start()
            for _ in range(5):
                with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as sock:
                    started = time.monotonic()
                    assert sock.recv(100) == b"hello\n"
                    assert time.monotonic() - started >= 0.29
            assert served.wait(WAIT)
            assert relay.stop() == 0


def test_the_proxy_counts_two_descriptors_per_connection() -> None:
    """With 200 open files, 150 connections would need 300: the limit is lowered, with a line."""
    with raw_listener() as upstream, ServerProcess(
        "--to", f"127.0.0.1:{upstream.getsockname()[1]}", "--host", "127.0.0.1", "--port",
        "0", "--max-connections", "150", program="proxy",
        command=("prlimit", "--nofile=200:200"),
    ) as relay:  # fmt: skip
        relay.start()
        line = relay.wait_for_line("open-file limit")
        assert "allows 84 connections, not 150" in line, line
        assert relay.stop() == 0


def test_a_proxy_to_itself_is_refused() -> None:
    from support import free_port

    port = str(free_port())
    for to in (f"127.0.0.1:{port}", f"localhost:{port}"):
        result = run_cli("proxy", "--host", "127.0.0.1", "--port", port, "--to", to)
        assert result.returncode == 2, result.stderr
        assert result.stderr.decode().splitlines()[-1] == (
            f"aioecho proxy: error: --to {to} is the proxy's own listening address: every "
            "connection would open another, without end"
        )
    result = run_cli("proxy", "--host", "0.0.0.0", "--port", port, "--to", f"127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr


def test_a_client_that_resets_while_paused_frees_its_place() -> None:
    """An upstream that never reads; clients flood until paused, then reset: each place is
    freed within seconds, not at --idle-timeout (300 s)."""
    with raw_listener() as upstream:
        held: list[socket.socket] = []

        def accept_all() -> None:
            while True:
                try:
                    conn, _ = upstream.accept()
                except OSError:
                    return
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                held.append(conn)  # never read

        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        threading.Thread(target=accept_all, daemon=True).start()
        where = ("--to", f"127.0.0.1:{upstream.getsockname()[1]}", "--host", "127.0.0.1")
        with ServerProcess(*where, "--port", "0", "--max-connections", "5", "--max-buffer",
                           "16KiB", program="proxy") as relay:  # fmt: skip
            relay.start()
            for _ in range(5):
                sock = socket.create_connection(("127.0.0.1", relay.port), timeout=1.0)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                try:
                    while True:
                        sock.send(b"x" * 65536)
                except TimeoutError:
                    pass  # paused: the proxy reads no more
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            for _ in range(5):
                relay.wait_for_line(r"^Proxy_127\.0\.0\.1_\d+: client: connection reset")
            wait_until(
                lambda: sum("client: connection reset" in ln for ln in relay.lines) == 5,
                "five resets logged",
            )
            with socket.create_connection(("127.0.0.1", relay.port), timeout=WAIT) as sock:
                sock.sendall(b"ping")  # admitted: not closed at once
                sock.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    sock.recv(10)
            assert not any("refused" in ln for ln in relay.lines), relay.lines
            assert relay.stop() == 0
        for conn in held:
            conn.close()

"""`--trace`: every protocol event as it happens, for people learning the pattern."""

from __future__ import annotations

import re
import signal
import socket
import threading

from support import WAIT, ServerProcess, run_cli

EVENT = re.compile(r"^(EchoServer_\S+): \+(\d+\.\d{3}) ms (\w+)")


def events(lines: list[str], name: str) -> list[str]:
    """The event names traced for one connection, in order; their clock never goes back."""
    mine = [
        (float(m.group(2)), m.group(3))
        for ln in lines
        if (m := EVENT.match(ln)) and m.group(1) == name
    ]
    assert mine, lines
    clock = [ms for ms, _ in mine]
    assert clock == sorted(clock), mine
    return [event for _, event in mine]


def test_a_peer_that_stops_reading_shows_pause_and_resume(loop_name: str) -> None:
    with ServerProcess(
        "-q", "--trace", "--host", "127.0.0.1", "--port", "0", "--loop", loop_name,
        "--max-buffer", "64KiB",
    ) as server:  # fmt: skip
        server.start()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        name = f"EchoServer_127.0.0.1_{sock.getsockname()[1]}"
        data = b"x" * (8 << 20)

        def send() -> None:
            sock.sendall(data)  # blocks once the server stops reading
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        server.wait_for_line(rf"^{name}: \+[\d.]+ ms pause_writing \(buffer \d+ of 65536\) -> ")
        got = 0
        while chunk := sock.recv(1 << 20):  # now read: the server resumes
            got += len(chunk)
        sender.join(WAIT)
        sock.close()
        assert got == len(data)
        server.wait_for_line(rf"^{name}: \+[\d.]+ ms connection_lost \(None\) after 8388608 ")
        assert server.stop() == 0
    traced = events(server.lines, name)
    assert traced[0] == "connection_made"
    assert traced[-2:] == ["eof_received", "connection_lost"]
    pause, resume = traced.index("pause_writing"), traced.index("resume_writing")
    assert traced[pause - 1] == "data_received"  # the write that filled the buffer
    assert pause < resume
    assert traced.count("pause_writing") == traced.count("resume_writing")
    line = next(ln for ln in server.lines if " pause_writing " in ln and ln.startswith(name))
    assert line.endswith("-> pause_reading")


def test_ctrl_c_shows_the_drain(loop_name: str) -> None:
    with ServerProcess(
        "-q", "--trace", "--host", "127.0.0.1", "--port", "0", "--loop", loop_name,
        "--drain-timeout", "0.2",
    ) as server:  # fmt: skip
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(b"held open")
            assert sock.recv(100) == b"held open"
            name = f"EchoServer_127.0.0.1_{sock.getsockname()[1]}"
            assert server.stop(signal.SIGINT) == 0
    assert (
        "trace: stop signal -> close the listeners; 1 open connections get 0.2s "
        "(--drain-timeout) to finish, then are aborted"
    ) in server.lines
    traced = [ln.split(" ms ", 1)[1] for ln in server.lines if ln.startswith(f"{name}: +")]
    assert traced[-2:] == [
        "abort: still open after the drain timeout (0 bytes of echo dropped)",
        "connection_lost (None) after 9 bytes echoed",
    ]


def test_client_trace_and_normal_output_unchanged() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        traced = run_cli("client", "-q", "--trace", "--port", str(server.port))
        assert traced.returncode == 0, traced.stderr
        lines = [ln.split(" ms ", 1)[1] for ln in traced.stderr.decode().splitlines()]
        assert lines[0] == (
            f"connection_made to 127.0.0.1 port {server.port} -> write 3 messages (46 bytes), "
            "write_eof"
        )
        assert lines[-2:] == ["eof_received -> close", "connection_lost (None)"]
        assert all(ln.startswith("data_received ") for ln in lines[1:-2])
        plain = run_cli("client", "-q", "--port", str(server.port))
        assert plain.returncode == 0 and plain.stderr == b""  # no trace without --trace
        assert server.stop() == 0
    assert not [ln for ln in server.lines if " ms " in ln]  # the server was not tracing

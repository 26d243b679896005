"""A peer that writes without reading: the server stops reading from it, and loses nothing."""

from __future__ import annotations

import hashlib
import select
import socket

from support import WAIT, ServerProcess, pattern_bytes

LIMIT = 512 * 1024 * 1024  # bytes: a server without flow control would take all of this
STALL = 1.0  # seconds without room to write that count as "stalled"
RSS_BOUND_KIB = 64 * 1024


def test_non_reading_peer_stalls_and_then_gets_every_byte(loop_name: str) -> None:
    block = pattern_bytes(1024 * 1024, seed=5)
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--loop", loop_name) as server:
        server.start()
        baseline = server.rss_kib()
        sent_digest, sent = hashlib.sha256(), 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.setblocking(False)
            counter = 0
            while sent < LIMIT:
                # each block numbered, so that a repeated or reordered block changes the hash
                chunk = counter.to_bytes(8, "big") + block
                view = memoryview(chunk)
                while view:
                    _, writable, _ = select.select([], [sock], [], STALL)
                    if not writable:
                        break
                    n = sock.send(view)
                    sent_digest.update(view[:n])
                    sent += n
                    view = view[n:]
                if view:
                    break
                counter += 1
            stalled_at = sent
            grown_kib = server.rss_kib() - baseline

            # Now read: send nothing more, half-close, and take the echo back in full.
            sock.setblocking(True)
            sock.shutdown(socket.SHUT_WR)
            got_digest, got = hashlib.sha256(), 0
            while chunk := sock.recv(1 << 20):
                got_digest.update(chunk)
                got += len(chunk)
        assert server.stop() == 0
    assert stalled_at < 64 * 1024 * 1024, f"no stall after {stalled_at} bytes"
    assert grown_kib < RSS_BOUND_KIB, f"server grew by {grown_kib} KiB"
    assert got == sent
    assert got_digest.hexdigest() == sent_digest.hexdigest()

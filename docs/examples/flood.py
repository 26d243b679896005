"""A peer that sends and never reads its echo: what does the server do with the echo it cannot
send? Sends up to --megabytes, stops once the server has taken nothing for a second, and
reports how far it got and how much the server's memory grew (read from /proc).

    python docs/examples/flood.py PORT [--megabytes 64]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from pathlib import Path

MIB = 1024 * 1024


def listener_pid(port: int) -> int:
    """The process listening on 127.0.0.1:port (through the socket's inode in /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in {f"socket:[{i}]" for i in inodes}:
                    return int(pid)
        except OSError:
            continue
    raise SystemExit(f"nothing listens on port {port}")


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args()
    pid = listener_pid(args.port)
    before = rss_mib(pid)
    total = args.megabytes * MIB
    sent = 0
    with socket.create_connection(("127.0.0.1", args.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(1.0)
        chunk = b"x" * MIB
        while sent < total:
            try:
                sent += sock.send(chunk[: total - sent])
            except TimeoutError:
                break  # the server has stopped reading
        grew = rss_mib(pid) - before
    if sent < total:
        verdict = f"the server stopped reading after {sent / MIB:.1f} MiB"
    else:
        verdict = f"the server read all {sent / MIB:.0f} MiB it could not echo"
    print(f"{verdict}: its memory grew {grew:.0f} MiB")


if __name__ == "__main__":
    main()

"""The transports one parametrised suite runs over: how to start a server, point a client at
it, and open a raw blocking socket to it."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from support import WAIT, ServerProcess


@dataclass
class Certs:
    dir: Path
    ca: Path
    cert: Path
    key: Path
    other_key: Path  # a key that does not match cert

    @classmethod
    def make(cls, where: Path) -> Certs:
        ca = trustme.CA()
        issued = ca.issue_cert("localhost", "127.0.0.1", "::1")
        other = trustme.CA().issue_cert("localhost")
        paths = cls(
            where, where / "ca.pem", where / "cert.pem", where / "key.pem", where / "other.pem"
        )
        ca.cert_pem.write_to_path(str(paths.ca))
        issued.cert_chain_pems[0].write_to_path(str(paths.cert))
        issued.private_key_pem.write_to_path(str(paths.key))
        other.private_key_pem.write_to_path(str(paths.other_key))
        return paths


@dataclass
class Transport:
    name: str
    certs: Certs | None = None
    unix_path: str = field(default="")

    def server_args(self) -> list[str]:
        if self.name == "unix":
            return ["--unix", self.unix_path]
        args = ["--host", "::1" if self.name == "tcp6" else "127.0.0.1", "--port", "0"]
        if self.name == "tls":
            assert self.certs is not None
            args += ["--tls-cert", str(self.certs.cert), "--tls-key", str(self.certs.key)]
        return args

    def client_args(self, server: ServerProcess) -> list[str]:
        if self.name == "unix":
            return ["--unix", self.unix_path]
        args = ["--host", "::1" if self.name == "tcp6" else "127.0.0.1", "--port", str(server.port)]
        if self.name == "tls":
            assert self.certs is not None
            args += ["--tls", "--cafile", str(self.certs.ca)]
        return args

    def connect(self, server: ServerProcess) -> socket.socket:
        """A blocking socket to the server, TLS-wrapped for tls."""
        if self.name == "unix":
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(WAIT)
            try:
                sock.connect(self.unix_path)
            except OSError:
                sock.close()
                raise
            return sock
        host = "::1" if self.name == "tcp6" else "127.0.0.1"
        sock = socket.create_connection((host, server.port), timeout=WAIT)
        if self.name == "tls":
            assert self.certs is not None
            context = ssl.create_default_context(cafile=str(self.certs.ca))
            return context.wrap_socket(sock, server_hostname="localhost")
        return sock

    def finish_sending(self, sock: socket.socket) -> None:
        """Half-close where the transport can; TLS cannot, and keeps its write side open."""
        if self.name != "tls":
            sock.shutdown(socket.SHUT_WR)


def short_unix_path() -> str:
    """A Unix socket path well under the 108-byte limit (pytest's tmp_path can exceed it)."""
    return os.path.join(tempfile.mkdtemp(prefix="aioecho-"), "echo.sock")


class Pump:
    """Writes to and reads from one socket in a single thread (non-blocking, with select), so
    that a large echo cannot deadlock. One thread, because an SSLSocket is not safe to read in one
    thread while another writes to it: that made a TLS test flaky (bytes lost on the client
    side, not the server's)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.digest = hashlib.sha256()
        self.got = 0
        self.eof = False

    def run(self, data: bytes = b"", until: int = 0) -> None:
        """Send data while reading the echo; return once it is sent and `until` bytes are in."""
        view = memoryview(data)
        deadline = time.monotonic() + WAIT
        while view or (self.got < until and not self.eof):
            assert time.monotonic() < deadline, f"stuck at {self.got} of {until} bytes"
            self._read_available()
            if view:
                try:
                    view = view[self.sock.send(view[: 1 << 20]) :]
                    continue
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            select.select([self.sock], [self.sock] if view else [], [], 0.5)

    def _read_available(self) -> None:
        while not self.eof:
            try:
                chunk = self.sock.recv(1 << 20)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            if not chunk:
                self.eof = True
                return
            self.digest.update(chunk)
            self.got += len(chunk)

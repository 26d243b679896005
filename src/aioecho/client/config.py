"""Where and how a client connects: `aioecho client`, and the target of bench, ping and check.

Pure: imports neither asyncio, socket nor ssl."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..addresses import DEFAULT_HOST, DEFAULT_PORT, host_port
from ..errors import ConfigError
from ..units import check_port


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Where `aioecho client` connects and how long it waits."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    unix: str | None = None  # a Unix socket path, instead of host and port
    tls: bool = False  # speak TLS, verifying the server unless insecure
    cafile: str | None = None  # PEM CA certificates to verify the server with
    insecure: bool = False  # TLS without any verification
    alpn: tuple[str, ...] = ()  # ALPN protocols to ask for, by preference
    sni: str | None = None  # the server name to send and verify (default: host)
    cert: str | None = None  # a client certificate (mutual TLS), PEM
    key: str | None = None  # its key, if not in the same file
    banner_lines: int = 0  # lines the server greets each connection with (--banner): not echo
    udp: bool = False  # each message is one datagram
    retries: int = 3  # UDP: sends of a datagram after the first before giving up
    timeout: float = 10.0  # seconds: bounds the connect and any silence while echo is owed

    def __post_init__(self) -> None:
        check_port(self.port)
        if not self.timeout > 0:
            raise ConfigError("--timeout must be more than 0 seconds")
        if self.udp and (self.tls or self.unix is not None):
            raise ConfigError("--udp does not go with --tls or --unix")
        if (self.cafile is not None or self.insecure) and not self.tls:
            raise ConfigError("--cafile and --insecure need --tls")
        extras = self.alpn or self.sni is not None or self.cert is not None or self.key is not None
        if extras and not self.tls:
            raise ConfigError("--alpn, --sni, --cert and --key need --tls")
        if self.key is not None and self.cert is None:
            raise ConfigError("--key goes with --cert")
        if not 0 <= self.banner_lines <= 100:
            raise ConfigError("--banner-lines must be 0 to 100")
        if self.banner_lines and self.udp:
            raise ConfigError("--banner-lines is for streams: a UDP server does not greet")
        if self.retries < 0:
            raise ConfigError("--retries must be zero or more")

    @property
    def server_name(self) -> str:
        """The name sent in the handshake (SNI) and checked against the certificate."""
        return self.sni if self.sni is not None else self.host

    def tls_options(self) -> dict[str, Any]:
        """tls.client_context()'s arguments."""
        return {
            "cafile": self.cafile,
            "insecure": self.insecure,
            "alpn": self.alpn,
            "cert": self.cert,
            "key": self.key,
        }

    @property
    def where(self) -> str:
        """'localhost port 10000' or the Unix socket path, for messages."""
        return self.unix if self.unix is not None else host_port(self.host, self.port, self.udp)


def warn_if_insecure(config: ClientConfig) -> None:
    """One warning per run: nothing about --insecure is visible on the wire."""
    if config.tls and config.insecure:
        logging.getLogger("aioecho.main").warning(
            "--insecure: the server's certificate and name are not checked; anyone on the path "
            "could read and change the traffic"
        )

"""`aioecho proxy`'s settings: the server's, for where it listens, and its upstream.

Pure: imports neither asyncio, socket nor ssl."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..server.config import ServerConfig


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    """`aioecho proxy`: listen as a server does, forward each connection upstream."""

    listen: ServerConfig = ServerConfig()  # where and how to listen; its faults apply
    upstream_host: str = "127.0.0.1"
    upstream_port: int = 0
    faults_upstream: bool = False  # apply the faults to the client's data as well
    connect_timeout: float = 10.0  # seconds to reach the upstream

    def __post_init__(self) -> None:
        if not 1 <= self.upstream_port <= 65535:
            raise ConfigError("--to needs HOST:PORT with a port from 1 to 65535")
        if self.listen.udp:
            raise ConfigError("the proxy forwards TCP (and TLS, Unix) connections, not UDP")
        if self.listen.trace:
            raise ConfigError("--trace is for the echo server, not the proxy")

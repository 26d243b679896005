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
    api: tuple[str, int] | None = None  # serve Toxiproxy's API there: proxies made by it
    config_file: str | None = None  # --api: proxies (and their toxics) to make at start
    journal: str | None = None  # --api: append every event there, NDJSON

    def __post_init__(self) -> None:
        if self.api is not None:
            return  # no fixed upstream: the API makes the proxies
        if self.config_file is not None or self.journal is not None:
            raise ConfigError("--config and --journal go with --api")
        if not 1 <= self.upstream_port <= 65535:
            raise ConfigError("--to needs HOST:PORT with a port from 1 to 65535 (or --api)")
        if self.listen.udp:
            raise ConfigError("the proxy forwards TCP (and TLS, Unix) connections, not UDP")
        if self.listen.trace:
            raise ConfigError("--trace is for the echo server, not the proxy")

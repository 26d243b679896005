"""aioecho: an asyncio echo server, client and load generator built on asyncio.Protocol."""

from .client.config import ClientConfig
from .client.protocol import EchoClientProtocol, echo
from .errors import (
    AioechoError,
    ConfigError,
    ConnectError,
    EchoError,
    ListenError,
    ResolveError,
    TLSSetupError,
)
from .ping.engine import ping
from .ping.stats import PingSummary, ProbeResult, summarize
from .server.config import ServerConfig
from .server.protocol import EchoServerProtocol
from .server.serve import Server, serve
from .server.stats import StatsSnapshot
from .version import __version__

__all__ = [
    "AioechoError",
    "ClientConfig",
    "ConfigError",
    "ConnectError",
    "EchoClientProtocol",
    "EchoError",
    "EchoServerProtocol",
    "ListenError",
    "PingSummary",
    "ProbeResult",
    "ResolveError",
    "Server",
    "ServerConfig",
    "StatsSnapshot",
    "TLSSetupError",
    "__version__",
    "echo",
    "ping",
    "serve",
    "summarize",
]

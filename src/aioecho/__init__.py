"""aioecho: an asyncio echo server, client and load generator built on asyncio.Protocol."""

from .client import EchoClientProtocol, echo
from .config import ClientConfig, ServerConfig
from .errors import (
    AioechoError,
    ConfigError,
    ConnectError,
    EchoError,
    ListenError,
    ResolveError,
    TLSSetupError,
)
from .pingstats import PingSummary, ProbeResult, summarize
from .probing import ping
from .server import EchoServerProtocol, Server, serve
from .stats import StatsSnapshot

__version__ = "0.1.0"

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

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
    "ResolveError",
    "Server",
    "ServerConfig",
    "StatsSnapshot",
    "TLSSetupError",
    "__version__",
    "echo",
    "serve",
]

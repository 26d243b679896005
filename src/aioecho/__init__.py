"""aioecho: an asyncio echo server, client and load generator built on asyncio.Protocol."""

from .client import EchoClientProtocol, echo
from .config import ClientConfig, ServerConfig
from .errors import AioechoError, ConnectError, EchoError, ListenError, ResolveError
from .server import EchoServerProtocol, Server, serve
from .stats import StatsSnapshot

__version__ = "0.1.0"

__all__ = [
    "AioechoError",
    "ClientConfig",
    "ConnectError",
    "EchoClientProtocol",
    "EchoError",
    "EchoServerProtocol",
    "ListenError",
    "ResolveError",
    "Server",
    "ServerConfig",
    "StatsSnapshot",
    "__version__",
    "echo",
    "serve",
]

"""The errors aioecho raises, and the exit codes the CLI maps them to.

Pure: imports neither asyncio, socket nor ssl.

    AioechoError            a failure the user can act on; str() is one lowercase line
    ├── ConfigError         a setting is out of range or conflicts (also a ValueError); names
    │                       the command-line flag, since that is where users set it
    ├── ListenError         a listening socket could not be opened
    ├── TLSSetupError       a certificate or key could not be loaded
    ├── ResolveError        a host name did not resolve
    ├── ConnectError        the client could not reach the server
    ├── EchoError           the server's echo was wrong, cut short or too slow
    └── BenchError          a load run saw errors, or could not run
"""

from __future__ import annotations

import enum
import os

__all__ = [
    "AioechoError",
    "BenchError",
    "ConfigError",
    "ConnectError",
    "EchoError",
    "ExitStatus",
    "ListenError",
    "ResolveError",
    "TLSSetupError",
    "describe_os_error",
]


class ExitStatus(enum.IntEnum):
    """The CLI's exit codes: a documented contract."""

    OK = 0
    FAILURE = 1  # refused, reset, mismatch, timeout, cannot listen
    USAGE = 2  # argparse's own code for bad arguments
    INTERRUPTED = 130  # 128 + SIGINT
    TERMINATED = 143  # 128 + SIGTERM


def describe_os_error(err: BaseException) -> str:
    """A short lowercase reason for an OSError: 'address already in use'."""
    if isinstance(err, OSError) and err.errno is not None:
        if err.errno < 0 and err.strerror:  # getaddrinfo's own codes (socket.gaierror)
            return err.strerror.lower()
        return os.strerror(err.errno).lower()
    if isinstance(err, TimeoutError):
        return "timed out"
    text = str(err)
    if not text:
        return type(err).__name__
    # 'Connection lost' -> 'connection lost', but 'AF_UNIX path too long' stays as it is
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


class AioechoError(Exception):
    """Base class of every error meant for the user rather than the developer."""


class ConfigError(AioechoError, ValueError):
    """A setting the program cannot run with: '--max-buffer must be at least 1 byte'. The CLI
    exits with the usage status (2)."""


class ListenError(AioechoError):
    """where: '127.0.0.1 port 10000' or a Unix socket path; why: an OSError or a reason."""

    def __init__(self, where: str, why: BaseException | str) -> None:
        reason = why if isinstance(why, str) else describe_os_error(why)
        super().__init__(f"cannot listen on {where}: {reason}")
        self.where, self.err = where, why


class TLSSetupError(AioechoError):
    pass


class ResolveError(AioechoError):
    def __init__(self, host: str, err: BaseException) -> None:
        reason = err.args[1] if len(err.args) > 1 else str(err)
        super().__init__(f"cannot resolve host {host!r}: {str(reason).lower()}")
        self.host = host


class Interrupted(AioechoError):
    """Stopped by a signal after saying what was done (check's reports): exit 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted")
        self.signum = signum


class ConnectError(AioechoError):
    """where: 'localhost port 10000' or a Unix socket path."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"cannot connect to {where}: {reason}")
        self.where = where


class EchoError(AioechoError):
    """The echo did not come back whole: it differed, stopped short, or the server fell silent."""


class BenchError(AioechoError):
    """The load run failed: wrong or missing echoes, or a worker or spawned server that failed."""
